//! Provisioned concurrency, per version or alias as on Lambda: the setting is stored
//! under the qualifier it was given, and its instances are those of the version the
//! qualifier names (an alias's primary version; they move when the alias does).
//! `$LATEST` is accepted too, as a tern extension.

use std::sync::Arc;

use tern_core::function::FunctionRecord;
use tern_core::names::function_arn;
use tern_core::wire::{ListProvisionedConcurrencyConfigsResponse, ProvisionedConcurrencyConfig};
use tern_runtime::ProvisionedStatus;
use tern_store::ProvisionedSetting;

use crate::error::{stored, ServiceError};
use crate::functions::{invalid, Caller, FunctionService};
use crate::now_ms;

impl FunctionService {
    /// The function record and qualifier a provisioned-concurrency call names.
    async fn provisioned_target(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(Arc<FunctionRecord>, String), ServiceError> {
        let (rec, derived) = self.lookup(caller, function_name, qualifier).await?;
        let qualifier = derived.ok_or_else(|| {
            invalid("Qualifier is required for provisioned concurrency: give a version or an alias")
        })?;
        Ok((rec, qualifier))
    }

    fn not_configured(&self, caller: &Caller, name: &str, qualifier: &str) -> ServiceError {
        ServiceError::ProvisionedConcurrencyConfigNotFound(format!(
            "No Provisioned Concurrency Config found for this function: {}",
            function_arn(
                &self.config().region,
                &caller.account,
                name,
                Some(qualifier)
            )
        ))
    }

    fn provisioned_view(
        &self,
        caller: &Caller,
        rec: &FunctionRecord,
        setting: &ProvisionedSetting,
        with_arn: bool,
    ) -> ProvisionedConcurrencyConfig {
        let state = self
            .instances()
            .provisioned_state(&caller.namespace, &rec.name, &rec.version);
        let (requested, allocated, available, status, reason) = match state {
            Some(st) => {
                let (status, reason) = match st.status {
                    ProvisionedStatus::InProgress => ("IN_PROGRESS", None),
                    ProvisionedStatus::Ready => ("READY", None),
                    ProvisionedStatus::Failed(r) => ("FAILED", Some(r)),
                };
                (st.requested, st.allocated, st.available, status, reason)
            }
            // Set, but not (yet) running here: another version took its instances.
            None => (setting.requested as usize, 0, 0, "IN_PROGRESS", None),
        };
        ProvisionedConcurrencyConfig {
            function_arn: with_arn.then(|| {
                function_arn(
                    &self.config().region,
                    &caller.account,
                    &rec.name,
                    Some(&setting.qualifier),
                )
            }),
            requested_provisioned_concurrent_executions: requested as u32,
            available_provisioned_concurrent_executions: available as u32,
            allocated_provisioned_concurrent_executions: allocated as u32,
            status: status.to_string(),
            status_reason: reason,
            last_modified: tern_core::timefmt::last_modified(setting.last_modified_ms),
        }
    }

    /// The stored provisioned settings of one function.
    pub(crate) async fn provisioned_settings(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<ProvisionedSetting>, ServiceError> {
        let all = stored(self.store(), move |store| Ok(store.list_provisioned()?)).await?;
        Ok(all
            .into_iter()
            .filter(|p| p.namespace == namespace && p.function == name)
            .collect())
    }

    async fn provisioned_setting(
        &self,
        caller: &Caller,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<ProvisionedSetting>, ServiceError> {
        let (ns, name, q) = (
            caller.namespace.clone(),
            name.to_string(),
            qualifier.to_string(),
        );
        stored(self.store(), move |store| {
            Ok(store.get_provisioned(&ns, &name, &q)?)
        })
        .await
    }

    pub async fn put_provisioned(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
        requested: i64,
    ) -> Result<ProvisionedConcurrencyConfig, ServiceError> {
        let (rec, qualifier) = self
            .provisioned_target(caller, function_name, qualifier)
            .await?;
        let limit = self.admission().account_limit();
        let n = u32::try_from(requested)
            .ok()
            .filter(|n| *n >= 1 && *n <= limit)
            .ok_or_else(|| {
                invalid(format!(
                    "1 validation error detected: Value '{requested}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value between 1 and {limit}"
                ))
            })?;
        if let Some(r) = self.admission().reserved(&caller.namespace, &rec.name) {
            let others: u32 = self
                .provisioned_settings(&caller.namespace, &rec.name)
                .await?
                .iter()
                .filter(|p| p.qualifier != qualifier)
                .map(|p| p.requested)
                .sum();
            if n + others > r {
                return Err(invalid(format!(
                    "Requested Provisioned Concurrency {n} (with {others} on the function's other versions and aliases) should not be greater than the reservedConcurrentExecution {r} for function {}",
                    rec.name
                )));
            }
        }
        let setting = ProvisionedSetting {
            namespace: caller.namespace.clone(),
            function: rec.name.clone(),
            qualifier,
            requested: n,
            last_modified_ms: now_ms(),
        };
        let to_store = setting.clone();
        stored(self.store(), move |store| {
            Ok(store.put_provisioned(&to_store)?)
        })
        .await?;
        self.instances()
            .set_provisioned(&self.spec(&rec), n as usize);
        tracing::info!(function = %rec.name, qualifier = %setting.qualifier, requested = n, "provisioned concurrency set");
        Ok(self.provisioned_view(caller, &rec, &setting, false))
    }

    pub async fn get_provisioned(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<ProvisionedConcurrencyConfig, ServiceError> {
        let (rec, qualifier) = self
            .provisioned_target(caller, function_name, qualifier)
            .await?;
        let setting = self
            .provisioned_setting(caller, &rec.name, &qualifier)
            .await?
            .ok_or_else(|| self.not_configured(caller, &rec.name, &qualifier))?;
        Ok(self.provisioned_view(caller, &rec, &setting, false))
    }

    pub async fn delete_provisioned(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(), ServiceError> {
        let (rec, qualifier) = self
            .provisioned_target(caller, function_name, qualifier)
            .await?;
        let (ns, name, q) = (
            caller.namespace.clone(),
            rec.name.clone(),
            qualifier.clone(),
        );
        let existed = stored(self.store(), move |store| {
            Ok(store.delete_provisioned(&ns, &name, &q)?)
        })
        .await?;
        if !existed {
            return Err(self.not_configured(caller, &rec.name, &qualifier));
        }
        self.instances().set_provisioned(&self.spec(&rec), 0);
        Ok(())
    }

    pub async fn list_provisioned(
        &self,
        caller: &Caller,
        function_name: &str,
    ) -> Result<ListProvisionedConcurrencyConfigsResponse, ServiceError> {
        let (rec, _) = self.lookup(caller, function_name, None).await?;
        let mut configs = Vec::new();
        for setting in self
            .provisioned_settings(&caller.namespace, &rec.name)
            .await?
        {
            if let Some(target) = self
                .resolve(&caller.namespace, &rec.name, Some(&setting.qualifier), None)
                .await?
            {
                configs.push(self.provisioned_view(caller, &target, &setting, true));
            }
        }
        Ok(ListProvisionedConcurrencyConfigsResponse {
            provisioned_concurrency_configs: configs,
            next_marker: None,
        })
    }

    /// Starts the provisioned instances of the stored settings (at server start).
    pub(crate) async fn restore_provisioned(&self) -> Result<(), ServiceError> {
        let all = stored(self.store(), move |store| Ok(store.list_provisioned()?)).await?;
        for p in all {
            if let Some(rec) = self
                .resolve(&p.namespace, &p.function, Some(&p.qualifier), None)
                .await?
            {
                self.instances()
                    .set_provisioned(&self.spec(&rec), p.requested as usize);
            }
        }
        Ok(())
    }

    /// Moves the provisioned instances of an alias's setting from the version it
    /// pointed at to the one it points at now.
    pub(crate) async fn follow_alias(
        &self,
        namespace: &str,
        function: &str,
        alias: &str,
        before: &str,
        after: &str,
    ) -> Result<(), ServiceError> {
        if before == after {
            return Ok(());
        }
        let (ns, f, a) = (
            namespace.to_string(),
            function.to_string(),
            alias.to_string(),
        );
        let Some(setting) = stored(self.store(), move |store| {
            Ok(store.get_provisioned(&ns, &f, &a)?)
        })
        .await?
        else {
            return Ok(());
        };
        if let Some(old) = self
            .resolve(namespace, function, Some(before), None)
            .await?
        {
            self.instances().set_provisioned(&self.spec(&old), 0);
        }
        if let Some(new) = self.resolve(namespace, function, Some(after), None).await? {
            self.instances()
                .set_provisioned(&self.spec(&new), setting.requested as usize);
        }
        Ok(())
    }
}
