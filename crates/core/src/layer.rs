//! Lambda layers: the stored record of a layer version, layer ARNs, the permission
//! policy of a version, and the wire shapes of the layer API (botocore's
//! `PublishLayerVersion`, `GetLayerVersion`, `ListLayers`, ... in
//! `lambda/2015-03-31/service-2.json`).

use serde::{Deserialize, Serialize};

use crate::timefmt::last_modified;

/// Layers one function may reference, as on Lambda.
pub const MAX_LAYERS_PER_FUNCTION: usize = 5;
/// Longest layer name (the model's `LayerName` pattern allows 140 with an ARN).
pub const LAYER_NAME_MAX: usize = 140;
/// Default and largest `MaxItems` of ListLayers and ListLayerVersions.
pub const LIST_LAYERS_MAX_ITEMS: usize = 50;
/// The only action a layer permission may grant.
pub const GET_LAYER_VERSION_ACTION: &str = "lambda:GetLayerVersion";

/// One published layer version, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerVersionRecord {
    pub namespace: String,
    /// The namespace's account id, as it appears in the layer's ARNs.
    pub account: String,
    pub name: String,
    pub version: u64,
    pub description: String,
    pub license_info: Option<String>,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    /// Lowercase hex sha256 of the zip: the key in the code store.
    pub sha256_hex: String,
    /// Base64 sha256, as Lambda reports `CodeSha256`.
    pub sha256_b64: String,
    /// Zipped size.
    pub size: u64,
    /// Size of the extracted files, counted against the function's 250 MB.
    pub unzipped_size: u64,
    pub created_ms: i64,
}

/// One statement of a layer version's permission policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStatement {
    pub statement_id: String,
    pub action: String,
    /// `*` or a 12-digit account id.
    pub principal: String,
}

/// Layer name and version named by a layer version ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerVersionRef {
    pub region: String,
    pub account: String,
    pub name: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerNameError {
    #[error("'{0}' is not a valid layer version ARN: expected arn:aws:lambda:<region>:<account>:layer:<name>:<version>")]
    BadVersionArn(String),
    #[error("'{0}' is not a valid layer name: use 1 to 140 letters, digits, '-' and '_', or a layer ARN")]
    BadName(String),
}

/// Whether `s` is a bare layer name: letters, digits, `-` and `_`.
pub fn is_valid_layer_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= LAYER_NAME_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_arn_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `arn:aws:lambda:<region>:<account>:layer:<name>`.
pub fn layer_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:lambda:{region}:{account}:layer:{name}")
}

/// `arn:aws:lambda:<region>:<account>:layer:<name>:<version>`.
pub fn layer_version_arn(region: &str, account: &str, name: &str, version: u64) -> String {
    format!("{}:{version}", layer_arn(region, account, name))
}

