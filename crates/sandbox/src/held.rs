//! Held sandboxes: instances built ahead of time (namespaces, cgroups, root filesystem,
//! /tmp, Runtime API listener) whose init waits for a runtime. A launch that finds one
//! with the right shape mounts its code, sets its limits and starts (or has a zygote
//! fork) the runtime in it, skipping the sandbox build (a keeper exec, and the first
//! cgroup migration after a quiet spell, which waits for an RCU grace period).
//!
//! A held sandbox is function-agnostic: it holds no code, no environment and no runtime
//! until a launch takes it, and a launch takes it exactly once. Its instance id is chosen
//! when it is built (`h<n>-<random>`): the runtime crate claims one before it builds a
//! launch spec, so the id in the function's environment (its log stream name) is the
//! one that names the sandbox's cgroups.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use crate::launcher::LaunchSpec;
use crate::sandbox::Built;

/// Held sandboxes kept per key by default.
pub const DEFAULT_POOL_DEPTH: usize = 2;
/// Keys (shapes) kept at once by default; the least recently wanted one goes first.
const MAX_KEYS: usize = 4;
/// How long a claimed sandbox waits for its launch.
const CLAIM_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// What a held sandbox must match to serve a launch: everything the sandbox build
/// depends on that cannot change afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HeldKey {
    pub tmp_mb: u32,
    /// An rlimit the init sets for everything below it.
    pub max_open_files: u32,
    pub bootstrap_dir: PathBuf,
    pub runtime_dir: Option<PathBuf>,
    pub extra_ro_paths: Vec<PathBuf>,
}

impl HeldKey {
    pub(crate) fn of(spec: &LaunchSpec) -> HeldKey {
        HeldKey {
            tmp_mb: spec.resources.tmp_mb,
            max_open_files: spec.resources.max_open_files,
            bootstrap_dir: spec.bootstrap_dir.clone(),
            runtime_dir: spec.runtime_dir.clone(),
            extra_ro_paths: spec.extra_ro_paths.clone(),
        }
    }
}

/// Stops items the pool no longer wants on a thread of their own: callers may be on an
/// async runtime's thread, and stopping an instance waits for its processes.
pub(crate) fn discard<T: Send + 'static>(items: Vec<T>) {
    if items.is_empty() {
        return;
    }
    if let Err(e) = std::thread::Builder::new()
        .name("tern-discard".into())
        .spawn(move || drop(items))
    {
        tracing::warn!(error = %e, "could not start a thread to stop unused sandboxes");
    }
}

/// Something a pool keeps: it is named by its instance id.
pub(crate) trait Pooled {
    fn id(&self) -> &str;
}

impl Pooled for Built {
    fn id(&self) -> &str {
        self.instance.id()
    }
}

struct State<K, T> {
    ready: HashMap<K, Vec<T>>,
    /// Claimed for a launch, by instance id.
    claimed: HashMap<String, (T, Instant)>,
    /// Keys with a refill under way.
    filling: HashSet<K>,
    /// When each key was last wanted.
    wanted: HashMap<K, Instant>,
    closed: bool,
}

/// Items (held sandboxes, or runtimes already forked into them) kept per key, up to a
/// depth, for the most recently wanted keys ([`MAX_KEYS`] unless told otherwise).
pub(crate) struct Pool<K, T> {
    depth: usize,
    max_keys: usize,
    state: Mutex<State<K, T>>,
}

/// Held sandboxes, per shape.
pub(crate) type HeldPool = Pool<HeldKey, Built>;

