//! The execution step every trigger shares: admit → acquire → run → release, reported
//! as it goes (`reporting.rs`: START/END/REPORT and metrics). Sync invoke, the async
//! dispatcher and later triggers call [`Executor::execute`] and shape its
//! [`Execution`] their own way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_core::function::FunctionRecord;
use tern_core::limits;
use tern_core::wire::FunctionErrorBody;
use tern_runtime::{
    describe_exit, AcquireError, InstanceManager, InvokeInput, Outcome, StartError,
};
use tern_telemetry::{LogSink, Metrics};

use crate::admission::{Admission, Throttle};
use crate::now_ms;
use crate::platform_log::Report;
use crate::reporting::{Reporting, RunReport};

/// One run of a function, as a trigger asks for it.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    pub rec: Arc<FunctionRecord>,
    /// The ARN the caller invoked (with its qualifier), as the function sees it.
    pub invoked_arn: String,
    pub request_id: String,
    /// Valid JSON.
    pub payload: Bytes,
    /// The client context's JSON, if any.
    pub client_context: Option<String>,
}

/// How a run that reached the function ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Success,
    /// The handler raised or returned an error, or its response was too large.
    FunctionError,
    /// The function's init failed (Lambda answers it as a function error).
    InitError,
    Timeout,
    OutOfMemory,
    /// The runtime exited mid-request.
    Crash,
}

impl RunOutcome {
    /// The `outcome` label of `tern_invocations_total`, and of the status API.
    pub fn label(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::FunctionError => "function_error",
            RunOutcome::InitError => "init_error",
            RunOutcome::Timeout => "timeout",
            RunOutcome::OutOfMemory => "oom",
            RunOutcome::Crash => "crash",
        }
    }
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct Execution {
    pub outcome: RunOutcome,
    /// The response, or the error body of a function error.
    pub payload: Bytes,
    /// The error's type (`errorType` of the body, or `Sandbox.Timedout`, …).
    pub error_type: Option<String>,
    /// Every log line of the run, START to REPORT.
    pub transcript: String,
    pub duration: Duration,
    /// Set when the run started an instance.
    pub init: Option<Duration>,
}

impl Execution {
    pub fn failed(&self) -> bool {
        self.outcome != RunOutcome::Success
    }
}

/// Why a run never reached the function. Each is a system failure: the caller may try
/// again later.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    #[error("{0}")]
    Throttled(Throttle),
    #[error("The runtime '{runtime}' of this function is no longer available on this server; available: {available}")]
    UnknownRuntime { runtime: String, available: String },
    #[error("could not start an instance of the function: {0}")]
    Launch(String),
}

pub struct Executor {
    admission: Arc<Admission>,
    instances: Arc<InstanceManager>,
    reporting: Reporting,
    spec: Box<dyn Fn(&FunctionRecord) -> tern_runtime::FunctionSpec + Send + Sync>,
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

impl Executor {
    pub fn new(
        admission: Arc<Admission>,
        instances: Arc<InstanceManager>,
        logs: LogSink,
        metrics: Arc<Metrics>,
        spec: impl Fn(&FunctionRecord) -> tern_runtime::FunctionSpec + Send + Sync + 'static,
    ) -> Self {
        Executor {
            admission,
            instances,
            reporting: Reporting { logs, metrics },
            spec: Box::new(spec),
        }
    }

    pub fn instances(&self) -> &Arc<InstanceManager> {
        &self.instances
    }

