//! The `jwt` authorizer, as API Gateway's: a bearer JWT whose `iss` is the configured issuer,
//! whose `aud` is one of the configured audiences (or, without `aud`, whose `client_id` is, as
//! Cognito's access tokens have it), unexpired (`exp` required, `nbf` honoured,
//! both with the configured leeway) and signed by a key in the issuer's key set with one of the
//! configured algorithms — asymmetric only, and only with a key of that algorithm's family
//! (and curve), so neither `alg: none` nor an HMAC made with a public key gets through.
//!
//! Verifying a signature costs far more than serving a small request, so verified tokens are
//! remembered (keyed by the whole token) until they expire or for [`REMEMBER_FOR`], whichever
//! is first; the time checks are made again on every use.

use super::Refusal;
use super::jwks::{KeySet, Lookup, Source};
use crate::stages::OwnIssuer;
use http::HeaderValue;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use nimbus_core::spec::JwtAuthorizerSpec;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Longest a verified token is taken on trust without checking its signature again, so a key
/// withdrawn from the issuer's set stops being honoured within this time.
pub const REMEMBER_FOR: Duration = Duration::from_secs(300);
const SHARDS: usize = 16;
const SHARD_BOUND: usize = 1024;

/// What a verified token proved.
#[derive(Debug)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub scopes: Vec<String>,
    /// The claims as the `x-nimbus-claims` header value.
    pub header: HeaderValue,
    /// Who the caller is, for limits per caller: the token's `sub`, the API key's id, a
    /// function authorizer's `principalId`.
    pub subject: String,
    /// The claims are a function authorizer's context.
    pub function: bool,
    expires: u64,
    not_before: Option<u64>,
    verified_at: Instant,
}

pub struct JwtAuthorizer {
    validations: Vec<(Algorithm, Validation)>,
    audience: Vec<String>,
    accepted: String,
    leeway: u64,
    keys: KeySet,
    verified: [Mutex<HashMap<Box<str>, Arc<Verified>>>; SHARDS],
}

impl JwtAuthorizer {
    pub fn new(spec: &JwtAuthorizerSpec, client: reqwest::Client) -> JwtAuthorizer {
        let source = match &spec.jwks_url {
            Some(url) => Source::Url(url.clone()),
            None => Source::Discover {
                issuer: spec.issuer.clone(),
            },
        };
        JwtAuthorizer::with_source(spec, source, client)
    }

    /// An authorizer whose keys are the JWKS `document`, never fetched (tests and fuzzing).
    pub fn with_key_set(spec: &JwtAuthorizerSpec, document: &[u8]) -> JwtAuthorizer {
        let source = Source::Document(document.into());
        JwtAuthorizer::with_source(spec, source, reqwest::Client::new())
    }

    /// An authorizer for the tokens of an app's own auth, whose keys are read in-process
    /// (`client`, the gateway's shared one, is never used to fetch them).
    pub fn own(
        issuer: &OwnIssuer,
        leeway: std::time::Duration,
        client: reqwest::Client,
    ) -> JwtAuthorizer {
        let spec = JwtAuthorizerSpec {
            issuer: issuer.issuer.clone(),
            audience: vec![nimbus_core::spec::AuthSpec::AUDIENCE.to_owned()],
            jwks_url: None,
            algorithms: vec![nimbus_core::spec::AuthSpec::ALGORITHM.to_owned()],
            leeway,
        };
        let source = Source::Provided(issuer.keys.clone());
        JwtAuthorizer::with_source(&spec, source, client)
    }

