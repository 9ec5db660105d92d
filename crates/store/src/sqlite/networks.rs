//! The private networks of the SQLite store (schema migration 5): one row per network,
//! the record as JSON.

use rusqlite::{params, OptionalExtension};
use tern_core::network::NetworkRecord;

use super::SqliteStore;
use crate::store::StoreError;

impl SqliteStore {
    pub(super) fn networks_create(&self, network: &NetworkRecord) -> Result<(), StoreError> {
        let inserted = self.lock().execute(
            "INSERT INTO networks (name, record) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            params![network.name, serde_json::to_string(network)?],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "Network already exists: {}",
                network.name
            )));
        }
        Ok(())
    }

    pub(super) fn networks_update(&self, network: &NetworkRecord) -> Result<bool, StoreError> {
        let updated = self.lock().execute(
            "UPDATE networks SET record = ?2 WHERE name = ?1",
            params![network.name, serde_json::to_string(network)?],
        )?;
        Ok(updated > 0)
    }

    pub(super) fn networks_get(&self, name: &str) -> Result<Option<NetworkRecord>, StoreError> {
        let json: Option<String> = self
            .lock()
            .query_row(
                "SELECT record FROM networks WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
    }

    pub(super) fn networks_list(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT record FROM networks ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(serde_json::from_str(&json?)?);
        }
        Ok(out)
    }

    pub(super) fn networks_delete(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .execute("DELETE FROM networks WHERE name = ?1", params![name])?
            > 0)
    }
}
