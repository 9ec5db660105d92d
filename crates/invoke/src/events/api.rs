//! The async API: event-invoke configs (Lambda's shapes), invocation status, the
//! dead-letter queue and tern-managed destination queues.

use std::sync::Arc;

use base64::Engine;
use serde::Serialize;
use tern_core::event_config::{
    is_valid_queue_name, Destination, EventInvokeConfigInput, EventInvokeConfigResponse,
    EventInvokeSettings, ListEventInvokeConfigsResponse,
};
use tern_core::function::LATEST;
use tern_core::names::function_arn;
use tern_store::{EventInvokeConfigRow, EventStatus, StoreError, StoreHandle};

use super::queue::EventQueue;
use crate::error::{stored, ServiceError};
use crate::functions::{Caller, FunctionService};
use crate::now_ms;

/// Dead letters and queue messages listed per page at most.
pub const PAGE_MAX: usize = 1000;

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::InvalidParameterValue(msg.into())
}

/// One attempt in the status API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: i64,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

/// An invocation as `GET /tern/v1/invocations/{id}` and the DLQ show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationView {
    pub request_id: String,
    pub function_name: String,
    pub qualifier: String,
    pub state: &'static str,
    pub enqueued_at: String,
    pub updated_at: String,
    /// When the next attempt is due (queued and retrying events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    pub dead_letter: bool,
    pub attempts: Vec<AttemptView>,
    /// The request payload (DLQ views only): JSON as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// The last response, when kept (up to 64 KB): JSON, or a string if it was not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
}

fn json_value(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| match std::str::from_utf8(bytes) {
        Ok(s) => serde_json::Value::from(s),
        Err(_) => serde_json::json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(bytes)
        }),
    })
}

fn view(e: EventStatus, with_payload: bool) -> InvocationView {
    let rfc = tern_core::timefmt::rfc3339;
    InvocationView {
        next_attempt_at: matches!(
            e.state,
            tern_store::EventState::Queued | tern_store::EventState::Retrying
        )
        .then(|| rfc(e.next_at_ms)),
        request_id: e.request_id,
        function_name: e.function,
        qualifier: e.qualifier,
        state: e.state.as_str(),
        enqueued_at: rfc(e.enqueued_ms),
        updated_at: rfc(e.updated_ms),
        dead_letter: e.dead_letter,
        attempts: e
            .attempts
            .into_iter()
            .map(|a| AttemptView {
                started_at: rfc(a.started_ms),
                ended_at: rfc(a.ended_ms),
                duration_ms: a.ended_ms - a.started_ms,
                outcome: a.outcome,
                error_type: a.error_type,
                error_message: a.error_message,
            })
            .collect(),
        payload: with_payload.then(|| json_value(&e.payload)),
        response: e.response.as_deref().map(json_value),
    }
}

/// A page of dead letters.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPage {
    pub entries: Vec<InvocationView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// A page of a tern-managed queue.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuePage {
    pub messages: Vec<QueueMessageView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueMessageView {
    pub id: i64,
    pub timestamp: String,
    pub body: serde_json::Value,
}

pub struct AsyncService {
    store: StoreHandle,
    functions: Arc<FunctionService>,
    queue: Arc<EventQueue>,
}

impl AsyncService {
    pub fn new(
        store: StoreHandle,
        functions: Arc<FunctionService>,
        queue: Arc<EventQueue>,
    ) -> Self {
        AsyncService {
            store,
            functions,
            queue,
        }
    }

    /// The function (which must exist) and the qualifier a config applies to.
    async fn target(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, String, String), ServiceError> {
        let (rec, qualifier) = self
            .functions
            .lookup(caller, function_name, qualifier)
            .await?;
        let qualifier = qualifier.unwrap_or_else(|| LATEST.to_string());
        let arn = function_arn(
            &self.functions.config().region,
            &caller.account,
            &rec.name,
            Some(&qualifier),
        );
        Ok((rec.name.clone(), qualifier, arn))
    }

