//! Where asynchronous results go: the event-invoke configurations of functions
//! (schema migration 4) and the tern-managed destination queues.

use super::{affected, to_i64, PostgresStore};
use crate::events::{EventInvokeConfigRow, QueueMessage};
use crate::store::StoreError;

/// Separates the advisory locks of queue appends from the migration lock's key space
/// (two-key advisory locks never collide with one-key ones).
const QUEUE_LOCK_CLASS: i32 = 0x7465_726e; // "tern"

impl PostgresStore {
    pub(super) fn configs_put(&self, row: &EventInvokeConfigRow) -> Result<(), StoreError> {
        self.client()?.execute(
            "INSERT INTO event_invoke_configs
                (namespace, function, qualifier, config, last_modified_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (namespace, function, qualifier) DO UPDATE SET
                config = excluded.config, last_modified_ms = excluded.last_modified_ms",
            &[
                &row.namespace,
                &row.function,
                &row.qualifier,
                &row.config,
                &row.last_modified_ms,
            ],
        )?;
        Ok(())
    }

    pub(super) fn configs_get(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfigRow>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT config, last_modified_ms FROM event_invoke_configs
             WHERE namespace = $1 AND function = $2 AND qualifier = $3",
            &[&namespace, &function, &qualifier],
        )?;
        row.map(|r| {
            Ok(EventInvokeConfigRow {
                namespace: namespace.to_string(),
                function: function.to_string(),
                qualifier: qualifier.to_string(),
                config: r.try_get(0)?,
                last_modified_ms: r.try_get(1)?,
            })
        })
        .transpose()
    }

    pub(super) fn configs_delete(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        let n = self.client()?.execute(
            "DELETE FROM event_invoke_configs
             WHERE namespace = $1 AND function = $2 AND qualifier = $3",
            &[&namespace, &function, &qualifier],
        )?;
        Ok(n > 0)
    }

    pub(super) fn configs_list(
        &self,
        namespace: &str,
        function: &str,
    ) -> Result<Vec<EventInvokeConfigRow>, StoreError> {
        let rows = self.client()?.query(
            "SELECT qualifier, config, last_modified_ms FROM event_invoke_configs
             WHERE namespace = $1 AND function = $2 ORDER BY qualifier",
            &[&namespace, &function],
        )?;
        rows.iter()
            .map(|r| {
                Ok(EventInvokeConfigRow {
                    namespace: namespace.to_string(),
                    function: function.to_string(),
                    qualifier: r.try_get(0)?,
                    config: r.try_get(1)?,
                    last_modified_ms: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub(super) fn queue_push(
        &self,
        namespace: &str,
        queue: &str,
        body: &str,
        ts_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // Appends to one queue take turns, so ids commit in increasing order and a
        // reader past id n never misses a later-committed record with a smaller id.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2::TEXT || '/' || $3::TEXT))",
            &[&QUEUE_LOCK_CLASS, &namespace, &queue],
        )?;
        let row = tx.query_one(
            "INSERT INTO queue_messages (namespace, queue, body, ts_ms) VALUES ($1, $2, $3, $4)
             RETURNING id",
            &[&namespace, &queue, &body, &ts_ms],
        )?;
        let id = row.try_get(0)?;
        tx.commit()?;
        Ok(id)
    }

    pub(super) fn queue_read(
        &self,
        namespace: &str,
        queue: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let rows = self.client()?.query(
            "SELECT id, body, ts_ms FROM queue_messages
             WHERE namespace = $1 AND queue = $2 AND id > $3 ORDER BY id LIMIT $4",
            &[&namespace, &queue, &after_id, &to_i64(limit)],
        )?;
        rows.iter()
            .map(|r| {
                Ok(QueueMessage {
                    id: r.try_get(0)?,
                    namespace: namespace.to_string(),
                    queue: queue.to_string(),
                    body: r.try_get(1)?,
                    ts_ms: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub(super) fn queue_delete(
        &self,
        namespace: &str,
        queue: &str,
        up_to_id: i64,
    ) -> Result<usize, StoreError> {
        let n = self.client()?.execute(
            "DELETE FROM queue_messages WHERE namespace = $1 AND queue = $2 AND id <= $3",
            &[&namespace, &queue, &up_to_id],
        )?;
        Ok(affected(n))
    }
}
