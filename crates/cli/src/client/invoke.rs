//! `tern invoke`: a synchronous invoke; the response body goes to stdout, the log tail to
//! stderr, and a function error becomes exit code 1. With `--async`, the event is queued
//! and its request id printed (`tern invocations get ID` follows it).

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;

use super::http::{encode, Client, Request};
use super::ConnectArgs;

/// Payload sent when `--payload` is not given, as the AWS CLI does.
const DEFAULT_PAYLOAD: &[u8] = b"{}";

#[derive(clap::Args, Debug)]
pub struct InvokeArgs {
    /// Function name or ARN.
    pub name: String,
    /// JSON event, or @FILE to read it from a file (@- for stdin).
    #[arg(long, value_name = "JSON|@FILE")]
    pub payload: Option<String>,
    /// Print the last 4 KB of the function's log to stderr.
    #[arg(long, conflicts_with = "async")]
    pub log: bool,
    /// Queue the event (InvocationType Event) and print its request id.
    #[arg(long = "async")]
    pub r#async: bool,
    /// With --async: a repeat of this key within 24 h queues nothing and prints the
    /// first request id.
    #[arg(long, requires = "async", value_name = "KEY")]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The payload bytes for `--payload`, checked to be JSON.
pub fn read_payload(arg: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let (bytes, source) = match arg {
        None => return Ok(DEFAULT_PAYLOAD.to_vec()),
        Some("@-") => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the payload from stdin")?;
            (buf, "stdin".to_string())
        }
        Some(arg) => match arg.strip_prefix('@') {
            Some(path) => (
                std::fs::read(path).with_context(|| format!("cannot read payload file {path}"))?,
                format!("payload file {path}"),
            ),
            None => (arg.as_bytes().to_vec(), "--payload".to_string()),
        },
    };
    serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)
        .with_context(|| format!("{source} is not valid JSON"))?;
    Ok(bytes)
}

pub fn run(args: &InvokeArgs) -> anyhow::Result<ExitCode> {
    let payload = read_payload(args.payload.as_deref())?;
    let client = Client::connect(&args.connect)?;
    let mut req = Request::new(
        "POST",
        format!("/2015-03-31/functions/{}/invocations", encode(&args.name)),
    )
    .header(
        "x-amz-invocation-type",
        if args.r#async {
            "Event"
        } else {
            "RequestResponse"
        },
    );
    if let Some(key) = &args.idempotency_key {
        req = req.header("x-tern-idempotency-key", key);
    }
    if args.log {
        req = req.header("x-amz-log-type", "Tail");
    }
    req.body = payload;
    let resp = client
        .call(req)
        .with_context(|| format!("cannot invoke {}", args.name))?;
    if args.r#async {
        let id = resp.header("x-amzn-requestid").unwrap_or_default();
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }

    if args.log {
        if let Some(encoded) = resp.header("x-amz-log-result") {
            match base64::engine::general_purpose::STANDARD.decode(encoded) {
                Ok(log) => {
                    let mut err = std::io::stderr().lock();
                    err.write_all(&log)?;
                    if !log.ends_with(b"\n") {
                        err.write_all(b"\n")?;
                    }
                }
                Err(e) => eprintln!("tern: the log tail is not base64 ({e})"),
            }
        }
    }
    let mut out = std::io::stdout().lock();
    out.write_all(&resp.body)?;
    if !resp.body.is_empty() && !resp.body.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;

    if let Some(kind) = resp.header("x-amz-function-error") {
        eprintln!("tern: function {} failed ({kind})", args.name);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_payload_sends_an_empty_object() {
        assert_eq!(read_payload(None).expect("default"), b"{}");
    }

    #[test]
    fn an_inline_payload_is_sent_verbatim() {
        assert_eq!(
            read_payload(Some(r#"{"a": 1}"#)).expect("inline"),
            br#"{"a": 1}"#
        );
    }

    #[test]
    fn an_at_file_payload_is_read_from_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("event.json");
        std::fs::write(&path, "[1, 2]\n").expect("write");
        let arg = format!("@{}", path.display());
        assert_eq!(read_payload(Some(&arg)).expect("file"), b"[1, 2]\n");
    }

    #[test]
    fn a_missing_payload_file_names_the_file() {
        let msg = format!(
            "{:#}",
            read_payload(Some("@/nonexistent/event.json")).expect_err("missing")
        );
        assert!(msg.contains("/nonexistent/event.json"), "{msg}");
    }

    #[test]
    fn a_payload_that_is_not_json_is_refused_before_sending() {
        let msg = format!("{:#}", read_payload(Some("{oops")).expect_err("bad json"));
        assert!(msg.contains("not valid JSON"), "{msg}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "nope").expect("write");
        let msg = format!(
            "{:#}",
            read_payload(Some(&format!("@{}", path.display()))).expect_err("bad file")
        );
        assert!(
            msg.contains("bad.json") && msg.contains("not valid JSON"),
            "{msg}"
        );
    }
}
