//! Aliases: CreateAlias, GetAlias, UpdateAlias (weighted routing between two versions,
//! with `RevisionId` as the optimistic lock), ListAliases, DeleteAlias, and tern's
//! rollback to the version an alias pointed at before.

use std::collections::BTreeMap;
use std::sync::Arc;

use tern_core::function::{AliasRecord, LATEST};
use tern_core::names::function_arn;
use tern_core::wire::{
    AliasConfiguration, AliasRoutingConfiguration, CreateAliasRequest, ListAliasesResponse,
    UpdateAliasRequest,
};

use crate::error::{stored, ServiceError};
use crate::functions::{invalid, Caller, FunctionService};
use crate::{now_ms, validate};

/// How many earlier versions an alias remembers for rollback.
pub const ALIAS_HISTORY: usize = 20;

fn check_alias_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !name.bytes().all(|b| b.is_ascii_digit());
    if ok {
        return Ok(());
    }
    Err(invalid(format!(
        "1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+) and have length between 1 and 128"
    )))
}

fn is_number(v: &str) -> bool {
    !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit())
}

fn check_version(version: &str) -> Result<(), ServiceError> {
    if version == LATEST || is_number(version) {
        return Ok(());
    }
    Err(invalid(format!(
        "1 validation error detected: Value '{version}' at 'functionVersion' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)"
    )))
}

/// Lambda's rules for `RoutingConfig`: one additional published version, other than
/// the primary one (which must be published too), with a weight in [0, 1].
fn check_routing(
    primary: &str,
    routing: &AliasRoutingConfiguration,
) -> Result<BTreeMap<String, f64>, ServiceError> {
    let weights = &routing.additional_version_weights;
    if weights.is_empty() {
        return Ok(BTreeMap::new());
    }
    if weights.len() > 1 {
        return Err(invalid(
            "Number of items in AdditionalVersionWeights cannot be greater than 1",
        ));
    }
    for (version, weight) in weights {
        if !is_number(version) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{version}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [0-9]+]"
            )));
        }
        if !(0.0..=1.0).contains(weight) {
            return Err(invalid(format!(
                "1 validation error detected: Value '{weight}' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0]"
            )));
        }
        if version == primary {
            return Err(invalid(format!(
                "Invalid function version {version}. Function version {version} is already included in routing configuration."
            )));
        }
    }
    if primary == LATEST {
        return Err(invalid(
            "$LATEST is not supported for an alias pointing to more than 1 version",
        ));
    }
    Ok(weights.clone())
}

impl FunctionService {
    fn alias_view(&self, caller: &Caller, alias: &AliasRecord) -> AliasConfiguration {
        AliasConfiguration::from_record(alias, &self.config().region, &caller.account)
    }

    fn alias_not_found(&self, caller: &Caller, function: &str, name: &str) -> ServiceError {
        ServiceError::ResourceNotFound(format!(
            "Alias not found: {}",
            function_arn(&self.config().region, &caller.account, function, Some(name))
        ))
    }

    /// The function an alias call names; aliases take the function without a qualifier.
    async fn alias_function(
        &self,
        caller: &Caller,
        function_name: &str,
    ) -> Result<String, ServiceError> {
        let (rec, qualifier) = self.lookup(caller, function_name, None).await?;
        if qualifier.is_some() {
            return Err(invalid(
                "An alias belongs to the function: give its name without a qualifier",
            ));
        }
        Ok(rec.name.clone())
    }

    async fn stored_alias(
        &self,
        caller: &Caller,
        function: &str,
        name: &str,
    ) -> Result<AliasRecord, ServiceError> {
        let (ns, f, a) = (
            caller.namespace.clone(),
            function.to_string(),
            name.to_string(),
        );
        stored(self.store(), move |store| Ok(store.get_alias(&ns, &f, &a)?))
            .await?
            .ok_or_else(|| self.alias_not_found(caller, function, name))
    }

