//! The JWT, API-key and function authorizers must never panic, whatever a client sends as its
//! bearer token or key, an issuer serves as its key set or an authorizer function answers: all
//! come from outside.
//!
//! Input: an `Authorization` header value, then optionally a NUL byte and a JWKS document (the
//! authorizer's key set; without one, a fixed set with an EC and an RSA key). The whole input is
//! also read as a function authorizer's answer, and its two parts as an IAM resource pattern
//! and a route ARN.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_core::JwtAuthorizerSpec;
use nimbus_gateway::auth::apikey::{ApiKey, ApiKeySet, hash_key};
use nimbus_gateway::auth::function::{Answer, matches};
use nimbus_gateway::auth::{JwtAuthorizer, bearer_token, jwks::parse_key_set};
use std::sync::OnceLock;
use std::time::Duration;

const KEYS: &str = r#"{"keys": [
    {"kty": "EC", "crv": "P-256", "kid": "ec1", "alg": "ES256",
     "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
     "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
    {"kty": "RSA", "kid": "rsa1", "e": "AQAB",
     "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}
]}"#;

fn spec() -> JwtAuthorizerSpec {
    JwtAuthorizerSpec {
        issuer: "https://issuer.test".into(),
        audience: vec!["api".into()],
        jwks_url: None,
        algorithms: JwtAuthorizerSpec::SUPPORTED_ALGORITHMS.map(String::from).to_vec(),
        leeway: Duration::from_secs(60),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn fixed() -> &'static JwtAuthorizer {
    static AUTHORIZER: OnceLock<JwtAuthorizer> = OnceLock::new();
    AUTHORIZER.get_or_init(|| JwtAuthorizer::with_key_set(&spec(), KEYS.as_bytes()))
}

const API_KEY: &str = "nk_fuzz";

fn api_keys() -> &'static ApiKeySet {
    static KEYS: OnceLock<ApiKeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let set = ApiKeySet::default();
        set.replace(vec![ApiKey {
            id: "ak_1".into(),
            name: None,
            hash: hash_key(API_KEY),
            rate: None,
            quota_per_day: None,
        }]);
        set
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(answer) = Answer::parse(data, &[0; 32]) {
        let _ = answer.allows(&http::Method::GET, "/todos/1");
    }
    let mut parts = data.splitn(2, |b| *b == 0);
    let header = parts.next().unwrap_or_default();
    let document = parts.next();
    if let (Ok(pattern), Some(Ok(text))) = (
        std::str::from_utf8(header),
        document.map(std::str::from_utf8),
    ) {
        let matched = matches(pattern, text);
        if !pattern.contains(['*', '?']) {
            assert_eq!(matched, pattern == text);
        }
        assert!(matches("*", text));
        if !text.contains(['*', '?']) {
            assert!(matches(text, text));
        }
    }
    let Ok(value) = http::HeaderValue::from_bytes(header) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value.clone());
    // The same bytes as an API key: admitted only if they are the one key the set has.
    let mut with_key = http::HeaderMap::new();
    with_key.insert("x-api-key", value);
    let admitted = api_keys().check(&with_key, &http::HeaderName::from_static("x-api-key"));
    let expected = header.len() <= nimbus_gateway::auth::apikey::MAX_KEY_BYTES
        && header.trim_ascii() == API_KEY.as_bytes();
    assert_eq!(admitted.is_ok(), expected, "{admitted:?}");
    let Ok(token) = bearer_token(&headers) else {
        return;
    };
    match document {
        None => {
            let _ = runtime().block_on(fixed().verify(token));
        }
        Some(document) => {
            if let Ok(keys) = parse_key_set(document) {
                // Every key kept is a signature key of a type nimbus verifies with.
                assert!(keys.len() <= document.len());
            }
            let authorizer = JwtAuthorizer::with_key_set(&spec(), document);
            let _ = runtime().block_on(authorizer.verify(token));
        }
    }
});
