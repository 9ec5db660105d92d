//! One function instance: a launched runtime process, its Runtime API server and its
//! output tap. Runs one invocation at a time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_core::wire::FunctionErrorBody;

use tern_sandbox::{ExitStatus, InstanceProcess, LaunchSpec, Launcher, Resources, ServedBy};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::{self, ApiShared, Invocation, Phase, Reply};
use crate::credentials::CredentialGuard;
use crate::freezer::Freezer;
use crate::output::{LogConsumer, OutputTap};

/// Why an instance could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The launcher failed (sandbox setup, exec).
    #[error("{0}")]
    Launch(String),
    /// The runtime reported an init error, exited, or timed out during init. Carries
    /// the output the runtime printed meanwhile and the instance's peak memory (MB, from
    /// its cgroup, where it has one), read before it was destroyed.
    #[error("{}: {}", .0.error_type, .0.error_message)]
    Init(FunctionErrorBody, String, Option<u64>),
}

/// Result of one invocation on an instance.
#[derive(Debug)]
pub enum Outcome {
    Success(Bytes),
    /// The function (or its runtime) reported an error; `body` is the runtime's JSON.
    FunctionError {
        body: Bytes,
        error_type: Option<String>,
    },
    ResponseTooLarge,
    Timeout,
    /// The runtime process died during the invocation.
    Crashed {
        status: ExitStatus,
        oom: bool,
    },
}

impl Outcome {
    /// Whether the instance can serve another request afterwards.
    pub fn instance_reusable(&self) -> bool {
        matches!(
            self,
            Outcome::Success(_) | Outcome::FunctionError { .. } | Outcome::ResponseTooLarge
        )
    }
}

/// Input of one invocation.
pub struct InvokeInput {
    pub request_id: String,
    pub payload: Bytes,
    pub timeout: Duration,
    pub function_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
}

pub struct Instance {
    pub id: String,
    process: Arc<dyn InstanceProcess>,
    freezer: Arc<Freezer>,
    queue: mpsc::Sender<Invocation>,
    exited: watch::Receiver<Option<ExitStatus>>,
    phase: watch::Receiver<Phase>,
    output: OutputTap,
    api_task: tokio::task::JoinHandle<()>,
    /// Time from launch until the runtime first asked for work.
    pub init_duration: Duration,
    /// What the launcher served the launch from.
    pub served_by: ServedBy,
    /// Memory limit, for the REPORT line.
    pub memory_mb: u32,
    /// /tmp size (fixed at launch).
    pub tmp_mb: u32,
    /// Which CPU limits it runs under (see [`StartBoost`] and [`WarmPhase`]).
    cpu: Arc<Mutex<CpuPhase>>,
    /// The credentials it was started with, if any: revoked when it goes.
    credentials: Option<CredentialGuard>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What [`Instance::launch`] sets up on the launching thread.
struct Started {
    process: Arc<dyn InstanceProcess>,
    served_by: ServedBy,
    freezer: Arc<Freezer>,
    queue_tx: mpsc::Sender<Invocation>,
    shared: Arc<ApiShared>,
    phase: watch::Receiver<Phase>,
    api_task: tokio::task::JoinHandle<()>,
    output: OutputTap,
}

impl Instance {
    /// Launches and waits for init (the first `next`), at most `init_timeout`.
    pub async fn start(
        launcher: Arc<dyn Launcher>,
        spec: LaunchSpec,
        boost: Option<StartBoost>,
        init_timeout: Duration,
        logs: LogConsumer,
        max_output_per_invocation: u64,
    ) -> Result<Instance, StartError> {
        let started = Instant::now();
        let mut instance = Self::launch(launcher, spec, logs, max_output_per_invocation).await?;
        instance.boost(boost);
        let waited = instance
            .wait_init(init_timeout, |p| *p == Phase::Ready)
            .await;
        instance.init_duration = started.elapsed();
        instance.settle(waited).await
    }

