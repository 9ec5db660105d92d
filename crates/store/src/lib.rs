//! Persistent state: function metadata, access keys, logs, and the content-addressed
//! code store with safe zip extraction.
//!
//! The [`Store`] trait is the only way the layers above touch the database, so SQLite
//! (embedded, default) and PostgreSQL (cluster) can sit behind it. This crate knows
//! nothing about HTTP, instances or Lambda error types.
#![forbid(unsafe_code)]

pub mod code;
pub mod events;
pub mod handle;
pub mod package;
pub mod postgres;
pub mod schedules;
mod schema;
pub mod sqlite;
pub mod store;

pub use code::CodeStore;
pub use events::{
    Attempt, ClaimedEvent, Enqueued, EventInvokeConfigRow, EventState, EventStatus, NewEvent,
    QueueDepth, QueueMessage, Settle,
};
pub use handle::StoreHandle;
pub use package::{extract_zip, PackageError, PackageLimits};
pub use postgres::PostgresStore;
pub use schedules::{ScheduleAdvance, StoredSchedule};
pub use sqlite::SqliteStore;
pub use store::{AccessKey, LogLine, ProvisionedSetting, Store, StoreError, StoredLayerVersion};
