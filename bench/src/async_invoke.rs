//! Asynchronous invocation (Invoke with `X-Amz-Invocation-Type: Event`), each case on
//! servers of its own started for it:
//!
//! - **durable enqueue**, on SQLite and on PostgreSQL (a fresh database): a queue-only
//!   server (`async.concurrency = 0`: it runs nothing, so the figure is the queue's), a
//!   no-op Python function, and C threads with a keep-alive connection each sending N
//!   Event invokes with small payloads after a warm-up. Every one must be answered 202;
//!   the queue depth the server reads back from its store afterwards checks they were
//!   all stored.
//! - **enqueue → start on an idle server** (default settings, SQLite): a warm function
//!   returns `time.time()` at its start; one event at a time with a pause before each,
//!   a sample is that time minus the client's wall clock just before sending (same
//!   host, same clock). The status API's times split it on the server's clock (ms).
//! - **sync warm invoke by store**: the warm series of the Python hello-world (as in
//!   `warm.rs`) on a server on SQLite and on one on PostgreSQL, back to back.

use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use serde_json::Value;

use crate::client::Api;
use crate::functions;
use crate::instances;
use crate::server::TernServer;
use crate::stats::{ms, Summary};
use crate::warm::{self, WarmResult};

pub const SQLITE: &str = "SQLite";
pub const POSTGRES: &str = "PostgreSQL";

/// Event invokes sent before the timed window (connections opened, pages warm).
const ENQUEUE_WARMUP: usize = 1000;
/// The server's housekeeping reads queue depths back from its store every 2 s.
const DEPTH_REFRESH: Duration = Duration::from_millis(2500);
/// How often an enqueue → start sample polls its event's status, and for how long.
const POLL: Duration = Duration::from_millis(5);
const POLL_FOR: Duration = Duration::from_secs(30);
/// How long the warm-by-store servers sit after their first invokes (runtimes started
/// ahead, zygotes) before the series.
const WARM_SETTLE: Duration = Duration::from_secs(3);
/// Sync invokes that start the enqueue → start function's instance, and untimed events
/// after them.
const START_WARMUP: usize = 5;

/// Where a case's server keeps its state.
#[derive(Debug, Clone, Copy)]
pub enum Store<'a> {
    /// Embedded SQLite in the data dir (the default).
    Sqlite,
    /// A fresh database on this PostgreSQL server.
    Postgres(&'a str),
}

impl Store<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Store::Sqlite => SQLITE,
            Store::Postgres(_) => POSTGRES,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct AsyncResults {
    /// Durable enqueue on a queue-only server, by store.
    pub enqueue: Vec<Enqueue>,
    pub enqueue_to_start: Option<EnqueueToStart>,
    pub warm_by_store: Option<WarmByStore>,
}

#[derive(Debug, Serialize)]
pub struct Enqueue {
    /// [`SQLITE`] or [`POSTGRES`].
    pub store: String,
    pub connections: usize,
    /// Timed Event invokes.
    pub events: usize,
    /// Event invokes answered 202 in the warm-up, before the timed window.
    pub warmup_accepted: usize,
    /// Answered 202.
    pub accepted: usize,
    /// 429 (the queue's bound is set above the run's events).
    pub throttled: usize,
    /// Other statuses and transport errors.
    pub errors: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Accepted events per second.
    pub per_second: f64,
    /// Client latency of the 202s.
    pub latency: Summary,
    /// `tern_async_queue_depth` after the run, once the server has read it back from
    /// its store: warm-up and timed events, none lost.
    pub queued_after: u64,
    pub cpu: EnqueueCpu,
}

/// CPU time per accepted event during the timed window, in µs, by process.
#[derive(Debug, Serialize)]
pub struct EnqueueCpu {
    /// This harness: the client threads, SigV4 signing, HTTP.
    pub client_us: f64,
    /// The tern server process.
    pub server_us: f64,
    /// PostgreSQL's processes (PostgreSQL case only).
    pub database_us: Option<f64>,
    /// All of them, as a share of the machine's CPUs over the window.
    pub machine_busy: f64,
}

#[derive(Debug, Serialize)]
pub struct EnqueueToStart {
    pub samples: usize,
    /// Pause before each sample.
    pub pause_ms: u64,
    /// The client's wall clock just before sending → the handler's `time.time()`.
    pub sent_to_start: Summary,
    /// Client latency of the 202.
    pub accepted: Summary,
    /// Status API, server clock (ms resolution): enqueued → first attempt started.
    pub enqueued_to_attempt: Summary,
    /// First attempt started (server clock, ms resolution) → handler start; reads up
    /// to 1 ms high (0.5 ms on average): the server's time is truncated to the ms.
    pub attempt_to_handler: Summary,
    /// Mean of `tern_async_enqueue_to_start_seconds` over the samples, in ms.
    pub server_histogram_mean_ms: Option<f64>,
    /// Instances started for the function during the samples (0: all ran warm).
    pub cold_starts: u64,
}