    /// Checks that each destination parses and names something of the caller's.
    async fn check_destinations(
        &self,
        caller: &Caller,
        function: &str,
        settings: &EventInvokeSettings,
    ) -> Result<(), ServiceError> {
        for dest in [&settings.on_success, &settings.on_failure]
            .into_iter()
            .flatten()
        {
            match Destination::parse(dest).map_err(invalid)? {
                Destination::Function {
                    account,
                    name,
                    qualifier,
                } => {
                    if account != caller.account {
                        return Err(invalid(format!(
                            "Destination '{dest}' belongs to another account"
                        )));
                    }
                    if name == function {
                        return Err(invalid(format!(
                            "Destination '{dest}' is the function itself: each record would invoke it again, without end"
                        )));
                    }
                    if self
                        .functions
                        .resolve(&caller.namespace, &name, qualifier.as_deref(), None)
                        .await?
                        .is_none()
                    {
                        return Err(invalid(format!(
                            "The destination function {dest} does not exist"
                        )));
                    }
                }
                Destination::Queue { account, .. } => {
                    if account != caller.account {
                        return Err(invalid(format!(
                            "Destination '{dest}' belongs to another account"
                        )));
                    }
                }
                Destination::Webhook { .. } => {}
            }
        }
        Ok(())
    }

    /// PutFunctionEventInvokeConfig (`replace`) or UpdateFunctionEventInvokeConfig.
    pub async fn put_config(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
        input: EventInvokeConfigInput,
        replace: bool,
    ) -> Result<EventInvokeConfigResponse, ServiceError> {
        let (name, qualifier, arn) = self.target(caller, function_name, qualifier).await?;
        let (ns, n, q) = (caller.namespace.clone(), name.clone(), qualifier.clone());
        let current = stored(&self.store, move |s| {
            Ok(s.get_event_invoke_config(&ns, &n, &q)?)
        })
        .await?;
        let mut settings: EventInvokeSettings = match &current {
            Some(row) => serde_json::from_str(&row.config).unwrap_or_default(),
            None if replace => EventInvokeSettings::default(),
            // Update changes a configuration; Put makes one.
            None => {
                return Err(ServiceError::ResourceNotFound(format!(
                    "The function {arn} doesn't have an EventInvokeConfig"
                )))
            }
        };
        settings.apply(input, replace).map_err(invalid)?;
        self.check_destinations(caller, &name, &settings).await?;
        let row = EventInvokeConfigRow {
            namespace: caller.namespace.clone(),
            function: name,
            qualifier,
            config: serde_json::to_string(&settings)
                .map_err(|e| ServiceError::Service(e.to_string()))?,
            last_modified_ms: now_ms(),
        };
        let modified = row.last_modified_ms;
        stored(&self.store, move |s| Ok(s.put_event_invoke_config(&row)?)).await?;
        Ok(settings.response(arn, modified))
    }

