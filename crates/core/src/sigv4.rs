//! AWS Signature Version 4, both sides: the CLI signs with it, the gateway verifies it.
//!
//! Canonicalisation follows botocore for REST-JSON services such as Lambda: the path is
//! URI-encoded a second time, query pairs are re-encoded and sorted, header values are
//! trimmed with inner whitespace collapsed.

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Largest accepted difference between the request's date and the server clock.
pub const MAX_SKEW_SECS: i64 = 300;

/// Unreserved characters per RFC 3986, which SigV4 leaves unencoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const PATH: &AsciiSet = &UNRESERVED.remove(b'/');

/// The parts of an HTTP request that SigV4 covers.
#[derive(Debug, Clone)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// Path exactly as sent on the wire (still percent-encoded).
    pub raw_path: &'a str,
    /// Query string exactly as sent, without the `?`.
    pub raw_query: &'a str,
    /// Header names in any case; repeated headers appear repeatedly.
    pub headers: &'a [(String, String)],
    /// Lowercase hex sha256 of the body.
    pub payload_sha256: &'a str,
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("Authorization header is malformed: {0}")]
    Malformed(String),
    #[error("Signature expired: {0} is now more than 5 minutes away from the server time")]
    Skew(String),
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")]
    Mismatch,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

pub fn parse_authorization(header: &str) -> Result<Authorization, SigError> {
    let rest = header
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| SigError::Malformed(format!("algorithm must be {ALGORITHM}")))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| SigError::Malformed(format!("bad component '{}'", part.trim())))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or_else(|| SigError::Malformed("no Credential".into()))?;
    let signed = signed.ok_or_else(|| SigError::Malformed("no SignedHeaders".into()))?;
    let signature = signature.ok_or_else(|| SigError::Malformed("no Signature".into()))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(SigError::Malformed(format!(
            "Credential '{credential}' is not <key>/<date>/<region>/<service>/aws4_request"
        )));
    };
    Ok(Authorization {
        access_key: access_key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        signed_headers: signed.split(';').map(|s| s.to_ascii_lowercase()).collect(),
        signature: signature.to_string(),
    })
}

fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (
                utf8_percent_encode(&dec(k), UNRESERVED).to_string(),
                utf8_percent_encode(&dec(v), UNRESERVED).to_string(),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request string for the given signed header names (lowercase).
pub fn canonical_request(req: &RequestParts<'_>, signed_headers: &[String]) -> String {
    let path = if req.raw_path.is_empty() {
        "/"
    } else {
        req.raw_path
    };
    let mut out = String::with_capacity(256);
    out.push_str(&req.method.to_ascii_uppercase());
    out.push('\n');
    out.push_str(&utf8_percent_encode(path, PATH).to_string());
    out.push('\n');
    out.push_str(&canonical_query(req.raw_query));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(req.payload_sha256);
    out
}

fn signature(
    secret: &str,
    amz_date: &str,
    date: &str,
    region: &str,
    service: &str,
    canonical: &str,
) -> String {
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, to_sign.as_bytes()))
}

