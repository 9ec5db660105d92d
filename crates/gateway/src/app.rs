//! The router: every route of the Lambda-compatible and native API, the auth layer in
//! front of them, and the shaping of errors and invoke results into HTTP.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tern_core::limits;
use tern_core::sigv4::{self, RequestParts};
use tern_invoke::{Caller, FunctionService, InvokeRequest, Invoker, ServiceError};
use tern_store::StoreHandle;
use tern_telemetry::Metrics;

use sha2::{Digest, Sha256};

use crate::auth::{AuthError, Authenticator};
use crate::download::{self, request_origin, Downloads};
use crate::error::to_wire;
use crate::operations::{self, Support};

/// Largest CreateFunction/UpdateFunctionCode body: a 50 MB zip in base64, as on Lambda.
pub const MANAGEMENT_BODY_BYTES: usize = 69_905_067;
/// A body over its limit is still read (and dropped) up to this many times the limit,
/// so the client sees the 413 instead of a reset connection.
const DRAIN_FACTOR: usize = 4;
/// A request body that sends nothing for this long is abandoned.
const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// The slowest a body may arrive on average (bytes a second) once it had
/// [`BODY_IDLE_TIMEOUT`] to start: a body gets that long plus its limit at this rate.
/// Without it a client sending a byte every few seconds held a connection for ever
/// (a function URL reads the body of anyone who asks).
const BODY_MIN_RATE: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub functions: Arc<FunctionService>,
    pub invoker: Arc<Invoker>,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    pub store: StoreHandle,
    /// Event-invoke configs, invocation status, dead letters, destination queues.
    pub events: Arc<tern_invoke::events::AsyncService>,
    /// Presigned downloads of stored zips (GetFunction's `Code.Location`).
    pub downloads: Arc<Downloads>,
    /// Private networks (`/tern/v1/networks`).
    pub networks: Arc<tern_invoke::networks::NetworkService>,
    /// Function URLs: their configs, and finding the one a request addresses.
    pub urls: Arc<tern_invoke::urls::UrlService>,
    /// How `FunctionUrl`s are spelled, and which hosts name a URL.
    pub url_base: Arc<crate::function_url::UrlBase>,
    /// The bytes of request bodies function URLs may hold at once.
    pub url_bodies: Arc<crate::function_url::BodyBudget>,
    /// Schedules (`/tern/v1/schedules`).
    pub schedules: Arc<tern_invoke::schedules::ScheduleService>,
}

/// An error on its way to the client.
pub struct ApiError {
    status: u16,
    error_type: &'static str,
    body: String,
    retry_after: Option<u32>,
}

impl ApiError {
    /// An error outside the service's own types (the `Type` is `User` below 500).
    pub(crate) fn new(status: u16, error_type: &'static str, message: String) -> Self {
        let kind = if status >= 500 { "Service" } else { "User" };
        ApiError {
            status,
            error_type,
            body: serde_json::json!({"Type": kind, "message": message}).to_string(),
            retry_after: None,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let w = to_wire(&e);
        ApiError {
            status: w.status,
            error_type: w.error_type,
            body: w.body,
            retry_after: w.retry_after,
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError {
            status: e.status(),
            error_type: e.error_type(),
            body: serde_json::json!({"Type": "User", "message": e.to_string()}).to_string(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::from(self.body));
        *resp.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert(
            "x-amzn-errortype",
            HeaderValue::from_static(self.error_type),
        );
        if let Some(s) = self.retry_after {
            h.insert("retry-after", HeaderValue::from(s));
        }
        resp
    }
}

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [("content-type", "application/json")],
            Body::from(body),
        )
            .into_response(),
        Err(e) => ApiError::from(ServiceError::Service(e.to_string())).into_response(),
    }
}

/// Parses a JSON body; the error names the field that is wrong.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let err = if inner.is_syntax() || inner.is_eof() {
            ServiceError::InvalidRequestContent(format!(
                "Could not parse request body into json: {inner}"
            ))
        } else if path == "." {
            ServiceError::InvalidParameterValue(format!("Invalid request body: {inner}"))
        } else {
            ServiceError::InvalidParameterValue(format!("Invalid value for '{path}': {inner}"))
        };
        ApiError::from(err)
    })
}

