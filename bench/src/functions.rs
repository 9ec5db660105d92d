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

/// The network section's function, also run as a plain host process
/// (`python3.11 -c NET_PY <op> <json args>`) as the baseline: the same code both ways.
/// `bulk` sends `total` bytes in `chunk`-byte `sendall`s over one connection and waits
/// for the sink's byte count; `http` times sequential GETs on one keep-alive connection;
/// `hold` connects and waits for the server's release byte.
pub const PY_NET: &str = r#"
import http.client, json, socket, sys, time


def bulk(host, port, total, chunk):
    buf = memoryview(bytes(chunk))
    s = socket.create_connection((host, port), timeout=60)
    t0 = time.perf_counter()
    sent = 0
    while sent < total:
        s.sendall(buf)
        sent += chunk
    s.shutdown(socket.SHUT_WR)
    got = b""
    while len(got) < 8:
        part = s.recv(8 - len(got))
        if not part:
            break
        got += part
    seconds = time.perf_counter() - t0
    s.close()
    return {"sent": sent, "received": int.from_bytes(got, "big"), "seconds": seconds}


def http_rtt(host, port, warmup, requests):
    c = http.client.HTTPConnection(host, port, timeout=10)
    ns = []
    for i in range(warmup + requests):
        t0 = time.perf_counter_ns()
        c.request("GET", "/")
        r = c.getresponse()
        r.read()
        t = time.perf_counter_ns() - t0
        if r.status != 200:
            raise RuntimeError("HTTP %d" % r.status)
        if i >= warmup:
            ns.append(t)
    c.close()
    return {"ns": ns}


def hold(host, port, timeout):
    t0 = time.monotonic()
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        return {"error": "connect: " + type(e).__name__}
    connected = time.monotonic() - t0
    try:
        got = s.recv(1)
    except OSError as e:
        return {"error": "recv: " + type(e).__name__}
    finally:
        s.close()
    return {"connect_s": connected, "released": got == b"g"}


OPS = {"bulk": bulk, "http": http_rtt, "hold": hold}


def handler(event, context):
    result = OPS[event["op"]](**event["args"])
    result["instance"] = context.log_stream_name
    return result


if __name__ == "__main__":
    print(json.dumps(OPS[sys.argv[1]](**json.loads(sys.argv[2]))))
"#;

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

pub fn python_net() -> anyhow::Result<Function> {
    Ok(Function {
        runtime: "python3.11",
        handler: "net.handler",
        zip: zip(&[("net.py", PY_NET.as_bytes(), 0o644)])?,
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
