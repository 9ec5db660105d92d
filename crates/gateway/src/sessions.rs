//! Temporary credentials of function instances that may call tern (`TernNetwork.CallTern`),
//! as Lambda hands a function its execution role's: an access key id (`ASIA…`), a secret
//! and a session token, for the function's namespace only. They live in memory on the
//! server that started the instance (the instance calls that server, at an address on its
//! side of its link), expire after a lifetime, and are revoked when the instance goes; an
//! instance near the end of the lifetime gets no more work, and a fresh one gets fresh
//! credentials.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::Rng;
use tern_runtime::credentials::InstanceCredentials;
use tern_store::AccessKey;

/// What SDKs expect of a temporary key id's shape: `ASIA` and 16 characters.
const KEY_PREFIX: &str = "ASIA";
const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A temporary key, as the authenticator checks it.
pub struct SessionKey {
    pub key: AccessKey,
    pub session_token: String,
}

/// Why a temporary key is refused.
pub enum SessionError {
    /// Never issued, or revoked (its instance is gone).
    Unknown,
    Expired,
}

struct Session {
    secret: String,
    token: String,
    namespace: String,
    instance: String,
    expires: Instant,
}

/// The live temporary credentials of this server's instances.
pub struct Sessions {
    lifetime: Duration,
    /// Sessions at most (one per live instance that may call tern).
    capacity: usize,
    by_key: Mutex<HashMap<String, Session>>,
    /// Where instances reach the API, once the server listens there.
    endpoint: OnceLock<String>,
}

impl Sessions {
    pub fn new(lifetime: Duration, capacity: usize) -> Sessions {
        Sessions {
            lifetime,
            capacity,
            by_key: Mutex::new(HashMap::new()),
            endpoint: OnceLock::new(),
        }
    }

    /// The URL instances call tern's API at (`AWS_ENDPOINT_URL_LAMBDA`).
    pub fn set_endpoint(&self, url: String) {
        let _ = self.endpoint.set(url);
    }

    /// Whether `access_key_id` is of the temporary kind (whether or not it is live).
    pub fn is_temporary(access_key_id: &str) -> bool {
        access_key_id.starts_with(KEY_PREFIX)
    }

    /// The live session of `access_key_id`.
    pub fn get(&self, access_key_id: &str) -> Result<SessionKey, SessionError> {
        let mut by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
        let session = by_key.get(access_key_id).ok_or(SessionError::Unknown)?;
        if Instant::now() >= session.expires {
            by_key.remove(access_key_id);
            return Err(SessionError::Expired);
        }
        Ok(SessionKey {
            key: AccessKey {
                access_key_id: access_key_id.to_string(),
                secret: session.secret.clone(),
                namespace: session.namespace.clone(),
            },
            session_token: session.token.clone(),
        })
    }

    /// Sessions live now (expired ones included until they are looked up or revoked).
    pub fn len(&self) -> usize {
        self.by_key.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn random_string(rng: &mut impl Rng, alphabet: &[u8], len: usize) -> String {
    (0..len)
        .map(|_| char::from(alphabet[rng.gen_range(0..alphabet.len())]))
        .collect()
}

impl InstanceCredentials for Sessions {
    fn issue(&self, namespace: &str, instance_id: &str) -> Result<Vec<(String, String)>, String> {
        let endpoint = self
            .endpoint
            .get()
            .ok_or("the server does not listen for its functions yet")?
            .clone();
        let mut rng = rand::thread_rng();
        let key_id = format!("{KEY_PREFIX}{}", random_string(&mut rng, KEY_ALPHABET, 16));
        let mut secret = [0u8; 30];
        rng.fill(&mut secret[..]);
        let secret = base64::engine::general_purpose::STANDARD.encode(secret);
        let mut token = [0u8; 48];
        rng.fill(&mut token[..]);
        let token = base64::engine::general_purpose::STANDARD.encode(token);
        {
            let mut by_key = self.by_key.lock().unwrap_or_else(|e| e.into_inner());
            if by_key.len() >= self.capacity {
                let now = Instant::now();
                by_key.retain(|_, s| s.expires > now);
                if by_key.len() >= self.capacity {
                    return Err(format!(
                        "{} instances hold credentials for tern's API already",
                        self.capacity
                    ));
                }
            }
            by_key.insert(
                key_id.clone(),
                Session {
                    secret: secret.clone(),
                    token: token.clone(),
                    namespace: namespace.to_string(),
                    instance: instance_id.to_string(),
                    expires: Instant::now() + self.lifetime,
                },
            );
        }
        Ok(vec![
            ("AWS_ACCESS_KEY_ID".to_string(), key_id),
            ("AWS_SECRET_ACCESS_KEY".to_string(), secret),
            ("AWS_SESSION_TOKEN".to_string(), token),
            ("AWS_ENDPOINT_URL_LAMBDA".to_string(), endpoint),
        ])
    }

    fn revoke(&self, instance_id: &str) {
        self.by_key
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| s.instance != instance_id);
    }

    fn lifetime(&self) -> Duration {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(String, String)], name: &str) -> String {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    #[test]
    fn issued_keys_work_until_revoked_or_expired() {
        let sessions = Sessions::new(Duration::from_millis(200), 8);
        assert!(sessions.issue("default", "i1").is_err(), "no endpoint yet");
        sessions.set_endpoint("http://100.96.0.1:8900".into());
        let vars = sessions.issue("team-a", "i1").expect("issue");
        let id = env_of(&vars, "AWS_ACCESS_KEY_ID");
        assert!(id.starts_with("ASIA") && id.len() == 20, "{id}");
        assert_eq!(
            env_of(&vars, "AWS_ENDPOINT_URL_LAMBDA"),
            "http://100.96.0.1:8900"
        );
        let got = sessions.get(&id).ok().expect("live");
        assert_eq!(got.key.namespace, "team-a");
        assert_eq!(got.key.secret, env_of(&vars, "AWS_SECRET_ACCESS_KEY"));
        assert_eq!(got.session_token, env_of(&vars, "AWS_SESSION_TOKEN"));

        sessions.revoke("i1");
        assert!(matches!(sessions.get(&id), Err(SessionError::Unknown)));

        let vars = sessions.issue("team-a", "i2").expect("issue");
        let id = env_of(&vars, "AWS_ACCESS_KEY_ID");
        std::thread::sleep(Duration::from_millis(250));
        assert!(matches!(sessions.get(&id), Err(SessionError::Expired)));
        assert!(
            sessions.is_empty(),
            "an expired session is dropped when looked up"
        );
    }

    #[test]
    fn the_number_of_sessions_is_bounded() {
        let sessions = Sessions::new(Duration::from_secs(60), 2);
        sessions.set_endpoint("http://x".into());
        sessions.issue("a", "i1").expect("one");
        sessions.issue("a", "i2").expect("two");
        assert!(sessions.issue("a", "i3").is_err());
        sessions.revoke("i1");
        sessions.issue("a", "i3").expect("room again");
    }
}
