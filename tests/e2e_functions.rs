//! End to end through a real `tern server`: deploy python, node and provided functions,
//! invoke them, and check results, errors, timeouts, warm reuse and bad input.

mod support;

use serde_json::{json, Value};
use support::{zip, Server, ACCOUNT};

const PY_APP: &str = r#"
import os, time
COUNT = 0
def handler(event, context):
    global COUNT
    COUNT += 1
    print("handling", event)
    return {
        "event": event,
        "count": COUNT,
        "pid": os.getpid(),
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "request_id": context.aws_request_id,
        "remaining_ok": context.get_remaining_time_in_millis() > 0,
        "env": os.environ.get("GREETING"),
    }

def fail(event, context):
    raise ValueError("bad value: " + str(event.get("x")))

def sleepy(event, context):
    time.sleep(30)
    return "never"

def crash(event, context):
    os._exit(3)
"#;

const NODE_APP: &str = r#"
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  console.log("node got", JSON.stringify(event));
  return { echo: event, count, name: context.functionName };
};
exports.callback = (event, context, cb) => cb(null, { cb: true });
exports.fail = async () => { throw new TypeError("node says no"); };
"#;

const PROVIDED_BOOTSTRAP: &str = r#"#!/usr/bin/env python3
import http.client, json, os
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse()
    event = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    body = json.dumps({"provided": event, "handler": os.environ.get("_HANDLER")}).encode()
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body=body)
    conn.getresponse().read()
"#;

fn py_zip() -> Vec<u8> {
    zip(&[("app.py", PY_APP.as_bytes(), 0o644)])
}

fn deploy_py(server: &Server, name: &str, handler: &str, extra: Value) {
    server.create_function(name, "python3.11", handler, &py_zip(), extra);
}

