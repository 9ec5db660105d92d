//! Asynchronous invocation settings of a function (Lambda's `FunctionEventInvokeConfig`)
//! and the destinations they name: wire shapes, validation and parsing.

use serde::{Deserialize, Serialize};

pub const DEFAULT_MAX_RETRIES: u32 = 2;
pub const MAX_RETRIES: i64 = 2;
pub const DEFAULT_MAX_EVENT_AGE_S: u32 = 21_600;
pub const MIN_EVENT_AGE_S: i64 = 60;
pub const MAX_EVENT_AGE_S: i64 = 21_600;
/// Longest destination string Lambda accepts.
pub const DESTINATION_MAX_CHARS: usize = 350;

/// `OnSuccess` / `OnFailure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct DestinationTarget {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct DestinationConfig {
    #[serde(default)]
    pub on_success: Option<DestinationTarget>,
    #[serde(default)]
    pub on_failure: Option<DestinationTarget>,
}

/// The body of Put/UpdateFunctionEventInvokeConfig. Numbers are taken wide so that an
/// out-of-range value gets Lambda's validation message, not a parse error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct EventInvokeConfigInput {
    pub maximum_retry_attempts: Option<i64>,
    pub maximum_event_age_in_seconds: Option<i64>,
    pub destination_config: Option<DestinationConfig>,
}

/// What is stored: only what was set; the defaults apply when an event runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

impl EventInvokeSettings {
    pub fn max_retries(&self) -> u32 {
        self.maximum_retry_attempts.unwrap_or(DEFAULT_MAX_RETRIES)
    }

    pub fn max_age_s(&self) -> u32 {
        self.maximum_event_age_in_seconds
            .unwrap_or(DEFAULT_MAX_EVENT_AGE_S)
    }

    /// Checks `input` and applies it: all of it (`replace`, Put) or only the fields it
    /// has (Update). Destinations are checked for form only; see [`Destination::parse`].
    pub fn apply(&mut self, input: EventInvokeConfigInput, replace: bool) -> Result<(), String> {
        if replace {
            *self = EventInvokeSettings::default();
        }
        if let Some(n) = input.maximum_retry_attempts {
            if !(0..=MAX_RETRIES).contains(&n) {
                return Err(format!(
                    "1 validation error detected: Value '{n}' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value {} {}",
                    if n < 0 { "greater than or equal to" } else { "less than or equal to" },
                    if n < 0 { 0 } else { MAX_RETRIES }
                ));
            }
            self.maximum_retry_attempts = Some(n as u32);
        }
        if let Some(n) = input.maximum_event_age_in_seconds {
            if !(MIN_EVENT_AGE_S..=MAX_EVENT_AGE_S).contains(&n) {
                return Err(format!(
                    "1 validation error detected: Value '{n}' at 'maximumEventAgeInSeconds' failed to satisfy constraint: Member must have value {} {}",
                    if n < MIN_EVENT_AGE_S { "greater than or equal to" } else { "less than or equal to" },
                    if n < MIN_EVENT_AGE_S { MIN_EVENT_AGE_S } else { MAX_EVENT_AGE_S }
                ));
            }
            self.maximum_event_age_in_seconds = Some(n as u32);
        }
        if let Some(d) = input.destination_config {
            for (field, target, slot) in [
                ("onSuccess", d.on_success, &mut self.on_success),
                ("onFailure", d.on_failure, &mut self.on_failure),
            ] {
                let Some(target) = target else { continue };
                match target.destination.filter(|s| !s.is_empty()) {
                    None => *slot = None,
                    Some(dest) if dest.chars().count() > DESTINATION_MAX_CHARS => {
                        return Err(format!(
                            "1 validation error detected: Value at 'destinationConfig.{field}.destination' failed to satisfy constraint: Member must have length less than or equal to {DESTINATION_MAX_CHARS}"
                        ))
                    }
                    Some(dest) => *slot = Some(dest),
                }
            }
        }
        Ok(())
    }
}