impl LayerVersionRef {
    /// Parses a layer version ARN (the model's `LayerVersionArn` pattern).
    pub fn parse(arn: &str) -> Result<Self, LayerNameError> {
        let bad = || LayerNameError::BadVersionArn(arn.to_string());
        if arn.len() > LAYER_NAME_MAX {
            return Err(bad());
        }
        match arn.split(':').collect::<Vec<_>>().as_slice() {
            ["arn", partition, "lambda", region, account, "layer", name, version]
                if is_arn_word(partition)
                    && is_arn_word(region)
                    && is_account(account)
                    && is_valid_layer_name(name)
                    && !version.is_empty()
                    && version.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(LayerVersionRef {
                    region: region.to_string(),
                    account: account.to_string(),
                    name: name.to_string(),
                    version: version.parse().map_err(|_| bad())?,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// A `LayerName` path parameter: a bare name or a layer ARN. Returns the account the
/// ARN names (if any) and the bare name.
pub fn parse_layer_name(input: &str) -> Result<(Option<String>, String), LayerNameError> {
    if is_valid_layer_name(input) {
        return Ok((None, input.to_string()));
    }
    let bad = || LayerNameError::BadName(input.to_string());
    if input.len() > LAYER_NAME_MAX {
        return Err(bad());
    }
    match input.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", partition, "lambda", region, account, "layer", name]
            if is_arn_word(partition)
                && is_arn_word(region)
                && is_account(account)
                && is_valid_layer_name(name) =>
        {
            Ok((Some(account.to_string()), name.to_string()))
        }
        _ => Err(bad()),
    }
}

/// The policy document Lambda returns for a layer version's statements.
pub fn policy_document(
    statements: &[LayerStatement],
    region: &str,
    rec: &LayerVersionRecord,
) -> serde_json::Value {
    let resource = layer_version_arn(region, &rec.account, &rec.name, rec.version);
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": statements
            .iter()
            .map(|s| statement_json(s, &resource))
            .collect::<Vec<_>>(),
    })
}

/// One statement as it appears in the policy document.
pub fn statement_json(s: &LayerStatement, resource: &str) -> serde_json::Value {
    let principal = if s.principal == "*" {
        serde_json::Value::from("*")
    } else {
        serde_json::json!({ "AWS": format!("arn:aws:iam::{}:root", s.principal) })
    };
    serde_json::json!({
        "Sid": s.statement_id,
        "Effect": "Allow",
        "Principal": principal,
        "Action": s.action,
        "Resource": resource,
    })
}

/// The account id a `Principal` names (`*`, `123456789012` or
/// `arn:aws:iam::123456789012:root`), normalised to `*` or the 12 digits.
pub fn normalize_principal(principal: &str) -> Option<String> {
    if principal == "*" || is_account(principal) {
        return Some(principal.to_string());
    }
    match principal.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", partition, "iam", "", account, "root"]
            if partition.starts_with("aws") && is_account(account) =>
        {
            Some(account.to_string())
        }
        _ => None,
    }
}

/// Whether a statement lets `account` use the layer version.
pub fn grants(statements: &[LayerStatement], account: &str) -> bool {
    statements.iter().any(|s| {
        s.action == GET_LAYER_VERSION_ACTION && (s.principal == "*" || s.principal == account)
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PublishLayerVersionRequest {
    pub content: LayerVersionContentInput,
    pub description: Option<String>,
    pub compatible_runtimes: Option<Vec<String>>,
    pub license_info: Option<String>,
    pub compatible_architectures: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LayerVersionContentInput {
    /// Base64 of the zip.
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct AddLayerVersionPermissionRequest {
    pub statement_id: String,
    pub action: String,
    pub principal: String,
    pub organization_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionContentOutput {
    pub location: String,
    pub code_sha256: String,
    pub code_size: u64,
}

/// `PublishLayerVersionResponse`, `GetLayerVersionResponse`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionResponse {
    pub content: LayerVersionContentOutput,
    pub layer_arn: String,
    pub layer_version_arn: String,
    pub description: String,
    pub created_date: String,
    pub version: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatible_runtimes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatible_architectures: Vec<String>,
}

impl LayerVersionResponse {
    pub fn from_record(rec: &LayerVersionRecord, region: &str, location: String) -> Self {
        LayerVersionResponse {
            content: LayerVersionContentOutput {
                location,
                code_sha256: rec.sha256_b64.clone(),
                code_size: rec.size,
            },
            layer_arn: layer_arn(region, &rec.account, &rec.name),
            layer_version_arn: layer_version_arn(region, &rec.account, &rec.name, rec.version),
            description: rec.description.clone(),
            created_date: last_modified(rec.created_ms),
            version: rec.version,
            compatible_runtimes: rec.compatible_runtimes.clone(),
            license_info: rec.license_info.clone(),
            compatible_architectures: rec.compatible_architectures.clone(),
        }
    }
}

/// `LayerVersionsListItem`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionsListItem {
    pub layer_version_arn: String,
    pub version: u64,
    pub description: String,
    pub created_date: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatible_runtimes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_info: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compatible_architectures: Vec<String>,
}

impl LayerVersionsListItem {
    pub fn from_record(rec: &LayerVersionRecord, region: &str) -> Self {
        LayerVersionsListItem {
            layer_version_arn: layer_version_arn(region, &rec.account, &rec.name, rec.version),
            version: rec.version,
            description: rec.description.clone(),
            created_date: last_modified(rec.created_ms),
            compatible_runtimes: rec.compatible_runtimes.clone(),
            license_info: rec.license_info.clone(),
            compatible_architectures: rec.compatible_architectures.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListLayerVersionsResponse {
    pub layer_versions: Vec<LayerVersionsListItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// `LayersListItem`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayersListItem {
    pub layer_name: String,
    pub layer_arn: String,
    pub latest_matching_version: LayerVersionsListItem,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListLayersResponse {
    pub layers: Vec<LayersListItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AddLayerVersionPermissionResponse {
    /// The statement, as a JSON string.
    pub statement: String,
    pub revision_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetLayerVersionPolicyResponse {
    /// The policy document, as a JSON string.
    pub policy: String,
    pub revision_id: String,
}

/// A layer of a function, as `FunctionConfiguration.Layers` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionLayer {
    pub arn: String,
    pub code_size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_version_arns_parse_and_round_trip() {
        let arn = layer_version_arn("us-east-1", "000000000000", "my-lib_2", 7);
        assert_eq!(
            arn,
            "arn:aws:lambda:us-east-1:000000000000:layer:my-lib_2:7"
        );
        let r = LayerVersionRef::parse(&arn).expect("valid");
        assert_eq!(
            (r.account.as_str(), r.name.as_str(), r.version),
            ("000000000000", "my-lib_2", 7)
        );
        for bad in [
            "my-lib:1",
            "arn:aws:lambda:us-east-1:000000000000:layer:my-lib",
            "arn:aws:lambda:us-east-1:0000:layer:x:1",
            "arn:aws:lambda:us-east-1:000000000000:function:x:1",
            "arn:aws:lambda:us-east-1:000000000000:layer:x:one",
            "arn:aws:lambda:us-east-1:000000000000:layer:a/b:1",
        ] {
            assert!(LayerVersionRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layer_name_parameter_takes_a_name_or_a_layer_arn() {
        assert_eq!(parse_layer_name("lib").unwrap(), (None, "lib".to_string()));
        assert_eq!(
            parse_layer_name("arn:aws:lambda:r-1:123456789012:layer:lib").unwrap(),
            (Some("123456789012".to_string()), "lib".to_string())
        );
        assert!(parse_layer_name("a b").is_err());
        assert!(parse_layer_name(&"x".repeat(141)).is_err());
    }

    #[test]
    fn principals_normalise_and_grant_only_the_named_account() {
        assert_eq!(normalize_principal("*").as_deref(), Some("*"));
        assert_eq!(
            normalize_principal("arn:aws:iam::123456789012:root").as_deref(),
            Some("123456789012")
        );
        assert_eq!(normalize_principal("bob"), None);
        let st = |p: &str| LayerStatement {
            statement_id: "s".into(),
            action: GET_LAYER_VERSION_ACTION.into(),
            principal: p.into(),
        };
        assert!(grants(&[st("123456789012")], "123456789012"));
        assert!(!grants(&[st("123456789012")], "999999999999"));
        assert!(grants(&[st("*")], "999999999999"));
    }

    #[test]
    fn policy_document_has_lambdas_shape() {
        let rec = LayerVersionRecord {
            namespace: "default".into(),
            account: "000000000000".into(),
            name: "lib".into(),
            version: 3,
            description: String::new(),
            license_info: None,
            compatible_runtimes: vec![],
            compatible_architectures: vec![],
            sha256_hex: "ab".into(),
            sha256_b64: "q=".into(),
            size: 1,
            unzipped_size: 1,
            created_ms: 0,
        };
        let doc = policy_document(
            &[LayerStatement {
                statement_id: "xaccount".into(),
                action: GET_LAYER_VERSION_ACTION.into(),
                principal: "123456789012".into(),
            }],
            "us-east-1",
            &rec,
        );
        assert_eq!(doc["Version"], "2012-10-17");
        assert_eq!(doc["Statement"][0]["Sid"], "xaccount");
        assert_eq!(
            doc["Statement"][0]["Principal"]["AWS"],
            "arn:aws:iam::123456789012:root"
        );
        assert_eq!(
            doc["Statement"][0]["Resource"],
            "arn:aws:lambda:us-east-1:000000000000:layer:lib:3"
        );
    }
}
