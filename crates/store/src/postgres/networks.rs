//! The private networks of the PostgreSQL store (schema migration 5): one row per
//! network, the record as JSON.

use tern_core::network::NetworkRecord;

use super::PostgresStore;
use crate::store::StoreError;

impl PostgresStore {
    pub(super) fn networks_create(&self, network: &NetworkRecord) -> Result<(), StoreError> {
        let inserted = self.client()?.execute(
            "INSERT INTO networks (name, record) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&network.name, &serde_json::to_string(network)?],
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
        let updated = self.client()?.execute(
            "UPDATE networks SET record = $2 WHERE name = $1",
            &[&network.name, &serde_json::to_string(network)?],
        )?;
        Ok(updated > 0)
    }

    pub(super) fn networks_get(&self, name: &str) -> Result<Option<NetworkRecord>, StoreError> {
        let row = self
            .client()?
            .query_opt("SELECT record FROM networks WHERE name = $1", &[&name])?;
        match row {
            Some(row) => Ok(Some(serde_json::from_str(row.try_get::<_, &str>(0)?)?)),
            None => Ok(None),
        }
    }

    pub(super) fn networks_list(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let rows = self
            .client()?
            .query("SELECT record FROM networks ORDER BY name", &[])?;
        rows.iter()
            .map(|row| Ok(serde_json::from_str(row.try_get::<_, &str>(0)?)?))
            .collect()
    }

    pub(super) fn networks_delete(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .client()?
            .execute("DELETE FROM networks WHERE name = $1", &[&name])?
            > 0)
    }
}
