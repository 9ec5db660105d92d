//! Errors of the management and invoke services. The gateway maps each variant to a
//! Lambda error type and HTTP status, in one place.

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    InvalidRequestContent(String),
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceConflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    RequestTooLarge(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{message}")]
    TooManyRequests {
        reason: &'static str,
        message: String,
    },
    #[error("{0}")]
    InvalidRuntime(String),
    #[error("{0}")]
    ProvisionedConcurrencyConfigNotFound(String),
    /// The caller's account may not use a resource of another account.
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    Service(String),
}

impl From<tern_store::StoreError> for ServiceError {
    fn from(e: tern_store::StoreError) -> Self {
        match e {
            tern_store::StoreError::Conflict(m) => ServiceError::ResourceConflict(m),
            other => {
                tracing::error!(error = %other, "store failure");
                ServiceError::Service(format!("internal storage error: {other}"))
            }
        }
    }
}
