//! Validation of function settings, with Lambda's rules and messages that name the field.

use std::collections::BTreeMap;

use base64::Engine;
use tern_core::function::{
    LogSettings, APPLICATION_LOG_LEVELS, LOG_FORMAT_JSON, LOG_FORMAT_TEXT, SYSTEM_LOG_LEVELS,
};
use tern_core::limits;
use tern_core::wire::{LoggingConfigInput, TracingConfigInput};

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
    if let Some((key, _)) = vars.iter().find(|(_, v)| v.contains('\0')) {
        return Err(invalid(format!(
            "1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: the value of '{key}' contains a NUL character, which no process environment can hold"
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
        let nul = environment(&vars(&[("TOKEN", "a\0b")])).unwrap_err();
        assert!(message(nul).contains("'TOKEN'"));
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

/// Applies a request's `LoggingConfig` to the current settings with Lambda's rules: the
/// members given replace the current ones; log levels exist only with the JSON format
/// (INFO unless given), and switching to Text clears them.
pub fn logging_config(
    current: &LogSettings,
    given: &LoggingConfigInput,
) -> Result<LogSettings, ServiceError> {
    let mut next = current.clone();
    if let Some(f) = &given.log_format {
        if f != LOG_FORMAT_TEXT && f != LOG_FORMAT_JSON {
            return Err(invalid(format!(
                "1 validation error detected: Value '{f}' at 'loggingConfig.logFormat' failed to satisfy constraint: Member must satisfy enum value set: [JSON, Text]"
            )));
        }
        next.format = f.clone();
    }
    let check = |v: &Option<String>, allowed: &[&str], field: &str| -> Result<(), ServiceError> {
        match v {
            Some(l) if !allowed.contains(&l.as_str()) => Err(invalid(format!(
                "1 validation error detected: Value '{l}' at 'loggingConfig.{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ))),
            _ => Ok(()),
        }
    };
    check(
        &given.application_log_level,
        APPLICATION_LOG_LEVELS,
        "applicationLogLevel",
    )?;
    check(&given.system_log_level, SYSTEM_LOG_LEVELS, "systemLogLevel")?;
    if next.is_json() {
        next.application_level = given
            .application_log_level
            .clone()
            .or(next.application_level)
            .or_else(|| Some("INFO".to_string()));
        next.system_level = given
            .system_log_level
            .clone()
            .or(next.system_level)
            .or_else(|| Some("INFO".to_string()));
    } else {
        if given.application_log_level.is_some() || given.system_log_level.is_some() {
            return Err(invalid(
                "LoggingConfig: ApplicationLogLevel and SystemLogLevel can be set only when LogFormat is JSON".to_string(),
            ));
        }
        next.application_level = None;
        next.system_level = None;
    }
    if let Some(g) = &given.log_group {
        let ok = !g.is_empty()
            && g.len() <= 512
            && g.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-/.#".contains(c));
        if !ok {
            return Err(invalid(format!(
                "1 validation error detected: Value '{g}' at 'loggingConfig.logGroup' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+ and have length between 1 and 512"
            )));
        }
        next.log_group = Some(g.clone());
    }
    Ok(next)
}

/// A request's `TracingConfig.Mode`, if it gives one.
pub fn tracing_mode(given: &TracingConfigInput) -> Result<Option<String>, ServiceError> {
    match given.mode.as_deref() {
        None => Ok(None),
        Some(m @ ("Active" | "PassThrough")) => Ok(Some(m.to_string())),
        Some(m) => Err(invalid(format!(
            "1 validation error detected: Value '{m}' at 'tracingConfig.mode' failed to satisfy constraint: Member must satisfy enum value set: [Active, PassThrough]"
        ))),
    }
}

/// Whether a request member tern does not implement was left at "nothing": absent, null,
/// empty, false, or an object of such members (tools such as SAM and Terraform send
/// `VpcConfig: {SubnetIds: [], SecurityGroupIds: []}` to mean no VPC).
fn unset(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(unset),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

/// `SnapStart`: whether instances start from a post-init template (`ApplyOn` is
/// `PublishedVersions`; tern honours it on `$LATEST` too) or not (`None`).
pub fn snap_start(v: &serde_json::Value, runtime: &str) -> Result<bool, ServiceError> {
    let Some(fields) = v.as_object() else {
        return Err(invalid(
            "SnapStart must be an object with ApplyOn".to_string(),
        ));
    };
    if let Some(other) = fields.keys().find(|k| *k != "ApplyOn") {
        return Err(invalid(format!(
            "Invalid value for 'SnapStart': unknown member '{other}'"
        )));
    }
    let on = match fields.get("ApplyOn") {
        None | Some(serde_json::Value::Null) => false,
        Some(a) if a == "None" => false,
        Some(a) if a == "PublishedVersions" => true,
        Some(a) => {
            return Err(invalid(format!(
                "Invalid value for 'SnapStart.ApplyOn': {a}; valid values are PublishedVersions and None"
            )))
        }
    };
    if on && !runtime.starts_with("python") {
        return Err(invalid(format!(
            "SnapStart is not supported for runtime {runtime}: tern's post-init templates \
             support Python runtimes"
        )));
    }
    Ok(on)
}

/// Lambda's `VpcConfig` as tern maps it: the private networks a function is attached
/// to. `SubnetIds` name tern networks and `SecurityGroupIds` their allow-lists (each
/// network has one, of its own name); a function is attached to the networks whose
/// allow-lists it names, each of which must be among its `SubnetIds`. `None`: the
/// request says nothing (unset, null); an empty list detaches.
pub fn vpc_config(v: &serde_json::Value) -> Result<Option<Vec<String>>, ServiceError> {
    use serde_json::Value;
    let obj = match v {
        Value::Null => return Ok(None),
        Value::Object(o) => o,
        _ => return Err(invalid("VpcConfig must be an object".into())),
    };
    let list = |field: &str| -> Result<Vec<String>, ServiceError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid(format!("VpcConfig.{field} must list strings")))
                })
                .collect(),
            Some(_) => Err(invalid(format!("VpcConfig.{field} must be a list"))),
        }
    };
    for key in obj.keys() {
        match key.as_str() {
            "SubnetIds" | "SecurityGroupIds" => {}
            "Ipv6AllowedForDualStack" => {
                if obj[key] == Value::Bool(true) {
                    return Err(invalid(
                        "VpcConfig.Ipv6AllowedForDualStack: tern's sandboxes have IPv4 only".into(),
                    ));
                }
            }
            other => {
                return Err(invalid(format!(
                    "VpcConfig.{other} is not a member of VpcConfig"
                )))
            }
        }
    }
    let (subnets, groups) = (list("SubnetIds")?, list("SecurityGroupIds")?);
    if subnets.is_empty() != groups.is_empty() {
        return Err(invalid("VpcConfig needs both SubnetIds (tern networks) and SecurityGroupIds (their allow-lists), or neither".into()));
    }
    let mut networks: Vec<String> = Vec::new();
    for group in &groups {
        if !subnets.contains(group) {
            return Err(invalid(format!(
                "VpcConfig.SecurityGroupIds: {group:?} is the allow-list of network {group:?}, which is not among the SubnetIds"
            )));
        }
        if !networks.contains(group) {
            networks.push(group.clone());
        }
    }
    networks_list(&networks)?;
    Ok(Some(networks))
}

/// Checks a list of network names: well formed, at most five.
pub fn networks_list(names: &[String]) -> Result<(), ServiceError> {
    use tern_core::network::{validate_name, PER_FUNCTION_MAX};
    if names.len() > PER_FUNCTION_MAX {
        return Err(invalid(format!(
            "a function is attached to at most {PER_FUNCTION_MAX} networks"
        )));
    }
    for name in names {
        validate_name(name).map_err(invalid)?;
    }
    Ok(())
}

/// Request members tern accepts in the model's shape but does not implement, each with
/// why; a request that sets one is refused rather than having it silently dropped.
pub fn unsupported_members(
    members: &[(&str, Option<&serde_json::Value>)],
) -> Result<(), ServiceError> {
    for (field, value) in members {
        let Some(v) = value else { continue };
        if unset(v) {
            continue;
        }
        let why = match *field {
            "DeadLetterConfig" => {
                "asynchronous invocation and its dead-letter queue are not supported yet"
            }
            "KMSKeyArn" | "SourceKMSKeyArn" => "customer-managed KMS keys are not supported",
            "FileSystemConfigs" => "file systems (EFS) are not supported",
            "ImageConfig" => "container images are not supported; use a .zip package",
            "CodeSigningConfigArn" => "code signing is not supported",
            "PublishTo" => "publishing to a capacity provider is not supported",
            "CapacityProviderConfig" => "capacity providers are not supported",
            "DurableConfig" => "durable functions are not supported",
            "TenancyConfig" => "tenant isolation mode is not supported",
            "S3Key" | "S3ObjectVersion" => {
                "code from S3 is not supported; upload the .zip in ZipFile"
            }
            _ => "it is not supported by tern",
        };
        return Err(invalid(format!(
            "Invalid value for '{field}': {why}. Remove the field or leave it empty."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod config_member_tests {
    use super::*;

    fn given(format: Option<&str>, app: Option<&str>, sys: Option<&str>) -> LoggingConfigInput {
        LoggingConfigInput {
            log_format: format.map(str::to_string),
            application_log_level: app.map(str::to_string),
            system_log_level: sys.map(str::to_string),
            log_group: None,
        }
    }

    #[test]
    fn json_logging_defaults_levels_to_info_and_text_clears_them() {
        let json = logging_config(
            &LogSettings::default(),
            &given(Some("JSON"), None, Some("WARN")),
        )
        .unwrap();
        assert_eq!(json.application_level.as_deref(), Some("INFO"));
        assert_eq!(json.system_level.as_deref(), Some("WARN"));
        let level_only = logging_config(&json, &given(None, Some("DEBUG"), None)).unwrap();
        assert_eq!(
            (
                level_only.format.as_str(),
                level_only.application_level.as_deref()
            ),
            ("JSON", Some("DEBUG"))
        );
        let text = logging_config(&level_only, &given(Some("Text"), None, None)).unwrap();
        assert_eq!(text, LogSettings::default());
    }

    #[test]
    fn logging_levels_need_json_and_values_come_from_lambdas_enums() {
        let e =
            logging_config(&LogSettings::default(), &given(None, Some("INFO"), None)).unwrap_err();
        assert!(e.to_string().contains("only when LogFormat is JSON"), "{e}");
        let e =
            logging_config(&LogSettings::default(), &given(Some("XML"), None, None)).unwrap_err();
        assert!(e.to_string().contains("logFormat"), "{e}");
        let e = logging_config(
            &LogSettings::default(),
            &given(Some("JSON"), Some("LOUD"), None),
        )
        .unwrap_err();
        assert!(e.to_string().contains("applicationLogLevel"), "{e}");
    }

    #[test]
    fn snap_start_takes_lambdas_values_and_python_runtimes_only() {
        let on = serde_json::json!({"ApplyOn": "PublishedVersions"});
        assert!(snap_start(&on, "python3.11").expect("on"));
        assert!(!snap_start(&serde_json::json!({"ApplyOn": "None"}), "nodejs20.x").expect("off"));
        assert!(!snap_start(&serde_json::json!({}), "python3.11").expect("default"));
        let e = snap_start(&on, "nodejs20.x").unwrap_err();
        assert!(e.to_string().contains("nodejs20.x"), "{e}");
        let e = snap_start(&serde_json::json!({"ApplyOn": "Always"}), "python3.11").unwrap_err();
        assert!(e.to_string().contains("ApplyOn"), "{e}");
        let e = snap_start(
            &serde_json::json!({"ApplyOn": "None", "X": 1}),
            "python3.11",
        )
        .unwrap_err();
        assert!(e.to_string().contains("'X'"), "{e}");
        assert!(snap_start(&serde_json::json!("PublishedVersions"), "python3.11").is_err());
    }

    #[test]
    fn vpc_config_names_tern_networks() {
        let vpc = |v: serde_json::Value| vpc_config(&v);
        assert_eq!(vpc(serde_json::Value::Null).expect("null"), None);
        assert_eq!(
            vpc(serde_json::json!({"SubnetIds": [], "SecurityGroupIds": []})).expect("detach"),
            Some(vec![])
        );
        assert_eq!(
            vpc(serde_json::json!({"SubnetIds": ["db", "cache"], "SecurityGroupIds": ["db"]}))
                .expect("attach"),
            Some(vec!["db".to_string()])
        );
        for bad in [
            serde_json::json!({"SubnetIds": ["db"]}),
            serde_json::json!({"SubnetIds": ["db"], "SecurityGroupIds": ["other"]}),
            serde_json::json!({"SubnetIds": ["DB"], "SecurityGroupIds": ["DB"]}),
            serde_json::json!({"SubnetIds": ["db"], "SecurityGroupIds": ["db"], "VpcId": "x"}),
            serde_json::json!({"SubnetIds": ["db"], "SecurityGroupIds": ["db"], "Ipv6AllowedForDualStack": true}),
            serde_json::json!({"SubnetIds": "db", "SecurityGroupIds": ["db"]}),
        ] {
            assert!(vpc(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn unimplemented_members_are_refused_by_name_unless_left_empty() {
        let empty_fs = serde_json::json!([]);
        assert!(unsupported_members(&[
            ("FileSystemConfigs", Some(&empty_fs)),
            ("KMSKeyArn", Some(&serde_json::json!(""))),
            ("Publish", Some(&serde_json::json!(false))),
            ("DeadLetterConfig", None),
        ])
        .is_ok());
        let image = serde_json::json!({"Command": ["x"]});
        let e = unsupported_members(&[("ImageConfig", Some(&image))]).unwrap_err();
        assert!(e.to_string().contains("'ImageConfig'"), "{e}");
        let dlq = serde_json::json!({"TargetArn": "arn:aws:sqs:us-east-1:1:q"});
        let e = unsupported_members(&[("DeadLetterConfig", Some(&dlq))]).unwrap_err();
        assert!(e.to_string().contains("'DeadLetterConfig'"), "{e}");
        assert!(unsupported_members(&[("Publish", Some(&serde_json::json!(true)))]).is_err());
    }
}

/// A `MaxItems` of a list call: 1 to `LIST_MAX_ITEMS`, by default `LIST_DEFAULT_ITEMS`.
pub fn max_items(given: Option<i64>) -> Result<usize, ServiceError> {
    match given {
        None => Ok(limits::LIST_DEFAULT_ITEMS),
        Some(n) if (1..=limits::LIST_MAX_ITEMS as i64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ServiceError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{n}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and {}",
            limits::LIST_MAX_ITEMS
        ))),
    }
}