#[test]
fn python_function_returns_result_and_reuses_warm_instance() {
    let server = Server::start();
    let created = server.create_function(
        "hello",
        "python3.11",
        "app.handler",
        &py_zip(),
        json!({"Environment": {"Variables": {"GREETING": "hi"}}, "MemorySize": 256}),
    );
    assert_eq!(created["State"], "Active");
    assert_eq!(
        created["FunctionArn"],
        format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:hello")
    );

    let first = server.invoke("hello", r#"{"n": 1}"#);
    assert_eq!(first.function_error, None, "{:?}", first.body);
    assert_eq!(first.body["event"], json!({"n": 1}));
    assert_eq!(first.body["function_name"], "hello");
    assert_eq!(first.body["memory"], 256);
    assert_eq!(first.body["env"], "hi");
    assert_eq!(first.body["remaining_ok"], true);
    assert_eq!(first.body["request_id"], first.request_id);
    assert!(first.log.contains("START RequestId: "), "{}", first.log);
    assert!(first.log.contains("handling {'n': 1}"), "{}", first.log);
    assert!(first.log.contains("Init Duration: "), "{}", first.log);

    let second = server.invoke("hello", "");
    assert_eq!(second.body["event"], json!({}), "empty payload is {{}}");
    assert_eq!(second.body["count"], 2, "the warm instance serves again");
    assert_eq!(second.body["pid"], first.body["pid"]);
    assert!(!second.log.contains("Init Duration"), "{}", second.log);
    assert!(second.log.contains("REPORT RequestId: "), "{}", second.log);
}

#[test]
fn function_error_is_200_with_unhandled_header_and_lambda_shape() {
    let server = Server::start();
    deploy_py(&server, "failing", "app.fail", json!({}));
    let out = server.invoke("failing", r#"{"x": 7}"#);
    assert_eq!(out.status, 200);
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.body["errorType"], "ValueError");
    assert_eq!(out.body["errorMessage"], "bad value: 7");
    assert!(out.body["stackTrace"].is_array(), "{}", out.body);
    // The instance survives a handled function error.
    let again = server.invoke("failing", r#"{"x": 8}"#);
    assert_eq!(again.body["errorMessage"], "bad value: 8");
    assert!(!again.log.contains("Init Duration"), "{}", again.log);
}

#[test]
fn timeout_reports_sandbox_timedout_and_replaces_the_instance() {
    let server = Server::start();
    deploy_py(&server, "sleepy", "app.sleepy", json!({"Timeout": 1}));
    let out = server.invoke("sleepy", "{}");
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.body["errorType"], "Sandbox.Timedout");
    let msg = out.body["errorMessage"].as_str().unwrap_or_default();
    assert_eq!(
        msg,
        format!(
            "RequestId: {} Error: Task timed out after 1.00 seconds",
            out.request_id
        )
    );
    // Same function, switched to a quick handler: a fresh instance answers.
    let resp = server.request(
        "PUT",
        "/2015-03-31/functions/sleepy/configuration",
        &[],
        br#"{"Handler": "app.handler"}"#,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let next = server.invoke("sleepy", "{}");
    assert_eq!(next.function_error, None, "{}", next.body);
    assert!(next.log.contains("Init Duration"), "{}", next.log);
}

#[test]
fn a_timed_out_function_gets_a_fresh_instance_on_the_next_invoke() {
    let server = Server::start();
    let app = "import time\nN = 0\ndef handler(e, c):\n    global N\n    N += 1\n    if e.get('sleep'):\n        time.sleep(10)\n    return N\n";
    server.create_function(
        "flaky",
        "python3.11",
        "app.handler",
        &zip(&[("app.py", app.as_bytes(), 0o644)]),
        json!({"Timeout": 1}),
    );
    let out = server.invoke("flaky", r#"{"sleep": true}"#);
    assert_eq!(out.body["errorType"], "Sandbox.Timedout");
    let next = server.invoke("flaky", "{}");
    assert_eq!(next.body, json!(1), "a new instance starts counting at 1");
}

#[test]
fn crash_mid_invoke_is_an_error_not_a_hang() {
    let server = Server::start();
    deploy_py(&server, "crashy", "app.crash", json!({}));
    let out = server.invoke("crashy", "{}");
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.body["errorType"], "Runtime.ExitError");
    assert!(
        out.body["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("exit status 3"),
        "{}",
        out.body
    );
    assert!(server.healthy());
}

#[test]
fn missing_handler_module_is_an_init_error() {
    let server = Server::start();
    deploy_py(&server, "nomod", "missing.handler", json!({}));
    let out = server.invoke("nomod", "{}");
    assert_eq!(out.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(out.body["errorType"], "Runtime.ImportModuleError");
    assert!(
        out.body["errorMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("Unable to import module 'missing'"),
        "{}",
        out.body
    );
    assert!(server.healthy());
}

#[test]
fn an_init_error_reports_the_memory_its_init_used() {
    let server = Server::start();
    let code = "blob = bytearray(64 * 1024 * 1024)\n\
                for i in range(0, len(blob), 4096):\n    blob[i] = 1\n\
                raise RuntimeError('init failed after allocating')\n";
    let pkg = zip(&[("heavy.py", code.as_bytes(), 0o644)]);
    server.create_function("heavy", "python3.11", "heavy.handler", &pkg, json!({}));
    let out = server.invoke("heavy", "{}");
    assert_eq!(
        out.function_error.as_deref(),
        Some("Unhandled"),
        "{}",
        out.body
    );
    let report = out
        .log
        .lines()
        .find(|l| l.starts_with("REPORT RequestId: "))
        .unwrap_or_else(|| panic!("no REPORT line in {}", out.log));
    let used: u64 = report
        .split("Max Memory Used: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Max Memory Used in {report}"));
    // The peak comes from the instance's cgroup, which only a sandboxed server has.
    if support::sandboxed() {
        assert!(used >= 64, "{report}");
    } else {
        assert_eq!(used, 0, "{report}");
    }
}

#[test]
fn node_function_supports_async_callback_and_errors() {
    let server = Server::start();
    let code = zip(&[("index.js", NODE_APP.as_bytes(), 0o644)]);
    server.create_function("node", "nodejs20.x", "index.handler", &code, json!({}));
    let out = server.invoke("node", r#"{"k": "v"}"#);
    assert_eq!(out.function_error, None, "{}", out.body);
    assert_eq!(
        out.body,
        json!({"echo": {"k": "v"}, "count": 1, "name": "node"})
    );
    assert!(out.log.contains("node got"), "{}", out.log);
    let warm = server.invoke("node", "{}");
    assert_eq!(warm.body["count"], 2);

    server.create_function("nodecb", "nodejs20.x", "index.callback", &code, json!({}));
    assert_eq!(server.invoke("nodecb", "{}").body, json!({"cb": true}));

    server.create_function("nodefail", "nodejs20.x", "index.fail", &code, json!({}));
    let err = server.invoke("nodefail", "{}");
    assert_eq!(err.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(err.body["errorType"], "TypeError");
    assert_eq!(err.body["errorMessage"], "node says no");
}

#[test]
fn provided_runtime_runs_bootstrap_from_the_zip() {
    let server = Server::start();
    let code = zip(&[("bootstrap", PROVIDED_BOOTSTRAP.as_bytes(), 0o755)]);
    server.create_function("custom", "provided.al2023", "my.handler", &code, json!({}));
    let out = server.invoke("custom", r#"{"a": [1, 2]}"#);
    assert_eq!(out.function_error, None, "{}", out.body);
    assert_eq!(
        out.body,
        json!({"provided": {"a": [1, 2]}, "handler": "my.handler"})
    );
}

#[test]
fn management_api_lists_gets_updates_and_deletes() {
    let server = Server::start();
    for i in 0..5 {
        deploy_py(&server, &format!("fn-{i}"), "app.handler", json!({}));
    }
    // Pagination with MaxItems and Marker walks every function once.
    let mut names = Vec::new();
    let mut marker = String::new();
    loop {
        let path = if marker.is_empty() {
            "/2015-03-31/functions/?MaxItems=2".to_string()
        } else {
            format!("/2015-03-31/functions/?MaxItems=2&Marker={marker}")
        };
        let page = server.request("GET", &path, &[], b"").json();
        for f in page["Functions"].as_array().expect("Functions") {
            names.push(f["FunctionName"].as_str().unwrap_or_default().to_string());
        }
        match page["NextMarker"].as_str() {
            Some(m) => marker = m.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["fn-0", "fn-1", "fn-2", "fn-3", "fn-4"]);

    // Every accepted form of FunctionName resolves.
    for form in [
        "fn-1".to_string(),
        "fn-1:$LATEST".to_string(),
        format!("{ACCOUNT}:function:fn-1"),
        format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:fn-1"),
    ] {
        let encoded = form.replace(':', "%3A").replace('$', "%24");
        let resp = server.request("GET", &format!("/2015-03-31/functions/{encoded}"), &[], b"");
        assert_eq!(resp.status, 200, "{form}: {}", resp.text());
        assert_eq!(resp.json()["Configuration"]["FunctionName"], "fn-1");
    }

    let before = server
        .request("GET", "/2015-03-31/functions/fn-1/configuration", &[], b"")
        .json();
    let new_code = zip(&[(
        "app.py",
        b"def handler(e, c):\n    return 'v2'\n".as_slice(),
        0o644,
    )]);
    let body = json!({"ZipFile": support::b64(&new_code)}).to_string();
    let updated = server.request(
        "PUT",
        "/2015-03-31/functions/fn-1/code",
        &[],
        body.as_bytes(),
    );
    assert_eq!(updated.status, 200, "{}", updated.text());
    let updated = updated.json();
    assert_ne!(updated["CodeSha256"], before["CodeSha256"]);
    assert_ne!(updated["RevisionId"], before["RevisionId"]);
    assert_eq!(server.invoke("fn-1", "{}").body, json!("v2"));

    // A stale RevisionId is refused.
    let stale = json!({"Timeout": 9, "RevisionId": before["RevisionId"]}).to_string();
    let resp = server.request(
        "PUT",
        "/2015-03-31/functions/fn-1/configuration",
        &[],
        stale.as_bytes(),
    );
    assert_eq!(resp.status, 412, "{}", resp.text());
    assert_eq!(resp.error_type(), Some("PreconditionFailedException"));

    let resp = server.request("DELETE", "/2015-03-31/functions/fn-1", &[], b"");
    assert_eq!(resp.status, 204);
    let resp = server.request("GET", "/2015-03-31/functions/fn-1", &[], b"");
    assert_eq!(resp.status, 404);
    assert_eq!(resp.error_type(), Some("ResourceNotFoundException"));

    let settings = server
        .request("GET", "/2016-08-19/account-settings/", &[], b"")
        .json();
    assert_eq!(settings["AccountUsage"]["FunctionCount"], 4);
}

#[test]
fn bad_input_gets_clear_errors_and_the_server_keeps_serving() {
    let server = Server::start();
    deploy_py(&server, "ok", "app.handler", json!({}));
    let post = |body: &str| {
        server.request(
            "POST",
            "/2015-03-31/functions",
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    };
    let check = |resp: support::Response, status: u16, etype: &str, needle: &str| {
        assert_eq!(resp.status, status, "{}", resp.text());
        assert_eq!(resp.error_type(), Some(etype), "{}", resp.text());
        let msg = resp.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            msg.contains(needle),
            "message {msg:?} should mention {needle:?}"
        );
    };

    check(
        post("{not json"),
        400,
        "InvalidRequestContentException",
        "parse",
    );
    check(
        post(r#"{"FunctionName": "x", "Code": {}, "Bogus": 1}"#),
        400,
        "InvalidParameterValueException",
        "Bogus",
    );
    check(
        post(r#"{"FunctionName": "x", "Code": {}, "MemorySize": "big"}"#),
        400,
        "InvalidParameterValueException",
        "MemorySize",
    );
    let resp = server.try_create_function(
        "x",
        "python3.11",
        "app.handler",
        &py_zip(),
        json!({"MemorySize": 64}),
    );
    check(resp, 400, "InvalidParameterValueException", "memorySize");
    let resp = server.try_create_function(
        "x",
        "python3.11",
        "app.handler",
        &py_zip(),
        json!({"Timeout": 901}),
    );
    check(resp, 400, "InvalidParameterValueException", "timeout");
    let resp = server.try_create_function("x", "cobol85", "app.handler", &py_zip(), json!({}));
    check(resp, 400, "InvalidParameterValueException", "python3.11");
    let resp = server.try_create_function("ok", "python3.11", "app.handler", &py_zip(), json!({}));
    check(resp, 409, "ResourceConflictException", "ok");

    let slip = zip(&[("../../evil.py", b"x = 1\n".as_slice(), 0o644)]);
    let resp = server.try_create_function("slip", "python3.11", "app.handler", &slip, json!({}));
    check(resp, 400, "InvalidParameterValueException", "unzip");
    let resp = server.try_create_function(
        "notzip",
        "python3.11",
        "app.handler",
        b"plain text",
        json!({}),
    );
    check(resp, 400, "InvalidParameterValueException", "unzip");

    let resp = server.request(
        "POST",
        "/2015-03-31/functions/ok/invocations",
        &[],
        b"{oops",
    );
    check(resp, 400, "InvalidRequestContentException", "json");
    let huge = format!("\"{}\"", "a".repeat(6 * 1024 * 1024 + 10));
    let resp = server.request(
        "POST",
        "/2015-03-31/functions/ok/invocations",
        &[],
        huge.as_bytes(),
    );
    check(resp, 413, "RequestTooLargeException", "smaller than");
    let resp = server.request("POST", "/2015-03-31/functions/nope/invocations", &[], b"{}");
    check(resp, 404, "ResourceNotFoundException", "nope");
    // Asynchronous invokes are checked before anything is queued.
    let event = |name: &str, headers: &[(&str, &str)], body: &[u8]| {
        let mut h = vec![("x-amz-invocation-type", "Event")];
        h.extend_from_slice(headers);
        server.request(
            "POST",
            &format!("/2015-03-31/functions/{name}/invocations"),
            &h,
            body,
        )
    };
    check(
        event("nope", &[], b"{}"),
        404,
        "ResourceNotFoundException",
        "nope",
    );
    let over_async = format!("\"{}\"", "x".repeat(1024 * 1024));
    check(
        event("ok", &[], over_async.as_bytes()),
        413,
        "RequestTooLargeException",
        "1048576",
    );
    check(
        event("ok", &[], b"{not json"),
        400,
        "InvalidRequestContentException",
        "json",
    );
    check(
        event("ok", &[("x-tern-idempotency-key", "")], b"{}"),
        400,
        "InvalidParameterValueException",
        "Idempotency",
    );
    let resp = server.request(
        "POST",
        "/2015-03-31/functions/ok/invocations",
        &[("x-amz-invocation-type", "DryRun")],
        b"{}",
    );
    assert_eq!(resp.status, 204);

    assert!(server.healthy());
    assert_eq!(
        server.invoke("ok", r#"{"still": "alive"}"#).body["event"]["still"],
        "alive"
    );
}

#[test]
fn requests_without_a_valid_signature_are_refused() {
    let server = Server::start();
    let unsigned = server.raw_request("GET", "/2015-03-31/functions/", &[], b"");
    assert_eq!(unsigned.status, 403);
    assert_eq!(
        unsigned.error_type(),
        Some("MissingAuthenticationTokenException")
    );

    let wrong_secret = server.request_as(
        &server.access_key,
        "not-the-secret",
        "GET",
        "/2015-03-31/functions/",
        &[],
        b"",
    );
    assert_eq!(wrong_secret.status, 403);
    assert_eq!(wrong_secret.error_type(), Some("InvalidSignatureException"));

    let unknown = server.request_as(
        "AKIANOTAKEY00000000",
        "x",
        "GET",
        "/2015-03-31/functions/",
        &[],
        b"",
    );
    assert_eq!(unknown.status, 403);
    assert_eq!(unknown.error_type(), Some("UnrecognizedClientException"));

    // A signature from 10 minutes ago is refused for clock skew.
    let old = tern_core::sigv4::format_amz_date(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64
            - 600,
    );
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/{}/us-east-1/lambda/aws4_request, SignedHeaders=host;x-amz-date, Signature=00",
        server.access_key,
        &old[..8]
    );
    let skewed = server.raw_request(
        "GET",
        "/2015-03-31/functions/",
        &[("x-amz-date".into(), old), ("authorization".into(), auth)],
        b"",
    );
    assert_eq!(skewed.status, 403);
    assert!(
        skewed.text().contains("Signature expired"),
        "{}",
        skewed.text()
    );

    // Health stays open for probes.
    assert!(server.healthy());
}

#[test]
fn logs_endpoint_returns_lines_per_request() {
    let server = Server::start();
    deploy_py(&server, "chatty", "app.handler", json!({}));
    let out = server.invoke("chatty", r#"{"tag": "find-me"}"#);
    let mut found = Value::Null;
    // The log writer is asynchronous; give it a moment.
    for _ in 0..50 {
        let resp = server.request(
            "GET",
            &format!(
                "/tern/v1/functions/chatty/logs?request_id={}",
                out.request_id
            ),
            &[],
            b"",
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        found = resp.json();
        if found["lines"].as_array().is_some_and(|l| l.len() >= 4) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let lines: Vec<&str> = found["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert!(lines[0].starts_with("START RequestId:"), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("find-me")), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("REPORT RequestId:")),
        "{lines:?}"
    );
}

#[test]
fn server_stops_gracefully_on_sigterm() {
    let mut server = Server::start();
    deploy_py(&server, "warm", "app.handler", json!({}));
    server.invoke("warm", "{}");
    assert!(
        server.stop(std::time::Duration::from_secs(15)),
        "server did not exit within 15 s of SIGTERM"
    );
    if support::sandboxed() {
        // Its cgroup subtree is gone with it.
        let id = server_id(&server);
        let left: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
            .expect("cgroup fs")
            .flatten()
            .map(|h| h.path().join("tern").join(&id))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        assert!(left.is_empty(), "cgroups left behind: {left:?}");
    }
}

/// The id naming the server's cgroups, kept in its data dir.
fn server_id(server: &Server) -> String {
    std::fs::read_to_string(server.data_dir.join("server-id"))
        .expect("server-id file")
        .trim()
        .to_string()
}

/// Cgroup directories of the server with this data dir, in every hierarchy.
fn server_cgroups(server: &Server) -> Vec<String> {
    let id = server_id(server);
    std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup fs")
        .flatten()
        .map(|h| h.path().join("tern").join(&id))
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn sigterm_amid_cold_starts_and_running_invokes_leaves_no_cgroups() {
    if !support::sandboxed() {
        return;
    }
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(config.path(), "shutdown_grace_secs = 1\n").expect("write config");
    let config_path = config.path().display().to_string();
    let mut server = Server::start_with(&["--config", &config_path]);
    for i in 0..4 {
        deploy_py(
            &server,
            &format!("sleepy-{i}"),
            "app.sleepy",
            json!({"Timeout": 30}),
        );
    }
    std::thread::scope(|scope| {
        let server = &server;
        for i in 0..8 {
            scope.spawn(move || {
                // Answered or cut off by the shutdown; either way nothing may be left.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    server.request(
                        "POST",
                        &format!("/2015-03-31/functions/sleepy-{}/invocations", i % 4),
                        &[],
                        b"{}",
                    )
                }));
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(400));
        let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    });
    assert!(
        server.stop(std::time::Duration::from_secs(20)),
        "server did not exit within 20 s of SIGTERM"
    );
    let left = server_cgroups(&server);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

#[test]
fn all_output_printed_before_returning_precedes_end_in_the_log_tail() {
    let server = Server::start();
    let app = "def handler(e, c):\n    for i in range(e['n']):\n        print('line %05d' % i)\n    return 'done'\n";
    server.create_function(
        "chatty",
        "python3.11",
        "app.handler",
        &zip(&[("app.py", app.as_bytes(), 0o644)]),
        json!({}),
    );
    for round in 0..20 {
        let out = server.invoke("chatty", r#"{"n": 150}"#);
        let end = out.log.find("END RequestId").expect("END line");
        let last = out.log.find("line 00149").unwrap_or_else(|| {
            panic!(
                "round {round}: last line missing from the tail:\n{}",
                out.log
            )
        });
        assert!(last < end, "round {round}: output after END:\n{}", out.log);
    }
}

#[test]
fn an_unsandboxed_server_says_why_a_function_with_layers_does_not_start() {
    // Layers are shown at /opt, which only a sandbox's own root has.
    let server = Server::start_with(&["--dev-unsandboxed"]);
    let layer = zip(&[("python/mylib.py", b"VALUE = 1\n", 0o644)]);
    let published = server.request(
        "POST",
        "/2018-10-31/layers/deps/versions",
        &[("content-type", "application/json")],
        json!({"Content": {"ZipFile": support::b64(&layer)}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(published.status, 201, "{}", published.text());
    let arn = published.json()["LayerVersionArn"]
        .as_str()
        .expect("LayerVersionArn")
        .to_string();
    let code = zip(&[("app.py", b"def handler(e, c):\n    return 1\n", 0o644)]);
    server.create_function(
        "layered",
        "python3.11",
        "app.handler",
        &code,
        json!({"Layers": [arn]}),
    );
    let resp = server.request(
        "POST",
        "/2015-03-31/functions/layered/invocations",
        &[],
        b"{}",
    );
    assert!(resp.status >= 400, "{}: {}", resp.status, resp.text());
    assert!(
        resp.text()
            .contains("functions with layers need the sandbox launcher"),
        "{}",
        resp.text()
    );
}

#[test]
fn shipped_pyc_files_are_used_because_extraction_keeps_modification_times() {
    use std::io::Write;
    // A .pyc compiled from one source, shipped beside another source of the same size
    // and time: Python takes the .pyc only if the extracted .py keeps its time (else it
    // counts as stale and the source is compiled at every cold start).
    let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_614_834_368);
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("shipped.py");
    let write_source = |text: &str| {
        std::fs::write(&source, text).expect("write source");
        std::fs::File::options()
            .write(true)
            .open(&source)
            .and_then(|f| f.set_modified(at))
            .expect("set mtime");
    };
    write_source("VALUE = 'cached'\n");
    let pyc = dir.path().join("shipped.pyc");
    let status = std::process::Command::new("python3.11")
        .args(["-c", "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)"])
        .arg(&source)
        .arg(&pyc)
        .status()
        .expect("run python3.11");
    assert!(status.success(), "py_compile failed");
    write_source("VALUE = 'source'\n");

    // 2021-03-04T05:06:08Z, an even second as the zip's DOS time needs.
    let dos = zip::DateTime::from_date_and_time(2021, 3, 4, 5, 6, 8).expect("date");
    let options = zip::write::SimpleFileOptions::default().last_modified_time(dos);
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let files: [(&str, Vec<u8>); 3] = [
            (
                "app.py",
                b"import shipped\ndef handler(e, c):\n    return shipped.VALUE\n".to_vec(),
            ),
            ("shipped.py", std::fs::read(&source).expect("source")),
            (
                "__pycache__/shipped.cpython-311.pyc",
                std::fs::read(&pyc).expect("pyc"),
            ),
        ];
        for (name, data) in files {
            w.start_file(name, options).expect("start");
            w.write_all(&data).expect("write");
        }
        w.finish().expect("finish");
    }
    let server = Server::start();
    server.create_function("pyc", "python3.11", "app.handler", buf.get_ref(), json!({}));
    let out = server.invoke("pyc", "{}");
    assert_eq!(out.body, json!("cached"), "{}", out.log);
}
