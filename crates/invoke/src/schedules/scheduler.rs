//! The scheduler: one task per server that fires due slots into the async queue.
//!
//! It sleeps until the earliest next slot of any schedule (an indexed store query), at
//! most [`POLL_MAX`] (schedules made through other servers on the same PostgreSQL
//! database), or until a schedule changes here. Each slot is one store transaction
//! that moves the schedule on by compare-and-set and enqueues the slot's event
//! ([`tern_store::Store::advance_schedule`]): a crash leaves both or neither, and of
//! several servers only one wins a slot. The event then takes the async path
//! (dispatcher, retries, destinations, DLQ) like any `Event` invoke.
//!
//! Slots missed (the server was down, or the store failed for a while): those older
//! than the grace window are skipped in one step with a log line; of those inside it,
//! the newest `catch_up_max` fire once each, in order, and older ones are skipped with
//! a log line, so a `rate(1 second)` schedule down for minutes does not flood.

use std::sync::Arc;
use std::time::Duration;

use tern_core::function::LATEST;
use tern_core::names::account_of;
use tern_core::schedule::ScheduleRecord;
use tern_store::{ScheduleAdvance, StoreError, StoreHandle, StoredSchedule};
use tern_telemetry::Metrics;
use tokio::sync::Notify;

use super::event::{payload, slot_time};
use super::expression::Expression;
use crate::events::{EventQueue, IDEMPOTENCY_WINDOW_MS};
use crate::now_ms;

/// Due schedules read in one store call at most.
const BATCH: usize = 64;
/// The longest sleep: other servers' new schedules are seen within it.
const POLL_MAX: Duration = Duration::from_secs(5);
/// Backoff after a store error, doubling up to the most.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Missed slots older than this are skipped, not fired.
    pub grace: Duration,
    /// Missed slots inside the grace window fired at most, per schedule and pass (≥ 1).
    pub catch_up_max: usize,
    /// Schedules one namespace may hold at most: each fires into the async queue past
    /// its per-namespace bound, so their number is what bounds a tenant's slots.
    pub max_per_namespace: usize,
    /// The region in ARNs and the default event.
    pub region: String,
}