pub(crate) fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub fn router(state: AppState) -> Router {
    let lambda = Router::new()
        .route(
            "/2015-03-31/functions",
            post(create_function).get(list_functions),
        )
        .route(
            "/2015-03-31/functions/",
            post(create_function).get(list_functions),
        )
        .route(
            "/2015-03-31/functions/:name",
            get(get_function).delete(delete_function),
        )
        .route(
            "/2015-03-31/functions/:name/configuration",
            get(get_configuration).put(update_configuration),
        )
        .route("/2015-03-31/functions/:name/code", put(update_code))
        .route("/2015-03-31/functions/:name/invocations", post(invoke))
        .route(
            "/2017-10-31/functions/:name/concurrency",
            put(put_concurrency).delete(delete_concurrency),
        )
        .route(
            "/2019-09-30/functions/:name/concurrency",
            get(get_concurrency),
        )
        .route(
            "/2019-09-30/functions/:name/provisioned-concurrency",
            put(put_provisioned)
                .get(get_provisioned)
                .delete(delete_provisioned),
        )
        .route(
            "/2017-03-31/tags/:arn",
            get(list_tags).post(tag_resource).delete(untag_resource),
        )
        .route("/2016-08-19/account-settings", get(account_settings))
        .route("/2016-08-19/account-settings/", get(account_settings))
        .route("/tern/v1/functions/:name/logs", get(function_logs))
        .merge(crate::layers::routes())
        .merge(crate::events::routes())
        .merge(crate::networks::routes())
        .merge(crate::versions::routes())
        .merge(crate::function_url::routes())
        .merge(crate::schedules::routes())
        .fallback(unknown_operation)
        .method_not_allowed_fallback(unknown_operation)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    let routed = Router::new()
        .route("/tern/v1/health", get(health))
        .route("/metrics", get(metrics))
        // Presigned: the URL's signature is the credential, not SigV4.
        .route("/tern/v1/code/:file", get(download::code_zip))
        .merge(lambda)
        // `authenticate` reads each body within its route's limit; the extractors after
        // it must not apply axum's own 2 MiB default on top.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(edge))
        // Function URLs answer as their function says (errors included), outside the
        // API's authentication and error shaping; they read their own bodies.
        .merge(crate::function_url::serve_routes());
    // Routing by Host costs every request a middleware; only a public base with the URL
    // id in the host name needs it.
    let routed = if state.url_base.routes_hosts() {
        routed.layer(middleware::from_fn_with_state(
            state.clone(),
            crate::function_url::host_routing,
        ))
    } else {
        routed
    };
    routed.with_state(state)
}

/// What every response gets on its way out, in one pass: an `x-amzn-RequestId` if it
/// has none, and Lambda's shape (a JSON body and `x-amzn-ErrorType`) if it is an error
/// that no handler produced (an extractor's rejection, such as a malformed path).
async fn edge(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let mut resp = if (status.is_client_error() || status.is_server_error())
        && !resp.headers().contains_key("x-amzn-errortype")
    {
        lambda_shaped(resp).await
    } else {
        resp
    };
    if !resp.headers().contains_key("x-amzn-requestid") {
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-amzn-requestid", v);
        }
    }
    resp
}

async fn lambda_shaped(resp: Response) -> Response {
    let status = resp.status();
    let detail = match resp.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let detail = if detail.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        detail
    };
    let w = to_wire(&crate::error::rejection(status.as_u16(), detail));
    ApiError {
        status: status.as_u16(),
        error_type: w.error_type,
        body: w.body,
        retry_after: None,
    }
    .into_response()
}

/// A body read within its route's limit, with its sha256.
pub(crate) struct ReadBody {
    pub(crate) bytes: Bytes,
    sha256_hex: String,
}

