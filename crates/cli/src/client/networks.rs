//! `tern network`: the private networks functions attach to (`VpcConfig`), defined by
//! the operator.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::http::{encode, Client, Request};
use super::ConnectArgs;

#[derive(clap::Args, Debug)]
pub struct NetworkSpec {
    /// Address range the network covers, a.b.c.d/n (repeatable).
    #[arg(long = "cidr", required = true)]
    pub cidrs: Vec<String>,
    /// What attached functions may reach: HOST[/N][:PORT[-PORT]][/tcp|/udp], inside a
    /// --cidr; no port means every port, no protocol TCP (repeatable).
    #[arg(long = "allow")]
    pub allow: Vec<String>,
    /// A namespace whose functions may attach (repeatable) [default: every namespace].
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum NetworkCommand {
    /// Define a private network.
    Create {
        name: String,
        #[command(flatten)]
        spec: NetworkSpec,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Replace a private network's ranges, allow-list and namespaces.
    Update {
        name: String,
        #[command(flatten)]
        spec: NetworkSpec,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List the private networks (as JSON).
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Print one private network as JSON.
    Get {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete a private network no function is attached to.
    Delete {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

fn body(name: &str, spec: &NetworkSpec) -> serde_json::Value {
    json!({
        "Name": name,
        "Cidrs": spec.cidrs,
        "Allow": spec.allow,
        "Namespaces": spec.namespaces,
    })
}

pub fn run(cmd: &NetworkCommand) -> anyhow::Result<ExitCode> {
    let one = |name: &str| format!("/tern/v1/networks/{}", encode(name));
    let (connect, req, what) = match cmd {
        NetworkCommand::Create {
            name,
            spec,
            connect,
        } => (
            connect,
            Request::new("POST", "/tern/v1/networks").json(&body(name, spec)),
            format!("cannot create network {name}"),
        ),
        NetworkCommand::Update {
            name,
            spec,
            connect,
        } => (
            connect,
            Request::new("PUT", one(name)).json(&body(name, spec)),
            format!("cannot update network {name}"),
        ),
        NetworkCommand::List { connect } => (
            connect,
            Request::new("GET", "/tern/v1/networks"),
            "cannot list networks".to_string(),
        ),
        NetworkCommand::Get { name, connect } => (
            connect,
            Request::new("GET", one(name)),
            format!("cannot read network {name}"),
        ),
        NetworkCommand::Delete { name, connect } => (
            connect,
            Request::new("DELETE", one(name)),
            format!("cannot delete network {name}"),
        ),
    };
    let resp = Client::connect(connect)?.call(req).context(what)?;
    let mut out = std::io::stdout().lock();
    if resp.body.is_empty() {
        if let NetworkCommand::Delete { name, .. } = cmd {
            writeln!(out, "deleted network {name}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let value: serde_json::Value =
        serde_json::from_slice(&resp.body).context("unexpected response from the server")?;
    writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    Ok(ExitCode::SUCCESS)
}
