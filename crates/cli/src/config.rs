//! The server's configuration: one struct with defaults, filled from an optional TOML
//! file, then `TERN_*` environment variables and flags (later sources win).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tern_core::function::NetworkMode;
use tern_sandbox::Cidr;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `postgres://USER@HOST:PORT/DB` to keep state in PostgreSQL; unset: embedded
    /// SQLite at `<data_dir>/tern.db`.
    pub database: Option<String>,
    /// Connections to PostgreSQL (and store worker threads).
    pub database_pool_size: usize,
    /// Where code packages and layers are kept (default `<data_dir>/code`). Servers
    /// that share a PostgreSQL database must share this directory too.
    pub code_dir: Option<PathBuf>,
    pub region: String,
    /// Seconds an idle instance is kept warm.
    pub keep_alive_secs: u64,
    /// Runs functions as plain processes, without the sandbox. Development only.
    pub dev_unsandboxed: bool,
    /// Server-wide cap on live instances.
    pub max_instances: usize,
    pub init_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    pub log_retention_hours: u64,
    pub cpu_floor_millis: u32,
    pub max_pids: u32,
    pub max_open_files: u32,
    /// Output stored per invocation; the rest is dropped with a marker.
    pub max_output_bytes: u64,
    /// Concurrent executions per namespace (Lambda's account limit).
    pub account_concurrency: u32,
    /// Concurrency reservations must leave at least this much for other functions.
    pub min_unreserved_concurrency: u32,
    /// Memory counted for live instances (busy ones by MemorySize, idle ones by measured
    /// use); 0 means 75% of the machine's memory.
    pub memory_budget_mb: u64,
    /// Host memory to keep available (MemAvailable), in MB: below it, idle instances are
    /// evicted least recently used first. Unset: 5% of the machine's memory; 0: off.
    pub host_memory_floor_mb: Option<u64>,
    /// Summed EphemeralStorage of live instances, in MB (0: half the free space of the
    /// data dir's filesystem at start). Only where /tmp is on the host disk.
    pub tmp_disk_budget_mb: u64,
    /// Cold starts running at once; 0 means twice the CPU count.
    pub max_concurrent_starts: usize,
    /// How long a request waits for a free instance before a 429.
    pub queue_timeout_ms: u64,
    /// Runtimes started ahead of time (sandbox built, runtime started, waiting for its
    /// function) kept per shape in use, at least (0: none are started ahead).
    pub prewarm_per_runtime: usize,
    /// The same, at most, when cold starts ask for more.
    pub prewarm_max_per_runtime: usize,
    /// Fork Python runtimes from a per-namespace zygote instead of exec'ing them.
    pub zygote: bool,
    /// Build sandboxes, runtimes and /tmp disks ahead of time, off the request path
    /// (false: nothing is built ahead).
    pub pre_created_sandboxes: bool,
    /// Remount the host's cgroup2 mount with `favordynmods` at start, so that moving a
    /// process into an instance's cgroups takes ~0.1 ms instead of an RCU grace period.
    pub cgroup_favor_dynmods: bool,
    /// Freeze idle instances (cgroup freezer) until their next request.
    pub freeze_idle: bool,
    /// CFS burst: CPU time an instance left unused banks up, to one period's quota.
    pub cpu_burst: bool,
    /// CFS period of an instance once started, in ms (its start-up runs over 100 ms).
    pub warm_cpu_period_ms: u64,
    /// How long a start-up runs on a full core before the instance gets its share, in
    /// ms (0: its share from the start).
    pub start_cpu_boost_ms: u64,
    /// Machine CPU busy percent from which short functions wait for a busy instance
    /// instead of starting another (0 always, above 100 never).
    pub saturated_cpu_percent: u32,
    /// Open API connections at most; past it a new one gets a 503 and is closed.
    pub max_connections: usize,
    /// Open API connections from one IP address at most (0: no per-address cap).
    pub max_connections_per_peer: usize,
    /// Seconds a client may take to send a request's headers.
    pub header_timeout_secs: u64,
    /// Seconds a connection with no request in flight may stay silent.
    pub idle_timeout_secs: u64,
    /// The SDK given to Python runtimes at `/var/runtime`: "off", or pip requirements
    /// separated by spaces or commas (default: tern's pinned boto3 and botocore).
    pub python_sdk: String,
    /// Where Python SDK installs are cached (default `<data_dir>/python-sdk`); may be
    /// shared by servers, or pre-populated for machines without PyPI.
    pub python_sdk_dir: Option<PathBuf>,
    /// Asynchronous invocation (queue, retries, leases, retention).
    #[serde(rename = "async")]
    pub async_invoke: AsyncSettings,
    /// Function networking (egress, the egress policy, DNS).
    pub network: NetworkSettings,
    /// Function URLs.
    pub urls: UrlSettings,
    /// Schedules (missed slots after a stop or a stall).
    pub schedules: ScheduleSettings,
}