    pub async fn create_alias(
        &self,
        caller: &Caller,
        function_name: &str,
        req: CreateAliasRequest,
    ) -> Result<AliasConfiguration, ServiceError> {
        let function = self.alias_function(caller, function_name).await?;
        check_alias_name(&req.name)?;
        check_version(&req.function_version)?;
        let description = req.description.unwrap_or_default();
        validate::description(&description)?;
        let additional_weights = check_routing(
            &req.function_version,
            &req.routing_config.unwrap_or_default(),
        )?;
        let alias = AliasRecord {
            namespace: caller.namespace.clone(),
            function: function.clone(),
            name: req.name.clone(),
            function_version: req.function_version,
            description,
            additional_weights,
            revision_id: uuid::Uuid::new_v4().to_string(),
            history: Vec::new(),
            last_modified_ms: now_ms(),
        };
        let to_store = alias.clone();
        let arn = function_arn(
            &self.config().region,
            &caller.account,
            &function,
            Some(&alias.name),
        );
        stored(self.store(), move |store| {
            store.create_alias(&to_store).map_err(|e| match e {
                tern_store::StoreError::Conflict(_) => {
                    ServiceError::ResourceConflict(format!("Alias already exists: {arn}"))
                }
                other => other.into(),
            })
        })
        .await?;
        tracing::info!(namespace = %caller.namespace, function = %function, alias = %alias.name, version = %alias.function_version, "alias created");
        self.registry().put_alias(alias.clone());
        Ok(self.alias_view(caller, &alias))
    }

    pub async fn get_alias(
        &self,
        caller: &Caller,
        function_name: &str,
        name: &str,
    ) -> Result<AliasConfiguration, ServiceError> {
        let function = self.alias_function(caller, function_name).await?;
        let alias = self.stored_alias(caller, &function, name).await?;
        Ok(self.alias_view(caller, &alias))
    }

    pub async fn update_alias(
        &self,
        caller: &Caller,
        function_name: &str,
        name: &str,
        req: UpdateAliasRequest,
    ) -> Result<AliasConfiguration, ServiceError> {
        let function = self.alias_function(caller, function_name).await?;
        let current = self.stored_alias(caller, &function, name).await?;
        if let Some(rev) = &req.revision_id {
            if rev != &current.revision_id {
                return Err(ServiceError::PreconditionFailed(
                    tern_core::function::STALE_REVISION.to_string(),
                ));
            }
        }
        let mut next = current.clone();
        if let Some(v) = req.function_version {
            check_version(&v)?;
            next.function_version = v;
        }
        if let Some(d) = req.description {
            validate::description(&d)?;
            next.description = d;
        }
        match &req.routing_config {
            Some(routing) => {
                next.additional_weights = check_routing(&next.function_version, routing)?
            }
            None => {
                // Kept as it was, unless the primary version moved onto it.
                next.additional_weights.remove(&next.function_version);
                check_routing(
                    &next.function_version,
                    &AliasRoutingConfiguration {
                        additional_version_weights: next.additional_weights.clone(),
                    },
                )?;
            }
        }
        if next.function_version != current.function_version {
            next.history.push(current.function_version.clone());
            let excess = next.history.len().saturating_sub(ALIAS_HISTORY);
            next.history.drain(..excess);
        }
        self.replace_alias(caller, &current, next, req.revision_id.is_some())
            .await
    }

    /// Stores `next` in place of `current` (if nobody changed it meanwhile) and moves
    /// the alias's provisioned instances to its new version.
    async fn replace_alias(
        &self,
        caller: &Caller,
        current: &AliasRecord,
        mut next: AliasRecord,
        revision_given: bool,
    ) -> Result<AliasConfiguration, ServiceError> {
        next.revision_id = uuid::Uuid::new_v4().to_string();
        next.last_modified_ms = now_ms();
        let (to_store, expected) = (next.clone(), current.revision_id.clone());
        stored(self.store(), move |store| {
            store
                .update_alias(&to_store, &expected)
                .map_err(|e| match e {
                    tern_store::StoreError::Precondition(m) if !revision_given => {
                        ServiceError::ResourceConflict(format!(
                            "The alias changed while this update was made; retry ({m})"
                        ))
                    }
                    other => other.into(),
                })
        })
        .await?;
        tracing::info!(namespace = %caller.namespace, function = %next.function, alias = %next.name, version = %next.function_version, weights = ?next.additional_weights, "alias updated");
        self.registry().put_alias(next.clone());
        self.follow_alias(
            &caller.namespace,
            &next.function,
            &next.name,
            &current.function_version,
            &next.function_version,
        )
        .await?;
        Ok(self.alias_view(caller, &next))
    }

