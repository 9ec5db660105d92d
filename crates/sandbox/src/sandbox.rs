//! [`SandboxLauncher`]: starts each instance in its own namespaces, cgroups and read-only
//! root, through a re-exec'd keeper process (see [`crate::keeper`]).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use nix::sys::socket::{shutdown, socketpair, AddressFamily, Shutdown, SockFlag, SockType};
use seccompiler::BpfProgram;

use crate::ahead::{self, Demand, Depth, HeldKey, HeldPool, Pool};
use crate::cgroups::{self, CgroupLayout, CgroupLimits, InstanceCgroup};
use crate::exit_cell::ExitCell;
use crate::keeper::KEEPER_ARG;
use crate::launcher::{
    zygote_program, CapacityAccount, ExitStatus, InstanceProcess, LaunchError, LaunchSpec,
    Launched, Launcher, Reservation, ServedBy, TemplateSpec, ZygoteSpec,
};
use crate::mounts::{self, HostView, PlanInput, TmpSource, OVERLAY_SOURCE};
use crate::net::{HostNetwork, NetLease, NetworkConfig, PrivateNetwork, SandboxNetwork};
use crate::protocol::{
    self, CommandReply, KeeperCommand, KeeperEvent, KeeperRequest, RuntimeStart,
};
use crate::seccomp::{self, SeccompError};
use crate::sys;
use crate::tmp_disk::{self, TmpDisk, TmpDisks};
use crate::uid_range::{UidRange, UID_SLOTS};
use crate::zygote::{ForkFds, ForkRequest, Zygote, Zygotes};

mod template;

use template::{Lookup, Templates};
pub(crate) use template::{TEMPLATE_GID, TEMPLATE_UID};

mod built_ahead;

use built_ahead::{Started, StartedKey};

/// The descriptor at which an exec'd runtime finds the one its launcher passed it: a
/// post-init template's control socket, or the config pipe of a runtime started ahead.
pub(crate) const PASSED_FD: RawFd = 4;

/// Port of the Runtime API listener inside every sandbox.
pub const RUNTIME_API_PORT: u16 = 9001;
/// Hostname inside every sandbox.
pub const SANDBOX_HOSTNAME: &str = "tern";
/// `argv[0]` of the keeper and the instance init.
const KEEPER_ARGV0: &str = "tern";
/// Empty directory under the state dir: the bottom layer of code overlays attached after
/// launch. Its name is not a valid instance id, so leftover cleanup leaves it alone.
const EMPTY_LAYER: &str = ".empty-layer";
/// Directory under the state dir holding only an empty `tern` directory: the top layer
/// of layer overlays attached after launch, where the bootstraps' mount goes back on.
const OPT_BASE: &str = ".opt-base";
/// How long a launch may take before it is abandoned.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(10);
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Configuration of the sandbox launcher.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Host scratch root for per-instance root directories (e.g. `<data>/sandbox`).
    pub state_dir: PathBuf,
    /// Name of this server's cgroup subtree: `tern/<server_id>/<instance_id>`.
    pub server_id: String,
    /// This server's host uids: root inside each live instance maps to one of them, and
    /// that uid creates the instance's user namespace.
    pub uids: UidRange,
    /// Binary exec'd as `<keeper_exe> __sandbox-keeper`; normally the tern binary itself.
    pub keeper_exe: PathBuf,
    /// Back /tmp with a per-instance ext4 image on a loop device (see [`crate::tmp_disk`]),
    /// so it does not count against MemorySize. Without it, or where the host cannot
    /// (no loop devices, no mkfs.ext4), /tmp is a tmpfs and the memory limit is raised
    /// by the /tmp size, so a full /tmp is ENOSPC rather than an OOM kill.
    pub tmp_on_disk: bool,
    /// Ready /tmp disks kept per recently used /tmp size, so a launch does not wait for
    /// a loop device and an ext4 mount (0: every launch makes its own).
    pub tmp_pool_depth: usize,
    /// Sandboxes built ahead of time (no runtime yet) per shape in use: see
    /// [`crate::ahead`]. [`Depth::OFF`] builds none.
    pub sandboxes_ahead: Depth,
    /// Runtimes started ahead of time into such sandboxes, and instances forked ahead
    /// from post-init templates, per shape in use. [`Depth::OFF`] starts none.
    pub runtimes_ahead: Depth,
    /// Function networking: links, addresses and egress policy for sandboxes that ask
    /// for a network. `None`: off, and a launch that asks for one fails.
    pub network: Option<NetworkConfig>,
}

impl SandboxConfig {
    /// Defaults: a uid range leased for this process (see [`UidRange::lease_default`]),
    /// keeper = the current executable.
    pub fn new(state_dir: impl Into<PathBuf>, server_id: impl Into<String>) -> io::Result<Self> {
        Ok(SandboxConfig {
            state_dir: state_dir.into(),
            server_id: server_id.into(),
            uids: UidRange::lease_default()?,
            keeper_exe: std::env::current_exe()?,
            tmp_on_disk: true,
            tmp_pool_depth: tmp_disk::DEFAULT_POOL_DEPTH,
            sandboxes_ahead: Depth::DEFAULT,
            runtimes_ahead: Depth::DEFAULT,
            network: Some(NetworkConfig::default()),
        })
    }
}

/// Why the sandbox launcher cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// the configuration is invalid
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    /// the state directory cannot be created
    #[error("cannot create the sandbox state directory {path}: {source}")]
    StateDir { path: PathBuf, source: io::Error },
    /// no cgroup hierarchy with a memory controller is mounted
    #[error("no cgroup memory controller found under /sys/fs/cgroup")]
    NoCgroups,
    /// the seccomp policy does not compile
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// function networking cannot be set up
    #[error("cannot set up function networking (set `[network] enabled = false` to run without it): {0}")]
    Network(io::Error),
}

/// Launches instances in sandboxes. Cheap to share between threads.
pub struct SandboxLauncher {
    inner: Arc<Inner>,
}

