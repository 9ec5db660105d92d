//! A launcher for tests of scheduling and fairness: no root, no sandbox, no interpreter.
//!
//! Each "instance" is a thread that speaks the Runtime API like a real runtime would: it
//! waits its start-up time, then loops on `next` and answers each event with the event
//! itself, after sleeping the event's `sleep_ms` if it has one. How long a start takes,
//! and whether it fails, is decided per launch by the test, from the function's name.
//! What every instance reports as its memory use is set by the test too, and so is how
//! many sandboxes it holds built ahead of time (counted in the server's account).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tern_sandbox::{
    CapacityAccount, ExitStatus, InstanceProcess, LaunchError, LaunchSpec, Launched, Launcher,
    Reservation,
};

/// What a launch of one function does: start after this long, or fail at once.
#[derive(Debug, Clone, Copy)]
pub enum FakeStart {
    After(Duration),
    Fail,
}

type Plan = dyn Fn(&str) -> FakeStart + Send + Sync;

/// Launches fake runtimes; see the module docs.
pub struct FakeLauncher {
    plan: Box<Plan>,
    launches: Mutex<Vec<String>>,
    /// Bytes each instance reports as its memory use (0: it cannot tell).
    memory_in_use: Arc<AtomicU64>,
    account: Mutex<Option<Arc<dyn CapacityAccount>>>,
    /// The rooms of the sandboxes it holds built ahead.
    built_ahead: Mutex<Vec<Reservation>>,
    templates: Mutex<Vec<Reservation>>,
}

impl FakeLauncher {
    /// `plan(function_name)` decides each launch.
    pub fn new(plan: impl Fn(&str) -> FakeStart + Send + Sync + 'static) -> Arc<FakeLauncher> {
        Arc::new(FakeLauncher {
            plan: Box::new(plan),
            launches: Mutex::new(Vec::new()),
            memory_in_use: Arc::new(AtomicU64::new(0)),
            account: Mutex::new(None),
            built_ahead: Mutex::new(Vec::new()),
            templates: Mutex::new(Vec::new()),
        })
    }

    /// Keeps a post-init template of `memory_mb`, counted in the server's account as a
    /// real launcher counts one, if it fits; returns whether it did. The launcher stops
    /// templates (after what it built ahead) when asked to make room.
    pub fn build_template(&self, memory_mb: u32) -> bool {
        let account = self
            .account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match account.and_then(|a| a.reserve_template(memory_mb)) {
            Some(room) => {
                self.templates
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(room);
                true
            }
            None => false,
        }
    }