/// Parses `20150830T123600Z` into unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// Formats unix seconds as `20150830T123600Z`.
pub fn format_amz_date(unix: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn header<'a>(req: &'a RequestParts<'_>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Headers with `x-amz-` names that need not be signed: the SDKs' own user-agent, which
/// the Rust and JavaScript SDKs may leave out of the signature and which tern ignores.
const UNSIGNED_AMZ_HEADERS: &[&str] = &["x-amz-user-agent"];

/// What can be checked before the body arrives: the date is well-formed, within
/// [`MAX_SKEW_SECS`] of `now_unix` and matches the credential scope, and `host`,
/// `x-amz-date` and every other `x-amz-*` header the request carries are signed, so none
/// of them can be changed or added by whoever replays the request.
pub fn check_request(
    req: &RequestParts<'_>,
    auth: &Authorization,
    now_unix: i64,
) -> Result<(), SigError> {
    let amz_date = header(req, "x-amz-date")
        .ok_or_else(|| SigError::Malformed("X-Amz-Date header is missing".into()))?;
    let when = parse_amz_date(amz_date)
        .ok_or_else(|| SigError::Malformed(format!("X-Amz-Date '{amz_date}' is not a date")))?;
    if (now_unix - when).abs() > MAX_SKEW_SECS {
        return Err(SigError::Skew(amz_date.to_string()));
    }
    if !amz_date.starts_with(&auth.date) {
        return Err(SigError::Malformed(
            "credential date does not match X-Amz-Date".into(),
        ));
    }
    let signed = |name: &str| auth.signed_headers.iter().any(|h| h == name);
    for required in ["host", "x-amz-date"] {
        if !signed(required) {
            return Err(SigError::Malformed(format!(
                "the {required} header must be signed"
            )));
        }
    }
    for (name, _) in req.headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("x-amz-")
            && !UNSIGNED_AMZ_HEADERS.contains(&lower.as_str())
            && !signed(&lower)
        {
            return Err(SigError::Malformed(format!(
                "the {lower} header must be signed"
            )));
        }
    }
    Ok(())
}

/// Checks the signature itself, over `req` with its `payload_sha256`.
pub fn check_signature(
    req: &RequestParts<'_>,
    auth: &Authorization,
    secret: &str,
) -> Result<(), SigError> {
    let amz_date = header(req, "x-amz-date")
        .ok_or_else(|| SigError::Malformed("X-Amz-Date header is missing".into()))?;
    let canonical = canonical_request(req, &auth.signed_headers);
    let expected = signature(
        secret,
        amz_date,
        &auth.date,
        &auth.region,
        &auth.service,
        &canonical,
    );
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(SigError::Mismatch)
    }
}

/// Checks a request signed with an `Authorization` header against `secret`: both
/// [`check_request`] and [`check_signature`].
pub fn verify(
    req: &RequestParts<'_>,
    auth: &Authorization,
    secret: &str,
    now_unix: i64,
) -> Result<(), SigError> {
    check_request(req, auth, now_unix)?;
    check_signature(req, auth, secret)
}

/// Compares without an early exit, so the time taken tells nothing about where two
/// secrets differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs a request; returns the headers to add (`x-amz-date`, `x-amz-content-sha256`,
/// `authorization`). `req.headers` must already hold `host`.
pub fn sign(
    req: &RequestParts<'_>,
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    now_unix: i64,
) -> Vec<(String, String)> {
    let amz_date = format_amz_date(now_unix);
    let date = amz_date[..8].to_string();
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    headers.push(("x-amz-date".into(), amz_date.clone()));
    let mut names: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
    names.sort();
    names.dedup();
    let parts = RequestParts {
        headers: &headers,
        ..req.clone()
    };
    let canonical = canonical_request(&parts, &names);
    let sig = signature(secret, &amz_date, &date, region, service, &canonical);
    vec![
        ("x-amz-date".into(), amz_date),
        (
            "authorization".into(),
            format!(
                "{ALGORITHM} Credential={access_key}/{date}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={sig}",
                names.join(";")
            ),
        ),
    ]
}

/// Who signs a request, and for which scope.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    pub access_key: &'a str,
    pub secret: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// The current time in unix seconds, as signing and verification use it.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Signs an outgoing request to `host` (`host[:port]`) with the body's sha256. Returns
