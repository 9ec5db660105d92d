//! The SDK each Python runtime ships, as Lambda's do: pinned boto3 and botocore,
//! installed once from PyPI (`python -m pip install --target`) into a cache directory and
//! shown to instances read-only at `/var/runtime` (the sandbox's runtime directory). The
//! bootstrap puts that directory last on `sys.path`, so a boto3 in the function's zip or
//! in a layer wins, as on Lambda.
//!
//! Installs run on one background thread started with the server, newest interpreter
//! first, so the listener never waits for PyPI. A Python cold start waits for its own
//! version's install (and moves it to the front of the queue): whether boto3 is
//! importable must not depend on how soon after start-up a function happened to run.
//! Once an install has finished or failed, asking costs a lock and a clone. A failed
//! install (offline, a version the pin does not support) is logged and its runtime runs
//! without the SDK.
//!
//! Layout: `<root>/python3.X/<pin key>/` (for example
//! `python3.11/boto3-1.44.18_botocore-1.44.18/`), so a cache can be shared by many
//! servers and pre-populated for machines without PyPI. A directory exists only once
//! complete: it is built under a temporary name and renamed into place, under a lock
//! file that makes concurrent servers wait for one another rather than install twice.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::catalog::{RuntimeCatalog, RuntimeKind};

/// What tern installs when no other pin is configured (the newest releases when this
/// tern was released; they need Python 3.10 or later).
pub const DEFAULT_REQUIREMENTS: &[&str] = &["boto3==1.44.18", "botocore==1.44.18"];

/// How long one `pip install` may take before it is given up.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// A pinned set that failed to install for an interpreter (offline, or a version the pin
/// does not support) is not tried again for this long: every server start would
/// otherwise run a failing pip per old interpreter. Deleting the marker retries at once.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(6 * 3600);

/// Why a runtime has no SDK.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}); see {log}")]
    Command {
        command: String,
        status: String,
        log: String,
    },
    #[error("`{command}` took longer than {secs} s", secs = INSTALL_TIMEOUT.as_secs())]
    Timeout { command: String },
    #[error("the server is shutting down")]
    Stopped,
    #[error("it failed less than {hours} h ago (see {log}; delete {marker} to retry now)", hours = RETRY_FAILED_AFTER.as_secs() / 3600)]
    RecentlyFailed { log: String, marker: String },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SdkError {
    let what = what.into();
    move |source| SdkError::Io { what, source }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Pending,
    Ready(PathBuf),
    Unavailable,
}

/// The pinned SDK of every Python runtime of the catalog.
#[derive(Debug)]
pub struct PythonSdk {
    states: HashMap<String, watch::Sender<State>>,
    /// Runtimes not installed yet, in install order.
    queue: Arc<Mutex<Vec<String>>>,
    /// Set at shutdown: the installer kills a running pip and stops.
    stopping: Arc<AtomicBool>,
}

impl PythonSdk {
    /// No SDK for any runtime (the setting is off).
    pub fn off() -> Arc<PythonSdk> {
        Arc::new(PythonSdk {
            states: HashMap::new(),
            queue: Arc::default(),
            stopping: Arc::default(),
        })
    }

