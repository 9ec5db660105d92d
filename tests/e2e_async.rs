//! Asynchronous invocation end to end: an accepted event is never lost when the server
//! is killed with SIGKILL mid-run (on SQLite and on PostgreSQL), two servers share one
//! PostgreSQL queue without running an event twice while its lease holds, and a full
//! queue answers 429.
//!
//! The crash tests run functions unsandboxed (`--dev-unsandboxed`): their handler reports
//! each request id over loopback to a receiver in this test, which a sandboxed function
//! (loopback only inside its own network namespace) cannot reach. What they test, the
//! queue's durability, does not depend on the sandbox.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Client, Database, Server};

/// Events each crash test enqueues.
const EVENTS: usize = 5_000;
const ENQUEUERS: usize = 8;

/// Reports its request id to the receiver, then answers it.
const REPORTER: &str = r#"
import os, socket

def handler(event, context):
    with socket.create_connection(("127.0.0.1", int(os.environ["RECEIVER_PORT"])), timeout=10) as s:
        s.sendall((context.aws_request_id + "\n").encode())
    return {"rid": context.aws_request_id}
"#;

/// Counts request ids reported by functions.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<HashMap<String, u32>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let counts = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(conn).lines().map_while(Result::ok) {
                        let mut c = counts.lock().expect("lock");
                        *c.entry(line.trim().to_string()).or_default() += 1;
                    }
                });
            }
        });
        Receiver { port, seen }
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    fn snapshot(&self) -> HashMap<String, u32> {
        self.seen.lock().expect("lock").clone()
    }
}

/// A config file for the tests' servers.
fn config(dir: &tempfile::TempDir, async_settings: &str) -> String {
    let path = dir.path().join("tern.toml");
    std::fs::write(&path, format!("[async]\n{async_settings}\n")).expect("config");
    path.display().to_string()
}

fn deploy_reporter(server: &Server, name: &str, receiver: &Receiver) {
    let zip = support::zip(&[("app.py", REPORTER.as_bytes(), 0o644)]);
    server.create_function(
        name,
        "python3.11",
        "app.handler",
        &zip,
        json!({"Timeout": 30, "Environment": {"Variables": {"RECEIVER_PORT": receiver.port.to_string()}}}),
    );
}

