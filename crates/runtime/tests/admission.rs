//! Admission of cold starts with the fake launcher: bursts larger than the start slots,
//! slow and failing starts, mixed functions. No root, no sandbox, no interpreter: each
//! instance is a thread speaking the Runtime API, so the timings are the test's own.

use std::time::Duration;

use tern_runtime::fake_launcher::FakeStart;
use tern_runtime::{AcquireError, PoolConfig};

mod fake;

use fake::{call, fixture, function};

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_larger_than_the_slots_starts_every_function_in_arrival_order() {
    let fx = fixture(|_| FakeStart::After(Duration::from_millis(30)), |c| c);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (mgr, f) = (fx.manager.clone(), function(&format!("f{i:02}")));
        tasks.push(tokio::spawn(call(mgr, f, "{}")));
        // One millisecond apart, so that arrival order is defined.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), Ok("{}".to_string()));
    }
    // Slots are granted in arrival order; two starts granted together (two slots) may
    // reach the launcher in either order, so a function may swap with its neighbour
    // but never overtake further.
    let launches = fx.launcher.launches();
    assert_eq!(launches.len(), 12, "{launches:?}");
    for (position, name) in launches.iter().enumerate() {
        let arrived: usize = name[1..].parse().expect("index");
        assert!(
            position.abs_diff(arrived) <= 1,
            "{name} arrived {arrived}th but started {position}th: {launches:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_starts_give_their_slot_back_and_the_rest_start() {
    let fx = fixture(
        |name| {
            if name.starts_with("bad") {
                FakeStart::Fail
            } else {
                FakeStart::After(Duration::from_millis(20))
            }
        },
        |c| PoolConfig {
            init_timeout: Duration::from_millis(300),
            ..c
        },
    );
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let name = if i % 2 == 0 {
                format!("bad{i}")
            } else {
                format!("ok{i}")
            };
            tokio::spawn(call(fx.manager.clone(), function(&name), "{}"))
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.expect("task");
        if i % 2 == 0 {
            let e = got.expect_err("a failing start is an error");
            assert!(e.contains("the fake launcher fails"), "{e}");
        } else {
            assert_eq!(got, Ok("{}".to_string()));
        }
    }
    // No slot was kept by a failed start: two more start at once, well within the
    // 300 ms a request waits for a slot past its queue timeout.
    let more: Vec<_> = ["late1", "late2"]
        .into_iter()
        .map(|n| tokio::spawn(call(fx.manager.clone(), function(n), "{}")))
        .collect();
    for t in more {
        assert_eq!(t.await.expect("task"), Ok("{}".to_string()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_start_holds_one_slot_and_the_others_keep_starting() {
    let fx = fixture(
        |name| {
            if name == "slow" {
                FakeStart::After(Duration::from_millis(800))
            } else {
                FakeStart::After(Duration::from_millis(10))
            }
        },
        |c| c,
    );
    let slow = tokio::spawn(call(fx.manager.clone(), function("slow"), "{}"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let quick: Vec<_> = (0..8)
        .map(|i| tokio::spawn(call(fx.manager.clone(), function(&format!("q{i}")), "{}")))
        .collect();
    for t in quick {
        assert_eq!(t.await.expect("task"), Ok("{}".to_string()));
    }
    assert!(
        !slow.is_finished(),
        "the quick ones did not wait for the slow start"
    );
    assert_eq!(slow.await.expect("task"), Ok("{}".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_function_and_new_functions_at_once_all_succeed() {
    let fx = fixture(|_| FakeStart::After(Duration::from_millis(15)), |c| c);
    let mut tasks = Vec::new();
    for i in 0..10 {
        tasks.push(tokio::spawn(call(
            fx.manager.clone(),
            function("busy"),
            r#"{"sleep_ms": 50}"#,
        )));
        tasks.push(tokio::spawn(call(
            fx.manager.clone(),
            function(&format!("new{i}")),
            "{}",
        )));
    }
    let mut refused = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.expect("task") {
            refused.push(e);
        }
    }
    assert!(refused.is_empty(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_instance_limit_the_refusal_says_so() {
    let fx = fixture(
        |_| FakeStart::After(Duration::from_millis(5)),
        |c| PoolConfig {
            max_instances: 2,
            queue_timeout: Duration::from_millis(100),
            ..c
        },
    );
    let a = fx.manager.acquire(&function("a")).await.expect("a");
    let b = fx.manager.acquire(&function("b")).await.expect("b");
    match fx.manager.acquire(&function("c")).await {
        Err(AcquireError::AtCapacity(d)) => {
            assert!(
                d.starts_with("instance limit reached: 2 of 2 instances"),
                "{d}"
            )
        }
        Err(e) => panic!("expected AtCapacity, got {e}"),
        Ok(_) => panic!("started past the instance limit"),
    }
    fx.manager.release(a, true).await;
    fx.manager.release(b, true).await;
}
