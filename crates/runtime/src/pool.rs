//! The instance manager: per-function pools of warm instances, cold starts, keep-alive
//! and scale to zero.
//!
//! Instances are keyed by (namespace, function, revision); an update bumps the revision
//! so old instances are never reused. Idle instances are reused last-in-first-out (the
//! warmest first) and stopped after the keep-alive.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_sandbox::{LaunchSpec, Launcher, Resources};

use crate::bootstraps::{NODE_IN_SANDBOX, PYTHON_IN_SANDBOX};
use crate::catalog::{RuntimeCatalog, RuntimeKind};
use crate::instance::{Instance, StartError};
use crate::output::{LogConsumer, OutputLine};

/// Receives every output line of every instance with its namespace and function.
pub type LogRouter = Arc<dyn Fn(&str, &str, OutputLine) + Send + Sync>;

/// Settings of the instance manager (part of the server config).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub keep_alive: Duration,
    pub init_timeout: Duration,
    /// Server-wide cap on live instances.
    pub max_instances: usize,
    /// Smallest CPU share given to any instance, in thousandths of a core.
    pub cpu_floor_millis: u32,
    pub max_pids: u32,
    pub max_open_files: u32,
    pub max_output_per_invocation: u64,
    pub region: String,
    /// Directory with the installed bootstraps (shown at `/opt/tern`).
    pub bootstrap_dir: PathBuf,
}

/// What the manager needs to know about a function to start an instance.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub namespace: String,
    pub name: String,
    pub revision: u64,
    pub version: String,
    pub runtime: String,
    pub handler: String,
    pub memory_mb: u32,
    pub tmp_mb: u32,
    pub env: Vec<(String, String)>,
    pub code_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    namespace: String,
    name: String,
    revision: u64,
}

