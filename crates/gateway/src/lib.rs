//! The HTTP edge: Lambda-compatible API, native API, SigV4 auth. Today it holds the one
//! place where service errors become Lambda error types and statuses; the routes follow.
#![forbid(unsafe_code)]

pub mod error;
