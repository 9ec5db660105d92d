//! The platform's own log lines around each request (START, END, REPORT), in the format
//! of the function's `LoggingConfig`: Lambda's text lines, or with `LogFormat: JSON` the
//! `platform.start` / `platform.runtimeDone` / `platform.report` records, which a
//! `SystemLogLevel` of WARN leaves out.

use std::time::Duration;

use serde_json::{json, Value};
use tern_core::function::LogSettings;
use tern_core::timefmt::rfc3339;

/// How a request ended, as the REPORT line and `platform.report` tell it.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub duration: Duration,
    pub memory_mb: u32,
    pub max_memory_used_mb: u64,
    pub init: Option<Duration>,
    /// The error type when the platform, not the function's own code, ended the request
    /// badly (timeout, crash, out of memory, failed init).
    pub platform_error: Option<String>,
    /// Whether the function returned an error (its own or the platform's).
    pub failed: bool,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn billed_ms(d: Duration) -> u128 {
    d.as_millis().max(1)
}

/// Formats one request's platform lines for one function's settings.
pub struct PlatformLog<'a> {
    settings: &'a LogSettings,
    request_id: &'a str,
}

impl<'a> PlatformLog<'a> {
    pub fn new(settings: &'a LogSettings, request_id: &'a str) -> Self {
        PlatformLog {
            settings,
            request_id,
        }
    }

    /// JSON records are INFO events: a system level of WARN drops them.
    fn json_wanted(&self) -> bool {
        self.settings.system_level.as_deref() != Some("WARN")
    }

    fn record(&self, kind: &str, now_ms: i64, record: Value) -> Option<String> {
        self.json_wanted()
            .then(|| json!({"time": rfc3339(now_ms), "type": kind, "record": record}).to_string())
    }

    pub fn start(&self, version: &str, now_ms: i64) -> Option<String> {
        if !self.settings.is_json() {
            return Some(format!(
                "START RequestId: {} Version: {version}",
                self.request_id
            ));
        }
        self.record(
            "platform.start",
            now_ms,
            json!({"requestId": self.request_id, "version": version}),
        )
    }

    pub fn end(&self, report: &Report, now_ms: i64) -> Option<String> {
        if !self.settings.is_json() {
            return Some(format!("END RequestId: {}", self.request_id));
        }
        self.record(
            "platform.runtimeDone",
            now_ms,
            json!({
                "requestId": self.request_id,
                "status": status(report),
                "metrics": {"durationMs": round2(ms(report.duration))},
            }),
        )
    }

    pub fn report(&self, report: &Report, now_ms: i64) -> Option<String> {
        if !self.settings.is_json() {
            let mut line = format!(
                "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
                self.request_id,
                ms(report.duration),
                billed_ms(report.duration),
                report.memory_mb,
                report.max_memory_used_mb,
            );
            if let Some(d) = report.init {
                line.push_str(&format!("\tInit Duration: {:.2} ms", ms(d)));
            }
            if let Some(t) = &report.platform_error {
                line.push_str(&format!("\tStatus: error\tError Type: {t}"));
            }
            return Some(line);
        }
        let mut metrics = json!({
            "durationMs": round2(ms(report.duration)),
            "billedDurationMs": billed_ms(report.duration) as u64,
            "memorySizeMB": report.memory_mb,
            "maxMemoryUsedMB": report.max_memory_used_mb,
        });
        if let Some(d) = report.init {
            metrics["initDurationMs"] = json!(round2(ms(d)));
        }
        let mut record = json!({
            "requestId": self.request_id,
            "metrics": metrics,
            "status": status(report),
        });
        if let Some(t) = &report.platform_error {
            record["errorType"] = json!(t);
        }
        self.record("platform.report", now_ms, record)
    }
}

fn status(report: &Report) -> &'static str {
    match report.platform_error.as_deref() {
        Some("Sandbox.Timedout") => "timeout",
        Some(_) => "failure",
        None if report.failed => "error",
        None => "success",
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            duration: Duration::from_micros(12_345),
            memory_mb: 128,
            max_memory_used_mb: 40,
            init: Some(Duration::from_millis(3)),
            platform_error: None,
            failed: false,
        }
    }

    #[test]
    fn text_format_writes_lambdas_start_end_report_lines() {
        let settings = LogSettings::default();
        let log = PlatformLog::new(&settings, "r1");
        assert_eq!(
            log.start("$LATEST", 0).unwrap(),
            "START RequestId: r1 Version: $LATEST"
        );
        assert_eq!(log.end(&report(), 0).unwrap(), "END RequestId: r1");
        assert_eq!(
            log.report(&report(), 0).unwrap(),
            "REPORT RequestId: r1\tDuration: 12.35 ms\tBilled Duration: 12 ms\tMemory Size: 128 MB\tMax Memory Used: 40 MB\tInit Duration: 3.00 ms"
        );
    }

    #[test]
    fn json_format_writes_platform_records() {
        let settings = LogSettings {
            format: "JSON".into(),
            application_level: Some("INFO".into()),
            system_level: Some("INFO".into()),
            log_group: None,
        };
        let log = PlatformLog::new(&settings, "r1");
        let start: Value = serde_json::from_str(&log.start("$LATEST", 0).unwrap()).unwrap();
        assert_eq!(start["type"], "platform.start");
        assert_eq!(start["time"], "1970-01-01T00:00:00Z");
        assert_eq!(start["record"]["requestId"], "r1");
        let mut timed_out = report();
        timed_out.platform_error = Some("Sandbox.Timedout".into());
        timed_out.failed = true;
        let rep: Value = serde_json::from_str(&log.report(&timed_out, 0).unwrap()).unwrap();
        assert_eq!(rep["type"], "platform.report");
        assert_eq!(rep["record"]["status"], "timeout");
        assert_eq!(rep["record"]["metrics"]["memorySizeMB"], 128);
        assert_eq!(rep["record"]["metrics"]["initDurationMs"], 3.0);
        let end: Value = serde_json::from_str(&log.end(&report(), 0).unwrap()).unwrap();
        assert_eq!(end["type"], "platform.runtimeDone");
        assert_eq!(end["record"]["status"], "success");
    }

    #[test]
    fn system_log_level_warn_drops_the_info_records() {
        let settings = LogSettings {
            format: "JSON".into(),
            application_level: Some("INFO".into()),
            system_level: Some("WARN".into()),
            log_group: None,
        };
        let log = PlatformLog::new(&settings, "r1");
        assert!(log.start("$LATEST", 0).is_none());
        assert!(log.end(&report(), 0).is_none());
        assert!(log.report(&report(), 0).is_none());
    }
}
