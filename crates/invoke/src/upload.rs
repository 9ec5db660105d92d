//! The one way a `.zip` given in a request (function code or a layer) gets into the code
//! store: base64 decoded, held to Lambda's 50 MB limit, extracted safely and stored by
//! content, with errors that name the request field.

use std::sync::Arc;

use base64::Engine;
use tern_core::limits;
use tern_store::code::StoredCode;
use tern_store::{CodeStore, PackageError};

use crate::error::ServiceError;

/// Decodes `zip_b64` (the value of request field `field`) and stores the package.
/// `what` names it in messages ("package", "layer").
pub async fn store_zip(
    code: &Arc<CodeStore>,
    zip_b64: &str,
    field: &str,
    what: &str,
) -> Result<StoredCode, ServiceError> {
    let zip = base64::engine::general_purpose::STANDARD
        .decode(zip_b64.trim())
        .map_err(|e| {
            ServiceError::InvalidParameterValue(format!(
                "Invalid value for '{field}': not valid base64 ({e})"
            ))
        })?;
    if zip.len() > limits::ZIP_BYTES {
        return Err(ServiceError::RequestEntityTooLarge(format!(
            "Zipped {what} is {} bytes; the limit is {} bytes",
            zip.len(),
            limits::ZIP_BYTES
        )));
    }
    let code = code.clone();
    let what = what.to_string();
    tokio::task::spawn_blocking(move || {
        code.put(&zip).map_err(|e| match e {
            PackageError::Io(io) => {
                ServiceError::Service(format!("could not store the {what}: {io}"))
            }
            other => ServiceError::InvalidParameterValue(format!(
                "Could not unzip uploaded file. Please check your file, then try to upload again. ({other})"
            )),
        })
    })
    .await
    .map_err(|e| ServiceError::Service(format!("internal task failed: {e}")))?
}