/// The launcher's state; shared with the threads that build held sandboxes.
struct Inner {
    config: SandboxConfig,
    host: HostView,
    cgroups: CgroupLayout,
    uids: Arc<Mutex<UidSlots>>,
    /// `None`: /tmp is a tmpfs.
    tmp_disks: Option<TmpDisks>,
    /// The runtime's seccomp programs (handed to zygotes; keepers compile their own).
    seccomp: Vec<BpfProgram>,
    zygotes: Zygotes,
    /// Zygote launches that failed in a row; zygotes are given up after a few.
    zygote_failures: AtomicU32,
    /// Sandboxes built ahead of time, without a runtime yet.
    held: HeldPool,
    held_seq: AtomicU64,
    /// Runtimes started ahead of time into held sandboxes, waiting for their code and
    /// environment.
    started: Pool<StartedKey, Started>,
    /// The server's capacity account, which what is built ahead counts in.
    capacity: std::sync::OnceLock<Arc<dyn CapacityAccount>>,
    /// Post-init templates, one per function at most.
    templates: Templates,
    /// This server's share of the host network; `None`: networking is off.
    net: Option<Arc<HostNetwork>>,
}

/// Shapes kept built ahead at once, per pool; the least recently used goes first.
const MAX_SHAPES: usize = 64;

/// Zygote failures in a row after which the launcher only execs runtimes.
const ZYGOTE_MAX_FAILURES: u32 = 3;

impl SandboxLauncher {
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        if !valid_name(&config.server_id) {
            return Err(SandboxError::Config(format!(
                "server_id {:?} must be [A-Za-z0-9-]",
                config.server_id
            )));
        }
        if !config.keeper_exe.is_file() {
            return Err(SandboxError::Config(format!(
                "keeper executable {} not found",
                config.keeper_exe.display()
            )));
        }
        fs::create_dir_all(&config.state_dir).map_err(|source| SandboxError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let cgroups = CgroupLayout::detect();
        let has_memory = cgroups.hierarchies.iter().any(|h| match h {
            cgroups::Hierarchy::V1 { controller, .. } => controller == "memory",
            cgroups::Hierarchy::V2 { controllers, .. } => controllers.iter().any(|c| c == "memory"),
        });
        if !has_memory {
            return Err(SandboxError::NoCgroups);
        }
        let net = match &config.network {
            Some(network) => Some(Arc::new(
                HostNetwork::setup(network).map_err(SandboxError::Network)?,
            )),
            None => {
                // What a crashed server left goes even when this one runs without.
                let lease_dir = Path::new(crate::net::DEFAULT_LEASE_DIR);
                if let Err(e) = crate::net::remove_leftovers(lease_dir) {
                    tracing::warn!(error = %e, "could not remove the networks of servers that are gone");
                }
                None
            }
        };
        let seccomp = seccomp::compile_builtin()?;
        for dir in [
            config.state_dir.join(EMPTY_LAYER),
            config.state_dir.join(OPT_BASE).join("tern"),
        ] {
            fs::create_dir_all(&dir).map_err(|source| SandboxError::StateDir {
                path: dir.clone(),
                source,
            })?;
        }
        let tmp_disks = if config.tmp_on_disk {
            match TmpDisks::start(&config.state_dir, config.tmp_pool_depth) {
                Ok(disks) => Some(disks),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "cannot back /tmp with a disk image; using tmpfs, which counts \
                         against the memory limit (raised by the /tmp size to compensate)"
                    );
                    None
                }
            }
        } else {
            None
        };
        let host = HostView::probe();
        // What is built ahead gets its code later, as an overlay (so that no host path
        // shows in its mountinfo): without overlayfs, nothing is.
        let depth = |d: Depth| if host.overlayfs { d } else { Depth::OFF };
        let held = HeldPool::new(depth(config.sandboxes_ahead), MAX_SHAPES);
        let started = Pool::new(depth(config.runtimes_ahead), MAX_SHAPES);
        let forks_ahead = depth(config.runtimes_ahead);
        let inner = Inner {
            config,
            host,
            cgroups,
            uids: Arc::new(Mutex::new(UidSlots::default())),
            tmp_disks,
            seccomp,
            zygotes: Zygotes::default(),
            zygote_failures: AtomicU32::new(0),
            held,
            held_seq: AtomicU64::new(0),
            started,
            capacity: std::sync::OnceLock::new(),
            templates: Templates::new(forks_ahead),
            net,
        };
        Ok(SandboxLauncher {
            inner: Arc::new(inner),
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Whether /tmp is disk-backed (else a tmpfs counted against memory).
    pub fn tmp_on_disk(&self) -> bool {
        self.inner.tmp_disks.is_some()
    }

    /// Removes cgroups, root directories and /tmp images left by a crashed earlier run
    /// with the same state dir and server id. Call once at startup, before the first
    /// launch. (Mounts and loop devices die with the instances' processes.)
    pub fn cleanup_leftovers(&self) {
        self.inner.cleanup_leftovers()
    }

    /// Removes this server's (empty) cgroup subtree. Call at shutdown, after every
    /// instance was cleaned up; cgroups still in use are left alone.
    pub fn remove_server_cgroups(&self) {
        self.inner.remove_server_cgroups()
    }

    /// This server's share of the host network, if networking is on: its resolver
    /// address is where the server must answer sandboxes' DNS queries.
    pub fn network(&self) -> Option<&HostNetwork> {
        self.inner.net.as_deref()
    }

    /// Sandboxes built ahead of time and waiting for a runtime right now.
    pub fn held_count(&self) -> usize {
        self.inner.held.count()
    }

    /// Runtimes started into held sandboxes ahead of time, waiting for an instance.
    pub fn started_ahead_count(&self) -> usize {
        self.inner.started.count()
    }
}

impl Inner {
    /// The instances handed out and still alive.
    fn handed_out(&self) -> Vec<Arc<SandboxInstance>> {
        self.uids.lock().unwrap_or_else(|e| e.into_inner()).live()
    }

    fn cleanup_leftovers(&self) {
        for server_dir in self.cgroups.server_dirs(&self.config.server_id) {
            let Ok(entries) = fs::read_dir(&server_dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    tracing::info!(cgroup = %entry.path().display(), "removing leftover cgroup");
                    cgroups::remove_cgroup_dir(&entry.path());
                }
            }
        }
        tmp_disk::remove_leftover_images(&self.config.state_dir);
        let Ok(entries) = fs::read_dir(&self.config.state_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) || !valid_name(&name.to_string_lossy())
            {
                continue;
            }
            remove_root_dir(&entry.path());
        }
    }

    fn remove_server_cgroups(&self) {
        for server_dir in self.cgroups.server_dirs(&self.config.server_id) {
            let _ = fs::remove_dir(&server_dir);
        }
    }

    fn prepare(
        &self,
        spec: &LaunchSpec,
        outside_uid: u32,
        net: Option<&NetLease>,
    ) -> Result<Prepared, String> {
        let root = self.config.state_dir.join(&spec.instance_id);
        if root.exists() {
            remove_root_dir(&root);
        }
        let tmp_disk = match &self.tmp_disks {
            Some(disks) => Some(disks.take(spec.resources.tmp_mb)?),
            None => None,
        };
        fs::create_dir(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
        // A sandbox with a network asks the server's resolver; one without has nothing to
        // ask, and keeps the host's file as it always had.
        let resolv = match (net, &self.net) {
            (Some(_), Some(host)) => format!("nameserver {}\noptions edns0\n", host.resolver()),
            _ => fs::read_to_string(RESOLV_CONF).unwrap_or_default(),
        };
        let plan = mounts::plan(
            &self.host,
            &PlanInput {
                root: &root,
                code_dir: &spec.code_dir,
                bootstrap_dir: &spec.bootstrap_dir,
                layer_dirs: &spec.layer_dirs,
                runtime_dir: spec.runtime_dir.as_deref(),
                extra_ro_paths: &spec.extra_ro_paths,
                tmp: if tmp_disk.is_some() {
                    TmpSource::Disk
                } else {
                    TmpSource::Tmpfs
                },
                tmp_mb: spec.resources.tmp_mb,
                outside_uid,
                outside_gid: outside_uid,
                hostname: SANDBOX_HOSTNAME,
                resolv_conf: &resolv,
            },
        );
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => {
                let _ = fs::remove_dir(&root);
                return Err(e);
            }
        };
        let mut limits = CgroupLimits::from_resources(&spec.resources);
        if tmp_disk.is_none() {
            limits = limits.with_tmpfs(spec.resources.tmp_mb);
        }
        let cgroup = match self
            .cgroups
            .create(&self.config.server_id, &spec.instance_id, &limits)
        {
            Ok(cgroup) => cgroup,
            Err(e) => {
                let _ = fs::remove_dir(&root);
                return Err(format!("cgroup: {e}"));
            }
        };
        let env = runtime_env(spec);
        let request = KeeperRequest {
            instance_id: spec.instance_id.clone(),
            program: spec.program.clone(),
            args: spec.args.clone(),
            env,
            hostname: SANDBOX_HOSTNAME.into(),
            runtime_api_port: RUNTIME_API_PORT,
            outside_uid,
            outside_gid: outside_uid,
            cgroup_procs: cgroup.procs_files(),
            mount_plan: plan,
            max_open_files: u64::from(spec.resources.max_open_files),
            cwd: PathBuf::from("/var/task"),
            hold: false,
            template: false,
            network: net.map(|lease| lease.link().clone()),
        };
        Ok(Prepared {
            request,
            cgroup,
            root,
            tmp_disk,
        })
    }
}

