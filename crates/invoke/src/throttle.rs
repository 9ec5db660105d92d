//! Why a request was refused for lack of room: the one typed reason that admission,
//! the instance pool and the async queue report, mapped to Lambda's 429 (with its
//! `Reason`) only at the gateway.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Throttle {
    /// The function's reserved concurrency is 0.
    FunctionDisabled { function: String },
    /// The function runs its reserved concurrency.
    ReservedConcurrency { function: String, reserved: u32 },
    /// The namespace's unreserved concurrency is in use.
    AccountConcurrency { unreserved: u32 },
    /// No instance could be started or freed in time (server capacity).
    NoCapacity(String),
    /// The namespace's queue of async events is full.
    EventQueueFull { namespace: String, bound: u64 },
}

impl Throttle {
    /// The `Reason` field of the 429 body.
    pub fn reason(&self) -> &'static str {
        match self {
            Throttle::FunctionDisabled { .. } | Throttle::ReservedConcurrency { .. } => {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            }
            Throttle::AccountConcurrency { .. } | Throttle::NoCapacity(_) => {
                "ConcurrentInvocationLimitExceeded"
            }
            Throttle::EventQueueFull { .. } => "EventQueueLimitExceeded",
        }
    }
}

impl std::fmt::Display for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Throttle::FunctionDisabled { function } => write!(
                f,
                "Rate Exceeded. The reserved concurrency of {function} is 0: the function is disabled."
            ),
            Throttle::ReservedConcurrency { function, reserved } => write!(
                f,
                "Rate Exceeded. {function} is running its reserved concurrency of {reserved}."
            ),
            Throttle::AccountConcurrency { unreserved } => write!(
                f,
                "Rate Exceeded. The account's unreserved concurrency of {unreserved} is in use."
            ),
            Throttle::NoCapacity(detail) => write!(
                f,
                "Rate Exceeded. No instance could be started or freed in time: {detail}"
            ),
            Throttle::EventQueueFull { namespace, bound } => write!(
                f,
                "Rate Exceeded. Namespace {namespace} has {bound} asynchronous events queued, its bound (async.max_queued_per_namespace); retry later."
            ),
        }
    }
}

impl std::error::Error for Throttle {}
