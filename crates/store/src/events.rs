//! Types of the asynchronous-invocation queue: events, their attempts, and how an
//! attempt settles. The queue lives in the store so that an event accepted with a 202
//! survives a crash, and so that several servers on one PostgreSQL database can share
//! it.

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    /// Accepted, not yet tried.
    Queued,
    /// Claimed by a dispatcher and running (or about to), under a lease.
    Running,
    /// Tried and failed; waiting for its next attempt.
    Retrying,
    Succeeded,
    /// Out of retries (or not retryable).
    Failed,
    /// Older than its maximum age before it could succeed; never run again.
    Expired,
}

impl EventState {
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Queued => "queued",
            EventState::Running => "running",
            EventState::Retrying => "retrying",
            EventState::Succeeded => "succeeded",
            EventState::Failed => "failed",
            EventState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => EventState::Queued,
            "running" => EventState::Running,
            "retrying" => EventState::Retrying,
            "succeeded" => EventState::Succeeded,
            "failed" => EventState::Failed,
            "expired" => EventState::Expired,
            _ => return None,
        })
    }

    /// Whether the event still waits to run (counts against the namespace's bound).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            EventState::Queued | EventState::Running | EventState::Retrying
        )
    }
}

/// An event to enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub request_id: String,
    pub namespace: String,
    pub function: String,
    pub qualifier: String,
    pub payload: Vec<u8>,
    pub enqueued_ms: i64,
    /// The incarnation of the function it is queued for (see
    /// `FunctionRecord::incarnation`).
    pub incarnation: String,
    /// `X-Tern-Idempotency-Key`: a repeat of a key of the same function seen within
    /// the idempotency window enqueues nothing.
    pub idempotency_key: Option<String>,
}

/// What `enqueue_events` did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored; it will run.
    New,
    /// Its idempotency key was seen before: the first event's request id.
    Duplicate { request_id: String },
}

/// An event a dispatcher has claimed, under a lease, to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEvent {
    pub request_id: String,
    pub namespace: String,
    pub function: String,
    pub qualifier: String,
    pub payload: Vec<u8>,
    pub enqueued_ms: i64,
    /// Attempts that ended in a function error so far.
    pub function_attempts: u32,
    /// Attempts that ended in a system failure (throttle, launch failure, lost lease).
    pub system_attempts: u32,
    /// The event was running under a lease that expired: the server running it died
    /// or lost its database. The dispatcher counts that as a system failure.
    pub lease_expired: bool,
    /// The incarnation of the function it was queued for: a function deleted and
    /// created again under the name does not run it.
    pub incarnation: String,
}

/// One try of an event, as the status API and the DLQ show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub started_ms: i64,
    pub ended_ms: i64,
    /// `success`, `function_error`, `timeout`, `oom`, `crash`, `throttled`,
    /// `launch_error`, `lease_expired`, …
    pub outcome: String,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
}

/// How a claimed event leaves the running state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    Succeeded {
        response: Option<Vec<u8>>,
    },
    /// Try again at `next_at_ms`; a function error counts against
    /// `MaximumRetryAttempts`, a system failure does not.
    Retry {
        next_at_ms: i64,
        function_error: bool,
    },
    Failed {
        dead_letter: bool,
        response: Option<Vec<u8>>,
    },
    Expired {
        dead_letter: bool,
    },
}

/// What a [`Settle`] writes to an event's row, the same on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettledRow<'a> {
    pub state: EventState,
    /// The next attempt's due time, for a retry.
    pub next_at_ms: Option<i64>,
    /// Added to `function_attempts` / `system_attempts`.
    pub function_inc: i64,
    pub system_inc: i64,
    pub dead_letter: bool,
    /// The response to keep, if any (the one kept before stays otherwise).
    pub response: Option<&'a [u8]>,
}

impl Settle {
    pub fn row(&self) -> SettledRow<'_> {
        let row = |state, dead_letter, response| SettledRow {
            state,
            next_at_ms: None,
            function_inc: 0,
            system_inc: 0,
            dead_letter,
            response,
        };
        match self {
            Settle::Succeeded { response } => {
                row(EventState::Succeeded, false, response.as_deref())
            }
            Settle::Retry {
                next_at_ms,
                function_error,
            } => SettledRow {
                next_at_ms: Some(*next_at_ms),
                function_inc: i64::from(*function_error),
                system_inc: i64::from(!*function_error),
                ..row(EventState::Retrying, false, None)
            },
            Settle::Failed {
                dead_letter,
                response,
            } => row(EventState::Failed, *dead_letter, response.as_deref()),
            Settle::Expired { dead_letter } => row(EventState::Expired, *dead_letter, None),
        }
    }
}

/// An event with its history, for the status API and the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventStatus {
    pub request_id: String,
    pub namespace: String,
    pub function: String,
    pub qualifier: String,
    pub state: EventState,
    pub enqueued_ms: i64,
    pub updated_ms: i64,
    pub next_at_ms: i64,
    pub function_attempts: u32,
    pub system_attempts: u32,
    /// The event sits in its function's dead-letter queue.
    pub dead_letter: bool,
    pub payload: Vec<u8>,
    pub response: Option<Vec<u8>>,
    /// Every attempt, oldest first (redriven events keep the earlier ones).
    pub attempts: Vec<Attempt>,
}

/// Pending events of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub namespace: String,
    pub pending: u64,
    pub oldest_enqueued_ms: Option<i64>,
}

/// A function's event-invoke configuration, stored as the JSON the API returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInvokeConfigRow {
    pub namespace: String,
    pub function: String,
    pub qualifier: String,
    pub config: String,
    pub last_modified_ms: i64,
}

/// A record delivered to a tern-managed destination queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub id: i64,
    pub namespace: String,
    pub queue: String,
    pub body: String,
    pub ts_ms: i64,
}
