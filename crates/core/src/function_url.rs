//! Function URLs: the shapes of Create/Get/Update/Delete/ListFunctionUrlConfig(s) and the
//! stored record, with the checks Lambda makes on them.

use serde::{Deserialize, Serialize};

use crate::function::LATEST;

/// Characters of a URL id: lowercase letters and digits, as Lambda's.
pub const URL_ID_CHARS: usize = 32;
/// Longest `Cors.MaxAge`, in seconds.
pub const CORS_MAX_AGE_MAX: u32 = 86_400;
/// Items per CORS list (origins, headers); `AllowMethods` has its own bound.
const CORS_LIST_MAX: usize = 100;
const CORS_METHODS_MAX: usize = 6;
const ORIGIN_MAX_CHARS: usize = 253;
const HEADER_MAX_CHARS: usize = 1024;
const QUALIFIER_MAX_CHARS: usize = 128;
/// Methods `Cors.AllowMethods` may name.
pub const CORS_METHODS: [&str; 7] = ["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthType {
    #[serde(rename = "NONE")]
    None,
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum InvokeMode {
    #[default]
    #[serde(rename = "BUFFERED")]
    Buffered,
    #[serde(rename = "RESPONSE_STREAM")]
    ResponseStream,
}

/// Lambda's `Cors`: every member optional, as in the model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Cors {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
}

/// The body of CreateFunctionUrlConfig and UpdateFunctionUrlConfig. Unknown members are
/// refused, never dropped.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct FunctionUrlInput {
    pub auth_type: Option<AuthType>,
    pub cors: Option<Cors>,
    pub invoke_mode: Option<InvokeMode>,
}

/// A function URL as stored: one per (namespace, function, qualifier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionUrlRecord {
    /// 32 lowercase letters and digits, unique across the server.
    pub url_id: String,
    pub namespace: String,
    pub function: String,
    /// `$LATEST` (the unqualified function) or an alias name.
    pub qualifier: String,
    pub auth_type: AuthType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    pub invoke_mode: InvokeMode,
    pub creation_ms: i64,
    pub last_modified_ms: i64,
}

/// Lambda's `FunctionUrlConfig` (also the Create, Get and Update responses).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionUrlConfig {
    pub function_url: String,
    pub function_arn: String,
    pub auth_type: AuthType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    pub creation_time: String,
    pub last_modified_time: String,
    pub invoke_mode: InvokeMode,
}

impl FunctionUrlConfig {
    pub fn new(rec: &FunctionUrlRecord, function_url: String, function_arn: String) -> Self {
        FunctionUrlConfig {
            function_url,
            function_arn,
            auth_type: rec.auth_type,
            cors: rec.cors.clone(),
            creation_time: crate::timefmt::rfc3339(rec.creation_ms),
            last_modified_time: crate::timefmt::rfc3339(rec.last_modified_ms),
            invoke_mode: rec.invoke_mode,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctionUrlConfigsResponse {
    pub function_url_configs: Vec<FunctionUrlConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// Whether `id` has the form of a URL id (checked before any lookup).
pub fn is_url_id(id: &str) -> bool {
    id.len() == URL_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Checks a URL's `Qualifier`: `$LATEST` or an alias name (Lambda's pattern: letters,
/// digits, `-` and `_`, not only digits). A version number is refused: Lambda serves
/// URLs on the unqualified function or an alias only.
pub fn check_qualifier(q: &str) -> Result<(), String> {
    if q == LATEST {
        return Ok(());
    }
    let valid = !q.is_empty()
        && q.len() <= QUALIFIER_MAX_CHARS
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!(
            "Invalid value for 'Qualifier': '{q}' (expected $LATEST or an alias name: 1 to {QUALIFIER_MAX_CHARS} of letters, digits, '-' and '_')"
        ));
    }
    if q.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "Invalid value for 'Qualifier': '{q}' is a version; a function URL applies to the unqualified function or an alias"
        ));
    }
    Ok(())
}

