//! Memory accounting by use, with the fake launcher: idle instances count what they
//! measure, a handed-out one counts its whole MemorySize again, and eviction (least
//! recently used first) is counted by reason.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_runtime::fake_launcher::{FakeLauncher, FakeStart};
use tern_runtime::PoolConfig;
use tern_sandbox::{CapacityAccount, LaunchError, LaunchSpec, Launched, Launcher};

mod fake;

use fake::{call, fixture, fixture_behind, function};

const MB: u64 = 1024 * 1024;

/// Instances that start in a millisecond, under `tweak`'s settings.
fn quick(tweak: impl FnOnce(PoolConfig) -> PoolConfig) -> fake::Fixture {
    fixture(|_| FakeStart::After(Duration::from_millis(1)), tweak)
}

/// One invoke of each of `names`, in order, each answered.
async fn call_each(fx: &fake::Fixture, names: &[&str]) {
    for name in names {
        let answer = call(fx.manager.clone(), function(name), "{}").await;
        assert_eq!(answer, Ok("{}".into()), "{name}");
    }
}

fn evicted(fx: &fake::Fixture, reason: &str) -> u64 {
    fx.manager
        .evictions()
        .into_iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| n)
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_instances_count_their_measured_use_so_more_stay_warm_than_their_memory_sizes() {
    let fx = quick(|c| PoolConfig {
        memory_budget_mb: 1024,
        ..c
    });
    fx.launcher.set_memory_in_use(4 * MB);
    // Forty 128 MB functions: by MemorySize, 8 would fit in 1024 MB.
    for i in 0..40 {
        let name = format!("f{i}");
        assert_eq!(
            call(fx.manager.clone(), function(&name), "{}").await,
            Ok("{}".into())
        );
    }
    assert_eq!(evicted(&fx, "room"), 0);
    for i in 0..40 {
        assert_eq!(
            fx.manager.idle_count("default", &format!("f{i}")),
            1,
            "f{i}"
        );
    }
    // Instances are measured when a start needs the room (and by the pool's sweep):
    // those since the last measurement still count their MemorySize.
    let counted = fx.manager.live_memory_mb();
    assert!(counted <= 1024, "{counted} MB counted");
    // Each is served warm next time.
    for i in 0..40 {
        let lease = fx
            .manager
            .acquire(&function(&format!("f{i}")))
            .await
            .expect("warm");
        assert!(!lease.cold, "f{i} started again");
        fx.manager.release(lease, true).await;
    }
    assert_eq!(fx.launcher.launches().len(), 40);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handed_out_instance_counts_its_memory_size_again_evicting_the_least_recently_used() {
    let fx = quick(|c| PoolConfig {
        memory_budget_mb: 350,
        ..c
    });
    fx.launcher.set_memory_in_use(100 * MB);
    call_each(&fx, &["a", "b", "c"]).await;
    // b and c went idle on an account more than half full and were measured at once;
    // a was measured to make room for c: 100 each.
    assert_eq!(fx.manager.live_memory_mb(), 300);
    assert_eq!(evicted(&fx, "room"), 0);

    // a, handed out, counts 128 again: measuring c (100) makes the room.
    let a = fx.manager.acquire(&function("a")).await.expect("a");
    assert!(!a.cold);
    assert_eq!(fx.manager.live_memory_mb(), 128 + 100 + 100);
    // b needs 28 more than it counts, and only evicting makes room: c, the least
    // recently used idle instance of another function, goes.
    let b = fx.manager.acquire(&function("b")).await.expect("b");
    assert!(!b.cold);
    assert_eq!(fx.manager.idle_count("default", "c"), 0);
    assert_eq!(evicted(&fx, "room"), 1);
    assert_eq!(fx.manager.live_memory_mb(), 256);
    fx.manager.release(a, true).await;
    fx.manager.release(b, true).await;
    assert_eq!(fx.launcher.launches(), ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hand_out_without_room_waits_and_the_refusal_names_the_memory_budget() {
    let fx = quick(|c| PoolConfig {
        memory_budget_mb: 250,
        queue_timeout: Duration::from_millis(100),
        ..c
    });
    fx.launcher.set_memory_in_use(100 * MB);
    call_each(&fx, &["a", "b"]).await;
    // Each went idle on an account more than half full, and was measured at once.
    assert_eq!(fx.manager.live_memory_mb(), 200);
    let a = fx.manager.acquire(&function("a")).await.expect("a");
    assert_eq!(fx.manager.live_memory_mb(), 228);
    // Handing b out too would need 256 MB, and no other instance is idle to evict.
    let refused = fx
        .manager
        .acquire(&function("b"))
        .await
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("memory budget full"),
        "{refused}"
    );
    assert_eq!(fx.manager.idle_count("default", "b"), 1, "b stays warm");
    // Once a is back (and measured), b is handed out warm.
    fx.manager.release(a, true).await;
    let b = fx.manager.acquire(&function("b")).await.expect("b");
    assert!(!b.cold);
    fx.manager.release(b, true).await;
}

/// The fake launcher with templates it will not stop (each in use, say): asked to stop
/// something built ahead to make room, it counts the request and stops nothing.
struct KeepsItsTemplates {
    fake: Arc<FakeLauncher>,
    asked_for_room: Arc<AtomicUsize>,
}

impl Launcher for KeepsItsTemplates {
    fn launch(&self, spec: &LaunchSpec) -> Result<Launched, LaunchError> {
        self.fake.launch(spec)
    }

    fn name(&self) -> &'static str {
        "fake"
    }

    fn set_capacity_account(&self, account: Arc<dyn CapacityAccount>) {
        self.fake.set_capacity_account(account);
    }

    fn drop_built_ahead(&self) -> bool {
        self.asked_for_room.fetch_add(1, Ordering::Relaxed);
        false
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_waiting_for_room_that_cannot_be_made_wait_without_waking_each_other() {
    const WAITERS: usize = 3;
    let asked = Arc::new(AtomicUsize::new(0));
    let fx = fixture_behind(
        |_| FakeStart::After(Duration::from_millis(1)),
        {
            let asked = asked.clone();
            move |fake| {
                Arc::new(KeepsItsTemplates {
                    fake,
                    asked_for_room: asked,
                })
            }
        },
        |c| PoolConfig {
            memory_budget_mb: 300,
            queue_timeout: Duration::from_secs(30),
            ..c
        },
    );
    fx.launcher.set_memory_in_use(4 * MB);
    call_each(&fx, &["a", "b"]).await;
    let a = fx.manager.acquire(&function("a")).await.expect("a");
    assert!(fx.launcher.build_template(128), "room for the template");
    // b went idle on an account more than half full, and counts what it uses.
    assert_eq!(fx.manager.live_memory_mb(), 128 + 4 + 128);
    // Handing b out needs 124 MB more and a start 128: each try to make room asks the
    // launcher, which keeps its template, and finds no other idle instance to evict.
    let waiters: Vec<_> = (0..WAITERS)
        .map(|_| tokio::spawn(call(fx.manager.clone(), function("b"), "{}")))
        .collect();
    // std's sleep: requests spinning would hold the runtime's workers, and its timers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while asked.load(Ordering::Relaxed) < WAITERS {
        assert!(
            Instant::now() < deadline,
            "the requests did not try for room"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    let tries = asked.load(Ordering::Relaxed);
    let b_idle = fx.manager.idle_count("default", "b");
    // Once a is gone, b is handed out to each in turn. (What was seen is asserted after:
    // a panic while requests spin would leave the test hanging on its workers.)
    fx.manager.release(a, false).await;
    for waiter in waiters {
        let answer = tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("served once a was gone")
            .expect("join");
        assert_eq!(answer, Ok("{}".into()));
    }
    // Nothing changed for them meanwhile: a try that failed woke nobody, and none tried
    // again (a wake-up had every waiter retry, fail and wake the others, forever).
    assert!(
        tries <= 10 * WAITERS,
        "{WAITERS} waiting requests tried to make room {tries} times"
    );
    assert_eq!(b_idle, 1, "b stayed idle");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_memory_pressure_stops_templates_and_evicts_idle_instances_counting_them() {
    let fx = quick(|c| PoolConfig {
        // Below any machine's available memory: always under pressure.
        host_memory_floor_mb: u64::MAX,
        keep_alive: Duration::from_secs(600),
        ..c
    });
    call_each(&fx, &["a", "b"]).await;
    assert!(fx.launcher.build_template(128), "a template");
    fx.manager.spawn_reaper();
    let deadline = Instant::now() + Duration::from_secs(5);
    while fx.manager.live() > 0 || fx.launcher.templates() > 0 {
        assert!(
            Instant::now() < deadline,
            "idle instances or the template were not stopped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(evicted(&fx, "host_memory"), 2);
    assert_eq!(evicted(&fx, "room"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_going_idle_on_a_half_full_account_count_what_they_use_at_once() {
    let fx = quick(|c| PoolConfig {
        memory_budget_mb: 256,
        ..c
    });
    fx.launcher.set_memory_in_use(10 * MB);
    // a goes idle on an account a quarter full: its MemorySize until the sweep.
    call_each(&fx, &["a"]).await;
    assert_eq!(fx.manager.live_memory_mb(), 128);
    // b goes idle on a full one (a's 128 and its own): measured at once.
    call_each(&fx, &["b"]).await;
    assert_eq!(fx.manager.live_memory_mb(), 128 + 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_ahead_are_paced_behind_requests() {
    let fx = quick(|c| PoolConfig {
        // Two start slots: builds ahead take at most one of them.
        max_concurrent_starts: 2,
        memory_budget_mb: 128,
        queue_timeout: Duration::from_secs(5),
        ..c
    });
    let first = fx
        .launcher
        .build_permit()
        .expect("a build on an idle server");
    assert!(
        fx.launcher.build_permit().is_none(),
        "a second build at once would take half the start slots and more"
    );
    drop(first);
    drop(fx.launcher.build_permit().expect("the turn was given back"));
    // While a request waits for room, nothing is built ahead.
    let a = fx.manager.acquire(&function("a")).await.expect("a");
    let waiting = {
        let manager = fx.manager.clone();
        tokio::spawn(async move { manager.acquire(&function("b")).await })
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while fx.launcher.build_permit().is_some() {
        assert!(
            Instant::now() < deadline,
            "builds went on while a request waited for room"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fx.manager.release(a, false).await;
    let b = waiting.await.expect("join").expect("b, once a is gone");
    fx.manager.release(b, true).await;
    assert!(
        fx.launcher.build_permit().is_some(),
        "builds resume once no request waits"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxes_built_ahead_count_in_the_account_and_go_first_to_make_room() {
    let fx = quick(|c| PoolConfig {
        max_instances: 3,
        ..c
    });
    // Room for three: the launcher may build all three ahead, and no more.
    assert_eq!(fx.launcher.build_ahead(5), 3);
    let counted = fx.manager.live_memory_mb();
    assert!(counted > 0, "built-ahead sandboxes count memory");
    // A cold start needs a slot: one built-ahead sandbox goes to make room.
    let a = fx.manager.acquire(&function("a")).await.expect("a");
    assert_eq!(fx.launcher.built_ahead(), 2);
    let b = fx.manager.acquire(&function("b")).await.expect("b");
    let c = fx.manager.acquire(&function("c")).await.expect("c");
    assert_eq!(fx.launcher.built_ahead(), 0);
    // Full of instances: nothing more is built ahead until one goes.
    assert_eq!(fx.launcher.build_ahead(1), 0);
    for lease in [a, b, c] {
        fx.manager.release(lease, false).await;
    }
    assert_eq!(fx.launcher.build_ahead(1), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioned_instances_keep_their_whole_size_reserved() {
    let fx = quick(|c| PoolConfig {
        memory_budget_mb: 300,
        queue_timeout: Duration::from_millis(100),
        ..c
    });
    fx.launcher.set_memory_in_use(4 * MB);
    let p = function("p");
    fx.manager.set_provisioned(&p, 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fx
        .manager
        .provisioned_state("default", "p", "$LATEST")
        .map(|s| s.available)
        != Some(1)
    {
        assert!(
            Instant::now() < deadline,
            "the provisioned instance did not start"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // One 128 MB start fits beside it. A second would only fit if the idle provisioned
    // instance counted what it uses (4 MB): it does not, its size is reserved.
    let a = fx.manager.acquire(&function("a")).await.expect("a");
    let refused = fx
        .manager
        .acquire(&function("b"))
        .await
        .err()
        .expect("refused");
    assert!(
        refused.to_string().contains("memory budget full"),
        "{refused}"
    );
    assert_eq!(fx.manager.live_memory_mb(), 256);
    // And it is handed out at once, whatever else runs.
    let lease = fx.manager.acquire(&p).await.expect("provisioned");
    assert!(lease.provisioned && !lease.cold);
    fx.manager.release(lease, true).await;
    fx.manager.release(a, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_counts_its_memory_size_and_is_stopped_before_idle_instances_to_make_room() {
    let fx = quick(|c| PoolConfig {
        memory_budget_mb: 400,
        ..c
    });
    fx.launcher.set_memory_in_use(4 * MB);
    call_each(&fx, &["idle"]).await;
    assert!(fx.launcher.build_template(256), "room for the template");
    assert!(
        !fx.launcher.build_template(256),
        "a second one does not fit"
    );
    let counted = fx.manager.live_memory_mb();
    assert!(counted >= 256, "the template is counted: {counted} MB");
    // A 256 MB start fits neither beside it nor once the idle instance counts what it
    // uses: the template goes, the idle instance stays.
    let big = tern_runtime::FunctionSpec {
        memory_mb: 256,
        ..function("new")
    };
    assert_eq!(call(fx.manager.clone(), big, "{}").await, Ok("{}".into()));
    assert_eq!(fx.launcher.templates(), 0);
    assert_eq!(fx.manager.idle_count("default", "idle"), 1);
    assert_eq!(evicted(&fx, "room"), 0);
}