#[derive(Debug)]
pub(crate) enum BodyError {
    /// Over the limit (and drained, up to a bound).
    TooLarge,
    /// No bytes arrived for [`BODY_IDLE_TIMEOUT`].
    Stalled,
    /// The body was still arriving at its deadline (see [`BODY_MIN_RATE`]).
    TooSlow(std::time::Duration),
    /// The budget of bodies held at once had no room for it (drained, up to its limit).
    NoRoom,
    Read(axum::Error),
}

/// Reads the whole body within `limit`, hashing it as it arrives; beyond the limit,
/// drains up to a bound and fails. A body that stops arriving fails after
/// [`BODY_IDLE_TIMEOUT`], and one still arriving after that plus its limit at
/// [`BODY_MIN_RATE`] fails then. `room(n)` is asked before `n` bytes in all are held
/// (a budget shared by many requests); when it says no, the rest is drained and the
/// answer is [`BodyError::NoRoom`].
pub(crate) async fn read_body_within(
    body: Body,
    limit: usize,
    room: &mut (dyn FnMut(usize) -> bool + Send),
) -> Result<ReadBody, BodyError> {
    read_body_paced(body, limit, BODY_IDLE_TIMEOUT, BODY_MIN_RATE, room).await
}

async fn read_body_paced(
    body: Body,
    limit: usize,
    idle: std::time::Duration,
    min_rate: usize,
    room: &mut (dyn FnMut(usize) -> bool + Send),
) -> Result<ReadBody, BodyError> {
    let allowed = idle.saturating_add(std::time::Duration::from_millis(
        u64::try_from(limit.saturating_mul(1000) / min_rate.max(1)).unwrap_or(u64::MAX),
    ));
    let deadline = tokio::time::Instant::now() + allowed;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    let mut hasher = Sha256::new();
    let mut seen = 0usize;
    let mut no_room = false;
    loop {
        let wait = (tokio::time::Instant::now() + idle).min(deadline);
        let frame = match tokio::time::timeout_at(wait, body.frame()).await {
            Err(_) if wait == deadline => return Err(BodyError::TooSlow(allowed)),
            Err(_) => return Err(BodyError::Stalled),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(BodyError::Read)?,
        };
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if no_room || (seen <= limit && !room(seen)) {
                no_room = true;
                buf = bytes::BytesMut::new();
                if seen > limit {
                    return Err(BodyError::NoRoom);
                }
                continue;
            }
            if seen > limit {
                if seen > limit.saturating_mul(DRAIN_FACTOR) {
                    return Err(BodyError::TooLarge);
                }
                buf.clear();
                continue;
            }
            hasher.update(&data);
            buf.extend_from_slice(&data);
        }
    }
    if no_room {
        return Err(BodyError::NoRoom);
    }
    if seen > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(ReadBody {
        bytes: buf.freeze(),
        sha256_hex: hex::encode(hasher.finalize()),
    })
}

/// `operation` names the request's operation in Lambda's message, when it is one.
fn body_error(e: BodyError, is_invoke: bool, limit: usize, operation: Option<&str>) -> Response {
    let op = operation.map_or("this".to_string(), |name| format!("the {name}"));
    let err = match e {
        BodyError::TooLarge if is_invoke => ServiceError::RequestTooLarge(format!(
            "Request must be smaller than {limit} bytes for the InvokeFunction operation"
        )),
        BodyError::TooLarge => ServiceError::RequestEntityTooLarge(format!(
            "Request must be smaller than {limit} bytes for {op} operation"
        )),
        BodyError::Stalled => ServiceError::InvalidRequestContent(format!(
            "the request body stopped arriving for {} s",
            BODY_IDLE_TIMEOUT.as_secs()
        )),
        BodyError::NoRoom => {
            ServiceError::Service("no room to hold the request body".to_string())
        }
        BodyError::TooSlow(allowed) => ServiceError::InvalidRequestContent(format!(
            "the request body did not arrive within {} s (a body of up to {limit} bytes gets {} s plus {} KiB/s)",
            allowed.as_secs(),
            BODY_IDLE_TIMEOUT.as_secs(),
            BODY_MIN_RATE / 1024
        )),
        BodyError::Read(e) => {
            ServiceError::InvalidRequestContent(format!("could not read the request body: {e}"))
        }
    };
    ApiError::from(err).into_response()
}