pub struct Scheduler {
    store: StoreHandle,
    /// The functions' records, for the incarnation an event is queued for.
    registry: Arc<crate::Registry>,
    queue: Arc<EventQueue>,
    metrics: Arc<Metrics>,
    settings: SchedulerSettings,
    /// Wakes the loop when a schedule changes on this server.
    changed: Notify,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The `outcome` label values of `tern_schedule_slots_total`.
const OUTCOMES: [&str; 2] = ["fired", "skipped"];

fn slot_labels(namespace: &str, name: &str, outcome: &str) -> Vec<(String, String)> {
    vec![
        ("namespace".to_string(), namespace.to_string()),
        ("schedule".to_string(), name.to_string()),
        ("outcome".to_string(), outcome.to_string()),
    ]
}

/// A rate's slots are counted from the schedule's creation, on a whole second.
pub fn anchor_of(created_ms: i64) -> i64 {
    created_ms - created_ms.rem_euclid(1000)
}

impl Scheduler {
    pub fn new(
        store: StoreHandle,
        registry: Arc<crate::Registry>,
        queue: Arc<EventQueue>,
        metrics: Arc<Metrics>,
        settings: SchedulerSettings,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            store,
            registry,
            queue,
            metrics,
            settings,
            changed: Notify::new(),
        })
    }

    pub fn settings(&self) -> &SchedulerSettings {
        &self.settings
    }

    /// A schedule changed: look at the store again now.
    pub fn wake(&self) {
        self.changed.notify_one();
    }

    /// Starts the loop on the current runtime.
    pub fn start(self: &Arc<Self>) {
        let scheduler = self.clone();
        tokio::spawn(async move { scheduler.run().await });
    }

    async fn run(&self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let sleep = match self.pass().await {
                Ok(earliest) => {
                    backoff = BACKOFF_MIN;
                    let until = earliest.map_or(POLL_MAX, |at| {
                        Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
                    });
                    until.min(POLL_MAX)
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "scheduler: store error");
                    let wait = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    wait
                }
            };
            if sleep.is_zero() {
                continue;
            }
            tokio::select! {
                () = self.changed.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    async fn pass(&self) -> Result<Option<i64>, StoreError> {
        self.pass_at(now_ms()).await
    }

    /// Fires what is due at `now`; returns the earliest slot still to come.
    async fn pass_at(&self, now: i64) -> Result<Option<i64>, StoreError> {
        let due = self
            .store
            .call(move |s| s.due_schedules(now, BATCH))
            .await?;
        let full = due.len() == BATCH;
        let mut fired = 0;
        for schedule in due {
            fired += self.fire_due(schedule, now).await?;
        }
        if fired > 0 {
            self.queue.wake();
        }
        let earliest = if full {
            Some(now)
        } else {
            self.store.call(|s| s.earliest_schedule_slot()).await?
        };
        // Still due and nothing fired: another server holds it, or its stored state is
        // one no step can move. Look again shortly rather than at once (no busy loop).
        Ok(earliest.map(|at| {
            if at <= now && fired == 0 {
                now + millis(BACKOFF_MIN)
            } else {
                at
            }
        }))
    }

    /// Fires (or skips) the due slots of one schedule up to `now`; returns how many
    /// fired. Stops at the first step another server won: it goes on from there.
    async fn fire_due(&self, schedule: StoredSchedule, now: i64) -> Result<usize, StoreError> {
        let rec = schedule.record;
        let Some(mut from) = schedule.next_slot_ms else {
            return Ok(0);
        };
        let step = |from_slot_ms, last_slot_ms, next_slot_ms, event| ScheduleAdvance {
            namespace: rec.namespace.clone(),
            name: rec.name.clone(),
            from_slot_ms,
            last_slot_ms,
            next_slot_ms,
            event,
        };
        let expr = match Expression::parse(&rec.expression, rec.timezone.as_deref()) {
            Ok(expr) => expr,
            Err(e) => {
                // Stored before a rule changed: stop it rather than retry forever.
                tracing::error!(schedule = %rec.name, namespace = %rec.namespace, error = %e,
                    "schedule expression no longer parses; the schedule stops");
                self.advance(step(from, from, None, None)).await?;
                return Ok(0);
            }
        };
        // The target as it is now: its incarnation goes with each event. A version or
        // alias deleted since (a deleted function takes its schedules with it) stops
        // the schedule, with one line, rather than queue an event per slot that can
        // only fail: a `rate(1 second)` would add 86,400 dead events a day.
        let target = self
            .registry
            .resolve(
                &rec.namespace,
                &rec.function,
                rec.qualifier.as_deref(),
                None,
            )
            .await
            .map_err(|e| StoreError::Database(Box::new(e)))?;
        let Some(target) = target else {
            if self.advance(step(from, from, None, None)).await? {
                tracing::warn!(schedule = %rec.name, namespace = %rec.namespace,
                    function = %rec.function, qualifier = ?rec.qualifier,
                    "the schedule's target no longer exists; the schedule stops (pause and resume it once the target exists again)");
            }
            return Ok(0);
        };
        let incarnation = target.incarnation.clone();
        let anchor = anchor_of(rec.created_ms);

        let cutoff = now - millis(self.settings.grace);
        if from < cutoff {
            // Counting up to 100,000 cron slots takes a while: off the runtime's threads.
            let counting = expr.clone();
            let skipped =
                tokio::task::spawn_blocking(move || counting.skip_before(anchor, from, cutoff))
                    .await
                    .map_err(|e| StoreError::Database(Box::new(e)))?;
            if !self
                .advance(step(from, skipped.last_ms, skipped.next_ms, None))
                .await?
            {
                return Ok(0);
            }
            tracing::warn!(
                schedule = %rec.name,
                namespace = %rec.namespace,
                skipped = skipped.count,
                at_least = skipped.capped,
                first_slot = %slot_time(from),
                last_slot = %slot_time(skipped.last_ms),
                grace_secs = self.settings.grace.as_secs(),
                "schedule slots missed beyond the grace window were skipped"
            );
            self.count(&rec, "skipped", skipped.count);
            match skipped.next_ms {
                Some(next) if next <= now => from = next,
                _ => return Ok(0),
            }
        }

        // The slots inside the window, bounded by the window itself.
        let mut due = vec![from];
        while let Some(next) = due
            .last()
            .and_then(|last| expr.next_after(anchor, *last))
            .filter(|next| *next <= now)
        {
            due.push(next);
        }
        if due.len() > self.settings.catch_up_max {
            let keep = due.len() - self.settings.catch_up_max;
            let (old, rest) = due.split_at(keep);
            let last = old[old.len() - 1];
            if !self.advance(step(from, last, Some(rest[0]), None)).await? {
                return Ok(0);
            }
            tracing::warn!(
                schedule = %rec.name,
                namespace = %rec.namespace,
                skipped = old.len(),
                first_slot = %slot_time(old[0]),
                last_slot = %slot_time(last),
                catch_up_max = self.settings.catch_up_max,
                "more missed slots inside the grace window than schedules.catch_up_max; the oldest were skipped"
            );
            self.count(&rec, "skipped", old.len() as u64);
            due.drain(..keep);
        }

        let account = account_of(&rec.namespace);
        let mut fired = 0;
        let mut full = Vec::new();
        for (i, &slot) in due.iter().enumerate() {
            let next = due
                .get(i + 1)
                .copied()
                .or_else(|| expr.next_after(anchor, slot));
            // The namespace's queue bound holds for slots too: a schedule on a function
            // that cannot keep up skips slots rather than grow the queue without end.
            if self.queue.is_full(&rec.namespace) {
                if !self.advance(step(slot, slot, next, None)).await? {
                    break;
                }
                self.count(&rec, "skipped", 1);
                full.push(slot);
                continue;
            }
            let event = tern_store::NewEvent {
                request_id: uuid::Uuid::new_v4().to_string(),
                namespace: rec.namespace.clone(),
                function: rec.function.clone(),
                qualifier: rec.qualifier.clone().unwrap_or_else(|| LATEST.to_string()),
                payload: payload(&rec, slot, &self.settings.region, &account),
                enqueued_ms: now_ms(),
                incarnation: incarnation.clone(),
                // A second guard: one event per (schedule, slot) even if the state
                // check were ever bypassed.
                idempotency_key: Some(format!("schedule:{}:{slot}", rec.name)),
            };
            let request_id = event.request_id.clone();
            let enqueued_ms = event.enqueued_ms;
            if !self.advance(step(slot, slot, next, Some(event))).await? {
                break;
            }
            self.queue.counted(&rec.namespace, enqueued_ms);
            fired += 1;
            self.count(&rec, "fired", 1);
            tracing::info!(schedule = %rec.name, namespace = %rec.namespace,
                function = %rec.function, slot = %slot_time(slot), %request_id,
                late_ms = now - slot, "schedule fired");
        }
        if let (Some(first), Some(last)) = (full.first(), full.last()) {
            tracing::warn!(schedule = %rec.name, namespace = %rec.namespace,
                skipped = full.len(), first_slot = %slot_time(*first), last_slot = %slot_time(*last),
                bound = self.queue.bound(),
                "the namespace's async queue is full (async.max_queued_per_namespace); schedule slots were skipped");
        }
        Ok(fired)
    }

    fn count(&self, rec: &ScheduleRecord, outcome: &str, n: u64) {
        let labels = slot_labels(&rec.namespace, &rec.name, outcome);
        self.metrics.schedule_slots.get_or_create(&labels).inc_by(n);
    }

    /// Drops a deleted schedule's series, so creating and deleting schedules under new
    /// names does not grow the metrics without bound.
    pub fn forget(&self, namespace: &str, name: &str) {
        for outcome in OUTCOMES {
            self.metrics
                .schedule_slots
                .remove(&slot_labels(namespace, name, outcome));
        }
    }

    async fn advance(&self, step: ScheduleAdvance) -> Result<bool, StoreError> {
        let since = now_ms() - IDEMPOTENCY_WINDOW_MS;
        self.store
            .call(move |s| s.advance_schedule(&step, since))
            .await
    }
}

