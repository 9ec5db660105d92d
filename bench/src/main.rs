//! tern's benchmark harness. Today it measures the sandbox's own cost: setup (launch until
//! the runtime is exec'd) and teardown (kill, wait, cleanup), against the baseline of a
//! bare process spawn measured in the same run. Prints a table and one JSON line.
//!
//! Usage: `cargo run --release -p tern-bench -- [iterations]` (as root).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_sandbox::{LaunchSpec, Launcher, Resources, SandboxConfig, SandboxLauncher};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

fn summary(name: &str, mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "{name:<28} p50 {p50:>8.3} ms   p99 {p99:>8.3} ms   n={}",
        samples.len()
    );
    serde_json::json!({ "p50_ms": p50, "p99_ms": p99, "n": samples.len() })
}

fn main() -> anyhow::Result<()> {
    if tern_sandbox::is_keeper_invocation() {
        tern_sandbox::run_keeper();
    }
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(50);
    let scratch = tempfile::tempdir()?;
    let code = scratch.path().join("code");
    let boot = scratch.path().join("boot");
    for d in [&code, &boot] {
        std::fs::create_dir_all(d)?;
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let sandbox = Arc::new(SandboxLauncher::new(SandboxConfig::new(
        scratch.path().join("state"),
        format!("bench-{}", std::process::id()),
    )?)?);
    let launcher: Arc<dyn Launcher> = sandbox.clone();
    let mut setup = Vec::new();
    let mut teardown = Vec::new();
    let mut spawn = Vec::new();
    for i in 0..iterations {
        let spec = LaunchSpec {
            instance_id: format!("bench-{i}"),
            program: PathBuf::from("/bin/true"),
            args: Vec::new(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            code_dir: code.clone(),
            bootstrap_dir: boot.clone(),
            extra_ro_paths: Vec::new(),
            resources: Resources {
                memory_mb: 128,
                tmp_mb: 64,
                cpu_millis: 250,
                max_pids: 64,
                max_open_files: 1024,
            },
        };
        let t = Instant::now();
        let launched = launcher.launch(&spec)?;
        setup.push(t.elapsed());
        let t = Instant::now();
        launched.process.kill();
        launched.process.wait();
        launched.process.cleanup();
        teardown.push(t.elapsed());

        let t = Instant::now();
        Command::new("/bin/true").status()?;
        spawn.push(t.elapsed());
    }
    println!("tern-bench sandbox ({iterations} iterations)");
    let result = serde_json::json!({
        "sandbox_setup": summary("sandbox setup", setup),
        "sandbox_teardown": summary("sandbox teardown", teardown),
        "baseline_bare_spawn": summary("baseline: bare spawn+wait", spawn),
    });
    println!("{result}");
    sandbox.remove_server_cgroups();
    Ok(())
}