    async fn launch(
        launcher: Arc<dyn Launcher>,
        spec: LaunchSpec,
        logs: LogConsumer,
        max_output_per_invocation: u64,
    ) -> Result<Instance, StartError> {
        let id = spec.instance_id.clone();
        let memory_mb = spec.resources.memory_mb;
        let tmp_mb = spec.resources.tmp_mb;
        // The Runtime API server and the output reader start on the launching thread
        // as soon as the launch returns: a runtime started ahead asks for its first
        // invocation within a millisecond, and should not wait for this task to be
        // polled again.
        let handle = tokio::runtime::Handle::current();
        let started = tokio::task::spawn_blocking(move || {
            let launched = launcher
                .launch(&spec)
                .map_err(|e| StartError::Launch(e.to_string()))?;
            let (queue_tx, queue_rx) = mpsc::channel(1);
            let freezer = Freezer::new(launched.process.clone());
            let (shared, phase) = ApiShared::new(queue_rx, Some(freezer.clone()));
            let api_task = handle.spawn(api::serve(launched.runtime_api_listener, shared.clone()));
            let id_source = shared.clone();
            let output = OutputTap::start(
                launched.output,
                Arc::new(move || id_source.current_id.lock().ok().and_then(|g| g.clone())),
                logs,
                max_output_per_invocation,
            );
            let output = match output {
                Ok(output) => output,
                Err(e) => {
                    // Nothing reads its output: stop it and release what it holds.
                    api_task.abort();
                    launched.process.kill();
                    launched.process.wait();
                    launched.process.cleanup();
                    return Err(StartError::Launch(e.to_string()));
                }
            };
            Ok(Started {
                process: launched.process,
                served_by: launched.served_by,
                freezer,
                queue_tx,
                shared,
                phase,
                api_task,
                output,
            })
        })
        .await
        .map_err(|e| StartError::Launch(e.to_string()))??;
        let Started {
            process,
            served_by,
            freezer,
            queue_tx,
            shared,
            phase,
            api_task,
            output,
        } = started;
        let (exit_tx, exited) = watch::channel(None);
        {
            let process = process.clone();
            let shared = shared.clone();
            tokio::spawn(async move {
                // Wait for the end on the reactor where the launcher gives a descriptor
                // for it: a thread blocked per idle instance would exhaust the blocking
                // pool long before a thousand idle instances.
                if let Some(fd) = process.exit_fd() {
                    let _ = tern_sandbox::exit_fd_readable(fd).await;
                }
                let status = tokio::task::spawn_blocking(move || process.wait())
                    .await
                    .unwrap_or(ExitStatus::Unknown);
                shared.finish_current(Reply::Exited);
                let _ = exit_tx.send(Some(status));
            });
        }
        Ok(Instance {
            id,
            process,
            freezer,
            queue: queue_tx,
            exited,
            phase,
            output,
            api_task,
            init_duration: Duration::ZERO,
            served_by,
            memory_mb,
            tmp_mb,
            cpu: Arc::new(Mutex::new(CpuPhase::Start)),
            credentials: None,
        })
    }

    /// Waits until the runtime reaches a phase `done` accepts, fails init, exits, or the
    /// timeout passes.
    async fn wait_init(
        &mut self,
        init_timeout: Duration,
        done: impl Fn(&Phase) -> bool,
    ) -> Result<(), FunctionErrorBody> {
        let mut phase = self.phase.clone();
        let mut exited = self.exited.clone();
        let oom = self.process.clone();
        let waited = tokio::time::timeout(init_timeout, async {
            loop {
                {
                    let p = phase.borrow_and_update();
                    if done(&p) {
                        return Ok(());
                    }
                    if let Phase::InitFailed(e) = &*p {
                        return Err(e.clone());
                    }
                }
                if let Some(status) = *exited.borrow_and_update() {
                    return Err(init_exit_error(status, oom.oom_killed()));
                }
                tokio::select! {
                    r = phase.changed() => if r.is_err() { return Err(FunctionErrorBody::new("Runtime.Unknown", "runtime API stopped")) },
                    r = exited.changed() => if r.is_err() { return Err(FunctionErrorBody::new("Runtime.Unknown", "instance monitor stopped")) },
                }
            }
        })
        .await;
        match waited {
            Ok(r) => r,
            Err(_) => Err(FunctionErrorBody::new(
                "Runtime.InitTimeout",
                format!(
                    "Init did not finish within {:.2} seconds",
                    init_timeout.as_secs_f64()
                ),
            )),
        }
    }

