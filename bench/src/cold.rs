//! Cold starts as the client sees them. Each sample first changes an environment
//! variable with UpdateFunctionConfiguration (untimed): the server then retires the
//! function's instances (the update is answered after they are stopped), so the timed
//! invoke that follows must start or adopt a new instance. Its REPORT line (log tail)
//! must carry an Init Duration, which proves the sample was cold and splits its time.
//!
//! A series may wait `settle` between the update and the timed invoke (untimed), for
//! what the server builds off the request path after an update: a function with
//! SnapStart gets its post-init template built then.
//!
//! After each sample the harness waits `gap` before the next one (running the
//! baselines, if any, after the wait): the server refills what it builds ahead off the
//! request path, and isolated cold starts, not a burst, are what this measures. Whether
//! each sample got a runtime started ahead (or forked from a template) or one started
//! for it is counted, from the server's `tern_cold_starts_total{served_by}`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use serde::Serialize;

use crate::client::Api;
use crate::instances::{self, CpuStat};
use crate::stats::{ms, Summary};

/// How a cold-start series is run.
pub struct Series<'a> {
    pub function: &'a str,
    pub runtime: &'a str,
    pub memory_mb: u32,
    /// What makes this series different, for the table.
    pub variant: &'a str,
    /// Function environment besides the nonce (e.g. one that rules out starting ahead).
    pub env: &'a [(&'a str, &'a str)],
    pub samples: usize,
    pub gap: Duration,
    /// Untimed wait between the update and the timed invoke: what a server builds off
    /// the request path after an update (a post-init template) is ready by then, as it
    /// is when traffic comes a little after a deploy.
    pub settle: Duration,
}

#[derive(Debug, Serialize)]
pub struct ColdResult {
    pub function: String,
    pub variant: String,
    pub runtime: String,
    pub memory_mb: u32,
    pub gap_ms: u64,
    pub settle_ms: u64,
    /// Samples served by a runtime started ahead, or forked from a template (the rest
    /// started one in a held sandbox or a new one).
    pub served_ahead: usize,
    /// HTTP request out → response in.
    pub client: Summary,
    /// Client latency of the samples served ahead / started (when both occurred).
    pub client_ahead: Option<Summary>,
    pub client_fresh: Option<Summary>,
    /// REPORT Init Duration: launch (for a runtime started ahead: its code, limits and
    /// environment handed over) → the runtime's first `next`.
    pub init: Summary,
    /// REPORT Duration: the invocation on the new instance.
    pub invoke: Summary,
    /// Client time minus both: HTTP, SigV4, routing and the invoker's bookkeeping.
    pub outside: Summary,
    /// CPU the instance's cgroup used during the request (for a fresh instance: its
    /// whole start; for one started ahead: its hand-over and invoke).
    pub instance_cpu: Summary,
    /// Time the instance was held back by its CPU quota during the request.
    pub instance_throttled: Summary,
}

/// One cold start, in ms.
struct ColdSample {
    client: f64,
    init: f64,
    invoke: f64,
    cpu: f64,
    throttled: f64,
    ahead: bool,
}

/// One cold sample. `server` (the server's cgroup subtree) lets it read the CPU the
/// serving instance used during the request.
fn sample(
    api: &Api,
    series: &Series,
    nonce: usize,
    server: Option<&str>,
) -> anyhow::Result<(ColdSample, String)> {
    let function = series.function;
    let counted = api.cold_starts_served_by()?;
    let nonce = nonce.to_string();
    let mut env = vec![("TERN_BENCH_NONCE", nonce.as_str())];
    env.extend_from_slice(series.env);
    api.set_env(function, &env)?;
    std::thread::sleep(series.settle);
    let before: HashMap<String, CpuStat> = server.map(instances::cpu_of_server).unwrap_or_default();
    let inv = api.invoke(function, true)?;
    let report = inv.report()?;
    let Some(init) = report.init_ms else {
        bail!("{function}: the invoke after an update was not a cold start (no Init Duration)");
    };
    if inv.body.get("hello").is_none() {
        bail!("{function}: unexpected result {}", inv.body);
    }
    let id = inv
        .instance_id()
        .ok_or_else(|| anyhow!("{function}: no instance id in {}", inv.body))?;
    let cpu = instances::instance(&id)
        .map(|c| c.cpu().since(before.get(&id).copied().unwrap_or_default()))
        .unwrap_or_default();
    let served_by = Api::served_by_between(&counted, &api.cold_starts_served_by()?, function);
    Ok((
        ColdSample {
            client: ms(inv.elapsed),
            init,
            invoke: report.duration_ms,
            cpu: cpu.usage_usec as f64 / 1000.0,
            throttled: cpu.throttled_usec as f64 / 1000.0,
            ahead: matches!(served_by.as_str(), "started_ahead" | "template"),
        },
        id,
    ))
}

/// One cold start of `series` whose instance the caller does not look into (baseline
/// (a)'s server): client time and Init Duration, in ms.
pub fn one(api: &Api, series: &Series, nonce: usize) -> anyhow::Result<(f64, f64)> {
    let s = one_served(api, series, nonce)?;
    Ok((s.client_ms, s.init_ms))
}

/// One cold start as [`one_served`] measured it.
pub struct Served {
    pub client_ms: f64,
    pub init_ms: f64,
    /// Served by a runtime started ahead (or forked from a template).
    pub ahead: bool,
}

/// [`one`], and whether a runtime started ahead served it (for series of one server
/// interleaved by the caller).
pub fn one_served(api: &Api, series: &Series, nonce: usize) -> anyhow::Result<Served> {
    let (s, _) = sample(api, series, nonce, None)?;
    Ok(Served {
        client_ms: s.client,
        init_ms: s.init,
        ahead: s.ahead,
    })
}

/// The cold starts of a series, after one discarded warm-up start; `between` runs
/// after each sample's gap (the baselines: interleaved so drift hits both alike, and on
/// a machine that the refill has stopped using).
pub fn run(
    api: &Api,
    series: &Series,
    mut between: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<ColdResult> {
    let gap = series.gap;
    let (_, id) = sample(api, series, usize::MAX, None)?;
    let server = instances::server_of(&id);
    std::thread::sleep(gap);
    let mut all = Vec::new();
    for i in 0..series.samples {
        let (s, _) = sample(api, series, i, server.as_deref())?;
        all.push(s);
        let waited = Instant::now();
        std::thread::sleep(gap.saturating_sub(waited.elapsed()));
        between()?;
    }
    let col = |keep: fn(&ColdSample) -> bool, f: fn(&ColdSample) -> f64| {
        Summary::of_ms(&all.iter().filter(|s| keep(s)).map(f).collect::<Vec<_>>())
    };
    let every = |_: &ColdSample| true;
    let served_ahead = all.iter().filter(|s| s.ahead).count();
    let mixed = served_ahead > 0 && served_ahead < all.len();
    Ok(ColdResult {
        function: series.function.to_string(),
        variant: series.variant.to_string(),
        runtime: series.runtime.to_string(),
        memory_mb: series.memory_mb,
        gap_ms: gap.as_millis() as u64,
        settle_ms: series.settle.as_millis() as u64,
        served_ahead,
        client: col(every, |s| s.client),
        client_ahead: mixed.then(|| col(|s| s.ahead, |s| s.client)),
        client_fresh: mixed.then(|| col(|s| !s.ahead, |s| s.client)),
        init: col(every, |s| s.init),
        invoke: col(every, |s| s.invoke),
        outside: col(every, |s| s.client - s.init - s.invoke),
        instance_cpu: col(every, |s| s.cpu),
        instance_throttled: col(every, |s| s.throttled),
    })
}
