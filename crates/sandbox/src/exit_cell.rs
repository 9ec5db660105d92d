//! A once-set exit status that many threads can wait for, with exactly one of them doing
//! the blocking wait on the real source.

use std::sync::{Condvar, Mutex};

use crate::launcher::ExitStatus;

#[derive(Default)]
enum State {
    #[default]
    Running,
    /// One caller is blocked on the real source; the others wait on the condvar.
    Waiting,
    Exited(ExitStatus),
}

#[derive(Default)]
pub(crate) struct ExitCell {
    state: Mutex<State>,
    changed: Condvar,
}

impl ExitCell {
    /// Returns the cached status, or runs `blocking_wait` (in one caller only) to get it.
    pub(crate) fn wait_with(&self, blocking_wait: impl FnOnce() -> ExitStatus) -> ExitStatus {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match *state {
                State::Exited(status) => return status,
                State::Waiting => {
                    state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                State::Running => break,
            }
        }
        *state = State::Waiting;
        drop(state);
        let status = blocking_wait();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = State::Exited(status);
        self.changed.notify_all();
        status
    }

    /// The status, if some caller already learned it.
    pub(crate) fn get(&self) -> Option<ExitStatus> {
        match *self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Exited(status) => Some(status),
            _ => None,
        }
    }
}
