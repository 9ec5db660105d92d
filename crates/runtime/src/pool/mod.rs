//! The instance manager: per-function pools of warm instances, cold starts, keep-alive,
//! scale to zero, provisioned instances and the server's capacity.
//!
//! Instances are keyed by (namespace, function, revision); an update bumps the revision
//! so old instances are never reused. Idle instances are reused last-in-first-out (the
//! warmest first; provisioned ones before any other) and stopped after the keep-alive.
//! Cold starts run a few at a time; a request that finds no idle instance and no room
//! to start one waits a bounded time for one to be released, then gets `AtCapacity`.
//!
//! This module schedules (acquire, release, idle lists, reaping, shutdown); the rest is
//! in one module per job: `capacity` (the account and eviction), `demand` (what is
//! learnt of each function's requests, and when a request waits instead of starting),
//! `provisioned` (provisioned concurrency) and `launch_env` (what an instance is
//! launched with).
//!
//! What is built ahead of time (sandboxes, runtimes started before their instance is
//! known, instances forked from a post-init template) is the launcher's: a cold start
//! asks it for an instance of its shape ([`Launcher::claim_held`], then
//! [`Launcher::launch`]) and does not know which of these served it.

mod capacity;
mod demand;
mod launch_env;
mod provisioned;

pub use launch_env::cpu_millis;
pub use provisioned::{ProvisionedState, ProvisionedStatus};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_sandbox::Launcher;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::catalog::{RuntimeCatalog, RuntimeKind};
use crate::credentials::{CredentialGuard, InstanceCredentials};
use crate::instance::{Instance, StartError};
use crate::load::MachineLoad;
use crate::output::{LogConsumer, OutputLine};
use crate::python_sdk::PythonSdk;
use capacity::{Capacity, Claim, ShortOfRoom};
use demand::{ewma, Counted, Demand};
use provisioned::Provisioned;

/// Receives every output line of every instance with its namespace and function.
pub type LogRouter = Arc<dyn Fn(&str, &str, OutputLine) + Send + Sync>;

/// Settings of the instance manager (part of the server config).
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub keep_alive: Duration,
    pub init_timeout: Duration,
    /// Server-wide cap on live instances (and sandboxes built ahead).
    pub max_instances: usize,
    /// Server-wide cap on the memory counted for live instances: busy and starting
    /// ones at their MemorySize, idle ones (and what the launcher built ahead) at their
    /// measured use.
    pub memory_budget_mb: u64,
    /// Server-wide cap on the /tmp disk counted for live instances, in MB: busy ones at
    /// their EphemeralStorage, idle ones at what their /tmp holds (`u64::MAX`: no
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
    /// The CFS period of an instance once its start-up is over (its start-up runs over
    /// 100 ms, as one burst): a request that finds its quota spent waits at most this
    /// long for the next slice.
    pub warm_cpu_period: Duration,
    /// How long an instance's start-up runs on a full core before it gets its share
    /// (zero: its share from the start).
    pub start_cpu_boost: Duration,
    /// Share of the machine's CPU time (percent, over the last few 50 ms samples) at
    /// and above which a request for a function whose requests are shorter than its
    /// cold starts waits for a busy instance instead of starting another. 0 means
    /// always, above 100 never.
    pub saturated_cpu_percent: u32,
    /// The pinned boto3 and botocore of each Python runtime (shown at `/var/runtime`).
    pub python_sdk: Arc<PythonSdk>,
    /// Who gives instances of functions that may call tern their credentials; `None`:
    /// such functions cannot start.
    pub credentials: Option<Arc<dyn InstanceCredentials>>,
}

impl std::fmt::Debug for dyn InstanceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceCredentials")
    }
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
            zygote: true,
            freeze_idle: true,
            host_memory_floor_mb: 0,
            cpu_burst: true,
            warm_cpu_period: Duration::from_millis(10),
            start_cpu_boost: Duration::from_millis(500),
            saturated_cpu_percent: 85,
            python_sdk: PythonSdk::off(),
            credentials: None,
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
    /// Start instances from a post-init template of this revision where the launcher
    /// can (Lambda's `SnapStart: {ApplyOn: PublishedVersions}`, honoured on `$LATEST`).
    pub snap_start: bool,
    /// The network the function's sandboxes get.
    pub network: tern_sandbox::SandboxNetwork,
}

impl FunctionSpec {
    /// What names the function in the launcher (the owner of its sandboxes' network
    /// counters).
    pub fn owner_name(namespace: &str, name: &str) -> String {
        format!("{namespace}/{name}")
    }