    fn with_source(
        spec: &JwtAuthorizerSpec,
        source: Source,
        client: reqwest::Client,
    ) -> JwtAuthorizer {
        let leeway = spec.leeway.as_secs();
        let validations = spec
            .algorithms
            .iter()
            .filter_map(|name| Algorithm::from_str(name).ok())
            .map(|algorithm| {
                let mut validation = Validation::new(algorithm);
                validation.set_issuer(&[&spec.issuer]);
                validation.set_audience(&spec.audience);
                // `aud` is checked when present; without it, `client_id` must match instead,
                // as API Gateway accepts Cognito's access tokens (below).
                validation.set_required_spec_claims(&["exp", "iss"]);
                validation.validate_nbf = true;
                validation.leeway = leeway;
                (algorithm, validation)
            })
            .collect();
        JwtAuthorizer {
            validations,
            audience: spec.audience.clone(),
            accepted: spec.algorithms.join(", "),
            leeway,
            keys: KeySet::new(source, client),
            verified: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// Verify `token`.
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, Refusal> {
        let now = unix_now();
        let shard = self.shard(token);
        if let Some(shard) = shard {
            let remembered = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .get(token)
                .cloned();
            if let Some(verified) = remembered
                && verified.verified_at.elapsed() < REMEMBER_FOR
            {
                return self.in_time(verified, now);
            }
        }

        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            Refusal::Invalid(
                "its header is not a JWT header with an algorithm nimbus verifies (unsigned \
                 `alg: none` tokens are always refused)"
                    .into(),
            )
        })?;
        let Some((algorithm, validation)) = self
            .validations
            .iter()
            .find(|(algorithm, _)| *algorithm == header.alg)
        else {
            return Err(Refusal::Invalid(format!(
                "it is signed with {:?}; this route accepts {}",
                header.alg, self.accepted
            )));
        };
        let key = self
            .keys
            .key(header.kid.as_deref(), *algorithm)
            .await
            .map_err(|lookup| match (lookup, &header.kid) {
                (Lookup::Unavailable(why), _) => Refusal::KeysUnavailable(why),
                (Lookup::NoKey, Some(kid)) => Refusal::Invalid(format!(
                    "the issuer publishes no {:?} key with id {kid:?}",
                    header.alg
                )),
                (Lookup::NoKey, None) => Refusal::Invalid(
                    "it names no key (`kid`) and the issuer does not publish exactly one key \
                     for its algorithm"
                        .into(),
                ),
            })?;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation)
            .map_err(|e| Refusal::Invalid(describe(e.kind()).into()))?;
        let claims = data.claims;
        if !claims.contains_key("aud")
            && !claims
                .get("client_id")
                .and_then(Value::as_str)
                .is_some_and(|id| self.audience.iter().any(|a| a == id))
        {
            return Err(Refusal::Invalid(
                "it names no accepted audience (aud, or client_id without aud)".into(),
            ));
        }
        let expires = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let not_before = claims.get("nbf").and_then(Value::as_u64);
        let verified = Arc::new(Verified {
            scopes: nimbus_core::claims::scopes_of(&claims),
            header: claims_header(&claims),
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            function: false,
            claims,
            expires,
            not_before,
            verified_at: Instant::now(),
        });
        if let Some(shard) = shard {
            let mut remembered = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if remembered.len() >= SHARD_BOUND {
                remembered.retain(|_, v| {
                    v.expires.saturating_add(self.leeway) >= now
                        && v.verified_at.elapsed() < REMEMBER_FOR
                });
                if remembered.len() >= SHARD_BOUND {
                    remembered.clear();
                }
            }
            remembered.insert(token.into(), verified.clone());
        }
        Ok(verified)
    }

    fn shard(&self, token: &str) -> Option<&Mutex<HashMap<Box<str>, Arc<Verified>>>> {
        // The last bytes are the signature's: as good as random.
        let byte = token.as_bytes().last().copied().unwrap_or(0);
        self.verified.get(usize::from(byte) % SHARDS)
    }

    /// A remembered token, checked against the clock again.
    fn in_time(&self, verified: Arc<Verified>, now: u64) -> Result<Arc<Verified>, Refusal> {
        if verified.expires.saturating_add(self.leeway) < now {
            return Err(Refusal::Invalid(
                describe(&ErrorKind::ExpiredSignature).into(),
            ));
        }
        if verified
            .not_before
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(Refusal::Invalid(
                describe(&ErrorKind::ImmatureSignature).into(),
            ));
        }
        Ok(verified)
    }
}

/// Why a token failed, in words a client can act on.
fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ExpiredSignature => "it has expired (exp); get a new one",
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)",
        ErrorKind::InvalidAudience => "it was issued for another audience (aud)",
        ErrorKind::InvalidIssuer => "it was issued by another issuer (iss)",
        ErrorKind::InvalidSignature => "its signature does not verify",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "it has no expiry (exp)",
            "iss" => "it names no issuer (iss)",
            "aud" => "it names no audience (aud)",
            _ => "it lacks a required claim",
        },
        ErrorKind::InvalidClaimFormat(_) => "one of its registered claims is malformed",
        ErrorKind::InvalidAlgorithm => "its algorithm does not match its key",
        _ => "it is not a well-formed signed JWT",
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The claims as a header value: compact JSON, UTF-8 as it is, DEL (the one byte JSON leaves
/// raw that a header value cannot hold) escaped.
impl Verified {
    /// What an API key proved: claims that do not expire.
    pub(crate) fn granted(claims: Map<String, Value>, subject: String) -> Verified {
        Verified {
            scopes: Vec::new(),
            header: claims_header(&claims),
            subject,
            function: false,
            claims,
            expires: u64::MAX,
            not_before: None,
            verified_at: Instant::now(),
        }
    }

    /// What a function authorizer answered: its context, for as long as the answer is kept.
    pub(crate) fn answered(context: Map<String, Value>, subject: String) -> Verified {
        Verified {
            function: true,
            ..Verified::granted(context, subject)
        }
    }
}

fn claims_header(claims: &Map<String, Value>) -> HeaderValue {
    let json = serde_json::to_string(claims).unwrap_or_default();
    let json = if json.contains('\u{7f}') {
        json.replace('\u{7f}', "\\u007f")
    } else {
        json
    };
    HeaderValue::from_bytes(json.as_bytes()).unwrap_or(HeaderValue::from_static("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_become_a_header_value_whatever_they_hold() {
        let mut claims = Map::new();
        claims.insert("name".into(), Value::String("Zoë\u{7f}\n\"".into()));
        let header = claims_header(&claims);
        let back: Value = serde_json::from_slice(header.as_bytes()).unwrap();
        assert_eq!(back["name"], "Zoë\u{7f}\n\"");
    }

    #[test]
    fn failures_are_described() {
        assert!(describe(&ErrorKind::ExpiredSignature).contains("expired"));
        assert!(describe(&ErrorKind::MissingRequiredClaim("aud".into())).contains("aud"));
        assert!(describe(&ErrorKind::InvalidToken).contains("well-formed"));
    }
}
