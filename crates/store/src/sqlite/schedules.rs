//! Schedules on SQLite (schema migration 6): the record as JSON, the firing state in
//! columns. A fire step is one transaction (fsynced, as an enqueue is) that moves the
//! schedule on by compare-and-set and inserts the slot's event with the queue's insert.

use rusqlite::{params, OptionalExtension, Row};
use tern_core::schedule::ScheduleRecord;

use super::events::insert_events;
use super::SqliteStore;
use crate::schedules::{ScheduleAdvance, StoredSchedule};
use crate::store::StoreError;

const COLUMNS: &str = "record, next_slot_ms, last_slot_ms";

fn columns(r: &Row<'_>) -> rusqlite::Result<(String, Option<i64>, Option<i64>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn decode(
    (record, next_slot_ms, last_slot_ms): (String, Option<i64>, Option<i64>),
) -> Result<StoredSchedule, StoreError> {
    Ok(StoredSchedule {
        record: serde_json::from_str(&record)?,
        next_slot_ms,
        last_slot_ms,
    })
}

impl SqliteStore {
    pub(super) fn schedules_create(&self, s: &StoredSchedule) -> Result<(), StoreError> {
        let r = &s.record;
        let inserted = self.lock().execute(
            "INSERT INTO schedules (namespace, name, function, enabled, next_slot_ms,
                last_slot_ms, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            params![
                r.namespace,
                r.name,
                r.function,
                r.enabled,
                s.next_slot_ms,
                s.last_slot_ms,
                serde_json::to_string(r)?
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "Schedule already exists: {}",
                r.name
            )));
        }
        Ok(())
    }

    pub(super) fn schedules_get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        let row = self
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM schedules WHERE namespace = ?1 AND name = ?2"),
                params![namespace, name],
                columns,
            )
            .optional()?;
        row.map(decode).transpose()
    }

    pub(super) fn schedules_list(
        &self,
        namespace: &str,
    ) -> Result<Vec<StoredSchedule>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM schedules WHERE namespace = ?1 ORDER BY name"
        ))?;
        let rows = stmt.query_map(params![namespace], columns)?;
        rows.map(|r| decode(r?)).collect()
    }

    pub(super) fn schedules_delete(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.lock().execute(
            "DELETE FROM schedules WHERE namespace = ?1 AND name = ?2",
            params![namespace, name],
        )? > 0)
    }

    pub(super) fn schedules_update(
        &self,
        r: &ScheduleRecord,
        next_slot_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let current: Option<String> = tx
            .query_row(
                "SELECT record FROM schedules WHERE namespace = ?1 AND name = ?2",
                params![r.namespace, r.name],
                |row| row.get(0),
            )
            .optional()?;
        let same = match current {
            Some(json) => serde_json::from_str::<ScheduleRecord>(&json)?.created_ms == r.created_ms,
            None => false,
        };
        if !same {
            return Ok(false);
        }
        tx.execute(
            "UPDATE schedules SET function = ?3, enabled = ?4, record = ?5,
                next_slot_ms = CASE WHEN last_slot_ms IS NULL OR ?6 > last_slot_ms
                                    THEN ?6 END
             WHERE namespace = ?1 AND name = ?2",
            params![
                r.namespace,
                r.name,
                r.function,
                r.enabled,
                serde_json::to_string(r)?,
                next_slot_ms
            ],
        )?;
        tx.commit()?;
        Ok(true)
    }

    pub(super) fn schedules_due(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredSchedule>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM schedules
             WHERE enabled = 1 AND next_slot_ms <= ?1 ORDER BY next_slot_ms LIMIT ?2"
        ))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![now_ms, limit], columns)?;
        rows.map(|r| decode(r?)).collect()
    }

    pub(super) fn schedules_earliest(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.lock().query_row(
            "SELECT MIN(next_slot_ms) FROM schedules WHERE enabled = 1",
            [],
            |r| r.get(0),
        )?)
    }

    pub(super) fn schedules_advance(
        &self,
        step: &ScheduleAdvance,
        dedupe_since_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        // A fired slot's event is an accepted event: fsynced like an enqueue.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let result = (|| -> Result<bool, StoreError> {
            let tx = conn.transaction()?;
            let moved = tx.execute(
                "UPDATE schedules SET next_slot_ms = ?4, last_slot_ms = ?5
                 WHERE namespace = ?1 AND name = ?2 AND enabled = 1 AND next_slot_ms = ?3
                   AND (last_slot_ms IS NULL OR last_slot_ms < ?5)",
                params![
                    step.namespace,
                    step.name,
                    step.from_slot_ms,
                    step.next_slot_ms,
                    step.last_slot_ms
                ],
            )?;
            if moved == 0 {
                return Ok(false);
            }
            if let Some(event) = &step.event {
                insert_events(&tx, std::slice::from_ref(event), dedupe_since_ms)?;
            }
            tx.commit()?;
            Ok(true)
        })();
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        result
    }
}
