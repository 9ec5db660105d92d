//! Published versions and aliases in the PostgreSQL store (schema migration 6), as in
//! SQLite's. Every change locks the function's row first, so that a version is never
//! deleted while an alias is being pointed at it, and two servers never publish the
//! same number.

use postgres::Transaction;
use tern_core::function::{AliasRecord, FunctionRecord, LATEST};
use tern_core::limits;

use super::{to_i64, PostgresStore};
use crate::store::StoreError;

/// Locks the function's row; `NotFound` if it does not exist. Returns its
/// `revision_id` and `last_version`.
fn lock_function(
    tx: &mut Transaction<'_>,
    namespace: &str,
    name: &str,
) -> Result<(String, i64), StoreError> {
    let row = tx.query_opt(
        "SELECT revision_id, last_version FROM functions
         WHERE namespace = $1 AND name = $2 FOR UPDATE",
        &[&namespace, &name],
    )?;
    match row {
        Some(row) => Ok((row.try_get(0)?, row.try_get(1)?)),
        None => Err(StoreError::NotFound(format!("Function not found: {name}"))),
    }
}

/// `NotFound` unless the function exists and every version `alias` routes to is
/// `$LATEST` or published. Locks the function's row.
fn check_targets(tx: &mut Transaction<'_>, alias: &AliasRecord) -> Result<(), StoreError> {
    lock_function(tx, &alias.namespace, &alias.function)?;
    for version in alias.versions().filter(|v| *v != LATEST) {
        let found = match version.parse::<u64>() {
            Ok(n) => tx
                .query_opt(
                    "SELECT 1 FROM function_versions
                     WHERE namespace = $1 AND name = $2 AND version = $3",
                    &[&alias.namespace, &alias.function, &to_i64(n)],
                )?
                .is_some(),
            Err(_) => false,
        };
        if !found {
            return Err(StoreError::NotFound(format!(
                "Function not found: {}:{version}",
                alias.function
            )));
        }
    }
    Ok(())
}

fn records<T: serde::de::DeserializeOwned>(rows: &[postgres::Row]) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(|r| Ok(serde_json::from_str(r.try_get::<_, &str>(0)?)?))
        .collect()
}

