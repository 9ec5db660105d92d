//! The fixture of the tests that drive the instance manager with the fake launcher.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tern_runtime::fake_launcher::{FakeLauncher, FakeStart};
use tern_runtime::{
    FunctionSpec, InstanceManager, InvokeInput, LogRouter, Outcome, PoolConfig, RuntimeCatalog,
};
use tern_sandbox::Launcher;

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub manager: Arc<InstanceManager>,
    pub launcher: Arc<FakeLauncher>,
}

pub fn fixture(
    plan: impl Fn(&str) -> FakeStart + Send + Sync + 'static,
    tweak: impl FnOnce(PoolConfig) -> PoolConfig,
) -> Fixture {
    fixture_behind(plan, |fake| fake, tweak)
}

/// As [`fixture`], with the manager launching through what `front` puts before the fake
/// launcher (the fixture still hands the test the fake launcher itself).
pub fn fixture_behind(
    plan: impl Fn(&str) -> FakeStart + Send + Sync + 'static,
    front: impl FnOnce(Arc<FakeLauncher>) -> Arc<dyn Launcher>,
    tweak: impl FnOnce(PoolConfig) -> PoolConfig,
) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let launcher = FakeLauncher::new(plan);
    let router: LogRouter = Arc::new(|_, _, _| {});
    let config = tweak(PoolConfig {
        max_concurrent_starts: 2,
        max_instances: 64,
        queue_timeout: Duration::from_millis(10),
        init_timeout: Duration::from_secs(2),
        ..PoolConfig::new("us-east-1", dir.path().join("bootstraps"))
    });
    let manager = InstanceManager::new(
        config,
        front(launcher.clone()),
        RuntimeCatalog::detect(),
        router,
    );
    Fixture {
        _dir: dir,
        manager,
        launcher,
    }
}

pub fn function(name: &str) -> FunctionSpec {
    FunctionSpec {
        namespace: "default".into(),
        name: name.into(),
        revision: 1,
        version: "$LATEST".into(),
        // A `provided` runtime needs no interpreter on this machine.
        runtime: "provided.al2023".into(),
        handler: String::new(),
        memory_mb: 128,
        tmp_mb: 512,
        env: Vec::new(),
        code_dir: PathBuf::from("/nonexistent"),
        layer_dirs: Vec::new(),
        snap_start: false,
        network: Default::default(),
    }
}

/// Acquires an instance of `f`, runs `payload` on it and gives it back; the answer or
/// the refusal.
pub async fn call(
    manager: Arc<InstanceManager>,
    f: FunctionSpec,
    payload: &str,
) -> Result<String, String> {
    let lease = manager.acquire(&f).await.map_err(|e| e.to_string())?;
    let (outcome, _) = lease
        .instance
        .invoke(InvokeInput {
            request_id: uuid(),
            payload: Bytes::from(payload.to_string()),
            timeout: Duration::from_secs(5),
            function_arn: String::new(),
            trace_id: String::new(),
            client_context: None,
        })
        .await;
    manager.release(lease, true).await;
    match outcome {
        Outcome::Success(body) => Ok(String::from_utf8_lossy(&body).into_owned()),
        _ => Err("the invocation failed".to_string()),
    }
}

pub fn uuid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("req-{}", N.fetch_add(1, Ordering::Relaxed))
}