    /// The instance if init succeeded; else destroys it and returns the init error with
    /// the output the runtime printed.
    async fn settle(self, waited: Result<(), FunctionErrorBody>) -> Result<Instance, StartError> {
        let failure = match waited {
            Ok(()) => return Ok(self),
            Err(e) => e,
        };
        let output = self.output.finish();
        let peak_mb = self.memory_peak_mb();
        self.destroy().await;
        Err(StartError::Init(failure, output, peak_mb))
    }

    /// Runs one invocation. Returns the outcome and the output captured meanwhile.
    pub async fn invoke(&self, input: InvokeInput) -> (Outcome, String) {
        self.output.begin(&input.request_id);
        let (reply_tx, reply_rx) = oneshot::channel();
        let deadline_ms = now_ms() + input.timeout.as_millis() as u64;
        let inv = Invocation {
            request_id: input.request_id,
            deadline_ms,
            function_arn: input.function_arn,
            trace_id: input.trace_id,
            client_context: input.client_context,
            payload: input.payload,
            reply: reply_tx,
        };
        if self.queue.send(inv).await.is_err() {
            return (self.crash_outcome().await, self.output.finish());
        }
        let outcome = match tokio::time::timeout(input.timeout, reply_rx).await {
            Err(_) => Outcome::Timeout,
            Ok(Err(_)) | Ok(Ok(Reply::Exited)) => self.crash_outcome().await,
            Ok(Ok(Reply::Response(b))) => Outcome::Success(b),
            Ok(Ok(Reply::Error { body, error_type })) => {
                Outcome::FunctionError { body, error_type }
            }
            Ok(Ok(Reply::ResponseTooLarge)) => Outcome::ResponseTooLarge,
        };
        if matches!(outcome, Outcome::Timeout) {
            // Stop the runtime before reading the rest so nothing more is written.
            self.process.kill();
        }
        let output = self.output.finish();
        (outcome, output)
    }

    async fn crash_outcome(&self) -> Outcome {
        let mut exited = self.exited.clone();
        let status = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if let Some(s) = *exited.borrow_and_update() {
                    return s;
                }
                if exited.changed().await.is_err() {
                    return ExitStatus::Unknown;
                }
            }
        })
        .await
        .unwrap_or(ExitStatus::Unknown);
        Outcome::Crashed {
            status,
            oom: self.process.oom_killed(),
        }
    }

    /// Back in the pool, unused: frozen from the moment its runtime waits for work.
    pub fn park(&self) {
        self.freezer.idle();
    }

    /// Leaves the pool: running again when this returns.
    pub fn unpark(&self) {
        self.freezer.busy();
    }

    /// Its freezer, for the pool's sweep.
    pub fn freezer(&self) -> Arc<Freezer> {
        self.freezer.clone()
    }

    pub fn has_exited(&self) -> bool {
        self.exited.borrow().is_some()
    }

    /// Ties the credentials it was started with to its life.
    pub(crate) fn hold_credentials(&mut self, guard: CredentialGuard) {
        self.credentials = Some(guard);
    }

    /// Whether its credentials are near their expiry: it should get no more work (a
    /// fresh instance gets fresh credentials, as Lambda recycles environments).
    pub fn credentials_expiring(&self) -> bool {
        self.credentials
            .as_ref()
            .is_some_and(|c| std::time::Instant::now() >= c.retire_at)
    }

    /// Switches its limits to the warm phase's, once its start-up is over; `None` if it
    /// already was.
    pub fn warm_phase(&self) -> Option<WarmPhase> {
        (*lock(&self.cpu) != CpuPhase::Warm).then(|| WarmPhase {
            process: self.process.clone(),
            cpu: self.cpu.clone(),
        })
    }

    /// With a boost, the instance was started with more CPU than its share: it gets
    /// its share after the boost's time, unless its start-up was over first.
    fn boost(&self, boost: Option<StartBoost>) {
        let Some(boost) = boost else {
            return;
        };
        *lock(&self.cpu) = CpuPhase::Boosted;
        let (process, cpu) = (self.process.clone(), self.cpu.clone());
        tokio::spawn(async move {
            tokio::time::sleep(boost.lasts).await;
            let mut phase = lock(&cpu);
            if *phase == CpuPhase::Boosted {
                if let Err(e) = process.set_resources(&boost.then) {
                    tracing::debug!(error = %e, "cannot end an instance's start-up boost");
                }
                *phase = CpuPhase::Start;
            }
        });
    }

    /// Reads its memory and /tmp use without holding the instance.
    pub fn usage_probe(&self) -> UsageProbe {
        UsageProbe(self.process.clone())
    }

    pub fn memory_peak_mb(&self) -> Option<u64> {
        self.process
            .memory_peak_bytes()
            .map(|b| b.div_ceil(1024 * 1024))
    }

    /// Kills the instance and releases its resources.
    pub async fn destroy(self) {
        self.process.kill();
        self.api_task.abort();
        let process = self.process.clone();
        let _ = tokio::task::spawn_blocking(move || {
            process.wait();
            process.cleanup();
        })
        .await;
    }
}

