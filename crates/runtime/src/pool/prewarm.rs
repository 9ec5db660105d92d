//! Pre-warmed instances: per (runtime, /tmp size) in use, complete sandboxes whose
//! runtime has started and loaded the bootstrap, waiting for a function's code.
//!
//! Each pool's depth follows demand: it keeps as many as cold starts asked for in the
//! last second (a new or changed function counts as one to come), never fewer than
//! `prewarm_per_runtime` nor more than `prewarm_max_per_runtime`. Refills run in the
//! background, on at most half the start slots (one at a time on a CPU-saturated
//! machine), and stop while a request waits for room: requests come first.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_sandbox::{LaunchSpec, Resources};

use super::capacity::{Claim, Eviction};
use super::{lock, FunctionSpec, InstanceManager, LogOwner};
use crate::catalog::RuntimeKind;
use crate::instance::Instance;
use crate::output::{LogConsumer, OutputLine};

/// MemorySize a pre-warmed instance starts with (raised when it gets its function).
pub(super) const PREWARM_MEMORY_MB: u32 = 128;

/// Function environment variables that change how an interpreter starts; a function
/// setting any of them gets a fresh runtime instead of a pre-warmed one.
pub(super) fn affects_startup(key: &str) -> bool {
    const PREFIXES: &[&str] = &["PYTHON", "NODE_", "LD_", "LC_", "MALLOC_", "GLIBC_"];
    const KEYS: &[&str] = &["PATH", "HOME", "LANG", "TZ", "UV_THREADPOOL_SIZE", "TMPDIR"];
    PREFIXES.iter().any(|p| key.starts_with(p)) || KEYS.contains(&key)
}

/// The shape of a pre-warmed instance: what must match for it to serve a function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PrewarmKey {
    pub(super) runtime: String,
    pub(super) tmp_mb: u32,
    /// The namespace whose zygote forks its runtime, where one does (Python): a zygote
    /// serves one namespace, and a fork costs a fraction of an interpreter's start, so
    /// the pool refills several times faster. `None`: any namespace (an exec'd runtime).
    pub(super) namespace: Option<String>,
}

/// A pre-warmed instance waiting for a function.
pub(super) struct Ready {
    pub(super) instance: Instance,
    pub(super) owner: LogOwner,
    /// What it counts against the capacity (see [`super::Idle::charged`]).
    pub(super) charged: Claim,
}

/// The window over which cold starts' demand for a pool is counted.
const DEMAND_WINDOW: Duration = Duration::from_secs(1);
/// A pool above its floor gives its extra instances back once nothing asked for one for
/// this long.
const TRIM_AFTER: Duration = Duration::from_secs(30);

#[derive(Default)]
pub(super) struct PrewarmPool {
    pub(super) ready: Vec<Ready>,
    /// Starts under way to refill it.
    pub(super) filling: usize,
    pub(super) last_wanted: Option<Instant>,
    /// When cold starts (or new functions) asked for an instance, within the window.
    wants: VecDeque<Instant>,
}

impl PrewarmPool {
    /// Notes that a cold start (or a new function's first, to come) wants an instance.
    pub(super) fn want(&mut self, now: Instant) {
        self.last_wanted = Some(now);
        self.wants.push_back(now);
        self.forget_old_wants(now);
    }

    fn forget_old_wants(&mut self, now: Instant) {
        while self
            .wants
            .front()
            .is_some_and(|t| now.duration_since(*t) > DEMAND_WINDOW)
        {
            self.wants.pop_front();
        }
    }

    /// How many instances to keep ready: the demand of the last window, within bounds.
    fn target(&mut self, floor: usize, ceiling: usize, now: Instant) -> usize {
        self.forget_old_wants(now);
        self.wants.len().clamp(floor, ceiling.max(floor))
    }
}

impl InstanceManager {
    /// Pre-warmed instances waiting for a function.
    pub fn prewarmed_count(&self) -> usize {
        lock(&self.prewarmed).values().map(|p| p.ready.len()).sum()
    }

