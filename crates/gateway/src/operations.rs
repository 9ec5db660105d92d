//! Every operation of botocore's Lambda model (`lambda/2015-03-31/service-2.json`), with
//! its HTTP method, request URI and whether tern serves it.
//!
//! The router serves the supported ones; a request that reaches the router's fallback is
//! matched against this table, so an operation tern does not implement is named in the
//! error instead of answered as an unknown path. docs/api.md lists the same table; tests
//! keep the table, the router, the docs and the installed botocore model in step.

/// Whether tern implements an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Supported,
    NotSupported,
}

use Support::{NotSupported, Supported};

/// One operation of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    pub name: &'static str,
    pub method: &'static str,
    /// The model's `requestUri`: literal segments, `{Label}` segments (one path segment
    /// each), and an optional `?key=value` that tells apart operations on the same path.
    pub uri: &'static str,
    pub support: Support,
}

const GET: &str = "GET";
const POST: &str = "POST";
const PUT: &str = "PUT";
const DELETE: &str = "DELETE";

const fn op(
    name: &'static str,
    method: &'static str,
    uri: &'static str,
    support: Support,
) -> Operation {
    Operation {
        name,
        method,
        uri,
        support,
    }
}

/// Sorted by name, as in the model.
#[rustfmt::skip]
pub const OPERATIONS: &[Operation] = &[
    op("AddLayerVersionPermission", POST, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}/policy", Supported),
    op("AddPermission", POST, "/2015-03-31/functions/{FunctionName}/policy", NotSupported),
    op("CheckpointDurableExecution", POST, "/2025-12-01/durable-executions/{DurableExecutionArn}/checkpoint", NotSupported),
    op("CreateAlias", POST, "/2015-03-31/functions/{FunctionName}/aliases", Supported),
    op("CreateCapacityProvider", POST, "/2025-11-30/capacity-providers", NotSupported),
    op("CreateCodeSigningConfig", POST, "/2020-04-22/code-signing-configs", NotSupported),
    op("CreateEventSourceMapping", POST, "/2015-03-31/event-source-mappings", NotSupported),
    op("CreateFunction", POST, "/2015-03-31/functions", Supported),
    op("CreateFunctionUrlConfig", POST, "/2021-10-31/functions/{FunctionName}/url", Supported),
    op("DeleteAlias", DELETE, "/2015-03-31/functions/{FunctionName}/aliases/{Name}", Supported),
    op("DeleteCapacityProvider", DELETE, "/2025-11-30/capacity-providers/{CapacityProviderName}", NotSupported),
    op("DeleteCodeSigningConfig", DELETE, "/2020-04-22/code-signing-configs/{CodeSigningConfigArn}", NotSupported),
    op("DeleteEventSourceMapping", DELETE, "/2015-03-31/event-source-mappings/{UUID}", NotSupported),
    op("DeleteFunction", DELETE, "/2015-03-31/functions/{FunctionName}", Supported),
    op("DeleteFunctionCodeSigningConfig", DELETE, "/2020-06-30/functions/{FunctionName}/code-signing-config", NotSupported),
    op("DeleteFunctionConcurrency", DELETE, "/2017-10-31/functions/{FunctionName}/concurrency", Supported),
    op("DeleteFunctionEventInvokeConfig", DELETE, "/2019-09-25/functions/{FunctionName}/event-invoke-config", Supported),
    op("DeleteFunctionUrlConfig", DELETE, "/2021-10-31/functions/{FunctionName}/url", Supported),
    op("DeleteLayerVersion", DELETE, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}", Supported),
    op("DeleteProvisionedConcurrencyConfig", DELETE, "/2019-09-30/functions/{FunctionName}/provisioned-concurrency", Supported),
    op("GetAccountSettings", GET, "/2016-08-19/account-settings", Supported),
    op("GetAlias", GET, "/2015-03-31/functions/{FunctionName}/aliases/{Name}", Supported),
    op("GetCapacityProvider", GET, "/2025-11-30/capacity-providers/{CapacityProviderName}", NotSupported),
    op("GetCodeSigningConfig", GET, "/2020-04-22/code-signing-configs/{CodeSigningConfigArn}", NotSupported),
    op("GetDurableExecution", GET, "/2025-12-01/durable-executions/{DurableExecutionArn}", NotSupported),
    op("GetDurableExecutionHistory", GET, "/2025-12-01/durable-executions/{DurableExecutionArn}/history", NotSupported),
    op("GetDurableExecutionState", GET, "/2025-12-01/durable-executions/{DurableExecutionArn}/state", NotSupported),
    op("GetEventSourceMapping", GET, "/2015-03-31/event-source-mappings/{UUID}", NotSupported),
    op("GetFunction", GET, "/2015-03-31/functions/{FunctionName}", Supported),
    op("GetFunctionCodeSigningConfig", GET, "/2020-06-30/functions/{FunctionName}/code-signing-config", NotSupported),
    op("GetFunctionConcurrency", GET, "/2019-09-30/functions/{FunctionName}/concurrency", Supported),
    op("GetFunctionConfiguration", GET, "/2015-03-31/functions/{FunctionName}/configuration", Supported),
    op("GetFunctionEventInvokeConfig", GET, "/2019-09-25/functions/{FunctionName}/event-invoke-config", Supported),
    op("GetFunctionRecursionConfig", GET, "/2024-08-31/functions/{FunctionName}/recursion-config", NotSupported),
    op("GetFunctionScalingConfig", GET, "/2025-11-30/functions/{FunctionName}/function-scaling-config", NotSupported),
    op("GetFunctionUrlConfig", GET, "/2021-10-31/functions/{FunctionName}/url", Supported),
    op("GetLayerVersion", GET, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}", Supported),
    op("GetLayerVersionByArn", GET, "/2018-10-31/layers?find=LayerVersion", Supported),
    op("GetLayerVersionPolicy", GET, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}/policy", Supported),
    op("GetPolicy", GET, "/2015-03-31/functions/{FunctionName}/policy", NotSupported),
    op("GetProvisionedConcurrencyConfig", GET, "/2019-09-30/functions/{FunctionName}/provisioned-concurrency", Supported),
    op("GetRuntimeManagementConfig", GET, "/2021-07-20/functions/{FunctionName}/runtime-management-config", NotSupported),
    op("Invoke", POST, "/2015-03-31/functions/{FunctionName}/invocations", Supported),
    op("InvokeAsync", POST, "/2014-11-13/functions/{FunctionName}/invoke-async", Supported),
    op("InvokeWithResponseStream", POST, "/2021-11-15/functions/{FunctionName}/response-streaming-invocations", NotSupported),
    op("ListAliases", GET, "/2015-03-31/functions/{FunctionName}/aliases", Supported),
    op("ListCapacityProviders", GET, "/2025-11-30/capacity-providers", NotSupported),
    op("ListCodeSigningConfigs", GET, "/2020-04-22/code-signing-configs", NotSupported),
    op("ListDurableExecutionsByFunction", GET, "/2025-12-01/functions/{FunctionName}/durable-executions", NotSupported),
    op("ListEventSourceMappings", GET, "/2015-03-31/event-source-mappings", NotSupported),
    op("ListFunctionEventInvokeConfigs", GET, "/2019-09-25/functions/{FunctionName}/event-invoke-config/list", Supported),
    op("ListFunctionUrlConfigs", GET, "/2021-10-31/functions/{FunctionName}/urls", Supported),
    op("ListFunctionVersionsByCapacityProvider", GET, "/2025-11-30/capacity-providers/{CapacityProviderName}/function-versions", NotSupported),
    op("ListFunctions", GET, "/2015-03-31/functions", Supported),
    op("ListFunctionsByCodeSigningConfig", GET, "/2020-04-22/code-signing-configs/{CodeSigningConfigArn}/functions", NotSupported),
    op("ListLayerVersions", GET, "/2018-10-31/layers/{LayerName}/versions", Supported),
    op("ListLayers", GET, "/2018-10-31/layers", Supported),
    op("ListProvisionedConcurrencyConfigs", GET, "/2019-09-30/functions/{FunctionName}/provisioned-concurrency?List=ALL", Supported),
    op("ListTags", GET, "/2017-03-31/tags/{Resource}", Supported),
    op("ListVersionsByFunction", GET, "/2015-03-31/functions/{FunctionName}/versions", Supported),
    op("PublishLayerVersion", POST, "/2018-10-31/layers/{LayerName}/versions", Supported),
    op("PublishVersion", POST, "/2015-03-31/functions/{FunctionName}/versions", Supported),
    op("PutFunctionCodeSigningConfig", PUT, "/2020-06-30/functions/{FunctionName}/code-signing-config", NotSupported),
    op("PutFunctionConcurrency", PUT, "/2017-10-31/functions/{FunctionName}/concurrency", Supported),
    op("PutFunctionEventInvokeConfig", PUT, "/2019-09-25/functions/{FunctionName}/event-invoke-config", Supported),
    op("PutFunctionRecursionConfig", PUT, "/2024-08-31/functions/{FunctionName}/recursion-config", NotSupported),
    op("PutFunctionScalingConfig", PUT, "/2025-11-30/functions/{FunctionName}/function-scaling-config", NotSupported),
    op("PutProvisionedConcurrencyConfig", PUT, "/2019-09-30/functions/{FunctionName}/provisioned-concurrency", Supported),
    op("PutRuntimeManagementConfig", PUT, "/2021-07-20/functions/{FunctionName}/runtime-management-config", NotSupported),
    op("RemoveLayerVersionPermission", DELETE, "/2018-10-31/layers/{LayerName}/versions/{VersionNumber}/policy/{StatementId}", Supported),
    op("RemovePermission", DELETE, "/2015-03-31/functions/{FunctionName}/policy/{StatementId}", NotSupported),
    op("SendDurableExecutionCallbackFailure", POST, "/2025-12-01/durable-execution-callbacks/{CallbackId}/fail", NotSupported),
    op("SendDurableExecutionCallbackHeartbeat", POST, "/2025-12-01/durable-execution-callbacks/{CallbackId}/heartbeat", NotSupported),
    op("SendDurableExecutionCallbackSuccess", POST, "/2025-12-01/durable-execution-callbacks/{CallbackId}/succeed", NotSupported),
    op("StopDurableExecution", POST, "/2025-12-01/durable-executions/{DurableExecutionArn}/stop", NotSupported),
    op("TagResource", POST, "/2017-03-31/tags/{Resource}", Supported),
    op("UntagResource", DELETE, "/2017-03-31/tags/{Resource}", Supported),
    op("UpdateAlias", PUT, "/2015-03-31/functions/{FunctionName}/aliases/{Name}", Supported),
    op("UpdateCapacityProvider", PUT, "/2025-11-30/capacity-providers/{CapacityProviderName}", NotSupported),
    op("UpdateCodeSigningConfig", PUT, "/2020-04-22/code-signing-configs/{CodeSigningConfigArn}", NotSupported),
    op("UpdateEventSourceMapping", PUT, "/2015-03-31/event-source-mappings/{UUID}", NotSupported),
    op("UpdateFunctionCode", PUT, "/2015-03-31/functions/{FunctionName}/code", Supported),
    op("UpdateFunctionConfiguration", PUT, "/2015-03-31/functions/{FunctionName}/configuration", Supported),
    op("UpdateFunctionEventInvokeConfig", POST, "/2019-09-25/functions/{FunctionName}/event-invoke-config", Supported),
    op("UpdateFunctionUrlConfig", PUT, "/2021-10-31/functions/{FunctionName}/url", Supported),
];

