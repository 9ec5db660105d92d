//! Starts function instances: [`process::ProcessLauncher`] runs the runtime as a plain
//! child process (development only), [`sandbox::SandboxLauncher`] runs it inside user, pid,
//! mount, ipc, uts, net and cgroup namespaces with a read-only pivot_root filesystem, a
//! disk-backed /tmp, cgroup limits, no capabilities and a seccomp deny policy.
//!
//! This is the only crate of the workspace allowed to use `unsafe`; every block says why it
//! is sound. It must not know about functions, invocations or HTTP: it starts, watches and
//! tears down processes, nothing more.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod ahead;
pub mod cgroups;
mod exit_cell;
pub mod keeper;
pub mod launcher;
pub mod mounts;
pub mod net;
mod privileges;
pub mod process;
mod protocol;
pub mod sandbox;
pub mod seccomp;
mod sys;
pub mod tmp_disk;
pub mod uid_range;
mod zygote;

pub use ahead::Depth;
pub use keeper::{is_keeper_invocation, run_keeper};
pub use launcher::{
    exit_fd_readable, zygote_program, CapacityAccount, ExitStatus, InstanceProcess, LaunchError,
    LaunchSpec, Launched, Launcher, Reservation, Resources, Room, ServedBy, TemplateSpec,
    ZygoteSpec, CONFIG_FD_VAR, ZYGOTE_PYTHON_FLAGS,
};
pub use net::{Cidr, HostNetwork, NetworkConfig, PrivateAllow, PrivateNetwork, SandboxNetwork};
pub use process::ProcessLauncher;
pub use sandbox::{SandboxConfig, SandboxError, SandboxLauncher};
pub use uid_range::UidRange;
