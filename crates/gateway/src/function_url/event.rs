//! A function URL request as Lambda's payload-format-2.0 event (the shape API Gateway's
//! HTTP APIs also send), built exactly as Lambda builds it: lowercase headers with
//! repeats joined by `,`, the `Cookie` header as `cookies` (and not among the headers),
//! decoded query parameters with repeats joined by `,`, and a body that is text or
//! base64.

use axum::http::HeaderMap;
use base64::Engine;
use serde_json::{json, Map, Value};

/// The IAM identity of a signed request (`requestContext.authorizer.iam`).
#[derive(Debug, Clone)]
pub struct IamIdentity {
    pub access_key: String,
    pub account_id: String,
}

/// What the event is built from.
pub struct EventInput<'a> {
    pub method: &'a str,
    /// The path the function sees: without the `/url/<url-id>` prefix, starting with `/`.
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    /// `HTTP/1.1` and the like.
    pub protocol: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: &'a str,
    pub url_id: &'a str,
    pub account_id: &'a str,
    /// The host the client addressed (`requestContext.domainName`).
    pub domain_name: &'a str,
    pub request_id: &'a str,
    pub time_ms: i64,
    pub iam: Option<&'a IamIdentity>,
}

/// Whether a body of this `Content-Type` reaches the function as text; others (and
/// text that is not UTF-8) arrive base64. Without a type, UTF-8 is text.
fn is_text_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media.starts_with("text/")
        || matches!(
            media.as_str(),
            "application/json" | "application/javascript" | "application/xml" | "application/yaml"
        )
        || media.ends_with("+json")
        || media.ends_with("+xml")
}

fn header_text(v: &axum::http::HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

/// Headers (lowercase, repeats joined by `,`) and the cookies of every `Cookie` header.
fn headers_and_cookies(headers: &HeaderMap) -> (Map<String, Value>, Vec<String>) {
    let mut out = Map::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values = headers.get_all(name).iter().map(header_text);
        if name == "cookie" {
            for v in values {
                cookies.extend(
                    v.split(';')
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .map(str::to_string),
                );
            }
            continue;
        }
        let joined = values.collect::<Vec<_>>().join(",");
        out.insert(name.as_str().to_string(), Value::String(joined));
    }
    (out, cookies)
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Decoded query parameters, repeats joined by `,` in their order.
fn query_parameters(raw_query: &str) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), decode(v));
        match out.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                out.insert(k, Value::String(v));
            }
        }
    }
    out
}