/// A runtime a zygote forked into a sandbox.
struct Forked {
    /// Read end of the pipe the zygote writes the runtime's wait status to.
    status: OwnedFd,
    /// The runtime itself: how its end is noticed if the zygote dies first.
    pidfd: OwnedFd,
}

impl Forked {
    fn wait(&self) -> ExitStatus {
        let mut raw = [0u8; 4];
        let mut filled = 0;
        while filled < raw.len() {
            match nix::unistd::read(self.status.as_raw_fd(), &mut raw[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if filled == raw.len() {
            return exit_status(crate::keeper::decode_wait_status(i32::from_le_bytes(raw)));
        }
        // The zygote died first and took the status with it: wait for the end itself.
        loop {
            match sys::poll_readable(&[self.pidfd.as_fd()]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => return ExitStatus::Unknown,
            }
        }
    }
}

/// A sandbox whose keeper finished its setup.
pub(crate) struct Built {
    pub instance: SandboxInstance,
    pub listener: TcpListener,
    /// What the keeper was asked (a zygote's child needs some of it again).
    pub request: KeeperRequest,
    /// Its room in the server's capacity account while it waits for a launch (see
    /// [`CapacityAccount`]); dropped when a launch takes it.
    pub reservation: Option<Reservation>,
}

/// What [`Inner::prepare`] made for one instance.
struct Prepared {
    request: KeeperRequest,
    cgroup: InstanceCgroup,
    root: PathBuf,
    tmp_disk: Option<TmpDisk>,
}

/// The exit status in a keeper's `Exited` event (anything else: unknown).
fn exit_status(event: KeeperEvent) -> ExitStatus {
    match event {
        KeeperEvent::Exited {
            code: Some(code), ..
        } => ExitStatus::Code(code),
        KeeperEvent::Exited {
            code: None,
            signal: Some(signal),
        } => ExitStatus::Signal(signal),
        _ => ExitStatus::Unknown,
    }
}

/// The launched instance if its runtime started (`output` is the read end of its
/// output), else the error, once the instance is torn down.
fn hand_out(
    spec: &LaunchSpec,
    instance: SandboxInstance,
    listener: TcpListener,
    output: Result<OwnedFd, LaunchError>,
    served_by: ServedBy,
) -> Result<Launched, LaunchError> {
    match output {
        Ok(output) => Ok(Launched {
            process: instance.register(spec),
            output: File::from(output),
            runtime_api_listener: listener,
            runtime_api: runtime_api(),
            served_by,
        }),
        Err(e) => {
            instance.abandon();
            Err(e)
        }
    }
}

/// What a runtime reads from its config descriptor: its environment, as one line of
/// JSON (see [`crate::launcher::CONFIG_FD_VAR`]).
fn runtime_config(env: &[(String, String)]) -> Result<Vec<u8>, LaunchError> {
    let env: serde_json::Map<String, serde_json::Value> = env
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut line = serde_json::to_vec(&serde_json::json!({ "env": env }))
        .map_err(|e| LaunchError::Prepare(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

fn config_memfd(env: &[(String, String)]) -> Result<OwnedFd, LaunchError> {
    Ok(sys::memfd_with(
        "tern-runtime-config",
        &runtime_config(env)?,
    )?)
}

/// The runtime's environment: the spec's, with the Runtime API address the launcher set.
fn runtime_env(spec: &LaunchSpec) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .filter(|(k, _)| k != "AWS_LAMBDA_RUNTIME_API")
        .cloned()
        .collect();
    env.push(("AWS_LAMBDA_RUNTIME_API".into(), runtime_api()));
    env
}

fn runtime_api() -> String {
    format!("127.0.0.1:{RUNTIME_API_PORT}")
}

impl Inner {
    /// Starts one instance; with `zygote`, its runtime is forked by that zygote instead
    /// of exec'd by the sandbox init.
    fn launch_with(
        &self,
        spec: &LaunchSpec,
        zygote: Option<&ZygoteSpec>,
    ) -> Result<Launched, LaunchError> {
        let started_at = Instant::now();
        let zygote = match zygote {
            Some(z) => Some(self.zygote_for(spec, z)?),
            None => None,
        };
        let (output, output_w) = sys::pipe()?;
        // A zygote-forked runtime gets the output pipe from the zygote; the keeper and
        // init have no use for it.
        let (keeper_stdout, output_w) = match zygote {
            Some(_) => (None, Some(output_w)),
            None => (Some(output_w), None),
        };
        let Built {
            mut instance,
            listener,
            request,
            ..
        } = self.build(spec, keeper_stdout)?;
        if let (Some(zygote), Some(output_w)) = (&zygote, output_w) {
            let config = config_memfd(&request.env)?;
            match self.fork_runtime(zygote, &request, config, &instance, output_w) {
                Ok(forked) => instance.forked = Some(forked),
                Err(e) => {
                    instance.abandon();
                    return Err(e);
                }
            }
        }
        tracing::debug!(
            instance = %spec.instance_id,
            zygote = zygote.is_some(),
            setup_us = started_at.elapsed().as_micros() as u64,
            "sandbox started"
        );
        Ok(Launched {
            process: instance.register(spec),
            output: File::from(output),
            runtime_api_listener: listener,
            runtime_api: runtime_api(),
            served_by: ServedBy::NewSandbox,
        })
    }

    /// Builds the sandbox of `spec` through a keeper. With `runtime_output` the init
    /// execs the runtime with that as its output; without, it holds the sandbox for a
    /// runtime started later (a zygote's child, or [`SandboxInstance::start_runtime`]).
    fn build(
        &self,
        spec: &LaunchSpec,
        runtime_output: Option<OwnedFd>,
    ) -> Result<Built, LaunchError> {
        self.build_with(spec, runtime_output, None)
    }

    /// Builds the sandbox of a post-init template: its runtime gets `control` (see
    /// [`template`]), runs under the template policy, and /proc hides processes from
    /// each other.
    fn build_template_sandbox(
        &self,
        spec: &LaunchSpec,
        output: OwnedFd,
        control: OwnedFd,
    ) -> Result<Built, LaunchError> {
        self.build_with(spec, Some(output), Some(control))
    }

    fn build_with(
        &self,
        spec: &LaunchSpec,
        runtime_output: Option<OwnedFd>,
        template_control: Option<OwnedFd>,
    ) -> Result<Built, LaunchError> {
        if !valid_name(&spec.instance_id) {
            return Err(LaunchError::Prepare(format!(
                "instance id {:?} must be [A-Za-z0-9-]",
                spec.instance_id
            )));
        }
        let slot = self
            .uids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acquire()
            .ok_or_else(|| LaunchError::Prepare("no free sandbox uid".into()))?;
        let outside_uid = self.config.uids.uid(slot);
        let prepared = self
            .lease_network(&spec.network)
            .and_then(|net| Ok((self.prepare(spec, outside_uid, net.as_ref())?, net)));
        let (
            Prepared {
                mut request,
                cgroup,
                root,
                tmp_disk,
            },
            net,
        ) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                self.uids
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .release(slot);
                return Err(LaunchError::Prepare(e));
            }
        };
        request.hold = runtime_output.is_none();
        if template_control.is_some() {
            request.template = true;
            for step in &mut request.mount_plan {
                if let mounts::MountStep::Proc { hide_others, .. } = step {
                    *hide_others = true;
                }
            }
        }

        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut command = Command::new(&self.config.keeper_exe);
        command
            // argv[0] is the init's /proc/1/cmdline inside: no host path of the binary.
            .arg0(KEEPER_ARGV0)
            .arg(KEEPER_ARG)
            .env_clear()
            .stdin(Stdio::from(theirs))
            .stdout(runtime_output.map_or_else(Stdio::null, Stdio::from))
            .stderr(Stdio::inherit());
        let spawned = command.spawn();
        // The command holds our copies of the keeper's ends; close them now.
        drop(command);

        let instance = SandboxInstance {
            instance_id: spec.instance_id.clone(),
            init_pid: Mutex::new(0),
            keeper: Mutex::new(None),
            ctl: ours,
            init_pidfd: Mutex::new(None),
            forked: None,
            exit: ExitCell::default(),
            cgroup,
            root,
            tmp_disk: Mutex::new(tmp_disk),
            uid_slot: slot,
            uids: self.uids.clone(),
            net: Mutex::new(net),
            owner: Mutex::new(String::new()),
            released: Mutex::new(None),
            empty_layer: self.config.state_dir.join(EMPTY_LAYER),
            opt_base: self.config.state_dir.join(OPT_BASE),
            _template: None,
        };
        let handshake = spawned.map_err(LaunchError::from).and_then(|child| {
            *instance.keeper.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
            instance.handshake(&request, template_control)
        });
        match handshake {
            Ok(listener) => Ok(Built {
                instance,
                listener,
                request,
                reservation: None,
            }),
            Err(e) => {
                instance.abandon();
                Err(e)
            }
        }
    }

    /// A link and addresses for a sandbox of `network`, admitted to the egress policy.
    fn lease_network(&self, network: &SandboxNetwork) -> Result<Option<NetLease>, String> {
        match (&self.net, network) {
            (_, network) if !network.has_link() => Ok(None),
            (Some(host), network) => host.lease(network),
            (None, _) => Err(
                "function networking is off on this server ([network] enabled = \
                              false): only functions without a network can run"
                    .into(),
            ),
        }
    }

    /// The running zygote for `spec` (started on first use).
    fn zygote_for(&self, spec: &LaunchSpec, z: &ZygoteSpec) -> Result<Arc<Zygote>, LaunchError> {
        let Some(program_as) = zygote_program(&spec.args) else {
            return Err(LaunchError::Prepare(
                "a zygote start takes the zygote's interpreter flags and the program".into(),
            ));
        };
        self.zygotes
            .get(&spec.program, z, program_as, &self.seccomp)
            .map_err(|e| LaunchError::Prepare(format!("start the zygote: {e}")))
    }

    /// Has `zygote` fork the runtime into the sandbox `instance` holds.
    /// `config` holds (a memfd) or will carry (a pipe) the runtime's [`runtime_config`].
    fn fork_runtime(
        &self,
        zygote: &Arc<Zygote>,
        request: &KeeperRequest,
        config: OwnedFd,
        instance: &SandboxInstance,
        output_w: OwnedFd,
    ) -> Result<Forked, LaunchError> {
        let (status_r, status_w) = sys::pipe()?;
        let pidfd_guard = instance
            .init_pidfd
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let Some(init_pidfd) = pidfd_guard.as_ref().map(|fd| fd.as_raw_fd()) else {
            return Err(LaunchError::Prepare("the sandbox init is gone".into()));
        };
        let forked = zygote.fork(
            &ForkRequest {
                cgroup_procs: &request.cgroup_procs,
                max_open_files: request.max_open_files,
                cwd: &request.cwd,
                runtime_api: &runtime_api(),
            },
            &ForkFds {
                init_pidfd,
                output: output_w.as_raw_fd(),
                config: config.as_raw_fd(),
                status: status_w.as_raw_fd(),
            },
        );
        drop(pidfd_guard);
        match forked {
            Ok((pid, pidfd)) => {
                self.zygote_failures.store(0, Ordering::Relaxed);
                tracing::trace!(instance = %instance.instance_id, pid, "runtime forked by the zygote");
                Ok(Forked {
                    status: status_r,
                    pidfd,
                })
            }
            Err(e) => {
                // A zygote that failed once is not trusted with the next launch.
                self.zygotes.discard(zygote);
                self.zygote_failures.fetch_add(1, Ordering::Relaxed);
                Err(LaunchError::Prepare(format!("zygote: {e}")))
            }
        }
    }

    fn zygotes_enabled(&self) -> bool {
        self.zygote_failures.load(Ordering::Relaxed) < ZYGOTE_MAX_FAILURES
    }
}

impl Inner {
    fn launch(self: &Arc<Self>, spec: &LaunchSpec) -> Result<Launched, LaunchError> {
        // A sandbox claimed for this launch (before its template was ready) carries the
        // instance's id, cgroup and all: that launch takes it.
        if let Some(fork) = self.templates.forks.take_claimed(&spec.instance_id) {
            match self.launch_forked_ahead(spec, fork) {
                Ok(launched) => return Ok(launched),
                Err(e) => tracing::warn!(
                    instance = %spec.instance_id,
                    error = %e,
                    "could not hand an instance forked ahead its environment; starting a new one"
                ),
            }
        }
        let claimed =
            self.started.has_claim(&spec.instance_id) || self.held.has_claim(&spec.instance_id);
        // A launch that claimed something built ahead (its template was not ready when
        // it claimed) takes that; it still has a missing template built.
        if let Some(wanted) = template_of(spec) {
            match self.templates.lookup(wanted) {
                Lookup::Ready(_) if claimed => {}
                Lookup::Ready(template) => match self.fork_from_template(&template, spec) {
                    Ok(launched) => return Ok(launched),
                    Err(e) => tracing::warn!(
                        instance = %spec.instance_id,
                        error = %e,
                        "could not fork from the template; starting the instance as usual"
                    ),
                },
                Lookup::Build => self.spawn_template_build(spec),
                Lookup::None => {}
            }
        }
        let zygote = spec.zygote.as_ref().filter(|_| self.zygotes_enabled());
        if let Some(started) = self.started.take_claimed(&spec.instance_id) {
            match self.launch_started(spec, started) {
                Ok(launched) => return Ok(launched),
                Err(e) => tracing::warn!(
                    instance = %spec.instance_id,
                    error = %e,
                    "could not hand a runtime started ahead its instance; starting a new one"
                ),
            }
        }
        if let Some(held) = self.held.take_claimed(&spec.instance_id) {
            match self.launch_in_held(spec, zygote, held) {
                Ok(launched) => return Ok(launched),
                Err(e) => tracing::warn!(
                    instance = %spec.instance_id,
                    error = %e,
                    "could not start the runtime in a held sandbox; building a new one"
                ),
            }
        }
        if let Some(z) = zygote {
            match self.launch_with(spec, Some(z)) {
                Ok(launched) => return Ok(launched),
                Err(e) => {
                    tracing::warn!(
                        instance = %spec.instance_id,
                        error = %e,
                        "could not fork the runtime from a zygote; exec'ing it instead"
                    );
                    if !self.zygotes_enabled() {
                        tracing::error!(
                            "zygotes failed {ZYGOTE_MAX_FAILURES} times in a row; every \
                             runtime is exec'd from now on"
                        );
                    }
                }
            }
        }
        self.launch_with(spec, None)
    }
}

impl Launcher for SandboxLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, LaunchError> {
        self.inner.launch(spec)
    }

    fn claim_held(&self, spec: &LaunchSpec) -> Option<String> {
        // An instance forked from its template needs no sandbox built ahead; one forked
        // ahead saves the fork and the cgroup migration too.
        // (The spec has no environment yet: a template missing here is built by the
        // launch that follows, which has it.)
        if let Some(key) = template_of(spec).filter(|t| self.inner.templates.is_ready(t)) {
            let claimed = self.inner.templates.forks.claim(key);
            self.inner
                .refill_template_forks(key.clone(), Demand::Launch);
            return claimed;
        }
        // Claimed or not, the shape is wanted: its pool follows the demand.
        if let Some(key) = StartedKey::of(spec, self.inner.zygotes_enabled()) {
            let claimed = self.inner.started.claim(&key);
            self.inner.refill_started(key, Demand::Launch);
            if claimed.is_some() {
                return claimed;
            }
        }
        // Else a held sandbox of the shape spares the build (for Python and Node, in a
        // burst beyond the runtimes started ahead: such launches are the held pool's
        // demand).
        let key = HeldKey::of(spec);
        let claimed = self.inner.held.claim(&key);
        self.inner.refill_held(key, Demand::Launch);
        claimed
    }

    fn name(&self) -> &'static str {
        "sandbox"
    }

    fn prepare(&self, spec: &LaunchSpec) {
        if let Some(wanted) = template_of(spec) {
            if let Lookup::Build = self.inner.templates.lookup(wanted) {
                self.inner.spawn_template_build(spec);
            }
        }
        // A launch of this shape is to come: a runtime started ahead serves it where
        // one can be (its refill starts the zygote too), else a held sandbox; held
        // sandboxes of the shape are kept at their floor either way, for a burst
        // beyond the runtimes started ahead.
        match StartedKey::of(spec, self.inner.zygotes_enabled()) {
            Some(key) => {
                self.inner.refill_started(key, Demand::Announced);
                self.inner.refill_held(HeldKey::of(spec), Demand::Used);
            }
            None => self.inner.refill_held(HeldKey::of(spec), Demand::Announced),
        }
    }

    fn tend(&self) {
        self.inner.tend_pools();
    }

    fn started_ahead_count(&self) -> usize {
        self.inner.started.count() + self.inner.templates.forks.count()
    }

    fn set_capacity_account(&self, account: Arc<dyn CapacityAccount>) {
        let _ = self.inner.capacity.set(account);
    }

    fn drop_built_ahead(&self) -> bool {
        // The room goes back at once; the teardown happens off this thread.
        if let Some(mut fork) = self.inner.templates.forks.pop_any() {
            fork.give_back_room();
            ahead::discard(vec![fork]);
            return true;
        }
        if let Some(mut s) = self.inner.started.pop_any() {
            s.give_back_room();
            ahead::discard(vec![s]);
            return true;
        }
        if let Some(mut b) = self.inner.held.pop_any() {
            drop(b.reservation.take());
            ahead::discard(vec![b]);
            return true;
        }
        self.inner.templates.drop_unused()
    }

    fn retire_template(&self, function: &str) {
        self.inner.templates.retire(function);
    }

    fn template_count(&self) -> usize {
        self.inner.templates.ready()
    }

    fn set_private_networks(&self, networks: &[PrivateNetwork]) -> Result<(), String> {
        match &self.inner.net {
            Some(net) => net.set_networks(networks).map_err(|e| e.to_string()),
            None if networks.is_empty() => Ok(()),
            None => Err("function networking is off on this server".into()),
        }
    }

    fn network_refusals(&self) -> Vec<(String, u64)> {
        let Some(net) = &self.inner.net else {
            return Vec::new();
        };
        let mut by_owner = net.retired_refusals();
        let live = net.live_refusals();
        for instance in self.inner.handed_out() {
            // A cleaned-up instance's refusals are among the retired ones already.
            if instance
                .released
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
            {
                continue;
            }
            let iface = match &*instance.net.lock().unwrap_or_else(|e| e.into_inner()) {
                Some(lease) => lease.link().host_if.clone(),
                None => continue,
            };
            let refused = live.get(&iface).copied().unwrap_or(0);
            if refused > 0 {
                let owner = instance
                    .owner
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                *by_owner.entry(owner).or_default() += refused;
            }
        }
        by_owner.into_iter().collect()
    }

    fn tmp_disk_used_bytes(&self) -> Option<u64> {
        self.inner.tmp_disks.as_ref()?;
        let handed_out = self.inner.handed_out();
        Some(handed_out.iter().map(|i| i.tmp_used_bytes()).sum())
    }

    fn shutdown(&self) {
        self.inner.started.clear();
        self.inner.held.clear();
        self.inner.templates.forks.clear();
        // A refill still building stops its sandbox when it finds the pool closed; wait
        // (briefly) so that the server's cgroups are empty when they are removed.
        let deadline = Instant::now() + Duration::from_secs(5);
        while (self.inner.started.refilling()
            || self.inner.held.refilling()
            || self.inner.templates.forks.refilling())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.inner.zygotes.shutdown();
        // Instances still handed out (requests that outlived the grace period) are
        // stopped here, so that nothing of this server is left running or mounted and
        // its cgroups can go.
        let handed_out = self.inner.handed_out();
        if !handed_out.is_empty() {
            tracing::warn!(
                instances = handed_out.len(),
                "stopping instances still running"
            );
        }
        for instance in handed_out {
            instance.cleanup();
        }
        self.inner.templates.shutdown();
        self.inner.remove_server_cgroups();
        if let Some(net) = &self.inner.net {
            net.teardown();
        }
    }
}

pub(crate) struct SandboxInstance {
    instance_id: String,
    /// Host pid of the sandbox init (pid 1 inside).
    init_pid: Mutex<u32>,
    keeper: Mutex<Option<Child>>,
    /// Control socket to the keeper; the exit status arrives here.
    ctl: OwnedFd,
    init_pidfd: Mutex<Option<OwnedFd>>,
    /// A zygote-forked runtime (the keeper only knows about the init then).
    forked: Option<Forked>,
    exit: ExitCell,
    cgroup: InstanceCgroup,
    root: PathBuf,
    /// Held until cleanup: the loop device detaches once this and the mount are gone.
    tmp_disk: Mutex<Option<TmpDisk>>,
    uid_slot: u32,
    uids: Arc<Mutex<UidSlots>>,
    /// The sandbox's link and its place in the egress policy, until cleanup.
    net: Mutex<Option<NetLease>>,
    /// Whom its usage counts to, once handed out (see [`LaunchSpec::owner`]).
    owner: Mutex<String>,
    /// Set by cleanup: what the cgroup said before it was removed.
    released: Mutex<Option<Released>>,
    empty_layer: PathBuf,
    opt_base: PathBuf,
    /// The template this instance was forked from, held so that it lives while its
    /// forks do (they are in its pid namespace).
    _template: Option<Arc<template::Template>>,
}

#[derive(Clone, Copy)]
struct Released {
    oom_killed: bool,
    memory_peak: Option<u64>,
}

impl SandboxInstance {
    pub(crate) fn id(&self) -> &str {
        &self.instance_id
    }

