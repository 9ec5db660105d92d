//! The instance manager: per-function pools of warm instances, cold starts, keep-alive,
//! scale to zero, provisioned instances and the server's capacity.
//!
//! Instances are keyed by (namespace, function, revision); an update bumps the revision
//! so old instances are never reused. Idle instances are reused last-in-first-out (the
//! warmest first; provisioned ones before any other) and stopped after the keep-alive.
//! Cold starts run a few at a time; a request that finds no idle instance and no room
//! to start one waits a bounded time for one to be released, then gets `AtCapacity`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_sandbox::{LaunchSpec, Launcher, Resources, ZygoteSpec, ZYGOTE_PYTHON_FLAGS};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::bootstraps::{NODE_IN_SANDBOX, PYTHON_IN_SANDBOX};
use crate::catalog::{RuntimeCatalog, RuntimeKind};
use crate::instance::{Instance, StartError, UsageProbe};
use crate::load::MachineLoad;
use crate::output::{LogConsumer, OutputLine};
use crate::python_sdk::PythonSdk;

/// Receives every output line of every instance with its namespace and function.
pub type LogRouter = Arc<dyn Fn(&str, &str, OutputLine) + Send + Sync>;

/// The (namespace, function) a pre-warmed instance's output belongs to, once assigned.
type LogOwner = Arc<Mutex<Option<(String, String)>>>;

/// Settings of the instance manager (part of the server config).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub keep_alive: Duration,
    pub init_timeout: Duration,
    /// Server-wide cap on live instances.
    pub max_instances: usize,
    /// Server-wide cap on the summed MemorySize of live instances.
    pub memory_budget_mb: u64,
    /// Summed EphemeralStorage of live instances, in MB, at most (`u64::MAX`: no
    /// budget, as when /tmp is not on the host disk).
    pub tmp_disk_budget_mb: u64,
    /// Cold starts allowed to run at the same time (they compete for CPU).
    pub max_concurrent_starts: usize,
    /// How long a request may wait for an instance when none is free and no new one
    /// can start; then it is refused.
    pub queue_timeout: Duration,
    /// Smallest CPU share given to any instance, in thousandths of a core.
    pub cpu_floor_millis: u32,
    pub max_pids: u32,
    pub max_open_files: u32,
    pub max_output_per_invocation: u64,
    pub region: String,
    /// Directory with the installed bootstraps (shown at `/opt/tern`).
    pub bootstrap_dir: PathBuf,
    /// Pre-warmed instances kept per (runtime, /tmp size) in use: sandbox built, runtime
    /// started with its bootstrap loaded, waiting for a function. 0 disables them.
    pub prewarm_per_runtime: usize,
    /// Start Python runtimes by forking a per-namespace zygote (a warm interpreter with
    /// the bootstrap imported) rather than exec'ing a fresh interpreter, where the
    /// launcher can and the function's environment does not change how Python starts.
    pub zygote: bool,
    /// Freeze idle instances (cgroup freezer) until they are handed out again.
    pub freeze_idle: bool,
    /// MB of host memory to keep available: below it (MemAvailable), idle instances are
    /// evicted least recently used first. 0 turns the check off.
    pub host_memory_floor_mb: u64,
    /// CFS burst: CPU time an instance left unused banks up (to one period's quota).
    pub cpu_burst: bool,
    /// Share of the machine's CPU time (percent, over the last few 50 ms samples) at
    /// and above which a request for a function whose requests are shorter than its
    /// cold starts waits for a busy instance instead of starting another. 0 means
    /// always, above 100 never.
    pub saturated_cpu_percent: u32,
    /// The pinned boto3 and botocore of each Python runtime (shown at `/var/runtime`).
    pub python_sdk: Arc<PythonSdk>,
}

/// MemorySize a pre-warmed instance starts with (raised when it gets its function).
const PREWARM_MEMORY_MB: u32 = 128;

/// Function environment variables that change how an interpreter starts; a function
/// setting any of them gets a fresh runtime instead of a pre-warmed one.
fn affects_startup(key: &str) -> bool {
    const PREFIXES: &[&str] = &["PYTHON", "NODE_", "LD_", "LC_", "MALLOC_", "GLIBC_"];
    const KEYS: &[&str] = &["PATH", "HOME", "LANG", "TZ", "UV_THREADPOOL_SIZE", "TMPDIR"];
    PREFIXES.iter().any(|p| key.starts_with(p)) || KEYS.contains(&key)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PrewarmKey {
    runtime: String,
    tmp_mb: u32,
}

/// A pre-warmed instance waiting for a function.
struct Ready {
    instance: Instance,
    owner: LogOwner,
    /// What it counts against the capacity (see [`Idle::charged`]).
    charged: Claim,
}

#[derive(Default)]
struct PrewarmPool {
    ready: Vec<Ready>,
    filling: bool,
    last_wanted: Option<Instant>,
}

impl PoolConfig {
    /// Defaults for everything but the paths and region.
    pub fn new(region: &str, bootstrap_dir: PathBuf) -> Self {
        PoolConfig {
            keep_alive: Duration::from_secs(600),
            init_timeout: Duration::from_secs(10),
            max_instances: 256,
            memory_budget_mb: 64 * 1024,
            tmp_disk_budget_mb: u64::MAX,
            max_concurrent_starts: 4,
            queue_timeout: Duration::from_secs(5),
            cpu_floor_millis: 250,
            max_pids: 256,
            max_open_files: 1024,
            max_output_per_invocation: 1 << 20,
            region: region.to_string(),
            bootstrap_dir,
            prewarm_per_runtime: 2,
            zygote: true,
            freeze_idle: true,
            host_memory_floor_mb: 0,
            cpu_burst: true,
            saturated_cpu_percent: 85,
            python_sdk: PythonSdk::off(),
        }
    }
}

/// What the manager needs to know about a function to start an instance.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub namespace: String,
    pub name: String,
    pub revision: u64,
    pub version: String,
    pub runtime: String,
    pub handler: String,
    pub memory_mb: u32,
    pub tmp_mb: u32,
    pub env: Vec<(String, String)>,
    pub code_dir: PathBuf,
    /// Unpacked layers in `Layers` order, shown merged at `/opt`.
    pub layer_dirs: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    namespace: String,
    name: String,
    revision: u64,
}

impl PoolKey {
    fn of(f: &FunctionSpec) -> Self {
        PoolKey {
            namespace: f.namespace.clone(),
            name: f.name.clone(),
            revision: f.revision,
        }
    }
}

/// The /tmp disk budget, what live instances claim of it (their EphemeralStorage) and
/// what their /tmp filesystems hold right now.
#[derive(Debug, Clone, Copy)]
pub struct TmpDiskUsage {
    pub budget_mb: u64,
    pub claimed_mb: u64,
    pub used_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    #[error("the runtime '{runtime}' is not available on this server; available: {available}")]
    UnknownRuntime { runtime: String, available: String },
    #[error("the server is at its capacity ({0}); no instance became free in time")]
    AtCapacity(String),
    #[error(transparent)]
    Start(#[from] StartError),
}

/// An instance checked out for one request.
pub struct Lease {
    pub instance: Instance,
    key: PoolKey,
    /// Set when this request started the instance.
    pub cold: bool,
    /// Set for a provisioned instance.
    pub provisioned: bool,
    handed_out: Instant,
}

/// What the manager learns about one function revision's requests.
#[derive(Default)]
struct Demand {
    /// Leases handed out and not yet returned.
    busy: usize,
    /// Moving averages of how long a lease is held and how long a request that starts
    /// an instance waits for it.
    run_ewma: Option<Duration>,
    start_ewma: Option<Duration>,
    /// When a warm instance was last handed out or one came back to idle.
    last_turnover: Option<Instant>,
    /// Requests parked waiting for a busy instance; while there are any, a newcomer
    /// does not take an idle instance ahead of them.
    parked: usize,
    /// Requests committed to a cold start of this revision (they count as instances).
    starting: usize,
    /// Signalled (one waiter, in order of arrival) when an instance of this function
    /// goes back to idle.
    freed: Arc<Notify>,
}

fn ewma(old: Option<Duration>, sample: Duration) -> Option<Duration> {
    Some(match old {
        None => sample,
        Some(o) => (o * 7 + sample) / 8,
    })
}

/// How long one request waits for a busy instance of its function instead of starting
/// another (see [`patience`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Patience {
    /// How long from the moment the request finds no idle instance.
    wait: Duration,
    /// Stop waiting when no instance of the function has turned over for this long.
    stall: Duration,
}

