//! Schedules: a function invoked asynchronously at the slots of an expression
//! (`rate(…)`, 5-field cron, EventBridge `cron(…)`). The expression itself is parsed by
//! `tern_invoke::schedules::expression`; this is the record the store keeps.

use serde::{Deserialize, Serialize};

/// Longest schedule name (EventBridge rules: 64).
pub const NAME_MAX: usize = 64;

/// One schedule, as the store keeps it. Its firing state (the last slot fired or
/// skipped, the next slot due) sits beside it in the store, not in the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub namespace: String,
    pub name: String,
    /// The target function's name (never an ARN).
    pub function: String,
    /// The target's version or alias; `None`: unqualified (`$LATEST`).
    pub qualifier: Option<String>,
    pub expression: String,
    /// IANA zone the cron fields are read in; `None`: UTC.
    pub timezone: Option<String>,
    /// Fixed JSON event; `None`: an EventBridge "Scheduled Event" per slot.
    pub payload: Option<String>,
    pub enabled: bool,
    pub created_ms: i64,
    pub last_modified_ms: i64,
}

/// Whether `s` is a valid schedule name: 1–64 of `A-Z a-z 0-9 . - _`, as EventBridge's.
pub fn is_valid_name(s: &str) -> bool {
    // `.` and `..` are path segments every HTTP client rewrites: such a schedule could
    // be made but not addressed at `/tern/v1/schedules/{name}`.
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= NAME_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_eventbridge_rule_names() {
        assert!(is_valid_name("nightly-report_v1.2"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("has space"));
        assert!(!is_valid_name("slash/no"));
        assert!(!is_valid_name("."));
        assert!(!is_valid_name(".."));
        assert!(is_valid_name("...") && is_valid_name(".hidden"));
        assert!(!is_valid_name(&"a".repeat(65)));
    }
}
