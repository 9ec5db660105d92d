//! Prometheus metrics, all prefixed `tern_`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub invocations: Family<Labels, Counter>,
    pub invocation_seconds: Family<Labels, Histogram>,
    pub cold_starts: Family<Labels, Counter>,
    pub init_seconds: Family<Labels, Histogram>,
    pub oom_kills: Family<Labels, Counter>,
    pub throttles: Family<Labels, Counter>,
    pub instances: Gauge,
    pub instance_memory_counted_bytes: Gauge,
    pub prewarmed_instances: Gauge,
    pub built_ahead: Gauge,
    pub instance_evictions: Family<Labels, Counter>,
    pub tmp_disk_budget_bytes: Gauge,
    pub tmp_disk_claimed_bytes: Gauge,
    pub tmp_disk_used_bytes: Gauge,
    /// Pending async events per namespace.
    pub async_queue_depth: Family<Labels, Gauge>,
    /// Age of the oldest pending async event per namespace, in seconds.
    pub async_oldest_event_age_seconds: Family<Labels, Gauge>,
    /// Async events that left the queue, by function and how (succeeded, failed,
    /// expired), and retries by kind (function_error, system).
    pub async_events: Family<Labels, Counter>,
    pub async_retries: Family<Labels, Counter>,
    /// Events that landed in a dead-letter queue.
    pub async_dead_letters: Family<Labels, Counter>,
    /// Destination records that could not be delivered, by condition.
    pub async_destination_failures: Family<Labels, Counter>,
    /// Time from enqueue to the start of an event's first attempt.
    pub async_enqueue_to_start_seconds: Histogram,
    /// Connections and packets the egress policy refused, per function.
    pub network_refusals: Family<Labels, Counter>,
    /// Schedule slots by namespace, schedule and outcome (fired, skipped).
    pub schedule_slots: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tern");
        let invocations = Family::<Labels, Counter>::default();
        let invocation_seconds = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let cold_starts = Family::<Labels, Counter>::default();
        let init_seconds = Family::<Labels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let oom_kills = Family::<Labels, Counter>::default();
        let throttles = Family::<Labels, Counter>::default();
        let instances = Gauge::default();
        registry.register(
            "invocations",
            "Invocations by function and outcome",
            invocations.clone(),
        );
        registry.register(
            "invocation_duration_seconds",
            "End-to-end invoke latency",
            invocation_seconds.clone(),
        );
        registry.register(
            "cold_starts",
            "Instances started for a request, by function and by what served the start (template, started_ahead, held_sandbox, new_sandbox)",
            cold_starts.clone(),
        );
        registry.register(
            "init_duration_seconds",
            "Runtime init time of new instances",
            init_seconds.clone(),
        );
        registry.register(
            "oom_kills",
            "Instances killed for exceeding MemorySize",
            oom_kills.clone(),
        );
        registry.register(
            "throttles",
            "Invocations refused with 429",
            throttles.clone(),
        );
        registry.register("instances", "Live function instances", instances.clone());
        let instance_memory_counted_bytes = Gauge::default();
        registry.register(
            "instance_memory_counted_bytes",
            "Memory counted against the budget: MemorySize of busy instances, measured use of idle ones",
            instance_memory_counted_bytes.clone(),
        );
        let prewarmed_instances = Gauge::default();
        registry.register(
            "prewarmed_instances",
            "Runtimes started ahead of time (and instances forked ahead from templates), ready for a function's cold start",
            prewarmed_instances.clone(),
        );
        let built_ahead = Gauge::default();
        registry.register(
            "built_ahead",
            "Sandboxes, runtimes and post-init templates built ahead of time and waiting (each holds one of max_instances)",
            built_ahead.clone(),
        );
        let instance_evictions = Family::<Labels, Counter>::default();
        registry.register(
            "instance_evictions",
            "Idle instances stopped before their keep-alive, by reason (room, host_memory)",
            instance_evictions.clone(),
        );
        let tmp_disk_budget_bytes = Gauge::default();
        let tmp_disk_claimed_bytes = Gauge::default();
        let tmp_disk_used_bytes = Gauge::default();
        registry.register(
            "tmp_disk_budget_bytes",
            "Host disk that instances' /tmp filesystems may claim in all",
            tmp_disk_budget_bytes.clone(),
        );
        registry.register(
            "tmp_disk_claimed_bytes",
            "Summed EphemeralStorage of live instances (counted against the budget)",
            tmp_disk_claimed_bytes.clone(),
        );
        registry.register(
            "tmp_disk_used_bytes",
            "Host disk used by live instances' /tmp filesystems right now",
            tmp_disk_used_bytes.clone(),
        );
        let network_refusals = Family::<Labels, Counter>::default();
        registry.register(
            "function_network_refusals",
            "Connections (and other packets) a function's sandboxes sent that the egress policy refused, by namespace and function",
            network_refusals.clone(),
        );
        let async_queue_depth = Family::<Labels, Gauge>::default();
        registry.register(
            "async_queue_depth",
            "Pending asynchronous events (queued, running, retrying) per namespace",
            async_queue_depth.clone(),
        );
        let async_oldest_event_age_seconds = Family::<Labels, Gauge>::default();
        registry.register(
            "async_oldest_event_age_seconds",
            "Age of the oldest pending asynchronous event per namespace",
            async_oldest_event_age_seconds.clone(),
        );
        let async_events = Family::<Labels, Counter>::default();
        registry.register(
            "async_events",
            "Asynchronous events finished, by function and state (succeeded, failed, expired)",
            async_events.clone(),
        );
        let async_retries = Family::<Labels, Counter>::default();
        registry.register(
            "async_retries",
            "Asynchronous attempts scheduled again, by function and kind (function_error, system)",
            async_retries.clone(),
        );
        let async_dead_letters = Family::<Labels, Counter>::default();
        registry.register(
            "async_dead_letters",
            "Asynchronous events put in their function's dead-letter queue",
            async_dead_letters.clone(),
        );
        let async_destination_failures = Family::<Labels, Counter>::default();
        registry.register(
            "async_destination_failures",
            "Destination records that could not be delivered, by function and condition",
            async_destination_failures.clone(),
        );
        let async_enqueue_to_start_seconds = latency_histogram();
        registry.register(
            "async_enqueue_to_start_seconds",
            "Time from an asynchronous event's enqueue to the start of its first attempt",
            async_enqueue_to_start_seconds.clone(),
        );
        let schedule_slots = Family::<Labels, Counter>::default();
        registry.register(
            "schedule_slots",
            "Schedule slots, by namespace, schedule and outcome (fired; skipped: missed beyond the grace window or the catch-up bound)",
            schedule_slots.clone(),
        );
        Metrics {
            registry,
            schedule_slots,
            async_queue_depth,
            async_oldest_event_age_seconds,
            async_events,
            async_retries,
            async_dead_letters,
            async_destination_failures,
            async_enqueue_to_start_seconds,
            network_refusals,
            invocations,
            invocation_seconds,
            cold_starts,
            init_seconds,
            oom_kills,
            throttles,
            instances,
            instance_memory_counted_bytes,
            prewarmed_instances,
            built_ahead,
            instance_evictions,
            tmp_disk_budget_bytes,
            tmp_disk_claimed_bytes,
            tmp_disk_used_bytes,
        }
    }

    pub fn function_labels(function: &str) -> Labels {
        vec![("function".to_string(), function.to_string())]
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_prefix_and_labels() {
        let m = Metrics::new();
        m.oom_kills
            .get_or_create(&Metrics::function_labels("hog"))
            .inc();
        let text = m.render();
        assert!(
            text.contains("tern_oom_kills_total{function=\"hog\"} 1"),
            "{text}"
        );
    }
}
