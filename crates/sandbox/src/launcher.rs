//! The seam between the instance manager and whatever isolates an instance.
//!
//! The runtime crate asks a [`Launcher`] to start one function instance and gets back a
//! [`Launched`]: the process handle, the combined stdout/stderr pipe, and the Runtime API
//! listening socket that the launcher created where the instance can reach it (inside the
//! sandbox's network namespace for the sandbox launcher).

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use crate::net::SandboxNetwork;

/// Everything needed to start one instance. Paths in `program`/`args` are as the
/// instance sees them (inside the sandbox: `/var/task/bootstrap`, `/usr/bin/python3`, ...).
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Unique id, used for cgroup and scratch-dir names. `[A-Za-z0-9-]` only.
    pub instance_id: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The complete environment of the runtime process. The launcher adds
    /// `AWS_LAMBDA_RUNTIME_API` itself; nothing from the host environment leaks in.
    pub env: Vec<(String, String)>,
    /// Host directory holding the unpacked code, shown read-only at `/var/task`.
    pub code_dir: PathBuf,
    /// Host directory holding the language bootstraps, shown read-only at `/opt/tern`.
    pub bootstrap_dir: PathBuf,
    /// Host directories of the function's unpacked layers in `Layers` order, merged
    /// read-only at `/opt` (a later layer's files win). Empty for most functions, which
    /// then get no mount at `/opt` beyond the bootstraps.
    pub layer_dirs: Vec<PathBuf>,
    /// Host directory shown read-only at `/var/runtime`, as Lambda's runtime directory:
    /// the SDK the runtime ships (Python's pinned boto3 and botocore). None shows nothing.
    pub runtime_dir: Option<PathBuf>,
    /// Extra host directories to bind read-only at the same path (interpreter trees
    /// outside /usr, such as a pyenv install).
    pub extra_ro_paths: Vec<PathBuf>,
    pub resources: Resources,
    /// Fork the runtime from a warm Python interpreter (a zygote) instead of exec'ing
    /// `program`, where the launcher can. `program` must then be the interpreter and
    /// `args` exactly [`ZYGOTE_PYTHON_FLAGS`] followed by the program's path inside the
    /// instance.
    pub zygote: Option<ZygoteSpec>,
    /// Fork the instance from a post-init template of this function and revision, where
    /// the launcher can and one is ready (see [`TemplateSpec`]); else start it as usual,
    /// and build the template in the background.
    pub template: Option<TemplateSpec>,
    /// The environment the runtime may be started with before its instance is known:
    /// the launcher may start it ahead of time, then hand it the launch's own `env` on
    /// the descriptor named by `TERN_CONFIG_FD` (tern's Python and Node bootstraps read
    /// it). The two may differ only in variables that do not change how the runtime
    /// starts. `None`: the runtime is started at launch only (or forked by `zygote`,
    /// which plays the same part).
    pub start_ahead_env: Option<Vec<(String, String)>>,
    /// The sandbox's network. A launch with one is never forked from a post-init
    /// template (a fork makes its own network namespace, which would need its link made
    /// on the request path).
    pub network: SandboxNetwork,
    /// Whom the instance's usage is counted to (the runtime passes
    /// `namespace/function`); opaque to the launcher.
    pub owner: String,
}

/// The variable that names the descriptor a runtime started ahead of time reads its
/// instance's configuration from (see [`LaunchSpec::start_ahead_env`]): one line of
/// JSON, `{"env": {name: value, ...}}`, the instance's complete environment, once a
/// launch takes it; then end of file once the instance's code is mounted (the runtime
/// does what depends only on its environment meanwhile).
pub const CONFIG_FD_VAR: &str = "TERN_CONFIG_FD";

