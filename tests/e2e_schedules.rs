//! Schedules end to end: a `rate(1 second)` schedule fires each slot once, also across
//! a `kill -9` and restart (slots missed while down fire once, none twice), two servers
//! on one PostgreSQL database share a schedule without firing a slot twice, and bad
//! input gets clear errors.
//!
//! The firing tests run functions unsandboxed (`--dev-unsandboxed`): the handler
//! reports each event's `time` and its request id over loopback to a receiver in this
//! test, which a sandboxed function cannot reach. A slot is "fired twice" when it
//! arrives under two request ids; one request id seen twice is the async path's
//! at-least-once delivery (an attempt cut short by the kill), not a second firing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Server;

/// Reports `time request_id` of each event, then answers.
const REPORTER: &str = r#"
import os, socket

def handler(event, context):
    with socket.create_connection(("127.0.0.1", int(os.environ["RECEIVER_PORT"])), timeout=10) as s:
        s.sendall(("%s %s\n" % (event["time"], context.aws_request_id)).encode())
    return {"time": event["time"]}
"#;

/// Slot times reported by the function, with the request ids each came under.
struct Receiver {
    port: u16,
    slots: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let slots: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
        let seen = slots.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(conn).lines().map_while(Result::ok) {
                        if let Some((time, rid)) = line.trim().split_once(' ') {
                            seen.lock()
                                .expect("lock")
                                .entry(time.to_string())
                                .or_default()
                                .insert(rid.to_string());
                        }
                    }
                });
            }
        });
        Receiver { port, slots }
    }

    fn snapshot(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.slots.lock().expect("lock").clone()
    }
}

fn config(dir: &tempfile::TempDir, schedules: &str) -> String {
    let path = dir.path().join("tern.toml");
    std::fs::write(&path, format!("[schedules]\n{schedules}\n")).expect("config");
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

fn schedule_request(server: &Server, method: &str, path: &str, body: &Value) -> support::Response {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    server.request(method, path, &[("content-type", "application/json")], &body)
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

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Seconds since the epoch of an RFC 3339 time in UTC to the second.
fn epoch_secs(t: &str) -> i64 {
    let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("not RFC 3339: {t}: {e}"));
    parsed.unix_timestamp()
}

/// Pauses the schedule; returns its last slot.
fn pause(server: &Server, name: &str) -> i64 {
    let paused = schedule_request(
        server,
        "PATCH",
        &format!("/tern/v1/schedules/{name}"),
        &json!({"enabled": false}),
    );
    assert_eq!(paused.status, 200, "{}", paused.text());
    let paused = paused.json();
    assert_eq!(paused["enabled"], false);
    assert_eq!(paused["nextSlot"], Value::Null, "{paused}");
    epoch_secs(paused["lastSlot"].as_str().expect("a last slot"))
}

/// Waits until the receiver has every one of `slots`.
fn wait_for_slots(receiver: &Receiver, slots: impl IntoIterator<Item = i64> + Clone) {
    wait_until(
        "every slot fired reached the function",
        Duration::from_secs(60),
        || {
            let seen: BTreeSet<i64> = receiver.snapshot().keys().map(|t| epoch_secs(t)).collect();
            slots.clone().into_iter().all(|s| seen.contains(&s))
        },
    );
}

/// Pauses the schedule, then waits until the receiver has every slot from `first` to
/// its last slot; returns that last slot.
fn pause_and_collect(server: &Server, receiver: &Receiver, name: &str, first: i64) -> i64 {
    let last = pause(server, name);
    wait_for_slots(receiver, first..=last);
    last
}

/// No slot came under two request ids, and nothing outside `first..=last` came.
fn assert_each_slot_fired_once(receiver: &Receiver, first: i64, last: i64) {
    let slots = receiver.snapshot();
    let twice: Vec<_> = slots.iter().filter(|(_, rids)| rids.len() > 1).collect();
    assert!(twice.is_empty(), "slots fired more than once: {twice:?}");
    let times: Vec<i64> = slots.keys().map(|t| epoch_secs(t)).collect();
    assert_eq!(
        times,
        (first..=last).collect::<Vec<_>>(),
        "every slot from the first to the last, once"
    );
}

#[test]
fn a_rate_schedule_fires_each_slot_once_across_a_kill_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, "grace_secs = 300\ncatch_up_max = 120");
    let receiver = Receiver::start();
    let mut server = Server::start_with(&["--dev-unsandboxed", "--config", cfg.as_str()]);
    deploy_reporter(&server, "ticker", &receiver);

    let created = schedule_request(
        &server,
        "POST",
        "/tern/v1/schedules",
        &json!({"name": "every-second", "function": "ticker", "expression": "rate(1 second)"}),
    );
    let created_at = Instant::now();
    assert_eq!(created.status, 201, "{}", created.text());
    let created = created.json();
    let first = epoch_secs(created["nextSlot"].as_str().expect("next slot"));

    // Within a bounded window it fires once a second (the slot fired is in the store's
    // state at once; its event reaches the function through the async queue).
    std::thread::sleep(Duration::from_secs(5));
    let state = schedule_request(
        &server,
        "GET",
        "/tern/v1/schedules/every-second",
        &Value::Null,
    );
    let elapsed = created_at.elapsed().as_secs_f64();
    let state = state.json();
    let last = epoch_secs(state["lastSlot"].as_str().expect("fired by now"));
    let fired = last - first + 1;
    assert!(
        (elapsed.floor() as i64 - 1..=elapsed.ceil() as i64 + 1).contains(&fired),
        "{fired} slots fired in {elapsed:.1} s: {state}"
    );
    wait_until(
        "the first slots reached the function",
        Duration::from_secs(60),
        || receiver.snapshot().len() as i64 >= fired,
    );

    // kill -9, down for a few seconds, then the same data dir again: the slots missed
    // while it was down are within the grace window and fire once each on start.
    let killed_at = now_secs();
    server = server.crash_and_restart_after(Duration::from_secs(3));
    let back_at = now_secs();
    std::thread::sleep(Duration::from_secs(3));
    let last = pause_and_collect(&server, &receiver, "every-second", first);
    assert!(back_at - killed_at >= 3, "down for at least 3 slots");
    assert!(
        last > back_at,
        "it kept firing after the restart: {first}..{last}"
    );
    // Every slot once, those of the 3 s it was down included (fired late on start).
    assert_each_slot_fired_once(&receiver, first, last);
}

