//! The storage interface used by the layers above.

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

/// An error of the database underneath, whatever the backend; its cause is kept as
/// the source without naming the backend's types.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row already exists (create) or changed underneath (update).
    #[error("{0}")]
    Conflict(String),
    /// A row the change needs (a function, a version) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The row's `RevisionId` is not the one the change was made against.
    #[error("{0}")]
    Precondition(String),
    /// The change would take a function past a bound of the store (its number of
    /// published versions or aliases).
    #[error("{0}")]
    LimitExceeded(String),
    #[error("database error: {0}")]
    Database(#[source] BackendError),
    /// The store's worker threads are gone (the server is shutting down).
    #[error("the store is shut down")]
    Closed,
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// An API access key and the namespace it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret: String,
    pub namespace: String,
}

/// One line of function output or platform log (START/END/REPORT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub namespace: String,
    pub function: String,
    pub request_id: Option<String>,
    pub ts_ms: i64,
    pub line: String,
}

/// A provisioned-concurrency setting of one function qualifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedSetting {
    pub namespace: String,
    pub function: String,
    pub qualifier: String,
    pub requested: u32,
    pub last_modified_ms: i64,
}

/// A layer version with its permission statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLayerVersion {
    pub record: LayerVersionRecord,
    pub statements: Vec<LayerStatement>,
    /// Changes whenever the statements do (the policy's `RevisionId`).
    pub policy_revision: String,
}

