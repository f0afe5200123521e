//! Route authorizers, checked after the route matched and before any function is touched.
//!
//! A route with `auth = "NAME"` names one of its app's authorizers and, optionally, scopes of
//! which the credential must carry one (API Gateway's authorization scopes). What a request
//! proved reaches the function as a trusted header (`x-nimbus-claims`, the token's claims as
//! JSON) that clients cannot send themselves: the gateway strips every client `x-nimbus-*`
//! header before adding its own. Lambda-style functions find the same claims in
//! `requestContext.authorizer.jwt`, as API Gateway's JWT authorizer puts them.
//!
//! A `function` authorizer ([`function`]) asks another function of the app instead, as API
//! Gateway's Lambda authorizer; its answer's context reaches the function in the same header,
//! marked by `x-nimbus-authorizer: function`, and Lambda handlers in
//! `requestContext.authorizer.lambda`.
//!
//! The decisions are pure functions ([`bearer_token`], [`check_scopes`], the JWT checks in
//! [`jwt`], the answer checks in [`function`]); only fetching an issuer's keys ([`jwks`]) and
//! asking an authorizer function do I/O.

pub mod apikey;
pub mod function;
pub mod jwks;
pub mod jwt;

use http::{HeaderMap, HeaderValue};
use nimbus_core::ErrorCode;
use std::sync::Arc;

pub use jwt::{JwtAuthorizer, Verified};

/// Longest bearer token accepted; a longer one is refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// How a route's callers prove who they are.
#[derive(Clone)]
pub enum Authorizer {
    /// A bearer JWT.
    Jwt(Arc<JwtAuthorizer>),
    /// An API key of the app, in `header`.
    ApiKey {
        keys: Arc<apikey::ApiKeySet>,
        header: http::HeaderName,
    },
    /// Another function of the app decides.
    Function(Arc<function::FunctionAuthorizer>),
}

/// What a route asks of its callers.
pub struct RouteAuth {
    pub authorizer: Authorizer,
    /// At least one of these must be among the token's scopes; empty means any valid token.
    pub scopes: Box<[String]>,
}

