//! The server's capacity account: what each live instance counts against the instance
//! cap, the memory budget and the /tmp disk budget (busy instances what they declared,
//! idle ones what they use; what the launcher built ahead of time counts too), and how
//! room is made when a claim does not fit: measuring, then stopping what the launcher
//! built ahead, then least recently used idle instances.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use tern_sandbox::{CapacityAccount, Reservation, Room};
use tokio::sync::OwnedSemaphorePermit;

use super::{lock, FunctionSpec, InstanceManager, PoolKey, TmpDiskUsage};
use crate::instance::{Instance, UsageProbe};

#[derive(Default)]
pub(super) struct Capacity {
    pub(super) instances: usize,
    /// What the launcher built ahead of time, waiting for a launch (sandboxes, runtimes
    /// started ahead, instances forked from a template): each counts against the
    /// instance cap, and against the memory budget at [`BUILT_AHEAD_MEMORY_MB`] until it
    /// is measured.
    pub(super) built_ahead: usize,
    /// The memory counted for them, in MB (part of `memory_mb`).
    pub(super) built_ahead_mb: u64,
    /// Post-init templates: each holds an instance slot and its function's MemorySize.
    pub(super) templates: usize,
    pub(super) memory_mb: u64,
    /// /tmp disk counted for live instances (see [`Claim`]).
    pub(super) tmp_mb: u64,
}

impl Capacity {
    /// Instance slots in use: live instances, sandboxes built ahead and templates.
    pub(super) fn slots_used(&self) -> usize {
        self.instances + self.built_ahead + self.templates
    }
}

/// What a sandbox built ahead of time counts against the memory budget: its keeper and
/// init (under 1 MiB), and a runtime a zygote forked into it (2.5 MiB) if one was. Its
/// /tmp holds nothing until a launch takes it, and the instance then counts its own.
pub(super) const BUILT_AHEAD_MEMORY_MB: u64 = 3;

/// The account as the launcher sees it (see [`CapacityAccount`]).
pub(super) struct BuiltAheadAccount(pub(super) Weak<InstanceManager>);

/// What the launcher keeps ahead: a sandbox (with or without a runtime started ahead,
/// or an instance forked from a template) waiting for a launch, or a post-init template.
#[derive(Clone, Copy)]
enum Ahead {
    Sandbox,
    Template,
}

/// Room counted for something the launcher keeps ahead; given back when dropped.
struct AheadRoom {
    manager: Weak<InstanceManager>,
    kind: Ahead,
    memory_mb: u64,
}

impl BuiltAheadAccount {
    /// Counts `kind` at `memory_mb` and one instance slot, if both fit and nobody waits
    /// for room.
    fn reserve(&self, kind: Ahead, memory_mb: u64) -> Option<Reservation> {
        let manager = self.0.upgrade()?;
        {
            let mut cap = lock(&manager.capacity);
            let c = &manager.config;
            if cap.slots_used() >= c.max_instances
                || cap.memory_mb + memory_mb > c.memory_budget_mb
                || manager.short_of_room.load(Ordering::Acquire) > 0
                || manager.host_memory_short.load(Ordering::Acquire)
            {
                return None;
            }
            *cap.ahead(kind) += 1;
            cap.memory_mb += memory_mb;
        }
        if let Ahead::Sandbox = kind {
            lock(&manager.capacity).built_ahead_mb += memory_mb;
        }
        Some(Reservation::new(AheadRoom {
            manager: Arc::downgrade(&manager),
            kind,
            memory_mb,
        }))
    }
}

/// Leave to build one thing ahead: a start slot and a refill turn, given back when
/// dropped.
struct BuildPermit {
    manager: Weak<InstanceManager>,
    _slot: OwnedSemaphorePermit,
}

impl Room for BuildPermit {}

