//! SigV4 verification of API requests against the stored access keys (DESIGN D7).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tern_core::sigv4::{self, RequestParts, SigError};
use tern_invoke::lookups::Lookups;
use tern_invoke::{Caller, ServiceError};
use tern_store::{AccessKey, StoreError, StoreHandle};

use crate::sessions::{SessionError, Sessions};

/// Why a request was not authenticated. All are 403 on the wire.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    #[error("{0}")]
    Signature(SigError),
    #[error("Credential should be scoped to a valid region and the service 'lambda': this server signs for '{region}/lambda', the request for '{given}'")]
    Scope { region: String, given: String },
    #[error("The provided x-amz-content-sha256 header does not match the request body")]
    BodyHashMismatch,
    #[error("Presigned URLs (X-Amz-Signature in the query) are not accepted; sign with the Authorization header")]
    QuerySigned,
    #[error("could not look up the access key: {0}")]
    Store(String),
}

impl AuthError {
    pub fn error_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::ExpiredToken => "ExpiredTokenException",
            AuthError::Signature(SigError::Missing) => "MissingAuthenticationTokenException",
            AuthError::Signature(_)
            | AuthError::Scope { .. }
            | AuthError::BodyHashMismatch
            | AuthError::QuerySigned => "InvalidSignatureException",
            AuthError::Store(_) => "ServiceException",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            AuthError::Store(_) => 500,
            _ => 403,
        }
    }
}

pub struct Authenticator {
    store: StoreHandle,
    /// The region signatures must be scoped to: the server's.
    region: String,
    keys: RwLock<HashMap<String, AccessKey>>,
    /// Keys not in `keys`: read from the store a few at a time, and an unknown one
    /// remembered briefly, so a flood of made-up key ids cannot flood the store.
    unknown: Lookups<AccessKey>,
    /// Temporary credentials of instances that may call tern.
    sessions: Option<Arc<Sessions>>,
}

/// A request whose key, scope, date and signed headers have been checked, before its
/// body is read: only the signature over the body's hash remains.
pub struct Pending {
    auth: sigv4::Authorization,
    key: AccessKey,
}

impl Pending {
    /// The namespace of the key the request claims (its signature still unchecked).
    pub fn namespace(&self) -> &str {
        &self.key.namespace
    }
}

/// The header that carries a temporary key's session token.
const SECURITY_TOKEN: &str = "x-amz-security-token";

impl Authenticator {
    pub fn new(store: StoreHandle, region: impl Into<String>) -> Self {
        Authenticator {
            store,
            region: region.into(),
            keys: RwLock::new(HashMap::new()),
            unknown: Lookups::new(),
            sessions: None,
        }
    }

    /// Also accepts the temporary credentials of instances that may call tern.
    pub fn with_sessions(mut self, sessions: Arc<Sessions>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// A temporary key: live, with its session token sent (and signed) as
    /// `X-Amz-Security-Token`.
    fn session_key(
        &self,
        parts: &RequestParts<'_>,
        auth: &sigv4::Authorization,
    ) -> Result<AccessKey, AuthError> {
        let session = match self.sessions.as_ref().map(|s| s.get(&auth.access_key)) {
            Some(Ok(session)) => session,
            Some(Err(SessionError::Expired)) => return Err(AuthError::ExpiredToken),
            _ => return Err(AuthError::UnknownKey),
        };
        let sent = parts
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(SECURITY_TOKEN))
            .map(|(_, value)| value.trim());
        let signed = auth.signed_headers.iter().any(|h| h == SECURITY_TOKEN);
        match sent {
            Some(token)
                if signed
                    && sigv4::constant_time_eq(
                        token.as_bytes(),
                        session.session_token.as_bytes(),
                    ) =>
            {
                Ok(session.key)
            }
            _ => Err(AuthError::UnknownKey),
        }
    }

    async fn key(&self, id: &str) -> Result<Option<AccessKey>, AuthError> {
        if let Some(k) = self.keys.read().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(Some(k.clone()));
        }
        let store = self.store.clone();
        let found = self
            .unknown
            .get(id, |owned| async move {
                store
                    .call::<_, StoreError, _>(move |store| store.get_access_key(&owned))
                    .await
                    .map_err(ServiceError::Store)
            })
            .await
            .map_err(|e| AuthError::Store(e.to_string()))?;
        if let Some(k) = &found {
            self.keys
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.to_string(), k.clone());
        }
        Ok(found)
    }

    /// Everything that can be checked before the body: the `Authorization` header parses,
    /// the key exists, the scope is this server's region and `lambda`, the date is
    /// current, and the headers that must be signed are. `parts.payload_sha256` is not
    /// used.
    pub async fn check_before_body(
        &self,
        parts: &RequestParts<'_>,
        authorization: Option<&str>,
        query_signed: bool,
    ) -> Result<Pending, AuthError> {
        if query_signed {
            return Err(AuthError::QuerySigned);
        }
        let header = authorization.ok_or(AuthError::Missing)?;
        let auth = sigv4::parse_authorization(header).map_err(AuthError::Signature)?;
        let key = if Sessions::is_temporary(&auth.access_key) {
            self.session_key(parts, &auth)?
        } else {
            self.key(&auth.access_key)
                .await?
                .ok_or(AuthError::UnknownKey)?
        };
        if auth.region != self.region || auth.service != "lambda" {
            return Err(AuthError::Scope {
                region: self.region.clone(),
                given: format!("{}/{}", auth.region, auth.service),
            });
        }
        sigv4::check_request(parts, &auth, sigv4::now_unix()).map_err(AuthError::Signature)?;
        Ok(Pending { auth, key })
    }

    /// Checks the signature over `parts` (with the body's hash); returns who is calling.
    pub fn finish(&self, parts: &RequestParts<'_>, pending: &Pending) -> Result<Caller, AuthError> {
        sigv4::check_signature(parts, &pending.auth, &pending.key.secret)
            .map_err(AuthError::Signature)?;
        Ok(Caller {
            account: tern_core::names::account_of(&pending.key.namespace),
            namespace: pending.key.namespace.clone(),
        })
    }
}
