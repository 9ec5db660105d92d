//! A function's result as the HTTP response of its URL, by Lambda's rules: an object
//! with `statusCode` says the status, headers, cookies and body; any other result
//! (JSON without `statusCode`, or output that is not JSON) is the body of a 200
//! `application/json` response, as returned.

use base64::Engine;
use serde_json::Value;

/// Headers a function may not set: the server frames the response itself, and the
/// hop-by-hop ones describe this connection, not the answer.
const FRAMING_HEADERS: [&str; 7] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "proxy-connection",
];

#[derive(Debug, PartialEq, Eq)]
pub struct Mapped {
    pub status: u16,
    /// Lowercase names; `set-cookie` once per cookie.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a result cannot be a response: Lambda answers 502.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("statusCode must be an integer from 200 to 599")]
    Status,
    #[error("body is marked isBase64Encoded but is not base64")]
    Base64,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn map(output: &[u8]) -> Result<Mapped, MappingError> {
    let plain = || Mapped {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: output.to_vec(),
    };
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(output) else {
        return Ok(plain());
    };
    let Some(status) = obj.get("statusCode") else {
        return Ok(plain());
    };
    let status = status
        .as_u64()
        .or_else(|| status.as_str().and_then(|s| s.parse().ok()))
        .and_then(|s| u16::try_from(s).ok())
        // 1xx are not final answers: hyper turns a 101 into a hijacked connection and
        // others into a bare 500.
        .filter(|s| (200..=599).contains(s))
        .ok_or(MappingError::Status)?;
    let mut headers: Vec<(String, String)> = obj
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_ascii_lowercase(), text(v)))
        .filter(|(k, _)| !FRAMING_HEADERS.contains(&k.as_str()))
        .collect();
    if !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type".into(), "application/json".into()));
    }
    for cookie in obj
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        headers.push(("set-cookie".into(), text(cookie)));
    }
    let base64 = obj
        .get("isBase64Encoded")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut body = match obj.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if base64 => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| MappingError::Base64)?,
        Some(v) => text(v).into_bytes(),
    };
    if matches!(status, 204 | 304) {
        // These have no body; hyper would drop it but still frame it with a
        // Content-Length, which a client or proxy keeping the connection reads as the
        // start of the next response.
        body.clear();
    }
    Ok(Mapped {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_object_sets_status_headers_cookies_and_body() {
        let out = br#"{"statusCode": 201, "headers": {"X-Custom": "yes", "Content-Type": "text/plain", "X-Num": 5},
                       "cookies": ["a=1; Path=/", "b=2"], "body": "made"}"#;
        let m = map(out).unwrap();
        assert_eq!(m.status, 201);
        assert_eq!(m.body, b"made");
        assert!(m.headers.contains(&("x-custom".into(), "yes".into())));
        assert!(m.headers.contains(&("x-num".into(), "5".into())));
        assert!(m
            .headers
            .contains(&("content-type".into(), "text/plain".into())));
        let cookies: Vec<_> = m
            .headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .collect();
        assert_eq!(cookies.len(), 2, "one Set-Cookie per cookie");
    }

    #[test]
    fn a_base64_body_is_decoded() {
        let m = map(br#"{"statusCode": 200, "body": "AAH/", "isBase64Encoded": true}"#).unwrap();
        assert_eq!(m.body, [0, 1, 0xff]);
        assert!(m
            .headers
            .contains(&("content-type".into(), "application/json".into())));
        assert_eq!(
            map(br#"{"statusCode": 200, "body": "not base64!", "isBase64Encoded": true}"#),
            Err(MappingError::Base64)
        );
    }

    #[test]
    fn any_other_json_is_a_200_json_body_as_returned() {
        for out in [
            &br#"{"message": "hi"}"#[..],
            br#"[1, 2]"#,
            br#""just a string""#,
            b"42",
            b"null",
        ] {
            let m = map(out).unwrap();
            assert_eq!(m.status, 200);
            assert_eq!(m.body, out);
            assert_eq!(
                m.headers,
                [("content-type".to_string(), "application/json".to_string())]
            );
        }
    }

    #[test]
    fn output_that_is_not_json_is_the_body_as_is() {
        let m = map(b"plain \xff bytes").unwrap();
        assert_eq!(m.status, 200);
        assert_eq!(m.body, b"plain \xff bytes");
    }

    #[test]
    fn a_bad_status_code_cannot_be_a_response_and_framing_headers_are_dropped() {
        assert_eq!(map(br#"{"statusCode": 99}"#), Err(MappingError::Status));
        for informational in [100, 101, 103, 199] {
            let out = format!(r#"{{"statusCode": {informational}}}"#);
            assert_eq!(map(out.as_bytes()), Err(MappingError::Status), "{out}");
        }
        assert_eq!(map(br#"{"statusCode": "x"}"#), Err(MappingError::Status));
        let m = map(br#"{"statusCode": "204", "headers": {"Content-Length": "999", "Transfer-Encoding": "chunked", "Upgrade": "h2c", "Connection": "upgrade"}}"#).unwrap();
        assert_eq!(m.status, 204);
        assert!(m.body.is_empty());
        assert!(!m
            .headers
            .iter()
            .any(|(k, _)| FRAMING_HEADERS.contains(&k.as_str())));
    }

    #[test]
    fn no_content_and_not_modified_answers_have_no_body() {
        for status in [204, 304] {
            let out = format!(
                r#"{{"statusCode": {status}, "body": "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}}"#
            );
            let m = map(out.as_bytes()).unwrap();
            assert_eq!(m.status, status);
            assert!(m.body.is_empty(), "{status}: {:?}", m.body);
        }
    }
}
