//! Concurrency semantics end to end: reserved and account concurrency (429 with the
//! right Reason and Retry-After), provisioned instances, scale to zero, and a burst.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{zip, Server};

const APP: &str = r#"
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return "ok"
"#;

fn app_zip() -> Vec<u8> {
    zip(&[("app.py", APP.as_bytes(), 0o644)])
}

fn put_reserved(server: &Server, name: &str, n: i64) -> support::Response {
    server.request(
        "PUT",
        &format!("/2017-10-31/functions/{name}/concurrency"),
        &[],
        json!({"ReservedConcurrentExecutions": n})
            .to_string()
            .as_bytes(),
    )
}

fn invoke_raw(server: &Server, name: &str, payload: &str) -> support::Response {
    server.request(
        "POST",
        &format!("/2015-03-31/functions/{name}/invocations"),
        &[("x-amz-log-type", "Tail")],
        payload.as_bytes(),
    )
}

fn assert_throttled(resp: &support::Response, reason: &str) {
    assert_eq!(resp.status, 429, "{}", resp.text());
    assert_eq!(resp.error_type(), Some("TooManyRequestsException"));
    assert_eq!(resp.json()["Reason"], reason, "{}", resp.text());
    assert!(resp.header("retry-after").is_some(), "Retry-After is set");
}

/// The `tern_instances` gauge from /metrics.
fn live_instances(server: &Server) -> i64 {
    let text = server.raw_request("GET", "/metrics", &[], b"").text();
    text.lines()
        .find_map(|l| l.strip_prefix("tern_instances ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tern_instances in metrics:\n{text}"))
}

