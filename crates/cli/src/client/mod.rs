//! The client side of the `tern` CLI: deploy, invoke, list and inspect functions and read
//! their logs, through the same signed HTTP API that AWS SDKs use.
//!
//! Each command is one module; `http` signs and sends, `credentials` reads the key file,
//! `package` turns a directory into a deployment zip.

use std::path::PathBuf;
use std::process::ExitCode;

mod credentials;
mod deploy;
mod functions;
mod http;
mod invoke;
mod logs;
mod package;

pub use deploy::DeployArgs;
pub use functions::FunctionsCommand;
pub use invoke::InvokeArgs;
pub use logs::LogsArgs;

/// How to reach the server and who to be; shared by every client command.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Connection")]
pub struct ConnectArgs {
    /// URL of the tern server.
    #[arg(long, env = "TERN_ENDPOINT", default_value = "http://127.0.0.1:8900")]
    pub endpoint: String,
    /// Credentials file [default: $TERN_DATA_DIR/credentials, else ./.tern/credentials].
    #[arg(long, env = "TERN_CREDENTIALS", value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Profile (section) of the credentials file.
    #[arg(long, env = "TERN_PROFILE", default_value = "tern")]
    pub profile: String,
    /// Region used in the request signature.
    #[arg(long, env = "TERN_REGION", default_value = "us-east-1")]
    pub region: String,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create a function from a directory or zip, or update it if it exists.
    Deploy(DeployArgs),
    /// Invoke a function synchronously and print its response.
    Invoke(InvokeArgs),
    /// List, show or delete functions.
    #[command(subcommand)]
    Functions(FunctionsCommand),
    /// Print a function's recent log lines.
    Logs(LogsArgs),
}

/// Runs one client command; the exit code is 1 when an invoked function failed.
pub fn run(cmd: ClientCommand) -> anyhow::Result<ExitCode> {
    let result = match cmd {
        ClientCommand::Deploy(args) => deploy::run(&args),
        ClientCommand::Invoke(args) => invoke::run(&args),
        ClientCommand::Functions(cmd) => functions::run(&cmd),
        ClientCommand::Logs(args) => logs::run(&args),
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
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
