//! Validation of function settings, with Lambda's rules and messages that name the field.

use std::collections::BTreeMap;

use base64::Engine;
use tern_core::limits;

use crate::error::ServiceError;

/// Environment variable names Lambda reserves for the runtime.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

fn invalid(msg: String) -> ServiceError {
    ServiceError::InvalidParameterValue(msg)
}

/// `v` as u32 if within `lo..=hi`, else Lambda's constraint message naming `field`.
fn in_range(v: i64, lo: u32, hi: u32, field: &str) -> Result<u32, ServiceError> {
    if (i64::from(lo)..=i64::from(hi)).contains(&v) {
        Ok(v as u32)
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{v}' at '{field}' failed to satisfy constraint: Member must have value between {lo} and {hi}"
        )))
    }
}

pub fn memory_size(v: i64) -> Result<u32, ServiceError> {
    in_range(
        v,
        limits::MEMORY_MIN_MB,
        limits::MEMORY_MAX_MB,
        "memorySize",
    )
}

pub fn timeout(v: i64) -> Result<u32, ServiceError> {
    in_range(v, limits::TIMEOUT_MIN_S, limits::TIMEOUT_MAX_S, "timeout")
}

pub fn ephemeral_storage(v: i64) -> Result<u32, ServiceError> {
    in_range(
        v,
        limits::TMP_MIN_MB,
        limits::TMP_MAX_MB,
        "ephemeralStorage.size",
    )
}

pub fn handler(v: &str) -> Result<(), ServiceError> {
    if v.is_empty() || v.len() > limits::HANDLER_MAX || v.chars().any(char::is_whitespace) {
        return Err(invalid(format!(
            "1 validation error detected: Value '{v}' at 'handler' failed to satisfy constraint: Member must satisfy regular expression pattern: [^\\s]+ and have length at most {}",
            limits::HANDLER_MAX
        )));
    }
    Ok(())
}

pub fn description(v: &str) -> Result<(), ServiceError> {
    if v.chars().count() > limits::DESCRIPTION_MAX {
        return Err(invalid(format!(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to {}",
            limits::DESCRIPTION_MAX
        )));
    }
    Ok(())
}

/// Keys must match `[a-zA-Z]([a-zA-Z0-9_])+`, must not be reserved, and all keys and
/// values together must fit in 4 KB.
pub fn environment(vars: &BTreeMap<String, String>) -> Result<(), ServiceError> {
    for key in vars.keys() {
        let mut chars = key.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        if !first_ok || key.len() < 2 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(format!(
                "1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+] (key '{key}')"
            )));
        }
    }
    let reserved: Vec<&str> = vars
        .keys()
        .filter(|k| RESERVED_ENV.contains(&k.as_str()))
        .map(String::as_str)
        .collect();
    if !reserved.is_empty() {
        return Err(invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {}",
            reserved.join(", ")
        )));
    }
    let size: usize = vars.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > limits::ENV_VARS_BYTES {
        return Err(invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {size} bytes"
        )));
    }
    Ok(())
}

/// Largest `X-Amz-Client-Context` header Lambda takes, in bytes of base64.
pub const CLIENT_CONTEXT_MAX_B64: usize = 3_583;

/// Checks an `X-Amz-Client-Context` header as Lambda does (base64 of a JSON object, at
/// most [`CLIENT_CONTEXT_MAX_B64`] bytes) and returns the JSON the runtime gets in
/// `Lambda-Runtime-Client-Context`: compact and ASCII-only, so it is a valid header value
/// whatever the client sent.
pub fn client_context(b64: &str) -> Result<String, ServiceError> {
    if b64.len() > CLIENT_CONTEXT_MAX_B64 {
        return Err(invalid(format!(
            "1 validation error detected: Value at 'clientContext' failed to satisfy constraint: Member must have length less than or equal to {CLIENT_CONTEXT_MAX_B64} bytes of base64-encoded data (got {})",
            b64.len()
        )));
    }
    let not_json = || {
        ServiceError::InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object.".to_string(),
        )
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| not_json())?;
    let value: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| not_json())?;
    if !value.is_object() {
        return Err(not_json());
    }
    Ok(ascii_json(&value))
}

/// `value` as compact JSON with every non-ASCII character written as a `\u` escape.
fn ascii_json(value: &serde_json::Value) -> String {
    let compact = value.to_string();
    let mut out = String::with_capacity(compact.len());
    for c in compact.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(e: ServiceError) -> String {
        e.to_string()
    }

    #[test]
    fn ranges_follow_lambda_limits_and_name_the_field() {
        assert_eq!(memory_size(128).unwrap(), 128);
        assert!(message(memory_size(64).unwrap_err()).contains("memorySize"));
        assert!(message(timeout(0).unwrap_err()).contains("timeout"));
        assert_eq!(timeout(900).unwrap(), 900);
        assert!(message(ephemeral_storage(100).unwrap_err()).contains("ephemeralStorage"));
    }

    #[test]
    fn handler_and_description_rules() {
        assert!(handler("app.handler").is_ok());
        assert!(message(handler("a b").unwrap_err()).contains("handler"));
        assert!(handler("").is_err());
        assert!(description(&"x".repeat(257)).is_err());
    }

    #[test]
    fn environment_rejects_bad_and_reserved_keys_and_oversize() {
        let vars = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(environment(&vars(&[("GREETING", "hi")])).is_ok());
        assert!(message(environment(&vars(&[("1BAD", "x")])).unwrap_err()).contains("1BAD"));
        assert!(
            message(environment(&vars(&[("AWS_REGION", "x")])).unwrap_err()).contains("AWS_REGION")
        );
        let big = "v".repeat(5000);
        assert!(message(environment(&vars(&[("BIG", &big)])).unwrap_err()).contains("4KB"));
    }
}

#[cfg(test)]
mod client_context_tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn client_context_is_decoded_to_ascii_json_for_the_runtime() {
        let json = client_context(&b64(
            "{\"custom\": {\"k\": \"v\u{e9} \u{1f600}\"}, \"env\": {}}",
        ))
        .unwrap();
        assert_eq!(json, r#"{"custom":{"k":"v\u00e9 \ud83d\ude00"},"env":{}}"#);
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["custom"]["k"], "v\u{e9} \u{1f600}");
    }

    #[test]
    fn client_context_must_be_base64_of_a_json_object_within_the_limit() {
        let not_json = client_context(&b64("not json")).unwrap_err();
        assert!(matches!(not_json, ServiceError::InvalidRequestContent(_)));
        assert!(client_context("%%%").is_err());
        assert!(client_context(&b64("[1, 2]")).is_err());
        let big = format!(r#"{{"custom": {{"k": "{}"}}}}"#, "x".repeat(2_700));
        assert!(b64(&big).len() > CLIENT_CONTEXT_MAX_B64);
        let too_long = client_context(&b64(&big)).unwrap_err();
        assert!(too_long.to_string().contains("3583"), "{too_long}");
        let fits = format!(r#"{{"custom": {{"k": "{}"}}}}"#, "x".repeat(2_600));
        assert!(client_context(&b64(&fits)).is_ok());
    }
}
