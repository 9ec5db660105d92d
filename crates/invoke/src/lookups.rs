//! Answers by id from memory for a short while, with the store reads behind them
//! bounded: for ids that come from unauthenticated requests (function URL ids, access
//! key ids), where every id not in memory would otherwise be a store read, and a flood
//! of made-up ids would fill the store's queue ahead of everyone else's calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ServiceError;

/// How long an answer (found or not) is kept before the store is asked again.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// Ids kept in memory at most (found or not); past it misses go first, then all.
const CACHE_MAX: usize = 10_000;
/// Store reads in flight at most, per [`Lookups`]; the others wait their turn.
const LOOKUPS_MAX: usize = 4;

/// What the store said of each id lately (`None`: nothing), and when; reads of
/// ids not in memory at most [`LOOKUPS_MAX`] at once, the others waiting their turn.
pub struct Lookups<T> {
    entries: Mutex<HashMap<String, (Instant, Option<T>)>>,
    reads: tokio::sync::Semaphore,
}

impl<T: Clone> Default for Lookups<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> Lookups<T> {
    pub fn new() -> Self {
        Lookups {
            entries: Mutex::new(HashMap::new()),
            reads: tokio::sync::Semaphore::new(LOOKUPS_MAX),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Option<T>)>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was read of `id` within [`CACHE_TTL`], if anything.
    fn fresh(&self, id: &str) -> Option<Option<T>> {
        self.entries()
            .get(id)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, found)| found.clone())
    }

    /// `id` from memory, or read by `read` (one of at most [`LOOKUPS_MAX`]) and kept.
    pub async fn get<F, Fut>(&self, id: &str, read: F) -> Result<Option<T>, ServiceError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, ServiceError>>,
    {
        if let Some(found) = self.fresh(id) {
            return Ok(found);
        }
        let _turn = self
            .reads
            .acquire()
            .await
            .map_err(|_| ServiceError::Service("lookups closed".into()))?;
        // Another request for the same id may have read it while this one waited.
        if let Some(found) = self.fresh(id) {
            return Ok(found);
        }
        let found = read(id.to_string()).await?;
        let mut entries = self.entries();
        if entries.len() >= CACHE_MAX {
            // Misses go first, so a flood of made-up ids does not evict real URLs.
            entries.retain(|_, (_, found)| found.is_some());
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(id.to_string(), (Instant::now(), found.clone()));
        Ok(found)
    }

    pub fn forget(&self, id: &str) {
        self.entries().remove(id);
    }

    pub fn forget_where(&self, mut drop: impl FnMut(&T) -> bool) {
        self.entries()
            .retain(|_, (_, found)| !found.as_ref().is_some_and(&mut drop));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn an_id_not_found_is_read_once_within_the_ttl() {
        let lookups: Lookups<u32> = Lookups::new();
        let reads = AtomicUsize::new(0);
        for _ in 0..3 {
            let found = lookups
                .get("nope", |_| async {
                    reads.fetch_add(1, Ordering::SeqCst);
                    Ok(None)
                })
                .await
                .expect("read");
            assert_eq!(found, None);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "the miss is kept too");
        lookups.forget("nope");
        let _ = lookups.get("nope", |_| async { Ok(Some(7)) }).await;
        assert_eq!(lookups.fresh("nope"), Some(Some(7)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_flood_of_unknown_ids_holds_a_bounded_number_of_store_reads() {
        let lookups: Arc<Lookups<u32>> = Arc::new(Lookups::new());
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..64 {
            let (lookups, in_flight, most) = (lookups.clone(), in_flight.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                lookups
                    .get(&format!("id{i}"), |_| async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok(None)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.expect("task").expect("read"), None);
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=LOOKUPS_MAX).contains(&most),
            "{most} reads at once, at most {LOOKUPS_MAX}"
        );
    }
}
