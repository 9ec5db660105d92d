//! Published versions: PublishVersion (also `Publish: true` on create and code
//! updates), ListVersionsByFunction, DeleteFunction of a version, and the one place a
//! qualifier (`$LATEST`, a version number or an alias) becomes the record that runs.

use std::sync::Arc;

use tern_core::function::{FunctionRecord, LATEST};
use tern_core::limits;
use tern_core::wire::{
    FunctionConfiguration, ListFunctionsResponse, ListVersionsByFunctionResponse,
    PublishVersionRequest,
};

use crate::error::{stored, ServiceError};
use crate::functions::{invalid, Caller, FunctionService};
use crate::{now_ms, validate};

/// How many times PublishVersion without a RevisionId reads `$LATEST` again after an
/// update raced it, before it answers 409.
const PUBLISH_RETRIES: usize = 5;

impl FunctionService {
    /// The record a qualifier names (see [`crate::registry::Registry::resolve`]).
    pub async fn resolve(
        &self,
        namespace: &str,
        name: &str,
        qualifier: Option<&str>,
        roll: Option<f64>,
    ) -> Result<Option<Arc<FunctionRecord>>, ServiceError> {
        self.registry()
            .resolve(namespace, name, qualifier, roll)
            .await
    }

    /// Publishes `$LATEST` as a new version, unless nothing changed since the newest
    /// version (then that one is returned, as Lambda does).
    pub async fn publish_version(
        &self,
        caller: &Caller,
        function_name: &str,
        req: PublishVersionRequest,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let (mut latest, qualifier) = self.lookup(caller, function_name, None).await?;
        if qualifier.is_some_and(|q| q != LATEST) {
            return Err(invalid(
                "PublishVersion takes the function without a qualifier",
            ));
        }
        validate::unsupported_members(&[("PublishTo", req.publish_to.as_ref())])?;
        let mut retries = 0;
        loop {
            if let Some(sha) = &req.code_sha256 {
                if sha != &latest.code.sha256_b64 {
                    return Err(ServiceError::PreconditionFailed(format!(
                        "CodeSHA256 ({sha}) is different from current CodeSHA256 in $LATEST ({}). Please try again with the CodeSHA256 in $LATEST.",
                        latest.code.sha256_b64
                    )));
                }
            }
            if let Some(rev) = &req.revision_id {
                if rev != &latest.revision_id {
                    return Err(ServiceError::PreconditionFailed(
                        tern_core::function::STALE_REVISION.to_string(),
                    ));
                }
            }
            let description = req
                .description
                .clone()
                .unwrap_or_else(|| latest.description.clone());
            validate::description(&description)?;
            match self.publish(&latest, description).await {
                Ok(rec) => {
                    return Ok(FunctionConfiguration::from_record(
                        &rec,
                        &self.config().region,
                        &caller.account,
                    ))
                }
                // `$LATEST` changed after it was read. Without a RevisionId the caller
                // asked for whatever `$LATEST` is: read it again (from the store, which
                // another server may have written) and publish that.
                Err(ServiceError::PreconditionFailed(_))
                    if req.revision_id.is_none() && retries < PUBLISH_RETRIES =>
                {
                    retries += 1;
                    let (ns, name) = (caller.namespace.clone(), latest.name.clone());
                    latest = stored(self.store(), move |store| {
                        Ok(store.get_function(&ns, &name)?)
                    })
                    .await?
                    .map(Arc::new)
                    .ok_or_else(|| {
                        ServiceError::ResourceNotFound(format!(
                            "Function not found: {}",
                            latest.name
                        ))
                    })?;
                }
                Err(ServiceError::PreconditionFailed(_)) if req.revision_id.is_none() => {
                    return Err(ServiceError::ResourceConflict(
                        "$LATEST kept changing while it was being published; retry".to_string(),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Freezes `latest` as a version; the store returns the newest one instead when it
    /// holds the same code and configuration (in its transaction, so that concurrent
    /// publishes of one configuration make one version).
    pub(crate) async fn publish(
        &self,
        latest: &FunctionRecord,
        description: String,
    ) -> Result<Arc<FunctionRecord>, ServiceError> {
        let mut frozen = latest.clone();
        frozen.description = description;
        frozen.revision_id = uuid::Uuid::new_v4().to_string();
        frozen.last_modified_ms = now_ms();
        let expected = latest.revision_id.clone();
        let published = stored(self.store(), move |store| {
            Ok(store.publish_version(&frozen, &expected)?)
        })
        .await?;
        tracing::info!(namespace = %published.namespace, function = %published.name, version = %published.version, "version published");
        self.registry().put_version(published.clone());
        let published = Arc::new(published);
        Ok(published)
    }

    pub async fn list_versions(
        &self,
        caller: &Caller,
        function_name: &str,
        marker: Option<String>,
        max_items: Option<i64>,
    ) -> Result<ListVersionsByFunctionResponse, ServiceError> {
        let (latest, _) = self.lookup(caller, function_name, None).await?;
        let limit = validate::max_items(max_items)?;
        // `$LATEST` comes first, then the versions in order; the marker is the last
        // version number given (or `$LATEST`).
        let (with_latest, after) = match marker.as_deref().filter(|m| !m.is_empty()) {
            None => (true, 0),
            Some(LATEST) => (false, 0),
            Some(m) => (
                false,
                m.parse::<u64>()
                    .map_err(|_| invalid(format!("Invalid value for 'Marker': {m}")))?,
            ),
        };
        let want = limit - usize::from(with_latest);
        let (ns, name) = (caller.namespace.clone(), latest.name.clone());
        let mut page = stored(self.store(), move |store| {
            Ok(store.list_versions(&ns, &name, after, want + 1)?)
        })
        .await?;
        let more = page.len() > want;
        page.truncate(want);
        let mut versions = Vec::with_capacity(page.len() + 1);
        if with_latest {
            versions.push(latest.as_ref().clone());
        }
        versions.extend(page);
        let next_marker = if more || (with_latest && want == 0) {
            versions.last().map(|r| r.version.clone())
        } else {
            None
        };
        let (region, account) = (&self.config().region, &caller.account);
        Ok(ListVersionsByFunctionResponse {
            versions: versions
                .iter()
                .map(|r| FunctionConfiguration::from_record(r, region, account))
                .collect(),
            next_marker,
        })
    }

    /// ListFunctions with `FunctionVersion=ALL`: each function's `$LATEST`, then its
    /// published versions in order. At most `limit` entries; the marker is the last
    /// entry as `name:version` (`name:$LATEST` included), so a page can end and the
    /// next one resume in the middle of a function's versions. A bare `name` (a marker
    /// of a listing without versions) resumes after that function.
    pub(crate) async fn list_with_versions(
        &self,
        caller: &Caller,
        marker: Option<String>,
        limit: usize,
    ) -> Result<ListFunctionsResponse, ServiceError> {
        let mut page = Vec::new();
        let mut after_function = None;
        if let Some(marker) = marker.filter(|m| !m.is_empty()) {
            match marker.split_once(':') {
                None => after_function = Some(marker),
                Some((name, version)) => {
                    let after = match version {
                        LATEST => 0,
                        v => v.parse::<u64>().map_err(|_| {
                            invalid(format!("Invalid value for 'Marker': {marker}"))
                        })?,
                    };
                    if !self
                        .page_versions(caller, name, after, limit, &mut page)
                        .await?
                    {
                        return Ok(self.function_page(caller, page, true));
                    }
                    after_function = Some(name.to_string());
                }
            }
        }
        loop {
            let (ns, after) = (caller.namespace.clone(), after_function.clone());
            let want = limit - page.len() + 1;
            let functions = stored(self.store(), move |store| {
                Ok(store.list_functions(&ns, after.as_deref(), want)?)
            })
            .await?;
            let last_page = functions.len() < want;
            for latest in functions {
                if page.len() == limit {
                    return Ok(self.function_page(caller, page, true));
                }
                after_function = Some(latest.name.clone());
                let name = latest.name.clone();
                page.push(latest);
                if !self
                    .page_versions(caller, &name, 0, limit, &mut page)
                    .await?
                {
                    return Ok(self.function_page(caller, page, true));
                }
            }
            if last_page {
                return Ok(self.function_page(caller, page, false));
            }
        }
    }

    /// Appends `name`'s versions after `after` to `page` while it has room for them
    /// (up to `limit`); false when some did not fit.
    async fn page_versions(
        &self,
        caller: &Caller,
        name: &str,
        after: u64,
        limit: usize,
        page: &mut Vec<FunctionRecord>,
    ) -> Result<bool, ServiceError> {
        let room = limit - page.len();
        let (ns, n) = (caller.namespace.clone(), name.to_string());
        let mut versions = stored(self.store(), move |store| {
            Ok(store.list_versions(&ns, &n, after, room + 1)?)
        })
        .await?;
        let fits = versions.len() <= room;
        versions.truncate(room);
        page.extend(versions);
        Ok(fits)
    }

    fn function_page(
        &self,
        caller: &Caller,
        page: Vec<FunctionRecord>,
        more: bool,
    ) -> ListFunctionsResponse {
        let (region, account) = (&self.config().region, &caller.account);
        ListFunctionsResponse {
            next_marker: more
                .then(|| page.last().map(|r| format!("{}:{}", r.name, r.version)))
                .flatten(),
            functions: page
                .iter()
                .map(|r| FunctionConfiguration::from_record(r, region, account))
                .collect(),
        }
    }

    /// DeleteFunction with a version qualifier.
    pub(crate) async fn delete_version(
        &self,
        caller: &Caller,
        rec: &FunctionRecord,
        version: u64,
    ) -> Result<(), ServiceError> {
        let (ns, name) = (caller.namespace.clone(), rec.name.clone());
        let existed = stored(self.store(), move |store| {
            Ok(store.delete_version(&ns, &name, version)?)
        })
        .await?;
        self.registry()
            .remove_version(&caller.namespace, &rec.name, version);
        self.instances().set_provisioned(&self.spec(rec), 0);
        self.instances()
            .drain_function(&caller.namespace, &rec.name, Some(&rec.version))
            .await;
        if !existed {
            return Err(ServiceError::ResourceNotFound(format!(
                "Function not found: {}:{version}",
                rec.name
            )));
        }
        tracing::info!(namespace = %caller.namespace, function = %rec.name, version, "version deleted");
        Ok(())
    }

    /// Every published version number of a function (to stop their instances when it
    /// is deleted).
    pub(crate) async fn version_numbers(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<String>, ServiceError> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (ns, n) = (namespace.to_string(), name.to_string());
            let page = stored(self.store(), move |store| {
                Ok(store.list_versions(&ns, &n, after, limits::LIST_MAX_ITEMS)?)
            })
            .await?;
            let full = page.len() == limits::LIST_MAX_ITEMS;
            for rec in page {
                after = rec.version_number().unwrap_or(u64::MAX);
                out.push(rec.version);
            }
            if !full {
                return Ok(out);
            }
        }
    }
}