#[test]
fn slots_missed_beyond_the_grace_window_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, "grace_secs = 2\ncatch_up_max = 120");
    let receiver = Receiver::start();
    let server = Server::start_with(&["--dev-unsandboxed", "--config", cfg.as_str()]);
    deploy_reporter(&server, "ticker", &receiver);
    let created = schedule_request(
        &server,
        "POST",
        "/tern/v1/schedules",
        &json!({"name": "s", "function": "ticker", "expression": "rate(1 second)"}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let first = epoch_secs(created.json()["nextSlot"].as_str().expect("next slot"));
    std::thread::sleep(Duration::from_secs(2));

    // Down (stopped gracefully, so no attempt is cut short) for longer than the grace
    // window.
    let server = server.restart_after(Duration::from_secs(6));
    std::thread::sleep(Duration::from_secs(2));
    let last = pause(&server, "s");
    wait_for_slots(&receiver, [last]);
    let times: BTreeSet<i64> = receiver.snapshot().keys().map(|t| epoch_secs(t)).collect();
    let gap: Vec<i64> = (first..=last).filter(|s| !times.contains(s)).collect();
    assert!(
        gap.len() >= 2,
        "slots older than 2 s when the server came back were skipped, not fired: fired {times:?}"
    );
    assert!(
        times.contains(&first),
        "slots before the stop fired: {times:?}"
    );
    let twice: Vec<_> = receiver
        .snapshot()
        .into_iter()
        .filter(|(_, rids)| rids.len() > 1)
        .collect();
    assert!(twice.is_empty(), "slots fired more than once: {twice:?}");
}

#[test]
fn two_servers_on_one_database_fire_each_slot_once() {
    let db = support::Database::create("sched");
    let url = db.url();
    let receiver = Receiver::start();
    let args = ["--dev-unsandboxed", "--database", url.as_str()];
    let a = Server::start_with(&args);
    let b = Server::start_with(&args);
    deploy_reporter(&a, "ticker", &receiver);
    let created = schedule_request(
        &a,
        "POST",
        "/tern/v1/schedules",
        &json!({"name": "shared", "function": "ticker", "expression": "rate(1 second)"}),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let first = epoch_secs(created.json()["nextSlot"].as_str().expect("next slot"));
    // Both servers see it due (b within its poll), and race for every slot.
    std::thread::sleep(Duration::from_secs(8));
    let last = pause_and_collect(&b, &receiver, "shared", first);
    assert!(last - first >= 5, "{first}..{last}");
    assert_each_slot_fired_once(&receiver, first, last);
}

#[test]
fn bad_schedules_get_clear_errors() {
    let server = Server::start_with(&["--dev-unsandboxed"]);
    let zip = support::zip(&[("app.py", b"def handler(e, c):\n    return e\n", 0o644)]);
    server.create_function("f", "python3.11", "app.handler", &zip, json!({}));
    let create = |body: Value| schedule_request(&server, "POST", "/tern/v1/schedules", &body);
    let refused = |body: Value, status: u16, error_type: &str, needle: &str| {
        let r = create(body.clone());
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert_eq!(r.error_type(), Some(error_type), "{body}: {}", r.text());
        let message = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(
            message.contains(needle),
            "{body}: {message:?} should name {needle:?}"
        );
    };

    refused(
        json!({"name": "s", "function": "f", "expression": "cron(0 25 * * ? *)"}),
        400,
        "InvalidParameterValueException",
        "invalid cron expression 'cron(0 25 * * ? *)'",
    );
    refused(
        json!({"name": "s", "function": "f", "expression": "cron(0 12 * * * *)"}),
        400,
        "InvalidParameterValueException",
        "exactly one of day-of-month and day-of-week must be '?'",
    );
    refused(
        json!({"name": "s", "function": "f", "expression": "rate(1 minutes)"}),
        400,
        "InvalidParameterValueException",
        "singular for a value of 1",
    );
    refused(
        json!({"name": "s", "function": "f", "expression": "0 9 * * *", "timezone": "Mars/Base"}),
        400,
        "InvalidParameterValueException",
        "Invalid value for 'timezone': unknown timezone 'Mars/Base'",
    );
    refused(
        json!({"name": "s", "function": "f", "expression": "rate(1 hour)", "timezone": "../../etc/localtime"}),
        400,
        "InvalidParameterValueException",
        "Invalid value for 'timezone'",
    );
    refused(
        json!({"name": "..", "function": "f", "expression": "rate(1 minute)"}),
        400,
        "InvalidParameterValueException",
        "'name'",
    );
    refused(
        json!({"name": "s", "function": "f", "expression": "rate(1 minute)", "schedule": "x"}),
        400,
        "InvalidParameterValueException",
        "unknown field `schedule`",
    );
    refused(
        json!({"name": "bad name", "function": "f", "expression": "rate(1 minute)"}),
        400,
        "InvalidParameterValueException",
        "'name'",
    );
    refused(
        json!({"name": "s", "function": "nope", "expression": "rate(1 minute)"}),
        404,
        "ResourceNotFoundException",
        "nope",
    );
    refused(
        json!({"name": "s", "function": "f:7", "expression": "rate(1 minute)"}),
        404,
        "ResourceNotFoundException",
        "f:7",
    );

    let ok = create(
        json!({"name": "s", "function": "f", "expression": "cron(0 12 ? * MON-FRI *)",
        "timezone": "Europe/Berlin", "payload": {"job": "report"}}),
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
    let ok = ok.json();
    assert_eq!(ok["arn"], "arn:aws:events:us-east-1:000000000000:rule/s");
    assert_eq!(ok["payload"], json!({"job": "report"}));
    assert!(
        ok["nextSlot"]
            .as_str()
            .is_some_and(|t| t.ends_with(":00:00Z")),
        "{ok}"
    );
    refused(
        json!({"name": "s", "function": "f", "expression": "rate(1 minute)"}),
        409,
        "ResourceConflictException",
        "Schedule already exists: s",
    );
    let listed = schedule_request(&server, "GET", "/tern/v1/schedules", &Value::Null).json();
    assert_eq!(listed["schedules"][0]["name"], "s", "{listed}");
    let missing = schedule_request(&server, "GET", "/tern/v1/schedules/none", &Value::Null);
    assert_eq!(missing.status, 404, "{}", missing.text());
    let patch = schedule_request(
        &server,
        "PATCH",
        "/tern/v1/schedules/s",
        &json!({"enabled": false, "expression": "x"}),
    );
    assert_eq!(patch.status, 400, "only enabled changes: {}", patch.text());

    // Deleting the function deletes its schedules.
    let deleted = server.request("DELETE", "/2015-03-31/functions/f", &[], b"");
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let gone = schedule_request(&server, "GET", "/tern/v1/schedules/s", &Value::Null);
    assert_eq!(gone.status, 404, "{}", gone.text());
}

#[test]
fn a_namespace_holds_a_bounded_number_of_schedules_with_bounded_expressions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&dir, "max_per_namespace = 2");
    let server = Server::start_with(&["--dev-unsandboxed", "--config", cfg.as_str()]);
    let zip = support::zip(&[("app.py", b"def handler(e, c):\n    return e\n", 0o644)]);
    server.create_function("f", "python3.11", "app.handler", &zip, json!({}));
    let create = |name: &str, expression: &str| {
        schedule_request(
            &server,
            "POST",
            "/tern/v1/schedules",
            &json!({"name": name, "function": "f", "expression": expression}),
        )
    };
    let message =
        |r: &support::Response| r.json()["message"].as_str().unwrap_or_default().to_string();

    // An expression past EventBridge's 256 characters is refused before any parsing.
    let long = format!("cron({} * * ? *)", vec!["0"; 200].join(","));
    let r = create("long", &long);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        message(&r).contains("at most 256 characters"),
        "{}",
        r.text()
    );
    // A period so long its first slot has no date is no slot, not an empty nextSlot.
    let r = create("far", "rate(99999999999 days)");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        message(&r).contains("has no slot after now"),
        "{}",
        r.text()
    );

    for name in ["one", "two"] {
        let r = create(name, "rate(1 hour)");
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let r = create("three", "rate(1 hour)");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_type(), Some("InvalidParameterValueException"));
    assert!(
        message(&r).contains("max_per_namespace = 2"),
        "{}",
        r.text()
    );
    // Deleting one makes room again.
    let deleted = schedule_request(&server, "DELETE", "/tern/v1/schedules/one", &Value::Null);
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let r = create("three", "rate(1 hour)");
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn a_schedule_on_a_deleted_alias_stops_and_resumes_once_it_is_back() {
    let server = Server::start_with(&["--dev-unsandboxed"]);
    let zip = support::zip(&[("app.py", b"def handler(e, c):\n    return e\n", 0o644)]);
    server.create_function("f", "python3.11", "app.handler", &zip, json!({}));
    let publish = server.request("POST", "/2015-03-31/functions/f/versions", &[], b"{}");
    assert_eq!(publish.status, 201, "{}", publish.text());
    let alias = json!({"Name": "live", "FunctionVersion": "1"}).to_string();
    let made = server.request(
        "POST",
        "/2015-03-31/functions/f/aliases",
        &[],
        alias.as_bytes(),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let r = schedule_request(
        &server,
        "POST",
        "/tern/v1/schedules",
        &json!({"name": "tick", "function": "f:live", "expression": "rate(1 second)"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let gone = server.request("DELETE", "/2015-03-31/functions/f/aliases/live", &[], b"");
    assert_eq!(gone.status, 204, "{}", gone.text());
    let get = || schedule_request(&server, "GET", "/tern/v1/schedules/tick", &Value::Null).json();
    wait_until("the schedule stops", Duration::from_secs(10), || {
        get()["nextSlot"].is_null()
    });
    let stopped_at = get()["lastSlot"].clone();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(get()["lastSlot"], stopped_at, "no slot fires while stopped");

    let made = server.request(
        "POST",
        "/2015-03-31/functions/f/aliases",
        &[],
        alias.as_bytes(),
    );
    assert_eq!(made.status, 201, "{}", made.text());
    let resumed = schedule_request(
        &server,
        "PATCH",
        "/tern/v1/schedules/tick",
        &json!({"enabled": true}),
    );
    assert_eq!(resumed.status, 200, "{}", resumed.text());
    assert!(resumed.json()["nextSlot"].is_string(), "{}", resumed.text());
}
