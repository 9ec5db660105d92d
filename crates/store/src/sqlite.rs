//! The embedded store: one SQLite file in WAL mode.

mod events;
mod layers;
mod networks;
mod schedules;
mod urls;
mod versions;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use tern_core::function::{AliasRecord, FunctionRecord};
use tern_core::function_url::FunctionUrlRecord;
use tern_core::layer::{LayerStatement, LayerVersionRecord};
use tern_core::network::NetworkRecord;
use tern_core::schedule::ScheduleRecord;

use crate::events::{
    Attempt, ClaimedEvent, Enqueued, EventInvokeConfigRow, EventStatus, NewEvent, QueueDepth,
    QueueMessage, Settle,
};
use crate::schedules::{ScheduleAdvance, StoredSchedule};
use crate::schema::MIGRATIONS;
use crate::store::{AccessKey, LogLine, ProvisionedSetting, Store, StoreError, StoredLayerVersion};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // NORMAL: a commit survives the server's crash, and a power loss may take the
        // last ones. Enqueued events, which the server acknowledges with a 202, are
        // committed with FULL instead (see `events_enqueue`).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = SqliteStore {
            conn: Mutex::new(conn),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable; keep going.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn decode(record: String) -> Result<FunctionRecord, StoreError> {
    Ok(serde_json::from_str(&record)?)
}

