//! Shared fixtures for the end-to-end tests: start a real `tern server` on a free port
//! with a temporary data dir, build function zips, and call the API signed with SigV4.
#![allow(dead_code)]

pub mod testnet;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";

/// Whether the server runs functions in the sandbox (it needs root).
pub fn sandboxed() -> bool {
    nix::unistd::Uid::effective().is_root()
}

pub struct Server {
    child: Child,
    pub endpoint: String,
    pub host: String,
    pub data_dir: PathBuf,
    /// The data dir's parent (None once handed to a restarted server).
    dir: Option<tempfile::TempDir>,
    extra: Vec<String>,
    pub access_key: String,
    pub secret: String,
}

/// An HTTP response, whatever the status.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The Lambda error type of an error response.
    pub fn error_type(&self) -> Option<&str> {
        self.header("x-amzn-errortype")
    }
}

/// A sync invoke result.
#[derive(Debug)]
pub struct Invoked {
    pub status: u16,
    pub function_error: Option<String>,
    pub body: Value,
    pub raw: Vec<u8>,
    /// Decoded `X-Amz-Log-Result`.
    pub log: String,
    pub request_id: String,
}

/// A zip of (path, contents, unix mode).
pub fn zip(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        for (name, data, mode) in files {
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(*mode);
            w.start_file(*name, opts).expect("zip entry");
            w.write_all(data).expect("zip write");
        }
        w.finish().expect("zip finish");
    }
    buf.into_inner()
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts `tern server` with extra flags; sandboxed when running as root.
    pub fn start_with(extra: &[&str]) -> Server {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::spawn(tempfile::tempdir().expect("tempdir"), extra)
    }

    /// Kills this server with SIGKILL (no shutdown at all) and starts another on the same
    /// data dir and flags.
    pub fn crash_and_restart(self) -> Server {
        self.crash_and_restart_after(Duration::ZERO)
    }

    /// Kills this server with SIGKILL, waits `down`, and starts another on the same data
    /// dir and flags (a crash the server was down after for a while).
    pub fn crash_and_restart_after(mut self, down: Duration) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        let dir = self.dir.take().expect("data dir");
        Self::spawn(dir, std::mem::take(&mut self.extra))
    }

    /// What another thread needs to call this server: its address and admin key.
    pub fn client(&self) -> Client {
        Client {
            endpoint: self.endpoint.clone(),
            host: self.host.clone(),
            access_key: self.access_key.clone(),
            secret: self.secret.clone(),
        }
    }

    /// Stops this server and starts another on the same data dir and flags.
    pub fn restart(mut self) -> Server {
        assert!(
            self.stop(Duration::from_secs(15)),
            "the server did not stop"
        );
        let dir = self.dir.take().expect("data dir");
        Self::spawn(dir, std::mem::take(&mut self.extra))
    }

    /// Stops this server, waits `down`, and starts another on the same data dir and
    /// flags (a server that was down for a while).
    pub fn restart_after(mut self, down: Duration) -> Server {
        assert!(
            self.stop(Duration::from_secs(15)),
            "the server did not stop"
        );
        std::thread::sleep(down);
        let dir = self.dir.take().expect("data dir");
        Self::spawn(dir, std::mem::take(&mut self.extra))
    }

    fn spawn(dir: tempfile::TempDir, extra: Vec<String>) -> Server {
        let data_dir = dir.path().join("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
        cmd.arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(&extra)
            .env("RUST_LOG", "info")
            // No pinned boto3 for Python functions: nothing here imports it, and each
            // server would install it from PyPI. The compat suite covers it (shared cache).
            .env("TERN_PYTHON_SDK", "off")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !sandboxed() {
            eprintln!("NOTE: not root, so this server runs functions without the sandbox");
            cmd.arg("--dev-unsandboxed");
        }
        let mut child = cmd.spawn().expect("spawn tern server");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        // Keep the server's log visible in the test output (captured unless it fails).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not print its address within 30 s");
        let endpoint = line
            .strip_prefix("tern server listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        let host = endpoint.trim_start_matches("http://").to_string();
        let creds = std::fs::read_to_string(data_dir.join("credentials")).expect("credentials");
        let field = |k: &str| {
            creds
                .lines()
                .find_map(|l| {
                    let (a, b) = l.split_once('=')?;
                    (a.trim() == k).then(|| b.trim().to_string())
                })
                .unwrap_or_else(|| panic!("{k} missing in credentials"))
        };
        Server {
            child,
            endpoint,
            host,
            access_key: field("aws_access_key_id"),
            secret: field("aws_secret_access_key"),
            data_dir,
            dir: Some(dir),
            extra,
        }
    }

    pub fn credentials_file(&self) -> PathBuf {
        self.data_dir.join("credentials")
    }

    /// A signed request with the admin key.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.request_as(
            &self.access_key,
            &self.secret,
            method,
            path_and_query,
            headers,
            body,
        )
    }

    pub fn request_as(
        &self,
        key: &str,
        secret: &str,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let signed = signed_headers(
            &self.host,
            key,
            secret,
            method,
            path_and_query,
            headers,
            body,
        );
        self.raw_request(method, path_and_query, &signed, body)
    }

    /// An unsigned request with exactly these headers.
    pub fn raw_request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Response {
        send(&self.endpoint, method, path_and_query, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path_and_query}: {e}"))
    }

    /// CreateFunction; `extra` is merged into the request body. Panics unless 201.
    pub fn create_function(
        &self,
        name: &str,
        runtime: &str,
        handler: &str,
        zip: &[u8],
        extra: Value,
    ) -> Value {
        let resp = self.try_create_function(name, runtime, handler, zip, extra);
        assert_eq!(resp.status, 201, "create {name}: {}", resp.text());
        resp.json()
    }

    pub fn try_create_function(
        &self,
        name: &str,
        runtime: &str,
        handler: &str,
        zip: &[u8],
        extra: Value,
    ) -> Response {
        let mut body = serde_json::json!({
            "FunctionName": name,
            "Runtime": runtime,
            "Handler": handler,
            "Role": format!("arn:aws:iam::{ACCOUNT}:role/tern-test"),
            "Code": {"ZipFile": b64(zip)},
        });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        self.request(
            "POST",
            "/2015-03-31/functions",
            &[("content-type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// Sync invoke with the log tail.
    pub fn invoke(&self, name: &str, payload: &str) -> Invoked {
        let resp = self.request(
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            &[("x-amz-log-type", "Tail")],
            payload.as_bytes(),
        );
        assert_eq!(resp.status, 200, "invoke {name}: {}", resp.text());
        let log = resp
            .header("x-amz-log-result")
            .map(|l| {
                String::from_utf8_lossy(
                    &base64::engine::general_purpose::STANDARD
                        .decode(l)
                        .expect("log result is base64"),
                )
                .into_owned()
            })
            .unwrap_or_default();
        Invoked {
            status: resp.status,
            function_error: resp.header("x-amz-function-error").map(str::to_string),
            body: serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
            request_id: resp
                .header("x-amzn-requestid")
                .unwrap_or_default()
                .to_string(),
            raw: resp.body,
            log,
        }
    }

    /// Whether the server still answers its health check.
    pub fn healthy(&self) -> bool {
        self.raw_request("GET", "/tern/v1/health", &[], b"").status == 200
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait; returns whether it exited within `within`.
    pub fn stop(&mut self, within: Duration) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stop(Duration::from_secs(15)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A server's address and admin key, to call it from threads that do not own it; its
/// requests return transport errors (a server that was just killed) instead of panicking.
#[derive(Debug, Clone)]
pub struct Client {
    pub endpoint: String,
    host: String,
    access_key: String,
    secret: String,
}

impl Client {
    pub fn try_request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let signed = signed_headers(
            &self.host,
            &self.access_key,
            &self.secret,
            method,
            path_and_query,
            headers,
            body,
        );
        send(&self.endpoint, method, path_and_query, &signed, body)
    }
}

/// `headers` and the SigV4 headers of a request signed with `key` for `host`.
pub fn signed_headers(
    host: &str,
    key: &str,
    secret: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<(String, String)> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tern_core::sigv4::sign_outgoing(
        &tern_core::sigv4::Signer {
            access_key: key,
            secret,
            region: REGION,
            service: "lambda",
        },
        method,
        host,
        path,
        query,
        &headers,
        body,
    )
}

/// Sends a request with exactly these headers; any HTTP status is a response, a
/// transport failure (a server that is down) an error.
fn send(
    endpoint: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Response, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let mut req = agent.request(method, &format!("{endpoint}{path_and_query}"));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let result = if body.is_empty() && method == "GET" {
        req.call()
    } else {
        req.send_bytes(body)
    };
    let resp = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| Some((n.clone(), resp.header(&n)?.to_string())))
        .collect();
    let mut body = Vec::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Path of a file in the data dir, for tests that look at the server's state.
pub fn data_path(server: &Server, rel: &str) -> PathBuf {
    Path::new(&server.data_dir).join(rel)
}

/// A connection from a chosen loopback source address (127.0.0.x are all local).
pub fn connect_from(server: &Server, source: Ipv4Addr) -> TcpStream {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .expect("socket");
    let local = nix::sys::socket::SockaddrIn::from(std::net::SocketAddrV4::new(source, 0));
    nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&socket), &local).expect("bind");
    let SocketAddr::V4(remote) = server.host.parse::<SocketAddr>().expect("host:port") else {
        panic!("the server listens on IPv4 loopback")
    };
    nix::sys::socket::connect(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &nix::sys::socket::SockaddrIn::from(remote),
    )
    .expect("connect");
    let stream = TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    stream
}

/// A fresh PostgreSQL database on the test server (`TERN_TEST_POSTGRES`, default
/// `postgres://postgres@127.0.0.1:5432/test`), dropped at the end.
pub struct Database {
    server: String,
    name: String,
}

impl Database {
    pub fn create(tag: &str) -> Database {
        let server = std::env::var("TERN_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let name = format!(
            "tern_e2e_{tag}_{}_{}",
            std::process::id(),
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("x")
        );
        tern_store::postgres::create_database(&server, &name).unwrap_or_else(|e| {
            panic!("cannot create test database {name} on {server} (is PostgreSQL up? scripts/test starts it): {e}")
        });
        Database { server, name }
    }

    pub fn url(&self) -> String {
        let base = self.server.rsplit_once('/').map_or("", |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = tern_store::postgres::drop_database(&self.server, &self.name);
    }
}
