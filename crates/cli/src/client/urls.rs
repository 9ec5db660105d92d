//! `tern url`: a function's URL (Create/Get/Delete/ListFunctionUrlConfig(s)).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::http::{encode, Client, Request};
use super::ConnectArgs;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum AuthType {
    /// Anyone may call the URL, unsigned.
    #[value(name = "NONE")]
    None,
    /// Requests must be signed with SigV4 by a key of the function's namespace.
    #[value(name = "AWS_IAM")]
    AwsIam,
}

impl AuthType {
    fn as_str(self) -> &'static str {
        match self {
            AuthType::None => "NONE",
            AuthType::AwsIam => "AWS_IAM",
        }
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum UrlCommand {
    /// Give a function (or an alias of it) a URL, and print its config.
    Create {
        name: String,
        /// An alias name [default: the function itself, $LATEST].
        #[arg(long)]
        qualifier: Option<String>,
        #[arg(long, value_enum, default_value = "NONE")]
        auth_type: AuthType,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print a function's URL config as JSON.
    Get {
        name: String,
        #[arg(long)]
        qualifier: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List a function's URL configs (as JSON).
    List {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete a function's URL.
    Delete {
        name: String,
        #[arg(long)]
        qualifier: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn url_path(name: &str) -> String {
    format!("/2021-10-31/functions/{}/url", encode(name))
}

fn qualified(req: Request, qualifier: &Option<String>) -> Request {
    match qualifier {
        Some(q) => req.query("Qualifier", q),
        None => req,
    }
}

pub fn run(cmd: &UrlCommand) -> anyhow::Result<ExitCode> {
    let (connect, req, what) = match cmd {
        UrlCommand::Create {
            name,
            qualifier,
            auth_type,
            connect,
        } => {
            let body = json!({ "AuthType": auth_type.as_str() });
            (
                connect,
                qualified(Request::new("POST", url_path(name)).json(&body), qualifier),
                format!("cannot create a URL for {name}"),
            )
        }
        UrlCommand::Get {
            name,
            qualifier,
            connect,
        } => (
            connect,
            qualified(Request::new("GET", url_path(name)), qualifier),
            format!("cannot read the URL of {name}"),
        ),
        UrlCommand::List { name, connect } => (
            connect,
            Request::new(
                "GET",
                format!("/2021-10-31/functions/{}/urls", encode(name)),
            ),
            format!("cannot list the URLs of {name}"),
        ),
        UrlCommand::Delete {
            name,
            qualifier,
            connect,
        } => (
            connect,
            qualified(Request::new("DELETE", url_path(name)), qualifier),
            format!("cannot delete the URL of {name}"),
        ),
    };
    let resp = Client::connect(connect)?.call(req).context(what)?;
    let mut out = std::io::stdout().lock();
    if resp.body.is_empty() {
        if let UrlCommand::Delete { name, .. } = cmd {
            writeln!(out, "deleted the URL of {name}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&resp.body).context("unexpected response from the server")?;
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    Ok(ExitCode::SUCCESS)
}
