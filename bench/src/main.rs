//! tern's benchmark harness (issue #4): starts a real release `tern server`, deploys
//! hello-world functions for python3.11, nodejs20.x and provided, and measures as a
//! client sees it (signed HTTP with keep-alive): cold start, warm latency and platform
//! overhead, throughput at several concurrencies and memory per idle instance. In the
//! same run it measures the baselines (a naive platform: a second tern server that
//! builds a sandbox and execs a fresh interpreter per cold start; that interpreter
//! alone, without sandbox or HTTP; a bare fork of a warm interpreter into new
//! namespaces), the phases of a Python start, and the
//! sandbox's own setup cost, and prints a table (and JSON with `--json`). The async
//! section measures asynchronous invocation: durable enqueue on SQLite and PostgreSQL,
//! enqueue → start, and the sync warm path on a server on PostgreSQL. The network
//! section measures function networking against a test host in a network namespace it
//! builds: cold start in `egress` against `none`, TCP bulk and HTTP round trips from a
//! function against the same code on the host, and many instances with connections open
//! at once.
//!
//! Usage (as root, from the repository root):
//! `cargo build --release --workspace && target/release/tern-bench --all`

#![forbid(unsafe_code)]

mod async_invoke;
mod baselines;
mod burst;
mod client;
mod cold;
mod functions;
mod idle;
mod instances;
mod memory;
mod network;
mod report;
mod sandbox;
mod server;
mod stats;
mod throughput;
mod warm;
mod world;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use crate::report::{Baselines, Machine, MemoryEntry, Phases, Results, Settings};
use crate::stats::Summary;

#[derive(Parser, Debug)]
#[command(
    name = "tern-bench",
    about = "tern's benchmark harness: cold start, warm overhead, throughput and memory against a real server, with baselines in the same run. Run as root.",
    after_help = "With no section flag, every section runs (as with --all)."
)]
struct Args {
    /// Run every section.
    #[arg(long)]
    all: bool,
    /// Sandbox setup/teardown of `/bin/true` vs a bare spawn (no server).
    #[arg(long)]
    sandbox: bool,
    /// Cold starts per runtime, with baselines (a) and (b) and the Python phases
    /// interleaved.
    #[arg(long)]
    cold: bool,
    /// Warm latency and platform overhead per runtime.
    #[arg(long)]
    warm: bool,
    /// Throughput of a no-op Python function at each concurrency.
    #[arg(long)]
    throughput: bool,
    /// Memory per idle warm instance.
    #[arg(long)]
    memory: bool,
    /// Start-up as users load it: new functions back to back on a fresh server, and
    /// bursts of distinct functions and of one function at once.
    #[arg(long)]
    burst: bool,
    /// Many idle warm 128 MB Python instances on one server: their memory, what the
    /// server counts, and their next invoke.
    #[arg(long)]
    idle: bool,
    /// Asynchronous invocation: durable enqueue throughput on SQLite and on PostgreSQL
    /// (queue-only servers), enqueue → start on an idle server, and the Python warm
    /// series on a server on PostgreSQL against one on SQLite.
    #[arg(long = "async")]
    async_invoke: bool,
    /// Function networking, against a test host in a network namespace the bench builds
    /// and removes: cold start in `egress` against `none` (same server, alternating),
    /// TCP bulk and HTTP round trips from a function against the same code on the host,
    /// and many instances holding a connection at once.
    #[arg(long)]
    network: bool,
    /// Cold samples per network mode, in each case (isolated, back to back).
    #[arg(long, default_value_t = 100)]
    network_cold_samples: usize,
    /// MiB each TCP bulk run sends (1 MiB sendalls over one connection).
    #[arg(long, default_value_t = 512)]
    network_bulk_mb: u64,
    /// TCP bulk runs per sender (host, each function).
    #[arg(long, default_value_t = 3)]
    network_bulk_runs: usize,
    /// Timed sequential GETs per HTTP round-trip client.
    #[arg(long, default_value_t = 2000)]
    network_http_requests: usize,
    /// Instances holding a connection at once.
    #[arg(long, default_value_t = 200)]
    network_instances: usize,
    /// MemorySize of the bulk and HTTP functions, comma-separated (the CPU share follows:
    /// 128 MB gets a quarter core, 1769 MB one core).
    #[arg(long, value_delimiter = ',', default_value = "128,1769")]
    network_memory_mb: Vec<u32>,
    /// Connections (threads, one keep-alive connection each) sending Event invokes in
    /// the async section's enqueue cases.
    #[arg(long, default_value_t = 64)]
    async_connections: usize,
    /// Timed Event invokes per enqueue case (after 1,000 untimed ones).
    #[arg(long, default_value_t = 20000)]
    async_events: usize,
    /// Enqueue → start samples, one event at a time.
    #[arg(long, default_value_t = 200)]
    async_start_samples: usize,
    /// Pause before each enqueue → start sample.
    #[arg(long, default_value_t = 50)]
    async_start_pause_ms: u64,
    /// PostgreSQL server of the async section's PostgreSQL cases: each case gets a fresh
    /// database there, dropped after (the URL's own database is where they are created).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    database: String,
    /// Functions (so instances) in the idle section.
    #[arg(long, default_value_t = 1000)]
    idle_functions: usize,
    /// New functions in the back-to-back and at-once burst cases.
    #[arg(long, default_value_t = 100)]
    burst_functions: usize,
    /// Cold-start samples of the python3.11 128 MB function (and baseline samples).
    #[arg(long, default_value_t = 100)]
    cold_samples: usize,
    /// Cold-start samples of each other series (python fresh and back to back,
    /// python 1769 MB, node, provided).
    #[arg(long, default_value_t = 30)]
    cold_samples_others: usize,
    /// Pause after each isolated cold sample, for the server to refill what it starts
    /// ahead of time.
    #[arg(long, default_value_t = 250)]
    cold_gap_ms: u64,
    /// Warm samples per runtime (each series).
    #[arg(long, default_value_t = 1000)]
    warm_samples: usize,
    /// Timed requests per concurrency level (20,000 keeps each window at several
    /// seconds, longer than this shared machine's swings).
    #[arg(long, default_value_t = 20000)]
    throughput_requests: usize,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Iterations of the sandbox section.
    #[arg(long, default_value_t = 100)]
    sandbox_iterations: usize,
    /// Samples of each Python command in and out of the sandbox (sandbox section).
    #[arg(long, default_value_t = 30)]
    sandbox_python_samples: usize,
    /// Write the results as JSON to this file (`-` for stdout, after the table).
    #[arg(long)]
    json: Option<PathBuf>,
    /// The tern binary (default: `tern` next to this binary).
    #[arg(long)]
    tern: Option<PathBuf>,
}

