//! The single mapping from [`ServiceError`] to Lambda's error type, HTTP status and body
//! (DESIGN D8). Clients such as boto3 pick the exception class from `x-amzn-ErrorType`.

use tern_invoke::execution::ExecutionError;
use tern_invoke::ServiceError;

/// An error as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub status: u16,
    /// Value of the `x-amzn-ErrorType` header and of `Type`/`__type` in the body.
    pub error_type: &'static str,
    pub body: String,
    /// `Retry-After` seconds for throttling.
    pub retry_after: Option<u32>,
}

/// The service error for an HTTP error that no handler produced (an extractor's
/// rejection): its status picks the Lambda type, its text becomes the message. The
/// caller keeps the original status.
pub fn rejection(status: u16, detail: String) -> ServiceError {
    match status {
        413 => ServiceError::RequestEntityTooLarge(detail),
        400..=499 => ServiceError::InvalidRequestContent(detail),
        _ => ServiceError::Service(detail),
    }
}

pub fn to_wire(err: &ServiceError) -> WireError {
    let (status, error_type, retry_after) = match err {
        ServiceError::InvalidParameterValue(_) => (400, "InvalidParameterValueException", None),
        ServiceError::InvalidRequestContent(_) => (400, "InvalidRequestContentException", None),
        ServiceError::ResourceNotFound(_) => (404, "ResourceNotFoundException", None),
        ServiceError::ResourceConflict(_) => (409, "ResourceConflictException", None),
        ServiceError::PreconditionFailed(_) => (412, "PreconditionFailedException", None),
        ServiceError::CodeStorageExceeded(_) => (400, "CodeStorageExceededException", None),
        ServiceError::RequestTooLarge(_) => (413, "RequestTooLargeException", None),
        ServiceError::RequestEntityTooLarge(_) => (413, "RequestEntityTooLargeException", None),
        ServiceError::Throttled(_) => (429, "TooManyRequestsException", Some(1)),
        ServiceError::InvalidRuntime(_) => (502, "InvalidRuntimeException", None),
        ServiceError::Execution(ExecutionError::UnknownRuntime { .. }) => {
            (502, "InvalidRuntimeException", None)
        }
        ServiceError::Execution(_) => (500, "ServiceException", None),
        ServiceError::Store(e) => {
            tracing::error!(error = %e, source = ?std::error::Error::source(e), "store failure");
            (500, "ServiceException", None)
        }
        ServiceError::ProvisionedConcurrencyConfigNotFound(_) => {
            (404, "ProvisionedConcurrencyConfigNotFoundException", None)
        }
        ServiceError::AccessDenied(_) => (403, "AccessDeniedException", None),
        ServiceError::Service(_) => (500, "ServiceException", None),
    };
    let mut body = serde_json::json!({
        "Type": if status >= 500 { "Service" } else { "User" },
        "message": err.to_string(),
    });
    if let ServiceError::Throttled(t) = err {
        body["Reason"] = serde_json::Value::from(t.reason());
        body["retryAfterSeconds"] = serde_json::Value::from("1");
    }
    WireError {
        status,
        error_type,
        body: body.to_string(),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_404_with_lambda_type() {
        let w = to_wire(&ServiceError::ResourceNotFound(
            "Function not found: x".into(),
        ));
        assert_eq!((w.status, w.error_type), (404, "ResourceNotFoundException"));
        assert!(w.body.contains("Function not found: x"));
    }

    #[test]
    fn throttling_carries_reason_and_retry_after() {
        let w = to_wire(&ServiceError::Throttled(
            tern_invoke::Throttle::ReservedConcurrency {
                function: "f".into(),
                reserved: 1,
            },
        ));
        assert_eq!((w.status, w.retry_after), (429, Some(1)));
        let v: serde_json::Value = serde_json::from_str(&w.body).unwrap();
        assert_eq!(
            v["Reason"],
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
    }
}
