//! A stand-alone keeper binary, so tests (and embedders without their own dispatch) can
//! point `SandboxConfig::keeper_exe` at something that runs `run_keeper`.

fn main() {
    if tern_sandbox::is_keeper_invocation() {
        tern_sandbox::run_keeper();
    }
    eprintln!("usage: tern-sandbox-keeper __sandbox-keeper (started by SandboxLauncher only)");
    std::process::exit(2);
}
