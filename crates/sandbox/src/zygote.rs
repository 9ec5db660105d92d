//! Python zygotes (SOCK, USENIX ATC'18): a warm interpreter with the runtime bootstrap
//! already imported forks each new runtime straight into a sandbox the keeper built with
//! [`crate::protocol::KeeperRequest::hold`], instead of exec'ing a fresh interpreter there.
//!
//! The zygote runs on the host as root (it must join cgroups and namespaces) but never runs
//! function code: its children join the sandbox (cgroups, then every namespace of the
//! instance's init through its pidfd, then root inside the user namespace), fork once more
//! to enter the pid namespace, and drop every privilege exactly as an exec'd runtime does
//! before the program's `main()` runs. See `zygote/python.py` for that side.
//!
//! What a child inherits from its zygote, and why that is safe to share: the interpreter's
//! memory holds only the bootstrap and the standard library, never an instance's
//! environment (each child reads its own from a memfd after the fork). What children of
//! one zygote do share is the zygote's string-hash seed and address-space layout, so the
//! launcher keeps one zygote per [`ZygoteSpec::key`] (tern uses the namespace): functions
//! of different tenants never share one.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use seccompiler::BpfProgram;
use serde::{Deserialize, Serialize};

use crate::launcher::{ZygoteSpec, ZYGOTE_PYTHON_FLAGS};
use crate::privileges::ZygotePolicy;
use crate::protocol;

/// The privilege-drop helpers the zygote and post-init templates share.
pub(crate) const PYTHON_DROP: &str = include_str!("../zygote/drop.py");
/// The zygote program, fed to `python3 -S -` on stdin after [`PYTHON_DROP`].
const PYTHON_ZYGOTE: &str = include_str!("../zygote/python.py");
/// Descriptor of the control socket in the zygote.
const CTL_FD: RawFd = 3;
/// How long the zygote may take to start, or to fork one runtime.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Serialize)]
struct Hello<'a> {
    preload: &'a Path,
    preload_as: &'a str,
    seccomp: Vec<String>,
    /// The rest of the privilege drop, as the keeper applies it.
    drop: ZygotePolicy,
}

/// One fork request; the descriptors travel with it.
#[derive(Serialize)]
pub(crate) struct ForkRequest<'a> {
    pub cgroup_procs: &'a [PathBuf],
    pub max_open_files: u64,
    pub cwd: &'a Path,
    /// Where the runtime will reach the Runtime API (`host:port`): a runtime forked
    /// ahead connects while it waits for its instance.
    pub runtime_api: &'a str,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    pid: Option<i32>,
    #[serde(default)]
    error: Option<String>,
}

/// The descriptors a forked runtime gets, in the order the zygote expects them.
pub(crate) struct ForkFds {
    /// pidfd of the sandbox's init: the namespaces to join.
    pub init_pidfd: RawFd,
    /// Write end of the output pipe (the runtime's stdout and stderr).
    pub output: RawFd,
    /// memfd holding `{"env": {...}}`.
    pub config: RawFd,
    /// Write end of the pipe that gets the runtime's wait status.
    pub status: RawFd,
}

/// One running zygote process.
pub(crate) struct Zygote {
    child: Mutex<Child>,
    /// Requests are answered in order, one at a time.
    ctl: Mutex<OwnedFd>,
}

