//! Signed HTTP calls to a tern server: SigV4 over plain HTTP with `ureq`, and the
//! translation of failures (unreachable server, Lambda error responses) into messages a
//! user can act on.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tern_core::limits;
use tern_core::sigv4;

use super::credentials::{self, Credentials};
use super::ConnectArgs;

/// SigV4 service name of the Lambda-compatible API.
const SERVICE: &str = "lambda";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A sync invoke may legitimately run for the longest function timeout; allow for init
/// and queuing on top.
const READ_TIMEOUT: Duration = Duration::from_secs(limits::TIMEOUT_MAX_S as u64 + 120);
/// Largest response body read; the biggest legitimate one is a page of logs.
const MAX_RESPONSE_BYTES: u64 = 64 << 20;
/// Characters left as they are in a path segment or query value (RFC 3986 unreserved).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one path segment or query value.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// `http://host:port[/prefix]`, split into what the Host header and the path need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The URL as given, without a trailing slash.
    pub url: String,
    /// `host[:port]`, exactly as ureq will send it.
    pub authority: String,
    /// Path prefix before the API paths (empty, or starting with `/`).
    pub base_path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let trimmed = url.trim().trim_end_matches('/');
        if trimmed.starts_with("https://") {
            bail!("endpoint {url}: https is not supported; tern serves plain HTTP (put a TLS proxy in front and use http:// here for local access)");
        }
        let rest = trimmed
            .strip_prefix("http://")
            .with_context(|| format!("endpoint '{url}' must start with http://"))?;
        let (authority, base_path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains(['@', '?', '#']) {
            bail!("endpoint '{url}' must look like http://HOST:PORT");
        }
        // ureq leaves the default port out of its Host header; sign what it sends.
        let authority = authority.strip_suffix(":80").unwrap_or(authority);
        Ok(Endpoint {
            url: trimmed.to_string(),
            authority: authority.to_string(),
            base_path: base_path.to_string(),
        })
    }
}

/// A request to send; `path` is already percent-encoded, `query` is `k=v&...` encoded.
#[derive(Debug, Default)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub query: String,
    /// Lowercase names; all of them are signed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &'static str, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            ..Request::default()
        }
    }

    pub fn query(mut self, key: &str, value: &str) -> Self {
        if !self.query.is_empty() {
            self.query.push('&');
        }
        self.query.push_str(&encode(key));
        self.query.push('=');
        self.query.push_str(&encode(value));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn json(self, body: &serde_json::Value) -> Self {
        let mut req = self.header("content-type", "application/json");
        req.body = body.to_string().into_bytes();
        req
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "unexpected response from the server: {}",
                preview(&self.body)
            )
        })
    }
}

/// An error response of the Lambda API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// `x-amzn-ErrorType`, such as `ResourceNotFoundException`.
    pub error_type: String,
    pub message: String,
    /// What the user can do about it, when the CLI knows.
    pub hint: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach tern at {endpoint}: is `tern server` running? ({detail})")]
    Unreachable { endpoint: String, detail: String },
    #[error("request to {endpoint} failed: {detail}")]
    Transport { endpoint: String, detail: String },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("cannot read the response from {endpoint}: {source}")]
    Read {
        endpoint: String,
        source: std::io::Error,
    },
}

impl CallError {
    /// The Lambda error type, when the server answered with one.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            CallError::Api(e) => Some(&e.error_type),
            _ => None,
        }
    }
}

/// A connection to one tern server with one access key.
pub struct Client {
    agent: ureq::Agent,
    endpoint: Endpoint,
    credentials: Credentials,
    credentials_path: PathBuf,
    profile: String,
    region: String,
}

impl Client {
    /// Reads the credentials and checks the endpoint; does not contact the server.
    pub fn connect(args: &ConnectArgs) -> anyhow::Result<Self> {
        let conn = args.resolve_from_env();
        let endpoint = Endpoint::parse(&conn.endpoint)?;
        let credentials_path = conn.credentials;
        let credentials = credentials::load(&credentials_path, &conn.profile)?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout_read(READ_TIMEOUT)
            .user_agent(concat!("tern-cli/", env!("CARGO_PKG_VERSION")))
            // A redirect would be re-sent unsigned; tern never redirects.
            .redirects(0)
            .build();
        Ok(Client {
            agent,
            endpoint,
            credentials,
            credentials_path,
            profile: conn.profile,
            region: conn.region,
        })
    }

