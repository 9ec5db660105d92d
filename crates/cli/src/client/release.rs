//! The release flow: `tern publish` freezes `$LATEST` as a numbered version, `tern alias`
//! points a name at a version (with a canary share for a second one), and `tern
//! rollback` moves an alias back to the version it pointed at before.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Deserialize;
use serde_json::{json, Value};

use super::http::{encode, CallError, Client, Request};
use super::ConnectArgs;

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// Function name.
    pub name: String,
    /// Description of the version.
    #[arg(long)]
    pub description: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum AliasCommand {
    /// Create an alias, or point an existing one at a version.
    Set {
        /// Function name.
        name: String,
        /// Alias name, such as `live`.
        alias: String,
        /// The version it points at.
        #[arg(long = "version", value_name = "N")]
        version: String,
        /// A second version and the share of requests it gets, such as `4:0.1`;
        /// without it, any earlier canary is removed.
        #[arg(long, value_name = "VERSION:WEIGHT", value_parser = parse_canary)]
        canary: Option<(String, f64)>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// List a function's aliases (as JSON).
    List {
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Delete an alias.
    Delete {
        name: String,
        alias: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// Function name.
    pub name: String,
    /// Alias to move back to the version it pointed at before.
    pub alias: String,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Parses `--canary VERSION:WEIGHT`, the weight in [0, 1].
pub fn parse_canary(s: &str) -> Result<(String, f64), String> {
    let (version, weight) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not VERSION:WEIGHT (such as 4:0.1)"))?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{version}' is not a version number"));
    }
    let weight: f64 = weight
        .parse()
        .map_err(|_| format!("'{weight}' is not a number"))?;
    if !(0.0..=1.0).contains(&weight) {
        return Err(format!("the weight {weight} is not between 0 and 1"));
    }
    Ok((version.to_string(), weight))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Published {
    version: String,
    function_arn: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Alias {
    alias_arn: String,
    function_version: String,
    #[serde(default)]
    routing_config: Option<Routing>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Routing {
    #[serde(default)]
    additional_version_weights: std::collections::BTreeMap<String, f64>,
}

fn aliases_path(name: &str) -> String {
    format!("/2015-03-31/functions/{}/aliases", encode(name))
}

/// PublishVersion; returns the version number.
pub(crate) fn publish(
    client: &Client,
    name: &str,
    description: Option<&str>,
) -> anyhow::Result<String> {
    let mut body = json!({});
    if let Some(d) = description {
        body["Description"] = json!(d);
    }
    let resp = client
        .call(
            Request::new(
                "POST",
                format!("/2015-03-31/functions/{}/versions", encode(name)),
            )
            .json(&body),
        )
        .with_context(|| format!("cannot publish a version of function {name}"))?;
    let published: Published = resp.json()?;
    writeln!(
        std::io::stdout().lock(),
        "published {name} version {}\n{}",
        published.version,
        published.function_arn
    )?;
    Ok(published.version)
}

/// Points `alias` at `version` (creating it if needed), with `canary` as its weighted
/// second version, or none.
pub(crate) fn set_alias(
    client: &Client,
    name: &str,
    alias: &str,
    version: &str,
    canary: Option<&(String, f64)>,
) -> anyhow::Result<()> {
    let weights: serde_json::Map<String, Value> = canary
        .map(|(v, w)| (v.clone(), json!(w)))
        .into_iter()
        .collect();
    let routing = json!({ "AdditionalVersionWeights": weights });
    let one = format!("{}/{}", aliases_path(name), encode(alias));
    let resp = match client.call(
        Request::new("PUT", one.clone())
            .json(&json!({ "FunctionVersion": version, "RoutingConfig": routing })),
    ) {
        Ok(resp) => resp,
        Err(e) if is_alias_missing(&e) => client
            .call(Request::new("POST", aliases_path(name)).json(&json!({
                "Name": alias,
                "FunctionVersion": version,
                "RoutingConfig": routing,
            })))
            .with_context(|| format!("cannot create alias {alias} of function {name}"))?,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot update alias {alias} of function {name}"))
        }
    };
    print_alias(alias, &resp.json()?)
}

fn is_alias_missing(e: &CallError) -> bool {
    e.error_type() == Some("ResourceNotFoundException") && e.to_string().contains("Alias not found")
}

fn print_alias(alias: &str, got: &Alias) -> anyhow::Result<()> {
    let canary = got
        .routing_config
        .as_ref()
        .and_then(|r| r.additional_version_weights.iter().next())
        .map(|(v, w)| format!(", {:.1}% to version {v}", w * 100.0))
        .unwrap_or_default();
    writeln!(
        std::io::stdout().lock(),
        "alias {alias} -> version {}{canary}\n{}",
        got.function_version,
        got.alias_arn
    )?;
    Ok(())
}

pub fn run_publish(args: &PublishArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(&args.connect)?;
    publish(&client, &args.name, args.description.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_alias(cmd: &AliasCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AliasCommand::Set {
            name,
            alias,
            version,
            canary,
            connect,
        } => {
            if canary.as_ref().is_some_and(|(v, _)| v == version) {
                bail!("--canary names version {version}, which the alias already points at");
            }
            set_alias(
                &Client::connect(connect)?,
                name,
                alias,
                version,
                canary.as_ref(),
            )?;
        }
        AliasCommand::List { name, connect } => {
            let resp = Client::connect(connect)?
                .call(Request::new("GET", aliases_path(name)))
                .with_context(|| format!("cannot list the aliases of function {name}"))?;
            let value: Value = resp.json()?;
            writeln!(
                std::io::stdout().lock(),
                "{}",
                serde_json::to_string_pretty(&value)?
            )?;
        }
        AliasCommand::Delete {
            name,
            alias,
            connect,
        } => {
            Client::connect(connect)?
                .call(Request::new(
                    "DELETE",
                    format!("{}/{}", aliases_path(name), encode(alias)),
                ))
                .with_context(|| format!("cannot delete alias {alias} of function {name}"))?;
            writeln!(std::io::stdout().lock(), "deleted alias {alias}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_rollback(args: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let resp = Client::connect(&args.connect)?
        .call(Request::new(
            "POST",
            format!(
                "/tern/v1/functions/{}/aliases/{}/rollback",
                encode(&args.name),
                encode(&args.alias)
            ),
        ))
        .with_context(|| {
            format!(
                "cannot roll back alias {} of function {}",
                args.alias, args.name
            )
        })?;
    print_alias(&args.alias, &resp.json()?)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canary_is_a_version_and_a_weight_between_0_and_1() {
        assert_eq!(parse_canary("4:0.1"), Ok(("4".to_string(), 0.1)));
        assert_eq!(parse_canary("12:1"), Ok(("12".to_string(), 1.0)));
        assert!(parse_canary("4").is_err());
        assert!(parse_canary("live:0.1").is_err());
        assert!(parse_canary("4:1.5").is_err());
        assert!(parse_canary("4:-0.1").is_err());
        assert!(parse_canary("4:x").is_err());
    }
}
