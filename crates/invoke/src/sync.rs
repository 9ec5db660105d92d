//! The Invoke operation: parse the request, then run it now (`RequestResponse`), only
//! check it (`DryRun`), or store it for the dispatcher (`Event`). Running goes through
//! the shared execution step; this file shapes its result as Lambda does (function
//! errors are 200 with `X-Amz-Function-Error`).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use tern_core::function::{FunctionRecord, LATEST};
use tern_core::limits;
use tern_core::names::function_arn;
use tern_runtime::output::tail_bytes;
use tern_runtime::InstanceManager;
use tern_store::NewEvent;

use crate::error::ServiceError;
use crate::events::EventQueue;
use crate::execution::{ExecutionRequest, Executor};
use crate::functions::{Caller, FunctionService};
use crate::now_ms;

/// An Invoke request as the gateway hands it over.
#[derive(Debug, Default)]
pub struct InvokeRequest {
    pub function_name: String,
    pub qualifier: Option<String>,
    /// `X-Amz-Invocation-Type`.
    pub invocation_type: Option<String>,
    /// `X-Amz-Log-Type`.
    pub log_type: Option<String>,
    /// `X-Amz-Client-Context` (base64 of a JSON object); the runtime gets the JSON.
    pub client_context: Option<String>,
    /// `X-Tern-Idempotency-Key` (Event only).
    pub idempotency_key: Option<String>,
    /// The invocation's request id when the caller chose it (a function URL's event
    /// carries it); a new one otherwise.
    pub request_id: Option<String>,
    pub payload: Bytes,
}

/// The result of an Invoke, before it becomes HTTP.
#[derive(Debug)]
pub struct InvokeResponse {
    pub status: u16,
    pub payload: Bytes,
    /// `X-Amz-Function-Error` (always `Unhandled` for now).
    pub function_error: Option<&'static str>,
    /// `X-Amz-Log-Result`: base64 of the log tail.
    pub log_result: Option<String>,
    pub executed_version: String,
    pub request_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

/// A checked Invoke request.
struct Parsed {
    kind: InvocationType,
    tail: bool,
    client_context: Option<String>,
    rec: Arc<FunctionRecord>,
    qualifier: Option<String>,
    payload: Bytes,
    idempotency_key: Option<String>,
}

pub struct Invoker {
    functions: Arc<FunctionService>,
    executor: Arc<Executor>,
    queue: Arc<EventQueue>,
}

fn idempotency_key(key: &str) -> Result<String, ServiceError> {
    if key.is_empty()
        || key.chars().count() > limits::IDEMPOTENCY_KEY_CHARS
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ServiceError::InvalidParameterValue(format!(
            "X-Tern-Idempotency-Key must be 1 to {} printable ASCII characters",
            limits::IDEMPOTENCY_KEY_CHARS
        )));
    }
    Ok(key.to_string())
}

impl Invoker {
    pub fn new(
        functions: Arc<FunctionService>,
        executor: Arc<Executor>,
        queue: Arc<EventQueue>,
    ) -> Self {
        Invoker {
            functions,
            executor,
            queue,
        }
    }

    fn instances(&self) -> &Arc<InstanceManager> {
        self.executor.instances()
    }

    /// Live instances (idle and busy) on this server.
    pub fn live_instances(&self) -> usize {
        self.instances().live()
    }

    /// Runtimes started ahead of time, ready for a cold start.
    pub fn prewarmed_instances(&self) -> usize {
        self.instances().prewarmed_count()
    }

    /// Everything the launcher built ahead and keeps waiting.
    pub fn built_ahead(&self) -> usize {
        self.instances().built_ahead()
    }

