//! The HTTP edge: Lambda API, native API, auth (in progress: see issue #2).
#![forbid(unsafe_code)]
