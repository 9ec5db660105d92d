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
//! writes to every warm request. A background child gets at most that much CPU after
//! each invocation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_sandbox::InstanceProcess;

/// How long an instance is idle, waiting in `next`, before it is frozen.
pub const FREEZE_DELAY: Duration = Duration::from_millis(100);

/// Freezes and thaws one instance.
pub struct Freezer {
    process: Arc<dyn InstanceProcess>,
    state: Mutex<State>,
    delay: Duration,
}

#[derive(Default)]
struct State {
    /// The launcher cannot freeze.
    disabled: bool,
    idle: bool,
    /// `next` calls in progress.
    waiting: u32,
    frozen: bool,
    /// Bumped whenever the instance stops being freezable: a delayed freeze scheduled
    /// before then does nothing.
    epoch: u64,
    /// A delayed freeze of this epoch is scheduled.
    scheduled: bool,
}

/// Held while the runtime waits in `next`.
pub struct Waiting(Arc<Freezer>);

impl Drop for Waiting {
    fn drop(&mut self) {
        let freezer = self.0.clone();
        freezer.update(|s| s.waiting = s.waiting.saturating_sub(1));
    }
}

impl Freezer {
    /// A freezer that freezes `delay` after the instance became freezable (zero: at
    /// once; otherwise the calls that can start a freeze need a tokio runtime).
    pub fn new(process: Arc<dyn InstanceProcess>, delay: Duration) -> Arc<Freezer> {
        Arc::new(Freezer {
            process,
            state: Mutex::new(State::default()),
            delay,
        })
    }

    /// The pool took the instance back (and freezes idle instances).
    pub fn idle(self: &Arc<Self>) {
        self.update(|s| s.idle = true);
    }

    /// The pool hands the instance out: it runs again before this returns.
    pub fn busy(self: &Arc<Self>) {
        self.update(|s| s.idle = false);
    }

    /// The runtime waits in `next` until the returned guard drops.
    pub fn waiting(self: &Arc<Self>) -> Waiting {
        self.update(|s| s.waiting += 1);
        Waiting(self.clone())
    }

    pub fn is_frozen(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).frozen
    }

    /// Applies `change`, then freezes (after the delay) or thaws to match, under the
    /// lock, so that a hand-out never races a freeze.
    fn update(self: &Arc<Self>, change: impl FnOnce(&mut State)) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut s);
        let want = !s.disabled && s.idle && s.waiting > 0;
        if !want {
            s.epoch += 1;
            s.scheduled = false;
        }
        if want && !s.frozen && !self.delay.is_zero() {
            if !s.scheduled {
                s.scheduled = true;
                let (freezer, epoch) = (self.clone(), s.epoch);
                tokio::spawn(async move {
                    tokio::time::sleep(freezer.delay).await;
                    freezer.freeze_if_still(epoch);
                });
            }
            return;
        }
        self.apply(&mut s, want);
    }

    /// The delayed freeze: only if nothing changed since it was scheduled.
    fn freeze_if_still(&self, epoch: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.epoch == epoch && s.scheduled {
            s.scheduled = false;
            self.apply(&mut s, true);
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
        let f = Freezer::new(fake.clone(), Duration::ZERO);
        f.idle();
        assert!(
            !fake.frozen.load(Ordering::SeqCst),
            "not waiting in next yet"
        );
        let waiting = f.waiting();
        assert!(fake.frozen.load(Ordering::SeqCst));
        assert!(f.is_frozen());
        f.busy();
        assert!(
            !fake.frozen.load(Ordering::SeqCst),
            "thawed before the hand-out"
        );
        drop(waiting);
        f.idle();
        assert!(
            !fake.frozen.load(Ordering::SeqCst),
            "left next: not waiting"
        );
        let _again = f.waiting();
        assert!(fake.frozen.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn the_freeze_waits_its_delay_and_a_hand_out_within_it_cancels_it() {
        let fake = Arc::new(Fake::default());
        let f = Freezer::new(fake.clone(), FREEZE_DELAY);
        f.idle();
        let _w = f.waiting();
        tokio::time::sleep(FREEZE_DELAY / 2).await;
        f.busy();
        f.idle();
        tokio::time::sleep(FREEZE_DELAY / 2 + Duration::from_millis(1)).await;
        assert!(
            !f.is_frozen(),
            "a hand-out within the delay cancels that freeze"
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
        tokio::time::sleep(FREEZE_DELAY).await;
        assert!(f.is_frozen(), "idle for the whole delay: frozen");
        f.busy();
        assert!(!fake.frozen.load(Ordering::SeqCst));
    }

    #[test]
    fn unsupported_never_freezes_and_stops_trying() {
        let fake = Arc::new(Fake {
            unsupported: true,
            ..Fake::default()
        });
        let f = Freezer::new(fake.clone(), Duration::ZERO);
        f.idle();
        let w = f.waiting();
        drop(w);
        let _w = f.waiting();
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1, "tried once");
        assert!(!f.is_frozen());
    }
}
