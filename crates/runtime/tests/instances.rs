//! The instance manager end to end with real runtimes, through the unsandboxed
//! `ProcessLauncher` (the sandboxed path is covered by the sandbox crate's tests).

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tern_runtime::{
    AcquireError, FunctionSpec, InstanceManager, InvokeInput, LogRouter, Outcome, PoolConfig,
    ProvisionedStatus, RuntimeCatalog, StartError,
};
use tern_sandbox::ProcessLauncher;

struct Fixture {
    _dir: tempfile::TempDir,
    manager: Arc<InstanceManager>,
    code: std::path::PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

fn fixture(files: &[(&str, &str)], keep_alive: Duration) -> Fixture {
    fixture_with(files, keep_alive, |c| c)
}

fn fixture_with(
    files: &[(&str, &str)],
    keep_alive: Duration,
    tweak: impl FnOnce(PoolConfig) -> PoolConfig,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).expect("code dir");
    for (name, text) in files {
        let path = code.join(name);
        std::fs::write(&path, text).expect("write code");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let boot = dir.path().join("bootstraps");
    tern_runtime::bootstraps::install(&boot).expect("install bootstraps");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let router: LogRouter =
        Arc::new(move |_ns, _f, line| sink.lock().expect("log sink").push(line.line));
    let config = tweak(PoolConfig {
        keep_alive,
        max_instances: 8,
        ..PoolConfig::new("us-east-1", boot)
    });
    let manager = InstanceManager::new(
        config,
        Arc::new(ProcessLauncher::new()),
        RuntimeCatalog::detect(),
        router,
    );
    Fixture {
        _dir: dir,
        manager,
        code,
        lines,
    }
}

fn spec(fx: &Fixture, runtime: &str, handler: &str) -> FunctionSpec {
    FunctionSpec {
        namespace: "default".into(),
        name: "f".into(),
        revision: 1,
        version: "$LATEST".into(),
        runtime: runtime.into(),
        handler: handler.into(),
        memory_mb: 128,
        tmp_mb: 512,
        env: vec![("GREETING".into(), "hi".into())],
        code_dir: fx.code.clone(),
        layer_dirs: vec![],
        snap_start: false,
        network: Default::default(),
    }
}

fn input(id: &str, payload: &str, timeout: Duration) -> InvokeInput {
    InvokeInput {
        request_id: id.into(),
        payload: Bytes::from(payload.to_string()),
        timeout,
        function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
        trace_id: "Root=1-0-0".into(),
        client_context: None,
    }
}

const PY_APP: &str = r#"
import os, time
calls = 0
def handler(event, context):
    global calls
    calls += 1
    print("hello from", context.aws_request_id)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("crash"):
        os._exit(3)
    if event.get("fail"):
        raise ValueError("boom")
    return {"calls": calls, "greeting": os.environ["GREETING"], "fn": context.function_name}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn python_instance_is_reused_warm_and_reports_errors() {
    let fx = fixture(&[("app.py", PY_APP)], Duration::from_secs(60));
    let f = spec(&fx, "python3.11", "app.handler");
    let lease = fx.manager.acquire(&f).await.expect("cold start");
    assert!(lease.cold);
    let (out, log) = lease
        .instance
        .invoke(input("r1", "{}", Duration::from_secs(5)))
        .await;
    let Outcome::Success(body) = out else {
        panic!("unexpected {out:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["calls"], 1);
    assert_eq!(v["greeting"], "hi");
    assert_eq!(v["fn"], "f");
    assert!(log.contains("hello from r1"), "{log}");
    fx.manager.release(lease, true).await;

    let lease = fx.manager.acquire(&f).await.unwrap();
    assert!(!lease.cold, "second invoke must reuse the warm instance");
    let (out, _) = lease
        .instance
        .invoke(input("r2", r#"{"fail":true}"#, Duration::from_secs(5)))
        .await;
    let Outcome::FunctionError { body, .. } = out else {
        panic!("unexpected {out:?}")
    };
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["errorType"], "ValueError");
    assert_eq!(v["errorMessage"], "boom");
    fx.manager.release(lease, true).await;
    assert!(fx
        .lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("hello from r2")));
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_and_crash_replace_the_instance() {
    let fx = fixture(&[("app.py", PY_APP)], Duration::from_secs(60));
    let f = spec(&fx, "python3.11", "app.handler");
    let lease = fx.manager.acquire(&f).await.unwrap();
    let (out, _) = lease
        .instance
        .invoke(input("t1", r#"{"sleep":5}"#, Duration::from_millis(300)))
        .await;
    assert!(matches!(out, Outcome::Timeout), "{out:?}");
    assert!(!out.instance_reusable());
    fx.manager.release(lease, false).await;

    let lease = fx.manager.acquire(&f).await.unwrap();
    assert!(lease.cold, "a timed-out instance is not reused");
    let (out, _) = lease
        .instance
        .invoke(input("c1", r#"{"crash":true}"#, Duration::from_secs(5)))
        .await;
    assert!(
        matches!(
            out,
            Outcome::Crashed {
                status: tern_sandbox::ExitStatus::Code(3),
                ..
            }
        ),
        "{out:?}"
    );
    fx.manager.release(lease, false).await;
    assert_eq!(fx.manager.live(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn init_errors_and_unknown_runtimes_are_reported() {
    let fx = fixture(&[("app.py", PY_APP)], Duration::from_secs(60));
    let missing = spec(&fx, "python3.11", "nope.handler");
    match fx.manager.acquire(&missing).await {
        Err(AcquireError::Start(StartError::Init(e, _, _))) => {
            assert_eq!(e.error_type, "Runtime.ImportModuleError");
        }
        other => panic!("unexpected {:?}", other.map(|l| l.cold)),
    }
    let unknown = spec(&fx, "cobol1.x", "app.handler");
    let err = fx
        .manager
        .acquire(&unknown)
        .await
        .err()
        .expect("unknown runtime");
    assert!(
        err.to_string().contains("python3.11"),
        "lists the available runtimes: {err}"
    );
    assert_eq!(fx.manager.live(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn provided_and_node_runtimes_run() {
    // A `provided` bootstrap is any executable speaking the Runtime API.
    let bootstrap = r#"#!/usr/bin/env python3
import http.client, os
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=b'"provided ok"')
    conn.getresponse().read()
"#;
    let node_app = "exports.handler = async (event) => ({ echo: event.x });\n";
    let fx = fixture(
        &[("bootstrap", bootstrap), ("index.js", node_app)],
        Duration::from_secs(60),
    );
    let lease = fx
        .manager
        .acquire(&spec(&fx, "provided.al2023", ""))
        .await
        .unwrap();
    let (out, _) = lease
        .instance
        .invoke(input("p1", "{}", Duration::from_secs(5)))
        .await;
    assert!(
        matches!(&out, Outcome::Success(b) if b.as_ref() == b"\"provided ok\""),
        "{out:?}"
    );
    fx.manager.release(lease, false).await;
    let node = spec(&fx, "nodejs20.x", "index.handler");
    let lease = fx.manager.acquire(&node).await.unwrap();
    let (out, _) = lease
        .instance
        .invoke(input("n1", r#"{"x":42}"#, Duration::from_secs(5)))
        .await;
    assert!(
        matches!(&out, Outcome::Success(b) if b.as_ref() == br#"{"echo":42}"#),
        "{out:?}"
    );
    fx.manager.release(lease, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_instances_scale_to_zero_after_keep_alive() {
    let fx = fixture(&[("app.py", PY_APP)], Duration::from_millis(200));
    let f = spec(&fx, "python3.11", "app.handler");
    let lease = fx.manager.acquire(&f).await.unwrap();
    fx.manager.release(lease, true).await;
    assert_eq!(fx.manager.idle_count("default", "f"), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    fx.manager.reap_idle().await;
    assert_eq!(fx.manager.idle_count("default", "f"), 0);
    assert_eq!(fx.manager.live(), 0);
}

fn named(fx: &Fixture, name: &str, memory_mb: u32) -> FunctionSpec {
    FunctionSpec {
        name: name.into(),
        memory_mb,
        ..spec(fx, "python3.11", "app.handler")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_budget_evicts_the_least_recently_used_idle_instance() {
    let fx = fixture_with(&[("app.py", PY_APP)], Duration::from_secs(60), |c| {
        PoolConfig {
            memory_budget_mb: 512,
            ..c
        }
    });
    let a = named(&fx, "a", 256);
    let b = named(&fx, "b", 256);
    let c = named(&fx, "c", 256);
    let la = fx.manager.acquire(&a).await.unwrap();
    fx.manager.release(la, true).await;
    let lb = fx.manager.acquire(&b).await.unwrap();
    fx.manager.release(lb, true).await;
    assert_eq!(fx.manager.live_memory_mb(), 512);
    // c does not fit: the idle instance of a (least recently used) makes room.
    let lc = fx.manager.acquire(&c).await.unwrap();
    assert_eq!(fx.manager.idle_count("default", "a"), 0);
    assert_eq!(fx.manager.idle_count("default", "b"), 1);
    assert_eq!(fx.manager.live_memory_mb(), 512);
    fx.manager.release(lc, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_disk_budget_evicts_idle_instances_then_refuses_with_the_disk_named() {
    let fx = fixture_with(&[("app.py", PY_APP)], Duration::from_secs(60), |c| {
        PoolConfig {
            tmp_disk_budget_mb: 1024,
            queue_timeout: Duration::from_millis(300),
            ..c
        }
    });
    let with_tmp = |name: &str, tmp_mb: u32| FunctionSpec {
        tmp_mb,
        ..named(&fx, name, 128)
    };
    let (a, b, c) = (with_tmp("a", 512), with_tmp("b", 768), with_tmp("c", 512));
    let la = fx.manager.acquire(&a).await.unwrap();
    fx.manager.release(la, true).await;
    assert_eq!(fx.manager.live_tmp_mb(), 512);
    // b does not fit beside a's idle instance, which makes room.
    let lb = fx.manager.acquire(&b).await.unwrap();
    assert_eq!(fx.manager.idle_count("default", "a"), 0);
    assert_eq!(fx.manager.live_tmp_mb(), 768);
    // With b busy, c does not fit and nothing can be evicted: refused, naming the disk.
    match fx.manager.acquire(&c).await {
        Err(AcquireError::AtCapacity(detail)) => {
            assert!(detail.contains("768 of 1024 MB of /tmp disk"), "{detail}")
        }
        Err(e) => panic!("expected AtCapacity, got {e}"),
        Ok(_) => panic!("c started past the /tmp disk budget"),
    }
    // A function that could never fit is told so at once.
    let huge = with_tmp("huge", 2048);
    match fx.manager.acquire(&huge).await {
        Err(e) => assert!(
            e.to_string()
                .contains("larger than this server's whole /tmp disk budget (1024 MB)"),
            "{e}"
        ),
        Ok(_) => panic!("a 2048 MB /tmp started within a 1024 MB budget"),
    }
    fx.manager.release(lb, true).await;
    assert_eq!(fx.manager.live_tmp_mb(), 768);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_larger_than_the_start_slots_is_started_in_turn_not_refused() {
    // 12 new functions at once, 2 start slots, and a queue timeout shorter than the
    // starts ahead of most of them take: the server has room, so every request waits
    // its turn for a slot and none gets a 429. (A start slot used to be passed from
    // waiter to waiter without a start until they all timed out.)
    let fx = fixture_with(&[("app.py", PY_APP)], Duration::from_secs(60), |c| {
        PoolConfig {
            max_concurrent_starts: 2,
            max_instances: 16,
            queue_timeout: Duration::from_millis(20),
            ..c
        }
    });
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let (mgr, f) = (fx.manager.clone(), named(&fx, &format!("burst-{i}"), 128));
            tokio::spawn(async move {
                let lease = mgr.acquire(&f).await;
                match lease {
                    Ok(lease) => {
                        mgr.release(lease, true).await;
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            })
        })
        .collect();
    let mut refused = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.expect("task") {
            refused.push(e);
        }
    }
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        refused
    );
    assert_eq!(fx.manager.live(), 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_names_the_limit_that_was_reached() {
    let fx = fixture_with(&[("app.py", PY_APP)], Duration::from_secs(60), |c| {
        PoolConfig {
            max_instances: 1,
            queue_timeout: Duration::from_millis(200),
            ..c
        }
    });
    let busy = fx.manager.acquire(&named(&fx, "a", 128)).await.unwrap();
    match fx.manager.acquire(&named(&fx, "b", 128)).await {
        Err(AcquireError::AtCapacity(detail)) => {
            assert!(
                detail.starts_with("instance limit reached: 1 of 1 instances"),
                "{detail}"
            )
        }
        Err(e) => panic!("expected AtCapacity, got {e}"),
        Ok(_) => panic!("started past max_instances"),
    }
    fx.manager.release(busy, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_server_refuses_after_the_queue_timeout_instead_of_hanging() {
    let fx = fixture_with(&[("app.py", PY_APP)], Duration::from_secs(60), |c| {
        PoolConfig {
            max_instances: 1,
            queue_timeout: Duration::from_millis(1000),
            ..c
        }
    });
    let a = named(&fx, "a", 128);
    let busy = fx.manager.acquire(&a).await.unwrap();
    let started = std::time::Instant::now();
    let refused = fx.manager.acquire(&named(&fx, "b", 128)).await;
    assert!(
        matches!(refused, Err(AcquireError::AtCapacity(_))),
        "{:?}",
        refused.err()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // A waiter for the same function gets the instance as soon as it is released.
    let mgr = fx.manager.clone();
    let waiter = tokio::spawn({
        let a = a.clone();
        async move { mgr.acquire(&a).await.map(|l| l.cold) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    fx.manager.release(busy, true).await;
    let cold = waiter
        .await
        .expect("waiter task")
        .unwrap_or_else(|e| panic!("the waiter gets the released instance: {e}"));
    assert!(!cold, "the waiter reuses the warm instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_instances_become_ready_and_serve_warm() {
    let fx = fixture(&[("app.py", PY_APP)], Duration::from_millis(200));
    let f = named(&fx, "p", 128);
    fx.manager.spawn_reaper();
    fx.manager.set_provisioned(&f, 2);
    let mut ready = false;
    for _ in 0..100 {
        let st = fx
            .manager
            .provisioned_state("default", "p", "$LATEST")
            .unwrap();
        if st.status == ProvisionedStatus::Ready {
            assert_eq!((st.allocated, st.available), (2, 2));
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "provisioned instances did not become READY");
    let lease = fx.manager.acquire(&f).await.unwrap();
    assert!(!lease.cold && lease.provisioned);
    fx.manager.release(lease, true).await;
    // Provisioned instances outlive the keep-alive.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(fx.manager.idle_count("default", "p"), 2);
    // Removing the setting lets them scale to zero.
    fx.manager.set_provisioned(&f, 0);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(fx.manager.idle_count("default", "p"), 0);
    assert_eq!(fx.manager.live(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_provisioned_instance_is_replaced() {
    let fx = fixture(&[("app.py", PY_APP)], Duration::from_secs(60));
    let f = named(&fx, "p", 128);
    fx.manager.spawn_reaper();
    fx.manager.set_provisioned(&f, 1);
    for _ in 0..100 {
        if fx
            .manager
            .provisioned_state("default", "p", "$LATEST")
            .unwrap()
            .status
            == ProvisionedStatus::Ready
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lease = fx.manager.acquire(&f).await.unwrap();
    assert!(lease.provisioned);
    fx.manager.release(lease, false).await;
    let mut replaced = false;
    for _ in 0..100 {
        let st = fx
            .manager
            .provisioned_state("default", "p", "$LATEST")
            .unwrap();
        if st.allocated == 1 && st.available == 1 {
            replaced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(replaced, "the provisioned instance was not replaced");
}

/// One invoke on a leased instance; returns the instance's id.
async fn invoke_once(mgr: &Arc<InstanceManager>, f: &FunctionSpec, payload: &str) -> String {
    let lease = mgr.acquire(f).await.expect("instance");
    let id = lease.instance.id.clone();
    let (out, _) = lease
        .instance
        .invoke(input("r", payload, Duration::from_secs(10)))
        .await;
    assert!(matches!(out, Outcome::Success(_)), "{out:?}");
    mgr.release(lease, true).await;
    id
}

/// A fixture whose machine always counts as CPU-saturated.
/// How many distinct instances served `clients` concurrent clients sending 8 requests
/// each, back to back.
async fn instances_serving(
    fx: &Fixture,
    f: &FunctionSpec,
    clients: usize,
) -> std::collections::HashSet<String> {
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (mgr, f) = (fx.manager.clone(), f.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..8 {
                    ids.push(invoke_once(&mgr, &f, "{}").await);
                }
                ids
            })
        })
        .collect();
    let mut distinct = std::collections::HashSet::new();
    for t in tasks {
        distinct.extend(t.await.expect("client"));
    }
    distinct
}

fn saturated_fixture() -> Fixture {
    fixture_with(&[("app.py", PY_APP)], Duration::from_secs(60), |c| {
        PoolConfig {
            saturated_cpu_percent: 0,
            ..c
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_saturated_machine_short_requests_wait_for_a_busy_instance() {
    let fx = saturated_fixture();
    // A full CPU each (1769 MB): once there are as many instances as CPUs, another adds
    // nothing on a saturated machine. (With a quarter of a CPU each, four times as many
    // would still add throughput: they are held back by their quota, not the machine.)
    // Two more are allowed: under a loaded test run a stalled turnover scales out.
    let f = FunctionSpec {
        memory_mb: 1769,
        ..spec(&fx, "python3.11", "app.handler")
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // One cold start and a few warm requests teach the manager both lengths.
    for _ in 0..3 {
        invoke_once(&fx.manager, &f, "{}").await;
    }
    let distinct = instances_serving(&fx, &f, 16).await;
    assert!(
        distinct.len() <= cores + 2,
        "128 requests from 16 concurrent clients took {} instances on {cores} CPUs; short \
         requests on a saturated machine should share the busy ones",
        distinct.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_held_instances_scale_out_until_their_shares_fill_the_machine() {
    let fx = saturated_fixture();
    // 128 MB: a quarter of a CPU each, so on a saturated machine four per CPU still add
    // throughput, and no more than that start.
    let f = spec(&fx, "python3.11", "app.handler");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..3 {
        invoke_once(&fx.manager, &f, "{}").await;
    }
    let distinct = instances_serving(&fx, &f, 4 * cores + 8).await;
    assert!(
        distinct.len() > cores && distinct.len() <= 4 * cores,
        "{} instances for quarter-CPU functions on {cores} CPUs",
        distinct.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_longer_than_a_cold_start_get_an_instance_each_even_when_saturated() {
    let fx = saturated_fixture();
    let f = spec(&fx, "python3.11", "app.handler");
    let slow = r#"{"sleep":0.4}"#;
    invoke_once(&fx.manager, &f, slow).await;
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (mgr, f) = (fx.manager.clone(), f.clone());
            tokio::spawn(async move { invoke_once(&mgr, &f, slow).await })
        })
        .collect();
    let mut ids = Vec::new();
    for c in clients {
        ids.push(c.await.expect("client"));
    }
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 3, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_behind_a_hung_instance_gets_a_new_one() {
    let fx = saturated_fixture();
    let f = spec(&fx, "python3.11", "app.handler");
    for _ in 0..5 {
        invoke_once(&fx.manager, &f, "{}").await;
    }
    // The only instance hangs in a long request; nothing turns over.
    let hung = tokio::spawn({
        let (mgr, f) = (fx.manager.clone(), f.clone());
        async move { invoke_once(&mgr, &f, r#"{"sleep":2}"#).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let quick = invoke_once(&fx.manager, &f, "{}").await;
    assert!(
        !hung.is_finished(),
        "the quick request got a new instance while the other still runs"
    );
    let hung = hung.await.expect("hung request");
    assert_ne!(quick, hung, "served by another instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_for_a_busy_instance_never_outlasts_the_queue_timeout() {
    let fx = fixture_with(&[("app.py", PY_APP)], Duration::from_secs(60), |c| {
        PoolConfig {
            saturated_cpu_percent: 0,
            queue_timeout: Duration::from_millis(40),
            ..c
        }
    });
    let f = spec(&fx, "python3.11", "app.handler");
    let first = fx.manager.acquire(&f).await.expect("first instance");
    fx.manager.release(first, true).await;
    // Six clients take turns on it, 10 ms each: it keeps turning over, but a request at
    // the back of the line would wait ~60 ms, longer than the queue timeout, and
    // patience on a saturated machine would last up to four cold starts. (Six, so that
    // when they time out too and start instances, the server still has room.)
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (mgr, f, stop) = (fx.manager.clone(), f.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(lease) = mgr.acquire(&f).await {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        mgr.release(lease, true).await;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // At the timeout the request starts an instance instead of being refused while the
    // server has room.
    let got = fx.manager.acquire(&f).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    let lease = got.unwrap_or_else(|e| panic!("refused although the server had room: {e}"));
    fx.manager.release(lease, true).await;
}