/// `[urls]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UrlSettings {
    /// How the API spells a `FunctionUrl`, with `{id}` for the URL id: with `{id}` as the
    /// first label of the host (`https://{id}.lambda-url.example.com/`), requests whose
    /// Host is `<url-id>.<domain>` are routed to that URL (behind a proxy or wildcard
    /// DNS). Unset: `http://<address the client used>/url/<url-id>/`.
    pub public_base: Option<String>,
    /// MiB of request bodies all function URL requests may hold at once; a request that
    /// finds no room is a 429 before its body is read.
    pub max_buffered_mb: usize,
}

impl Default for UrlSettings {
    fn default() -> Self {
        UrlSettings {
            public_base: None,
            max_buffered_mb: 512,
        }
    }
}

impl UrlSettings {
    pub fn base(&self) -> anyhow::Result<tern_gateway::UrlBase> {
        match &self.public_base {
            None => Ok(tern_gateway::UrlBase::listener()),
            Some(b) => tern_gateway::UrlBase::public(b).map_err(|e| anyhow::anyhow!("urls.{e}")),
        }
    }
}

/// `[schedules]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSettings {
    /// A slot missed (server down, store unreachable) fires late only within this many
    /// seconds of its time; older ones are skipped and logged.
    pub grace_secs: u64,
    /// Missed slots inside the grace window fired at most per schedule when the
    /// scheduler catches up; older ones in the window are skipped and logged.
    pub catch_up_max: usize,
    /// Schedules one namespace may hold; creating one more is a 400.
    pub max_per_namespace: usize,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        ScheduleSettings {
            grace_secs: 300,
            catch_up_max: 60,
            max_per_namespace: 100,
        }
    }
}

/// `[network]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSettings {
    /// Give sandboxes a network when their function asks for one (false: every function
    /// is loopback-only, and `egress` is refused).
    pub enabled: bool,
    /// The network mode of a function created without one: `none` or `egress`.
    pub default_mode: String,
    /// Addresses of all tern servers' sandboxes on this host; each server takes a /19.
    pub sandbox_cidr: String,
    /// Destinations refused to every sandbox on top of the built-in list (CIDRs).
    pub deny: Vec<String>,
    /// The resolv.conf whose nameservers answer sandboxes' DNS queries.
    pub resolv_conf: PathBuf,
    /// How long the credentials of an instance that may call tern stay valid, in
    /// seconds; an instance gets no more work once less than a tenth is left.
    pub api_credentials_secs: u64,
    /// Connections the instances of one function may have open at once (0: no cap).
    pub max_connections_per_function: u32,
    /// Megabits per second each instance may send, and receive (0: no limit).
    pub bandwidth_mbit: u64,
}

impl Default for NetworkSettings {
    fn default() -> Self {
        NetworkSettings {
            enabled: true,
            default_mode: "none".to_string(),
            sandbox_cidr: tern_sandbox::net::DEFAULT_SANDBOX_CIDR.to_string(),
            deny: Vec::new(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            api_credentials_secs: 3600,
            max_connections_per_function: 4096,
            bandwidth_mbit: 0,
        }
    }
}

impl NetworkSettings {
    pub fn default_mode(&self) -> anyhow::Result<NetworkMode> {
        NetworkMode::parse(&self.default_mode).with_context(|| {
            format!(
                "network.default_mode {:?} is not one of {}",
                self.default_mode,
                NetworkMode::NAMES.join(", ")
            )
        })
    }

