//! The `tern` binary: `tern server` runs the platform; the other subcommands are the
//! client CLI that talks to it over the signed HTTP API. User-facing output is printed
//! here; everything else logs through `tracing`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod client;
pub mod config;
mod server;

#[derive(Parser, Debug)]
#[command(
    name = "tern",
    version,
    about = "Self-hosted, Lambda-compatible serverless functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the platform (embedded SQLite under --data-dir).
    Server(config::ServerArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

pub fn main() -> ExitCode {
    // The sandbox launcher re-executes this binary as the keeper of one instance; that
    // must happen before any thread or runtime starts.
    if tern_sandbox::is_keeper_invocation() {
        tern_sandbox::run_keeper();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Server(args) => server::run(args).map(|()| ExitCode::SUCCESS),
        Command::Client(cmd) => client::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::FAILURE
        }
    }
}
