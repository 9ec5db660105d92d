//! Function URLs: the management API (`api.rs`) and the URLs themselves, served on the
//! server's own listener (`serve.rs`): the request becomes a payload-2.0 event
//! (`event.rs`), runs through the same Invoke path as the API's, and the result becomes
//! the HTTP response (`response.rs`), with CORS from the URL's config (`cors.rs`).
//!
//! Two URL forms reach a function: the path form `http://<listener>/url/<url-id>/…`,
//! which works with no DNS set-up, and, with a public base such as
//! `https://{id}.lambda-url.example.com/`, the host form `<url-id>.<domain>` behind a
//! proxy or wildcard DNS.

mod api;
pub mod budget;
pub mod cors;
pub mod event;
pub mod response;
mod serve;

use tern_core::function_url::is_url_id;

pub(crate) use api::routes;
pub use budget::{BodyBudget, BodyShare};
pub(crate) use serve::{host_routing, serve_routes};

/// Where the path form is served: `/url/<url-id>/…`.
pub const PATH_PREFIX: &str = "/url/";
/// The placeholder of the URL id in a public base.
const ID: &str = "{id}";

/// How the API spells a URL's `FunctionUrl`, and which hosts name a URL.
#[derive(Debug, Clone, Default)]
pub struct UrlBase {
    public: Option<PublicBase>,
}

#[derive(Debug, Clone)]
struct PublicBase {
    template: String,
    /// `lambda-url.example.com` when the template's host is `{id}.lambda-url.example.com`
    /// (without a port): requests with such a Host go to the URL of that id.
    domain: Option<String>,
}

/// A host without its port, lowercase.
fn host_name(host: &str) -> String {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    name.to_ascii_lowercase()
}

impl UrlBase {
    /// The path form on the address the client used (as GetFunction's `Code.Location`).
    pub fn listener() -> Self {
        UrlBase::default()
    }

    /// A public base: `http(s)://` with `{id}` once, ending in `/`. With `{id}` as the
    /// first label of the host, requests are also routed by Host.
    pub fn public(template: &str) -> Result<Self, String> {
        let rest = template
            .strip_prefix("https://")
            .or_else(|| template.strip_prefix("http://"))
            .ok_or_else(|| {
                format!("public_base {template:?} must start with http:// or https://")
            })?;
        if template.matches(ID).count() != 1 || !template.ends_with('/') {
            return Err(format!(
                "public_base {template:?} must hold {ID} once and end with '/' (e.g. https://{ID}.lambda-url.example.com/)"
            ));
        }
        let authority = rest.split('/').next().unwrap_or("");
        let domain = if authority.contains(ID) {
            let domain = authority
                .strip_prefix("{id}.")
                .filter(|d| !d.is_empty() && !d.contains(ID))
                .ok_or_else(|| {
                    format!("public_base {template:?}: in the host, {ID} must be the first label ({ID}.example.com)")
                })?;
            if rest.len() != authority.len() + 1 {
                return Err(format!(
                    "public_base {template:?}: with {ID} in the host, the path must be '/'"
                ));
            }
            Some(host_name(domain))
        } else {
            None
        };
        Ok(UrlBase {
            public: Some(PublicBase {
                template: template.to_string(),
                domain,
            }),
        })
    }

    /// The `FunctionUrl` of a URL id; `origin` is how the client reached this server
    /// (`http://127.0.0.1:8900`), used without a public base.
    pub fn function_url(&self, origin: &str, url_id: &str) -> String {
        match &self.public {
            Some(p) => p.template.replace(ID, url_id),
            None => format!("{origin}{PATH_PREFIX}{url_id}/"),
        }
    }

    /// Whether some Host names a URL (a public base with the id in the host name).
    pub fn routes_hosts(&self) -> bool {
        self.public.as_ref().is_some_and(|p| p.domain.is_some())
    }

    /// The URL id a request's Host names in the host form, if any.
    pub fn host_form_id(&self, host: &str) -> Option<String> {
        let domain = self.public.as_ref()?.domain.as_deref()?;
        let host = host_name(host);
        let id = host.strip_suffix(domain)?.strip_suffix('.')?;
        is_url_id(id).then(|| id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID32: &str = "abcdefghijklmnopqrstuvwxyz012345";

    #[test]
    fn without_a_public_base_urls_are_paths_on_the_listener() {
        let base = UrlBase::listener();
        assert_eq!(
            base.function_url("http://127.0.0.1:8900", ID32),
            format!("http://127.0.0.1:8900/url/{ID32}/")
        );
        assert_eq!(base.host_form_id(&format!("{ID32}.example.com")), None);
    }

    #[test]
    fn a_host_form_base_routes_by_host() {
        let base = UrlBase::public("https://{id}.lambda-url.example.com/").unwrap();
        assert_eq!(
            base.function_url("http://ignored", ID32),
            format!("https://{ID32}.lambda-url.example.com/")
        );
        assert_eq!(
            base.host_form_id(&format!("{ID32}.lambda-url.example.com:8900")),
            Some(ID32.to_string())
        );
        assert_eq!(
            base.host_form_id(&format!("{}.LAMBDA-url.example.com", ID32)),
            Some(ID32.to_string())
        );
        assert_eq!(base.host_form_id("lambda-url.example.com"), None);
        assert_eq!(base.host_form_id("short.lambda-url.example.com"), None);
        assert_eq!(base.host_form_id(&format!("{ID32}.other.com")), None);
    }

    #[test]
    fn a_path_form_base_behind_a_proxy_does_not_route_by_host() {
        let base = UrlBase::public("https://fn.example.com/url/{id}/").unwrap();
        assert_eq!(
            base.function_url("http://x", ID32),
            format!("https://fn.example.com/url/{ID32}/")
        );
        assert_eq!(base.host_form_id(&format!("{ID32}.fn.example.com")), None);
    }

    #[test]
    fn malformed_public_bases_are_refused() {
        for bad in [
            "ftp://{id}.example.com/",
            "https://example.com/",
            "https://{id}.example.com",
            "https://{id}.{id}.example.com/",
            "https://x{id}.example.com/",
            "https://{id}.example.com/path/",
        ] {
            assert!(UrlBase::public(bad).is_err(), "{bad}");
        }
    }
}
