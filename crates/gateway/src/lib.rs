//! The HTTP edge: the Lambda-compatible API, the native `/tern/v1` API, SigV4 auth and
//! the one place where service errors become Lambda error types and statuses.
//!
//! Handlers parse and shape HTTP only; the work happens in `tern_invoke`.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod error;
pub mod layers;

pub use app::{router, AppState};
pub use auth::Authenticator;