    /// What names one version's post-init template in the launcher.
    pub fn template_name(namespace: &str, name: &str, version: &str) -> String {
        format!("{namespace}/{name}:{version}")
    }

    fn unit(&self) -> Unit {
        (
            self.namespace.clone(),
            self.name.clone(),
            self.version.clone(),
        )
    }
}

/// (namespace, function, version): what runs as instances of its own, with its own
/// provisioned concurrency. `$LATEST` and each published version are apart.
type Unit = (String, String, String);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    namespace: String,
    name: String,
    version: String,
    revision: u64,
}

impl PoolKey {
    fn of(f: &FunctionSpec) -> Self {
        PoolKey {
            namespace: f.namespace.clone(),
            name: f.name.clone(),
            version: f.version.clone(),
            revision: f.revision,
        }
    }

    fn unit(&self) -> Unit {
        (
            self.namespace.clone(),
            self.name.clone(),
            self.version.clone(),
        )
    }

    fn is_of(&self, namespace: &str, name: &str, version: Option<&str>) -> bool {
        self.namespace == namespace
            && self.name == name
            && version.is_none_or(|v| self.version == v)
    }
}

/// The /tmp disk budget, what live instances count against it (busy ones their
/// EphemeralStorage, idle ones what their /tmp holds) and what their /tmp filesystems
/// hold right now.
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

/// An idle instance taken out of its list while room is made for it: put back when
/// the request is cancelled meanwhile, waking the waiters (the instance is theirs to
/// take again).
struct PutBack<'a> {
    manager: &'a InstanceManager,
    key: &'a PoolKey,
    item: Option<Idle>,
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            lock(&self.manager.idle)
                .entry(self.key.clone())
                .or_default()
                .push(item);
            self.manager.released.notify_waiters();
        }
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

/// A request's place in line for a start slot.
type SlotWait = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>>
            + Send,
    >,
>;

