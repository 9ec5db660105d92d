//! The HTTP edge: the Lambda-compatible API, the native `/tern/v1` API, SigV4 auth and
//! the one place where service errors become Lambda error types and statuses.
//!
//! Handlers parse and shape HTTP only; the work happens in `tern_invoke`. The listener
//! bounds what any client can make the server hold.
#![forbid(unsafe_code)]

pub mod app;
pub mod auth;
pub mod download;
pub mod error;
mod events;
pub mod function_url;
pub mod layers;
pub mod listener;
mod networks;
pub mod operations;
pub mod presign;
mod schedules;
pub mod sessions;
mod versions;

pub use app::{router, AppState};
pub use auth::Authenticator;
pub use download::Downloads;
pub use function_url::{BodyBudget, UrlBase};
pub use listener::ListenerLimits;
pub use presign::UrlSigner;
pub use sessions::Sessions;
