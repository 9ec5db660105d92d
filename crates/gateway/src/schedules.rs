//! Routes of the schedules (`/tern/v1/schedules`, tern's own API). Thin: parse, call
//! [`tern_invoke::schedules::ScheduleService`], shape the answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use tern_invoke::schedules::{ScheduleBody, ScheduleChange};
use tern_invoke::Caller;

use crate::app::{json, parse_body, ApiError, AppState};

/// The schedule routes, to sit behind the authentication layer with the rest of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tern/v1/schedules", get(list).post(create))
        .route(
            "/tern/v1/schedules/:name",
            get(get_one).patch(change).delete(remove),
        )
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let schedules = state.schedules.list(&caller).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "schedules": schedules }),
    ))
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ScheduleBody = parse_body(&body)?;
    let created = state.schedules.create(&caller, req).await?;
    Ok(json(StatusCode::CREATED, &created))
}

async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &state.schedules.get(&caller, &name).await?,
    ))
}

async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: ScheduleChange = parse_body(&body)?;
    Ok(json(
        StatusCode::OK,
        &state
            .schedules
            .set_enabled(&caller, &name, req.enabled)
            .await?,
    ))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.schedules.delete(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