impl Args {
    fn normalize(&mut self) {
        if self.all
            || !(self.sandbox
                || self.cold
                || self.warm
                || self.throughput
                || self.memory
                || self.burst
                || self.idle
                || self.async_invoke
                || self.network)
        {
            self.burst = true;
            self.idle = true;
            self.sandbox = true;
            self.cold = true;
            self.warm = true;
            self.throughput = true;
            self.memory = true;
            self.async_invoke = true;
            self.network = true;
        }
    }
}

/// One deployed function of the run.
struct Deployed {
    name: String,
    runtime: &'static str,
    memory_mb: u32,
}

/// A cold-start series of `d`.
fn series<'a>(
    d: &'a Deployed,
    variant: &'a str,
    env: &'a [(&'a str, &'a str)],
    samples: usize,
    gap: Duration,
) -> cold::Series<'a> {
    cold::Series {
        function: &d.name,
        runtime: d.runtime,
        memory_mb: d.memory_mb,
        variant,
        env,
        samples,
        gap,
        settle: Duration::ZERO,
    }
}

fn main() -> anyhow::Result<()> {
    // The sandbox launcher re-executes this binary as the keeper of each instance.
    if tern_sandbox::is_keeper_invocation() {
        tern_sandbox::run_keeper();
    }
    let mut args = Args::parse();
    args.normalize();
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "tern-bench must run as root: the tern server's sandbox and the namespace baseline \
             need it (namespaces, cgroups, pivot_root). Run: sudo target/release/tern-bench --all"
        );
    }
    if args.concurrency.contains(&0) {
        bail!("--concurrency levels must be at least 1");
    }
    if args.async_invoke {
        if args.async_connections == 0 || args.async_start_samples == 0 {
            bail!("--async-connections and --async-start-samples must be at least 1");
        }
        // Fail now rather than after the other sections.
        drop(async_invoke::FreshDatabase::create(
            &args.database,
            "probe",
        )?);
    }
    if args.network
        && (args.network_instances == 0
            || args.network_bulk_runs == 0
            || args.network_memory_mb.is_empty())
    {
        bail!("--network-instances, --network-bulk-runs and --network-memory-mb need at least one");
    }
    let mut results = Results {
        machine: Machine::detect(),
        settings: Settings {
            cold_samples: args.cold_samples,
            cold_samples_others: args.cold_samples_others,
            cold_gap_ms: args.cold_gap_ms,
            warm_samples: args.warm_samples,
            throughput_requests: args.throughput_requests,
            concurrency: args.concurrency.clone(),
            sandbox_iterations: args.sandbox_iterations,
            sandbox_python_samples: args.sandbox_python_samples,
            async_connections: args.async_connections,
            async_events: args.async_events,
            async_start_samples: args.async_start_samples,
            async_start_pause_ms: args.async_start_pause_ms,
            network_cold_samples: args.network_cold_samples,
            network_bulk_mb: args.network_bulk_mb,
            network_bulk_runs: args.network_bulk_runs,
            network_http_requests: args.network_http_requests,
            network_instances: args.network_instances,
            network_memory_mb: args.network_memory_mb.clone(),
        },
        ..Default::default()
    };
    eprintln!(
        "tern-bench on {} ({} CPUs, Linux {})",
        results.machine.cpu_model, results.machine.nproc, results.machine.kernel
    );

    if args.sandbox {
        eprintln!("sandbox: {} launches of /bin/true", args.sandbox_iterations);
        results.sandbox = Some(sandbox::run(
            args.sandbox_iterations,
            args.sandbox_python_samples,
        )?);
    }
    if args.cold || args.warm || args.throughput || args.memory {
        let binary = server::find_binary(args.tern.as_deref())?;
        results.machine.tern_binary = binary.display().to_string();
        let cgroups_before = instances::server_dirs();
        let server = server::TernServer::start(&binary)?;
        let outcome = run_against_server(&args, &binary, &server, &mut results);
        results.server_warnings = server.warnings();
        if let Err(e) = outcome {
            return Err(e.context(format!("tern server log (tail):\n{}", server.log_tail())));
        }
        drop(server);
        if args.cold || args.memory {
            // With no runtime started ahead every Python cold start forks its runtime from
            // the namespace's zygote.
            let server = server::TernServer::start_with(&binary, &["--prewarm", "0"])?;
            let outcome = run_zygote_series(&args, &server, &mut results);
            results.server_warnings.extend(server.warnings());
            if let Err(e) = outcome {
                return Err(e.context(format!("tern server log (tail):\n{}", server.log_tail())));
            }
        }
        results.leftover_cgroups = instances::server_dirs()
            .into_iter()
            .filter(|d| !cgroups_before.contains(d))
            .map(|d| d.display().to_string())
            .collect();
    }
    if args.burst {
        let binary = server::find_binary(args.tern.as_deref())?;
        let n = args.burst_functions;
        eprintln!("burst: {n} new functions back to back on a fresh server");
        results.burst.new_functions = Some(burst::new_functions_back_to_back(&binary, n)?);
        eprintln!("burst: {n} new functions at once from 50 threads");
        results.burst.distinct_at_once = Some(burst::distinct_functions_at_once(&binary, n, 50)?);
        eprintln!("burst: 200 requests at once to one function sleeping 1 s");
        results.burst.one_function_at_once = Some(burst::one_function_at_once(&binary, 200)?);
    }
    if args.idle {
        let binary = server::find_binary(args.tern.as_deref())?;
        let n = args.idle_functions;
        eprintln!("idle: {n} idle warm python instances on one server");
        results.idle = Some(idle::idle_instances(&binary, n)?);
    }
    if args.async_invoke {
        run_async(&args, &mut results)?;
    }
    if args.network {
        run_network(&args, &mut results)?;
    }
    results.machine.loadavg_after = report::loadavg();
    results.evaluate();
    report::print_table(&results);
    match &args.json {
        Some(p) if p.as_os_str() == "-" => println!("{}", serde_json::to_string_pretty(&results)?),
        Some(p) => {
            std::fs::write(p, serde_json::to_string_pretty(&results)?)
                .with_context(|| format!("writing {}", p.display()))?;
            eprintln!("JSON written to {}", p.display());
        }
        None => {}
    }
    Ok(())
}

