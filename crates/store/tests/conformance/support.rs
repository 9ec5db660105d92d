//! The backends the suite runs on, each test on a database of its own, and the records
//! the checks build.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

use tern_core::function::{CodeRef, FunctionRecord};
use tern_core::layer::LayerVersionRecord;
use tern_store::{
    Attempt, ClaimedEvent, Enqueued, NewEvent, PostgresStore, Settle, SqliteStore, Store,
};

/// A time well after zero, so that "before" and "after" both have room.
pub const T0: i64 = 1_000_000;
/// A lease no check outlives.
pub const LONG_LEASE: i64 = T0 + 3_600_000;

/// One backend: an empty database of the test's own, and stores opened on it.
pub trait Backend: Sized {
    fn fresh() -> Self;
    /// A store on this database; opening again sees what earlier stores wrote.
    fn open(&self) -> Box<dyn Store>;
}

/// Runs a check on a store of a fresh database.
pub fn with_store<B: Backend>(check: fn(&dyn Store)) {
    let db = B::fresh();
    let store = db.open();
    check(&*store);
}

/// Runs a check that opens stores on one fresh database as often as it likes.
pub fn with_reopen<B: Backend>(check: fn(&dyn Fn() -> Box<dyn Store>)) {
    let db = B::fresh();
    check(&|| db.open());
}

pub struct Sqlite {
    dir: tempfile::TempDir,
}

impl Backend for Sqlite {
    fn fresh() -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("a temporary directory for the SQLite file"),
        }
    }

    fn open(&self) -> Box<dyn Store> {
        let path = self.dir.path().join("tern.db");
        Box::new(SqliteStore::open(&path).expect("open the SQLite store"))
    }
}

/// The server the PostgreSQL tests create their databases on.
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Connections per store: enough for the concurrency checks' four threads.
const POSTGRES_POOL: usize = 4;

/// A database created for one test and dropped when the test ends, passed or not.
pub struct Postgres {
    server_url: String,
    name: String,
    url: String,
}

impl Backend for Postgres {
    fn fresh() -> Self {
        static CREATED: AtomicUsize = AtomicUsize::new(0);
        let server_url =
            std::env::var("TERN_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.into());
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let random = RandomState::new().build_hasher().finish() & 0xffff_ffff;
        let name = format!("tern_conf_{}_{n}_{random:08x}", std::process::id());
        if let Err(e) = tern_store::postgres::create_database(&server_url, &name) {
            panic!(
                "cannot create test database {name} on PostgreSQL at {server_url}: {}\n\
                 The PostgreSQL conformance tests need a server: start it (scripts/test does) \
                 or point TERN_TEST_POSTGRES at one.",
                causes(&e)
            );
        }
        let url = database_url(&server_url, &name);
        Postgres {
            server_url,
            name,
            url,
        }
    }

    fn open(&self) -> Box<dyn Store> {
        match PostgresStore::connect(&self.url, POSTGRES_POOL) {
            Ok(store) => Box::new(store),
            Err(e) => panic!(
                "cannot connect to test database {}: {}",
                self.url,
                causes(&e)
            ),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(e) = tern_store::postgres::drop_database(&self.server_url, &self.name) {
            // Panicking here would abort a test that is already unwinding.
            eprintln!(
                "warning: could not drop test database {}: {}",
                self.name,
                causes(&e)
            );
        }
    }
}

/// An error with its sources: the client's own message ("error connecting to server")
/// leaves out why.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        // Wrappers often repeat their source's message in their own.
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out = format!("{out}: {text}");
        }
        source = cause.source();
    }
    out
}