impl Store for SqliteStore {
    fn create_function(&self, rec: &FunctionRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(rec)?;
        let conn = self.lock();
        let inserted = conn.execute(
            "INSERT INTO functions (namespace, name, revision_id, code_size, record)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            params![
                rec.namespace,
                rec.name,
                rec.revision_id,
                rec.code.size as i64,
                json
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "Function already exist: {}",
                rec.name
            )));
        }
        Ok(())
    }

    fn get_function(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<FunctionRecord>, StoreError> {
        let conn = self.lock();
        let row: Option<String> = conn
            .query_row(
                "SELECT record FROM functions WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
                |r| r.get(0),
            )
            .optional()?;
        row.map(decode).transpose()
    }

    fn update_function(
        &self,
        rec: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(rec)?;
        let conn = self.lock();
        let updated = conn.execute(
            "UPDATE functions SET revision_id = ?1, code_size = ?2, record = ?3
             WHERE namespace = ?4 AND name = ?5 AND revision_id = ?6",
            params![
                rec.revision_id,
                rec.code.size as i64,
                json,
                rec.namespace,
                rec.name,
                expected_revision
            ],
        )?;
        if updated == 0 {
            return Err(StoreError::Conflict(
                "The function was changed by another request; retry with the current RevisionId"
                    .into(),
            ));
        }
        Ok(())
    }

    fn delete_function(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM functions WHERE namespace = ?1 AND name = ?2",
            params![namespace, name],
        )?;
        for table in [
            "reserved_concurrency",
            "provisioned_concurrency",
            "function_versions",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE namespace = ?1 AND name = ?2"),
                params![namespace, name],
            )?;
        }
        for table in ["event_invoke_configs", "function_aliases", "function_urls"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE namespace = ?1 AND function = ?2"),
                params![namespace, name],
            )?;
        }
        // Its async events go with it, queued, finished or dead-lettered: a function of
        // the same name created later must not run them.
        tx.execute(
            "DELETE FROM async_attempts WHERE request_id IN (
                SELECT request_id FROM async_events WHERE namespace = ?1 AND function = ?2)",
            params![namespace, name],
        )?;
        // So do the schedules that target it: they could only fire into nothing.
        for table in ["async_events", "idempotency_keys", "schedules"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE namespace = ?1 AND function = ?2"),
                params![namespace, name],
            )?;
        }
        tx.commit()?;
        Ok(n > 0)
    }

    fn put_reserved_concurrency(
        &self,
        namespace: &str,
        name: &str,
        reserved: Option<u32>,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        match reserved {
            Some(n) => conn.execute(
                "INSERT INTO reserved_concurrency (namespace, name, reserved) VALUES (?1, ?2, ?3)
                 ON CONFLICT (namespace, name) DO UPDATE SET reserved = excluded.reserved",
                params![namespace, name, n],
            )?,
            None => conn.execute(
                "DELETE FROM reserved_concurrency WHERE namespace = ?1 AND name = ?2",
                params![namespace, name],
            )?,
        };
        Ok(())
    }

    fn list_reserved_concurrency(&self) -> Result<Vec<(String, String, u32)>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT namespace, name, reserved FROM reserved_concurrency")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_provisioned(&self, s: &ProvisionedSetting) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO provisioned_concurrency (namespace, name, qualifier, requested, last_modified_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (namespace, name, qualifier) DO UPDATE SET
                requested = excluded.requested, last_modified_ms = excluded.last_modified_ms",
            params![s.namespace, s.function, s.qualifier, s.requested, s.last_modified_ms],
        )?;
        Ok(())
    }

    fn delete_provisioned(
        &self,
        namespace: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        let conn = self.lock();
        let n = conn.execute(
            "DELETE FROM provisioned_concurrency WHERE namespace = ?1 AND name = ?2 AND qualifier = ?3",
            params![namespace, name, qualifier],
        )?;
        Ok(n > 0)
    }

    fn get_provisioned(
        &self,
        namespace: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<ProvisionedSetting>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT requested, last_modified_ms FROM provisioned_concurrency
                 WHERE namespace = ?1 AND name = ?2 AND qualifier = ?3",
                params![namespace, name, qualifier],
                |r| {
                    Ok(ProvisionedSetting {
                        namespace: namespace.to_string(),
                        function: name.to_string(),
                        qualifier: qualifier.to_string(),
                        requested: r.get(0)?,
                        last_modified_ms: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    fn list_provisioned(&self) -> Result<Vec<ProvisionedSetting>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT namespace, name, qualifier, requested, last_modified_ms FROM provisioned_concurrency
             ORDER BY namespace, name, qualifier",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ProvisionedSetting {
                namespace: r.get(0)?,
                function: r.get(1)?,
                qualifier: r.get(2)?,
                requested: r.get(3)?,
                last_modified_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn list_functions(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT record FROM functions WHERE namespace = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![namespace, after.unwrap_or(""), limit as i64], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|r| decode(r?)).collect()
    }

    fn list_all_functions(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        let conn = self.lock();
        let (namespace, name) = after.unwrap_or(("", ""));
        let mut stmt = conn.prepare_cached(
            "SELECT record FROM functions WHERE (namespace, name) > (?1, ?2)
             ORDER BY namespace, name LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![namespace, name, limit as i64], |r| {
            r.get::<_, String>(0)
        })?;
        rows.map(|r| decode(r?)).collect()
    }

    fn usage(&self, namespace: &str) -> Result<(u64, u64), StoreError> {
        let conn = self.lock();
        let (count, size): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(code_size), 0) FROM functions WHERE namespace = ?1",
            params![namespace],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((count.max(0) as u64, size.max(0) as u64))
    }

    fn put_access_key(&self, key: &AccessKey) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO access_keys (access_key_id, secret, namespace) VALUES (?1, ?2, ?3)
             ON CONFLICT (access_key_id) DO UPDATE SET secret = excluded.secret, namespace = excluded.namespace",
            params![key.access_key_id, key.secret, key.namespace],
        )?;
        Ok(())
    }

    fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT access_key_id, secret, namespace FROM access_keys WHERE access_key_id = ?1",
                params![access_key_id],
                |r| {
                    Ok(AccessKey {
                        access_key_id: r.get(0)?,
                        secret: r.get(1)?,
                        namespace: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO logs (namespace, function, request_id, ts_ms, line) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for l in lines {
                stmt.execute(params![
                    l.namespace,
                    l.function,
                    l.request_id,
                    l.ts_ms,
                    l.line
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn recent_logs(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT namespace, function, request_id, ts_ms, line FROM logs
             WHERE namespace = ?1 AND function = ?2 AND (?3 IS NULL OR request_id = ?3)
             ORDER BY id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![namespace, function, request_id, limit as i64],
            |r| {
                Ok(LogLine {
                    namespace: r.get(0)?,
                    function: r.get(1)?,
                    request_id: r.get(2)?,
                    ts_ms: r.get(3)?,
                    line: r.get(4)?,
                })
            },
        )?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    fn prune_logs(&self, before_ms: i64) -> Result<usize, StoreError> {
        let conn = self.lock();
        Ok(conn.execute("DELETE FROM logs WHERE ts_ms < ?1", params![before_ms])?)
    }

    fn publish_layer_version(
        &self,
        rec: &LayerVersionRecord,
        policy_revision: &str,
    ) -> Result<LayerVersionRecord, StoreError> {
        self.layers_publish(rec, policy_revision)
    }

    fn get_layer_version(
        &self,
        account: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<StoredLayerVersion>, StoreError> {
        self.layers_get(account, name, version)
    }

    fn list_layer_versions(
        &self,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<Vec<LayerVersionRecord>, StoreError> {
        self.layers_list(namespace, name)
    }

    fn delete_layer_version(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        self.layers_delete(namespace, name, version)
    }

    fn put_layer_policy(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
        statements: &[LayerStatement],
        expected: &str,
        new_revision: &str,
    ) -> Result<(), StoreError> {
        self.layers_put_policy(namespace, name, version, statements, expected, new_revision)
    }

    fn enqueue_events(
        &self,
        events: &[NewEvent],
        dedupe_since_ms: i64,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.events_enqueue(events, dedupe_since_ms)
    }

    fn claim_events(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
        skip_namespaces: &[String],
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        self.events_claim(owner, now_ms, lease_until_ms, limit, skip_namespaces)
    }

    fn renew_leases(&self, owner: &str, lease_until_ms: i64) -> Result<usize, StoreError> {
        let conn = self.lock();
        Ok(conn.execute(
            "UPDATE async_events SET lease_until_ms = ?2
             WHERE state = 'running' AND lease_owner = ?1",
            params![owner, lease_until_ms],
        )?)
    }

    fn abandon_leases(&self, except_owner: &str) -> Result<usize, StoreError> {
        let conn = self.lock();
        Ok(conn.execute(
            "UPDATE async_events SET lease_until_ms = 0
             WHERE state = 'running' AND lease_owner IS NOT ?1",
            params![except_owner],
        )?)
    }

    fn settle_event(
        &self,
        request_id: &str,
        owner: &str,
        attempts: &[Attempt],
        settle: &Settle,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.events_settle(request_id, owner, attempts, settle, now_ms)
    }

    fn get_event(&self, request_id: &str) -> Result<Option<EventStatus>, StoreError> {
        self.events_get(request_id)
    }

    fn list_dead_letters(
        &self,
        namespace: &str,
        function: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventStatus>, StoreError> {
        self.events_dead_letters(namespace, function, after, limit)
    }

    fn redrive_dead_letters(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        let conn = self.lock();
        Ok(conn.execute(
            "UPDATE async_events SET state = 'queued', dead_letter = 0, next_at_ms = ?4,
                function_attempts = 0, system_attempts = 0, lease_owner = NULL,
                lease_until_ms = 0, updated_ms = ?4, enqueued_ms = ?4
             WHERE dead_letter = 1 AND namespace = ?1 AND function = ?2
               AND (?3 IS NULL OR request_id = ?3)",
            params![namespace, function, request_id, now_ms],
        )?)
    }

    fn purge_dead_letters(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM async_attempts WHERE request_id IN (
                SELECT request_id FROM async_events WHERE dead_letter = 1 AND namespace = ?1
                   AND function = ?2 AND (?3 IS NULL OR request_id = ?3))",
            params![namespace, function, request_id],
        )?;
        let n = tx.execute(
            "DELETE FROM async_events WHERE dead_letter = 1 AND namespace = ?1
               AND function = ?2 AND (?3 IS NULL OR request_id = ?3)",
            params![namespace, function, request_id],
        )?;
        tx.commit()?;
        Ok(n)
    }

    fn prune_events(
        &self,
        before_ms: i64,
        dead_before_ms: i64,
        keys_before_ms: i64,
    ) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let gone = "SELECT request_id FROM async_events
             WHERE (state IN ('succeeded', 'failed', 'expired') AND dead_letter = 0
                    AND updated_ms < ?1)
                OR (dead_letter = 1 AND updated_ms < ?2)";
        tx.execute(
            &format!("DELETE FROM async_attempts WHERE request_id IN ({gone})"),
            params![before_ms, dead_before_ms],
        )?;
        let n = tx.execute(
            &format!("DELETE FROM async_events WHERE request_id IN ({gone})"),
            params![before_ms, dead_before_ms],
        )?;
        tx.execute(
            "DELETE FROM idempotency_keys WHERE created_ms < ?1",
            params![keys_before_ms],
        )?;
        tx.commit()?;
        Ok(n)
    }

    fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT namespace, COUNT(*), MIN(enqueued_ms) FROM async_events
             WHERE state IN ('queued', 'running', 'retrying')
             GROUP BY namespace ORDER BY namespace",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(QueueDepth {
                namespace: r.get(0)?,
                pending: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                oldest_enqueued_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn put_event_invoke_config(&self, row: &EventInvokeConfigRow) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO event_invoke_configs (namespace, function, qualifier, config, last_modified_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (namespace, function, qualifier) DO UPDATE SET
                config = excluded.config, last_modified_ms = excluded.last_modified_ms",
            params![row.namespace, row.function, row.qualifier, row.config, row.last_modified_ms],
        )?;
        Ok(())
    }

    fn get_event_invoke_config(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfigRow>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT config, last_modified_ms FROM event_invoke_configs
                 WHERE namespace = ?1 AND function = ?2 AND qualifier = ?3",
                params![namespace, function, qualifier],
                |r| {
                    Ok(EventInvokeConfigRow {
                        namespace: namespace.to_string(),
                        function: function.to_string(),
                        qualifier: qualifier.to_string(),
                        config: r.get(0)?,
                        last_modified_ms: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    fn delete_event_invoke_config(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        let conn = self.lock();
        let n = conn.execute(
            "DELETE FROM event_invoke_configs WHERE namespace = ?1 AND function = ?2 AND qualifier = ?3",
            params![namespace, function, qualifier],
        )?;
        Ok(n > 0)
    }

    fn list_event_invoke_configs(
        &self,
        namespace: &str,
        function: &str,
    ) -> Result<Vec<EventInvokeConfigRow>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT qualifier, config, last_modified_ms FROM event_invoke_configs
             WHERE namespace = ?1 AND function = ?2 ORDER BY qualifier",
        )?;
        let rows = stmt.query_map(params![namespace, function], |r| {
            Ok(EventInvokeConfigRow {
                namespace: namespace.to_string(),
                function: function.to_string(),
                qualifier: r.get(0)?,
                config: r.get(1)?,
                last_modified_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn push_queue_message(
        &self,
        namespace: &str,
        queue: &str,
        body: &str,
        ts_ms: i64,
    ) -> Result<i64, StoreError> {
        let conn = self.lock();
        Ok(conn.query_row(
            "INSERT INTO queue_messages (namespace, queue, body, ts_ms) VALUES (?1, ?2, ?3, ?4)
             RETURNING id",
            params![namespace, queue, body, ts_ms],
            |r| r.get(0),
        )?)
    }

    fn read_queue_messages(
        &self,
        namespace: &str,
        queue: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT id, body, ts_ms FROM queue_messages
             WHERE namespace = ?1 AND queue = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                namespace,
                queue,
                after_id,
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(QueueMessage {
                    id: r.get(0)?,
                    namespace: namespace.to_string(),
                    queue: queue.to_string(),
                    body: r.get(1)?,
                    ts_ms: r.get(2)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn delete_queue_messages(
        &self,
        namespace: &str,
        queue: &str,
        up_to_id: i64,
    ) -> Result<usize, StoreError> {
        let conn = self.lock();
        Ok(conn.execute(
            "DELETE FROM queue_messages WHERE namespace = ?1 AND queue = ?2 AND id <= ?3",
            params![namespace, queue, up_to_id],
        )?)
    }

    fn publish_version(
        &self,
        rec: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<FunctionRecord, StoreError> {
        self.versions_publish(rec, expected_revision)
    }

    fn get_version(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<FunctionRecord>, StoreError> {
        self.versions_get(namespace, name, version)
    }

    fn list_versions(
        &self,
        namespace: &str,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        self.versions_list(namespace, name, after, limit)
    }

    fn delete_version(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<bool, StoreError> {
        self.versions_delete(namespace, name, version)
    }

    fn create_alias(&self, alias: &AliasRecord) -> Result<(), StoreError> {
        self.aliases_create(alias)
    }

    fn update_alias(&self, alias: &AliasRecord, expected_revision: &str) -> Result<(), StoreError> {
        self.aliases_update(alias, expected_revision)
    }

    fn get_alias(
        &self,
        namespace: &str,
        function: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError> {
        self.aliases_get(namespace, function, name)
    }

    fn list_aliases(
        &self,
        namespace: &str,
        function: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        self.aliases_list(namespace, function, after, limit)
    }

    fn delete_alias(
        &self,
        namespace: &str,
        function: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        self.aliases_delete(namespace, function, name)
    }

    fn create_network(&self, network: &NetworkRecord) -> Result<(), StoreError> {
        self.networks_create(network)
    }

    fn update_network(&self, network: &NetworkRecord) -> Result<bool, StoreError> {
        self.networks_update(network)
    }

    fn get_network(&self, name: &str) -> Result<Option<NetworkRecord>, StoreError> {
        self.networks_get(name)
    }

    fn list_networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        self.networks_list()
    }

    fn delete_network(&self, name: &str) -> Result<bool, StoreError> {
        self.networks_delete(name)
    }

    fn create_function_url(&self, rec: &FunctionUrlRecord) -> Result<(), StoreError> {
        self.urls_create(rec)
    }

    fn update_function_url(&self, rec: &FunctionUrlRecord) -> Result<bool, StoreError> {
        self.urls_update(rec)
    }

    fn get_function_url(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionUrlRecord>, StoreError> {
        self.urls_get(namespace, function, qualifier)
    }

    fn get_function_url_by_id(
        &self,
        url_id: &str,
    ) -> Result<Option<FunctionUrlRecord>, StoreError> {
        self.urls_get_by_id(url_id)
    }

    fn list_function_urls(
        &self,
        namespace: &str,
        function: &str,
    ) -> Result<Vec<FunctionUrlRecord>, StoreError> {
        self.urls_list(namespace, function)
    }

    fn delete_function_urls(
        &self,
        namespace: &str,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.urls_delete(namespace, function, qualifier)
    }

    fn create_schedule(&self, schedule: &StoredSchedule) -> Result<(), StoreError> {
        self.schedules_create(schedule)
    }

    fn get_schedule(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<StoredSchedule>, StoreError> {
        self.schedules_get(namespace, name)
    }

    fn list_schedules(&self, namespace: &str) -> Result<Vec<StoredSchedule>, StoreError> {
        self.schedules_list(namespace)
    }

    fn delete_schedule(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        self.schedules_delete(namespace, name)
    }

    fn update_schedule(
        &self,
        record: &ScheduleRecord,
        next_slot_ms: Option<i64>,
    ) -> Result<bool, StoreError> {
        self.schedules_update(record, next_slot_ms)
    }

    fn due_schedules(&self, now_ms: i64, limit: usize) -> Result<Vec<StoredSchedule>, StoreError> {
        self.schedules_due(now_ms, limit)
    }

    fn earliest_schedule_slot(&self) -> Result<Option<i64>, StoreError> {
        self.schedules_earliest()
    }

    fn advance_schedule(
        &self,
        step: &ScheduleAdvance,
        dedupe_since_ms: i64,
    ) -> Result<bool, StoreError> {
        self.schedules_advance(step, dedupe_since_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_core::function::CodeRef;

    fn record(name: &str) -> FunctionRecord {
        FunctionRecord {
            network: Default::default(),
            call_tern: false,
            networks: Vec::new(),
            namespace: "default".into(),
            name: name.into(),
            runtime: "python3.11".into(),
            handler: "app.handler".into(),
            role: String::new(),
            description: String::new(),
            memory_mb: 128,
            timeout_s: 3,
            tmp_mb: 512,
            env: Default::default(),
            architectures: vec!["x86_64".into()],
            tags: Default::default(),
            code: CodeRef {
                sha256_hex: "ab".into(),
                sha256_b64: "q=".into(),
                size: 10,
                unzipped_size: 0,
            },
            layers: Vec::new(),
            logging: Default::default(),
            tracing_mode: "PassThrough".into(),
            snap_start: false,
            version: tern_core::function::LATEST.to_string(),
            incarnation: "i1".into(),
            revision_id: "r1".into(),
            revision: 1,
            last_modified_ms: 0,
        }
    }

    #[test]
    fn create_conflicts_and_update_checks_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        store.create_function(&record("a")).unwrap();
        assert!(matches!(
            store.create_function(&record("a")),
            Err(StoreError::Conflict(_))
        ));
        let mut next = record("a");
        next.revision_id = "r2".into();
        store.update_function(&next, "r1").unwrap();
        assert!(matches!(
            store.update_function(&next, "r1"),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            store
                .get_function("default", "a")
                .unwrap()
                .unwrap()
                .revision_id,
            "r2"
        );
        assert!(store.delete_function("default", "a").unwrap());
        assert!(!store.delete_function("default", "a").unwrap());
    }

    #[test]
    fn list_pages_by_name_and_reopen_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = SqliteStore::open(&path).unwrap();
            for n in ["c", "a", "b"] {
                store.create_function(&record(n)).unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let first: Vec<_> = store.list_functions("default", None, 2).unwrap();
        assert_eq!(
            first.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let rest = store.list_functions("default", Some("b"), 2).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(store.usage("default").unwrap(), (3, 30));
    }

    #[test]
    fn list_all_pages_across_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        for (ns, n) in [
            ("zeta", "a"),
            ("default", "b"),
            ("default", "a"),
            ("alpha", "z"),
        ] {
            store
                .create_function(&FunctionRecord {
                    network: Default::default(),
                    call_tern: false,
                    networks: Vec::new(),
                    namespace: ns.into(),
                    ..record(n)
                })
                .unwrap();
        }
        let names = |page: Vec<FunctionRecord>| -> Vec<String> {
            page.iter()
                .map(|r| format!("{}/{}", r.namespace, r.name))
                .collect()
        };
        let first = store.list_all_functions(None, 3).unwrap();
        assert_eq!(names(first), ["alpha/z", "default/a", "default/b"]);
        let rest = store.list_all_functions(Some(("default", "b")), 3).unwrap();
        assert_eq!(names(rest), ["zeta/a"]);
    }

    #[test]
    fn logs_filter_by_request_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let line = |rid: &str, ts| LogLine {
            namespace: "default".into(),
            function: "f".into(),
            request_id: Some(rid.into()),
            ts_ms: ts,
            line: format!("line {rid}"),
        };
        store
            .append_logs(&[line("1", 10), line("2", 20), line("2", 30)])
            .unwrap();
        assert_eq!(
            store
                .recent_logs("default", "f", Some("2"), 10)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            store.recent_logs("default", "f", None, 2).unwrap()[0].ts_ms,
            20
        );
        assert_eq!(store.prune_logs(15).unwrap(), 1);
    }

    #[test]
    fn concurrency_settings_survive_reopen_and_go_with_the_function() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.create_function(&record("a")).unwrap();
            store
                .put_reserved_concurrency("default", "a", Some(5))
                .unwrap();
            store
                .put_provisioned(&ProvisionedSetting {
                    namespace: "default".into(),
                    function: "a".into(),
                    qualifier: "$LATEST".into(),
                    requested: 2,
                    last_modified_ms: 1,
                })
                .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.list_reserved_concurrency().unwrap(),
            vec![("default".to_string(), "a".to_string(), 5)]
        );
        assert_eq!(store.list_provisioned().unwrap()[0].requested, 2);
        let one = store.get_provisioned("default", "a", "$LATEST").unwrap();
        assert_eq!(one.map(|p| p.requested), Some(2));
        assert_eq!(
            store.get_provisioned("default", "b", "$LATEST").unwrap(),
            None
        );
        store
            .put_reserved_concurrency("default", "a", None)
            .unwrap();
        assert!(store.list_reserved_concurrency().unwrap().is_empty());
        store
            .put_reserved_concurrency("default", "a", Some(1))
            .unwrap();
        assert!(store.delete_function("default", "a").unwrap());
        assert!(store.list_reserved_concurrency().unwrap().is_empty());
        assert!(store.list_provisioned().unwrap().is_empty());
    }
}