/// The async section, each case on servers of its own.
fn run_async(args: &Args, results: &mut Results) -> anyhow::Result<()> {
    use async_invoke::Store;
    let binary = server::find_binary(args.tern.as_deref())?;
    let (c, n) = (args.async_connections, args.async_events);
    let r = &mut results.async_invoke;
    for store in [Store::Sqlite, Store::Postgres(&args.database)] {
        eprintln!(
            "async: {n} Event invokes from {c} connections to a queue-only server on {}",
            store.name()
        );
        r.enqueue.push(async_invoke::enqueue(&binary, store, c, n)?);
    }
    let (samples, pause) = (
        args.async_start_samples,
        Duration::from_millis(args.async_start_pause_ms),
    );
    eprintln!("async: {samples} enqueue → start samples on an idle server, {pause:?} apart");
    r.enqueue_to_start = Some(async_invoke::enqueue_to_start(&binary, samples, pause)?);
    eprintln!(
        "async: python warm series ({} samples) on a server on SQLite, then on PostgreSQL",
        args.warm_samples
    );
    r.warm_by_store = Some(async_invoke::warm_by_store(
        &binary,
        &args.database,
        args.warm_samples,
    )?);
    Ok(())
}

/// The network section, each case on a server of its own, all against one world.
fn run_network(args: &Args, results: &mut Results) -> anyhow::Result<()> {
    let binary = server::find_binary(args.tern.as_deref())?;
    results.machine.tern_binary = binary.display().to_string();
    let sizes = network::Sizes {
        cold_samples: args.network_cold_samples,
        cold_gap: Duration::from_millis(args.cold_gap_ms),
        bulk_bytes: args.network_bulk_mb << 20,
        bulk_runs: args.network_bulk_runs,
        http_requests: args.network_http_requests,
        instances: args.network_instances,
        memory_mb: args.network_memory_mb.clone(),
    };
    let world = world::World::start()?;
    let r = &mut results.network;
    let warnings = &mut results.server_warnings;
    r.test_host = format!(
        "{} in network namespace {} (host side {})",
        world::WORLD,
        world::NETNS,
        world::HOST_SIDE
    );
    eprintln!("network: test host {}", r.test_host);
    r.cold = network::cold_starts(&binary, &world, &sizes, warnings)?;
    r.bulk = Some(network::bulk(&binary, &world, &sizes, warnings)?);
    r.http = Some(network::http(&binary, &world, &sizes, warnings)?);
    r.many = Some(network::many_alive(
        &binary,
        &world,
        sizes.instances,
        warnings,
    )?);
    Ok(())
}