impl Drop for BuildPermit {
    fn drop(&mut self) {
        if let Some(manager) = self.manager.upgrade() {
            manager.refilling.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl CapacityAccount for BuiltAheadAccount {
    fn reserve_built_ahead(&self) -> Option<Reservation> {
        self.reserve(Ahead::Sandbox, BUILT_AHEAD_MEMORY_MB)
    }

    fn reserve_template(&self, memory_mb: u32) -> Option<Reservation> {
        self.reserve(Ahead::Template, u64::from(memory_mb))
    }

    fn build_permit(&self) -> Option<Reservation> {
        let manager = self.0.upgrade()?;
        if manager.closed.load(Ordering::Acquire)
            || manager.short_of_room.load(Ordering::Acquire) > 0
            || manager.host_memory_short.load(Ordering::Acquire)
        {
            return None;
        }
        // Requests come first: a build takes a free start slot, and builds together
        // take at most half of them (one on a saturated machine).
        let parallel = manager.refill_parallelism();
        if manager.refilling.fetch_add(1, Ordering::AcqRel) >= parallel {
            manager.refilling.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let permit = BuildPermit {
            manager: Arc::downgrade(&manager),
            _slot: match manager.starts.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    manager.refilling.fetch_sub(1, Ordering::AcqRel);
                    return None;
                }
            },
        };
        Some(Reservation::new(permit))
    }
}

impl InstanceManager {
    /// Builds ahead at once, over every pool of the launcher: half the start slots (at
    /// least one) on a machine with CPU to spare, one on a saturated machine.
    pub(super) fn refill_parallelism(&self) -> usize {
        if self.load.saturated(self.config.saturated_cpu_percent) {
            1
        } else {
            (self.config.max_concurrent_starts / 2).max(1)
        }
    }
}

impl Capacity {
    fn ahead(&mut self, kind: Ahead) -> &mut usize {
        match kind {
            Ahead::Sandbox => &mut self.built_ahead,
            Ahead::Template => &mut self.templates,
        }
    }
}

impl Room for AheadRoom {
    fn resize(&mut self, memory_mb: u64) {
        let Some(manager) = self.manager.upgrade() else {
            return;
        };
        let mut cap = lock(&manager.capacity);
        cap.memory_mb = cap.memory_mb.saturating_sub(self.memory_mb) + memory_mb;
        if let Ahead::Sandbox = self.kind {
            cap.built_ahead_mb = cap.built_ahead_mb.saturating_sub(self.memory_mb) + memory_mb;
        }
        self.memory_mb = memory_mb;
    }
}

impl Drop for AheadRoom {
    fn drop(&mut self) {
        let Some(manager) = self.manager.upgrade() else {
            return;
        };
        {
            let mut cap = lock(&manager.capacity);
            let count = cap.ahead(self.kind);
            *count = count.saturating_sub(1);
            cap.memory_mb = cap.memory_mb.saturating_sub(self.memory_mb);
            if let Ahead::Sandbox = self.kind {
                cap.built_ahead_mb = cap.built_ahead_mb.saturating_sub(self.memory_mb);
            }
        }
        manager.released.notify_waiters();
    }
}

/// Counts a request waiting for room while it lives.
pub(super) struct ShortOfRoom<'a>(&'a AtomicUsize);

impl<'a> ShortOfRoom<'a> {
    pub(super) fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        ShortOfRoom(count)
    }
}

impl Drop for ShortOfRoom<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What one instance counts against the server's capacity, in MB of memory and of /tmp
/// disk: what it declared (MemorySize, EphemeralStorage: the most it may use) while busy
/// or starting, what it uses while idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Claim {
    pub(super) memory_mb: u64,
    pub(super) tmp_mb: u64,
}

impl Claim {
    pub(super) const ZERO: Claim = Claim {
        memory_mb: 0,
        tmp_mb: 0,
    };

    pub(super) fn plus(self, o: Claim) -> Claim {
        Claim {
            memory_mb: self.memory_mb + o.memory_mb,
            tmp_mb: self.tmp_mb + o.tmp_mb,
        }
    }

    pub(super) fn of(f: &FunctionSpec) -> Claim {
        Claim {
            memory_mb: u64::from(f.memory_mb),
            tmp_mb: u64::from(f.tmp_mb),
        }
    }

    /// What a busy instance counts: everything it declared.
    pub(super) fn declared(instance: &Instance) -> Claim {
        Claim {
            memory_mb: u64::from(instance.memory_mb),
            tmp_mb: u64::from(instance.tmp_mb),
        }
    }
}

/// Why an idle instance was stopped before its keep-alive ran out.
#[derive(Debug, Clone, Copy)]
pub(super) enum Eviction {
    /// A start or a hand-out needed room within the server's budgets.
    Room = 0,
    /// The host ran short of available memory.
    HostMemory = 1,
}

impl Eviction {
    pub(super) const ALL: [Eviction; 2] = [Eviction::Room, Eviction::HostMemory];

    pub(super) fn label(self) -> &'static str {
        match self {
            Eviction::Room => "room",
            Eviction::HostMemory => "host_memory",
        }
    }
}