    /// Shows `code_dir` read-only at the instance's task root (`/var/task`), over the
    /// empty directory it was built with, and `layer_dirs` (if any) at `/opt` as a launch
    /// would have.
    fn attach_code(&self, code_dir: &Path, layer_dirs: &[PathBuf]) -> Result<PathBuf, String> {
        let init_pid = self.pid();
        if init_pid == 0 || self.exit.get().is_some() {
            return Err("the instance is not running".to_string());
        }
        let top = File::open(code_dir).map_err(|e| format!("open {}: {e}", code_dir.display()))?;
        let bottom = File::open(&self.empty_layer)
            .map_err(|e| format!("open {}: {e}", self.empty_layer.display()))?;
        let lower = mounts::overlay_layers(top.as_raw_fd(), bottom.as_raw_fd());
        let mount = sys::fs_mount_detached(
            "overlay",
            &[
                sys::FsOption::String("source", OVERLAY_SOURCE),
                sys::FsOption::String("lowerdir", &lower),
            ],
        )
        .map_err(|e| format!("overlay of the code: {e}"))?;
        drop((top, bottom));
        let mut mounts = vec![mount];
        if !layer_dirs.is_empty() {
            mounts.push(self.layers_mount(layer_dirs)?);
        }
        // Entering the instance's mount namespace takes a single-threaded process: the
        // keeper does the moves.
        let layers = mounts.len() > 1;
        self.command(KeeperCommand::AttachCode { layers }, mounts)
            .map_err(|e| format!("attach the code: {e}"))?;
        Ok(PathBuf::from("/var/task"))
    }

