//! The client side of the `tern` CLI: deploy, invoke, list and inspect functions, read
//! their logs, follow async invocations and dead letters, through the same signed HTTP
//! API that AWS SDKs use.
//!
//! Each command is one module; `http` signs and sends, `credentials` reads the key file,
//! `package` turns a directory into a deployment zip.

use std::path::PathBuf;
use std::process::ExitCode;

mod credentials;
mod deploy;
mod events;
mod functions;
mod http;
mod invoke;
mod logs;
mod networks;
mod package;
mod release;
mod schedules;
mod urls;

pub use deploy::DeployArgs;
pub use events::{DlqCommand, InvocationsCommand, QueueCommand};
pub use functions::FunctionsCommand;
pub use invoke::InvokeArgs;
pub use logs::LogsArgs;
pub use networks::NetworkCommand;
pub use release::{AliasCommand, PublishArgs, RollbackArgs};
pub use schedules::ScheduleCommand;
pub use urls::UrlCommand;

/// How to reach the server and who to be; shared by every client command.
///
/// The `TERN_*` variables are read by [`ConnectArgs::resolve`], not by clap's `env`:
/// clap counts a value from the environment as typed on the command line and puts it in
/// the usage line of every error, so a set `TERN_CREDENTIALS` read as a required
/// `--credentials`.
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Connection")]
pub struct ConnectArgs {
    /// URL of the tern server [env: TERN_ENDPOINT] [default: http://127.0.0.1:8900]
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Credentials file [env: TERN_CREDENTIALS] [default: $TERN_DATA_DIR/credentials, else ./.tern/credentials]
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Profile (section) of the credentials file [env: TERN_PROFILE] [default: tern]
    #[arg(long)]
    pub profile: Option<String>,
    /// Region used in the request signature [env: TERN_REGION] [default: us-east-1]
    #[arg(long)]
    pub region: Option<String>,
}

/// The connection settings after flags, then `TERN_*` variables, then defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub endpoint: String,
    pub credentials: PathBuf,
    pub profile: String,
    pub region: String,
}

impl ConnectArgs {
    /// Flags win over the variables `env` returns (an empty one counts as unset), which
    /// win over the defaults.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> Connection {
        let env = |name: &str| env(name).filter(|v| !v.is_empty());
        Connection {
            endpoint: self
                .endpoint
                .clone()
                .or_else(|| env("TERN_ENDPOINT"))
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()),
            credentials: self
                .credentials
                .clone()
                .or_else(|| env("TERN_CREDENTIALS").map(PathBuf::from))
                .unwrap_or_else(|| credentials::default_path(env("TERN_DATA_DIR").map(Into::into))),
            profile: self
                .profile
                .clone()
                .or_else(|| env("TERN_PROFILE"))
                .unwrap_or_else(|| DEFAULT_PROFILE.to_string()),
            region: self
                .region
                .clone()
                .or_else(|| env("TERN_REGION"))
                .unwrap_or_else(|| DEFAULT_REGION.to_string()),
        }
    }

    /// [`ConnectArgs::resolve`] with the process environment.
    pub fn resolve_from_env(&self) -> Connection {
        self.resolve(|name| std::env::var(name).ok())
    }
}

pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8900";
pub const DEFAULT_PROFILE: &str = "tern";
pub const DEFAULT_REGION: &str = "us-east-1";

#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create a function from a directory or zip, or update it if it exists.
    Deploy(DeployArgs),
    /// Invoke a function and print its response (--async: queue it, print its id).
    Invoke(InvokeArgs),
    /// What became of asynchronous invocations.
    #[command(subcommand)]
    Invocations(InvocationsCommand),
    /// A function's dead-letter queue: list, show, redrive, purge.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Read or delete the records of a tern-managed destination queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// List, show or delete functions.
    #[command(subcommand)]
    Functions(FunctionsCommand),
    /// Print a function's recent log lines.
    Logs(LogsArgs),
    /// The private networks functions attach to (`VpcConfig`): create, update, list,
    /// get, delete.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Freeze the function's code and configuration as a numbered version.
    Publish(PublishArgs),
    /// Point an alias at a version, with an optional canary share for a second one.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Move an alias back to the version it pointed at before.
    Rollback(RollbackArgs),
    /// A function's URL: create, get, list, delete.
    #[command(subcommand)]
    Url(UrlCommand),
    /// Invoke a function on a rate or cron expression: add, list, get, delete, pause,
    /// resume.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
}