impl RouteAuth {
    /// Check the request's credential; on success, what it proved.
    pub async fn check(
        &self,
        parts: &http::request::Parts,
        request_id: &str,
    ) -> Result<Arc<Verified>, Refusal> {
        let verified = match &self.authorizer {
            Authorizer::Jwt(jwt) => jwt.verify(bearer_token(&parts.headers)?).await?,
            Authorizer::ApiKey { keys, header } => keys.check(&parts.headers, header)?,
            Authorizer::Function(function) => function.check(parts, request_id).await?,
        };
        check_scopes(&verified.scopes, &self.scopes)?;
        Ok(verified)
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer …` header.
    Missing(&'static str),
    /// A token that is not valid here (RFC 6750's `invalid_token`).
    Invalid(String),
    /// A valid token without any of the route's scopes (`insufficient_scope`).
    Scope { required: Box<[String]> },
    /// The issuer's keys could not be had: not the client's fault.
    KeysUnavailable(String),
    /// No API key in the header the route reads it from.
    KeyMissing { header: String },
    /// An API key the app does not have (or revoked).
    KeyInvalid { header: String },
    /// A good API key over its usage plan (rate or daily quota), or an authorizer function at
    /// its concurrency limit.
    Throttled {
        retry_after: std::time::Duration,
        why: String,
    },
    /// A function authorizer's identity source is not in the request.
    IdentityMissing { source: String },
    /// A function authorizer said no.
    Denied,
    /// A function authorizer failed or gave an answer that cannot be read: not the client's
    /// fault.
    AuthorizerFailed { function: String, why: String },
}

impl Refusal {
    pub fn code(&self) -> ErrorCode {
        match self {
            Refusal::Missing(_)
            | Refusal::Invalid(_)
            | Refusal::KeyMissing { .. }
            | Refusal::KeyInvalid { .. }
            | Refusal::IdentityMissing { .. } => ErrorCode::Unauthorized,
            Refusal::Scope { .. } | Refusal::Denied => ErrorCode::Forbidden,
            Refusal::KeysUnavailable(_) | Refusal::AuthorizerFailed { .. } => ErrorCode::Internal,
            Refusal::Throttled { .. } => ErrorCode::RateLimited,
        }
    }

    /// How long a throttled caller should wait.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Refusal::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::Missing(why) => {
                format!("{why}: this route needs a bearer token (`Authorization: Bearer <JWT>`)")
            }
            Refusal::Invalid(why) => format!("the bearer token is not accepted: {why}"),
            Refusal::Scope { required } => format!(
                "the token lacks the scope this route needs (one of: {})",
                required.join(", ")
            ),
            Refusal::KeysUnavailable(why) => {
                format!("the token cannot be checked now: {why}; try again later")
            }
            Refusal::KeyMissing { header } => {
                format!("this route needs an API key in the {header} header")
            }
            Refusal::KeyInvalid { header } => {
                format!("the API key in {header} is not one of this app's keys (or was revoked)")
            }
            Refusal::Throttled { why, .. } => format!("{why}; retry after Retry-After seconds"),
            Refusal::IdentityMissing { source } => format!(
                "this route's authorizer reads who the caller is from {source}, which the \
                 request lacks"
            ),
            Refusal::Denied => "this route's authorizer denied the request".into(),
            Refusal::AuthorizerFailed { function, why } => format!(
                "this route's authorizer (function {function:?}) failed: {why}; see its \
                 invocation records"
            ),
        }
    }

    /// The `WWW-Authenticate` challenge RFC 6750 asks for.
    pub fn challenge(&self) -> Option<HeaderValue> {
        let value = match self {
            Refusal::Missing(_) => "Bearer".to_owned(),
            Refusal::Invalid(why) => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                quotable(why)
            ),
            Refusal::Scope { required } => format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                quotable(&required.join(" "))
            ),
            Refusal::KeysUnavailable(_)
            | Refusal::Throttled { .. }
            | Refusal::IdentityMissing { .. }
            | Refusal::Denied
            | Refusal::AuthorizerFailed { .. } => return None,
            Refusal::KeyMissing { header } | Refusal::KeyInvalid { header } => {
                format!("ApiKey header=\"{}\"", quotable(header))
            }
        };
        HeaderValue::from_str(&value).ok()
    }
}

/// `text` made safe inside a quoted string of a header: printable ASCII without `"` or `\`.
fn quotable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii_graphic() || c == ' ' => c,
            _ => '?',
        })
        .collect()
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, Refusal> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(Refusal::Missing("no Authorization header"));
    };
    if values.next().is_some() {
        return Err(Refusal::Invalid(
            "more than one Authorization header".into(),
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| Refusal::Invalid("the Authorization header is not ASCII".into()))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Missing(
            "the Authorization header is not a bearer token",
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Refusal::Invalid("the bearer token is empty".into()));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refusal::Invalid(format!(
            "the token is longer than {MAX_TOKEN_BYTES} bytes"
        )));
    }
    Ok(token)
}

/// Whether a token with `held` scopes may call a route asking for one of `required`.
pub fn check_scopes(held: &[String], required: &[String]) -> Result<(), Refusal> {
    if required.is_empty() || required.iter().any(|r| held.contains(r)) {
        Ok(())
    } else {
        Err(Refusal::Scope {
            required: required.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.def.ghi"])),
            Ok("abc.def.ghi")
        );
        assert_eq!(bearer_token(&headers(&["bearer  abc "])), Ok("abc"));
        assert!(matches!(
            bearer_token(&headers(&[])),
            Err(Refusal::Missing(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Basic dXNlcjpwdw=="])),
            Err(Refusal::Missing(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer"])),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(Refusal::Invalid(_))
        ));
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
        assert!(matches!(
            bearer_token(&headers(&[&long])),
            Err(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn a_route_needs_one_of_its_scopes() {
        let held = ["todo:read".to_owned()];
        assert_eq!(check_scopes(&held, &[]), Ok(()));
        assert_eq!(
            check_scopes(&held, &["todo:write".into(), "todo:read".into()]),
            Ok(())
        );
        let refused = check_scopes(&held, &["todo:write".into()]).unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Forbidden);
        assert_eq!(
            refused.challenge().unwrap(),
            "Bearer error=\"insufficient_scope\", scope=\"todo:write\""
        );
    }

    #[test]
    fn challenges_are_valid_header_values() {
        let refusal = Refusal::Invalid("bad \"quote\" and \\ and é".into());
        assert_eq!(
            refusal.challenge().unwrap(),
            "Bearer error=\"invalid_token\", error_description=\"bad 'quote' and ' and ?\""
        );
        assert_eq!(Refusal::Missing("x").challenge().unwrap(), "Bearer");
        assert_eq!(Refusal::Missing("x").code(), ErrorCode::Unauthorized);
    }
}