    fn tmp_used_bytes(&self) -> u64 {
        self.tmp_disk_used().unwrap_or(0)
    }

    /// What its /tmp filesystem holds, if /tmp is on a disk of its own.
    fn tmp_disk_used(&self) -> Option<u64> {
        self.tmp_disk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(TmpDisk::used_bytes)
    }

    /// Shares the instance, noted under its uid slot so that shutdown can stop it.
    fn register(self, spec: &LaunchSpec) -> Arc<SandboxInstance> {
        *self.owner.lock().unwrap_or_else(|e| e.into_inner()) = spec.owner.clone();
        if let Some(lease) = &*self.net.lock().unwrap_or_else(|e| e.into_inner()) {
            // Its connections count toward its function's cap from now on. A failure
            // leaves them uncounted (the policy itself holds): worth a warning, not the
            // launch.
            if let Err(e) = lease.assign(&spec.owner) {
                tracing::warn!(instance = %spec.instance_id, error = %e, "could not count the instance's connections to its function");
            }
        }
        let instance = Arc::new(self);
        instance
            .uids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .note_handed_out(instance.uid_slot, Arc::downgrade(&instance));
        instance
    }

    /// Has the held init start the runtime; returns once it was exec'd (or failed to).
    /// With `config`, the runtime gets it as fd [`PASSED_FD`] (a runtime started ahead
    /// reads its instance's environment there).
    fn start_runtime(
        &self,
        start: RuntimeStart,
        output: OwnedFd,
        config: Option<OwnedFd>,
    ) -> Result<(), String> {
        let mut fds = vec![output];
        fds.extend(config);
        self.command(KeeperCommand::StartRuntime(start), fds)
    }

