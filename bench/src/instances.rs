//! Reading instances from outside the server: each instance has a cgroup
//! `tern/<server_id>/<instance_id>` in every hierarchy. The bench's functions return
//! their instance id (in the log stream name), which finds the cgroups; its parent is
//! the server's subtree, which holds all of the server's instances.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The cgroup directories of one instance, one per hierarchy.
pub struct InstanceCgroups {
    dirs: Vec<PathBuf>,
}

/// CPU time and throttling of an instance (or a sum of them).
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuStat {
    pub usage_usec: u64,
    /// CFS periods in which the quota ran out.
    pub nr_throttled: u64,
    pub throttled_usec: u64,
}

impl CpuStat {
    pub fn since(self, before: CpuStat) -> CpuStat {
        CpuStat {
            usage_usec: self.usage_usec.saturating_sub(before.usage_usec),
            nr_throttled: self.nr_throttled.saturating_sub(before.nr_throttled),
            throttled_usec: self.throttled_usec.saturating_sub(before.throttled_usec),
        }
    }

    fn plus(self, o: CpuStat) -> CpuStat {
        CpuStat {
            usage_usec: self.usage_usec + o.usage_usec,
            nr_throttled: self.nr_throttled + o.nr_throttled,
            throttled_usec: self.throttled_usec + o.throttled_usec,
        }
    }
}

/// `<hierarchy>/tern/<server_id>` for every cgroup hierarchy (v2, or v1 controllers).
pub fn server_dirs() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut tern_dirs = vec![root.join("tern")];
    if let Ok(rd) = std::fs::read_dir(root) {
        tern_dirs.extend(rd.filter_map(|e| e.ok()).map(|e| e.path().join("tern")));
    }
    tern_dirs
        .iter()
        .filter_map(|t| std::fs::read_dir(t).ok())
        .flat_map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect()
}

/// The cgroups of instance `id` (ids are unique: they carry a random part).
pub fn instance(id: &str) -> Option<InstanceCgroups> {
    let dirs: Vec<PathBuf> = server_dirs()
        .into_iter()
        .map(|s| s.join(id))
        .filter(|d| d.is_dir())
        .collect();
    (!dirs.is_empty()).then_some(InstanceCgroups { dirs })
}

/// The server (its cgroup subtree name) that runs instance `id`.
pub fn server_of(id: &str) -> Option<String> {
    server_dirs()
        .into_iter()
        .find(|s| s.join(id).is_dir())
        .and_then(|s| Some(s.file_name()?.to_string_lossy().into_owned()))
}

/// Every live instance of a server, by id.
pub fn of_server(server_id: &str) -> HashMap<String, InstanceCgroups> {
    let mut out: HashMap<String, InstanceCgroups> = HashMap::new();
    for s in server_dirs()
        .into_iter()
        .filter(|s| s.file_name().is_some_and(|n| n == server_id))
    {
        let Ok(rd) = std::fs::read_dir(&s) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
            let id = e.file_name().to_string_lossy().into_owned();
            out.entry(id)
                .or_insert_with(|| InstanceCgroups { dirs: Vec::new() })
                .dirs
                .push(e.path());
        }
    }
    out
}

/// CPU of every live instance of a server, by id.
pub fn cpu_of_server(server_id: &str) -> HashMap<String, CpuStat> {
    of_server(server_id)
        .into_iter()
        .map(|(id, c)| (id, c.cpu()))
        .collect()
}

/// The sum of [`cpu_of_server`].
pub fn total_cpu_of_server(server_id: &str) -> CpuStat {
    cpu_of_server(server_id)
        .into_values()
        .fold(CpuStat::default(), CpuStat::plus)
}

fn read_kv(path: &Path) -> Vec<(String, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

impl InstanceCgroups {
    /// Member processes (the sandbox's init and the runtime).
    pub fn procs(&self) -> Vec<u32> {
        self.dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .find(|t| !t.trim().is_empty())
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// The memory cgroup's charge, in MiB.
    pub fn memory_charge_mib(&self) -> Option<f64> {
        self.dirs
            .iter()
            .find_map(|d| {
                std::fs::read_to_string(d.join("memory.current"))
                    .or_else(|_| std::fs::read_to_string(d.join("memory.usage_in_bytes")))
                    .ok()
            })
            .and_then(|t| t.trim().parse::<f64>().ok())
            .map(|b| b / (1024.0 * 1024.0))
    }

    /// CPU use (v2 `cpu.stat` usage_usec) and throttling (v2 `cpu.stat` or v1
    /// `cpu/cpu.stat`, whichever hierarchy enforces the quota).
    pub fn cpu(&self) -> CpuStat {
        let mut s = CpuStat::default();
        for d in &self.dirs {
            for (k, v) in read_kv(&d.join("cpu.stat")) {
                match k.as_str() {
                    "usage_usec" => s.usage_usec = s.usage_usec.max(v),
                    "nr_throttled" => s.nr_throttled = s.nr_throttled.max(v),
                    "throttled_usec" => s.throttled_usec = s.throttled_usec.max(v),
                    "throttled_time" => s.throttled_usec = s.throttled_usec.max(v / 1000),
                    _ => {}
                }
            }
            if s.usage_usec == 0 {
                if let Ok(t) = std::fs::read_to_string(d.join("cpuacct.usage")) {
                    s.usage_usec = t.trim().parse::<u64>().unwrap_or(0) / 1000;
                }
            }
        }
        s
    }
}

/// CPU time of a process (all its threads, live and exited), in µs. `/proc` reports it
/// in USER_HZ ticks, which Linux fixes at 100 per second.
pub fn process_cpu_usec(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 10_000)
}

/// This process's own CPU time (the client), in µs.
pub fn self_cpu_usec() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| {
                (tv.tv_sec() as u64) * 1_000_000 + tv.tv_usec() as u64
            };
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(process_cpu_usec(std::process::id()).is_some());
    }

    #[test]
    fn unknown_instances_have_no_cgroups() {
        assert!(instance("no-such-instance-0a1b2c3d-0").is_none());
    }
}