impl Cors {
    /// Lambda's bounds on each member; the message names the member.
    pub fn check(&self) -> Result<(), String> {
        let list = |name: &str, items: &Option<Vec<String>>, max: usize, item_max: usize| {
            let Some(items) = items else { return Ok(()) };
            if items.len() > max {
                return Err(format!(
                    "Invalid value for 'Cors.{name}': at most {max} items, got {}",
                    items.len()
                ));
            }
            match items.iter().find(|i| i.chars().count() > item_max) {
                Some(long) => Err(format!(
                    "Invalid value for 'Cors.{name}': '{long}' is longer than {item_max} characters"
                )),
                None => Ok(()),
            }
        };
        list(
            "AllowHeaders",
            &self.allow_headers,
            CORS_LIST_MAX,
            HEADER_MAX_CHARS,
        )?;
        list(
            "ExposeHeaders",
            &self.expose_headers,
            CORS_LIST_MAX,
            HEADER_MAX_CHARS,
        )?;
        list(
            "AllowOrigins",
            &self.allow_origins,
            CORS_LIST_MAX,
            ORIGIN_MAX_CHARS,
        )?;
        if let Some(empty) = self.allow_origins.iter().flatten().find(|o| o.is_empty()) {
            return Err(format!(
                "Invalid value for 'Cors.AllowOrigins': '{empty}' is empty"
            ));
        }
        list("AllowMethods", &self.allow_methods, CORS_METHODS_MAX, 6)?;
        if let Some(bad) = self
            .allow_methods
            .iter()
            .flatten()
            .find(|m| !CORS_METHODS.contains(&m.to_ascii_uppercase().as_str()))
        {
            return Err(format!(
                "Invalid value for 'Cors.AllowMethods': '{bad}' is not one of {}",
                CORS_METHODS.join(", ")
            ));
        }
        if let Some(age) = self.max_age.filter(|a| *a > CORS_MAX_AGE_MAX) {
            return Err(format!(
                "Invalid value for 'Cors.MaxAge': {age} (expected 0 to {CORS_MAX_AGE_MAX})"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifier_is_latest_or_an_alias_name_never_a_version() {
        assert!(check_qualifier("$LATEST").is_ok());
        assert!(check_qualifier("live").is_ok());
        assert!(check_qualifier("blue-2_x").is_ok());
        assert!(check_qualifier("3").unwrap_err().contains("version"));
        assert!(check_qualifier("").is_err());
        assert!(check_qualifier("a:b").is_err());
        assert!(check_qualifier(&"a".repeat(129)).is_err());
    }

    #[test]
    fn url_ids_are_32_lowercase_alphanumerics() {
        assert!(is_url_id("abcdefghijklmnopqrstuvwxyz012345"));
        assert!(!is_url_id("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"));
        assert!(!is_url_id("abc"));
        assert!(!is_url_id("abcdefghijklmnopqrstuvwxyz01234/"));
    }

    #[test]
    fn cors_members_are_bounded_and_named_in_errors() {
        let ok = Cors {
            allow_methods: Some(vec!["get".into(), "*".into()]),
            allow_origins: Some(vec!["https://example.com".into()]),
            max_age: Some(86_400),
            ..Cors::default()
        };
        assert!(ok.check().is_ok());
        let method = Cors {
            allow_methods: Some(vec!["TRACE".into()]),
            ..Cors::default()
        };
        assert!(method.check().unwrap_err().contains("Cors.AllowMethods"));
        let age = Cors {
            max_age: Some(86_401),
            ..Cors::default()
        };
        assert!(age.check().unwrap_err().contains("Cors.MaxAge"));
        let origins = Cors {
            allow_origins: Some(vec!["x".into(); 101]),
            ..Cors::default()
        };
        assert!(origins.check().unwrap_err().contains("Cors.AllowOrigins"));
    }

    #[test]
    fn input_refuses_unknown_members_and_values() {
        let unknown = serde_json::from_str::<FunctionUrlInput>(r#"{"AuthType":"NONE","Foo":1}"#);
        assert!(unknown.unwrap_err().to_string().contains("Foo"));
        let bad = serde_json::from_str::<FunctionUrlInput>(r#"{"AuthType":"OPEN"}"#);
        assert!(bad.unwrap_err().to_string().contains("OPEN"));
        let cors = serde_json::from_str::<FunctionUrlInput>(r#"{"Cors":{"AllowOrigin":[]}}"#);
        assert!(cors.unwrap_err().to_string().contains("AllowOrigin"));
    }
}
