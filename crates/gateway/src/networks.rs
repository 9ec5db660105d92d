//! Routes of the private networks (`/tern/v1/networks`, tern's own API). Thin: parse,
//! call [`tern_invoke::networks::NetworkService`], shape the answer.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use tern_invoke::networks::NetworkBody;
use tern_invoke::Caller;

use crate::app::{json, parse_body, ApiError, AppState};

/// The network routes, to sit behind the authentication layer with the rest of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/tern/v1/networks", get(list).post(create))
        .route(
            "/tern/v1/networks/:name",
            get(get_one).put(update).delete(remove),
        )
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let networks = state.networks.list(&caller).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "Networks": networks }),
    ))
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: NetworkBody = parse_body(&body)?;
    let created = state.networks.create(&caller, req).await?;
    Ok(json(StatusCode::CREATED, &created))
}

async fn get_one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json(
        StatusCode::OK,
        &state.networks.get(&caller, &name).await?,
    ))
}

async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: NetworkBody = parse_body(&body)?;
    Ok(json(
        StatusCode::OK,
        &state.networks.update(&caller, &name, req).await?,
    ))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.networks.delete(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
