//! `tern server`: wires store, instance manager, services and gateway together, serves
//! until SIGTERM/SIGINT, then drains.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use tern_core::function::NetworkMode;
use tern_core::names::DEFAULT_NAMESPACE;
use tern_gateway::presign::KEY_BYTES;
use tern_gateway::{AppState, Authenticator, Downloads, ListenerLimits, Sessions, UrlSigner};
use tern_invoke::events::{webhook_tls, AsyncService, DispatchSettings, Dispatcher, EventQueue};
use tern_invoke::networks::NetworkService;
use tern_invoke::schedules::{ScheduleService, Scheduler, SchedulerSettings};
use tern_invoke::{Admission, Executor, FunctionService, Invoker, Registry, ServiceConfig};
use tern_runtime::dns::{DnsForwarder, Upstreams};
use tern_runtime::{InstanceManager, LogRouter, PoolConfig, PythonSdk, RuntimeCatalog};
use tern_sandbox::{
    Depth, Launcher, ProcessLauncher, SandboxConfig, SandboxError, SandboxLauncher,
};
use tern_store::{
    AccessKey, CodeStore, LogLine, PackageLimits, PostgresStore, SqliteStore, Store, StoreHandle,
};
use tern_telemetry::{LogSink, Metrics};

use crate::config::{ServerArgs, ServerConfig};

const META_SERVER_ID: &str = "server_id";
/// File in the data dir holding the server id.
const SERVER_ID_FILE: &str = "server-id";
const META_ADMIN_KEY: &str = "admin_access_key_id";
/// File in the data dir holding the key that signs download URLs.
pub const URL_SIGNING_KEY_FILE: &str = "url-signing.key";
/// Shapes (namespace, runtime, /tmp size) of stored functions whose start-up is built
/// ahead when the server starts: those most functions share, as many as the launcher
/// keeps sandboxes built ahead for.
const PREPARED_SHAPES_AT_START: usize = 4;
/// Profile name in the credentials file.
pub const PROFILE: &str = "tern";

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    tern_telemetry::init_tracing("info");
    let config = ServerConfig::load(&args)?;
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

/// Raises the soft open-file limit to the hard one: each live instance holds a few
/// descriptors in the server (its Runtime API socket, output pipe, process handles), and
/// a thousand idle instances pass the usual soft limit of 1024.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The admin key, created on first start. Returns it and whether it is new.
fn admin_key(store: &dyn Store) -> anyhow::Result<(AccessKey, bool)> {
    if let Some(id) = store.get_meta(META_ADMIN_KEY)? {
        if let Some(key) = store.get_access_key(&id)? {
            return Ok((key, false));
        }
    }
    let mut rng = rand::thread_rng();
    let id_tail: String = (0..16)
        .map(|_| {
            let chars = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
            chars[rng.gen_range(0..chars.len())] as char
        })
        .collect();
    let key = AccessKey {
        access_key_id: format!("AKIA{id_tail}"),
        secret: Alphanumeric.sample_string(&mut rng, 40),
        namespace: DEFAULT_NAMESPACE.to_string(),
    };
    store.put_access_key(&key)?;
    store.put_meta(META_ADMIN_KEY, &key.access_key_id)?;
    Ok((key, true))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Writes `<data>/credentials` and `<data>/config` in the aws CLI's formats.
fn write_credentials(data_dir: &Path, key: &AccessKey, region: &str) -> anyhow::Result<PathBuf> {
    let creds = data_dir.join("credentials");
    write_private(
        &creds,
        &format!(
            "[{PROFILE}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            key.access_key_id, key.secret
        ),
    )?;
    write_private(
        &data_dir.join("config"),
        &format!("[profile {PROFILE}]\nregion = {region}\n"),
    )?;
    Ok(creds)
}

/// The key that signs download URLs (`Code.Location`): made once, kept in the data dir
/// (0600) so URLs stay valid across a restart.
fn url_signing_key(data_dir: &Path) -> anyhow::Result<[u8; KEY_BYTES]> {
    let path = data_dir.join(URL_SIGNING_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut key = [0u8; KEY_BYTES];
            hex::decode_to_slice(text.trim(), &mut key).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not {KEY_BYTES} bytes of hex ({e}); delete it to make a new key \
                     (outstanding download URLs stop working)",
                    path.display()
                )
            })?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key: [u8; KEY_BYTES] = rand::thread_rng().gen();
            write_private(&path, &format!("{}\n", hex::encode(key)))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// This server's id, which names its sandboxes' cgroups and mounts. It belongs to the
