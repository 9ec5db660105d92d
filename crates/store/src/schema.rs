//! SQLite schema migrations, applied in order; `PRAGMA user_version` records the last
//! one. PostgreSQL has its own history in `postgres/schema.rs`.

pub const MIGRATIONS: &[&str] = &[
    // 1: functions, keys, meta, logs
    "CREATE TABLE functions (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        revision_id TEXT NOT NULL,
        code_size INTEGER NOT NULL,
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
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        function TEXT NOT NULL,
        request_id TEXT,
        ts_ms INTEGER NOT NULL,
        line TEXT NOT NULL
     );
     CREATE INDEX logs_by_function ON logs (namespace, function, id);
     CREATE INDEX logs_by_time ON logs (ts_ms);",
    // 2: reserved and provisioned concurrency (Lambda keeps them apart from the
    // function configuration: changing them does not change the RevisionId)
    "CREATE TABLE reserved_concurrency (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        reserved INTEGER NOT NULL,
        PRIMARY KEY (namespace, name)
     );
     CREATE TABLE provisioned_concurrency (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        qualifier TEXT NOT NULL,
        requested INTEGER NOT NULL,
        last_modified_ms INTEGER NOT NULL,
        PRIMARY KEY (namespace, name, qualifier)
     );",
    // 3: layer versions; `layer_names` keeps the highest version ever published, so a
    // version number is never reused after a delete. The permission statements of a
    // version are JSON in `policy`, replaced as a whole under `policy_revision`.
    "CREATE TABLE layer_names (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        last_version INTEGER NOT NULL,
        PRIMARY KEY (namespace, name)
     );
     CREATE TABLE layer_versions (
        namespace TEXT NOT NULL,
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        record TEXT NOT NULL,
        policy TEXT NOT NULL,
        policy_revision TEXT NOT NULL,
        PRIMARY KEY (namespace, name, version)
     );
     CREATE INDEX layer_versions_by_account ON layer_versions (account, name, version);",
    // 4: the asynchronous-invocation queue. An event row lives from enqueue to prune:
    // pending (queued/running/retrying), then finished, or a dead letter (kept until
    // redriven or purged). Attempts are kept per event for the status API and the DLQ.
    "CREATE TABLE async_events (
        request_id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        function TEXT NOT NULL,
        qualifier TEXT NOT NULL,
        payload BLOB NOT NULL,
        enqueued_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        next_at_ms INTEGER NOT NULL,
        function_attempts INTEGER NOT NULL DEFAULT 0,
        system_attempts INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until_ms INTEGER NOT NULL DEFAULT 0,
        dead_letter INTEGER NOT NULL DEFAULT 0,
        response BLOB
     );
     CREATE INDEX async_events_due ON async_events (next_at_ms)
        WHERE state IN ('queued', 'retrying');
     CREATE INDEX async_events_running ON async_events (lease_until_ms)
        WHERE state = 'running';
     CREATE INDEX async_events_finished ON async_events (updated_ms)
        WHERE state IN ('succeeded', 'failed', 'expired') AND dead_letter = 0;
     CREATE INDEX async_events_dead ON async_events (namespace, function, request_id)
        WHERE dead_letter = 1;
     CREATE TABLE async_attempts (
        request_id TEXT NOT NULL,
        n INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        ended_ms INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        error_type TEXT,
        error_message TEXT,
        PRIMARY KEY (request_id, n)
     );
     CREATE TABLE idempotency_keys (
        namespace TEXT NOT NULL,
        function TEXT NOT NULL,
        key TEXT NOT NULL,
        request_id TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (namespace, function, key)
     );
     CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_ms);
     CREATE TABLE event_invoke_configs (
        namespace TEXT NOT NULL,
        function TEXT NOT NULL,
        qualifier TEXT NOT NULL,
        config TEXT NOT NULL,
        last_modified_ms INTEGER NOT NULL,
        PRIMARY KEY (namespace, function, qualifier)
     );
     CREATE TABLE queue_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        namespace TEXT NOT NULL,
        queue TEXT NOT NULL,
        body TEXT NOT NULL,
        ts_ms INTEGER NOT NULL
     );
     CREATE INDEX queue_messages_by_queue ON queue_messages (namespace, queue, id);",
    // 5: private networks (operator-defined, server-wide).
    "CREATE TABLE networks (
        name TEXT PRIMARY KEY,
        record TEXT NOT NULL
     );",
    // 6: versions and aliases. `last_version` is the highest version ever published, so
    // a number is never reused after a delete. An event keeps the incarnation of the
    // function it was queued for, so that a function re-created under the same name
    // never runs it.
    "ALTER TABLE functions ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE function_versions (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (namespace, name, version)
     );
     CREATE TABLE function_aliases (
        namespace TEXT NOT NULL,
        function TEXT NOT NULL,
        name TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (namespace, function, name)
     );
     ALTER TABLE async_events ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';",
    // 7: function URLs, one per (namespace, function, qualifier); the record as JSON.
    "CREATE TABLE function_urls (
        url_id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        function TEXT NOT NULL,
        qualifier TEXT NOT NULL,
        record TEXT NOT NULL,
        UNIQUE (namespace, function, qualifier)
     );",
    // 8: schedules; the firing state sits in columns beside the record, so the fire
    // step is one compare-and-set on `next_slot_ms` (NULL while disabled).
    "CREATE TABLE schedules (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        function TEXT NOT NULL,
        enabled INTEGER NOT NULL,
        next_slot_ms INTEGER,
        last_slot_ms INTEGER,
        record TEXT NOT NULL,
        PRIMARY KEY (namespace, name)
     );
     CREATE INDEX schedules_due ON schedules (next_slot_ms) WHERE enabled = 1;
     CREATE INDEX schedules_by_function ON schedules (namespace, function);",
];
