//! Function URLs through a real `tern server`, for what the compat suite's shared server
//! cannot show: the host form under a configured public base, and the body limit.

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
