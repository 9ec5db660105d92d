//! The functions the harness deploys: hello-world for each runtime, a no-op for
//! throughput and enqueue, and one that returns when it started (async section). The
//! hello-worlds and the no-op return their log stream name
//! (`<date>/[<version>]<instance id>`), so the harness knows which instance served a
//! request; hello-world also reports how long its own handler body took, as `handler_ns`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Python hello-world; also what baseline (a) runs.
pub const PY_HELLO: &str = "\
import time


def handler(event, context):
    if event.get(\"sleep_ms\"):
        time.sleep(event[\"sleep_ms\"] / 1000)  # keeps instances busy (memory section)
    t0 = time.perf_counter_ns()
    result = {\"hello\": \"world\", \"instance\": context.log_stream_name}
    result[\"handler_ns\"] = time.perf_counter_ns() - t0
    return result
";

/// Python hello-world whose init imports boto3 (the pinned SDK of the runtime), as
/// many real functions do.
pub const PY_BOTO3: &str = "\
import time

import boto3  # noqa: F401 - the heavy init being measured


def handler(event, context):
    t0 = time.perf_counter_ns()
    result = {\"hello\": \"world\", \"instance\": context.log_stream_name}
    result[\"handler_ns\"] = time.perf_counter_ns() - t0
    return result
";

pub const PY_NOOP: &str = "\
def handler(event, context):
    return context.log_stream_name
";

/// Returns the wall clock at the start of its handler (the async section's
/// enqueue → start: the client on the same host reads the same clock).
pub const PY_STARTED_AT: &str = "\
import time


def handler(event, context):
    return {\"t\": time.time()}
";

pub const NODE_HELLO: &str = "\
exports.handler = async (event, context) => {
  const t0 = process.hrtime.bigint();
  const result = { hello: \"world\", instance: context.logStreamName };
  result.handler_ns = Number(process.hrtime.bigint() - t0);
  return result;
};
";

/// A deployable function.
pub struct Function {
    pub runtime: &'static str,
    pub handler: &'static str,
    pub zip: Vec<u8>,
}

pub fn zip(files: &[(&str, &[u8], u32)]) -> anyhow::Result<Vec<u8>> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        for (name, data, mode) in files {
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode);
            w.start_file(*name, opts)?;
            w.write_all(data)?;
        }
        w.finish()?;
    }
    Ok(buf.into_inner())
}

pub fn python_hello() -> anyhow::Result<Function> {
    Ok(Function {
        runtime: "python3.11",
        handler: "app.handler",
        zip: zip(&[("app.py", PY_HELLO.as_bytes(), 0o644)])?,
    })
}

pub fn python_boto3() -> anyhow::Result<Function> {
    Ok(Function {
        runtime: "python3.11",
        handler: "app.handler",
        zip: zip(&[("app.py", PY_BOTO3.as_bytes(), 0o644)])?,
    })
}

pub fn python_noop() -> anyhow::Result<Function> {
    Ok(Function {
        runtime: "python3.11",
        handler: "app.handler",
        zip: zip(&[("app.py", PY_NOOP.as_bytes(), 0o644)])?,
    })
}

pub fn python_started_at() -> anyhow::Result<Function> {
    Ok(Function {
        runtime: "python3.11",
        handler: "app.handler",
        zip: zip(&[("app.py", PY_STARTED_AT.as_bytes(), 0o644)])?,
    })
}

pub fn node_hello() -> anyhow::Result<Function> {
    Ok(Function {
        runtime: "nodejs20.x",
        handler: "index.handler",
        zip: zip(&[("index.js", NODE_HELLO.as_bytes(), 0o644)])?,
    })
}

/// The `provided` hello-world: the `tern-bench-provided` binary (a std-only Rust
/// Runtime API client, built next to this one) as the zip's `bootstrap`.
pub fn provided_hello() -> anyhow::Result<Function> {
    let exe = std::env::current_exe()?.with_file_name("tern-bench-provided");
    let bin = std::fs::read(&exe).with_context(|| {
        format!(
            "cannot read {} (build it with `cargo build --release --workspace`)",
            exe.display()
        )
    })?;
    Ok(Function {
        runtime: "provided.al2023",
        handler: "hello.handler",
        zip: zip(&[("bootstrap", &bin, 0o755)])?,
    })
}

/// Two small layers for the Python hello-world (a module each under `python/`; the
/// second overrides one file of the first), to measure what mounting layers costs a
/// cold start.
pub fn python_layers() -> anyhow::Result<[Vec<u8>; 2]> {
    Ok([
        zip(&[
            ("python/bench_layer_a.py", b"WHO = 'a'\n", 0o644),
            ("python/bench_shared.py", b"WHO = 'a'\n", 0o644),
        ])?,
        zip(&[("python/bench_shared.py", b"WHO = 'b'\n", 0o644)])?,
    ])
}

/// Writes the Python hello-world into `dir` as `app.py` (for the baselines).
pub fn write_python_hello(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join("app.py"), PY_HELLO)?;
    Ok(())
}
