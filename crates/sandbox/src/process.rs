//! [`ProcessLauncher`]: runs the runtime as an ordinary child process of the server.
//!
//! No isolation at all; for development on machines where the sandbox cannot run. Paths
//! the instance would see inside a sandbox (`/var/task`, `/opt/tern`) are translated to
//! the host directories they stand for.

use std::ffi::OsString;
use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::exit_cell::ExitCell;
use crate::launcher::{ExitStatus, InstanceProcess, LaunchError, LaunchSpec, Launched, Launcher};
use crate::sys;

/// Where the code is mounted inside a sandbox.
pub const TASK_ROOT: &str = "/var/task";
/// Where the language bootstraps are mounted inside a sandbox.
pub const BOOTSTRAP_ROOT: &str = "/opt/tern";
/// Layers live at `/opt`, which only a sandbox's own root can show.
const LAYERS_UNSUPPORTED: &str = "functions with layers need the sandbox launcher";
/// Where [`LaunchSpec::runtime_dir`] is mounted inside a sandbox.
pub const RUNTIME_ROOT: &str = "/var/runtime";

/// Launches instances as plain host processes (development only).
#[derive(Debug, Default, Clone)]
pub struct ProcessLauncher;

impl ProcessLauncher {
    pub fn new() -> Self {
        Self
    }
}

impl Launcher for ProcessLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, LaunchError> {
        if !spec.layer_dirs.is_empty() {
            return Err(LaunchError::Prepare(LAYERS_UNSUPPORTED.into()));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let runtime_api = listener.local_addr()?.to_string();
        let (output, writer) = sys::pipe()?;
        let translate = |p: &str| translate_path(p, spec);

        let mut command = Command::new(translate(&spec.program.to_string_lossy()));
        command
            .args(spec.args.iter().map(|a| translate(a)))
            .env_clear()
            .envs(
                spec.env
                    .iter()
                    .filter(|(k, _)| k != "AWS_LAMBDA_RUNTIME_API")
                    .map(|(k, v)| (k, translate_env_value(v, spec))),
            )
            .env("AWS_LAMBDA_RUNTIME_API", &runtime_api)
            .current_dir(&spec.code_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer.try_clone()?))
            .stderr(Stdio::from(writer))
            .process_group(0);
        let child = command.spawn()?;
        // The command holds the write ends; dropping it lets `output` see EOF at exit.
        drop(command);

        let process = ChildProcess {
            pid: child.id(),
            child: Mutex::new(Some(child)),
            exit: ExitCell::default(),
        };
        Ok(Launched {
            process: Arc::new(process),
            output: File::from(output),
            runtime_api_listener: listener,
            runtime_api,
            served_by: crate::launcher::ServedBy::NewSandbox,
        })
    }

    fn name(&self) -> &'static str {
        "process"
    }
}

struct ChildProcess {
    pid: u32,
    child: Mutex<Option<Child>>,
    exit: ExitCell,
}

impl InstanceProcess for ChildProcess {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn wait(&self) -> ExitStatus {
        self.exit.wait_with(|| {
            let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(mut child) = child else {
                return ExitStatus::Unknown;
            };
            let status = match child.wait() {
                Ok(status) => status,
                Err(_) => return ExitStatus::Unknown,
            };
            // The runtime is gone; take anything it left behind in its group with it.
            sys::kill_process_group(self.pid);
            match (status.code(), status.signal()) {
                (Some(code), _) => ExitStatus::Code(code),
                (None, Some(signal)) => ExitStatus::Signal(signal),
                (None, None) => ExitStatus::Unknown,
            }
        })
    }

    fn kill(&self) {
        if self.exit.get().is_none() {
            sys::kill_process_group(self.pid);
        }
    }

    fn oom_killed(&self) -> bool {
        false
    }

    fn memory_peak_bytes(&self) -> Option<u64> {
        None
    }

    fn cleanup(&self) {}

    fn set_resources(&self, _resources: &crate::launcher::Resources) -> Result<(), String> {
        // The development launcher enforces no limits.
        Ok(())
    }
}

