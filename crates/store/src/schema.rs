//! Schema migrations, applied in order; `PRAGMA user_version` records the last one.

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
];
