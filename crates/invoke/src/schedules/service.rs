//! The schedules API (`/tern/v1/schedules`): create, list, get, pause/resume, delete,
//! per namespace of the caller. Validates everything a schedule will need at create:
//! the expression and zone, the payload's size, and that the target function (and
//! qualifier) exists.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tern_core::limits::ASYNC_PAYLOAD_BYTES;
use tern_core::schedule::{is_valid_name, ScheduleRecord, NAME_MAX};
use tern_core::timefmt::rfc3339;
use tern_store::{StoreError, StoreHandle, StoredSchedule};

use super::event::{rule_arn, slot_time};
use super::expression::{Expression, ExpressionError};
use super::scheduler::{anchor_of, Scheduler};
use crate::error::{stored, ServiceError};
use crate::functions::{Caller, FunctionService};
use crate::now_ms;

/// A new schedule, as `POST /tern/v1/schedules` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    pub name: String,
    /// `name`, `name:qualifier`, or a function ARN.
    pub function: String,
    pub expression: String,
    /// The event sent at every slot (any JSON); absent: an EventBridge scheduled event.
    #[serde(default)]
    pub payload: Option<serde_json::Value>,
    /// IANA zone for cron fields; absent: UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `PATCH /tern/v1/schedules/{name}`: pause (`false`) or resume (`true`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleChange {
    pub enabled: bool,
}

/// A schedule with its state, as the API answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub name: String,
    pub arn: String,
    pub function: String,
    pub expression: String,
    pub timezone: Option<String>,
    pub payload: Option<serde_json::Value>,
    pub enabled: bool,
    pub created_at: String,
    pub last_modified: String,
    /// The last slot fired or skipped.
    pub last_slot: Option<String>,
    /// The next slot it fires at; absent while paused or when no slot is left.
    pub next_slot: Option<String>,
}

pub struct ScheduleService {
    store: StoreHandle,
    functions: Arc<FunctionService>,
    scheduler: Arc<Scheduler>,
}

fn not_found(name: &str) -> ServiceError {
    ServiceError::ResourceNotFound(format!("Schedule not found: {name}"))
}

fn invalid(message: String) -> ServiceError {
    ServiceError::InvalidParameterValue(message)
}

impl ScheduleService {
    pub fn new(
        store: StoreHandle,
        functions: Arc<FunctionService>,
        scheduler: Arc<Scheduler>,
    ) -> ScheduleService {
        ScheduleService {
            store,
            functions,
            scheduler,
        }
    }