#[cfg(test)]
mod tests {
    use tern_store::{SqliteStore, Store};

    use super::*;

    const SECOND: i64 = 1_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: StoreHandle,
        scheduler: Arc<Scheduler>,
    }

    fn fixture(grace_secs: u64, catch_up_max: usize) -> Fixture {
        fixture_bounded(grace_secs, catch_up_max, 1_000_000)
    }

    fn fixture_bounded(grace_secs: u64, catch_up_max: usize, queue_bound: u64) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StoreHandle::new(
            Arc::new(SqliteStore::open(&dir.path().join("db")).expect("store")),
            1,
        )
        .expect("store handle");
        function_f(store.blocking());
        let queue = EventQueue::start(store.clone(), queue_bound);
        let scheduler = Scheduler::new(
            store.clone(),
            Arc::new(crate::Registry::new(store.clone())),
            queue,
            Arc::new(Metrics::new()),
            SchedulerSettings {
                grace: Duration::from_secs(grace_secs),
                catch_up_max,
                max_per_namespace: 100,
                region: "us-east-1".into(),
            },
        );
        Fixture {
            _dir: dir,
            store,
            scheduler,
        }
    }

    /// A `rate(1 second)` schedule created at 0: its slots are 1 s, 2 s, …
    fn every_second(store: &dyn Store) {
        tick(store, None);
    }

    /// Function `f`, the target of the schedules here.
    fn function_f(store: &dyn Store) {
        store
            .create_function(&tern_core::function::FunctionRecord {
                network: Default::default(),
                call_tern: false,
                networks: Vec::new(),
                namespace: "default".into(),
                name: "f".into(),
                runtime: "python3.11".into(),
                handler: "app.handler".into(),
                role: String::new(),
                description: String::new(),
                memory_mb: 128,
                timeout_s: 3,
                tmp_mb: 512,
                env: Default::default(),
                architectures: vec!["x86_64".into()],
                tags: Default::default(),
                code: tern_core::function::CodeRef {
                    sha256_hex: "ab".into(),
                    sha256_b64: "q=".into(),
                    size: 1,
                    unzipped_size: 0,
                },
                layers: Vec::new(),
                logging: Default::default(),
                tracing_mode: "PassThrough".into(),
                snap_start: false,
                version: LATEST.to_string(),
                incarnation: "i1".into(),
                revision_id: "r1".into(),
                revision: 1,
                last_modified_ms: 0,
            })
            .expect("create function");
    }

    /// Schedule `tick`: `rate(1 second)` on `f` (or `f:<qualifier>`) from 1 s.
    fn tick(store: &dyn Store, qualifier: Option<&str>) {
        store
            .create_schedule(&StoredSchedule {
                record: ScheduleRecord {
                    namespace: "default".into(),
                    name: "tick".into(),
                    function: "f".into(),
                    qualifier: qualifier.map(str::to_string),
                    expression: "rate(1 second)".into(),
                    timezone: None,
                    payload: None,
                    enabled: true,
                    created_ms: 0,
                    last_modified_ms: 0,
                },
                next_slot_ms: Some(SECOND),
                last_slot_ms: None,
            })
            .expect("create");
    }

    fn state(store: &dyn Store) -> (Option<i64>, Option<i64>) {
        let s = store
            .get_schedule("default", "tick")
            .expect("get")
            .expect("stored");
        (s.last_slot_ms, s.next_slot_ms)
    }

    fn pending(store: &dyn Store) -> u64 {
        store
            .queue_depths()
            .expect("depths")
            .iter()
            .map(|d| d.pending)
            .sum()
    }

    #[tokio::test]
    async fn a_pass_on_time_fires_the_due_slot_once() {
        let f = fixture(300, 60);
        every_second(f.store.blocking());
        assert_eq!(
            f.scheduler.pass_at(SECOND - 1).await.expect("pass"),
            Some(SECOND)
        );
        assert_eq!(pending(f.store.blocking()), 0, "not due yet");
        assert_eq!(
            f.scheduler.pass_at(SECOND + 5).await.expect("pass"),
            Some(2 * SECOND)
        );
        assert_eq!(pending(f.store.blocking()), 1);
        assert_eq!(
            f.scheduler.pass_at(SECOND + 5).await.expect("pass"),
            Some(2 * SECOND)
        );
        assert_eq!(pending(f.store.blocking()), 1, "a slot fires once");
        assert_eq!(state(f.store.blocking()), (Some(SECOND), Some(2 * SECOND)));
    }

    #[tokio::test]
    async fn a_late_pass_skips_beyond_the_grace_window_and_caps_the_catch_up() {
        let f = fixture(10, 5);
        every_second(f.store.blocking());
        // Back at 100 s: slots 1..=89 s are older than the 10 s grace window (skipped),
        // 90..=100 s are inside it, of which the newest 5 fire.
        f.scheduler.pass_at(100 * SECOND).await.expect("pass");
        assert_eq!(pending(f.store.blocking()), 5);
        assert_eq!(
            state(f.store.blocking()),
            (Some(100 * SECOND), Some(101 * SECOND))
        );
        let fired: Vec<i64> = f
            .store
            .blocking()
            .list_schedules("default")
            .expect("list")
            .iter()
            .filter_map(|s| s.last_slot_ms)
            .collect();
        assert_eq!(fired, [100 * SECOND]);
        f.scheduler.pass_at(100 * SECOND).await.expect("pass");
        assert_eq!(pending(f.store.blocking()), 5, "nothing fires twice");
        let text = f.scheduler.metrics.render();
        for (outcome, n) in [("fired", 5), ("skipped", 95)] {
            let line = format!(
                "tern_schedule_slots_total{{namespace=\"default\",schedule=\"tick\",outcome=\"{outcome}\"}} {n}"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        f.scheduler.forget("default", "tick");
        let text = f.scheduler.metrics.render();
        assert!(!text.contains("schedule=\"tick\""), "{text}");
    }

    #[tokio::test]
    async fn slots_past_the_namespaces_queue_bound_are_skipped_not_queued() {
        let f = fixture_bounded(300, 60, 2);
        every_second(f.store.blocking());
        f.scheduler.pass_at(4 * SECOND + 500).await.expect("pass");
        assert_eq!(
            pending(f.store.blocking()),
            2,
            "1 and 2 s fire, 3 and 4 s do not"
        );
        assert_eq!(
            state(f.store.blocking()),
            (Some(4 * SECOND), Some(5 * SECOND)),
            "skipped slots are passed"
        );
        f.scheduler.pass_at(5 * SECOND + 500).await.expect("pass");
        assert_eq!(pending(f.store.blocking()), 2, "still full");
    }

    #[tokio::test]
    async fn a_schedule_whose_alias_is_gone_stops_instead_of_firing_dead_events() {
        let f = fixture(300, 60);
        tick(f.store.blocking(), Some("gone"));
        assert_eq!(f.scheduler.pass_at(3 * SECOND).await.expect("pass"), None);
        assert_eq!(
            pending(f.store.blocking()),
            0,
            "no event for a missing target"
        );
        assert_eq!(state(f.store.blocking()), (Some(SECOND), None), "stopped");
        f.scheduler.pass_at(10 * SECOND).await.expect("pass");
        assert_eq!(pending(f.store.blocking()), 0);
    }

    #[tokio::test]
    async fn a_late_pass_inside_the_window_fires_every_missed_slot() {
        let f = fixture(300, 60);
        every_second(f.store.blocking());
        f.scheduler.pass_at(4 * SECOND + 500).await.expect("pass");
        assert_eq!(pending(f.store.blocking()), 4, "1, 2, 3 and 4 s");
        assert_eq!(
            state(f.store.blocking()),
            (Some(4 * SECOND), Some(5 * SECOND))
        );
    }
}