/// Whether a query string carries SigV4's query-string (presigned) authentication.
fn query_signed(query: &str) -> bool {
    query.split('&').any(|pair| {
        let key = pair.split('=').next().unwrap_or("");
        key.eq_ignore_ascii_case("X-Amz-Signature") || key.eq_ignore_ascii_case("X-Amz-Credential")
    })
}

/// Why [`verify_request`] refused a request.
pub(crate) enum Unverified {
    Denied(AuthError),
    Body(BodyError),
    /// The key is of another namespace than the one asked for (its namespace).
    OtherNamespace(String),
}

/// Authenticates with SigV4 and attaches the [`Caller`]; see [`verify_request`].
async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let is_invoke = parts.uri.path().ends_with("/invocations")
        || parts
            .uri
            .path()
            .trim_end_matches('/')
            .ends_with("/invoke-async");
    let limit = if is_invoke {
        limits::SYNC_PAYLOAD_BYTES
    } else {
        MANAGEMENT_BODY_BYTES
    };
    match verify_request(&state, &parts, body, limit, None, &mut |_| true).await {
        Ok((caller, bytes)) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(Unverified::Denied(e)) => {
            tracing::debug!(error = %e, path = %parts.uri.path(), "request not authenticated");
            ApiError::from(e).into_response()
        }
        Err(Unverified::OtherNamespace(_)) => ApiError::new(
            403,
            "AccessDeniedException",
            "the key is of another namespace".into(),
        )
        .into_response(),
        Err(Unverified::Body(e)) => {
            let query = parts.uri.query().unwrap_or("");
            let operation = crate::operations::find(parts.method.as_str(), parts.uri.path(), query)
                .map(|o| o.name);
            body_error(e, is_invoke, limit, operation)
        }
    }
}

/// Verifies a request's SigV4 signature and reads its body within `limit`. Everything
/// that can be checked before the body is (key, scope, date, signed headers, and the
/// signature itself when the client signed `x-amz-content-sha256`), so an
/// unauthenticated client never makes the server hold a body. The body is then read and
/// hashed; a declared hash must match it. With `namespace`, a key of any other
/// namespace is refused before the body too.
pub(crate) async fn verify_request(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: Body,
    limit: usize,
    namespace: Option<&str>,
    room: &mut (dyn FnMut(usize) -> bool + Send),
) -> Result<(Caller, Bytes), Unverified> {
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    // HTTP/1.1 always has Host; keep it for the canonical request even if axum moved it.
    if !headers.iter().any(|(k, _)| k == "host") {
        if let Some(a) = parts.uri.authority() {
            headers.push(("host".to_string(), a.to_string()));
        }
    }
    let method = parts.method.as_str();
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let authorization = header_str(&parts.headers, "authorization");
    let declared = header_str(&parts.headers, "x-amz-content-sha256");
    let mut rp = RequestParts {
        method,
        raw_path: path,
        raw_query: query,
        headers: &headers,
        payload_sha256: "",
    };
    let pending = state
        .auth
        .check_before_body(&rp, authorization.as_deref(), query_signed(query))
        .await
        .map_err(Unverified::Denied)?;
    if let Some(ns) = namespace.filter(|ns| *ns != pending.namespace()) {
        tracing::debug!(namespace = %pending.namespace(), wanted = %ns, "a key of another namespace");
        return Err(Unverified::OtherNamespace(pending.namespace().to_string()));
    }
    // A declared payload hash is signed (checked above), so the signature can be checked
    // now; the body must then hash to it.
    let early = match &declared {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            rp.payload_sha256 = h;
            Some(
                state
                    .auth
                    .finish(&rp, &pending)
                    .map_err(Unverified::Denied)?,
            )
        }
        Some(_) => return Err(Unverified::Denied(AuthError::BodyHashMismatch)),
        None => None,
    };
    let read = read_body_within(body, limit, room)
        .await
        .map_err(Unverified::Body)?;
    let caller = match early {
        Some(caller) => {
            let matches = declared.as_deref().is_some_and(|h| {
                sigv4::constant_time_eq(
                    h.to_ascii_lowercase().as_bytes(),
                    read.sha256_hex.as_bytes(),
                )
            });
            if !matches {
                return Err(Unverified::Denied(AuthError::BodyHashMismatch));
            }
            caller
        }
        None => {
            rp.payload_sha256 = &read.sha256_hex;
            state
                .auth
                .finish(&rp, &pending)
                .map_err(Unverified::Denied)?
        }
    };
    Ok((caller, read.bytes))
}