    /// Starts installing `requirements` for each Python runtime of `catalog` under
    /// `root`, in the background.
    pub fn start(root: PathBuf, requirements: Vec<String>, catalog: &RuntimeCatalog) -> Arc<Self> {
        let mut interpreters: Vec<(String, PathBuf)> = catalog
            .ids()
            .into_iter()
            .filter_map(|id| match catalog.get(&id) {
                Some(RuntimeKind::Python { exe, .. }) => Some((id, exe.clone())),
                _ => None,
            })
            .collect();
        // Newest first: python3.13 before python3.9 (ids sort as text).
        interpreters.sort_by_key(|(id, _)| std::cmp::Reverse(minor_version(id)));
        let states = interpreters
            .iter()
            .map(|(id, _)| (id.clone(), watch::Sender::new(State::Pending)))
            .collect();
        let sdk = Arc::new(PythonSdk {
            states,
            queue: Arc::new(Mutex::new(
                interpreters.iter().map(|(id, _)| id.clone()).collect(),
            )),
            stopping: Arc::default(),
        });
        let worker = sdk.clone();
        let spawned = std::thread::Builder::new()
            .name("tern-python-sdk".into())
            .spawn(move || worker.install_all(&root, &requirements, &interpreters));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the Python SDK installer");
            for state in sdk.states.values() {
                state.send_replace(State::Unavailable);
            }
        }
        sdk
    }

    /// The host directory with `runtime`'s SDK, waiting for its install if it is still
    /// under way; None when the runtime has none.
    pub async fn dir_for(&self, runtime: &str) -> Option<PathBuf> {
        let state = self.states.get(runtime)?;
        let mut rx = state.subscribe();
        if *rx.borrow() == State::Pending {
            self.move_to_front(runtime);
            tracing::info!(runtime, "cold start waits for the Python SDK install");
        }
        let state = rx.wait_for(|s| *s != State::Pending).await.ok()?.clone();
        match state {
            State::Ready(dir) => Some(dir),
            State::Pending | State::Unavailable => None,
        }
    }

    /// Stops the installer: a pip under way is killed (its temporary directory is
    /// removed by the next install), waiting cold starts go on without the SDK.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        for state in self.states.values() {
            state.send_if_modified(|s| {
                let pending = *s == State::Pending;
                if pending {
                    *s = State::Unavailable;
                }
                pending
            });
        }
    }

    /// The host directory with `runtime`'s SDK if its install is complete (never waits).
    pub fn ready_dir(&self, runtime: &str) -> Option<PathBuf> {
        match &*self.states.get(runtime)?.borrow() {
            State::Ready(dir) => Some(dir.clone()),
            State::Pending | State::Unavailable => None,
        }
    }

    fn move_to_front(&self, runtime: &str) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = queue.iter().position(|r| r == runtime) {
            let id = queue.remove(at);
            queue.insert(0, id);
        }
    }

    fn install_all(
        &self,
        root: &Path,
        requirements: &[String],
        interpreters: &[(String, PathBuf)],
    ) {
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let next = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.is_empty() {
                    return;
                }
                queue.remove(0)
            };
            let Some((_, exe)) = interpreters.iter().find(|(id, _)| *id == next) else {
                continue;
            };
            let started = Instant::now();
            let state = match install(root, &next, exe, requirements, &self.stopping) {
                Ok(dir) => {
                    tracing::info!(runtime = %next, dir = %dir.display(), ms = started.elapsed().as_millis() as u64, "Python SDK ready");
                    State::Ready(dir)
                }
                Err(e) => {
                    tracing::warn!(runtime = %next, error = %e, "no Python SDK for this runtime: its functions run without boto3");
                    State::Unavailable
                }
            };
            if let Some(sender) = self.states.get(&next) {
                sender.send_replace(state);
            }
        }
    }
}

/// 11 for "python3.11".
fn minor_version(runtime: &str) -> u32 {
    runtime
        .rsplit('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// The cache directory name of a pinned set: `boto3==1.2.3 botocore==1.2.3` ->
/// `boto3-1.2.3_botocore-1.2.3`.
pub fn pin_key(requirements: &[String]) -> String {
    requirements
        .iter()
        .map(|r| {
            r.chars()
                .map(|c| match c {
                    'A'..='Z' | 'a'..='z' | '0'..='9' | '.' => c,
                    _ => '-',
                })
                .collect::<String>()
                .replace("--", "-")
        })
        .collect::<Vec<_>>()
        .join("_")
}

/// Installs `requirements` for one interpreter unless the cache has them; returns the
/// directory. Blocking; gives up when `stop` is set.
pub fn install(
    root: &Path,
    runtime: &str,
    exe: &Path,
    requirements: &[String],
    stop: &AtomicBool,
) -> Result<PathBuf, SdkError> {
    let parent = root.join(runtime);
    let dir = parent.join(pin_key(requirements));
    if dir.is_dir() {
        return Ok(dir);
    }
    fs::create_dir_all(&parent).map_err(io_err(format!("create {}", parent.display())))?;
    let lock_path = parent.join(".lock");
    let lock =
        File::create(&lock_path).map_err(io_err(format!("create {}", lock_path.display())))?;
    lock.lock()
        .map_err(io_err(format!("lock {}", lock_path.display())))?;
    if dir.is_dir() {
        return Ok(dir); // another server installed it while this one waited
    }
    let log = parent.join("install.log");
    let failed = parent.join(format!("{}.failed", pin_key(requirements)));
    let recent = fs::metadata(&failed)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < RETRY_FAILED_AFTER);
    if recent {
        return Err(SdkError::RecentlyFailed {
            log: log.display().to_string(),
            marker: failed.display().to_string(),
        });
    }
    // What an install interrupted by a server's exit left behind (the lock is ours).
    let listing = fs::read_dir(&parent).map_err(io_err(format!("read {}", parent.display())))?;
    for entry in listing.filter_map(Result::ok) {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(io_err(format!("remove {}", path.display())))?;
        }
    }
    let tmp = parent.join(format!("{TMP_PREFIX}{}", std::process::id()));
    let result = pip_install(exe, &tmp, requirements, &log, stop).and_then(|()| {
        // Byte-compiled by this interpreter: the directory is read-only in the sandbox,
        // where an import cannot write its .pyc.
        run(
            Command::new(exe).args(["-m", "compileall", "-q"]).arg(&tmp),
            &log,
            stop,
        )
    });
    let result = result.and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
            .map_err(io_err(format!("chmod {}", tmp.display())))?;
        fs::rename(&tmp, &dir).map_err(io_err(format!("rename to {}", dir.display())))
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        if matches!(e, SdkError::Command { .. }) {
            // pip ran and failed; a stop or a timeout says nothing about the next try.
            let _ = fs::write(&failed, e.to_string());
        }
        return Err(e);
    }
    let _ = fs::remove_file(&failed);
    Ok(dir)
}

