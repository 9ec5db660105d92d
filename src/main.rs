//! The `tern` binary: the server and the client CLI in one executable.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tern_cli::main()
}