    /// Which pre-warmed pool could serve `f`, if any.
    pub(super) fn prewarm_key(&self, f: &FunctionSpec, kind: &RuntimeKind) -> Option<PrewarmKey> {
        if self.config.prewarm_per_runtime == 0 || !self.launcher.supports_prewarm() {
            return None;
        }
        if !matches!(kind, RuntimeKind::Python { .. } | RuntimeKind::Node { .. }) {
            return None;
        }
        // A pre-warmed runtime would run a template function's init on the request
        // path: its starts are the launcher's (from the template once it is ready).
        if f.snap_start || f.env.iter().any(|(k, _)| affects_startup(k)) {
            return None;
        }
        Some(PrewarmKey {
            runtime: f.runtime.clone(),
            tmp_mb: f.tmp_mb,
            namespace: self.zygote_spec(f, kind).map(|z| z.key),
        })
    }

    /// Starts as many refills of a pre-warmed pool as it lacks, in the background (off
    /// the request path), up to [`InstanceManager::refill_parallelism`] at once.
    pub(super) fn fill_prewarm(self: &Arc<Self>, key: &PrewarmKey, kind: &RuntimeKind) {
        if self.closed.load(Ordering::Acquire) || self.host_memory_short.load(Ordering::Acquire) {
            return;
        }
        let parallel = self.refill_parallelism();
        loop {
            {
                let mut pools = lock(&self.prewarmed);
                let pool = pools.entry(key.clone()).or_default();
                let now = Instant::now();
                let in_use = pool
                    .last_wanted
                    .is_some_and(|t| now.duration_since(t) < self.config.keep_alive);
                let target = pool.target(
                    self.config.prewarm_per_runtime,
                    self.config.prewarm_max_per_runtime,
                    now,
                );
                // The bound on refills is the server's, over every pool (one per Python
                // namespace): requests keep the other start slots.
                if !in_use
                    || pool.ready.len() + pool.filling >= target
                    || self.refilling.load(Ordering::Acquire) >= parallel
                {
                    return;
                }
                pool.filling += 1;
                self.refilling.fetch_add(1, Ordering::AcqRel);
            }
            let mgr = self.clone();
            let (key, kind) = (key.clone(), kind.clone());
            tokio::spawn(async move {
                let refilled = mgr.refill_one(&key, &kind).await;
                if let Some(pool) = lock(&mgr.prewarmed).get_mut(&key) {
                    pool.filling = pool.filling.saturating_sub(1);
                }
                mgr.refilling.fetch_sub(1, Ordering::AcqRel);
                // One more may be wanted; after a refusal the reaper retries later.
                if refilled {
                    mgr.fill_prewarm(&key, &kind);
                }
            });
        }
    }

    /// Refills at once, over every pool: half the start slots (at least one) on a
    /// machine with CPU to spare, one on a saturated machine.
    pub(super) fn refill_parallelism(&self) -> usize {
        if self.load.saturated(self.config.saturated_cpu_percent) {
            1
        } else {
            (self.config.max_concurrent_starts / 2).max(1)
        }
    }

    /// Starts one pre-warmed instance of `key`; false if it did not (requests waiting,
    /// no start slot or no room, a failure, shutdown).
    async fn refill_one(self: &Arc<Self>, key: &PrewarmKey, kind: &RuntimeKind) -> bool {
        self.await_runtime_dir(&key.runtime, kind).await;
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        // Requests come first: if every start slot is busy, or a request is waiting
        // for room, the reaper retries later.
        if self.short_of_room.load(Ordering::Acquire) > 0 {
            return false;
        }
        let Ok(permit) = self.starts.clone().try_acquire_owned() else {
            return false;
        };
        if !self.claim_capacity(Claim::prewarmed(key), None).await {
            return false;
        }
        let owner: LogOwner = Arc::new(Mutex::new(None));
        let consumer: LogConsumer = {
            let owner = owner.clone();
            let router = self.logs.clone();
            Arc::new(move |line: OutputLine| match lock(&owner).clone() {
                Some((ns, name)) => router(&ns, &name, line),
                None => tracing::debug!(line = %line.line, "pre-warmed runtime output"),
            })
        };
        let spec = self.prewarm_spec(key, kind);
        let started = Instance::prewarm(
            self.launcher.clone(),
            spec,
            self.config.init_timeout,
            consumer,
            self.config.max_output_per_invocation,
        )
        .await;
        drop(permit);
        match started {
            Ok(instance) if self.closed.load(Ordering::Acquire) => {
                self.retire_prewarmed(instance, Claim::prewarmed(key)).await;
                false
            }
            Ok(instance) => {
                let mut pools = lock(&self.prewarmed);
                // Shutdown drains the pools under this lock: after it, stop this one.
                if self.closed.load(Ordering::Acquire) {
                    drop(pools);
                    self.retire_prewarmed(instance, Claim::prewarmed(key)).await;
                    return false;
                }
                pools.entry(key.clone()).or_default().ready.push(Ready {
                    instance,
                    owner,
                    charged: Claim::prewarmed(key),
                });
                drop(pools);
                self.released.notify_waiters();
                true
            }
            Err(e) => {
                self.release_capacity(Claim::prewarmed(key));
                tracing::warn!(runtime = %key.runtime, error = %e, "could not pre-warm an instance");
                false
            }
        }
    }

