//! Pre-warmed instances: per (runtime, /tmp size) in use, complete sandboxes whose
//! runtime has started and loaded the bootstrap, waiting for a function's code.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PrewarmKey {
    pub(super) runtime: String,
    pub(super) tmp_mb: u32,
}

/// A pre-warmed instance waiting for a function.
pub(super) struct Ready {
    pub(super) instance: Instance,
    pub(super) owner: LogOwner,
    /// What it counts against the capacity (see [`super::Idle::charged`]).
    pub(super) charged: Claim,
}

#[derive(Default)]
pub(super) struct PrewarmPool {
    pub(super) ready: Vec<Ready>,
    pub(super) filling: bool,
    pub(super) last_wanted: Option<Instant>,
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
        if f.env.iter().any(|(k, _)| affects_startup(k)) {
            return None;
        }
        Some(PrewarmKey {
            runtime: f.runtime.clone(),
            tmp_mb: f.tmp_mb,
        })
    }

    /// Tops up a pre-warmed pool in the background (off the request path).
    pub(super) fn fill_prewarm(self: &Arc<Self>, key: &PrewarmKey, kind: &RuntimeKind) {
        {
            let mut pools = lock(&self.prewarmed);
            let pool = pools.entry(key.clone()).or_default();
            if pool.filling || pool.ready.len() >= self.config.prewarm_per_runtime {
                return;
            }
            pool.filling = true;
        }
        let mgr = self.clone();
        let (key, kind) = (key.clone(), kind.clone());
        tokio::spawn(async move { mgr.fill_prewarm_task(key, kind).await });
    }

    pub(super) async fn fill_prewarm_task(self: Arc<Self>, key: PrewarmKey, kind: RuntimeKind) {
        self.await_runtime_dir(&key.runtime, &kind).await;
        loop {
            let wanted = {
                let pools = lock(&self.prewarmed);
                pools.get(&key).is_some_and(|p| {
                    p.ready.len() < self.config.prewarm_per_runtime
                        && p.last_wanted
                            .is_some_and(|t| t.elapsed() < self.config.keep_alive)
                })
            };
            if !wanted || self.closed.load(Ordering::Acquire) {
                break;
            }
            // Requests come first: if every start slot is busy, or a request is waiting
            // for room, the reaper retries later.
            if self.short_of_room.load(Ordering::Acquire) > 0 {
                break;
            }
            let Ok(permit) = self.starts.clone().try_acquire_owned() else {
                break;
            };
            if !self.claim_capacity(Claim::prewarmed(&key), None).await {
                break;
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
            let spec = self.prewarm_spec(&key, &kind);
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
                    self.retire_prewarmed(instance, Claim::prewarmed(&key))
                        .await;
                    break;
                }
                Ok(instance) => {
                    let mut pools = lock(&self.prewarmed);
                    pools.entry(key.clone()).or_default().ready.push(Ready {
                        instance,
                        owner,
                        charged: Claim::prewarmed(&key),
                    });
                    drop(pools);
                    self.released.notify_waiters();
                }
                Err(e) => {
                    self.release_capacity(Claim::prewarmed(&key));
                    tracing::warn!(runtime = %key.runtime, error = %e, "could not pre-warm an instance");
                    break;
                }
            }
        }
        if let Some(pool) = lock(&self.prewarmed).get_mut(&key) {
            pool.filling = false;
        }
    }

    /// Refills pools still in use and stops those unused for the keep-alive.
    pub(super) async fn tend_prewarmed(self: &Arc<Self>) {
        let mut stale = Vec::new();
        let mut refill = Vec::new();
        {
            let mut pools = lock(&self.prewarmed);
            pools.retain(|key, pool| {
                let used = pool
                    .last_wanted
                    .is_some_and(|t| t.elapsed() < self.config.keep_alive);
                if used {
                    refill.push(key.clone());
                    return true;
                }
                stale.append(&mut pool.ready);
                pool.filling
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
            // Pre-warmed instances go to any namespace: never from a (per-namespace)
            // zygote.
            zygote: None,
        }
    }

    /// An empty directory shown at `/var/task` until a pre-warmed instance gets its code.
    pub(super) fn empty_code_dir(&self) -> PathBuf {
        self.config.bootstrap_dir.join("empty-task")
    }
}
