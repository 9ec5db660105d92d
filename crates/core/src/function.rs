//! The stored description of a function: its `$LATEST`, its published versions and
//! its aliases.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The qualifier of the function's mutable, unpublished version.
pub const LATEST: &str = "$LATEST";

/// One function's configuration and code reference, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub namespace: String,
    pub name: String,
    pub runtime: String,
    pub handler: String,
    pub role: String,
    pub description: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub tmp_mb: u32,
    pub env: BTreeMap<String, String>,
    pub architectures: Vec<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub code: CodeRef,
    /// Layer versions in mount order (a later one's files win), as `Layers` gave them.
    #[serde(default)]
    pub layers: Vec<FunctionLayerRef>,
    /// Lambda's `LoggingConfig`.
    #[serde(default)]
    pub logging: LogSettings,
    /// Lambda's `TracingConfig.Mode`: `PassThrough` or `Active` (kept and returned; the
    /// trace header is passed through either way).
    #[serde(default = "default_tracing_mode")]
    pub tracing_mode: String,
    /// Lambda's `SnapStart.ApplyOn` is `PublishedVersions`: instances start from a
    /// post-init template (honoured on `$LATEST` too, as a tern extension).
    #[serde(default)]
    pub snap_start: bool,
    /// How the function's sandboxes reach the network (tern's `TernNetwork`
    /// extension); set from the server's default when the function is created.
    #[serde(default)]
    pub network: NetworkMode,
    /// Whether the function's instances may call tern's API, with credentials of
    /// their own (`TernNetwork.CallTern`).
    #[serde(default)]
    pub call_tern: bool,
    /// The private networks its sandboxes are attached to (`VpcConfig`, or
    /// `TernNetwork.Networks`), by name.
    #[serde(default)]
    pub networks: Vec<String>,
    /// `$LATEST`, or the number of a published version (a frozen copy of `$LATEST`).
    #[serde(default = "latest")]
    pub version: String,
    /// Set when the function is created and kept by its versions: tells this function
    /// from one deleted before it under the same name (empty in records written before
    /// it was kept).
    #[serde(default)]
    pub incarnation: String,
    /// Opaque id that changes on every update (Lambda's `RevisionId`).
    pub revision_id: String,
    /// Increases on every update; instances of older revisions are retired.
    pub revision: u64,
    pub last_modified_ms: i64,
}

/// Content-addressed deployment package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRef {
    /// Lowercase hex sha256 of the zip: the key in the code store.
    pub sha256_hex: String,
    /// Base64 sha256, as Lambda reports `CodeSha256`.
    pub sha256_b64: String,
    pub size: u64,
    /// Size of the extracted files (0 in records written before it was kept).
    #[serde(default)]
    pub unzipped_size: u64,
}

/// A layer version a function uses: what its configuration shows and where its files
/// are in the code store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionLayerRef {
    pub arn: String,
    /// Zipped size, as `Layers[].CodeSize` reports it.
    pub size: u64,
    pub unzipped_size: u64,
    /// Lowercase hex sha256 of the layer's zip: its key in the code store.
    pub sha256_hex: String,
}

/// How a function's sandboxes reach the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Loopback only: the function reaches nothing outside its sandbox.
    #[default]
    None,
    /// Outbound connections, where the server's egress policy lets them go.
    Egress,
}

impl NetworkMode {
    /// The names the API and the CLI take.
    pub const NAMES: &'static [&'static str] = &["none", "egress"];

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::None => "none",
            NetworkMode::Egress => "egress",
        }
    }

    pub fn parse(name: &str) -> Option<NetworkMode> {
        match name {
            "none" => Some(NetworkMode::None),
            "egress" => Some(NetworkMode::Egress),
            _ => None,
        }
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub const TRACING_PASS_THROUGH: &str = "PassThrough";

/// Lambda's message when a `RevisionId` precondition of a function or alias fails.
pub const STALE_REVISION: &str = "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id";

fn latest() -> String {
    LATEST.to_string()
}

impl FunctionRecord {
    /// The published version number, `None` for `$LATEST`.
    pub fn version_number(&self) -> Option<u64> {
        self.version.parse().ok()
    }

    /// Whether `other` has the same code and configuration (what PublishVersion
    /// compares to decide that nothing changed since the last version).
    pub fn same_config(&self, other: &FunctionRecord) -> bool {
        let plain = |r: &FunctionRecord| FunctionRecord {
            version: LATEST.to_string(),
            revision_id: String::new(),
            revision: 0,
            last_modified_ms: 0,
            tags: BTreeMap::new(),
            description: String::new(),
            ..r.clone()
        };
        plain(self) == plain(other)
    }
}

fn default_tracing_mode() -> String {
    TRACING_PASS_THROUGH.to_string()
}

/// A function's log settings (Lambda's `LoggingConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSettings {
    /// `Text` or `JSON`.
    pub format: String,
    /// `TRACE` … `FATAL`; only with the JSON format.
    pub application_level: Option<String>,
    /// `DEBUG`, `INFO` or `WARN`; only with the JSON format.
    pub system_level: Option<String>,
    /// A log group other than `/aws/lambda/<name>`.
    pub log_group: Option<String>,
}

pub const LOG_FORMAT_TEXT: &str = "Text";
pub const LOG_FORMAT_JSON: &str = "JSON";
pub const APPLICATION_LOG_LEVELS: &[&str] = &["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
pub const SYSTEM_LOG_LEVELS: &[&str] = &["DEBUG", "INFO", "WARN"];

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LOG_FORMAT_TEXT.to_string(),
            application_level: None,
            system_level: None,
            log_group: None,
        }
    }
}

impl LogSettings {
    pub fn is_json(&self) -> bool {
        self.format == LOG_FORMAT_JSON
    }

    /// The log group a function's logs belong to.
    pub fn group(&self, function: &str) -> String {
        self.log_group
            .clone()
            .unwrap_or_else(|| format!("/aws/lambda/{function}"))
    }
}

/// An alias: a name that points at a published version (or `$LATEST`), with an
/// optional second version that gets a share of the traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub namespace: String,
    pub function: String,
    pub name: String,
    pub function_version: String,
    pub description: String,
    /// `RoutingConfig.AdditionalVersionWeights`: at most one version, its share in
    /// [0, 1].
    #[serde(default)]
    pub additional_weights: BTreeMap<String, f64>,
    pub revision_id: String,
    /// Versions the alias pointed at before, oldest first (what `tern rollback` goes
    /// back to).
    #[serde(default)]
    pub history: Vec<String>,
    pub last_modified_ms: i64,
}

impl AliasRecord {
    /// Versions this alias routes to.
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.function_version.as_str())
            .chain(self.additional_weights.keys().map(String::as_str))
    }

    /// The version a request goes to, given `roll` uniform in [0, 1).
    pub fn pick(&self, roll: f64) -> &str {
        let mut acc = 0.0;
        for (version, weight) in &self.additional_weights {
            acc += weight;
            if roll < acc {
                return version;
            }
        }
        &self.function_version
    }
}