    /// Sends the keeper a command with its descriptors and waits for its answer, which
    /// comes on a socket of its own (the control socket's incoming side belongs to
    /// whoever waits for the exit status).
    fn command(&self, command: KeeperCommand, fds: Vec<OwnedFd>) -> Result<(), String> {
        let (reply, reply_theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        sys::set_receive_timeout(&reply, LAUNCH_TIMEOUT)
            .map_err(|e| format!("socket timeout: {e}"))?;
        let mut raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
        raw.push(reply_theirs.as_raw_fd());
        protocol::send(&self.ctl, &command, &raw).map_err(|e| format!("reach the keeper: {e}"))?;
        drop((fds, reply_theirs));
        match protocol::recv::<CommandReply>(&reply) {
            Ok(Some((CommandReply { error: None }, _))) => Ok(()),
            Ok(Some((CommandReply { error: Some(e) }, _))) => Err(e),
            Ok(None) => Err("the keeper exited".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The layers as [`mounts::plan`] would have mounted them at `/opt`, detached: one
    /// read-only overlay, later layers first, under a top layer holding the `tern` mount
    /// point.
    fn layers_mount(&self, layer_dirs: &[PathBuf]) -> Result<OwnedFd, String> {
        let open = |dir: &Path| File::open(dir).map_err(|e| format!("open {}: {e}", dir.display()));
        let mut layers = vec![open(&self.opt_base)?];
        for dir in layer_dirs.iter().rev() {
            layers.push(open(dir)?);
        }
        let fds: Vec<RawFd> = layers.iter().map(|f| f.as_raw_fd()).collect();
        let lower = mounts::overlay_lowerdir(&fds);
        let mount = sys::fs_mount_detached(
            "overlay",
            &[
                sys::FsOption::String("source", OVERLAY_SOURCE),
                sys::FsOption::String("lowerdir", &lower),
            ],
        )
        .map_err(|e| format!("overlay of the layers: {e}"));
        drop(layers);
        mount
    }

    /// Tears down an instance that will never be handed out.
    fn abandon(&self) {
        self.kill();
        self.wait();
        self.cleanup();
    }

    /// Sends the request and waits until the runtime was exec'd.
    fn handshake(
        &self,
        request: &KeeperRequest,
        template_control: Option<OwnedFd>,
    ) -> Result<TcpListener, LaunchError> {
        let prepare = |e: io::Error| LaunchError::Prepare(format!("keeper: {e}"));
        sys::set_receive_timeout(&self.ctl, LAUNCH_TIMEOUT)?;
        // The mount plan's passed descriptors: the /tmp disk, if any, at TMP_DISK_PASSED;
        // then a template's control socket.
        let mut passed: Vec<RawFd> = self
            .tmp_disk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|d| d.mount_fd().as_raw_fd())
            .into_iter()
            .collect();
        passed.extend(template_control.as_ref().map(|fd| fd.as_raw_fd()));
        protocol::send(&self.ctl, request, &passed).map_err(prepare)?;
        drop(template_control);

        let lost = || LaunchError::Prepare("keeper exited during setup".into());
        let (event, mut fds) = protocol::recv::<KeeperEvent>(&self.ctl)
            .map_err(prepare)?
            .ok_or_else(lost)?;
        let KeeperEvent::Started { init_pid } = event else {
            return Err(LaunchError::Prepare(format!(
                "keeper: unexpected {event:?}"
            )));
        };
        if fds.len() != 2 {
            return Err(LaunchError::Prepare("keeper sent no listener".into()));
        }
        let pidfd = fds.pop().expect("checked: two descriptors");
        let listener = TcpListener::from(fds.pop().expect("checked: two descriptors"));
        *self.init_pidfd.lock().unwrap_or_else(|e| e.into_inner()) = Some(pidfd);
        *self.init_pid.lock().unwrap_or_else(|e| e.into_inner()) =
            u32::try_from(init_pid).unwrap_or(0);

        match protocol::recv::<KeeperEvent>(&self.ctl)
            .map_err(prepare)?
            .ok_or_else(lost)?
            .0
        {
            KeeperEvent::Running => {}
            KeeperEvent::Failed { message } => return Err(LaunchError::Prepare(message)),
            other => {
                return Err(LaunchError::Prepare(format!(
                    "keeper: unexpected {other:?}"
                )))
            }
        }
        sys::set_receive_timeout(&self.ctl, Duration::ZERO)?;
        Ok(listener)
    }

    fn read_exit(&self) -> ExitStatus {
        if let Some(forked) = &self.forked {
            return forked.wait();
        }
        let status = loop {
            match protocol::recv::<KeeperEvent>(&self.ctl) {
                Ok(Some((event @ KeeperEvent::Exited { .. }, _))) => {
                    break exit_status(event);
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break ExitStatus::Unknown,
            }
        };
        if let Some(mut keeper) = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = keeper.wait();
        }
        status
    }
}

impl InstanceProcess for SandboxInstance {
    fn pid(&self) -> u32 {
        *self.init_pid.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait(&self) -> ExitStatus {
        self.exit.wait_with(|| self.read_exit())
    }

    fn kill(&self) {
        if let Some(pidfd) = self
            .init_pidfd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            // ESRCH once it is gone; nothing to do then.
            let _ = sys::pidfd_send_signal(pidfd, libc::SIGKILL);
        }
        // Closing our sending side makes the keeper kill the init too (and covers a
        // keeper that has not started the init yet).
        let _ = shutdown(self.ctl.as_raw_fd(), Shutdown::Write);
    }

    fn oom_killed(&self) -> bool {
        match *self.released.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(r) => r.oom_killed,
            None => self.cgroup.oom_kills() > 0,
        }
    }

    fn memory_peak_bytes(&self) -> Option<u64> {
        match *self.released.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(r) => r.memory_peak,
            None => self.cgroup.memory_peak(),
        }
    }

    fn memory_current_bytes(&self) -> Option<u64> {
        if self
            .released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return None;
        }
        self.cgroup.memory_current()
    }

