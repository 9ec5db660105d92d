//! Synchronous invocation (`RequestResponse` and `DryRun`): resolve the function, take
//! an instance, run the request, write START/END/REPORT, and shape the result as Lambda
//! does (function errors are 200 with `X-Amz-Function-Error`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use tern_core::function::{FunctionRecord, LATEST};
use tern_core::limits;
use tern_core::names::function_arn;
use tern_core::wire::FunctionErrorBody;
use tern_runtime::output::tail_bytes;
use tern_runtime::{
    describe_exit, AcquireError, InstanceManager, InvokeInput, Outcome, StartError,
};
use tern_store::LogLine;
use tern_telemetry::{LogSink, Metrics};

use crate::error::ServiceError;
use crate::functions::{Caller, FunctionService};
use crate::platform_log::{PlatformLog, Report};

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

pub struct Invoker {
    functions: Arc<FunctionService>,
    instances: Arc<InstanceManager>,
    logs: LogSink,
    metrics: Arc<Metrics>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An X-Ray style trace id, as Lambda passes in `_X_AMZN_TRACE_ID`.
fn new_trace_id() -> String {
    let secs = now_ms() / 1000;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &id[..24],
        &parent[..16]
    )
}

fn error_json(error_type: &str, message: String) -> Bytes {
    let body = FunctionErrorBody::new(error_type, message);
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

impl Invoker {
    pub fn new(
        functions: Arc<FunctionService>,
        instances: Arc<InstanceManager>,
        logs: LogSink,
        metrics: Arc<Metrics>,
    ) -> Self {
        Invoker {
            functions,
            instances,
            logs,
            metrics,
        }
    }

    /// Live instances (idle and busy) on this server.
    pub fn live_instances(&self) -> usize {
        self.instances.live()
    }

    /// Runtimes started ahead of time, ready for a cold start.
    pub fn prewarmed_instances(&self) -> usize {
        self.instances.prewarmed_count()
    }

    /// Everything the launcher built ahead and keeps waiting.
    pub fn built_ahead(&self) -> usize {
        self.instances.built_ahead()
    }

    /// Memory counted against the budget (MB) and idle instances evicted early, by why.
    pub fn instance_memory(&self) -> (u64, Vec<(&'static str, u64)>) {
        (self.instances.live_memory_mb(), self.instances.evictions())
    }

    /// The /tmp disk budget and its use (`None`: /tmp is not on the host disk).
    pub fn tmp_disk(&self) -> Option<tern_runtime::TmpDiskUsage> {
        self.instances.tmp_disk()
    }

    fn log(&self, rec: &FunctionRecord, request_id: &str, line: String) {
        self.logs.push(LogLine {
            namespace: rec.namespace.clone(),
            function: rec.name.clone(),
            request_id: Some(request_id.to_string()),
            ts_ms: now_ms(),
            line,
        });
    }

    fn count(&self, function: &str, outcome: &str) {
        let mut labels = Metrics::function_labels(function);
        labels.push(("outcome".to_string(), outcome.to_string()));
        self.metrics.invocations.get_or_create(&labels).inc();
    }

    pub async fn invoke(
        &self,
        caller: &Caller,
        req: InvokeRequest,
    ) -> Result<InvokeResponse, ServiceError> {
        let dry_run = match req.invocation_type.as_deref() {
            None | Some("RequestResponse") => false,
            Some("DryRun") => true,
            Some("Event") => {
                return Err(ServiceError::InvalidParameterValue(
                    "InvocationType 'Event' (asynchronous invocation) is not supported by this tern server yet; use RequestResponse".to_string(),
                ))
            }
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
        let (rec, qualifier) = self
            .functions
            .lookup(caller, &req.function_name, req.qualifier.as_deref())
            .await?;
        if req.payload.len() > limits::SYNC_PAYLOAD_BYTES {
            return Err(ServiceError::RequestTooLarge(format!(
                "Request must be smaller than {} bytes for the InvokeFunction operation",
                limits::SYNC_PAYLOAD_BYTES
            )));
        }
        let payload = if req.payload.iter().all(u8::is_ascii_whitespace) {
            Bytes::from_static(b"{}")
        } else {
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&req.payload) {
                return Err(ServiceError::InvalidRequestContent(format!(
                    "Could not parse request body into json: {e}"
                )));
            }
            req.payload
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        if dry_run {
            return Ok(InvokeResponse {
                status: 204,
                payload: Bytes::new(),
                function_error: None,
                log_result: None,
                executed_version: LATEST.to_string(),
                request_id,
            });
        }
        // Held until the response is shaped: the request counts against concurrency.
        let _permit = match self.functions.admission().admit(&rec.namespace, &rec.name) {
            Ok(p) => p,
            Err(e) => {
                self.metrics
                    .throttles
                    .get_or_create(&Metrics::function_labels(&rec.name))
                    .inc();
                return Err(e);
            }
        };
        let config = self.functions.config();
        let invoked_arn = function_arn(
            &config.region,
            &caller.account,
            &rec.name,
            qualifier.as_deref(),
        );
        let spec = self.functions.spec(&rec);
        let started = Instant::now();
        let mut transcript = String::new();
        let emit = |line: Option<String>, transcript: &mut String| {
            if let Some(line) = line {
                transcript.push_str(&line);
                transcript.push('\n');
                self.log(&rec, &request_id, line);
            }
        };
        let platform = PlatformLog::new(&rec.logging, &request_id);
        let lease = match self.instances.acquire(&spec).await {
            Ok(lease) => lease,
            Err(AcquireError::AtCapacity(detail)) => {
                self.metrics
                    .throttles
                    .get_or_create(&Metrics::function_labels(&rec.name))
                    .inc();
                return Err(ServiceError::TooManyRequests {
                    reason: "ConcurrentInvocationLimitExceeded",
                    message: format!(
                        "Rate Exceeded. No instance could be started or freed in time: {detail}"
                    ),
                });
            }
            Err(AcquireError::UnknownRuntime { runtime, available }) => {
                return Err(ServiceError::InvalidRuntime(format!(
                    "The runtime '{runtime}' of this function is no longer available on this server; available: {available}"
                )));
            }
            Err(AcquireError::Start(StartError::Launch(msg))) => {
                tracing::error!(function = %rec.name, error = %msg, "instance launch failed");
                self.count(&rec.name, "launch_error");
                return Err(ServiceError::Service(format!(
                    "could not start an instance of the function: {msg}"
                )));
            }
            Err(AcquireError::Start(StartError::Init(body, output))) => {
                // Lambda answers an init failure as a function error of the request.
                let elapsed = started.elapsed();
                for line in output.lines() {
                    transcript.push_str(line);
                    transcript.push('\n');
                }
                let report = Report {
                    duration: elapsed,
                    memory_mb: rec.memory_mb,
                    max_memory_used_mb: 0,
                    init: None,
                    platform_error: Some(body.error_type.clone()),
                    failed: true,
                };
                emit(platform.start(LATEST, now_ms()), &mut transcript);
                emit(platform.end(&report, now_ms()), &mut transcript);
                emit(platform.report(&report, now_ms()), &mut transcript);
                self.count(&rec.name, "init_error");
                return Ok(InvokeResponse {
                    status: 200,
                    payload: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                    function_error: Some("Unhandled"),
                    log_result: tail.then(|| encode_tail(&transcript)),
                    executed_version: LATEST.to_string(),
                    request_id,
                });
            }
        };
        let labels = Metrics::function_labels(&rec.name);
        let init = lease.cold.then_some(lease.instance.init_duration);
        if let Some(d) = init {
            // By what the launcher served the start from as well: a template, a
            // runtime started ahead, a sandbox built ahead, or nothing built ahead.
            let mut by = labels.clone();
            by.push((
                "served_by".to_string(),
                lease.instance.served_by.label().to_string(),
            ));
            self.metrics.cold_starts.get_or_create(&by).inc();
            self.metrics
                .init_seconds
                .get_or_create(&by)
                .observe(d.as_secs_f64());
        }
        self.metrics.instances.set(self.instances.live() as i64);
        emit(platform.start(LATEST, now_ms()), &mut transcript);
        let run_started = Instant::now();
        let (outcome, output) = lease
            .instance
            .invoke(InvokeInput {
                request_id: request_id.clone(),
                payload,
                timeout: Duration::from_secs(u64::from(rec.timeout_s)),
                function_arn: invoked_arn,
                trace_id: new_trace_id(),
                client_context,
            })
            .await;
        let duration = run_started.elapsed();
        transcript.push_str(&output);
        if !output.is_empty() && !output.ends_with('\n') {
            transcript.push('\n');
        }
        let (response, function_error, outcome_label, error_type) = match &outcome {
            Outcome::Success(b) => (b.clone(), None, "success", None),
            Outcome::FunctionError { body, error_type } => (
                body.clone(),
                Some("Unhandled"),
                "function_error",
                error_type.clone(),
            ),
            Outcome::ResponseTooLarge => (
                error_json(
                    "Function.ResponseSizeTooLarge",
                    format!(
                        "Response payload size exceeded maximum allowed payload size ({} bytes).",
                        limits::SYNC_PAYLOAD_BYTES
                    ),
                ),
                Some("Unhandled"),
                "function_error",
                Some("Function.ResponseSizeTooLarge".to_string()),
            ),
            Outcome::Timeout => {
                let msg = format!(
                    "RequestId: {request_id} Error: Task timed out after {}.00 seconds",
                    rec.timeout_s
                );
                emit(
                    Some(format!("{} {msg}", tern_core::timefmt::rfc3339(now_ms()))),
                    &mut transcript,
                );
                (
                    error_json("Sandbox.Timedout", msg),
                    Some("Unhandled"),
                    "timeout",
                    Some("Sandbox.Timedout".to_string()),
                )
            }
            Outcome::Crashed { status, oom } => {
                let (etype, msg) = if *oom {
                    self.metrics.oom_kills.get_or_create(&labels).inc();
                    (
                        "Runtime.OutOfMemory",
                        format!(
                            "RequestId: {request_id} Error: Runtime exited with error: signal: killed (Function exceeded memory limit of {} MB)",
                            rec.memory_mb
                        ),
                    )
                } else {
                    (
                        "Runtime.ExitError",
                        format!(
                            "RequestId: {request_id} Error: Runtime exited {}",
                            describe_exit(*status)
                        ),
                    )
                };
                emit(Some(msg.clone()), &mut transcript);
                (
                    error_json(etype, msg),
                    Some("Unhandled"),
                    if *oom { "oom" } else { "crash" },
                    Some(etype.to_string()),
                )
            }
        };
        let max_used = lease.instance.memory_peak_mb().unwrap_or(0);
        let memory_mb = lease.instance.memory_mb;
        let reusable = outcome.instance_reusable();
        self.instances.release(lease, reusable).await;
        let report = Report {
            duration,
            memory_mb,
            max_memory_used_mb: max_used,
            init,
            platform_error: error_type.filter(|_| outcome_label != "function_error"),
            failed: function_error.is_some(),
        };
        emit(platform.end(&report, now_ms()), &mut transcript);
        emit(platform.report(&report, now_ms()), &mut transcript);
        self.count(&rec.name, outcome_label);
        self.metrics
            .invocation_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.metrics.instances.set(self.instances.live() as i64);
        Ok(InvokeResponse {
            status: 200,
            payload: response,
            function_error,
            log_result: tail.then(|| encode_tail(&transcript)),
            executed_version: LATEST.to_string(),
            request_id,
        })
    }
}

/// Base64 of the last 4 KB of the log, as `X-Amz-Log-Result`.
fn encode_tail(transcript: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(tail_bytes(transcript, limits::LOG_TAIL_BYTES))
}
