//! Serving a function URL: find the URL, answer a CORS preflight, check the signature of
//! an `AWS_IAM` URL before reading the body, build the event, run it through the same
//! Invoke path as the API's, and shape the result. Errors are Lambda's function-URL
//! errors (`{"Message": …}`), never the management API's shape.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::any;
use axum::Router;
use bytes::Bytes;
use tern_core::function::LATEST;
use tern_core::function_url::{AuthType, FunctionUrlRecord};
use tern_core::limits;
use tern_invoke::{Caller, InvokeRequest, ServiceError};

use super::budget::BodyShare;
use super::event::{self, EventInput, IamIdentity};
use super::{cors, host_name, response, PATH_PREFIX};
use crate::app::{read_body_within, verify_request, AppState, BodyError, Unverified};

/// The path form's routes; they sit outside the API's authentication and error shaping.
pub fn serve_routes() -> Router<AppState> {
    Router::new()
        .route("/url/:id", any(serve_path_form))
        .route("/url/:id/", any(serve_path_form))
        .route("/url/:id/*rest", any(serve_path_form))
}

async fn serve_path_form(State(state): State<AppState>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let after = path.strip_prefix(PATH_PREFIX).unwrap_or("");
    let (id, rest) = after.split_once('/').unwrap_or((after, ""));
    let raw_path = format!("/{rest}");
    serve(&state, id, &raw_path, req).await
}

/// Sends a request whose Host names a URL (`<url-id>.<domain>` of the public base) to
/// that URL; anything else goes on to the API.
pub async fn host_routing(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| state.url_base.host_form_id(h));
    match id {
        Some(id) => {
            let raw_path = req.uri().path().to_string();
            serve(&state, &id, &raw_path, req).await
        }
        None => next.run(req).await,
    }
}

/// A function-URL error: `{"Message": …}` with Lambda's `x-amzn-ErrorType`.
fn refusal(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let mut resp = Response::new(Body::from(
        serde_json::json!({ "Message": message }).to_string(),
    ));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    resp
}

fn forbidden() -> Response {
    refusal(StatusCode::FORBIDDEN, "AccessDeniedException", "Forbidden")
}

fn body_refusal(e: BodyError) -> Response {
    match e {
        BodyError::TooLarge => refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!(
                "Request must be smaller than {} bytes",
                limits::SYNC_PAYLOAD_BYTES
            ),
        ),
        BodyError::NoRoom => {
            tracing::debug!("the budget of function URL bodies is spent");
            rate_exceeded(Some(1))
        }
        BodyError::Stalled | BodyError::TooSlow(_) | BodyError::Read(_) => refusal(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "The request body could not be read",
        ),
    }
}

/// Lambda's throttle answer: 429 `Rate Exceeded.`, with `Retry-After` when known.
fn rate_exceeded(retry_after: Option<u32>) -> Response {
    let mut resp = refusal(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequestsException",
        "Rate Exceeded.",
    );
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    resp
}

/// An invoke that did not produce a result, as the URL's client sees it.
fn invoke_refusal(e: &ServiceError) -> Response {
    match e {
        ServiceError::Throttled(_) => rate_exceeded(crate::error::to_wire(e).retry_after),
        ServiceError::ResourceNotFound(_) => refusal(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "Not Found",
        ),
        ServiceError::RequestTooLarge(m) => {
            refusal(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException", m)
        }
        ServiceError::Execution(_) | ServiceError::InvalidRuntime(_) => refusal(
            StatusCode::BAD_GATEWAY,
            "ServiceException",
            "Internal Server Error",
        ),
        _ => refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "Internal Server Error",
        ),
    }
}

/// The response of a mapped result; headers that are not valid HTTP are left out.
fn mapped_response(m: response::Mapped) -> Response {
    let mut resp = Response::new(Body::from(m.body));
    *resp.status_mut() = StatusCode::from_u16(m.status).unwrap_or(StatusCode::OK);
    let h = resp.headers_mut();
    for (name, value) in m.headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                h.append(n, v);
            }
            _ => {
                tracing::debug!(header = %name, "a function URL response header is not valid HTTP")
            }
        }
    }
    resp
}

fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

