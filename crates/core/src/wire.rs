//! Lambda request and response bodies, field for field as in the botocore model
//! (`botocore/data/lambda/2015-03-31/service-2.json`).
//!
//! Request shapes reject unknown fields so a typo gets a clear error, but accept every
//! member the model defines; members tern does not act on are kept as raw JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::function::{AliasRecord, FunctionRecord, LATEST};
use crate::layer::FunctionLayer;
use crate::names::function_arn;
use crate::timefmt::last_modified;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CreateFunctionRequest {
    pub function_name: String,
    pub runtime: Option<String>,
    pub role: Option<String>,
    pub handler: Option<String>,
    pub code: FunctionCode,
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub memory_size: Option<i64>,
    pub publish: Option<bool>,
    pub environment: Option<Environment>,
    pub architectures: Option<Vec<String>>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    pub tags: Option<BTreeMap<String, String>>,
    pub package_type: Option<String>,
    pub vpc_config: Option<Value>,
    pub dead_letter_config: Option<Value>,
    #[serde(rename = "KMSKeyArn")]
    pub kms_key_arn: Option<Value>,
    pub tracing_config: Option<TracingConfigInput>,
    pub layers: Option<Vec<String>>,
    pub file_system_configs: Option<Value>,
    pub image_config: Option<Value>,
    pub code_signing_config_arn: Option<Value>,
    pub snap_start: Option<Value>,
    pub logging_config: Option<LoggingConfigInput>,
    pub capacity_provider_config: Option<Value>,
    pub publish_to: Option<Value>,
    pub durable_config: Option<Value>,
    pub tenancy_config: Option<Value>,
    /// tern's extension: how the function reaches the network.
    pub tern_network: Option<TernNetworkInput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct FunctionCode {
    /// Base64 of the zip.
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
    pub image_uri: Option<String>,
    #[serde(rename = "SourceKMSKeyArn")]
    pub source_kms_key_arn: Option<String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Environment {
    pub variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct EphemeralStorage {
    pub size: i64,
}

/// `LoggingConfig` as a request gives it: each member optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct LoggingConfigInput {
    pub log_format: Option<String>,
    pub application_log_level: Option<String>,
    pub system_log_level: Option<String>,
    pub log_group: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TracingConfigInput {
    pub mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdateFunctionCodeRequest {
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_key: Option<String>,
    pub s3_object_version: Option<String>,
    pub image_uri: Option<String>,
    pub publish: Option<bool>,
    pub dry_run: Option<bool>,
    pub revision_id: Option<String>,
    pub architectures: Option<Vec<String>>,
    #[serde(rename = "SourceKMSKeyArn")]
    pub source_kms_key_arn: Option<String>,
    pub publish_to: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdateFunctionConfigurationRequest {
    pub role: Option<String>,
    pub handler: Option<String>,
    pub description: Option<String>,
    pub timeout: Option<i64>,
    pub memory_size: Option<i64>,
    pub environment: Option<Environment>,
    pub runtime: Option<String>,
    pub revision_id: Option<String>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    pub vpc_config: Option<Value>,
    pub dead_letter_config: Option<Value>,
    #[serde(rename = "KMSKeyArn")]
    pub kms_key_arn: Option<Value>,
    pub tracing_config: Option<TracingConfigInput>,
    pub layers: Option<Vec<String>>,
    pub file_system_configs: Option<Value>,
    pub image_config: Option<Value>,
    pub snap_start: Option<Value>,
    pub logging_config: Option<LoggingConfigInput>,
    pub capacity_provider_config: Option<Value>,
    pub durable_config: Option<Value>,
    /// tern's extension: how the function reaches the network.
    pub tern_network: Option<TernNetworkInput>,
}

/// `TernNetwork` as a request gives it (a tern extension to Lambda's shapes).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct TernNetworkInput {
    /// `none` or `egress`.
    pub mode: Option<String>,
    /// Let the function's instances call tern's API (`AWS_ENDPOINT_URL_LAMBDA`, with
    /// credentials of their own).
    pub call_tern: Option<bool>,
    /// The private networks to attach to (as `VpcConfig` with these names as both its
    /// `SubnetIds` and `SecurityGroupIds`); an empty list detaches.
    pub networks: Option<Vec<String>>,
}

/// `TernNetwork` in responses.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TernNetwork {
    pub mode: String,
    pub call_tern: bool,
    pub networks: Vec<String>,
}

/// Lambda's `VpcConfigResponse`, for a function attached to private networks.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcConfigResponse {
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    /// tern has one "VPC": the server's private networks.
    pub vpc_id: String,
    pub ipv6_allowed_for_dual_stack: bool,
}

/// `FunctionConfiguration` in responses.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionConfiguration {
    pub function_name: String,
    pub function_arn: String,
    pub runtime: String,
    pub role: String,
    pub handler: String,
    pub code_size: u64,
    pub description: String,
    pub timeout: u32,
    pub memory_size: u32,
    pub last_modified: String,
    pub code_sha256: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<EnvironmentResponse>,
    pub tracing_config: TracingConfig,
    pub revision_id: String,
    pub state: String,
    pub last_update_status: String,
    pub package_type: String,
    pub architectures: Vec<String>,
    pub ephemeral_storage: EphemeralStorage,
    pub logging_config: LoggingConfig,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<FunctionLayer>,
    pub snap_start: SnapStartResponse,
    /// tern's extension (Lambda's clients ignore members they do not know).
    pub tern_network: TernNetwork,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfigResponse>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SnapStartResponse {
    pub apply_on: String,
    /// `On` when instances start from a post-init template.
    pub optimization_status: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentResponse {
    pub variables: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TracingConfig {
    pub mode: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingConfig {
    pub log_format: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub application_log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_log_level: Option<String>,
    pub log_group: String,
}

impl FunctionConfiguration {
    pub fn from_record(rec: &FunctionRecord, region: &str, account: &str) -> Self {
        FunctionConfiguration {
            function_name: rec.name.clone(),
            function_arn: function_arn(
                region,
                account,
                &rec.name,
                (rec.version != LATEST).then_some(rec.version.as_str()),
            ),
            runtime: rec.runtime.clone(),
            role: rec.role.clone(),
            handler: rec.handler.clone(),
            code_size: rec.code.size,
            description: rec.description.clone(),
            timeout: rec.timeout_s,
            memory_size: rec.memory_mb,
            last_modified: last_modified(rec.last_modified_ms),
            code_sha256: rec.code.sha256_b64.clone(),
            version: rec.version.clone(),
            environment: (!rec.env.is_empty()).then(|| EnvironmentResponse {
                variables: rec.env.clone(),
            }),
            tracing_config: TracingConfig {
                mode: rec.tracing_mode.clone(),
            },
            revision_id: rec.revision_id.clone(),
            state: "Active".to_string(),
            last_update_status: "Successful".to_string(),
            package_type: "Zip".to_string(),
            architectures: rec.architectures.clone(),
            ephemeral_storage: EphemeralStorage {
                size: i64::from(rec.tmp_mb),
            },
            logging_config: LoggingConfig {
                log_format: rec.logging.format.clone(),
                application_log_level: rec.logging.application_level.clone(),
                system_log_level: rec.logging.system_level.clone(),
                log_group: rec.logging.group(&rec.name),
            },
            layers: rec
                .layers
                .iter()
                .map(|l| FunctionLayer {
                    arn: l.arn.clone(),
                    code_size: l.size,
                })
                .collect(),
            snap_start: SnapStartResponse {
                apply_on: if rec.snap_start {
                    "PublishedVersions"
                } else {
                    "None"
                }
                .to_string(),
                optimization_status: if rec.snap_start { "On" } else { "Off" }.to_string(),
            },
            tern_network: TernNetwork {
                mode: rec.network.as_str().to_string(),
                call_tern: rec.call_tern,
                networks: rec.networks.clone(),
            },
            vpc_config: (!rec.networks.is_empty()).then(|| VpcConfigResponse {
                subnet_ids: rec.networks.clone(),
                security_group_ids: rec.networks.clone(),
                vpc_id: "tern".to_string(),
                ipv6_allowed_for_dual_stack: false,
            }),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionCodeLocation {
    pub repository_type: String,
    pub location: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetFunctionResponse {
    pub configuration: FunctionConfiguration,
    pub code: FunctionCodeLocation,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
}

/// `Concurrency` (PutFunctionConcurrency response, GetFunction member) and
/// `GetFunctionConcurrencyResponse` (empty when no reservation is set).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Concurrency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_concurrent_executions: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PutFunctionConcurrencyRequest {
    pub reserved_concurrent_executions: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PutProvisionedConcurrencyConfigRequest {
    pub provisioned_concurrent_executions: i64,
}

/// Get/PutProvisionedConcurrencyConfig response, and (with `FunctionArn`) a list item.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvisionedConcurrencyConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
    pub requested_provisioned_concurrent_executions: u32,
    pub available_provisioned_concurrent_executions: u32,
    pub allocated_provisioned_concurrent_executions: u32,
    /// IN_PROGRESS, READY or FAILED.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub last_modified: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListProvisionedConcurrencyConfigsResponse {
    pub provisioned_concurrency_configs: Vec<ProvisionedConcurrencyConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFunctionsResponse {
    pub functions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountLimit {
    pub total_code_size: u64,
    pub code_size_unzipped: u64,
    pub code_size_zipped: u64,
    pub concurrent_executions: u32,
    pub unreserved_concurrent_executions: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountUsage {
    pub total_code_size: u64,
    pub function_count: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetAccountSettingsResponse {
    pub account_limit: AccountLimit,
    pub account_usage: AccountUsage,
}

/// The body a runtime posts to `/invocation/{id}/error` and `/init/error`, and the body
/// Invoke returns for a function error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FunctionErrorBody {
    #[serde(rename = "errorMessage")]
    pub error_message: String,
    #[serde(rename = "errorType")]
    pub error_type: String,
    #[serde(rename = "stackTrace", default, skip_serializing_if = "Vec::is_empty")]
    pub stack_trace: Vec<String>,
}

impl FunctionErrorBody {
    pub fn new(error_type: &str, message: impl Into<String>) -> Self {
        FunctionErrorBody {
            error_message: message.into(),
            error_type: error_type.to_string(),
            stack_trace: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_request_rejects_unknown_fields_but_accepts_model_members() {
        let ok = r#"{"FunctionName":"f","Role":"r","Code":{"ZipFile":"UEs="},"VpcConfig":{},"Layers":[],"KMSKeyArn":"k"}"#;
        assert!(serde_json::from_str::<CreateFunctionRequest>(ok).is_ok());
        let bad = r#"{"FunctionName":"f","Code":{},"Bogus":1}"#;
        let err = serde_json::from_str::<CreateFunctionRequest>(bad).unwrap_err();
        assert!(err.to_string().contains("Bogus"), "{err}");
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct PublishVersionRequest {
    pub code_sha256: Option<String>,
    pub description: Option<String>,
    pub revision_id: Option<String>,
    pub publish_to: Option<Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListVersionsByFunctionResponse {
    pub versions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct AliasRoutingConfiguration {
    #[serde(default)]
    pub additional_version_weights: BTreeMap<String, f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct CreateAliasRequest {
    pub name: String,
    pub function_version: String,
    pub description: Option<String>,
    pub routing_config: Option<AliasRoutingConfiguration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct UpdateAliasRequest {
    pub function_version: Option<String>,
    pub description: Option<String>,
    pub routing_config: Option<AliasRoutingConfiguration>,
    pub revision_id: Option<String>,
}

/// `AliasConfiguration` in responses.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasConfiguration {
    pub alias_arn: String,
    pub name: String,
    pub function_version: String,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_config: Option<AliasRoutingConfiguration>,
    pub revision_id: String,
}

impl AliasConfiguration {
    pub fn from_record(rec: &AliasRecord, region: &str, account: &str) -> Self {
        AliasConfiguration {
            alias_arn: function_arn(region, account, &rec.function, Some(&rec.name)),
            name: rec.name.clone(),
            function_version: rec.function_version.clone(),
            description: rec.description.clone(),
            routing_config: (!rec.additional_weights.is_empty()).then(|| {
                AliasRoutingConfiguration {
                    additional_version_weights: rec.additional_weights.clone(),
                }
            }),
            revision_id: rec.revision_id.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListAliasesResponse {
    pub aliases: Vec<AliasConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}