    /// Points the alias back at the version it pointed at before its last move, with
    /// no weighted second version (tern's `POST …/aliases/{name}/rollback`).
    pub async fn rollback_alias(
        &self,
        caller: &Caller,
        function_name: &str,
        name: &str,
    ) -> Result<AliasConfiguration, ServiceError> {
        let function = self.alias_function(caller, function_name).await?;
        let current = self.stored_alias(caller, &function, name).await?;
        let mut next = current.clone();
        let Some(previous) = next.history.pop() else {
            return Err(ServiceError::ResourceConflict(format!(
                "Alias {name} has no earlier version to roll back to"
            )));
        };
        next.function_version = previous;
        next.additional_weights.clear();
        self.replace_alias(caller, &current, next, false).await
    }

    pub async fn list_aliases(
        &self,
        caller: &Caller,
        function_name: &str,
        function_version: Option<String>,
        marker: Option<String>,
        max_items: Option<i64>,
    ) -> Result<ListAliasesResponse, ServiceError> {
        let function = self.alias_function(caller, function_name).await?;
        let limit = validate::max_items(max_items)?;
        if let Some(v) = &function_version {
            check_version(v)?;
        }
        let mut out: Vec<Arc<AliasRecord>> = Vec::new();
        let mut after = marker.filter(|m| !m.is_empty());
        let mut next_marker = None;
        // Filtering by version may leave a page short: read on until it is full.
        'pages: loop {
            let (ns, f, from) = (caller.namespace.clone(), function.clone(), after.clone());
            let page = stored(self.store(), move |store| {
                Ok(store.list_aliases(&ns, &f, from.as_deref(), limit + 1)?)
            })
            .await?;
            let full = page.len() > limit;
            for alias in page {
                after = Some(alias.name.clone());
                let wanted = function_version
                    .as_deref()
                    .is_none_or(|v| alias.versions().any(|a| a == v));
                if !wanted {
                    continue;
                }
                if out.len() == limit {
                    next_marker = out.last().map(|a| a.name.clone());
                    break 'pages;
                }
                out.push(Arc::new(alias));
            }
            if !full {
                break;
            }
        }
        Ok(ListAliasesResponse {
            aliases: out.iter().map(|a| self.alias_view(caller, a)).collect(),
            next_marker,
        })
    }

    pub async fn delete_alias(
        &self,
        caller: &Caller,
        function_name: &str,
        name: &str,
    ) -> Result<(), ServiceError> {
        let function = self.alias_function(caller, function_name).await?;
        check_alias_name(name)?;
        let target = self
            .resolve(&caller.namespace, &function, Some(name), None)
            .await?;
        let had_provisioned = self
            .provisioned_settings(&caller.namespace, &function)
            .await?
            .iter()
            .any(|p| p.qualifier == name);
        let (ns, f, a) = (caller.namespace.clone(), function.clone(), name.to_string());
        stored(self.store(), move |store| {
            Ok(store.delete_alias(&ns, &f, &a)?)
        })
        .await?;
        self.registry()
            .remove_alias(&caller.namespace, &function, name);
        if let (true, Some(rec)) = (had_provisioned, target) {
            self.instances().set_provisioned(&self.spec(&rec), 0);
        }
        tracing::info!(namespace = %caller.namespace, function = %function, alias = %name, "alias deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(pairs: &[(&str, f64)]) -> AliasRoutingConfiguration {
        AliasRoutingConfiguration {
            additional_version_weights: pairs.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
        }
    }

    #[test]
    fn alias_names_are_not_numbers_and_use_lambdas_characters() {
        assert!(check_alias_name("live").is_ok());
        assert!(check_alias_name("blue-green_2").is_ok());
        assert!(check_alias_name("12").is_err());
        assert!(check_alias_name("").is_err());
        assert!(check_alias_name("$LATEST").is_err());
        assert!(check_alias_name(&"a".repeat(129)).is_err());
    }

    #[test]
    fn routing_takes_one_other_published_version_weighted_zero_to_one() {
        assert_eq!(
            check_routing("3", &weights(&[("4", 0.1)])).unwrap().len(),
            1
        );
        assert!(check_routing("3", &weights(&[])).unwrap().is_empty());
        assert!(check_routing("3", &weights(&[("4", 1.5)])).is_err());
        assert!(check_routing("3", &weights(&[("4", -0.1)])).is_err());
        assert!(check_routing("3", &weights(&[("4", f64::NAN)])).is_err());
        assert!(check_routing("3", &weights(&[("3", 0.5)])).is_err());
        assert!(check_routing("3", &weights(&[("4", 0.1), ("5", 0.1)])).is_err());
        assert!(check_routing("$LATEST", &weights(&[("4", 0.1)])).is_err());
        assert!(check_routing("3", &weights(&[("$LATEST", 0.1)])).is_err());
    }
}
