//! The `tern` client commands end to end: the real binary against a real `tern server`,
//! checking what a user sees on stdout, stderr and in the exit code.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::Server;

const PY_APP: &str = r#"
import os
def handler(event, context):
    print("handling", event)
    return {"event": event, "greeting": os.environ.get("GREETING"), "version": VERSION}
def fail(event, context):
    raise ValueError("bad value: " + str(event.get("x")))
VERSION = 1
"#;

const PROVIDED_BOOTSTRAP: &str = r#"#!/usr/bin/env python3
import http.client, json, os
conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    body = json.dumps({"bootstrap": event}).encode()
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=body)
    conn.getresponse().read()
"#;

/// What one run of the CLI printed.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }

    fn failed(self) -> Self {
        assert_eq!(self.code, Some(1), "expected exit code 1: {self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Runs `tern ARGS` with only the given `TERN_*` variables set.
fn tern_with(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tern"));
    for var in [
        "TERN_ENDPOINT",
        "TERN_CREDENTIALS",
        "TERN_PROFILE",
        "TERN_REGION",
        "TERN_DATA_DIR",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run tern");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `tern ARGS` against `server` with its admin credentials.
fn tern(server: &Server, args: &[&str]) -> Run {
    let credentials = server.credentials_file();
    tern_with(
        &[
            ("TERN_ENDPOINT", server.endpoint.as_str()),
            (
                "TERN_CREDENTIALS",
                credentials.to_str().expect("utf-8 path"),
            ),
        ],
        args,
    )
}

/// `tern deploy SRC --name N --runtime R --handler H EXTRA...`.
fn deploy(
    server: &Server,
    src: &str,
    name: &str,
    runtime: &str,
    handler: &str,
    extra: &[&str],
) -> Run {
    let mut args = vec![
        "deploy",
        src,
        "--name",
        name,
        "--runtime",
        runtime,
        "--handler",
        handler,
    ];
    args.extend_from_slice(extra);
    tern(server, &args)
}

fn write_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn python_dir(version: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let code = PY_APP.replace("VERSION = 1", &format!("VERSION = {version}"));
    write_file(&dir.path().join("app.py"), &code, 0o644);
    dir
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `tern logs` until the invocation's REPORT line is stored (the log writer is async).
fn logs_until_report(server: &Server, args: &[&str]) -> Run {
    for _ in 0..50 {
        let run = tern(server, args).ok();
        if run.stdout.contains("REPORT RequestId: ") {
            return run;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no REPORT line in `tern {}`", args.join(" "));
}

#[test]
fn deploy_invoke_list_get_logs_and_delete_through_the_cli() {
    let server = Server::start();
    let v1 = python_dir(1);
    let src = path_str(v1.path());

    let created = deploy(
        &server,
        src,
        "hello",
        "python3.11",
        "app.handler",
        &["--env", "GREETING=hi", "--memory", "256"],
    )
    .ok();
    assert!(created.stdout.starts_with("created hello"), "{created:#?}");
    assert!(created.stdout.contains(":function:hello"), "{created:#?}");

    let invoked = tern(
        &server,
        &["invoke", "hello", "--payload", r#"{"n": 1}"#, "--log"],
    )
    .ok();
    assert_eq!(
        invoked.json(),
        json!({"event": {"n": 1}, "greeting": "hi", "version": 1})
    );
    assert!(invoked.stderr.contains("START RequestId: "), "{invoked:#?}");
    assert!(invoked.stderr.contains("handling {'n': 1}"), "{invoked:#?}");
    assert!(
        invoked.stderr.contains("REPORT RequestId: "),
        "{invoked:#?}"
    );
    let request_id = invoked
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("START RequestId: "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("request id in the log tail")
        .to_string();

    // Deploying an existing name updates code and configuration.
    let v2 = python_dir(2);
    let updated = deploy(
        &server,
        path_str(v2.path()),
        "hello",
        "python3.11",
        "app.handler",
        &["--timeout", "7"],
    )
    .ok();
    assert!(updated.stdout.starts_with("updated hello"), "{updated:#?}");
    let event_file = v2.path().join("event.json");
    std::fs::write(&event_file, r#"{"from": "file"}"#).expect("write event");
    let payload_arg = format!("@{}", path_str(&event_file));
    let again = tern(&server, &["invoke", "hello", "--payload", &payload_arg]).ok();
    assert_eq!(
        again.json(),
        json!({"event": {"from": "file"}, "greeting": "hi", "version": 2}),
        "new code, environment kept"
    );
    assert_eq!(again.stderr, "", "no log tail without --log");

    let config = tern(&server, &["functions", "get", "hello"]).ok().json();
    assert_eq!(config["FunctionName"], "hello");
    assert_eq!(config["Timeout"], 7);
    assert_eq!(config["MemorySize"], 256);
    assert_eq!(config["Environment"]["Variables"]["GREETING"], "hi");

    deploy(&server, src, "other", "python3.11", "app.handler", &[]).ok();
    let list = tern(&server, &["functions", "list"]).ok();
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{list:#?}");
    assert!(
        lines[1].starts_with("hello ") && lines[1].contains("python3.11"),
        "{list:#?}"
    );
    assert!(lines[2].starts_with("other "), "{list:#?}");

    let logs = logs_until_report(&server, &["logs", "hello", "--request-id", &request_id]);
    assert!(
        logs.stdout
            .lines()
            .all(|l| !l.contains("RequestId: ") || l.contains(&request_id)),
        "only the lines of one invocation: {logs:#?}"
    );
    assert!(logs.stdout.contains("handling {'n': 1}"), "{logs:#?}");
    let last = tern(&server, &["logs", "hello", "--limit", "1"]).ok();
    assert_eq!(last.stdout.lines().count(), 1, "{last:#?}");

    let deleted = tern(&server, &["functions", "delete", "other"]).ok();
    assert_eq!(deleted.stdout.trim(), "deleted other");
    let gone = tern(&server, &["functions", "get", "other"]).failed();
    assert!(
        gone.stderr.contains("ResourceNotFoundException"),
        "{gone:#?}"
    );
    let list = tern(&server, &["functions", "list"]).ok();
    assert!(!list.stdout.contains("other"), "{list:#?}");
}

#[test]
fn a_provided_bootstrap_deployed_from_a_dir_stays_executable() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    write_file(&dir.path().join("bootstrap"), PROVIDED_BOOTSTRAP, 0o755);
    deploy(
        &server,
        path_str(dir.path()),
        "custom",
        "provided.al2023",
        "unused",
        &[],
    )
    .ok();
    let out = tern(&server, &["invoke", "custom", "--payload", "[1, 2]"]).ok();
    assert_eq!(out.json(), json!({"bootstrap": [1, 2]}));
}

#[test]
fn a_function_error_prints_the_error_body_and_exits_1() {
    let server = Server::start();
    let dir = python_dir(1);
    deploy(
        &server,
        path_str(dir.path()),
        "failing",
        "python3.11",
        "app.fail",
        &[],
    )
    .ok();
    let out = tern(&server, &["invoke", "failing", "--payload", r#"{"x": 7}"#]).failed();
    let body = out.json();
    assert_eq!(body["errorType"], "ValueError");
    assert_eq!(body["errorMessage"], "bad value: 7");
    assert!(out.stderr.contains("Unhandled"), "{out:#?}");
}

#[test]
fn an_unknown_function_is_reported_as_not_found() {
    let server = Server::start();
    for args in [
        &["invoke", "nope"][..],
        &["functions", "get", "nope"],
        &["functions", "delete", "nope"],
        &["logs", "nope"],
    ] {
        let run = tern(&server, args).failed();
        assert!(
            run.stderr.contains("ResourceNotFoundException") && run.stderr.contains("nope"),
            "{args:?}: {run:#?}"
        );
        assert_eq!(run.stdout, "", "{args:?}");
    }
}

#[test]
fn wrong_credentials_are_reported_as_rejected_with_the_file_named() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("credentials");
    std::fs::write(
        &bad,
        "[tern]\naws_access_key_id = AKIAUNKNOWN\naws_secret_access_key = nope\n",
    )
    .expect("write");
    let run = tern_with(
        &[
            ("TERN_ENDPOINT", server.endpoint.as_str()),
            ("TERN_CREDENTIALS", path_str(&bad)),
        ],
        &["functions", "list"],
    )
    .failed();
    assert!(
        run.stderr.contains("UnrecognizedClientException"),
        "{run:#?}"
    );
    assert!(run.stderr.contains(path_str(&bad)), "{run:#?}");

    // Right key, wrong secret.
    std::fs::write(
        &bad,
        format!(
            "[tern]\naws_access_key_id = {}\naws_secret_access_key = wrong\n",
            server.access_key
        ),
    )
    .expect("write");
    let run = tern_with(
        &[
            ("TERN_ENDPOINT", server.endpoint.as_str()),
            ("TERN_CREDENTIALS", path_str(&bad)),
        ],
        &["functions", "list"],
    )
    .failed();
    assert!(run.stderr.contains("InvalidSignatureException"), "{run:#?}");
}

#[test]
fn the_credentials_file_defaults_to_the_data_dir() {
    let server = Server::start();
    let data_dir = path_str(&server.data_dir).to_string();
    tern_with(
        &[
            ("TERN_ENDPOINT", server.endpoint.as_str()),
            ("TERN_DATA_DIR", data_dir.as_str()),
        ],
        &["functions", "list"],
    )
    .ok();
}

#[test]
fn a_missing_credentials_file_says_where_it_looked_and_how_to_get_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-credentials");
    let run = tern_with(
        &[("TERN_CREDENTIALS", path_str(&missing))],
        &["functions", "list"],
    )
    .failed();
    assert!(run.stderr.contains(path_str(&missing)), "{run:#?}");
    assert!(run.stderr.contains("tern server"), "{run:#?}");
}

#[test]
fn a_server_that_is_not_running_is_reported_as_unreachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let credentials = dir.path().join("credentials");
    std::fs::write(
        &credentials,
        "[tern]\naws_access_key_id = AKIA\naws_secret_access_key = s\n",
    )
    .expect("write");
    // A port that was free a moment ago, with nothing listening on it now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let run = tern_with(
        &[
            ("TERN_ENDPOINT", endpoint.as_str()),
            ("TERN_CREDENTIALS", path_str(&credentials)),
        ],
        &["invoke", "f"],
    )
    .failed();
    assert!(
        run.stderr.contains(&format!(
            "cannot reach tern at {endpoint}: is `tern server` running?"
        )),
        "{run:#?}"
    );
}

#[test]
fn redeploying_an_existing_function_needs_only_its_name() {
    let server = Server::start();
    let v1 = python_dir(1);
    deploy(
        &server,
        path_str(v1.path()),
        "again",
        "python3.11",
        "app.handler",
        &["--memory", "256", "--env", "GREETING=kept"],
    )
    .ok();

    let v2 = python_dir(2);
    let updated = tern(&server, &["deploy", path_str(v2.path()), "--name", "again"]).ok();
    assert!(
        updated
            .stdout
            .starts_with("updated again (python3.11, handler app.handler"),
        "{updated:#?}"
    );
    let out = tern(&server, &["invoke", "again"]).ok().json();
    assert_eq!(out["version"], 2, "new code");
    let config = tern(&server, &["functions", "get", "again"]).ok().json();
    assert_eq!(config["Handler"], "app.handler");
    assert_eq!(config["MemorySize"], 256);
    assert_eq!(config["Environment"]["Variables"]["GREETING"], "kept");

    // A setting that is given is applied, the others stay.
    tern(
        &server,
        &[
            "deploy",
            path_str(v2.path()),
            "--name",
            "again",
            "--timeout",
            "9",
        ],
    )
    .ok();
    let config = tern(&server, &["functions", "get", "again"]).ok().json();
    assert_eq!(
        (config["Timeout"].as_i64(), config["MemorySize"].as_i64()),
        (Some(9), Some(256))
    );
}

#[test]
fn creating_a_function_without_runtime_and_handler_says_they_are_needed() {
    let server = Server::start();
    let v1 = python_dir(1);
    let run = tern(&server, &["deploy", path_str(v1.path()), "--name", "fresh"]).failed();
    assert!(
        run.stderr.contains("function fresh does not exist")
            && run.stderr.contains("--runtime and --handler"),
        "{run:#?}"
    );
    let gone = tern(&server, &["functions", "get", "fresh"]).failed();
    assert!(
        gone.stderr.contains("ResourceNotFoundException"),
        "{gone:#?}"
    );
}

#[test]
fn tern_variables_do_not_show_up_as_required_flags_in_usage_errors() {
    let env = [
        ("TERN_ENDPOINT", "http://127.0.0.1:1"),
        ("TERN_CREDENTIALS", "/nonexistent/credentials"),
        ("TERN_PROFILE", "tern"),
        ("TERN_REGION", "us-east-1"),
    ];
    for args in [
        &["deploy"][..],
        &["invoke"],
        &["functions", "get"],
        &["logs"],
    ] {
        let run = tern_with(&env, args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:#?}");
        let usage = run
            .stderr
            .lines()
            .find(|l| l.starts_with("Usage: "))
            .unwrap_or_else(|| panic!("{args:?}: no usage line: {run:#?}"));
        for flag in ["--endpoint", "--credentials", "--profile", "--region"] {
            assert!(!usage.contains(flag), "{args:?}: {usage}");
        }
    }
    let usage = tern_with(&env, &["deploy"]).stderr;
    assert!(
        usage.contains("Usage: tern deploy --name <NAME> <DIR|ZIP>"),
        "deploy needs only a name and a source: {usage}"
    );
}

#[test]
fn server_help_shows_the_default_listen_address_and_data_dir() {
    let run = tern_with(&[], &["server", "--help"]).ok();
    assert!(
        run.stdout.contains("[default: 127.0.0.1:8900]"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("[default: .tern in the current directory]"),
        "{}",
        run.stdout
    );
}

#[test]
fn deploy_turns_snap_start_on_and_off() {
    let server = Server::start();
    let code = python_dir(1);
    let snap_start = |server: &Server| {
        server
            .request(
                "GET",
                "/2015-03-31/functions/snappy/configuration",
                &[],
                b"",
            )
            .json()["SnapStart"]
            .clone()
    };
    deploy(
        &server,
        path_str(code.path()),
        "snappy",
        "python3.11",
        "app.handler",
        &["--snap-start", "true"],
    )
    .ok();
    assert_eq!(
        snap_start(&server),
        json!({"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"})
    );
    // An update without the flag leaves it; `false` turns it off.
    tern(
        &server,
        &["deploy", path_str(code.path()), "--name", "snappy"],
    )
    .ok();
    assert_eq!(snap_start(&server)["ApplyOn"], "PublishedVersions");
    tern(
        &server,
        &[
            "deploy",
            path_str(code.path()),
            "--name",
            "snappy",
            "--snap-start",
            "false",
        ],
    )
    .ok();
    assert_eq!(
        snap_start(&server),
        json!({"ApplyOn": "None", "OptimizationStatus": "Off"})
    );
}

#[test]
fn deploy_sets_the_network_mode() {
    let server = Server::start();
    let code = python_dir(1);
    let mode = |server: &Server| {
        server
            .request(
                "GET",
                "/2015-03-31/functions/netted/configuration",
                &[],
                b"",
            )
            .json()["TernNetwork"]["Mode"]
            .clone()
    };
    let created = deploy(
        &server,
        path_str(code.path()),
        "netted",
        "python3.11",
        "app.handler",
        &["--network", "egress"],
    )
    .ok();
    assert!(
        created.stdout.contains("network egress"),
        "{}",
        created.stdout
    );
    assert_eq!(mode(&server), "egress");
    // An update without the flag leaves it; a mode tern does not know is refused.
    tern(
        &server,
        &["deploy", path_str(code.path()), "--name", "netted"],
    )
    .ok();
    assert_eq!(mode(&server), "egress");
    let bad = tern(
        &server,
        &[
            "deploy",
            path_str(code.path()),
            "--name",
            "netted",
            "--network",
            "host",
        ],
    );
    assert_eq!(bad.code, Some(2), "a usage error: {bad:#?}");
    assert!(bad.stderr.contains("none, egress"), "{}", bad.stderr);
    tern(
        &server,
        &[
            "deploy",
            path_str(code.path()),
            "--name",
            "netted",
            "--network",
            "none",
            "--call-tern",
            "true",
        ],
    )
    .ok();
    assert_eq!(mode(&server), "none");
    let conf = server
        .request(
            "GET",
            "/2015-03-31/functions/netted/configuration",
            &[],
            b"",
        )
        .json();
    assert_eq!(conf["TernNetwork"]["CallTern"], true, "{conf}");
}

#[test]
fn networks_are_created_listed_and_deleted_through_the_cli() {
    let server = Server::start();
    let created = tern(
        &server,
        &[
            "network",
            "create",
            "db",
            "--cidr",
            "10.20.0.0/16",
            "--allow",
            "10.20.0.5:5432",
            "--allow",
            "10.20.0.53:53/udp",
        ],
    )
    .ok()
    .json();
    assert_eq!(
        created["Allow"],
        json!(["10.20.0.5/32:5432/tcp", "10.20.0.53/32:53/udp"])
    );
    let listed = tern(&server, &["network", "list"]).ok().json();
    assert_eq!(listed["Networks"][0]["Name"], "db", "{listed}");
    let bad = tern(
        &server,
        &[
            "network",
            "create",
            "wide",
            "--cidr",
            "10.20.0.0/16",
            "--allow",
            "10.21.0.5:80",
        ],
    )
    .failed();
    assert!(bad.stderr.contains("outside"), "{}", bad.stderr);
    tern(&server, &["network", "delete", "db"]).ok();
    let gone = tern(&server, &["network", "get", "db"]).failed();
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
}

/// Polls `tern invocations get ID` until the invocation is in `state`.
fn invocation_in_state(server: &Server, id: &str, state: &str) -> Value {
    for _ in 0..200 {
        let got = tern(server, &["invocations", "get", id]).ok().json();
        if got["state"] == state {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("invocation {id} never reached {state}");
}

#[test]
fn async_invoke_status_and_the_dead_letter_queue_through_the_cli() {
    let server = Server::start();
    let dir = python_dir(1);
    deploy(
        &server,
        path_str(dir.path()),
        "flaky",
        "python3.11",
        "app.fail",
        &[],
    )
    .ok();
    let put = server.request(
        "PUT",
        "/2019-09-25/functions/flaky/event-invoke-config",
        &[("content-type", "application/json")],
        br#"{"MaximumRetryAttempts": 0}"#,
    );
    assert_eq!(put.status, 200, "{}", put.text());

    let id = tern(
        &server,
        &["invoke", "flaky", "--async", "--payload", r#"{"x": 1}"#],
    )
    .ok()
    .stdout
    .trim()
    .to_string();
    assert_eq!(id.len(), 36, "a request id: {id:?}");
    let failed = invocation_in_state(&server, &id, "failed");
    assert_eq!(failed["deadLetter"], true);
    assert_eq!(failed["attempts"][0]["errorType"], "ValueError");

    let listed = tern(&server, &["dlq", "list", "flaky"]).ok().json();
    assert_eq!(listed["entries"][0]["requestId"], id.as_str());
    assert_eq!(listed["entries"][0]["payload"], json!({"x": 1}));
    let shown = tern(&server, &["dlq", "show", "flaky", &id]).ok().json();
    assert_eq!(shown["attempts"].as_array().map(Vec::len), Some(1));

    // Redrive: it runs again under the same id (and fails again, back in the DLQ).
    let redriven = tern(&server, &["dlq", "redrive", "flaky", "--all"])
        .ok()
        .json();
    assert_eq!(redriven["redriven"], 1);
    for _ in 0..200 {
        let got = invocation_in_state(&server, &id, "failed");
        if got["attempts"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        invocation_in_state(&server, &id, "failed")["attempts"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // A failure destination on a tern queue, read and emptied with `tern queue`.
    let put = server.request(
        "PUT",
        "/2019-09-25/functions/flaky/event-invoke-config",
        &[("content-type", "application/json")],
        br#"{"MaximumRetryAttempts": 0, "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:failures"}}}"#,
    );
    assert_eq!(put.status, 200, "{}", put.text());
    let sent = tern(
        &server,
        &["invoke", "flaky", "--async", "--payload", r#"{"x": 9}"#],
    )
    .ok()
    .stdout
    .trim()
    .to_string();
    invocation_in_state(&server, &sent, "failed");
    let read = tern(&server, &["queue", "read", "failures"]).ok().json();
    let record = &read["messages"][0];
    assert_eq!(record["body"]["requestContext"]["requestId"], sent.as_str());
    assert_eq!(
        record["body"]["requestContext"]["condition"],
        "RetriesExhausted"
    );
    let last = record["id"].as_i64().expect("record id").to_string();
    let deleted = tern(&server, &["queue", "delete", "failures", "--up-to", &last])
        .ok()
        .json();
    assert_eq!(deleted["deleted"], 1);
    assert_eq!(
        tern(&server, &["queue", "read", "failures"]).ok().json()["messages"],
        json!([])
    );

    let missing = tern(&server, &["dlq", "redrive", "flaky", "no-such-id"]).failed();
    assert!(missing.stderr.contains("No dead letter"), "{missing:#?}");
    let purged = tern(&server, &["dlq", "purge", "flaky", &id]).ok().json();
    assert_eq!(purged["purged"], 1);
    assert_eq!(
        tern(&server, &["dlq", "list", "flaky"]).ok().json()["entries"],
        json!([])
    );

    // An idempotency key queues one event for two invokes.
    let once = |payload: &str| {
        tern(
            &server,
            &[
                "invoke",
                "flaky",
                "--async",
                "--idempotency-key",
                "k1",
                "--payload",
                payload,
            ],
        )
        .ok()
        .stdout
        .trim()
        .to_string()
    };
    assert_eq!(once(r#"{"x": 2}"#), once(r#"{"x": 3}"#));
}

#[test]
fn the_release_flow_publish_alias_canary_and_rollback_through_the_cli() {
    let server = Server::start();
    let v1 = python_dir(1);
    let first = deploy(
        &server,
        path_str(v1.path()),
        "shop",
        "python3.11",
        "app.handler",
        &["--publish", "--alias", "live"],
    )
    .ok();
    assert!(
        first.stdout.contains("published shop version 1\n")
            && first.stdout.contains("alias live -> version 1\n"),
        "{first:#?}"
    );
    let v2 = python_dir(2);
    tern(&server, &["deploy", path_str(v2.path()), "--name", "shop"]).ok();
    let published = tern(&server, &["publish", "shop"]).ok();
    assert!(
        published.stdout.starts_with("published shop version 2\n"),
        "{published:#?}"
    );
    assert_eq!(
        tern(&server, &["invoke", "shop:live"]).ok().json()["version"],
        1
    );

    let canary = tern(
        &server,
        &[
            "alias",
            "set",
            "shop",
            "live",
            "--version",
            "1",
            "--canary",
            "2:0.5",
        ],
    )
    .ok();
    assert!(
        canary
            .stdout
            .starts_with("alias live -> version 1, 50.0% to version 2\n"),
        "{canary:#?}"
    );
    let listed = tern(&server, &["alias", "list", "shop"]).ok().json();
    assert_eq!(
        listed["Aliases"][0]["RoutingConfig"]["AdditionalVersionWeights"]["2"],
        0.5
    );

    tern(&server, &["alias", "set", "shop", "live", "--version", "2"]).ok();
    assert_eq!(
        tern(&server, &["invoke", "shop:live"]).ok().json()["version"],
        2
    );
    let back = tern(&server, &["rollback", "shop", "live"]).ok();
    assert!(
        back.stdout.starts_with("alias live -> version 1\n"),
        "{back:#?}"
    );
    assert_eq!(
        tern(&server, &["invoke", "shop:live"]).ok().json()["version"],
        1
    );
    let nothing_left = tern(&server, &["rollback", "shop", "live"]);
    assert_eq!(nothing_left.code, Some(1), "{nothing_left:#?}");
    assert!(
        nothing_left.stderr.contains("no earlier version"),
        "{nothing_left:#?}"
    );
    let bad = tern(
        &server,
        &[
            "alias",
            "set",
            "shop",
            "live",
            "--version",
            "1",
            "--canary",
            "2:1.5",
        ],
    );
    assert_eq!(bad.code, Some(2), "{bad:#?}");
    assert!(bad.stderr.contains("not between 0 and 1"), "{bad:#?}");
}

#[test]
fn a_function_url_is_created_called_and_deleted_through_the_cli() {
    let server = Server::start();
    let src = python_dir(1);
    deploy(
        &server,
        path_str(src.path()),
        "with-url",
        "python3.11",
        "app.handler",
        &[],
    )
    .ok();
    let created = tern(&server, &["url", "create", "with-url"]).ok().json();
    assert_eq!(created["AuthType"], "NONE");
    let url = created["FunctionUrl"].as_str().unwrap().to_string();
    let path = url
        .strip_prefix(&server.endpoint)
        .unwrap_or_else(|| panic!("{url} is not on the listener"));
    let resp = server.raw_request("GET", &format!("{path}hi?x=1"), &[], b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["event"]["rawPath"], "/hi");
    let got = tern(&server, &["url", "get", "with-url"]).ok().json();
    assert_eq!(got["FunctionUrl"], url.as_str());
    let listed = tern(&server, &["url", "list", "with-url"]).ok().json();
    assert_eq!(listed["FunctionUrlConfigs"][0]["FunctionUrl"], url.as_str());
    let run = tern(
        &server,
        &["url", "create", "with-url", "--auth-type", "AWS_IAM"],
    )
    .failed();
    assert!(run.stderr.contains("ResourceConflictException"), "{run:#?}");
    let run = tern(&server, &["url", "delete", "with-url"]).ok();
    assert_eq!(run.stdout.trim(), "deleted the URL of with-url");
    let run = tern(&server, &["url", "get", "with-url"]).failed();
    assert!(run.stderr.contains("ResourceNotFoundException"), "{run:#?}");
}

#[test]
fn schedules_are_added_listed_paused_resumed_and_deleted_through_the_cli() {
    let server = Server::start();
    let dir = python_dir(1);
    deploy(
        &server,
        path_str(dir.path()),
        "hello",
        "python3.11",
        "app.handler",
        &[],
    )
    .ok();

    let added = tern(
        &server,
        &[
            "schedule",
            "add",
            "weekdays",
            "--function",
            "hello",
            "--expression",
            "cron(0 12 ? * MON-FRI *)",
            "--timezone",
            "Europe/Berlin",
            "--payload",
            r#"{"job": "report"}"#,
        ],
    )
    .ok()
    .json();
    assert_eq!(added["enabled"], true, "{added}");
    assert_eq!(added["payload"], json!({"job": "report"}));
    assert!(added["nextSlot"].is_string(), "{added}");

    let listed = tern(&server, &["schedule", "list"]).ok();
    let lines: Vec<&str> = listed.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{listed:#?}");
    assert!(
        lines[1].starts_with("weekdays") && lines[1].contains("cron(0 12 ? * MON-FRI *)"),
        "{listed:#?}"
    );
    assert!(lines[1].contains("enabled"), "{listed:#?}");

    let paused = tern(&server, &["schedule", "pause", "weekdays"])
        .ok()
        .json();
    assert_eq!(
        (paused["enabled"].clone(), paused["nextSlot"].clone()),
        (json!(false), Value::Null)
    );
    let listed = tern(&server, &["schedule", "list"]).ok();
    assert!(listed.stdout.contains("paused"), "{listed:#?}");
    let resumed = tern(&server, &["schedule", "resume", "weekdays"])
        .ok()
        .json();
    assert_eq!(resumed["enabled"], true);
    assert_eq!(
        resumed["nextSlot"], added["nextSlot"],
        "the same next slot again"
    );

    let bad = tern(
        &server,
        &[
            "schedule",
            "add",
            "bad",
            "--function",
            "hello",
            "--expression",
            "rate(1 minutes)",
        ],
    )
    .failed();
    assert!(
        bad.stderr.contains("singular for a value of 1"),
        "{}",
        bad.stderr
    );
    let missing = tern(
        &server,
        &[
            "schedule",
            "add",
            "orphan",
            "--function",
            "nope",
            "--expression",
            "rate(1 minute)",
        ],
    )
    .failed();
    assert!(missing.stderr.contains("not found"), "{}", missing.stderr);

    let deleted = tern(&server, &["schedule", "delete", "weekdays"]).ok();
    assert_eq!(deleted.stdout.trim(), "deleted schedule weekdays");
    let gone = tern(&server, &["schedule", "get", "weekdays"]).failed();
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
}
