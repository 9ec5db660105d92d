//! What an instance is launched with: its limits, program, environment (Lambda's
//! variables and the function's own) and the shape of its sandbox.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tern_sandbox::{LaunchSpec, Resources, TemplateSpec, ZygoteSpec, ZYGOTE_PYTHON_FLAGS};

use super::{FunctionSpec, InstanceManager};
use crate::bootstraps::{NODE_IN_SANDBOX, PYTHON_IN_SANDBOX};
use crate::catalog::RuntimeKind;
use crate::instance::StartBoost;

/// Function environment variables that change how an interpreter starts: a function
/// setting any of them gets a runtime started for it, neither forked by a zygote nor
/// started ahead of time.
pub(super) fn affects_startup(key: &str) -> bool {
    const PREFIXES: &[&str] = &["PYTHON", "NODE_", "LD_", "LC_", "MALLOC_", "GLIBC_"];
    const KEYS: &[&str] = &["PATH", "HOME", "LANG", "TZ", "UV_THREADPOOL_SIZE", "TMPDIR"];
    PREFIXES.iter().any(|p| key.starts_with(p)) || KEYS.contains(&key)
}

/// CPU share for a memory size: 1 core per 1769 MB, never below the floor.
pub fn cpu_millis(memory_mb: u32, floor: u32) -> u32 {
    let proportional =
        (u64::from(memory_mb) * 1000 / u64::from(tern_core::limits::MB_PER_VCPU)) as u32;
    proportional.max(floor)
}

/// CPU of a boosted start-up, in thousandths of a core.
const BOOSTED_CPU_MILLIS: u32 = 1000;

/// The warm CFS period for a share of `cpu_millis`: as configured, but never so short
/// that the share's quota would fall below the kernel's 1 ms minimum (which would raise
/// the share): 4 ms at a quarter CPU.
fn warm_period_us(configured: Duration, cpu_millis: u32) -> u32 {
    let shortest = 1_000_000 / u128::from(cpu_millis.max(1));
    u32::try_from(configured.as_micros().max(shortest)).unwrap_or(u32::MAX)
}

/// How a runtime's process starts: [`LaunchSpec`]'s program fields.
pub(super) struct Program {
    pub(super) exe: PathBuf,
    pub(super) args: Vec<String>,
    pub(super) extra_ro_paths: Vec<PathBuf>,
    pub(super) runtime_dir: Option<PathBuf>,
}

/// Lambda's NODE_PATH for a Node runtime (`nodejs20.x`), without its `/var/runtime`
/// entries (tern's Node runtimes ship no SDK): layers' `/opt/nodejs/...`, then the code.
pub(super) fn node_path(runtime: &str) -> Option<String> {
    let major = runtime.strip_prefix("nodejs")?.strip_suffix(".x")?;
    Some(format!(
        "/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:/var/task"
    ))
}

/// Interpreter trees outside the system directories must be shown to the sandbox.
pub(super) fn extra_tree(prefix: &std::path::Path) -> Vec<PathBuf> {
    const SYSTEM: &[&str] = &["/usr", "/bin", "/lib", "/lib64"];
    if SYSTEM.iter().any(|s| prefix.starts_with(s)) || prefix == std::path::Path::new("/") {
        Vec::new()
    } else {
        vec![prefix.to_path_buf()]
    }
}

impl InstanceManager {
    /// An instance's limits while it starts: its CPU share over the long period, so
    /// that its start-up runs as one burst (see [`InstanceManager::warm_resources`]).
    pub(super) fn resources(&self, memory_mb: u32, tmp_mb: u32) -> Resources {
        Resources {
            memory_mb,
            tmp_mb,
            cpu_millis: cpu_millis(memory_mb, self.config.cpu_floor_millis),
            cpu_period_us: tern_sandbox::cgroups::CPU_PERIOD_US,
            cpu_burst: self.config.cpu_burst,
            max_pids: self.config.max_pids,
            max_open_files: self.config.max_open_files,
        }
    }

    /// What an instance starts with: with the start-up boost on, at least a full core
    /// (its share is restored after the boost, see [`InstanceManager::start_boost`]).
    pub(super) fn start_resources(&self, memory_mb: u32, tmp_mb: u32) -> Resources {
        let share = self.resources(memory_mb, tmp_mb);
        match self.start_boost(memory_mb, tmp_mb) {
            Some(_) => Resources {
                cpu_millis: share.cpu_millis.max(BOOSTED_CPU_MILLIS),
                ..share
            },
            None => share,
        }
    }