/// Cold starts and idle memory of Python instances the zygote forks at launch (a server
/// that starts no runtime ahead).
fn run_zygote_series(
    args: &Args,
    server: &server::TernServer,
    results: &mut Results,
) -> anyhow::Result<()> {
    let api = &server.api;
    let name = format!("b{}-python-zygote", std::process::id());
    let f = functions::python_hello()?;
    api.create_function(&name, f.runtime, f.handler, 128, &f.zip)?;
    let d = Deployed {
        name,
        runtime: f.runtime,
        memory_mb: 128,
    };
    if args.cold {
        let gap = Duration::from_millis(args.cold_gap_ms);
        eprintln!(
            "cold: {} samples of {}, zygote fork at launch (no runtime started ahead)",
            args.cold_samples, d.name
        );
        let s = series(&d, ZYGOTE_VARIANT, &[], args.cold_samples, gap);
        results.cold.push(cold::run(api, &s, || Ok(()))?);
    }
    if args.memory {
        // Four idle instances of the same zygote: what they share stays out of USS.
        let ids: Vec<String> = std::thread::scope(|scope| {
            let calls: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| api.invoke_sleep(&d.name, 300)))
                .collect();
            calls
                .into_iter()
                .filter_map(|c| c.join().ok()?.ok()?.instance_id())
                .collect()
        });
        std::thread::sleep(Duration::from_millis(200));
        results.memory.push(MemoryEntry {
            function: d.name.clone(),
            runtime: d.runtime.to_string(),
            what: "hello-world, idle zygote-forked instances (mean)".into(),
            memory: memory::measure(&ids),
        });
    }
    Ok(())
}

