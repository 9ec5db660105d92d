//! The operations table (`crates/gateway/src/operations.rs`) against the real router: every
//! operation marked supported reaches its handler, every other one is answered with an
//! error that names it, and paths outside the Lambda model stay unknown operations.

mod support;

use support::Server;
use tern_gateway::operations::{Support, OPERATIONS};

/// A request path and query for an operation, with every `{Label}` filled in.
fn request_for(uri: &str) -> String {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let path = path
        .split('/')
        .map(|segment| match segment {
            "{FunctionName}" => "ops-probe-missing".to_string(),
            "{Resource}" => format!(
                "arn:aws:lambda:{}:{}:function:ops-probe-missing",
                support::REGION,
                support::ACCOUNT
            ),
            s if s.starts_with('{') => "probe".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/");
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

fn not_supported_message(name: &str) -> String {
    format!("tern does not support the {name} operation")
}

#[test]
fn the_router_serves_exactly_the_operations_marked_supported() {
    let server = Server::start();
    let mut wrong = Vec::new();
    for op in OPERATIONS {
        let path = request_for(op.uri);
        let resp = server.request(op.method, &path, &[], b"");
        let text = resp.text();
        let answered = format!("{} {path} -> {} {text}", op.method, resp.status);
        match op.support {
            Support::Supported => {
                // A real handler answers, whatever it thinks of the probe's empty input.
                if resp.status == 405
                    || text.contains("does not support")
                    || resp.error_type() == Some("UnknownOperationException")
                {
                    wrong.push(format!("{} is marked supported but: {answered}", op.name));
                }
            }
            Support::NotSupported => {
                let named = text.contains(&not_supported_message(op.name));
                if resp.status != 400
                    || resp.error_type() != Some("InvalidParameterValueException")
                    || !named
                {
                    wrong.push(format!(
                        "{} is marked not supported but: {answered}",
                        op.name
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn a_path_outside_the_lambda_model_is_an_unknown_operation() {
    let server = Server::start();
    for (method, path) in [
        ("GET", "/2015-03-31/nothing-here"),
        ("PATCH", "/2015-03-31/functions/f"),
        ("POST", "/2015-03-31/functions/f/configuration"),
    ] {
        let resp = server.request(method, path, &[], b"");
        assert_eq!(resp.status, 404, "{method} {path}: {}", resp.text());
        assert_eq!(resp.error_type(), Some("UnknownOperationException"));
        let message = resp.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            message.contains(method) && message.contains(path),
            "{method} {path}: {message}"
        );
    }
}
