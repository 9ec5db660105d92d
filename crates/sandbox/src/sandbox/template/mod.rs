//! Post-init templates: tern's answer to Lambda SnapStart.
//!
//! A template is a runtime that has run its function's init (imported the handler, run
//! the module's top-level code) inside a sandbox of the function's own shape, and then
//! forks the function's instances: each starts with the handler imported, in
//! milliseconds, however long the init took. See `zygote/template.py` for the side that
//! runs in the sandbox.
//!
//! Isolation:
//! - A template only serves the function and revision it was built for ([`Slot`]); a
//!   launch of another revision retires it.
//! - The template runs its init with no capabilities and the template seccomp policy:
//!   the builtin one that also lets it create a user namespace and move a mount, and
//!   denies every netlink socket ([`crate::seccomp::template_policy`]). It has no
//!   Landlock domain (Landlock would deny its forks their own /tmp).
//! - Each fork leaves the template's namespaces for its own (user, mount, network, ipc,
//!   uts, pid), moves its own /tmp disk in, and drops what any runtime drops: every
//!   capability, a Landlock domain of its own with signal scoping, the builtin seccomp
//!   filter stacked on the template's, dumpable off. The server moves it into its own
//!   cgroups before it forks its pid 1. Forks of one template share the template's
//!   memory copy-on-write and its procfs, mounted `hidepid=invisible`: a fork can
//!   neither see, read nor signal its siblings.
//!
//! A template lives until it is retired and the last instance forked from it has ended
//! (its forks live in its pid namespace). It counts in the server's capacity account at
//! its function's MemorySize ([`CapacityAccount::reserve_template`]).

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use super::{
    config_memfd, runtime_api, runtime_config, runtime_env, valid_name, Forked, Inner,
    SandboxInstance, EMPTY_LAYER, OPT_BASE, RUNTIME_API_PORT,
};
use crate::ahead::Demand;
use crate::cgroups::CgroupLimits;
use crate::exit_cell::ExitCell;
use crate::launcher::{LaunchError, LaunchSpec, Launched, Reservation, Resources, TemplateSpec};
use crate::privileges::ZygotePolicy;
use crate::zygote::{program_hex, PYTHON_DROP};
use crate::{protocol, sys};

mod registry;

pub(crate) use registry::{Lookup, TemplateFork, Templates};

/// Where a template's runtime finds its control socket.
pub(crate) const TEMPLATE_FD: RawFd = super::PASSED_FD;
/// The uid and gid a template and its forks run as inside their user namespaces:
/// Lambda's sandbox user (sbx_user1051). Not root: a fork without capabilities outside
/// may map its own id into its new user namespace, but not root (that takes
/// CAP_SETFCAP).
pub(crate) const TEMPLATE_UID: u32 = 993;
pub(crate) const TEMPLATE_GID: u32 = 990;
/// The variable that tells the bootstrap it is a template, and where that socket is.
const TEMPLATE_FD_ENV: &str = "TERN_TEMPLATE_FD";
/// The program a template runs after its init, sent after [`PYTHON_DROP`].
const PYTHON_TEMPLATE: &str = include_str!("../../../zygote/template.py");
/// How long a template's init may take (Lambda's init limit).
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one fork may take, from the request to its report.
const FORK_TIMEOUT: Duration = Duration::from_secs(5);
/// Forks one template makes before it is retired (and its processes stopped). Whatever a
/// template's process holds of its forks (a subverted init can keep their /tmp mounted)
/// is released then: this bounds it.
const MAX_FORKS: u32 = 32;
/// Landlock scopes of a fork (ABI 6 and later): abstract unix sockets and signals stay
/// within its domain.
const LANDLOCK_SCOPES: u64 = 0x1 | 0x2;

#[derive(Serialize)]
struct Hello {
    source: String,
    seccomp: Vec<String>,
    drop: ZygotePolicy,
    scoped: u64,
    port: u16,
}

#[derive(Serialize)]
struct ForkRequest<'a> {
    cwd: &'a str,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    pid: Option<i32>,
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

