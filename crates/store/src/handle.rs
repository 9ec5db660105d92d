//! The store as async code calls it. The [`Store`] trait is synchronous (both backends
//! block on I/O), so every call runs on the handle's own worker threads, never on the
//! runtime's: no call site wraps the store in `spawn_blocking`, and a slow database
//! cannot take the runtime's blocking pool from sandbox launches.

use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::{oneshot, Semaphore};

use crate::store::{Store, StoreError};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Calls waiting for a worker beyond this wait in their task, not in memory.
const MAX_QUEUED_CALLS: usize = 4096;

/// A cheap, cloneable handle to the store and its worker threads.
#[derive(Clone)]
pub struct StoreHandle {
    store: Arc<dyn Store>,
    jobs: Arc<Mutex<mpsc::Sender<Job>>>,
    slots: Arc<Semaphore>,
}

impl StoreHandle {
    /// Starts `workers` threads that run calls against `store`. They end when the last
    /// handle is dropped.
    pub fn new(store: Arc<dyn Store>, workers: usize) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("tern-store-{i}"))
                .spawn(move || loop {
                    let job = {
                        let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
                        rx.recv()
                    };
                    let Ok(job) = job else { return };
                    // A panicking call loses its answer (its caller sees `Closed`),
                    // not the worker.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                })?;
        }
        Ok(StoreHandle {
            store,
            jobs: Arc::new(Mutex::new(tx)),
            slots: Arc::new(Semaphore::new(MAX_QUEUED_CALLS)),
        })
    }

    /// Runs `f` on a store worker and waits for its answer. `f` may map store errors
    /// to the caller's own error type.
    pub async fn call<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&dyn Store) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| E::from(StoreError::Closed))?;
        let (tx, rx) = oneshot::channel();
        let store = self.store.clone();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = tx.send(f(store.as_ref()));
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| E::from(StoreError::Closed))?;
        rx.await.map_err(|_| E::from(StoreError::Closed))?
    }

    /// The store itself, for code that already runs off the runtime (start-up, tools).
    pub fn blocking(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqliteStore;

    #[tokio::test]
    async fn calls_run_off_the_runtime_and_survive_a_panicking_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db")).expect("open");
        let handle = StoreHandle::new(Arc::new(store), 2).expect("handle");
        handle
            .call::<_, StoreError, _>(|s| s.put_meta("k", "v"))
            .await
            .expect("put");
        let thread = handle
            .call::<_, StoreError, _>(|_| Ok(std::thread::current().name().map(str::to_string)))
            .await
            .expect("name");
        assert!(thread.is_some_and(|n| n.starts_with("tern-store-")));
        let lost = handle
            .call::<(), StoreError, _>(|_| panic!("a call that panics"))
            .await;
        assert!(matches!(lost, Err(StoreError::Closed)));
        for _ in 0..4 {
            let v = handle
                .call::<_, StoreError, _>(|s| s.get_meta("k"))
                .await
                .expect("get");
            assert_eq!(v.as_deref(), Some("v"));
        }
    }
}
