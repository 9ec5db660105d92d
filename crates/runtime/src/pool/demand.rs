//! What the manager learns about each function revision's requests (how long they hold
//! an instance, how long its cold starts take, how many wait), and the rule that uses it:
//! whether a request waits for a busy instance instead of starting another.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::launch_env::cpu_millis;
use super::{lock, InstanceManager, PoolKey};

/// What the manager learns about one function revision's requests.
#[derive(Default)]
pub(super) struct Demand {
    /// Leases handed out and not yet returned.
    pub(super) busy: usize,
    /// Moving averages of how long a lease is held and how long a request that starts
    /// an instance waits for it.
    pub(super) run_ewma: Option<Duration>,
    pub(super) start_ewma: Option<Duration>,
    /// When a warm instance was last handed out or one came back to idle.
    pub(super) last_turnover: Option<Instant>,
    /// Requests parked waiting for a busy instance; while there are any, a newcomer
    /// does not take an idle instance ahead of them.
    pub(super) parked: usize,
    /// Requests committed to a cold start of this revision (they count as instances).
    pub(super) starting: usize,
    /// Signalled (one waiter, in order of arrival) when an instance of this function
    /// goes back to idle.
    pub(super) freed: Arc<Notify>,
}

pub(super) fn ewma(old: Option<Duration>, sample: Duration) -> Option<Duration> {
    Some(match old {
        None => sample,
        Some(o) => (o * 7 + sample) / 8,
    })
}

/// How long one request waits for a busy instance of its function instead of starting
/// another (see [`patience`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Patience {
    /// How long from the moment the request finds no idle instance.
    pub(super) wait: Duration,
    /// Stop waiting when no instance of the function has turned over for this long.
    pub(super) stall: Duration,
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
pub(super) fn patience(
    busy: usize,
    run: Duration,
    start: Duration,
    saturated: bool,
) -> Option<Patience> {
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
pub(super) fn saturated_for(
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
pub(super) struct Counted<'a> {
    pub(super) manager: &'a InstanceManager,
    pub(super) key: &'a PoolKey,
    pub(super) counter: fn(&mut Demand) -> &mut usize,
}

impl<'a> Counted<'a> {
    /// Counts one more on a counter the caller already raised (under its own lock).
    pub(super) fn raised(
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

    pub(super) fn parked(manager: &'a InstanceManager, key: &'a PoolKey) -> Self {
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

impl InstanceManager {
    /// Runs `f` on the demand record of `key`.
    pub(super) fn demand<T>(&self, key: &PoolKey, f: impl FnOnce(&mut Demand) -> T) -> T {
        let mut all = lock(&self.demand);
        // The record exists on every path but a function's first request: no key clone.
        if let Some(d) = all.get_mut(key) {
            return f(d);
        }
        f(all.entry(key.clone()).or_default())
    }

    /// [`patience`] for a request of `key`, from what the manager has learnt. Idle
    /// instances count as busy: they are on their way to requests parked ahead.
    pub(super) fn patience(&self, key: &PoolKey, memory_mb: u32) -> Option<Patience> {
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
    pub(super) fn commit_to_start<'a>(
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
}
