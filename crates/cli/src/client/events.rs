//! `tern invocations get`, `tern dlq` and `tern queue`: what became of asynchronous
//! invocations, a function's dead-letter queue, and the tern-managed queues that
//! destinations deliver to.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::http::{encode, Client, Request};
use super::ConnectArgs;

#[derive(clap::Subcommand, Debug)]
pub enum InvocationsCommand {
    /// Print the state and attempts of an asynchronous invocation as JSON.
    Get {
        /// The request id the Event invoke answered.
        request_id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum DlqCommand {
    /// List the dead letters of a function as JSON (payload, attempts, last response).
    List {
        /// Function name.
        name: String,
        /// Entries per page [default: 100].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: Option<u64>,
        /// Start after this request id (the previous page's nextMarker).
        #[arg(long)]
        marker: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print one dead letter as JSON.
    Show {
        name: String,
        request_id: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Run dead letters again, under their request ids: one, or all with --all.
    Redrive {
        name: String,
        /// The entry to redrive.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        request_id: Option<String>,
        /// Redrive every entry.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete dead letters: one, or all with --all.
    Purge {
        name: String,
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        request_id: Option<String>,
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum QueueCommand {
    /// Print the records of a tern-managed queue (a destination named by an SQS ARN) as
    /// JSON, oldest first.
    Read {
        /// Queue name (the last part of the destination's SQS ARN).
        name: String,
        /// Only records with ids above this one.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Records at most [default: 100].
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: Option<u64>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete the records of a queue up to and including an id.
    Delete {
        name: String,
        /// The id of the last record to delete.
        #[arg(long)]
        up_to: i64,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub fn run_queue(cmd: &QueueCommand) -> anyhow::Result<ExitCode> {
    let messages = |name: &str| format!("/tern/v1/queues/{}/messages", encode(name));
    let (connect, req, what) = match cmd {
        QueueCommand::Read {
            name,
            after,
            limit,
            connect,
        } => {
            let mut req = Request::new("GET", messages(name)).query("after", &after.to_string());
            if let Some(l) = limit {
                req = req.query("limit", &l.to_string());
            }
            (connect, req, format!("cannot read queue {name}"))
        }
        QueueCommand::Delete {
            name,
            up_to,
            connect,
        } => (
            connect,
            Request::new("DELETE", messages(name)).query("upTo", &up_to.to_string()),
            format!("cannot delete from queue {name}"),
        ),
    };
    let resp = Client::connect(connect)?.call(req).context(what)?;
    print_json(&resp.body)?;
    Ok(ExitCode::SUCCESS)
}

fn print_json(body: &[u8]) -> anyhow::Result<()> {
    let value: serde_json::Value =
        serde_json::from_slice(body).context("unexpected response from the server")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    Ok(())
}

pub fn run_invocations(cmd: &InvocationsCommand) -> anyhow::Result<ExitCode> {
    let InvocationsCommand::Get {
        request_id,
        connect,
    } = cmd;
    let resp = Client::connect(connect)?
        .call(Request::new(
            "GET",
            format!("/tern/v1/invocations/{}", encode(request_id)),
        ))
        .with_context(|| format!("cannot read invocation {request_id}"))?;
    print_json(&resp.body)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_dlq(cmd: &DlqCommand) -> anyhow::Result<ExitCode> {
    let dlq = |name: &str| format!("/tern/v1/functions/{}/dlq", encode(name));
    let (client, req, what) = match cmd {
        DlqCommand::List {
            name,
            limit,
            marker,
            connect,
        } => {
            let mut req = Request::new("GET", dlq(name));
            if let Some(l) = limit {
                req = req.query("limit", &l.to_string());
            }
            if let Some(m) = marker {
                req = req.query("marker", m);
            }
            (
                connect,
                req,
                format!("cannot list the dead letters of {name}"),
            )
        }
        DlqCommand::Show {
            name,
            request_id,
            connect,
        } => (
            connect,
            Request::new("GET", format!("{}/{}", dlq(name), encode(request_id))),
            format!("cannot read dead letter {request_id} of {name}"),
        ),
        DlqCommand::Redrive {
            name,
            request_id,
            connect,
            ..
        } => {
            let body = match request_id {
                Some(id) => serde_json::json!({ "requestId": id }),
                None => serde_json::json!({}),
            };
            (
                connect,
                Request::new("POST", format!("{}/redrive", dlq(name))).json(&body),
                format!("cannot redrive the dead letters of {name}"),
            )
        }
        DlqCommand::Purge {
            name,
            request_id,
            connect,
            ..
        } => {
            let path = match request_id {
                Some(id) => format!("{}/{}", dlq(name), encode(id)),
                None => dlq(name),
            };
            (
                connect,
                Request::new("DELETE", path),
                format!("cannot purge the dead letters of {name}"),
            )
        }
    };
    let resp = Client::connect(client)?.call(req).context(what)?;
    print_json(&resp.body)?;
    Ok(ExitCode::SUCCESS)
}
