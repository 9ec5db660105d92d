//! Enqueue: an event is answered 202 only once it is committed. Concurrent enqueues
//! share one transaction (group commit): a writer task takes every event waiting,
//! stores them in one durable commit, and answers each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tern_store::{Enqueued, NewEvent, QueueDepth, StoreError, StoreHandle};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::error::ServiceError;
use crate::now_ms;
use crate::throttle::Throttle;

/// Events stored in one commit at most.
const GROUP: usize = 1024;
/// Enqueues waiting for the writer at most; more wait in their request.
const WAITING: usize = 16 * GROUP;
/// How long an idempotency key holds.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3_600_000;

type Reply = oneshot::Sender<Result<Enqueued, Arc<StoreError>>>;

/// A commit that failed, as each event of its group sees it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct GroupFailed(Arc<StoreError>);

pub struct EventQueue {
    tx: mpsc::Sender<(NewEvent, Reply)>,
    /// Pending events per namespace: counted here as they come and go, and set from
    /// the store every few seconds (other servers on the database change it too).
    depth: Mutex<HashMap<String, QueueDepth>>,
    bound: u64,
    /// Wakes this server's dispatcher when an event is stored.
    stored: Arc<Notify>,
}

impl EventQueue {
    /// Starts the writer task on the current runtime. `bound`: pending events per
    /// namespace at most.
    pub fn start(store: StoreHandle, bound: u64) -> Arc<Self> {
        let (tx, mut rx) = mpsc::channel::<(NewEvent, Reply)>(WAITING);
        let stored = Arc::new(Notify::new());
        let wake = stored.clone();
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(GROUP);
            while rx.recv_many(&mut group, GROUP).await > 0 {
                let (events, replies): (Vec<NewEvent>, Vec<Reply>) = group.drain(..).unzip();
                let since = now_ms() - IDEMPOTENCY_WINDOW_MS;
                let result = store.call(move |s| s.enqueue_events(&events, since)).await;
                match result {
                    Ok(outcomes) => {
                        wake.notify_one();
                        for (reply, outcome) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(outcome));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not store async events");
                        let e = Arc::new(e);
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Arc::new(EventQueue {
            tx,
            depth: Mutex::new(HashMap::new()),
            bound,
            stored,
        })
    }

    fn depths(&self) -> std::sync::MutexGuard<'_, HashMap<String, QueueDepth>> {
        self.depth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores an event durably; answers the request id it runs under (the first one's
    /// for a repeated idempotency key).
    pub async fn enqueue(&self, event: NewEvent) -> Result<String, ServiceError> {
        {
            let depths = self.depths();
            let pending = depths.get(&event.namespace).map_or(0, |d| d.pending);
            if pending >= self.bound {
                return Err(ServiceError::Throttled(Throttle::EventQueueFull {
                    namespace: event.namespace.clone(),
                    bound: self.bound,
                }));
            }
        }
        let (namespace, request_id, enqueued_ms) = (
            event.namespace.clone(),
            event.request_id.clone(),
            event.enqueued_ms,
        );
        let (reply, answer) = oneshot::channel();
        let closed = || ServiceError::Store(StoreError::Closed);
        self.tx.send((event, reply)).await.map_err(|_| closed())?;
        match answer.await.map_err(|_| closed())? {
            Ok(Enqueued::New) => {
                let mut depths = self.depths();
                let d = depths.entry(namespace.clone()).or_insert(QueueDepth {
                    namespace,
                    pending: 0,
                    oldest_enqueued_ms: None,
                });
                d.pending += 1;
                d.oldest_enqueued_ms.get_or_insert(enqueued_ms);
                Ok(request_id)
            }
            Ok(Enqueued::Duplicate { request_id }) => Ok(request_id),
            Err(e) => Err(ServiceError::Store(StoreError::Database(Box::new(
                GroupFailed(e),
            )))),
        }
    }

    /// Whether `namespace` has as many pending events as it may.
    pub fn is_full(&self, namespace: &str) -> bool {
        self.depths()
            .get(namespace)
            .is_some_and(|d| d.pending >= self.bound)
    }

    /// Counts an event of `namespace` stored by another way in (a schedule's slot).
    pub fn counted(&self, namespace: &str, enqueued_ms: i64) {
        let mut depths = self.depths();
        let d = depths.entry(namespace.to_string()).or_insert(QueueDepth {
            namespace: namespace.to_string(),
            pending: 0,
            oldest_enqueued_ms: None,
        });
        d.pending += 1;
        d.oldest_enqueued_ms.get_or_insert(enqueued_ms);
    }

    /// An event of `namespace` left the pending states.
    pub fn finished(&self, namespace: &str) {
        if let Some(d) = self.depths().get_mut(namespace) {
            d.pending = d.pending.saturating_sub(1);
        }
    }

    /// Replaces the counts with the store's (all servers' events).
    pub fn set_depths(&self, depths: Vec<QueueDepth>) {
        let mut known = self.depths();
        // A namespace whose queue emptied stays, at 0, so its series reads 0.
        for d in known.values_mut() {
            d.pending = 0;
            d.oldest_enqueued_ms = None;
        }
        for d in depths {
            known.insert(d.namespace.clone(), d);
        }
    }

    /// Pending events and the oldest one's enqueue time, per namespace.
    pub fn depth_snapshot(&self) -> Vec<QueueDepth> {
        let mut v: Vec<_> = self.depths().values().cloned().collect();
        v.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        v
    }

    /// Resolves when an event was stored since the last call (or at once if one was).
    pub async fn stored(&self) {
        self.stored.notified().await;
    }

    /// Wakes the dispatcher (a redrive made events due).
    pub fn wake(&self) {
        self.stored.notify_one();
    }

    pub fn bound(&self) -> u64 {
        self.bound
    }
}
