//! Start-up the way users load it (issue #12), each case on a server of its own started
//! just before, with no pause between requests:
//!
//! - **new functions, back to back**: on a server started 2 s earlier, N new hello-world
//!   Python functions are created, then each is invoked once, one after another. Every
//!   invoke is a cold start of a function the server has never run; the first is the
//!   server's first.
//! - **distinct functions at once**: N functions created, then invoked at the same time
//!   from T threads (N/T each, back to back): a burst larger than any pool.
//! - **one function at once**: R requests at the same time to one function that sleeps
//!   1 s, so that every request needs an instance of its own.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::client::Api;
use crate::functions;
use crate::server::TernServer;
use crate::stats::{ms, Summary};

/// How long the new-functions case lets its fresh server sit before the creates.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize)]
pub struct NewFunctions {
    pub functions: usize,
    /// Server start → first invoke (creates included).
    pub server_age_ms: f64,
    /// Client latency of every invoke, the first included.
    pub client: Summary,
    pub first_ms: f64,
    /// Invokes served by a runtime started ahead (the server's
    /// `tern_cold_starts_total{served_by="started_ahead"}`).
    pub served_ahead: usize,
    /// Client latency by how the instance came about: a runtime started ahead, or one
    /// started for the request (in a held sandbox or one built then).
    pub client_ahead: Summary,
    pub client_started: Summary,
    /// The five slowest invokes: position, how the instance came about, latency and
    /// REPORT Init Duration (ms).
    pub slowest: Vec<Slow>,
}

/// One of the slowest invokes of a series.
#[derive(Debug, Serialize)]
pub struct Slow {
    pub position: usize,
    pub kind: String,
    pub client_ms: f64,
    pub init_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct AtOnce {
    pub what: String,
    pub requests: usize,
    pub threads: usize,
    pub ok: usize,
    pub throttled: usize,
    pub errors: usize,
    /// The first error or 429 seen, for the table.
    pub first_failure: Option<String>,
    /// Client latency of the requests that succeeded.
    pub client: Summary,
}

#[derive(Debug, Default, Serialize)]
pub struct BurstResults {
    pub new_functions: Option<NewFunctions>,
    pub distinct_at_once: Option<AtOnce>,
    pub one_function_at_once: Option<AtOnce>,
}

fn create_hello(api: &Api, prefix: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let f = functions::python_hello()?;
    (0..n)
        .map(|i| {
            let name = format!("{prefix}-{i}");
            api.create_function(&name, f.runtime, f.handler, 128, &f.zip)?;
            Ok(name)
        })
        .collect()
}

pub fn new_functions_back_to_back(
    binary: &std::path::Path,
    n: usize,
) -> anyhow::Result<NewFunctions> {
    let started = Instant::now();
    let server = TernServer::start(binary)?;
    // "A server started seconds earlier" (issue #12): it has settled, and so has
    // whatever the harness ran before it.
    std::thread::sleep(SETTLE);
    let names = create_hello(&server.api, "new", n)?;
    let server_age_ms = ms(started.elapsed());
    let mut samples = Vec::with_capacity(n);
    let mut seen = Vec::with_capacity(n);
    for name in &names {
        let inv = server.api.invoke(name, true)?;
        samples.push(inv.elapsed);
        let init_ms = inv.report().ok().and_then(|r| r.init_ms);
        seen.push((name, inv.elapsed, init_ms));
    }
    // Each function started exactly once: its counter says what served it.
    let counted = server.api.cold_starts_served_by()?;
    let seen: Vec<(String, Duration, Option<f64>)> = seen
        .into_iter()
        .map(|(name, d, init)| {
            (
                Api::served_by_between(&Default::default(), &counted, name),
                d,
                init,
            )
        })
        .collect();
    let of_kind = |ahead: bool| -> Vec<Duration> {
        seen.iter()
            .filter(|(k, _, _)| (k == "started_ahead") == ahead)
            .map(|(_, d, _)| *d)
            .collect()
    };
    let mut slowest: Vec<Slow> = seen
        .iter()
        .enumerate()
        .map(|(position, (kind, d, init_ms))| Slow {
            position,
            kind: kind.clone(),
            client_ms: ms(*d),
            init_ms: *init_ms,
        })
        .collect();
    slowest.sort_by(|a, b| b.client_ms.total_cmp(&a.client_ms));
    slowest.truncate(5);
    Ok(NewFunctions {
        functions: n,
        server_age_ms,
        first_ms: ms(samples[0]),
        client: Summary::of(&samples),
        served_ahead: of_kind(true).len(),
        client_ahead: Summary::of(&of_kind(true)),
        client_started: Summary::of(&of_kind(false)),
        slowest,
    })
}

/// Runs `each(api, i)` for i in 0..count from `threads` threads, each with a connection
/// of its own, taking every `threads`-th i back to back; with `together`, the threads
/// start at the same moment. Results come in no particular order.
pub fn across_threads<T: Send>(
    api: &Api,
    threads: usize,
    count: usize,
    together: bool,
    each: impl Fn(&Api, usize) -> T + Sync,
) -> Vec<T> {
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, each) = (&barrier, &each);
                let api = api.fresh_connection();
                scope.spawn(move || {
                    if together {
                        barrier.wait();
                    }
                    (t..count)
                        .step_by(threads)
                        .map(|i| each(&api, i))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// `requests` invokes from `threads` threads released together; each thread sends its
/// share back to back on its own connection. `name_of(i)` names request i's function.
fn at_once(
    api: &Api,
    what: &str,
    requests: usize,
    threads: usize,
    payload: &str,
    name_of: impl Fn(usize) -> String + Sync,
) -> AtOnce {
    let outcomes: Vec<(u16, Duration, String)> =
        across_threads(api, threads, requests, true, |api, i| {
            let path = format!("/2015-03-31/functions/{}/invocations", name_of(i));
            match api.request("POST", &path, &[], payload.as_bytes()) {
                Ok(r) => (r.status, r.elapsed, r.text()),
                Err(e) => (0, Duration::ZERO, e.to_string()),
            }
        });
    let ok: Vec<Duration> = outcomes
        .iter()
        .filter(|(s, _, _)| *s == 200)
        .map(|(_, d, _)| *d)
        .collect();
    let throttled = outcomes.iter().filter(|(s, _, _)| *s == 429).count();
    AtOnce {
        what: what.to_string(),
        requests,
        threads,
        ok: ok.len(),
        throttled,
        errors: requests - ok.len() - throttled,
        first_failure: outcomes
            .iter()
            .find(|(s, _, _)| *s != 200)
            .map(|(s, _, t)| format!("{s}: {}", t.chars().take(300).collect::<String>())),
        client: Summary::of(&ok),
    }
}

pub fn distinct_functions_at_once(
    binary: &std::path::Path,
    functions: usize,
    threads: usize,
) -> anyhow::Result<AtOnce> {
    let server = TernServer::start(binary)?;
    create_hello(&server.api, "burst", functions)?;
    Ok(at_once(
        &server.api,
        &format!("{functions} new functions invoked at once from {threads} threads"),
        functions,
        threads,
        "{}",
        |i| format!("burst-{i}"),
    ))
}

pub fn one_function_at_once(binary: &std::path::Path, requests: usize) -> anyhow::Result<AtOnce> {
    let server = TernServer::start(binary)?;
    create_hello(&server.api, "sleeper", 1)?;
    Ok(at_once(
        &server.api,
        &format!("{requests} requests at once to one function sleeping 1 s"),
        requests,
        requests,
        r#"{"sleep_ms": 1000}"#,
        |_| "sleeper-0".to_string(),
    ))
}
