//! The shared execution step with real runtimes (unsandboxed `ProcessLauncher`): a run
//! whose caller goes away mid-run gives its instance's room back.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tern_core::function::FunctionRecord;
use tern_invoke::{Admission, ExecutionRequest, Executor};
use tern_runtime::{FunctionSpec, InstanceManager, LogRouter, PoolConfig, RuntimeCatalog};
use tern_sandbox::ProcessLauncher;
use tern_store::{SqliteStore, StoreHandle};
use tern_telemetry::{LogSink, Metrics};

const APP: &str = "import time\n\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return {'slept': event.get('sleep', 0)}\n";

fn record() -> FunctionRecord {
    serde_json::from_value(serde_json::json!({
        "namespace": "default", "name": "sleepy", "runtime": "python3.11",
        "handler": "app.handler", "role": "", "description": "", "memory_mb": 128,
        "timeout_s": 10, "tmp_mb": 512, "env": {}, "architectures": ["x86_64"],
        "tags": {}, "code": {"sha256_hex": "x", "sha256_b64": "x", "size": 1, "unzipped_size": 1},
        "layers": [], "logging": {"format": "Text"}, "tracing_mode": "PassThrough",
        "revision_id": "r1", "revision": 1, "last_modified_ms": 0
    }))
    .expect("record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_caller_goes_away_gives_its_instance_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let code = dir.path().join("code");
    std::fs::create_dir_all(&code).expect("code dir");
    std::fs::write(code.join("app.py"), APP).expect("app");
    let boot = dir.path().join("bootstraps");
    tern_runtime::bootstraps::install(&boot).expect("bootstraps");
    let router: LogRouter = Arc::new(|_, _, _| {});
    // Room for one instance, and a short wait for room: a leaked instance would leave
    // the next run throttled.
    let manager = InstanceManager::new(
        PoolConfig {
            max_instances: 1,
            queue_timeout: Duration::from_secs(2),
            ..PoolConfig::new("us-east-1", boot)
        },
        Arc::new(ProcessLauncher::new()),
        RuntimeCatalog::detect(),
        router,
    );
    let store = StoreHandle::new(
        Arc::new(SqliteStore::open(&dir.path().join("db")).expect("store")),
        1,
    )
    .expect("store handle");
    let code_dir = code.clone();
    let executor = Arc::new(Executor::new(
        Admission::new(10, 0),
        manager.clone(),
        LogSink::start(store, 3_600_000),
        Arc::new(Metrics::new()),
        move |rec: &FunctionRecord| FunctionSpec {
            namespace: rec.namespace.clone(),
            name: rec.name.clone(),
            revision: rec.revision,
            version: "$LATEST".into(),
            runtime: rec.runtime.clone(),
            handler: rec.handler.clone(),
            memory_mb: rec.memory_mb,
            tmp_mb: rec.tmp_mb,
            env: vec![],
            code_dir: code_dir.clone(),
            layer_dirs: vec![],
            snap_start: false,
            network: Default::default(),
        },
    ));
    let rec = Arc::new(record());
    let request = |sleep: f64| ExecutionRequest {
        rec: rec.clone(),
        invoked_arn: "arn:aws:lambda:us-east-1:000000000000:function:sleepy".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        payload: Bytes::from(format!("{{\"sleep\": {sleep}}}")),
        client_context: None,
    };
    let warm = executor.execute(request(0.0)).await.expect("first run");
    assert!(!warm.failed(), "{:?}", warm.payload);

    // The caller gives up while the function sleeps on the one instance.
    let abandoned =
        tokio::time::timeout(Duration::from_millis(300), executor.execute(request(1.0)));
    assert!(abandoned.await.is_err(), "the run should still be going");

    // Its instance, mid-request, is stopped rather than reused; its room comes back.
    let next = executor
        .execute(request(0.0))
        .await
        .expect("room for an instance again");
    assert!(!next.failed(), "{:?}", next.payload);
    assert_eq!(manager.live(), 1);
}
