//! Cross-origin resource sharing, as the Fetch standard defines it, answered by the gateway.
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) to a route of an
//! app with `[cors]` is answered here without invoking a function: 204 with the
//! `Access-Control-Allow-*` headers when origin, method and headers are allowed, 403 saying
//! which one is not otherwise. Every other response to a request with an allowed `Origin` —
//! the function's and the gateway's errors alike — gets `Access-Control-Allow-Origin` and the
//! rest. A refused origin's actual requests still reach the function (CORS is enforced by the
//! browser, which will not let the page read the answer); only the headers are withheld.

use http::{HeaderMap, HeaderValue, header};
use nimbus_core::spec::CorsSpec;

/// An origin pattern: exact, or a scheme plus a host suffix (`https://*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Exact(String),
    /// `scheme://` and `.suffix[:port]`: any subdomain of the suffix, not the suffix itself.
    Subdomains {
        scheme: String,
        suffix: String,
    },
}

/// An app's compiled CORS policy.
#[derive(Debug)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<Origin>,
    methods: Vec<String>,
    allow_methods: HeaderValue,
    any_header: bool,
    headers: Vec<String>,
    allow_headers: Option<HeaderValue>,
    expose_headers: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<HeaderValue>,
}

/// The gateway's answer to a preflight.
#[derive(Debug)]
pub enum Preflight {
    /// 204 with these headers.
    Allowed(HeaderMap),
    /// 403 with this message.
    Refused(String),
}

impl Cors {
    pub fn new(spec: &CorsSpec) -> Cors {
        let any_origin = spec.origins.iter().any(|o| o == "*");
        let origins = spec
            .origins
            .iter()
            .filter(|o| *o != "*")
            .map(|o| {
                let o = o.to_ascii_lowercase();
                match o.split_once("://*.") {
                    Some((scheme, suffix)) => Origin::Subdomains {
                        scheme: format!("{scheme}://"),
                        suffix: format!(".{suffix}"),
                    },
                    None => Origin::Exact(o),
                }
            })
            .collect();
        let join = |items: &[String]| HeaderValue::from_str(&items.join(", ")).ok();
        let any_header = spec.headers.iter().any(|h| h == "*");
        let headers: Vec<String> = spec
            .headers
            .iter()
            .filter(|h| *h != "*")
            .map(|h| h.to_ascii_lowercase())
            .collect();
        Cors {
            any_origin,
            origins,
            allow_methods: join(&spec.methods).unwrap_or(HeaderValue::from_static("GET")),
            methods: spec.methods.clone(),
            any_header,
            allow_headers: join(&headers).filter(|_| !headers.is_empty()),
            headers,
            expose_headers: join(&spec.expose_headers).filter(|_| !spec.expose_headers.is_empty()),
            credentials: spec.credentials,
            max_age: spec.max_age.map(|d| HeaderValue::from(d.as_secs())),
        }
    }

