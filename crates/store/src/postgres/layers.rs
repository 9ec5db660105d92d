//! The layer tables of the PostgreSQL store (schema migration 3). The next version
//! number comes from `layer_names` in the same transaction as the insert; the upsert
//! locks that row, so concurrent publishes of one layer take turns.

use tern_core::layer::{LayerStatement, LayerVersionRecord};

use super::{to_i64, to_u64, PostgresStore};
use crate::store::{StoreError, StoredLayerVersion};

impl PostgresStore {
    pub(super) fn layers_publish(
        &self,
        rec: &LayerVersionRecord,
        policy_revision: &str,
    ) -> Result<LayerVersionRecord, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let version: i64 = tx
            .query_one(
                "INSERT INTO layer_names (namespace, name, last_version) VALUES ($1, $2, 1)
                 ON CONFLICT (namespace, name) DO UPDATE
                    SET last_version = layer_names.last_version + 1
                 RETURNING last_version",
                &[&rec.namespace, &rec.name],
            )?
            .try_get(0)?;
        let mut stored = rec.clone();
        stored.version = to_u64(version);
        tx.execute(
            "INSERT INTO layer_versions
                (namespace, account, name, version, record, policy, policy_revision)
             VALUES ($1, $2, $3, $4, $5, '[]', $6)",
            &[
                &stored.namespace,
                &stored.account,
                &stored.name,
                &version,
                &serde_json::to_string(&stored)?,
                &policy_revision,
            ],
        )?;
        tx.commit()?;
        Ok(stored)
    }

    pub(super) fn layers_get(
        &self,
        account: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<StoredLayerVersion>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT record, policy, policy_revision FROM layer_versions
             WHERE account = $1 AND name = $2 AND version = $3",
            &[&account, &name, &to_i64(version)],
        )?;
        row.map(|r| {
            Ok(StoredLayerVersion {
                record: serde_json::from_str(r.try_get(0)?)?,
                statements: serde_json::from_str(r.try_get(1)?)?,
                policy_revision: r.try_get(2)?,
            })
        })
        .transpose()
    }

    pub(super) fn layers_list(
        &self,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<Vec<LayerVersionRecord>, StoreError> {
        let rows = self.client()?.query(
            "SELECT record FROM layer_versions
             WHERE namespace = $1 AND ($2::TEXT IS NULL OR name = $2)
             ORDER BY name, version DESC",
            &[&namespace, &name],
        )?;
        rows.iter()
            .map(|r| Ok(serde_json::from_str(r.try_get(0)?)?))
            .collect()
    }

    pub(super) fn layers_delete(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        let n = self.client()?.execute(
            "DELETE FROM layer_versions WHERE namespace = $1 AND name = $2 AND version = $3",
            &[&namespace, &name, &to_i64(version)],
        )?;
        Ok(n > 0)
    }

    pub(super) fn layers_put_policy(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
        statements: &[LayerStatement],
        expected: &str,
        new_revision: &str,
    ) -> Result<(), StoreError> {
        let policy = serde_json::to_string(statements)?;
        let n = self.client()?.execute(
            "UPDATE layer_versions SET policy = $1, policy_revision = $2
             WHERE namespace = $3 AND name = $4 AND version = $5 AND policy_revision = $6",
            &[
                &policy,
                &new_revision,
                &namespace,
                &name,
                &to_i64(version),
                &expected,
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(
                "The layer version's policy changed or the version was deleted; retry".into(),
            ));
        }
        Ok(())
    }
}