    pub async fn get_config(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<EventInvokeConfigResponse, ServiceError> {
        let (name, qualifier, arn) = self.target(caller, function_name, qualifier).await?;
        let (ns, n, q) = (caller.namespace.clone(), name.clone(), qualifier.clone());
        let row = stored(&self.store, move |s| {
            Ok(s.get_event_invoke_config(&ns, &n, &q)?)
        })
        .await?
        .ok_or_else(|| {
            ServiceError::ResourceNotFound(format!(
                "The function {arn} doesn't have an EventInvokeConfig"
            ))
        })?;
        let settings: EventInvokeSettings = serde_json::from_str(&row.config)
            .map_err(|e| ServiceError::Store(StoreError::Corrupt(e)))?;
        Ok(settings.response(arn, row.last_modified_ms))
    }

    pub async fn delete_config(
        &self,
        caller: &Caller,
        function_name: &str,
        qualifier: Option<&str>,
    ) -> Result<(), ServiceError> {
        let (name, qualifier, arn) = self.target(caller, function_name, qualifier).await?;
        let ns = caller.namespace.clone();
        let existed = stored(&self.store, move |s| {
            Ok(s.delete_event_invoke_config(&ns, &name, &qualifier)?)
        })
        .await?;
        if !existed {
            return Err(ServiceError::ResourceNotFound(format!(
                "The function {arn} doesn't have an EventInvokeConfig"
            )));
        }
        Ok(())
    }

    /// ListFunctionEventInvokeConfigs: `marker` is the last qualifier of the previous
    /// page.
    pub async fn list_configs(
        &self,
        caller: &Caller,
        function_name: &str,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<ListEventInvokeConfigsResponse, ServiceError> {
        let (name, _, _) = self.target(caller, function_name, None).await?;
        let ns = caller.namespace.clone();
        let n = name.clone();
        let rows = stored(&self.store, move |s| {
            Ok(s.list_event_invoke_configs(&ns, &n)?)
        })
        .await?;
        let region = self.functions.config().region.clone();
        let mut page: Vec<_> = rows
            .into_iter()
            .filter(|r| marker.is_none_or(|m| r.qualifier.as_str() > m))
            .collect();
        let more = page.len() > max_items;
        page.truncate(max_items);
        let next_marker = more
            .then(|| page.last().map(|r| r.qualifier.clone()))
            .flatten();
        let configs = page
            .into_iter()
            .map(|row| {
                let settings: EventInvokeSettings =
                    serde_json::from_str(&row.config).unwrap_or_default();
                let arn = function_arn(&region, &caller.account, &name, Some(&row.qualifier));
                settings.response(arn, row.last_modified_ms)
            })
            .collect();
        Ok(ListEventInvokeConfigsResponse {
            function_event_invoke_configs: configs,
            next_marker,
        })
    }

    /// The status of an async invocation of the caller's namespace.
    pub async fn invocation(
        &self,
        caller: &Caller,
        request_id: &str,
    ) -> Result<InvocationView, ServiceError> {
        let id = request_id.to_string();
        let found = stored(&self.store, move |s| Ok(s.get_event(&id)?)).await?;
        match found {
            Some(e) if e.namespace == caller.namespace => Ok(view(e, false)),
            _ => Err(ServiceError::ResourceNotFound(format!(
                "No asynchronous invocation {request_id} is known (finished ones are kept for async.status_retention_hours)"
            ))),
        }
    }

    /// The function a dead-letter request names: it must exist (its dead letters went
    /// with it when it was deleted).
    async fn function(&self, caller: &Caller, function_name: &str) -> Result<String, ServiceError> {
        let (name, qualifier) = self.functions.resolve_name(caller, function_name, None)?;
        if qualifier.is_some() {
            return Err(invalid(
                "The dead-letter queue belongs to the function: give its name without a qualifier",
            ));
        }
        let (rec, _) = self.functions.lookup(caller, &name, None).await?;
        Ok(rec.name.clone())
    }

    pub async fn dead_letters(
        &self,
        caller: &Caller,
        function_name: &str,
        marker: Option<String>,
        limit: usize,
    ) -> Result<DeadLetterPage, ServiceError> {
        let name = self.function(caller, function_name).await?;
        if !(1..=PAGE_MAX).contains(&limit) {
            return Err(invalid(format!("limit must be from 1 to {PAGE_MAX}")));
        }
        let ns = caller.namespace.clone();
        let mut entries = stored(&self.store, move |s| {
            Ok(s.list_dead_letters(&ns, &name, marker.as_deref(), limit + 1)?)
        })
        .await?;
        let more = entries.len() > limit;
        entries.truncate(limit);
        let next_marker = more
            .then(|| entries.last().map(|e| e.request_id.clone()))
            .flatten();
        Ok(DeadLetterPage {
            entries: entries.into_iter().map(|e| view(e, true)).collect(),
            next_marker,
        })
    }

    pub async fn dead_letter(
        &self,
        caller: &Caller,
        function_name: &str,
        request_id: &str,
    ) -> Result<InvocationView, ServiceError> {
        let name = self.function(caller, function_name).await?;
        let id = request_id.to_string();
        let found = stored(&self.store, move |s| Ok(s.get_event(&id)?)).await?;
        match found {
            Some(e) if e.namespace == caller.namespace && e.function == name && e.dead_letter => {
                Ok(view(e, true))
            }
            _ => Err(ServiceError::ResourceNotFound(format!(
                "No dead letter {request_id} in the queue of {name}"
            ))),
        }
    }

    /// Requeues one dead letter (404 if there is no such entry) or all; how many.
    pub async fn redrive(
        &self,
        caller: &Caller,
        function_name: &str,
        request_id: Option<String>,
    ) -> Result<usize, ServiceError> {
        let name = self.function(caller, function_name).await?;
        let ns = caller.namespace.clone();
        let (n, id) = (name.clone(), request_id.clone());
        let count = stored(&self.store, move |s| {
            Ok(s.redrive_dead_letters(&ns, &n, id.as_deref(), now_ms())?)
        })
        .await?;
        if let (Some(id), 0) = (&request_id, count) {
            return Err(ServiceError::ResourceNotFound(format!(
                "No dead letter {id} in the queue of {name}"
            )));
        }
        if count > 0 {
            self.queue.wake();
        }
        Ok(count)
    }

    /// Deletes one dead letter (404 if there is no such entry) or all; how many.
    pub async fn purge(
        &self,
        caller: &Caller,
        function_name: &str,
        request_id: Option<String>,
    ) -> Result<usize, ServiceError> {
        let name = self.function(caller, function_name).await?;
        let ns = caller.namespace.clone();
        let (n, id) = (name.clone(), request_id.clone());
        let count = stored(&self.store, move |s| {
            Ok(s.purge_dead_letters(&ns, &n, id.as_deref())?)
        })
        .await?;
        if let (Some(id), 0) = (&request_id, count) {
            return Err(ServiceError::ResourceNotFound(format!(
                "No dead letter {id} in the queue of {name}"
            )));
        }
        Ok(count)
    }

    fn queue_name(name: &str) -> Result<String, ServiceError> {
        if !is_valid_queue_name(name) {
            return Err(invalid(format!(
                "Queue name '{name}' must be 1 to 80 letters, digits, '-' or '_'"
            )));
        }
        Ok(name.to_string())
    }

    /// Records of a tern-managed queue after `after_id`, oldest first.
    pub async fn queue_messages(
        &self,
        caller: &Caller,
        queue: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<QueuePage, ServiceError> {
        let q = Self::queue_name(queue)?;
        if !(1..=PAGE_MAX).contains(&limit) {
            return Err(invalid(format!("limit must be from 1 to {PAGE_MAX}")));
        }
        let ns = caller.namespace.clone();
        let rows = stored(&self.store, move |s| {
            Ok(s.read_queue_messages(&ns, &q, after_id, limit)?)
        })
        .await?;
        Ok(QueuePage {
            messages: rows
                .into_iter()
                .map(|m| QueueMessageView {
                    id: m.id,
                    timestamp: tern_core::timefmt::rfc3339(m.ts_ms),
                    body: json_value(m.body.as_bytes()),
                })
                .collect(),
        })
    }

    /// Deletes records of a queue up to `up_to_id`; how many.
    pub async fn delete_queue_messages(
        &self,
        caller: &Caller,
        queue: &str,
        up_to_id: i64,
    ) -> Result<usize, ServiceError> {
        let q = Self::queue_name(queue)?;
        let ns = caller.namespace.clone();
        stored(&self.store, move |s| {
            Ok(s.delete_queue_messages(&ns, &q, up_to_id)?)
        })
        .await
    }
}
