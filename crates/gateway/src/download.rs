//! `GET /tern/v1/code/<sha256>.zip`: serves a stored deployment package to whoever holds
//! a presigned URL for it (GetFunction's `Code.Location`). No SigV4: the URL is the
//! credential (see `presign.rs`). The zip is streamed from the code store in chunks, so a
//! 50 MB package is never held in memory at once.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use tern_invoke::ServiceError;
use tern_store::CodeStore;
use tokio::io::AsyncReadExt;

use crate::app::{ApiError, AppState};
use crate::presign::{code_zip_path, PresignError, UrlSigner};

/// Bytes read from disk per chunk of the response body.
const CHUNK_BYTES: usize = 64 * 1024;

/// Presigned downloads of stored zips: the signer and the store they come from.
pub struct Downloads {
    signer: UrlSigner,
    code: Arc<CodeStore>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `http://<host>` as the client addressed this server (`https` behind a proxy that says
/// so), or `None` without a Host header (a signed request always has one).
pub fn request_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get("host")?.to_str().ok()?;
    let https = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    Some(format!("{}://{host}", if https { "https" } else { "http" }))
}

impl Downloads {
    pub fn new(signer: UrlSigner, code: Arc<CodeStore>) -> Self {
        Downloads { signer, code }
    }

    /// A URL under `origin` that serves the stored zip with this sha256 (hex) for the
    /// next 10 minutes.
    pub fn code_url(&self, origin: &str, sha256_hex: &str) -> String {
        format!(
            "{origin}{}",
            self.signer.sign(&code_zip_path(sha256_hex), now_unix())
        )
    }

    fn zip_file(&self, file: &str) -> Option<PathBuf> {
        let sha = file.strip_suffix(".zip")?;
        let is_sha256 = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
        is_sha256.then(|| self.code.zip_path(sha))
    }
}

fn refused(e: PresignError) -> ApiError {
    ApiError::new(403, "AccessDeniedException", e.to_string())
}

fn not_found() -> ApiError {
    ServiceError::ResourceNotFound("The code package does not exist".to_string()).into()
}

pub async fn code_zip(
    State(state): State<AppState>,
    Path(file): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let downloads = &state.downloads;
    downloads
        .signer
        .verify(uri.path(), uri.query().unwrap_or(""), now_unix())
        .map_err(refused)?;
    let path = downloads.zip_file(&file).ok_or_else(not_found)?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => {
            return Err(
                ServiceError::Service(format!("cannot read {}: {e}", path.display())).into(),
            )
        }
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| ServiceError::Service(format!("cannot stat {}: {e}", path.display())))?
        .len();
    let chunks = futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = BytesMut::with_capacity(CHUNK_BYTES);
        match file.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(file))),
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut resp = Body::from_stream(chunks).into_response();
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/zip"));
    h.insert("content-length", HeaderValue::from(len));
    Ok(resp)
}
