//! Route path templates: `/literal/{param}/{*rest}`. One parser, shared: the manifest rejects a
//! bad path at the line it is written on, and the gateway's router builds its table from the
//! same segments (matching lives there) without depending on the manifest.

/// One segment of a route path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
    /// `{*name}`: matches the rest of the path (possibly empty); only last.
    Rest(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePath {
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route path {path:?}: {reason}")]
pub struct RoutePathError {
    pub path: String,
    pub reason: &'static str,
}

impl RoutePath {
    pub fn parse(path: &str) -> Result<RoutePath, RoutePathError> {
        let fail = |reason| RoutePathError {
            path: path.to_owned(),
            reason,
        };
        let rest = path
            .strip_prefix('/')
            .ok_or_else(|| fail("it must start with '/'"))?;
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        if rest.is_empty() {
            return Ok(RoutePath { segments });
        }
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let segment = if let Some(inner) = part.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or_else(|| fail("a '{' segment must end with '}'"))?;
                let (is_rest, name) = match inner.strip_prefix('*') {
                    Some(name) => (true, name),
                    None => (false, inner),
                };
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(fail("parameter names use letters, digits, '_' and '-'"));
                }
                if names.contains(&name) {
                    return Err(fail("a parameter name appears twice"));
                }
                names.push(name);
                if is_rest {
                    if i + 1 != parts.len() {
                        return Err(fail("'{*rest}' must be the last segment"));
                    }
                    Segment::Rest(name.to_owned())
                } else {
                    Segment::Param(name.to_owned())
                }
            } else {
                if part.contains(['{', '}']) {
                    return Err(fail("'{' and '}' may only wrap a whole segment"));
                }
                if part.is_empty() && i + 1 != parts.len() {
                    return Err(fail("empty segment ('//')"));
                }
                Segment::Literal((*part).to_owned())
            };
            segments.push(segment);
        }
        Ok(RoutePath { segments })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shapes() {
        assert_eq!(RoutePath::parse("/").unwrap().segments, vec![]);
        assert_eq!(
            RoutePath::parse("/a/{b}/{*c}").unwrap().segments,
            vec![
                Segment::Literal("a".into()),
                Segment::Param("b".into()),
                Segment::Rest("c".into())
            ]
        );
        for bad in [
            "", "a", "/{*a}/b", "/{a}/{a}", "/a{b}", "/{}", "/a//b", "/{a",
        ] {
            assert!(RoutePath::parse(bad).is_err(), "{bad}");
        }
    }
}