    /// Runs one request: takes a unit of concurrency and an instance, runs, gives both
    /// back, and writes START/END/REPORT and the metrics. If the caller goes away mid-run
    /// (its future is dropped), the instance is not leaked: it is stopped, and its room
    /// given back (see [`Held`]).
    pub async fn execute(&self, req: ExecutionRequest) -> Result<Execution, ExecutionError> {
        let rec = &req.rec;
        let mut report = self.reporting.run(rec, &req.request_id);
        // Held until the run is reported: the request counts against concurrency.
        let _permit = self
            .admission
            .admit(&rec.namespace, &rec.name)
            .map_err(|t| {
                report.throttled();
                ExecutionError::Throttled(t)
            })?;
        let started = Instant::now();
        let lease = match self.instances.acquire(&(self.spec)(rec)).await {
            Ok(lease) => lease,
            Err(AcquireError::AtCapacity(detail)) => {
                report.throttled();
                return Err(ExecutionError::Throttled(Throttle::NoCapacity(detail)));
            }
            Err(AcquireError::UnknownRuntime { runtime, available }) => {
                return Err(ExecutionError::UnknownRuntime { runtime, available });
            }
            Err(AcquireError::Start(StartError::Launch(msg))) => {
                tracing::error!(function = %rec.name, error = %msg, "instance launch failed");
                report.launch_failed();
                return Err(ExecutionError::Launch(msg));
            }
            Err(AcquireError::Start(StartError::Init(body, output, peak_mb))) => {
                // Lambda answers an init failure as a function error of the request.
                let duration = started.elapsed();
                report.output(&output);
                let summary = Report {
                    duration,
                    memory_mb: rec.memory_mb,
                    max_memory_used_mb: peak_mb.unwrap_or(0),
                    init: None,
                    platform_error: Some(body.error_type.clone()),
                    failed: true,
                };
                report.finished(RunOutcome::InitError, &summary, duration);
                return Ok(Execution {
                    outcome: RunOutcome::InitError,
                    payload: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                    error_type: Some(body.error_type),
                    transcript: report.transcript,
                    duration,
                    init: None,
                });
            }
        };
        let mut held = Held {
            instances: &self.instances,
            lease: Some(lease),
        };
        let lease = held.lease.as_ref().expect("just set");
        let init = lease.cold.then_some(lease.instance.init_duration);
        report.started(
            init.map(|d| (d, lease.instance.served_by.label())),
            self.instances.live(),
        );
        let run_started = Instant::now();
        let (outcome, output) = lease
            .instance
            .invoke(InvokeInput {
                request_id: req.request_id.clone(),
                payload: req.payload,
                timeout: Duration::from_secs(u64::from(rec.timeout_s)),
                function_arn: req.invoked_arn,
                trace_id: new_trace_id(),
                client_context: req.client_context,
            })
            .await;
        let duration = run_started.elapsed();
        report.output(&output);
        let (payload, run, error_type) = classify(&outcome, rec, &req.request_id, &mut report);
        let max_used = lease.instance.memory_peak_mb().unwrap_or(0);
        let memory_mb = lease.instance.memory_mb;
        let lease = held.lease.take().expect("held until here");
        self.instances
            .release(lease, outcome.instance_reusable())
            .await;
        let summary = Report {
            duration,
            memory_mb,
            max_memory_used_mb: max_used,
            init,
            platform_error: error_type
                .clone()
                .filter(|_| !matches!(run, RunOutcome::FunctionError | RunOutcome::Success)),
            failed: run != RunOutcome::Success,
        };
        report.finished(run, &summary, started.elapsed());
        self.reporting
            .metrics
            .instances
            .set(self.instances.live() as i64);
        Ok(Execution {
            outcome: run,
            payload,
            error_type,
            transcript: report.transcript,
            duration,
            init,
        })
    }
}

/// An instance a run holds. If the run is dropped before it gives the instance back
/// (its caller went away), the instance is stopped and its room freed by a task of its
/// own: its state mid-request is unknown, so it is not reused.
struct Held<'a> {
    instances: &'a Arc<InstanceManager>,
    lease: Option<tern_runtime::Lease>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let instances = self.instances.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move { instances.release(lease, false).await });
            }
            Err(_) => tracing::error!("a run was dropped outside the runtime; its instance leaks"),
        }
    }
}

/// What a run's outcome answers: the payload (the response, or Lambda's error body),
/// how it ended, and the error type. A timeout or crash also gets its platform line.
fn classify(
    outcome: &Outcome,
    rec: &FunctionRecord,
    request_id: &str,
    report: &mut RunReport<'_>,
) -> (Bytes, RunOutcome, Option<String>) {
    match outcome {
        Outcome::Success(b) => (b.clone(), RunOutcome::Success, None),
        Outcome::FunctionError { body, error_type } => {
            (body.clone(), RunOutcome::FunctionError, error_type.clone())
        }
        Outcome::ResponseTooLarge => (
            error_json(
                "Function.ResponseSizeTooLarge",
                format!(
                    "Response payload size exceeded maximum allowed payload size ({} bytes).",
                    limits::SYNC_PAYLOAD_BYTES
                ),
            ),
            RunOutcome::FunctionError,
            Some("Function.ResponseSizeTooLarge".to_string()),
        ),
        Outcome::Timeout => {
            let msg = format!(
                "RequestId: {request_id} Error: Task timed out after {}.00 seconds",
                rec.timeout_s
            );
            report.line(Some(format!(
                "{} {msg}",
                tern_core::timefmt::rfc3339(now_ms())
            )));
            (
                error_json("Sandbox.Timedout", msg),
                RunOutcome::Timeout,
                Some("Sandbox.Timedout".to_string()),
            )
        }
        Outcome::Crashed { status, oom } => {
            let (etype, msg, run) = if *oom {
                report.out_of_memory();
                (
                    "Runtime.OutOfMemory",
                    format!(
                        "RequestId: {request_id} Error: Runtime exited with error: signal: killed (Function exceeded memory limit of {} MB)",
                        rec.memory_mb
                    ),
                    RunOutcome::OutOfMemory,
                )
            } else {
                (
                    "Runtime.ExitError",
                    format!(
                        "RequestId: {request_id} Error: Runtime exited {}",
                        describe_exit(*status)
                    ),
                    RunOutcome::Crash,
                )
            };
            report.line(Some(msg.clone()));
            (error_json(etype, msg), run, Some(etype.to_string()))
        }
    }
}