#[test]
fn reserved_concurrency_zero_blocks_and_n_caps_at_n() {
    let server = Server::start();
    server.create_function(
        "capped",
        "python3.11",
        "app.handler",
        &app_zip(),
        json!({"Timeout": 10}),
    );

    let resp = put_reserved(&server, "capped", 0);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["ReservedConcurrentExecutions"], 0);
    assert_throttled(
        &invoke_raw(&server, "capped", "{}"),
        "ReservedFunctionConcurrentInvocationLimitExceeded",
    );

    assert_eq!(put_reserved(&server, "capped", 1).status, 200);
    let get = server.request("GET", "/2019-09-30/functions/capped/concurrency", &[], b"");
    assert_eq!(get.json()["ReservedConcurrentExecutions"], 1);
    let f = server
        .request("GET", "/2015-03-31/functions/capped", &[], b"")
        .json();
    assert_eq!(f["Concurrency"]["ReservedConcurrentExecutions"], 1);

    std::thread::scope(|s| {
        let slow = s.spawn(|| invoke_raw(&server, "capped", r#"{"sleep": 2}"#));
        // Wait until the slow request holds the only slot.
        std::thread::sleep(Duration::from_millis(700));
        assert_throttled(
            &invoke_raw(&server, "capped", "{}"),
            "ReservedFunctionConcurrentInvocationLimitExceeded",
        );
        assert_eq!(slow.join().expect("slow invoke").status, 200);
    });
    assert_eq!(
        invoke_raw(&server, "capped", "{}").status,
        200,
        "the slot is free again"
    );

    let del = server.request(
        "DELETE",
        "/2017-10-31/functions/capped/concurrency",
        &[],
        b"",
    );
    assert_eq!(del.status, 204);
    let get = server.request("GET", "/2019-09-30/functions/capped/concurrency", &[], b"");
    assert_eq!(get.json(), json!({}));
}

#[test]
fn account_limit_holds_across_functions_and_settings_report_it() {
    let server = Server::start_with(&[
        "--account-concurrency",
        "3",
        "--min-unreserved-concurrency",
        "1",
    ]);
    for name in ["a", "b", "r"] {
        server.create_function(
            name,
            "python3.11",
            "app.handler",
            &app_zip(),
            json!({"Timeout": 10}),
        );
    }
    let too_much = put_reserved(&server, "r", 3);
    assert_eq!(too_much.status, 400, "{}", too_much.text());
    assert!(
        too_much.text().contains("UnreservedConcurrentExecution"),
        "{}",
        too_much.text()
    );
    assert_eq!(put_reserved(&server, "r", 1).status, 200);

    let settings = server
        .request("GET", "/2016-08-19/account-settings/", &[], b"")
        .json();
    assert_eq!(settings["AccountLimit"]["ConcurrentExecutions"], 3);
    assert_eq!(
        settings["AccountLimit"]["UnreservedConcurrentExecutions"],
        2
    );

    std::thread::scope(|s| {
        let a = s.spawn(|| invoke_raw(&server, "a", r#"{"sleep": 2}"#));
        let b = s.spawn(|| invoke_raw(&server, "b", r#"{"sleep": 2}"#));
        std::thread::sleep(Duration::from_millis(900));
        // The unreserved pool (3 - 1) is in use by a and b; r keeps its own slot.
        assert_throttled(
            &invoke_raw(&server, "a", "{}"),
            "ConcurrentInvocationLimitExceeded",
        );
        assert_eq!(invoke_raw(&server, "r", "{}").status, 200);
        assert_eq!(a.join().expect("a").status, 200);
        assert_eq!(b.join().expect("b").status, 200);
    });
}

#[test]
fn provisioned_instances_are_ready_and_serve_without_init_duration() {
    let server = Server::start();
    server.create_function("prov", "python3.11", "app.handler", &app_zip(), json!({}));
    let put = server.request(
        "PUT",
        "/2019-09-30/functions/prov/provisioned-concurrency?Qualifier=%24LATEST",
        &[],
        br#"{"ProvisionedConcurrentExecutions": 2}"#,
    );
    assert_eq!(put.status, 202, "{}", put.text());
    assert_eq!(put.json()["RequestedProvisionedConcurrentExecutions"], 2);

    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let get = server
            .request(
                "GET",
                "/2019-09-30/functions/prov/provisioned-concurrency?Qualifier=%24LATEST",
                &[],
                b"",
            )
            .json();
        if get["Status"] == "READY" {
            break get;
        }
        assert_ne!(get["Status"], "FAILED", "{get}");
        assert!(Instant::now() < deadline, "not READY in time: {get}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ready["AllocatedProvisionedConcurrentExecutions"], 2);
    assert_eq!(ready["AvailableProvisionedConcurrentExecutions"], 2);

    let out = server.invoke("prov", "{}");
    assert_eq!(out.body, json!("ok"));
    assert!(!out.log.contains("Init Duration"), "{}", out.log);

    let list = server
        .request(
            "GET",
            "/2019-09-30/functions/prov/provisioned-concurrency?List=ALL",
            &[],
            b"",
        )
        .json();
    assert_eq!(
        list["ProvisionedConcurrencyConfigs"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let del = server.request(
        "DELETE",
        "/2019-09-30/functions/prov/provisioned-concurrency?Qualifier=%24LATEST",
        &[],
        b"",
    );
    assert_eq!(del.status, 204);
    let gone = server.request(
        "GET",
        "/2019-09-30/functions/prov/provisioned-concurrency?Qualifier=%24LATEST",
        &[],
        b"",
    );
    assert_eq!(gone.status, 404);
    assert_eq!(
        gone.error_type(),
        Some("ProvisionedConcurrencyConfigNotFoundException")
    );
}

#[test]
fn idle_instances_scale_to_zero_after_the_keep_alive() {
    let server = Server::start_with(&["--keep-alive", "1"]);
    server.create_function("brief", "python3.11", "app.handler", &app_zip(), json!({}));
    assert_eq!(server.invoke("brief", "{}").body, json!("ok"));
    assert!(live_instances(&server) >= 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    while live_instances(&server) > 0 {
        assert!(Instant::now() < deadline, "instances did not scale to zero");
        std::thread::sleep(Duration::from_millis(200));
    }
    // And a new request cold-starts again.
    assert!(server.invoke("brief", "{}").log.contains("Init Duration"));
}

/// 200 concurrent invokes of a cold function: each succeeds or gets a clean 429, other
/// functions keep answering, and the extra instances go away after the keep-alive.
#[test]
fn burst_of_200_cold_invokes_succeeds_or_throttles_cleanly() {
    let server = Server::start_with(&["--keep-alive", "2"]);
    server.create_function("burst", "python3.11", "app.handler", &app_zip(), json!({}));
    server.create_function("other", "python3.11", "app.handler", &app_zip(), json!({}));
    assert_eq!(server.invoke("other", "{}").body, json!("ok"));

    let started = Instant::now();
    let (statuses, other_latencies) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..200)
            .map(|_| s.spawn(|| invoke_raw(&server, "burst", r#"{"sleep": 0.05}"#)))
            .collect();
        // Meanwhile the warm function keeps answering.
        let mut other = Vec::new();
        for _ in 0..10 {
            let t = Instant::now();
            let resp = invoke_raw(&server, "other", "{}");
            assert_eq!(resp.status, 200, "{}", resp.text());
            other.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(100));
        }
        let statuses: Vec<(u16, Option<String>, String)> = workers
            .into_iter()
            .map(|w| {
                let r = w.join().expect("worker");
                (
                    r.status,
                    r.header("x-amz-function-error").map(str::to_string),
                    r.text(),
                )
            })
            .collect();
        (statuses, other)
    });
    let ok = statuses
        .iter()
        .filter(|(s, fe, _)| *s == 200 && fe.is_none())
        .count();
    let throttled = statuses.iter().filter(|(s, _, _)| *s == 429).count();
    for (status, fe, body) in &statuses {
        assert!(
            (*status == 200 && fe.is_none()) || *status == 429,
            "unexpected outcome {status} {fe:?}: {body}"
        );
    }
    eprintln!(
        "burst: {ok} ok, {throttled} throttled in {:?}; other function max latency {:?}",
        started.elapsed(),
        other_latencies.iter().max()
    );
    assert!(ok > 0, "some requests must succeed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while live_instances(&server) > 0 {
        assert!(
            Instant::now() < deadline,
            "burst instances did not scale to zero"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A metric's value from `/metrics` (summed over its label sets).
fn metric(server: &Server, name: &str) -> f64 {
    server
        .request("GET", "/metrics", &[], b"")
        .text()
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Idle instances count what their memory cgroups measure, not their MemorySize: twelve
/// 128 MB functions stay warm together on a server whose memory budget holds four
/// MemorySizes, and each is served warm on its next invoke.
#[test]
fn idle_instances_count_their_measured_memory_so_more_stay_warm_than_the_budget_holds_by_size() {
    assert!(
        support::sandboxed(),
        "needs root: only sandboxed instances have a memory cgroup to measure"
    );
    let server = Server::start_with(&["--memory-budget-mb", "512"]);
    let names: Vec<String> = (0..12).map(|i| format!("small{i}")).collect();
    for name in &names {
        server.create_function(name, "python3.11", "app.handler", &app_zip(), json!({}));
    }
    for name in &names {
        assert!(
            server.invoke(name, "{}").log.contains("Init Duration"),
            "{name}"
        );
    }
    for name in &names {
        let second = server.invoke(name, "{}");
        assert_eq!(second.body, json!("ok"));
        assert!(
            !second.log.contains("Init Duration"),
            "{name} was started again: {}",
            second.log
        );
    }
    assert_eq!(metric(&server, "tern_instance_evictions_total"), 0.0);
    let counted = metric(&server, "tern_instance_memory_counted_bytes");
    assert!(
        counted > 0.0 && counted <= 512.0 * 1048576.0,
        "{counted} bytes counted"
    );
}

/// A restarted server builds the start-up of its stored functions ahead (zygotes,
/// sandboxes, runtimes started ahead): the first invoke after the restart takes a
/// runtime started before it instead of starting one on the request path.
#[test]
fn a_restarted_server_prepares_the_start_up_of_its_stored_functions() {
    // How long the runtime had been running when the invoke reached it, in seconds.
    const AGE: &str = "import os, time\n\
        def handler(event, context):\n    \
        ticks = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19])\n    \
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf('SC_CLK_TCK')\n";
    let server = Server::start();
    let code = zip(&[("app.py", AGE.as_bytes(), 0o644)]);
    server.create_function("stored", "python3.11", "app.handler", &code, json!({}));
    let server = server.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&server, "tern_prewarmed_instances") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "nothing was prepared after the restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let age = server.invoke("stored", "{}").body;
    let age = age.as_f64().expect("the runtime's age");
    assert!(
        age >= 0.4,
        "the runtime started {age:.3} s before the invoke: not ahead of it"
    );
}