impl PoolKey {
    fn of(f: &FunctionSpec) -> Self {
        PoolKey {
            namespace: f.namespace.clone(),
            name: f.name.clone(),
            revision: f.revision,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("the runtime '{runtime}' is not available on this server; available: {available}")]
    UnknownRuntime { runtime: String, available: String },
    #[error("the server is at its limit of {0} instances")]
    AtCapacity(usize),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// An instance checked out for one request.
pub struct Lease {
    pub instance: Instance,
    key: PoolKey,
    /// Set when this request started the instance.
    pub cold: bool,
}

struct Idle {
    instance: Instance,
    since: Instant,
}

pub struct InstanceManager {
    config: PoolConfig,
    launcher: Arc<dyn Launcher>,
    catalog: RuntimeCatalog,
    logs: LogRouter,
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    live: AtomicUsize,
    next_id: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// CPU share for a memory size: 1 core per 1769 MB, never below the floor.
pub fn cpu_millis(memory_mb: u32, floor: u32) -> u32 {
    let proportional =
        (u64::from(memory_mb) * 1000 / u64::from(tern_core::limits::MB_PER_VCPU)) as u32;
    proportional.max(floor)
}

impl InstanceManager {
    pub fn new(
        config: PoolConfig,
        launcher: Arc<dyn Launcher>,
        catalog: RuntimeCatalog,
        logs: LogRouter,
    ) -> Arc<Self> {
        Arc::new(InstanceManager {
            config,
            launcher,
            catalog,
            logs,
            idle: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(0),
            next_id: AtomicUsize::new(0),
        })
    }

    pub fn catalog(&self) -> &RuntimeCatalog {
        &self.catalog
    }

    /// Live instances (idle and busy).
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Idle instances of one function (all revisions).
    pub fn idle_count(&self, namespace: &str, name: &str) -> usize {
        lock(&self.idle)
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.name == name)
            .map(|(_, v)| v.len())
            .sum()
    }

    /// A warm instance if one is idle, else a new one.
    pub async fn acquire(&self, f: &FunctionSpec) -> Result<Lease, AcquireError> {
        let key = PoolKey::of(f);
        loop {
            let warm = lock(&self.idle).get_mut(&key).and_then(Vec::pop);
            match warm {
                Some(idle) if idle.instance.has_exited() => self.retire(idle.instance).await,
                Some(idle) => {
                    return Ok(Lease {
                        instance: idle.instance,
                        key,
                        cold: false,
                    })
                }
                None => break,
            }
        }
        let kind =
            self.catalog
                .get(&f.runtime)
                .cloned()
                .ok_or_else(|| AcquireError::UnknownRuntime {
                    runtime: f.runtime.clone(),
                    available: self.catalog.ids().join(", "),
                })?;
        if self.live.fetch_add(1, Ordering::AcqRel) >= self.config.max_instances {
            // Make room by stopping idle instances of other functions before refusing.
            if self.evict_one_idle().await {
                // The evicted instance's slot is ours now.
            } else {
                self.live.fetch_sub(1, Ordering::AcqRel);
                return Err(AcquireError::AtCapacity(self.config.max_instances));
            }
        }
        let spec = self.launch_spec(f, &kind);
        let router = self.logs.clone();
        let (ns, name) = (f.namespace.clone(), f.name.clone());
        let consumer: LogConsumer = Arc::new(move |line| router(&ns, &name, line));
        match Instance::start(
            self.launcher.clone(),
            spec,
            self.config.init_timeout,
            consumer,
            self.config.max_output_per_invocation,
        )
        .await
        {
            Ok(instance) => {
                tracing::debug!(function = %f.name, instance = %instance.id, init_ms = instance.init_duration.as_millis() as u64, "instance started");
                Ok(Lease {
                    instance,
                    key,
                    cold: true,
                })
            }
            Err(e) => {
                self.live.fetch_sub(1, Ordering::AcqRel);
                Err(e.into())
            }
        }
    }

    /// Returns an instance after a request: back to the pool if it is still good.
    pub async fn release(&self, lease: Lease, reusable: bool) {
        if !reusable || lease.instance.has_exited() {
            self.retire(lease.instance).await;
            return;
        }
        lock(&self.idle).entry(lease.key).or_default().push(Idle {
            instance: lease.instance,
            since: Instant::now(),
        });
    }

    async fn retire(&self, instance: Instance) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        instance.destroy().await;
    }

    /// Stops the least recently used idle instance; true if one was stopped (its live
    /// slot is then kept by the caller).
    async fn evict_one_idle(&self) -> bool {
        let victim = {
            let mut idle = lock(&self.idle);
            let oldest = idle
                .iter()
                .filter_map(|(k, v)| v.first().map(|i| (k.clone(), i.since)))
                .min_by_key(|(_, since)| *since);
            oldest.and_then(|(k, _)| {
                let list = idle.get_mut(&k)?;
                let inst = list.remove(0);
                if list.is_empty() {
                    idle.remove(&k);
                }
                Some(inst)
            })
        };
        match victim {
            Some(v) => {
                v.instance.destroy().await;
                true
            }
            None => false,
        }
    }

    /// Stops idle instances of a function (after an update or delete).
    pub async fn drain_function(&self, namespace: &str, name: &str) {
        let drained: Vec<Idle> = {
            let mut idle = lock(&self.idle);
            let keys: Vec<PoolKey> = idle
                .keys()
                .filter(|k| k.namespace == namespace && k.name == name)
                .cloned()
                .collect();
            keys.into_iter()
                .flat_map(|k| idle.remove(&k).unwrap_or_default())
                .collect()
        };
        for i in drained {
            self.retire(i.instance).await;
        }
    }

    /// Stops idle instances older than the keep-alive.
    pub async fn reap_idle(&self) {
        let expired: Vec<Idle> = {
            let mut idle = lock(&self.idle);
            let ttl = self.config.keep_alive;
            let mut out = Vec::new();
            idle.retain(|_, list| {
                let (old, fresh): (Vec<Idle>, Vec<Idle>) = list
                    .drain(..)
                    .partition(|i| i.since.elapsed() >= ttl || i.instance.has_exited());
                out.extend(old);
                *list = fresh;
                !list.is_empty()
            });
            out
        };
        for i in expired {
            tracing::debug!(instance = %i.instance.id, "keep-alive expired");
            self.retire(i.instance).await;
        }
    }

    /// Runs the keep-alive reaper until the manager is dropped.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period =
            (self.config.keep_alive / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(mgr) = weak.upgrade() else { return };
                mgr.reap_idle().await;
            }
        });
    }

    /// Stops every idle instance (shutdown).
    pub async fn shutdown(&self) {
        let all: Vec<Idle> = lock(&self.idle).drain().flat_map(|(_, v)| v).collect();
        for i in all {
            self.retire(i.instance).await;
        }
    }

    fn launch_spec(&self, f: &FunctionSpec, kind: &RuntimeKind) -> LaunchSpec {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let instance_id = format!(
            "{}-{}-{n}",
            f.name.replace('_', "-"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let (program, args, extra) = match kind {
            RuntimeKind::Python { exe, prefix } => (
                exe.clone(),
                vec![PYTHON_IN_SANDBOX.to_string()],
                extra_tree(prefix),
            ),
            RuntimeKind::Node { exe, prefix } => (
                exe.clone(),
                vec![NODE_IN_SANDBOX.to_string()],
                extra_tree(prefix),
            ),
            RuntimeKind::Provided => (PathBuf::from("/var/task/bootstrap"), Vec::new(), Vec::new()),
        };
        let mut env = self.runtime_env(f, &instance_id);
        for (k, v) in &f.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        LaunchSpec {
            instance_id,
            program,
            args,
            env,
            code_dir: f.code_dir.clone(),
            bootstrap_dir: self.config.bootstrap_dir.clone(),
            extra_ro_paths: extra,
            resources: Resources {
                memory_mb: f.memory_mb,
                tmp_mb: f.tmp_mb,
                cpu_millis: cpu_millis(f.memory_mb, self.config.cpu_floor_millis),
                max_pids: self.config.max_pids,
                max_open_files: self.config.max_open_files,
            },
        }
    }

    /// The variables Lambda sets for every runtime.
    fn runtime_env(&self, f: &FunctionSpec, instance_id: &str) -> Vec<(String, String)> {
        let date = time::OffsetDateTime::now_utc().date();
        let stream = format!(
            "{:04}/{:02}/{:02}/[{}]{}",
            date.year(),
            u8::from(date.month()),
            date.day(),
            f.version,
            instance_id
        );
        let region = &self.config.region;
        [
            ("AWS_LAMBDA_FUNCTION_NAME", f.name.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", f.version.clone()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", f.name),
            ),
            ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_string()),
            ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", f.runtime)),
            ("AWS_REGION", region.clone()),
            ("AWS_DEFAULT_REGION", region.clone()),
            ("_HANDLER", f.handler.clone()),
            ("LAMBDA_TASK_ROOT", "/var/task".to_string()),
            ("LAMBDA_RUNTIME_DIR", "/opt/tern".to_string()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin".to_string()),
            ("LANG", "en_US.UTF-8".to_string()),
            ("TZ", ":UTC".to_string()),
            ("HOME", "/tmp".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Interpreter trees outside the system directories must be shown to the sandbox.
fn extra_tree(prefix: &std::path::Path) -> Vec<PathBuf> {
    const SYSTEM: &[&str] = &["/usr", "/bin", "/lib", "/lib64"];
    if SYSTEM.iter().any(|s| prefix.starts_with(s)) || prefix == std::path::Path::new("/") {
        Vec::new()
    } else {
        vec![prefix.to_path_buf()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_share_is_proportional_with_a_floor() {
        assert_eq!(cpu_millis(1769, 250), 1000);
        assert_eq!(cpu_millis(3538, 250), 2000);
        assert_eq!(cpu_millis(128, 250), 250);
    }

    #[test]
    fn system_interpreters_need_no_extra_mounts() {
        assert!(extra_tree(std::path::Path::new("/usr")).is_empty());
        assert_eq!(
            extra_tree(std::path::Path::new("/opt/py")),
            vec![PathBuf::from("/opt/py")]
        );
    }
}
