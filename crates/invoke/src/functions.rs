//! The management API: create, read, list, update and delete functions, and the
//! account settings. Every write goes through here so the registry cache stays true.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine;
use tern_core::function::{
    CodeRef, FunctionRecord, LogSettings, NetworkMode, LATEST, LOG_FORMAT_JSON,
    TRACING_PASS_THROUGH,
};
use tern_core::names::{function_arn, FunctionRef};
use tern_core::wire::{
    AccountLimit, AccountUsage, Concurrency, CreateFunctionRequest, FunctionCodeLocation,
    FunctionConfiguration, GetAccountSettingsResponse, GetFunctionResponse, ListFunctionsResponse,
    TernNetworkInput, UpdateFunctionCodeRequest, UpdateFunctionConfigurationRequest,
};
use tern_core::{limits, names};
use tern_runtime::{FunctionSpec, InstanceManager, SandboxNetwork};
use tern_store::{CodeStore, StoreHandle};

use crate::admission::Admission;
use crate::error::{stored, ServiceError};
use crate::layers::LayerService;
use crate::now_ms;
use crate::registry::Registry;
use crate::validate;

/// The tenant a request acts for: its namespace and the 12-digit account id in ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub namespace: String,
    pub account: String,
}

/// Server-wide settings the services need.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub region: String,
    /// The network mode of a function created without `TernNetwork`.
    pub default_network: NetworkMode,
    /// Whether this server can give sandboxes a network at all (its launcher has
    /// function networking on); without it, only `none` is accepted.
    pub networking: bool,
    /// Whether it can give instances credentials for its own API (`CallTern`).
    pub call_tern: bool,
}

/// How a function's sandboxes reach the network.
struct NetworkChoice {
    mode: NetworkMode,
    call_tern: bool,
    networks: Vec<String>,
}

pub struct FunctionService {
    store: StoreHandle,
    registry: Arc<Registry>,
    code: Arc<CodeStore>,
    instances: Arc<InstanceManager>,
    admission: Arc<Admission>,
    config: ServiceConfig,
    last_revision: AtomicU64,
    layers: LayerService,
}

pub(crate) fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidParameterValue(msg.into())
}

/// The architecture name Lambda uses for this host.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "x86_64",
    }
}

