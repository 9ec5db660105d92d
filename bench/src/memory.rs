//! Memory of idle warm instances, read from the kernel: each instance's processes are
//! the members of its cgroup (the sandbox's init and the runtime), plus its keeper (the
//! init's parent, in the host namespaces). For each process,
//! `/proc/<pid>/smaps_rollup` gives RSS, PSS and USS (private clean + dirty).

use serde::Serialize;

/// Memory of one process class summed over an instance, in MiB.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Mem {
    pub rss_mib: f64,
    pub pss_mib: f64,
    /// Unique set size: pages only this process maps (private clean + private dirty).
    pub uss_mib: f64,
    /// Private dirty pages alone (heap, stacks, written data): the part no sharing
    /// scheme other than fork-with-copy-on-write can share.
    pub private_dirty_mib: f64,
}

impl Mem {
    fn add(&mut self, o: Mem) {
        self.rss_mib += o.rss_mib;
        self.pss_mib += o.pss_mib;
        self.uss_mib += o.uss_mib;
        self.private_dirty_mib += o.private_dirty_mib;
    }

    fn scale(self, f: f64) -> Mem {
        Mem {
            rss_mib: self.rss_mib * f,
            pss_mib: self.pss_mib * f,
            uss_mib: self.uss_mib * f,
            private_dirty_mib: self.private_dirty_mib * f,
        }
    }
}

/// Mean per idle instance of a set of instances.
#[derive(Debug, Serialize)]
pub struct InstancesMemory {
    pub instances: usize,
    /// The runtime process (interpreter or custom bootstrap) alone.
    pub runtime: Mem,
    /// Everything one instance costs: keeper + init + runtime.
    pub total: Mem,
    /// The instance's memory cgroup charge (includes page cache it touched).
    pub cgroup_charge_mib: Option<f64>,
}

fn smaps_rollup(pid: u32) -> Option<Mem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let kb = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mib = |k: f64| k / 1024.0;
    Some(Mem {
        rss_mib: mib(kb("Rss:")),
        pss_mib: mib(kb("Pss:")),
        uss_mib: mib(kb("Private_Clean:") + kb("Private_Dirty:")),
        private_dirty_mib: mib(kb("Private_Dirty:")),
    })
}

fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `pid` is pid 1 of its own pid namespace (the last `NSpid` entry).
fn is_namespace_init(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("NSpid:")).map(|v| {
                v.split_whitespace().count() > 1 && v.split_whitespace().last() == Some("1")
            })
        })
        .unwrap_or(false)
}

/// Mean memory per instance of those of `ids` still alive; None if none is.
pub fn measure<'a>(ids: impl IntoIterator<Item = &'a String>) -> Option<InstancesMemory> {
    let instances: Vec<_> = ids
        .into_iter()
        .filter_map(|id| crate::instances::instance(id))
        .collect();
    let (mut runtime, mut total, mut charge, mut counted, mut charged) =
        (Mem::default(), Mem::default(), 0.0, 0usize, 0usize);
    for inst_cgroups in &instances {
        let pids = inst_cgroups.procs();
        // The init is pid 1 inside. (A zygote-forked runtime's parent is outside the
        // cgroup too: its zygote, which serves many instances and is not counted.)
        let Some(init) = pids.iter().copied().find(|p| is_namespace_init(*p)) else {
            continue;
        };
        let mut inst = Mem::default();
        for pid in pids.iter().copied().chain(parent_of(init)) {
            if let Some(m) = smaps_rollup(pid) {
                inst.add(m);
                if pid != init && pids.contains(&pid) {
                    runtime.add(m);
                }
            }
        }
        total.add(inst);
        counted += 1;
        if let Some(c) = inst_cgroups.memory_charge_mib() {
            charge += c;
            charged += 1;
        }
    }
    if counted == 0 {
        return None;
    }
    let per = 1.0 / counted as f64;
    Some(InstancesMemory {
        instances: counted,
        runtime: runtime.scale(per),
        total: total.scale(per),
        cgroup_charge_mib: (charged > 0).then(|| charge / charged as f64),
    })
}
