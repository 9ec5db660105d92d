//! Many idle warm instances at once (issue #12): N distinct 128 MB Python functions on
//! one server with its default settings, each invoked once (from 8 threads, distinct
//! functions back to back), so that N instances sit idle together. Then, after the
//! pool's sweeps have measured them:
//!
//! - how many are still alive, and what they cost: per instance (processes' PSS and the
//!   memory cgroup's charge) and in all (the host's `MemAvailable` before and after);
//! - what the server counts against its memory budget, and how many it evicted;
//! - a second invoke of each: how many are served warm (by the same instance) and how
//!   fast.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::Api;
use crate::functions;
use crate::memory::{self, InstancesMemory};
use crate::server::TernServer;
use crate::stats::{ms, Summary};

/// Threads invoking (each sends its share back to back on its own connection).
const THREADS: usize = 8;
/// Time given to the pool's sweeps (measure, freeze) before the readings.
const SETTLE: Duration = Duration::from_secs(3);

#[derive(Debug, Serialize)]
pub struct IdleInstances {
    pub functions: usize,
    /// First invokes that succeeded.
    pub started: usize,
    pub first_failure: Option<String>,
    /// Instances of the server alive after the settle time.
    pub alive: usize,
    /// Per instance, over those alive.
    pub per_instance: Option<InstancesMemory>,
    /// Host `MemAvailable` drop from before the first invokes to after the settle time.
    pub host_memory_used_mib: f64,
    /// `tern_instance_memory_counted_bytes` after the settle time.
    pub counted_mib: f64,
    /// `tern_instance_evictions_total`, all reasons.
    pub evictions: u64,
    /// The same by reason (`room`, `host_memory`), where any.
    pub evictions_by_reason: Vec<(String, u64)>,
    /// Second invokes served by the same instance as the first.
    pub warm: usize,
    /// Client latency of the second invokes.
    pub second: Summary,
    /// Time to start all N (first invokes, wall clock).
    pub start_all_ms: f64,
}

fn mem_available_mib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Invokes each of `names` once from [`THREADS`] threads: per name, the instance that
/// served it (or the failure) and the client latency.
fn invoke_all(api: &Api, names: &[String]) -> HashMap<String, (Result<String, String>, Duration)> {
    crate::burst::across_threads(api, THREADS, names.len(), false, |api, i| {
        let name = &names[i];
        let outcome = match api.invoke(name, true) {
            Ok(inv) => match inv.instance_id() {
                Some(id) => (Ok(id), inv.elapsed),
                None => (Err("no instance id".into()), inv.elapsed),
            },
            Err(e) => (Err(format!("{e:#}")), Duration::ZERO),
        };
        (name.clone(), outcome)
    })
    .into_iter()
    .collect()
}

pub fn idle_instances(binary: &std::path::Path, n: usize) -> anyhow::Result<IdleInstances> {
    let server = TernServer::start(binary)?;
    let f = functions::python_hello()?;
    let names: Vec<String> = (0..n).map(|i| format!("idle-{i}")).collect();
    for name in &names {
        server
            .api
            .create_function(name, f.runtime, f.handler, 128, &f.zip)?;
    }
    let before = mem_available_mib();
    let began = Instant::now();
    let first = invoke_all(&server.api, &names);
    let start_all_ms = ms(began.elapsed());
    std::thread::sleep(SETTLE);
    let ids: Vec<String> = first
        .values()
        .filter_map(|(r, _)| r.as_ref().ok().cloned())
        .collect();
    let alive_ids: Vec<String> = ids
        .iter()
        .filter(|id| crate::instances::instance(id).is_some())
        .cloned()
        .collect();
    let per_instance = memory::measure(&alive_ids);
    let host_memory_used_mib = before - mem_available_mib();
    let counted_mib = server.api.metric("tern_instance_memory_counted_bytes") / 1048576.0;
    let evictions = server.api.metric("tern_instance_evictions_total") as u64;
    let evictions_by_reason = ["room", "host_memory"]
        .into_iter()
        .map(|reason| {
            let labelled = format!("tern_instance_evictions_total{{reason=\"{reason}\"}}");
            (reason.to_string(), server.api.metric(&labelled) as u64)
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    let second = invoke_all(&server.api, &names);
    let warm = names
        .iter()
        .filter(|name| match (first.get(*name), second.get(*name)) {
            (Some((Ok(a), _)), Some((Ok(b), _))) if a == b => true,
            (a, b) => {
                eprintln!("idle: {name} not served warm: first {a:?}, then {b:?}");
                false
            }
        })
        .count();
    let second_ok: Vec<Duration> = second
        .values()
        .filter(|(r, _)| r.is_ok())
        .map(|(_, d)| *d)
        .collect();
    Ok(IdleInstances {
        functions: n,
        started: ids.len(),
        first_failure: first
            .values()
            .find_map(|(r, _)| r.as_ref().err().cloned())
            .map(|e| e.chars().take(300).collect()),
        alive: alive_ids.len(),
        per_instance,
        host_memory_used_mib,
        counted_mib,
        evictions,
        evictions_by_reason,
        warm,
        second: Summary::of(&second_ok),
        start_all_ms,
    })
}