    fn tmp_disk_used_bytes(&self) -> Option<u64> {
        self.tmp_disk_used()
    }

    fn exit_fd(&self) -> Option<OwnedFd> {
        // A forked runtime's pidfd turns readable when it ends (its status follows on
        // the zygote's pipe); an exec'd one's end is the keeper's next message.
        let fd = match &self.forked {
            Some(forked) => forked.pidfd.as_fd(),
            None => self.ctl.as_fd(),
        };
        fd.try_clone_to_owned().ok()
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), String> {
        self.cgroup.set_frozen(frozen).map_err(|e| e.to_string())
    }

    fn set_resources(&self, resources: &crate::launcher::Resources) -> Result<(), String> {
        let mut limits = CgroupLimits::from_resources(resources);
        let has_disk = self
            .tmp_disk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        if !has_disk {
            limits = limits.with_tmpfs(resources.tmp_mb);
        }
        self.cgroup
            .update(&limits)
            .map_err(|e| format!("cgroup: {e}"))
    }

    fn cleanup(&self) {
        let mut released = self.released.lock().unwrap_or_else(|e| e.into_inner());
        if released.is_some() {
            return;
        }
        self.kill();
        if let Some(mut keeper) = self.keeper.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = keeper.kill();
            let _ = keeper.wait();
        }
        self.cgroup.kill_all();
        if let Some(lease) = self.net.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            lease.release(&self.owner.lock().unwrap_or_else(|e| e.into_inner()));
        }
        *released = Some(Released {
            oom_killed: self.cgroup.oom_kills() > 0,
            memory_peak: self.cgroup.memory_peak(),
        });
        self.cgroup.remove();
        remove_root_dir(&self.root);
        if let Some(disk) = self
            .tmp_disk
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            disk.release();
        }
        self.uids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(self.uid_slot);
        tracing::debug!(instance = %self.instance_id, "sandbox cleaned up");
    }
}

