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
    /// A bound on what the store keeps (Lambda's code-storage quota error).
    #[error("{0}")]
    CodeStorageExceeded(String),
    #[error("{0}")]
    RequestTooLarge(String),
    #[error("{0}")]
    RequestEntityTooLarge(String),
    #[error("{0}")]
    Throttled(#[from] crate::throttle::Throttle),
    #[error("{0}")]
    InvalidRuntime(String),
    #[error("{0}")]
    ProvisionedConcurrencyConfigNotFound(String),
    /// The caller's account may not use a resource of another account.
    #[error("{0}")]
    AccessDenied(String),
    #[error("{0}")]
    Service(String),
    /// The store failed; the cause is kept until the gateway logs and maps it.
    #[error("internal storage error: {0}")]
    Store(#[source] tern_store::StoreError),
    /// A run could not reach the function (other than a throttle).
    #[error("{0}")]
    Execution(#[source] crate::execution::ExecutionError),
}

impl From<crate::execution::ExecutionError> for ServiceError {
    fn from(e: crate::execution::ExecutionError) -> Self {
        match e {
            crate::execution::ExecutionError::Throttled(t) => ServiceError::Throttled(t),
            other => ServiceError::Execution(other),
        }
    }
}

impl From<tern_store::StoreError> for ServiceError {
    fn from(e: tern_store::StoreError) -> Self {
        match e {
            tern_store::StoreError::Conflict(m) => ServiceError::ResourceConflict(m),
            tern_store::StoreError::NotFound(m) => ServiceError::ResourceNotFound(m),
            tern_store::StoreError::Precondition(m) => ServiceError::PreconditionFailed(m),
            tern_store::StoreError::LimitExceeded(m) => ServiceError::CodeStorageExceeded(m),
            other => ServiceError::Store(other),
        }
    }
}

/// Runs `f` on the store's worker threads, with its errors as service errors.
pub(crate) async fn stored<T: Send + 'static>(
    store: &tern_store::StoreHandle,
    f: impl FnOnce(&dyn tern_store::Store) -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    store.call(f).await
}