    /// The sandbox launcher's settings; `None` when networking is off.
    pub fn sandbox_config(&self) -> anyhow::Result<Option<tern_sandbox::NetworkConfig>> {
        if !self.enabled {
            return Ok(None);
        }
        let cidr = |s: &String, what: &str| -> anyhow::Result<Cidr> {
            s.parse::<Cidr>()
                .map_err(|e| anyhow::anyhow!("network.{what}: {e}"))
        };
        let sandbox_cidr = cidr(&self.sandbox_cidr, "sandbox_cidr")?;
        if sandbox_cidr.prefix > 19 {
            bail!("network.sandbox_cidr {sandbox_cidr} is smaller than one server's block: give a /19 or larger");
        }
        Ok(Some(tern_sandbox::NetworkConfig {
            sandbox_cidr,
            deny: self
                .deny
                .iter()
                .map(|d| cidr(d, "deny"))
                .collect::<anyhow::Result<_>>()?,
            max_connections_per_function: (self.max_connections_per_function > 0)
                .then_some(self.max_connections_per_function),
            bandwidth: (self.bandwidth_mbit > 0).then(|| self.bandwidth_mbit * 1_000_000 / 8),
            ..tern_sandbox::NetworkConfig::default()
        }))
    }
}

/// `[async]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsyncSettings {
    /// Events queued per namespace at most; past it enqueue answers 429.
    pub max_queued_per_namespace: u64,
    /// Events this server runs at once; 0: it runs none, only accepts them (for other
    /// servers on the same PostgreSQL database to run, or to measure enqueue alone).
    pub concurrency: usize,
    /// Delay before the first retry after a function error, in ms; the second waits
    /// twice as long (Lambda: about 1 and 2 minutes). Shorten only for tests.
    pub retry_delay_ms: u64,
    /// First delay after a system failure (throttle, launch failure, lost lease), in
    /// ms; it doubles per failure up to 5 minutes.
    pub system_backoff_ms: u64,
    /// How long a claimed event stays with this server without a renewal; a server
    /// that dies leaves its running events to others after this.
    pub lease_secs: u64,
    /// How long finished events (and their status) are kept, in hours.
    pub status_retention_hours: u64,
    /// How long dead letters are kept unless redriven or purged, in hours.
    pub dead_letter_retention_hours: u64,
    /// PEM file of CA certificates that https webhook destinations may present, on top
    /// of the host's trusted CAs (for internal CAs, or self-signed test servers).
    pub webhook_ca_file: Option<PathBuf>,
}

impl Default for AsyncSettings {
    fn default() -> Self {
        AsyncSettings {
            max_queued_per_namespace: 100_000,
            concurrency: 256,
            retry_delay_ms: 60_000,
            system_backoff_ms: 1_000,
            lease_secs: 30,
            status_retention_hours: 24,
            dead_letter_retention_hours: 14 * 24,
            webhook_ca_file: None,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8900)),
            data_dir: PathBuf::from(".tern"),
            database: None,
            database_pool_size: 8,
            code_dir: None,
            region: "us-east-1".to_string(),
            keep_alive_secs: 600,
            dev_unsandboxed: false,
            max_instances: 2048,
            init_timeout_secs: 10,
            shutdown_grace_secs: 30,
            log_retention_hours: 24,
            cpu_floor_millis: 250,
            max_pids: 256,
            max_open_files: 1024,
            max_output_bytes: 1 << 20,
            account_concurrency: 1000,
            min_unreserved_concurrency: 100,
            memory_budget_mb: 0,
            host_memory_floor_mb: None,
            tmp_disk_budget_mb: 0,
            max_concurrent_starts: 0,
            queue_timeout_ms: 5000,
            prewarm_per_runtime: 2,
            prewarm_max_per_runtime: 128,
            zygote: true,
            pre_created_sandboxes: true,
            cgroup_favor_dynmods: true,
            freeze_idle: true,
            cpu_burst: true,
            warm_cpu_period_ms: 10,
            start_cpu_boost_ms: 500,
            saturated_cpu_percent: 85,
            max_connections: 4096,
            max_connections_per_peer: 1024,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            python_sdk: tern_runtime::python_sdk::DEFAULT_REQUIREMENTS.join(" "),
            python_sdk_dir: None,
            async_invoke: AsyncSettings::default(),
            network: NetworkSettings::default(),
            urls: UrlSettings::default(),
            schedules: ScheduleSettings::default(),
        }
    }
}