/// Which post-init template an instance may be forked from: a process that has run the
/// function's init in the function's own sandbox shape, so that its forks start with the
/// handler imported (tern's answer to Lambda SnapStart). The launcher keeps at most one
/// per `function` and never forks an instance from another function's or another
/// revision's template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TemplateSpec {
    /// Names the function; a launch with another `revision` retires its template.
    pub function: String,
    /// Changes whenever anything the init may depend on changes: code, layers,
    /// environment, runtime, handler, memory and /tmp size.
    pub revision: String,
    /// Variables the template's init sees in place of the launch's (tern sets Lambda's
    /// `AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`); each fork gets its own instance's.
    pub init_env: Vec<(String, String)>,
    /// The template's own limits: it runs off the request path, so at the function's
    /// share, without the start-up boost a cold start gets.
    pub resources: Resources,
}

/// The interpreter flags a zygote runs with, and so the flags of any Python launch it
/// may stand in for: `-S`, no `site` import, so nothing from the host's site-packages
/// (no path, no `.pth` file, no module a `.pth` imports) is in the memory its children
/// inherit. The bootstrap sets the function's `sys.path` itself.
pub const ZYGOTE_PYTHON_FLAGS: &[&str] = &["-S"];

/// The program of a zygote launch: `args` must be [`ZYGOTE_PYTHON_FLAGS`] and the path.
pub fn zygote_program(args: &[String]) -> Option<&str> {
    let (program, flags) = args.split_last()?;
    (flags.len() == ZYGOTE_PYTHON_FLAGS.len()
        && flags.iter().zip(ZYGOTE_PYTHON_FLAGS).all(|(a, b)| a == b))
    .then_some(program.as_str())
}

/// Which zygote may start a Python runtime (see [`crate::zygote`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZygoteSpec {
    /// Instances with different keys never share a zygote (tern uses the namespace).
    pub key: String,
    /// The environment the zygote's interpreter starts with. The runtime's own `env`
    /// replaces it after the fork, so the two may differ only in variables that do not
    /// change how an interpreter starts.
    pub env: Vec<(String, String)>,
    /// Host path of the program the zygote pre-imports; its `main()` runs in the child.
    pub program: PathBuf,
}

/// Resource limits for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resources {
    pub memory_mb: u32,
    pub tmp_mb: u32,
    /// CPU quota in thousandths of a CPU (1000 = one full core).
    pub cpu_millis: u32,
    /// The CFS period the quota is enforced over, in microseconds (1 ms to 1 s): a long
    /// one lets a start-up burst run at once, a short one bounds how long a throttled
    /// request waits for its next slice.
    pub cpu_period_us: u32,
    /// Let CPU time the instance left unused bank up, to at most one period's quota,
    /// for a later burst (CFS burst): a mostly idle function's short requests are not
    /// throttled, while one that runs flat out is held to its share.
    pub cpu_burst: bool,
    pub max_pids: u32,
    pub max_open_files: u32,
}

/// How the runtime process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    Unknown,
}

/// A started instance.
pub struct Launched {
    pub process: Arc<dyn InstanceProcess>,
    /// Read end of the pipe that carries the runtime's stdout and stderr.
    pub output: std::fs::File,
    /// Listening socket for the Runtime API, reachable by the instance at `runtime_api`.
    pub runtime_api_listener: TcpListener,
    /// Value of `AWS_LAMBDA_RUNTIME_API` given to the instance (`host:port`).
    pub runtime_api: String,
    /// What served the launch (for metrics and logs: callers decide nothing on it).
    pub served_by: ServedBy,
}

/// What a launch was served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedBy {
    /// Forked from the function's post-init template (at launch or ahead of it).
    Template,
    /// A runtime started ahead of time, which only got its code and environment.
    StartedAhead,
    /// A sandbox built ahead of time, whose runtime started at launch.
    HeldSandbox,
    /// Everything built at launch.
    NewSandbox,
}

impl ServedBy {
    pub const ALL: [ServedBy; 4] = [
        ServedBy::Template,
        ServedBy::StartedAhead,
        ServedBy::HeldSandbox,
        ServedBy::NewSandbox,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ServedBy::Template => "template",
            ServedBy::StartedAhead => "started_ahead",
            ServedBy::HeldSandbox => "held_sandbox",
            ServedBy::NewSandbox => "new_sandbox",
        }
    }
}

