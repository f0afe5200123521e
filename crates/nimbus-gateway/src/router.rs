//! Route matching, as pure data structures: no I/O, no async, exhaustively testable.
//!
//! Routes are compiled once per deploy into a table sorted by specificity: routes bound to a
//! host before host-less ones, then segment by segment literal before `{param}` before
//! `{*rest}`, and an exact end before a `{*rest}` that could also match. The first route whose
//! host, path and method all match wins; if some route matches the path but none the method,
//! the answer is "method not allowed" with the union of allowed methods. Two routes with the
//! same host, path shape and an overlapping method are a conflict, refused at build time.

use nimbus_route::{RoutePath, Segment};

/// A route to compile: where it listens and what it points at.
#[derive(Debug, Clone)]
pub struct RouteEntry<T> {
    pub host: Option<String>,
    pub path: String,
    /// Upper-case methods; empty means any.
    pub methods: Vec<String>,
    /// Who declared it, for conflict messages (e.g. "app shop, function cart").
    pub owner: String,
    pub target: T,
}

#[derive(Debug)]
struct Compiled<T> {
    entry: RouteEntry<T>,
    segments: Vec<Segment>,
    key: Vec<u8>,
}

/// An immutable, compiled route table.
#[derive(Debug)]
pub struct RouteTable<T> {
    routes: Vec<Compiled<T>>,
}

/// The result of a lookup.
#[derive(Debug, PartialEq, Eq)]
pub enum Match<'a, T> {
    Found {
        target: &'a T,
        route: &'a str,
        params: Vec<(&'a str, &'a str)>,
        /// What `{*rest}` matched, if the route has one.
        rest: Option<&'a str>,
    },
    MethodNotAllowed {
        allow: Vec<&'a str>,
    },
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{0}")]
    InvalidPath(String),
    #[error(
        "route {path} ({methods}) is declared by both {first} and {second}; change one path, host or method"
    )]
    Conflict {
        path: String,
        methods: String,
        first: String,
        second: String,
    },
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable { routes: Vec::new() }
    }
}

fn kind(segment: &Segment) -> u8 {
    match segment {
        Segment::Literal(_) => 0,
        Segment::Param(_) => 1,
        Segment::Rest(_) => 2,
    }
}

impl<T> RouteTable<T> {
    pub fn build(entries: Vec<RouteEntry<T>>) -> Result<RouteTable<T>, RouteError> {
        let mut routes = Vec::with_capacity(entries.len());
        for entry in entries {
            let parsed = RoutePath::parse(&entry.path)
                .map_err(|e| RouteError::InvalidPath(e.to_string()))?;
            let mut key = vec![u8::from(entry.host.is_none())];
            key.extend(parsed.segments.iter().map(kind));
            routes.push(Compiled {
                entry,
                segments: parsed.segments,
                key,
            });
        }
        routes.sort_by(|a, b| a.key.cmp(&b.key));
        for (i, a) in routes.iter().enumerate() {
            for b in routes.iter().skip(i + 1) {
                if same_shape(a, b) && methods_overlap(&a.entry.methods, &b.entry.methods) {
                    return Err(RouteError::Conflict {
                        path: a.entry.path.clone(),
                        methods: if a.entry.methods.is_empty() {
                            "any method".into()
                        } else {
                            a.entry.methods.join(",")
                        },
                        first: a.entry.owner.clone(),
                        second: b.entry.owner.clone(),
                    });
                }
            }
        }
        Ok(RouteTable { routes })
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &RouteEntry<T>> {
        self.routes.iter().map(|r| &r.entry)
    }

    /// Find the route for `host` (without port), `method` (upper case) and `path`.
    pub fn lookup<'a>(&'a self, host: Option<&str>, method: &str, path: &'a str) -> Match<'a, T> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let mut allow: Vec<&'a str> = Vec::new();
        for route in &self.routes {
            if let Some(own) = &route.entry.host
                && !host.is_some_and(|h| h.eq_ignore_ascii_case(own))
            {
                continue;
            }
            let Some((params, rest)) = match_path(&route.segments, trimmed) else {
                continue;
            };
            let methods = &route.entry.methods;
            if methods.is_empty() || methods.iter().any(|m| m == method) {
                return Match::Found {
                    target: &route.entry.target,
                    route: &route.entry.path,
                    params,
                    rest,
                };
            }
            for m in methods {
                if !allow.contains(&m.as_str()) {
                    allow.push(m);
                }
            }
        }
        if allow.is_empty() {
            Match::NotFound
        } else {
            Match::MethodNotAllowed { allow }
        }
    }
}

type PathMatch<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>);

fn match_path<'a>(segments: &'a [Segment], path: &'a str) -> Option<PathMatch<'a>> {
    let mut params = Vec::new();
    let mut remaining = path;
    let mut consumed_all = path.is_empty();
    for (i, segment) in segments.iter().enumerate() {
        if let Segment::Rest(name) = segment {
            params.push((name.as_str(), remaining));
            return Some((params, Some(remaining)));
        }
        if consumed_all {
            // The path ran out before the route did: only "/" against an empty route list matches.
            return None;
        }
        let (part, next) = match remaining.split_once('/') {
            Some((part, next)) => (part, next),
            None => {
                consumed_all = true;
                (remaining, "")
            }
        };
        match segment {
            Segment::Literal(literal) if literal == part => {}
            Segment::Param(name) if !part.is_empty() => params.push((name.as_str(), part)),
            _ => return None,
        }
        remaining = next;
        if !consumed_all && remaining.is_empty() && i + 1 == segments.len() {
            // A trailing slash ("/a/") does not match "/a".
            return None;
        }
    }
    if consumed_all || (segments.is_empty() && path.is_empty()) {
        Some((params, None))
    } else {
        None
    }
}