/// Whether a request that finds every instance of its function busy waits for one to
/// come back instead of starting another, and for how long. Only for functions whose
/// requests (`run`, a moving average of how long a lease is held) are shorter than
/// their cold starts (`start`, how long a request that starts an instance waits for
/// it), and only while their instances keep turning over (a stalled function scales
/// out at once):
/// - the machine's CPUs are saturated: another instance cannot add throughput, only
///   switching between processes, so the request waits its turn, up to four cold
///   starts (at most 200 ms);
/// - otherwise, when requests are much shorter than a cold start, briefly (three
///   requests' time, at most half a cold start).
///
/// Lambda starts an environment per concurrent request whatever its length; on a
/// small machine, dozens of interpreters for sub-millisecond requests cost more than
/// they serve.
fn patience(busy: usize, run: Duration, start: Duration, saturated: bool) -> Option<Patience> {
    if busy == 0 || run >= start {
        return None;
    }
    // What counts as stalled: no turnover for four requests' time or half a cold start,
    // whichever is longer (a cold start costs that much anyway).
    let stall = (run * 4).max(start / 2).max(Duration::from_millis(2));
    if saturated {
        let wait = (start * 4).clamp(Duration::from_millis(5), Duration::from_millis(200));
        return Some(Patience { wait, stall });
    }
    (run * 4 < start).then(|| Patience {
        wait: (run * 3).clamp(Duration::from_micros(500), start / 2),
        stall,
    })
}

/// Whether a busy machine means that another instance of a function adds nothing: only
/// once its `instances`, each held to `share_millis` of a CPU, could use every one of the
/// machine's `cores` between them. Until then another instance adds throughput even on
/// a busy machine: its instances are held back by their CPU quota, not by the machine.
fn saturated_for(
    instances: usize,
    share_millis: u32,
    cores: usize,
    machine_saturated: bool,
) -> bool {
    machine_saturated
        && instances.saturating_mul(share_millis as usize) >= cores.saturating_mul(1000)
}

/// Counts a request on one counter of its function's demand record until dropped
/// (also when the request is cancelled): parked waiting for a busy instance, or
/// committed to a cold start.
struct Counted<'a> {
    manager: &'a InstanceManager,
    key: &'a PoolKey,
    counter: fn(&mut Demand) -> &mut usize,
}

impl<'a> Counted<'a> {
    /// Counts one more on a counter the caller already raised (under its own lock).
    fn raised(
        manager: &'a InstanceManager,
        key: &'a PoolKey,
        counter: fn(&mut Demand) -> &mut usize,
    ) -> Self {
        Counted {
            manager,
            key,
            counter,
        }
    }

    fn parked(manager: &'a InstanceManager, key: &'a PoolKey) -> Self {
        manager.demand(key, |d| d.parked += 1);
        Counted::raised(manager, key, |d| &mut d.parked)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let counter = self.counter;
        self.manager.demand(self.key, |d| {
            let n = counter(d);
            *n = n.saturating_sub(1);
        });
    }
}

struct Idle {
    instance: Instance,
    since: Instant,
    provisioned: bool,
    /// What it counts against the capacity: its MemorySize and EphemeralStorage until
    /// the next sweep measures it, then what its memory cgroup charges it and what its
    /// /tmp holds (see [`InstanceManager::measure_idle`]).
    charged: Claim,
}

/// Status of a function's provisioned instances, as Lambda reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionedStatus {
    InProgress,
    Ready,
    Failed(String),
}

/// A snapshot of a function's provisioned instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedState {
    pub requested: usize,
    /// Initialised instances (idle or busy).
    pub allocated: usize,
    /// Of those, idle right now.
    pub available: usize,
    pub status: ProvisionedStatus,
}

struct Provisioned {
    spec: FunctionSpec,
    requested: usize,
    /// Live provisioned instances of `spec`'s revision.
    live: usize,
    status: ProvisionedStatus,
    filling: bool,
}

#[derive(Default)]
struct Capacity {
    instances: usize,
    memory_mb: u64,
    /// Summed EphemeralStorage (/tmp size) of live instances.
    tmp_mb: u64,
}

/// Counts a request waiting for room while it lives.
struct ShortOfRoom<'a>(&'a AtomicUsize);

impl<'a> ShortOfRoom<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        ShortOfRoom(count)
    }
}

impl Drop for ShortOfRoom<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's place in line for a start slot.
type SlotWait = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>
            + Send,
    >,
>;

/// What one instance counts against the server's capacity: its MemorySize and its
/// EphemeralStorage, as declared (the most it may use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    memory_mb: u64,
    tmp_mb: u64,
}

impl Claim {
    const ZERO: Claim = Claim {
        memory_mb: 0,
        tmp_mb: 0,
    };

    fn plus(self, o: Claim) -> Claim {
        Claim {
            memory_mb: self.memory_mb + o.memory_mb,
            tmp_mb: self.tmp_mb + o.tmp_mb,
        }
    }

    fn of(f: &FunctionSpec) -> Claim {
        Claim {
            memory_mb: u64::from(f.memory_mb),
            tmp_mb: u64::from(f.tmp_mb),
        }
    }

    fn prewarmed(key: &PrewarmKey) -> Claim {
        Claim {
            memory_mb: u64::from(PREWARM_MEMORY_MB),
            tmp_mb: u64::from(key.tmp_mb),
        }
    }

    /// What a busy instance counts: everything it declared.
    fn declared(instance: &Instance) -> Claim {
        Claim {
            memory_mb: u64::from(instance.memory_mb),
            tmp_mb: u64::from(instance.tmp_mb),
        }
    }
}

/// Why an idle instance was stopped before its keep-alive ran out.
#[derive(Debug, Clone, Copy)]
enum Eviction {
    /// A start or a hand-out needed room within the server's budgets.
    Room = 0,
    /// The host ran short of available memory.
    HostMemory = 1,
}

impl Eviction {
    const ALL: [Eviction; 2] = [Eviction::Room, Eviction::HostMemory];

    fn label(self) -> &'static str {
        match self {
            Eviction::Room => "room",
            Eviction::HostMemory => "host_memory",
        }
    }
}

