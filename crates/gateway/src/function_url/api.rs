//! Routes of Create/Get/Update/Delete/ListFunctionUrlConfig(s). Thin: parse, call
//! [`tern_invoke::urls::UrlService`], shape the answer with the URL's `FunctionUrl`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use bytes::Bytes;
use tern_core::function_url::{
    FunctionUrlConfig, FunctionUrlInput, FunctionUrlRecord, ListFunctionUrlConfigsResponse,
};
use tern_invoke::{Caller, ServiceError};

use crate::app::{json, parse_body, ApiError, AppState};
use crate::download::request_origin;

type Q = Query<HashMap<String, String>>;

/// The routes, to sit behind the authentication layer with the rest of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/2021-10-31/functions/:name/url",
            get(get_url)
                .post(create_url)
                .put(update_url)
                .delete(delete_url),
        )
        .route("/2021-10-31/functions/:name/urls", get(list_urls))
}

fn qualifier(q: &HashMap<String, String>) -> Option<&str> {
    q.get("Qualifier").map(String::as_str)
}

fn origin(headers: &HeaderMap) -> Result<String, ApiError> {
    request_origin(headers).ok_or_else(|| {
        ServiceError::InvalidRequestContent("the request has no Host header".to_string()).into()
    })
}

fn config(state: &AppState, origin: &str, rec: &FunctionUrlRecord) -> FunctionUrlConfig {
    FunctionUrlConfig::new(
        rec,
        state.url_base.function_url(origin, &rec.url_id),
        state.urls.function_arn(rec),
    )
}

async fn create_url(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let origin = origin(&headers)?;
    let input: FunctionUrlInput = parse_body(&body)?;
    let rec = state
        .urls
        .create(&caller, &name, qualifier(&q), input)
        .await?;
    Ok(json(StatusCode::CREATED, &config(&state, &origin, &rec)))
}

async fn get_url(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let origin = origin(&headers)?;
    let rec = state.urls.get(&caller, &name, qualifier(&q)).await?;
    Ok(json(StatusCode::OK, &config(&state, &origin, &rec)))
}

async fn update_url(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let origin = origin(&headers)?;
    let input: FunctionUrlInput = parse_body(&body)?;
    let rec = state
        .urls
        .update(&caller, &name, qualifier(&q), input)
        .await?;
    Ok(json(StatusCode::OK, &config(&state, &origin, &rec)))
}

async fn delete_url(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    state.urls.delete(&caller, &name, qualifier(&q)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_urls(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let origin = origin(&headers)?;
    let max_items = crate::app::max_items(&q)?
        .map(|n| {
            usize::try_from(n).map_err(|_| {
                ServiceError::InvalidParameterValue(format!(
                    "Invalid value for 'MaxItems': '{n}' is not a positive integer"
                ))
            })
        })
        .transpose()?;
    let (page, next_marker) = state
        .urls
        .list(&caller, &name, q.get("Marker").cloned(), max_items)
        .await?;
    let resp = ListFunctionUrlConfigsResponse {
        function_url_configs: page.iter().map(|r| config(&state, &origin, r)).collect(),
        next_marker,
    };
    Ok(json(StatusCode::OK, &resp))
}
