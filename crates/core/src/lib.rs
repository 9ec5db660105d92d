//! Domain types and Lambda wire shapes shared by every tern crate.
//!
//! Pure data and pure functions only: no I/O, no async, no clocks except where a caller
//! passes the time in. Everything here is unit-testable without a server.
#![forbid(unsafe_code)]

pub mod event_config;
pub mod function;
pub mod function_url;
pub mod layer;
pub mod limits;
pub mod names;
pub mod network;
pub mod schedule;
pub mod sigv4;
pub mod timefmt;
pub mod wire;