    /// Memory counted against the budget (MB) and idle instances evicted early, by why.
    pub fn instance_memory(&self) -> (u64, Vec<(&'static str, u64)>) {
        (
            self.instances().live_memory_mb(),
            self.instances().evictions(),
        )
    }

    /// Connections refused by the egress policy, per (namespace, function).
    pub fn network_refusals(&self) -> Vec<(String, String, u64)> {
        self.instances()
            .network_refusals()
            .into_iter()
            .filter_map(|(owner, n)| {
                let (namespace, function) = owner.split_once('/')?;
                Some((namespace.to_string(), function.to_string(), n))
            })
            .collect()
    }

    /// The /tmp disk budget and its use (`None`: /tmp is not on the host disk).
    pub fn tmp_disk(&self) -> Option<tern_runtime::TmpDiskUsage> {
        self.instances().tmp_disk()
    }

    pub fn queue(&self) -> &Arc<EventQueue> {
        &self.queue
    }

    async fn parse(&self, caller: &Caller, req: InvokeRequest) -> Result<Parsed, ServiceError> {
        let kind = match req.invocation_type.as_deref() {
            None | Some("RequestResponse") => InvocationType::RequestResponse,
            Some("DryRun") => InvocationType::DryRun,
            Some("Event") => InvocationType::Event,
            Some(other) => {
                return Err(ServiceError::InvalidParameterValue(format!(
                    "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
                )))
            }
        };
        let tail = match req.log_type.as_deref() {
            None | Some("None") => false,
            Some("Tail") => true,
            Some(other) => {
                return Err(ServiceError::InvalidParameterValue(format!(
                    "1 validation error detected: Value '{other}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]"
                )))
            }
        };
        let client_context = req
            .client_context
            .as_deref()
            .map(crate::validate::client_context)
            .transpose()?;
        let idempotency_key = match (&req.idempotency_key, kind) {
            (None, _) => None,
            (Some(k), InvocationType::Event) => Some(idempotency_key(k)?),
            (Some(_), _) => {
                return Err(ServiceError::InvalidParameterValue(
                    "X-Tern-Idempotency-Key applies to asynchronous invocations (InvocationType Event) only".to_string(),
                ))
            }
        };
        // An alias with a weighted second version picks one for this request; an
        // event picks when it runs.
        let roll = (kind == InvocationType::RequestResponse).then(rand::random::<f64>);
        let (rec, qualifier) = self
            .functions
            .lookup_rolled(caller, &req.function_name, req.qualifier.as_deref(), roll)
            .await?;
        if kind == InvocationType::Event && req.payload.len() > limits::ASYNC_PAYLOAD_BYTES {
            return Err(ServiceError::RequestTooLarge(format!(
                "Request must be smaller than {} bytes for the InvokeFunction operation with InvocationType Event",
                limits::ASYNC_PAYLOAD_BYTES
            )));
        }
        if req.payload.len() > limits::SYNC_PAYLOAD_BYTES {
            return Err(ServiceError::RequestTooLarge(format!(
                "Request must be smaller than {} bytes for the InvokeFunction operation",
                limits::SYNC_PAYLOAD_BYTES
            )));
        }
        let payload = if req.payload.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else {
            // JSON is UTF-8; skipping a string's contents does not check it.
            if let Err(e) = std::str::from_utf8(&req.payload) {
                return Err(ServiceError::InvalidRequestContent(format!(
                    "Could not parse request body into json: invalid UTF-8 at byte {}",
                    e.valid_up_to()
                )));
            }
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&req.payload) {
                return Err(ServiceError::InvalidRequestContent(format!(
                    "Could not parse request body into json: {e}"
                )));
            }
            req.payload
        };
        Ok(Parsed {
            kind,
            tail,
            client_context,
            rec,
            qualifier,
            payload,
            idempotency_key,
        })
    }

    pub async fn invoke(
        &self,
        caller: &Caller,
        req: InvokeRequest,
    ) -> Result<InvokeResponse, ServiceError> {
        let request_id = req
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let parsed = self.parse(caller, req).await?;
        let accepted = |status, request_id| InvokeResponse {
            status,
            payload: Bytes::new(),
            function_error: None,
            log_result: None,
            executed_version: LATEST.to_string(),
            request_id,
        };
        match parsed.kind {
            InvocationType::DryRun => return Ok(accepted(204, request_id)),
            InvocationType::Event => {
                // Lambda passes a client context to synchronous invocations only.
                let request_id = self
                    .queue
                    .enqueue(NewEvent {
                        request_id,
                        namespace: parsed.rec.namespace.clone(),
                        function: parsed.rec.name.clone(),
                        qualifier: parsed.qualifier.unwrap_or_else(|| LATEST.to_string()),
                        payload: parsed.payload.to_vec(),
                        enqueued_ms: now_ms(),
                        incarnation: parsed.rec.incarnation.clone(),
                        idempotency_key: parsed.idempotency_key,
                    })
                    .await?;
                return Ok(accepted(202, request_id));
            }
            InvocationType::RequestResponse => {}
        }
        let executed_version = parsed.rec.version.clone();
        let config = self.functions.config();
        let invoked_arn = function_arn(
            &config.region,
            &caller.account,
            &parsed.rec.name,
            parsed.qualifier.as_deref(),
        );
        let run = self
            .executor
            .execute(ExecutionRequest {
                rec: parsed.rec,
                invoked_arn,
                request_id: request_id.clone(),
                payload: parsed.payload,
                client_context: parsed.client_context,
            })
            .await?;
        Ok(InvokeResponse {
            status: 200,
            function_error: run.failed().then_some("Unhandled"),
            log_result: parsed.tail.then(|| encode_tail(&run.transcript)),
            payload: run.payload,
            executed_version,
            request_id,
        })
    }
}

/// Base64 of the last 4 KB of the log, as `X-Amz-Log-Result`.
fn encode_tail(transcript: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(tail_bytes(transcript, limits::LOG_TAIL_BYTES))
}
