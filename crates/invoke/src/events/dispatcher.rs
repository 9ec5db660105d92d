//! The dispatcher: claims due events from the store under a lease, runs each through
//! the shared execution step, and settles it: succeeded, retried (function errors up
//! to `MaximumRetryAttempts`, system failures with backoff until the event's maximum
//! age), failed or expired, with its destination record or its dead letter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tern_core::event_config::EventInvokeSettings;
use tern_core::names::{account_of, function_arn};
use tern_store::{Attempt, ClaimedEvent, Settle, StoreError, StoreHandle};
use tern_telemetry::Metrics;
use tokio::sync::{Notify, Semaphore};

use super::destinations::{record, Condition, Destinations, RecordInput};
use super::queue::{EventQueue, IDEMPOTENCY_WINDOW_MS};
use crate::execution::{ExecutionError, ExecutionRequest, Executor};
use crate::functions::FunctionService;
use crate::now_ms;

/// Events claimed in one store call at most.
const CLAIM_BATCH: usize = 64;
/// How often an idle dispatcher looks for due retries and other servers' events.
const POLL: Duration = Duration::from_millis(200);
/// The longest wait between attempts after system failures.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Responses kept for the status API at most; larger ones are not kept.
pub const KEPT_RESPONSE_BYTES: usize = 64 * 1024;
/// Error messages kept per attempt at most.
const KEPT_MESSAGE_CHARS: usize = 1024;

#[derive(Clone)]
pub struct DispatchSettings {
    /// Events run at once by this server; 0: it runs none (it only accepts them, for
    /// servers on the same PostgreSQL database to run).
    pub concurrency: usize,
    /// Delay before the first retry after a function error (the second: twice).
    pub retry_delay: Duration,
    /// First delay after a system failure; doubles up to 5 minutes.
    pub system_backoff: Duration,
    pub lease: Duration,
    /// How long finished events are kept for the status API.
    pub retention: Duration,
    /// How long dead letters are kept unless redriven or purged.
    pub dead_letter_retention: Duration,
    /// Only this server dispatches from the store (SQLite): running events left by a
    /// previous process are claimable at once.
    pub single_node: bool,
    /// How https webhook destinations are verified (see [`super::webhook_tls`]).
    pub webhook_tls: tokio_rustls::TlsConnector,
}

