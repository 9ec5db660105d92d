//! The baselines, measured in the same run as tern so that ratios hold on a noisy
//! machine, and the phase probes that split a Python cold start:
//!
//! - **(a) naive platform** is measured in `main.rs`: a second tern server with
//!   everything built ahead and zygotes off, timed like tern (HTTP in →
//!   response out).
//! - **(a0) the interpreter alone**: exec a fresh `python3.11` running tern's own
//!   Python bootstrap, against a local Runtime API stub: spawn → handler result
//!   posted. No sandbox and no HTTP front end: a lower bound for any platform that
//!   execs an interpreter per cold start.
//! - **(b) physical floor**: a warm Python (bootstrap pre-imported, as a zygote would
//!   hold it) forks a child that unshares the namespaces tern gives an instance (mount,
//!   uts, ipc, pid, net, user, cgroup) and forks again to become pid 1 of the new pid
//!   namespace: request → that process running.
//! - **phases**: interpreter start (`python3.11 -c pass`, with and without `site`),
//!   bootstrap import and handler import, each in a fresh process without a sandbox.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::functions;

/// tern's Python bootstrap, the same file the server ships.
pub const PYTHON_BOOTSTRAP: &str = include_str!("../../runtimes/python/bootstrap.py");

const CLONE_FLAGS: &str =
    "0x00020000 | 0x04000000 | 0x08000000 | 0x20000000 | 0x40000000 | 0x10000000 | 0x02000000";

/// The warm interpreter of baseline (b). Reads one byte per request from stdin and
/// answers `R` on stdout from the grandchild in the new namespaces.
fn fork_server_script() -> String {
    format!(
        r#"import ctypes, os, sys
import bootstrap  # what a zygote holds pre-imported (json, http.client, ...)
libc = ctypes.CDLL(None, use_errno=True)
# CLONE_NEWNS | NEWUTS | NEWIPC | NEWPID | NEWNET | NEWUSER | NEWCGROUP
FLAGS = {CLONE_FLAGS}
os.write(1, b"S")
while os.read(0, 1):
    pid = os.fork()
    if pid == 0:
        if libc.unshare(FLAGS) != 0:
            os.write(1, b"E")
            os._exit(1)
        child = os.fork()
        if child == 0:
            os.write(1, b"R")
            os._exit(0)
        os.waitpid(child, 0)
        os._exit(0)
    os.waitpid(pid, 0)
"#
    )
}

/// Prints the milliseconds of `import bootstrap` and of loading the handler.
const PHASE_PROBE: &str = r#"import time
t0 = time.perf_counter()
import bootstrap
t1 = time.perf_counter()
bootstrap.load_handler("app.handler", None)
t2 = time.perf_counter()
print("%.6f %.6f" % ((t1 - t0) * 1e3, (t2 - t1) * 1e3))
"#;

/// The interpreter the server uses for `python3.11` (its catalog looks in these first).
pub fn python311() -> anyhow::Result<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join("python3.11"))
        .find_map(|p| std::fs::canonicalize(p).ok().filter(|p| p.is_file()))
        .ok_or_else(|| anyhow!("python3.11 not found in /usr/bin, /usr/local/bin or /bin"))
}

/// A scratch dir with `boot/bootstrap.py` and `code/app.py`.
pub struct Scratch {
    dir: tempfile::TempDir,
    pub python: PathBuf,
}

impl Scratch {
    pub fn new() -> anyhow::Result<Scratch> {
        let dir = tempfile::Builder::new()
            .prefix("tern-bench-py-")
            .tempdir()?;
        std::fs::create_dir_all(dir.path().join("boot"))?;
        std::fs::create_dir_all(dir.path().join("code"))?;
        std::fs::write(dir.path().join("boot/bootstrap.py"), PYTHON_BOOTSTRAP)?;
        functions::write_python_hello(&dir.path().join("code"))?;
        Ok(Scratch {
            dir,
            python: python311()?,
        })
    }

