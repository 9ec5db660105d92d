//! Function URLs: Create/Get/Update/Delete/ListFunctionUrlConfig(s), and finding the URL
//! a request addresses. Serving the request itself is the gateway's (HTTP in, payload
//! 2.0 event, the Invoke path, HTTP out); this file knows nothing of HTTP.

use std::sync::Arc;

use tern_core::function::LATEST;
use tern_core::function_url::{
    check_qualifier, is_url_id, FunctionUrlInput, FunctionUrlRecord, InvokeMode,
};
use tern_core::names::function_arn;
use tern_store::StoreHandle;

use crate::error::{stored, ServiceError};
use crate::functions::{Caller, FunctionService};
use crate::lookups::Lookups;
use crate::now_ms;

/// ListFunctionUrlConfigs: `MaxItems` at most (Lambda's bound), and by default.
pub const LIST_MAX_ITEMS: usize = 50;

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidParameterValue(msg.into())
}

fn check_input(input: &FunctionUrlInput) -> Result<(), ServiceError> {
    if input.invoke_mode == Some(InvokeMode::ResponseStream) {
        return Err(invalid(
            "InvokeMode RESPONSE_STREAM is not supported by tern yet; use BUFFERED (the default)",
        ));
    }
    if let Some(cors) = &input.cors {
        cors.check().map_err(invalid)?;
    }
    Ok(())
}

pub struct UrlService {
    store: StoreHandle,
    functions: Arc<FunctionService>,
    by_id: Lookups<Arc<FunctionUrlRecord>>,
}

impl UrlService {
    pub fn new(store: StoreHandle, functions: Arc<FunctionService>) -> Self {
        UrlService {
            store,
            functions,
            by_id: Lookups::new(),
        }
    }

    /// The ARN a URL's `FunctionArn` shows: unqualified for `$LATEST`, as Lambda's.
    pub fn function_arn(&self, rec: &FunctionUrlRecord) -> String {
        let qualifier = (rec.qualifier != LATEST).then_some(rec.qualifier.as_str());
        function_arn(
            &self.functions.config().region,
            &tern_core::names::account_of(&rec.namespace),
            &rec.function,
            qualifier,
        )
    }

    /// The function (which must exist, with the qualifier) and the qualifier a URL
    /// config applies to: the `Qualifier` parameter, or one in the name, or `$LATEST`.
    async fn target(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, String), ServiceError> {
        if let Some(q) = qualifier {
            check_qualifier(q).map_err(invalid)?;
        }
        let (rec, qualifier) = self
            .functions
            .lookup(caller, function_name, qualifier)
            .await?;
        let qualifier = qualifier.unwrap_or_else(|| LATEST.to_string());
        check_qualifier(&qualifier).map_err(invalid)?;
        Ok((rec.name.clone(), qualifier))
    }

    fn not_found(&self, caller: &Caller, function: &str, qualifier: &str) -> ServiceError {
        let q = (qualifier != LATEST).then_some(qualifier);
        let arn = function_arn(
            &self.functions.config().region,
            &caller.account,
            function,
            q,
        );
        ServiceError::ResourceNotFound(format!(
            "The resource you requested does not exist. (no function URL for {arn})"
        ))
    }

    pub async fn create(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
        input: FunctionUrlInput,
    ) -> Result<FunctionUrlRecord, ServiceError> {
        let auth_type = input
            .auth_type
            .ok_or_else(|| invalid("AuthType is required: NONE or AWS_IAM"))?;
        check_input(&input)?;
        let (function, qualifier) = self.target(caller, function_name, qualifier).await?;
        let now = now_ms();
        let rec = FunctionUrlRecord {
            url_id: uuid::Uuid::new_v4().simple().to_string(),
            namespace: caller.namespace.clone(),
            function,
            qualifier,
            auth_type,
            cors: input.cors,
            invoke_mode: input.invoke_mode.unwrap_or_default(),
            creation_ms: now,
            last_modified_ms: now,
        };
        let arn = self.function_arn(&rec);
        let row = rec.clone();
        stored(&self.store, move |store| {
            store.create_function_url(&row).map_err(|e| match e {
                tern_store::StoreError::Conflict(_) => ServiceError::ResourceConflict(format!(
                    "Failed to create function url config for [functionArn = {arn}]. Error message:  FunctionUrlConfig exists for this Lambda function"
                )),
                other => other.into(),
            })
        })
        .await?;
        Ok(rec)
    }