/// Maps a sandbox path (`/var/task/x`, `/opt/tern/x`, `/var/runtime/x`) to the host directory behind it.
pub fn translate_path(path: &str, spec: &LaunchSpec) -> OsString {
    let runtime_dir = spec.runtime_dir.as_ref().map(|dir| (RUNTIME_ROOT, dir));
    for (inside, host) in [
        (TASK_ROOT, &spec.code_dir),
        (BOOTSTRAP_ROOT, &spec.bootstrap_dir),
    ]
    .into_iter()
    .chain(runtime_dir)
    {
        if let Some(rest) = strip_dir_prefix(path, inside) {
            return join_rest(host, rest).into_os_string();
        }
    }
    OsString::from(path)
}

/// Translates each `:`-separated component, so `PATH` and `PYTHONPATH` work too.
fn translate_env_value(value: &str, spec: &LaunchSpec) -> OsString {
    let mut out = OsString::new();
    for (i, part) in value.split(':').enumerate() {
        if i > 0 {
            out.push(":");
        }
        out.push(translate_path(part, spec));
    }
    out
}

fn strip_dir_prefix<'a>(path: &'a str, dir: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(dir)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn join_rest(host: &Path, rest: &str) -> PathBuf {
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        host.to_path_buf()
    } else {
        host.join(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launcher::Resources;
    use std::io::Read;

    fn spec(code: &Path) -> LaunchSpec {
        LaunchSpec {
            network: Default::default(),
            owner: String::new(),
            instance_id: "t1".into(),
            program: "/bin/sh".into(),
            args: vec![],
            env: vec![("LAMBDA_TASK_ROOT".into(), "/var/task".into())],
            code_dir: code.to_path_buf(),
            bootstrap_dir: "/srv/boot".into(),
            layer_dirs: vec![],
            runtime_dir: None,
            extra_ro_paths: vec![],
            resources: Resources {
                memory_mb: 128,
                tmp_mb: 64,
                cpu_millis: 1000,
                cpu_period_us: crate::cgroups::CPU_PERIOD_US,
                cpu_burst: false,
                max_pids: 64,
                max_open_files: 1024,
            },
            zygote: None,
            template: None,
            start_ahead_env: None,
        }
    }

    #[test]
    fn sandbox_paths_map_to_host_dirs() {
        let s = spec(Path::new("/data/code/f1"));
        assert_eq!(
            translate_path("/var/task/main.py", &s),
            "/data/code/f1/main.py"
        );
        assert_eq!(translate_path("/var/task", &s), "/data/code/f1");
        assert_eq!(
            translate_path("/opt/tern/py/boot.py", &s),
            "/srv/boot/py/boot.py"
        );
        assert_eq!(translate_path("/var/tasks", &s), "/var/tasks");
        assert_eq!(translate_path("/usr/bin/python3", &s), "/usr/bin/python3");
        assert_eq!(
            translate_env_value("/var/task:/opt/tern/py:/usr/lib", &s),
            "/data/code/f1:/srv/boot/py:/usr/lib"
        );
    }

    #[test]
    fn process_launcher_runs_program_with_runtime_api_and_task_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = spec(dir.path());
        s.args = vec![
            "-c".into(),
            "echo api=$AWS_LAMBDA_RUNTIME_API root=$LAMBDA_TASK_ROOT cwd=$(pwd); echo err >&2; exit 3"
                .into(),
        ];
        let launched = ProcessLauncher::new().launch(&s).expect("launch");
        assert_eq!(launched.process.wait(), ExitStatus::Code(3));
        assert_eq!(launched.process.wait(), ExitStatus::Code(3));
        let mut out = String::new();
        let mut output = launched.output;
        output.read_to_string(&mut out).expect("read output");
        let root = dir.path().display().to_string();
        assert!(
            out.contains(&format!("api={}", launched.runtime_api)),
            "{out}"
        );
        assert!(out.contains(&format!("root={root} cwd={root}")), "{out}");
        assert!(out.contains("err"), "{out}");
    }

    #[test]
    fn process_launcher_kill_reports_signal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = spec(dir.path());
        s.args = vec!["-c".into(), "sleep 30 & sleep 30".into()];
        let launched = ProcessLauncher::new().launch(&s).expect("launch");
        launched.process.kill();
        assert_eq!(launched.process.wait(), ExitStatus::Signal(libc::SIGKILL));
        launched.process.kill();
    }
}
