//! Reporting of one run: the platform's START/END/REPORT lines (to the function's log
//! and the run's transcript) and the invocation metrics. The execution step calls it at
//! each point of a run; it decides nothing about the run itself.

use std::sync::Arc;
use std::time::Duration;

use tern_core::function::{FunctionRecord, LATEST};
use tern_store::LogLine;
use tern_telemetry::{LogSink, Metrics};

use crate::execution::RunOutcome;
use crate::now_ms;
use crate::platform_log::{PlatformLog, Report};

/// Where reports go: the function logs and the metrics.
#[derive(Clone)]
pub struct Reporting {
    pub logs: LogSink,
    pub metrics: Arc<Metrics>,
}

impl Reporting {
    /// The report of one run of `rec` under `request_id`.
    pub fn run<'a>(&'a self, rec: &'a FunctionRecord, request_id: &'a str) -> RunReport<'a> {
        RunReport {
            to: self,
            rec,
            request_id,
            platform: PlatformLog::new(&rec.logging, request_id),
            transcript: String::new(),
        }
    }

    fn count(&self, function: &str, outcome: &str) {
        let mut labels = Metrics::function_labels(function);
        labels.push(("outcome".to_string(), outcome.to_string()));
        self.metrics.invocations.get_or_create(&labels).inc();
    }
}

/// The report of one run, written as it happens.
pub struct RunReport<'a> {
    to: &'a Reporting,
    rec: &'a FunctionRecord,
    request_id: &'a str,
    platform: PlatformLog<'a>,
    /// Every line of the run, START to REPORT (for `X-Amz-Log-Result`).
    pub transcript: String,
}

impl RunReport<'_> {
    /// A platform line: to the function's log and the transcript.
    pub fn line(&mut self, line: Option<String>) {
        if let Some(line) = line {
            self.transcript.push_str(&line);
            self.transcript.push('\n');
            self.to.logs.push(LogLine {
                namespace: self.rec.namespace.clone(),
                function: self.rec.name.clone(),
                request_id: Some(self.request_id.to_string()),
                ts_ms: now_ms(),
                line,
            });
        }
    }

    /// The function's own output, which its instance already logged: the transcript
    /// only.
    pub fn output(&mut self, output: &str) {
        self.transcript.push_str(output);
        if !output.is_empty() && !output.ends_with('\n') {
            self.transcript.push('\n');
        }
    }

    /// The request was refused for room (a 429 to a sync caller, a retry of an event).
    pub fn throttled(&self) {
        self.to
            .metrics
            .throttles
            .get_or_create(&Metrics::function_labels(&self.rec.name))
            .inc();
    }

    /// No instance could be started.
    pub fn launch_failed(&self) {
        self.to.count(&self.rec.name, "launch_error");
    }

    /// The run starts on an instance; `cold` when this request started it: its init
    /// time and what the launcher served it from.
    pub fn started(&mut self, cold: Option<(Duration, &str)>, live_instances: usize) {
        let m = &self.to.metrics;
        if let Some((init, served_by)) = cold {
            let mut by = Metrics::function_labels(&self.rec.name);
            by.push(("served_by".to_string(), served_by.to_string()));
            m.cold_starts.get_or_create(&by).inc();
            m.init_seconds
                .get_or_create(&by)
                .observe(init.as_secs_f64());
        }
        m.instances.set(live_instances as i64);
        let start = self.platform.start(LATEST, now_ms());
        self.line(start);
    }

    /// The instance ran out of memory.
    pub fn out_of_memory(&self) {
        self.to
            .metrics
            .oom_kills
            .get_or_create(&Metrics::function_labels(&self.rec.name))
            .inc();
    }

    /// The run ended: END and REPORT, the outcome's count and the run's latency
    /// (`total`, from admission to now). A failed init has no START yet: it is written
    /// first.
    pub fn finished(&mut self, outcome: RunOutcome, report: &Report, total: Duration) {
        if outcome == RunOutcome::InitError {
            let start = self.platform.start(LATEST, now_ms());
            self.line(start);
        }
        let end = self.platform.end(report, now_ms());
        self.line(end);
        let report_line = self.platform.report(report, now_ms());
        self.line(report_line);
        self.to.count(&self.rec.name, outcome.label());
        if outcome != RunOutcome::InitError {
            self.to
                .metrics
                .invocation_seconds
                .get_or_create(&Metrics::function_labels(&self.rec.name))
                .observe(total.as_secs_f64());
        }
    }
}
