//! Routing, admission and the sync invoke path (in progress: see issue #2).
#![forbid(unsafe_code)]