async fn serve(state: &AppState, url_id: &str, raw_path: &str, req: Request) -> Response {
    let rec = match state.urls.by_id(url_id).await {
        Ok(Some(rec)) => rec,
        Ok(None) => {
            return refusal(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                "Not Found",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot look up a function URL");
            return invoke_refusal(&e);
        }
    };
    let (parts, body) = req.into_parts();
    let origin = parts
        .headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(c) = &rec.cors {
        if cors::is_preflight(&parts.method, &parts.headers) {
            let mut resp = Response::new(Body::empty());
            for (name, value) in cors::preflight(c, &parts.headers) {
                set_header(&mut resp, name, &value);
            }
            return resp;
        }
    }
    let mut resp = run(state, &rec, raw_path, parts, body).await;
    if let Some(c) = &rec.cors {
        // The URL's CORS config replaces whatever the function said.
        let h = resp.headers_mut();
        let theirs: Vec<HeaderName> = h
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for k in theirs {
            h.remove(k);
        }
        for (name, value) in cors::response_headers(c, origin.as_deref()) {
            set_header(&mut resp, name, &value);
        }
    }
    resp
}

/// The body, read within the Invoke limit, and for an `AWS_IAM` URL the signer, whose
/// signature is checked before the body is read.
async fn authenticated_body(
    state: &AppState,
    rec: &FunctionUrlRecord,
    parts: &axum::http::request::Parts,
    body: Body,
    share: &mut BodyShare,
) -> Result<(Bytes, Option<IamIdentity>), Response> {
    let limit = limits::SYNC_PAYLOAD_BYTES;
    let budget = state.url_bodies.clone();
    let mut room = |held: usize| budget.grow(share, held);
    if rec.auth_type != AuthType::AwsIam {
        let read = read_body_within(body, limit, &mut room)
            .await
            .map_err(body_refusal)?;
        return Ok((read.bytes, None));
    }
    // A key of another namespace is refused before the body is read.
    match verify_request(state, parts, body, limit, Some(&rec.namespace), &mut room).await {
        Ok((caller, bytes)) if caller.namespace == rec.namespace => {
            let access_key = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|a| tern_core::sigv4::parse_authorization(a).ok())
                .map(|a| a.access_key)
                .unwrap_or_default();
            let iam = IamIdentity {
                access_key,
                account_id: caller.account,
            };
            Ok((bytes, Some(iam)))
        }
        Ok((caller, _)) => {
            tracing::debug!(namespace = %caller.namespace, "a function URL signed by another namespace");
            Err(forbidden())
        }
        Err(Unverified::OtherNamespace(namespace)) => {
            tracing::debug!(%namespace, "a function URL signed by another namespace");
            Err(forbidden())
        }
        Err(Unverified::Denied(e)) => {
            tracing::debug!(error = %e, "a function URL request not authenticated");
            Err(forbidden())
        }
        Err(Unverified::Body(e)) => Err(body_refusal(e)),
    }
}

/// Authenticates (for `AWS_IAM`), reads the body and runs the function.
async fn run(
    state: &AppState,
    rec: &FunctionUrlRecord,
    raw_path: &str,
    parts: axum::http::request::Parts,
    body: Body,
) -> Response {
    // The body's share of the budget of all URL requests, held until the answer.
    let mut share = BodyShare::default();
    let (body, iam) = match authenticated_body(state, rec, &parts, body, &mut share).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let account = tern_core::names::account_of(&rec.namespace);
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let domain = parts
        .headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(host_name)
        .unwrap_or_default();
    let protocol = format!("{:?}", parts.version);
    let event = event::build(&EventInput {
        method: parts.method.as_str(),
        raw_path,
        raw_query: parts.uri.query().unwrap_or(""),
        protocol: &protocol,
        headers: &parts.headers,
        body: &body,
        source_ip: &source_ip,
        url_id: &rec.url_id,
        account_id: &account,
        domain_name: &domain,
        request_id: &request_id,
        time_ms: now_ms(),
        iam: iam.as_ref(),
    });
    let payload = match serde_json::to_vec(&event) {
        Ok(p) => Bytes::from(p),
        Err(e) => return invoke_refusal(&ServiceError::Service(e.to_string())),
    };
    let caller = Caller {
        namespace: rec.namespace.clone(),
        account,
    };
    let invoked = state
        .invoker
        .invoke(
            &caller,
            InvokeRequest {
                function_name: rec.function.clone(),
                qualifier: (rec.qualifier != LATEST).then(|| rec.qualifier.clone()),
                request_id: Some(request_id.clone()),
                payload,
                ..Default::default()
            },
        )
        .await;
    let mut resp = shaped(invoked, &rec.function, &request_id);
    set_header(&mut resp, "x-amzn-requestid", &request_id);
    resp
}

/// The HTTP response of an invoke's outcome: the mapped result, or Lambda's error.
fn shaped(
    invoked: Result<tern_invoke::InvokeResponse, ServiceError>,
    function: &str,
    request_id: &str,
) -> Response {
    match invoked {
        Ok(out) if out.function_error.is_some() => refusal(
            StatusCode::BAD_GATEWAY,
            "FunctionError",
            "Internal Server Error",
        ),
        Ok(out) => match response::map(&out.payload) {
            Ok(mapped) => mapped_response(mapped),
            Err(e) => {
                tracing::debug!(error = %e, function = %function, request_id = %request_id, "a function URL result is not a response");
                refusal(
                    StatusCode::BAD_GATEWAY,
                    "FunctionError",
                    "Internal Server Error",
                )
            }
        },
        Err(e) => {
            if !matches!(
                e,
                ServiceError::Throttled(_)
                    | ServiceError::ResourceNotFound(_)
                    | ServiceError::RequestTooLarge(_)
            ) {
                tracing::warn!(error = %e, function = %function, request_id = %request_id, "a function URL invoke failed");
            }
            invoke_refusal(&e)
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