    /// Templates it keeps.
    pub fn templates(&self) -> usize {
        self.templates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Builds up to `n` sandboxes ahead, as far as the server's account has room;
    /// returns how many it holds.
    pub fn build_ahead(&self, n: usize) -> usize {
        let account = self
            .account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut held = self.built_ahead.lock().unwrap_or_else(|e| e.into_inner());
        while held.len() < n {
            match account.as_ref().and_then(|a| a.reserve_built_ahead()) {
                Some(room) => held.push(room),
                None => break,
            }
        }
        held.len()
    }

    /// Asks the server's account for leave to build one thing ahead now, as the
    /// sandbox launcher does before each build; `None` when requests need the machine.
    pub fn build_permit(&self) -> Option<Reservation> {
        let account = self
            .account
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        account.and_then(|a| a.build_permit())
    }

    /// Sandboxes it holds built ahead.
    pub fn built_ahead(&self) -> usize {
        self.built_ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Every instance, running or to come, reports `bytes` as its memory use from now
    /// on (0: it cannot tell, the default).
    pub fn set_memory_in_use(&self, bytes: u64) {
        self.memory_in_use.store(bytes, Ordering::Relaxed);
    }

    /// Function names, in the order their launches began.
    pub fn launches(&self) -> Vec<String> {
        self.launches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn function_name(spec: &LaunchSpec) -> String {
    spec.env
        .iter()
        .find(|(k, _)| k == "AWS_LAMBDA_FUNCTION_NAME")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

impl Launcher for FakeLauncher {
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, LaunchError> {
        let name = function_name(spec);
        self.launches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        let delay = match (self.plan)(&name) {
            FakeStart::After(d) => d,
            FakeStart::Fail => {
                return Err(LaunchError::Prepare(format!(
                    "the fake launcher fails {name}"
                )))
            }
        };
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let (output, output_w) = std::io::pipe()?;
        let process = Arc::new(FakeProcess {
            memory_in_use: self.memory_in_use.clone(),
            ..FakeProcess::default()
        });
        let runtime = process.clone();
        std::thread::Builder::new()
            .name(format!("fake-{}", spec.instance_id))
            .spawn(move || {
                // The output pipe stays open while the "runtime" lives.
                let _output = output_w;
                std::thread::sleep(delay);
                if let Ok(stream) = TcpStream::connect(addr) {
                    *runtime.conn.lock().unwrap_or_else(|e| e.into_inner()) =
                        stream.try_clone().ok();
                    if !runtime.killed.load(Ordering::Acquire) {
                        let _ = serve(stream);
                    }
                }
                runtime.exit(ExitStatus::Code(0));
            })?;
        Ok(Launched {
            process,
            output: std::fs::File::from(std::os::fd::OwnedFd::from(output)),
            runtime_api_listener: listener,
            runtime_api: addr.to_string(),
            served_by: tern_sandbox::ServedBy::NewSandbox,
        })
    }

    fn name(&self) -> &'static str {
        "fake"
    }

    fn set_capacity_account(&self, account: Arc<dyn CapacityAccount>) {
        *self.account.lock().unwrap_or_else(|e| e.into_inner()) = Some(account);
    }

    fn drop_built_ahead(&self) -> bool {
        let built = self
            .built_ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        built.is_some()
            || self
                .templates
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .is_some()
    }
}

/// The fake runtime's loop: `next`, then answer with the event, until the API goes.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let (id, event) = request(
            &mut reader,
            &mut writer,
            "GET",
            "/2018-06-01/runtime/invocation/next",
            b"",
        )?;
        let Some(id) = id else {
            return Ok(()); // no request id: the instance is stopping
        };
        let sleep_ms = serde_json::from_slice::<serde_json::Value>(&event)
            .ok()
            .and_then(|v| v.get("sleep_ms")?.as_u64())
            .unwrap_or(0);
        std::thread::sleep(Duration::from_millis(sleep_ms));
        request(
            &mut reader,
            &mut writer,
            "POST",
            &format!("/2018-06-01/runtime/invocation/{id}/response"),
            &event,
        )?;
    }
}

/// One HTTP/1.1 request on the keep-alive connection: the response's request id header
/// (if any) and body.
fn request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(Option<String>, Vec<u8>)> {
    write!(
        writer,
        "{method} {path} HTTP/1.1\r\nHost: fake\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    writer.write_all(body)?;
    let mut length = 0usize;
    let mut id = None;
    let mut status = String::new();
    if reader.read_line(&mut status)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            } else if k == "lambda-runtime-aws-request-id" {
                id = Some(v.to_string());
            }
        }
    }
    let mut out = vec![0u8; length];
    reader.read_exact(&mut out)?;
    Ok((id, out))
}

#[derive(Default)]
struct FakeProcess {
    killed: AtomicBool,
    conn: Mutex<Option<TcpStream>>,
    exit: Mutex<Option<ExitStatus>>,
    exited: Condvar,
    memory_in_use: Arc<AtomicU64>,
}

impl FakeProcess {
    fn exit(&self, status: ExitStatus) {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_none() {
            *exit = Some(status);
        }
        self.exited.notify_all();
    }
}

impl InstanceProcess for FakeProcess {
    fn pid(&self) -> u32 {
        0
    }

    fn wait(&self) -> ExitStatus {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(status) = *exit {
                return status;
            }
            exit = self.exited.wait(exit).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        if let Some(conn) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.exit(ExitStatus::Signal(9));
    }

    fn oom_killed(&self) -> bool {
        false
    }

    fn memory_peak_bytes(&self) -> Option<u64> {
        None
    }

    fn memory_current_bytes(&self) -> Option<u64> {
        Some(self.memory_in_use.load(Ordering::Relaxed)).filter(|b| *b > 0)
    }

    fn cleanup(&self) {}
}
