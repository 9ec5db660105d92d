//! The sandbox's own cost, without a server: launch `/bin/true` in a full sandbox
//! (namespaces, read-only root, cgroups, seccomp) and tear it down, for each way of
//! backing /tmp, against a bare spawn of the same program. Then the sandbox's tax on a
//! Python start: the same interpreter commands run to exit inside a sandbox (at a
//! 128 MB function's quarter core and at one full core) and outside, interleaved; and
//! tern's bootstrap in a sandbox against a Runtime API stub (an instance start without
//! the server).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use tern_sandbox::{ExitStatus, LaunchSpec, Launcher, Resources, SandboxConfig, SandboxLauncher};

use crate::stats::Summary;

#[derive(Debug, Serialize)]
pub struct SandboxResult {
    /// Launch → runtime exec'd, then kill + wait + cleanup, per way of backing /tmp.
    pub variants: Vec<VariantResult>,
    /// Baseline: spawn + wait of `/bin/true`.
    pub bare_spawn: Summary,
    /// Python commands, spawn → exit, outside and inside the sandbox (default config).
    pub python: Vec<PythonRun>,
    pub bootstrap: Vec<BootstrapRun>,
    /// Moving a process into a new cgroup (writing `cgroup.procs`), as every launch
    /// does, right after another move and after a pause.
    pub cgroup_join: Vec<CgroupJoin>,
}

#[derive(Debug, Serialize)]
pub struct CgroupJoin {
    pub hierarchy: String,
    /// Pause before each move, in ms.
    pub after_pause_ms: u64,
    pub write: Summary,
}

#[derive(Debug, Serialize)]
pub struct VariantResult {
    pub key: &'static str,
    pub label: &'static str,
    pub setup: Summary,
    pub teardown: Summary,
}

/// tern's Python bootstrap with the hello-world handler in a sandbox, served by the
/// bench's Runtime API stub instead of a server: the instance start without the server.
#[derive(Debug, Serialize)]
pub struct BootstrapRun {
    pub sandbox_cpu_millis: u32,
    /// Launch → the bootstrap's first `next` (what the server reports as Init Duration).
    pub init: Summary,
    /// Launch → result posted.
    pub result: Summary,
}

#[derive(Debug, Serialize)]
pub struct PythonRun {
    pub command: String,
    /// None: no sandbox (plain spawn); else the sandbox's CPU share in thousandths.
    pub sandbox_cpu_millis: Option<u32>,
    pub run: Summary,
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
        label: "disk /tmp from the ready pool (default)",
        tmp_on_disk: true,
        tmp_pool_depth: 4,
    },
    Variant {
        key: "sandbox_unpooled_tmp",
        label: "disk /tmp made during the launch",
        tmp_on_disk: true,
        tmp_pool_depth: 0,
    },
    Variant {
        key: "sandbox_tmpfs",
        label: "tmpfs /tmp",
        tmp_on_disk: false,
        tmp_pool_depth: 0,
    },
];

/// Python commands of the tax measurement: (label, args).
const PYTHON_PROBES: &[(&str, &[&str])] = &[
    ("python3.11 -c pass", &["-c", "pass"]),
    (
        "python3.11 -c 'import bootstrap'",
        &["-c", "import bootstrap"],
    ),
];

fn resources(cpu_millis: u32) -> Resources {
    // What a function gets from the server (defaults of `tern server`).
    Resources {
        memory_mb: 128,
        tmp_mb: 512,
        cpu_millis,
        cpu_period_us: tern_sandbox::cgroups::CPU_PERIOD_US,
        cpu_burst: true,
        max_pids: 256,
        max_open_files: 1024,
    }
}

fn python_env() -> Vec<(String, String)> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("LANG", "en_US.UTF-8"),
        ("TZ", ":UTC"),
        ("HOME", "/tmp"),
        // The sandbox cannot write bytecode caches (read-only root); neither may the
        // runs outside it.
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONPATH", "/opt/tern/python"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn launcher(scratch: &Path, v: &Variant) -> anyhow::Result<Arc<SandboxLauncher>> {
    let mut config = SandboxConfig::new(
        scratch.join(format!("state-{}", v.key)),
        format!("bench-{}-{}", std::process::id(), v.key.replace('_', "-")),
    )?;
    config.tmp_on_disk = v.tmp_on_disk;
    config.tmp_pool_depth = v.tmp_pool_depth;
    Ok(Arc::new(SandboxLauncher::new(config)?))
}

