//! Function networking (issue #14), each case on a release server of its own started
//! for it, against the test host in a network namespace the bench builds (`world.rs`).
//! Every server gets a resolv.conf naming the world, so nothing leaves the machine.
//!
//! - **Cold start, egress vs none**: two Python hello-world functions (128 MB) on one
//!   server, one in mode `none` and one in `egress`, sampled alternately (each round
//!   starts with the other mode) so that both see the same machine: isolated (a pause
//!   after every sample for the server to refill what it builds ahead) and back to back
//!   (no pause, as in a burst: what is built ahead may not be ready).
//! - **TCP bulk**: the function sends N MiB in 1 MiB `sendall`s over one connection to
//!   the world's sink and times itself from connect to the sink's byte count (so every
//!   byte arrived); the same Python code as a plain host process is the baseline, and
//!   shows what the sink and the machine allow.
//! - **HTTP round trip**: sequential GETs on one keep-alive connection to the world's
//!   HTTP server (a fixed small response), timed per request inside the function and,
//!   as the baseline, by the same code as a host process.
//! - **Many instances**: N concurrent requests to one egress function, each opening a
//!   connection to the world's holding server and waiting for its release, which comes
//!   once all N connections are held (or a deadline passes): N instances with a live
//!   connection at once. The host's link, neighbour, conntrack and namespace counts are
//!   read at that moment, with the limits that bound them.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;
use serde_json::{json, Value};

use crate::burst::across_threads;
use crate::client::{instance_of_stream, Api};
use crate::cold;
use crate::functions::{self, Function};
use crate::server::TernServer;
use crate::stats::Summary;
use crate::world::{World, HOLD_PORT, HTTP_PORT, SINK_PORT, WORLD};

pub const ISOLATED: &str = "isolated";
pub const BACK_TO_BACK: &str = "back_to_back";
/// MemorySize of the cold-start and many-instances functions (Lambda's default).
const SMALL_MB: u32 = 128;
/// Function timeout (s): long enough for a bulk run at a quarter core.
const FUNCTION_TIMEOUT_S: u64 = 300;
const BULK_CHUNK: u64 = 1 << 20;
/// An untimed bulk run per sender first (instances started, TCP and caches warm).
const BULK_WARMUP_BYTES: u64 = 32 << 20;
/// GETs on the connection before the timed ones.
const HTTP_WARMUP: usize = 200;
/// How long the many-instances case waits for all connections before releasing them.
const HOLD_WAIT: Duration = Duration::from_secs(60);
/// How long each held function waits for its release (its socket timeout).
const HOLD_TIMEOUT_S: u64 = 150;
const HOLD_POLL: Duration = Duration::from_millis(50);
/// The many-instances server: what its budgets count must fit them all (by default,
/// memory is 75% of RAM, and /tmp disk half the data dir's free space, counted at
/// EphemeralStorage 512 MB each, though the sparse images take nearly nothing), and
/// requests queued behind the cold starts must not time out.
const MANY_CONFIG: &str =
    "memory_budget_mb = 40000\ntmp_disk_budget_mb = 150000\nqueue_timeout_ms = 100000\n";
const MANY_MEMORY_BUDGET_MB: f64 = 40000.0;
const MANY_TMP_BUDGET_MB: f64 = 150000.0;
/// Lambda's default EphemeralStorage, what the /tmp disk budget counts per instance.
const TMP_MB: f64 = 512.0;
/// tern's own limits on sandboxes with a network (docs/operations.md).
const SERVER_BLOCK_SLOTS: f64 = 4095.0;
const DEFAULT_MAX_INSTANCES: f64 = 2048.0;

/// The section's sizes.
pub struct Sizes {
    pub cold_samples: usize,
    pub cold_gap: Duration,
    pub bulk_bytes: u64,
    pub bulk_runs: usize,
    pub http_requests: usize,
    pub instances: usize,
    /// MemorySize of the bulk and HTTP functions, one function each.
    pub memory_mb: Vec<u32>,
}