impl Operation {
    /// The path pattern and the `(key, value)` query discriminator, if any.
    fn pattern(&self) -> (&'static str, Option<(&'static str, &'static str)>) {
        match self.uri.split_once('?') {
            Some((path, query)) => (path, query.split_once('=')),
            None => (self.uri, None),
        }
    }

    fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        if !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        let (pattern, discriminator) = self.pattern();
        if let Some((key, value)) = discriminator {
            let present = query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .any(|(k, v)| k == key && v == value);
            if !present {
                return false;
            }
        }
        // Clients differ on a trailing slash (`/2015-03-31/functions/`); labels are never empty.
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut want = pattern.split('/');
        let mut got = path.split('/');
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some(w), Some(g)) => {
                    let is_label = w.starts_with('{') && w.ends_with('}');
                    if (is_label && g.is_empty()) || (!is_label && w != g) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }
}

/// The operation a request is for. When a path carries an operation's query
/// discriminator (`?find=LayerVersion`, `?List=ALL`), that operation wins over the one
/// on the bare path.
pub fn find(method: &str, path: &str, query: &str) -> Option<&'static Operation> {
    OPERATIONS
        .iter()
        .filter(|op| op.matches(method, path, query))
        .max_by_key(|op| op.pattern().1.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(method: &str, path: &str, query: &str) -> Option<&'static str> {
        find(method, path, query).map(|op| op.name)
    }

    #[test]
    fn labels_match_one_non_empty_segment() {
        assert_eq!(
            name("GET", "/2020-06-30/functions/f/code-signing-config", ""),
            Some("GetFunctionCodeSigningConfig")
        );
        assert_eq!(
            name("GET", "/2020-06-30/functions//code-signing-config", ""),
            None
        );
        assert_eq!(
            name("GET", "/2020-06-30/functions/a/b/code-signing-config", ""),
            None
        );
    }

    #[test]
    fn the_method_tells_apart_operations_on_one_path() {
        let path = "/2015-03-31/functions/f/aliases/live";
        assert_eq!(name("GET", path, ""), Some("GetAlias"));
        assert_eq!(name("PUT", path, ""), Some("UpdateAlias"));
        assert_eq!(name("DELETE", path, ""), Some("DeleteAlias"));
        assert_eq!(name("PATCH", path, ""), None);
        assert_eq!(
            name("POST", "/2019-09-25/functions/f/event-invoke-config", ""),
            Some("UpdateFunctionEventInvokeConfig")
        );
    }

    #[test]
    fn a_query_discriminator_wins_over_the_bare_path() {
        assert_eq!(name("GET", "/2018-10-31/layers", ""), Some("ListLayers"));
        assert_eq!(
            name("GET", "/2018-10-31/layers", "MaxItems=5"),
            Some("ListLayers")
        );
        assert_eq!(
            name("GET", "/2018-10-31/layers", "Arn=x&find=LayerVersion"),
            Some("GetLayerVersionByArn")
        );
        let path = "/2019-09-30/functions/f/provisioned-concurrency";
        assert_eq!(
            name("GET", path, "Qualifier=1"),
            Some("GetProvisionedConcurrencyConfig")
        );
        assert_eq!(
            name("GET", path, "List=ALL"),
            Some("ListProvisionedConcurrencyConfigs")
        );
    }

    #[test]
    fn a_trailing_slash_is_the_same_path() {
        assert_eq!(
            name("GET", "/2015-03-31/functions/", ""),
            Some("ListFunctions")
        );
        assert_eq!(
            name("GET", "/2016-08-19/account-settings/", ""),
            Some("GetAccountSettings")
        );
    }

    #[test]
    fn paths_outside_the_model_match_nothing() {
        assert_eq!(name("GET", "/", ""), None);
        assert_eq!(name("GET", "/2015-03-31/nothing", ""), None);
        assert_eq!(name("GET", "/2015-03-31/functions/f/nothing", ""), None);
    }

    #[test]
    fn every_row_is_found_by_a_request_built_from_it() {
        for op in OPERATIONS {
            let (pattern, discriminator) = op.pattern();
            let path = pattern
                .split('/')
                .map(|s| if s.starts_with('{') { "x" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            let query = discriminator
                .map(|(k, v)| format!("{k}={v}"))
                .unwrap_or_default();
            assert_eq!(find(op.method, &path, &query), Some(op), "{op:?}");
        }
    }

    #[test]
    fn names_are_unique_and_sorted() {
        for pair in OPERATIONS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    /// The rows of the table under `## Every operation of the Lambda model` in
    /// docs/api.md: (operation, `METHOD uri`, state).
    fn documented_rows() -> Vec<(String, String, String)> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md");
        let text = std::fs::read_to_string(path).expect("docs/api.md");
        let section = text
            .split("\n## Every operation of the Lambda model\n")
            .nth(1)
            .expect("docs/api.md has a section `## Every operation of the Lambda model`");
        let section = section.split("\n## ").next().unwrap_or(section);
        section
            .lines()
            .filter(|l| l.starts_with('|'))
            .skip(2) // header and separator
            .map(|line| {
                let cells: Vec<String> = line
                    .trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().trim_matches('`').to_string())
                    .collect();
                assert!(cells.len() >= 3, "short row in docs/api.md: {line}");
                (cells[0].clone(), cells[1].clone(), cells[2].clone())
            })
            .collect()
    }

    #[test]
    fn docs_list_every_operation_with_its_support_state() {
        let documented = documented_rows();
        let expected: Vec<(String, String, String)> = OPERATIONS
            .iter()
            .map(|op| {
                let state = match op.support {
                    Supported => "supported",
                    NotSupported => "not supported",
                };
                (
                    op.name.to_string(),
                    format!("{} {}", op.method, op.uri),
                    state.to_string(),
                )
            })
            .collect();
        for (i, (doc, want)) in documented.iter().zip(&expected).enumerate() {
            assert_eq!(doc, want, "docs/api.md operations table, row {}", i + 1);
        }
        assert_eq!(
            documented.len(),
            expected.len(),
            "docs/api.md lists {} operations, crates/gateway/src/operations.rs {}",
            documented.len(),
            expected.len()
        );
    }
}
