//! Idle instances are frozen, as Lambda freezes an idle execution environment: a
//! function's background threads and children get no CPU between its invocations.
//!
//! An instance is frozen once both hold: the pool has it back (idle), and its runtime is
//! waiting in `next`. Waiting for `next` matters: a runtime frozen half-way through
//! sending a request, or between requests on an idle keep-alive connection, would find
//! its connection closed by the Runtime API's header timeout when it thaws. A runtime
//! that never comes back to `next` is therefore not frozen; it keeps its CPU share until
//! its keep-alive ends, as before. The pool thaws an instance before it hands it out.
//!
//! The freeze waits [`FREEZE_DELAY`] first: an instance handed out again within it (a
//! function under steady load) is never frozen and thawed, which would add two cgroup
//! writes to every warm request. The pool sweeps its idle instances every
//! [`SWEEP_PERIOD`] and freezes those freezable for the delay, so the warm path only
//! notes a time. A background child gets at most delay + period of CPU after each
//! invocation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_sandbox::InstanceProcess;

/// How long an instance is idle, waiting in `next`, before it is frozen.
pub const FREEZE_DELAY: Duration = Duration::from_millis(100);
/// How often the pool looks for idle instances to freeze.
pub const SWEEP_PERIOD: Duration = Duration::from_millis(50);

/// Freezes and thaws one instance.
pub struct Freezer {
    process: Arc<dyn InstanceProcess>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The launcher cannot freeze.
    disabled: bool,
    idle: bool,
    /// `next` calls in progress.
    waiting: u32,
    frozen: bool,
    /// Since when the instance has been idle and waiting in `next`.
    freezable_since: Option<Instant>,
}

/// Held while the runtime waits in `next`.
pub struct Waiting(Arc<Freezer>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.update(|s| s.waiting = s.waiting.saturating_sub(1));
    }
}

impl Freezer {
    pub fn new(process: Arc<dyn InstanceProcess>) -> Arc<Freezer> {
        Arc::new(Freezer {
            process,
            state: Mutex::new(State::default()),
        })
    }

    /// The pool took the instance back (and freezes idle instances).
    pub fn idle(&self) {
        self.update(|s| s.idle = true);
    }

    /// The pool hands the instance out: it runs again before this returns.
    pub fn busy(&self) {
        self.update(|s| s.idle = false);
    }

    /// The runtime waits in `next` until the returned guard drops.
    pub fn waiting(self: &Arc<Self>) -> Waiting {
        self.update(|s| s.waiting += 1);
        Waiting(self.clone())
    }

    pub fn is_frozen(&self) -> bool {
        self.lock().frozen
    }

    /// Freezes the instance if it has been freezable for at least `delay` (the sweep).
    pub fn freeze_if_idle_for(&self, delay: Duration) {
        let mut s = self.lock();
        if s.freezable_since.is_some_and(|t| t.elapsed() >= delay) && !s.frozen {
            self.apply(&mut s, true);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change`; notes since when the instance is freezable, and thaws it at
    /// once when it stops being so, under the lock, so that a hand-out never races a
    /// freeze.
    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut s = self.lock();
        change(&mut s);
        let freezable = !s.disabled && s.idle && s.waiting > 0;
        if !freezable {
            s.freezable_since = None;
            if s.frozen {
                self.apply(&mut s, false);
            }
        } else if s.freezable_since.is_none() {
            s.freezable_since = Some(Instant::now());
        }
    }

    fn apply(&self, s: &mut State, want: bool) {
        if want == s.frozen {
            return;
        }
        match self.process.set_frozen(want) {
            Ok(()) => s.frozen = want,
            Err(e) if want => {
                tracing::debug!(error = %e, "cannot freeze idle instances; leaving them running");
                s.disabled = true;
                s.freezable_since = None;
            }
            // Thawing failed: the cgroup is gone, and with it the instance.
            Err(e) => {
                tracing::debug!(error = %e, "cannot thaw instance");
                s.frozen = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tern_sandbox::ExitStatus;

    #[derive(Default)]
    struct Fake {
        frozen: AtomicBool,
        calls: AtomicUsize,
        unsupported: bool,
    }

    impl InstanceProcess for Fake {
        fn pid(&self) -> u32 {
            1
        }
        fn wait(&self) -> ExitStatus {
            ExitStatus::Unknown
        }
        fn kill(&self) {}
        fn oom_killed(&self) -> bool {
            false
        }
        fn memory_peak_bytes(&self) -> Option<u64> {
            None
        }
        fn cleanup(&self) {}
        fn set_frozen(&self, frozen: bool) -> Result<(), String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.unsupported {
                return Err("no freezer".into());
            }
            self.frozen.store(frozen, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn frozen_only_while_idle_and_waiting_in_next() {
        let fake = Arc::new(Fake::default());
        let f = Freezer::new(fake.clone());
        let sweep = || f.freeze_if_idle_for(Duration::ZERO);
        f.idle();
        sweep();
        assert!(
            !fake.frozen.load(Ordering::SeqCst),
            "not waiting in next yet"
        );
        let waiting = f.waiting();
        sweep();
        assert!(fake.frozen.load(Ordering::SeqCst));
        assert!(f.is_frozen());
        f.busy();
        assert!(
            !fake.frozen.load(Ordering::SeqCst),
            "thawed before the hand-out"
        );
        drop(waiting);
        f.idle();
        sweep();
        assert!(
            !fake.frozen.load(Ordering::SeqCst),
            "left next: not waiting"
        );
        let _again = f.waiting();
        sweep();
        assert!(fake.frozen.load(Ordering::SeqCst));
    }

    #[test]
    fn the_sweep_freezes_only_what_was_freezable_for_the_delay() {
        let fake = Arc::new(Fake::default());
        let f = Freezer::new(fake.clone());
        f.idle();
        let _w = f.waiting();
        f.freeze_if_idle_for(Duration::from_secs(60));
        assert!(!f.is_frozen(), "freezable for less than the delay");
        f.busy();
        f.idle();
        f.freeze_if_idle_for(Duration::ZERO);
        assert!(f.is_frozen(), "freezable: frozen by the sweep");
        f.busy();
        assert!(!fake.frozen.load(Ordering::SeqCst), "thawed at hand-out");
        f.freeze_if_idle_for(Duration::ZERO);
        assert!(!f.is_frozen(), "handed out: the sweep leaves it alone");
    }

    #[test]
    fn unsupported_never_freezes_and_stops_trying() {
        let fake = Arc::new(Fake {
            unsupported: true,
            ..Fake::default()
        });
        let f = Freezer::new(fake.clone());
        f.idle();
        let w = f.waiting();
        f.freeze_if_idle_for(Duration::ZERO);
        drop(w);
        let _w = f.waiting();
        f.freeze_if_idle_for(Duration::ZERO);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "tried once");
        assert!(!f.is_frozen());
    }
}