    /// The start-up boost of an instance whose share is below a full core, if on: a
    /// full core for the first `start_cpu_boost` of its start-up, then its share.
    pub(super) fn start_boost(&self, memory_mb: u32, tmp_mb: u32) -> Option<StartBoost> {
        let share = self.resources(memory_mb, tmp_mb);
        (!self.config.start_cpu_boost.is_zero() && share.cpu_millis < BOOSTED_CPU_MILLIS).then_some(
            StartBoost {
                lasts: self.config.start_cpu_boost,
                then: share,
            },
        )
    }

    /// An instance's limits once its start-up is over: the same share over the short
    /// warm period (`warm_cpu_period`), so that a request that finds the quota spent
    /// waits at most that long for the next slice, not most of 100 ms.
    pub(super) fn warm_resources(&self, memory_mb: u32, tmp_mb: u32) -> Resources {
        let start = self.resources(memory_mb, tmp_mb);
        Resources {
            cpu_period_us: warm_period_us(self.config.warm_cpu_period, start.cpu_millis),
            ..start
        }
    }

    pub(super) fn launch_spec(
        &self,
        f: &FunctionSpec,
        kind: &RuntimeKind,
        provisioned: bool,
    ) -> LaunchSpec {
        let mut spec = self.spec_of_shape(f, kind);
        // A sandbox the launcher built ahead of time lends the instance its id.
        if let Some(id) = self.launcher.claim_held(&spec) {
            spec.instance_id = id;
        }
        spec.env = self.function_env(f, &spec.instance_id, provisioned);
        spec
    }

