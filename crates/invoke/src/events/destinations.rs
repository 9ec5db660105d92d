//! Destination records (Lambda's shape) and their delivery: to another function's
//! queue, to a tern-managed queue, or POSTed to an http:// webhook.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tern_core::event_config::Destination;
use tern_core::names::account_of;
use tern_store::{NewEvent, StoreError, StoreHandle};

use super::queue::EventQueue;

/// How long a webhook may take to answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of a webhook before the delivery counts as failed.
const WEBHOOK_TRIES: u32 = 3;

/// Why a record was sent (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// What a record says about the event.
pub struct RecordInput<'a> {
    pub request_id: &'a str,
    pub function_arn: String,
    pub condition: Condition,
    pub invoke_count: u32,
    pub request_payload: &'a [u8],
    /// The last attempt's response, with its function error type if it failed; none
    /// when the event never ran.
    pub response: Option<(&'a [u8], Option<&'a str>)>,
    pub timestamp_ms: i64,
}

fn json_or_string(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::from(String::from_utf8_lossy(bytes).into_owned()))
}

/// The record in Lambda's destination shape.
pub fn record(input: &RecordInput<'_>) -> serde_json::Value {
    let mut rec = serde_json::json!({
        "version": "1.0",
        "timestamp": tern_core::timefmt::rfc3339(input.timestamp_ms),
        "requestContext": {
            "requestId": input.request_id,
            "functionArn": input.function_arn,
            "condition": input.condition.as_str(),
            "approximateInvokeCount": input.invoke_count,
        },
        "requestPayload": json_or_string(input.request_payload),
    });
    if let Some((payload, function_error)) = input.response {
        let mut ctx = serde_json::json!({
            "statusCode": 200,
            "executedVersion": "$LATEST",
        });
        if let Some(fe) = function_error {
            ctx["functionError"] = serde_json::Value::from(fe);
        }
        rec["responseContext"] = ctx;
        rec["responsePayload"] = json_or_string(payload);
    }
    rec
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("destination '{0}' is not valid: {1}")]
    Invalid(String, String),
    #[error("destination function {0} belongs to another account")]
    OtherAccount(String),
    #[error("could not store the record: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    #[error("webhook {url} failed: {detail}")]
    Webhook { url: String, detail: String },
}

impl From<StoreError> for DeliveryError {
    fn from(e: StoreError) -> Self {
        DeliveryError::Store(Box::new(e))
    }
}

pub struct Destinations {
    store: StoreHandle,
    queue: Arc<EventQueue>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Destinations {
    pub fn new(store: StoreHandle, queue: Arc<EventQueue>) -> Self {
        Destinations { store, queue }
    }

    /// Delivers `record` of an event of `namespace` to `destination`.
    pub async fn deliver(
        &self,
        namespace: &str,
        destination: &str,
        record: &serde_json::Value,
    ) -> Result<(), DeliveryError> {
        let dest = Destination::parse(destination)
            .map_err(|e| DeliveryError::Invalid(destination.to_string(), e))?;
        let body = record.to_string();
        match dest {
            Destination::Function {
                account,
                name,
                qualifier,
            } => {
                if account != account_of(namespace) {
                    return Err(DeliveryError::OtherAccount(destination.to_string()));
                }
                self.queue
                    .enqueue(NewEvent {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        namespace: namespace.to_string(),
                        function: name,
                        qualifier: qualifier.unwrap_or_else(|| "$LATEST".to_string()),
                        payload: body.into_bytes(),
                        enqueued_ms: now_ms(),
                        idempotency_key: None,
                    })
                    .await
                    .map_err(|e| DeliveryError::Store(Box::new(e)))?;
                Ok(())
            }
            Destination::Queue { account, name } => {
                if account != account_of(namespace) {
                    return Err(DeliveryError::OtherAccount(destination.to_string()));
                }
                let ns = namespace.to_string();
                self.store
                    .call::<_, StoreError, _>(move |s| {
                        s.push_queue_message(&ns, &name, &body, now_ms())
                    })
                    .await?;
                Ok(())
            }
            Destination::Webhook { url } => {
                let mut last = String::new();
                for attempt in 0..WEBHOOK_TRIES {
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    }
                    match post(&url, Bytes::from(body.clone())).await {
                        Ok(()) => return Ok(()),
                        Err(e) => last = e,
                    }
                }
                Err(DeliveryError::Webhook { url, detail: last })
            }
        }
    }
}

/// POSTs `body` as JSON to an http:// URL; any 2xx is a delivery.
async fn post(url: &str, body: Bytes) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let host = uri.host().ok_or("URL has no host")?.to_string();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::post(path)
            .header(
                "host",
                uri.authority().map_or(host.as_str(), |a| a.as_str()),
            )
            .header("content-type", "application/json")
            .header("user-agent", "tern-destinations")
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        // Read (and drop) at most a little of the answer, then close.
        let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await;
        conn.abort();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    };
    tokio::time::timeout(WEBHOOK_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", WEBHOOK_TIMEOUT.as_secs()))?
}