/// The response shape (`FunctionEventInvokeConfig`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventInvokeConfigResponse {
    /// Seconds since the epoch, as the rest-json protocol sends timestamps.
    pub last_modified: f64,
    pub function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<u32>,
    pub destination_config: DestinationConfigResponse,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationConfigResponse {
    pub on_success: DestinationTarget,
    pub on_failure: DestinationTarget,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListEventInvokeConfigsResponse {
    pub function_event_invoke_configs: Vec<EventInvokeConfigResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

impl EventInvokeSettings {
    pub fn response(
        &self,
        function_arn: String,
        last_modified_ms: i64,
    ) -> EventInvokeConfigResponse {
        EventInvokeConfigResponse {
            last_modified: last_modified_ms as f64 / 1000.0,
            function_arn,
            maximum_retry_attempts: self.maximum_retry_attempts,
            maximum_event_age_in_seconds: self.maximum_event_age_in_seconds,
            destination_config: DestinationConfigResponse {
                on_success: DestinationTarget {
                    destination: self.on_success.clone(),
                },
                on_failure: DestinationTarget {
                    destination: self.on_failure.clone(),
                },
            },
        }
    }
}

/// Where a destination record goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Another function of the same account, invoked asynchronously with the record.
    Function {
        account: String,
        name: String,
        qualifier: Option<String>,
    },
    /// A tern-managed queue, named by an SQS ARN (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
    Queue { account: String, name: String },
    /// An `http://` or `https://` URL the record is POSTed to (a tern extension).
    Webhook { url: String },
}

/// Whether `s` is a valid tern queue name (as SQS: letters, digits, `-`, `_`, 1–80).
pub fn is_valid_queue_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 80
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Destination {
    /// Parses a destination string. Errors say what tern accepts.
    pub fn parse(s: &str) -> Result<Self, String> {
        let accepted = "tern accepts a Lambda function ARN, an SQS queue ARN (a tern-managed queue) or an http:// or https:// webhook URL";
        if let Some(rest) = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
        {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if host.is_empty() || host.contains('@') || rest.chars().any(char::is_whitespace) {
                return Err(format!(
                    "Destination '{s}' is not a valid webhook URL (user info is not accepted)"
                ));
            }
            return Ok(Destination::Webhook { url: s.to_string() });
        }
        let parts: Vec<&str> = s.splitn(7, ':').collect();
        if parts.len() < 6 || parts[0] != "arn" || !parts[1].starts_with("aws") {
            return Err(format!("Destination '{s}' is not supported: {accepted}"));
        }
        let (service, account) = (parts[2], parts[4].to_string());
        match service {
            "lambda" => {
                if parts.get(5) != Some(&"function") || parts.len() < 7 {
                    return Err(format!("Destination '{s}' is not a function ARN"));
                }
                let (name, qualifier) = match parts[6].split_once(':') {
                    Some((n, q)) => (n, Some(q.to_string())),
                    None => (parts[6], None),
                };
                if !crate::names::is_valid_name(name)
                    || !qualifier
                        .as_deref()
                        .is_none_or(crate::names::is_valid_qualifier)
                {
                    return Err(format!("Destination '{s}' is not a valid function ARN"));
                }
                Ok(Destination::Function {
                    account,
                    name: name.to_string(),
                    qualifier,
                })
            }
            "sqs" => {
                let name = parts[5..].join(":");
                if !is_valid_queue_name(&name) {
                    return Err(format!("Destination '{s}' is not a valid SQS queue ARN"));
                }
                Ok(Destination::Queue { account, name })
            }
            other => Err(format!(
                "Destination '{s}': destinations of type '{other}' are not supported: {accepted}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds_and_rejects_the_rest() {
        assert_eq!(
            Destination::parse("arn:aws:lambda:us-east-1:000000000000:function:sink"),
            Ok(Destination::Function {
                account: "000000000000".into(),
                name: "sink".into(),
                qualifier: None
            })
        );
        assert_eq!(
            Destination::parse("arn:aws:sqs:us-east-1:000000000000:failures"),
            Ok(Destination::Queue {
                account: "000000000000".into(),
                name: "failures".into()
            })
        );
        assert!(matches!(
            Destination::parse("http://127.0.0.1:9/hook"),
            Ok(Destination::Webhook { .. })
        ));
        assert!(matches!(
            Destination::parse("https://hooks.example.com/x"),
            Ok(Destination::Webhook { .. })
        ));
        for bad in [
            "arn:aws:sns:us-east-1:000000000000:topic",
            "https://user:pw@example.com/",
            "http://user@host/",
            "arn:aws:lambda:us-east-1:000000000000:layer:x",
            "nonsense",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validates_ranges_and_merges_updates() {
        let mut s = EventInvokeSettings::default();
        let bad = EventInvokeConfigInput {
            maximum_retry_attempts: Some(3),
            ..Default::default()
        };
        assert!(s
            .apply(bad, true)
            .unwrap_err()
            .contains("maximumRetryAttempts"));
        let bad = EventInvokeConfigInput {
            maximum_event_age_in_seconds: Some(59),
            ..Default::default()
        };
        assert!(s.apply(bad, true).is_err());
        let put = EventInvokeConfigInput {
            maximum_retry_attempts: Some(0),
            ..Default::default()
        };
        s.apply(put, true).unwrap();
        let update = EventInvokeConfigInput {
            maximum_event_age_in_seconds: Some(60),
            ..Default::default()
        };
        s.apply(update, false).unwrap();
        assert_eq!((s.max_retries(), s.max_age_s()), (0, 60));
        s.apply(EventInvokeConfigInput::default(), true).unwrap();
        assert_eq!((s.max_retries(), s.max_age_s()), (2, 21_600));
    }
}
