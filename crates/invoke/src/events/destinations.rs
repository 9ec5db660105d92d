//! Destination records (Lambda's shape) and their delivery: to another function's
//! queue, to a tern-managed queue, or POSTed to an http:// or https:// webhook.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tern_core::event_config::Destination;
use tern_core::names::account_of;
use tern_store::{NewEvent, StoreError, StoreHandle};

use super::queue::EventQueue;
use crate::now_ms;

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
    #[error("destination function {0} does not exist (any more)")]
    NoSuchFunction(String),
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
    registry: Arc<crate::registry::Registry>,
    /// How https webhooks are verified: the host's CA certificates, and the operator's.
    tls: tokio_rustls::TlsConnector,
}

/// The TLS settings of https webhooks: the system's trusted CAs (as the host's
/// `rustls-native-certs` finds them) plus those of `extra_ca_file` (PEM), if given.
pub fn webhook_tls(extra_ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;

    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "cannot read some of the host's CA certificates");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if let Some(path) = extra_ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("a certificate of {} is not usable: {e}", path.display()))?;
        }
    } else if added == 0 {
        tracing::warn!("no CA certificates found on this host: https webhooks cannot be verified (set async.webhook_ca_file)");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Destinations {
    pub fn new(
        store: StoreHandle,
        queue: Arc<EventQueue>,
        registry: Arc<crate::registry::Registry>,
        tls: tokio_rustls::TlsConnector,
    ) -> Self {
        Destinations {
            store,
            queue,
            registry,
            tls,
        }
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
                // Queued for a function that is gone, the record would be dropped with
                // its events: fail the delivery instead (an OnFailure event then goes to
                // the dead-letter queue).
                let Some(target) = self
                    .registry
                    .resolve(namespace, &name, qualifier.as_deref(), None)
                    .await
                    .map_err(|e| DeliveryError::Store(Box::new(e)))?
                else {
                    return Err(DeliveryError::NoSuchFunction(destination.to_string()));
                };
                self.queue
                    .enqueue(NewEvent {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        namespace: namespace.to_string(),
                        function: name,
                        qualifier: qualifier.unwrap_or_else(|| "$LATEST".to_string()),
                        payload: body.into_bytes(),
                        enqueued_ms: now_ms(),
                        incarnation: target.incarnation.clone(),
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
                    match post(&self.tls, &url, Bytes::from(body.clone())).await {
                        Ok(()) => return Ok(()),
                        Err(e) => last = e,
                    }
                }
                Err(DeliveryError::Webhook { url, detail: last })
            }
        }
    }
}

/// POSTs `body` as JSON to an http:// or https:// URL; any 2xx is a delivery.
async fn post(tls: &tokio_rustls::TlsConnector, url: &str, body: Bytes) -> Result<(), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let host = uri.host().ok_or("URL has no host")?;
    // An IPv6 literal comes bracketed in the URL, bare for the socket and the TLS name.
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let authority = uri
        .authority()
        .map_or(bare_host.clone(), |a| a.as_str().to_string());
    let req = hyper::Request::post(path)
        .header("host", authority)
        .header("content-type", "application/json")
        .header("user-agent", "tern-destinations")
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((bare_host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        if !https {
            return send(tcp, req).await;
        }
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(bare_host.clone())
            .map_err(|e| format!("bad TLS name {bare_host}: {e}"))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(stream, req).await
    };
    tokio::time::timeout(WEBHOOK_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", WEBHOOK_TIMEOUT.as_secs()))?
}

/// One HTTP/1.1 request over `io`; reads at most 64 KB of the answer, then closes.
async fn send<IO>(io: IO, req: hyper::Request<Full<Bytes>>) -> Result<(), String>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status();
    let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await;
    conn.abort();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}
