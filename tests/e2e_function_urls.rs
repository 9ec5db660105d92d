//! Function URLs through a real `tern server`, for what the compat suite's shared server
//! cannot show: the host form under a configured public base, the body limit, and an
//! `AWS_IAM` URL against a key of another namespace.

mod support;

use serde_json::{json, Value};
use support::{zip, Server};

const APP: &str = r#"
def handler(event, context):
    return {"rawPath": event["rawPath"], "query": event.get("queryStringParameters"),
            "domainName": event["requestContext"]["domainName"],
            "apiId": event["requestContext"]["apiId"]}
"#;

/// Deploys the echo function with a NONE URL; returns the URL config.
fn function_with_url(server: &Server, name: &str) -> Value {
    server.create_function(
        name,
        "python3.11",
        "app.handler",
        &zip(&[("app.py", APP.as_bytes(), 0o644)]),
        json!({}),
    );
    let resp = server.request(
        "POST",
        &format!("/2021-10-31/functions/{name}/url"),
        &[("content-type", "application/json")],
        br#"{"AuthType": "NONE"}"#,
    );
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json()
}

#[test]
fn a_public_base_with_the_id_in_the_host_routes_requests_by_host() {
    let server = Server::start_with(&["--url-public-base", "http://{id}.lambda-url.test/"]);
    let config = function_with_url(&server, "by-host");
    let url = config["FunctionUrl"].as_str().unwrap().to_string();
    let id = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix(".lambda-url.test/"))
        .unwrap_or_else(|| panic!("FunctionUrl {url} is not in the host form"));
    assert_eq!(id.len(), 32);
    let host = format!("{id}.lambda-url.test");
    let resp = server.raw_request("GET", "/a/b?x=1", &[("host".into(), host.clone())], b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let event = resp.json();
    assert_eq!(event["rawPath"], "/a/b");
    assert_eq!(event["query"], json!({"x": "1"}));
    assert_eq!(event["domainName"], host);
    assert_eq!(event["apiId"], id);
    // The path form keeps working on the listener, and the API is still the API.
    let resp = server.raw_request("GET", &format!("/url/{id}/c"), &[], b"");
    assert_eq!(resp.json()["rawPath"], "/c");
    let other = "0".repeat(32);
    let resp = server.raw_request(
        "GET",
        "/",
        &[("host".into(), format!("{other}.lambda-url.test"))],
        b"",
    );
    assert_eq!(resp.status, 404, "an unknown id: {}", resp.text());
    assert!(server.healthy());
}

#[test]
fn a_body_over_the_invoke_limit_is_a_413_and_hostile_paths_are_refused_cleanly() {
    let server = Server::start();
    let config = function_with_url(&server, "limits");
    let url = config["FunctionUrl"].as_str().unwrap();
    let path = &url[server.endpoint.len()..];
    let big = vec![b'a'; 6 * 1024 * 1024 + 1];
    let resp = server.raw_request("POST", path, &[], &big);
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert!(resp.text().contains("6291456"), "{}", resp.text());
    for hostile in ["/url/%ff%fe/x", "/url/ABC/", "/url/x"] {
        let resp = server.raw_request("GET", hostile, &[], b"");
        assert!(
            resp.status == 404 || resp.status == 400,
            "{hostile}: {} {}",
            resp.status,
            resp.text()
        );
    }
    let resp = server.raw_request("GET", &format!("{path}ok%ff"), &[], b"");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["rawPath"], "/ok%ff");
    assert!(server.healthy());
}

#[test]
fn an_aws_iam_url_refuses_another_namespaces_key_before_reading_the_body() {
    use std::io::{Read, Write};

    use tern_store::Store;

    let server = Server::start();
    server.create_function(
        "iam",
        "python3.11",
        "app.handler",
        &zip(&[("app.py", APP.as_bytes(), 0o644)]),
        json!({}),
    );
    let resp = server.request(
        "POST",
        "/2021-10-31/functions/iam/url",
        &[("content-type", "application/json")],
        br#"{"AuthType": "AWS_IAM"}"#,
    );
    assert_eq!(resp.status, 201, "{}", resp.text());
    let url = resp.json()["FunctionUrl"].as_str().unwrap().to_string();
    let path = format!("{}x", &url[server.endpoint.len()..]);
    // A key of another namespace, as the store keeps it.
    let (key, secret) = (
        "AKIAOTHERNAMESPACE01",
        "other-namespace-secret-0000000000000000",
    );
    tern_store::SqliteStore::open(&support::data_path(&server, "tern.db"))
        .expect("open the server's store")
        .put_access_key(&tern_store::AccessKey {
            access_key_id: key.into(),
            secret: secret.into(),
            namespace: "other".into(),
        })
        .expect("put key");
    let own = server.request("GET", &path, &[], b"");
    assert_eq!(own.status, 200, "{}", own.text());
    let theirs = server.request_as(key, secret, "GET", &path, &[], b"");
    assert_eq!(theirs.status, 403, "{}", theirs.text());
    assert_eq!(theirs.json(), json!({"Message": "Forbidden"}));

    // Signed for a 6 MB body that never comes: the 403 must not wait for it.
    let body = vec![b'a'; 6 * 1024 * 1024];
    let signed = support::signed_headers(&server.host, key, secret, "POST", &path, &[], &body);
    let mut s = std::net::TcpStream::connect(&server.host).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let mut head = format!("POST {path} HTTP/1.1\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in &signed {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    let mut answer = [0u8; 256];
    let n = s.read(&mut answer).expect("an answer without the body");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[test]
fn url_bodies_share_a_bounded_budget_and_a_body_without_room_is_a_429() {
    use std::io::Write;

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("tern.toml");
    std::fs::write(&cfg, "[urls]\nmax_buffered_mb = 6\n").expect("config");
    let server = Server::start_with(&["--config", cfg.to_str().expect("utf-8 path")]);
    let config = function_with_url(&server, "budget");
    let url = config["FunctionUrl"].as_str().unwrap();
    let path = &url[server.endpoint.len()..];
    let big = vec![b'a'; 1_000_000];
    let open = |announced: usize, sent: usize| {
        let mut s = std::net::TcpStream::connect(&server.host).expect("connect");
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {announced}\r\n\r\n",
            server.host
        )
        .expect("write");
        s.write_all(&vec![b'a'; sent]).expect("write body");
        std::thread::sleep(std::time::Duration::from_millis(500));
        s
    };

    // Announcing a body costs nothing: only bytes that arrived are held.
    let announcer = open(6_000_000, 0);
    let ok = server.raw_request("POST", path, &[], &big);
    assert_eq!(ok.status, 200, "{}", ok.text());
    drop(announcer);

    // 5.5 MB held of the 6 MiB budget: a small body fits, a 1 MB one does not.
    let holder = open(6_000_000, 5_500_000);
    let small = server.raw_request("POST", path, &[], b"small");
    assert_eq!(
        small.status,
        200,
        "a small body still fits: {}",
        small.text()
    );
    let refused = server.raw_request("POST", path, &[], &big);
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.json(), json!({"Message": "Rate Exceeded."}));

    // The holder goes: its share comes back.
    drop(holder);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again = server.raw_request("POST", path, &[], &big);
        if again.status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", again.text());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
