//! Function logs: lines are queued without blocking and written in batches by a
//! background task, so a chatty function never waits on the database.

use std::sync::Arc;

use tern_store::{LogLine, StoreError, StoreHandle};
use tokio::sync::mpsc;

/// Lines queued beyond this are dropped (and counted) rather than growing memory.
const QUEUE_CAPACITY: usize = 65_536;
const BATCH: usize = 512;

#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<LogLine>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl LogSink {
    /// Starts the writer task on the current runtime; it also prunes lines older than
    /// `retention_ms` every few minutes.
    pub fn start(store: StoreHandle, retention_ms: i64) -> Self {
        let (tx, mut rx) = mpsc::channel::<LogLine>(QUEUE_CAPACITY);
        tokio::spawn(async move {
            let mut last_prune = std::time::Instant::now();
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let lines = std::mem::take(&mut batch);
                let prune = last_prune.elapsed().as_secs() > 300;
                if prune {
                    last_prune = std::time::Instant::now();
                }
                let res = store
                    .call::<_, StoreError, _>(move |store| {
                        store.append_logs(&lines)?;
                        if prune {
                            let now = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .map(|d| d.as_millis() as i64)
                                .unwrap_or(0);
                            store.prune_logs(now - retention_ms)?;
                        }
                        Ok(())
                    })
                    .await;
                if let Err(e) = res {
                    tracing::warn!(error = %e, "could not write function logs");
                }
            }
        });
        LogSink {
            tx,
            dropped: Arc::default(),
        }
    }

    /// Queues a line; drops it if the writer is far behind.
    pub fn push(&self, line: LogLine) {
        if self.tx.try_send(line).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until queued lines are written (used in shutdown and by `tern logs`).
    pub async fn flush(&self) {
        for _ in 0..200 {
            if self.tx.capacity() == self.tx.max_capacity() {
                // Give the writer a moment to commit its current batch.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
