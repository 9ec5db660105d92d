//! `tern logs`: a function's recent log lines, oldest first.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;
use tern_core::{limits, timefmt};

use super::http::{encode, Client, Request};
use super::ConnectArgs;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Function name.
    pub name: String,
    /// How many of the most recent lines to print [server default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64)
        .range(1..=limits::LIST_MAX_ITEMS as u64))]
    pub limit: Option<u64>,
    /// Only the lines of this invocation.
    #[arg(long, value_name = "ID")]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Deserialize)]
struct LogLine {
    timestamp_ms: i64,
    message: String,
}

#[derive(Deserialize)]
struct LogsResponse {
    lines: Vec<LogLine>,
}

pub fn run(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.connect)?;
    let mut req = Request::new(
        "GET",
        format!("/tern/v1/functions/{}/logs", encode(&args.name)),
    );
    if let Some(limit) = args.limit {
        req = req.query("limit", &limit.to_string());
    }
    if let Some(id) = &args.request_id {
        req = req.query("request_id", id);
    }
    let logs: LogsResponse = client
        .call(req)
        .with_context(|| format!("cannot read the logs of {}", args.name))?
        .json()?;
    let mut out = std::io::stdout().lock();
    for line in &logs.lines {
        writeln!(out, "{}", format_line(line))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn format_line(line: &LogLine) -> String {
    format!(
        "{} {}",
        timefmt::rfc3339(line.timestamp_ms),
        line.message.trim_end_matches(['\n', '\r'])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_prefixed_with_their_time() {
        let line = LogLine {
            timestamp_ms: 1_700_000_000_123,
            message: "END RequestId: abc\n".into(),
        };
        assert_eq!(
            format_line(&line),
            "2023-11-14T22:13:20.123Z END RequestId: abc"
        );
    }
}
