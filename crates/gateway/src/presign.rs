//! Presigned download URLs, like the presigned S3 URL in Lambda's `GetFunction`
//! `Code.Location`: `<path>?expires=<unix seconds>&signature=<hex HMAC-SHA256>`.
//!
//! The URL is a bearer token: whoever holds it may GET the path until it expires, without
//! SigV4. The signature covers the path and the expiry, with a key only this server has,
//! so neither can be changed. The signer knows nothing of functions: it signs a path, and
//! the paths it is used for name content by its sha256 (see [`code_zip_path`]).

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long a URL stays valid: 10 minutes, as Lambda's.
pub const URL_VALIDITY: Duration = Duration::from_secs(600);

/// Bytes of the signing key.
pub const KEY_BYTES: usize = 32;

/// Why a presigned URL is refused. All are 403 on the wire.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PresignError {
    #[error(
        "the URL has no `expires` and `signature` parameters; get a fresh one from GetFunction"
    )]
    Missing,
    #[error("the URL's `expires` or `signature` parameter is malformed")]
    Malformed,
    #[error(
        "the URL's signature does not match: the URL was altered, or signed by another server"
    )]
    BadSignature,
    #[error("the URL expired at {expired_at} (unix seconds); get a fresh one from GetFunction")]
    Expired { expired_at: u64 },
}

/// Signs and verifies presigned URLs with one server-wide key.
pub struct UrlSigner {
    key: [u8; KEY_BYTES],
}

// Keeps the key out of `{:?}` output.
impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner { key: <redacted> }")
    }
}

/// Where the code store's zip with this sha256 (hex) is served.
pub fn code_zip_path(sha256_hex: &str) -> String {
    format!("/tern/v1/code/{sha256_hex}.zip")
}

impl UrlSigner {
    pub fn new(key: [u8; KEY_BYTES]) -> Self {
        UrlSigner { key }
    }

    fn mac(&self, path: &str, expires: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC-SHA256 takes a key of any length");
        mac.update(b"GET\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// `path?expires=…&signature=…`, valid for [`URL_VALIDITY`] from `now_unix`.
    pub fn sign(&self, path: &str, now_unix: u64) -> String {
        let expires = now_unix.saturating_add(URL_VALIDITY.as_secs());
        let signature = hex::encode(self.mac(path, expires).finalize().into_bytes());
        format!("{path}?expires={expires}&signature={signature}")
    }

    /// Checks the query of a request for `path`: the signature (in constant time), then
    /// the expiry against `now_unix`.
    pub fn verify(&self, path: &str, query: &str, now_unix: u64) -> Result<(), PresignError> {
        let mut expires = None;
        let mut signature = None;
        for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            match key {
                "expires" => expires = Some(value),
                "signature" => signature = Some(value),
                _ => {}
            }
        }
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(PresignError::Missing);
        };
        let expires: u64 = expires.parse().map_err(|_| PresignError::Malformed)?;
        let signature = hex::decode(signature).map_err(|_| PresignError::Malformed)?;
        self.mac(path, expires)
            .verify_slice(&signature)
            .map_err(|_| PresignError::BadSignature)?;
        if now_unix >= expires {
            return Err(PresignError::Expired {
                expired_at: expires,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;
    const PATH: &str = "/tern/v1/code/ab.zip";

    fn signer() -> UrlSigner {
        UrlSigner::new([7; KEY_BYTES])
    }

    fn query_of(url: &str) -> &str {
        url.split_once('?').expect("a query").1
    }

    #[test]
    fn a_signed_url_is_valid_for_ten_minutes_and_no_longer() {
        let url = signer().sign(PATH, NOW);
        assert!(url.starts_with(PATH), "{url}");
        let query = query_of(&url);
        assert_eq!(signer().verify(PATH, query, NOW), Ok(()));
        assert_eq!(signer().verify(PATH, query, NOW + 599), Ok(()));
        assert_eq!(
            signer().verify(PATH, query, NOW + 600),
            Err(PresignError::Expired {
                expired_at: NOW + 600
            })
        );
    }

    #[test]
    fn a_changed_path_expiry_or_signature_is_refused() {
        let url = signer().sign(PATH, NOW);
        let query = query_of(&url);
        assert_eq!(
            signer().verify("/tern/v1/code/cd.zip", query, NOW),
            Err(PresignError::BadSignature)
        );
        let later = query.replace(&format!("expires={}", NOW + 600), "expires=9999999999");
        assert_eq!(
            signer().verify(PATH, &later, NOW),
            Err(PresignError::BadSignature)
        );
        let sig_at = query.find("signature=").expect("signature") + "signature=".len();
        let mut flipped = query.to_string();
        let first = if &query[sig_at..sig_at + 1] == "0" {
            "1"
        } else {
            "0"
        };
        flipped.replace_range(sig_at..sig_at + 1, first);
        assert_eq!(
            signer().verify(PATH, &flipped, NOW),
            Err(PresignError::BadSignature)
        );
    }

    #[test]
    fn another_servers_key_does_not_verify() {
        let url = UrlSigner::new([8; KEY_BYTES]).sign(PATH, NOW);
        assert_eq!(
            signer().verify(PATH, query_of(&url), NOW),
            Err(PresignError::BadSignature)
        );
    }

    #[test]
    fn missing_or_malformed_parameters_are_refused() {
        assert_eq!(signer().verify(PATH, "", NOW), Err(PresignError::Missing));
        assert_eq!(
            signer().verify(PATH, "expires=1", NOW),
            Err(PresignError::Missing)
        );
        assert_eq!(
            signer().verify(PATH, "expires=soon&signature=00", NOW),
            Err(PresignError::Malformed)
        );
        assert_eq!(
            signer().verify(PATH, "expires=1&signature=xyz", NOW),
            Err(PresignError::Malformed)
        );
        assert_eq!(
            signer().verify(PATH, "expires=1&signature=00", NOW),
            Err(PresignError::BadSignature)
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        assert!(!format!("{:?}", signer()).contains('7'));
    }
}