pub struct InstanceManager {
    config: PoolConfig,
    launcher: Arc<dyn Launcher>,
    catalog: RuntimeCatalog,
    logs: LogRouter,
    idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    capacity: Mutex<Capacity>,
    provisioned: Mutex<HashMap<Unit, Provisioned>>,
    demand: Mutex<HashMap<PoolKey, Demand>>,
    load: MachineLoad,
    starts: Arc<Semaphore>,
    /// Signalled whenever an instance is released or retired.
    released: Notify,
    /// Set by shutdown: background starts stop, and what they started is stopped.
    closed: std::sync::atomic::AtomicBool,
    /// CPUs of the machine (what the saturation rule compares instances' shares with).
    cores: usize,
    /// Requests waiting because the server had no room for them: building ahead waits
    /// too, so that refills never take the room a request is waiting for.
    short_of_room: AtomicUsize,
    /// Set while the host's available memory is below `host_memory_floor_mb`: nothing
    /// is built ahead then.
    host_memory_short: std::sync::atomic::AtomicBool,
    /// Builds ahead of time under way in the launcher (at most
    /// [`InstanceManager::refill_parallelism`]).
    refilling: AtomicUsize,
    /// Idle instances stopped early, by [`Eviction`].
    evictions: [AtomicU64; 2],
    next_id: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl InstanceManager {
    pub fn new(
        config: PoolConfig,
        launcher: Arc<dyn Launcher>,
        catalog: RuntimeCatalog,
        logs: LogRouter,
    ) -> Arc<Self> {
        let starts = Arc::new(Semaphore::new(config.max_concurrent_starts.max(1)));
        let manager = Arc::new(InstanceManager {
            config,
            launcher,
            catalog,
            logs,
            idle: Mutex::new(HashMap::new()),
            capacity: Mutex::new(Capacity::default()),
            provisioned: Mutex::new(HashMap::new()),
            demand: Mutex::new(HashMap::new()),
            load: MachineLoad::default(),
            starts,
            released: Notify::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            short_of_room: AtomicUsize::new(0),
            host_memory_short: std::sync::atomic::AtomicBool::new(false),
            refilling: AtomicUsize::new(0),
            evictions: Default::default(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            next_id: AtomicUsize::new(0),
        });
        // What the launcher builds ahead of time counts in this account too.
        manager
            .launcher
            .set_capacity_account(Arc::new(capacity::BuiltAheadAccount(Arc::downgrade(
                &manager,
            ))));
        manager
    }

    pub fn catalog(&self) -> &RuntimeCatalog {
        &self.catalog
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Runtimes the launcher started ahead of time, and instances it forked ahead from
    /// templates, ready for a cold start.
    pub fn prewarmed_count(&self) -> usize {
        self.launcher.started_ahead_count()
    }

    /// Makes `networks` the private networks sandboxes may be attached to.
    pub fn set_private_networks(
        &self,
        networks: &[tern_sandbox::PrivateNetwork],
    ) -> Result<(), String> {
        self.launcher.set_private_networks(networks)
    }

    /// Connections refused by the egress policy per function (`namespace/function`),
    /// since the server started.
    pub fn network_refusals(&self) -> Vec<(String, u64)> {
        self.launcher.network_refusals()
    }

    /// What the launcher built ahead and keeps waiting (sandboxes, runtimes started
    /// ahead, instances forked ahead, post-init templates), as the account counts it.
    pub fn built_ahead(&self) -> usize {
        let cap = lock(&self.capacity);
        cap.built_ahead + cap.templates
    }

    /// Live instances (idle and busy).
    pub fn live(&self) -> usize {
        lock(&self.capacity).instances
    }

    /// Idle instances of one function (all versions and revisions).
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
            if picked.instance.has_exited() || picked.instance.credentials_expiring() {
                let claim = picked.charged;
                self.retire(picked.instance, picked.provisioned, key, claim)
                    .await;
                continue;
            }
            let declared = Claim::declared(&picked.instance);
            if !self.recharge(picked.charged, declared, false) {
                // Making room awaits: should the request go away meanwhile, the guard
                // puts the instance back rather than losing it (and its room).
                let mut held = PutBack {
                    manager: self,
                    key,
                    item: Some(picked),
                };
                loop {
                    let charged = held.item.as_ref().expect("held").charged;
                    if self.recharge(charged, declared, false) {
                        break;
                    }
                    if !self.make_room(key).await {
                        // No room for its MemorySize: back to idle as it was, and the
                        // request waits for room as a cold start would. Nothing changed
                        // for the other waiters, so none is woken: a wake-up here had
                        // every waiter retry, fail and wake the others again, forever.
                        if let Some(item) = held.item.take() {
                            lock(&self.idle).entry(key.clone()).or_default().push(item);
                        }
                        return None;
                    }
                }
                let taken = held.item.take().expect("held");
                return Some(self.hand_out(taken, key));
            }
            return Some(self.hand_out(picked, key));
        }
    }

    /// An idle instance charged its whole size again, as a lease.
    fn hand_out(&self, picked: Idle, key: &PoolKey) -> Lease {
        picked.instance.unpark();
        Lease {
            instance: picked.instance,
            key: key.clone(),
            cold: false,
            provisioned: picked.provisioned,
            handed_out: Instant::now(),
        }
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

    /// Idle instances of one revision.
    fn idle_of(&self, key: &PoolKey) -> usize {
        lock(&self.idle).get(key).map_or(0, Vec::len)
    }

    /// Issues the credentials of an instance of `f` that may call tern, into its
    /// environment; the guard revokes them when the instance goes.
    fn credentials_for(
        &self,
        f: &FunctionSpec,
        spec: &mut tern_sandbox::LaunchSpec,
    ) -> Result<Option<CredentialGuard>, AcquireError> {
        if !f.network.api {
            return Ok(None);
        }
        let issuer = self.config.credentials.clone().ok_or_else(|| {
            StartError::Launch(
                "this server gives functions no credentials for its API (function networking is off)"
                    .into(),
            )
        })?;
        let env = issuer
            .issue(&f.namespace, &spec.instance_id)
            .map_err(StartError::Launch)?;
        spec.env.extend(env);
        Ok(Some(CredentialGuard::new(issuer, &spec.instance_id)))
    }

    /// Starts an instance for which capacity was claimed (from what the launcher built
    /// ahead, where it has something of the shape); gives the claim back on failure.
    async fn start(
        self: &Arc<Self>,
        f: &FunctionSpec,
        kind: &RuntimeKind,
        provisioned: bool,
    ) -> Result<Instance, AcquireError> {
        self.await_runtime_dir(&f.runtime, kind).await;
        let mut spec = self.launch_spec(f, kind, provisioned);
        let credentials = match self.credentials_for(f, &mut spec) {
            Ok(guard) => guard,
            Err(e) => {
                self.release_capacity(Claim::of(f));
                self.released.notify_waiters();
                return Err(e);
            }
        };
        let router = self.logs.clone();
        let (ns, name) = (f.namespace.clone(), f.name.clone());
        let consumer: LogConsumer = Arc::new(move |line| router(&ns, &name, line));
        match Instance::start(
            self.launcher.clone(),
            spec,
            self.start_boost(f.memory_mb, f.tmp_mb),
            self.config.init_timeout,
            consumer,
            self.config.max_output_per_invocation,
        )
        .await
        {
            Ok(mut instance) => {
                if let Some(guard) = credentials {
                    instance.hold_credentials(guard);
                }
                tracing::debug!(function = %f.name, instance = %instance.id, init_ms = instance.init_duration.as_millis() as u64, provisioned, served_by = instance.served_by.label(), "instance started");
                self.enter_warm_phase(&instance);
                Ok(instance)
            }
            Err(e) => {
                self.release_capacity(Claim::of(f));
                self.released.notify_waiters();
                Err(e.into())
            }
        }
    }

    /// Builds ahead, off the request path, what a cold start of `f` would use: the
    /// zygote, a runtime and sandboxes of its shape (and its template, if it takes one).
    /// Call when a function is created or changed, so that its first invoke (and a
    /// fresh server's first) does not build them.
    pub fn prepare(self: &Arc<Self>, f: &FunctionSpec) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let Some(kind) = self.catalog.get(&f.runtime).cloned() else {
            return;
        };
        let mgr = self.clone();
        let f = f.clone();
        tokio::spawn(async move {
            // The runtime's files may still be on their way (the pinned Python SDK).
            mgr.await_runtime_dir(&f.runtime, &kind).await;
            // Only the shape: claiming a held sandbox here would waste it. A template
            // runs the function's init, so it takes the function's environment too.
            let mut spec = mgr.spec_of_shape(&f, &kind);
            if spec.template.is_some() {
                spec.env = mgr.function_env(&f, &spec.instance_id, false);
            }
            mgr.launcher.prepare(&spec);
        });
    }

    /// Returns an instance after a request: back to the pool if it is still good.
    pub async fn release(&self, lease: Lease, reusable: bool) {
        let held = lease.handed_out.elapsed();
        let freed = self.demand(&lease.key, |d| {
            d.busy = d.busy.saturating_sub(1);
            d.run_ewma = ewma(d.run_ewma, held);
            d.freed.clone()
        });
        if !reusable
            || lease.instance.has_exited()
            || lease.instance.credentials_expiring()
            || self.closed.load(Ordering::Acquire)
        {
            let claim = Claim::declared(&lease.instance);
            self.retire(lease.instance, lease.provisioned, &lease.key, claim)
                .await;
            return;
        }
        let mut provisioned = lease.provisioned;
        if provisioned {
            // Provisioned instances beyond the current request become ordinary warm ones.
            let mut prov = lock(&self.provisioned);
            match prov.get_mut(&lease.key.unit()) {
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
        let charged = self.idle_charge(&lease.instance, provisioned);
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
            if let Some(p) = prov.get_mut(&key.unit()) {
                if p.spec.revision == key.revision {
                    p.live = p.live.saturating_sub(1);
                }
            }
        }
        instance.destroy().await;
        self.release_capacity(claim);
        self.released.notify_waiters();
    }

    /// Stops idle instances of one version of a function (of every version when
    /// `version` is `None`) and retires its post-init template (after an update or a
    /// delete). The templates of versions with no idle instance left are the caller's
    /// to name.
    pub async fn drain_function(&self, namespace: &str, name: &str, version: Option<&str>) {
        if let Some(v) = version {
            self.launcher
                .retire_template(&FunctionSpec::template_name(namespace, name, v));
        }
        let drained: Vec<(PoolKey, Idle)> = {
            let mut idle = lock(&self.idle);
            let keys: Vec<PoolKey> = idle
                .keys()
                .filter(|k| k.is_of(namespace, name, version))
                .cloned()
                .collect();
            if version.is_none() {
                let versions: std::collections::BTreeSet<&str> =
                    keys.iter().map(|k| k.version.as_str()).collect();
                for v in versions {
                    self.launcher
                        .retire_template(&FunctionSpec::template_name(namespace, name, v));
                }
            }
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
                // The launcher refills, trims and measures what it built ahead.
                let launcher = mgr.launcher.clone();
                drop(mgr);
                let _ = tokio::task::spawn_blocking(move || launcher.tend()).await;
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

    /// An instance whose start-up is over gets its own share of the CPU, over the warm
    /// period, before its first invocation (see [`InstanceManager::warm_resources`]).
    fn enter_warm_phase(&self, instance: &Instance) {
        if let Some(w) = instance.warm_phase() {
            w.enter(&self.warm_resources(instance.memory_mb, instance.tmp_mb));
        }
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

    /// Stops every idle instance (shutdown).
    pub async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        lock(&self.provisioned).clear();
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
}
