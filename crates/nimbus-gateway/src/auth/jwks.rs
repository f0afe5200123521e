//! An issuer's signing keys: its JSON Web Key Set, discovered through OpenID Connect metadata
//! (`{issuer}/.well-known/openid-configuration` → `jwks_uri`) or named directly, fetched on
//! first use, kept for [`FRESH_FOR`], and fetched again early when a token names a key the set
//! does not have (the issuer rotated). Those early fetches draw on a small budget (a token
//! bucket: [`REFRESH_BURST`] at once, [`REFRESH_PER_MINUTE`] a minute) so tokens with made-up
//! key ids cannot turn the gateway into a flood of requests to the issuer.
//!
//! Readers take the current set without locking; one fetch runs at a time and callers that
//! arrive meanwhile wait for it and use what it got.

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use nimbus_core::gcra::{Decision, Limit, decide};
use nimbus_core::spec::{RateLimitKey, RateLimitSpec};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a fetched key set is used before it is fetched again.
pub const FRESH_FOR: Duration = Duration::from_secs(600);
pub const REFRESH_BURST: u32 = 5;
pub const REFRESH_PER_MINUTE: u32 = 10;
/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One usable verification key.
pub struct Key {
    pub id: Option<String>,
    /// The algorithm the key declares (`alg`), if it declares one.
    pub algorithm: Option<Algorithm>,
    kind: KeyKind,
    pub decoding: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
}

impl Key {
    /// Whether this key can check a signature made with `algorithm`.
    pub fn verifies(&self, algorithm: Algorithm) -> bool {
        let family = match algorithm {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => self.kind == KeyKind::Rsa,
            Algorithm::ES256 => self.kind == KeyKind::P256,
            Algorithm::ES384 => self.kind == KeyKind::P384,
            _ => false,
        };
        family && self.algorithm.is_none_or(|declared| declared == algorithm)
    }
}

/// The usable signature keys of a JWKS document; symmetric keys, encryption keys and key
/// types nimbus does not verify with are left out, as are keys that do not parse.
pub fn parse_key_set(document: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(document)
        .map_err(|e| format!("the key set is not a JWKS document ({e})"))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter(|jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .filter_map(|jwk| {
            let kind = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => KeyKind::Rsa,
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => KeyKind::P256,
                    EllipticCurve::P384 => KeyKind::P384,
                    _ => return None,
                },
                _ => return None,
            };
            let algorithm = match jwk.common.key_algorithm {
                None => None,
                Some(declared) => Some(Algorithm::try_from(declared).ok()?),
            };
            Some(Key {
                id: jwk.common.key_id.clone(),
                algorithm,
                kind,
                decoding: DecodingKey::from_jwk(&jwk).ok()?,
            })
        })
        .collect())
}

/// Where the keys come from.
#[derive(Clone)]
pub enum Source {
    /// Discover `jwks_uri` from the issuer's OpenID Connect metadata.
    Discover {
        issuer: String,
    },
    Url(String),
    /// A key set given as its JWKS document, never fetched (tests and fuzzing).
    Document(Arc<[u8]>),
    /// A key set read in-process when needed (the app's own auth, whose keys rotate).
    Provided(KeyDocument),
}

/// Reads a JWKS document held in this process.
pub type KeyDocument = Arc<dyn Fn() -> Arc<[u8]> + Send + Sync>;

struct Fetched {
    keys: Vec<Arc<Key>>,
    at: Option<Instant>,
}

/// An issuer's key set, shared by every route that uses its authorizer.
pub struct KeySet {
    source: Source,
    client: reqwest::Client,
    current: ArcSwap<Fetched>,
    /// Held while fetching; holds the refresh budget's state (a GCRA TAT) and the discovered
    /// key set URL.
    fetching: tokio::sync::Mutex<FetchState>,
    budget: Limit,
    origin: Instant,
}

#[derive(Default)]
struct FetchState {
    tat: Option<u64>,
    jwks_uri: Option<String>,
}

impl KeySet {
    pub fn new(source: Source, client: reqwest::Client) -> KeySet {
        KeySet {
            source,
            client,
            current: ArcSwap::from_pointee(Fetched {
                keys: Vec::new(),
                at: None,
            }),
            fetching: tokio::sync::Mutex::new(FetchState::default()),
            budget: Limit::new(&RateLimitSpec {
                rate: REFRESH_PER_MINUTE,
                per: Duration::from_secs(60),
                burst: REFRESH_BURST,
                by: RateLimitKey::Route,
            }),
            origin: Instant::now(),
        }
    }

    /// The key a token with `kid` and `algorithm` is to be checked with.
    pub async fn key(&self, kid: Option<&str>, algorithm: Algorithm) -> Result<Arc<Key>, Lookup> {
        let current = self.current.load_full();
        let fresh = current.at.is_some_and(|at| at.elapsed() < FRESH_FOR);
        if fresh && let Some(key) = pick(&current.keys, kid, algorithm) {
            return Ok(key);
        }
        // Stale, empty, or without this key: fetch (or wait for the fetch under way).
        match self.refresh(current.at, !fresh).await {
            Ok(()) => {}
            // A stale set still serves while the issuer is unreachable.
            Err(error) => {
                return pick(&current.keys, kid, algorithm).ok_or(match current.at {
                    None => Lookup::Unavailable(error),
                    Some(_) => Lookup::NoKey,
                });
            }
        }
        pick(&self.current.load().keys, kid, algorithm).ok_or(Lookup::NoKey)
    }