    fn boot(&self) -> PathBuf {
        self.dir.path().join("boot")
    }

    fn code(&self) -> PathBuf {
        self.dir.path().join("code")
    }

    /// A python command with the environment a tern instance gets (and no more): the
    /// bench's own environment (e.g. PYTHONUNBUFFERED) must not leak in. Bytecode is
    /// not written, as in a sandbox whose code dir is read-only.
    fn python_cmd(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.env_clear()
            .envs([
                ("PATH", "/usr/local/bin:/usr/bin:/bin"),
                ("LANG", "en_US.UTF-8"),
                ("TZ", ":UTC"),
                ("HOME", "/tmp"),
                ("PYTHONDONTWRITEBYTECODE", "1"),
                ("AWS_LAMBDA_FUNCTION_NAME", "baseline"),
                ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
                ("_HANDLER", "app.handler"),
            ])
            .env("LAMBDA_TASK_ROOT", self.code())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd
    }
}

/// What the Runtime API stub saw, with when it saw it.
enum StubEvent {
    /// The runtime asked for work (init done).
    Next(Instant),
    /// The runtime posted the result.
    Response(Instant),
    InitError(String),
}

/// A Runtime API stub serving one runtime at a time on `listener`: it hands out one
/// empty event per connection and reports the runtime's calls.
pub struct RuntimeApiStub {
    events: mpsc::Receiver<StubEvent>,
}

/// One cold start against the stub: start → first `next`, and start → result posted.
pub struct StubSample {
    pub init: Duration,
    pub total: Duration,
}

impl RuntimeApiStub {
    pub fn serve(listener: TcpListener) -> RuntimeApiStub {
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                if serve_stub(stream, &tx).is_err() {
                    return;
                }
            }
        });
        RuntimeApiStub { events }
    }

    pub fn clear(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Waits for the result of the runtime started at `started`.
    pub fn await_result(&self, started: Instant) -> anyhow::Result<StubSample> {
        let mut init = None;
        loop {
            match self.events.recv_timeout(Duration::from_secs(30)) {
                Ok(StubEvent::Next(at)) => {
                    init.get_or_insert(at - started);
                }
                Ok(StubEvent::Response(at)) => {
                    let total = at - started;
                    return Ok(StubSample {
                        init: init.unwrap_or(total),
                        total,
                    });
                }
                Ok(StubEvent::InitError(body)) => bail!("runtime init error: {body}"),
                Err(_) => bail!("no response from the runtime within 30 s"),
            }
        }
    }
}

/// Baseline (a0): one fresh interpreter + bootstrap per cold start, no sandbox, no HTTP.
pub struct FreshInterpreter<'a> {
    scratch: &'a Scratch,
    api: String,
    stub: RuntimeApiStub,
}

impl<'a> FreshInterpreter<'a> {
    pub fn new(scratch: &'a Scratch) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let api = listener.local_addr()?.to_string();
        Ok(FreshInterpreter {
            scratch,
            api,
            stub: RuntimeApiStub::serve(listener),
        })
    }

    pub fn sample(&self) -> anyhow::Result<StubSample> {
        self.stub.clear();
        let mut cmd = self.scratch.python_cmd();
        cmd.arg(self.scratch.boot().join("bootstrap.py"))
            .env("AWS_LAMBDA_RUNTIME_API", &self.api);
        let started = Instant::now();
        let mut child = KillOnDrop(cmd.spawn().context("spawning python3.11")?);
        let sample = self.stub.await_result(started).context("baseline (a)");
        child.stop();
        sample
    }
}

struct KillOnDrop(Child);

