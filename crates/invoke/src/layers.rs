//! Lambda layers: publishing, reading, listing and deleting layer versions, their
//! permission policies, and resolving a function's `Layers` into the stored layers its
//! instances mount at `/opt`.
//!
//! Layer zips go into the same content-addressed code store as function code (and
//! through the same safe extraction); their metadata goes through the [`Store`].

use std::sync::Arc;

use base64::Engine;
use tern_core::function::FunctionLayerRef;
use tern_core::layer::{
    self, grants, layer_arn, layer_version_arn, normalize_principal, parse_layer_name,
    policy_document, statement_json, AddLayerVersionPermissionRequest,
    AddLayerVersionPermissionResponse, GetLayerVersionPolicyResponse, LayerStatement,
    LayerVersionRecord, LayerVersionRef, LayerVersionResponse, LayerVersionsListItem,
    LayersListItem, ListLayerVersionsResponse, ListLayersResponse, PublishLayerVersionRequest,
    GET_LAYER_VERSION_ACTION, LIST_LAYERS_MAX_ITEMS, MAX_LAYERS_PER_FUNCTION,
};
use tern_core::limits;
use tern_store::{CodeStore, StoreError, StoreHandle, StoredLayerVersion};

use crate::error::{stored, ServiceError};
use crate::functions::Caller;
use crate::now_ms;

/// Lambda's answer for a layer version that does not exist (or that the caller may not
/// see).
/// Turns a layer zip's sha256 (hex) into the `Content.Location` a client downloads.
pub type Location<'a> = dyn Fn(&str) -> String + Sync + 'a;

const NOT_FOUND: &str = "The resource you requested does not exist.";
const LICENSE_MAX: usize = 512;
const COMPATIBLE_RUNTIMES_MAX: usize = 15;
const ARCHITECTURES: &[&str] = &["x86_64", "arm64"];

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidParameterValue(msg.into())
}

fn not_found() -> ServiceError {
    ServiceError::ResourceNotFound(NOT_FOUND.to_string())
}

/// Filters of ListLayers and ListLayerVersions, and their paging.
#[derive(Debug, Default, Clone)]
pub struct LayerListQuery {
    pub compatible_runtime: Option<String>,
    pub compatible_architecture: Option<String>,
    pub marker: Option<String>,
    pub max_items: Option<i64>,
}

impl LayerListQuery {
    fn matches(&self, rec: &LayerVersionRecord) -> bool {
        self.compatible_runtime
            .as_ref()
            .is_none_or(|r| rec.compatible_runtimes.contains(r))
            && self
                .compatible_architecture
                .as_ref()
                .is_none_or(|a| rec.compatible_architectures.contains(a))
    }

    fn limit(&self) -> Result<usize, ServiceError> {
        match self.max_items {
            None => Ok(LIST_LAYERS_MAX_ITEMS),
            Some(n) if (1..=LIST_LAYERS_MAX_ITEMS as i64).contains(&n) => Ok(n as usize),
            Some(n) => Err(invalid(format!(
                "1 validation error detected: Value '{n}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and {LIST_LAYERS_MAX_ITEMS}"
            ))),
        }
    }

    fn check(&self) -> Result<(), ServiceError> {
        if let Some(a) = &self.compatible_architecture {
            check_architecture(a, "compatibleArchitecture")?;
        }
        Ok(())
    }
}

fn check_architecture(a: &str, field: &str) -> Result<(), ServiceError> {
    if ARCHITECTURES.contains(&a) {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{a}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [x86_64, arm64]"
        )))
    }
}

fn check_runtime_name(r: &str) -> Result<(), ServiceError> {
    let ok = !r.is_empty()
        && r.len() <= 64
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "1 validation error detected: Value '{r}' at 'compatibleRuntimes' failed to satisfy constraint: Member must be a runtime identifier such as python3.12 or nodejs20.x"
        )))
    }
}

/// The layer API and the resolution of a function's `Layers`.
pub struct LayerService {
    store: StoreHandle,
    code: Arc<CodeStore>,
    region: String,
}

impl LayerService {
    pub fn new(store: StoreHandle, code: Arc<CodeStore>, region: String) -> Self {
        LayerService {
            store,
            code,
            region,
        }
    }