/// One running template.
pub(crate) struct Template {
    spec: TemplateSpec,
    /// The template's sandbox; stopped (on a thread of its own: the last reference may
    /// go on an async runtime's thread) when the last reference goes: the registry's,
    /// and one per instance forked from it. Taken only then.
    instance: Option<SandboxInstance>,
    /// Requests are answered in order, one at a time.
    ctl: Mutex<OwnedFd>,
    /// Host uid the template's (and each fork's) ids map to.
    outside_uid: u32,
    /// Limits of the function's instances (forked ahead of a launch with them).
    resources: Resources,
    last_used: Mutex<Instant>,
    /// Its room in the server's capacity account (given back early when it is stopped
    /// to make room).
    room: Mutex<Option<Reservation>>,
    /// Forks asked of it so far (see [`MAX_FORKS`]).
    forks_made: std::sync::atomic::AtomicU32,
}

impl Drop for Template {
    fn drop(&mut self) {
        if let Some(instance) = self.instance.take() {
            use crate::launcher::InstanceProcess;
            instance.kill();
            crate::ahead::discard(vec![instance]);
        }
    }
}

impl Template {
    /// Stops every process of the template's sandbox but its init, which keeps the pid
    /// namespace its forks live in: the template forks no more, and nothing it held of
    /// its forks stays held.
    pub(super) fn stop_processes(&self) {
        use crate::launcher::InstanceProcess;
        let Some(instance) = &self.instance else {
            return;
        };
        instance.cgroup.kill_all_but(instance.pid());
    }

