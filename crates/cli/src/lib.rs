//! The `tern` binary's entry point. The server and client commands are still being
//! built (see issue #2); today the binary only hosts the sandbox keeper that the
//! sandbox launcher re-executes.
#![forbid(unsafe_code)]

use std::process::ExitCode;

pub fn main() -> ExitCode {
    // The sandbox launcher re-executes this binary as the keeper of one instance; that
    // must happen before any thread or runtime starts.
    if tern_sandbox::is_keeper_invocation() {
        tern_sandbox::run_keeper();
    }
    eprintln!("tern: the server and client commands are not implemented yet (issue #2)");
    ExitCode::from(2)
}
