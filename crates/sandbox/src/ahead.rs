//! What the launcher builds ahead of time, behind one pool type keyed by shape:
//! - held sandboxes: namespaces, cgroups, root filesystem, /tmp and Runtime API listener
//!   built, the init waiting for a runtime;
//! - runtimes started ahead into held sandboxes (forked by a zygote, or exec'd), waiting
//!   on their config descriptor for the instance's environment;
//! - instances forked ahead from a post-init template.
//!
//! A launch that finds one of its shape skips what it holds: a keeper exec and the
//! sandbox build, the runtime's start, the cgroup migration.
//!
//! Each key's depth follows demand: as many as launches of that shape asked for in the
//! last second, plus the launches announced and still to come (a new or changed
//! function's first cold start, for up to [`TRIM_AFTER`]), never fewer than the floor
//! nor more than the ceiling of its [`Depth`]. What a key holds above its floor is given back
//! once nothing asked for one for [`TRIM_AFTER`], and a key unused for the depth's
//! `keep` goes with everything it holds. Refills run on threads of their own, at most
//! [`MAX_WORKERS_PER_KEY`] per key, each build paced by the server's capacity account
//! (see [`crate::CapacityAccount::build_permit`]).
//!
//! What a pool holds is function-agnostic: no code, no environment of any function until
//! a launch takes it, and a launch takes an item exactly once. An item's instance id is
//! chosen when it is built: the runtime crate claims one before it builds a launch spec,
//! so the id in the function's environment (its log stream name) is the one that names
//! the sandbox's cgroups.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::launcher::LaunchSpec;
use crate::net::SandboxNetwork;
use crate::sandbox::Built;

/// How long a claimed item waits for its launch.
const CLAIM_TTL: Duration = Duration::from_secs(60);
/// The window over which a key's demand is counted.
const DEMAND_WINDOW: Duration = Duration::from_secs(1);
/// A key above its floor gives its extra items back once nothing asked for one for this
/// long.
pub(crate) const TRIM_AFTER: Duration = Duration::from_secs(30);
/// Refill threads per key at once.
pub(crate) const MAX_WORKERS_PER_KEY: usize = 2;

/// How many items a pool keeps per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Kept per key in use, whatever the demand.
    pub floor: usize,
    /// Kept per key at most, however many launches ask (0 turns the pool off).
    pub ceiling: usize,
    /// A key nothing used for this long is dropped, with what it holds.
    pub keep: Duration,
}

impl Depth {
    /// Builds nothing ahead.
    pub const OFF: Depth = Depth {
        floor: 0,
        ceiling: 0,
        keep: Duration::ZERO,
    };

    /// The defaults: two of each shape in use, up to 128 when launches ask for them, kept
    /// ten minutes after the last use.
    pub const DEFAULT: Depth = Depth {
        floor: 2,
        ceiling: 128,
        keep: Duration::from_secs(600),
    };

    fn is_off(&self) -> bool {
        self.ceiling == 0
    }
}

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
    /// A sandbox's link is made with its network namespace.
    pub network: SandboxNetwork,
}

