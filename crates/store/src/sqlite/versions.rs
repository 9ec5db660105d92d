//! Published versions and aliases in the SQLite store (schema migration 6): one row
//! per version or alias, the record as JSON. The function's row keeps the highest
//! version number ever published.

use rusqlite::{params, OptionalExtension, Transaction};
use tern_core::function::{AliasRecord, FunctionRecord, LATEST};
use tern_core::limits;

use super::SqliteStore;
use crate::store::StoreError;

/// The JSON records a statement's rows hold in their first column.
fn records<T: serde::de::DeserializeOwned>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<T>, StoreError> {
    let rows = stmt.query_map(params, |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for json in rows {
        out.push(serde_json::from_str(&json?)?);
    }
    Ok(out)
}

fn number(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

/// `NotFound` unless the function exists and every version `alias` routes to is
/// `$LATEST` or published.
fn check_targets(tx: &Transaction<'_>, alias: &AliasRecord) -> Result<(), StoreError> {
    let function: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM functions WHERE namespace = ?1 AND name = ?2",
            params![alias.namespace, alias.function],
            |r| r.get(0),
        )
        .optional()?;
    if function.is_none() {
        return Err(StoreError::NotFound(format!(
            "Function not found: {}",
            alias.function
        )));
    }
    for version in alias.versions().filter(|v| *v != LATEST) {
        let found: Option<i64> = match version.parse::<u64>() {
            Ok(n) => tx
                .query_row(
                    "SELECT 1 FROM function_versions
                     WHERE namespace = ?1 AND name = ?2 AND version = ?3",
                    params![alias.namespace, alias.function, number(n)],
                    |r| r.get(0),
                )
                .optional()?,
            Err(_) => None,
        };
        if found.is_none() {
            return Err(StoreError::NotFound(format!(
                "Function not found: {}:{version}",
                alias.function
            )));
        }
    }
    Ok(())
}

impl SqliteStore {
    pub(super) fn versions_publish(
        &self,
        rec: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<FunctionRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let current: Option<(String, i64)> = tx
            .query_row(
                "SELECT revision_id, last_version FROM functions
                 WHERE namespace = ?1 AND name = ?2",
                params![rec.namespace, rec.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((revision_id, last)) = current else {
            return Err(StoreError::NotFound(format!(
                "Function not found: {}",
                rec.name
            )));
        };
        if revision_id != expected_revision {
            return Err(StoreError::Precondition(
                "The function changed since it was read; publish again".into(),
            ));
        }
        let newest: Option<String> = tx
            .query_row(
                "SELECT record FROM function_versions WHERE namespace = ?1 AND name = ?2
                 ORDER BY version DESC LIMIT 1",
                params![rec.namespace, rec.name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(newest) = newest {
            let newest: FunctionRecord = serde_json::from_str(&newest)?;
            if newest.same_config(rec) {
                return Ok(newest);
            }
        }
        let held: i64 = tx.query_row(
            "SELECT COUNT(*) FROM function_versions WHERE namespace = ?1 AND name = ?2",
            params![rec.namespace, rec.name],
            |r| r.get(0),
        )?;
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
             VALUES (?1, ?2, ?3, ?4)",
            params![
                rec.namespace,
                rec.name,
                version,
                serde_json::to_string(&published)?
            ],
        )?;
        tx.execute(
            "UPDATE functions SET last_version = ?3 WHERE namespace = ?1 AND name = ?2",
            params![rec.namespace, rec.name, version],
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
        let json: Option<String> = self
            .lock()
            .query_row(
                "SELECT record FROM function_versions
                 WHERE namespace = ?1 AND name = ?2 AND version = ?3",
                params![namespace, name, number(version)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    pub(super) fn versions_list(
        &self,
        namespace: &str,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT record FROM function_versions
             WHERE namespace = ?1 AND name = ?2 AND version > ?3
             ORDER BY version LIMIT ?4",
        )?;
        records(
            &mut stmt,
            params![
                namespace,
                name,
                number(after),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    pub(super) fn versions_delete(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let label = version.to_string();
        let aliases = {
            let mut stmt = tx.prepare_cached(
                "SELECT record FROM function_aliases WHERE namespace = ?1 AND function = ?2",
            )?;
            records::<AliasRecord>(&mut stmt, params![namespace, name])?
        };
        if let Some(alias) = aliases.iter().find(|a| a.versions().any(|v| v == label)) {
            return Err(StoreError::Conflict(format!(
                "Unable to delete version because the following aliases reference it: [{}]",
                alias.name
            )));
        }
        let n = tx.execute(
            "DELETE FROM function_versions WHERE namespace = ?1 AND name = ?2 AND version = ?3",
            params![namespace, name, number(version)],
        )?;
        tx.execute(
            "DELETE FROM provisioned_concurrency
             WHERE namespace = ?1 AND name = ?2 AND qualifier = ?3",
            params![namespace, name, label],
        )?;
        tx.execute(
            "DELETE FROM event_invoke_configs
             WHERE namespace = ?1 AND function = ?2 AND qualifier = ?3",
            params![namespace, name, label],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    pub(super) fn aliases_create(&self, alias: &AliasRecord) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        check_targets(&tx, alias)?;
        let held: i64 = tx.query_row(
            "SELECT COUNT(*) FROM function_aliases WHERE namespace = ?1 AND function = ?2",
            params![alias.namespace, alias.function],
            |r| r.get(0),
        )?;
        if held >= i64::try_from(limits::ALIASES_PER_FUNCTION).unwrap_or(i64::MAX) {
            return Err(StoreError::LimitExceeded(format!(
                "Function {} already has {held} aliases, the most tern keeps per function; delete one (DeleteAlias) to create another",
                alias.function
            )));
        }
        let inserted = tx.execute(
            "INSERT INTO function_aliases (namespace, function, name, record)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
            params![
                alias.namespace,
                alias.function,
                alias.name,
                serde_json::to_string(alias)?
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
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let current: Option<String> = tx
            .query_row(
                "SELECT record FROM function_aliases
                 WHERE namespace = ?1 AND function = ?2 AND name = ?3",
                params![alias.namespace, alias.function, alias.name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(current) = current else {
            return Err(StoreError::NotFound(format!(
                "Alias not found: {}",
                alias.name
            )));
        };
        let current: AliasRecord = serde_json::from_str(&current)?;
        if current.revision_id != expected_revision {
            return Err(StoreError::Precondition(
                tern_core::function::STALE_REVISION.into(),
            ));
        }
        check_targets(&tx, alias)?;
        tx.execute(
            "UPDATE function_aliases SET record = ?4
             WHERE namespace = ?1 AND function = ?2 AND name = ?3",
            params![
                alias.namespace,
                alias.function,
                alias.name,
                serde_json::to_string(alias)?
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
        let json: Option<String> = self
            .lock()
            .query_row(
                "SELECT record FROM function_aliases
                 WHERE namespace = ?1 AND function = ?2 AND name = ?3",
                params![namespace, function, name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    pub(super) fn aliases_list(
        &self,
        namespace: &str,
        function: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT record FROM function_aliases
             WHERE namespace = ?1 AND function = ?2 AND name > ?3
             ORDER BY name LIMIT ?4",
        )?;
        records(
            &mut stmt,
            params![
                namespace,
                function,
                after.unwrap_or(""),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
        )
    }

    pub(super) fn aliases_delete(
        &self,
        namespace: &str,
        function: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM function_aliases WHERE namespace = ?1 AND function = ?2 AND name = ?3",
            params![namespace, function, name],
        )?;
        tx.execute(
            "DELETE FROM provisioned_concurrency
             WHERE namespace = ?1 AND name = ?2 AND qualifier = ?3",
            params![namespace, function, name],
        )?;
        for table in ["event_invoke_configs", "function_urls"] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE namespace = ?1 AND function = ?2 AND qualifier = ?3"
                ),
                params![namespace, function, name],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }
}