    pub async fn get(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<FunctionUrlRecord, ServiceError> {
        let (function, qualifier) = self.target(caller, function_name, qualifier).await?;
        let (ns, f, q) = (
            caller.namespace.clone(),
            function.clone(),
            qualifier.clone(),
        );
        stored(&self.store, move |store| {
            Ok(store.get_function_url(&ns, &f, &q)?)
        })
        .await?
        .ok_or_else(|| self.not_found(caller, &function, &qualifier))
    }

    /// Changes the members the body gives; the URL keeps its id.
    pub async fn update(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
        input: FunctionUrlInput,
    ) -> Result<FunctionUrlRecord, ServiceError> {
        check_input(&input)?;
        let current = self.get(caller, function_name, qualifier).await?;
        let rec = FunctionUrlRecord {
            auth_type: input.auth_type.unwrap_or(current.auth_type),
            cors: input.cors.or(current.cors.clone()),
            invoke_mode: input.invoke_mode.unwrap_or(current.invoke_mode),
            last_modified_ms: now_ms().max(current.creation_ms),
            ..current
        };
        let row = rec.clone();
        let existed = stored(&self.store, move |store| {
            Ok(store.update_function_url(&row)?)
        })
        .await?;
        if !existed {
            return Err(self.not_found(caller, &rec.function, &rec.qualifier));
        }
        self.by_id.forget(&rec.url_id);
        Ok(rec)
    }

    pub async fn delete(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(), ServiceError> {
        let current = self.get(caller, function_name, qualifier).await?;
        let (ns, f, q) = (
            current.namespace.clone(),
            current.function.clone(),
            current.qualifier.clone(),
        );
        stored(&self.store, move |store| {
            Ok(store.delete_function_urls(&ns, &f, Some(&q))?)
        })
        .await?;
        self.by_id.forget(&current.url_id);
        Ok(())
    }

    /// A page of a function's URLs by qualifier, after `marker` (the last qualifier of
    /// the previous page).
    pub async fn list(
        &self,
        caller: &Caller,
        function_name: &str,
        marker: Option<String>,
        max_items: Option<usize>,
    ) -> Result<(Vec<FunctionUrlRecord>, Option<String>), ServiceError> {
        let limit = max_items.unwrap_or(LIST_MAX_ITEMS);
        if !(1..=LIST_MAX_ITEMS).contains(&limit) {
            return Err(invalid(format!(
                "Invalid value for 'MaxItems': {limit} (expected 1 to {LIST_MAX_ITEMS})"
            )));
        }
        let (rec, _) = self.functions.lookup(caller, function_name, None).await?;
        let (ns, f) = (caller.namespace.clone(), rec.name.clone());
        let all = stored(&self.store, move |store| {
            Ok(store.list_function_urls(&ns, &f)?)
        })
        .await?;
        let mut page: Vec<FunctionUrlRecord> = all
            .into_iter()
            .filter(|u| marker.as_deref().is_none_or(|m| u.qualifier.as_str() > m))
            .take(limit + 1)
            .collect();
        let next = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|u| u.qualifier.clone())
        } else {
            None
        };
        Ok((page, next))
    }

    /// The URL a request addresses, or `None`; answered from memory for a while (an id
    /// with no URL too), with a bounded number of store reads at once: see [`Lookups`].
    /// A change made on another server of a cluster shows within its TTL; changes made
    /// here show at once.
    pub async fn by_id(
        &self,
        url_id: &str,
    ) -> Result<Option<Arc<FunctionUrlRecord>>, ServiceError> {
        if !is_url_id(url_id) {
            return Ok(None);
        }
        let store = self.store.clone();
        self.by_id
            .get(url_id, |id| async move {
                Ok(stored(&store, move |s| Ok(s.get_function_url_by_id(&id)?))
                    .await?
                    .map(Arc::new))
            })
            .await
    }

    /// Forgets the URLs of a namespace kept in memory, after one of its functions was
    /// deleted (the store deleted its URLs with it).
    pub fn forget_namespace(&self, namespace: &str) {
        self.by_id.forget_where(|rec| rec.namespace == namespace);
    }
}
