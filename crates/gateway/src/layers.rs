//! Routes of Lambda's layer API (`/2018-10-31/layers/...`). Thin: parse, call
//! [`tern_invoke::layers::LayerService`], shape the answer.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use tern_core::layer::{AddLayerVersionPermissionRequest, PublishLayerVersionRequest};
use tern_invoke::layers::LayerListQuery;
use tern_invoke::{Caller, ServiceError};

use crate::app::{json, parse_body, ApiError, AppState};
use crate::download::request_origin;

type Q = Query<HashMap<String, String>>;

/// The layer routes, to sit behind the authentication layer with the rest of the API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/2018-10-31/layers", get(list_layers))
        .route(
            "/2018-10-31/layers/:name/versions",
            post(publish).get(list_versions),
        )
        .route(
            "/2018-10-31/layers/:name/versions/:version",
            get(get_version).delete(delete_version),
        )
        .route(
            "/2018-10-31/layers/:name/versions/:version/policy",
            post(add_permission).get(get_policy),
        )
        .route(
            "/2018-10-31/layers/:name/versions/:version/policy/:sid",
            delete(remove_permission),
        )
}

/// `Content.Location` of a layer version: a presigned URL that serves its zip, through
/// the same download mechanism as GetFunction's `Code.Location` (layer zips live in the
/// same code store).
fn location_for<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<impl Fn(&str) -> String + Sync + 'a, ApiError> {
    let origin = request_origin(headers).ok_or_else(|| {
        ApiError::from(ServiceError::InvalidRequestContent(
            "the request has no Host header".to_string(),
        ))
    })?;
    let downloads = &state.downloads;
    Ok(move |sha256_hex: &str| downloads.code_url(&origin, sha256_hex))
}

fn version_number(v: &str) -> Result<u64, ApiError> {
    v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
        ApiError::from(ServiceError::InvalidParameterValue(format!(
            "Invalid value for 'VersionNumber': '{v}' is not a layer version number"
        )))
    })
}

fn list_query(q: &HashMap<String, String>) -> Result<LayerListQuery, ApiError> {
    let max_items = crate::app::max_items(q)?;
    Ok(LayerListQuery {
        compatible_runtime: q.get("CompatibleRuntime").cloned(),
        compatible_architecture: q.get("CompatibleArchitecture").cloned(),
        marker: q.get("Marker").cloned(),
        max_items,
    })
}

async fn publish(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: PublishLayerVersionRequest = parse_body(&body)?;
    let location = location_for(&state, &headers)?;
    let resp = state
        .functions
        .layers()
        .publish(&caller, &name, req, &location)
        .await?;
    Ok(json(StatusCode::CREATED, &resp))
}

/// ListLayers, or GetLayerVersionByArn with `find=LayerVersion` (same path).
async fn list_layers(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let layers = state.functions.layers();
    if q.get("find").is_some_and(|f| f == "LayerVersion") {
        let arn = q.get("Arn").ok_or_else(|| {
            ApiError::from(ServiceError::InvalidParameterValue(
                "Arn is required to find a layer version".into(),
            ))
        })?;
        let location = location_for(&state, &headers)?;
        let resp = layers.get_by_arn(&caller, arn, &location).await?;
        return Ok(json(StatusCode::OK, &resp));
    }
    let resp = layers.list_layers(&caller, list_query(&q)?).await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn list_versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let resp = state
        .functions
        .layers()
        .list_versions(&caller, &name, list_query(&q)?)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn get_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let location = location_for(&state, &headers)?;
    let resp = state
        .functions
        .layers()
        .get(&caller, &name, version, &location)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn delete_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    state
        .functions
        .layers()
        .delete(&caller, &name, version)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_permission(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
    Query(q): Q,
    body: Bytes,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let req: AddLayerVersionPermissionRequest = parse_body(&body)?;
    let resp = state
        .functions
        .layers()
        .add_permission(
            &caller,
            &name,
            version,
            q.get("RevisionId").map(String::as_str),
            req,
        )
        .await?;
    Ok(json(StatusCode::CREATED, &resp))
}

async fn get_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    let resp = state
        .functions
        .layers()
        .get_policy(&caller, &name, version)
        .await?;
    Ok(json(StatusCode::OK, &resp))
}

async fn remove_permission(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((name, version, sid)): Path<(String, String, String)>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let version = version_number(&version)?;
    state
        .functions
        .layers()
        .remove_permission(
            &caller,
            &name,
            version,
            &sid,
            q.get("RevisionId").map(String::as_str),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
