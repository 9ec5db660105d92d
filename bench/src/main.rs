//! tern's benchmark harness. Today it measures the sandbox's own cost: setup (launch until
//! the runtime is exec'd) and teardown (kill, wait, cleanup), for each way of backing
//! /tmp (disk image with and without the ready pool, tmpfs), against the baseline of a
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
        "{name:<42} p50 {p50:>8.3} ms   p99 {p99:>8.3} ms   n={}",
        samples.len()
    );
    serde_json::json!({ "p50_ms": p50, "p99_ms": p99, "n": samples.len() })
}

/// One way of backing /tmp, measured with its own launcher.
struct Variant {
    key: &'static str,
    label: &'static str,
    tmp_on_disk: bool,
    tmp_pool_depth: usize,
}

const VARIANTS: &[Variant] = &[
    Variant {
        key: "sandbox",
        label: "sandbox, disk /tmp, pooled",
        tmp_on_disk: true,
        tmp_pool_depth: 4,
    },
    Variant {
        key: "sandbox_unpooled_tmp",
        label: "sandbox, disk /tmp, no pool",
        tmp_on_disk: true,
        tmp_pool_depth: 0,
    },
    Variant {
        key: "sandbox_tmpfs",
        label: "sandbox, tmpfs /tmp",
        tmp_on_disk: false,
        tmp_pool_depth: 0,
    },
];

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
    println!("tern-bench sandbox ({iterations} iterations each, /bin/true, /tmp 512 MB)");
    let mut result = serde_json::Map::new();
    for variant in VARIANTS {
        let mut config = SandboxConfig::new(
            scratch.path().join(format!("state-{}", variant.key)),
            format!(
                "bench-{}-{}",
                std::process::id(),
                variant.key.replace('_', "-")
            ),
        )?;
        config.tmp_on_disk = variant.tmp_on_disk;
        config.tmp_pool_depth = variant.tmp_pool_depth;
        let sandbox = Arc::new(SandboxLauncher::new(config)?);
        let launcher: Arc<dyn Launcher> = sandbox.clone();
        let mut setup = Vec::new();
        let mut teardown = Vec::new();
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
                    tmp_mb: 512,
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
            // A cold start every 10 ms at most: the rate the pool is sized for, and
            // the same spacing for every variant.
            std::thread::sleep(Duration::from_millis(10).saturating_sub(t.elapsed()));
        }
        result.insert(
            format!("{}_setup", variant.key),
            summary(&format!("{}: setup", variant.label), setup),
        );
        result.insert(
            format!("{}_teardown", variant.key),
            summary(&format!("{}: teardown", variant.label), teardown),
        );
        drop(launcher);
        if let Ok(sandbox) = Arc::try_unwrap(sandbox) {
            sandbox.remove_server_cgroups();
        }
    }
    let mut spawn = Vec::new();
    for _ in 0..iterations {
        let t = Instant::now();
        Command::new("/bin/true").status()?;
        spawn.push(t.elapsed());
    }
    result.insert(
        "baseline_bare_spawn".into(),
        summary("baseline: bare spawn+wait", spawn),
    );
    println!("{}", serde_json::Value::Object(result));
    Ok(())
}
