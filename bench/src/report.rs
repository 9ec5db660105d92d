//! The results of a run: JSON shape, target evaluation (issue #4) and the table.

use std::process::Command;

use serde::Serialize;

use crate::async_invoke::AsyncResults;
use crate::baselines::PhaseSample;
use crate::cold::ColdResult;
use crate::memory::InstancesMemory;
use crate::network::NetworkResults;
use crate::sandbox::SandboxResult;
use crate::stats::{ms, Summary};
use crate::throughput::Level;
use crate::warm::WarmResult;

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub date: String,
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub commit: String,
    /// Whether the source tree had uncommitted changes when the bench ran.
    pub dirty: bool,
    pub tern_binary: String,
    /// `/proc/loadavg` before and after the run (other work on the machine).
    pub loadavg_before: String,
    pub loadavg_after: String,
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

impl Machine {
    pub fn detect() -> Machine {
        let cmd = |prog: &str, args: &[&str]| {
            Command::new(prog)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        Machine {
            date: cmd("date", &[]).unwrap_or_default(),
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("model name"))
                        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
                })
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            commit: cmd("git", &["-C", repo, "rev-parse", "--short", "HEAD"]).unwrap_or_default(),
            dirty: cmd(
                "git",
                &["-C", repo, "status", "--porcelain", "--untracked-files=no"],
            )
            .is_some_and(|s| !s.is_empty()),
            tern_binary: String::new(),
            loadavg_before: loadavg(),
            loadavg_after: String::new(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Settings {
    pub cold_samples: usize,
    pub cold_samples_others: usize,
    pub cold_gap_ms: u64,
    pub warm_samples: usize,
    pub throughput_requests: usize,
    pub concurrency: Vec<usize>,
    pub sandbox_iterations: usize,
    pub sandbox_python_samples: usize,
    pub async_connections: usize,
    pub async_events: usize,
    pub async_start_samples: usize,
    pub async_start_pause_ms: u64,
    pub network_cold_samples: usize,
    pub network_bulk_mb: u64,
    pub network_bulk_runs: usize,
    pub network_http_requests: usize,
    pub network_instances: usize,
    pub network_memory_mb: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct Baselines {
    pub python: String,
    /// (a) the naive platform's cold start as the client sees it: a tern server with
    /// everything built ahead and zygotes off (a sandbox built and a fresh
    /// `python3` exec'd per cold start), HTTP in → response out.
    pub naive_platform: Summary,
    /// Its REPORT Init Duration (launch → first `next`).
    pub naive_platform_init: Summary,
    /// (a0) the interpreter alone, no sandbox and no HTTP: spawn → the bootstrap's
    /// first `next`.
    pub naive_init: Summary,
    /// (a0) spawn → result posted.
    pub naive_total: Summary,
    /// (b) request → forked child running in new namespaces.
    pub fork_floor: Summary,
}

#[derive(Debug, Serialize)]
pub struct Phases {
    /// `python3.11 -c pass`, spawn → exit.
    pub interpreter: Summary,
    /// `python3.11 -S -c pass`.
    pub interpreter_no_site: Summary,
    pub bootstrap_import: Summary,
    pub handler_import: Summary,
}

impl Phases {
    pub fn of(samples: &[PhaseSample]) -> Phases {
        let col = |f: &dyn Fn(&PhaseSample) -> f64| {
            Summary::of_ms(&samples.iter().map(f).collect::<Vec<_>>())
        };
        Phases {
            interpreter: col(&|s| ms(s.interpreter)),
            interpreter_no_site: col(&|s| ms(s.interpreter_no_site)),
            bootstrap_import: col(&|s| s.bootstrap_import_ms),
            handler_import: col(&|s| s.handler_import_ms),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct MemoryEntry {
    pub function: String,
    pub runtime: String,
    pub what: String,
    pub memory: Option<InstancesMemory>,
}

#[derive(Debug, Serialize)]
pub struct Ratios {
    /// Baseline (a) cold p50 / tern python cold p50 (target ≥ 10).
    pub naive_over_tern_p50: f64,
    /// Baseline (a0) (the interpreter alone) p50 / tern python cold p50.
    pub interpreter_over_tern_p50: f64,
    /// tern python cold p50 / baseline (b) p50: how far above the physical floor.
    pub tern_over_floor_p50: f64,
    /// Baseline (a0) p50 / baseline (b) p50: what a fork saves over an exec.
    pub interpreter_over_floor_p50: f64,
    /// Baseline (a) cold p50 / tern's python cold p50 forked by the zygote at launch.
    pub naive_over_zygote_p50: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: f64,
    pub unit: String,
    pub met: bool,
    /// How far off, in the unit (0 when met).
    pub missed_by: f64,
    /// measured / target for upper bounds, target / measured for lower bounds.
    pub factor: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub settings: Settings,
    pub sandbox: Option<SandboxResult>,
    pub cold: Vec<ColdResult>,
    pub baselines: Option<Baselines>,
    pub phases: Option<Phases>,
    pub ratios: Option<Ratios>,
    pub http_floor: Option<Summary>,
    pub warm: Vec<WarmResult>,
    pub throughput: Vec<Level>,
    pub memory: Vec<MemoryEntry>,
    pub burst: crate::burst::BurstResults,
    pub idle: Option<crate::idle::IdleInstances>,
    #[serde(rename = "async")]
    pub async_invoke: AsyncResults,
    pub network: NetworkResults,
    pub targets: Vec<Target>,
    pub server_warnings: Vec<String>,
    /// `tern/<server_id>` cgroup dirs the server left behind after it stopped.
    pub leftover_cgroups: Vec<String>,
}

fn at_most(name: &str, measured: f64, limit: f64, unit: &str) -> Target {
    Target {
        name: name.into(),
        target: format!("≤ {limit} {unit}"),
        measured,
        unit: unit.into(),
        met: measured <= limit,
        missed_by: (measured - limit).max(0.0),
        factor: measured / limit,
    }
}

fn at_least(name: &str, measured: f64, floor: f64, unit: &str) -> Target {
    Target {
        name: name.into(),
        target: format!("≥ {floor} {unit}"),
        measured,
        unit: unit.into(),
        met: measured >= floor,
        missed_by: (floor - measured).max(0.0),
        factor: if measured > 0.0 {
            floor / measured
        } else {
            f64::INFINITY
        },
    }
}

impl Results {
    fn python_cold(&self) -> Option<&ColdResult> {
        self.cold.iter().find(|c| {
            c.runtime.starts_with("python") && c.memory_mb == 128 && c.variant == "isolated"
        })
    }

    /// Ratios and the issue #4 targets, from what was measured.
    pub fn evaluate(&mut self) {
        let mut t = Vec::new();
        if let Some(c) = self.python_cold() {
            t.push(at_most(
                "python cold start p50 (128 MB)",
                c.client.p50_ms,
                15.0,
                "ms",
            ));
            t.push(at_most(
                "python cold start p99 (128 MB)",
                c.client.p99_ms,
                40.0,
                "ms",
            ));
            if let Some(b) = &self.baselines {
                let zygote = self
                    .cold
                    .iter()
                    .find(|c| c.variant == crate::ZYGOTE_VARIANT)
                    .map(|z| b.naive_platform.p50_ms / z.client.p50_ms);
                let ratios = Ratios {
                    naive_over_tern_p50: b.naive_platform.p50_ms / c.client.p50_ms,
                    interpreter_over_tern_p50: b.naive_total.p50_ms / c.client.p50_ms,
                    tern_over_floor_p50: c.client.p50_ms / b.fork_floor.p50_ms,
                    interpreter_over_floor_p50: b.naive_total.p50_ms / b.fork_floor.p50_ms,
                    naive_over_zygote_p50: zygote,
                };
                t.push(at_least(
                    "python cold p50: baseline (a) / tern",
                    ratios.naive_over_tern_p50,
                    10.0,
                    "x",
                ));
                self.ratios = Some(ratios);
            }
        }
        if let Some(w) = self
            .warm
            .iter()
            .find(|w| w.runtime.starts_with("python") && w.variant == crate::FROZEN_VARIANT)
        {
            t.push(at_most(
                "python warm overhead p50",
                w.overhead.p50_ms,
                0.5,
                "ms",
            ));
        }
        if let Some(w) = self
            .warm
            .iter()
            .find(|w| w.runtime.starts_with("nodejs") && w.variant == crate::FROZEN_VARIANT)
        {
            t.push(at_most(
                "node warm p99 (128 MB, back to back)",
                w.client.p99_ms,
                10.0,
                "ms",
            ));
        }
        if let Some(w) = self
            .warm
            .iter()
            .find(|w| w.runtime.starts_with("nodejs") && w.variant == crate::PACED_VARIANT)
        {
            t.push(at_most(
                "node warm p99 (128 MB, 20 ms between requests)",
                w.client.p99_ms,
                10.0,
                "ms",
            ));
        }
        let cold_of = |variant: &str| self.cold.iter().find(|c| c.variant == variant);
        // (The same function without a template is its own cold series, in the table.)
        if let Some(with) = cold_of(crate::BOTO3_TEMPLATE_VARIANT) {
            t.push(at_most(
                "boto3 init, forked from its template: cold p50",
                with.client.p50_ms,
                20.0,
                "ms",
            ));
        }
        if let Some(b) = &self.burst.new_functions {
            let name = "new functions back to back on a fresh server";
            t.push(at_most(&format!("{name}: p50"), b.client.p50_ms, 5.0, "ms"));
            t.push(at_most(
                &format!("{name}: p99"),
                b.client.p99_ms,
                15.0,
                "ms",
            ));
            t.push(at_most(
                &format!("{name}: max"),
                b.client.max_ms,
                30.0,
                "ms",
            ));
        }
        for b in [
            &self.burst.distinct_at_once,
            &self.burst.one_function_at_once,
        ]
        .into_iter()
        .flatten()
        {
            t.push(at_least(
                &format!("{}: succeeded", b.what),
                b.ok as f64,
                b.requests as f64,
                "requests",
            ));
        }
        if let Some(b) = &self.burst.distinct_at_once {
            t.push(at_most(
                &format!("{}: p99", b.what),
                b.client.p99_ms,
                500.0,
                "ms",
            ));
        }
        if let Some(i) = &self.idle {
            t.push(at_least(
                &format!("{} idle 128 MB python instances held at once", i.functions),
                i.alive as f64,
                i.functions as f64,
                "instances",
            ));
            t.push(at_least(
                "of those, served warm on their next invoke",
                i.warm as f64,
                i.functions as f64,
                "instances",
            ));
        }
        if let Some(l) = self.throughput.iter().find(|l| l.concurrency == 64) {
            t.push(at_least(
                "no-op python throughput at c=64",
                l.per_second,
                5000.0,
                "inv/s",
            ));
        }
        let a = &self.async_invoke;
        for e in &a.enqueue {
            let floor = if e.store == crate::async_invoke::SQLITE {
                5000.0
            } else {
                2000.0
            };
            let case = format!(
                "async enqueue on {}, queue-only, c={}",
                e.store, e.connections
            );
            t.push(at_least(
                &format!("{case}: accepted/s"),
                e.per_second,
                floor,
                "ev/s",
            ));
            t.push(at_least(
                &format!("{case}: 202s"),
                e.accepted as f64,
                e.events as f64,
                "events",
            ));
        }
        if let Some(s) = &a.enqueue_to_start {
            t.push(at_most(
                "async enqueue → start p50 (idle server, SQLite)",
                s.sent_to_start.p50_ms,
                5.0,
                "ms",
            ));
        }
        if let Some(w) = &a.warm_by_store {
            t.push(at_most(
                "python warm p50 on PostgreSQL / on SQLite",
                w.p50_ratio,
                1.1,
                "x",
            ));
        }
        network_targets(&self.network, &mut t);
        // The worst of the Python measurements: the single hello-world instance, the
        // pool left by the throughput run, the zygote-forked ones.
        let mem = self
            .memory
            .iter()
            .filter(|m| m.runtime.starts_with("python"))
            .filter_map(|m| m.memory.as_ref())
            .map(|m| m.total.uss_mib)
            .fold(None, |worst: Option<f64>, v| {
                Some(worst.map_or(v, |w| w.max(v)))
            });
        if let Some(uss) = mem {
            t.push(at_most(
                "idle python instance, unshared (USS keeper+init+runtime; worst series)",
                uss,
                10.0,
                "MiB",
            ));
        }
        self.targets = t;
    }
}

/// Issue #14's targets.
fn network_targets(n: &NetworkResults, t: &mut Vec<Target>) {
    for c in &n.cold {
        t.push(at_most(
            &format!("network: cold p50 egress − none ({})", c.case),
            c.p50_difference_ms,
            1.0,
            "ms",
        ));
    }
    if let Some(b) = &n.bulk {
        for f in &b.functions {
            t.push(at_least(
                &format!(
                    "network: TCP bulk function ({} MB) → test host, median",
                    f.memory_mb
                ),
                f.rate.median_gbit_per_s,
                1.0,
                "Gbit/s",
            ));
        }
    }
    if let Some(h) = &n.http {
        for f in &h.functions {
            t.push(at_most(
                &format!(
                    "network: HTTP round trip p50, function ({} MB) − host",
                    f.memory_mb
                ),
                f.p50_difference_ms,
                0.2,
                "ms",
            ));
        }
    }
    if let Some(m) = &n.many {
        let what = format!("network: {} egress instances at once", m.requests);
        t.push(at_least(
            &format!("{what}: connections held"),
            m.held_at_once as f64,
            m.requests as f64,
            "conns",
        ));
        t.push(at_least(
            &format!("{what}: distinct instances"),
            m.distinct_instances as f64,
            m.requests as f64,
            "instances",
        ));
    }
}

fn row(label: &str, s: &Summary) {
    println!(
        "  {label:<60} p50 {:>9.3} ms  p99 {:>9.3} ms  (n={})",
        s.p50_ms, s.p99_ms, s.n
    );
}

/// p50/p90/p99 (the network section's cold starts).
fn row90(label: &str, s: &Summary) {
    println!(
        "  {label:<48} p50 {:>8.3}  p90 {:>8.3}  p99 {:>8.3} ms  (n={})",
        s.p50_ms, s.p90_ms, s.p99_ms, s.n
    );
}

fn print_network(n: &NetworkResults) {
    if n.cold.is_empty() && n.bulk.is_none() && n.http.is_none() && n.many.is_none() {
        return;
    }
    println!("\nnetwork: test host {}", n.test_host);
    for c in &n.cold {
        let how = if c.gap_ms > 0 {
            format!("{} ms pause after each sample", c.gap_ms)
        } else {
            "no pause: each cold start right after the previous".to_string()
        };
        println!(
            "  cold start, {} (python3.11 hello-world, 128 MB, one server, modes alternating; {how})",
            c.case
        );
        for (mode, m) in [("none", &c.none), ("egress", &c.egress)] {
            let label = format!("{mode}: client, HTTP in → response out");
            row90(&label, &m.client);
            row90(&format!("{mode}: REPORT Init Duration"), &m.init);
            println!(
                "    {mode}: {} of {} served by a runtime started ahead",
                m.served_ahead, m.client.n
            );
        }
        println!(
            "    p50 egress − none: client {:+.3} ms, Init Duration {:+.3} ms",
            c.p50_difference_ms, c.init_p50_difference_ms
        );
    }
    if let Some(b) = &n.bulk {
        println!(
            "  TCP bulk → test host sink ({} MiB per run in {} KiB sendalls, one connection; Gbit/s median [min–max] of {} runs)",
            b.bytes_per_run >> 20,
            b.chunk_bytes >> 10,
            b.host.runs_gbit_per_s.len()
        );
        let rate = |label: &str, r: &crate::network::Rate| {
            println!(
                "    {label:<46} {:>7.2} Gbit/s  [{:.2}–{:.2}]",
                r.median_gbit_per_s, r.min_gbit_per_s, r.max_gbit_per_s
            );
        };
        rate("host baseline: same python sender, host process", &b.host);
        for f in &b.functions {
            rate(&format!("function, egress, {} MB", f.memory_mb), &f.rate);
        }
    }
    if let Some(h) = &n.http {
        println!(
            "  HTTP round trip → test host ({} sequential GETs on one keep-alive connection after {} untimed)",
            h.requests, h.warmup
        );
        row90("host baseline: same python client, host process", &h.host);
        for f in &h.functions {
            row90(
                &format!("function, egress, {} MB", f.memory_mb),
                &f.round_trip,
            );
            println!(
                "    p50 function ({} MB) − host: {:+.3} ms",
                f.memory_mb, f.p50_difference_ms
            );
        }
    }
    if let Some(m) = &n.many {
        let secs = |s: Option<f64>| s.map_or("n/a".to_string(), |s| format!("{s:.2} s"));
        println!(
            "  {} requests at once to one egress function ({} MB), each holding a connection to the test host until all are held",
            m.requests, m.memory_mb
        );
        println!(
            "    held at once {}, succeeded {}, errors {}, distinct instances {}, cold starts {}",
            m.held_at_once, m.succeeded, m.errors, m.distinct_instances, m.cold_starts
        );
        println!(
            "    burst sent → first connection {}, → all connected {}",
            secs(m.first_connected_s),
            secs(m.all_connected_s)
        );
        row90("connect() inside the functions", &m.connect);
        if let Some(e) = &m.first_error {
            println!("    first error: {e}");
        }
        let p = &m.at_peak;
        let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
        println!(
            "    while all were held: host links of this server {}, of any tern server {}, neighbours {}, conntrack {}, network namespaces {}, loop devices {}",
            p.server_links.map_or("n/a".to_string(), |l| l.to_string()),
            p.tern_links,
            p.neighbours,
            opt(p.conntrack_count),
            p.net_namespaces,
            p.loop_devices
        );
        println!("    limits (in use / limit, highest share first):");
        for l in &m.limits {
            let share = l
                .share()
                .map_or(String::new(), |s| format!(" ({:.1}%)", s * 100.0));
            println!(
                "      {:<42} {:>8} / {:<8}{share:<9} {}",
                l.name,
                opt(l.in_use),
                opt(l.limit),
                l.what
            );
        }
    }
}

fn print_async(a: &AsyncResults) {
    if !a.enqueue.is_empty() {
        println!(
            "\nasync: durable enqueue (Event invokes of a no-op python function, small payloads; \
             queue-only server: async.concurrency = 0, nothing runs)"
        );
        println!(
            "  {:<10} {:>4} {:>7} {:>8} {:>5} {:>6} {:>9} {:>10} {:>10} {:>8} {:>8}",
            "store",
            "c",
            "events",
            "202s",
            "429",
            "errors",
            "ev/s",
            "p50 ms",
            "p99 ms",
            "seconds",
            "queued"
        );
        for e in &a.enqueue {
            println!(
                "  {:<10} {:>4} {:>7} {:>8} {:>5} {:>6} {:>9.0} {:>10.3} {:>10.3} {:>8.2} {:>8}",
                e.store,
                e.connections,
                e.events,
                e.accepted,
                e.throttled,
                e.errors,
                e.per_second,
                e.latency.p50_ms,
                e.latency.p99_ms,
                e.seconds,
                e.queued_after
            );
            let c = &e.cpu;
            println!(
                "       CPU per event: client {:.0} µs, server {:.0} µs{}; machine {:.0}% busy; \
                 queued = stored after the run, {} warm-up events included",
                c.client_us,
                c.server_us,
                c.database_us
                    .map_or(String::new(), |d| format!(", PostgreSQL {d:.0} µs")),
                c.machine_busy * 100.0,
                e.warmup_accepted
            );
            if let Some(err) = &e.first_error {
                println!("       first error: {err}");
            }
        }
    }
    if let Some(s) = &a.enqueue_to_start {
        println!(
            "\nasync: enqueue → start on an idle server (default settings, SQLite; warm python \
             function; one event at a time, {} ms pause before each; {} cold starts)",
            s.pause_ms, s.cold_starts
        );
        row(
            "client sent → handler's time.time() at start",
            &s.sent_to_start,
        );
        row("  client: 202 latency", &s.accepted);
        row(
            "  server clock (ms): enqueued → attempt started",
            &s.enqueued_to_attempt,
        );
        row(
            "  server clock (ms): attempt started → handler start",
            &s.attempt_to_handler,
        );
        if let Some(m) = s.server_histogram_mean_ms {
            println!("  tern_async_enqueue_to_start_seconds: mean {m:.3} ms over the samples");
        }
    }
    if let Some(w) = &a.warm_by_store {
        println!(
            "\nasync: sync warm invoke by store (python3.11 hello-world, 128 MB, back to back)"
        );
        for r in [&w.sqlite, &w.postgres] {
            println!("  {}", r.variant);
            row("  client latency", &r.client);
            row("  platform overhead (client − handler)", &r.overhead);
            row("  server side (client − REPORT Duration)", &r.server_side);
        }
        println!(
            "  PostgreSQL / SQLite client latency: p50 {:.3}x, p99 {:.3}x",
            w.p50_ratio, w.p99_ratio
        );
    }
}

pub fn print_table(r: &Results) {
    let m = &r.machine;
    println!(
        "\ntern-bench — {} — {} × {} — Linux {} — commit {}{}",
        m.date,
        m.nproc,
        m.cpu_model,
        m.kernel,
        m.commit,
        if m.dirty { " (dirty tree)" } else { "" }
    );
    println!(
        "load average before {} / after {}",
        m.loadavg_before, m.loadavg_after
    );
    if let Some(s) = &r.sandbox {
        println!("\nsandbox (no server; /bin/true, 128 MB limits, /tmp 512 MB)");
        for v in &s.variants {
            row(&format!("setup (launch → exec'd), {}", v.label), &v.setup);
            row(
                &format!("teardown (kill, wait, cleanup), {}", v.label),
                &v.teardown,
            );
        }
        row("baseline: bare spawn + wait of /bin/true", &s.bare_spawn);
        for p in &s.python {
            let place = match p.sandbox_cpu_millis {
                None => "no sandbox".to_string(),
                Some(c) => format!("sandbox {:.2} CPU", f64::from(c) / 1000.0),
            };
            row(&format!("{} ({place})", p.command), &p.run);
        }
        for j in &s.cgroup_join {
            row(
                &format!(
                    "move a process into a new cgroup ({}), {} ms after the last",
                    j.hierarchy.trim_start_matches("/sys/fs/cgroup/"),
                    j.after_pause_ms
                ),
                &j.write,
            );
        }
        for b in &s.bootstrap {
            let cpu = f64::from(b.sandbox_cpu_millis) / 1000.0;
            row(
                &format!("bootstrap + hello → first next (sandbox {cpu:.2} CPU)"),
                &b.init,
            );
            row(
                &format!("bootstrap + hello → result (sandbox {cpu:.2} CPU)"),
                &b.result,
            );
        }
    }
    if !r.cold.is_empty() {
        println!("\ncold start (UpdateFunctionConfiguration, then a timed invoke)");
        for c in &r.cold {
            println!(
                "  {} ({} MB), {}: {} of {} served by a runtime started ahead (or its template); {} ms pause after each",
                c.runtime, c.memory_mb, c.variant, c.served_ahead, c.client.n, c.gap_ms
            );
            row("  client: HTTP in → response out", &c.client);
            if let (Some(p), Some(f)) = (&c.client_ahead, &c.client_fresh) {
                row("  client, runtime started ahead", p);
                row("  client, runtime started for it", f);
            }
            row("  REPORT Init Duration (launch → first next)", &c.init);
            row("  REPORT Duration (the invoke itself)", &c.invoke);
            row("  outside (HTTP, auth, routing, bookkeeping)", &c.outside);
            row("  instance CPU during the request", &c.instance_cpu);
            row(
                "  instance held back by its CPU quota",
                &c.instance_throttled,
            );
        }
    }
    if let Some(b) = &r.baselines {
        println!("\nbaselines (same run, interleaved with the python cold samples)");
        row(
            "(a) naive platform: HTTP in → response out",
            &b.naive_platform,
        );
        row(
            "(a) naive platform: REPORT Init Duration",
            &b.naive_platform_init,
        );
        row(
            "(a0) interpreter alone: exec python3.11 + bootstrap → result",
            &b.naive_total,
        );
        row("(a0) interpreter alone: exec → first next", &b.naive_init);
        row("(b) floor: warm python fork + unshare(7 ns)", &b.fork_floor);
    }
    if let Some(x) = &r.ratios {
        println!(
            "  ratios (p50): baseline (a) / tern = {:.2}x   (a0) / tern = {:.2}x   tern / floor (b) = {:.1}x   (a0) / (b) = {:.1}x",
            x.naive_over_tern_p50,
            x.interpreter_over_tern_p50,
            x.tern_over_floor_p50,
            x.interpreter_over_floor_p50
        );
        if let Some(z) = x.naive_over_zygote_p50 {
            println!(
                "  baseline (a) / tern zygote fork at launch (no runtime started ahead) = {z:.2}x"
            );
        }
    }
    if let Some(p) = &r.phases {
        println!("\npython start phases (fresh process each, no sandbox, full CPU)");
        row("interpreter: python3.11 -c pass", &p.interpreter);
        row(
            "interpreter without site: -S -c pass",
            &p.interpreter_no_site,
        );
        row("import bootstrap (in-process)", &p.bootstrap_import);
        row("import handler module (in-process)", &p.handler_import);
    }
    if !r.warm.is_empty() {
        println!("\nwarm invoke (one keep-alive connection, sequential)");
        if let Some(h) = &r.http_floor {
            row("HTTP floor: unsigned GET /tern/v1/health", h);
        }
        for w in &r.warm {
            println!("  {}, {}", w.runtime, w.variant);
            row("  client latency", &w.client);
            row("  handler's own time", &w.handler);
            row("  platform overhead (client − handler)", &w.overhead);
            row("  server side (client − REPORT Duration)", &w.server_side);
            row(
                "  instance side (REPORT Duration − handler)",
                &w.instance_side,
            );
        }
    }
    if let Some(b) = &r.burst.new_functions {
        println!(
            "\nstart-up under load: {} new python functions, then each invoked once back to back \
             (server {:.0} ms old at the first; {} served by a runtime started ahead)",
            b.functions, b.server_age_ms, b.served_ahead
        );
        row("client latency (first included)", &b.client);
        row("  served by a runtime started ahead", &b.client_ahead);
        row("  served by an instance started for it", &b.client_started);
        println!("  first invoke of the server: {:.2} ms", b.first_ms);
        for s in &b.slowest {
            println!(
                "  slow: invoke #{} ({}): {:.2} ms, Init Duration {}",
                s.position + 1,
                s.kind,
                s.client_ms,
                s.init_ms
                    .map_or("n/a".to_string(), |i| format!("{i:.2} ms"))
            );
        }
    }
    for b in [&r.burst.distinct_at_once, &r.burst.one_function_at_once]
        .into_iter()
        .flatten()
    {
        println!(
            "\n{}: {} ok, {} × 429, {} errors",
            b.what, b.ok, b.throttled, b.errors
        );
        row("client latency of those that succeeded", &b.client);
        if let Some(f) = &b.first_failure {
            println!("  first failure: {f}");
        }
    }
    if let Some(i) = &r.idle {
        println!(
            "\nidle instances: {} functions invoked once from 8 threads in {:.0} ms; {} started, {} alive after {} s",
            i.functions, i.start_all_ms, i.started, i.alive, 3
        );
        if let Some(f) = &i.first_failure {
            println!("  first failure: {f}");
        }
        if let Some(m) = &i.per_instance {
            println!(
                "  per instance: PSS {:.2} MiB (runtime {:.2}), cgroup charge {}",
                m.total.pss_mib,
                m.runtime.pss_mib,
                m.cgroup_charge_mib
                    .map_or("n/a".to_string(), |c| format!("{c:.2} MiB"))
            );
        }
        println!(
            "  host MemAvailable drop: {:.0} MiB; counted by tern: {:.0} MiB; evictions: {}{}",
            i.host_memory_used_mib,
            i.counted_mib,
            i.evictions,
            i.evictions_by_reason
                .iter()
                .map(|(reason, n)| format!(" ({reason}: {n})"))
                .collect::<String>()
        );
        println!("  second invoke: {} of {} served warm", i.warm, i.functions);
        row("client latency of the second invokes", &i.second);
    }
    if !r.throughput.is_empty() {
        println!("\nthroughput (no-op python, 128 MB; threads with their own connection)");
        println!(
            "  {:>4} {:>9} {:>9} {:>6} {:>6} {:>10} {:>10} {:>10} {:>6}",
            "c", "requests", "inv/s", "429", "errors", "p50 ms", "p99 ms", "seconds", "colds"
        );
        for l in &r.throughput {
            println!(
                "  {:>4} {:>9} {:>9.0} {:>6} {:>6} {:>10.3} {:>10.3} {:>10.2} {:>6}",
                l.concurrency,
                l.requests,
                l.per_second,
                l.throttled,
                l.errors,
                l.latency.p50_ms,
                l.latency.p99_ms,
                l.seconds,
                l.cold_starts.map_or("?".to_string(), |c| c.to_string())
            );
            let c = &l.cpu;
            println!(
                "       {} instances served; CPU per invocation: client {:.0} µs, server {:.0} µs, instances {:.0} µs; machine {:.0}% busy; instances throttled in {} periods ({:.0} ms)",
                l.instances_used,
                c.client_us,
                c.server_us,
                c.instances_us,
                c.machine_busy * 100.0,
                c.instance_throttled_periods,
                c.instance_throttled_ms
            );
            if let Some(e) = &l.first_error {
                println!("       first error: {e}");
            }
        }
    }
    print_async(&r.async_invoke);
    print_network(&r.network);
    if !r.memory.is_empty() {
        println!("\nmemory per idle warm instance (MiB; mean over the instances measured)");
        println!(
            "  {:<16} {:>4} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  what",
            "runtime", "n", "rt USS", "rt dirty", "rt PSS", "all USS", "all PSS", "cgroup"
        );
        for e in &r.memory {
            match &e.memory {
                Some(m) => println!(
                    "  {:<16} {:>4} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9}  {}",
                    e.runtime,
                    m.instances,
                    m.runtime.uss_mib,
                    m.runtime.private_dirty_mib,
                    m.runtime.pss_mib,
                    m.total.uss_mib,
                    m.total.pss_mib,
                    m.cgroup_charge_mib
                        .map_or("?".to_string(), |c| format!("{c:.2}")),
                    e.what
                ),
                None => println!("  {:<16} no live instance found ({})", e.runtime, e.what),
            }
        }
        println!("  (rt = the runtime process; all = keeper + init + runtime)");
    }
    if !r.targets.is_empty() {
        println!("\ntargets (issue #4)");
        for t in &r.targets {
            let verdict = if t.met {
                "met".to_string()
            } else {
                format!("MISSED by {:.2} {} ({:.1}x)", t.missed_by, t.unit, t.factor)
            };
            println!(
                "  {:<58} {:>10.2} {:<6} target {:<12} {verdict}",
                t.name, t.measured, t.unit, t.target
            );
        }
    }
    if !r.leftover_cgroups.is_empty() {
        println!(
            "\nthe stopped server left {} cgroup dirs behind: {}",
            r.leftover_cgroups.len(),
            r.leftover_cgroups.join(" ")
        );
    }
    if !r.server_warnings.is_empty() {
        println!(
            "\nserver log: {} WARN/ERROR lines, e.g. {}",
            r.server_warnings.len(),
            r.server_warnings[0]
        );
    }
}
