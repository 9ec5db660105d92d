//! Asynchronous invocation: the durable queue in front of the store, the dispatcher
//! that drains it into the shared execution step, destinations, and the API over
//! event-invoke configs, the dead-letter queue and invocation status.

mod api;
mod destinations;
mod dispatcher;
mod queue;

pub use api::{AsyncService, DeadLetterPage, InvocationView, QueuePage, PAGE_MAX};
pub use destinations::{record, webhook_tls, Condition, DeliveryError, Destinations, RecordInput};
pub use dispatcher::{DispatchSettings, Dispatcher};
pub use queue::{EventQueue, IDEMPOTENCY_WINDOW_MS};
