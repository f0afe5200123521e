//! Which outbound destinations a function may call, as declared in `allowed_outbound_hosts`.
//!
//! A rule is `scheme://host[:port]`: the scheme is `http`, `https` or `*`; the host is a name,
//! an IP address, `*.suffix` (any subdomain of suffix) or `*`; the port is a number or `*` and
//! defaults to the scheme's own port (80 / 443). Rules are judged against the real connection
//! target (scheme, host, port of the URI the host will dial), never against a header the guest
//! sets.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OutboundRule {
    text: String,
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    Subdomain(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Default,
    Any,
    Exact(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid outbound host {text:?}: {reason} (expected e.g. \"https://api.example.com\" or \"http://127.0.0.1:8080\")"
)]
pub struct OutboundRuleError {
    pub text: String,
    pub reason: &'static str,
}

impl OutboundRule {
    pub fn parse(text: &str) -> Result<OutboundRule, OutboundRuleError> {
        let fail = |reason| OutboundRuleError {
            text: text.to_owned(),
            reason,
        };
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| fail("missing scheme://"))?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_owned()),
            _ => return Err(fail("scheme must be http, https or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(fail("paths are not allowed, only scheme://host[:port]"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || rest.starts_with('[') => {
                let port = match port {
                    "*" => PortPattern::Any,
                    digits => PortPattern::Exact(
                        digits
                            .parse()
                            .map_err(|_| fail("port must be a number or *"))?,
                    ),
                };
                (host, port)
            }
            _ => (rest, PortPattern::Default),
        };
        let host = host.to_ascii_lowercase();
        let host = match host.as_str() {
            "" => return Err(fail("host is empty")),
            "*" => HostPattern::Any,
            _ if host.starts_with("*.") => HostPattern::Subdomain(host[1..].to_owned()),
            _ if host.contains('*') => {
                return Err(fail("'*' may only be the whole host or a leading '*.'"));
            }
            _ => HostPattern::Exact(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            ),
        };
        Ok(OutboundRule {
            text: text.to_owned(),
            scheme,
            host,
            port,
        })
    }

    /// Does this rule allow connecting to `host:port` over `scheme`?
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if let Some(own) = &self.scheme
            && own != scheme
        {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(exact) => exact.eq_ignore_ascii_case(host),
            HostPattern::Subdomain(suffix) => {
                host.len() > suffix.len() && host.to_ascii_lowercase().ends_with(suffix.as_str())
            }
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Exact(own) => own == port,
            PortPattern::Default => Some(port) == default_port(scheme),
        };
        host_ok && port_ok
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Is `scheme://host:port` allowed by any of `rules`?
pub fn is_allowed(rules: &[OutboundRule], scheme: &str, host: &str, port: u16) -> bool {
    rules.iter().any(|rule| rule.allows(scheme, host, port))
}

pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl TryFrom<String> for OutboundRule {
    type Error = OutboundRuleError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        OutboundRule::parse(&value)
    }
}

impl From<OutboundRule> for String {
    fn from(value: OutboundRule) -> Self {
        value.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(rule: &str, scheme: &str, host: &str, port: u16) -> bool {
        OutboundRule::parse(rule)
            .unwrap()
            .allows(scheme, host, port)
    }

    #[test]
    fn matching_table() {
        let cases = [
            (
                "https://api.example.com",
                "https",
                "api.example.com",
                443,
                true,
            ),
            (
                "https://api.example.com",
                "http",
                "api.example.com",
                80,
                false,
            ),
            (
                "https://api.example.com",
                "https",
                "api.example.com",
                8443,
                false,
            ),
            ("https://api.example.com", "https", "evil.com", 443, false),
            (
                "https://API.example.com",
                "https",
                "api.EXAMPLE.com",
                443,
                true,
            ),
            ("http://127.0.0.1:9000", "http", "127.0.0.1", 9000, true),
            ("http://127.0.0.1:9000", "http", "127.0.0.1", 9001, false),
            ("http://127.0.0.1:*", "http", "127.0.0.1", 1234, true),
            ("https://*.example.com", "https", "a.example.com", 443, true),
            ("https://*.example.com", "https", "example.com", 443, false),
            (
                "https://*.example.com",
                "https",
                "badexample.com",
                443,
                false,
            ),
            ("*://example.com", "http", "example.com", 80, true),
            ("*://example.com", "https", "example.com", 443, true),
            ("*://*:*", "http", "anything", 1, true),
            ("http://[::1]:8080", "http", "[::1]", 8080, true),
        ];
        for (rule, scheme, host, port, expected) in cases {
            assert_eq!(
                allowed(rule, scheme, host, port),
                expected,
                "{rule} vs {scheme}://{host}:{port}"
            );
        }
    }

    #[test]
    fn rejects_malformed_rules() {
        for bad in [
            "example.com",
            "ftp://x",
            "https://",
            "https://a.*.com",
            "https://x:port",
            "https://x/path",
        ] {
            assert!(OutboundRule::parse(bad).is_err(), "{bad}");
        }
    }
}