impl Drop for SandboxInstance {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// The post-init template `spec` may be forked from: none for a sandbox with a network
/// (see [`LaunchSpec::network`]).
fn template_of(spec: &LaunchSpec) -> Option<&TemplateSpec> {
    spec.template.as_ref().filter(|_| !spec.network.has_link())
}

/// Removes an instance root directory. It is only a mount point on the host (the mounts
/// live in the instance's private mount namespace), so it is never deleted recursively.
fn remove_root_dir(root: &Path) {
    if fs::remove_dir(root).is_ok() || !root.exists() {
        return;
    }
    let _ = nix::mount::umount2(root, nix::mount::MntFlags::MNT_DETACH);
    if let Err(e) = fs::remove_dir(root) {
        tracing::warn!(root = %root.display(), error = %e, "could not remove sandbox root");
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Which outside uids are in use, and by which handed-out instance.
#[derive(Default)]
struct UidSlots {
    /// Slot → the instance using it, once handed out (until then a dangling `Weak`).
    in_use: HashMap<u32, Weak<SandboxInstance>>,
    next: u32,
}

impl UidSlots {
    fn acquire(&mut self) -> Option<u32> {
        for _ in 0..UID_SLOTS {
            let slot = self.next;
            self.next = (self.next + 1) % UID_SLOTS;
            if let std::collections::hash_map::Entry::Vacant(e) = self.in_use.entry(slot) {
                e.insert(Weak::new());
                return Some(slot);
            }
        }
        None
    }

    fn note_handed_out(&mut self, slot: u32, instance: Weak<SandboxInstance>) {
        if let Some(entry) = self.in_use.get_mut(&slot) {
            *entry = instance;
        }
    }

    /// The handed-out instances still alive.
    fn live(&self) -> Vec<Arc<SandboxInstance>> {
        self.in_use.values().filter_map(Weak::upgrade).collect()
    }

    fn release(&mut self, slot: u32) {
        self.in_use.remove(&slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_slots_are_unique_and_reused_after_release() {
        let mut slots = UidSlots::default();
        let a = slots.acquire().expect("slot");
        let b = slots.acquire().expect("slot");
        assert_ne!(a, b);
        slots.release(a);
        assert_eq!(slots.in_use.len(), 1);
    }

    #[test]
    fn names_are_restricted_to_safe_path_components() {
        assert!(valid_name("abc-123"));
        assert!(!valid_name("../etc"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
    }
}
