//! How busy the machine's CPUs are, sampled from `/proc/stat` every 50 ms, and how much
//! memory it has available.
//!
//! The instance manager asks it whether starting one more instance can buy any
//! throughput: on a machine whose CPUs are already saturated, another interpreter only
//! adds switching between processes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// `MemAvailable` of `/proc/meminfo`, in MB: what the kernel estimates can be allocated
/// without swapping.
pub fn memory_available_mb() -> Option<u64> {
    parse_meminfo(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

/// `MemTotal` of `/proc/meminfo`, in MB.
pub fn memory_total_mb() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?, "MemTotal:")
}

/// A `/proc/meminfo` field, converted from kB to MB.
fn parse_meminfo(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// CPU time counters of the machine, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticks {
    busy: u64,
    total: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat`: idle and iowait are idle time,
/// guest time is already inside user time and is not counted twice.
fn parse_stat(stat: &str) -> Option<Ticks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 5 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Some(Ticks {
        busy: total - idle,
        total,
    })
}

/// The machine's recent CPU load.
#[derive(Debug, Default)]
pub struct MachineLoad {
    last: Mutex<Option<Ticks>>,
    /// Smoothed busy share of all CPUs, in thousandths.
    busy_permille: AtomicU32,
}

impl MachineLoad {
    /// Takes one sample; call it periodically (every 50 ms or so).
    pub fn sample(&self) {
        let Some(now) = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| parse_stat(&s))
        else {
            return;
        };
        self.observe(now);
    }

    fn observe(&self, now: Ticks) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prev) = last.replace(now) {
            let total = now.total.saturating_sub(prev.total);
            if total == 0 {
                return;
            }
            let busy = now.busy.saturating_sub(prev.busy).min(total);
            // Rises at once, decays over a few samples: a burst counts from its first
            // sample, and a short lull inside one (a client between rounds) does not
            // let it scale out.
            let sample = (busy * 1000 / total) as u32;
            let old = self.busy_permille.load(Ordering::Relaxed);
            self.busy_permille
                .store(sample.max((old * 7 + sample) / 8), Ordering::Relaxed);
        }
    }

    /// Busy share of all CPUs over the last few samples, 0.0–1.0.
    pub fn busy(&self) -> f64 {
        f64::from(self.busy_permille.load(Ordering::Relaxed)) / 1000.0
    }

    /// True when the CPUs are busy `percent` of the time or more (so always at 0,
    /// never above 100).
    pub fn saturated(&self, percent: u32) -> bool {
        self.busy_permille.load(Ordering::Relaxed) >= percent.saturating_mul(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_meminfo_field_in_mb() {
        let meminfo =
            "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   20480000 kB\n";
        assert_eq!(parse_meminfo(meminfo, "MemAvailable:"), Some(20000));
        assert_eq!(parse_meminfo(meminfo, "MemTotal:"), Some(24000));
        assert_eq!(parse_meminfo(meminfo, "SwapTotal:"), None);
    }

    #[test]
    fn parses_the_aggregate_line() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        let t = parse_stat(stat).expect("parsed");
        assert_eq!(t.total, 1000);
        assert_eq!(t.busy, 160);
        assert_eq!(parse_stat("intr 1 2 3\n"), None);
        assert_eq!(parse_stat("cpu  1 2\n"), None);
    }

    #[test]
    fn saturation_rises_at_once_and_decays_over_samples() {
        let load = MachineLoad::default();
        load.observe(Ticks { busy: 0, total: 0 });
        assert!(!load.saturated(85), "one sample says nothing");
        assert!(load.saturated(0), "0% counts as saturated always");
        load.observe(Ticks {
            busy: 95,
            total: 100,
        });
        assert!(load.saturated(85), "95% busy: {}", load.busy());
        assert!(!load.saturated(101), "above 100% never");
        // A fully busy sample, then an idle one: still saturated after the lull.
        load.observe(Ticks {
            busy: 195,
            total: 200,
        });
        load.observe(Ticks {
            busy: 195,
            total: 300,
        });
        assert!(load.saturated(85), "one idle sample: {}", load.busy());
        for i in 1..=12 {
            load.observe(Ticks {
                busy: 195 + i,
                total: 300 + i * 100,
            });
        }
        assert!(!load.saturated(85), "idle: {}", load.busy());
        assert!(load.busy() < 0.3, "{}", load.busy());
    }
}
