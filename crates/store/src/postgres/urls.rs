//! Function URLs of the PostgreSQL store (schema migration 6): one row per (namespace,
//! function, qualifier), found by its URL id as well; the record as JSON.

use tern_core::function_url::FunctionUrlRecord;

use super::{affected, PostgresStore};
use crate::store::StoreError;

fn decode(row: &postgres::Row) -> Result<FunctionUrlRecord, StoreError> {
    Ok(serde_json::from_str(row.try_get::<_, &str>(0)?)?)
}

impl PostgresStore {
    pub(super) fn urls_create(&self, rec: &FunctionUrlRecord) -> Result<(), StoreError> {
        let inserted = self.client()?.execute(
            "INSERT INTO function_urls (url_id, namespace, function, qualifier, record)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &rec.url_id,
                &rec.namespace,
                &rec.function,
                &rec.qualifier,
                &serde_json::to_string(rec)?,
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "FunctionUrlConfig exists for this Lambda function ({}:{})",
                rec.function, rec.qualifier
            )));
        }
        Ok(())
    }

    pub(super) fn urls_update(&self, rec: &FunctionUrlRecord) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let row = tx.query_opt(
            "SELECT url_id FROM function_urls
             WHERE namespace = $1 AND function = $2 AND qualifier = $3 FOR UPDATE",
            &[&rec.namespace, &rec.function, &rec.qualifier],
        )?;
        let Some(row) = row else { return Ok(false) };
        let id: String = row.try_get(0)?;
        let kept = FunctionUrlRecord {
            url_id: id.clone(),
            ..rec.clone()
        };
        tx.execute(
            "UPDATE function_urls SET record = $2 WHERE url_id = $1",
            &[&id, &serde_json::to_string(&kept)?],
        )?;
        tx.commit()?;
        Ok(true)
    }

    pub(super) fn urls_get(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionUrlRecord>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT record FROM function_urls
             WHERE namespace = $1 AND function = $2 AND qualifier = $3",
            &[&namespace, &function, &qualifier],
        )?;
        row.as_ref().map(decode).transpose()
    }

    pub(super) fn urls_get_by_id(
        &self,
        url_id: &str,
    ) -> Result<Option<FunctionUrlRecord>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT record FROM function_urls WHERE url_id = $1",
            &[&url_id],
        )?;
        row.as_ref().map(decode).transpose()
    }

    pub(super) fn urls_list(
        &self,
        namespace: &str,
        function: &str,
    ) -> Result<Vec<FunctionUrlRecord>, StoreError> {
        let rows = self.client()?.query(
            "SELECT record FROM function_urls WHERE namespace = $1 AND function = $2
             ORDER BY qualifier",
            &[&namespace, &function],
        )?;
        rows.iter().map(decode).collect()
    }

    pub(super) fn urls_delete(
        &self,
        namespace: &str,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<usize, StoreError> {
        let n = match qualifier {
            Some(q) => self.client()?.execute(
                "DELETE FROM function_urls
                 WHERE namespace = $1 AND function = $2 AND qualifier = $3",
                &[&namespace, &function, &q],
            )?,
            None => self.client()?.execute(
                "DELETE FROM function_urls WHERE namespace = $1 AND function = $2",
                &[&namespace, &function],
            )?,
        };
        Ok(affected(n))
    }
}