#[derive(Debug, Serialize)]
pub struct WarmByStore {
    pub sqlite: WarmResult,
    pub postgres: WarmResult,
    /// PostgreSQL client latency / SQLite client latency.
    pub p50_ratio: f64,
    pub p99_ratio: f64,
}

/// A database of its own on a PostgreSQL server for one case, dropped with it.
pub struct FreshDatabase {
    server: String,
    name: String,
    /// The URL a tern server's `--database` takes.
    pub url: String,
}

impl FreshDatabase {
    pub fn create(server: &str, case: &str) -> anyhow::Result<FreshDatabase> {
        let name = format!("tern_bench_{}_{case}", std::process::id());
        let url = database_url(server, &name)?;
        // A run killed before its drops leaves its databases behind; the same pid again
        // would find one.
        let fresh = tern_store::postgres::drop_database(server, &name)
            .and_then(|()| tern_store::postgres::create_database(server, &name));
        fresh.with_context(|| {
            format!(
                "cannot create database {name} on {server} (is PostgreSQL up? --database names \
                 the server the async section's PostgreSQL cases use)"
            )
        })?;
        Ok(FreshDatabase {
            server: server.to_string(),
            name,
            url,
        })
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        if let Err(e) = tern_store::postgres::drop_database(&self.server, &self.name) {
            eprintln!("async: cannot drop database {}: {e}", self.name);
        }
    }
}

/// `server` (a `postgres://` URL) naming database `name` instead of its own.
fn database_url(server: &str, name: &str) -> anyhow::Result<String> {
    let (scheme, rest) = server
        .split_once("://")
        .filter(|(s, _)| *s == "postgres" || *s == "postgresql")
        .ok_or_else(|| anyhow!("--database must be a postgres:// URL, not {server:?}"))?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    Ok(format!("{scheme}://{authority}/{name}{query}"))
}

/// The server's log tail on an error of a case.
fn with_log<T>(server: &TernServer, r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| e.context(format!("tern server log (tail):\n{}", server.log_tail())))
}

#[derive(Default)]
struct Tally {
    accepted: usize,
    throttled: usize,
    errors: usize,
    first_error: Option<String>,
    latencies: Vec<Duration>,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.accepted += o.accepted;
        self.throttled += o.throttled;
        self.errors += o.errors;
        self.first_error = self.first_error.take().or(o.first_error);
        self.latencies.extend(o.latencies);
    }
}