    /// The bare name of a `LayerName` the caller manages (its own layers only).
    fn own_name(caller: &Caller, layer_name: &str) -> Result<String, ServiceError> {
        let (account, name) = parse_layer_name(layer_name).map_err(|e| invalid(e.to_string()))?;
        match account {
            Some(a) if a != caller.account => Err(ServiceError::AccessDenied(format!(
                "Account {} may not manage the layers of account {a}",
                caller.account
            ))),
            _ => Ok(name),
        }
    }

    /// A version the caller may read: its own, or one whose policy grants its account.
    async fn readable(
        &self,
        caller: &Caller,
        account: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<StoredLayerVersion>, ServiceError> {
        let (acct, n) = (account.to_string(), name.to_string());
        let found = stored(&self.store, move |store| {
            Ok(store.get_layer_version(&acct, &n, version)?)
        })
        .await?;
        match found {
            Some(v) if v.record.account == caller.account => Ok(Some(v)),
            Some(v) if grants(&v.statements, &caller.account) => Ok(Some(v)),
            Some(_) => Err(ServiceError::AccessDenied(format!(
                "User: arn:aws:iam::{}:root is not authorized to perform: lambda:GetLayerVersion on resource: {} because no resource-based policy allows the lambda:GetLayerVersion action",
                caller.account,
                layer_version_arn(&self.region, account, name, version)
            ))),
            None => Ok(None),
        }
    }

    fn response(&self, rec: &LayerVersionRecord, location: &Location<'_>) -> LayerVersionResponse {
        LayerVersionResponse::from_record(rec, &self.region, location(&rec.sha256_hex))
    }

    /// PublishLayerVersion. `location` turns a zip's sha256 into `Content.Location`.
    pub async fn publish(
        &self,
        caller: &Caller,
        layer_name: &str,
        req: PublishLayerVersionRequest,
        location: &Location<'_>,
    ) -> Result<LayerVersionResponse, ServiceError> {
        let name = Self::own_name(caller, layer_name)?;
        let description = req.description.unwrap_or_default();
        if description.chars().count() > limits::DESCRIPTION_MAX {
            return Err(invalid(format!(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to {}",
                limits::DESCRIPTION_MAX
            )));
        }
        if req
            .license_info
            .as_ref()
            .is_some_and(|l| l.chars().count() > LICENSE_MAX)
        {
            return Err(invalid(format!(
                "1 validation error detected: Value at 'licenseInfo' failed to satisfy constraint: Member must have length less than or equal to {LICENSE_MAX}"
            )));
        }
        let runtimes = req.compatible_runtimes.unwrap_or_default();
        if runtimes.len() > COMPATIBLE_RUNTIMES_MAX {
            return Err(invalid(format!(
                "1 validation error detected: Value at 'compatibleRuntimes' failed to satisfy constraint: Member must have length less than or equal to {COMPATIBLE_RUNTIMES_MAX}"
            )));
        }
        runtimes.iter().try_for_each(|r| check_runtime_name(r))?;
        let architectures = req.compatible_architectures.unwrap_or_default();
        if architectures.len() > ARCHITECTURES.len() {
            return Err(invalid(
                "1 validation error detected: Value at 'compatibleArchitectures' failed to satisfy constraint: Member must have length less than or equal to 2",
            ));
        }
        architectures
            .iter()
            .try_for_each(|a| check_architecture(a, "compatibleArchitectures"))?;
        if req.content.s3_bucket.is_some() || req.content.s3_key.is_some() {
            return Err(invalid(
                "Layer content from S3 (S3Bucket/S3Key) is not supported by tern; upload the .zip in Content.ZipFile",
            ));
        }
        let zip_b64 = req
            .content
            .zip_file
            .ok_or_else(|| invalid("Content.ZipFile is required: tern accepts .zip layers only"))?;
        let code =
            crate::upload::store_zip(&self.code, &zip_b64, "Content.ZipFile", "layer").await?;
        let rec = LayerVersionRecord {
            namespace: caller.namespace.clone(),
            account: caller.account.clone(),
            name,
            version: 0,
            description,
            license_info: req.license_info,
            compatible_runtimes: runtimes,
            compatible_architectures: architectures,
            sha256_b64: base64::engine::general_purpose::STANDARD.encode(code.sha256),
            sha256_hex: code.sha256_hex,
            size: code.size,
            unzipped_size: code.unzipped_size,
            created_ms: now_ms(),
        };
        let published = stored(&self.store, move |store| {
            Ok(store.publish_layer_version(&rec, &uuid::Uuid::new_v4().to_string())?)
        })
        .await?;
        tracing::info!(namespace = %caller.namespace, layer = %published.name, version = published.version, "layer version published");
        Ok(self.response(&published, location))
    }

    /// GetLayerVersion: `LayerName` may be a layer ARN of another account that granted
    /// the caller's.
    pub async fn get(
        &self,
        caller: &Caller,
        layer_name: &str,
        version: u64,
        location: &Location<'_>,
    ) -> Result<LayerVersionResponse, ServiceError> {
        let (account, name) = parse_layer_name(layer_name).map_err(|e| invalid(e.to_string()))?;
        let account = account.unwrap_or_else(|| caller.account.clone());
        let found = self.readable(caller, &account, &name, version).await?;
        found
            .map(|v| self.response(&v.record, location))
            .ok_or_else(not_found)
    }

    /// GetLayerVersionByArn.
    pub async fn get_by_arn(
        &self,
        caller: &Caller,
        arn: &str,
        location: &Location<'_>,
    ) -> Result<LayerVersionResponse, ServiceError> {
        let r = LayerVersionRef::parse(arn).map_err(|e| invalid(e.to_string()))?;
        let found = self
            .readable(caller, &r.account, &r.name, r.version)
            .await?;
        found
            .map(|v| self.response(&v.record, location))
            .ok_or_else(not_found)
    }

    async fn versions(
        &self,
        caller: &Caller,
        name: Option<String>,
    ) -> Result<Vec<LayerVersionRecord>, ServiceError> {
        let ns = caller.namespace.clone();
        stored(&self.store, move |store| {
            Ok(store.list_layer_versions(&ns, name.as_deref())?)
        })
        .await
    }

    /// ListLayerVersions: newest first; the marker is the last version returned.
    pub async fn list_versions(
        &self,
        caller: &Caller,
        layer_name: &str,
        q: LayerListQuery,
    ) -> Result<ListLayerVersionsResponse, ServiceError> {
        q.check()?;
        let limit = q.limit()?;
        let name = Self::own_name(caller, layer_name)?;
        let after: Option<u64> = match q.marker.as_deref().filter(|m| !m.is_empty()) {
            None => None,
            Some(m) => Some(
                m.parse()
                    .map_err(|_| invalid(format!("Invalid value for 'Marker': '{m}'")))?,
            ),
        };
        let mut page: Vec<LayerVersionRecord> = self
            .versions(caller, Some(name))
            .await?
            .into_iter()
            .filter(|r| after.is_none_or(|a| r.version < a) && q.matches(r))
            .take(limit + 1)
            .collect();
        let next_marker = (page.len() > limit).then(|| {
            page.truncate(limit);
            page.last().map(|r| r.version.to_string())
        });
        Ok(ListLayerVersionsResponse {
            layer_versions: page
                .iter()
                .map(|r| LayerVersionsListItem::from_record(r, &self.region))
                .collect(),
            next_marker: next_marker.flatten(),
        })
    }

    /// ListLayers: each layer with its newest version that matches the filters; the
    /// marker is the last layer name returned.
    pub async fn list_layers(
        &self,
        caller: &Caller,
        q: LayerListQuery,
    ) -> Result<ListLayersResponse, ServiceError> {
        q.check()?;
        let limit = q.limit()?;
        let after = q.marker.clone().filter(|m| !m.is_empty());
        let mut layers: Vec<LayersListItem> = Vec::new();
        for rec in self.versions(caller, None).await? {
            if after
                .as_ref()
                .is_some_and(|a| rec.name.as_str() <= a.as_str())
                || !q.matches(&rec)
            {
                continue;
            }
            // Versions come newest first per name: the first match is the latest.
            if layers.last().is_some_and(|l| l.layer_name == rec.name) {
                continue;
            }
            if layers.len() > limit {
                break;
            }
            layers.push(LayersListItem {
                layer_name: rec.name.clone(),
                layer_arn: layer_arn(&self.region, &rec.account, &rec.name),
                latest_matching_version: LayerVersionsListItem::from_record(&rec, &self.region),
            });
        }
        let next_marker = (layers.len() > limit).then(|| {
            layers.truncate(limit);
            layers.last().map(|l| l.layer_name.clone())
        });
        Ok(ListLayersResponse {
            layers,
            next_marker: next_marker.flatten(),
        })
    }

    /// DeleteLayerVersion: deleting a version that does not exist succeeds, as on
    /// Lambda. Functions that use it keep their copy (the code store is not pruned).
    pub async fn delete(
        &self,
        caller: &Caller,
        layer_name: &str,
        version: u64,
    ) -> Result<(), ServiceError> {
        let name = Self::own_name(caller, layer_name)?;
        let ns = caller.namespace.clone();
        let existed = stored(&self.store, move |store| {
            Ok(store.delete_layer_version(&ns, &name, version)?)
        })
        .await?;
        if existed {
            tracing::info!(namespace = %caller.namespace, layer = %layer_name, version, "layer version deleted");
        }
        Ok(())
    }

    /// The caller's own version with its policy, or `ResourceNotFound`.
    async fn own_version(
        &self,
        caller: &Caller,
        layer_name: &str,
        version: u64,
    ) -> Result<StoredLayerVersion, ServiceError> {
        let name = Self::own_name(caller, layer_name)?;
        let account = caller.account.clone();
        stored(&self.store, move |store| {
            Ok(store.get_layer_version(&account, &name, version)?)
        })
        .await?
        .ok_or_else(not_found)
    }

    fn check_policy_revision(
        v: &StoredLayerVersion,
        given: Option<&str>,
    ) -> Result<(), ServiceError> {
        match given {
            Some(r) if r != v.policy_revision => Err(ServiceError::PreconditionFailed(
                "The Revision Id provided does not match the latest Revision Id. Call the GetLayerVersionPolicy API to retrieve the latest Revision Id".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Replaces the statements of `v`; a concurrent change is a conflict.
    async fn write_policy(
        &self,
        v: &StoredLayerVersion,
        statements: Vec<LayerStatement>,
    ) -> Result<String, ServiceError> {
        let rec = v.record.clone();
        let expected = v.policy_revision.clone();
        let revision = uuid::Uuid::new_v4().to_string();
        let new_revision = revision.clone();
        stored(&self.store, move |store| {
            store
                .put_layer_policy(
                    &rec.namespace,
                    &rec.name,
                    rec.version,
                    &statements,
                    &expected,
                    &new_revision,
                )
                .map_err(|e| match e {
                    StoreError::Conflict(m) => ServiceError::ResourceConflict(m),
                    other => other.into(),
                })
        })
        .await?;
        Ok(revision)
    }

    /// AddLayerVersionPermission.
    pub async fn add_permission(
        &self,
        caller: &Caller,
        layer_name: &str,
        version: u64,
        revision_id: Option<&str>,
        req: AddLayerVersionPermissionRequest,
    ) -> Result<AddLayerVersionPermissionResponse, ServiceError> {
        let sid_ok = !req.statement_id.is_empty()
            && req.statement_id.len() <= 100
            && req
                .statement_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !sid_ok {
            return Err(invalid(format!(
                "1 validation error detected: Value '{}' at 'statementId' failed to satisfy constraint: Member must satisfy regular expression pattern: ([a-zA-Z0-9-_]+)",
                req.statement_id
            )));
        }
        if req.action != GET_LAYER_VERSION_ACTION {
            return Err(invalid(format!(
                "1 validation error detected: Value '{}' at 'action' failed to satisfy constraint: Member must satisfy regular expression pattern: lambda:GetLayerVersion",
                req.action
            )));
        }
        let principal = normalize_principal(&req.principal).ok_or_else(|| {
            invalid(format!(
                "1 validation error detected: Value '{}' at 'principal' failed to satisfy constraint: Member must satisfy regular expression pattern: \\d{{12}}|\\*|arn:(aws[a-zA-Z-]*):iam::\\d{{12}}:root",
                req.principal
            ))
        })?;
        if req.organization_id.is_some() {
            return Err(invalid(
                "OrganizationId is not supported by tern, which has no organizations; grant an account id or *",
            ));
        }
        let v = self.own_version(caller, layer_name, version).await?;
        Self::check_policy_revision(&v, revision_id)?;
        if v.statements
            .iter()
            .any(|s| s.statement_id == req.statement_id)
        {
            return Err(ServiceError::ResourceConflict(format!(
                "The statement id ({}) provided already exists. Please provide a new statement id, or remove the existing statement.",
                req.statement_id
            )));
        }
        let statement = LayerStatement {
            statement_id: req.statement_id,
            action: req.action,
            principal,
        };
        let mut statements = v.statements.clone();
        statements.push(statement.clone());
        let revision_id = self.write_policy(&v, statements).await?;
        let resource = layer_version_arn(&self.region, &v.record.account, &v.record.name, version);
        Ok(AddLayerVersionPermissionResponse {
            statement: statement_json(&statement, &resource).to_string(),
            revision_id,
        })
    }

    /// GetLayerVersionPolicy.
    pub async fn get_policy(
        &self,
        caller: &Caller,
        layer_name: &str,
        version: u64,
    ) -> Result<GetLayerVersionPolicyResponse, ServiceError> {
        let v = self.own_version(caller, layer_name, version).await?;
        if v.statements.is_empty() {
            return Err(ServiceError::ResourceNotFound(
                "No policy is associated with the given resource.".into(),
            ));
        }
        Ok(GetLayerVersionPolicyResponse {
            policy: policy_document(&v.statements, &self.region, &v.record).to_string(),
            revision_id: v.policy_revision,
        })
    }

    /// RemoveLayerVersionPermission.
    pub async fn remove_permission(
        &self,
        caller: &Caller,
        layer_name: &str,
        version: u64,
        statement_id: &str,
        revision_id: Option<&str>,
    ) -> Result<(), ServiceError> {
        let v = self.own_version(caller, layer_name, version).await?;
        Self::check_policy_revision(&v, revision_id)?;
        let statements: Vec<LayerStatement> = v
            .statements
            .iter()
            .filter(|s| s.statement_id != statement_id)
            .cloned()
            .collect();
        if statements.len() == v.statements.len() {
            return Err(ServiceError::ResourceNotFound(format!(
                "Statement {statement_id} is not found in resource policy."
            )));
        }
        self.write_policy(&v, statements).await?;
        Ok(())
    }

    /// Resolves a function's `Layers`: at most five valid layer version ARNs, each the
    /// caller's own or granted to it, no layer twice.
    pub async fn resolve(
        &self,
        caller: &Caller,
        arns: &[String],
    ) -> Result<Vec<FunctionLayerRef>, ServiceError> {
        if arns.len() > MAX_LAYERS_PER_FUNCTION {
            return Err(invalid(format!(
                "Cannot reference more than {MAX_LAYERS_PER_FUNCTION} layers."
            )));
        }
        let mut out: Vec<FunctionLayerRef> = Vec::with_capacity(arns.len());
        let mut seen: Vec<(String, String)> = Vec::new();
        for arn in arns {
            let r = LayerVersionRef::parse(arn)
                .map_err(|e| invalid(format!("Invalid value for 'Layers': {e}")))?;
            let layer = (r.account.clone(), r.name.clone());
            if seen.contains(&layer) {
                return Err(invalid(format!(
                    "Two different versions of the same layer are not allowed to be referenced in the same function. {} is referenced more than once.",
                    layer::layer_arn(&r.region, &r.account, &r.name)
                )));
            }
            seen.push(layer);
            let v = self
                .readable(caller, &r.account, &r.name, r.version)
                .await?
                .ok_or_else(|| invalid(format!("Layer version {arn} does not exist.")))?;
            out.push(FunctionLayerRef {
                arn: layer_version_arn(&self.region, &r.account, &r.name, r.version),
                size: v.record.size,
                unzipped_size: v.record.unzipped_size,
                sha256_hex: v.record.sha256_hex,
            });
        }
        Ok(out)
    }

    /// Lambda's cap on the unzipped size of a function's code plus its layers.
    /// `code_unzipped` is the code's extracted size (0 when unknown: then it is
    /// measured from `code_sha256_hex`'s directory).
    pub fn check_total_size(
        &self,
        code_unzipped: u64,
        code_sha256_hex: &str,
        layers: &[FunctionLayerRef],
    ) -> Result<(), ServiceError> {
        if layers.is_empty() {
            return Ok(());
        }
        let code = if code_unzipped > 0 {
            code_unzipped
        } else {
            tern_store::code::tree_size(&self.code.dir(code_sha256_hex)).unwrap_or(0)
        };
        let total = layers
            .iter()
            .fold(code, |t, l| t.saturating_add(l.unzipped_size));
        if total > limits::UNZIPPED_BYTES {
            return Err(invalid(format!(
                "Function code combined with layers exceeds the maximum allowed size of {} bytes. The actual size is {total} bytes.",
                limits::UNZIPPED_BYTES
            )));
        }
        Ok(())
    }

    /// Host directories of a function's layers, in order, for its instances.
    pub fn dirs(&self, layers: &[FunctionLayerRef]) -> Vec<std::path::PathBuf> {
        layers
            .iter()
            .map(|l| self.code.dir(&l.sha256_hex))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::{PackageLimits, SqliteStore};

    const OWN: &str = "000000000000";
    const OTHER: &str = "111111111111";

    fn caller(account: &str) -> Caller {
        Caller {
            namespace: if account == OWN { "default" } else { "other" }.into(),
            account: account.into(),
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: StoreHandle,
        layers: LayerService,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StoreHandle::new(
            Arc::new(SqliteStore::open(&dir.path().join("db")).expect("store")),
            1,
        )
        .expect("store handle");
        let code = Arc::new(
            CodeStore::open(&dir.path().join("code"), PackageLimits::default()).expect("code"),
        );
        let layers = LayerService::new(store.clone(), code, "us-east-1".into());
        Fixture {
            _dir: dir,
            store,
            layers,
        }
    }

    /// Stores a version of `name` owned by `account`, `unzipped` bytes big; its ARN.
    fn publish(f: &Fixture, account: &str, name: &str, unzipped: u64) -> String {
        let c = caller(account);
        let rec = LayerVersionRecord {
            namespace: c.namespace,
            account: account.into(),
            name: name.into(),
            version: 0,
            description: String::new(),
            license_info: None,
            compatible_runtimes: vec![],
            compatible_architectures: vec![],
            sha256_hex: "ab".into(),
            sha256_b64: "q=".into(),
            size: 10,
            unzipped_size: unzipped,
            created_ms: 0,
        };
        let v = f
            .store
            .blocking()
            .publish_layer_version(&rec, "r0")
            .expect("publish");
        layer_version_arn("us-east-1", account, name, v.version)
    }

    fn message(e: ServiceError) -> String {
        e.to_string()
    }

    #[tokio::test]
    async fn resolve_keeps_order_and_sizes_of_own_layers() {
        let f = fixture();
        let (a, b) = (publish(&f, OWN, "a", 1), publish(&f, OWN, "b", 2));
        let got = f
            .layers
            .resolve(&caller(OWN), &[b.clone(), a.clone()])
            .await
            .expect("resolve");
        let arns: Vec<&str> = got.iter().map(|l| l.arn.as_str()).collect();
        assert_eq!(arns, [b.as_str(), a.as_str()]);
        assert_eq!(got[0].unzipped_size, 2);
    }

    #[tokio::test]
    async fn resolve_refuses_six_layers_bad_or_missing_arns_and_a_layer_twice() {
        let f = fixture();
        let arns: Vec<String> = (0..6)
            .map(|i| publish(&f, OWN, &format!("l{i}"), 1))
            .collect();
        let e = f
            .layers
            .resolve(&caller(OWN), &arns)
            .await
            .expect_err("six");
        assert_eq!(message(e), "Cannot reference more than 5 layers.");
        let e = f
            .layers
            .resolve(&caller(OWN), &["mylayer:1".into()])
            .await
            .expect_err("malformed");
        assert!(
            matches!(&e, ServiceError::InvalidParameterValue(m) if m.contains("'mylayer:1'")),
            "{e}"
        );
        let missing = layer_version_arn("us-east-1", OWN, "l0", 9);
        let e = f
            .layers
            .resolve(&caller(OWN), std::slice::from_ref(&missing))
            .await
            .expect_err("missing");
        assert_eq!(
            message(e),
            format!("Layer version {missing} does not exist.")
        );
        let v2 = publish(&f, OWN, "l0", 1);
        let e = f
            .layers
            .resolve(&caller(OWN), &[arns[0].clone(), v2])
            .await
            .expect_err("twice");
        assert!(message(e).contains("Two different versions of the same layer"));
    }

    #[tokio::test]
    async fn another_accounts_layer_needs_a_grant_to_the_callers_account_or_everyone() {
        let f = fixture();
        let theirs = publish(&f, OTHER, "shared", 1);
        let e = f
            .layers
            .resolve(&caller(OWN), std::slice::from_ref(&theirs))
            .await
            .expect_err("no grant");
        assert!(matches!(e, ServiceError::AccessDenied(_)), "{e}");
        let grant = |principal: &str| LayerStatement {
            statement_id: "s".into(),
            action: GET_LAYER_VERSION_ACTION.into(),
            principal: principal.into(),
        };
        f.store
            .blocking()
            .put_layer_policy("other", "shared", 1, &[grant("222222222222")], "r0", "r1")
            .expect("policy");
        assert!(f
            .layers
            .resolve(&caller(OWN), std::slice::from_ref(&theirs))
            .await
            .is_err());
        f.store
            .blocking()
            .put_layer_policy("other", "shared", 1, &[grant(OWN)], "r1", "r2")
            .expect("policy");
        assert_eq!(
            f.layers
                .resolve(&caller(OWN), std::slice::from_ref(&theirs))
                .await
                .expect("granted")
                .len(),
            1
        );
        f.store
            .blocking()
            .put_layer_policy("other", "shared", 1, &[grant("*")], "r2", "r3")
            .expect("policy");
        let location = |sha: &str| format!("loc/{sha}");
        let got = f
            .layers
            .get_by_arn(&caller(OWN), &theirs, &location)
            .await
            .expect("readable");
        assert_eq!(got.layer_version_arn, theirs);
        // Granted use is not management: the owner's name space stays the owner's.
        let e = f
            .layers
            .delete(&caller(OWN), &layer_arn("us-east-1", OTHER, "shared"), 1)
            .await
            .expect_err("not theirs to delete");
        assert!(matches!(e, ServiceError::AccessDenied(_)), "{e}");
    }

    #[test]
    fn code_plus_layers_is_capped_at_250_mb_with_lambdas_message() {
        let f = fixture();
        let layer = |unzipped_size| FunctionLayerRef {
            arn: "arn".into(),
            size: 1,
            unzipped_size,
            sha256_hex: "ab".into(),
        };
        let cap = limits::UNZIPPED_BYTES;
        assert!(f
            .layers
            .check_total_size(cap - 10, "x", &[layer(10)])
            .is_ok());
        let e = f
            .layers
            .check_total_size(cap - 10, "x", &[layer(5), layer(6)])
            .expect_err("over");
        assert_eq!(
            message(e),
            format!(
                "Function code combined with layers exceeds the maximum allowed size of 262144000 bytes. The actual size is {} bytes.",
                cap + 1
            )
        );
        assert!(
            f.layers.check_total_size(cap, "x", &[]).is_ok(),
            "no layers: nothing to add"
        );
    }

    #[test]
    fn list_queries_check_max_items_and_architectures() {
        let q = |max_items, arch: Option<&str>| LayerListQuery {
            max_items,
            compatible_architecture: arch.map(str::to_string),
            ..Default::default()
        };
        assert_eq!(q(None, None).limit().expect("default"), 50);
        assert!(q(Some(0), None).limit().is_err());
        assert!(q(Some(51), None).limit().is_err());
        assert!(q(None, Some("arm64")).check().is_ok());
        assert!(q(None, Some("sparc")).check().is_err());
    }
}