impl Zygote {
    fn start(
        interpreter: &Path,
        spec: &ZygoteSpec,
        preload_as: &str,
        seccomp: &[BpfProgram],
    ) -> io::Result<Zygote> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let theirs_fd = theirs.as_raw_fd();
        let mut command = Command::new(interpreter);
        command
            .args(ZYGOTE_PYTHON_FLAGS)
            .arg("-")
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: the closure runs in the forked child before exec and only calls dup2,
        // which is async-signal-safe; `theirs` stays open in the parent until spawn returns.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(theirs_fd, CTL_FD) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        drop(theirs);
        match handshake(&mut child, &ours, spec, preload_as, seccomp) {
            Ok(()) => Ok(Zygote {
                child: Mutex::new(child),
                ctl: Mutex::new(ours),
            }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Forks a runtime into the sandbox whose init `fds.init_pidfd` names. Returns its
    /// host pid and a pidfd of it.
    pub(crate) fn fork(
        &self,
        request: &ForkRequest<'_>,
        fds: &ForkFds,
    ) -> Result<(i32, OwnedFd), String> {
        let ctl = self.ctl.lock().unwrap_or_else(|e| e.into_inner());
        let raw = [fds.init_pidfd, fds.output, fds.config, fds.status];
        protocol::send(&ctl, request, &raw).map_err(|e| format!("zygote: {e}"))?;
        let (reply, mut passed) = protocol::recv::<Reply>(&ctl)
            .map_err(|e| format!("zygote: {e}"))?
            .ok_or("the zygote exited")?;
        match (reply.pid, reply.error, passed.pop()) {
            (Some(pid), None, Some(pidfd)) => Ok((pid, pidfd)),
            (_, Some(error), _) => Err(error),
            _ => Err("zygote: incomplete answer".to_string()),
        }
    }

    fn alive(&self) -> bool {
        matches!(
            self.child
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_wait(),
            Ok(None)
        )
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Feeds the zygote its program and waits until it has pre-imported the runtime.
fn handshake(
    child: &mut Child,
    ctl: &OwnedFd,
    spec: &ZygoteSpec,
    preload_as: &str,
    seccomp: &[BpfProgram],
) -> io::Result<()> {
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(PYTHON_DROP.as_bytes())?;
    stdin.write_all(b"\n")?;
    stdin.write_all(PYTHON_ZYGOTE.as_bytes())?;
    drop(stdin);
    let hello = Hello {
        preload: &spec.program,
        preload_as,
        seccomp: seccomp.iter().map(program_hex).collect(),
        drop: ZygotePolicy::new(),
    };
    crate::sys::set_receive_timeout(ctl, TIMEOUT)?;
    protocol::send(ctl, &hello, &[])?;
    let reply = protocol::recv::<serde_json::Value>(ctl)?
        .ok_or_else(|| io::Error::other("the zygote exited while starting"))?
        .0;
    if reply.get("ready").and_then(|v| v.as_bool()) == Some(true) {
        return Ok(());
    }
    let message = reply
        .get("error")
        .and_then(|v| v.as_str())
        .unwrap_or("unexpected answer");
    Err(io::Error::other(message.to_string()))
}

/// The instructions of one BPF program as hex, in native byte order (the zygote packs
/// them back into `struct sock_filter`).
pub(crate) fn program_hex(program: &BpfProgram) -> String {
    let mut out = String::with_capacity(program.len() * 16);
    for insn in program {
        let mut bytes = Vec::with_capacity(8);
        bytes.extend_from_slice(&insn.code.to_ne_bytes());
        bytes.push(insn.jt);
        bytes.push(insn.jf);
        bytes.extend_from_slice(&insn.k.to_ne_bytes());
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ZygoteKey {
    key: String,
    interpreter: PathBuf,
    program: PathBuf,
    preload_as: String,
    env: Vec<(String, String)>,
}

/// The launcher's zygotes, started on first use and kept until shutdown.
#[derive(Default)]
pub(crate) struct Zygotes {
    /// One slot per key, locked while its zygote starts, so that a start (tens of ms,
    /// at most [`TIMEOUT`]) holds up only launches that need the same zygote.
    running: Mutex<HashMap<ZygoteKey, Slot>>,
}

type Slot = Arc<Mutex<Option<Arc<Zygote>>>>;

impl Zygotes {
    /// The zygote for this interpreter, program and key; started (or restarted, if it
    /// died) on demand.
    pub(crate) fn get(
        &self,
        interpreter: &Path,
        spec: &ZygoteSpec,
        preload_as: &str,
        seccomp: &[BpfProgram],
    ) -> io::Result<Arc<Zygote>> {
        let key = ZygoteKey {
            key: spec.key.clone(),
            interpreter: interpreter.to_path_buf(),
            program: spec.program.clone(),
            preload_as: preload_as.to_string(),
            env: spec.env.clone(),
        };
        let slot = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(zygote) = slot.as_ref() {
            if zygote.alive() {
                return Ok(zygote.clone());
            }
            tracing::warn!(key = %spec.key, "zygote died; starting a new one");
        }
        *slot = None;
        let started = std::time::Instant::now();
        let zygote = Arc::new(Zygote::start(interpreter, spec, preload_as, seccomp)?);
        tracing::info!(
            key = %spec.key,
            interpreter = %interpreter.display(),
            start_ms = started.elapsed().as_millis() as u64,
            "zygote started"
        );
        *slot = Some(zygote.clone());
        Ok(zygote)
    }

    /// Stops every zygote (their runtimes are the instances' business).
    pub(crate) fn shutdown(&self) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Forgets a zygote that failed a request, so the next launch starts a fresh one.
    pub(crate) fn discard(&self, zygote: &Arc<Zygote>) {
        let slots: Vec<Slot> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for slot in slots {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_some_and(|z| Arc::ptr_eq(z, zygote)) {
                *slot = None;
            }
        }
    }
}
