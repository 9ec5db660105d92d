//! The storage interface used by the layers above.

use tern_core::function::FunctionRecord;
use tern_core::layer::{LayerStatement, LayerVersionRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row already exists (create) or changed underneath (update).
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An API access key and the namespace it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret: String,
    pub namespace: String,
}

/// One line of function output or platform log (START/END/REPORT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub namespace: String,
    pub function: String,
    pub request_id: Option<String>,
    pub ts_ms: i64,
    pub line: String,
}

/// A provisioned-concurrency setting of one function qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedSetting {
    pub namespace: String,
    pub function: String,
    pub qualifier: String,
    pub requested: u32,
    pub last_modified_ms: i64,
}

/// A layer version with its permission statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLayerVersion {
    pub record: LayerVersionRecord,
    pub statements: Vec<LayerStatement>,
    /// Changes whenever the statements do (the policy's `RevisionId`).
    pub policy_revision: String,
}

pub trait Store: Send + Sync {
    /// Inserts a new function; `Conflict` if one of that name exists.
    fn create_function(&self, rec: &FunctionRecord) -> Result<(), StoreError>;
    fn get_function(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<FunctionRecord>, StoreError>;
    /// Replaces a function if its stored `revision_id` still equals `expected_revision`.
    fn update_function(
        &self,
        rec: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<(), StoreError>;
    /// Deletes a function with its concurrency settings; returns whether it existed.
    fn delete_function(&self, namespace: &str, name: &str) -> Result<bool, StoreError>;
    /// Functions sorted by name, strictly after `after`, at most `limit`.
    fn list_functions(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Functions of every namespace, sorted by (namespace, name), strictly after `after`,
    /// at most `limit`.
    fn list_all_functions(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError>;
    /// (function count, total zipped code size) of a namespace.
    fn usage(&self, namespace: &str) -> Result<(u64, u64), StoreError>;

    fn put_access_key(&self, key: &AccessKey) -> Result<(), StoreError>;
    fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, StoreError>;

    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;

    fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError>;
    /// The newest `limit` lines of a function, oldest first; only those of `request_id`
    /// when given.
    fn recent_logs(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError>;
    /// Deletes log lines older than `before_ms`; returns how many.
    fn prune_logs(&self, before_ms: i64) -> Result<usize, StoreError>;

    /// Sets (Some) or removes (None) a function's reserved concurrency.
    fn put_reserved_concurrency(
        &self,
        namespace: &str,
        name: &str,
        reserved: Option<u32>,
    ) -> Result<(), StoreError>;
    /// Every reserved-concurrency setting: (namespace, function, reserved).
    fn list_reserved_concurrency(&self) -> Result<Vec<(String, String, u32)>, StoreError>;

    fn put_provisioned(&self, setting: &ProvisionedSetting) -> Result<(), StoreError>;
    /// Removes a setting; returns whether it existed.
    fn delete_provisioned(
        &self,
        namespace: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError>;
    fn get_provisioned(
        &self,
        namespace: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<ProvisionedSetting>, StoreError>;
    fn list_provisioned(&self) -> Result<Vec<ProvisionedSetting>, StoreError>;

    /// Stores a new version of a layer with the next number for its (namespace, name):
    /// one more than any version ever published there, deleted or not. Returns the
    /// record with its `version` set (the one given is ignored).
    fn publish_layer_version(
        &self,
        rec: &LayerVersionRecord,
        policy_revision: &str,
    ) -> Result<LayerVersionRecord, StoreError>;
    /// A layer version by the account in its ARN.
    fn get_layer_version(
        &self,
        account: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<StoredLayerVersion>, StoreError>;
    /// Versions of a namespace's layers (of one layer when `name` is given), by name,
    /// newest version first.
    fn list_layer_versions(
        &self,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<Vec<LayerVersionRecord>, StoreError>;
    /// Deletes a version and its statements; returns whether it existed.
    fn delete_layer_version(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<bool, StoreError>;
    /// Replaces a version's statements if its policy revision is still `expected`;
    /// `Conflict` if it changed or the version is gone.
    fn put_layer_policy(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
        statements: &[LayerStatement],
        expected: &str,
        new_revision: &str,
    ) -> Result<(), StoreError>;
}
