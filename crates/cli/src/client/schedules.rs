//! `tern schedule`: invoke a function on a `rate(…)` or cron expression, through the
//! async path.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::http::{encode, Client, Request};
use super::ConnectArgs;

#[derive(clap::Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Create a schedule.
    Add {
        name: String,
        /// Target: NAME, NAME:QUALIFIER or a function ARN.
        #[arg(long)]
        function: String,
        /// `rate(5 minutes)`, `cron(0 12 ? * MON-FRI *)` (EventBridge) or `0 12 * * 1-5`.
        #[arg(long)]
        expression: String,
        /// Fixed JSON event [default: an EventBridge scheduled event per slot].
        #[arg(long)]
        payload: Option<String>,
        /// IANA zone the cron fields are read in [default: UTC].
        #[arg(long)]
        timezone: Option<String>,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List schedules with their next slot.
    List {
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print one schedule and its state as JSON.
    Get {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete a schedule.
    Delete {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Stop firing a schedule until it is resumed.
    Pause {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Fire a paused schedule again, from its next slot after now.
    Resume {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub fn run(cmd: &ScheduleCommand) -> anyhow::Result<ExitCode> {
    let one = |name: &str| format!("/tern/v1/schedules/{}", encode(name));
    let (connect, req, what) = match cmd {
        ScheduleCommand::Add {
            name,
            function,
            expression,
            payload,
            timezone,
            paused,
            connect,
        } => {
            let mut body = json!({
                "name": name,
                "function": function,
                "expression": expression,
                "enabled": !paused,
            });
            if let Some(p) = payload {
                let value: serde_json::Value =
                    serde_json::from_str(p).context("--payload is not JSON")?;
                body["payload"] = value;
            }
            if let Some(tz) = timezone {
                body["timezone"] = json!(tz);
            }
            (
                connect,
                Request::new("POST", "/tern/v1/schedules").json(&body),
                format!("cannot create schedule {name}"),
            )
        }
        ScheduleCommand::List { connect, .. } => (
            connect,
            Request::new("GET", "/tern/v1/schedules"),
            "cannot list schedules".to_string(),
        ),
        ScheduleCommand::Get { name, connect } => (
            connect,
            Request::new("GET", one(name)),
            format!("cannot read schedule {name}"),
        ),
        ScheduleCommand::Delete { name, connect } => (
            connect,
            Request::new("DELETE", one(name)),
            format!("cannot delete schedule {name}"),
        ),
        ScheduleCommand::Pause { name, connect } => (
            connect,
            Request::new("PATCH", one(name)).json(&json!({"enabled": false})),
            format!("cannot pause schedule {name}"),
        ),
        ScheduleCommand::Resume { name, connect } => (
            connect,
            Request::new("PATCH", one(name)).json(&json!({"enabled": true})),
            format!("cannot resume schedule {name}"),
        ),
    };
    let resp = Client::connect(connect)?.call(req).context(what)?;
    let mut out = std::io::stdout().lock();
    if resp.body.is_empty() {
        if let ScheduleCommand::Delete { name, .. } = cmd {
            writeln!(out, "deleted schedule {name}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&resp.body).context("unexpected response from the server")?;
    match cmd {
        ScheduleCommand::List { json: false, .. } => table(&mut out, &value)?,
        _ => writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per schedule: name, target, expression, state and next slot.
fn table(out: &mut impl Write, value: &serde_json::Value) -> anyhow::Result<()> {
    let empty = Vec::new();
    let rows = value["schedules"].as_array().unwrap_or(&empty);
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let lines: Vec<[String; 5]> = rows
        .iter()
        .map(|s| {
            [
                text(&s["name"]),
                text(&s["function"]),
                text(&s["expression"]),
                if s["enabled"].as_bool() == Some(true) {
                    "enabled".to_string()
                } else {
                    "paused".to_string()
                },
                text(&s["nextSlot"]),
            ]
        })
        .collect();
    let header = ["NAME", "FUNCTION", "EXPRESSION", "STATE", "NEXT SLOT"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for line in std::iter::once(&header).chain(&lines) {
        let cells: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", cells.join("  ").trim_end())?;
    }
    Ok(())
}