pub struct InstanceManager {
    config: PoolConfig,
    launcher: Arc<dyn Launcher>,
    catalog: RuntimeCatalog,
    logs: LogRouter,
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    capacity: Mutex<Capacity>,
    provisioned: Mutex<HashMap<(String, String), Provisioned>>,
    prewarmed: Mutex<HashMap<PrewarmKey, PrewarmPool>>,
    demand: Mutex<HashMap<PoolKey, Demand>>,
    load: MachineLoad,
    starts: Arc<Semaphore>,
    /// Signalled whenever an instance is released or retired.
    released: Notify,
    /// Set by shutdown: background starts stop, and what they started is stopped.
    closed: std::sync::atomic::AtomicBool,
    /// CPUs of the machine (what the saturation rule compares instances' shares with).
    cores: usize,
    /// Requests waiting because the server had no room for them: pre-warming waits
    /// too, so that refills never take the room a request is waiting for.
    short_of_room: AtomicUsize,
    /// Idle and pre-warmed instances stopped early, by [`Eviction`].
    evictions: [AtomicU64; 2],
    next_id: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// CPU share for a memory size: 1 core per 1769 MB, never below the floor.
pub fn cpu_millis(memory_mb: u32, floor: u32) -> u32 {
    let proportional =
        (u64::from(memory_mb) * 1000 / u64::from(tern_core::limits::MB_PER_VCPU)) as u32;
    proportional.max(floor)
}

impl InstanceManager {
    pub fn new(
        config: PoolConfig,
        launcher: Arc<dyn Launcher>,
        catalog: RuntimeCatalog,
        logs: LogRouter,
    ) -> Arc<Self> {
        let starts = Arc::new(Semaphore::new(config.max_concurrent_starts.max(1)));
        if let Err(e) = std::fs::create_dir_all(config.bootstrap_dir.join("empty-task")) {
            tracing::warn!(error = %e, "cannot create the empty code dir; pre-warming will fail");
        }
        Arc::new(InstanceManager {
            config,
            launcher,
            catalog,
            logs,
            idle: Mutex::new(HashMap::new()),
            capacity: Mutex::new(Capacity::default()),
            provisioned: Mutex::new(HashMap::new()),
            prewarmed: Mutex::new(HashMap::new()),
            demand: Mutex::new(HashMap::new()),
            load: MachineLoad::default(),
            starts,
            released: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            short_of_room: AtomicUsize::new(0),
            evictions: Default::default(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            next_id: AtomicUsize::new(0),
        })
    }

    pub fn catalog(&self) -> &RuntimeCatalog {
        &self.catalog
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Live instances (idle and busy).
    pub fn live(&self) -> usize {
        lock(&self.capacity).instances
    }

    /// Pre-warmed instances waiting for a function.
    pub fn prewarmed_count(&self) -> usize {
        lock(&self.prewarmed).values().map(|p| p.ready.len()).sum()
    }

    /// Idle and pre-warmed instances stopped before their keep-alive ran out, by why:
    /// `room` (a start or hand-out needed room in the budgets) and `host_memory`.
    pub fn evictions(&self) -> Vec<(&'static str, u64)> {
        Eviction::ALL
            .iter()
            .map(|e| {
                (
                    e.label(),
                    self.evictions[*e as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Memory counted against the budget, in MB: the MemorySize of each busy or starting
    /// instance, and the measured use of each idle or pre-warmed one.
    pub fn live_memory_mb(&self) -> u64 {
        lock(&self.capacity).memory_mb
    }

    /// Summed EphemeralStorage of live instances, in MB (what the /tmp disk budget
    /// counts).
    pub fn live_tmp_mb(&self) -> u64 {
        lock(&self.capacity).tmp_mb
    }

    /// The /tmp disk budget and its use; `None` where /tmp is not on the host disk.
    pub fn tmp_disk(&self) -> Option<TmpDiskUsage> {
        let used_bytes = self.launcher.tmp_disk_used_bytes()?;
        Some(TmpDiskUsage {
            budget_mb: self.config.tmp_disk_budget_mb,
            claimed_mb: self.live_tmp_mb(),
            used_bytes,
        })
    }

    /// Idle instances of one function (all revisions).
    pub fn idle_count(&self, namespace: &str, name: &str) -> usize {
        lock(&self.idle)
            .iter()
            .filter(|(k, _)| k.namespace == namespace && k.name == name)
            .map(|(_, v)| v.len())
            .sum()
    }

    /// An idle instance of `key`, provisioned ones first, else the warmest. It is
    /// charged its whole MemorySize again (a running invocation is guaranteed it),
    /// evicting other idle instances if that takes room; without room it stays idle.
    async fn take_idle(&self, key: &PoolKey) -> Option<Lease> {
        loop {
            let picked = {
                let mut idle = lock(&self.idle);
                let list = idle.get_mut(key)?;
                let pos = list
                    .iter()
                    .rposition(|i| i.provisioned)
                    .or_else(|| list.len().checked_sub(1))?;
                let item = list.remove(pos);
                if list.is_empty() {
                    idle.remove(key);
                }
                item
            };
            if picked.instance.has_exited() {
                let claim = picked.charged;
                self.retire(picked.instance, picked.provisioned, key, claim)
                    .await;
                continue;
            }
            let declared = Claim::declared(&picked.instance);
            let mut measured = false;
            while !self.recharge(picked.charged, declared, false) {
                if !self.make_room(key, &mut measured).await {
                    // No room for its MemorySize: back to idle, and the request waits
                    // for room as a cold start would.
                    lock(&self.idle)
                        .entry(key.clone())
                        .or_default()
                        .push(picked);
                    return None;
                }
            }
            picked.instance.unpark();
            return Some(Lease {
                instance: picked.instance,
                key: key.clone(),
                cold: false,
                provisioned: picked.provisioned,
                handed_out: Instant::now(),
            });
        }
    }

    /// Claims room for one more instance; with `evict_for`, stops pre-warmed
    /// instances, then idle instances of functions other than that one (least recently
    /// used first), if that makes room.
    async fn claim_capacity(&self, claim: Claim, evict_for: Option<&PoolKey>) -> bool {
        let mut measured = false;
        loop {
            {
                let mut cap = lock(&self.capacity);
                if cap.instances < self.config.max_instances
                    && cap.memory_mb + claim.memory_mb <= self.config.memory_budget_mb
                    && cap.tmp_mb + claim.tmp_mb <= self.config.tmp_disk_budget_mb
                {
                    cap.instances += 1;
                    cap.memory_mb += claim.memory_mb;
                    cap.tmp_mb += claim.tmp_mb;
                    return true;
                }
            }
            let Some(requester) = evict_for else {
                return false;
            };
            if !self.make_room(requester, &mut measured).await {
                return false;
            }
        }
    }

    /// Makes room for a claim that did not fit: first (once per claim, tracked by
    /// `measured`) by counting the idle instances not measured since they went idle at
    /// what they use, then by stopping a pre-warmed instance (the cheapest to lose),
    /// then the least recently used idle instance of a function other than
    /// `requester`'s. False if nothing changed.
    async fn make_room(&self, requester: &PoolKey, measured: &mut bool) -> bool {
        if !*measured {
            *measured = true;
            if self.measure_idle(false) {
                return true;
            }
        }
        self.evict_one_prewarmed(Eviction::Room).await
            || self.evict_one_idle(Some(requester), Eviction::Room).await
    }

    /// Counts `to` instead of `from` for live instances. A rise is refused if it does
    /// not fit the budgets, unless `forced` (what they already use).
    fn recharge(&self, from: Claim, to: Claim, forced: bool) -> bool {
        let mut cap = lock(&self.capacity);
        let memory_mb = cap.memory_mb.saturating_sub(from.memory_mb) + to.memory_mb;
        let tmp_mb = cap.tmp_mb.saturating_sub(from.tmp_mb) + to.tmp_mb;
        let rises = memory_mb > cap.memory_mb || tmp_mb > cap.tmp_mb;
        if rises
            && !forced
            && (memory_mb > self.config.memory_budget_mb || tmp_mb > self.config.tmp_disk_budget_mb)
        {
            return false;
        }
        cap.memory_mb = memory_mb;
        cap.tmp_mb = tmp_mb;
        true
    }

    fn release_capacity(&self, claim: Claim) {
        let mut cap = lock(&self.capacity);
        cap.instances = cap.instances.saturating_sub(1);
        cap.memory_mb = cap.memory_mb.saturating_sub(claim.memory_mb);
        cap.tmp_mb = cap.tmp_mb.saturating_sub(claim.tmp_mb);
    }

    /// A warm instance if one is idle, else a new one; waits at most the queue timeout
    /// for room.
    pub async fn acquire(self: &Arc<Self>, f: &FunctionSpec) -> Result<Lease, AcquireError> {
        let key = PoolKey::of(f);
        let kind =
            self.catalog
                .get(&f.runtime)
                .cloned()
                .ok_or_else(|| AcquireError::UnknownRuntime {
                    runtime: f.runtime.clone(),
                    available: self.catalog.ids().join(", "),
                })?;
        if u64::from(f.tmp_mb) > self.config.tmp_disk_budget_mb {
            return Err(AcquireError::Start(StartError::Launch(format!(
                "its EphemeralStorage ({} MB) is larger than this server's whole /tmp disk \
                 budget ({} MB)",
                f.tmp_mb, self.config.tmp_disk_budget_mb
            ))));
        }
        // Requests parked for this function go first: a newcomer takes an idle instance
        // only when none is waiting (it queues behind them on `freed`).
        let (freed, mut behind) = self.demand(&key, |d| (d.freed.clone(), d.parked > 0));
        let deadline = tokio::time::Instant::now() + self.config.queue_timeout;
        // How long a warm instance of this function is worth waiting for instead of a
        // cold start; decided once per request, when it first finds none idle, and
        // never past the queue timeout (there a start is tried, not refused).
        let mut patience: Option<Option<(tokio::time::Instant, Duration)>> = None;
        let claim = Claim::of(f);
        let slot_deadline = deadline + self.config.init_timeout;
        // This request's place in the start-slot line, and the slot once it has one.
        let mut slot_wait: Option<SlotWait> = None;
        let mut slot: Option<OwnedSemaphorePermit> = None;
        let mut short_of_room: Option<ShortOfRoom> = None;
        let mut starting: Option<Counted> = None;
        // The saturation rule may hold a request back once, when its own wait is over.
        let mut held_back = false;
        let lease = loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mine = freed.notified();
            tokio::pin!(mine);
            mine.as_mut().enable();
            if !behind {
                if let Some(lease) = self.take_idle(&key).await {
                    break lease;
                }
            }
            behind = false;
            let now = tokio::time::Instant::now();
            let (until, stall) = *patience
                .get_or_insert_with(|| {
                    self.patience(&key, f.memory_mb)
                        .map(|p| ((now + p.wait).min(deadline), p.stall))
                })
                .as_ref()
                .unwrap_or(&(now, Duration::ZERO));
            // Parked while instances of this function are busy and turning over.
            let park_until = if now < until {
                let idle = self.idle_of(&key);
                self.demand(&key, |d| match d.last_turnover {
                    Some(t) if d.busy + idle > 0 => Some(tokio::time::Instant::from_std(t + stall)),
                    _ => None,
                })
                .filter(|stalled| now < *stalled)
                .map(|stalled| stalled.min(until))
            } else {
                None
            };
            let mut no_slot = false;
            let mut no_room = false;
            if park_until.is_none() && starting.is_none() {
                match self.commit_to_start(&key, f.memory_mb, !held_back) {
                    Ok(s) => starting = Some(s),
                    Err(p) => {
                        held_back = true;
                        patience = Some(Some(((now + p.wait).min(deadline), p.stall)));
                        continue;
                    }
                }
            }
            if park_until.is_none() {
                // A slot this request waited for is used for its start, never passed on.
                let permit = match slot.take() {
                    Some(p) => Some(p),
                    None => self.starts.clone().try_acquire_owned().ok(),
                };
                match permit {
                    Some(permit) => {
                        if self.claim_capacity(claim, Some(&key)).await {
                            let began = Instant::now();
                            let started = self.start(f, &kind, false).await;
                            drop(starting.take());
                            drop(permit);
                            let instance = started?;
                            let took = began.elapsed();
                            self.demand(&key, |d| d.start_ewma = ewma(d.start_ewma, took));
                            break Lease {
                                instance,
                                key: key.clone(),
                                cold: true,
                                provisioned: false,
                                handed_out: Instant::now(),
                            };
                        }
                        // No room: the slot goes back for a start that fits.
                        no_room = true;
                        if short_of_room.is_none() {
                            short_of_room = Some(ShortOfRoom::new(&self.short_of_room));
                        }
                    }
                    None => {
                        no_slot = true;
                        if slot_wait.is_none() {
                            // In line for a slot from now on, whatever else wakes us.
                            slot_wait = Some(Box::pin(self.starts.clone().acquire_owned()));
                        }
                    }
                }
            }
            let _parked = park_until.map(|_| Counted::parked(self, &key));
            // Past the queue timeout, a request whose only obstacle is that every start
            // slot is busy keeps its place in line: the starts ahead of it end within the
            // init timeout, and the server has room, so a 429 would be no limit's doing.
            let wake = match park_until {
                Some(p) => p.min(deadline),
                None if no_slot && !no_room => slot_deadline,
                None => deadline,
            };
            tokio::select! {
                _ = &mut mine => {}
                _ = &mut notified => {}
                p = async { slot_wait.as_mut().expect("guarded").await }, if slot_wait.is_some() => {
                    slot_wait = None;
                    slot = p.ok();
                }
                _ = tokio::time::sleep_until(wake) => {
                    if park_until.is_none() && wake >= deadline {
                        return Err(AcquireError::AtCapacity(self.describe_limit(claim, no_room)));
                    }
                }
            }
        };
        self.demand(&key, |d| {
            d.busy += 1;
            if !lease.cold {
                d.last_turnover = Some(Instant::now());
            }
        });
        Ok(Lease {
            handed_out: Instant::now(),
            ..lease
        })
    }

    /// Runs `f` on the demand record of `key`.
    fn demand<T>(&self, key: &PoolKey, f: impl FnOnce(&mut Demand) -> T) -> T {
        let mut all = lock(&self.demand);
        // The record exists on every path but a function's first request: no key clone.
        if let Some(d) = all.get_mut(key) {
            return f(d);
        }
        f(all.entry(key.clone()).or_default())
    }

    /// [`patience`] for a request of `key`, from what the manager has learnt. Idle
    /// instances count as busy: they are on their way to requests parked ahead.
    fn patience(&self, key: &PoolKey, memory_mb: u32) -> Option<Patience> {
        let idle = self.idle_of(key);
        let (busy, run, start) = {
            let d = lock(&self.demand);
            let d = d.get(key)?;
            (d.busy + d.starting + idle, d.run_ewma?, d.start_ewma?)
        };
        let saturated = saturated_for(
            busy,
            cpu_millis(memory_mb, self.config.cpu_floor_millis),
            self.cores,
            self.load.saturated(self.config.saturated_cpu_percent),
        );
        patience(busy, run, start, saturated)
    }

    /// Commits this request to a cold start of `key` unless, counting the starts other
    /// requests committed to, the function's instances already fill a saturated
    /// machine: then the saturated patience to wait for one instead (decided under the
    /// demand lock, so that simultaneous requests do not all start one).
    fn commit_to_start<'a>(
        &'a self,
        key: &'a PoolKey,
        memory_mb: u32,
        may_hold_back: bool,
    ) -> Result<Counted<'a>, Patience> {
        let idle = self.idle_of(key);
        let share = cpu_millis(memory_mb, self.config.cpu_floor_millis);
        let machine = self.load.saturated(self.config.saturated_cpu_percent);
        let hold = self.demand(key, |d| {
            let instances = d.busy + d.starting + idle;
            let held = may_hold_back && saturated_for(instances, share, self.cores, machine);
            let p = match (d.run_ewma, d.start_ewma) {
                (Some(run), Some(start)) if held => patience(instances, run, start, true),
                _ => None,
            };
            if p.is_none() {
                d.starting += 1;
            }
            p
        });
        match hold {
            Some(p) => Err(p),
            None => Ok(Counted::raised(self, key, |d| &mut d.starting)),
        }
    }

    /// Idle instances of one revision.
    fn idle_of(&self, key: &PoolKey) -> usize {
        lock(&self.idle).get(key).map_or(0, Vec::len)
    }

    /// Which limit refused a request needing `claim`, then the whole account.
    fn describe_limit(&self, claim: Claim, no_room: bool) -> String {
        let limit = {
            let cap = lock(&self.capacity);
            let c = &self.config;
            if !no_room {
                format!(
                    "all {} cold-start slots stayed busy",
                    c.max_concurrent_starts.max(1)
                )
            } else if cap.instances >= c.max_instances {
                "instance limit reached".to_string()
            } else if cap.memory_mb + claim.memory_mb > c.memory_budget_mb {
                format!("memory budget full ({} MB more needed)", claim.memory_mb)
            } else if cap.tmp_mb + claim.tmp_mb > c.tmp_disk_budget_mb {
                format!("/tmp disk budget full ({} MB more needed)", claim.tmp_mb)
            } else {
                "no room".to_string()
            }
        };
        format!("{limit}: {}", self.describe_capacity())
    }

    fn describe_capacity(&self) -> String {
        let cap = lock(&self.capacity);
        let mut out = format!(
            "{} of {} instances, {} of {} MB of memory",
            cap.instances, self.config.max_instances, cap.memory_mb, self.config.memory_budget_mb
        );
        if self.config.tmp_disk_budget_mb != u64::MAX {
            out.push_str(&format!(
                ", {} of {} MB of /tmp disk",
                cap.tmp_mb, self.config.tmp_disk_budget_mb
            ));
        }
        out
    }

    /// Starts an instance for which capacity was claimed; gives the claim back on failure.
    /// Which pre-warmed pool could serve `f`, if any.
    fn prewarm_key(&self, f: &FunctionSpec, kind: &RuntimeKind) -> Option<PrewarmKey> {
        if self.config.prewarm_per_runtime == 0 || !self.launcher.supports_prewarm() {
            return None;
        }
        if !matches!(kind, RuntimeKind::Python { .. } | RuntimeKind::Node { .. }) {
            return None;
        }
        if f.env.iter().any(|(k, _)| affects_startup(k)) {
            return None;
        }
        Some(PrewarmKey {
            runtime: f.runtime.clone(),
            tmp_mb: f.tmp_mb,
        })
    }

    fn resources(&self, memory_mb: u32, tmp_mb: u32) -> Resources {
        Resources {
            memory_mb,
            tmp_mb,
            cpu_millis: cpu_millis(memory_mb, self.config.cpu_floor_millis),
            cpu_burst: self.config.cpu_burst,
            max_pids: self.config.max_pids,
            max_open_files: self.config.max_open_files,
        }
    }

    /// Starts an instance for which capacity was claimed, from a pre-warmed one when
    /// possible; gives the claim back on failure.
    async fn start(
        self: &Arc<Self>,
        f: &FunctionSpec,
        kind: &RuntimeKind,
        provisioned: bool,
    ) -> Result<Instance, AcquireError> {
        self.await_runtime_dir(&f.runtime, kind).await;
        if let Some(key) = self.prewarm_key(f, kind) {
            let taken = {
                let mut pools = lock(&self.prewarmed);
                let pool = pools.entry(key.clone()).or_default();
                pool.last_wanted = Some(Instant::now());
                pool.ready.pop()
            };
            self.fill_prewarm(&key, kind);
            if let Some(Ready {
                instance,
                owner,
                charged,
            }) = taken
            {
                // The caller claimed capacity for this instance; the pre-warmed one's
                // own claim goes back.
                self.release_capacity(charged);
                *lock(&owner) = Some((f.namespace.clone(), f.name.clone()));
                let env = self.function_env(f, &instance.id, provisioned);
                let assigned = instance
                    .assign(
                        &f.code_dir,
                        &f.layer_dirs,
                        self.resources(f.memory_mb, f.tmp_mb),
                        &f.handler,
                        &env,
                        self.config.init_timeout,
                    )
                    .await;
                match assigned {
                    Ok(instance) => {
                        tracing::debug!(function = %f.name, instance = %instance.id, init_ms = instance.init_duration.as_millis() as u64, "pre-warmed instance assigned");
                        return Ok(instance);
                    }
                    Err(StartError::Launch(msg)) => {
                        tracing::warn!(function = %f.name, error = %msg, "pre-warmed instance unusable; starting a fresh one");
                    }
                    Err(e) => {
                        self.release_capacity(Claim::of(f));
                        self.released.notify_waiters();
                        return Err(e.into());
                    }
                }
            }
        }
        let spec = self.launch_spec(f, kind, provisioned);
        let router = self.logs.clone();
        let (ns, name) = (f.namespace.clone(), f.name.clone());
        let consumer: LogConsumer = Arc::new(move |line| router(&ns, &name, line));
        match Instance::start(
            self.launcher.clone(),
            spec,
            self.config.init_timeout,
            consumer,
            self.config.max_output_per_invocation,
        )
        .await
        {
            Ok(instance) => {
                tracing::debug!(function = %f.name, instance = %instance.id, init_ms = instance.init_duration.as_millis() as u64, provisioned, "instance started");
                Ok(instance)
            }
            Err(e) => {
                self.release_capacity(Claim::of(f));
                self.released.notify_waiters();
                Err(e.into())
            }
        }
    }

    /// Builds ahead, off the request path, what a cold start of `f` would use: its
    /// runtime's pre-warmed pool (when it takes one), and the zygote and sandboxes of
    /// its shape. Call when a function is created or changed, so that its first invoke
    /// (and a fresh server's first) does not build them.
    pub fn prepare(self: &Arc<Self>, f: &FunctionSpec) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let Some(kind) = self.catalog.get(&f.runtime).cloned() else {
            return;
        };
        if let Some(key) = self.prewarm_key(f, &kind) {
            lock(&self.prewarmed)
                .entry(key.clone())
                .or_default()
                .last_wanted = Some(Instant::now());
            self.fill_prewarm(&key, &kind);
        }
        let mgr = self.clone();
        let f = f.clone();
        tokio::spawn(async move {
            // The runtime's files may still be on their way (the pinned Python SDK).
            mgr.await_runtime_dir(&f.runtime, &kind).await;
            // Only the shape: claiming a held sandbox here would waste it.
            let spec = mgr.spec_of_shape(&f, &kind);
            mgr.launcher.prepare(&spec);
        });
    }

    /// Tops up a pre-warmed pool in the background (off the request path).
    fn fill_prewarm(self: &Arc<Self>, key: &PrewarmKey, kind: &RuntimeKind) {
        {
            let mut pools = lock(&self.prewarmed);
            let pool = pools.entry(key.clone()).or_default();
            if pool.filling || pool.ready.len() >= self.config.prewarm_per_runtime {
                return;
            }
            pool.filling = true;
        }
        let mgr = self.clone();
        let (key, kind) = (key.clone(), kind.clone());
        tokio::spawn(async move { mgr.fill_prewarm_task(key, kind).await });
    }

    async fn fill_prewarm_task(self: Arc<Self>, key: PrewarmKey, kind: RuntimeKind) {
        self.await_runtime_dir(&key.runtime, &kind).await;
        loop {
            let wanted = {
                let pools = lock(&self.prewarmed);
                pools.get(&key).is_some_and(|p| {
                    p.ready.len() < self.config.prewarm_per_runtime
                        && p.last_wanted
                            .is_some_and(|t| t.elapsed() < self.config.keep_alive)
                })
            };
            if !wanted || self.closed.load(Ordering::Acquire) {
                break;
            }
            // Requests come first: if every start slot is busy, or a request is waiting
            // for room, the reaper retries later.
            if self.short_of_room.load(Ordering::Acquire) > 0 {
                break;
            }
            let Ok(permit) = self.starts.clone().try_acquire_owned() else {
                break;
            };
            if !self.claim_capacity(Claim::prewarmed(&key), None).await {
                break;
            }
            let owner: LogOwner = Arc::new(Mutex::new(None));
            let consumer: LogConsumer = {
                let owner = owner.clone();
                let router = self.logs.clone();
                Arc::new(move |line: OutputLine| match lock(&owner).clone() {
                    Some((ns, name)) => router(&ns, &name, line),
                    None => tracing::debug!(line = %line.line, "pre-warmed runtime output"),
                })
            };
            let spec = self.prewarm_spec(&key, &kind);
            let started = Instance::prewarm(
                self.launcher.clone(),
                spec,
                self.config.init_timeout,
                consumer,
                self.config.max_output_per_invocation,
            )
            .await;
            drop(permit);
            match started {
                Ok(instance) if self.closed.load(Ordering::Acquire) => {
                    self.retire_prewarmed(instance, Claim::prewarmed(&key))
                        .await;
                    break;
                }
                Ok(instance) => {
                    let mut pools = lock(&self.prewarmed);
                    pools.entry(key.clone()).or_default().ready.push(Ready {
                        instance,
                        owner,
                        charged: Claim::prewarmed(&key),
                    });
                    drop(pools);
                    self.released.notify_waiters();
                }
                Err(e) => {
                    self.release_capacity(Claim::prewarmed(&key));
                    tracing::warn!(runtime = %key.runtime, error = %e, "could not pre-warm an instance");
                    break;
                }
            }
        }
        if let Some(pool) = lock(&self.prewarmed).get_mut(&key) {
            pool.filling = false;
        }
    }

    /// Refills pools still in use and stops those unused for the keep-alive.
    async fn tend_prewarmed(self: &Arc<Self>) {
        let mut stale = Vec::new();
        let mut refill = Vec::new();
        {
            let mut pools = lock(&self.prewarmed);
            pools.retain(|key, pool| {
                let used = pool
                    .last_wanted
                    .is_some_and(|t| t.elapsed() < self.config.keep_alive);
                if used {
                    refill.push(key.clone());
                    return true;
                }
                stale.append(&mut pool.ready);
                pool.filling
            });
        }
        for ready in stale {
            self.retire_prewarmed(ready.instance, ready.charged).await;
        }
        for key in refill {
            if let Some(kind) = self.catalog.get(&key.runtime).cloned() {
                self.fill_prewarm(&key, &kind);
            }
        }
    }

    async fn retire_prewarmed(&self, instance: Instance, claim: Claim) {
        instance.destroy().await;
        self.release_capacity(claim);
        self.released.notify_waiters();
    }

    /// Stops one pre-warmed instance to make room; true if there was one.
    async fn evict_one_prewarmed(&self, why: Eviction) -> bool {
        let victim = lock(&self.prewarmed)
            .values_mut()
            .find_map(|p| p.ready.pop());
        match victim {
            Some(ready) => {
                tracing::info!(instance = %ready.instance.id, reason = why.label(), "evicting a pre-warmed instance");
                self.evictions[why as usize].fetch_add(1, Ordering::Relaxed);
                self.retire_prewarmed(ready.instance, ready.charged).await;
                true
            }
            None => false,
        }
    }

    fn prewarm_spec(&self, key: &PrewarmKey, kind: &RuntimeKind) -> LaunchSpec {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let instance_id = format!(
            "pw-{}-{}-{n}",
            key.runtime.replace(['.', '_'], "-"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let program = self.program(&key.runtime, kind);
        let mut env = self.base_env(&key.runtime);
        env.push(("TERN_PREWARM".to_string(), "1".to_string()));
        LaunchSpec {
            instance_id,
            program: program.exe,
            args: program.args,
            env,
            code_dir: self.empty_code_dir(),
            bootstrap_dir: self.config.bootstrap_dir.clone(),
            layer_dirs: Vec::new(),
            runtime_dir: program.runtime_dir,
            extra_ro_paths: program.extra_ro_paths,
            // A full CPU while it starts (in the background, behind requests for start
            // slots): a quarter of one made each refill take ~4x as long. Assignment
            // sets the function's own share.
            resources: Resources {
                cpu_millis: 1000,
                ..self.resources(PREWARM_MEMORY_MB, key.tmp_mb)
            },
            // Pre-warmed instances go to any namespace: never from a (per-namespace)
            // zygote.
            zygote: None,
        }
    }

    /// An empty directory shown at `/var/task` until a pre-warmed instance gets its code.
    fn empty_code_dir(&self) -> PathBuf {
        self.config.bootstrap_dir.join("empty-task")
    }

    /// Returns an instance after a request: back to the pool if it is still good.
    pub async fn release(&self, lease: Lease, reusable: bool) {
        let held = lease.handed_out.elapsed();
        let freed = self.demand(&lease.key, |d| {
            d.busy = d.busy.saturating_sub(1);
            d.run_ewma = ewma(d.run_ewma, held);
            d.freed.clone()
        });
        if !reusable || lease.instance.has_exited() || self.closed.load(Ordering::Acquire) {
            let claim = Claim::declared(&lease.instance);
            self.retire(lease.instance, lease.provisioned, &lease.key, claim)
                .await;
            return;
        }
        let mut provisioned = lease.provisioned;
        if provisioned {
            // Provisioned instances beyond the current request become ordinary warm ones.
            let mut prov = lock(&self.provisioned);
            let fkey = (lease.key.namespace.clone(), lease.key.name.clone());
            match prov.get_mut(&fkey) {
                Some(p) if p.spec.revision == lease.key.revision && p.live <= p.requested => {}
                Some(p) => {
                    if p.spec.revision == lease.key.revision {
                        p.live -= 1;
                    }
                    provisioned = false;
                }
                None => provisioned = false,
            }
        }
        let now = Instant::now();
        self.demand(&lease.key, |d| d.last_turnover = Some(now));
        self.park(&lease.instance);
        let charged = Claim::declared(&lease.instance);
        lock(&self.idle).entry(lease.key).or_default().push(Idle {
            instance: lease.instance,
            since: now,
            provisioned,
            charged,
        });
        // One instance came back: one waiter of this function can have it.
        freed.notify_one();
    }

    /// An instance about to join the idle list (and so not yet visible to takers).
    fn park(&self, instance: &Instance) {
        if self.config.freeze_idle {
            instance.park();
        }
    }

    /// Stops an instance that counted `claim` against the capacity.
    async fn retire(&self, instance: Instance, provisioned: bool, key: &PoolKey, claim: Claim) {
        if provisioned {
            let mut prov = lock(&self.provisioned);
            if let Some(p) = prov.get_mut(&(key.namespace.clone(), key.name.clone())) {
                if p.spec.revision == key.revision {
                    p.live = p.live.saturating_sub(1);
                }
            }
        }
        instance.destroy().await;
        self.release_capacity(claim);
        self.released.notify_waiters();
    }

    /// Stops the least recently used idle, non-provisioned instance (of a function other
    /// than `keep`'s, if given); true if one was stopped.
    async fn evict_one_idle(&self, keep: Option<&PoolKey>, why: Eviction) -> bool {
        let victim = {
            let mut idle = lock(&self.idle);
            let oldest = idle
                .iter()
                .filter(|(k, _)| Some(*k) != keep)
                .flat_map(|(k, v)| {
                    v.iter()
                        .enumerate()
                        .filter(|(_, i)| !i.provisioned)
                        .map(move |(pos, i)| (k.clone(), pos, i.since))
                })
                .min_by_key(|(_, _, since)| *since);
            oldest.and_then(|(k, pos, _)| {
                let list = idle.get_mut(&k)?;
                let inst = list.remove(pos);
                if list.is_empty() {
                    idle.remove(&k);
                }
                Some((k, inst))
            })
        };
        match victim {
            Some((key, v)) => {
                tracing::info!(
                    instance = %v.instance.id,
                    namespace = %key.namespace,
                    function = %key.name,
                    idle_s = v.since.elapsed().as_secs(),
                    memory_mb = v.charged.memory_mb,
                    reason = why.label(),
                    "evicting the least recently used idle instance"
                );
                self.evictions[why as usize].fetch_add(1, Ordering::Relaxed);
                let claim = v.charged;
                self.retire(v.instance, false, &key, claim).await;
                true
            }
            None => false,
        }
    }

    /// Counts each idle and pre-warmed instance by what it uses now, where the
    /// launcher can tell: the charge of its memory cgroup (at least 1 MB) and the host
    /// disk its /tmp holds, each at most what it declared. True if that lowered the
    /// count. Busy instances keep counting everything they declared: an idle one
    /// claims it again when it is handed out.
    ///
    /// The sweep measures every one (`all`); making room measures only those still
    /// counted at what they declared (not measured since they went idle).
    fn measure_idle(&self, all: bool) -> bool {
        let wanted = |instance: &Instance, charged: &Claim| {
            (all || *charged == Claim::declared(instance))
                .then(|| (instance.id.clone(), instance.usage_probe()))
        };
        // The cgroup and filesystem reads happen outside the locks.
        let mut probes: Vec<(String, UsageProbe)> = lock(&self.idle)
            .values()
            .flatten()
            .filter_map(|i| wanted(&i.instance, &i.charged))
            .collect();
        probes.extend(
            lock(&self.prewarmed)
                .values()
                .flat_map(|p| &p.ready)
                .filter_map(|r| wanted(&r.instance, &r.charged)),
        );
        let measured: HashMap<String, (Option<u64>, Option<u64>)> = probes
            .into_iter()
            .map(|(id, probe)| (id, (probe.memory_mb(), probe.tmp_disk_mb())))
            .filter(|(_, used)| *used != (None, None))
            .collect();
        if measured.is_empty() {
            return false;
        }
        let (mut from, mut to) = (Claim::ZERO, Claim::ZERO);
        let mut count = |instance: &Instance, charged: &mut Claim| {
            let Some(&(memory, tmp)) = measured.get(&instance.id) else {
                return;
            };
            let declared = Claim::declared(instance);
            let now = Claim {
                memory_mb: memory.map_or(charged.memory_mb, |m| m.clamp(1, declared.memory_mb)),
                tmp_mb: tmp.map_or(charged.tmp_mb, |t| t.min(declared.tmp_mb)),
            };
            from = from.plus(*charged);
            to = to.plus(now);
            *charged = now;
        };
        let mut idle = lock(&self.idle);
        for i in idle.values_mut().flatten() {
            count(&i.instance, &mut i.charged);
        }
        let mut prewarmed = lock(&self.prewarmed);
        for r in prewarmed.values_mut().flat_map(|p| &mut p.ready) {
            count(&r.instance, &mut r.charged);
        }
        // What they use is counted whether or not it fits.
        self.recharge(from, to, true);
        to.memory_mb < from.memory_mb || to.tmp_mb < from.tmp_mb
    }

    /// Under host memory pressure (less available than the configured floor), stops
    /// pre-warmed, then the least recently used idle instances, a few per sweep, until
    /// the pressure is gone.
    async fn relieve_host_memory(&self) {
        let floor = self.config.host_memory_floor_mb;
        if floor == 0 {
            return;
        }
        for _ in 0..16 {
            match crate::load::memory_available_mb() {
                Some(available) if available < floor => {}
                _ => return,
            }
            if !self.evict_one_prewarmed(Eviction::HostMemory).await
                && !self.evict_one_idle(None, Eviction::HostMemory).await
            {
                return;
            }
        }
    }

    /// Stops idle instances of a function (after an update or delete).
    pub async fn drain_function(&self, namespace: &str, name: &str) {
        let drained: Vec<(PoolKey, Idle)> = {
            let mut idle = lock(&self.idle);
            let keys: Vec<PoolKey> = idle
                .keys()
                .filter(|k| k.namespace == namespace && k.name == name)
                .cloned()
                .collect();
            keys.into_iter()
                .flat_map(|k| {
                    idle.remove(&k)
                        .unwrap_or_default()
                        .into_iter()
                        .map(move |i| (k.clone(), i))
                })
                .collect()
        };
        for (k, i) in drained {
            let claim = i.charged;
            self.retire(i.instance, i.provisioned, &k, claim).await;
        }
    }

    /// Stops idle instances older than the keep-alive (provisioned ones stay).
    pub async fn reap_idle(&self) {
        let expired: Vec<(PoolKey, Idle)> = {
            let mut idle = lock(&self.idle);
            let ttl = self.config.keep_alive;
            let mut out = Vec::new();
            idle.retain(|k, list| {
                let (old, fresh): (Vec<Idle>, Vec<Idle>) = list.drain(..).partition(|i| {
                    i.instance.has_exited() || (!i.provisioned && i.since.elapsed() >= ttl)
                });
                out.extend(old.into_iter().map(|i| (k.clone(), i)));
                *list = fresh;
                !list.is_empty()
            });
            out
        };
        {
            // Forget what was learnt about revisions with nothing left running.
            let idle = lock(&self.idle);
            // A record with a request waiting on it (holding its `freed`) stays.
            lock(&self.demand).retain(|k, d| {
                d.busy > 0 || idle.contains_key(k) || Arc::strong_count(&d.freed) > 1
            });
        }
        for (k, i) in expired {
            tracing::debug!(instance = %i.instance.id, "keep-alive expired");
            let claim = i.charged;
            self.retire(i.instance, i.provisioned, &k, claim).await;
        }
    }

    /// Runs the keep-alive reaper, the provisioned-instance keeper and the machine-load
    /// sampler until the manager is dropped.
    pub fn spawn_reaper(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let period =
            (self.config.keep_alive / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(mgr) = weak.upgrade() else { return };
                mgr.reap_idle().await;
                mgr.measure_idle(true);
                mgr.relieve_host_memory().await;
                mgr.fill_provisioned();
                mgr.tend_prewarmed().await;
            }
        });
        if self.config.freeze_idle {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::freezer::SWEEP_PERIOD);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(mgr) = weak.upgrade() else { return };
                    mgr.freeze_idle_instances();
                }
            });
        }
        if !(1..=100).contains(&self.config.saturated_cpu_percent) {
            // 0 (always saturated) and above 100 (never) need no sampling.
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(mgr) = weak.upgrade() else { return };
                // /proc/stat grows with the CPU count: read it off the async workers.
                let _ = tokio::task::spawn_blocking(move || mgr.load.sample()).await;
            }
        });
    }

    /// Freezes the idle instances whose runtimes have waited in `next` for
    /// [`crate::freezer::FREEZE_DELAY`] (the freezer's sweep).
    fn freeze_idle_instances(&self) {
        // The cgroup writes happen outside the pool's lock; a freezer taken meanwhile
        // is busy again and its own lock makes the freeze a no-op.
        let freezers: Vec<_> = lock(&self.idle)
            .values()
            .flatten()
            .map(|i| i.instance.freezer())
            .collect();
        for freezer in freezers {
            freezer.freeze_if_idle_for(crate::freezer::FREEZE_DELAY);
        }
    }

    /// Sets how many initialised instances of `f` to keep (0 removes the setting).
    /// Filling happens in the background; see [`InstanceManager::provisioned_state`].
    pub fn set_provisioned(self: &Arc<Self>, f: &FunctionSpec, requested: usize) {
        let fkey = (f.namespace.clone(), f.name.clone());
        {
            let mut prov = lock(&self.provisioned);
            if requested == 0 {
                prov.remove(&fkey);
            } else {
                let entry = prov.entry(fkey.clone()).or_insert_with(|| Provisioned {
                    spec: f.clone(),
                    requested,
                    live: 0,
                    status: ProvisionedStatus::InProgress,
                    filling: false,
                });
                if entry.spec.revision != f.revision {
                    entry.spec = f.clone();
                    entry.live = 0;
                }
                entry.requested = requested;
                entry.status = if entry.live >= requested {
                    ProvisionedStatus::Ready
                } else {
                    ProvisionedStatus::InProgress
                };
            }
        }
        // Idle instances no longer covered by a setting become ordinary warm ones.
        {
            let mut prov = lock(&self.provisioned);
            let mut idle = lock(&self.idle);
            let mut demoted_current = 0;
            for (k, list) in idle.iter_mut() {
                if k.namespace != f.namespace || k.name != f.name {
                    continue;
                }
                let current = prov.get(&fkey).filter(|p| p.spec.revision == k.revision);
                let keep = current.map(|p| p.requested).unwrap_or(0);
                let mut kept = 0;
                for i in list.iter_mut().filter(|i| i.provisioned) {
                    if kept < keep {
                        kept += 1;
                    } else {
                        i.provisioned = false;
                        i.since = Instant::now();
                        if current.is_some() {
                            demoted_current += 1;
                        }
                    }
                }
            }
            if let Some(p) = prov.get_mut(&fkey) {
                p.live = p.live.saturating_sub(demoted_current);
            }
        }
        self.fill_provisioned();
    }

    pub fn provisioned_state(&self, namespace: &str, name: &str) -> Option<ProvisionedState> {
        let prov = lock(&self.provisioned);
        let p = prov.get(&(namespace.to_string(), name.to_string()))?;
        let key = PoolKey::of(&p.spec);
        let available = lock(&self.idle)
            .get(&key)
            .map(|l| l.iter().filter(|i| i.provisioned).count())
            .unwrap_or(0);
        Some(ProvisionedState {
            requested: p.requested,
            allocated: p.live.min(p.requested),
            available: available.min(p.requested),
            status: p.status.clone(),
        })
    }

    /// Starts missing provisioned instances in the background, one function at a time.
    fn fill_provisioned(self: &Arc<Self>) {
        let work: Vec<(FunctionSpec, usize)> = {
            let mut prov = lock(&self.provisioned);
            prov.values_mut()
                .filter(|p| !p.filling && p.live < p.requested)
                .map(|p| {
                    p.filling = true;
                    (p.spec.clone(), p.requested - p.live)
                })
                .collect()
        };
        for (spec, missing) in work {
            let mgr = self.clone();
            tokio::spawn(async move { mgr.fill_one(spec, missing).await });
        }
    }

    async fn fill_one(self: Arc<Self>, f: FunctionSpec, missing: usize) {
        let fkey = (f.namespace.clone(), f.name.clone());
        let mut failure = None;
        for _ in 0..missing {
            let still_wanted = lock(&self.provisioned)
                .get(&fkey)
                .is_some_and(|p| p.spec.revision == f.revision && p.live < p.requested);
            if !still_wanted {
                break;
            }
            let Some(kind) = self.catalog.get(&f.runtime).cloned() else {
                failure = Some(format!("runtime {} is not available", f.runtime));
                break;
            };
            let Ok(permit) = self.starts.clone().acquire_owned().await else {
                break;
            };
            if !self
                .claim_capacity(Claim::of(&f), Some(&PoolKey::of(&f)))
                .await
            {
                failure = Some(format!(
                    "not enough capacity on this server ({})",
                    self.describe_capacity()
                ));
                break;
            }
            let started = self.start(&f, &kind, true).await;
            drop(permit);
            match started {
                Ok(instance) if self.closed.load(Ordering::Acquire) => {
                    let claim = Claim::declared(&instance);
                    self.retire(instance, false, &PoolKey::of(&f), claim).await;
                    break;
                }
                Ok(instance) => {
                    let counted = {
                        let mut prov = lock(&self.provisioned);
                        match prov.get_mut(&fkey) {
                            Some(p) if p.spec.revision == f.revision => {
                                p.live += 1;
                                true
                            }
                            _ => false,
                        }
                    };
                    self.park(&instance);
                    lock(&self.idle)
                        .entry(PoolKey::of(&f))
                        .or_default()
                        .push(Idle {
                            charged: Claim::declared(&instance),
                            instance,
                            since: Instant::now(),
                            provisioned: counted,
                        });
                    self.released.notify_waiters();
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        let mut prov = lock(&self.provisioned);
        if let Some(p) = prov.get_mut(&fkey) {
            p.filling = false;
            if p.spec.revision == f.revision {
                p.status = match failure {
                    Some(reason) if p.live < p.requested => {
                        tracing::warn!(function = %f.name, %reason, "provisioned instances failed to start");
                        ProvisionedStatus::Failed(reason)
                    }
                    _ if p.live >= p.requested => ProvisionedStatus::Ready,
                    _ => ProvisionedStatus::InProgress,
                };
            }
        }
    }

    /// Stops every idle instance (shutdown).
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.provisioned).clear();
        let prewarmed: Vec<Ready> = lock(&self.prewarmed)
            .drain()
            .flat_map(|(_, p)| p.ready)
            .collect();
        for ready in prewarmed {
            self.retire_prewarmed(ready.instance, ready.charged).await;
        }
        let all: Vec<(PoolKey, Idle)> = lock(&self.idle)
            .drain()
            .flat_map(|(k, v)| v.into_iter().map(move |i| (k.clone(), i)))
            .collect();
        for (k, i) in all {
            let claim = i.charged;
            self.retire(i.instance, false, &k, claim).await;
        }
        // Starts already under way finish and are stopped by their tasks; requests still
        // running hand their instance back to be stopped. Wait a bounded time for both.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.live() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.live() > 0 {
            tracing::warn!(live = self.live(), "instances still running at shutdown");
        }
        self.launcher.shutdown();
    }

    fn launch_spec(&self, f: &FunctionSpec, kind: &RuntimeKind, provisioned: bool) -> LaunchSpec {
        let mut spec = self.spec_of_shape(f, kind);
        // A sandbox the launcher built ahead of time lends the instance its id.
        if let Some(id) = self.launcher.claim_held(&spec) {
            spec.instance_id = id;
        }
        spec.env = self.function_env(f, &spec.instance_id, provisioned);
        spec
    }

    /// `f`'s launch spec without its environment, and without claiming anything the
    /// launcher built ahead of time.
    fn spec_of_shape(&self, f: &FunctionSpec, kind: &RuntimeKind) -> LaunchSpec {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let instance_id = format!(
            "{}-{}-{n}",
            f.name.replace('_', "-"),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let program = self.program(&f.runtime, kind);
        LaunchSpec {
            instance_id,
            program: program.exe,
            args: program.args,
            env: Vec::new(),
            code_dir: f.code_dir.clone(),
            bootstrap_dir: self.config.bootstrap_dir.clone(),
            layer_dirs: f.layer_dirs.clone(),
            runtime_dir: program.runtime_dir,
            extra_ro_paths: program.extra_ro_paths,
            resources: self.resources(f.memory_mb, f.tmp_mb),
            zygote: self.zygote_spec(f, kind),
        }
    }

    /// The zygote that may fork `f`'s runtime: one per namespace, so functions of
    /// different tenants never share an interpreter's hash seed or memory layout.
    fn zygote_spec(&self, f: &FunctionSpec, kind: &RuntimeKind) -> Option<ZygoteSpec> {
        if !self.config.zygote
            || !matches!(kind, RuntimeKind::Python { .. })
            || f.env.iter().any(|(k, _)| affects_startup(k))
        {
            return None;
        }
        Some(ZygoteSpec {
            key: f.namespace.clone(),
            env: self.base_env(&f.runtime),
            program: self
                .config
                .bootstrap_dir
                .join("python")
                .join("bootstrap.py"),
        })
    }

    /// Waits until whether `runtime` has an SDK is known, so that no instance is built
    /// without the SDK its runtime is about to get (see [`crate::python_sdk`]).
    async fn await_runtime_dir(&self, runtime: &str, kind: &RuntimeKind) {
        if matches!(kind, RuntimeKind::Python { .. }) {
            self.config.python_sdk.dir_for(runtime).await;
        }
    }

    /// How a runtime's process starts.
    fn program(&self, runtime: &str, kind: &RuntimeKind) -> Program {
        match kind {
            RuntimeKind::Python { exe, prefix } => Program {
                exe: exe.clone(),
                // -S: no `site`, so none of the host's site-packages or .pth files; the
                // bootstrap sets Lambda's sys.path. The zygote runs with the same flags.
                args: ZYGOTE_PYTHON_FLAGS
                    .iter()
                    .map(|f| f.to_string())
                    .chain([PYTHON_IN_SANDBOX.to_string()])
                    .collect(),
                extra_ro_paths: extra_tree(prefix),
                runtime_dir: self.config.python_sdk.ready_dir(runtime),
            },
            RuntimeKind::Node { exe, prefix } => Program {
                exe: exe.clone(),
                args: vec![NODE_IN_SANDBOX.to_string()],
                extra_ro_paths: extra_tree(prefix),
                runtime_dir: None,
            },
            RuntimeKind::Provided => Program {
                exe: PathBuf::from("/var/task/bootstrap"),
                args: Vec::new(),
                extra_ro_paths: Vec::new(),
                runtime_dir: None,
            },
        }
    }

    /// The variables every process of `runtime` starts with, whatever its function.
    fn base_env(&self, runtime: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("AWS_REGION", self.config.region.clone()),
            ("AWS_DEFAULT_REGION", self.config.region.clone()),
            ("LAMBDA_TASK_ROOT", "/var/task".to_string()),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime".to_string()),
            ("PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin".to_string()),
            ("LANG", "en_US.UTF-8".to_string()),
            ("TZ", ":UTC".to_string()),
            ("HOME", "/tmp".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some(node_path) = node_path(runtime) {
            env.push(("NODE_PATH".to_string(), node_path));
        }
        // Functions reach no API yet (loopback-only network). When egress to tern's
        // listener is configured for a function, this is where AWS_ENDPOINT_URL_LAMBDA
        // goes, so SDKs inside call tern.
        env
    }

    /// The complete environment of a function's runtime: Lambda's variables, then the
    /// function's own (which win).
    fn function_env(
        &self,
        f: &FunctionSpec,
        instance_id: &str,
        provisioned: bool,
    ) -> Vec<(String, String)> {
        let date = time::OffsetDateTime::now_utc().date();
        let stream = format!(
            "{:04}/{:02}/{:02}/[{}]{}",
            date.year(),
            u8::from(date.month()),
            date.day(),
            f.version,
            instance_id
        );
        let mut env = self.base_env(&f.runtime);
        env.extend(
            [
                ("AWS_LAMBDA_FUNCTION_NAME", f.name.clone()),
                ("AWS_LAMBDA_FUNCTION_VERSION", f.version.clone()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string()),
                (
                    "AWS_LAMBDA_LOG_GROUP_NAME",
                    format!("/aws/lambda/{}", f.name),
                ),
                ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
                (
                    "AWS_LAMBDA_INITIALIZATION_TYPE",
                    if provisioned {
                        "provisioned-concurrency"
                    } else {
                        "on-demand"
                    }
                    .to_string(),
                ),
                ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", f.runtime)),
                ("_HANDLER", f.handler.clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
        );
        for (k, v) in &f.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        env
    }
}

/// How a runtime's process starts: [`LaunchSpec`]'s program fields.
struct Program {
    exe: PathBuf,
    args: Vec<String>,
    extra_ro_paths: Vec<PathBuf>,
    runtime_dir: Option<PathBuf>,
}

/// Lambda's NODE_PATH for a Node runtime (`nodejs20.x`), without its `/var/runtime`
/// entries (tern's Node runtimes ship no SDK): layers' `/opt/nodejs/...`, then the code.
fn node_path(runtime: &str) -> Option<String> {
    let major = runtime.strip_prefix("nodejs")?.strip_suffix(".x")?;
    Some(format!(
        "/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:/var/task"
    ))
}

/// Interpreter trees outside the system directories must be shown to the sandbox.
fn extra_tree(prefix: &std::path::Path) -> Vec<PathBuf> {
    const SYSTEM: &[&str] = &["/usr", "/bin", "/lib", "/lib64"];
    if SYSTEM.iter().any(|s| prefix.starts_with(s)) || prefix == std::path::Path::new("/") {
        Vec::new()
    } else {
        vec![prefix.to_path_buf()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_machine_holds_back_scale_out_only_once_the_instances_could_use_every_cpu() {
        // 128 MB instances get a quarter of a CPU: on two cores, eight of them can.
        assert!(!saturated_for(2, 250, 2, true));
        assert!(!saturated_for(7, 250, 2, true));
        assert!(saturated_for(8, 250, 2, true));
        assert!(saturated_for(2, 1000, 2, true));
        assert!(!saturated_for(100, 1000, 2, false));
    }

    #[test]
    fn cpu_share_is_proportional_with_a_floor() {
        assert_eq!(cpu_millis(1769, 250), 1000);
        assert_eq!(cpu_millis(3538, 250), 2000);
        assert_eq!(cpu_millis(128, 250), 250);
    }

    #[test]
    fn patience_only_for_requests_shorter_than_a_cold_start() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        // Nothing busy to wait for, or requests at least as long as a cold start: start.
        assert_eq!(patience(0, us(300), ms(5), true), None);
        assert_eq!(patience(3, ms(5), ms(5), true), None);
        assert_eq!(patience(3, ms(400), ms(40), true), None);
        // Saturated: wait up to four cold starts, within 5..=200 ms.
        assert_eq!(
            patience(3, us(300), ms(5), true),
            Some(Patience {
                wait: ms(20),
                stall: ms(2) + us(500),
            })
        );
        assert_eq!(
            patience(3, ms(1), ms(80), true).map(|p| p.wait),
            Some(ms(200))
        );
        assert_eq!(
            patience(3, us(100), us(800), true).map(|p| p.wait),
            Some(ms(5))
        );
        // Not saturated: only much shorter requests, three of them, at most half a
        // cold start.
        assert_eq!(patience(3, ms(2), ms(5), false), None);
        assert_eq!(
            patience(3, us(300), ms(5), false),
            Some(Patience {
                wait: us(900),
                stall: ms(2) + us(500),
            })
        );
        assert_eq!(
            patience(3, ms(1), ms(5), false).map(|p| p.wait),
            Some(ms(2) + us(500))
        );
        // Stalled means four requests' time, half a cold start or 2 ms, the longest.
        assert_eq!(
            patience(1, ms(10), ms(200), true).map(|p| p.stall),
            Some(ms(100))
        );
        assert_eq!(
            patience(1, ms(10), ms(50), true).map(|p| p.stall),
            Some(ms(40))
        );
        assert_eq!(
            patience(1, us(10), us(100), true).map(|p| p.stall),
            Some(ms(2))
        );
    }

    #[test]
    fn node_path_is_lambdas_without_the_runtime_sdk() {
        assert_eq!(
            node_path("nodejs20.x").as_deref(),
            Some("/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/task")
        );
        assert_eq!(node_path("python3.11"), None);
        assert_eq!(node_path("provided.al2023"), None);
    }

    #[test]
    fn system_interpreters_need_no_extra_mounts() {
        assert!(extra_tree(std::path::Path::new("/usr")).is_empty());
        assert_eq!(
            extra_tree(std::path::Path::new("/opt/py")),
            vec![PathBuf::from("/opt/py")]
        );
    }
}
