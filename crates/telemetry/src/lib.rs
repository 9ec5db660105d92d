//! Observability: Prometheus metrics, the buffered function-log sink, tracing setup.
//!
//! Everything here is written off the request path: counters are atomics, log lines go
//! through a channel to a background writer.
#![forbid(unsafe_code)]

pub mod logs;
pub mod metrics;

pub use logs::LogSink;
pub use metrics::Metrics;

/// Installs the global `tracing` subscriber (RUST_LOG, default `info`).
pub fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