/// `n` Event invokes of `function` back to back, with small payloads.
fn send_events(api: &Api, function: &str, n: usize) -> Tally {
    let mut t = Tally::default();
    for i in 0..n {
        match api.invoke_event(function, format!("{{\"n\":{i}}}").as_bytes()) {
            Ok(r) if r.status == 202 => {
                t.accepted += 1;
                t.latencies.push(r.elapsed);
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

/// CPU time of PostgreSQL's processes (its server and backends), in µs.
fn postgres_cpu_usec() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(instances::process_cpu_usec)
        .sum()
}

/// Durable enqueue throughput on a queue-only server keeping its state in `store`.
pub fn enqueue(
    binary: &Path,
    store: Store,
    connections: usize,
    events: usize,
) -> anyhow::Result<Enqueue> {
    let database = match store {
        Store::Sqlite => None,
        Store::Postgres(server) => Some(FreshDatabase::create(server, "enqueue")?),
    };
    // The bound stays clear of the run's events: every one must be accepted.
    let bound = (ENQUEUE_WARMUP + events).max(100_000);
    let config = format!("[async]\nconcurrency = 0\nmax_queued_per_namespace = {bound}\n");
    let flags: Vec<&str> = match &database {
        Some(d) => vec!["--database", d.url.as_str()],
        None => Vec::new(),
    };
    let server = TernServer::start_with_config(binary, &flags, &config)?;
    with_log(&server, enqueue_on(&server, store, connections, events))
}

fn enqueue_on(
    server: &TernServer,
    store: Store,
    connections: usize,
    events: usize,
) -> anyhow::Result<Enqueue> {
    let api = &server.api;
    let function = "enqueue-noop";
    let f = functions::python_noop()?;
    api.create_function(function, f.runtime, f.handler, 128, &f.zip)?;
    let apis: Vec<Api> = (0..connections).map(|_| api.fresh_connection()).collect();
    let per_thread = ENQUEUE_WARMUP.div_ceil(connections);
    let mut warmup = Tally::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = apis
            .iter()
            .map(|a| s.spawn(move || send_events(a, function, per_thread)))
            .collect();
        for h in handles {
            warmup.add(h.join().unwrap_or_default());
        }
    });
    if let Some(e) = &warmup.first_error {
        bail!("Event invokes failed in the warm-up: {e}");
    }
    let database = matches!(store, Store::Postgres(_));
    let cpu = || {
        (
            instances::self_cpu_usec(),
            instances::process_cpu_usec(server.pid()).unwrap_or(0),
            if database { postgres_cpu_usec() } else { 0 },
        )
    };
    let cpu_before = cpu();
    let barrier = Barrier::new(connections + 1);
    let (tallies, seconds) = std::thread::scope(|s| {
        let handles: Vec<_> = apis
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let share = events / connections + usize::from(i < events % connections);
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    send_events(a, function, share)
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
    let cpu_after = cpu();
    let mut all = Tally::default();
    for t in tallies {
        all.add(t);
    }
    std::thread::sleep(DEPTH_REFRESH);
    let queued_after = api.metric("tern_async_queue_depth") as u64;
    let per = |us: u64| us as f64 / all.accepted.max(1) as f64;
    let client = cpu_after.0.saturating_sub(cpu_before.0);
    let server_cpu = cpu_after.1.saturating_sub(cpu_before.1);
    let db = cpu_after.2.saturating_sub(cpu_before.2);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    Ok(Enqueue {
        store: store.name().to_string(),
        connections,
        events,
        warmup_accepted: warmup.accepted,
        accepted: all.accepted,
        throttled: all.throttled,
        errors: all.errors,
        first_error: all.first_error,
        seconds,
        per_second: all.accepted as f64 / seconds,
        latency: Summary::of(&all.latencies),
        queued_after,
        cpu: EnqueueCpu {
            client_us: per(client),
            server_us: per(server_cpu),
            database_us: database.then(|| per(db)),
            machine_busy: (client + server_cpu + db) as f64 / 1e6 / (seconds * cpus),
        },
    })
}

/// One enqueue → start sample, in ms.
struct StartSample {
    sent_to_start: f64,
    accepted: Duration,
    enqueued_to_attempt: f64,
    attempt_to_handler: f64,
}

/// An RFC 3339 time of the status API, in ms since the epoch.
fn unix_ms(v: &Value) -> anyhow::Result<f64> {
    let s = v.as_str().ok_or_else(|| anyhow!("not a time: {v}"))?;
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("not an RFC 3339 time: {s}"))?;
    Ok(t.unix_timestamp_nanos() as f64 / 1e6)
}

fn wall_clock_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Sends one Event invoke of the started-at function and waits for it to succeed.
fn one_event(api: &Api, function: &str) -> anyhow::Result<StartSample> {
    let sent = wall_clock_ms();
    let resp = api.invoke_event(function, b"{}")?;
    if resp.status != 202 {
        bail!(
            "Event invoke of {function}: HTTP {} {}",
            resp.status,
            resp.text()
        );
    }
    let rid = resp
        .header("x-amzn-requestid")
        .ok_or_else(|| anyhow!("a 202 without x-amzn-RequestId"))?
        .to_string();
    let deadline = Instant::now() + POLL_FOR;
    let status = loop {
        std::thread::sleep(POLL);
        let s = api.invocation_status(&rid)?;
        match s["state"].as_str() {
            Some("succeeded") => break s,
            Some("queued" | "running" | "retrying") if Instant::now() < deadline => {}
            _ => bail!("event {rid} did not succeed within {POLL_FOR:?}: {s}"),
        }
    };
    let handler_ms = status["response"]["t"]
        .as_f64()
        .ok_or_else(|| anyhow!("event {rid}: no response time in {status}"))?
        * 1000.0;
    let enqueued = unix_ms(&status["enqueuedAt"])?;
    let attempt = unix_ms(&status["attempts"][0]["startedAt"])?;
    Ok(StartSample {
        sent_to_start: handler_ms - sent,
        accepted: resp.elapsed,
        enqueued_to_attempt: attempt - enqueued,
        attempt_to_handler: handler_ms - attempt,
    })
}

/// Enqueue → start of events one at a time on an idle server (default settings).
pub fn enqueue_to_start(
    binary: &Path,
    samples: usize,
    pause: Duration,
) -> anyhow::Result<EnqueueToStart> {
    let server = TernServer::start(binary)?;
    with_log(&server, enqueue_to_start_on(&server.api, samples, pause))
}

fn enqueue_to_start_on(
    api: &Api,
    samples: usize,
    pause: Duration,
) -> anyhow::Result<EnqueueToStart> {
    let function = "started-at";
    let f = functions::python_started_at()?;
    api.create_function(function, f.runtime, f.handler, 128, &f.zip)?;
    for _ in 0..START_WARMUP {
        api.invoke(function, false)?;
    }
    for _ in 0..START_WARMUP {
        std::thread::sleep(pause);
        one_event(api, function)?;
    }
    let histogram = || {
        (
            api.metric("tern_async_enqueue_to_start_seconds_sum"),
            api.metric("tern_async_enqueue_to_start_seconds_count"),
        )
    };
    let colds_before = api.cold_starts(function)?;
    let hist_before = histogram();
    let mut taken = Vec::with_capacity(samples);
    for _ in 0..samples {
        std::thread::sleep(pause);
        taken.push(one_event(api, function)?);
    }
    let hist_after = histogram();
    let colds_after = api.cold_starts(function)?;
    let observed = hist_after.1 - hist_before.1;
    let col = |f: fn(&StartSample) -> f64| Summary::of_ms(&taken.iter().map(f).collect::<Vec<_>>());
    Ok(EnqueueToStart {
        samples,
        pause_ms: pause.as_millis() as u64,
        sent_to_start: col(|s| s.sent_to_start),
        accepted: col(|s| ms(s.accepted)),
        enqueued_to_attempt: col(|s| s.enqueued_to_attempt),
        attempt_to_handler: col(|s| s.attempt_to_handler),
        server_histogram_mean_ms: (observed > 0.0)
            .then(|| (hist_after.0 - hist_before.0) / observed * 1000.0),
        cold_starts: colds_after.saturating_sub(colds_before),
    })
}

/// The variant names of the warm series by store.
pub const SQLITE_WARM_VARIANT: &str = "server on SQLite (default settings)";
pub const POSTGRES_WARM_VARIANT: &str = "server on PostgreSQL (default settings)";

/// The Python warm series on a server on SQLite, then on one on a fresh PostgreSQL
/// database (both up throughout, holding the same function and settled first: neither
/// series overlaps the other server's start-up).
pub fn warm_by_store(binary: &Path, postgres: &str, samples: usize) -> anyhow::Result<WarmByStore> {
    let database = FreshDatabase::create(postgres, "warm")?;
    let on_sqlite = TernServer::start(binary)?;
    let on_postgres = TernServer::start_with(binary, &["--database", &database.url])?;
    let function = "warm-hello";
    let f = functions::python_hello()?;
    for server in [&on_sqlite, &on_postgres] {
        let deployed = server
            .api
            .create_function(function, f.runtime, f.handler, 128, &f.zip)
            .and_then(|()| server.api.invoke(function, false));
        with_log(server, deployed)?;
    }
    std::thread::sleep(WARM_SETTLE);
    let series = |server: &TernServer, variant: &str| {
        let r = warm::run(
            &server.api,
            function,
            f.runtime,
            variant,
            samples,
            Duration::ZERO,
        );
        with_log(server, r)
    };
    let sqlite = series(&on_sqlite, SQLITE_WARM_VARIANT)?;
    let postgres = series(&on_postgres, POSTGRES_WARM_VARIANT)?;
    Ok(WarmByStore {
        p50_ratio: postgres.client.p50_ms / sqlite.client.p50_ms,
        p99_ratio: postgres.client.p99_ms / sqlite.client.p99_ms,
        sqlite,
        postgres,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_url_keeps_the_server_and_options() {
        let url = |s: &str| database_url(s, "tern_bench_1_x").expect("url");
        assert_eq!(
            url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/tern_bench_1_x"
        );
        assert_eq!(
            url("postgresql://u@db:5432"),
            "postgresql://u@db:5432/tern_bench_1_x"
        );
        assert_eq!(
            url("postgres://u@db/test?connect_timeout=5"),
            "postgres://u@db/tern_bench_1_x?connect_timeout=5"
        );
        assert!(database_url("mysql://u@db/test", "x").is_err());
    }

    #[test]
    fn status_times_parse_to_unix_ms() {
        let t = unix_ms(&Value::from("2023-11-14T22:13:20.123Z")).expect("time");
        assert!((t - 1_700_000_000_123.0).abs() < 1e-3);
        assert!(unix_ms(&Value::Null).is_err());
    }
}