pub fn build(input: &EventInput<'_>) -> Value {
    let (headers, cookies) = headers_and_cookies(input.headers);
    let content_type = input
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let user_agent = input
        .headers
        .get("user-agent")
        .map(header_text)
        .unwrap_or_default();
    let domain_prefix = input
        .domain_name
        .split('.')
        .next()
        .unwrap_or(input.domain_name);
    let mut request_context = json!({
        "accountId": input.account_id,
        "apiId": input.url_id,
        "domainName": input.domain_name,
        "domainPrefix": domain_prefix,
        "http": {
            "method": input.method,
            "path": input.raw_path,
            "protocol": input.protocol,
            "sourceIp": input.source_ip,
            "userAgent": user_agent,
        },
        "requestId": input.request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": tern_core::timefmt::request_time(input.time_ms),
        "timeEpoch": input.time_ms,
    });
    if let (Some(iam), Some(ctx)) = (input.iam, request_context.as_object_mut()) {
        ctx.insert(
            "authorizer".to_string(),
            json!({"iam": {
                "accessKey": iam.access_key,
                "accountId": iam.account_id,
                "callerId": iam.access_key,
                "cognitoIdentity": null,
                "principalOrgId": null,
                "userArn": format!("arn:aws:iam::{}:root", iam.account_id),
                "userId": iam.account_id,
            }}),
        );
    }
    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("routeKey".into(), json!("$default"));
    event.insert("rawPath".into(), json!(input.raw_path));
    event.insert("rawQueryString".into(), json!(input.raw_query));
    if !cookies.is_empty() {
        event.insert("cookies".into(), json!(cookies));
    }
    event.insert("headers".into(), Value::Object(headers));
    let query = query_parameters(input.raw_query);
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), Value::Object(query));
    }
    event.insert("requestContext".into(), request_context);
    let text = is_text_type(content_type)
        .then(|| std::str::from_utf8(input.body).ok())
        .flatten();
    if !input.body.is_empty() {
        let body = match text {
            Some(t) => t.to_string(),
            None => base64::engine::general_purpose::STANDARD.encode(input.body),
        };
        event.insert("body".into(), Value::String(body));
    }
    event.insert(
        "isBase64Encoded".into(),
        json!(!input.body.is_empty() && text.is_none()),
    );
    Value::Object(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(headers: &'a HeaderMap, query: &'a str, body: &'a [u8]) -> EventInput<'a> {
        EventInput {
            method: "POST",
            raw_path: "/a/b",
            raw_query: query,
            protocol: "HTTP/1.1",
            headers,
            body,
            source_ip: "127.0.0.1",
            url_id: "abcdefghijklmnopqrstuvwxyz012345",
            account_id: "000000000000",
            domain_name: "127.0.0.1:8900",
            request_id: "req-1",
            time_ms: 1_583_348_638_390,
            iam: None,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn event_has_every_field_of_payload_format_2() {
        let h = headers(&[("user-agent", "curl/8"), ("content-type", "text/plain")]);
        let e = build(&input(&h, "x=1", b"hello"));
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "$default");
        assert_eq!(e["rawPath"], "/a/b");
        assert_eq!(e["rawQueryString"], "x=1");
        assert_eq!(e["body"], "hello");
        assert_eq!(e["isBase64Encoded"], false);
        let ctx = &e["requestContext"];
        assert_eq!(ctx["http"]["method"], "POST");
        assert_eq!(ctx["http"]["path"], "/a/b");
        assert_eq!(ctx["http"]["protocol"], "HTTP/1.1");
        assert_eq!(ctx["http"]["sourceIp"], "127.0.0.1");
        assert_eq!(ctx["http"]["userAgent"], "curl/8");
        assert_eq!(ctx["requestId"], "req-1");
        assert_eq!(ctx["timeEpoch"], 1_583_348_638_390_i64);
        assert_eq!(ctx["time"], "04/Mar/2020:19:03:58 +0000");
        assert_eq!(ctx["apiId"], "abcdefghijklmnopqrstuvwxyz012345");
        assert_eq!(ctx["routeKey"], "$default");
        assert_eq!(ctx["stage"], "$default");
        assert!(e.get("cookies").is_none(), "no cookies, no member");
        assert!(ctx.get("authorizer").is_none());
    }

    #[test]
    fn repeated_headers_join_and_cookies_leave_the_headers() {
        let h = headers(&[
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("cookie", "s=1; theme=dark"),
            ("cookie", "late=2"),
        ]);
        let e = build(&input(&h, "", b""));
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["cookies"], json!(["s=1", "theme=dark", "late=2"]));
        assert!(e.get("body").is_none(), "an empty body is left out");
        assert_eq!(e["isBase64Encoded"], false);
    }

    #[test]
    fn query_parameters_are_decoded_and_repeats_joined() {
        let h = HeaderMap::new();
        let e = build(&input(&h, "a=1&a=2&b=x%20y&flag", b""));
        assert_eq!(e["rawQueryString"], "a=1&a=2&b=x%20y&flag");
        assert_eq!(
            e["queryStringParameters"],
            json!({"a": "1,2", "b": "x y", "flag": ""})
        );
        let none = build(&input(&h, "", b""));
        assert!(none.get("queryStringParameters").is_none());
    }

    #[test]
    fn binary_bodies_and_invalid_utf8_arrive_base64() {
        let bin = headers(&[("content-type", "application/octet-stream")]);
        let e = build(&input(&bin, "", b"\x00\x01\xff"));
        assert_eq!(e["body"], "AAH/");
        assert_eq!(e["isBase64Encoded"], true);
        let bad_text = headers(&[("content-type", "text/plain")]);
        let e = build(&input(&bad_text, "", b"\xff\xfe"));
        assert_eq!(e["isBase64Encoded"], true);
        let json_type = headers(&[("content-type", "application/json; charset=utf-8")]);
        let e = build(&input(&json_type, "", br#"{"a":1}"#));
        assert_eq!(e["body"], r#"{"a":1}"#);
        assert_eq!(e["isBase64Encoded"], false);
    }

    #[test]
    fn a_signed_request_carries_its_iam_identity() {
        let h = HeaderMap::new();
        let iam = IamIdentity {
            access_key: "AKID".into(),
            account_id: "000000000000".into(),
        };
        let mut i = input(&h, "", b"");
        i.iam = Some(&iam);
        let e = build(&i);
        assert_eq!(
            e["requestContext"]["authorizer"]["iam"]["accessKey"],
            "AKID"
        );
    }
}
