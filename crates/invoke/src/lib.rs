//! Routing, validation and the invoke path: the services the gateway calls.
//!
//! Typed errors ([`ServiceError`]) leave here; the gateway maps them to Lambda error
//! types and HTTP statuses. This crate knows nothing about HTTP.
#![forbid(unsafe_code)]

pub mod admission;
pub mod error;
pub mod events;
pub mod execution;
pub mod functions;
pub mod layers;
pub mod platform_log;
pub mod registry;
pub mod reporting;
pub mod sync;
pub mod throttle;
mod upload;
pub mod validate;

pub use admission::Admission;
pub use error::ServiceError;
pub use execution::{Execution, ExecutionError, ExecutionRequest, Executor, RunOutcome};
pub use functions::{Caller, FunctionService, ServiceConfig};
pub use registry::Registry;
pub use sync::{InvokeRequest, InvokeResponse, Invoker};
pub use throttle::Throttle;
