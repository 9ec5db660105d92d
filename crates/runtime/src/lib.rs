//! Function instances: the Runtime API each instance talks to, output capture, the
//! runtime catalog, language bootstraps, and the instance manager (pools, keep-alive).
//!
//! It starts processes only through a `tern_sandbox::Launcher` and knows nothing of
//! HTTP clients, auth or the store.
#![forbid(unsafe_code)]

pub mod api;
pub mod bootstraps;
pub mod catalog;
pub mod credentials;
pub mod dns;
pub mod fake_launcher;
pub mod freezer;
pub mod instance;
pub mod load;
pub mod output;
pub mod pool;
pub mod python_sdk;

pub use catalog::{RuntimeCatalog, RuntimeKind};
pub use instance::{describe_exit, Instance, InvokeInput, Outcome, StartError};
pub use output::{LogConsumer, OutputLine};
pub use pool::{
    AcquireError, FunctionSpec, InstanceManager, Lease, LogRouter, PoolConfig, ProvisionedState,
    ProvisionedStatus, TmpDiskUsage,
};
pub use python_sdk::PythonSdk;
pub use tern_sandbox::{Cidr, PrivateAllow, PrivateNetwork, SandboxNetwork};
