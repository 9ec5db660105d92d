//! Schedules on PostgreSQL (schema migration 6), shared by every server of a cluster.
//! A fire step is one transaction: the compare-and-set update takes the schedule's row
//! lock, so a second server firing the same slot waits for the first, then finds
//! `next_slot_ms` moved and changes nothing; the slot's event is inserted by the
//! queue's own insert in the same transaction.

use postgres::Row;
use tern_core::schedule::ScheduleRecord;

use super::events::insert_events;
use super::{to_i64, PostgresStore};
use crate::schedules::{ScheduleAdvance, StoredSchedule};
use crate::store::StoreError;

const COLUMNS: &str = "record, next_slot_ms, last_slot_ms";

fn decode(row: &Row) -> Result<StoredSchedule, StoreError> {
    Ok(StoredSchedule {
        record: serde_json::from_str(row.try_get::<_, &str>(0)?)?,
        next_slot_ms: row.try_get(1)?,
        last_slot_ms: row.try_get(2)?,
    })
}

impl PostgresStore {
    pub(super) fn schedules_create(&self, s: &StoredSchedule) -> Result<(), StoreError> {
        let r = &s.record;
        let inserted = self.client()?.execute(
            "INSERT INTO schedules (namespace, name, function, enabled, next_slot_ms,
                last_slot_ms, record)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &r.namespace,
                &r.name,
                &r.function,
                &r.enabled,
                &s.next_slot_ms,
                &s.last_slot_ms,
                &serde_json::to_string(r)?,
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
        let row = self.client()?.query_opt(
            &format!("SELECT {COLUMNS} FROM schedules WHERE namespace = $1 AND name = $2"),
            &[&namespace, &name],
        )?;
        row.as_ref().map(decode).transpose()
    }

    pub(super) fn schedules_list(
        &self,
        namespace: &str,
    ) -> Result<Vec<StoredSchedule>, StoreError> {
        let rows = self.client()?.query(
            &format!("SELECT {COLUMNS} FROM schedules WHERE namespace = $1 ORDER BY name"),
            &[&namespace],
        )?;
        rows.iter().map(decode).collect()
    }

    pub(super) fn schedules_delete(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.client()?.execute(
            "DELETE FROM schedules WHERE namespace = $1 AND name = $2",
            &[&namespace, &name],
        )? > 0)
    }

    pub(super) fn schedules_update(
        &self,
        r: &ScheduleRecord,
        next_slot_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let current = tx.query_opt(
            "SELECT record FROM schedules WHERE namespace = $1 AND name = $2 FOR UPDATE",
            &[&r.namespace, &r.name],
        )?;
        let same = match current {
            Some(row) => {
                let json: String = row.try_get(0)?;
                serde_json::from_str::<ScheduleRecord>(&json)?.created_ms == r.created_ms
            }
            None => false,
        };
        if !same {
            return Ok(false);
        }
        tx.execute(
            "UPDATE schedules SET function = $3, enabled = $4, record = $5,
                next_slot_ms = CASE WHEN last_slot_ms IS NULL OR $6::int8 > last_slot_ms
                                    THEN $6::int8 END
             WHERE namespace = $1 AND name = $2",
            &[
                &r.namespace,
                &r.name,
                &r.function,
                &r.enabled,
                &serde_json::to_string(r)?,
                &next_slot_ms,
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
        let rows = self.client()?.query(
            &format!(
                "SELECT {COLUMNS} FROM schedules
                 WHERE enabled AND next_slot_ms <= $1 ORDER BY next_slot_ms LIMIT $2"
            ),
            &[&now_ms, &to_i64(limit)],
        )?;
        rows.iter().map(decode).collect()
    }

    pub(super) fn schedules_earliest(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .client()?
            .query_one("SELECT MIN(next_slot_ms) FROM schedules WHERE enabled", &[])?
            .try_get(0)?)
    }

    pub(super) fn schedules_advance(
        &self,
        step: &ScheduleAdvance,
        dedupe_since_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let moved = tx.execute(
            "UPDATE schedules SET next_slot_ms = $4, last_slot_ms = $5
             WHERE namespace = $1 AND name = $2 AND enabled AND next_slot_ms = $3
               AND (last_slot_ms IS NULL OR last_slot_ms < $5)",
            &[
                &step.namespace,
                &step.name,
                &step.from_slot_ms,
                &step.next_slot_ms,
                &step.last_slot_ms,
            ],
        )?;
        if moved == 0 {
            return Ok(false);
        }
        if let Some(event) = &step.event {
            insert_events(&mut tx, std::slice::from_ref(event), dedupe_since_ms)?;
        }
        tx.commit()?;
        Ok(true)
    }
}