/// the headers to send: `headers` (names lowercased) plus `x-amz-date` and
/// `authorization`. `host` is signed but not returned; HTTP clients set it themselves.
pub fn sign_outgoing(
    signer: &Signer<'_>,
    method: &str,
    host: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vec![("host".to_string(), host.to_string())];
    all.extend(
        headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
    );
    let hash = sha256_hex(body);
    let signed = sign(
        &RequestParts {
            method,
            raw_path: path,
            raw_query: query,
            headers: &all,
            payload_sha256: &hash,
        },
        signer.access_key,
        signer.secret,
        signer.region,
        signer.service,
        now_unix(),
    );
    all.remove(0);
    all.extend(signed);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn vanilla_headers() -> Vec<(String, String)> {
        vec![
            ("Host".into(), "example.amazonaws.com".into()),
            ("X-Amz-Date".into(), "20150830T123600Z".into()),
        ]
    }

    #[test]
    fn matches_the_aws_get_vanilla_vector() {
        let headers = vanilla_headers();
        let req = RequestParts {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &headers,
            payload_sha256: &sha256_hex(b""),
        };
        let auth = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        )
        .unwrap();
        let now = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(verify(&req, &auth, SECRET, now), Ok(()));
        assert_eq!(verify(&req, &auth, "wrong", now), Err(SigError::Mismatch));
        assert!(matches!(
            verify(&req, &auth, SECRET, now + 301),
            Err(SigError::Skew(_))
        ));
    }

    #[test]
    fn sign_then_verify_round_trips_with_encoded_path_and_query() {
        let headers = vec![("host".to_string(), "127.0.0.1:8900".to_string())];
        let body_hash = sha256_hex(b"{}");
        let req = RequestParts {
            method: "POST",
            raw_path: "/2015-03-31/functions/f%3A%24LATEST/invocations",
            raw_query: "Qualifier=%24LATEST&MaxItems=5",
            headers: &headers,
            payload_sha256: &body_hash,
        };
        let now = 1_700_000_000;
        let added = sign(&req, "AK", "SK", "us-east-1", "lambda", now);
        let mut all = headers.clone();
        all.extend(added.clone());
        let auth_header = &added.iter().find(|(k, _)| k == "authorization").unwrap().1;
        let auth = parse_authorization(auth_header).unwrap();
        let signed = RequestParts {
            headers: &all,
            ..req.clone()
        };
        assert_eq!(verify(&signed, &auth, "SK", now), Ok(()));
        let tampered = RequestParts {
            raw_query: "Qualifier=%24LATEST&MaxItems=6",
            ..signed.clone()
        };
        assert_eq!(verify(&tampered, &auth, "SK", now), Err(SigError::Mismatch));
    }

    #[test]
    fn malformed_headers_are_rejected_with_a_reason() {
        assert!(matches!(
            parse_authorization("Basic abc"),
            Err(SigError::Malformed(_))
        ));
        assert!(matches!(
            parse_authorization("AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=x"),
            Err(SigError::Malformed(_))
        ));
    }

    #[test]
    fn every_amz_header_must_be_signed() {
        let headers = vec![("host".to_string(), "127.0.0.1:8900".to_string())];
        let hash = sha256_hex(b"{}");
        let req = RequestParts {
            method: "POST",
            raw_path: "/2015-03-31/functions/f/invocations",
            raw_query: "",
            headers: &headers,
            payload_sha256: &hash,
        };
        let now = 1_700_000_000;
        let added = sign(&req, "AK", "SK", "us-east-1", "lambda", now);
        let auth_header = &added.iter().find(|(k, _)| k == "authorization").unwrap().1;
        let auth = parse_authorization(auth_header).unwrap();
        let mut all = headers.clone();
        all.extend(added.clone());
        let signed = RequestParts {
            headers: &all,
            ..req.clone()
        };
        assert_eq!(check_request(&signed, &auth, now), Ok(()));
        // An x-amz-* header added after signing (here: ask for the log tail) is refused.
        let mut replayed = all.clone();
        replayed.push(("X-Amz-Log-Type".to_string(), "Tail".to_string()));
        let err = check_request(
            &RequestParts {
                headers: &replayed,
                ..req.clone()
            },
            &auth,
            now,
        )
        .unwrap_err();
        assert!(err.to_string().contains("x-amz-log-type"), "{err}");
        // The SDKs' user-agent header is the one exception.
        let mut with_agent = all.clone();
        with_agent.push(("x-amz-user-agent".to_string(), "aws-sdk-rust".to_string()));
        let agent = RequestParts {
            headers: &with_agent,
            ..req.clone()
        };
        assert_eq!(check_request(&agent, &auth, now), Ok(()));
    }
}