fn same_shape<T>(a: &Compiled<T>, b: &Compiled<T>) -> bool {
    a.entry.host == b.entry.host
        && a.segments.len() == b.segments.len()
        && a.segments
            .iter()
            .zip(&b.segments)
            .all(|(x, y)| match (x, y) {
                (Segment::Literal(x), Segment::Literal(y)) => x == y,
                (Segment::Param(_), Segment::Param(_)) | (Segment::Rest(_), Segment::Rest(_)) => {
                    true
                }
                _ => false,
            })
}

fn methods_overlap(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|m| b.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        host: Option<&str>,
        path: &str,
        methods: &[&str],
        target: &'static str,
    ) -> RouteEntry<&'static str> {
        RouteEntry {
            host: host.map(str::to_owned),
            path: path.to_owned(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            owner: target.to_owned(),
            target,
        }
    }

    fn table() -> RouteTable<&'static str> {
        RouteTable::build(vec![
            entry(None, "/", &[], "root"),
            entry(None, "/hello", &["GET"], "hello"),
            entry(None, "/hello/{name}", &["GET", "POST"], "named"),
            entry(None, "/hello/world", &["GET"], "world"),
            entry(None, "/files/{*path}", &[], "files"),
            entry(None, "/files", &["GET"], "files-index"),
            entry(Some("api.example.com"), "/hello", &["GET"], "api-hello"),
            entry(None, "/users/{id}/posts/{post}", &["GET"], "post"),
        ])
        .unwrap()
    }

    fn found(
        table: &RouteTable<&'static str>,
        host: Option<&str>,
        method: &str,
        path: &str,
    ) -> Option<&'static str> {
        match table.lookup(host, method, path) {
            Match::Found { target, .. } => Some(*target),
            _ => None,
        }
    }

    #[test]
    fn matching_table() {
        let t = table();
        let cases: &[(Option<&str>, &str, &str, Option<&str>)] = &[
            (None, "GET", "/", Some("root")),
            (None, "GET", "/hello", Some("hello")),
            (Some("api.example.com"), "GET", "/hello", Some("api-hello")),
            (Some("API.example.com"), "GET", "/hello", Some("api-hello")),
            (Some("other.com"), "GET", "/hello", Some("hello")),
            (None, "GET", "/hello/bob", Some("named")),
            (None, "POST", "/hello/bob", Some("named")),
            (None, "GET", "/hello/world", Some("world")),
            (None, "POST", "/hello/world", Some("named")),
            (None, "GET", "/hello/", None),
            (None, "GET", "/hello/a/b", None),
            (None, "GET", "/files", Some("files-index")),
            (None, "DELETE", "/files", Some("files")),
            (None, "GET", "/files/a/b/c.txt", Some("files")),
            (None, "GET", "/users/7/posts/9", Some("post")),
            (None, "GET", "/users/7/posts", None),
            (None, "GET", "/nope", None),
        ];
        for (host, method, path, expected) in cases {
            assert_eq!(
                found(&t, *host, method, path),
                *expected,
                "{host:?} {method} {path}"
            );
        }
    }

    #[test]
    fn params_and_rest_are_extracted() {
        let t = table();
        let Match::Found { params, rest, .. } = t.lookup(None, "GET", "/users/7/posts/9") else {
            panic!()
        };
        assert_eq!(params, vec![("id", "7"), ("post", "9")]);
        assert_eq!(rest, None);
        let Match::Found { rest, .. } = t.lookup(None, "GET", "/files/a/b") else {
            panic!()
        };
        assert_eq!(rest, Some("a/b"));
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        let t = table();
        assert_eq!(
            t.lookup(None, "DELETE", "/hello"),
            Match::MethodNotAllowed { allow: vec!["GET"] }
        );
        assert_eq!(
            t.lookup(None, "PUT", "/hello/bob"),
            Match::MethodNotAllowed {
                allow: vec!["GET", "POST"]
            }
        );
    }

    #[test]
    fn conflicts_are_refused() {
        let err = RouteTable::build(vec![
            entry(None, "/a/{x}", &["GET"], "one"),
            entry(None, "/a/{y}", &["GET", "PUT"], "two"),
        ])
        .unwrap_err();
        assert!(matches!(err, RouteError::Conflict { .. }), "{err}");
        assert!(err.to_string().contains("one") && err.to_string().contains("two"));
        // Different methods, or different hosts, do not conflict.
        RouteTable::build(vec![
            entry(None, "/a", &["GET"], "one"),
            entry(None, "/a", &["POST"], "two"),
        ])
        .unwrap();
        RouteTable::build(vec![
            entry(Some("x.com"), "/a", &[], "one"),
            entry(None, "/a", &[], "two"),
        ])
        .unwrap();
    }
}
