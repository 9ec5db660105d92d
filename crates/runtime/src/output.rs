//! Capture of an instance's stdout/stderr: every line is tagged with the request in
//! progress, handed to the log consumer, and kept (tail only) for `X-Amz-Log-Type: Tail`.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};

/// Longest line kept; longer lines are cut (Lambda splits at 256 KB).
const MAX_LINE: usize = 256 * 1024;
/// Output kept per invocation for the log tail.
const TAIL_KEEP: usize = 16 * 1024;
/// Longest wait in `finish` for output still in flight (a runtime flooding its output
/// must not hold the response).
const DRAIN_WAIT: Duration = Duration::from_millis(250);

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
    /// Set while the reader holds bytes it took from the pipe but has not filed yet.
    reading: bool,
    /// The reader saw end of file.
    closed: bool,
}

struct Shared {
    capture: Mutex<Capture>,
    /// Signalled whenever the reader finishes a batch.
    filed: Condvar,
}

pub struct OutputTap {
    shared: Arc<Shared>,
    fd: OwnedFd,
    /// Largest output stored per invocation (the rest is dropped with a marker).
    pub max_bytes_per_invocation: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `fd` has bytes to read right now.
fn readable(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) if n > 0 => fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN)),
        _ => false,
    }
}

/// Files one complete line: tail, byte cap, consumer.
fn file_line(
    c: &mut Capture,
    raw: &[u8],
    max_bytes: u64,
    current_id: &(dyn Fn() -> Option<String> + Send + Sync),
    out: &mut Vec<OutputLine>,
) {
    c.bytes += raw.len() as u64 + 1;
    let request_id = c.request_id.clone().or_else(current_id);
    if c.bytes > max_bytes {
        if !c.truncated {
            c.truncated = true;
            let marker = format!(
                "[tern] output of this invocation exceeded {max_bytes} bytes; the rest is dropped"
            );
            push_tail(&mut c.tail, &marker);
            out.push(OutputLine {
                request_id,
                line: marker,
            });
        }
        return;
    }
    let text = String::from_utf8_lossy(raw);
    let line = text.trim_end_matches('\r').to_string();
    push_tail(&mut c.tail, &line);
    out.push(OutputLine { request_id, line });
}

impl OutputTap {
    /// Starts the reader thread for `output`. `current_id` tells which request is running
    /// when no invocation has begun yet (init output).
    pub fn start(
        output: std::fs::File,
        current_id: Arc<dyn Fn() -> Option<String> + Send + Sync>,
        consumer: LogConsumer,
        max_bytes_per_invocation: u64,
    ) -> std::io::Result<Self> {
        let fd: OwnedFd = output.try_clone()?.into();
        let watch: OwnedFd = output.try_clone()?.into();
        let shared = Arc::new(Shared {
            capture: Mutex::new(Capture::default()),
            filed: Condvar::new(),
        });
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("tern-output".into())
            .spawn(move || {
                let mut output = output;
                let mut chunk = vec![0u8; 64 * 1024];
                let mut carry: Vec<u8> = Vec::new();
                loop {
                    // Wait for data without taking it, so `finish` can tell "nothing
                    // pending" (pipe empty, not reading) from "bytes in flight".
                    let mut fds = [PollFd::new(watch.as_fd(), PollFlags::POLLIN)];
                    match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                        Ok(_) => {}
                        Err(nix::errno::Errno::EINTR) => continue,
                        Err(_) => break,
                    }
                    lock(&sh.capture).reading = true;
                    let n = match output.read(&mut chunk) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                            lock(&sh.capture).reading = false;
                            continue;
                        }
                        Err(_) => 0,
                    };
                    let mut lines = Vec::new();
                    {
                        let mut c = lock(&sh.capture);
                        if n == 0 {
                            if !carry.is_empty() {
                                let rest = std::mem::take(&mut carry);
                                file_line(
                                    &mut c,
                                    &rest,
                                    max_bytes_per_invocation,
                                    &*current_id,
                                    &mut lines,
                                );
                            }
                            c.reading = false;
                            c.closed = true;
                        } else {
                            carry.extend_from_slice(&chunk[..n]);
                            let mut start = 0;
                            while let Some(pos) = carry[start..].iter().position(|b| *b == b'\n') {
                                let end = start + pos;
                                let cut = end.min(start + MAX_LINE);
                                file_line(
                                    &mut c,
                                    &carry[start..cut],
                                    max_bytes_per_invocation,
                                    &*current_id,
                                    &mut lines,
                                );
                                start = end + 1;
                            }
                            carry.drain(..start);
                            if carry.len() >= MAX_LINE {
                                let long = std::mem::take(&mut carry);
                                file_line(
                                    &mut c,
                                    &long[..MAX_LINE],
                                    max_bytes_per_invocation,
                                    &*current_id,
                                    &mut lines,
                                );
                            }
                            c.reading = false;
                        }
                    }
                    sh.filed.notify_all();
                    for line in lines {
                        consumer(line);
                    }
                    if n == 0 {
                        return;
                    }
                }
                let mut c = lock(&sh.capture);
                c.reading = false;
                c.closed = true;
                drop(c);
                sh.filed.notify_all();
            })?;
        Ok(OutputTap {
            shared,
            fd,
            max_bytes_per_invocation,
        })
    }

    /// Starts the capture of invocation `request_id`.
    pub fn begin(&self, request_id: &str) {
        *lock(&self.shared.capture) = Capture {
            request_id: Some(request_id.to_string()),
            ..Capture::default()
        };
    }

    /// Waits (bounded) until every byte the runtime has written so far is filed, then
    /// returns this invocation's captured tail.
    pub fn finish(&self) -> String {
        let deadline = Instant::now() + DRAIN_WAIT;
        let mut c = lock(&self.shared.capture);
        loop {
            if c.closed || (!c.reading && !readable(&self.fd)) {
                break;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            c = self
                .shared
                .filed
                .wait_timeout(c, left.min(Duration::from_millis(5)))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        std::mem::take(&mut c.tail)
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
