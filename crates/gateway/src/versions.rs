//! Routes of published versions and aliases (Lambda's PublishVersion,
//! ListVersionsByFunction, CreateAlias, GetAlias, UpdateAlias, DeleteAlias,
//! ListAliases) and tern's alias rollback. Thin: parse, call
//! [`tern_invoke::FunctionService`], shape the answer.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use tern_invoke::Caller;

use crate::app::{json, parse_body, ApiError, AppState};

type Q = Query<HashMap<String, String>>;

/// The version and alias routes, to sit behind the authentication layer.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/2015-03-31/functions/:name/versions",
            post(publish).get(list_versions),
        )
        .route(
            "/2015-03-31/functions/:name/aliases",
            post(create_alias).get(list_aliases),
        )
        .route(
            "/2015-03-31/functions/:name/aliases/:alias",
            get(get_alias).put(update_alias).delete(delete_alias),
        )
        .route(
            "/tern/v1/functions/:name/aliases/:alias/rollback",
            post(rollback),
        )
}

async fn publish(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        parse_body(&body)?
    };
    let config = state.functions.publish_version(&caller, &name, req).await?;
    Ok(json(StatusCode::CREATED, &config))
}

async fn list_versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let list = state
        .functions
        .list_versions(
            &caller,
            &name,
            q.get("Marker").cloned(),
            crate::app::max_items(&q)?,
        )
        .await?;
    Ok(json(StatusCode::OK, &list))
}

async fn create_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = parse_body(&body)?;
    let alias = state.functions.create_alias(&caller, &name, req).await?;
    Ok(json(StatusCode::CREATED, &alias))
}

async fn list_aliases(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let list = state
        .functions
        .list_aliases(
            &caller,
            &name,
            q.get("FunctionVersion").cloned(),
            q.get("Marker").cloned(),
            crate::app::max_items(&q)?,
        )
        .await?;
    Ok(json(StatusCode::OK, &list))
}

async fn get_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let alias = state.functions.get_alias(&caller, &name, &alias).await?;
    Ok(json(StatusCode::OK, &alias))
}

async fn update_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, alias)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        Default::default()
    } else {
        parse_body(&body)?
    };
    let alias = state
        .functions
        .update_alias(&caller, &name, &alias, req)
        .await?;
    Ok(json(StatusCode::OK, &alias))
}

async fn delete_alias(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.functions.delete_alias(&caller, &name, &alias).await?;
    // Its URL went with it in the store; this server must not serve it from memory.
    state.urls.forget_namespace(&caller.namespace);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let alias = state
        .functions
        .rollback_alias(&caller, &name, &alias)
        .await?;
    Ok(json(StatusCode::OK, &alias))
}
