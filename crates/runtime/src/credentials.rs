//! Credentials an instance is started with, for calling tern's own API from inside
//! (Lambda's execution-role credentials): who issues them is the server's business; the
//! pool only asks for them at launch and lets them go when the instance does.

use std::sync::Arc;

/// Issues and revokes the credentials of instances.
pub trait InstanceCredentials: Send + Sync {
    /// The environment variables that hand an instance of `namespace` its credentials
    /// (and the endpoint to use them at); valid until revoked or expired.
    fn issue(&self, namespace: &str, instance_id: &str) -> Result<Vec<(String, String)>, String>;
    /// The instance is gone: its credentials are refused from now on.
    fn revoke(&self, instance_id: &str);
    /// How long issued credentials stay valid; an instance is not given work once
    /// less than a tenth of this is left (a fresh instance gets fresh ones).
    fn lifetime(&self) -> std::time::Duration;
}

/// Revokes an instance's credentials when dropped (with the instance, whichever way it
/// ends).
pub struct CredentialGuard {
    issuer: Arc<dyn InstanceCredentials>,
    instance_id: String,
    /// When they stop being handed work: a tenth of the lifetime before expiry.
    pub(crate) retire_at: std::time::Instant,
}

impl CredentialGuard {
    pub(crate) fn new(issuer: Arc<dyn InstanceCredentials>, instance_id: &str) -> CredentialGuard {
        let lifetime = issuer.lifetime();
        CredentialGuard {
            retire_at: std::time::Instant::now() + lifetime - lifetime / 10,
            issuer,
            instance_id: instance_id.to_string(),
        }
    }
}

impl Drop for CredentialGuard {
    fn drop(&mut self) {
        self.issuer.revoke(&self.instance_id);
    }
}
