//! Function URLs of the SQLite store (schema migration 6): one row per (namespace,
//! function, qualifier), found by its URL id as well; the record as JSON.

use rusqlite::{params, OptionalExtension};
use tern_core::function_url::FunctionUrlRecord;

use super::SqliteStore;
use crate::store::StoreError;

fn decode(json: &str) -> Result<FunctionUrlRecord, StoreError> {
    Ok(serde_json::from_str(json)?)
}

impl SqliteStore {
    pub(super) fn urls_create(&self, rec: &FunctionUrlRecord) -> Result<(), StoreError> {
        let inserted = self.lock().execute(
            "INSERT INTO function_urls (url_id, namespace, function, qualifier, record)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![
                rec.url_id,
                rec.namespace,
                rec.function,
                rec.qualifier,
                serde_json::to_string(rec)?
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
        let conn = self.lock();
        let id: Option<String> = conn
            .query_row(
                "SELECT url_id FROM function_urls
                 WHERE namespace = ?1 AND function = ?2 AND qualifier = ?3",
                params![rec.namespace, rec.function, rec.qualifier],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else { return Ok(false) };
        let kept = FunctionUrlRecord {
            url_id: id.clone(),
            ..rec.clone()
        };
        conn.execute(
            "UPDATE function_urls SET record = ?2 WHERE url_id = ?1",
            params![id, serde_json::to_string(&kept)?],
        )?;
        Ok(true)
    }

    pub(super) fn urls_get(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionUrlRecord>, StoreError> {
        let json: Option<String> = self
            .lock()
            .query_row(
                "SELECT record FROM function_urls
                 WHERE namespace = ?1 AND function = ?2 AND qualifier = ?3",
                params![namespace, function, qualifier],
                |r| r.get(0),
            )
            .optional()?;
        json.as_deref().map(decode).transpose()
    }

    pub(super) fn urls_get_by_id(
        &self,
        url_id: &str,
    ) -> Result<Option<FunctionUrlRecord>, StoreError> {
        let json: Option<String> = self
            .lock()
            .query_row(
                "SELECT record FROM function_urls WHERE url_id = ?1",
                params![url_id],
                |r| r.get(0),
            )
            .optional()?;
        json.as_deref().map(decode).transpose()
    }

    pub(super) fn urls_list(
        &self,
        namespace: &str,
        function: &str,
    ) -> Result<Vec<FunctionUrlRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT record FROM function_urls WHERE namespace = ?1 AND function = ?2
             ORDER BY qualifier",
        )?;
        let rows = stmt.query_map(params![namespace, function], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for json in rows {
            out.push(decode(&json?)?);
        }
        Ok(out)
    }

    pub(super) fn urls_delete(
        &self,
        namespace: &str,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<usize, StoreError> {
        let conn = self.lock();
        Ok(match qualifier {
            Some(q) => conn.execute(
                "DELETE FROM function_urls
                 WHERE namespace = ?1 AND function = ?2 AND qualifier = ?3",
                params![namespace, function, q],
            )?,
            None => conn.execute(
                "DELETE FROM function_urls WHERE namespace = ?1 AND function = ?2",
                params![namespace, function],
            )?,
        })
    }
}
