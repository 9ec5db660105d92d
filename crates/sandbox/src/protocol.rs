//! Messages between the launcher and its keeper, one JSON document per SOCK_SEQPACKET
//! datagram, optionally carrying descriptors (SCM_RIGHTS).

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::mounts::MountStep;
use crate::net::SandboxLink;

/// Largest message either side sends (the spec with its environment and mount plan).
const MAX_MESSAGE: usize = 256 * 1024;

/// What the keeper needs to build and start one instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeeperRequest {
    pub instance_id: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub hostname: String,
    pub runtime_api_port: u16,
    /// Host uid/gid that root inside the user namespace maps to.
    pub outside_uid: u32,
    pub outside_gid: u32,
    /// `cgroup.procs` files the instance init joins before anything else.
    pub cgroup_procs: Vec<PathBuf>,
    pub mount_plan: Vec<MountStep>,
    pub max_open_files: u64,
    pub cwd: PathBuf,
    /// Start no runtime yet: the init holds the sandbox (and reaps orphans) until the
    /// launcher either has it start one ([`KeeperCommand::StartRuntime`]) or has a zygote
    /// fork one into it (see [`crate::zygote`]).
    #[serde(default)]
    pub hold: bool,
    /// Build a post-init template (see `crate::sandbox::template`): the last passed descriptor
    /// is its control socket, which the runtime gets as fd `PASSED_FD`;
    /// the runtime runs under the template policy (no Landlock, the template seccomp
    /// filter) and /proc hides processes from each other.
    #[serde(default)]
    pub template: bool,
    /// The sandbox's link to the host; none: loopback only.
    #[serde(default)]
    pub network: Option<SandboxLink>,
}

/// What the launcher may ask of a running keeper (closing the socket asks it to kill the
/// instance). Each carries, as its last descriptor, a socket for the [`CommandReply`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum KeeperCommand {
    /// Move the detached mount (first descriptor) onto the instance's `/var/task`; with
    /// `layers`, also the detached overlay of the function's layers (second descriptor)
    /// onto its `/opt`, keeping the bootstraps' mount at `/opt/tern` on top of it.
    AttachCode { layers: bool },
    /// Start the runtime in a sandbox built with [`KeeperRequest::hold`]; its output goes
    /// to the first descriptor, and a second one (if passed) is the runtime's config
    /// descriptor, given to it as fd `PASSED_FD`. The keeper hands this on to the init.
    StartRuntime(RuntimeStart),
}

/// The runtime a held sandbox's init is to start (the rest is the [`KeeperRequest`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RuntimeStart {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CommandReply {
    pub error: Option<String>,
}

/// What the keeper reports back, in this order: `Started` (with the listener and a pidfd
/// of the instance init), then `Running` or `Failed`, then `Exited`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum KeeperEvent {
    Started {
        init_pid: i32,
    },
    Running,
    Failed {
        message: String,
    },
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

pub(crate) fn send<T: Serialize>(sock: &OwnedFd, msg: &T, fds: &[RawFd]) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    let iov = [IoSlice::new(&body)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)?;
    Ok(())
}

/// Receives one message. `Ok(None)` means the peer closed the socket.
pub(crate) fn recv<T: DeserializeOwned>(sock: &OwnedFd) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (len, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                    return Err(io::Error::other("keeper message too large"));
                }
                let mut fds = Vec::new();
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        for fd in raw {
                            // SAFETY: SCM_RIGHTS just installed `fd` in this process and
                            // nothing else refers to it.
                            fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                        }
                    }
                }
                break (msg.bytes, fds);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if len == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..len]).map_err(io::Error::other)?;
    Ok(Some((msg, fds)))
}
