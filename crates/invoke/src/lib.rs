//! Routing, validation and the invoke path: the services the gateway calls.
//!
//! Typed errors ([`ServiceError`]) leave here; the gateway maps them to Lambda error
//! types and HTTP statuses. This crate knows nothing about HTTP.
#![forbid(unsafe_code)]

pub mod admission;
mod aliases;
pub mod error;
pub mod events;
pub mod execution;
pub mod functions;
pub mod layers;
pub mod lookups;
pub mod networks;
pub mod platform_log;
mod provisioned;
pub mod registry;
pub mod reporting;
pub mod schedules;
pub mod sync;
pub mod throttle;
mod upload;
pub mod urls;
pub mod validate;
mod versions;

pub use admission::Admission;
pub use error::ServiceError;
pub use execution::{Execution, ExecutionError, ExecutionRequest, Executor, RunOutcome};
pub use functions::{Caller, FunctionService, ServiceConfig};
pub use registry::Registry;
pub use sync::{InvokeRequest, InvokeResponse, Invoker};
pub use throttle::Throttle;

/// Milliseconds since the Unix epoch, the time every record and log line of this crate
/// carries.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