impl HeldKey {
    pub(crate) fn of(spec: &LaunchSpec) -> HeldKey {
        HeldKey {
            tmp_mb: spec.resources.tmp_mb,
            max_open_files: spec.resources.max_open_files,
            bootstrap_dir: spec.bootstrap_dir.clone(),
            runtime_dir: spec.runtime_dir.clone(),
            extra_ro_paths: spec.extra_ro_paths.clone(),
            network: spec.network.clone(),
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

/// One key's items and what is known of its demand.
struct Slot<T> {
    /// Oldest first: a launch takes the newest (the warmest), a trim the oldest.
    ready: Vec<T>,
    /// Builds under way.
    building: usize,
    /// Refill threads working on this key.
    workers: usize,
    /// When launches asked for one, within the demand window.
    wants: VecDeque<Instant>,
    /// Launches announced and still to come (a new function's first cold start), by
    /// when each was announced; a launch takes the oldest, and an announcement expires
    /// after [`TRIM_AFTER`].
    announced: VecDeque<Instant>,
    last_wanted: Instant,
    last_used: Instant,
}

impl<T> Slot<T> {
    fn new(now: Instant) -> Self {
        Slot {
            ready: Vec::new(),
            building: 0,
            workers: 0,
            wants: VecDeque::new(),
            announced: VecDeque::new(),
            last_wanted: now,
            last_used: now,
        }
    }

    /// How many to keep: the demand of the last window and the launches announced,
    /// within the depth's bounds.
    fn target(&mut self, depth: &Depth, now: Instant) -> usize {
        while self
            .wants
            .front()
            .is_some_and(|t| now.duration_since(*t) > DEMAND_WINDOW)
        {
            self.wants.pop_front();
        }
        while self
            .announced
            .front()
            .is_some_and(|t| now.duration_since(*t) > TRIM_AFTER)
        {
            self.announced.pop_front();
        }
        (self.wants.len() + self.announced.len())
            .clamp(depth.floor.min(depth.ceiling), depth.ceiling)
    }

    fn short(&mut self, depth: &Depth, now: Instant) -> bool {
        self.ready.len() + self.building < self.target(depth, now)
    }
}

struct State<K, T> {
    keys: HashMap<K, Slot<T>>,
    /// Claimed for a launch, by instance id.
    claimed: HashMap<String, (T, Instant)>,
    closed: bool,
}

/// Items (held sandboxes, runtimes started ahead, instances forked from a template) kept
/// per key, as deep as demand asks within a [`Depth`], for at most `max_keys` keys at
/// once (the least recently used goes first).
pub(crate) struct Pool<K, T> {
    depth: Depth,
    max_keys: usize,
    state: Mutex<State<K, T>>,
}

/// Held sandboxes, per shape.
pub(crate) type HeldPool = Pool<HeldKey, Built>;

/// What asks a pool for more (see [`Pool::note`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Demand {
    /// A launch of the key, claimed or not: counts towards its depth for the demand
    /// window, or takes the place of a launch announced.
    Launch,
    /// A launch to come (a new or changed function's first cold start): counts until
    /// that launch comes, or for [`TRIM_AFTER`].
    Announced,
    /// Only a use of the key: it stays, at its floor.
    Used,
}

/// What the pool's periodic tending found: keys to refill, and items to stop.
pub(crate) struct Tended<K, T> {
    pub short: Vec<K>,
    pub stale: Vec<T>,
}

impl<K: Clone + Eq + Hash, T: Pooled + Send + 'static> Pool<K, T> {
    pub(crate) fn new(depth: Depth, max_keys: usize) -> Self {
        Pool {
            depth,
            max_keys,
            state: Mutex::new(State {
                keys: HashMap::new(),
                claimed: HashMap::new(),
                closed: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K, T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one of any key, if one is ready (to make room).
    pub(crate) fn pop_any(&self) -> Option<T> {
        self.lock().keys.values_mut().find_map(|s| s.ready.pop())
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
            let item = st.keys.get_mut(key).and_then(|s| s.ready.pop())?;
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

    /// Records `demand` for `key` (see [`Demand`]). Returns whether the caller should
    /// start a refill thread for it.
    pub(crate) fn note(&self, key: &K, demand: Demand) -> bool {
        let dropped;
        let refill = {
            let mut st = self.lock();
            if self.depth.is_off() || st.closed {
                return false;
            }
            let now = Instant::now();
            dropped = if !st.keys.contains_key(key) && st.keys.len() >= self.max_keys {
                let oldest = st
                    .keys
                    .iter()
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone());
                oldest
                    .and_then(|k| st.keys.remove(&k))
                    .map(|s| s.ready)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let slot = st.keys.entry(key.clone()).or_insert_with(|| Slot::new(now));
            slot.last_used = now;
            match demand {
                Demand::Launch => {
                    slot.last_wanted = now;
                    if slot.announced.pop_front().is_none() {
                        slot.wants.push_back(now);
                    }
                }
                Demand::Announced => {
                    slot.last_wanted = now;
                    slot.announced.push_back(now);
                }
                Demand::Used => {}
            }
            let spawn = slot.workers < MAX_WORKERS_PER_KEY
                && slot.ready.len() + slot.building + slot.workers < slot.target(&self.depth, now);
            if spawn {
                slot.workers += 1;
            }
            spawn
        };
        discard(dropped);
        refill
    }

    /// A refill thread of `key` is about to build one more: true if the key still lacks
    /// one (then it counts as building until [`Pool::put`] or [`Pool::build_failed`]).
    pub(crate) fn begin_build(&self, key: &K) -> bool {
        let mut st = self.lock();
        if st.closed {
            return false;
        }
        let depth = self.depth;
        let Some(slot) = st.keys.get_mut(key) else {
            return false;
        };
        let short = slot.short(&depth, Instant::now());
        if short {
            slot.building += 1;
        }
        short
    }

    /// Adds a freshly built item; gives it back if the pool no longer wants it.
    pub(crate) fn put(&self, key: &K, item: T) -> Option<T> {
        let mut st = self.lock();
        let closed = st.closed;
        match st.keys.get_mut(key) {
            Some(slot) => {
                slot.building = slot.building.saturating_sub(1);
                if closed {
                    return Some(item);
                }
                slot.ready.push(item);
                None
            }
            None => Some(item),
        }
    }

    /// A build announced by [`Pool::begin_build`] did not happen.
    pub(crate) fn build_failed(&self, key: &K) {
        if let Some(slot) = self.lock().keys.get_mut(key) {
            slot.building = slot.building.saturating_sub(1);
        }
    }

    /// A refill thread of `key` is over.
    pub(crate) fn worker_done(&self, key: &K) {
        if let Some(slot) = self.lock().keys.get_mut(key) {
            slot.workers = slot.workers.saturating_sub(1);
        }
    }

    /// Periodic upkeep: drops keys unused for the depth's `keep` with their items, gives
    /// back what a key holds above its floor once nothing asked for it for
    /// [`TRIM_AFTER`], and returns the keys still short, each with a refill thread
    /// already counted (the caller starts them).
    pub(crate) fn tend(&self) -> Tended<K, T> {
        let mut st = self.lock();
        let mut tended = Tended {
            short: Vec::new(),
            stale: Vec::new(),
        };
        if st.closed {
            return tended;
        }
        let now = Instant::now();
        let depth = self.depth;
        st.keys.retain(|key, slot| {
            if now.duration_since(slot.last_used) >= depth.keep {
                tended.stale.append(&mut slot.ready);
                // A slot with builds under way stays until they are over.
                return slot.workers > 0;
            }
            let floor = depth.floor.min(depth.ceiling);
            if now.duration_since(slot.last_wanted) >= TRIM_AFTER && slot.ready.len() > floor {
                let extra = slot.ready.len() - floor;
                tended.stale.extend(slot.ready.drain(..extra));
            }
            if slot.workers == 0 && slot.short(&depth, now) {
                slot.workers += 1;
                tended.short.push(key.clone());
            }
            true
        });
        tended
    }

    /// Calls `f` on every ready item (under the pool's lock: keep it short).
    pub(crate) fn for_each_ready(&self, mut f: impl FnMut(&mut T)) {
        let mut st = self.lock();
        for slot in st.keys.values_mut() {
            slot.ready.iter_mut().for_each(&mut f);
        }
    }

    /// Stops wanting `key` and stops its ready items (claimed ones stay with their
    /// launches).
    pub(crate) fn forget(&self, key: &K) {
        let ready = self.lock().keys.remove(key).map(|s| s.ready);
        discard(ready.unwrap_or_default());
    }

    /// Whether a refill is still under way.
    pub(crate) fn refilling(&self) -> bool {
        self.lock().keys.values().any(|s| s.workers > 0)
    }

    pub(crate) fn count(&self) -> usize {
        self.lock().keys.values().map(|s| s.ready.len()).sum()
    }

    /// Stops every item and refuses new ones (shutdown).
    pub(crate) fn clear(&self) {
        let ready = {
            let mut st = self.lock();
            st.closed = true;
            let claimed: Vec<T> = st.claimed.drain().map(|(_, (b, _))| b).collect();
            let ready: Vec<T> = st
                .keys
                .values_mut()
                .flat_map(|s| s.ready.drain(..))
                .collect();
            (ready, claimed)
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

    /// Builds what the pool asks for, as a refill thread would.
    fn refill(pool: &Pool<u32, Item>, key: u32, seq: &mut u32) {
        while pool.begin_build(&key) {
            *seq += 1;
            assert!(pool.put(&key, Item(format!("i{key}-{seq}"))).is_none());
        }
        pool.worker_done(&key);
    }

    const DEPTH: Depth = Depth {
        floor: 1,
        ceiling: 3,
        keep: Duration::from_secs(600),
    };

    #[test]
    fn a_pool_keeps_items_for_its_most_recently_used_keys_only() {
        let pool: Pool<u32, Item> = Pool::new(DEPTH, 2);
        let mut seq = 0;
        for key in [1, 2] {
            assert!(pool.note(&key, Demand::Used), "key {key} is short");
            refill(&pool, key, &mut seq);
        }
        assert_eq!(pool.count(), 2, "the floor of each key");
        // A third key pushes out the least recently used one, with its item.
        assert!(pool.note(&3, Demand::Used));
        assert_eq!(pool.count(), 1);
        assert!(pool.claim(&1).is_none());
        assert_eq!(pool.claim(&2).as_deref(), Some("i2-2"));
        assert!(pool.has_claim("i2-2"));
    }

    #[test]
    fn demand_deepens_a_key_up_to_its_ceiling_and_no_further() {
        let pool: Pool<u32, Item> = Pool::new(DEPTH, 8);
        let mut seq = 0;
        for _ in 0..5 {
            if pool.note(&7, Demand::Launch) {
                refill(&pool, 7, &mut seq);
            }
        }
        assert_eq!(pool.count(), 3, "five wants in a second, ceiling 3");
        // Launches take them; the demand still stands, so refills bring it back up.
        for _ in 0..3 {
            assert!(pool.claim(&7).is_some());
        }
        let tended = pool.tend();
        assert_eq!(tended.short, vec![7]);
        refill(&pool, 7, &mut seq);
        assert_eq!(pool.count(), 3);
    }

    #[test]
    fn announced_launches_count_until_they_come() {
        let pool: Pool<u32, Item> = Pool::new(
            Depth {
                floor: 1,
                ceiling: 8,
                keep: Duration::from_secs(600),
            },
            8,
        );
        let mut seq = 0;
        // Five new functions: five first cold starts to come, whenever they come.
        for _ in 0..5 {
            if pool.note(&1, Demand::Announced) {
                refill(&pool, 1, &mut seq);
            }
        }
        assert_eq!(pool.count(), 5);
        // Each launch takes one and the place of its announcement: no more are built.
        for left in (0..5).rev() {
            assert!(pool.claim(&1).is_some());
            if pool.note(&1, Demand::Launch) {
                refill(&pool, 1, &mut seq);
            }
            assert_eq!(pool.count(), left.max(1), "after a launch, {left} to come");
        }
    }

    #[test]
    fn a_turned_off_pool_builds_nothing() {
        let pool: Pool<u32, Item> = Pool::new(Depth::OFF, 8);
        assert!(!pool.note(&1, Demand::Launch));
        assert!(!pool.begin_build(&1));
        assert!(pool.tend().short.is_empty());
    }

    #[test]
    fn refill_threads_per_key_are_bounded() {
        let pool: Pool<u32, Item> = Pool::new(DEPTH, 8);
        let spawned = (0..10).filter(|_| pool.note(&1, Demand::Launch)).count();
        assert_eq!(spawned, MAX_WORKERS_PER_KEY);
    }
}