    /// `f`'s launch spec without its environment, and without claiming anything the
    /// launcher built ahead of time.
    pub(super) fn spec_of_shape(&self, f: &FunctionSpec, kind: &RuntimeKind) -> LaunchSpec {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let instance_id = format!(
            "{}-{}-{n}",
            f.name.replace('_', "-"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let program = self.program(&f.runtime, kind);
        LaunchSpec {
            instance_id,
            program: program.exe,
            args: program.args,
            env: Vec::new(),
            code_dir: f.code_dir.clone(),
            bootstrap_dir: self.config.bootstrap_dir.clone(),
            layer_dirs: f.layer_dirs.clone(),
            runtime_dir: program.runtime_dir,
            extra_ro_paths: program.extra_ro_paths,
            resources: self.start_resources(f.memory_mb, f.tmp_mb),
            zygote: self.zygote_spec(f, kind),
            start_ahead_env: self.start_ahead_env(f, kind),
            network: f.network.clone(),
            owner: FunctionSpec::owner_name(&f.namespace, &f.name),
            template: (f.snap_start && matches!(kind, RuntimeKind::Python { .. })).then(|| {
                TemplateSpec {
                    function: FunctionSpec::template_name(&f.namespace, &f.name, &f.version),
                    revision: f.revision.to_string(),
                    // What Lambda's SnapStart init sees.
                    init_env: vec![(
                        "AWS_LAMBDA_INITIALIZATION_TYPE".to_string(),
                        "snap-start".to_string(),
                    )],
                    resources: self.resources(f.memory_mb, f.tmp_mb),
                }
            }),
        }
    }

    /// The zygote that may fork `f`'s runtime: one per namespace, so functions of
    /// different tenants never share an interpreter's hash seed or memory layout.
    pub(super) fn zygote_spec(&self, f: &FunctionSpec, kind: &RuntimeKind) -> Option<ZygoteSpec> {
        if !self.config.zygote
            || !matches!(kind, RuntimeKind::Python { .. })
            || f.env.iter().any(|(k, _)| affects_startup(k))
        {
            return None;
        }
        Some(self.zygote_of(&f.namespace, &f.runtime))
    }

    /// The environment `f`'s runtime may be started with before its instance is known
    /// (tern's Python and Node bootstraps then read their instance's on a descriptor):
    /// its runtime's base environment, unless the function sets a variable that changes
    /// how the interpreter starts.
    fn start_ahead_env(
        &self,
        f: &FunctionSpec,
        kind: &RuntimeKind,
    ) -> Option<Vec<(String, String)>> {
        (matches!(kind, RuntimeKind::Python { .. } | RuntimeKind::Node { .. })
            && !f.env.iter().any(|(k, _)| affects_startup(k)))
        .then(|| self.base_env(&f.runtime))
    }

    /// The zygote of `namespace` for a Python `runtime`.
    pub(super) fn zygote_of(&self, namespace: &str, runtime: &str) -> ZygoteSpec {
        ZygoteSpec {
            key: namespace.to_string(),
            env: self.base_env(runtime),
            program: self
                .config
                .bootstrap_dir
                .join("python")
                .join("bootstrap.py"),
        }
    }

    /// Waits until whether `runtime` has an SDK is known, so that no instance is built
    /// without the SDK its runtime is about to get (see [`crate::python_sdk`]).
    pub(super) async fn await_runtime_dir(&self, runtime: &str, kind: &RuntimeKind) {
        if matches!(kind, RuntimeKind::Python { .. }) {
            self.config.python_sdk.dir_for(runtime).await;
        }
    }

    /// How a runtime's process starts.
    pub(super) fn program(&self, runtime: &str, kind: &RuntimeKind) -> Program {
        match kind {
            RuntimeKind::Python { exe, prefix } => Program {
                exe: exe.clone(),
                // -S: no `site`, so none of the host's site-packages or .pth files; the
                // bootstrap sets Lambda's sys.path. The zygote runs with the same flags.
                args: ZYGOTE_PYTHON_FLAGS
                    .iter()
                    .map(|f| f.to_string())
                    .chain([PYTHON_IN_SANDBOX.to_string()])
                    .collect(),
                extra_ro_paths: extra_tree(prefix),
                runtime_dir: self.config.python_sdk.ready_dir(runtime),
            },
            RuntimeKind::Node { exe, prefix } => Program {
                exe: exe.clone(),
                args: vec![NODE_IN_SANDBOX.to_string()],
                extra_ro_paths: extra_tree(prefix),
                runtime_dir: None,
            },
            RuntimeKind::Provided => Program {
                exe: PathBuf::from("/var/task/bootstrap"),
                args: Vec::new(),
                extra_ro_paths: Vec::new(),
                runtime_dir: None,
            },
        }
    }

    /// The variables every process of `runtime` starts with, whatever its function.
    pub(super) fn base_env(&self, runtime: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("AWS_REGION", self.config.region.clone()),
            ("AWS_DEFAULT_REGION", self.config.region.clone()),
            ("LAMBDA_TASK_ROOT", "/var/task".to_string()),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_string()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin".to_string()),
            ("LANG", "en_US.UTF-8".to_string()),
            ("TZ", ":UTC".to_string()),
            ("HOME", "/tmp".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(node_path) = node_path(runtime) {
            env.push(("NODE_PATH".to_string(), node_path));
        }
        // Functions reach no API yet (loopback-only network). When egress to tern's
        // listener is configured for a function, this is where AWS_ENDPOINT_URL_LAMBDA
        // goes, so SDKs inside call tern.
        env
    }

    /// The complete environment of a function's runtime: Lambda's variables, then the
    /// function's own (which win).
    pub(super) fn function_env(
        &self,
        f: &FunctionSpec,
        instance_id: &str,
        provisioned: bool,
    ) -> Vec<(String, String)> {
        let date = time::OffsetDateTime::now_utc().date();
        let stream = format!(
            "{:04}/{:02}/{:02}/[{}]{}",
            date.year(),
            u8::from(date.month()),
            date.day(),
            f.version,
            instance_id
        );
        let mut env = self.base_env(&f.runtime);
        env.extend(
            [
                ("AWS_LAMBDA_FUNCTION_NAME", f.name.clone()),
                ("AWS_LAMBDA_FUNCTION_VERSION", f.version.clone()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string()),
                (
                    "AWS_LAMBDA_LOG_GROUP_NAME",
                    format!("/aws/lambda/{}", f.name),
                ),
                ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
                (
                    "AWS_LAMBDA_INITIALIZATION_TYPE",
                    if provisioned {
                        "provisioned-concurrency"
                    } else {
                        "on-demand"
                    }
                    .to_string(),
                ),
                ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", f.runtime)),
                ("_HANDLER", f.handler.clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
        );
        for (k, v) in &f.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_period_never_raises_a_share() {
        let ms = Duration::from_millis;
        assert_eq!(warm_period_us(ms(10), 250), 10_000);
        // 1 ms at a quarter CPU would be a 0.25 ms quota, raised to 1 ms: 4 ms instead.
        assert_eq!(warm_period_us(ms(1), 250), 4_000);
        assert_eq!(warm_period_us(ms(1), 1000), 1_000);
        assert_eq!(warm_period_us(ms(100), 250), 100_000);
    }

    #[test]
    fn cpu_share_is_proportional_with_a_floor() {
        assert_eq!(cpu_millis(1769, 250), 1000);
        assert_eq!(cpu_millis(3538, 250), 2000);
        assert_eq!(cpu_millis(128, 250), 250);
    }

    #[test]
    fn node_path_is_lambdas_without_the_runtime_sdk() {
        assert_eq!(
            node_path("nodejs20.x").as_deref(),
            Some("/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/task")
        );
        assert_eq!(node_path("python3.11"), None);
        assert_eq!(node_path("provided.al2023"), None);
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
