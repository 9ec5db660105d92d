//! The cluster store: PostgreSQL, shared by every server of a cluster.
//!
//! Uses the synchronous `postgres` client, which runs its own small runtime per
//! connection: call it from the store's worker threads, never from a tokio runtime
//! thread. Semantics match the SQLite store method for method; where several servers
//! race (claims, idempotency keys, migrations, queue ids) row locks and advisory locks
//! decide, so each event goes to one claimer and each key to one request.

mod destinations;
mod events;
mod layers;
mod networks;
mod pool;
mod schedules;
mod schema;
mod urls;
mod versions;

use std::str::FromStr;
use std::time::Duration;

use postgres::{Config, NoTls};
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
use crate::store::{AccessKey, LogLine, ProvisionedSetting, Store, StoreError, StoredLayerVersion};
use pool::{Pool, PooledClient};

/// How long a caller waits for a free connection (and a new connection for the
/// server, unless the URL says otherwise) before the store reports an error.
const CONNECTION_WAIT: Duration = Duration::from_secs(30);

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Database(Box::new(e))
    }
}

pub struct PostgresStore {
    pool: Pool,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db` or
    /// `key=value` form, no TLS) and applies pending migrations. Keeps up to
    /// `pool_size` connections (at least one); the others open on first use.
    pub fn connect(url: &str, pool_size: usize) -> Result<PostgresStore, StoreError> {
        let config = parse_url(url)?;
        let mut first = Pool::open(&config)?;
        schema::migrate(&mut first)?;
        Ok(PostgresStore {
            pool: Pool::new(config, first, pool_size, CONNECTION_WAIT),
        })
    }

    fn client(&self) -> Result<PooledClient<'_>, StoreError> {
        self.pool.get()
    }
}

/// Creates database `name` on the server at `server_url` (connecting to the
/// database the URL names). `name` may hold only `a-z`, `0-9` and `_`.
pub fn create_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    check_database_name(name)?;
    let mut client = parse_url(server_url)?.connect(NoTls)?;
    client.batch_execute(&format!("CREATE DATABASE \"{name}\""))?;
    Ok(())
}

/// Drops database `name` if it exists, ending its sessions (PostgreSQL 13 or later).
pub fn drop_database(server_url: &str, name: &str) -> Result<(), StoreError> {
    check_database_name(name)?;
    let mut client = parse_url(server_url)?.connect(NoTls)?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))?;
    Ok(())
}

fn parse_url(url: &str) -> Result<Config, StoreError> {
    let mut config = Config::from_str(url)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECTION_WAIT);
    }
    if config.get_application_name().is_none() {
        config.application_name("tern");
    }
    Ok(config)
}

/// The name goes into SQL as an identifier, so it is checked rather than quoted.
fn check_database_name(name: &str) -> Result<(), StoreError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Database(
            format!("invalid database name {name:?}: use 1 to 63 of a-z, 0-9 and _").into(),
        ))
    }
}

/// A count or size for a BIGINT column.
fn to_i64<T: TryInto<i64>>(v: T) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// A BIGINT count read back; out-of-range values (never written) clamp.
fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A row count reported by the server.
fn affected(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn decode(record: &str) -> Result<FunctionRecord, StoreError> {
    Ok(serde_json::from_str(record)?)
}

fn provisioned(row: &postgres::Row) -> Result<ProvisionedSetting, StoreError> {
    Ok(ProvisionedSetting {
        namespace: row.try_get(0)?,
        function: row.try_get(1)?,
        qualifier: row.try_get(2)?,
        requested: to_u32(row.try_get(3)?),
        last_modified_ms: row.try_get(4)?,
    })
}

impl Store for PostgresStore {
    fn create_function(&self, rec: &FunctionRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(rec)?;
        let inserted = self.client()?.execute(
            "INSERT INTO functions (namespace, name, revision_id, code_size, record)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                &rec.namespace,
                &rec.name,
                &rec.revision_id,
                &to_i64(rec.code.size),
                &json,
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
        let row = self.client()?.query_opt(
            "SELECT record FROM functions WHERE namespace = $1 AND name = $2",
            &[&namespace, &name],
        )?;
        row.map(|r| decode(r.try_get(0)?)).transpose()
    }

    fn update_function(
        &self,
        rec: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(rec)?;
        let updated = self.client()?.execute(
            "UPDATE functions SET revision_id = $1, code_size = $2, record = $3
             WHERE namespace = $4 AND name = $5 AND revision_id = $6",
            &[
                &rec.revision_id,
                &to_i64(rec.code.size),
                &json,
                &rec.namespace,
                &rec.name,
                &expected_revision,
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
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let n = tx.execute(
            "DELETE FROM functions WHERE namespace = $1 AND name = $2",
            &[&namespace, &name],
        )?;
        for table in [
            "reserved_concurrency",
            "provisioned_concurrency",
            "function_versions",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE namespace = $1 AND name = $2"),
                &[&namespace, &name],
            )?;
        }
        for table in ["event_invoke_configs", "function_aliases", "function_urls"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE namespace = $1 AND function = $2"),
                &[&namespace, &name],
            )?;
        }
        // Its async events go with it, queued, finished or dead-lettered: a function of
        // the same name created later must not run them.
        tx.execute(
            "DELETE FROM async_attempts WHERE request_id IN (
                SELECT request_id FROM async_events WHERE namespace = $1 AND function = $2)",
            &[&namespace, &name],
        )?;
        tx.execute(
            "DELETE FROM async_events WHERE namespace = $1 AND function = $2",
            &[&namespace, &name],
        )?;
        tx.execute(
            "DELETE FROM idempotency_keys WHERE namespace = $1 AND function = $2",
            &[&namespace, &name],
        )?;
        // So do the schedules that target it: they could only fire into nothing.
        tx.execute(
            "DELETE FROM schedules WHERE namespace = $1 AND function = $2",
            &[&namespace, &name],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn list_functions(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        let rows = self.client()?.query(
            "SELECT record FROM functions WHERE namespace = $1 AND name > $2
             ORDER BY name LIMIT $3",
            &[&namespace, &after.unwrap_or(""), &to_i64(limit)],
        )?;
        rows.iter().map(|r| decode(r.try_get(0)?)).collect()
    }

    fn list_all_functions(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError> {
        let (namespace, name) = after.unwrap_or(("", ""));
        let rows = self.client()?.query(
            "SELECT record FROM functions WHERE (namespace, name) > ($1, $2)
             ORDER BY namespace, name LIMIT $3",
            &[&namespace, &name, &to_i64(limit)],
        )?;
        rows.iter().map(|r| decode(r.try_get(0)?)).collect()
    }

    fn usage(&self, namespace: &str) -> Result<(u64, u64), StoreError> {
        let row = self.client()?.query_one(
            "SELECT COUNT(*), COALESCE(SUM(code_size), 0)::BIGINT FROM functions
             WHERE namespace = $1",
            &[&namespace],
        )?;
        Ok((to_u64(row.try_get(0)?), to_u64(row.try_get(1)?)))
    }

    fn put_access_key(&self, key: &AccessKey) -> Result<(), StoreError> {
        self.client()?.execute(
            "INSERT INTO access_keys (access_key_id, secret, namespace) VALUES ($1, $2, $3)
             ON CONFLICT (access_key_id) DO UPDATE SET
                secret = excluded.secret, namespace = excluded.namespace",
            &[&key.access_key_id, &key.secret, &key.namespace],
        )?;
        Ok(())
    }

    fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT access_key_id, secret, namespace FROM access_keys WHERE access_key_id = $1",
            &[&access_key_id],
        )?;
        row.map(|r| {
            Ok(AccessKey {
                access_key_id: r.try_get(0)?,
                secret: r.try_get(1)?,
                namespace: r.try_get(2)?,
            })
        })
        .transpose()
    }

    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()?
            .query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.client()?.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let insert = tx.prepare(
            "INSERT INTO logs (namespace, function, request_id, ts_ms, line)
             VALUES ($1, $2, $3, $4, $5)",
        )?;
        for l in lines {
            tx.execute(
                &insert,
                &[&l.namespace, &l.function, &l.request_id, &l.ts_ms, &l.line],
            )?;
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
        let rows = self.client()?.query(
            "SELECT namespace, function, request_id, ts_ms, line FROM logs
             WHERE namespace = $1 AND function = $2 AND ($3::TEXT IS NULL OR request_id = $3)
             ORDER BY id DESC LIMIT $4",
            &[&namespace, &function, &request_id, &to_i64(limit)],
        )?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(LogLine {
                    namespace: r.try_get(0)?,
                    function: r.try_get(1)?,
                    request_id: r.try_get(2)?,
                    ts_ms: r.try_get(3)?,
                    line: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    fn prune_logs(&self, before_ms: i64) -> Result<usize, StoreError> {
        let n = self
            .client()?
            .execute("DELETE FROM logs WHERE ts_ms < $1", &[&before_ms])?;
        Ok(affected(n))
    }

    fn put_reserved_concurrency(
        &self,
        namespace: &str,
        name: &str,
        reserved: Option<u32>,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        match reserved {
            Some(n) => client.execute(
                "INSERT INTO reserved_concurrency (namespace, name, reserved) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, name) DO UPDATE SET reserved = excluded.reserved",
                &[&namespace, &name, &i64::from(n)],
            )?,
            None => client.execute(
                "DELETE FROM reserved_concurrency WHERE namespace = $1 AND name = $2",
                &[&namespace, &name],
            )?,
        };
        Ok(())
    }

    fn list_reserved_concurrency(&self) -> Result<Vec<(String, String, u32)>, StoreError> {
        let rows = self.client()?.query(
            "SELECT namespace, name, reserved FROM reserved_concurrency",
            &[],
        )?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, to_u32(r.try_get(2)?))))
            .collect()
    }

    fn put_provisioned(&self, s: &ProvisionedSetting) -> Result<(), StoreError> {
        self.client()?.execute(
            "INSERT INTO provisioned_concurrency
                (namespace, name, qualifier, requested, last_modified_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (namespace, name, qualifier) DO UPDATE SET
                requested = excluded.requested, last_modified_ms = excluded.last_modified_ms",
            &[
                &s.namespace,
                &s.function,
                &s.qualifier,
                &i64::from(s.requested),
                &s.last_modified_ms,
            ],
        )?;
        Ok(())
    }

    fn delete_provisioned(
        &self,
        namespace: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        let n = self.client()?.execute(
            "DELETE FROM provisioned_concurrency
             WHERE namespace = $1 AND name = $2 AND qualifier = $3",
            &[&namespace, &name, &qualifier],
        )?;
        Ok(n > 0)
    }

    fn get_provisioned(
        &self,
        namespace: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<ProvisionedSetting>, StoreError> {
        let row = self.client()?.query_opt(
            "SELECT namespace, name, qualifier, requested, last_modified_ms
             FROM provisioned_concurrency
             WHERE namespace = $1 AND name = $2 AND qualifier = $3",
            &[&namespace, &name, &qualifier],
        )?;
        row.as_ref().map(provisioned).transpose()
    }

    fn list_provisioned(&self) -> Result<Vec<ProvisionedSetting>, StoreError> {
        let rows = self.client()?.query(
            "SELECT namespace, name, qualifier, requested, last_modified_ms
             FROM provisioned_concurrency ORDER BY namespace, name, qualifier",
            &[],
        )?;
        rows.iter().map(provisioned).collect()
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
        self.events_renew(owner, lease_until_ms)
    }

    fn abandon_leases(&self, except_owner: &str) -> Result<usize, StoreError> {
        self.events_abandon(except_owner)
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
        self.events_redrive(namespace, function, request_id, now_ms)
    }

    fn purge_dead_letters(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.events_purge(namespace, function, request_id)
    }

    fn prune_events(
        &self,
        before_ms: i64,
        dead_before_ms: i64,
        keys_before_ms: i64,
    ) -> Result<usize, StoreError> {
        self.events_prune(before_ms, dead_before_ms, keys_before_ms)
    }

    fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        self.events_depths()
    }

    fn put_event_invoke_config(&self, row: &EventInvokeConfigRow) -> Result<(), StoreError> {
        self.configs_put(row)
    }

    fn get_event_invoke_config(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfigRow>, StoreError> {
        self.configs_get(namespace, function, qualifier)
    }

    fn delete_event_invoke_config(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        self.configs_delete(namespace, function, qualifier)
    }

    fn list_event_invoke_configs(
        &self,
        namespace: &str,
        function: &str,
    ) -> Result<Vec<EventInvokeConfigRow>, StoreError> {
        self.configs_list(namespace, function)
    }

    fn push_queue_message(
        &self,
        namespace: &str,
        queue: &str,
        body: &str,
        ts_ms: i64,
    ) -> Result<i64, StoreError> {
        self.queue_push(namespace, queue, body, ts_ms)
    }

    fn read_queue_messages(
        &self,
        namespace: &str,
        queue: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        self.queue_read(namespace, queue, after_id, limit)
    }

    fn delete_queue_messages(
        &self,
        namespace: &str,
        queue: &str,
        up_to_id: i64,
    ) -> Result<usize, StoreError> {
        self.queue_delete(namespace, queue, up_to_id)
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
mod tests;