/// Name prefix of a directory being installed.
const TMP_PREFIX: &str = ".installing-";

fn pip_install(
    exe: &Path,
    target: &Path,
    requirements: &[String],
    log: &Path,
    stop: &AtomicBool,
) -> Result<(), SdkError> {
    let mut command = Command::new(exe);
    command
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
        ])
        .args(["--no-warn-script-location", "--target"])
        .arg(target)
        .args(requirements)
        // Not a flag: pips that predate it ignore the variable.
        .env("PIP_ROOT_USER_ACTION", "ignore");
    run(&mut command, log, stop)
}

/// Runs `command` with its output appended to `log`, within [`INSTALL_TIMEOUT`] and
/// until `stop` is set.
fn run(command: &mut Command, log: &Path, stop: &AtomicBool) -> Result<(), SdkError> {
    let shown = format!("{command:?}");
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_err(format!("open {}", log.display())))?;
    let err = out.try_clone().map_err(io_err("dup the log"))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io_err(format!("start {shown}")))?;
    let deadline = Instant::now() + INSTALL_TIMEOUT;
    loop {
        let status = child
            .try_wait()
            .map_err(io_err(format!("wait for {shown}")))?;
        let give_up = match status {
            Some(status) if status.success() => return Ok(()),
            Some(status) => {
                return Err(SdkError::Command {
                    command: shown,
                    status: status.to_string(),
                    log: log.display().to_string(),
                })
            }
            None if Instant::now() > deadline => Some(SdkError::Timeout {
                command: shown.clone(),
            }),
            None if stop.load(Ordering::Acquire) => Some(SdkError::Stopped),
            None => None,
        };
        if let Some(error) = give_up {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_key_names_each_pinned_package_and_version() {
        let pins: Vec<String> = DEFAULT_REQUIREMENTS.iter().map(|s| s.to_string()).collect();
        assert_eq!(pin_key(&pins), "boto3-1.44.18_botocore-1.44.18");
        assert_eq!(pin_key(&["boto3>=1,<2".to_string()]), "boto3-1-2");
    }

    #[test]
    fn a_complete_cache_directory_is_used_without_running_pip() {
        let root = tempfile::tempdir().expect("tempdir");
        let pins = vec!["boto3==9.9.9".to_string()];
        let dir = root.path().join("python3.11").join("boto3-9.9.9");
        fs::create_dir_all(dir.join("boto3")).expect("mkdir");
        let stop = AtomicBool::new(false);
        let python = Path::new("/nonexistent/python");
        let got = install(root.path(), "python3.11", python, &pins, &stop).expect("cached");
        assert_eq!(got, dir);
    }

    #[test]
    fn a_failed_install_leaves_no_directory_behind() {
        let root = tempfile::tempdir().expect("tempdir");
        let pins = vec!["boto3==9.9.9".to_string()];
        // A directory an interrupted install left is removed too.
        let stale = root.path().join("python3.11").join(".installing-1");
        fs::create_dir_all(stale.join("boto3")).expect("mkdir");
        let stop = AtomicBool::new(false);
        let err = install(
            root.path(),
            "python3.11",
            Path::new("/bin/false"),
            &pins,
            &stop,
        )
        .expect_err("pip cannot run");
        assert!(matches!(err, SdkError::Command { .. }), "{err}");
        let left: Vec<_> = fs::read_dir(root.path().join("python3.11"))
            .expect("read")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".lock" && n != "install.log" && !n.ends_with(".failed"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_failed_install_is_not_retried_at_every_start_until_its_marker_goes() {
        let root = tempfile::tempdir().expect("tempdir");
        let pins = vec!["boto3==9.9.9".to_string()];
        let stop = AtomicBool::new(false);
        let first = install(
            root.path(),
            "python3.8",
            Path::new("/bin/false"),
            &pins,
            &stop,
        );
        assert!(matches!(first, Err(SdkError::Command { .. })), "{first:?}");
        // The next start does not run pip again (`/nonexistent` would fail differently).
        let python = Path::new("/nonexistent/python");
        let second = install(root.path(), "python3.8", python, &pins, &stop);
        assert!(
            matches!(second, Err(SdkError::RecentlyFailed { .. })),
            "{second:?}"
        );
        // Other pins are tried.
        let other = vec!["boto3==9.9.8".to_string()];
        let third = install(root.path(), "python3.8", python, &other, &stop);
        assert!(
            matches!(third, Err(SdkError::Command { .. } | SdkError::Io { .. })),
            "{third:?}"
        );
        // Without the marker, the same pins are tried again.
        fs::remove_file(root.path().join("python3.8").join("boto3-9.9.9.failed")).expect("rm");
        let fourth = install(root.path(), "python3.8", python, &pins, &stop);
        assert!(
            !matches!(fourth, Err(SdkError::RecentlyFailed { .. })),
            "{fourth:?}"
        );
    }

    #[test]
    fn a_stopped_install_kills_its_command() {
        let root = tempfile::tempdir().expect("tempdir");
        let stop = AtomicBool::new(true);
        let started = Instant::now();
        let log = root.path().join("log");
        let err = run(Command::new("/bin/sleep").arg("30"), &log, &stop).expect_err("stopped");
        assert!(matches!(err, SdkError::Stopped), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// An SDK whose installs the test finishes by hand.
    fn pending(runtimes: &[&str]) -> PythonSdk {
        PythonSdk {
            states: runtimes
                .iter()
                .map(|r| (r.to_string(), watch::Sender::new(State::Pending)))
                .collect(),
            queue: Arc::new(Mutex::new(runtimes.iter().map(|r| r.to_string()).collect())),
            stopping: Arc::default(),
        }
    }

    #[tokio::test]
    async fn a_cold_start_waits_for_its_install_and_jumps_the_queue() {
        let sdk = Arc::new(pending(&["python3.13", "python3.12", "python3.11"]));
        assert_eq!(sdk.ready_dir("python3.11"), None);
        let waiting = tokio::spawn({
            let sdk = sdk.clone();
            async move { sdk.dir_for("python3.11").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "answered before the install finished"
        );
        assert_eq!(
            *sdk.queue.lock().expect("queue"),
            ["python3.11", "python3.13", "python3.12"]
        );
        let dir = PathBuf::from("/cache/python3.11/boto3-1");
        sdk.states["python3.11"].send_replace(State::Ready(dir.clone()));
        assert_eq!(waiting.await.expect("task"), Some(dir.clone()));
        assert_eq!(sdk.ready_dir("python3.11"), Some(dir));
    }

    #[tokio::test]
    async fn shutdown_releases_cold_starts_still_waiting() {
        let sdk = Arc::new(pending(&["python3.11"]));
        let waiting = tokio::spawn({
            let sdk = sdk.clone();
            async move { sdk.dir_for("python3.11").await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        sdk.shutdown();
        assert_eq!(waiting.await.expect("task"), None);
    }

    #[tokio::test]
    async fn runtimes_without_an_install_have_no_sdk() {
        let sdk = PythonSdk::off();
        assert_eq!(sdk.dir_for("python3.11").await, None);
    }

    #[test]
    fn newest_interpreters_are_installed_first() {
        let mut ids = vec!["python3.9", "python3.13", "python3.11"];
        ids.sort_by_key(|id| std::cmp::Reverse(minor_version(id)));
        assert_eq!(ids, ["python3.13", "python3.11", "python3.9"]);
    }
}