/// The warm series' variants: tern as configured by default, and with `freeze_idle` off.
pub const FROZEN_VARIANT: &str = "idle instances frozen (default)";
pub const UNFROZEN_VARIANT: &str = "freeze_idle off";
/// Warm requests with a pause between them, as a mostly idle function gets them.
pub const PACED_VARIANT: &str = "20 ms between requests (mostly idle)";
pub const NO_BURST_PACED_VARIANT: &str = "cpu_burst off, 20 ms between requests";
const PACED_PAUSE: Duration = Duration::from_millis(20);
pub const NO_BURST_VARIANT: &str = "cpu_burst off";
pub const LONG_PERIOD_VARIANT: &str = "warm CPU period 100 ms (the start-up's)";

/// The variant name of the zygote cold-start series.
pub const ZYGOTE_VARIANT: &str = "zygote fork at launch (no runtime started ahead)";
/// The cold series of a function whose init imports boto3, without and with SnapStart.
pub const BOTO3_VARIANT: &str = "init imports boto3, no template";
pub const BOTO3_TEMPLATE_VARIANT: &str = "init imports boto3, forked from its post-init template";
/// How long the template series waits after each update (untimed) for the new
/// revision's template: its init (boto3 at a quarter core) takes ~0.3-0.6 s.
const TEMPLATE_SETTLE: Duration = Duration::from_millis(2000);

/// Flags that make a tern server a naive platform (baseline (a)): a sandbox built and
/// a fresh interpreter exec'd per cold start.
const NAIVE_PLATFORM: &[&str] = &[
    "--prewarm",
    "0",
    "--zygote",
    "false",
    "--pre-created-sandboxes",
    "false",
];

