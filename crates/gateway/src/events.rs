//! Routes of asynchronous invocation: Lambda's event-invoke-config API and legacy
//! InvokeAsync, and tern's own invocation status, dead-letter queue and destination
//! queue API (`/tern/v1/...`). Thin: parse, call [`tern_invoke::events::AsyncService`],
//! shape the answer.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use serde::Deserialize;
use tern_core::event_config::EventInvokeConfigInput;
use tern_invoke::{Caller, InvokeRequest, ServiceError};

use crate::app::{json, parse_body, ApiError, AppState};

type Q = Query<HashMap<String, String>>;

/// The routes, to sit behind the authentication layer with the rest of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/2019-09-25/functions/:name/event-invoke-config",
            get(get_config)
                .put(put_config)
                .post(update_config)
                .delete(delete_config),
        )
        .route(
            "/2019-09-25/functions/:name/event-invoke-config/list",
            get(list_configs),
        )
        .route(
            "/2014-11-13/functions/:name/invoke-async",
            post(invoke_async),
        )
        .route(
            "/2014-11-13/functions/:name/invoke-async/",
            post(invoke_async),
        )
        .route("/tern/v1/invocations/:id", get(invocation))
        .route(
            "/tern/v1/functions/:name/dlq",
            get(list_dead_letters).delete(purge_all),
        )
        .route("/tern/v1/functions/:name/dlq/redrive", post(redrive))
        .route(
            "/tern/v1/functions/:name/dlq/:id",
            get(show_dead_letter).delete(purge_one),
        )
        .route(
            "/tern/v1/queues/:queue/messages",
            get(queue_messages).delete(delete_queue_messages),
        )
}

fn qualifier(q: &HashMap<String, String>) -> Option<&str> {
    q.get("Qualifier").map(String::as_str)
}

fn number<T: std::str::FromStr>(
    q: &HashMap<String, String>,
    key: &str,
    default: T,
) -> Result<T, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| {
            ApiError::from(ServiceError::InvalidParameterValue(format!(
                "Invalid value for '{key}': '{s}'"
            )))
        }),
    }
}

/// PutFunctionEventInvokeConfig: the body replaces the configuration.
async fn put_config(
    state: State<AppState>,
    caller: Extension<Caller>,
    name: Path<String>,
    q: Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    store_config(state, caller, name, q, body, true).await
}

/// UpdateFunctionEventInvokeConfig: the body changes only the fields it has.
async fn update_config(
    state: State<AppState>,
    caller: Extension<Caller>,
    name: Path<String>,
    q: Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    store_config(state, caller, name, q, body, false).await
}

async fn store_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
    body: Bytes,
    replace: bool,
) -> Result<Response, ApiError> {
    let input: EventInvokeConfigInput = parse_body(&body)?;
    let resp = state
        .events
        .put_config(&caller, &name, qualifier(&q), input, replace)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn get_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let resp = state
        .events
        .get_config(&caller, &name, qualifier(&q))
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn delete_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    state
        .events
        .delete_config(&caller, &name, qualifier(&q))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_configs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let max: usize = number(&q, "MaxItems", 50)?;
    if !(1..=50).contains(&max) {
        return Err(ServiceError::InvalidParameterValue(format!(
            "1 validation error detected: Value '{max}' at 'maxItems' failed to satisfy constraint: Member must have value less than or equal to 50"
        ))
        .into());
    }
    let resp = state
        .events
        .list_configs(&caller, &name, q.get("Marker").map(String::as_str), max)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

/// InvokeAsync (deprecated in Lambda, still in its API): an Event invoke answered
/// `{"Status": 202}`.
async fn invoke_async(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let out = state
        .invoker
        .invoke(
            &caller,
            InvokeRequest {
                function_name: name,
                invocation_type: Some("Event".to_string()),
                idempotency_key: crate::app::header_str(&headers, "x-tern-idempotency-key"),
                payload: body,
                ..Default::default()
            },
        )
        .await?;
    let mut resp = json(StatusCode::ACCEPTED, &serde_json::json!({ "Status": 202 }));
    if let Ok(v) = axum::http::HeaderValue::from_str(&out.request_id) {
        resp.headers_mut().insert("x-amzn-requestid", v);
    }
    Ok(resp)
}

async fn invocation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let resp = state.events.invocation(&caller, &id).await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn list_dead_letters(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let limit: usize = number(&q, "limit", 100)?;
    let resp = state
        .events
        .dead_letters(&caller, &name, q.get("marker").cloned(), limit)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn show_dead_letter(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let resp = state.events.dead_letter(&caller, &name, &id).await?;
    Ok(json(StatusCode::OK, &resp))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RedriveRequest {
    /// One entry; all of them when absent.
    request_id: Option<String>,
}

async fn redrive(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: RedriveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RedriveRequest::default()
    } else {
        parse_body(&body)?
    };
    let n = state.events.redrive(&caller, &name, req.request_id).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "redriven": n })))
}

async fn purge_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let n = state.events.purge(&caller, &name, None).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "purged": n })))
}

async fn purge_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let n = state.events.purge(&caller, &name, Some(id)).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "purged": n })))
}

async fn queue_messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(queue): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let after: i64 = number(&q, "after", 0)?;
    let limit: usize = number(&q, "limit", 100)?;
    let resp = state
        .events
        .queue_messages(&caller, &queue, after, limit)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn delete_queue_messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(queue): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let Some(up_to) = q.get("upTo") else {
        return Err(ServiceError::InvalidParameterValue(
            "upTo (the id of the last record to delete) is required".to_string(),
        )
        .into());
    };
    let up_to: i64 = up_to.parse().map_err(|_| {
        ApiError::from(ServiceError::InvalidParameterValue(format!(
            "Invalid value for 'upTo': '{up_to}'"
        )))
    })?;
    let n = state
        .events
        .delete_queue_messages(&caller, &queue, up_to)
        .await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "deleted": n })))
}
