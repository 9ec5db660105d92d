//! `tern deploy`: create a function, or, when it exists, update its code and then its
//! configuration.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tern_core::limits;

use super::http::{encode, CallError, Client, Request};
use super::{package, ConnectArgs};

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// Directory to zip (file modes are kept), or a ready .zip file.
    #[arg(value_name = "DIR|ZIP")]
    pub source: PathBuf,
    /// Function name.
    #[arg(long)]
    pub name: String,
    /// Runtime, such as python3.12, nodejs20.x or provided.al2023; needed to create a
    /// function, on update unchanged unless given.
    #[arg(long)]
    pub runtime: Option<String>,
    /// Handler, such as app.handler (for provided runtimes, any value); needed to create
    /// a function, on update unchanged unless given.
    #[arg(long)]
    pub handler: Option<String>,
    /// Memory in MB; on update, unchanged unless given.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32)
        .range(i64::from(limits::MEMORY_MIN_MB)..=i64::from(limits::MEMORY_MAX_MB)))]
    pub memory: Option<u32>,
    /// Timeout in seconds; on update, unchanged unless given.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32)
        .range(i64::from(limits::TIMEOUT_MIN_S)..=i64::from(limits::TIMEOUT_MAX_S)))]
    pub timeout: Option<u32>,
    /// Environment variable (repeatable); on update, replaces all of them when given.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// Description; on update, unchanged unless given.
    #[arg(long)]
    pub description: Option<String>,
    /// Start instances from a post-init template (Lambda's SnapStart, Python runtimes):
    /// `true` or `false`; on update, unchanged unless given.
    #[arg(long, value_name = "BOOL")]
    pub snap_start: Option<bool>,
    /// Network of the function's sandboxes: `none` (loopback only) or `egress`
    /// (outbound connections, under the server's egress policy); on create, the
    /// server's default unless given, on update unchanged unless given.
    #[arg(long, value_name = "MODE", value_parser = ["none", "egress"])]
    pub network: Option<String>,
    /// Let the function call tern's API with credentials of its own instances
    /// (`AWS_ENDPOINT_URL_LAMBDA`): `true` or `false`; on update, unchanged unless given.
    #[arg(long, value_name = "BOOL")]
    pub call_tern: Option<bool>,
    /// After deploying, publish the result as a new version.
    #[arg(long)]
    pub publish: bool,
    /// Then point this alias at the new version (created if needed; any canary on it
    /// is removed). Needs --publish.
    #[arg(long, value_name = "ALIAS", requires = "publish")]
    pub alias: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Parses one `--env KEY=VALUE`; the value may be empty and may contain `=`.
pub fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    let mut chars = key.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts_well || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "'{key}' is not a valid variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// The `--env` pairs as a map; a key given twice is an error rather than a silent override.
pub fn env_map(pairs: &[(String, String)]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        if map.insert(key.clone(), value.clone()).is_some() {
            bail!("--env {key} is given more than once");
        }
    }
    Ok(map)
}

/// The fields of the response printed after a deploy.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Deployed {
    function_arn: String,
    runtime: String,
    handler: String,
    code_size: u64,
    code_sha256: String,
    #[serde(default)]
    tern_network: Option<DeployedNetwork>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeployedNetwork {
    mode: String,
}