/// Runs one client command; the exit code is 1 when an invoked function failed.
pub fn run(cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let result = match cmd {
        ClientCommand::Deploy(args) => deploy::run(&args),
        ClientCommand::Invoke(args) => invoke::run(&args),
        ClientCommand::Invocations(cmd) => events::run_invocations(&cmd),
        ClientCommand::Dlq(cmd) => events::run_dlq(&cmd),
        ClientCommand::Queue(cmd) => events::run_queue(&cmd),
        ClientCommand::Functions(cmd) => functions::run(&cmd),
        ClientCommand::Logs(args) => logs::run(&args),
        ClientCommand::Network(cmd) => networks::run(&cmd),
        ClientCommand::Publish(args) => release::run_publish(&args),
        ClientCommand::Alias(cmd) => release::run_alias(&cmd),
        ClientCommand::Rollback(args) => release::run_rollback(&args),
        ClientCommand::Url(cmd) => urls::run(&cmd),
        ClientCommand::Schedule(cmd) => schedules::run(&cmd),
    };
    match result {
        // `tern logs f | head` closing the pipe early is not a failure.
        Err(e) if is_broken_pipe(&e) => Ok(ExitCode::SUCCESS),
        other => other,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    #[test]
    fn every_command_takes_the_connection_flags() {
        for args in [
            &[
                "t",
                "deploy",
                "d",
                "--name",
                "f",
                "--runtime",
                "python3.12",
                "--handler",
                "a.h",
            ][..],
            &["t", "invoke", "f"],
            &["t", "functions", "list"],
            &["t", "functions", "get", "f"],
            &["t", "functions", "delete", "f"],
            &["t", "logs", "f"],
        ] {
            let mut argv = args.to_vec();
            argv.extend([
                "--endpoint",
                "http://h:1",
                "--profile",
                "p",
                "--region",
                "r",
            ]);
            argv.extend(["--credentials", "/c"]);
            if let Err(e) = Cli::try_parse_from(&argv) {
                panic!("{argv:?}: {e}");
            }
        }
    }

    #[test]
    fn flags_win_over_tern_variables_which_win_over_defaults() {
        let env = |name: &str| match name {
            "TERN_ENDPOINT" => Some("http://env:1".to_string()),
            "TERN_CREDENTIALS" => Some("/env/creds".to_string()),
            "TERN_PROFILE" => Some(String::new()),
            _ => None,
        };
        let from_env = ConnectArgs::default().resolve(env);
        assert_eq!(
            from_env,
            Connection {
                endpoint: "http://env:1".into(),
                credentials: "/env/creds".into(),
                profile: DEFAULT_PROFILE.into(),
                region: DEFAULT_REGION.into(),
            }
        );
        let flags = ConnectArgs {
            endpoint: Some("http://flag:2".into()),
            credentials: Some("/flag/creds".into()),
            profile: Some("p".into()),
            region: Some("eu-west-1".into()),
        };
        assert_eq!(
            flags.resolve(env),
            Connection {
                endpoint: "http://flag:2".into(),
                credentials: "/flag/creds".into(),
                profile: "p".into(),
                region: "eu-west-1".into(),
            }
        );
        let data_dir = |name: &str| (name == "TERN_DATA_DIR").then(|| "/srv/tern".to_string());
        assert_eq!(
            ConnectArgs::default().resolve(data_dir).credentials,
            PathBuf::from("/srv/tern/credentials")
        );
        assert_eq!(
            ConnectArgs::default().resolve(|_| None).endpoint,
            DEFAULT_ENDPOINT
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