fn run_against_server(
    args: &Args,
    binary: &std::path::Path,
    server: &server::TernServer,
    results: &mut Results,
) -> anyhow::Result<()> {
    let api = &server.api;
    let tag = format!("b{}", std::process::id());
    let deploy = |suffix: &str, f: functions::Function, memory_mb: u32| {
        let name = format!("{tag}-{suffix}");
        api.create_function(&name, f.runtime, f.handler, memory_mb, &f.zip)?;
        anyhow::Ok(Deployed {
            name,
            runtime: f.runtime,
            memory_mb,
        })
    };
    // Lambda's default MemorySize (128 MB: a quarter of a core on tern, as on Lambda's
    // proportional scale with tern's floor), and 1769 MB (one full core) to show what
    // the CPU share costs a cold start.
    let python = deploy("python", functions::python_hello()?, 128)?;
    let node = deploy("node", functions::node_hello()?, 128)?;
    let provided = deploy("provided", functions::provided_hello()?, 128)?;
    let hello = [&python, &node, &provided];

    let gap = Duration::from_millis(args.cold_gap_ms);
    if args.cold {
        let python_1cpu = deploy("python-1cpu", functions::python_hello()?, 1769)?;
        let python_layers = deploy("python-2layers", functions::python_hello()?, 128)?;
        let mut layer_arns = Vec::new();
        for (i, zip) in functions::python_layers()?.iter().enumerate() {
            layer_arns.push(api.publish_layer(&format!("{tag}-layer{i}"), zip)?);
        }
        api.set_layers(&python_layers.name, &layer_arns)?;
        let node_1cpu = deploy("node-1cpu", functions::node_hello()?, 1769)?;
        // A heavy init (boto3 imported at module level), with and without a post-init
        // template (SnapStart), in the same run.
        let boto3 = deploy("python-boto3", functions::python_boto3()?, 128)?;
        let boto3_template = {
            let f = functions::python_boto3()?;
            let name = format!("{tag}-python-boto3-template");
            api.create_function_with(
                &name,
                f.runtime,
                f.handler,
                128,
                &f.zip,
                serde_json::json!({"SnapStart": {"ApplyOn": "PublishedVersions"}}),
            )?;
            Deployed {
                name,
                runtime: f.runtime,
                memory_mb: 128,
            }
        };
        let scratch = baselines::Scratch::new()?;
        let naive_server = server::TernServer::start_with(binary, NAIVE_PLATFORM)?;
        let naive_fn = format!("{tag}-python-naive");
        let hello = functions::python_hello()?;
        naive_server.api.create_function(
            &naive_fn,
            hello.runtime,
            hello.handler,
            128,
            &hello.zip,
        )?;
        let naive_series = cold::Series {
            function: &naive_fn,
            runtime: hello.runtime,
            memory_mb: 128,
            variant: "naive platform",
            env: &[],
            samples: args.cold_samples,
            gap,
            settle: Duration::ZERO,
        };
        let (mut platform_total, mut platform_init) = (Vec::new(), Vec::new());
        let naive = baselines::FreshInterpreter::new(&scratch)?;
        let mut floor = baselines::ForkFloor::start(&scratch)?;
        let (mut naive_init, mut naive_total, mut fork) = (Vec::new(), Vec::new(), Vec::new());
        let mut phases: Vec<baselines::PhaseSample> = Vec::new();
        // Warm the baselines' page cache as the tern warm-up sample does for tern.
        naive.sample()?;
        floor.sample()?;
        cold::one(&naive_server.api, &naive_series, usize::MAX)?;
        eprintln!(
            "cold: {} samples of {} with baselines interleaved",
            args.cold_samples, python.name
        );
        let r = cold::run(
            api,
            &series(&python, "isolated", &[], args.cold_samples, gap),
            || {
                let (client, init) =
                    cold::one(&naive_server.api, &naive_series, platform_total.len())?;
                platform_total.push(client);
                platform_init.push(init);
                let s = naive.sample()?;
                naive_init.push(s.init);
                naive_total.push(s.total);
                fork.push(floor.sample()?);
                phases.push(baselines::phase_sample(&scratch)?);
                Ok(())
            },
        )?;
        results.cold.push(r);
        results.server_warnings.extend(naive_server.warnings());
        drop(naive_server);
        results.baselines = Some(Baselines {
            python: scratch.python.display().to_string(),
            naive_platform: Summary::of_ms(&platform_total),
            naive_platform_init: Summary::of_ms(&platform_init),
            naive_init: Summary::of(&naive_init),
            naive_total: Summary::of(&naive_total),
            fork_floor: Summary::of(&fork),
        });
        results.phases = Some(Phases::of(&phases));
        let n = args.cold_samples_others;
        // A PYTHON* variable changes how the interpreter starts, so the server gives
        // such a function a fresh runtime instead of one started ahead.
        const FRESH: &[(&str, &str)] = &[("PYTHONNOUSERSITE", "1")];
        let others = [
            series(
                &python,
                "fresh runtime (PYTHONNOUSERSITE set)",
                FRESH,
                n,
                gap,
            ),
            series(&python, "back to back (no pause)", &[], n, Duration::ZERO),
            series(&python_layers, "two layers", &[], n, gap),
            series(
                &python_layers,
                "two layers, fresh runtime (PYTHONNOUSERSITE set)",
                FRESH,
                n,
                gap,
            ),
            series(&python_1cpu, "isolated", &[], n, gap),
            series(&node, "isolated", &[], n, gap),
            series(&node_1cpu, "isolated", &[], n, gap),
            series(&provided, "isolated", &[], n, gap),
            series(&boto3, BOTO3_VARIANT, &[], n, gap),
            cold::Series {
                settle: TEMPLATE_SETTLE,
                ..series(&boto3_template, BOTO3_TEMPLATE_VARIANT, &[], n, gap)
            },
        ];
        for s in &others {
            eprintln!(
                "cold: {} samples of {}, {}",
                s.samples, s.function, s.variant
            );
            results.cold.push(cold::run(api, s, || Ok(()))?);
        }
    }
    if args.warm {
        eprintln!("warm: {} samples per series", args.warm_samples);
        results.http_floor = Some(warm::http_floor(api, args.warm_samples)?);
        for d in hello {
            results.warm.push(warm::run(
                api,
                &d.name,
                d.runtime,
                FROZEN_VARIANT,
                args.warm_samples,
                Duration::ZERO,
            )?);
        }
        // A mostly idle function (a request every 20 ms): what CFS burst is for.
        for d in [&python, &node] {
            results.warm.push(warm::run(
                api,
                &d.name,
                d.runtime,
                PACED_VARIANT,
                args.warm_samples.min(300),
                PACED_PAUSE,
            )?);
        }
        // The freezer's cost on the warm path, and what CFS burst does for short
        // requests under a small CPU share: the same series on servers with each off,
        // holding the same functions (so the same pools and idle runtimes).
        for (flags, variant, measured) in [
            (
                ["--freeze-idle", "false"],
                UNFROZEN_VARIANT,
                &["python3.11"][..],
            ),
            (
                ["--cpu-burst", "false"],
                NO_BURST_VARIANT,
                &["python3.11", "nodejs20.x"][..],
            ),
            (
                ["--warm-cpu-period-ms", "100"],
                LONG_PERIOD_VARIANT,
                &["python3.11", "nodejs20.x"][..],
            ),
        ] {
            let other = server::TernServer::start_with(binary, &flags)?;
            for f in [
                functions::python_hello()?,
                functions::node_hello()?,
                functions::provided_hello()?,
            ] {
                let name = format!(
                    "{tag}-{}-{}",
                    f.runtime.replace('.', ""),
                    flags[0].trim_start_matches("--")
                );
                other
                    .api
                    .create_function(&name, f.runtime, f.handler, 128, &f.zip)?;
                if measured.contains(&f.runtime) {
                    results.warm.push(warm::run(
                        &other.api,
                        &name,
                        f.runtime,
                        variant,
                        args.warm_samples,
                        Duration::ZERO,
                    )?);
                    // What burst does for a mostly idle function, against the paced
                    // series of the default server.
                    if variant == NO_BURST_VARIANT && f.runtime.starts_with("nodejs") {
                        results.warm.push(warm::run(
                            &other.api,
                            &name,
                            f.runtime,
                            NO_BURST_PACED_VARIANT,
                            args.warm_samples.min(300),
                            PACED_PAUSE,
                        )?);
                    }
                }
            }
        }
    }
    // The server's cgroup subtree, found through an instance that served a request.
    let mut server_cgroup = None;
    if args.memory {
        let mut served = Vec::new();
        for d in hello {
            // The instance that served the last request is idle now.
            let id = api.invoke(&d.name, false)?.instance_id();
            server_cgroup = server_cgroup.or_else(|| id.as_deref().and_then(instances::server_of));
            served.push(id);
        }
        std::thread::sleep(Duration::from_millis(200));
        for (d, id) in hello.iter().zip(&served) {
            results.memory.push(MemoryEntry {
                function: d.name.clone(),
                runtime: d.runtime.to_string(),
                what: "hello-world, one idle instance".into(),
                memory: memory::measure(id),
            });
        }
    }
    if args.throughput {
        let noop = deploy("noop", functions::python_noop()?, 128)?;
        let first = api.invoke(&noop.name, false)?;
        let server_cgroup = server_cgroup
            .or_else(|| {
                first
                    .instance_id()
                    .as_deref()
                    .and_then(instances::server_of)
            })
            .unwrap_or_default();
        let mut pool = std::collections::HashSet::new();
        for &c in &args.concurrency {
            eprintln!(
                "throughput: {} requests at concurrency {c}",
                args.throughput_requests
            );
            let (level, ids) = throughput::run(
                api,
                server.pid(),
                &server_cgroup,
                &noop.name,
                c,
                args.throughput_requests,
            );
            results.throughput.push(level);
            pool.extend(ids);
        }
        if args.memory {
            std::thread::sleep(Duration::from_millis(200));
            results.memory.push(MemoryEntry {
                function: noop.name.clone(),
                runtime: noop.runtime.to_string(),
                what: "no-op, idle pool left by the throughput run (mean)".into(),
                memory: memory::measure(&pool),
            });
        }
    }
    Ok(())
}