/// `tern server` flags; each also reads `TERN_<NAME>`.
#[derive(clap::Args, Debug, Default)]
pub struct ServerArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "TERN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port) [default: 127.0.0.1:8900]
    #[arg(long, env = "TERN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for all state: database, code, credentials [default: .tern in the current directory]
    #[arg(long, env = "TERN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep state in PostgreSQL: postgres://USER@HOST:PORT/DB [default: SQLite in the
    /// data dir]
    #[arg(long, env = "TERN_DATABASE")]
    pub database: Option<String>,
    /// Code packages and layers [default: <data-dir>/code]; servers sharing a
    /// PostgreSQL database must share it too.
    #[arg(long, env = "TERN_CODE_DIR")]
    pub code_dir: Option<PathBuf>,
    /// Region shown in ARNs and written to <data-dir>/config [default: us-east-1]
    #[arg(long, env = "TERN_REGION")]
    pub region: Option<String>,
    /// Seconds an idle instance stays warm before it is stopped [default: 600]
    #[arg(long, env = "TERN_KEEP_ALIVE")]
    pub keep_alive: Option<u64>,
    /// Server-wide cap on live instances.
    #[arg(long, env = "TERN_MAX_INSTANCES")]
    pub max_instances: Option<usize>,
    /// Concurrent executions per namespace (Lambda's account concurrency limit).
    #[arg(long, env = "TERN_ACCOUNT_CONCURRENCY")]
    pub account_concurrency: Option<u32>,
    /// Reservations must leave at least this much unreserved concurrency.
    #[arg(long, env = "TERN_MIN_UNRESERVED_CONCURRENCY")]
    pub min_unreserved_concurrency: Option<u32>,
    /// Memory counted for live instances, in MB: busy ones by MemorySize, idle ones by
    /// measured use (default: 75% of RAM).
    #[arg(long, env = "TERN_MEMORY_BUDGET_MB")]
    pub memory_budget_mb: Option<u64>,
    /// Summed EphemeralStorage of live instances, in MB (default: half the free space
    /// of the data dir's filesystem at start).
    #[arg(long, env = "TERN_TMP_DISK_BUDGET_MB")]
    pub tmp_disk_budget_mb: Option<u64>,
    /// Runtimes started ahead of time kept per shape in use, at least (0: none).
    #[arg(long, env = "TERN_PREWARM_PER_RUNTIME")]
    pub prewarm: Option<usize>,
    /// Fork Python runtimes from a per-namespace zygote (true/false).
    #[arg(long, env = "TERN_ZYGOTE")]
    pub zygote: Option<bool>,
    /// Keep empty sandboxes and /tmp disks built ahead of time (true/false).
    #[arg(long, env = "TERN_PRE_CREATED_SANDBOXES")]
    pub pre_created_sandboxes: Option<bool>,
    /// Make cgroup migrations fast host-wide (`favordynmods` on the cgroup2 mount) at
    /// start (true/false).
    #[arg(long, env = "TERN_CGROUP_FAVOR_DYNMODS")]
    pub cgroup_favor_dynmods: Option<bool>,
    /// Freeze idle instances until their next request (true/false).
    #[arg(long, env = "TERN_FREEZE_IDLE")]
    pub freeze_idle: Option<bool>,
    /// Let instances bank unused CPU time for short bursts (true/false).
    #[arg(long, env = "TERN_CPU_BURST")]
    pub cpu_burst: Option<bool>,
    /// CFS period of an instance once started, in ms (1-1000; 100 is the start-up's).
    #[arg(long, env = "TERN_WARM_CPU_PERIOD_MS")]
    pub warm_cpu_period_ms: Option<u64>,
    /// SDK of Python runtimes: "off", or pip requirements (default: the pinned
    /// boto3 and botocore; see docs/operations.md).
    #[arg(long, env = "TERN_PYTHON_SDK")]
    pub python_sdk: Option<String>,
    /// Cache of Python SDK installs (default: <data-dir>/python-sdk).
    #[arg(long, env = "TERN_PYTHON_SDK_DIR")]
    pub python_sdk_dir: Option<PathBuf>,
    /// Network mode of functions created without one: none or egress [default: none].
    #[arg(long, env = "TERN_NETWORK_DEFAULT")]
    pub network_default: Option<String>,
    /// Function URLs as `https://{id}.lambda-url.example.com/` (host routing) [default:
    /// http://<listen address>/url/<url-id>/]
    #[arg(long, env = "TERN_URL_PUBLIC_BASE")]
    pub url_public_base: Option<String>,
    /// DEVELOPMENT ONLY: run functions as plain processes without any isolation.
    #[arg(long, env = "TERN_DEV_UNSANDBOXED")]
    pub dev_unsandboxed: bool,
}