    /// Whether pages served from `origin` may read this app's responses.
    pub fn allows_origin(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|pattern| match pattern {
            Origin::Exact(exact) => *exact == origin,
            Origin::Subdomains { scheme, suffix } => origin
                .strip_prefix(scheme.as_str())
                .and_then(|host| host.strip_suffix(suffix.as_str()))
                .is_some_and(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                }),
        })
    }

    /// Answer a preflight from `origin` asking for `method` with `request_headers` (the raw
    /// `Access-Control-Request-Headers` value).
    pub fn preflight(
        &self,
        origin: &str,
        method: &str,
        request_headers: Option<&str>,
    ) -> Preflight {
        if !self.allows_origin(origin) {
            return Preflight::Refused(format!(
                "origin {origin:?} is not allowed by this app's [cors] origins"
            ));
        }
        if !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return Preflight::Refused(format!(
                "method {method} is not allowed by this app's [cors] methods ({})",
                self.methods.join(", ")
            ));
        }
        let requested: Vec<String> = request_headers
            .unwrap_or("")
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if !self.any_header
            && let Some(refused) = requested
                .iter()
                .find(|h| !self.headers.contains(h) && !safelisted(h))
        {
            return Preflight::Refused(format!(
                "request header {refused:?} is not allowed by this app's [cors] headers"
            ));
        }
        let mut headers = HeaderMap::new();
        self.write_origin(origin, &mut headers);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        let allow_headers = if self.any_header {
            // `*` is literal when credentials are allowed: name what was asked for instead.
            HeaderValue::from_str(&requested.join(", ")).ok()
        } else {
            self.allow_headers.clone()
        };
        if let Some(value) = allow_headers.filter(|v| !v.is_empty()) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        if let Some(max_age) = &self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, max_age.clone());
        }
        headers.append(
            header::VARY,
            HeaderValue::from_static(
                "Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        Preflight::Allowed(headers)
    }

    /// Add the headers an actual response to a request from `origin` carries.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let Some(origin) = origin.and_then(|o| o.to_str().ok()) else {
            if !self.reflects() {
                return;
            }
            // A response that differs by Origin must say so, even to requests without one.
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
            return;
        };
        if !self.allows_origin(origin) {
            if self.reflects() {
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
            }
            return;
        }
        self.write_origin(origin, headers);
        if let Some(expose) = &self.expose_headers {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }

    /// Whether the answer names the request's origin (and so varies by it) rather than `*`.
    fn reflects(&self) -> bool {
        !self.any_origin || self.credentials
    }

    fn write_origin(&self, origin: &str, headers: &mut HeaderMap) {
        if self.reflects() {
            if let Ok(value) = HeaderValue::from_str(origin) {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            }
            headers.append(header::VARY, HeaderValue::from_static("Origin"));
        } else {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}

/// Request headers a browser sends cross-origin without asking (the Fetch standard's
/// CORS-safelisted request headers, by name).
fn safelisted(name: &str) -> bool {
    matches!(
        name,
        "accept" | "accept-language" | "content-language" | "content-type" | "range"
    )
}

/// Whether `headers` make a request a CORS preflight, and for which method.
pub fn preflight_method(method: &http::Method, headers: &HeaderMap) -> Option<String> {
    if method != http::Method::OPTIONS || !headers.contains_key(header::ORIGIN) {
        return None;
    }
    headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .map(|m| m.trim().to_owned())
        .filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::new(&CorsSpec {
            origins: origins.iter().map(|s| s.to_string()).collect(),
            methods: vec!["GET".into(), "POST".into()],
            headers: vec!["authorization".into(), "x-trace".into()],
            expose_headers: vec!["x-request-id".into()],
            credentials,
            max_age: Some(Duration::from_secs(600)),
        })
    }

    #[test]
    fn origin_patterns() {
        let c = cors(&["https://app.example.com", "https://*.example.org"], false);
        let cases = [
            ("https://app.example.com", true),
            ("HTTPS://APP.EXAMPLE.COM", true),
            ("http://app.example.com", false),
            ("https://app.example.com:8443", false),
            ("https://evil.com", false),
            ("https://app.example.com.evil.com", false),
            ("https://a.example.org", true),
            ("https://a.b.example.org", true),
            ("https://example.org", false),
            ("https://.example.org", false),
            ("https://evil.com/.example.org", false),
            ("http://a.example.org", false),
            ("null", false),
        ];
        for (origin, allowed) in cases {
            assert_eq!(c.allows_origin(origin), allowed, "{origin}");
        }
        assert!(cors(&["*"], false).allows_origin("https://anything.test"));
    }

    #[test]
    fn preflight_decisions() {
        let c = cors(&["https://app.example.com"], true);
        let origin = "https://app.example.com";
        let Preflight::Allowed(h) =
            c.preflight(origin, "POST", Some("Authorization, Content-Type"))
        else {
            panic!("refused")
        };
        assert_eq!(h["access-control-allow-origin"], origin);
        assert_eq!(h["access-control-allow-methods"], "GET, POST");
        assert_eq!(h["access-control-allow-headers"], "authorization, x-trace");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-max-age"], "600");
        for (origin, method, headers, refusal) in [
            ("https://evil.com", "GET", None, "origin"),
            (origin, "DELETE", None, "method DELETE"),
            (origin, "GET", Some("x-secret"), "\"x-secret\""),
        ] {
            match c.preflight(origin, method, headers) {
                Preflight::Refused(message) => assert!(message.contains(refusal), "{message}"),
                Preflight::Allowed(_) => panic!("{origin} {method} {headers:?} allowed"),
            }
        }
    }

    #[test]
    fn any_header_names_what_was_asked() {
        let mut spec = CorsSpec {
            origins: vec!["*".into()],
            methods: vec!["GET".into()],
            headers: vec!["*".into()],
            ..CorsSpec::default()
        };
        let Preflight::Allowed(h) =
            Cors::new(&spec).preflight("https://x.test", "GET", Some("X-A, x-b"))
        else {
            panic!("refused")
        };
        assert_eq!(h["access-control-allow-origin"], "*");
        assert_eq!(h["access-control-allow-headers"], "x-a, x-b");
        spec.credentials = true;
        let Preflight::Allowed(h) = Cors::new(&spec).preflight("https://x.test", "GET", None)
        else {
            panic!("refused")
        };
        // With credentials a wildcard origin is named, never `*`.
        assert_eq!(h["access-control-allow-origin"], "https://x.test");
    }

    #[test]
    fn actual_responses() {
        let c = cors(&["https://app.example.com"], false);
        let mut h = HeaderMap::new();
        c.decorate(
            Some(&HeaderValue::from_static("https://app.example.com")),
            &mut h,
        );
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-expose-headers"], "x-request-id");
        assert_eq!(h["vary"], "Origin");
        assert!(!h.contains_key("access-control-allow-credentials"));
        let mut refused = HeaderMap::new();
        c.decorate(
            Some(&HeaderValue::from_static("https://evil.com")),
            &mut refused,
        );
        assert!(!refused.contains_key("access-control-allow-origin"));
        assert_eq!(refused["vary"], "Origin");
    }

    #[test]
    fn preflight_detection() {
        let mut h = HeaderMap::new();
        assert_eq!(preflight_method(&http::Method::OPTIONS, &h), None);
        h.insert(header::ORIGIN, HeaderValue::from_static("https://a.test"));
        assert_eq!(preflight_method(&http::Method::OPTIONS, &h), None);
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        assert_eq!(
            preflight_method(&http::Method::OPTIONS, &h),
            Some("PUT".into())
        );
        assert_eq!(preflight_method(&http::Method::GET, &h), None);
    }
}
