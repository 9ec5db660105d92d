//! The stored description of a function (`$LATEST` until versions exist).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The only qualifier that exists until versions land.
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
