//! Starts a real release `tern server` on a free port with a temporary data dir, and
//! stops it (SIGTERM, then SIGKILL) when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::client::Api;

pub struct TernServer {
    child: Child,
    pub api: Api,
    dir: tempfile::TempDir,
}

/// `tern` next to this binary (both are built into `target/release`), unless given.
pub fn find_binary(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot locate the bench binary")?
            .with_file_name("tern"),
    };
    if !path.is_file() {
        bail!(
            "the tern server binary is not at {}.\nBuild both binaries first, from the repository root:\n  \
             cargo build --release --workspace && target/release/tern-bench --all\n\
             (or pass --tern PATH)",
            path.display()
        );
    }
    Ok(path)
}

impl TernServer {
    pub fn start(binary: &Path) -> anyhow::Result<TernServer> {
        TernServer::start_with(binary, &[])
    }

    /// Starts a server with extra `tern server` flags.
    pub fn start_with(binary: &Path, flags: &[&str]) -> anyhow::Result<TernServer> {
        TernServer::launch(binary, flags, None)
    }

    /// Starts a server with extra flags and `config` as its TOML config file (for
    /// settings that have no flag, such as `[async]`).
    pub fn start_with_config(
        binary: &Path,
        flags: &[&str],
        config: &str,
    ) -> anyhow::Result<TernServer> {
        TernServer::launch(binary, flags, Some(config))
    }

    fn launch(binary: &Path, flags: &[&str], config: Option<&str>) -> anyhow::Result<TernServer> {
        let dir = tempfile::Builder::new().prefix("tern-bench-").tempdir()?;
        let data_dir = dir.path().join("data");
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut command = Command::new(binary);
        command
            .arg("server")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&data_dir);
        if let Some(text) = config {
            let file = dir.path().join("tern.toml");
            std::fs::write(&file, text)?;
            command.arg("--config").arg(file);
        }
        let mut child = command
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let mut server = TernServer {
            child,
            api: Api::new("http://0.0.0.0", "", ""),
            dir,
        };
        let line = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
            anyhow!(
                "tern server did not print its address within 30 s; its log:\n{}",
                server.log_tail()
            )
        })?;
        let endpoint = line
            .strip_prefix("tern server listening on ")
            .ok_or_else(|| anyhow!("unexpected first line from tern server: {line}"))?;
        let creds = std::fs::read_to_string(data_dir.join("credentials"))
            .context("reading the server's credentials file")?;
        let field = |k: &str| {
            creds
                .lines()
                .find_map(|l| {
                    let (a, b) = l.split_once('=')?;
                    (a.trim() == k).then(|| b.trim().to_string())
                })
                .ok_or_else(|| anyhow!("{k} missing in the credentials file"))
        };
        server.api = Api::new(
            endpoint,
            &field("aws_access_key_id")?,
            &field("aws_secret_access_key")?,
        );
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the server's stderr, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Lines of the server log with WARN or ERROR.
    pub fn warnings(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("server.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_string)
            .collect()
    }

    fn stop(&mut self, within: Duration) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for TernServer {
    fn drop(&mut self) {
        if !self.stop(Duration::from_secs(20)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