pub trait Store: Send + Sync {
    /// Inserts a new function; `Conflict` if one of that name exists.
    fn create_function(&self, rec: &FunctionRecord) -> Result<(), StoreError>;
    fn get_function(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<FunctionRecord>, StoreError>;
    /// Replaces a function if its stored `revision_id` still equals `expected_revision`.
    fn update_function(
        &self,
        rec: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<(), StoreError>;
    /// Deletes a function with its versions, aliases, concurrency and event-invoke
    /// settings, its function URLs, its async events (queued, finished and dead letters)
    /// and the schedules that target it; returns whether it existed.
    fn delete_function(&self, namespace: &str, name: &str) -> Result<bool, StoreError>;
    /// Publishes `rec` (a copy of `$LATEST`) as the function's next version number, if
    /// `$LATEST`'s `revision_id` is still `expected_revision` (else `Precondition`);
    /// returns the stored record, its `version` set. Numbers are never reused. If the
    /// newest version has the same code and configuration
    /// ([`FunctionRecord::same_config`]), publishes nothing and returns that version (as
    /// Lambda does), so concurrent publishes of one configuration make one version.
    /// `LimitExceeded` when the function already holds
    /// [`tern_core::limits::VERSIONS_PER_FUNCTION`] versions.
    fn publish_version(
        &self,
        rec: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<FunctionRecord, StoreError>;
    fn get_version(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<FunctionRecord>, StoreError>;
    /// Published versions in number order, strictly after `after`, at most `limit`.
    fn list_versions(
        &self,
        namespace: &str,
        name: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Deletes a published version; `Conflict` while an alias routes to it. Returns
    /// whether it existed.
    fn delete_version(&self, namespace: &str, name: &str, version: u64)
        -> Result<bool, StoreError>;
    /// Creates an alias: `Conflict` if the name is taken, `NotFound` if the function or
    /// a version it routes to does not exist, `LimitExceeded` when the function already
    /// holds [`tern_core::limits::ALIASES_PER_FUNCTION`] aliases.
    fn create_alias(&self, alias: &AliasRecord) -> Result<(), StoreError>;
    /// Replaces an alias whose `revision_id` is still `expected_revision` (else
    /// `Precondition`); `NotFound` if the alias or a version it routes to does not
    /// exist.
    fn update_alias(&self, alias: &AliasRecord, expected_revision: &str) -> Result<(), StoreError>;
    fn get_alias(
        &self,
        namespace: &str,
        function: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError>;
    /// Aliases sorted by name, strictly after `after`, at most `limit`.
    fn list_aliases(
        &self,
        namespace: &str,
        function: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError>;
    /// Deletes an alias with its provisioned-concurrency and event-invoke settings and
    /// its function URL; returns whether it existed.
    fn delete_alias(&self, namespace: &str, function: &str, name: &str)
        -> Result<bool, StoreError>;
    /// Functions sorted by name, strictly after `after`, at most `limit`.
    fn list_functions(
        &self,
        namespace: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Functions of every namespace, sorted by (namespace, name), strictly after `after`,
    /// at most `limit`.
    fn list_all_functions(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError>;
    /// (function count, total zipped code size) of a namespace.
    fn usage(&self, namespace: &str) -> Result<(u64, u64), StoreError>;

    fn put_access_key(&self, key: &AccessKey) -> Result<(), StoreError>;
    fn get_access_key(&self, access_key_id: &str) -> Result<Option<AccessKey>, StoreError>;

    fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;

    fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError>;
    /// The newest `limit` lines of a function, oldest first; only those of `request_id`
    /// when given.
    fn recent_logs(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError>;
    /// Deletes log lines older than `before_ms`; returns how many.
    fn prune_logs(&self, before_ms: i64) -> Result<usize, StoreError>;

    /// Sets (Some) or removes (None) a function's reserved concurrency.
    fn put_reserved_concurrency(
        &self,
        namespace: &str,
        name: &str,
        reserved: Option<u32>,
    ) -> Result<(), StoreError>;
    /// Every reserved-concurrency setting: (namespace, function, reserved).
    fn list_reserved_concurrency(&self) -> Result<Vec<(String, String, u32)>, StoreError>;

    fn put_provisioned(&self, setting: &ProvisionedSetting) -> Result<(), StoreError>;
    /// Removes a setting; returns whether it existed.
    fn delete_provisioned(
        &self,
        namespace: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError>;
    fn get_provisioned(
        &self,
        namespace: &str,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<ProvisionedSetting>, StoreError>;
    fn list_provisioned(&self) -> Result<Vec<ProvisionedSetting>, StoreError>;

    /// Stores a new version of a layer with the next number for its (namespace, name):
    /// one more than any version ever published there, deleted or not. Returns the
    /// record with its `version` set (the one given is ignored).
    fn publish_layer_version(
        &self,
        rec: &LayerVersionRecord,
        policy_revision: &str,
    ) -> Result<LayerVersionRecord, StoreError>;
    /// A layer version by the account in its ARN.
    fn get_layer_version(
        &self,
        account: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<StoredLayerVersion>, StoreError>;
    /// Versions of a namespace's layers (of one layer when `name` is given), by name,
    /// newest version first.
    fn list_layer_versions(
        &self,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<Vec<LayerVersionRecord>, StoreError>;
    /// Deletes a version and its statements; returns whether it existed.
    fn delete_layer_version(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<bool, StoreError>;
    /// Replaces a version's statements if its policy revision is still `expected`;
    /// `Conflict` if it changed or the version is gone.
    fn put_layer_policy(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
        statements: &[LayerStatement],
        expected: &str,
        new_revision: &str,
    ) -> Result<(), StoreError>;

    /// Stores events in one durable transaction (fsync on SQLite, synchronous commit
    /// on PostgreSQL) and answers for each, in order. An event whose idempotency key
    /// (per namespace and function) was stored at or after `dedupe_since_ms` is not
    /// stored again: `Duplicate` names the first request id. Older keys are replaced.
    fn enqueue_events(
        &self,
        events: &[NewEvent],
        dedupe_since_ms: i64,
    ) -> Result<Vec<Enqueued>, StoreError>;
    /// Claims up to `limit` events for `owner` until `lease_until_ms`: queued or
    /// retrying events due at `now_ms` (oldest due first), and running events whose
    /// lease expired before `now_ms`, of any namespace but those in `skip_namespaces`.
    /// Each event goes to one claimer while its lease holds (PostgreSQL: `FOR UPDATE
    /// SKIP LOCKED`).
    fn claim_events(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
        skip_namespaces: &[String],
    ) -> Result<Vec<ClaimedEvent>, StoreError>;
    /// Extends the lease of every event `owner` is running; returns how many.
    fn renew_leases(&self, owner: &str, lease_until_ms: i64) -> Result<usize, StoreError>;
    /// Ends the leases of running events of any owner but `owner` at once, so they can
    /// be claimed now (a single-node server at start-up, where no other owner lives).
    fn abandon_leases(&self, except_owner: &str) -> Result<usize, StoreError>;
    /// Records `attempts` (in order, after those stored) of a running event `owner`
    /// holds and moves it on as `settle` says. Returns false, changing nothing, if
    /// `owner` no longer holds it.
    fn settle_event(
        &self,
        request_id: &str,
        owner: &str,
        attempts: &[Attempt],
        settle: &Settle,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// An event with its attempts.
    fn get_event(&self, request_id: &str) -> Result<Option<EventStatus>, StoreError>;
    /// A function's dead-letter queue, by request id, strictly after `after`.
    fn list_dead_letters(
        &self,
        namespace: &str,
        function: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<EventStatus>, StoreError>;
    /// Requeues dead letters of a function (one, or all when `request_id` is None) to
    /// run now as new attempts under the same request id, their age counted from now;
    /// returns how many.
    fn redrive_dead_letters(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
        now_ms: i64,
    ) -> Result<usize, StoreError>;
    /// Deletes dead letters of a function (one, or all); returns how many.
    fn purge_dead_letters(
        &self,
        namespace: &str,
        function: &str,
        request_id: Option<&str>,
    ) -> Result<usize, StoreError>;
    /// Deletes finished events (not dead letters) last updated before `before_ms`,
    /// dead letters last updated before `dead_before_ms`, and idempotency keys stored
    /// before `keys_before_ms`; returns how many events.
    fn prune_events(
        &self,
        before_ms: i64,
        dead_before_ms: i64,
        keys_before_ms: i64,
    ) -> Result<usize, StoreError>;
    /// Pending events per namespace that has any.
    fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError>;

    fn put_event_invoke_config(&self, row: &EventInvokeConfigRow) -> Result<(), StoreError>;
    fn get_event_invoke_config(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfigRow>, StoreError>;
    /// Removes a configuration; returns whether it existed.
    fn delete_event_invoke_config(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError>;
    /// A function's configurations, by qualifier.
    fn list_event_invoke_configs(
        &self,
        namespace: &str,
        function: &str,
    ) -> Result<Vec<EventInvokeConfigRow>, StoreError>;

    /// Appends a record to a tern-managed queue; returns its id (increasing).
    fn push_queue_message(
        &self,
        namespace: &str,
        queue: &str,
        body: &str,
        ts_ms: i64,
    ) -> Result<i64, StoreError>;
    /// Records of a queue with ids above `after_id`, oldest first.
    fn read_queue_messages(
        &self,
        namespace: &str,
        queue: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<QueueMessage>, StoreError>;
    /// Deletes records of a queue with ids up to `up_to_id`; returns how many.
    fn delete_queue_messages(
        &self,
        namespace: &str,
        queue: &str,
        up_to_id: i64,
    ) -> Result<usize, StoreError>;

    /// Stores a new private network; `Conflict` if one of that name exists.
    fn create_network(&self, network: &NetworkRecord) -> Result<(), StoreError>;
    /// Replaces a private network; returns whether it existed (nothing is stored if not).
    fn update_network(&self, network: &NetworkRecord) -> Result<bool, StoreError>;
    fn get_network(&self, name: &str) -> Result<Option<NetworkRecord>, StoreError>;
    /// Every private network, by name.
    fn list_networks(&self) -> Result<Vec<NetworkRecord>, StoreError>;
    /// Removes a private network; returns whether it existed.
    fn delete_network(&self, name: &str) -> Result<bool, StoreError>;

    /// Stores a new function URL; `Conflict` if its function already has one for that
    /// qualifier (or, never in practice, its id is taken).
    fn create_function_url(&self, rec: &FunctionUrlRecord) -> Result<(), StoreError>;
    /// Replaces the URL of the record's (namespace, function, qualifier), keeping its
    /// id; returns whether it existed (nothing is stored if not).
    fn update_function_url(&self, rec: &FunctionUrlRecord) -> Result<bool, StoreError>;
    fn get_function_url(
        &self,
        namespace: &str,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionUrlRecord>, StoreError>;
    /// The URL with this id, whatever its namespace (how a request finds its function).
    fn get_function_url_by_id(&self, url_id: &str)
        -> Result<Option<FunctionUrlRecord>, StoreError>;
    /// A function's URLs, by qualifier.
    fn list_function_urls(
        &self,
        namespace: &str,
        function: &str,
    ) -> Result<Vec<FunctionUrlRecord>, StoreError>;
    /// Deletes a function's URL of one qualifier, or all of them (`None`, for
    /// DeleteAlias and the like); returns how many.
    fn delete_function_urls(
        &self,
        namespace: &str,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<usize, StoreError>;
    /// Stores a new schedule with its firing state; `Conflict` if the namespace has
    /// one of that name.
    fn create_schedule(&self, schedule: &StoredSchedule) -> Result<(), StoreError>;
    fn get_schedule(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<StoredSchedule>, StoreError>;
    /// A namespace's schedules, by name.
    fn list_schedules(&self, namespace: &str) -> Result<Vec<StoredSchedule>, StoreError>;
    /// Removes a schedule; returns whether it existed.
    fn delete_schedule(&self, namespace: &str, name: &str) -> Result<bool, StoreError>;
    /// Replaces a schedule's record (pause, resume) and sets its next slot, keeping its
    /// last slot; returns whether it existed. A next slot at or before the last slot
    /// is not stored (the schedule is left without one), so no slot fires twice. Only
    /// the schedule the record was read from is changed: one deleted and created again
    /// under the name since (another `created_ms`) is left alone (false).
    fn update_schedule(
        &self,
        record: &ScheduleRecord,
        next_slot_ms: Option<i64>,
    ) -> Result<bool, StoreError>;
    /// Enabled schedules of every namespace whose next slot is at or before `now_ms`,
    /// earliest first, at most `limit`.
    fn due_schedules(&self, now_ms: i64, limit: usize) -> Result<Vec<StoredSchedule>, StoreError>;
    /// The earliest next slot of any enabled schedule.
    fn earliest_schedule_slot(&self) -> Result<Option<i64>, StoreError>;
    /// One step of firing, in one durable transaction: moves the schedule to
    /// `last_slot_ms`/`next_slot_ms` if it is enabled, its next slot is still
    /// `from_slot_ms` and its last slot is earlier than `last_slot_ms`, and in the same
    /// transaction enqueues the step's event (as `enqueue_events` does, idempotency key
    /// included). Returns false, changing nothing, if the compare-and-set lost.
    fn advance_schedule(
        &self,
        step: &ScheduleAdvance,
        dedupe_since_ms: i64,
    ) -> Result<bool, StoreError>;
}