#[derive(Debug, Default, Serialize)]
pub struct NetworkResults {
    /// The test host every case reaches.
    pub test_host: String,
    /// [`ISOLATED`] and [`BACK_TO_BACK`].
    pub cold: Vec<ColdPair>,
    pub bulk: Option<Bulk>,
    pub http: Option<HttpRoundTrip>,
    pub many: Option<ManyAlive>,
}

#[derive(Debug, Serialize)]
pub struct ColdPair {
    pub case: String,
    /// Pause after each sample.
    pub gap_ms: u64,
    pub none: ColdMode,
    pub egress: ColdMode,
    /// Client latency p50, egress − none.
    pub p50_difference_ms: f64,
    /// Init Duration p50, egress − none.
    pub init_p50_difference_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct ColdMode {
    pub function: String,
    /// HTTP request out → response in.
    pub client: Summary,
    /// REPORT Init Duration.
    pub init: Summary,
    /// Samples served by a runtime started ahead.
    pub served_ahead: usize,
}

/// Rates of the runs of one sender, in Gbit/s (10^9 bits).
#[derive(Debug, Serialize)]
pub struct Rate {
    pub runs_gbit_per_s: Vec<f64>,
    pub median_gbit_per_s: f64,
    pub min_gbit_per_s: f64,
    pub max_gbit_per_s: f64,
}

impl Rate {
    fn of(runs: Vec<f64>) -> Rate {
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        Rate {
            median_gbit_per_s: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
            min_gbit_per_s: sorted.first().copied().unwrap_or(0.0),
            max_gbit_per_s: sorted.last().copied().unwrap_or(0.0),
            runs_gbit_per_s: runs,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Bulk {
    pub bytes_per_run: u64,
    pub chunk_bytes: u64,
    /// The same Python sender as a plain host process (no sandbox, no quota).
    pub host: Rate,
    pub functions: Vec<FunctionRate>,
}

#[derive(Debug, Serialize)]
pub struct FunctionRate {
    pub memory_mb: u32,
    pub rate: Rate,
}

#[derive(Debug, Serialize)]
pub struct HttpRoundTrip {
    /// Timed GETs per client, after `warmup` untimed ones on the same connection.
    pub requests: usize,
    pub warmup: usize,
    /// The same client code as a plain host process.
    pub host: Summary,
    pub functions: Vec<FunctionRoundTrip>,
}

#[derive(Debug, Serialize)]
pub struct FunctionRoundTrip {
    pub memory_mb: u32,
    pub round_trip: Summary,
    /// p50, function − host.
    pub p50_difference_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct ManyAlive {
    pub requests: usize,
    pub memory_mb: u32,
    /// Connections the holding server held at once, before it released them.
    pub held_at_once: usize,
    /// Requests that returned the release byte.
    pub succeeded: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    /// Instances (log stream names) that served the successful requests.
    pub distinct_instances: usize,
    /// The server's `tern_cold_starts_total` for the function.
    pub cold_starts: u64,
    /// Burst sent → first and last connection accepted by the test host.
    pub first_connected_s: Option<f64>,
    pub all_connected_s: Option<f64>,
    /// Inside the functions: connect() time.
    pub connect: Summary,
    pub mem_available_before_mb: Option<f64>,
    /// What the host held while all connections were up.
    pub at_peak: Peak,
    /// What was in use against each limit that bounds the case, highest share first.
    pub limits: Vec<Limit>,
}

#[derive(Debug, Default, Serialize)]
pub struct Peak {
    /// Host links named with this server's prefix (`t<block id>x<n>`), if found in
    /// its log.
    pub server_links: Option<usize>,
    /// Host links of any tern server (`t` + 5 hex digits + `x`).
    pub tern_links: usize,
    /// IPv4 neighbour entries of the host (`/proc/net/arp`).
    pub neighbours: usize,
    pub conntrack_count: Option<f64>,
    /// Distinct network namespaces of all processes.
    pub net_namespaces: usize,
    /// Loop devices with a backing file (each instance's /tmp is one).
    pub loop_devices: usize,
    pub mem_available_mb: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Limit {
    pub name: String,
    pub in_use: Option<f64>,
    pub limit: Option<f64>,
    pub what: String,
}

impl Limit {
    pub fn share(&self) -> Option<f64> {
        Some(self.in_use? / self.limit.filter(|l| *l > 0.0)?)
    }
}

/// The server's log tail on an error of a case.
fn with_log<T>(server: &TernServer, r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| e.context(format!("tern server log (tail):\n{}", server.log_tail())))
}

/// A server whose sandboxes' DNS goes to the world (`extra`: top-level config keys).
fn start_server(binary: &Path, world: &World, extra: &str) -> anyhow::Result<TernServer> {
    let resolv = world.resolv_conf().display().to_string();
    let config = format!("{extra}[network]\nresolv_conf = {resolv:?}\n");
    TernServer::start_with_config(binary, &[], &config)
}

/// Runs `case` on `server`, keeping its warnings and adding its log to an error.
fn on_server<T>(
    server: TernServer,
    warnings: &mut Vec<String>,
    case: impl FnOnce(&TernServer) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let r = case(&server);
    warnings.extend(server.warnings());
    with_log(&server, r)
}

fn deploy(api: &Api, name: &str, f: &Function, memory_mb: u32, mode: &str) -> anyhow::Result<()> {
    api.create_function_with(
        name,
        f.runtime,
        f.handler,
        memory_mb,
        &f.zip,
        json!({"TernNetwork": {"Mode": mode}, "Timeout": FUNCTION_TIMEOUT_S}),
    )
}

/// Cold starts of a `none` and an `egress` function, isolated and back to back.
pub fn cold_starts(
    binary: &Path,
    world: &World,
    sizes: &Sizes,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<ColdPair>> {
    let server = start_server(binary, world, "")?;
    on_server(server, warnings, |s| {
        cold_on(&s.api, sizes.cold_samples, sizes.cold_gap)
    })
}

fn cold_on(api: &Api, samples: usize, gap: Duration) -> anyhow::Result<Vec<ColdPair>> {
    let f = functions::python_hello()?;
    let (none, egress) = ("cold-none", "cold-egress");
    deploy(api, none, &f, SMALL_MB, "none")?;
    deploy(api, egress, &f, SMALL_MB, "egress")?;
    let series = |function, gap| cold::Series {
        function,
        runtime: f.runtime,
        memory_mb: SMALL_MB,
        variant: "",
        env: &[],
        samples,
        gap,
        settle: Duration::ZERO,
    };
    let mut pairs = Vec::new();
    for (case, gap, first_nonce) in [(ISOLATED, gap, 0), (BACK_TO_BACK, Duration::ZERO, 1 << 20)] {
        eprintln!("network: cold, {case}: {samples} samples per mode, alternating");
        pairs.push(cold_pair(
            api,
            case,
            &series(none, gap),
            &series(egress, gap),
            first_nonce,
        )?);
    }
    Ok(pairs)
}

/// Alternates the two series' samples, each round starting with the other mode, after
/// one discarded start each.
fn cold_pair(
    api: &Api,
    case: &str,
    none: &cold::Series,
    egress: &cold::Series,
    first_nonce: usize,
) -> anyhow::Result<ColdPair> {
    let (gap, samples) = (none.gap, none.samples);
    for s in [none, egress] {
        cold::one_served(api, s, first_nonce + samples)?;
        std::thread::sleep(gap);
    }
    let (mut of_none, mut of_egress) = (Vec::new(), Vec::new());
    for i in 0..samples {
        for k in 0..2 {
            let (series, into) = if (i + k) % 2 == 0 {
                (none, &mut of_none)
            } else {
                (egress, &mut of_egress)
            };
            into.push(cold::one_served(api, series, first_nonce + i)?);
            std::thread::sleep(gap);
        }
    }
    let mode = |series: &cold::Series, all: &[cold::Served]| ColdMode {
        function: series.function.to_string(),
        client: Summary::of_ms(&all.iter().map(|s| s.client_ms).collect::<Vec<_>>()),
        init: Summary::of_ms(&all.iter().map(|s| s.init_ms).collect::<Vec<_>>()),
        served_ahead: all.iter().filter(|s| s.ahead).count(),
    };
    let (none, egress) = (mode(none, &of_none), mode(egress, &of_egress));
    Ok(ColdPair {
        case: case.to_string(),
        gap_ms: gap.as_millis() as u64,
        p50_difference_ms: egress.client.p50_ms - none.client.p50_ms,
        init_p50_difference_ms: egress.init.p50_ms - none.init.p50_ms,
        none,
        egress,
    })
}

/// One run of `op` of the network function as a plain host process.
fn run_host(op: &str, args: &Value) -> anyhow::Result<Value> {
    let python = crate::baselines::python311()?;
    let out = Command::new(&python)
        .arg("-c")
        .arg(functions::PY_NET)
        .arg(op)
        .arg(args.to_string())
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "host {op} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "host {op}: not JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// One invoke of `op` of the network function `name`.
fn run_function(api: &Api, name: &str, op: &str, args: &Value) -> anyhow::Result<Value> {
    let event = json!({"op": op, "args": args}).to_string();
    let body = api.invoke_with(name, false, event.as_bytes())?.body;
    if let Some(e) = body.get("error") {
        bail!("{name} {op}: {e}");
    }
    Ok(body)
}

fn bulk_args(bytes: u64) -> Value {
    json!({"host": WORLD.to_string(), "port": SINK_PORT, "total": bytes, "chunk": BULK_CHUNK})
}

/// Gbit/s of a bulk run that must have delivered `bytes`.
fn gbit_per_s(run: &Value, bytes: u64) -> anyhow::Result<f64> {
    let received = run["received"].as_u64().unwrap_or(0);
    if received != bytes {
        bail!("the sink received {received} of {bytes} bytes: {run}");
    }
    let seconds = run["seconds"]
        .as_f64()
        .filter(|s| *s > 0.0)
        .ok_or_else(|| anyhow!("a bulk run without its time: {run}"))?;
    Ok(bytes as f64 * 8.0 / seconds / 1e9)
}

/// TCP bulk throughput to the world's sink, from a function per memory size and from
/// the host, runs interleaved.
pub fn bulk(
    binary: &Path,
    world: &World,
    sizes: &Sizes,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Bulk> {
    let server = start_server(binary, world, "")?;
    on_server(server, warnings, |s| bulk_on(&s.api, sizes))
}

fn bulk_on(api: &Api, sizes: &Sizes) -> anyhow::Result<Bulk> {
    let f = functions::python_net()?;
    let names: Vec<String> = sizes
        .memory_mb
        .iter()
        .map(|mb| format!("bulk-{mb}"))
        .collect();
    for (name, &mb) in names.iter().zip(&sizes.memory_mb) {
        deploy(api, name, &f, mb, "egress")?;
    }
    let warm = bulk_args(BULK_WARMUP_BYTES);
    gbit_per_s(&run_host("bulk", &warm)?, BULK_WARMUP_BYTES)?;
    for name in &names {
        gbit_per_s(&run_function(api, name, "bulk", &warm)?, BULK_WARMUP_BYTES)?;
    }
    let (bytes, args) = (sizes.bulk_bytes, bulk_args(sizes.bulk_bytes));
    let mut host = Vec::new();
    let mut of_functions = vec![Vec::new(); names.len()];
    for run in 0..sizes.bulk_runs {
        eprintln!(
            "network: bulk run {} of {}: {} MiB from the host, then from each function",
            run + 1,
            sizes.bulk_runs,
            bytes >> 20
        );
        host.push(gbit_per_s(&run_host("bulk", &args)?, bytes)?);
        for (name, rates) in names.iter().zip(&mut of_functions) {
            rates.push(gbit_per_s(&run_function(api, name, "bulk", &args)?, bytes)?);
        }
    }
    Ok(Bulk {
        bytes_per_run: bytes,
        chunk_bytes: BULK_CHUNK,
        host: Rate::of(host),
        functions: sizes
            .memory_mb
            .iter()
            .zip(of_functions)
            .map(|(&memory_mb, runs)| FunctionRate {
                memory_mb,
                rate: Rate::of(runs),
            })
            .collect(),
    })
}

fn http_args(warmup: usize, requests: usize) -> Value {
    json!({"host": WORLD.to_string(), "port": HTTP_PORT, "warmup": warmup, "requests": requests})
}

/// The per-request times of an HTTP run.
fn round_trips(run: &Value) -> anyhow::Result<Summary> {
    let ns: Vec<f64> = run["ns"]
        .as_array()
        .ok_or_else(|| anyhow!("an HTTP run without its times: {run}"))?
        .iter()
        .filter_map(Value::as_f64)
        .map(|ns| ns / 1e6)
        .collect();
    Ok(Summary::of_ms(&ns))
}

/// HTTP round trips to the world's server from a function per memory size and from the
/// host.
pub fn http(
    binary: &Path,
    world: &World,
    sizes: &Sizes,
    warnings: &mut Vec<String>,
) -> anyhow::Result<HttpRoundTrip> {
    let server = start_server(binary, world, "")?;
    on_server(server, warnings, |s| http_on(&s.api, sizes))
}

fn http_on(api: &Api, sizes: &Sizes) -> anyhow::Result<HttpRoundTrip> {
    let f = functions::python_net()?;
    let names: Vec<String> = sizes
        .memory_mb
        .iter()
        .map(|mb| format!("http-{mb}"))
        .collect();
    for (name, &mb) in names.iter().zip(&sizes.memory_mb) {
        deploy(api, name, &f, mb, "egress")?;
        // Its cold start, untimed.
        run_function(api, name, "http", &http_args(0, 10))?;
    }
    let args = http_args(HTTP_WARMUP, sizes.http_requests);
    eprintln!(
        "network: HTTP round trip, {} GETs from the host, then from each function",
        sizes.http_requests
    );
    let host = round_trips(&run_host("http", &args)?)?;
    let mut of_functions = Vec::new();
    for (name, &memory_mb) in names.iter().zip(&sizes.memory_mb) {
        let round_trip = round_trips(&run_function(api, name, "http", &args)?)?;
        of_functions.push(FunctionRoundTrip {
            memory_mb,
            p50_difference_ms: round_trip.p50_ms - host.p50_ms,
            round_trip,
        });
    }
    Ok(HttpRoundTrip {
        requests: sizes.http_requests,
        warmup: HTTP_WARMUP,
        host,
        functions: of_functions,
    })
}

/// `n` egress instances with a connection to the world open at once.
pub fn many_alive(
    binary: &Path,
    world: &World,
    n: usize,
    warnings: &mut Vec<String>,
) -> anyhow::Result<ManyAlive> {
    let server = start_server(binary, world, MANY_CONFIG)?;
    on_server(server, warnings, |s| {
        let prefix = link_prefix(&s.log());
        many_on(&s.api, world, n, prefix.as_deref())
    })
}

/// The prefix of the server's host links, from its "function networking ready" line
/// (`table=tern-<id>`, perhaps with colour codes: links are `t<id>x<n>`).
fn link_prefix(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("function networking ready"))?;
    let at = line.find("tern-")? + "tern-".len();
    let id: String = line[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (id.len() == 5).then(|| format!("t{id}x"))
}

/// Whether `name` is a tern sandbox link: `t` + 5 hex digits + `x` + digits.
fn is_tern_link(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 7
        && b[0] == b't'
        && b[1..6].iter().all(u8::is_ascii_hexdigit)
        && b[6] == b'x'
        && b[7..].iter().all(u8::is_ascii_digit)
}

fn read_number(path: &str) -> Option<f64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Free space of the filesystem holding `dir`, in MB.
fn free_disk_mb(dir: &Path) -> Option<f64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as f64 * s.fragment_size() as f64 / (1 << 20) as f64)
}

fn mem_available_mb() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

impl Peak {
    fn now(prefix: Option<&str>) -> Peak {
        let links: Vec<String> = std::fs::read_dir("/sys/class/net")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let namespaces: HashSet<std::path::PathBuf> = std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(|e| {
                    let e = e.ok()?;
                    e.file_name().to_str()?.parse::<u32>().ok()?;
                    std::fs::read_link(e.path().join("ns/net")).ok()
                })
                .collect()
            })
            .unwrap_or_default();
        Peak {
            server_links: prefix.map(|p| links.iter().filter(|l| l.starts_with(p)).count()),
            tern_links: links.iter().filter(|l| is_tern_link(l)).count(),
            neighbours: std::fs::read_to_string("/proc/net/arp")
                .map_or(0, |t| t.lines().count().saturating_sub(1)),
            conntrack_count: read_number("/proc/sys/net/netfilter/nf_conntrack_count"),
            net_namespaces: namespaces.len(),
            loop_devices: std::fs::read_dir("/sys/block")
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.path().join("loop/backing_file").exists())
                        .count()
                })
                .unwrap_or(0),
            mem_available_mb: mem_available_mb(),
        }
    }
}

fn many_on(api: &Api, world: &World, n: usize, prefix: Option<&str>) -> anyhow::Result<ManyAlive> {
    let function = "hold";
    deploy(api, function, &functions::python_net()?, SMALL_MB, "egress")?;
    let hold = world.hold()?;
    let event = json!({"op": "hold", "args": {
        "host": WORLD.to_string(), "port": HOLD_PORT, "timeout": HOLD_TIMEOUT_S,
    }})
    .to_string();
    let mem_before = mem_available_mb();
    eprintln!("network: {n} requests at once to one egress function, each holding a connection");
    // Requests that come back before the release failed: the watcher stops waiting for
    // them.
    let returned = AtomicUsize::new(0);
    let started = Instant::now();
    let (outcomes, watched) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let deadline = started + HOLD_WAIT;
            let accepted = loop {
                let accepted = hold.wait_for(n, (Instant::now() + HOLD_POLL).min(deadline));
                if accepted.len() + returned.load(Ordering::Acquire) >= n
                    || Instant::now() >= deadline
                {
                    break accepted;
                }
            };
            let peak = Peak::now(prefix);
            hold.release();
            (accepted, peak)
        });
        let outcomes = across_threads(api, n, n, true, |api, _| {
            let r = api
                .invoke_with(function, false, event.as_bytes())
                .map(|i| i.body)
                .map_err(|e| format!("{e:#}"));
            returned.fetch_add(1, Ordering::AcqRel);
            r
        });
        (outcomes, watcher.join())
    });
    let (accepted, at_peak) = watched.map_err(|_| anyhow!("the hold watcher panicked"))?;
    let mut instances = HashSet::new();
    let (mut succeeded, mut first_error, mut connect) = (0, None, Vec::new());
    for outcome in &outcomes {
        match outcome {
            Ok(body) if body["released"] == Value::Bool(true) => {
                succeeded += 1;
                if let Some(id) = body["instance"].as_str().and_then(instance_of_stream) {
                    instances.insert(id);
                }
                connect.extend(body["connect_s"].as_f64().map(|s| s * 1000.0));
            }
            Ok(body) => {
                first_error.get_or_insert_with(|| body.to_string());
            }
            Err(e) => {
                first_error.get_or_insert_with(|| e.clone());
            }
        }
    }
    let since = |t: &Instant| t.duration_since(started).as_secs_f64();
    let limits = limits(n, &at_peak, mem_before);
    Ok(ManyAlive {
        requests: n,
        memory_mb: SMALL_MB,
        held_at_once: accepted.len().min(n),
        succeeded,
        errors: n - succeeded,
        first_error,
        distinct_instances: instances.len(),
        cold_starts: api.cold_starts(function)?,
        first_connected_s: accepted.iter().min().map(since),
        all_connected_s: (accepted.len() >= n)
            .then(|| accepted.iter().max().map(since))
            .flatten(),
        connect: Summary::of_ms(&connect),
        mem_available_before_mb: mem_before,
        at_peak,
        limits,
    })
}