/// data dir, not the database: servers sharing one PostgreSQL database each have their
/// own. SQLite servers from before kept it in the store's meta table: `legacy`.
fn server_id(data_dir: &Path, legacy: Option<String>) -> anyhow::Result<String> {
    let path = data_dir.join(SERVER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = legacy.unwrap_or_else(|| {
        format!(
            "s{}",
            Alphanumeric
                .sample_string(&mut rand::thread_rng(), 10)
                .to_ascii_lowercase()
        )
    });
    write_private(&path, &format!("{id}\n"))?;
    Ok(id)
}

/// The launcher, and the address sandboxes with a network send their DNS queries to
/// (none when the launcher gives no sandbox a network).
fn launcher(
    config: &ServerConfig,
    server_id: String,
    api_port: u16,
) -> anyhow::Result<(Arc<dyn Launcher>, Option<Ipv4Addr>)> {
    if config.dev_unsandboxed {
        tracing::warn!("================================================================");
        tracing::warn!("DEVELOPMENT MODE: functions run WITHOUT A SANDBOX (--dev-unsandboxed).");
        tracing::warn!("They can read and write anything this server's user can. Never use");
        tracing::warn!("this with code you do not trust or on a shared machine.");
        tracing::warn!("================================================================");
        return Ok((Arc::new(ProcessLauncher::new()), None));
    }
    if !nix::unistd::Uid::effective().is_root() {
        bail!(
            "the function sandbox needs root (namespaces, cgroups, pivot_root); run `tern server` as root, \
             or for local development only pass --dev-unsandboxed to run functions without isolation"
        );
    }
    let mut sandbox_config = SandboxConfig::new(config.data_dir.join("sandbox"), server_id)
        .context("cannot configure the sandbox")?;
    let keep = config.keep_alive();
    sandbox_config.sandboxes_ahead = Depth {
        keep,
        ..Depth::DEFAULT
    };
    // `prewarm_per_runtime` 0 starts no runtime ahead (sandboxes are still built).
    sandbox_config.runtimes_ahead = match config.prewarm_per_runtime {
        0 => Depth::OFF,
        floor => Depth {
            floor,
            ceiling: config.prewarm_max_per_runtime.max(floor),
            keep,
        },
    };
    sandbox_config.network = config.network.sandbox_config()?.map(|mut network| {
        network.api_port = Some(api_port);
        network
    });
    if !config.pre_created_sandboxes {
        sandbox_config.sandboxes_ahead = Depth::OFF;
        sandbox_config.runtimes_ahead = Depth::OFF;
        sandbox_config.tmp_pool_depth = 0;
    }
    if config.cgroup_favor_dynmods {
        use tern_sandbox::cgroups::{favor_dynamic_changes, FavorDynmods};
        match favor_dynamic_changes() {
            Ok(FavorDynmods::TurnedOn(mount)) => tracing::info!(
                mount = %mount.display(),
                "remounted with favordynmods: moving a process into an instance's cgroups \
                 no longer waits for an RCU grace period (host-wide; cgroup_favor_dynmods \
                 = false leaves the host as it is)"
            ),
            Ok(FavorDynmods::AlreadyOn(_)) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "cannot make cgroup migrations fast (favordynmods); cold starts that move a \
                 process between cgroups may wait for an RCU grace period"
            ),
        }
    }
    let launcher = match SandboxLauncher::new(sandbox_config.clone()) {
        // A host without what function networking needs (nf_tables, veth) still runs
        // loopback-only functions, which is every function unless the operator made
        // egress the default: then the start fails, as it should.
        Err(SandboxError::Network(e)) if config.network.default_mode()? == NetworkMode::None => {
            tracing::error!(
                error = %e,
                "function networking is unavailable on this host: functions run \
                 loopback-only, and egress, private networks and CallTern are refused \
                 (set [network] enabled = false to say so and silence this)"
            );
            SandboxLauncher::new(SandboxConfig {
                network: None,
                ..sandbox_config
            })
            .context("cannot set up the sandbox")?
        }
        other => other.context("cannot set up the sandbox")?,
    };
    launcher.cleanup_leftovers();
    let resolver = launcher.network().map(|n| n.resolver());
    Ok((Arc::new(launcher), resolver))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))?;
    let data_dir = config
        .data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", config.data_dir.display()))?;
    let config = ServerConfig { data_dir, ..config };

    let store = open_store(&config).await?;
    let (key, created) = store.call(|s| admin_key(s)).await?;
    let legacy_id = match config.database {
        None => store.call(|s| s.get_meta(META_SERVER_ID)).await?,
        Some(_) => None,
    };
    let server_id = server_id(&config.data_dir, legacy_id)?;
    let server_id_for_leases = server_id.clone();
    let creds_path = config.data_dir.join("credentials");
    if created || !creds_path.exists() {
        write_credentials(&config.data_dir, &key, &config.region)?;
    }

    let code = Arc::new(
        CodeStore::open(&config.code_dir(), PackageLimits::default())
            .context("cannot open the code store")?,
    );
    let bootstrap_dir = config.data_dir.join("bootstraps");
    tern_runtime::bootstraps::install(&bootstrap_dir).context("cannot install the bootstraps")?;

    let logs = LogSink::start(
        store.clone(),
        (config.log_retention_hours as i64) * 3_600_000,
    );
    let router: LogRouter = {
        let logs = logs.clone();
        Arc::new(move |namespace: &str, function: &str, line| {
            logs.push(LogLine {
                namespace: namespace.to_string(),
                function: function.to_string(),
                request_id: line.request_id,
                ts_ms: now_ms(),
                line: line.line,
            })
        })
    };
    let catalog = RuntimeCatalog::detect();
    // In the background: the listener does not wait for PyPI; Python cold starts wait
    // for their own version's install (see tern_runtime::python_sdk).
    let requirements = config.python_sdk_requirements();
    let python_sdk = if requirements.is_empty() {
        PythonSdk::off()
    } else {
        PythonSdk::start(config.python_sdk_dir(), requirements, &catalog)
    };
    // Bound before the sandboxes' network is set up, whose policy lets the functions
    // that may call tern reach this port; served once everything is ready.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let (launcher, resolver) = launcher(&config, server_id, addr.port())?;
    let sessions = resolver.map(|_| {
        Arc::new(Sessions::new(
            Duration::from_secs(config.network.api_credentials_secs),
            config.max_instances,
        ))
    });
    // Sandboxes with a network resolve names through the server, on their side of it.
    let _dns = match resolver {
        Some(addr) => {
            match Upstreams::from_resolv_conf(&config.network.resolv_conf) {
                Ok(upstreams) => Some(
                    DnsForwarder::start(addr, 53, upstreams)
                        .await
                        .context("cannot start the sandboxes' DNS resolver")?,
                ),
                // Functions with a network then get a refusal for every name they look
                // up (nothing listens on the resolver's port), not a hang.
                Err(e) => {
                    tracing::error!(error = %e, "no DNS for functions with a network (network.resolv_conf)");
                    None
                }
            }
        }
        None => None,
    };
    // /tmp filesystems on the host disk count against a disk budget; a tmpfs /tmp is
    // memory, bounded by the instance's memory limit instead.
    let tmp_disk_budget_mb = match launcher.tmp_disk_used_bytes() {
        Some(_) => config.tmp_disk_budget_mb(),
        None => u64::MAX,
    };
    let instances = InstanceManager::new(
        PoolConfig {
            keep_alive: config.keep_alive(),
            init_timeout: Duration::from_secs(config.init_timeout_secs),
            max_instances: config.max_instances,
            memory_budget_mb: config.memory_budget_mb(),
            tmp_disk_budget_mb,
            max_concurrent_starts: config.max_concurrent_starts(),
            queue_timeout: Duration::from_millis(config.queue_timeout_ms),
            cpu_floor_millis: config.cpu_floor_millis,
            max_pids: config.max_pids,
            max_open_files: config.max_open_files,
            max_output_per_invocation: config.max_output_bytes,
            region: config.region.clone(),
            bootstrap_dir,
            zygote: config.zygote,
            freeze_idle: config.freeze_idle,
            host_memory_floor_mb: config.host_memory_floor_mb(),
            cpu_burst: config.cpu_burst,
            warm_cpu_period: Duration::from_millis(config.warm_cpu_period_ms),
            start_cpu_boost: Duration::from_millis(config.start_cpu_boost_ms),
            saturated_cpu_percent: config.saturated_cpu_percent,
            python_sdk,
            credentials: sessions
                .clone()
                .map(|s| s as Arc<dyn tern_runtime::credentials::InstanceCredentials>),
        },
        launcher,
        catalog.clone(),
        router,
    );
    instances.spawn_reaper();

    let metrics = Arc::new(Metrics::new());
    let downloads = Arc::new(Downloads::new(
        UrlSigner::new(url_signing_key(&config.data_dir)?),
        code.clone(),
    ));
    let functions = Arc::new(FunctionService::new(
        store.clone(),
        Arc::new(Registry::new(store.clone())),
        code,
        instances.clone(),
        Admission::new(
            config.account_concurrency,
            config.min_unreserved_concurrency,
        ),
        ServiceConfig {
            region: config.region.clone(),
            default_network: config.network.default_mode()?,
            // Without a sandbox a function has the host's network whatever its mode.
            networking: resolver.is_some() || config.dev_unsandboxed,
            call_tern: sessions.is_some(),
        },
    ));
    functions
        .restore()
        .await
        .context("cannot restore concurrency settings")?;
    {
        // The stored functions' first cold starts should find their zygotes and
        // sandboxes built, as a new function's do.
        let functions = functions.clone();
        tokio::spawn(async move {
            if let Err(e) = functions.prepare_stored(PREPARED_SHAPES_AT_START).await {
                tracing::warn!(error = %e, "cannot prepare the start-up of stored functions");
            }
        });
    }
    let executor = {
        let functions = functions.clone();
        Arc::new(Executor::new(
            functions.admission().clone(),
            instances.clone(),
            logs.clone(),
            metrics.clone(),
            move |rec| functions.spec(rec),
        ))
    };
    let async_settings = &config.async_invoke;
    let queue = EventQueue::start(store.clone(), async_settings.max_queued_per_namespace);
    let dispatcher = Dispatcher::new(
        store.clone(),
        executor.clone(),
        functions.clone(),
        queue.clone(),
        metrics.clone(),
        DispatchSettings {
            concurrency: async_settings.concurrency,
            retry_delay: Duration::from_millis(async_settings.retry_delay_ms),
            system_backoff: Duration::from_millis(async_settings.system_backoff_ms),
            lease: Duration::from_secs(async_settings.lease_secs),
            retention: Duration::from_secs(async_settings.status_retention_hours * 3600),
            dead_letter_retention: Duration::from_secs(
                async_settings.dead_letter_retention_hours * 3600,
            ),
            single_node: config.database.is_none(),
            webhook_tls: webhook_tls(async_settings.webhook_ca_file.as_deref())
                .map_err(|e| anyhow::anyhow!("async.webhook_ca_file: {e}"))?,
        },
        format!("{server_id_for_leases}-{}", uuid::Uuid::new_v4().simple()),
    );
    dispatcher.start();
    let scheduler = Scheduler::new(
        store.clone(),
        functions.registry().clone(),
        queue.clone(),
        metrics.clone(),
        SchedulerSettings {
            grace: Duration::from_secs(config.schedules.grace_secs),
            catch_up_max: config.schedules.catch_up_max,
            max_per_namespace: config.schedules.max_per_namespace,
            region: config.region.clone(),
        },
    );
    scheduler.start();
    let schedules = Arc::new(ScheduleService::new(
        store.clone(),
        functions.clone(),
        scheduler,
    ));
    let invoker = Arc::new(Invoker::new(functions.clone(), executor, queue.clone()));
    // The private networks are in the egress policy before the first request.
    let networks = Arc::new(NetworkService::new(store.clone()));
    if let Err(e) = networks.sync(&instances).await {
        tracing::error!(error = %e, "could not apply the private networks; retrying in the background");
    }
    networks.spawn_sync(instances.clone());
    let urls = Arc::new(tern_invoke::urls::UrlService::new(
        store.clone(),
        functions.clone(),
    ));
    let app = tern_gateway::router(AppState {
        networks,
        urls,
        url_base: Arc::new(config.urls.base()?),
        url_bodies: Arc::new(tern_gateway::BodyBudget::new(
            config.urls.max_buffered_mb.saturating_mul(1024 * 1024),
        )),
        schedules,
        events: Arc::new(AsyncService::new(store.clone(), functions.clone(), queue)),
        functions,
        invoker,
        auth: Arc::new(match &sessions {
            Some(sessions) => Authenticator::new(store.clone(), config.region.clone())
                .with_sessions(sessions.clone()),
            None => Authenticator::new(store.clone(), config.region.clone()),
        }),
        metrics,
        store: store.clone(),
        downloads,
    });

    // Functions that may call tern reach it at the resolver's address, on the server's
    // port: the listener itself when it listens on every address, else one of its own
    // (with its own connection limits, so functions cannot crowd out outside clients).
    let internal = match (resolver, &sessions) {
        (Some(resolver), Some(sessions)) => {
            sessions.set_endpoint(format!("http://{resolver}:{}", addr.port()));
            if addr.ip().is_unspecified() {
                None
            } else {
                let at = std::net::SocketAddr::from((resolver, addr.port()));
                Some(
                    tokio::net::TcpListener::bind(at)
                        .await
                        .with_context(|| format!("cannot listen for functions on {at}"))?,
                )
            }
        }
        _ => None,
    };
    tracing::info!(
        data_dir = %config.data_dir.display(),
        runtimes = %catalog.ids().join(","),
        sandbox = !config.dev_unsandboxed,
        database = if config.database.is_some() { "postgresql" } else { "sqlite" },
        "tern server ready"
    );
    print_welcome(&addr.to_string(), &creds_path, &config.region, created);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = ListenerLimits {
        max_connections: config.max_connections,
        max_connections_per_peer: config.max_connections_per_peer,
        header_timeout: Duration::from_secs(config.header_timeout_secs),
        idle_timeout: Duration::from_secs(config.idle_timeout_secs),
    };
    let (internal_stop_tx, internal_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let internal = internal.map(|listener| {
        tokio::spawn(tern_gateway::listener::serve(
            listener,
            app.clone(),
            limits.clone(),
            async {
                let _ = internal_stop_rx.await;
            },
        ))
    });
    let server = tokio::spawn(tern_gateway::listener::serve(
        listener,
        app,
        limits,
        async {
            let _ = stop_rx.await;
        },
    ));
    shutdown_signal().await;
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    let _ = stop_tx.send(());
    let _ = internal_stop_tx.send(());
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    // Requests and async events in flight finish within one grace period, side by side.
    let (served, ()) = tokio::join!(tokio::time::timeout(grace, server), dispatcher.drain(grace));
    match served {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed"),
        Err(_) => tracing::warn!(
            grace_secs = config.shutdown_grace_secs,
            "requests still running after the grace period; stopping them"
        ),
    }
    if let Some(internal) = internal {
        internal.abort();
    }
    instances.shutdown().await;
    // Let the log writer flush what is queued.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the store the configuration names: PostgreSQL when `database` is set, else
/// SQLite in the data dir. Connecting blocks, so it runs off the runtime.
async fn open_store(config: &ServerConfig) -> anyhow::Result<StoreHandle> {
    let (store, workers): (Arc<dyn Store>, usize) = match &config.database {
        Some(url) => {
            let (url, pool) = (url.clone(), config.database_pool_size);
            let store = tokio::task::spawn_blocking(move || PostgresStore::connect(&url, pool))
                .await?
                .with_context(|| {
                    format!(
                        "cannot open the PostgreSQL database {}",
                        redact_password(config.database.as_deref().unwrap_or_default())
                    )
                })?;
            (Arc::new(store), config.database_pool_size)
        }
        None => {
            let path = config.data_dir.join("tern.db");
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await?
                .context("cannot open the database")?;
            // One connection: a second worker only queues the next call behind it.
            (Arc::new(store), 2)
        }
    };
    Ok(StoreHandle::new(store, workers)?)
}

/// A database URL fit for a log line: `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn print_welcome(addr: &str, creds: &Path, region: &str, created: bool) {
    let endpoint = format!("http://{addr}");
    if created {
        eprintln!(
            "\nCreated an admin access key and wrote it to {creds} (profile `{PROFILE}`).\n\
             Use it with:\n  \
             tern CLI:  TERN_ENDPOINT={endpoint} TERN_CREDENTIALS={creds} tern functions list\n  \
             aws CLI:   AWS_SHARED_CREDENTIALS_FILE={creds} aws --profile {PROFILE} --region {region} --endpoint-url {endpoint} lambda list-functions\n  \
             boto3:     boto3.Session(profile_name='{PROFILE}', region_name='{region}').client('lambda', endpoint_url='{endpoint}')  (with AWS_SHARED_CREDENTIALS_FILE={creds})\n",
            creds = creds.display()
        );
    } else {
        eprintln!("Credentials: {} (profile `{PROFILE}`)", creds.display());
    }
    // The one line on stdout, for scripts and tests waiting for readiness.
    println!("tern server listening on {endpoint}");
    let _ = std::io::stdout().flush();
}
