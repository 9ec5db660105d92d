//! Types of stored schedules: the record with its firing state, and one step of
//! firing. A step is one transaction that moves the schedule on from the slot it saw
//! (compare-and-set) and enqueues the slot's event with the async queue's own insert,
//! so a crash leaves both or neither, and servers sharing a database never fire one
//! slot twice.

use tern_core::schedule::ScheduleRecord;

use crate::events::NewEvent;

/// A schedule with where its firing stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchedule {
    pub record: ScheduleRecord,
    /// The next slot due (ms since the epoch); `None` while disabled, or when the
    /// expression has no slot left (a year field in the past).
    pub next_slot_ms: Option<i64>,
    /// The last slot fired or skipped; slots only move forward past it.
    pub last_slot_ms: Option<i64>,
}

/// One step of firing a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleAdvance {
    pub namespace: String,
    pub name: String,
    /// The `next_slot_ms` this step was computed from; the step applies only while the
    /// schedule is enabled and still has it.
    pub from_slot_ms: i64,
    /// The slot fired (or the last one skipped); becomes `last_slot_ms`. Must be later
    /// than the stored `last_slot_ms`.
    pub last_slot_ms: i64,
    /// The slot due after it.
    pub next_slot_ms: Option<i64>,
    /// The event of the fired slot; `None` when slots are skipped.
    pub event: Option<NewEvent>,
}