impl<K: Clone + Eq + Hash, T: Pooled + Send + 'static> Pool<K, T> {
    pub(crate) fn new(depth: usize) -> Self {
        Self::with_max_keys(depth, MAX_KEYS)
    }

    /// Keeps items for up to `max_keys` keys at once.
    pub(crate) fn with_max_keys(depth: usize, max_keys: usize) -> Self {
        Pool {
            depth,
            max_keys,
            state: Mutex::new(State {
                ready: HashMap::new(),
                claimed: HashMap::new(),
                filling: HashSet::new(),
                wanted: HashMap::new(),
                closed: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K, T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one of any key, if one is ready (to make room).
    pub(crate) fn pop_any(&self) -> Option<T> {
        self.lock().ready.values_mut().find_map(Vec::pop)
    }

    /// Takes one of this key, if one is ready (not claimed: for internal use).
    pub(crate) fn take(&self, key: &K) -> Option<T> {
        self.lock().ready.get_mut(key).and_then(Vec::pop)
    }

    /// Reserves one of this key, if one is ready; returns its id.
    pub(crate) fn claim(&self, key: &K) -> Option<String> {
        let expired: Vec<T>;
        let id = {
            let mut st = self.lock();
            let now = Instant::now();
            let stale: Vec<String> = st
                .claimed
                .iter()
                .filter(|(_, (_, at))| now.duration_since(*at) > CLAIM_TTL)
                .map(|(id, _)| id.clone())
                .collect();
            expired = stale
                .iter()
                .filter_map(|id| st.claimed.remove(id).map(|(b, _)| b))
                .collect();
            let item = st.ready.get_mut(key).and_then(Vec::pop)?;
            let id = item.id().to_string();
            st.claimed.insert(id.clone(), (item, now));
            Some(id)
        };
        discard(expired);
        id
    }

    /// Whether an item is claimed under `id`.
    pub(crate) fn has_claim(&self, id: &str) -> bool {
        self.lock().claimed.contains_key(id)
    }

    /// The item claimed under `id`, if any.
    pub(crate) fn take_claimed(&self, id: &str) -> Option<T> {
        self.lock().claimed.remove(id).map(|(b, _)| b)
    }

    /// Marks `key` as wanted; returns whether the caller should refill it now (it is not
    /// being refilled and is short). Forgets the least recently wanted key beyond
    /// the pool's key limit, stopping its sandboxes.
    pub(crate) fn want(&self, key: &K) -> bool {
        let dropped;
        let refill = {
            let mut st = self.lock();
            if self.depth == 0 || st.closed {
                return false;
            }
            st.wanted.insert(key.clone(), Instant::now());
            dropped = if st.wanted.len() > self.max_keys {
                let oldest = st
                    .wanted
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone());
                oldest.and_then(|k| {
                    st.wanted.remove(&k);
                    st.ready.remove(&k)
                })
            } else {
                None
            };
            let short = st.ready.get(key).map_or(0, Vec::len) < self.depth;
            short && st.filling.insert(key.clone())
        };
        discard(dropped.unwrap_or_default());
        refill
    }

    /// Whether a refill of `key` should build one more.
    pub(crate) fn short(&self, key: &K) -> bool {
        let st = self.lock();
        !st.closed
            && st.wanted.contains_key(key)
            && st.ready.get(key).map_or(0, Vec::len) < self.depth
    }

    /// Adds a fresh item; gives it back if the pool no longer wants it.
    pub(crate) fn put(&self, key: &K, item: T) -> Option<T> {
        let mut st = self.lock();
        if st.closed || !st.wanted.contains_key(key) {
            return Some(item);
        }
        st.ready.entry(key.clone()).or_default().push(item);
        None
    }

    /// The refill of `key` is over.
    pub(crate) fn done(&self, key: &K) {
        self.lock().filling.remove(key);
    }

    /// Stops wanting `key` and stops its ready items (claimed ones stay with their
    /// launches).
    pub(crate) fn forget(&self, key: &K) {
        let ready = {
            let mut st = self.lock();
            st.wanted.remove(key);
            st.ready.remove(key)
        };
        discard(ready.unwrap_or_default());
    }

    /// Whether a refill is still under way.
    pub(crate) fn refilling(&self) -> bool {
        !self.lock().filling.is_empty()
    }

    pub(crate) fn count(&self) -> usize {
        self.lock().ready.values().map(Vec::len).sum()
    }

    /// Stops every held sandbox and refuses new ones (shutdown).
    pub(crate) fn clear(&self) {
        let ready = {
            let mut st = self.lock();
            st.closed = true;
            let claimed: Vec<T> = st.claimed.drain().map(|(_, (b, _))| b).collect();
            (std::mem::take(&mut st.ready), claimed)
        };
        drop(ready);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(String);

    impl Pooled for Item {
        fn id(&self) -> &str {
            &self.0
        }
    }

    #[test]
    fn a_pool_keeps_items_for_its_most_recently_wanted_keys_only() {
        let pool: Pool<u32, Item> = Pool::with_max_keys(1, 2);
        for key in [1, 2] {
            assert!(pool.want(&key), "key {key} is short");
            assert!(pool.put(&key, Item(format!("i{key}"))).is_none());
            pool.done(&key);
        }
        assert_eq!(pool.count(), 2);
        // A third key pushes out the least recently wanted one, with its item.
        assert!(pool.want(&3));
        assert_eq!(pool.count(), 1);
        assert!(pool.claim(&1).is_none());
        assert_eq!(pool.claim(&2).as_deref(), Some("i2"));
        assert!(pool.has_claim("i2"));
    }
}
