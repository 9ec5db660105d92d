//! The Lambda Runtime API (2018-06-01), served to one instance on the listening socket
//! its launcher created (inside the sandbox's network namespace).
//!
//! One instance runs one request at a time: `next` hands out the queued invocation,
//! `response`/`error` complete it. Status codes follow the real API: 202 accepted,
//! 400 unknown request id, 403 wrong state, 413 response too large, 404 unknown path.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tern_core::wire::FunctionErrorBody;
use tokio::sync::{mpsc, oneshot, watch};

use crate::freezer::Freezer;

/// Largest response a function may return (Lambda: 6 MB).
pub const MAX_RESPONSE_BYTES: usize = tern_core::limits::SYNC_PAYLOAD_BYTES;
/// Largest error body or init error accepted.
const MAX_ERROR_BYTES: usize = 1024 * 1024 + 64 * 1024;
/// Request headers may be large (awslambdaric's X-Ray error cause header may reach
/// 1 MiB); this bounds what one connection can make the server buffer.
const MAX_HEADER_BUF: usize = 1024 * 1024 + 64 * 1024;
/// Connections one instance may hold open at once. A runtime needs one or two; more
/// would only let a function make the server hold descriptors and header buffers.
pub const MAX_CONNECTIONS: usize = 4;
/// A request's headers must arrive within this.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// An invocation queued for the instance.
pub struct Invocation {
    pub request_id: String,
    pub deadline_ms: u64,
    pub function_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
    pub payload: Bytes,
    pub reply: oneshot::Sender<Reply>,
}

/// What the runtime answered.
#[derive(Debug)]
pub enum Reply {
    Response(Bytes),
    /// The runtime posted `/error`: the raw body and the error type header.
    Error {
        body: Bytes,
        error_type: Option<String>,
    },
    /// The response exceeded [`MAX_RESPONSE_BYTES`].
    ResponseTooLarge,
    /// The runtime process ended before answering.
    Exited,
}

/// Lifecycle of the runtime as seen through its API calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Initializing,
    /// The runtime called `next` at least once: init finished.
    Ready,
    /// The runtime reported `init/error`.
    InitFailed(FunctionErrorBody),
}

/// State shared between the API server and the instance handle.
pub struct ApiShared {
    queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    current: Mutex<Option<(String, oneshot::Sender<Reply>)>>,
    /// Request id of the invocation in progress, for tagging output lines.
    pub current_id: Mutex<Option<String>>,
    phase: watch::Sender<Phase>,
    /// Told while the runtime waits in `next`, so an idle instance is frozen only then.
    freezer: Option<Arc<Freezer>>,
}

impl ApiShared {
    pub fn new(
        queue: mpsc::Receiver<Invocation>,
        freezer: Option<Arc<Freezer>>,
    ) -> (Arc<Self>, watch::Receiver<Phase>) {
        let (tx, rx) = watch::channel(Phase::Initializing);
        (
            Arc::new(ApiShared {
                queue: tokio::sync::Mutex::new(queue),
                current: Mutex::new(None),
                current_id: Mutex::new(None),
                phase: tx,
                freezer,
            }),
            rx,
        )
    }

    /// Completes the invocation in progress (if any) with `reply`.
    pub fn finish_current(&self, reply: Reply) {
        let taken = lock(&self.current).take();
        *lock(&self.current_id) = None;
        if let Some((_, tx)) = taken {
            let _ = tx.send(reply);
        }
    }

    fn take_if(&self, id: &str) -> Result<oneshot::Sender<Reply>, StatusCode> {
        let mut cur = lock(&self.current);
        match cur.as_ref() {
            Some((cur_id, _)) if cur_id == id => {
                *lock(&self.current_id) = None;
                Ok(cur
                    .take()
                    .map(|(_, tx)| tx)
                    .ok_or(StatusCode::BAD_REQUEST)?)
            }
            _ => Err(StatusCode::BAD_REQUEST),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type Resp = Response<Full<Bytes>>;

fn json(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> Resp {
    json(
        status,
        serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string(),
    )
}

fn accepted() -> Resp {
    json(StatusCode::ACCEPTED, r#"{"status":"OK"}"#.to_string())
}

/// Serves the Runtime API on `listener` until the instance goes away. At most
/// [`MAX_CONNECTIONS`] connections are served at once (others are closed at once), and
/// an accept error such as EMFILE backs off and retries: the instance never loses its
/// Runtime API to a flood of connections.
pub async fn serve(listener: std::net::TcpListener, shared: Arc<ApiShared>) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "runtime API accept failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF_MIN;
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_connection(stream, shared).await;
            drop(slot);
        });
    }
}

/// Serves one connection (any byte stream: the fuzz target feeds it raw bytes) until
/// it closes.
pub async fn serve_connection<S>(stream: S, shared: Arc<ApiShared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| handle(req, shared.clone()));
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BUF)
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .await;
}