pub fn run(iterations: usize, python_samples: usize) -> anyhow::Result<SandboxResult> {
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
    let mut variants = Vec::new();
    for v in VARIANTS {
        let sandbox = launcher(scratch.path(), v)?;
        let l: Arc<dyn Launcher> = sandbox.clone();
        let result = setup_teardown(&l, &code, &boot, iterations);
        drop(l);
        sandbox.remove_server_cgroups();
        let (setup, teardown) = result?;
        variants.push(VariantResult {
            key: v.key,
            label: v.label,
            setup: Summary::of(&setup),
            teardown: Summary::of(&teardown),
        });
    }
    let mut spawn = Vec::new();
    for _ in 0..iterations {
        let t = Instant::now();
        Command::new("/bin/true").status()?;
        spawn.push(t.elapsed());
    }
    let sandbox = launcher(scratch.path(), &VARIANTS[0])?;
    let l: Arc<dyn Launcher> = sandbox.clone();
    let python = python_tax(&l, &code, &boot, python_samples);
    let bootstrap = python
        .as_ref()
        .map_err(|_| anyhow::anyhow!("skipped"))
        .and_then(|_| {
            [1000, 250]
                .into_iter()
                .map(|cpu| bootstrap_in_sandbox(&l, &code, &boot, cpu, python_samples))
                .collect::<anyhow::Result<Vec<_>>>()
        });
    drop(l);
    sandbox.remove_server_cgroups();
    let mut cgroup_join = Vec::new();
    for pause in [0, 200] {
        cgroup_join.push(join_cgroup(python_samples, Duration::from_millis(pause))?);
    }
    Ok(SandboxResult {
        variants,
        bare_spawn: Summary::of(&spawn),
        python: python?,
        bootstrap: bootstrap?,
        cgroup_join,
    })
}

