//! The `provided` hello-world of the benchmark: a std-only Lambda Runtime API client
//! (what a minimal custom runtime does), deployed as a function's `bootstrap`.
//! Answers every event with `{"hello":"world","instance":S,"handler_ns":N}` over one
//! keep-alive connection to `$AWS_LAMBDA_RUNTIME_API` (S: the log stream name).

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";

type Result<T> = std::result::Result<T, String>;

struct Reply {
    request_id: Option<String>,
}

fn read_reply(r: &mut BufReader<TcpStream>) -> Result<Reply> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.starts_with("HTTP/1.1 2") {
        return Err(format!("Runtime API answered: {}", line.trim()));
    }
    let (mut len, mut request_id) = (0usize, None);
    loop {
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                len = v.parse().map_err(|_| format!("bad content-length {v}"))?;
            } else if k == "lambda-runtime-aws-request-id" {
                request_id = Some(v.to_string());
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(Reply { request_id })
}

fn run() -> Result<()> {
    let api =
        std::env::var("AWS_LAMBDA_RUNTIME_API").map_err(|_| "AWS_LAMBDA_RUNTIME_API unset")?;
    let stream = TcpStream::connect(&api).map_err(|e| format!("connect {api}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut w = stream.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(stream);
    // Log stream names are `<date>/[<version>]<instance id>`: nothing to escape in JSON.
    let stream_name = std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_default();
    loop {
        // One write per request: with TCP_NODELAY every write is a packet.
        w.write_all(format!("GET {NEXT} HTTP/1.1\r\nHost: {api}\r\n\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let event = read_reply(&mut r)?;
        let t0 = Instant::now();
        let id = event
            .request_id
            .ok_or("event without Lambda-Runtime-Aws-Request-Id")?;
        let body = format!(
            "{{\"hello\":\"world\",\"instance\":\"{stream_name}\",\"handler_ns\":{}}}",
            t0.elapsed().as_nanos()
        );
        let request = format!(
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        w.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        read_reply(&mut r)?;
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("tern-bench-provided: {e}");
        std::process::exit(1);
    }
}