pub fn run(args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let env = env_map(&args.env)?;
    let zip = package::package(&args.source)?;
    let client = Client::connect(&args.connect)?;
    let zip_b64 = base64::engine::general_purpose::STANDARD.encode(&zip);

    // Settings shared by CreateFunction and UpdateFunctionConfiguration.
    let mut config = Map::new();
    if let Some(runtime) = &args.runtime {
        config.insert("Runtime".into(), json!(runtime));
    }
    if let Some(handler) = &args.handler {
        config.insert("Handler".into(), json!(handler));
    }
    if let Some(memory) = args.memory {
        config.insert("MemorySize".into(), json!(memory));
    }
    if let Some(timeout) = args.timeout {
        config.insert("Timeout".into(), json!(timeout));
    }
    if !env.is_empty() {
        config.insert("Environment".into(), json!({ "Variables": env }));
    }
    if let Some(description) = &args.description {
        config.insert("Description".into(), json!(description));
    }
    if let Some(on) = args.snap_start {
        let apply_on = if on { "PublishedVersions" } else { "None" };
        config.insert("SnapStart".into(), json!({ "ApplyOn": apply_on }));
    }
    let mut network = Map::new();
    if let Some(mode) = &args.network {
        network.insert("Mode".into(), json!(mode));
    }
    if let Some(on) = args.call_tern {
        network.insert("CallTern".into(), json!(on));
    }
    if !network.is_empty() {
        config.insert("TernNetwork".into(), Value::Object(network));
    }

    let (verb, resp) = if args.runtime.is_some() && args.handler.is_some() {
        let mut create = config.clone();
        create.insert("FunctionName".into(), json!(args.name));
        create.insert("Code".into(), json!({ "ZipFile": zip_b64 }));
        match client
            .call(Request::new("POST", "/2015-03-31/functions").json(&Value::Object(create)))
        {
            Ok(resp) => ("created", resp),
            Err(e) if e.error_type() == Some("ResourceConflictException") => {
                ("updated", update(&client, &args.name, &zip_b64, config)?)
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create function {}", args.name))
            }
        }
    } else {
        // Without both, this can only be an update of a function that exists.
        match update(&client, &args.name, &zip_b64, config) {
            Ok(resp) => ("updated", resp),
            Err(e) if is_not_found(&e) => bail!(
                "function {} does not exist; creating it needs --runtime and --handler",
                args.name
            ),
            Err(e) => return Err(e),
        }
    };
    let done: Deployed = resp.json()?;
    writeln!(
        std::io::stdout().lock(),
        "{verb} {} ({}, handler {}, {} bytes, sha256 {}, network {})\n{}",
        args.name,
        done.runtime,
        done.handler,
        done.code_size,
        done.code_sha256,
        done.tern_network
            .map_or_else(|| "none".to_string(), |n| n.mode),
        done.function_arn
    )?;
    if args.publish {
        let version = super::release::publish(&client, &args.name, None)?;
        if let Some(alias) = &args.alias {
            super::release::set_alias(&client, &args.name, alias, &version, None)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// UpdateFunctionCode, then UpdateFunctionConfiguration with the settings given, if any;
/// returns the last response.
fn update(
    client: &Client,
    name: &str,
    zip_b64: &str,
    config: Map<String, Value>,
) -> anyhow::Result<super::http::Response> {
    let base = format!("/2015-03-31/functions/{}", encode(name));
    let resp = client
        .call(Request::new("PUT", format!("{base}/code")).json(&json!({ "ZipFile": zip_b64 })))
        .map_err(with_name(name, "code"))?;
    if config.is_empty() {
        return Ok(resp);
    }
    let resp = client
        .call(Request::new("PUT", format!("{base}/configuration")).json(&Value::Object(config)))
        .map_err(with_name(name, "configuration"))?;
    Ok(resp)
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<CallError>()
            .is_some_and(|c| c.error_type() == Some("ResourceNotFoundException"))
    })
}

fn with_name<'a>(name: &'a str, what: &'a str) -> impl Fn(CallError) -> anyhow::Error + 'a {
    move |e| anyhow::Error::new(e).context(format!("cannot update the {what} of function {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_env_pair("URL=a=b"),
            Ok(("URL".to_string(), "a=b".to_string()))
        );
        assert_eq!(
            parse_env_pair("EMPTY="),
            Ok(("EMPTY".to_string(), String::new()))
        );
    }

    #[test]
    fn bad_env_pairs_say_what_is_wrong() {
        assert!(parse_env_pair("NOEQUALS")
            .expect_err("no =")
            .contains("not KEY=VALUE"));
        for bad in ["=v", "1X=v", "A-B=v", "A B=v"] {
            let err = parse_env_pair(bad).expect_err(bad);
            assert!(err.contains("not a valid variable name"), "{bad}: {err}");
        }
    }

    #[test]
    fn an_env_key_given_twice_is_an_error() {
        let pairs = vec![
            ("A".to_string(), "1".to_string()),
            ("A".to_string(), "2".to_string()),
        ];
        assert!(format!("{:#}", env_map(&pairs).expect_err("dup")).contains("--env A"));
    }

    #[test]
    fn env_flags_are_parsed_by_clap() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            deploy: DeployArgs,
        }
        let cli = Cli::try_parse_from([
            "t",
            "dir",
            "--name",
            "f",
            "--runtime",
            "r",
            "--handler",
            "h",
            "--env",
            "A=1",
            "--env",
            "B=x=y",
        ])
        .expect("parse");
        assert_eq!(cli.deploy.env.len(), 2);
        let err = Cli::try_parse_from([
            "t",
            "dir",
            "--name",
            "f",
            "--runtime",
            "r",
            "--handler",
            "h",
            "--env",
            "bad",
        ])
        .expect_err("bad env");
        assert!(err.to_string().contains("not KEY=VALUE"), "{err}");
        let err = Cli::try_parse_from([
            "t",
            "dir",
            "--name",
            "f",
            "--runtime",
            "r",
            "--handler",
            "h",
            "--memory",
            "64",
        ])
        .expect_err("memory too small");
        assert!(err.to_string().contains("128"), "{err}");
    }
}