impl KillOnDrop {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves one runtime connection: hands out one event, records the calls, and leaves
/// the second `next` unanswered (the sample is over; the runtime gets killed).
fn serve_stub(stream: TcpStream, events: &mpsc::Sender<StubEvent>) -> Result<(), ()> {
    let _ = stream.set_nodelay(true);
    let Ok(mut w) = stream.try_clone() else {
        return Ok(());
    };
    let mut r = BufReader::new(stream);
    let mut handed_out = false;
    loop {
        let Ok(Some((method, path, body))) = read_request(&mut r) else {
            return Ok(());
        };
        let now = Instant::now();
        let reply = if method == "GET" && path.ends_with("/invocation/next") {
            events.send(StubEvent::Next(now)).map_err(drop)?;
            if handed_out {
                continue;
            }
            handed_out = true;
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() + 60_000)
                .unwrap_or(0);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: baseline-request\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:baseline\r\nContent-Length: 2\r\n\r\n{{}}"
            )
        } else if path.ends_with("/response") {
            events.send(StubEvent::Response(now)).map_err(drop)?;
            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_string()
        } else {
            events
                .send(StubEvent::InitError(format!(
                    "{method} {path}: {}",
                    String::from_utf8_lossy(&body)
                )))
                .map_err(drop)?;
            "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_string()
        };
        if w.write_all(reply.as_bytes()).is_err() {
            return Ok(());
        }
    }
}

type Request = (String, String, Vec<u8>);

fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Some((method, path, body)))
}

/// Baseline (b): the warm interpreter that forks into new namespaces on request.
pub struct ForkFloor {
    child: KillOnDrop,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl ForkFloor {
    pub fn start(scratch: &Scratch) -> anyhow::Result<ForkFloor> {
        let mut cmd = scratch.python_cmd();
        cmd.arg("-c")
            .arg(fork_server_script())
            .env("PYTHONPATH", scratch.boot())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = KillOnDrop(cmd.spawn().context("spawning the fork server")?);
        let stdin = child.0.stdin.take().context("fork server stdin")?;
        let mut stdout = child.0.stdout.take().context("fork server stdout")?;
        let mut b = [0u8; 1];
        stdout
            .read_exact(&mut b)
            .context("the fork server did not start")?;
        Ok(ForkFloor {
            child,
            stdin,
            stdout,
        })
    }

    /// Request → the forked process runs in its new namespaces.
    pub fn sample(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.stdin.write_all(b"g")?;
        let mut b = [0u8; 1];
        self.stdout.read_exact(&mut b)?;
        let elapsed = started.elapsed();
        if b[0] != b'R' {
            bail!("baseline (b): unshare failed in the forked child (not root?)");
        }
        Ok(elapsed)
    }
}

impl Drop for ForkFloor {
    fn drop(&mut self) {
        self.child.stop();
    }
}

/// One sample of each phase of a Python start, outside any sandbox.
pub struct PhaseSample {
    /// `python3.11 -c pass`: spawn → exit.
    pub interpreter: Duration,
    /// `python3.11 -S -c pass`: the same without the `site` module.
    pub interpreter_no_site: Duration,
    pub bootstrap_import_ms: f64,
    pub handler_import_ms: f64,
}

pub fn phase_sample(scratch: &Scratch) -> anyhow::Result<PhaseSample> {
    let run = |args: &[&str]| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let status = scratch.python_cmd().args(args).status()?;
        let elapsed = started.elapsed();
        if !status.success() {
            bail!("python3.11 {args:?} failed: {status}");
        }
        Ok(elapsed)
    };
    let interpreter = run(&["-c", "pass"])?;
    let interpreter_no_site = run(&["-S", "-c", "pass"])?;
    let out = scratch
        .python_cmd()
        .arg("-c")
        .arg(PHASE_PROBE)
        .env(
            "PYTHONPATH",
            format!("{}:{}", scratch.boot().display(), scratch.code().display()),
        )
        .stdout(Stdio::piped())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut nums = text.split_whitespace().map(str::parse::<f64>);
    match (nums.next(), nums.next()) {
        (Some(Ok(b)), Some(Ok(h))) => Ok(PhaseSample {
            interpreter,
            interpreter_no_site,
            bootstrap_import_ms: b,
            handler_import_ms: h,
        }),
        _ => bail!("phase probe printed {text:?}"),
    }
}