impl FunctionService {
    pub fn new(
        store: StoreHandle,
        registry: Arc<Registry>,
        code: Arc<CodeStore>,
        instances: Arc<InstanceManager>,
        admission: Arc<Admission>,
        config: ServiceConfig,
    ) -> Self {
        FunctionService {
            layers: LayerService::new(store.clone(), code.clone(), config.region.clone()),
            store,
            registry,
            code,
            instances,
            admission,
            config,
            last_revision: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    pub fn layers(&self) -> &LayerService {
        &self.layers
    }

    /// What the instance manager needs to run a function's `$LATEST` or one of its
    /// published versions.
    pub fn spec(&self, rec: &FunctionRecord) -> FunctionSpec {
        FunctionSpec {
            namespace: rec.namespace.clone(),
            name: rec.name.clone(),
            revision: rec.revision,
            version: rec.version.clone(),
            runtime: rec.runtime.clone(),
            handler: rec.handler.clone(),
            memory_mb: rec.memory_mb,
            tmp_mb: rec.tmp_mb,
            env: rec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(Self::logging_env(rec))
                .collect(),
            code_dir: self.code.dir(&rec.code.sha256_hex),
            layer_dirs: self.layers.dirs(&rec.layers),
            snap_start: rec.snap_start,
            network: SandboxNetwork {
                egress: rec.network == NetworkMode::Egress,
                api: rec.call_tern,
                networks: rec.networks.clone(),
            },
        }
    }

    /// The variables through which Lambda's runtimes learn the function's `LoggingConfig`
    /// (after the function's own, so they win).
    fn logging_env(rec: &FunctionRecord) -> Vec<(String, String)> {
        let logging = &rec.logging;
        let mut env = vec![("AWS_LAMBDA_LOG_FORMAT".to_string(), logging.format.clone())];
        if logging.format == LOG_FORMAT_JSON {
            if let Some(level) = &logging.application_level {
                env.push(("AWS_LAMBDA_LOG_LEVEL".to_string(), level.clone()));
            }
        }
        if logging.log_group.is_some() {
            env.push((
                "AWS_LAMBDA_LOG_GROUP_NAME".to_string(),
                logging.group(&rec.name),
            ));
        }
        env
    }

    /// Loads the stored concurrency settings and starts provisioned instances. Call once
    /// at startup.
    pub async fn restore(&self) -> Result<(), ServiceError> {
        let reserved = stored(&self.store, move |store| {
            Ok(store.list_reserved_concurrency()?)
        })
        .await?;
        self.admission.load(reserved);
        self.restore_provisioned().await
    }

    /// Builds ahead, at server start, what cold starts of the stored functions will use
    /// (see [`InstanceManager::prepare`]), for the `max_shapes` (namespace, runtime,
    /// /tmp size) shapes most functions share, so that the first invokes of a restarted
    /// server do not build zygotes and sandboxes on the request path.
    pub async fn prepare_stored(&self, max_shapes: usize) -> Result<(), ServiceError> {
        const PAGE: usize = 500;
        let mut shapes: HashMap<(String, String, u32), (usize, FunctionRecord)> = HashMap::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let from = after.clone();
            let page = stored(&self.store, move |store| {
                let from = from.as_ref().map(|(ns, n)| (ns.as_str(), n.as_str()));
                Ok(store.list_all_functions(from, PAGE)?)
            })
            .await?;
            let Some(last) = page.last() else { break };
            after = Some((last.namespace.clone(), last.name.clone()));
            let full = page.len() == PAGE;
            for rec in page {
                let key = (rec.namespace.clone(), rec.runtime.clone(), rec.tmp_mb);
                let shape = shapes.entry(key).or_insert((0, rec.clone()));
                shape.0 += 1;
                // A function with no environment of its own stands for its shape best:
                // variables that change an interpreter's start rule out starting it ahead.
                if !shape.1.env.is_empty() && rec.env.is_empty() {
                    shape.1 = rec;
                }
            }
            if !full {
                break;
            }
        }
        let mut shapes: Vec<(usize, FunctionRecord)> = shapes.into_values().collect();
        shapes.sort_by_key(|s| std::cmp::Reverse(s.0));
        for (functions, rec) in shapes.into_iter().take(max_shapes) {
            tracing::debug!(namespace = %rec.namespace, runtime = %rec.runtime, functions, "preparing the start-up of stored functions");
            self.instances.prepare(&self.spec(&rec));
        }
        Ok(())
    }

    pub(crate) fn store(&self) -> &StoreHandle {
        &self.store
    }

    pub(crate) fn instances(&self) -> &Arc<InstanceManager> {
        &self.instances
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn code_store(&self) -> &Arc<CodeStore> {
        &self.code
    }

    /// A revision number never used before in this process, so instances of a deleted
    /// and re-created function are never mistaken for the new one.
    fn next_revision(&self) -> u64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut prev = self.last_revision.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self.last_revision.compare_exchange(
                prev,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(p) => prev = p,
            }
        }
    }

    fn arn(&self, caller: &Caller, name: &str) -> String {
        function_arn(&self.config.region, &caller.account, name, None)
    }

    fn configuration(&self, caller: &Caller, rec: &FunctionRecord) -> FunctionConfiguration {
        FunctionConfiguration::from_record(rec, &self.config.region, &caller.account)
    }

    fn check_runtime(&self, runtime: &str) -> Result<(), ServiceError> {
        if self.instances.catalog().get(runtime).is_some() {
            return Ok(());
        }
        Err(invalid(format!(
            "Value '{runtime}' at 'runtime' failed to satisfy constraint: the runtime is not available on this server. Available runtimes: {}",
            self.instances.catalog().ids().join(", ")
        )))
    }