async fn read_body(body: Incoming, limit: usize) -> Option<Bytes> {
    Limited::new(body, limit)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes())
}

async fn handle(req: Request<Incoming>, shared: Arc<ApiShared>) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return Ok(api_error(StatusCode::NOT_FOUND, "NotFound", "unknown path"));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let resp = match (req.method(), parts.as_slice()) {
        (&Method::GET, ["invocation", "next"]) => next(&shared).await,
        (&Method::POST, ["invocation", id, "response"]) => {
            let id = id.to_string();
            match shared.take_if(&id) {
                Err(_) => api_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestID",
                    "Invalid request ID",
                ),
                Ok(tx) => match read_body(req.into_body(), MAX_RESPONSE_BYTES).await {
                    Some(body) => {
                        let _ = tx.send(Reply::Response(body));
                        accepted()
                    }
                    None => {
                        let _ = tx.send(Reply::ResponseTooLarge);
                        api_error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "RequestEntityTooLarge",
                            &format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
                        )
                    }
                },
            }
        }
        (&Method::POST, ["invocation", id, "error"]) => {
            let id = id.to_string();
            let error_type = error_type_header(&req);
            match shared.take_if(&id) {
                Err(_) => api_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestID",
                    "Invalid request ID",
                ),
                Ok(tx) => {
                    let body = read_body(req.into_body(), MAX_ERROR_BYTES)
                        .await
                        .unwrap_or_default();
                    let _ = tx.send(Reply::Error { body, error_type });
                    accepted()
                }
            }
        }
        (&Method::POST, ["init", "error"]) => {
            if *shared.phase.borrow() != Phase::Initializing {
                api_error(
                    StatusCode::FORBIDDEN,
                    "InvalidStateTransition",
                    "init/error is only valid before the first invocation/next",
                )
            } else {
                let error_type = error_type_header(&req);
                let body = read_body(req.into_body(), MAX_ERROR_BYTES)
                    .await
                    .unwrap_or_default();
                let mut err: FunctionErrorBody =
                    serde_json::from_slice(&body).unwrap_or_else(|_| {
                        FunctionErrorBody::new(
                            "Runtime.Unknown",
                            "Unknown application error occurred",
                        )
                    });
                if let Some(t) = error_type.filter(|t| !t.is_empty() && err.error_type.is_empty()) {
                    err.error_type = t;
                }
                shared.phase.send_replace(Phase::InitFailed(err));
                accepted()
            }
        }
        _ => api_error(StatusCode::NOT_FOUND, "NotFound", "unknown path"),
    };
    Ok(resp)
}

fn error_type_header(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(1024).collect())
}

async fn next(shared: &Arc<ApiShared>) -> Resp {
    if matches!(*shared.phase.borrow(), Phase::InitFailed(_)) {
        return api_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "init failed",
        );
    }
    // A runtime calling next while an invocation is open abandons it.
    if lock(&shared.current).is_some() {
        shared.finish_current(Reply::Error {
            body: Bytes::from_static(
                br#"{"errorMessage":"The runtime asked for the next invocation without answering this one","errorType":"Runtime.InvalidStateTransition"}"#,
            ),
            error_type: Some("Runtime.InvalidStateTransition".into()),
        });
    }
    shared.phase.send_if_modified(|p| {
        if matches!(*p, Phase::Initializing) {
            *p = Phase::Ready;
            true
        } else {
            false
        }
    });
    let inv = {
        let _waiting = shared.freezer.as_ref().map(|f| f.waiting());
        let mut q = shared.queue.lock().await;
        match q.recv().await {
            Some(inv) => inv,
            None => return api_error(StatusCode::GONE, "InstanceStopping", "instance is stopping"),
        }
    };
    *lock(&shared.current_id) = Some(inv.request_id.clone());
    *lock(&shared.current) = Some((inv.request_id.clone(), inv.reply));
    let mut r = Response::new(Full::new(inv.payload));
    let h = r.headers_mut();
    let mut set = |k: &'static str, v: &str| {
        if let Ok(v) = hyper::header::HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set("content-type", "application/json");
    set("lambda-runtime-aws-request-id", &inv.request_id);
    set("lambda-runtime-deadline-ms", &inv.deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &inv.function_arn);
    set("lambda-runtime-trace-id", &inv.trace_id);
    if let Some(cc) = &inv.client_context {
        set("lambda-runtime-client-context", cc);
    }
    r
}