/// Handle to a running instance.
pub trait InstanceProcess: Send + Sync {
    /// Host pid of the runtime process (or of the sandbox's keeper), for logs only.
    fn pid(&self) -> u32;
    /// Blocks until the runtime process has exited and returns how. Safe to call from
    /// several threads; each caller gets the same answer.
    fn wait(&self) -> ExitStatus;
    /// Kills every process of the instance. Idempotent and non-blocking.
    fn kill(&self);
    /// Whether the memory cgroup killed a process of this instance for exceeding its limit.
    fn oom_killed(&self) -> bool;
    /// Peak memory use in bytes, if the launcher can tell.
    fn memory_peak_bytes(&self) -> Option<u64>;
    /// Memory the instance is charged for right now (its memory cgroup's usage), in
    /// bytes, if the launcher can tell.
    fn memory_current_bytes(&self) -> Option<u64> {
        None
    }
    /// Host disk used by the instance's /tmp filesystem right now, in bytes; `None`
    /// when its /tmp is not on the host disk.
    fn tmp_disk_used_bytes(&self) -> Option<u64> {
        None
    }
    /// A descriptor that becomes readable once the runtime process has ended, so that
    /// the end can be awaited without a thread blocked in [`InstanceProcess::wait`]
    /// (which then returns at once, or nearly). `None` if the launcher has none.
    fn exit_fd(&self) -> Option<std::os::fd::OwnedFd> {
        None
    }
    /// Releases everything the instance held (cgroups, mounts, scratch files). Call after
    /// `wait` returned. Idempotent.
    fn cleanup(&self);
    /// Freezes every process of the instance (cgroup freezer), or thaws them. A frozen
    /// instance uses no CPU; it can still be killed.
    fn set_frozen(&self, frozen: bool) -> Result<(), String> {
        let _ = frozen;
        Err("this launcher cannot freeze instances".to_string())
    }
    /// Replaces the memory and CPU limits set at launch (`tmp_mb` cannot change).
    fn set_resources(&self, resources: &Resources) -> Result<(), String> {
        let _ = resources;
        Err("this launcher cannot change limits after launch".to_string())
    }
}

/// Waits on the async runtime's reactor until `fd` (an [`InstanceProcess::exit_fd`]) is
/// readable. Call from within a tokio runtime.
pub async fn exit_fd_readable(fd: std::os::fd::OwnedFd) -> std::io::Result<()> {
    use tokio::io::{unix::AsyncFd, Interest};
    // SAFETY: the AsyncFd owns `fd` (an OwnedFd), so the descriptor stays open and names
    // the same file description until the AsyncFd is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    fd.readable().await.map(drop)
}

/// The server's capacity account as a launcher sees it: what the launcher builds ahead
/// of time (sandboxes waiting for a launch) counts there too, and is only built when it
/// fits.
pub trait CapacityAccount: Send + Sync {
    /// Counts one sandbox built ahead of time, if it fits; `None` if it does not (then
    /// the launcher builds none). The room goes back when the reservation is dropped:
    /// when the sandbox is stopped, or taken by a launch (whose instance the server
    /// counts itself).
    fn reserve_built_ahead(&self) -> Option<Reservation>;
    /// Counts a post-init template of `memory_mb` (its function's MemorySize), if it
    /// fits; `None` if it does not (then the launcher builds none).
    fn reserve_template(&self, memory_mb: u32) -> Option<Reservation>;
    /// Leave to build one thing ahead of time now, held for the build: `None` while
    /// requests need the machine (one waits for room, or the machine is saturated and
    /// another build is under way). Builds ahead never starve requests.
    fn build_permit(&self) -> Option<Reservation>;
}

/// Room in a [`CapacityAccount`], given back when dropped.
pub struct Reservation {
    room: Box<dyn Room>,
}

/// What a [`Reservation`] holds.
pub trait Room: Send + Sync {
    /// Counts `memory_mb` from now on (what the item was measured to use), whether or
    /// not it fits: it is in use already.
    fn resize(&mut self, memory_mb: u64) {
        let _ = memory_mb;
    }
}