    /// Parses a `FunctionName` and checks it belongs to the caller. Returns the name and
    /// the qualifier, if any.
    pub fn resolve_name(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, Option<String>), ServiceError> {
        let fref = FunctionRef::parse(function_name)
            .map_err(|e| invalid(format!("Invalid value for 'functionName': {e}")))?;
        if let Some(acct) = &fref.account {
            if acct != &caller.account {
                return Err(ServiceError::ResourceNotFound(format!(
                    "Function not found: {function_name}"
                )));
            }
        }
        let qualifier = match (fref.qualifier, qualifier) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(format!(
                    "The derived qualifier from the function name '{a}' does not match the specified qualifier '{b}'."
                )))
            }
            (Some(a), _) => Some(a),
            (None, b) => {
                if let Some(q) = b {
                    if !names::is_valid_qualifier(q) {
                        return Err(invalid(format!(
                            "Invalid value for 'qualifier': '{q}' is not a valid version or alias"
                        )));
                    }
                }
                b.map(str::to_string)
            }
        };
        Ok((fref.name, qualifier))
    }

    /// The current record of a function, for a name and an optional qualifier (an
    /// alias gives its primary version).
    pub async fn lookup(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(Arc<FunctionRecord>, Option<String>), ServiceError> {
        self.lookup_rolled(caller, function_name, qualifier, None)
            .await
    }

    /// As [`FunctionService::lookup`], but an alias with a weighted second version
    /// picks between its two versions by `roll` (uniform in [0, 1)), as an invoke does.
    pub async fn lookup_rolled(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
        roll: Option<f64>,
    ) -> Result<(Arc<FunctionRecord>, Option<String>), ServiceError> {
        let (name, qualifier) = self.resolve_name(caller, function_name, qualifier)?;
        let not_found = || {
            let arn = function_arn(
                &self.config.region,
                &caller.account,
                &name,
                qualifier.as_deref(),
            );
            ServiceError::ResourceNotFound(format!("Function not found: {arn}"))
        };
        match self
            .resolve(&caller.namespace, &name, qualifier.as_deref(), roll)
            .await?
        {
            Some(rec) => Ok((rec, qualifier)),
            None => Err(not_found()),
        }
    }

    /// Decodes, validates and stores a zip given as base64.
    async fn store_zip(&self, zip_b64: &str) -> Result<CodeRef, ServiceError> {
        let stored =
            crate::upload::store_zip(&self.code, zip_b64, "ZipFile", "deployment package").await?;
        Ok(CodeRef {
            sha256_b64: base64::engine::general_purpose::STANDARD.encode(stored.sha256),
            sha256_hex: stored.sha256_hex,
            size: stored.size,
            unzipped_size: stored.unzipped_size,
        })
    }

    fn code_from_request(
        zip_file: &Option<String>,
        s3_bucket: &Option<String>,
        image_uri: &Option<String>,
    ) -> Result<String, ServiceError> {
        if image_uri.is_some() {
            return Err(invalid(
                "Container images (ImageUri) are not supported by tern; upload a .zip package in Code.ZipFile",
            ));
        }
        if s3_bucket.is_some() {
            return Err(invalid(
                "Code from S3 (S3Bucket/S3Key) is not supported by tern; upload the .zip in Code.ZipFile",
            ));
        }
        zip_file
            .clone()
            .ok_or_else(|| invalid("Code.ZipFile is required: tern accepts .zip packages only"))
    }

    fn check_architectures(archs: &Option<Vec<String>>) -> Result<Vec<String>, ServiceError> {
        let host = host_architecture();
        match archs {
            None => Ok(vec![host.to_string()]),
            Some(list) if list.len() == 1 && list[0] == host => Ok(list.clone()),
            Some(list) => Err(invalid(format!(
                "Value '{list:?}' at 'architectures' failed to satisfy constraint: this server runs {host} only"
            ))),
        }
    }

    pub async fn create(
        &self,
        caller: &Caller,
        req: CreateFunctionRequest,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let (name, qualifier) = self.resolve_name(caller, &req.function_name, None)?;
        if qualifier.is_some() {
            return Err(invalid(
                "Invalid value for 'functionName': a qualifier is not allowed when creating a function",
            ));
        }
        if matches!(req.package_type.as_deref(), Some(p) if p != "Zip") {
            return Err(invalid(
                "PackageType Image is not supported by tern; use Zip",
            ));
        }
        let runtime = req
            .runtime
            .clone()
            .ok_or_else(|| invalid("Runtime is required for .zip deployment packages"))?;
        self.check_runtime(&runtime)?;
        let snap_start = match &req.snap_start {
            Some(v) if !v.is_null() => validate::snap_start(v, &runtime)?,
            _ => false,
        };
        let handler = match (&req.handler, runtime.starts_with("provided")) {
            (Some(h), _) => {
                validate::handler(h)?;
                h.clone()
            }
            (None, true) => String::new(),
            (None, false) => {
                return Err(invalid("Handler is required for .zip deployment packages"))
            }
        };
        let memory_mb = req
            .memory_size
            .map(validate::memory_size)
            .transpose()?
            .unwrap_or(limits::MEMORY_DEFAULT_MB);
        let timeout_s = req
            .timeout
            .map(validate::timeout)
            .transpose()?
            .unwrap_or(limits::TIMEOUT_DEFAULT_S);
        let tmp_mb = req
            .ephemeral_storage
            .map(|e| validate::ephemeral_storage(e.size))
            .transpose()?
            .unwrap_or(limits::TMP_DEFAULT_MB);
        let description = req.description.clone().unwrap_or_default();
        validate::description(&description)?;
        let env = req
            .environment
            .as_ref()
            .and_then(|e| e.variables.clone())
            .unwrap_or_default();
        validate::environment(&env)?;
        let architectures = Self::check_architectures(&req.architectures)?;
        let code_extra = [
            req.code.s3_key.clone().map(serde_json::Value::String),
            req.code
                .s3_object_version
                .clone()
                .map(serde_json::Value::String),
            req.code
                .source_kms_key_arn
                .clone()
                .map(serde_json::Value::String),
        ];
        validate::unsupported_members(&[
            ("DeadLetterConfig", req.dead_letter_config.as_ref()),
            ("KMSKeyArn", req.kms_key_arn.as_ref()),
            ("FileSystemConfigs", req.file_system_configs.as_ref()),
            ("ImageConfig", req.image_config.as_ref()),
            ("CodeSigningConfigArn", req.code_signing_config_arn.as_ref()),
            (
                "CapacityProviderConfig",
                req.capacity_provider_config.as_ref(),
            ),
            ("PublishTo", req.publish_to.as_ref()),
            ("DurableConfig", req.durable_config.as_ref()),
            ("TenancyConfig", req.tenancy_config.as_ref()),
            ("S3Key", code_extra[0].as_ref()),
            ("S3ObjectVersion", code_extra[1].as_ref()),
            ("SourceKMSKeyArn", code_extra[2].as_ref()),
        ])?;
        let logging = match &req.logging_config {
            Some(given) => validate::logging_config(&LogSettings::default(), given)?,
            None => LogSettings::default(),
        };
        let tracing_mode = match &req.tracing_config {
            Some(t) => validate::tracing_mode(t)?,
            None => None,
        }
        .unwrap_or_else(|| TRACING_PASS_THROUGH.to_string());
        let network = self
            .network_settings(
                caller,
                req.tern_network.as_ref(),
                req.vpc_config.as_ref(),
                NetworkChoice {
                    mode: self.config.default_network,
                    call_tern: false,
                    networks: Vec::new(),
                },
            )
            .await?;
        let zip =
            Self::code_from_request(&req.code.zip_file, &req.code.s3_bucket, &req.code.image_uri)?;
        // Fail fast on a duplicate before storing the package.
        if self.registry.get(&caller.namespace, &name).await?.is_some() {
            return Err(ServiceError::ResourceConflict(format!(
                "Function already exist: {name}"
            )));
        }
        let layers = self
            .layers
            .resolve(caller, req.layers.as_deref().unwrap_or_default())
            .await?;
        let code = self.store_zip(&zip).await?;
        self.layers
            .check_total_size(code.unzipped_size, &code.sha256_hex, &layers)?;
        let rec = FunctionRecord {
            namespace: caller.namespace.clone(),
            name: name.clone(),
            runtime,
            handler,
            role: req.role.clone().unwrap_or_default(),
            description,
            memory_mb,
            timeout_s,
            tmp_mb,
            env,
            architectures,
            tags: req.tags.clone().unwrap_or_default(),
            code,
            layers,
            logging,
            tracing_mode,
            snap_start,
            network: network.mode,
            call_tern: network.call_tern,
            networks: network.networks,
            version: LATEST.to_string(),
            incarnation: uuid::Uuid::new_v4().to_string(),
            revision_id: uuid::Uuid::new_v4().to_string(),
            revision: self.next_revision(),
            last_modified_ms: now_ms(),
        };
        let to_store = rec.clone();
        stored(&self.store, move |store| {
            store.create_function(&to_store).map_err(|e| match e {
                tern_store::StoreError::Conflict(_) => ServiceError::ResourceConflict(format!(
                    "Function already exist: {}",
                    to_store.name
                )),
                other => other.into(),
            })
        })
        .await?;
        tracing::info!(namespace = %caller.namespace, function = %name, "function created");
        self.registry.put(rec.clone());
        // Its first invoke should find its runtime's zygote and sandboxes ready.
        self.instances.prepare(&self.spec(&rec));
        if req.publish == Some(true) {
            let version = self.publish(&rec, rec.description.clone()).await?;
            return Ok(self.configuration(caller, &version));
        }
        Ok(self.configuration(caller, &rec))
    }

    /// GetFunction; `code_url` turns the code's sha256 (hex) into the URL it can be
    /// downloaded from, which only the HTTP edge knows how to build.
    pub async fn get(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
        code_url: impl FnOnce(&str) -> String,
    ) -> Result<GetFunctionResponse, ServiceError> {
        let (rec, qualifier) = self.lookup(caller, function_name, qualifier).await?;
        Ok(GetFunctionResponse {
            configuration: self.configuration_as_named(caller, &rec, qualifier.as_deref()),
            code: FunctionCodeLocation {
                repository_type: "S3".to_string(),
                location: code_url(&rec.code.sha256_hex),
            },
            tags: rec.tags.clone(),
            concurrency: self
                .admission
                .reserved(&caller.namespace, &rec.name)
                .map(|n| Concurrency {
                    reserved_concurrent_executions: Some(n),
                }),
        })
    }

    pub async fn get_configuration(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let (rec, qualifier) = self.lookup(caller, function_name, qualifier).await?;
        Ok(self.configuration_as_named(caller, &rec, qualifier.as_deref()))
    }

    /// The configuration of the record an alias (or version) resolved to. As on Lambda,
    /// read through an alias its `FunctionArn` names the alias and its `Version` is the
    /// version the alias points at.
    fn configuration_as_named(
        &self,
        caller: &Caller,
        rec: &FunctionRecord,
        qualifier: Option<&str>,
    ) -> FunctionConfiguration {
        let mut config = self.configuration(caller, rec);
        if let Some(alias) = qualifier.filter(|q| *q != rec.version && *q != LATEST) {
            config.function_arn =
                function_arn(&self.config.region, &caller.account, &rec.name, Some(alias));
        }
        config
    }

    /// ListFunctions; with `FunctionVersion=ALL` see
    /// [`FunctionService::list_with_versions`].
    pub async fn list(
        &self,
        caller: &Caller,
        marker: Option<String>,
        max_items: Option<i64>,
        function_version: Option<&str>,
    ) -> Result<ListFunctionsResponse, ServiceError> {
        let limit = validate::max_items(max_items)?;
        match function_version {
            None => {}
            // As on Lambda, at most 50 per page whatever MaxItems says: each function
            // on the page costs a store query for its versions.
            Some("ALL") => {
                let limit = limit.min(limits::LIST_DEFAULT_ITEMS);
                return self.list_with_versions(caller, marker, limit).await;
            }
            Some(other) => {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{other}' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]"
                )))
            }
        }
        let ns = caller.namespace.clone();
        let after = marker.filter(|m| !m.is_empty());
        let mut page = stored(&self.store, move |store| {
            Ok(store.list_functions(&ns, after.as_deref(), limit + 1)?)
        })
        .await?;
        let next_marker = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|r| r.name.clone())
        } else {
            None
        };
        Ok(ListFunctionsResponse {
            functions: page.iter().map(|r| self.configuration(caller, r)).collect(),
            next_marker,
        })
    }

    /// Writes an updated record if nobody changed it meanwhile, then retires the
    /// instances of the old revision.
    async fn commit_update(
        &self,
        caller: &Caller,
        current: &FunctionRecord,
        mut next: FunctionRecord,
    ) -> Result<FunctionRecord, ServiceError> {
        next.revision_id = uuid::Uuid::new_v4().to_string();
        next.revision = self.next_revision();
        next.last_modified_ms = now_ms();
        self.store_update(current, &next).await?;
        if let Some(p) = self
            .instances
            .provisioned_state(&caller.namespace, &next.name, LATEST)
        {
            // Provisioned instances of $LATEST follow the new code and configuration.
            self.instances
                .set_provisioned(&self.spec(&next), p.requested);
        }
        self.instances
            .drain_function(&caller.namespace, &next.name, Some(LATEST))
            .await;
        self.instances.prepare(&self.spec(&next));
        tracing::info!(namespace = %caller.namespace, function = %next.name, "function updated");
        Ok(next)
    }

    fn check_revision(
        current: &FunctionRecord,
        given: &Option<String>,
    ) -> Result<(), ServiceError> {
        match given {
            Some(r) if r != &current.revision_id => Err(ServiceError::PreconditionFailed(
                tern_core::function::STALE_REVISION.to_string(),
            )),
            _ => Ok(()),
        }
    }

    /// Stores `next` if the stored record is still `current`, then caches it.
    async fn store_update(
        &self,
        current: &FunctionRecord,
        next: &FunctionRecord,
    ) -> Result<(), ServiceError> {
        let expected = current.revision_id.clone();
        let to_store = next.clone();
        stored(&self.store, move |store| {
            store
                .update_function(&to_store, &expected)
                .map_err(|e| match e {
                    tern_store::StoreError::Conflict(_) => ServiceError::ResourceConflict(
                        "The operation cannot be performed at this time. An update is in progress for resource: the function changed concurrently; retry".to_string(),
                    ),
                    other => other.into(),
                })
        })
        .await?;
        self.registry.put(next.clone());
        Ok(())
    }

    fn unqualified(qualifier: &Option<String>, op: &str) -> Result<(), ServiceError> {
        match qualifier {
            Some(q) if q != LATEST => {
                Err(invalid(format!("{op} does not accept a qualifier ('{q}')")))
            }
            _ => Ok(()),
        }
    }

    pub async fn update_code(
        &self,
        caller: &Caller,
        function_name: &str,
        req: UpdateFunctionCodeRequest,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let (current, qualifier) = self.lookup(caller, function_name, None).await?;
        Self::unqualified(&qualifier, "UpdateFunctionCode")?;
        Self::check_revision(&current, &req.revision_id)?;
        let architectures = match &req.architectures {
            Some(_) => Self::check_architectures(&req.architectures)?,
            None => current.architectures.clone(),
        };
        let code_extra = [
            req.s3_key.clone().map(serde_json::Value::String),
            req.s3_object_version.clone().map(serde_json::Value::String),
            req.source_kms_key_arn
                .clone()
                .map(serde_json::Value::String),
        ];
        validate::unsupported_members(&[
            ("PublishTo", req.publish_to.as_ref()),
            ("S3Key", code_extra[0].as_ref()),
            ("S3ObjectVersion", code_extra[1].as_ref()),
            ("SourceKMSKeyArn", code_extra[2].as_ref()),
        ])?;
        let zip = Self::code_from_request(&req.zip_file, &req.s3_bucket, &req.image_uri)?;
        let code = self.store_zip(&zip).await?;
        self.layers
            .check_total_size(code.unzipped_size, &code.sha256_hex, &current.layers)?;
        let mut next = (*current).clone();
        next.code = code;
        next.architectures = architectures;
        if req.dry_run == Some(true) {
            return Ok(self.configuration(caller, &next));
        }
        let updated = self.commit_update(caller, &current, next).await?;
        if req.publish == Some(true) {
            let version = self.publish(&updated, updated.description.clone()).await?;
            return Ok(self.configuration(caller, &version));
        }
        Ok(self.configuration(caller, &updated))
    }

    pub async fn update_configuration(
        &self,
        caller: &Caller,
        function_name: &str,
        req: UpdateFunctionConfigurationRequest,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let (current, qualifier) = self.lookup(caller, function_name, None).await?;
        Self::unqualified(&qualifier, "UpdateFunctionConfiguration")?;
        Self::check_revision(&current, &req.revision_id)?;
        validate::unsupported_members(&[
            ("DeadLetterConfig", req.dead_letter_config.as_ref()),
            ("KMSKeyArn", req.kms_key_arn.as_ref()),
            ("FileSystemConfigs", req.file_system_configs.as_ref()),
            ("ImageConfig", req.image_config.as_ref()),
            (
                "CapacityProviderConfig",
                req.capacity_provider_config.as_ref(),
            ),
            ("DurableConfig", req.durable_config.as_ref()),
        ])?;
        let mut next = (*current).clone();
        let network = self
            .network_settings(
                caller,
                req.tern_network.as_ref(),
                req.vpc_config.as_ref(),
                NetworkChoice {
                    mode: current.network,
                    call_tern: current.call_tern,
                    networks: current.networks.clone(),
                },
            )
            .await?;
        (next.network, next.call_tern, next.networks) =
            (network.mode, network.call_tern, network.networks);
        if let Some(given) = &req.logging_config {
            next.logging = validate::logging_config(&current.logging, given)?;
        }
        if let Some(mode) = req
            .tracing_config
            .as_ref()
            .map(validate::tracing_mode)
            .transpose()?
        {
            next.tracing_mode = mode.unwrap_or(next.tracing_mode);
        }
        if let Some(rt) = &req.runtime {
            self.check_runtime(rt)?;
            next.runtime = rt.clone();
        }
        if let Some(h) = &req.handler {
            validate::handler(h)?;
            next.handler = h.clone();
        }
        if let Some(d) = &req.description {
            validate::description(d)?;
            next.description = d.clone();
        }
        if let Some(t) = req.timeout {
            next.timeout_s = validate::timeout(t)?;
        }
        if let Some(m) = req.memory_size {
            next.memory_mb = validate::memory_size(m)?;
        }
        if let Some(e) = req.ephemeral_storage {
            next.tmp_mb = validate::ephemeral_storage(e.size)?;
        }
        if let Some(env) = &req.environment {
            let vars: BTreeMap<String, String> = env.variables.clone().unwrap_or_default();
            validate::environment(&vars)?;
            next.env = vars;
        }
        if let Some(role) = &req.role {
            next.role = role.clone();
        }
        if let Some(arns) = &req.layers {
            let layers = self.layers.resolve(caller, arns).await?;
            self.layers.check_total_size(
                next.code.unzipped_size,
                &next.code.sha256_hex,
                &layers,
            )?;
            next.layers = layers;
        }
        match &req.snap_start {
            Some(v) if !v.is_null() => next.snap_start = validate::snap_start(v, &next.runtime)?,
            // A runtime change must still suit the SnapStart already set.
            _ if next.snap_start && req.runtime.is_some() => {
                validate::snap_start(
                    &serde_json::json!({"ApplyOn": "PublishedVersions"}),
                    &next.runtime,
                )?;
            }
            _ => {}
        }
        let updated = self.commit_update(caller, &current, next).await?;
        Ok(self.configuration(caller, &updated))
    }

    /// The network mode, `CallTern` and private networks that `given` and `vpc` ask
    /// for (each as in `otherwise` where they say nothing), if this server can provide
    /// them and the caller's namespace may use the networks.
    async fn network_settings(
        &self,
        caller: &Caller,
        given: Option<&TernNetworkInput>,
        vpc: Option<&serde_json::Value>,
        otherwise: NetworkChoice,
    ) -> Result<NetworkChoice, ServiceError> {
        let call_tern = given
            .and_then(|g| g.call_tern)
            .unwrap_or(otherwise.call_tern);
        let from_vpc = vpc.map(validate::vpc_config).transpose()?.flatten();
        let from_tern = given.and_then(|g| g.networks.clone());
        if let Some(names) = &from_tern {
            validate::networks_list(names)?;
        }
        let networks =
            match (from_vpc, from_tern) {
                (Some(a), Some(b)) if a != b => return Err(invalid(
                    "VpcConfig and TernNetwork.Networks name different networks; give one of them",
                )),
                (Some(names), _) | (None, Some(names)) => names,
                (None, None) => otherwise.networks,
            };
        if !networks.is_empty() && !self.config.networking {
            return Err(invalid(
                "private networks need function networking, which is off on this server",
            ));
        }
        for name in &networks {
            let owned = name.clone();
            let found = stored(&self.store, move |s| Ok(s.get_network(&owned)?)).await?;
            match found {
                Some(net) if net.admits(&caller.namespace) => {}
                _ => {
                    return Err(invalid(format!(
                        "network {name:?} does not exist, or functions of this namespace may not attach to it"
                    )))
                }
            }
        }
        let mode = match given.and_then(|g| g.mode.as_deref()) {
            None => otherwise.mode,
            Some(name) => NetworkMode::parse(name).ok_or_else(|| {
                invalid(format!(
                    "TernNetwork.Mode {name:?} is not one of {}",
                    NetworkMode::NAMES.join(", ")
                ))
            })?,
        };
        if mode != NetworkMode::None && !self.config.networking && given.is_some() {
            return Err(invalid(format!(
                "TernNetwork.Mode {mode} needs function networking, which is off on this server"
            )));
        }
        if call_tern && !self.config.call_tern && given.is_some() {
            return Err(invalid(
                "TernNetwork.CallTern needs function networking in the sandbox, which is off \
                 on this server",
            ));
        }
        Ok(NetworkChoice {
            mode,
            call_tern,
            networks,
        })
    }

    pub async fn delete(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(), ServiceError> {
        let (rec, qualifier) = self.lookup(caller, function_name, qualifier).await?;
        match qualifier.as_deref() {
            None => {}
            Some(LATEST) => {
                return Err(invalid(
                    "$LATEST version cannot be deleted without deleting the function.",
                ))
            }
            Some(q) => match rec.version_number() {
                Some(n) if rec.version == q => return self.delete_version(caller, &rec, n).await,
                _ => {
                    return Err(invalid(format!(
                        "DeleteFunction deletes a function or one of its versions; '{q}' is an alias (use DeleteAlias)"
                    )))
                }
            },
        }
        let versions = self.version_numbers(&caller.namespace, &rec.name).await?;
        let (ns, name) = (caller.namespace.clone(), rec.name.clone());
        let existed = stored(&self.store, move |store| {
            Ok(store.delete_function(&ns, &name)?)
        })
        .await?;
        self.registry.remove(&caller.namespace, &rec.name);
        self.admission
            .set_reserved(&caller.namespace, &rec.name, None);
        for version in versions.iter().map(String::as_str).chain([LATEST]) {
            let mut spec = self.spec(&rec);
            spec.version = version.to_string();
            self.instances.set_provisioned(&spec, 0);
            self.instances
                .drain_function(&caller.namespace, &rec.name, Some(version))
                .await;
        }
        if !existed {
            return Err(ServiceError::ResourceNotFound(format!(
                "Function not found: {}",
                self.arn(caller, &rec.name)
            )));
        }
        tracing::info!(namespace = %caller.namespace, function = %rec.name, "function deleted");
        Ok(())
    }

    pub async fn account_settings(
        &self,
        caller: &Caller,
    ) -> Result<GetAccountSettingsResponse, ServiceError> {
        let ns = caller.namespace.clone();
        let (count, code_size) = stored(&self.store, move |store| Ok(store.usage(&ns)?)).await?;
        Ok(GetAccountSettingsResponse {
            account_limit: AccountLimit {
                total_code_size: 80_530_636_800,
                code_size_unzipped: limits::UNZIPPED_BYTES,
                code_size_zipped: limits::ZIP_BYTES as u64,
                concurrent_executions: self.admission.account_limit(),
                unreserved_concurrent_executions: self.admission.unreserved(&caller.namespace),
            },
            account_usage: AccountUsage {
                total_code_size: code_size,
                function_count: count,
            },
        })
    }

    pub async fn put_concurrency(
        &self,
        caller: &Caller,
        function_name: &str,
        reserved: i64,
    ) -> Result<Concurrency, ServiceError> {
        let (rec, qualifier) = self.lookup(caller, function_name, None).await?;
        Self::unqualified(&qualifier, "PutFunctionConcurrency")?;
        let limit = self.admission.account_limit();
        let n = u32::try_from(reserved)
            .ok()
            .filter(|n| *n <= limit)
            .ok_or_else(|| {
                invalid(format!(
                    "1 validation error detected: Value '{reserved}' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value between 0 and {limit}"
                ))
            })?;
        let provisioned: u64 = self
            .provisioned_settings(&caller.namespace, &rec.name)
            .await?
            .iter()
            .map(|p| u64::from(p.requested))
            .sum();
        if provisioned > u64::from(n) {
            return Err(invalid(format!(
                "ReservedConcurrentExecutions {n} is less than the function's provisioned concurrency of {provisioned}"
            )));
        }
        self.admission
            .check_reservation(&caller.namespace, &rec.name, n)?;
        let (ns, name) = (caller.namespace.clone(), rec.name.clone());
        stored(&self.store, move |store| {
            Ok(store.put_reserved_concurrency(&ns, &name, Some(n))?)
        })
        .await?;
        self.admission
            .set_reserved(&caller.namespace, &rec.name, Some(n));
        tracing::info!(function = %rec.name, reserved = n, "reserved concurrency set");
        Ok(Concurrency {
            reserved_concurrent_executions: Some(n),
        })
    }

    pub async fn get_concurrency(
        &self,
        caller: &Caller,
        function_name: &str,
    ) -> Result<Concurrency, ServiceError> {
        let (rec, qualifier) = self.lookup(caller, function_name, None).await?;
        Self::unqualified(&qualifier, "GetFunctionConcurrency")?;
        Ok(Concurrency {
            reserved_concurrent_executions: self.admission.reserved(&caller.namespace, &rec.name),
        })
    }

    pub async fn delete_concurrency(
        &self,
        caller: &Caller,
        function_name: &str,
    ) -> Result<(), ServiceError> {
        let (rec, qualifier) = self.lookup(caller, function_name, None).await?;
        Self::unqualified(&qualifier, "DeleteFunctionConcurrency")?;
        let (ns, name) = (caller.namespace.clone(), rec.name.clone());
        stored(&self.store, move |store| {
            Ok(store.put_reserved_concurrency(&ns, &name, None)?)
        })
        .await?;
        self.admission
            .set_reserved(&caller.namespace, &rec.name, None);
        Ok(())
    }

    /// The function named by a `Resource` ARN of the tagging API.
    async fn tagged(
        &self,
        caller: &Caller,
        resource: &str,
    ) -> Result<Arc<FunctionRecord>, ServiceError> {
        if !resource.starts_with("arn:") {
            return Err(invalid(format!(
                "Invalid value for 'Resource': '{resource}' is not a function ARN"
            )));
        }
        let (rec, qualifier) = self.lookup(caller, resource, None).await?;
        if qualifier.is_some() {
            return Err(invalid(
                "Tags belong to the function: give its ARN without a qualifier",
            ));
        }
        Ok(rec)
    }

    pub async fn list_tags(
        &self,
        caller: &Caller,
        resource: &str,
    ) -> Result<BTreeMap<String, String>, ServiceError> {
        Ok(self.tagged(caller, resource).await?.tags.clone())
    }

    /// Adds or replaces tags (`add`) and removes keys (`remove`). Tags are not part of
    /// the configuration: the RevisionId and the instances stay.
    pub async fn change_tags(
        &self,
        caller: &Caller,
        resource: &str,
        add: BTreeMap<String, String>,
        remove: Vec<String>,
    ) -> Result<(), ServiceError> {
        for (k, v) in &add {
            if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
                return Err(invalid(format!(
                    "Invalid tag '{k}': keys are 1-128 characters and may not start with aws:, values at most 256"
                )));
            }
        }
        let current = self.tagged(caller, resource).await?;
        let mut next = (*current).clone();
        next.tags.extend(add);
        for k in &remove {
            next.tags.remove(k);
        }
        if next.tags.len() > 50 {
            return Err(invalid("A function can have at most 50 tags"));
        }
        self.store_update(&current, &next).await
    }
}
