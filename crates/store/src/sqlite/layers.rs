//! The layer tables of the SQLite store (schema migration 3). Plain SQL that
//! PostgreSQL runs as well: the next version number comes from `layer_names` inside the
//! same transaction as the insert.

use rusqlite::{params, OptionalExtension};
use tern_core::layer::{LayerStatement, LayerVersionRecord};

use super::SqliteStore;
use crate::store::{StoreError, StoredLayerVersion};

fn version_i64(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

impl SqliteStore {
    pub(super) fn layers_publish(
        &self,
        rec: &LayerVersionRecord,
        policy_revision: &str,
    ) -> Result<LayerVersionRecord, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let version: i64 = tx.query_row(
            "INSERT INTO layer_names (namespace, name, last_version) VALUES (?1, ?2, 1)
             ON CONFLICT (namespace, name) DO UPDATE SET last_version = layer_names.last_version + 1
             RETURNING last_version",
            params![rec.namespace, rec.name],
            |r| r.get(0),
        )?;
        let mut stored = rec.clone();
        stored.version = u64::try_from(version).unwrap_or(0);
        tx.execute(
            "INSERT INTO layer_versions (namespace, account, name, version, record, policy, policy_revision)
             VALUES (?1, ?2, ?3, ?4, ?5, '[]', ?6)",
            params![
                stored.namespace,
                stored.account,
                stored.name,
                version,
                serde_json::to_string(&stored)?,
                policy_revision
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
        let conn = self.lock();
        let row: Option<(String, String, String)> = conn
            .query_row(
                "SELECT record, policy, policy_revision FROM layer_versions
                 WHERE account = ?1 AND name = ?2 AND version = ?3",
                params![account, name, version_i64(version)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        row.map(|(record, policy, policy_revision)| {
            Ok(StoredLayerVersion {
                record: serde_json::from_str(&record)?,
                statements: serde_json::from_str(&policy)?,
                policy_revision,
            })
        })
        .transpose()
    }

    pub(super) fn layers_list(
        &self,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<Vec<LayerVersionRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT record FROM layer_versions
             WHERE namespace = ?1 AND (?2 IS NULL OR name = ?2)
             ORDER BY name, version DESC",
        )?;
        let rows = stmt.query_map(params![namespace, name], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    pub(super) fn layers_delete(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        let conn = self.lock();
        let n = conn.execute(
            "DELETE FROM layer_versions WHERE namespace = ?1 AND name = ?2 AND version = ?3",
            params![namespace, name, version_i64(version)],
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
        let conn = self.lock();
        let n = conn.execute(
            "UPDATE layer_versions SET policy = ?1, policy_revision = ?2
             WHERE namespace = ?3 AND name = ?4 AND version = ?5 AND policy_revision = ?6",
            params![
                policy,
                new_revision,
                namespace,
                name,
                version_i64(version),
                expected
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

#[cfg(test)]
mod tests {
    use crate::store::{Store, StoreError};
    use crate::SqliteStore;
    use tern_core::layer::{LayerStatement, LayerVersionRecord};

    fn layer(namespace: &str, name: &str, runtimes: &[&str]) -> LayerVersionRecord {
        LayerVersionRecord {
            namespace: namespace.into(),
            account: if namespace == "default" {
                "000000000000".into()
            } else {
                "111111111111".into()
            },
            name: name.into(),
            version: 0,
            description: String::new(),
            license_info: None,
            compatible_runtimes: runtimes.iter().map(|s| s.to_string()).collect(),
            compatible_architectures: vec![],
            sha256_hex: "ab".into(),
            sha256_b64: "q=".into(),
            size: 10,
            unzipped_size: 20,
            created_ms: 1,
        }
    }

    fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        (dir, store)
    }

    #[test]
    fn versions_count_up_per_layer_and_namespace_and_are_never_reused() {
        let (_d, store) = open();
        let v = |ns, name| {
            store
                .publish_layer_version(&layer(ns, name, &[]), "r")
                .unwrap()
                .version
        };
        assert_eq!(
            (v("default", "a"), v("default", "a"), v("default", "b")),
            (1, 2, 1)
        );
        assert_eq!(v("other", "a"), 1);
        assert!(store.delete_layer_version("default", "a", 2).unwrap());
        assert!(!store.delete_layer_version("default", "a", 2).unwrap());
        assert_eq!(
            v("default", "a"),
            3,
            "deleted version 2 is not handed out again"
        );
        assert!(store
            .get_layer_version("000000000000", "a", 2)
            .unwrap()
            .is_none());
        let got = store
            .get_layer_version("000000000000", "a", 3)
            .unwrap()
            .unwrap();
        assert_eq!((got.record.version, got.record.unzipped_size), (3, 20));
    }

    #[test]
    fn listing_is_by_name_then_newest_version_and_stays_in_its_namespace() {
        let (_d, store) = open();
        for (ns, name) in [
            ("default", "b"),
            ("default", "a"),
            ("default", "a"),
            ("other", "c"),
        ] {
            store
                .publish_layer_version(&layer(ns, name, &["python3.11"]), "r")
                .unwrap();
        }
        let all: Vec<(String, u64)> = store
            .list_layer_versions("default", None)
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.version))
            .collect();
        assert_eq!(all, [("a".into(), 2), ("a".into(), 1), ("b".into(), 1)]);
        assert_eq!(
            store
                .list_layer_versions("default", Some("b"))
                .unwrap()
                .len(),
            1
        );
        assert!(store
            .list_layer_versions("default", Some("c"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn policy_is_replaced_only_under_the_revision_it_was_read_at() {
        let (_d, store) = open();
        store
            .publish_layer_version(&layer("default", "a", &[]), "r0")
            .unwrap();
        let st = LayerStatement {
            statement_id: "s1".into(),
            action: "lambda:GetLayerVersion".into(),
            principal: "*".into(),
        };
        store
            .put_layer_policy("default", "a", 1, std::slice::from_ref(&st), "r0", "r1")
            .unwrap();
        assert!(matches!(
            store.put_layer_policy("default", "a", 1, &[], "r0", "r2"),
            Err(StoreError::Conflict(_))
        ));
        let got = store
            .get_layer_version("000000000000", "a", 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            (got.statements, got.policy_revision.as_str()),
            (vec![st], "r1")
        );
        store.delete_layer_version("default", "a", 1).unwrap();
        assert!(matches!(
            store.put_layer_policy("default", "a", 1, &[], "r1", "r2"),
            Err(StoreError::Conflict(_))
        ));
    }

    #[test]
    fn layers_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        SqliteStore::open(&path)
            .unwrap()
            .publish_layer_version(&layer("default", "a", &[]), "r")
            .unwrap();
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store
                .publish_layer_version(&layer("default", "a", &[]), "r")
                .unwrap()
                .version,
            2
        );
    }
}
