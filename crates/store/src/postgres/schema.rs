//! PostgreSQL schema migrations, applied in order; `tern_schema.version` records how
//! many. The same tables as SQLite's history (`crate::schema`), in PostgreSQL types.
//!
//! Names and keys are `COLLATE "C"` so that ordering and the `after` cursors of the
//! listings compare bytes, as SQLite does, whatever the database's locale.

use postgres::Client;

use crate::store::StoreError;

/// Held (per transaction) while migrations run, so two servers starting on one
/// database at once apply each migration once.
const MIGRATION_LOCK: i64 = 0x7465_726e_5f6d_6967; // "tern_mig"

pub const MIGRATIONS: &[&str] = &[
    // 1: functions, keys, meta, logs
    r#"CREATE TABLE functions (
        namespace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        revision_id TEXT NOT NULL,
        code_size BIGINT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (namespace, name)
     );
     CREATE TABLE access_keys (
        access_key_id TEXT PRIMARY KEY,
        secret TEXT NOT NULL,
        namespace TEXT NOT NULL
     );
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE logs (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace TEXT NOT NULL,
        function TEXT NOT NULL,
        request_id TEXT,
        ts_ms BIGINT NOT NULL,
        line TEXT NOT NULL
     );
     CREATE INDEX logs_by_function ON logs (namespace, function, id);
     CREATE INDEX logs_by_time ON logs (ts_ms);"#,
    // 2: reserved and provisioned concurrency (apart from the function configuration:
    // changing them does not change the RevisionId)
    r#"CREATE TABLE reserved_concurrency (
        namespace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        reserved BIGINT NOT NULL,
        PRIMARY KEY (namespace, name)
     );
     CREATE TABLE provisioned_concurrency (
        namespace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        qualifier TEXT COLLATE "C" NOT NULL,
        requested BIGINT NOT NULL,
        last_modified_ms BIGINT NOT NULL,
        PRIMARY KEY (namespace, name, qualifier)
     );"#,
    // 3: layer versions; `layer_names` keeps the highest version ever published, so a
    // version number is never reused after a delete.
    r#"CREATE TABLE layer_names (
        namespace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        last_version BIGINT NOT NULL,
        PRIMARY KEY (namespace, name)
     );
     CREATE TABLE layer_versions (
        namespace TEXT COLLATE "C" NOT NULL,
        account TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        record TEXT NOT NULL,
        policy TEXT NOT NULL,
        policy_revision TEXT NOT NULL,
        PRIMARY KEY (namespace, name, version)
     );
     CREATE INDEX layer_versions_by_account ON layer_versions (account, name, version);"#,
    // 4: the asynchronous-invocation queue: pending (queued/running/retrying), then
    // finished, or a dead letter (kept until redriven or purged), with its attempts.
    // `async_events_pending` (not in SQLite's) keeps the queue depths every server
    // reads every 2 s from scanning the finished events.
    r#"CREATE TABLE async_events (
        request_id TEXT COLLATE "C" PRIMARY KEY,
        namespace TEXT COLLATE "C" NOT NULL,
        function TEXT COLLATE "C" NOT NULL,
        qualifier TEXT NOT NULL,
        payload BYTEA NOT NULL,
        enqueued_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        state TEXT NOT NULL,
        next_at_ms BIGINT NOT NULL,
        function_attempts BIGINT NOT NULL DEFAULT 0,
        system_attempts BIGINT NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until_ms BIGINT NOT NULL DEFAULT 0,
        dead_letter BOOLEAN NOT NULL DEFAULT FALSE,
        response BYTEA
     );
     CREATE INDEX async_events_due ON async_events (next_at_ms)
        WHERE state IN ('queued', 'retrying');
     CREATE INDEX async_events_running ON async_events (lease_until_ms)
        WHERE state = 'running';
     CREATE INDEX async_events_finished ON async_events (updated_ms)
        WHERE state IN ('succeeded', 'failed', 'expired') AND NOT dead_letter;
     CREATE INDEX async_events_dead ON async_events (namespace, function, request_id)
        WHERE dead_letter;
     CREATE INDEX async_events_pending ON async_events (namespace, enqueued_ms)
        WHERE state IN ('queued', 'running', 'retrying');
     CREATE TABLE async_attempts (
        request_id TEXT COLLATE "C" NOT NULL,
        n BIGINT NOT NULL,
        started_ms BIGINT NOT NULL,
        ended_ms BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        error_type TEXT,
        error_message TEXT,
        PRIMARY KEY (request_id, n)
     );
     CREATE TABLE idempotency_keys (
        namespace TEXT COLLATE "C" NOT NULL,
        function TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        request_id TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (namespace, function, key)
     );
     CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms);
     CREATE TABLE event_invoke_configs (
        namespace TEXT COLLATE "C" NOT NULL,
        function TEXT COLLATE "C" NOT NULL,
        qualifier TEXT COLLATE "C" NOT NULL,
        config TEXT NOT NULL,
        last_modified_ms BIGINT NOT NULL,
        PRIMARY KEY (namespace, function, qualifier)
     );
     CREATE TABLE queue_messages (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace TEXT COLLATE "C" NOT NULL,
        queue TEXT COLLATE "C" NOT NULL,
        body TEXT NOT NULL,
        ts_ms BIGINT NOT NULL
     );
     CREATE INDEX queue_messages_by_queue ON queue_messages (namespace, queue, id);"#,
    // 5: private networks (operator-defined, server-wide).
    r#"CREATE TABLE networks (
        name TEXT COLLATE "C" PRIMARY KEY,
        record TEXT NOT NULL
     );"#,
    // 6: versions and aliases (as in SQLite's migration 6), and the incarnation of the
    // function an event was queued for.
    r#"ALTER TABLE functions ADD COLUMN last_version BIGINT NOT NULL DEFAULT 0;
     CREATE TABLE function_versions (
        namespace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (namespace, name, version)
     );
     CREATE TABLE function_aliases (
        namespace TEXT COLLATE "C" NOT NULL,
        function TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (namespace, function, name)
     );
     ALTER TABLE async_events ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';"#,
    // 7: function URLs, one per (namespace, function, qualifier); the record as JSON.
    r#"CREATE TABLE function_urls (
        url_id TEXT COLLATE "C" PRIMARY KEY,
        namespace TEXT COLLATE "C" NOT NULL,
        function TEXT COLLATE "C" NOT NULL,
        qualifier TEXT COLLATE "C" NOT NULL,
        record TEXT NOT NULL,
        UNIQUE (namespace, function, qualifier)
     );"#,
    // 8: schedules; the firing state sits in columns beside the record, so the fire
    // step is one compare-and-set on `next_slot_ms` (NULL while disabled).
    r#"CREATE TABLE schedules (
        namespace TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        function TEXT COLLATE "C" NOT NULL,
        enabled BOOLEAN NOT NULL,
        next_slot_ms BIGINT,
        last_slot_ms BIGINT,
        record TEXT NOT NULL,
        PRIMARY KEY (namespace, name)
     );
     CREATE INDEX schedules_due ON schedules (next_slot_ms) WHERE enabled;
     CREATE INDEX schedules_by_function ON schedules (namespace, function);"#,
];

/// Applies the migrations the database has not seen, all in one transaction under
/// [`MIGRATION_LOCK`].
pub fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS tern_schema (version INTEGER NOT NULL)")?;
    let current = match tx.query_opt("SELECT version FROM tern_schema", &[])? {
        Some(row) => row.try_get::<_, i32>(0)?,
        None => {
            tx.execute("INSERT INTO tern_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    let applied = usize::try_from(current).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        tracing::warn!(
            version = current,
            known = MIGRATIONS.len(),
            "the PostgreSQL schema is newer than this server"
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql)?;
        let version = i32::try_from(i + 1).expect("fewer than 2^31 migrations");
        tx.execute("UPDATE tern_schema SET version = $1", &[&version])?;
    }
    tx.commit()?;
    Ok(())
}
