//! Schedules: functions invoked at the slots of `rate(…)` and cron expressions, through
//! the async path (its queue, retries, destinations and DLQ).
//!
//! `expression.rs` parses expressions and computes slots (pure), `event.rs` builds the
//! event of a slot, `scheduler.rs` is the per-server loop that fires due slots (one
//! store transaction per slot: move on and enqueue), and `service.rs` is the API.

pub mod event;
pub mod expression;
mod scheduler;
mod service;

pub use scheduler::{Scheduler, SchedulerSettings};
pub use service::{ScheduleBody, ScheduleChange, ScheduleService, ScheduleView};