impl InstanceManager {
    /// Idle instances stopped before their keep-alive ran out, by why:
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
    /// instance, the measured use of each idle one, and what the launcher built ahead.
    pub fn live_memory_mb(&self) -> u64 {
        lock(&self.capacity).memory_mb
    }

    /// /tmp disk counted for live instances, in MB (what the /tmp disk budget counts).
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

    /// Claims room for one more instance; with `evict_for`, stops what the launcher
    /// built ahead, then idle instances of functions other than that one (least
    /// recently used first), if that makes room.
    pub(super) async fn claim_capacity(&self, claim: Claim, evict_for: Option<&PoolKey>) -> bool {
        loop {
            {
                let mut cap = lock(&self.capacity);
                if cap.slots_used() < self.config.max_instances
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
            if !self.make_room(requester).await {
                return false;
            }
        }
    }

    /// Makes room for a claim that did not fit: first by counting the idle instances not
    /// measured since they went idle at what they use (instances released since the
    /// last try count what they declared until then, and a flood of them would
    /// otherwise cost warm instances), then by stopping something the launcher built
    /// ahead (the cheapest to lose: it is built again off the request path), then the
    /// least recently used idle instance of a function other than `requester`'s. False
    /// if nothing changed.
    pub(super) async fn make_room(&self, requester: &PoolKey) -> bool {
        if self.measure_idle(false) {
            return true;
        }
        // A bare sandbox built ahead holds an instance slot and little memory: stopping
        // one only helps when the slots are what is short. A runtime started ahead (a
        // Node runtime holds tens of MB) and a post-init template (its function's
        // MemorySize) hold more: they go before idle instances, which would serve warm
        // requests. The launcher stops runtimes before bare sandboxes.
        let launcher_can_help = {
            let cap = lock(&self.capacity);
            (cap.built_ahead > 0 && cap.slots_used() >= self.config.max_instances)
                || cap.built_ahead_mb > cap.built_ahead as u64 * BUILT_AHEAD_MEMORY_MB
                || cap.templates > 0
        };
        (launcher_can_help && self.launcher.drop_built_ahead())
            || self.evict_one_idle(Some(requester), Eviction::Room).await
    }

    /// What an instance going idle counts: its MemorySize and EphemeralStorage until the
    /// next sweep measures it; but while the account is more than half full, what it
    /// uses, measured now (two reads), so that a flood of instances going idle does not
    /// fill the budgets with what they declared and cost warm instances their room.
    /// Provisioned instances keep their whole size.
    pub(super) fn idle_charge(&self, instance: &Instance, provisioned: bool) -> Claim {
        let declared = Claim::declared(instance);
        let tight = {
            let cap = lock(&self.capacity);
            cap.memory_mb * 2 > self.config.memory_budget_mb
                || cap.tmp_mb.saturating_mul(2) > self.config.tmp_disk_budget_mb
        };
        if provisioned || !tight {
            return declared;
        }
        let probe = instance.usage_probe();
        let now = Claim {
            memory_mb: probe
                .memory_mb()
                .map_or(declared.memory_mb, |m| m.clamp(1, declared.memory_mb)),
            tmp_mb: probe
                .tmp_disk_mb()
                .map_or(declared.tmp_mb, |t| t.min(declared.tmp_mb)),
        };
        // What it uses is counted whether or not it fits (it can only be less).
        self.recharge(declared, now, true);
        now
    }

    /// Counts `to` instead of `from` for live instances. A rise is refused if it does
    /// not fit the budgets, unless `forced` (what they already use).
    pub(super) fn recharge(&self, from: Claim, to: Claim, forced: bool) -> bool {
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

    pub(super) fn release_capacity(&self, claim: Claim) {
        let mut cap = lock(&self.capacity);
        cap.instances = cap.instances.saturating_sub(1);
        cap.memory_mb = cap.memory_mb.saturating_sub(claim.memory_mb);
        cap.tmp_mb = cap.tmp_mb.saturating_sub(claim.tmp_mb);
    }

    /// Which limit refused a request needing `claim`, then the whole account.
    pub(super) fn describe_limit(&self, claim: Claim, no_room: bool) -> String {
        let limit = {
            let cap = lock(&self.capacity);
            let c = &self.config;
            if !no_room {
                format!(
                    "all {} cold-start slots stayed busy",
                    c.max_concurrent_starts.max(1)
                )
            } else if cap.slots_used() >= c.max_instances {
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

    pub(super) fn describe_capacity(&self) -> String {
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
        if cap.built_ahead > 0 {
            out.push_str(&format!(
                " (besides {} sandboxes built ahead, counted against both)",
                cap.built_ahead
            ));
        }
        if cap.templates > 0 {
            out.push_str(&format!(
                " (besides {} post-init templates, counted against both)",
                cap.templates
            ));
        }
        out
    }

    /// Stops the least recently used idle, non-provisioned instance (of a function other
    /// than `keep`'s, if given); true if one was stopped.
    pub(super) async fn evict_one_idle(&self, keep: Option<&PoolKey>, why: Eviction) -> bool {
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
                let (slots, counted_mb, counted_tmp_mb) = {
                    let cap = lock(&self.capacity);
                    (cap.slots_used(), cap.memory_mb, cap.tmp_mb)
                };
                tracing::info!(
                    instance = %v.instance.id,
                    namespace = %key.namespace,
                    function = %key.name,
                    idle_s = v.since.elapsed().as_secs(),
                    memory_mb = v.charged.memory_mb,
                    tmp_mb = v.charged.tmp_mb,
                    reason = why.label(),
                    slots,
                    counted_mb,
                    counted_tmp_mb,
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

    /// Counts each idle instance by what it uses now, where the
    /// launcher can tell: the charge of its memory cgroup (at least 1 MB) and the host
    /// disk its /tmp holds, each at most what it declared. True if that lowered the
    /// count. Busy instances keep counting everything they declared: an idle one
    /// claims it again when it is handed out.
    ///
    /// The sweep measures every one (`all`); making room measures only those still
    /// counted at what they declared (not measured since they went idle).
    pub(super) fn measure_idle(&self, all: bool) -> bool {
        // Each reading is applied only to the same stay in the list (`since`): an
        // instance taken and given back meanwhile has been busy since.
        let wanted = |instance: &Instance, charged: &Claim, since: Option<Instant>| {
            (all || *charged == Claim::declared(instance))
                .then(|| (instance.id.clone(), since, instance.usage_probe()))
        };
        // The cgroup and filesystem reads happen outside the locks. Provisioned
        // instances keep their whole size: it is reserved for them.
        let probes: Vec<(String, Option<Instant>, UsageProbe)> = lock(&self.idle)
            .values()
            .flatten()
            .filter(|i| !i.provisioned)
            .filter_map(|i| wanted(&i.instance, &i.charged, Some(i.since)))
            .collect();
        type Reading = (Option<Instant>, Option<u64>, Option<u64>);
        let measured: HashMap<String, Reading> = probes
            .into_iter()
            .map(|(id, since, probe)| (id, (since, probe.memory_mb(), probe.tmp_disk_mb())))
            .filter(|(_, (_, memory, tmp))| (memory, tmp) != (&None, &None))
            .collect();
        if measured.is_empty() {
            return false;
        }
        let (mut from, mut to) = (Claim::ZERO, Claim::ZERO);
        let mut count = |instance: &Instance, charged: &mut Claim, since: Option<Instant>| {
            let Some(&(read_since, memory, tmp)) = measured.get(&instance.id) else {
                return;
            };
            if read_since != since {
                return;
            }
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
            count(&i.instance, &mut i.charged, Some(i.since));
        }
        // What they use is counted whether or not it fits.
        self.recharge(from, to, true);
        to.memory_mb < from.memory_mb || to.tmp_mb < from.tmp_mb
    }

    /// Under host memory pressure (less available than the configured floor), stops
    /// what the launcher built ahead, then the least recently used idle instances, a
    /// few per sweep, until the pressure is gone.
    pub(super) async fn relieve_host_memory(&self) {
        let floor = self.config.host_memory_floor_mb;
        if floor == 0 {
            return;
        }
        // While short, nothing is built ahead either (runtimes, sandboxes):
        // what is evicted here must not come straight back.
        let short = |m: &Self| {
            let short = crate::load::memory_available_mb().is_some_and(|a| a < floor);
            m.host_memory_short.store(short, Ordering::Release);
            short
        };
        for _ in 0..16 {
            if !short(self) {
                return;
            }
            // What the launcher built ahead (sandboxes, templates) is rebuilt off the
            // request path once memory is back: it goes before idle instances.
            if !self.launcher.drop_built_ahead()
                && !self.evict_one_idle(None, Eviction::HostMemory).await
            {
                return;
            }
        }
    }
}