    /// Fetch the set unless another caller did since `seen`; `due` fetches are the scheduled
    /// ones (the set is stale or was never fetched) and do not draw on the budget.
    async fn refresh(&self, seen: Option<Instant>, due: bool) -> Result<(), String> {
        let mut state = self.fetching.lock().await;
        if self.current.load().at != seen {
            return Ok(());
        }
        if !due {
            let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            match decide(state.tat, now, &self.budget) {
                Decision::Allow { tat, .. } => state.tat = Some(tat),
                Decision::Deny { .. } => {
                    return Err("the issuer's keys were fetched moments ago".into());
                }
            }
        }
        let keys = self.fetch(&mut state).await?;
        self.current.store(Arc::new(Fetched {
            keys: keys.into_iter().map(Arc::new).collect(),
            at: Some(Instant::now()),
        }));
        Ok(())
    }

    async fn fetch(&self, state: &mut FetchState) -> Result<Vec<Key>, String> {
        let url = match (&self.source, &state.jwks_uri) {
            (Source::Document(document), _) => return parse_key_set(document),
            (Source::Provided(read), _) => return parse_key_set(&read()),
            (Source::Url(url), _) | (Source::Discover { .. }, Some(url)) => url.clone(),
            (Source::Discover { issuer }, None) => {
                let url = self.discover(issuer).await?;
                state.jwks_uri = Some(url.clone());
                url
            }
        };
        let document = self.get(&url).await?;
        parse_key_set(&document).map_err(|e| format!("{url}: {e}"))
    }

    /// The issuer's `jwks_uri`, from its OpenID Connect metadata, which must name the same
    /// issuer (OpenID Connect Discovery §4.3).
    async fn discover(&self, issuer: &str) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Metadata {
            issuer: String,
            jwks_uri: String,
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document = self.get(&url).await?;
        let metadata: Metadata = serde_json::from_slice(&document)
            .map_err(|e| format!("{url} is not OpenID Connect metadata ({e})"))?;
        if metadata.issuer != issuer {
            return Err(format!(
                "{url} names the issuer {:?}, not {issuer:?}",
                metadata.issuer
            ));
        }
        Ok(metadata.jwks_uri)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url)
            .timeout(FETCH_TIMEOUT)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("fetching {url} failed ({})", nimbus_wire::report(&e)))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("reading {url} failed ({e})"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("{url} is larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Why no key was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The set has no key for this token.
    NoKey,
    /// The set could never be fetched.
    Unavailable(String),
}

/// The key for a token naming `kid` (or, without one, the only key that fits).
fn pick(keys: &[Arc<Key>], kid: Option<&str>, algorithm: Algorithm) -> Option<Arc<Key>> {
    match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.id.as_deref() == Some(kid) && k.verifies(algorithm))
            .cloned(),
        None => {
            let mut fitting = keys.iter().filter(|k| k.verifies(algorithm));
            let only = fitting.next()?;
            fitting.next().is_none().then(|| only.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = r#"{"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "ec1", "alg": "ES256", "use": "sig",
         "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
         "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
        {"kty": "RSA", "kid": "rsa1", "e": "AQAB",
         "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "e": "AQAB", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"},
        {"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AAAA"},
        {"kty": "EC", "crv": "P-256", "kid": "broken", "x": "!!", "y": "!!"},
        {"not": "a key"}
    ]}"#;

    #[test]
    fn only_signature_keys_of_supported_types_are_kept() {
        let keys: Vec<_> = parse_key_set(SET.as_bytes())
            .unwrap()
            .into_iter()
            .map(Arc::new)
            .collect();
        let ids: Vec<_> = keys.iter().map(|k| k.id.clone().unwrap()).collect();
        // The unparseable EC key may or may not be rejected at parse time; it must never
        // verify a signature either way.
        assert!(
            ids.starts_with(&["ec1".to_owned(), "rsa1".to_owned()]),
            "{ids:?}"
        );
        assert!(
            !ids.iter()
                .any(|id| id == "hmac" || id == "enc" || id == "x")
        );

        let ec = pick(&keys, Some("ec1"), Algorithm::ES256).unwrap();
        assert_eq!(ec.id.as_deref(), Some("ec1"));
        // The key pins the algorithm family (and its declared `alg`): no confusion.
        assert!(pick(&keys, Some("ec1"), Algorithm::RS256).is_none());
        assert!(pick(&keys, Some("ec1"), Algorithm::ES384).is_none());
        assert!(pick(&keys, Some("rsa1"), Algorithm::HS256).is_none());
        assert!(pick(&keys, Some("rsa1"), Algorithm::PS256).is_some());
        assert!(pick(&keys, Some("hmac"), Algorithm::HS256).is_none());
        assert!(pick(&keys, Some("nope"), Algorithm::ES256).is_none());
        // Without a kid, only an unambiguous key is used.
        assert!(pick(&keys, None, Algorithm::RS256).is_some());
        assert!(
            parse_key_set(b"{\"keys\": 3}").is_err() && parse_key_set(b"[]").is_err(),
            "not a JWKS document"
        );
    }
}
