//! CORS for function URLs, as Lambda does it: with a `Cors` config the platform answers
//! preflight requests itself (the function never sees them) and puts the CORS headers
//! on every response whose `Origin` is allowed, replacing any the function set.

use axum::http::{HeaderMap, Method};
use tern_core::function_url::Cors;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key("origin")
        && headers.contains_key("access-control-request-method")
}

/// The `Access-Control-Allow-Origin` for `origin`: the origin when it is listed, `*`
/// when every origin is allowed, else none. A listed origin wins over `*`. With `*`
/// the origin is never echoed, credentials or not: echoing it with
/// `Allow-Credentials: true` would let every web site read the function's answers to
/// its visitors' cookies; browsers refuse a credentialed response with `*`, which is
/// the safe reading of `*` plus credentials.
fn allowed_origin(cors: &Cors, origin: &str) -> Option<String> {
    let origins = cors.allow_origins.as_deref().unwrap_or_default();
    let listed = origins
        .iter()
        .any(|o| o != "*" && o.eq_ignore_ascii_case(origin));
    if listed {
        return Some(origin.to_string());
    }
    origins.iter().any(|o| o == "*").then(|| "*".to_string())
}

fn joined(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref().filter(|l| !l.is_empty()).map(|l| l.join(","))
}

/// The headers of the answer to a preflight request (always a 200): none when the
/// origin or the method is not allowed, so the browser refuses the request.
pub fn preflight(cors: &Cors, headers: &HeaderMap) -> Vec<(&'static str, String)> {
    let mut out = vec![("vary", "Origin".to_string())];
    let Some(origin) = header(headers, "origin") else {
        return out;
    };
    let Some(allow_origin) = allowed_origin(cors, origin) else {
        return out;
    };
    let method = header(headers, "access-control-request-method").unwrap_or("");
    let methods = cors.allow_methods.as_deref().unwrap_or_default();
    let method_allowed = methods
        .iter()
        .any(|m| m == "*" || m.eq_ignore_ascii_case(method));
    if !method_allowed {
        return out;
    }
    out.push(("access-control-allow-origin", allow_origin));
    out.push(("access-control-allow-methods", methods.join(",")));
    let allow_headers = if cors
        .allow_headers
        .as_ref()
        .is_some_and(|h| h.iter().any(|h| h == "*"))
    {
        header(headers, "access-control-request-headers").map(str::to_string)
    } else {
        joined(&cors.allow_headers)
    };
    if let Some(h) = allow_headers {
        out.push(("access-control-allow-headers", h));
    }
    if let Some(age) = cors.max_age {
        out.push(("access-control-max-age", age.to_string()));
    }
    if cors.allow_credentials == Some(true) {
        out.push(("access-control-allow-credentials", "true".to_string()));
    }
    out
}

/// The CORS headers of an ordinary response to a request from `origin`.
pub fn response_headers(cors: &Cors, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let mut out = vec![("vary", "Origin".to_string())];
    let Some(allow_origin) = origin.and_then(|o| allowed_origin(cors, o)) else {
        return out;
    };
    out.push(("access-control-allow-origin", allow_origin));
    if let Some(expose) = joined(&cors.expose_headers) {
        out.push(("access-control-expose-headers", expose));
    }
    if cors.allow_credentials == Some(true) {
        out.push(("access-control-allow-credentials", "true".to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            allow_origins: Some(vec!["https://app.example.com".into()]),
            allow_methods: Some(vec!["GET".into(), "POST".into()]),
            allow_headers: Some(vec!["content-type".into(), "x-token".into()]),
            expose_headers: Some(vec!["x-trace".into()]),
            max_age: Some(300),
            allow_credentials: Some(true),
        }
    }

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn get<'a>(out: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        out.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn preflight_is_options_with_origin_and_a_requested_method() {
        let full = request(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ]);
        assert!(is_preflight(&Method::OPTIONS, &full));
        assert!(!is_preflight(&Method::GET, &full));
        assert!(!is_preflight(
            &Method::OPTIONS,
            &request(&[("origin", "https://app.example.com")])
        ));
    }

    #[test]
    fn an_allowed_preflight_gets_every_configured_header() {
        let out = preflight(
            &cors(),
            &request(&[
                ("origin", "https://app.example.com"),
                ("access-control-request-method", "post"),
            ]),
        );
        assert_eq!(
            get(&out, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(get(&out, "access-control-allow-methods"), Some("GET,POST"));
        assert_eq!(
            get(&out, "access-control-allow-headers"),
            Some("content-type,x-token")
        );
        assert_eq!(get(&out, "access-control-max-age"), Some("300"));
        assert_eq!(get(&out, "access-control-allow-credentials"), Some("true"));
    }

    #[test]
    fn a_preflight_from_another_origin_or_for_another_method_gets_none() {
        for (origin, method) in [
            ("https://evil.example.com", "GET"),
            ("https://app.example.com", "DELETE"),
        ] {
            let mut h = HeaderMap::new();
            h.insert("origin", origin.parse().unwrap());
            h.insert("access-control-request-method", method.parse().unwrap());
            let out = preflight(&cors(), &h);
            assert_eq!(
                get(&out, "access-control-allow-origin"),
                None,
                "{origin} {method}"
            );
        }
    }

    #[test]
    fn a_wildcard_origin_is_star_without_credentials() {
        let open = Cors {
            allow_origins: Some(vec!["*".into()]),
            allow_methods: Some(vec!["*".into()]),
            ..Cors::default()
        };
        let out = response_headers(&open, Some("https://any.example"));
        assert_eq!(get(&out, "access-control-allow-origin"), Some("*"));
    }

    #[test]
    fn a_wildcard_origin_with_credentials_never_echoes_the_origin() {
        let open = Cors {
            allow_origins: Some(vec!["*".into(), "https://app.example.com".into()]),
            allow_methods: Some(vec!["*".into()]),
            allow_credentials: Some(true),
            ..Cors::default()
        };
        let evil = request(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ]);
        for out in [
            response_headers(&open, Some("https://evil.example")),
            preflight(&open, &evil),
        ] {
            assert_eq!(get(&out, "access-control-allow-origin"), Some("*"));
        }
        // An origin listed by name still gets itself, with credentials.
        let out = response_headers(&open, Some("https://app.example.com"));
        assert_eq!(
            get(&out, "access-control-allow-origin"),
            Some("https://app.example.com")
        );
    }

    #[test]
    fn responses_carry_origin_expose_and_credentials_only_for_allowed_origins() {
        let out = response_headers(&cors(), Some("https://app.example.com"));
        assert_eq!(get(&out, "access-control-expose-headers"), Some("x-trace"));
        assert_eq!(get(&out, "access-control-allow-credentials"), Some("true"));
        let out = response_headers(&cors(), Some("https://evil.example.com"));
        assert_eq!(get(&out, "access-control-allow-origin"), None);
        let out = response_headers(&cors(), None);
        assert_eq!(get(&out, "access-control-allow-origin"), None);
    }
}
