//! Capture of an instance's stdout/stderr: every line is tagged with the request in
//! progress, handed to the log consumer, and kept (tail only) for `X-Amz-Log-Type: Tail`.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest line kept; longer lines are cut (Lambda splits at 256 KB).
const MAX_LINE: usize = 256 * 1024;
/// Output kept per invocation for the log tail.
const TAIL_KEEP: usize = 16 * 1024;

/// One captured output line.
#[derive(Debug, Clone)]
pub struct OutputLine {
    pub request_id: Option<String>,
    pub line: String,
}

/// Receives every captured line (for the log store). Must not block.
pub type LogConsumer = Arc<dyn Fn(OutputLine) + Send + Sync>;

/// Per-invocation output state, shared with the reader thread.
#[derive(Default)]
pub struct Capture {
    /// The invocation output is attributed to: the current one, or after it finished,
    /// the last one (late lines belong to it until the next begins).
    request_id: Option<String>,
    tail: String,
    bytes: u64,
    truncated: bool,
}

pub struct OutputTap {
    capture: Arc<Mutex<Capture>>,
    fd: OwnedFd,
    /// Largest output stored per invocation (the rest is dropped with a marker).
    pub max_bytes_per_invocation: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OutputTap {
    /// Starts the reader thread for `output`. `current_id` tells which request is running.
    pub fn start(
        output: std::fs::File,
        current_id: Arc<dyn Fn() -> Option<String> + Send + Sync>,
        consumer: LogConsumer,
        max_bytes_per_invocation: u64,
    ) -> std::io::Result<Self> {
        let fd: OwnedFd = output.try_clone()?.into();
        let capture = Arc::new(Mutex::new(Capture::default()));
        let cap = capture.clone();
        std::thread::Builder::new()
            .name("tern-output".into())
            .spawn(move || {
                let mut reader = BufReader::with_capacity(64 * 1024, output);
                let mut buf = Vec::with_capacity(1024);
                loop {
                    buf.clear();
                    match (&mut reader).take(MAX_LINE as u64).read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    let text = String::from_utf8_lossy(&buf);
                    let line = text.trim_end_matches(['\n', '\r']).to_string();
                    let mut c = lock(&cap);
                    c.bytes += buf.len() as u64;
                    if c.bytes > max_bytes_per_invocation {
                        if !c.truncated {
                            c.truncated = true;
                            let marker = format!(
                                "[tern] output of this invocation exceeded {max_bytes_per_invocation} bytes; the rest is dropped"
                            );
                            push_tail(&mut c.tail, &marker);
                            let request_id = c.request_id.clone().or_else(|| current_id());
                            drop(c);
                            consumer(OutputLine { request_id, line: marker });
                        }
                        continue;
                    }
                    push_tail(&mut c.tail, &line);
                    let request_id = c.request_id.clone().or_else(|| current_id());
                    drop(c);
                    consumer(OutputLine { request_id, line });
                }
            })?;
        Ok(OutputTap {
            capture,
            fd,
            max_bytes_per_invocation,
        })
    }

    /// Starts the capture of invocation `request_id`.
    pub fn begin(&self, request_id: &str) {
        *lock(&self.capture) = Capture {
            request_id: Some(request_id.to_string()),
            ..Capture::default()
        };
    }

    /// Waits (bounded) until output already written by the runtime has been read, then
    /// returns this invocation's captured tail.
    pub fn finish(&self) -> String {
        for _ in 0..50 {
            let mut fds = [nix::poll::PollFd::new(
                self.fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
                Ok(n) if n > 0 => {
                    let ready = fds[0]
                        .revents()
                        .is_some_and(|r| r.contains(nix::poll::PollFlags::POLLIN));
                    if !ready {
                        break;
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
                _ => break,
            }
        }
        std::mem::take(&mut lock(&self.capture).tail)
    }
}

fn push_tail(tail: &mut String, line: &str) {
    tail.push_str(line);
    tail.push('\n');
    if tail.len() > TAIL_KEEP * 2 {
        let mut cut = tail.len() - TAIL_KEEP;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail.drain(..cut);
    }
}

/// The last `max` bytes of `s`, cut at a character boundary.
pub fn tail_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = s.len() - max;
    while !s.is_char_boundary(cut) {
        cut += 1;
    }
    &s[cut..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_cuts_at_char_boundary() {
        let s = "héllo";
        assert_eq!(tail_bytes(s, 4), "llo");
        assert_eq!(tail_bytes(s, 100), s);
    }
}