/// Enqueues `total` events to `name` from several threads, always through the server
/// `target` names now (it changes when the test restarts it); requests that fail because
/// the server is down are sent again. Returns the request ids that got a 202.
fn enqueue_all(
    targets: Vec<Arc<RwLock<Client>>>,
    name: &str,
    total: usize,
    accepted: Arc<Mutex<Vec<String>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    let reserved = Arc::new(AtomicUsize::new(0));
    (0..ENQUEUERS)
        .map(|i| {
            let target = targets[i % targets.len()].clone();
            let (reserved, accepted, name) = (reserved.clone(), accepted.clone(), name.to_string());
            std::thread::spawn(move || loop {
                let n = reserved.fetch_add(1, Ordering::SeqCst);
                if n >= total {
                    return;
                }
                loop {
                    let client = target.read().expect("lock").clone();
                    let body = json!({"n": n}).to_string();
                    match client.try_request(
                        "POST",
                        &format!("/2015-03-31/functions/{name}/invocations"),
                        &[("x-amz-invocation-type", "Event")],
                        body.as_bytes(),
                    ) {
                        Ok(r) if r.status == 202 => {
                            let rid = r.header("x-amzn-requestid").expect("request id");
                            accepted.lock().expect("lock").push(rid.to_string());
                            break;
                        }
                        Ok(r) if r.status < 500 && r.status != 429 => {
                            panic!("enqueue answered {}: {}", r.status, r.text())
                        }
                        // Down, restarting, or throttled: send it again.
                        _ => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
            })
        })
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(client: &Client, rid: &str) -> serde_json::Value {
    let r = client
        .try_request("GET", &format!("/tern/v1/invocations/{rid}"), &[], b"")
        .expect("status");
    assert_eq!(r.status, 200, "status of {rid}: {}", r.text());
    r.json()
}

/// Every accepted request id ran (the receiver saw it) and its status says succeeded;
/// prints the duplicates, with the attempt history that explains each.
fn check_nothing_lost(client: &Client, accepted: &[String], receiver: &Receiver) -> usize {
    wait_until("every accepted event ran", Duration::from_secs(300), || {
        let seen = receiver.snapshot();
        accepted.iter().all(|rid| seen.contains_key(rid))
    });
    for rid in accepted {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = status(client, rid);
            if s["state"] == "succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "{rid} ran but is {s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let seen = receiver.snapshot();
    let duplicates: Vec<(&String, u32)> = accepted
        .iter()
        .filter_map(|rid| seen.get(rid).filter(|n| **n > 1).map(|n| (rid, *n)))
        .collect();
    println!(
        "{} events accepted, all ran and report succeeded; {} ran more than once",
        accepted.len(),
        duplicates.len()
    );
    for (rid, n) in duplicates.iter().take(20) {
        let outcomes: Vec<String> = status(client, rid)["attempts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["outcome"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default();
        println!("  {rid} ran {n} times; attempts: {outcomes:?}");
    }
    duplicates.len()
}

/// Enqueues 5,000 events, kills the server with SIGKILL twice while they are queued and
/// running, restarts it each time, and checks that every event that got a 202 ran.
fn crash_twice(extra: &[&str]) {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &dir,
        "concurrency = 16\nlease_secs = 3\nsystem_backoff_ms = 100",
    );
    let mut args = vec!["--dev-unsandboxed", "--config", cfg.as_str()];
    args.extend_from_slice(extra);
    let mut server = Server::start_with(&args);
    deploy_reporter(&server, "reporter", &receiver);
    let target = Arc::new(RwLock::new(server.client()));
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let workers = enqueue_all(vec![target.clone()], "reporter", EVENTS, accepted.clone());
    let accepted_count = || accepted.lock().expect("lock").len();

    wait_until("1,500 accepted", Duration::from_secs(120), || {
        accepted_count() >= 1_500
    });
    server = server.crash_and_restart();
    println!(
        "killed with SIGKILL at {} accepted, {} ran",
        accepted_count(),
        receiver.count()
    );
    *target.write().expect("lock") = server.client();

    wait_until(
        "3,500 accepted and 1,000 ran",
        Duration::from_secs(180),
        || accepted_count() >= 3_500 && receiver.count() >= 1_000,
    );
    server = server.crash_and_restart();
    println!(
        "killed with SIGKILL at {} accepted, {} ran",
        accepted_count(),
        receiver.count()
    );
    *target.write().expect("lock") = server.client();

    for w in workers {
        w.join().expect("enqueuer");
    }
    let accepted = accepted.lock().expect("lock").clone();
    assert_eq!(accepted.len(), EVENTS);
    check_nothing_lost(&server.client(), &accepted, &receiver);
}

#[test]
fn nothing_accepted_is_lost_across_two_sigkills_on_sqlite() {
    crash_twice(&[]);
}

#[test]
fn nothing_accepted_is_lost_across_two_sigkills_on_postgresql() {
    let db = Database::create("crash");
    let url = db.url();
    crash_twice(&["--database", url.as_str()]);
}

/// The succeeded-events counter of a server's /metrics, summed over functions.
fn succeeded_here(server: &Server) -> u64 {
    let text = server.raw_request("GET", "/metrics", &[], b"").text();
    text.lines()
        .filter(|l| l.starts_with("tern_async_events_total{") && l.contains("state=\"succeeded\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn two_servers_on_one_postgresql_database_both_dispatch_and_run_each_event_once() {
    let db = Database::create("pair");
    let url = db.url();
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, "concurrency = 8");
    // One database, so one code store: both servers run what either stored.
    let code = dir.path().join("code").display().to_string();
    let args = [
        "--dev-unsandboxed",
        "--config",
        cfg.as_str(),
        "--database",
        url.as_str(),
        "--code-dir",
        code.as_str(),
    ];
    let a = Server::start_with(&args);
    let b = Server::start_with(&args);
    deploy_reporter(&a, "shared", &receiver);
    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let targets = vec![
        Arc::new(RwLock::new(a.client())),
        Arc::new(RwLock::new(b.client())),
    ];
    for w in enqueue_all(targets, "shared", 1_000, accepted.clone()) {
        w.join().expect("enqueuer");
    }
    let accepted = accepted.lock().expect("lock").clone();
    let duplicates = check_nothing_lost(&b.client(), &accepted, &receiver);
    let (by_a, by_b) = (succeeded_here(&a), succeeded_here(&b));
    println!("server A ran {by_a} events, server B {by_b}");
    assert!(
        by_a > 0 && by_b > 0,
        "both servers dispatch: A {by_a}, B {by_b}"
    );
    assert_eq!(by_a + by_b, accepted.len() as u64 + duplicates as u64);
    // No lease expired here (both servers lived), so nothing may have run twice.
    assert_eq!(duplicates, 0, "events ran twice while their lease held");
}

#[test]
fn a_full_queue_answers_429_naming_its_bound_and_shows_at_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, "max_queued_per_namespace = 5");
    let server = Server::start_with(&["--config", cfg.as_str()]);
    let zip = support::zip(&[(
        "app.py",
        b"def handler(event, context):\n    return event\n",
        0o644,
    )]);
    server.create_function("held", "python3.11", "app.handler", &zip, json!({}));
    // Reserved concurrency 0: nothing runs, so the queue only fills.
    let r = server.request(
        "PUT",
        "/2017-10-31/functions/held/concurrency",
        &[("content-type", "application/json")],
        br#"{"ReservedConcurrentExecutions": 0}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let event = || {
        server.request(
            "POST",
            "/2015-03-31/functions/held/invocations",
            &[("x-amz-invocation-type", "Event")],
            b"{}",
        )
    };
    for _ in 0..5 {
        assert_eq!(event().status, 202);
    }
    let full = event();
    assert_eq!(full.status, 429, "{}", full.text());
    assert_eq!(full.error_type(), Some("TooManyRequestsException"));
    assert_eq!(full.json()["Reason"], "EventQueueLimitExceeded");
    assert!(
        full.text().contains("max_queued_per_namespace"),
        "{}",
        full.text()
    );
    let metrics = server.raw_request("GET", "/metrics", &[], b"").text();
    assert!(
        metrics.contains("tern_async_queue_depth{namespace=\"default\"} 5"),
        "{metrics}"
    );
    assert!(metrics.contains("tern_async_oldest_event_age_seconds{namespace=\"default\"}"));
}

/// A restart (SIGTERM) while events run: one that finishes within the grace period
/// succeeds; one still running when the server stops its instances (the 2 s grace, then
/// up to 5 s for requests to hand their instances back) is cut short and runs again
/// after the restart, without using a retry (MaximumRetryAttempts is 0 here, so a
/// counted failure would dead-letter it).
#[test]
fn a_graceful_restart_neither_fails_nor_loses_running_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tern.toml");
    std::fs::write(&path, "shutdown_grace_secs = 2\n").expect("config");
    let cfg = path.display().to_string();
    let server = Server::start_with(&["--config", cfg.as_str()]);
    let zip = support::zip(&[(
        "app.py",
        b"import time\ndef handler(event, context):\n    time.sleep(event['sleep'])\n    return {'slept': event['sleep']}\n",
        0o644,
    )]);
    server.create_function(
        "slow",
        "python3.11",
        "app.handler",
        &zip,
        json!({"Timeout": 30}),
    );
    let put = server.request(
        "PUT",
        "/2019-09-25/functions/slow/event-invoke-config",
        &[("content-type", "application/json")],
        br#"{"MaximumRetryAttempts": 0}"#,
    );
    assert_eq!(put.status, 200, "{}", put.text());
    let send = |sleep: f64| {
        let r = server.request(
            "POST",
            "/2015-03-31/functions/slow/invocations",
            &[("x-amz-invocation-type", "Event")],
            json!({"sleep": sleep}).to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.text());
        r.header("x-amzn-requestid").expect("id").to_string()
    };
    let quick = send(1.0);
    let long = send(12.0);
    let client = server.client();
    wait_until("both running", Duration::from_secs(30), || {
        [&quick, &long]
            .iter()
            .all(|id| status(&client, id)["state"] == "running")
    });
    let server = server.restart();
    let client = server.client();
    assert_eq!(
        status(&client, &quick)["state"],
        "succeeded",
        "finished within the grace"
    );
    wait_until(
        "the cut-short event ran again",
        Duration::from_secs(60),
        || status(&client, &long)["state"] == "succeeded",
    );
    let done = status(&client, &long);
    assert_eq!(done["deadLetter"], false);
    let outcomes: Vec<&str> = done["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["lease_expired", "success"], "{done}");
}
