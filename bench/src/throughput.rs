//! Warm throughput of a no-op Python function at fixed concurrency: `c` threads, each
//! with its own keep-alive connection, send `requests` invokes in total as fast as
//! they can. Warm-up rounds at the same concurrency first let the server start the
//! instances it needs (until a round starts none); cold starts inside the timed window
//! are counted from /metrics.

use std::collections::HashSet;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::{instance_of_stream, Api};
use crate::instances;
use crate::stats::Summary;

#[derive(Debug, Serialize)]
pub struct Level {
    pub concurrency: usize,
    pub requests: usize,
    pub ok: usize,
    /// 429 TooManyRequestsException.
    pub throttled: usize,
    /// Other statuses and transport errors.
    pub errors: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub per_second: f64,
    pub latency: Summary,
    /// Instances started during the timed window.
    pub cold_starts: Option<u64>,
    /// Where the CPU went during the timed window.
    pub cpu: CpuSplit,
    /// Distinct instances that served the timed requests.
    pub instances_used: usize,
    /// Warm-up rounds run before the timed window (until one started no instance).
    pub warmup_rounds: usize,
}

/// CPU time per successful invocation during the timed window, in µs, by process.
#[derive(Debug, Serialize)]
pub struct CpuSplit {
    /// This harness: 'c' client threads, SigV4 signing, HTTP.
    pub client_us: f64,
    /// The tern server process (gateway, invoker, Runtime API).
    pub server_us: f64,
    /// The server's instances (their cgroups: runtime and init; idle ones add ~0).
    pub instances_us: f64,
    /// All three, as a share of the machine's CPUs over the window.
    pub machine_busy: f64,
    /// CFS periods in which an instance ran out of its CPU quota, and the time it
    /// was held back (summed over instances).
    pub instance_throttled_periods: u64,
    pub instance_throttled_ms: f64,
}

#[derive(Default)]
struct Tally {
    ok: usize,
    throttled: usize,
    errors: usize,
    first_error: Option<String>,
    latencies: Vec<Duration>,
    /// Response bodies: the no-op returns its log stream name, so these name instances.
    bodies: HashSet<Vec<u8>>,
}

fn hammer(api: &Api, path: &str, n: usize) -> Tally {
    let mut t = Tally::default();
    for _ in 0..n {
        match api.request("POST", path, &[], b"{}") {
            Ok(r) if r.status == 200 && r.header("x-amz-function-error").is_none() => {
                t.ok += 1;
                t.latencies.push(r.elapsed);
                if !t.bodies.contains(&r.body) {
                    t.bodies.insert(r.body);
                }
            }
            Ok(r) if r.status == 429 => t.throttled += 1,
            Ok(r) => {
                t.errors += 1;
                t.first_error
                    .get_or_insert_with(|| format!("HTTP {}: {}", r.status, r.text()));
            }
            Err(e) => {
                t.errors += 1;
                t.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    t
}

/// Runs one level; `server_cgroup` is the server's cgroup subtree (for the
/// instances' CPU). Returns the level and the ids of the instances that served it.
pub fn run(
    api: &Api,
    server_pid: u32,
    server_cgroup: &str,
    function: &str,
    concurrency: usize,
    requests: usize,
) -> (Level, HashSet<String>) {
    let path = format!("/2015-03-31/functions/{function}/invocations");
    let apis: Vec<Api> = (0..concurrency).map(|_| api.fresh_connection()).collect();
    // Warm up at this concurrency until a round starts no instance (at most 8 rounds).
    let per_thread = (400 / concurrency).max(5);
    let mut warmup_rounds = 0;
    for _ in 0..8 {
        let before = api.cold_starts(function).ok();
        std::thread::scope(|s| {
            for a in &apis {
                s.spawn(|| hammer(a, &path, per_thread));
            }
        });
        warmup_rounds += 1;
        if before.is_some() && before == api.cold_starts(function).ok() {
            break;
        }
    }
    let before = api.cold_starts(function).ok();
    let cpu_before = (
        instances::self_cpu_usec(),
        instances::process_cpu_usec(server_pid).unwrap_or(0),
        instances::total_cpu_of_server(server_cgroup),
    );
    let barrier = Barrier::new(concurrency + 1);
    let (tallies, seconds) = std::thread::scope(|s| {
        let handles: Vec<_> = apis
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let share = requests / concurrency + usize::from(i < requests % concurrency);
                let (barrier, path) = (&barrier, &path);
                s.spawn(move || {
                    barrier.wait();
                    hammer(a, path, share)
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let tallies: Vec<Tally> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        (tallies, started.elapsed().as_secs_f64())
    });
    let cpu_after = (
        instances::self_cpu_usec(),
        instances::process_cpu_usec(server_pid).unwrap_or(0),
        instances::total_cpu_of_server(server_cgroup),
    );
    let after = api.cold_starts(function).ok();
    let mut all = Tally::default();
    for t in tallies {
        all.ok += t.ok;
        all.throttled += t.throttled;
        all.errors += t.errors;
        all.first_error = all.first_error.or(t.first_error);
        all.latencies.extend(t.latencies);
        all.bodies.extend(t.bodies);
    }
    let ids: HashSet<String> = all
        .bodies
        .iter()
        .filter_map(|b| serde_json::from_slice::<String>(b).ok())
        .filter_map(|s| instance_of_stream(&s))
        .collect();
    let per = |us: u64| us as f64 / all.ok.max(1) as f64;
    let client = cpu_after.0.saturating_sub(cpu_before.0);
    let server = cpu_after.1.saturating_sub(cpu_before.1);
    let inst = cpu_after.2.since(cpu_before.2);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpu = CpuSplit {
        client_us: per(client),
        server_us: per(server),
        instances_us: per(inst.usage_usec),
        machine_busy: (client + server + inst.usage_usec) as f64 / 1e6 / (seconds * cpus),
        instance_throttled_periods: inst.nr_throttled,
        instance_throttled_ms: inst.throttled_usec as f64 / 1000.0,
    };
    let level = Level {
        concurrency,
        requests,
        ok: all.ok,
        throttled: all.throttled,
        errors: all.errors,
        first_error: all.first_error,
        seconds,
        per_second: all.ok as f64 / seconds,
        latency: Summary::of(&all.latencies),
        cold_starts: before.zip(after).map(|(b, a)| a.saturating_sub(b)),
        cpu,
        instances_used: ids.len(),
        warmup_rounds,
    };
    (level, ids)
}