/// What the case used against each limit, highest share first.
fn limits(n: usize, peak: &Peak, mem_before: Option<f64>) -> Vec<Limit> {
    let mem_total_mb = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let kb: f64 = t
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    });
    let counted = (n as u64 * u64::from(SMALL_MB)) as f64;
    let limit = |name: &str, in_use: Option<f64>, limit: Option<f64>, what: &str| Limit {
        name: name.to_string(),
        in_use,
        limit,
        what: what.to_string(),
    };
    let mut all = vec![
        limit(
            "net.netfilter.nf_conntrack_max",
            peak.conntrack_count,
            read_number("/proc/sys/net/netfilter/nf_conntrack_max"),
            "connections tracked at once in the host's namespace (every forwarded sandbox connection, and the host's own)",
        ),
        limit(
            "net.ipv4.neigh.default.gc_thresh3",
            Some(peak.neighbours as f64),
            read_number("/proc/sys/net/ipv4/neigh/default/gc_thresh3"),
            "IPv4 neighbour entries on the host (one per sandbox link that carried traffic)",
        ),
        limit(
            "user.max_net_namespaces",
            Some(peak.net_namespaces as f64),
            read_number("/proc/sys/user/max_net_namespaces"),
            "network namespaces (every sandbox has one, with or without a network)",
        ),
        limit(
            "server address block (a /19)",
            peak.server_links.map(|l| l as f64),
            Some(SERVER_BLOCK_SLOTS),
            "sandboxes with a network per server, built ahead included",
        ),
        limit(
            "max_instances (default)",
            Some(n as f64),
            Some(DEFAULT_MAX_INSTANCES),
            "live instances per server",
        ),
        limit(
            "memory_budget_mb (this run)",
            Some(counted),
            Some(MANY_MEMORY_BUDGET_MB),
            "MB counted for busy instances (by MemorySize)",
        ),
        limit(
            "memory_budget_mb (default: 75% of RAM)",
            Some(counted),
            mem_total_mb.map(|t| (t * 0.75).floor()),
            "what the default budget would hold: requests beyond it wait or get a 429",
        ),
        limit(
            "tmp_disk_budget_mb (this run)",
            Some(n as f64 * TMP_MB),
            Some(MANY_TMP_BUDGET_MB),
            "MB of /tmp disk counted for live instances (EphemeralStorage)",
        ),
        limit(
            "tmp_disk_budget_mb (default: half the free disk)",
            Some(n as f64 * TMP_MB),
            free_disk_mb(&std::env::temp_dir()).map(|f| (f / 2.0).floor()),
            "what the default budget would hold (data dir under the system temp dir)",
        ),
        limit(
            "host MemAvailable",
            mem_before
                .zip(peak.mem_available_mb)
                .map(|(b, a)| b - a),
            mem_before,
            "MB the held instances took from MemAvailable, against what was available",
        ),
    ];
    all.sort_by(|a, b| {
        b.share()
            .unwrap_or(-1.0)
            .total_cmp(&a.share().unwrap_or(-1.0))
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tern_links_are_recognised_by_name() {
        assert!(is_tern_link("t32300x17"));
        assert!(is_tern_link("t3230fx0"));
        assert!(!is_tern_link("tern-bench-wh"));
        assert!(!is_tern_link("t32300x"));
        assert!(!is_tern_link("eth0"));
    }

    #[test]
    fn the_link_prefix_comes_from_the_ready_line() {
        let log = "2026-12-08T10:00:00Z  INFO function networking ready block=100.96.0.0/19 \
                   resolver=100.96.0.1 table=tern-32300\n";
        assert_eq!(link_prefix(log).as_deref(), Some("t32300x"));
        assert_eq!(link_prefix("no such line"), None);
    }

    #[test]
    fn rates_take_the_median_run() {
        let r = Rate::of(vec![3.0, 1.0, 2.0]);
        assert_eq!(
            (r.median_gbit_per_s, r.min_gbit_per_s, r.max_gbit_per_s),
            (2.0, 1.0, 3.0)
        );
    }
}