impl ServerConfig {
    pub fn load(args: &ServerArgs) -> anyhow::Result<Self> {
        let mut cfg = match &args.config {
            Some(path) => Self::from_file(path)?,
            None => ServerConfig::default(),
        };
        if let Some(v) = args.listen {
            cfg.listen = v;
        }
        if let Some(v) = &args.data_dir {
            cfg.data_dir = v.clone();
        }
        if let Some(v) = &args.database {
            cfg.database = Some(v.clone());
        }
        if let Some(v) = &args.code_dir {
            cfg.code_dir = Some(v.clone());
        }
        if let Some(v) = &args.region {
            cfg.region = v.clone();
        }
        if let Some(v) = args.keep_alive {
            cfg.keep_alive_secs = v;
        }
        if let Some(v) = args.max_instances {
            cfg.max_instances = v;
        }
        if let Some(v) = args.account_concurrency {
            cfg.account_concurrency = v;
        }
        if let Some(v) = args.min_unreserved_concurrency {
            cfg.min_unreserved_concurrency = v;
        }
        if let Some(v) = args.memory_budget_mb {
            cfg.memory_budget_mb = v;
        }
        if let Some(v) = args.tmp_disk_budget_mb {
            cfg.tmp_disk_budget_mb = v;
        }
        if let Some(v) = args.prewarm {
            cfg.prewarm_per_runtime = v;
        }
        if let Some(v) = args.zygote {
            cfg.zygote = v;
        }
        if let Some(v) = args.pre_created_sandboxes {
            cfg.pre_created_sandboxes = v;
        }
        if let Some(v) = args.cgroup_favor_dynmods {
            cfg.cgroup_favor_dynmods = v;
        }
        if let Some(v) = args.freeze_idle {
            cfg.freeze_idle = v;
        }
        if let Some(v) = args.warm_cpu_period_ms {
            cfg.warm_cpu_period_ms = v;
        }
        if let Some(v) = args.cpu_burst {
            cfg.cpu_burst = v;
        }
        if let Some(v) = &args.python_sdk {
            cfg.python_sdk = v.clone();
        }
        if let Some(v) = &args.python_sdk_dir {
            cfg.python_sdk_dir = Some(v.clone());
        }
        if let Some(v) = &args.network_default {
            cfg.network.default_mode = v.clone();
        }
        if let Some(v) = &args.url_public_base {
            cfg.urls.public_base = Some(v.clone());
        }
        cfg.dev_unsandboxed |= args.dev_unsandboxed;
        cfg.validate()?;
        Ok(cfg)
    }

    fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.region.is_empty()
            || !self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!("region '{}' must be like us-east-1", self.region);
        }
        if self.keep_alive_secs == 0 {
            bail!("keep_alive must be at least 1 second");
        }
        if self.max_instances == 0 {
            bail!("max_instances must be at least 1");
        }
        if self.init_timeout_secs == 0 {
            bail!("init_timeout_secs must be at least 1");
        }
        if !(1..=1000).contains(&self.warm_cpu_period_ms) {
            bail!("warm_cpu_period_ms must be from 1 to 1000");
        }
        if self.start_cpu_boost_ms > 10_000 {
            bail!("start_cpu_boost_ms must be at most 10000");
        }
        if let Some(url) = &self.database {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("database must be a postgres:// URL (unset: SQLite in the data dir)");
            }
        }
        if !(1..=256).contains(&self.database_pool_size) {
            bail!("database_pool_size must be from 1 to 256");
        }
        let a = &self.async_invoke;
        if a.max_queued_per_namespace == 0 {
            bail!("async.max_queued_per_namespace must be at least 1");
        }
        if a.lease_secs < 2 || a.status_retention_hours == 0 {
            bail!(
                "async.lease_secs must be at least 2 and async.status_retention_hours at least 1"
            );
        }
        if !(1..=10_000).contains(&self.schedules.catch_up_max) {
            bail!("schedules.catch_up_max must be from 1 to 10000");
        }
        if !(1..=7 * 86_400).contains(&self.schedules.grace_secs) {
            bail!("schedules.grace_secs must be from 1 to 604800 (7 days)");
        }
        if !(6..=1_048_576).contains(&self.urls.max_buffered_mb) {
            bail!("urls.max_buffered_mb must be from 6 (one 6 MB body) to 1048576");
        }
        if !(1..=100_000).contains(&self.schedules.max_per_namespace) {
            bail!("schedules.max_per_namespace must be from 1 to 100000");
        }
        if self.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        if self.header_timeout_secs == 0 || self.idle_timeout_secs == 0 {
            bail!("header_timeout_secs and idle_timeout_secs must be at least 1");
        }
        self.urls.base()?;
        let mode = self.network.default_mode()?;
        self.network.sandbox_config()?;
        if self.network.bandwidth_mbit > 128_000 {
            bail!("network.bandwidth_mbit must be at most 128000 (0: no limit)");
        }
        if self.network.api_credentials_secs < 10 || self.network.api_credentials_secs > 43_200 {
            bail!("network.api_credentials_secs must be from 10 to 43200 (12 hours)");
        }
        if mode != NetworkMode::None && !self.network.enabled {
            bail!("network.default_mode {mode} needs network.enabled = true");
        }
        if let Some(bad) = self
            .python_sdk_requirements()
            .iter()
            .find(|r| r.starts_with('-'))
        {
            bail!("python_sdk: '{bad}' is not a requirement (options are not accepted)");
        }
        Ok(())
    }

    /// The pip requirements of the Python SDK; empty when it is off.
    pub fn python_sdk_requirements(&self) -> Vec<String> {
        if self.python_sdk.trim().eq_ignore_ascii_case("off") {
            return Vec::new();
        }
        self.python_sdk
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Where code packages and layers are kept.
    pub fn code_dir(&self) -> PathBuf {
        self.code_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("code"))
    }

    /// Where the Python SDK installs are cached.
    pub fn python_sdk_dir(&self) -> PathBuf {
        self.python_sdk_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("python-sdk"))
    }

    pub fn memory_budget_mb(&self) -> u64 {
        if self.memory_budget_mb > 0 {
            return self.memory_budget_mb;
        }
        memory_total_mb() * 3 / 4
    }

    /// MemAvailable below which idle instances are evicted (0: never).
    pub fn host_memory_floor_mb(&self) -> u64 {
        self.host_memory_floor_mb
            .unwrap_or_else(|| memory_total_mb() / 20)
    }

    /// The /tmp disk budget in MB, for a server whose /tmp filesystems are on the host
    /// disk: as configured, else half of what the data dir's filesystem has free now.
    pub fn tmp_disk_budget_mb(&self) -> u64 {
        if self.tmp_disk_budget_mb > 0 {
            return self.tmp_disk_budget_mb;
        }
        nix::sys::statvfs::statvfs(&self.data_dir)
            .map(|st| st.blocks_available() * st.fragment_size() / 2 / (1 << 20))
            .unwrap_or(10 * 1024)
    }

    pub fn max_concurrent_starts(&self) -> usize {
        if self.max_concurrent_starts > 0 {
            return self.max_concurrent_starts;
        }
        std::thread::available_parallelism()
            .map(|n| n.get() * 2)
            .unwrap_or(4)
    }

    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_secs)
    }
}