async fn health() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

async fn metrics(State(state): State<AppState>) -> Response {
    state
        .metrics
        .instances
        .set(state.invoker.live_instances() as i64);
    let bytes = |mb: u64| i64::try_from(mb.saturating_mul(1 << 20)).unwrap_or(i64::MAX);
    let (counted_mb, evictions) = state.invoker.instance_memory();
    let m = &state.metrics;
    m.instance_memory_counted_bytes.set(bytes(counted_mb));
    m.prewarmed_instances
        .set(state.invoker.prewarmed_instances() as i64);
    m.built_ahead.set(state.invoker.built_ahead() as i64);
    // One scrape at a time catches the counters up, so that none counts a gap twice.
    static CATCH_UP: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CATCH_UP.lock().unwrap_or_else(|e| e.into_inner());
    for (reason, total) in evictions {
        let counter = m
            .instance_evictions
            .get_or_create(&vec![("reason".to_string(), reason.to_string())]);
        // The pool keeps the totals; the counter catches up with them at each scrape.
        counter.inc_by(total.saturating_sub(counter.get()));
    }
    for (namespace, function, total) in state.invoker.network_refusals() {
        let counter = m.network_refusals.get_or_create(&vec![
            ("namespace".to_string(), namespace),
            ("function".to_string(), function),
        ]);
        counter.inc_by(total.saturating_sub(counter.get()));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // Every namespace that had events reads, 0 once its queue is empty.
    m.async_queue_depth.clear();
    m.async_oldest_event_age_seconds.clear();
    for d in state.invoker.queue().depth_snapshot() {
        let labels = vec![("namespace".to_string(), d.namespace.clone())];
        m.async_queue_depth
            .get_or_create(&labels)
            .set(i64::try_from(d.pending).unwrap_or(i64::MAX));
        let age = d
            .oldest_enqueued_ms
            .filter(|_| d.pending > 0)
            .map_or(0, |t| (now_ms - t).max(0) / 1000);
        m.async_oldest_event_age_seconds
            .get_or_create(&labels)
            .set(age);
    }
    if let Some(disk) = state.invoker.tmp_disk() {
        m.tmp_disk_budget_bytes.set(bytes(disk.budget_mb));
        m.tmp_disk_claimed_bytes.set(bytes(disk.claimed_mb));
        m.tmp_disk_used_bytes
            .set(i64::try_from(disk.used_bytes).unwrap_or(i64::MAX));
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// A request that no route serves: an operation of the Lambda model that tern does not
/// implement is named (see `operations.rs`); anything else is an unknown operation.
async fn unknown_operation(method: Method, uri: axum::http::Uri) -> ApiError {
    let query = uri.query().unwrap_or("");
    match operations::find(method.as_str(), uri.path(), query) {
        Some(op) if op.support == Support::NotSupported => {
            ApiError::from(ServiceError::InvalidParameterValue(format!(
                "tern does not support the {} operation",
                op.name
            )))
        }
        _ => ApiError::new(
            404,
            "UnknownOperationException",
            format!("Unknown operation: {method} {}", uri.path()),
        ),
    }
}

type Q = Query<HashMap<String, String>>;

/// The `MaxItems` query parameter of a list call, if given (its range is the service's
/// to check).
pub(crate) fn max_items(q: &HashMap<String, String>) -> Result<Option<i64>, ApiError> {
    match q.get("MaxItems") {
        None => Ok(None),
        Some(s) => Ok(Some(s.parse::<i64>().map_err(|_| {
            ServiceError::InvalidParameterValue(format!(
                "Invalid value for 'MaxItems': '{s}' is not an integer"
            ))
        })?)),
    }
}

/// The `Qualifier` query parameter.
fn qualifier(q: &HashMap<String, String>) -> Option<&str> {
    q.get("Qualifier").map(String::as_str)
}

async fn create_function(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = parse_body(&body)?;
    let config = state.functions.create(&caller, req).await?;
    Ok(json(StatusCode::CREATED, &config))
}

async fn list_functions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let max_items = max_items(&q)?;
    if let Some(region) = q.get("MasterRegion") {
        return Err(ServiceError::InvalidParameterValue(format!(
            "MasterRegion ('{region}') is not supported: tern has no Lambda@Edge replicas; list without it"
        ))
        .into());
    }
    let list = state
        .functions
        .list(
            &caller,
            q.get("Marker").cloned(),
            max_items,
            q.get("FunctionVersion").map(String::as_str),
        )
        .await?;
    Ok(json(StatusCode::OK, &list))
}

async fn get_function(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let origin = request_origin(&headers).ok_or_else(|| {
        ServiceError::InvalidRequestContent("the request has no Host header".to_string())
    })?;
    let code_url = |sha256_hex: &str| state.downloads.code_url(&origin, sha256_hex);
    let resp = state
        .functions
        .get(&caller, &name, qualifier(&q), code_url)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn get_configuration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let resp = state
        .functions
        .get_configuration(&caller, &name, qualifier(&q))
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn update_configuration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = parse_body(&body)?;
    let resp = state
        .functions
        .update_configuration(&caller, &name, req)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn update_code(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = parse_body(&body)?;
    let resp = state.functions.update_code(&caller, &name, req).await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn delete_function(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    state
        .functions
        .delete(&caller, &name, qualifier(&q))
        .await?;
    // Its URLs went with it in the store; this server must not serve them from memory.
    state.urls.forget_namespace(&caller.namespace);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn account_settings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let resp = state.functions.account_settings(&caller).await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn invoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = InvokeRequest {
        function_name: name,
        qualifier: q.get("Qualifier").cloned(),
        invocation_type: header_str(&headers, "x-amz-invocation-type"),
        log_type: header_str(&headers, "x-amz-log-type"),
        client_context: header_str(&headers, "x-amz-client-context"),
        idempotency_key: header_str(&headers, "x-tern-idempotency-key"),
        request_id: None,
        payload: body,
    };
    let out = state.invoker.invoke(&caller, req).await?;
    let mut resp = Response::new(Body::from(out.payload));
    *resp.status_mut() = StatusCode::from_u16(out.status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    if out.status != 204 {
        h.insert("content-type", HeaderValue::from_static("application/json"));
    }
    if let Some(fe) = out.function_error {
        h.insert("x-amz-function-error", HeaderValue::from_static(fe));
    }
    if let Some(log) = out.log_result.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert("x-amz-log-result", log);
    }
    if let Ok(v) = HeaderValue::from_str(&out.executed_version) {
        h.insert("x-amz-executed-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&out.request_id) {
        h.insert("x-amzn-requestid", v);
    }
    Ok(resp)
}

async fn put_concurrency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: tern_core::wire::PutFunctionConcurrencyRequest = parse_body(&body)?;
    let resp = state
        .functions
        .put_concurrency(&caller, &name, req.reserved_concurrent_executions)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn get_concurrency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let resp = state.functions.get_concurrency(&caller, &name).await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn delete_concurrency(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.functions.delete_concurrency(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn put_provisioned(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: tern_core::wire::PutProvisionedConcurrencyConfigRequest = parse_body(&body)?;
    let resp = state
        .functions
        .put_provisioned(
            &caller,
            &name,
            qualifier(&q),
            req.provisioned_concurrent_executions,
        )
        .await?;
    Ok(json(StatusCode::ACCEPTED, &resp))
}

/// GetProvisionedConcurrencyConfig, or ListProvisionedConcurrencyConfigs with `List=ALL`.
async fn get_provisioned(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    if q.get("List").is_some_and(|v| v == "ALL") {
        let resp = state.functions.list_provisioned(&caller, &name).await?;
        return Ok(json(StatusCode::OK, &resp));
    }
    let resp = state
        .functions
        .get_provisioned(&caller, &name, qualifier(&q))
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn delete_provisioned(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    state
        .functions
        .delete_provisioned(&caller, &name, qualifier(&q))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_tags(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
) -> Result<Response, ApiError> {
    let tags = state.functions.list_tags(&caller, &arn).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "Tags": tags })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct TagResourceRequest {
    tags: std::collections::BTreeMap<String, String>,
}

async fn tag_resource(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: TagResourceRequest = parse_body(&body)?;
    state
        .functions
        .change_tags(&caller, &arn, req.tags, Vec::new())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn untag_resource(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(arn): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    // `tagKeys` repeats, which a map of query parameters would collapse.
    let keys: Vec<String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == "tagKeys")
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    state
        .functions
        .change_tags(&caller, &arn, Default::default(), keys)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Serialize)]
struct LogLineView {
    timestamp_ms: i64,
    request_id: Option<String>,
    message: String,
}

async fn function_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let (rec, _) = state.functions.lookup(&caller, &name, None).await?;
    let limit = match q.get("limit") {
        None => 100,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=limits::LIST_MAX_ITEMS).contains(&n) => n,
            _ => {
                return Err(ServiceError::InvalidParameterValue(format!(
                    "Invalid value for 'limit': '{s}' (expected 1 to {})",
                    limits::LIST_MAX_ITEMS
                ))
                .into())
            }
        },
    };
    let request_id = q.get("request_id").cloned();
    let ns = caller.namespace.clone();
    let fname = rec.name.clone();
    let lines = state
        .store
        .call::<_, tern_store::StoreError, _>(move |store| {
            store.recent_logs(&ns, &fname, request_id.as_deref(), limit)
        })
        .await
        .map_err(ServiceError::from)?;
    let view: Vec<LogLineView> = lines
        .into_iter()
        .map(|l| LogLineView {
            timestamp_ms: l.ts_ms,
            request_id: l.request_id,
            message: l.line,
        })
        .collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "lines": view })))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A body of `n` one-byte chunks, `every` apart.
    fn trickle(n: usize, every: Duration) -> Body {
        let chunks = futures_util::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"a")), i + 1))
        });
        Body::from_stream(chunks)
    }

    #[tokio::test]
    async fn a_body_trickling_in_fails_at_its_deadline_though_never_idle() {
        // Idle 200 ms, 100 bytes at 1000 B/s: 300 ms in all; the trickle needs 5 s.
        let started = std::time::Instant::now();
        let read = read_body_paced(
            trickle(100, Duration::from_millis(50)),
            100,
            Duration::from_millis(200),
            1000,
            &mut |_| true,
        )
        .await;
        assert!(
            matches!(read, Err(BodyError::TooSlow(_))),
            "{:?}",
            read.err()
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_body_at_a_fair_pace_is_read_and_a_silent_one_is_stalled() {
        let read = read_body_paced(
            trickle(5, Duration::from_millis(10)),
            100,
            Duration::from_millis(200),
            1000,
            &mut |_| true,
        )
        .await;
        assert_eq!(
            read.map(|r| r.bytes).ok(),
            Some(Bytes::from_static(b"aaaaa"))
        );
        let read = read_body_paced(
            trickle(1, Duration::from_millis(400)),
            100_000,
            Duration::from_millis(100),
            1000,
            &mut |_| true,
        )
        .await;
        assert!(matches!(read, Err(BodyError::Stalled)), "{:?}", read.err());
    }
}
