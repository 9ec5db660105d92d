//! SigV4 parsing and canonicalisation on arbitrary headers, paths and queries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_core::sigv4::{self, RequestParts};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.split('\n');
    let authorization = fields.next().unwrap_or("");
    let path = fields.next().unwrap_or("");
    let query = fields.next().unwrap_or("");
    let headers: Vec<(String, String)> = fields
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let parts = RequestParts {
        method: "POST",
        raw_path: path,
        raw_query: query,
        headers: &headers,
        payload_sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    };
    if let Ok(auth) = sigv4::parse_authorization(authorization) {
        let _ = sigv4::verify(&parts, &auth, "secret", 1_700_000_000);
        let _ = sigv4::canonical_request(&parts, &auth.signed_headers);
    }
    let _ = sigv4::parse_amz_date(authorization);
});
