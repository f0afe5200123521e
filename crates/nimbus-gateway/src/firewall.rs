//! An app's firewall (`[firewall]`), the first stage after the route matched: who the client
//! is (the peer, or — only when the peer is a trusted proxy — the address it forwarded for),
//! whether that address may call the app, and whether the request's method and header block
//! are within the app's rules. Refusals are 403 `blocked`, naming the rule, and counted.
//!
//! Everything here is a pure function of the spec, the peer address and the request head.

use http::{HeaderMap, Method};
use ipnet::IpNet;
use nimbus_core::FirewallSpec;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Firewall {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    trusted: Vec<IpNet>,
    max_headers: Option<usize>,
    max_header_bytes: Option<usize>,
    blocked_methods: Vec<Method>,
    blocked: AtomicU64,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked(pub String);

/// `text` as a network: CIDR, or one address as its host network.
fn network(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn networks(list: &[String]) -> Vec<IpNet> {
    list.iter().filter_map(|n| network(n)).collect()
}

impl Firewall {
    pub fn new(spec: &FirewallSpec) -> Firewall {
        Firewall {
            allow: networks(&spec.allow),
            deny: networks(&spec.deny),
            trusted: networks(&spec.trusted_proxies),
            max_headers: spec.max_headers.map(|n| n as usize),
            max_header_bytes: spec.max_header_bytes.map(|n| n as usize),
            blocked_methods: spec
                .blocked_methods
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            blocked: AtomicU64::new(0),
        }
    }

    /// Requests refused since the app's version was deployed.
    pub fn blocked(&self) -> u64 {
        self.blocked.load(Ordering::Relaxed)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client's address: `peer`, unless `peer` is a trusted proxy — then the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy (read from the right,
    /// since each proxy appends the address it received from; what is further left was written
    /// by the client and proves nothing). A malformed entry ends the walk at the last proxy.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        for hop in hops {
            let Some(ip) = parse_hop(hop.trim()) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }

    /// Whether a request from `client` with `method` and `headers` may go on.
    pub fn check(
        &self,
        client: IpAddr,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<(), Blocked> {
        let verdict = self.decide(client, method, headers);
        if verdict.is_err() {
            self.blocked.fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    fn decide(&self, client: IpAddr, method: &Method, headers: &HeaderMap) -> Result<(), Blocked> {
        let client = canonical(client);
        if self.deny.iter().any(|n| n.contains(&client)) {
            return Err(Blocked(format!("the client address {client} is denied")));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&client)) {
            return Err(Blocked(format!(
                "the client address {client} is not on the app's allow list"
            )));
        }
        if self.blocked_methods.contains(method) {
            return Err(Blocked(format!("{method} requests are blocked")));
        }
        if let Some(max) = self.max_headers
            && headers.len() > max
        {
            return Err(Blocked(format!(
                "the request has {} header fields; at most {max} are accepted",
                headers.len()
            )));
        }
        if let Some(max) = self.max_header_bytes {
            let size: usize = headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len())
                .sum();
            if size > max {
                return Err(Blocked(format!(
                    "the request's header fields total {size} bytes; at most {max} are accepted"
                )));
            }
        }
        Ok(())
    }
}

/// An IPv4 client reached over an IPv6 socket as itself, so IPv4 rules apply to it.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly `[v6]`, possibly with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn firewall(allow: &[&str], deny: &[&str], trusted: &[&str]) -> Firewall {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Firewall::new(&FirewallSpec {
            allow: list(allow),
            deny: list(deny),
            trusted_proxies: list(trusted),
            max_headers: Some(4),
            max_header_bytes: Some(64),
            blocked_methods: vec!["TRACE".into()],
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let f = firewall(&[], &[], &["127.0.0.1", "10.1.0.0/16"]);
        let peer = ip("127.0.0.1");
        for (headers, client) in [
            (vec![], "127.0.0.1"),
            (vec!["203.0.113.9"], "203.0.113.9"),
            // The client's own claim (leftmost) is ignored past the first untrusted hop.
            (vec!["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
            (vec!["203.0.113.9, 10.1.2.3"], "203.0.113.9"),
            (vec!["203.0.113.9", "10.1.2.3"], "203.0.113.9"),
            (vec!["[2001:db8::1]:4711, 10.1.2.3"], "2001:db8::1"),
            (vec!["203.0.113.9:80"], "203.0.113.9"),
            // Garbage stops the walk at the last proxy.
            (vec!["203.0.113.9, garbage, 10.1.2.3"], "10.1.2.3"),
            (vec!["10.1.0.1, 10.1.0.2"], "10.1.0.1"),
        ] {
            assert_eq!(
                f.client(peer, &forwarded(&headers)),
                ip(client),
                "{headers:?}"
            );
        }
        // From an untrusted peer the header is not believed at all.
        assert_eq!(
            f.client(ip("198.51.100.1"), &forwarded(&["203.0.113.9"])),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn allow_and_deny_lists() {
        let f = firewall(&["10.0.0.0/8", "192.0.2.7"], &["10.9.0.0/16"], &[]);
        let get = Method::GET;
        let none = HeaderMap::new();
        assert!(f.check(ip("10.1.2.3"), &get, &none).is_ok());
        assert!(f.check(ip("192.0.2.7"), &get, &none).is_ok());
        assert!(f.check(ip("::ffff:10.1.2.3"), &get, &none).is_ok());
        let Blocked(why) = f.check(ip("10.9.0.1"), &get, &none).unwrap_err();
        assert!(why.contains("denied"), "{why}");
        let Blocked(why) = f.check(ip("192.0.2.8"), &get, &none).unwrap_err();
        assert!(why.contains("allow list"), "{why}");
        assert_eq!(f.blocked(), 2);
        // No allow list: everyone not denied.
        let open = firewall(&[], &["10.9.0.0/16"], &[]);
        assert!(open.check(ip("2001:db8::1"), &get, &none).is_ok());
    }

    #[test]
    fn methods_and_header_limits() {
        let f = firewall(&[], &[], &[]);
        let client = ip("192.0.2.1");
        let Blocked(why) = f
            .check(client, &Method::TRACE, &HeaderMap::new())
            .unwrap_err();
        assert!(why.contains("TRACE"), "{why}");
        let mut many = HeaderMap::new();
        for n in 0..5 {
            many.insert(
                http::HeaderName::from_bytes(format!("x-h{n}").as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let Blocked(why) = f.check(client, &Method::GET, &many).unwrap_err();
        assert!(why.contains("5 header fields"), "{why}");
        let mut big = HeaderMap::new();
        big.insert("x-big", HeaderValue::from_str(&"a".repeat(60)).unwrap());
        let Blocked(why) = f.check(client, &Method::GET, &big).unwrap_err();
        assert!(why.contains("65 bytes"), "{why}");
        let mut fine = HeaderMap::new();
        fine.insert("x-ok", HeaderValue::from_static("1"));
        assert!(f.check(client, &Method::GET, &fine).is_ok());
    }
}