/// The CPU limits an instance runs under, in the order it goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CpuPhase {
    /// Starting with more CPU than its share (see [`StartBoost`]).
    Boosted,
    /// Starting with its share.
    Start,
    /// Started: its share over the warm period (see [`WarmPhase`]).
    Warm,
}

/// More CPU than its share for the first part of an instance's start-up: launched with
/// it, the instance gets `then` (its share) after `lasts`, unless its start-up is over
/// first. Bounded in time, so a start-up that spins cannot hold the extra CPU for the
/// whole init timeout.
#[derive(Debug, Clone, Copy)]
pub struct StartBoost {
    pub lasts: Duration,
    pub then: Resources,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Switches one instance's limits to those of its warm phase (see
/// [`Instance::warm_phase`]): after start-up, its share over a short CFS period, which
/// bounds how long a request that finds its quota spent waits for the next slice.
pub struct WarmPhase {
    process: Arc<dyn InstanceProcess>,
    cpu: Arc<Mutex<CpuPhase>>,
}

impl WarmPhase {
    pub fn enter(&self, resources: &Resources) {
        // Under the lock: a boost ending at the same moment must not undo this.
        let mut phase = lock(&self.cpu);
        if *phase == CpuPhase::Warm {
            return;
        }
        if let Err(e) = self.process.set_resources(resources) {
            tracing::debug!(error = %e, "cannot switch an instance to its warm limits");
        }
        *phase = CpuPhase::Warm;
    }
}

/// Reads one instance's use of memory and /tmp disk (see [`Instance::usage_probe`]).
#[derive(Clone)]
pub struct UsageProbe(Arc<dyn InstanceProcess>);

impl UsageProbe {
    /// What the instance's memory cgroup charges it right now, in MB (rounded up), if
    /// the launcher can tell.
    pub fn memory_mb(&self) -> Option<u64> {
        self.0
            .memory_current_bytes()
            .map(|b| b.div_ceil(1024 * 1024))
    }

    /// Host disk its /tmp holds right now, in MB (rounded up); `None` when its /tmp is
    /// not on the host disk.
    pub fn tmp_disk_mb(&self) -> Option<u64> {
        self.0
            .tmp_disk_used_bytes()
            .map(|b| b.div_ceil(1024 * 1024))
    }
}

fn init_exit_error(status: ExitStatus, oom: bool) -> FunctionErrorBody {
    if oom {
        return FunctionErrorBody::new(
            "Runtime.OutOfMemory",
            "Runtime exited with error: signal: killed (out of memory during init)",
        );
    }
    FunctionErrorBody::new(
        "Runtime.ExitError",
        format!(
            "RequestId: init Error: Runtime exited {}",
            describe_exit(status)
        ),
    )
}

/// "with error: exit status 1" / "with error: signal: killed", as Lambda phrases it.
pub fn describe_exit(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(0) => "without providing a reason".to_string(),
        ExitStatus::Code(c) => format!("with error: exit status {c}"),
        ExitStatus::Signal(9) => "with error: signal: killed".to_string(),
        ExitStatus::Signal(s) => format!("with error: signal {s}"),
        ExitStatus::Unknown => "unexpectedly".to_string(),
    }
}