/// The machine's memory in MB (4 GB if `/proc/meminfo` cannot be read).
fn memory_total_mb() -> u64 {
    tern_runtime::load::memory_total_mb().unwrap_or(4 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_and_file_overrides_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tern.toml");
        std::fs::write(&file, "region = \"eu-west-1\"\nkeep_alive_secs = 5\n").expect("write");
        let args = ServerArgs {
            config: Some(file),
            keep_alive: Some(7),
            ..ServerArgs::default()
        };
        let cfg = ServerConfig::load(&args).expect("load");
        assert_eq!(cfg.region, "eu-west-1");
        assert_eq!(cfg.keep_alive_secs, 7);
        assert_eq!(cfg.listen.port(), 8900);
    }

    #[test]
    fn unknown_config_keys_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("tern.toml");
        std::fs::write(&file, "regoin = \"x\"\n").expect("write");
        let args = ServerArgs {
            config: Some(file),
            ..ServerArgs::default()
        };
        let err = ServerConfig::load(&args).expect_err("typo must fail");
        assert!(format!("{err:#}").contains("regoin"), "{err:#}");
    }

    #[test]
    fn server_help_shows_the_defaults() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        let help = Cli::command().render_help().to_string();
        let defaults = ServerConfig::default();
        for shown in [
            format!("[default: {}]", defaults.listen),
            format!(
                "[default: {} in the current directory]",
                defaults.data_dir.display()
            ),
            format!("[default: {}]", defaults.region),
            format!("[default: {}]", defaults.keep_alive_secs),
        ] {
            assert!(help.contains(&shown), "{shown} not in:\n{help}");
        }
    }

    #[test]
    fn python_sdk_is_pinned_by_default_and_can_be_repinned_or_turned_off() {
        let cfg = ServerConfig::default();
        assert_eq!(
            cfg.python_sdk_requirements(),
            tern_runtime::python_sdk::DEFAULT_REQUIREMENTS
        );
        assert_eq!(cfg.python_sdk_dir(), PathBuf::from(".tern/python-sdk"));
        let args = ServerArgs {
            python_sdk: Some("boto3==1.40.0, botocore==1.40.0".into()),
            python_sdk_dir: Some("/srv/sdk".into()),
            ..ServerArgs::default()
        };
        let cfg = ServerConfig::load(&args).expect("load");
        assert_eq!(
            cfg.python_sdk_requirements(),
            ["boto3==1.40.0", "botocore==1.40.0"]
        );
        assert_eq!(cfg.python_sdk_dir(), PathBuf::from("/srv/sdk"));
        let off = ServerConfig {
            python_sdk: "off".into(),
            ..ServerConfig::default()
        };
        assert!(off.python_sdk_requirements().is_empty());
        let option = ServerConfig {
            python_sdk: "--index-url=http://evil boto3".into(),
            ..ServerConfig::default()
        };
        assert!(option.validate().is_err());
    }

    #[test]
    fn a_url_public_base_is_checked() {
        let good = ServerConfig {
            urls: UrlSettings {
                public_base: Some("https://{id}.lambda-url.example.com/".into()),
                ..UrlSettings::default()
            },
            ..ServerConfig::default()
        };
        assert!(good.validate().is_ok());
        let bad = ServerConfig {
            urls: UrlSettings {
                public_base: Some("https://lambda-url.example.com/".into()),
                ..UrlSettings::default()
            },
            ..ServerConfig::default()
        };
        let err = bad.validate().expect_err("no {id}");
        assert!(format!("{err:#}").contains("urls.public_base"), "{err:#}");
    }

    #[test]
    fn zero_keep_alive_is_invalid() {
        let cfg = ServerConfig {
            keep_alive_secs: 0,
            ..ServerConfig::default()
        };
        assert!(cfg.validate().is_err());
    }
}