    /// Sends a signed request. Any status other than 2xx becomes [`CallError::Api`].
    pub fn call(&self, req: Request) -> Result<Response, CallError> {
        let path = format!("{}{}", self.endpoint.base_path, req.path);
        let headers = sigv4::sign_outgoing(
            &sigv4::Signer {
                access_key: &self.credentials.access_key_id,
                secret: &self.credentials.secret_access_key,
                region: &self.region,
                service: SERVICE,
            },
            req.method,
            &self.endpoint.authority,
            &path,
            &req.query,
            &req.headers,
            &req.body,
        );
        let mut url = format!("http://{}{}", self.endpoint.authority, path);
        if !req.query.is_empty() {
            url.push('?');
            url.push_str(&req.query);
        }
        tracing::debug!(method = req.method, %url, "calling tern");
        let mut call = self.agent.request(req.method, &url);
        for (name, value) in &headers {
            call = call.set(name, value);
        }
        let result = if req.body.is_empty() && req.method == "GET" {
            call.call()
        } else {
            call.send_bytes(&req.body)
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => {
                let resp = self.read(resp)?;
                return Err(self.api_error(&resp).into());
            }
            Err(ureq::Error::Transport(t)) => {
                let detail = t.to_string();
                let endpoint = self.endpoint.url.clone();
                return Err(match t.kind() {
                    ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                        CallError::Unreachable { endpoint, detail }
                    }
                    _ => CallError::Transport { endpoint, detail },
                });
            }
        };
        self.read(resp)
    }

    fn read(&self, resp: ureq::Response) -> Result<Response, CallError> {
        let status = resp.status();
        let headers = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| {
                let v = resp.header(&n)?.to_string();
                Some((n, v))
            })
            .collect();
        let mut body = Vec::new();
        resp.into_reader()
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut body)
            .map_err(|source| CallError::Read {
                endpoint: self.endpoint.url.clone(),
                source,
            })?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn api_error(&self, resp: &Response) -> ApiError {
        let mut err = parse_api_error(resp);
        err.hint = match (err.status, err.error_type.as_str()) {
            (403, _) => Some(format!(
                "the server did not accept the access key of profile [{}] in {}; use the \
                 credentials file from the data dir of the server at {}",
                self.profile,
                self.credentials_path.display(),
                self.endpoint.url
            )),
            (404, "ResourceNotFoundException") => {
                Some("`tern functions list` shows the functions that exist".to_string())
            }
            (404, _) => Some(format!(
                "is {} a tern server of this version?",
                self.endpoint.url
            )),
            _ => None,
        };
        err
    }
}

/// The error type and message of a Lambda error response, whatever its shape.
pub fn parse_api_error(resp: &Response) -> ApiError {
    let body: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
    let field = |name: &str| {
        body.as_ref()
            .and_then(|b| b.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    // AWS sometimes appends `:<url>` to the header value.
    let error_type = resp
        .header("x-amzn-errortype")
        .map(|t| t.split(':').next().unwrap_or(t).to_string())
        .or_else(|| field("__type"))
        .unwrap_or_else(|| format!("HTTP {}", resp.status));
    let message = field("message")
        .or_else(|| field("Message"))
        .unwrap_or_else(|| preview(&resp.body));
    ApiError {
        status: resp.status,
        error_type,
        message,
        hint: None,
    }
}

/// The start of a body for an error message.
fn preview(body: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_splits_host_and_prefix() {
        let e = Endpoint::parse("http://127.0.0.1:8900/").expect("plain");
        assert_eq!(
            (e.url.as_str(), e.authority.as_str(), e.base_path.as_str()),
            ("http://127.0.0.1:8900", "127.0.0.1:8900", "")
        );
        let e = Endpoint::parse("http://example.com:80/tern").expect("prefix");
        assert_eq!(
            (e.authority.as_str(), e.base_path.as_str()),
            ("example.com", "/tern")
        );
    }

    #[test]
    fn endpoint_rejects_https_and_garbage() {
        assert!(
            format!("{:#}", Endpoint::parse("https://x").expect_err("tls"))
                .contains("https is not supported")
        );
        assert!(Endpoint::parse("127.0.0.1:8900").is_err());
        assert!(Endpoint::parse("http://").is_err());
    }

    #[test]
    fn query_values_are_encoded() {
        let r = Request::new("GET", "/x")
            .query("Marker", "a b/c")
            .query("MaxItems", "5");
        assert_eq!(r.query, "Marker=a%20b%2Fc&MaxItems=5");
        assert_eq!(encode("fn:$LATEST"), "fn%3A%24LATEST");
    }

    #[test]
    fn api_errors_take_the_type_from_the_header_and_the_message_from_the_body() {
        let resp = Response {
            status: 404,
            headers: vec![(
                "x-amzn-ErrorType".into(),
                "ResourceNotFoundException:http://internal".into(),
            )],
            body: br#"{"Type":"User","message":"Function not found: f"}"#.to_vec(),
        };
        let e = parse_api_error(&resp);
        assert_eq!(e.error_type, "ResourceNotFoundException");
        assert_eq!(e.message, "Function not found: f");
        let bare = parse_api_error(&Response {
            status: 502,
            headers: vec![],
            body: b"Bad Gateway".to_vec(),
        });
        assert_eq!(
            (bare.error_type.as_str(), bare.message.as_str()),
            ("HTTP 502", "Bad Gateway")
        );
    }
}
