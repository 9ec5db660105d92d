//! Unit tests against a live PostgreSQL server (each on a fresh database, dropped at
//! the end). The server is `TERN_TEST_POSTGRES`, by default the local one on
//! 127.0.0.1:5432 with database `test`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tern_core::function::{CodeRef, FunctionRecord};

use super::{create_database, drop_database, PostgresStore};
use crate::events::{Attempt, EventState, NewEvent, Settle};
use crate::store::{ProvisionedSetting, Store, StoreError};
use crate::Enqueued;

fn server_url() -> String {
    std::env::var("TERN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database, dropped when the guard goes (also when a test fails).
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    fn new() -> TestDb {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "tern_pg_unit_{}_{}_{}",
            std::process::id(),
            nanos,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let server = server_url();
        create_database(&server, &name).expect("create a test database (is PostgreSQL up?)");
        let url = match server.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("TERN_TEST_POSTGRES must end in /<database>"),
        };
        TestDb { name, url }
    }

    fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url, 4).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Err(e) = drop_database(&server_url(), &self.name) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

fn record(namespace: &str, name: &str) -> FunctionRecord {
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
            size: 10,
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

fn event(request_id: &str, key: Option<&str>, at: i64) -> NewEvent {
    NewEvent {
        request_id: request_id.into(),
        namespace: "default".into(),
        function: "f".into(),
        qualifier: "$LATEST".into(),
        payload: br#"{"n":1}"#.to_vec(),
        enqueued_ms: at,
        incarnation: String::new(),
        idempotency_key: key.map(String::from),
    }
}

#[test]
fn postgres_create_conflicts_and_update_checks_revision() {
    let db = TestDb::new();
    let store = db.store();
    store.create_function(&record("default", "a")).unwrap();
    match store.create_function(&record("default", "a")) {
        Err(StoreError::Conflict(m)) => assert_eq!(m, "Function already exist: a"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let mut next = record("default", "a");
    next.revision_id = "r2".into();
    store.update_function(&next, "r1").unwrap();
    assert!(matches!(
        store.update_function(&next, "r1"),
        Err(StoreError::Conflict(_))
    ));
    let got = store.get_function("default", "a").unwrap().unwrap();
    assert_eq!(got.revision_id, "r2");
    store
        .put_reserved_concurrency("default", "a", Some(5))
        .unwrap();
    assert!(store.delete_function("default", "a").unwrap());
    assert!(!store.delete_function("default", "a").unwrap());
    assert!(store.list_reserved_concurrency().unwrap().is_empty());
}

#[test]
fn postgres_listings_order_by_bytes_as_sqlite_does() {
    let db = TestDb::new();
    let store = db.store();
    for (ns, n) in [
        ("zeta", "a"),
        ("default", "b"),
        ("default", "B"),
        ("alpha", "z"),
    ] {
        store.create_function(&record(ns, n)).unwrap();
    }
    let names = |page: Vec<FunctionRecord>| -> Vec<String> {
        page.iter()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect()
    };
    let first = store.list_all_functions(None, 3).unwrap();
    assert_eq!(names(first), ["alpha/z", "default/B", "default/b"]);
    let rest = store.list_all_functions(Some(("default", "b")), 3).unwrap();
    assert_eq!(names(rest), ["zeta/a"]);
    let page = store.list_functions("default", Some("B"), 5).unwrap();
    assert_eq!(names(page), ["default/b"]);
    assert_eq!(store.usage("default").unwrap(), (2, 20));
}

#[test]
fn postgres_migrations_are_idempotent_on_reconnect() {
    let db = TestDb::new();
    db.store().create_function(&record("default", "a")).unwrap();
    let store = db.store();
    store
        .put_provisioned(&ProvisionedSetting {
            namespace: "default".into(),
            function: "a".into(),
            qualifier: "$LATEST".into(),
            requested: 2,
            last_modified_ms: 1,
        })
        .unwrap();
    // Two servers starting at once take turns on the migration lock.
    let racers: Vec<_> = (0..2)
        .map(|_| {
            let url = db.url.clone();
            std::thread::spawn(move || PostgresStore::connect(&url, 1).map(|_| ()))
        })
        .collect();
    for r in racers {
        r.join().unwrap().unwrap();
    }
    let store = db.store();
    assert!(store.get_function("default", "a").unwrap().is_some());
    assert_eq!(store.list_provisioned().unwrap()[0].requested, 2);
}

#[test]
fn postgres_idempotency_key_enqueues_once_within_the_window() {
    let db = TestDb::new();
    let store = db.store();
    let out = store
        .enqueue_events(
            &[
                event("r1", Some("k"), 100),
                event("r2", None, 100),
                event("r3", Some("k"), 100),
            ],
            0,
        )
        .unwrap();
    let dup_of_r1 = Enqueued::Duplicate {
        request_id: "r1".into(),
    };
    assert_eq!(out, [Enqueued::New, Enqueued::New, dup_of_r1.clone()]);
    let again = store
        .enqueue_events(&[event("r4", Some("k"), 200)], 50)
        .unwrap();
    assert_eq!(again, [dup_of_r1]);
    assert!(store.get_event("r3").unwrap().is_none());
    assert!(store.get_event("r4").unwrap().is_none());
    // A key stored before the window is replaced.
    let later = store
        .enqueue_events(&[event("r5", Some("k"), 300)], 150)
        .unwrap();
    assert_eq!(later, [Enqueued::New]);
    let depths = store.queue_depths().unwrap();
    assert_eq!(
        (depths[0].pending, depths[0].oldest_enqueued_ms),
        (3, Some(100))
    );
}

#[test]
fn postgres_claim_and_settle_roundtrip() {
    let db = TestDb::new();
    let store = db.store();
    store
        .enqueue_events(&[event("r1", None, 10), event("r2", None, 20)], 0)
        .unwrap();
    let claimed = store.claim_events("a", 30, 1_000, 10, &[]).unwrap();
    let ids: Vec<_> = claimed.iter().map(|c| c.request_id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    assert!(!claimed[0].lease_expired);
    assert!(store
        .claim_events("b", 40, 1_000, 10, &[])
        .unwrap()
        .is_empty());

    let attempt = Attempt {
        started_ms: 30,
        ended_ms: 35,
        outcome: "function_error".into(),
        error_type: Some("Unhandled".into()),
        error_message: Some("boom".into()),
    };
    let retry = Settle::Retry {
        next_at_ms: 2_000,
        function_error: true,
    };
    assert!(!store
        .settle_event("r1", "b", std::slice::from_ref(&attempt), &retry, 36)
        .unwrap());
    assert!(store
        .settle_event("r1", "a", std::slice::from_ref(&attempt), &retry, 36)
        .unwrap());
    let status = store.get_event("r1").unwrap().unwrap();
    assert_eq!(
        (status.state, status.function_attempts, status.next_at_ms),
        (EventState::Retrying, 1, 2_000)
    );
    assert_eq!(status.attempts, std::slice::from_ref(&attempt));

    // r2's lease runs out: another claimer gets it and is told so.
    let taken = store.claim_events("b", 1_001, 5_000, 10, &[]).unwrap();
    assert_eq!(taken.len(), 1);
    assert!(taken[0].lease_expired);
    assert!(!store
        .settle_event("r2", "a", &[], &Settle::Succeeded { response: None }, 1_002)
        .unwrap());
    let failed = Settle::Failed {
        dead_letter: true,
        response: Some(b"err".to_vec()),
    };
    assert!(store
        .settle_event("r2", "b", std::slice::from_ref(&attempt), &failed, 1_003)
        .unwrap());
    let dead = store.list_dead_letters("default", "f", None, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].response.as_deref(), Some(&b"err"[..]));
    assert_eq!(dead[0].attempts.len(), 1);

    assert_eq!(
        store
            .redrive_dead_letters("default", "f", None, 1_100)
            .unwrap(),
        1
    );
    let again = store.claim_events("c", 1_100, 9_000, 10, &[]).unwrap();
    assert_eq!((again.len(), again[0].function_attempts), (1, 0));
    assert!(store
        .settle_event(
            "r2",
            "c",
            std::slice::from_ref(&attempt),
            &Settle::Succeeded { response: None },
            1_200
        )
        .unwrap());
    let done = store.get_event("r2").unwrap().unwrap();
    assert_eq!(
        (done.state, done.dead_letter, done.attempts.len()),
        (EventState::Succeeded, false, 2)
    );
    assert_eq!(store.prune_events(1_201, 0, 0).unwrap(), 1);
    assert!(store.get_event("r2").unwrap().is_none());
}

#[test]
fn postgres_concurrent_claimers_never_share_an_event() {
    let db = TestDb::new();
    let store = db.store();
    let events: Vec<_> = (0..200)
        .map(|i| event(&format!("r{i:03}"), None, i))
        .collect();
    store.enqueue_events(&events, 0).unwrap();
    let store = std::sync::Arc::new(store);
    let claimers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|owner| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let got = store.claim_events(owner, 1_000, i64::MAX, 7, &[]).unwrap();
                    if got.is_empty() {
                        return mine;
                    }
                    mine.extend(got.into_iter().map(|c| c.request_id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in claimers {
        let mine = c.join().unwrap();
        total += mine.len();
        seen.extend(mine);
    }
    assert_eq!((total, seen.len()), (200, 200));
}

#[test]
fn postgres_concurrent_enqueues_take_each_key_once() {
    let db = TestDb::new();
    let store = std::sync::Arc::new(db.store());
    let servers: Vec<_> = (0..2)
        .map(|server| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut taken = Vec::new();
                for round in 0..20 {
                    // Opposite key orders in the two servers' batches.
                    let batch: Vec<_> = (0..10)
                        .map(|k| if server == 0 { k } else { 9 - k })
                        .map(|k| {
                            let id = format!("s{server}-{round}-{k}");
                            event(&id, Some(&format!("k{k}")), 100)
                        })
                        .collect();
                    let out = store.enqueue_events(&batch, 0).unwrap();
                    for (ev, result) in batch.iter().zip(out) {
                        if result == Enqueued::New {
                            taken.push(ev.idempotency_key.clone());
                        }
                    }
                }
                taken
            })
        })
        .collect();
    let mut keys = Vec::new();
    for s in servers {
        keys.extend(s.join().unwrap());
    }
    keys.sort();
    let expected: Vec<_> = (0..10).map(|k| Some(format!("k{k}"))).collect();
    assert_eq!(keys, expected);
    assert_eq!(store.queue_depths().unwrap()[0].pending, 10);
}

#[test]
fn postgres_store_reconnects_after_the_server_drops_a_connection() {
    let db = TestDb::new();
    let store = PostgresStore::connect(&db.url, 1).unwrap();
    let pid: i32 = store
        .client()
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let mut admin = super::parse_url(&server_url())
        .unwrap()
        .connect(postgres::NoTls)
        .unwrap();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    // The call that finds the connection dead may fail; the next one reconnects.
    let _ = store.get_meta("k");
    store.put_meta("k", "v").unwrap();
    assert_eq!(store.get_meta("k").unwrap().as_deref(), Some("v"));
}

#[test]
fn postgres_pool_checkout_gives_up_after_its_wait() {
    let db = TestDb::new();
    let config = super::parse_url(&db.url).unwrap();
    let first = super::Pool::open(&config).unwrap();
    let pool = super::Pool::new(config, first, 1, std::time::Duration::from_millis(100));
    let held = pool.get().unwrap();
    assert!(matches!(pool.get(), Err(StoreError::Database(_))));
    drop(held);
    assert!(pool.get().is_ok());
}

#[test]
fn postgres_store_opens_off_and_drops_on_an_async_runtime() {
    let db = TestDb::new();
    let url = db.url.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // As the server does: connect on the blocking pool, and let the last handle go on
    // the runtime at shutdown.
    runtime.block_on(async move {
        let store = tokio::task::spawn_blocking(move || {
            let store = PostgresStore::connect(&url, 2)?;
            store.put_meta("k", "v")?;
            Ok::<_, StoreError>(store)
        })
        .await
        .unwrap()
        .unwrap();
        drop(store);
    });
}
