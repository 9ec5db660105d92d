//! Validation of function settings, with Lambda's rules and messages that name the field.

use std::collections::BTreeMap;

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