pub struct Dispatcher {
    store: StoreHandle,
    executor: Arc<Executor>,
    functions: Arc<FunctionService>,
    queue: Arc<EventQueue>,
    destinations: Destinations,
    metrics: Arc<Metrics>,
    settings: DispatchSettings,
    owner: String,
    /// Events this server runs now, per namespace (for the fair share).
    running: std::sync::Mutex<HashMap<String, usize>>,
    /// Signalled when a run ends: events skipped for fairness may be claimable now.
    ended: Notify,
    /// Set at shutdown: claim nothing more, and leave runs the shutdown cut short to
    /// the next claim instead of counting them as failures.
    stopping: std::sync::atomic::AtomicBool,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A string field (`errorType`, `errorMessage`) of a function error body.
fn error_field(body: &[u8], field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get(field)
        .and_then(|m| m.as_str())
        .map(|m| truncate(m, KEPT_MESSAGE_CHARS))
}

/// The namespaces that run at least their fair share of `slots`: the slots divided by
/// the namespaces with work (pending or running). Alone, a namespace may use every slot;
/// with others waiting, none holds more than its share for long (slow functions or slow
/// webhooks of one tenant do not take every slot from the rest).
fn at_their_share(
    slots: usize,
    pending: &[tern_store::QueueDepth],
    running: &HashMap<String, usize>,
) -> Vec<String> {
    let mut active: std::collections::HashSet<&str> = pending
        .iter()
        .filter(|d| d.pending > 0)
        .map(|d| d.namespace.as_str())
        .collect();
    active.extend(running.keys().map(String::as_str));
    if active.len() < 2 {
        return Vec::new();
    }
    let share = (slots / active.len()).max(1);
    let mut full: Vec<String> = running
        .iter()
        .filter(|(_, n)| **n >= share)
        .map(|(ns, _)| ns.clone())
        .collect();
    full.sort();
    full
}

/// What one pass over a claimed event decided.
struct Decision {
    attempt: Option<Attempt>,
    settle: Settle,
}

/// The attempt a server that died (or lost its database) left unfinished, as the event's
/// history shows it once another claim takes it over.
fn lost_attempt(now: i64) -> Attempt {
    Attempt {
        started_ms: now,
        ended_ms: now,
        outcome: "lease_expired".to_string(),
        error_type: Some("Tern.LeaseExpired".to_string()),
        error_message: Some(
            "the server running this attempt stopped renewing its lease (it stopped or lost the database); the attempt may or may not have run".to_string(),
        ),
    }
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: StoreHandle,
        executor: Arc<Executor>,
        functions: Arc<FunctionService>,
        queue: Arc<EventQueue>,
        metrics: Arc<Metrics>,
        settings: DispatchSettings,
        owner: String,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            destinations: Destinations::new(
                store.clone(),
                queue.clone(),
                functions.registry().clone(),
                settings.webhook_tls.clone(),
            ),
            store,
            executor,
            functions,
            queue,
            metrics,
            settings,
            owner,
            running: std::sync::Mutex::new(HashMap::new()),
            ended: Notify::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Stops claiming and waits, up to `grace`, for the events running here to end.
    /// What runs past it is cut short by the shutdown and not settled: its lease runs
    /// out (or, on SQLite, the next start takes it over) and it runs again, without
    /// counting against its retries.
    pub async fn drain(&self, grace: Duration) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.ended.notify_one();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running: usize = self.running().values().sum();
            if running == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    events = running,
                    "async events still running at shutdown; they run again after the restart"
                );
                return;
            }
            tokio::select! {
                _ = self.ended.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Namespaces at their fair share of this server's slots: their events are not
    /// claimed now (see [`at_their_share`]).
    fn skipped_namespaces(&self) -> Vec<String> {
        let depths = self.queue.depth_snapshot();
        at_their_share(self.settings.concurrency, &depths, &self.running())
    }

    /// Starts claiming and renewing leases (unless `concurrency` is 0: this server only
    /// accepts events, others run them) and housekeeping on the current runtime.
    pub fn start(self: &Arc<Self>) {
        if self.settings.concurrency > 0 {
            let me = self.clone();
            tokio::spawn(async move { me.run().await });
            let me = self.clone();
            tokio::spawn(async move { me.renew_leases().await });
        }
        let me = self.clone();
        tokio::spawn(async move { me.housekeeping().await });
    }

    fn labels(namespace: &str, function: &str) -> Vec<(String, String)> {
        vec![
            ("namespace".to_string(), namespace.to_string()),
            ("function".to_string(), function.to_string()),
        ]
    }

    async fn run(self: Arc<Self>) {
        if self.settings.single_node {
            let owner = self.owner.clone();
            match self
                .store
                .call::<_, StoreError, _>(move |s| s.abandon_leases(&owner))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    events = n,
                    "resuming async events a previous run left running"
                ),
                Err(e) => tracing::warn!(error = %e, "cannot take over running async events"),
            }
        }
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        loop {
            if self.stopping() {
                return;
            }
            if slots.available_permits() == 0 {
                // Wait for a free slot without holding it.
                if let Ok(p) = slots.clone().acquire_owned().await {
                    drop(p);
                }
                continue;
            }
            let want = slots.available_permits().min(CLAIM_BATCH);
            let (owner, now) = (self.owner.clone(), now_ms());
            let lease_until = now + millis(self.settings.lease);
            let skip = self.skipped_namespaces();
            let claimed = match self
                .store
                .call::<_, StoreError, _>(move |s| {
                    s.claim_events(&owner, now, lease_until, want, &skip)
                })
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim async events");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let got = claimed.len();
            for ev in claimed {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                *self.running().entry(ev.namespace.clone()).or_default() += 1;
                let me = self.clone();
                tokio::spawn(async move {
                    let namespace = ev.namespace.clone();
                    me.handle(ev).await;
                    {
                        let mut running = me.running();
                        if let Some(n) = running.get_mut(&namespace) {
                            *n -= 1;
                            if *n == 0 {
                                running.remove(&namespace);
                            }
                        }
                    }
                    drop(permit);
                    me.ended.notify_one();
                });
            }
            if got < want {
                tokio::select! {
                    _ = self.queue.stored() => {}
                    _ = self.ended.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }

    /// Keeps the leases of running events alive; a server that dies stops renewing
    /// and its events go to others once the lease runs out.
    async fn renew_leases(self: Arc<Self>) {
        let every = self.settings.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let owner = self.owner.clone();
            let until = now_ms() + millis(self.settings.lease);
            if let Err(e) = self
                .store
                .call::<_, StoreError, _>(move |s| s.renew_leases(&owner, until))
                .await
            {
                tracing::warn!(error = %e, "cannot renew the leases of running async events");
            }
        }
    }

    /// Refreshes queue depths (backpressure and metrics) every 2 s, and prunes
    /// finished events and old idempotency keys every 5 minutes.
    async fn housekeeping(self: Arc<Self>) {
        let mut last_prune: Option<std::time::Instant> = None;
        loop {
            match self
                .store
                .call::<_, StoreError, _>(|s| s.queue_depths())
                .await
            {
                Ok(depths) => self.queue.set_depths(depths),
                Err(e) => tracing::warn!(error = %e, "cannot read async queue depths"),
            }
            if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(300)) {
                last_prune = Some(std::time::Instant::now());
                let now = now_ms();
                let before = now - millis(self.settings.retention);
                let dead_before = now - millis(self.settings.dead_letter_retention);
                let keys_before = now - IDEMPOTENCY_WINDOW_MS;
                match self
                    .store
                    .call::<_, StoreError, _>(move |s| {
                        s.prune_events(before, dead_before, keys_before)
                    })
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(events = n, "pruned finished async events"),
                    Err(e) => tracing::warn!(error = %e, "cannot prune finished async events"),
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn handle(&self, ev: ClaimedEvent) {
        let decision = self.decide(&ev).await;
        if self.stopping() && !matches!(decision.settle, Settle::Succeeded { .. }) {
            // Most likely the shutdown stopped its instance: not the function's failure.
            tracing::info!(request_id = %ev.request_id, "async event cut short by the shutdown; it runs again after the restart");
            return;
        }
        let pending = matches!(decision.settle, Settle::Retry { .. });
        let labels = Self::labels(&ev.namespace, &ev.function);
        match &decision.settle {
            Settle::Retry { function_error, .. } => {
                let mut l = labels.clone();
                let kind = if *function_error {
                    "function_error"
                } else {
                    "system"
                };
                l.push(("kind".to_string(), kind.to_string()));
                self.metrics.async_retries.get_or_create(&l).inc();
            }
            Settle::Succeeded { .. } | Settle::Failed { .. } | Settle::Expired { .. } => {
                let state = match decision.settle {
                    Settle::Succeeded { .. } => "succeeded",
                    Settle::Failed { .. } => "failed",
                    _ => "expired",
                };
                let mut l = labels.clone();
                l.push(("state".to_string(), state.to_string()));
                self.metrics.async_events.get_or_create(&l).inc();
            }
        }
        if matches!(
            decision.settle,
            Settle::Failed {
                dead_letter: true,
                ..
            } | Settle::Expired { dead_letter: true }
        ) {
            self.metrics.async_dead_letters.get_or_create(&labels).inc();
        }
        let (id, owner) = (ev.request_id.clone(), self.owner.clone());
        let Decision { attempt, settle } = decision;
        let mut attempts = Vec::with_capacity(2);
        if ev.lease_expired {
            attempts.push(lost_attempt(now_ms()));
        }
        attempts.extend(attempt);
        match self
            .store
            .call::<_, StoreError, _>(move |s| {
                s.settle_event(&id, &owner, &attempts, &settle, now_ms())
            })
            .await
        {
            Ok(true) if !pending => self.queue.finished(&ev.namespace),
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                request_id = %ev.request_id,
                "an async event's lease ran out while it ran; another server may run it again"
            ),
            // The lease runs out and the event is claimed again: it runs at least once.
            Err(e) => {
                tracing::error!(request_id = %ev.request_id, error = %e, "cannot settle an async event")
            }
        }
    }

    async fn settings_of(&self, ev: &ClaimedEvent) -> EventInvokeSettings {
        let (ns, f, q) = (
            ev.namespace.clone(),
            ev.function.clone(),
            ev.qualifier.clone(),
        );
        match self
            .store
            .call::<_, StoreError, _>(move |s| s.get_event_invoke_config(&ns, &f, &q))
            .await
        {
            Ok(Some(row)) => serde_json::from_str(&row.config).unwrap_or_else(|e| {
                tracing::warn!(function = %ev.function, error = %e, "unreadable event-invoke config; using the defaults");
                EventInvokeSettings::default()
            }),
            Ok(None) => EventInvokeSettings::default(),
            Err(e) => {
                tracing::warn!(function = %ev.function, error = %e, "cannot read the event-invoke config; using the defaults");
                EventInvokeSettings::default()
            }
        }
    }

    /// Sends a destination record; answers whether it was delivered.
    async fn send(&self, ev: &ClaimedEvent, destination: &str, input: RecordInput<'_>) -> bool {
        let condition = input.condition;
        match self
            .destinations
            .deliver(&ev.namespace, destination, &record(&input))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(request_id = %ev.request_id, destination, error = %e, "cannot deliver a destination record");
                let mut l = Self::labels(&ev.namespace, &ev.function);
                l.push(("condition".to_string(), format!("{condition:?}")));
                self.metrics
                    .async_destination_failures
                    .get_or_create(&l)
                    .inc();
                false
            }
        }
    }

    async fn decide(&self, ev: &ClaimedEvent) -> Decision {
        let started = now_ms();
        let system_failure = |outcome: &str, error_type: &str, message: String| Decision {
            attempt: Some(Attempt {
                started_ms: started,
                ended_ms: now_ms(),
                outcome: outcome.to_string(),
                error_type: Some(error_type.to_string()),
                error_message: Some(truncate(&message, KEPT_MESSAGE_CHARS)),
            }),
            settle: Settle::Retry {
                next_at_ms: now_ms() + self.backoff(ev.system_attempts),
                function_error: false,
            },
        };
        // An alias with a weighted second version picks one for this attempt.
        let resolved = self
            .functions
            .resolve(
                &ev.namespace,
                &ev.function,
                Some(&ev.qualifier),
                Some(rand::random::<f64>()),
            )
            .await;
        let rec = match resolved {
            // An event of a function deleted since (and perhaps created again under the
            // name) is not run: its events went with it, as on Lambda. An event queued
            // before incarnations were kept carries none.
            Ok(Some(rec)) if ev.incarnation.is_empty() || rec.incarnation == ev.incarnation => rec,
            Ok(_) => {
                return Decision {
                    attempt: Some(Attempt {
                        started_ms: started,
                        ended_ms: started,
                        outcome: "function_deleted".to_string(),
                        error_type: Some("ResourceNotFoundException".to_string()),
                        error_message: Some(format!("Function not found: {}", ev.function)),
                    }),
                    settle: Settle::Failed {
                        dead_letter: false,
                        response: None,
                    },
                };
            }
            Err(e) => return system_failure("store_error", "ServiceException", e.to_string()),
        };
        let settings = self.settings_of(ev).await;
        let account = account_of(&ev.namespace);
        let region = &self.functions.config().region;
        let qualified_arn = function_arn(region, &account, &ev.function, Some(&ev.qualifier));
        let expires_at = ev.enqueued_ms + i64::from(settings.max_age_s()) * 1000;
        if started >= expires_at {
            let delivered = match &settings.on_failure {
                Some(dest) => {
                    self.send(
                        ev,
                        dest,
                        RecordInput {
                            request_id: &ev.request_id,
                            function_arn: qualified_arn.clone(),
                            condition: Condition::EventAgeExceeded,
                            invoke_count: ev.function_attempts,
                            request_payload: &ev.payload,
                            response: None,
                            timestamp_ms: started,
                        },
                    )
                    .await
                }
                None => false,
            };
            return Decision {
                attempt: None,
                settle: Settle::Expired {
                    dead_letter: !delivered,
                },
            };
        }
        if ev.function_attempts == 0 && ev.system_attempts == 0 && !ev.lease_expired {
            self.metrics
                .async_enqueue_to_start_seconds
                .observe((started - ev.enqueued_ms).max(0) as f64 / 1000.0);
        }
        let invoked_arn = if ev.qualifier == "$LATEST" {
            function_arn(region, &account, &ev.function, None)
        } else {
            qualified_arn.clone()
        };
        let run = self
            .executor
            .execute(ExecutionRequest {
                rec,
                invoked_arn,
                request_id: ev.request_id.clone(),
                payload: bytes::Bytes::from(ev.payload.clone()),
                client_context: None,
            })
            .await;
        let run = match run {
            Ok(run) => run,
            Err(e) => {
                let (outcome, error_type) = match &e {
                    ExecutionError::Throttled(t) => ("throttled", t.reason()),
                    ExecutionError::UnknownRuntime { .. } => {
                        ("unknown_runtime", "InvalidRuntimeException")
                    }
                    ExecutionError::Launch(_) => ("launch_error", "ServiceException"),
                };
                let mut d = system_failure(outcome, error_type, e.to_string());
                if let Settle::Retry { next_at_ms, .. } = &mut d.settle {
                    // Past its age it is expired when next claimed, never run.
                    *next_at_ms = (*next_at_ms).min(expires_at);
                }
                return d;
            }
        };
        let attempt = Attempt {
            started_ms: started,
            ended_ms: now_ms(),
            outcome: run.outcome.label().to_string(),
            error_type: run
                .failed()
                .then(|| error_field(&run.payload, "errorType").or(run.error_type.clone()))
                .flatten(),
            error_message: run
                .failed()
                .then(|| error_field(&run.payload, "errorMessage"))
                .flatten(),
        };
        let invoke_count = ev.function_attempts + 1;
        let kept = (run.payload.len() <= KEPT_RESPONSE_BYTES).then(|| run.payload.to_vec());
        if !run.failed() {
            if let Some(dest) = &settings.on_success {
                self.send(
                    ev,
                    dest,
                    RecordInput {
                        request_id: &ev.request_id,
                        function_arn: qualified_arn,
                        condition: Condition::Success,
                        invoke_count,
                        request_payload: &ev.payload,
                        response: Some((&run.payload, None)),
                        timestamp_ms: now_ms(),
                    },
                )
                .await;
            }
            return Decision {
                attempt: Some(attempt),
                settle: Settle::Succeeded { response: kept },
            };
        }
        if ev.function_attempts < settings.max_retries() {
            // Lambda waits about a minute before the first retry and two before the
            // second.
            let delay = millis(self.settings.retry_delay) * i64::from(invoke_count);
            return Decision {
                attempt: Some(attempt),
                settle: Settle::Retry {
                    next_at_ms: (now_ms() + delay).min(expires_at),
                    function_error: true,
                },
            };
        }
        let delivered = match &settings.on_failure {
            Some(dest) => {
                self.send(
                    ev,
                    dest,
                    RecordInput {
                        request_id: &ev.request_id,
                        function_arn: qualified_arn,
                        condition: Condition::RetriesExhausted,
                        invoke_count,
                        request_payload: &ev.payload,
                        response: Some((&run.payload, Some("Unhandled"))),
                        timestamp_ms: now_ms(),
                    },
                )
                .await
            }
            None => false,
        };
        Decision {
            attempt: Some(attempt),
            settle: Settle::Failed {
                dead_letter: !delivered,
                response: kept,
            },
        }
    }

    /// The wait after the `failures`-th system failure: doubling from the configured
    /// first delay, at most 5 minutes, with up to 20% jitter so that a burst of
    /// throttled events does not come back at once.
    fn backoff(&self, failures: u32) -> i64 {
        let base = millis(self.settings.system_backoff).max(1);
        let d = base
            .saturating_mul(1_i64 << failures.min(20))
            .min(millis(MAX_BACKOFF));
        let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as i64;
        d + d * jitter / 5000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(namespace: &str, pending: u64) -> tern_store::QueueDepth {
        tern_store::QueueDepth {
            namespace: namespace.into(),
            pending,
            oldest_enqueued_ms: Some(0),
        }
    }

    #[test]
    fn a_namespace_alone_uses_every_slot_and_shares_them_once_others_wait() {
        let running: HashMap<String, usize> = [("a".to_string(), 256)].into();
        assert!(at_their_share(256, &[depth("a", 10_000)], &running).is_empty());
        // b has work waiting: a, running more than half, is skipped until b gets slots.
        let pending = [depth("a", 10_000), depth("b", 5)];
        assert_eq!(at_their_share(256, &pending, &running), ["a"]);
        let running: HashMap<String, usize> =
            [("a".to_string(), 100), ("b".to_string(), 128)].into();
        assert_eq!(at_their_share(256, &pending, &running), ["b"]);
        // With more namespaces than slots, each still gets one at a time.
        let many: Vec<_> = (0..10).map(|i| depth(&format!("n{i}"), 1)).collect();
        let running: HashMap<String, usize> = [("n0".to_string(), 1)].into();
        assert_eq!(at_their_share(4, &many, &running), ["n0"]);
    }
}