    fn idle_for(&self) -> Duration {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

impl Inner {
    /// Builds the template `spec.template` names on a thread of its own (after a
    /// [`Templates::lookup`] that returned [`Lookup::Build`]).
    pub(super) fn spawn_template_build(self: &Arc<Self>, spec: &LaunchSpec) {
        let inner = self.clone();
        let owned = spec.clone();
        let spawned = std::thread::Builder::new()
            .name("tern-template".into())
            .spawn(move || {
                inner.build_template(&owned);
                if let Some(key) = owned.template {
                    inner.refill_template_forks(key, Demand::Used);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread to build a template");
            if let Some(wanted) = &spec.template {
                self.templates.abandoned(wanted);
            }
        }
    }

    /// Tops up the instances forked ahead from `key`'s template, in the background, after
    /// `demand`.
    pub(super) fn refill_template_forks(self: &Arc<Self>, key: TemplateSpec, demand: Demand) {
        if self.templates.get(&key).is_none() {
            return;
        }
        if self.templates.forks.note(&key, demand) {
            self.spawn_template_fork_refill(key);
        }
    }

    /// Starts a refill thread of `key`'s forks (counted in the pool by the caller).
    pub(super) fn spawn_template_fork_refill(self: &Arc<Self>, key: TemplateSpec) {
        self.spawn_refill(
            |inner| &inner.templates.forks,
            key,
            "template-fork",
            |inner, key| inner.fork_ahead(key),
        );
    }

    /// Builds the template `spec.template` names, from `spec` (blocking: run it on a
    /// thread of its own). The outcome goes to the registry.
    pub(super) fn build_template(&self, spec: &LaunchSpec) {
        let Some(wanted) = spec.template.clone() else {
            return;
        };
        // One init at a time (each may take a full core for seconds), and a bounded
        // queue: past it, the build is left to the function's next cold start.
        let Some(_turn) = self.templates.queue_for_build() else {
            tracing::debug!(function = %wanted.function, "too many templates queued to build");
            self.templates.abandoned(&wanted);
            return;
        };
        let Some(room) = self
            .capacity
            .get()
            .and_then(|account| account.reserve_template(wanted.resources.memory_mb))
        else {
            tracing::debug!(function = %wanted.function, "no room for a template now");
            self.templates.abandoned(&wanted);
            return;
        };
        let started = Instant::now();
        let outcome = self.start_template(spec, &wanted, room);
        match &outcome {
            Ok(_) => tracing::info!(
                function = %wanted.function,
                init_ms = started.elapsed().as_millis() as u64,
                "template ready"
            ),
            Err(e) => tracing::warn!(
                function = %wanted.function,
                error = %e,
                "no template: its instances start as usual"
            ),
        }
        self.templates.built(&wanted, outcome.map_err(drop));
    }

    fn start_template(
        &self,
        spec: &LaunchSpec,
        wanted: &TemplateSpec,
        room: Reservation,
    ) -> Result<Arc<Template>, String> {
        if self.tmp_disks.is_none() {
            return Err("templates need a disk-backed /tmp".into());
        }
        let mut spec = spec.clone();
        spec.instance_id = format!("{}-template", spec.instance_id);
        spec.zygote = None;
        spec.template = None;
        spec.resources = wanted.resources;
        for (name, value) in &wanted.init_env {
            spec.env.retain(|(k, _)| k != name);
            spec.env.push((name.clone(), value.clone()));
        }
        spec.env
            .push((TEMPLATE_FD_ENV.to_string(), TEMPLATE_FD.to_string()));
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        // What the init prints goes nowhere (its instances' starts print their own).
        let output = fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map_err(|e| format!("open /dev/null: {e}"))?;
        let built = self
            .build_template_sandbox(&spec, OwnedFd::from(output), theirs)
            .map_err(|e| e.to_string())?;
        // A template serves no Runtime API: its init never asks for an invocation.
        drop(built.listener);
        let instance = built.instance;
        let hello = Hello {
            source: format!("{PYTHON_DROP}\n{PYTHON_TEMPLATE}"),
            seccomp: self.seccomp.iter().map(program_hex).collect(),
            drop: ZygotePolicy::new(),
            scoped: LANDLOCK_SCOPES,
            port: RUNTIME_API_PORT,
        };
        let ready = sys::set_receive_timeout(&ours, INIT_TIMEOUT)
            .and_then(|()| protocol::send(&ours, &hello, &[]))
            .and_then(|()| protocol::recv::<Reply>(&ours));
        let reply = match ready {
            Ok(Some((reply, _))) => reply,
            Ok(None) => {
                instance.kill_and_cleanup();
                return Err("the template exited during its init".into());
            }
            Err(e) => {
                instance.kill_and_cleanup();
                return Err(format!("template init: {e}"));
            }
        };
        if !reply.ready {
            instance.kill_and_cleanup();
            return Err(reply
                .error
                .unwrap_or_else(|| "unexpected answer from the template".into()));
        }
        let outside_uid = self.config.uids.uid(instance.uid_slot);
        Ok(Arc::new(Template {
            spec: wanted.clone(),
            instance: Some(instance),
            ctl: Mutex::new(ours),
            outside_uid,
            resources: spec.resources,
            last_used: Mutex::new(Instant::now()),
            room: Mutex::new(Some(room)),
            forks_made: std::sync::atomic::AtomicU32::new(0),
        }))
    }

    /// Forks the instance `spec` from `template` (no instance was forked ahead).
    pub(super) fn fork_from_template(
        &self,
        template: &Arc<Template>,
        spec: &LaunchSpec,
    ) -> Result<Launched, LaunchError> {
        let started = Instant::now();
        let config = config_memfd(&runtime_env(spec))?;
        let (instance, output, listener) =
            self.fork_instance(template, &spec.instance_id, &spec.resources, config)?;
        tracing::debug!(
            instance = %spec.instance_id,
            setup_us = started.elapsed().as_micros() as u64,
            "instance forked from its template"
        );
        Ok(Launched {
            process: instance.register(spec),
            output: File::from(output),
            runtime_api_listener: listener,
            runtime_api: runtime_api(),
            served_by: crate::launcher::ServedBy::Template,
        })
    }

    /// Forks one instance of `key`'s template ahead of a launch, if the template is
    /// ready and the capacity account has room.
    pub(super) fn fork_ahead(&self, key: &TemplateSpec) -> Result<TemplateFork, LaunchError> {
        let no = |why: &str| LaunchError::Prepare(format!("fork ahead: {why}"));
        let template = self.templates.get(key).ok_or_else(|| no("no template"))?;
        let room = self
            .capacity
            .get()
            .and_then(|account| account.reserve_built_ahead())
            .ok_or_else(|| no("no room"))?;
        let id = format!(
            "t{}-{:08x}",
            self.held_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            sys::random_u32()
        );
        let (config, config_w) = sys::pipe()?;
        let (instance, output, listener) =
            self.fork_instance(&template, &id, &template.resources, config)?;
        Ok(TemplateFork {
            instance,
            output,
            listener,
            config: config_w,
            room: Some(room),
        })
    }

    /// Hands the instance forked ahead under `spec.instance_id` its environment and
    /// limits.
    pub(super) fn launch_forked_ahead(
        &self,
        spec: &LaunchSpec,
        fork: TemplateFork,
    ) -> Result<Launched, LaunchError> {
        let TemplateFork {
            instance,
            output,
            listener,
            config,
            room: _,
        } = fork;
        let handed = runtime_config(&runtime_env(spec))
            .and_then(|text| Ok(File::from(config).write_all(&text)?))
            .and_then(|()| {
                crate::launcher::InstanceProcess::set_resources(&instance, &spec.resources)
                    .map_err(LaunchError::Prepare)
            });
        if let Err(e) = handed {
            instance.kill_and_cleanup();
            return Err(e);
        }
        tracing::debug!(instance = %spec.instance_id, "instance forked ahead from its template");
        Ok(Launched {
            process: instance.register(spec),
            output: File::from(output),
            runtime_api_listener: listener,
            runtime_api: runtime_api(),
            served_by: crate::launcher::ServedBy::Template,
        })
    }

    /// Forks an instance named `id` from `template`, in cgroups of `resources`; its
    /// runtime reads its environment from `config` (a memfd, or a pipe written later).
    fn fork_instance(
        &self,
        template: &Arc<Template>,
        id: &str,
        resources: &Resources,
        config: OwnedFd,
    ) -> Result<(SandboxInstance, OwnedFd, TcpListener), LaunchError> {
        let fail = |e: String| LaunchError::Prepare(format!("template: {e}"));
        let made = template
            .forks_made
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            + 1;
        if made > MAX_FORKS {
            return Err(fail("the template is used up".into()));
        }
        if !valid_name(id) {
            return Err(fail(format!("instance id {id:?} is invalid")));
        }
        let Some(disks) = &self.tmp_disks else {
            return Err(fail("no disk-backed /tmp".into()));
        };
        let slot = self
            .uids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .acquire()
            .ok_or_else(|| fail("no free instance slot".into()))?;
        let release_slot = || {
            self.uids
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .release(slot)
        };
        let disk = match disks.take(resources.tmp_mb) {
            Ok(disk) => disk,
            Err(e) => {
                release_slot();
                return Err(fail(e));
            }
        };
        let root = self.config.state_dir.join(id);
        let cgroup = fs::create_dir_all(&root)
            .map_err(|e| format!("create {}: {e}", root.display()))
            .and_then(|()| {
                self.cgroups
                    .create(
                        &self.config.server_id,
                        id,
                        &CgroupLimits::from_resources(resources),
                    )
                    .map_err(|e| format!("cgroup: {e}"))
            });
        let cgroup = match cgroup {
            Ok(cgroup) => cgroup,
            Err(e) => {
                let _ = fs::remove_dir(&root);
                disk.release();
                release_slot();
                return Err(fail(e));
            }
        };
        let (report, report_theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let mut instance = SandboxInstance {
            instance_id: id.to_string(),
            init_pid: Mutex::new(0),
            keeper: Mutex::new(None),
            ctl: report,
            init_pidfd: Mutex::new(None),
            forked: None,
            exit: ExitCell::default(),
            cgroup,
            root,
            tmp_disk: Mutex::new(Some(disk)),
            uid_slot: slot,
            uids: self.uids.clone(),
            // Template forks have no network: a function with one is never forked.
            net: Mutex::new(None),
            owner: Mutex::new(String::new()),
            released: Mutex::new(None),
            empty_layer: self.config.state_dir.join(EMPTY_LAYER),
            opt_base: self.config.state_dir.join(OPT_BASE),
            _template: Some(template.clone()),
        };
        match self.fork_into(template, &mut instance, report_theirs, config) {
            Ok((output, listener)) => {
                if made == MAX_FORKS {
                    tracing::info!(function = %template.spec.function, "template used up; the next cold start builds a fresh one");
                    self.templates.used_up(template);
                }
                Ok((instance, output, listener))
            }
            Err(e) => {
                instance.kill_and_cleanup();
                tracing::warn!(
                    function = %template.spec.function,
                    error = %e,
                    "a fork from the template failed; its revision starts instances as usual"
                );
                self.templates.failed(template);
                Err(fail(e))
            }
        }
    }

    /// The fork itself: asks the template, moves the fork into the instance's cgroups,
    /// and waits for its report. Returns the output's read end and the listener.
    fn fork_into(
        &self,
        template: &Template,
        instance: &mut SandboxInstance,
        report_theirs: OwnedFd,
        config: OwnedFd,
    ) -> Result<(OwnedFd, TcpListener), String> {
        {
            let disk = instance.tmp_disk.lock().unwrap_or_else(|e| e.into_inner());
            let disk = disk.as_ref().expect("a fork gets a disk");
            // What the mount plan does for an exec'd runtime's /tmp: root's inside,
            // world-writable and sticky.
            sys::chown_mount_root(
                disk.mount_fd(),
                template.outside_uid,
                template.outside_uid,
                0o1777,
            )
            .map_err(|e| format!("prepare /tmp: {e}"))?;
        }
        let (output, output_w) = sys::pipe().map_err(|e| e.to_string())?;
        let (status, status_w) = sys::pipe().map_err(|e| e.to_string())?;
        let prepared = Instant::now();
        let child_pidfd = {
            let ctl = template.ctl.lock().unwrap_or_else(|e| e.into_inner());
            sys::set_receive_timeout(&ctl, FORK_TIMEOUT).map_err(|e| e.to_string())?;
            let disk = instance.tmp_disk.lock().unwrap_or_else(|e| e.into_inner());
            let fds = [
                report_theirs.as_raw_fd(),
                output_w.as_raw_fd(),
                config.as_raw_fd(),
                status_w.as_raw_fd(),
                disk.as_ref()
                    .expect("a fork gets a disk")
                    .mount_fd()
                    .as_raw_fd(),
            ];
            protocol::send(&ctl, &ForkRequest { cwd: "/var/task" }, &fds)
                .map_err(|e| format!("reach the template: {e}"))?;
            let (reply, mut passed) = protocol::recv::<Reply>(&ctl)
                .map_err(|e| format!("hear from the template: {e}"))?
                .ok_or("the template exited")?;
            match (reply.pid, reply.error, passed.pop()) {
                (Some(_), None, Some(pidfd)) => pidfd,
                (_, Some(e), _) => return Err(e),
                _ => return Err("incomplete answer from the template".into()),
            }
        };
        drop((report_theirs, output_w, status_w, config));
        let forked = Instant::now();
        sys::set_receive_timeout(&instance.ctl, FORK_TIMEOUT).map_err(|e| e.to_string())?;
        let moved = sys::pidfd_pid(&child_pidfd).and_then(|child| {
            instance
                .cgroup
                .procs_files()
                .iter()
                .try_for_each(|procs| fs::write(procs, child.to_string()))
        });
        if let Err(e) = moved {
            // A fork that died in its setup said why on the report socket.
            return Err(match protocol::recv::<Reply>(&instance.ctl) {
                Ok(Some((
                    Reply {
                        error: Some(why), ..
                    },
                    _,
                ))) => why,
                _ => format!("move the fork into its cgroups: {e}"),
            });
        }
        nix::sys::socket::send(
            instance.ctl.as_raw_fd(),
            b"go",
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(|e| format!("start the fork: {e}"))?;
        let moved_at = Instant::now();
        let (reply, mut passed) = protocol::recv::<Reply>(&instance.ctl)
            .map_err(|e| format!("hear from the fork: {e}"))?
            .ok_or("the fork exited during its setup")?;
        if let Some(e) = reply.error {
            return Err(e);
        }
        if !reply.ok || passed.len() != 2 {
            return Err("incomplete answer from the fork".into());
        }
        let init_pidfd = passed.pop().expect("checked: two descriptors");
        let listener = TcpListener::from(passed.pop().expect("checked: two descriptors"));
        sys::set_receive_timeout(&instance.ctl, Duration::ZERO).map_err(|e| e.to_string())?;
        let init_pid = sys::pidfd_pid(&init_pidfd).map_err(|e| format!("the fork: {e}"))?;
        *instance.init_pid.lock().unwrap_or_else(|e| e.into_inner()) =
            u32::try_from(init_pid).unwrap_or(0);
        let kill_fd = init_pidfd
            .try_clone()
            .map_err(|e| format!("dup pidfd: {e}"))?;
        *instance
            .init_pidfd
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(kill_fd);
        instance.forked = Some(Forked {
            status,
            pidfd: init_pidfd,
        });
        tracing::trace!(
            instance = %instance.instance_id,
            fork_us = (forked - prepared).as_micros() as u64,
            cgroups_us = (moved_at - forked).as_micros() as u64,
            report_us = moved_at.elapsed().as_micros() as u64,
            "fork phases"
        );
        Ok((output, listener))
    }
}

impl SandboxInstance {
    /// Stops an instance that never ran (or whose end is not awaited): no wait.
    pub(super) fn kill_and_cleanup(&self) {
        use crate::launcher::InstanceProcess;
        self.kill();
        self.cleanup();
    }
}