impl Reservation {
    /// A reservation whose `room` is given back when dropped.
    pub fn new(room: impl Room + 'static) -> Reservation {
        Reservation {
            room: Box::new(room),
        }
    }

    /// See [`Room::resize`].
    pub fn resize(&mut self, memory_mb: u64) {
        self.room.resize(memory_mb);
    }
}

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// could not prepare the instance: {0}
    #[error("could not prepare the instance: {0}")]
    Prepare(String),
    /// could not start the runtime process: {0}
    #[error("could not start the runtime process: {0}")]
    Spawn(#[from] std::io::Error),
}

/// Starts instances. Implementations: [`crate::process::ProcessLauncher`] (no isolation,
/// development only) and [`crate::sandbox::SandboxLauncher`].
pub trait Launcher: Send + Sync {
    /// Starts one instance. Blocking; call from a blocking thread.
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, LaunchError>;
    /// Short name for logs and metrics ("sandbox", "process").
    fn name(&self) -> &'static str;
    /// Reserves what the launcher built ahead of time for specs of `spec`'s shape, if it
    /// has one ready (an instance forked from the function's template, a runtime started
    /// ahead, a held sandbox; the caller cannot tell which), and returns its instance
    /// id: a [`Launcher::launch`] of a spec with that id takes it. Claimed or not, a
    /// launch of this shape counts as demand for the next one. Call just before building
    /// the real spec (whose environment may name the id); a reservation not launched
    /// within a minute is dropped.
    fn claim_held(&self, spec: &LaunchSpec) -> Option<String> {
        let _ = spec;
        None
    }
    /// Builds ahead, in the background, what a later [`Launcher::launch`] of a spec like
    /// `spec` would otherwise build on the request path (its zygote, a runtime of its
    /// shape, sandboxes), counting one launch of the shape to come. Returns at once.
    fn prepare(&self, spec: &LaunchSpec) {
        let _ = spec;
    }
    /// Periodic upkeep of what is built ahead (call about once a second): refills what
    /// demand still asks for, gives back what it no longer does, and counts what is
    /// kept by what it uses. Returns at once.
    fn tend(&self) {}
    /// Runtimes started ahead of time and instances forked ahead from templates, ready
    /// for a launch right now.
    fn started_ahead_count(&self) -> usize {
        0
    }
    /// Host disk used right now by the /tmp filesystems of handed-out instances, in
    /// bytes; `None` when /tmp is not on the host disk (tmpfs, or no sandbox).
    /// Makes `networks` the private networks sandboxes may be attached to: new ones can
    /// be, changed ones grant what they say now, removed ones grant nothing any more.
    fn set_private_networks(&self, networks: &[crate::net::PrivateNetwork]) -> Result<(), String> {
        let _ = networks;
        Ok(())
    }

    /// Connections and packets refused by the egress policy, per owner (see
    /// [`LaunchSpec::owner`]): those of instances gone, and so far those of live ones.
    fn network_refusals(&self) -> Vec<(String, u64)> {
        Vec::new()
    }

    fn tmp_disk_used_bytes(&self) -> Option<u64> {
        None
    }
    /// Makes what the launcher builds ahead of time count in `account` (call once,
    /// before the first launch).
    fn set_capacity_account(&self, account: Arc<dyn CapacityAccount>) {
        let _ = account;
    }
    /// Stops one thing built ahead of time, to make room; its reservation is given back
    /// before this returns. False if there was none.
    fn drop_built_ahead(&self) -> bool {
        false
    }
    /// Retires the post-init template of `function` (see [`TemplateSpec`]), if any: no
    /// instance is forked from it any more, and it ends with the last instance forked
    /// from it. Call when the function changes or is deleted.
    fn retire_template(&self, function: &str) {
        let _ = function;
    }
    /// Post-init templates ready to fork from right now.
    fn template_count(&self) -> usize {
        0
    }
    /// Releases what the launcher itself holds (such as the server's cgroup subtree).
    /// Call at shutdown, after every instance was cleaned up.
    fn shutdown(&self) {}
}