    fn view(&self, caller: &Caller, s: &StoredSchedule) -> ScheduleView {
        let r = &s.record;
        let region = &self.functions.config().region;
        ScheduleView {
            name: r.name.clone(),
            arn: rule_arn(region, &caller.account, &r.name),
            function: match &r.qualifier {
                Some(q) => format!("{}:{q}", r.function),
                None => r.function.clone(),
            },
            expression: r.expression.clone(),
            timezone: r.timezone.clone(),
            payload: r
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok()),
            enabled: r.enabled,
            created_at: rfc3339(r.created_ms),
            last_modified: rfc3339(r.last_modified_ms),
            last_slot: s.last_slot_ms.map(slot_time),
            next_slot: s.next_slot_ms.map(slot_time),
        }
    }

    pub async fn create(
        &self,
        caller: &Caller,
        body: ScheduleBody,
    ) -> Result<ScheduleView, ServiceError> {
        if !is_valid_name(&body.name) {
            return Err(invalid(format!(
                "Invalid value for 'name': '{}' must be 1 to {NAME_MAX} of A-Z a-z 0-9 . - _",
                body.name
            )));
        }
        let expr = Expression::parse(&body.expression, body.timezone.as_deref()).map_err(|e| {
            let field = match e {
                ExpressionError::Timezone(_) => "timezone",
                _ => "expression",
            };
            invalid(format!("Invalid value for '{field}': {e}"))
        })?;
        self.check_room(caller).await?;
        let payload = body.payload.as_ref().map(|p| p.to_string());
        if let Some(p) = &payload {
            if p.len() > ASYNC_PAYLOAD_BYTES {
                return Err(invalid(format!(
                    "Invalid value for 'payload': {} bytes is more than the {ASYNC_PAYLOAD_BYTES} an asynchronous event may carry",
                    p.len()
                )));
            }
        }
        // The target must exist now (404 otherwise); a qualifier resolves as Invoke's.
        let (function, qualifier) = self.functions.lookup(caller, &body.function, None).await?;
        let now = now_ms();
        let enabled = body.enabled.unwrap_or(true);
        let next_slot_ms = if enabled {
            Some(expr.next_after(anchor_of(now), now).ok_or_else(|| {
                invalid(format!(
                    "Invalid value for 'expression': '{}' has no slot after now",
                    body.expression
                ))
            })?)
        } else {
            None
        };
        let schedule = StoredSchedule {
            record: ScheduleRecord {
                namespace: caller.namespace.clone(),
                name: body.name,
                function: function.name.clone(),
                qualifier,
                expression: body.expression,
                timezone: body.timezone,
                payload,
                enabled,
                created_ms: now,
                last_modified_ms: now,
            },
            next_slot_ms,
            last_slot_ms: None,
        };
        let to_store = schedule.clone();
        stored(&self.store, move |s| {
            s.create_schedule(&to_store).map_err(|e| match e {
                StoreError::Conflict(m) => ServiceError::ResourceConflict(m),
                other => other.into(),
            })
        })
        .await?;
        tracing::info!(schedule = %schedule.record.name, namespace = %caller.namespace,
            function = %schedule.record.function, expression = %schedule.record.expression,
            "schedule created");
        self.scheduler.wake();
        Ok(self.view(caller, &schedule))
    }

    /// Refuses a schedule past the namespace's cap. Checked before the insert, so
    /// creates racing each other may pass it by their number, but no further.
    async fn check_room(&self, caller: &Caller) -> Result<(), ServiceError> {
        let max = self.scheduler.settings().max_per_namespace;
        let namespace = caller.namespace.clone();
        let held = stored(&self.store, move |s| Ok(s.list_schedules(&namespace)?))
            .await?
            .len();
        if held >= max {
            return Err(invalid(format!(
                "the namespace already has {held} schedules, the most it may hold ([schedules] max_per_namespace = {max}); delete one first"
            )));
        }
        Ok(())
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<ScheduleView>, ServiceError> {
        let namespace = caller.namespace.clone();
        let all = stored(&self.store, move |s| Ok(s.list_schedules(&namespace)?)).await?;
        Ok(all.iter().map(|s| self.view(caller, s)).collect())
    }

    async fn find(&self, caller: &Caller, name: &str) -> Result<StoredSchedule, ServiceError> {
        let (namespace, key) = (caller.namespace.clone(), name.to_string());
        stored(&self.store, move |s| Ok(s.get_schedule(&namespace, &key)?))
            .await?
            .ok_or_else(|| not_found(name))
    }

    pub async fn get(&self, caller: &Caller, name: &str) -> Result<ScheduleView, ServiceError> {
        Ok(self.view(caller, &self.find(caller, name).await?))
    }

    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<(), ServiceError> {
        let (namespace, key) = (caller.namespace.clone(), name.to_string());
        if !stored(&self.store, move |s| {
            Ok(s.delete_schedule(&namespace, &key)?)
        })
        .await?
        {
            return Err(not_found(name));
        }
        self.scheduler.forget(&caller.namespace, name);
        tracing::info!(schedule = %name, namespace = %caller.namespace, "schedule deleted");
        Ok(())
    }

    /// Pauses or resumes. A resumed schedule fires from its next slot after now: the
    /// slots of the pause are not caught up.
    pub async fn set_enabled(
        &self,
        caller: &Caller,
        name: &str,
        enabled: bool,
    ) -> Result<ScheduleView, ServiceError> {
        let current = self.find(caller, name).await?;
        // Resuming a schedule that stopped on its own (its target was gone) starts it
        // again, as resuming a paused one does.
        let stopped = enabled && current.next_slot_ms.is_none();
        if current.record.enabled == enabled && !stopped {
            return Ok(self.view(caller, &current));
        }
        let now = now_ms();
        let mut record = current.record.clone();
        record.enabled = enabled;
        record.last_modified_ms = now;
        let next_slot_ms = if enabled {
            Expression::parse(&record.expression, record.timezone.as_deref())
                .map_err(|e| invalid(format!("Invalid value for 'expression': {e}")))?
                .next_after(anchor_of(record.created_ms), now)
        } else {
            None
        };
        let to_store = record.clone();
        if !stored(&self.store, move |s| {
            Ok(s.update_schedule(&to_store, next_slot_ms)?)
        })
        .await?
        {
            return Err(not_found(name));
        }
        tracing::info!(schedule = %name, namespace = %caller.namespace, enabled,
            "schedule {}", if enabled { "resumed" } else { "paused" });
        self.scheduler.wake();
        self.find(caller, name).await.map(|s| self.view(caller, &s))
    }
}