/// Times the write that moves a (sleeping) child into a fresh cgroup of the memory
/// hierarchy (v1 if mounted, else v2), `pause` after the previous move.
fn join_cgroup(samples: usize, pause: Duration) -> anyhow::Result<CgroupJoin> {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    let root = if v1.join("cgroup.procs").exists() {
        v1.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    };
    let base = root.join(format!("tern-bench-join-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    let mut times = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        for i in 0..samples + 1 {
            let dir = base.join(i.to_string());
            std::fs::create_dir(&dir)?;
            let mut child = Command::new("/bin/sleep").arg("10").spawn()?;
            std::thread::sleep(pause);
            let t = Instant::now();
            let wrote = std::fs::write(dir.join("cgroup.procs"), child.id().to_string());
            let elapsed = t.elapsed();
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir(&dir);
            wrote.with_context(|| format!("moving a process into {}", dir.display()))?;
            if i > 0 {
                times.push(elapsed);
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir(&base);
    result?;
    Ok(CgroupJoin {
        hierarchy: root.display().to_string(),
        after_pause_ms: pause.as_millis() as u64,
        write: Summary::of(&times),
    })
}

fn setup_teardown(
    launcher: &Arc<dyn Launcher>,
    code: &Path,
    boot: &Path,
    iterations: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut setup, mut teardown) = (Vec::new(), Vec::new());
    for i in 0..iterations {
        let spec = LaunchSpec {
            network: Default::default(),
            owner: String::new(),
            instance_id: format!("bench-{i}"),
            program: PathBuf::from("/bin/true"),
            args: Vec::new(),
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            code_dir: code.to_path_buf(),
            bootstrap_dir: boot.to_path_buf(),
            layer_dirs: Vec::new(),
            runtime_dir: None,
            extra_ro_paths: Vec::new(),
            resources: resources(250),
            zygote: None,
            template: None,
            start_ahead_env: None,
        };
        let t = Instant::now();
        let launched = launcher.launch(&spec)?;
        setup.push(t.elapsed());
        let t = Instant::now();
        launched.process.kill();
        launched.process.wait();
        launched.process.cleanup();
        teardown.push(t.elapsed());
        // A cold start every 10 ms at most: the rate the /tmp pool is sized for, and
        // the same spacing for every variant.
        std::thread::sleep(Duration::from_millis(10).saturating_sub(t.elapsed()));
    }
    Ok((setup, teardown))
}

/// Each probe outside, in a sandbox at one core and at a quarter core, interleaved.
fn python_tax(
    launcher: &Arc<dyn Launcher>,
    code: &Path,
    boot: &Path,
    samples: usize,
) -> anyhow::Result<Vec<PythonRun>> {
    let python = crate::baselines::python311()?;
    std::fs::create_dir_all(boot.join("python"))?;
    std::fs::write(
        boot.join("python/bootstrap.py"),
        crate::baselines::PYTHON_BOOTSTRAP,
    )?;
    for d in [boot.join("python"), boot.to_path_buf()] {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    std::fs::set_permissions(
        boot.join("python/bootstrap.py"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    const SHARES: [Option<u32>; 3] = [None, Some(1000), Some(250)];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); PYTHON_PROBES.len() * SHARES.len()];
    for i in 0..samples + 1 {
        for (p, (_, args)) in PYTHON_PROBES.iter().enumerate() {
            for (s, share) in SHARES.iter().enumerate() {
                let t = Instant::now();
                let elapsed = match share {
                    None => {
                        let status = Command::new(&python)
                            .args(*args)
                            .env_clear()
                            .envs(python_env().into_iter().map(|(k, v)| {
                                if k == "PYTHONPATH" {
                                    (k, boot.join("python").display().to_string())
                                } else {
                                    (k, v)
                                }
                            }))
                            .status()?;
                        if !status.success() {
                            bail!("python3.11 {args:?}: {status}");
                        }
                        t.elapsed()
                    }
                    Some(cpu) => {
                        let spec = LaunchSpec {
                            network: Default::default(),
                            owner: String::new(),
                            instance_id: format!("bench-py-{i}-{p}-{s}"),
                            program: python.clone(),
                            args: args.iter().map(|a| a.to_string()).collect(),
                            env: python_env(),
                            code_dir: code.to_path_buf(),
                            bootstrap_dir: boot.to_path_buf(),
                            layer_dirs: Vec::new(),
                            runtime_dir: None,
                            extra_ro_paths: Vec::new(),
                            resources: resources(*cpu),
                            zygote: None,
                            template: None,
                            start_ahead_env: None,
                        };
                        let launched = launcher.launch(&spec)?;
                        let status = launched.process.wait();
                        let elapsed = t.elapsed();
                        launched.process.cleanup();
                        if status != ExitStatus::Code(0) {
                            let mut out = String::new();
                            let mut f = launched.output;
                            let _ = std::io::Read::read_to_string(&mut f, &mut out);
                            bail!("sandboxed python3.11 {args:?}: {status:?} {out}");
                        }
                        elapsed
                    }
                };
                // The first round warms caches and is not counted.
                if i > 0 {
                    times[p * SHARES.len() + s].push(elapsed);
                }
            }
        }
    }
    let mut runs = Vec::new();
    for (p, (label, _)) in PYTHON_PROBES.iter().enumerate() {
        for (s, share) in SHARES.iter().enumerate() {
            runs.push(PythonRun {
                command: label.to_string(),
                sandbox_cpu_millis: *share,
                run: Summary::of(&times[p * SHARES.len() + s]),
            });
        }
    }
    Ok(runs)
}

fn bootstrap_in_sandbox(
    launcher: &Arc<dyn Launcher>,
    code: &Path,
    boot: &Path,
    cpu_millis: u32,
    samples: usize,
) -> anyhow::Result<BootstrapRun> {
    crate::functions::write_python_hello(code)?;
    std::fs::set_permissions(
        code.join("app.py"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )?;
    let python = crate::baselines::python311()?;
    let (mut init, mut result) = (Vec::new(), Vec::new());
    for i in 0..samples + 1 {
        let mut env = python_env();
        env.retain(|(k, _)| k != "PYTHONPATH");
        env.extend(
            [
                ("_HANDLER", "app.handler"),
                ("LAMBDA_TASK_ROOT", "/var/task"),
                ("AWS_LAMBDA_FUNCTION_NAME", "bench"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let spec = LaunchSpec {
            network: Default::default(),
            owner: String::new(),
            instance_id: format!("bench-boot-{cpu_millis}-{i}"),
            program: python.clone(),
            args: vec![
                "-S".to_string(),
                "/opt/tern/python/bootstrap.py".to_string(),
            ],
            env,
            code_dir: code.to_path_buf(),
            bootstrap_dir: boot.to_path_buf(),
            layer_dirs: Vec::new(),
            runtime_dir: None,
            extra_ro_paths: Vec::new(),
            resources: resources(cpu_millis),
            zygote: None,
            template: None,
            start_ahead_env: None,
        };
        let started = Instant::now();
        let launched = launcher.launch(&spec)?;
        let stub = crate::baselines::RuntimeApiStub::serve(launched.runtime_api_listener);
        let sample = stub.await_result(started);
        launched.process.kill();
        launched.process.wait();
        launched.process.cleanup();
        let sample = sample.with_context(|| {
            let mut out = String::new();
            let mut f = launched.output;
            let _ = std::io::Read::read_to_string(&mut f, &mut out);
            format!("sandboxed bootstrap: {out}")
        })?;
        if i > 0 {
            init.push(sample.init);
            result.push(sample.total);
        }
    }
    Ok(BootstrapRun {
        sandbox_cpu_millis: cpu_millis,
        init: Summary::of(&init),
        result: Summary::of(&result),
    })
}