    /// Refills pools still in use, gives back what a pool holds above its floor once
    /// nothing asked for it for a while, and stops pools unused for the keep-alive.
    pub(super) async fn tend_prewarmed(self: &Arc<Self>) {
        let mut stale = Vec::new();
        let mut refill = Vec::new();
        {
            let mut pools = lock(&self.prewarmed);
            let floor = self.config.prewarm_per_runtime;
            pools.retain(|key, pool| {
                let since = pool.last_wanted.map(|t| t.elapsed());
                if since.is_some_and(|s| s < self.config.keep_alive) {
                    if since.is_some_and(|s| s >= TRIM_AFTER) && pool.ready.len() > floor {
                        // The oldest go first: the newest are the warmest.
                        let extra = pool.ready.len() - floor;
                        stale.extend(pool.ready.drain(..extra));
                    }
                    refill.push(key.clone());
                    return true;
                }
                stale.append(&mut pool.ready);
                pool.filling > 0
            });
        }
        for ready in stale {
            self.retire_prewarmed(ready.instance, ready.charged).await;
        }
        for key in refill {
            if let Some(kind) = self.catalog.get(&key.runtime).cloned() {
                self.fill_prewarm(&key, &kind);
            }
        }
    }

    pub(super) async fn retire_prewarmed(&self, instance: Instance, claim: Claim) {
        instance.destroy().await;
        self.release_capacity(claim);
        self.released.notify_waiters();
    }

    /// Stops one pre-warmed instance to make room; true if there was one.
    pub(super) async fn evict_one_prewarmed(&self, why: Eviction) -> bool {
        let victim = lock(&self.prewarmed)
            .values_mut()
            .find_map(|p| p.ready.pop());
        match victim {
            Some(ready) => {
                tracing::info!(instance = %ready.instance.id, reason = why.label(), "evicting a pre-warmed instance");
                self.evictions[why as usize].fetch_add(1, Ordering::Relaxed);
                self.retire_prewarmed(ready.instance, ready.charged).await;
                true
            }
            None => false,
        }
    }

    pub(super) fn prewarm_spec(&self, key: &PrewarmKey, kind: &RuntimeKind) -> LaunchSpec {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let instance_id = format!(
            "pw-{}-{}-{n}",
            key.runtime.replace(['.', '_'], "-"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let program = self.program(&key.runtime, kind);
        let mut env = self.base_env(&key.runtime);
        env.push(("TERN_PREWARM".to_string(), "1".to_string()));
        LaunchSpec {
            instance_id,
            program: program.exe,
            args: program.args,
            env,
            code_dir: self.empty_code_dir(),
            bootstrap_dir: self.config.bootstrap_dir.clone(),
            layer_dirs: Vec::new(),
            runtime_dir: program.runtime_dir,
            extra_ro_paths: program.extra_ro_paths,
            // A full CPU while it starts (in the background, behind requests for start
            // slots): a quarter of one made each refill take ~4x as long. Assignment
            // sets the function's own share.
            resources: Resources {
                cpu_millis: 1000,
                ..self.resources(PREWARM_MEMORY_MB, key.tmp_mb)
            },
            // Forked by its namespace's zygote where the key names one.
            zygote: key
                .namespace
                .as_ref()
                .map(|ns| self.zygote_of(ns, &key.runtime)),
            template: None,
        }
    }

    /// An empty directory shown at `/var/task` until a pre-warmed instance gets its code.
    pub(super) fn empty_code_dir(&self) -> PathBuf {
        self.config.bootstrap_dir.join("empty-task")
    }
}