impl PostgresStore {
    pub(super) fn versions_publish(
        &self,
        rec: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<FunctionRecord, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let (revision_id, last) = lock_function(&mut tx, &rec.namespace, &rec.name)?;
        if revision_id != expected_revision {
            return Err(StoreError::Precondition(
                "The function changed since it was read; publish again".into(),
            ));
        }
        let newest = tx.query(
            "SELECT record FROM function_versions WHERE namespace = $1 AND name = $2
             ORDER BY version DESC LIMIT 1",
            &[&rec.namespace, &rec.name],
        )?;
        if let Some(newest) = records::<FunctionRecord>(&newest)?.pop() {
            if newest.same_config(rec) {
                return Ok(newest);
            }
        }
        let held: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM function_versions WHERE namespace = $1 AND name = $2",
                &[&rec.namespace, &rec.name],
            )?
            .try_get(0)?;
        if held >= i64::try_from(limits::VERSIONS_PER_FUNCTION).unwrap_or(i64::MAX) {
            return Err(StoreError::LimitExceeded(format!(
                "Function {} already has {held} published versions, the most tern keeps per function; delete old ones (DeleteFunction with Qualifier) to publish more",
                rec.name
            )));
        }
        let version = last + 1;
        let mut published = rec.clone();
        published.version = version.to_string();
        tx.execute(
            "INSERT INTO function_versions (namespace, name, version, record)
             VALUES ($1, $2, $3, $4)",
            &[
                &rec.namespace,
                &rec.name,
                &version,
                &serde_json::to_string(&published)?,
            ],
        )?;
        tx.execute(
            "UPDATE functions SET last_version = $3 WHERE namespace = $1 AND name = $2",
            &[&rec.namespace, &rec.name, &version],
        )?;
        tx.commit()?;
        Ok(published)
    }

    pub(super) fn versions_get(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<FunctionRecord>, StoreError> {
        let rows = self.client()?.query(
            "SELECT record FROM function_versions
             WHERE namespace = $1 AND name = $2 AND version = $3",
            &[&namespace, &name, &to_i64(version)],
        )?;
        Ok(records(&rows)?.into_iter().next())
    }

    pub(super) fn versions_list(
        &self,
        namespace: &str,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        let rows = self.client()?.query(
            "SELECT record FROM function_versions
             WHERE namespace = $1 AND name = $2 AND version > $3
             ORDER BY version LIMIT $4",
            &[&namespace, &name, &to_i64(after), &to_i64(limit)],
        )?;
        records(&rows)
    }

    pub(super) fn versions_delete(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        if lock_function(&mut tx, namespace, name).is_err() {
            return Ok(false);
        }
        let label = version.to_string();
        let rows = tx.query(
            "SELECT record FROM function_aliases WHERE namespace = $1 AND function = $2",
            &[&namespace, &name],
        )?;
        let aliases: Vec<AliasRecord> = records(&rows)?;
        if let Some(alias) = aliases.iter().find(|a| a.versions().any(|v| v == label)) {
            return Err(StoreError::Conflict(format!(
                "Unable to delete version because the following aliases reference it: [{}]",
                alias.name
            )));
        }
        let n = tx.execute(
            "DELETE FROM function_versions WHERE namespace = $1 AND name = $2 AND version = $3",
            &[&namespace, &name, &to_i64(version)],
        )?;
        tx.execute(
            "DELETE FROM provisioned_concurrency
             WHERE namespace = $1 AND name = $2 AND qualifier = $3",
            &[&namespace, &name, &label],
        )?;
        tx.execute(
            "DELETE FROM event_invoke_configs
             WHERE namespace = $1 AND function = $2 AND qualifier = $3",
            &[&namespace, &name, &label],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    pub(super) fn aliases_create(&self, alias: &AliasRecord) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        check_targets(&mut tx, alias)?;
        let held: i64 = tx
            .query_one(
                "SELECT COUNT(*) FROM function_aliases WHERE namespace = $1 AND function = $2",
                &[&alias.namespace, &alias.function],
            )?
            .try_get(0)?;
        if held >= i64::try_from(limits::ALIASES_PER_FUNCTION).unwrap_or(i64::MAX) {
            return Err(StoreError::LimitExceeded(format!(
                "Function {} already has {held} aliases, the most tern keeps per function; delete one (DeleteAlias) to create another",
                alias.function
            )));
        }
        let inserted = tx.execute(
            "INSERT INTO function_aliases (namespace, function, name, record)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[
                &alias.namespace,
                &alias.function,
                &alias.name,
                &serde_json::to_string(alias)?,
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "Alias already exists: {}",
                alias.name
            )));
        }
        tx.commit()?;
        Ok(())
    }

    pub(super) fn aliases_update(
        &self,
        alias: &AliasRecord,
        expected_revision: &str,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        check_targets(&mut tx, alias)?;
        let rows = tx.query(
            "SELECT record FROM function_aliases
             WHERE namespace = $1 AND function = $2 AND name = $3",
            &[&alias.namespace, &alias.function, &alias.name],
        )?;
        let Some(current) = records::<AliasRecord>(&rows)?.into_iter().next() else {
            return Err(StoreError::NotFound(format!(
                "Alias not found: {}",
                alias.name
            )));
        };
        if current.revision_id != expected_revision {
            return Err(StoreError::Precondition(
                tern_core::function::STALE_REVISION.into(),
            ));
        }
        tx.execute(
            "UPDATE function_aliases SET record = $4
             WHERE namespace = $1 AND function = $2 AND name = $3",
            &[
                &alias.namespace,
                &alias.function,
                &alias.name,
                &serde_json::to_string(alias)?,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub(super) fn aliases_get(
        &self,
        namespace: &str,
        function: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let rows = self.client()?.query(
            "SELECT record FROM function_aliases
             WHERE namespace = $1 AND function = $2 AND name = $3",
            &[&namespace, &function, &name],
        )?;
        Ok(records(&rows)?.into_iter().next())
    }

    pub(super) fn aliases_list(
        &self,
        namespace: &str,
        function: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let rows = self.client()?.query(
            "SELECT record FROM function_aliases
             WHERE namespace = $1 AND function = $2 AND name > $3
             ORDER BY name LIMIT $4",
            &[&namespace, &function, &after.unwrap_or(""), &to_i64(limit)],
        )?;
        records(&rows)
    }

    pub(super) fn aliases_delete(
        &self,
        namespace: &str,
        function: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let n = tx.execute(
            "DELETE FROM function_aliases WHERE namespace = $1 AND function = $2 AND name = $3",
            &[&namespace, &function, &name],
        )?;
        tx.execute(
            "DELETE FROM provisioned_concurrency
             WHERE namespace = $1 AND name = $2 AND qualifier = $3",
            &[&namespace, &function, &name],
        )?;
        for table in ["event_invoke_configs", "function_urls"] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE namespace = $1 AND function = $2 AND qualifier = $3"
                ),
                &[&namespace, &function, &name],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }
}