/// `server_url` with its database replaced by `name` (query parameters kept).
fn database_url(server_url: &str, name: &str) -> String {
    let (base, query) = match server_url.find('?') {
        Some(i) => server_url.split_at(i),
        None => (server_url, ""),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    format!("{base}/{name}{query}")
}

/// A function of `namespace` whose zip is `size` bytes.
/// `f` with a configuration no version published so far holds (its memory size
/// differs), so that publishing it makes a new version.
pub fn release(f: &FunctionRecord) -> FunctionRecord {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    FunctionRecord {
        memory_mb: 128 + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        ..f.clone()
    }
}

pub fn function(namespace: &str, name: &str, size: u64) -> FunctionRecord {
    FunctionRecord {
        network: Default::default(),
        call_tern: false,
        networks: Vec::new(),
        namespace: namespace.into(),
        name: name.into(),
        runtime: "python3.11".into(),
        handler: "app.handler".into(),
        role: String::new(),
        description: String::new(),
        memory_mb: 128,
        timeout_s: 3,
        tmp_mb: 512,
        env: Default::default(),
        architectures: vec!["x86_64".into()],
        tags: Default::default(),
        code: CodeRef {
            sha256_hex: "ab".into(),
            sha256_b64: "q=".into(),
            size,
            unzipped_size: 0,
        },
        layers: Vec::new(),
        logging: Default::default(),
        tracing_mode: "PassThrough".into(),
        snap_start: false,
        version: tern_core::function::LATEST.to_string(),
        incarnation: "i1".into(),
        revision_id: "r1".into(),
        revision: 1,
        last_modified_ms: 0,
    }
}

/// A layer version of `namespace`, whose account is `account`.
pub fn layer(namespace: &str, account: &str, name: &str) -> LayerVersionRecord {
    LayerVersionRecord {
        namespace: namespace.into(),
        account: account.into(),
        name: name.into(),
        version: 0,
        description: format!("layer {name}"),
        license_info: Some("MIT".into()),
        compatible_runtimes: vec!["python3.11".into()],
        compatible_architectures: vec!["x86_64".into()],
        sha256_hex: "cd".into(),
        sha256_b64: "zQ==".into(),
        size: 7,
        unzipped_size: 70,
        created_ms: T0,
    }
}

/// An event for function `f` of namespace `ns`, without an idempotency key.
pub fn event(request_id: &str, ns: &str, f: &str, enqueued_ms: i64) -> NewEvent {
    NewEvent {
        request_id: request_id.into(),
        namespace: ns.into(),
        function: f.into(),
        qualifier: "$LATEST".into(),
        payload: format!("{{\"id\":\"{request_id}\"}}").into_bytes(),
        enqueued_ms,
        incarnation: "i1".into(),
        idempotency_key: None,
    }
}

/// The same event with an idempotency key.
pub fn keyed(mut event: NewEvent, key: &str) -> NewEvent {
    event.idempotency_key = Some(key.into());
    event
}

/// Enqueues events of `default/f` at the given times; every one must be new.
pub fn enqueue(store: &dyn Store, events: &[(&str, i64)]) {
    let events: Vec<NewEvent> = events
        .iter()
        .map(|&(id, at)| event(id, "default", "f", at))
        .collect();
    let answers = store.enqueue_events(&events, 0).unwrap();
    assert!(answers.iter().all(|a| *a == Enqueued::New));
}

/// An attempt that ended with `outcome`.
pub fn attempt(started_ms: i64, outcome: &str) -> Attempt {
    let failed = outcome != "success";
    Attempt {
        started_ms,
        ended_ms: started_ms + 5,
        outcome: outcome.into(),
        error_type: failed.then(|| format!("{outcome}Error")),
        error_message: failed.then(|| format!("it was a {outcome}")),
    }
}

/// Request ids of claimed events, sorted.
pub fn ids(claimed: &[ClaimedEvent]) -> Vec<String> {
    let mut ids: Vec<String> = claimed.iter().map(|c| c.request_id.clone()).collect();
    ids.sort();
    ids
}

/// Claims exactly the one event `request_id` for `owner` at `now_ms` and settles it.
pub fn claim_and_settle(
    store: &dyn Store,
    request_id: &str,
    owner: &str,
    now_ms: i64,
    attempt: Option<&Attempt>,
    settle: &Settle,
) {
    let claimed = store
        .claim_events(owner, now_ms, now_ms + 1_000, 10, &[])
        .unwrap();
    assert_eq!(ids(&claimed), [request_id], "claimed at {now_ms}");
    assert!(store
        .settle_event(
            request_id,
            owner,
            attempt.map(std::slice::from_ref).unwrap_or_default(),
            settle,
            now_ms + 10
        )
        .unwrap());
}

/// Moves `request_id` (due, and the only due event) into the dead-letter queue with
/// one failed attempt.
pub fn dead_letter(store: &dyn Store, request_id: &str, now_ms: i64) {
    claim_and_settle(
        store,
        request_id,
        "dispatcher",
        now_ms,
        Some(&attempt(now_ms, "function_error")),
        &Settle::Failed {
            dead_letter: true,
            response: Some(b"{\"errorMessage\":\"boom\"}".to_vec()),
        },
    );
}
