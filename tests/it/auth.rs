//! Route authorizers: a `jwt` authorizer in front of a Wasm and a Lambda-style function,
//! checked against an OpenID Connect issuer served by the test (discovery document and JWKS on
//! a real HTTP server), with tokens signed by real ES256 and RS256 keys.

use crate::support::{
    Platform, component, echoed_claims, error_code, lambda_fixture, workspace_root,
};
use axum::Json;
use axum::extract::State;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const AUDIENCE: &str = "todo-api";

/// An OpenID Connect issuer: discovery metadata, and a key set the test can rotate.
struct Issuer {
    url: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct IssuerState {
    url: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

impl Issuer {
    async fn start(keys: Vec<Jwk>) -> Issuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = IssuerState {
            url: url.clone(),
            keys: Arc::new(Mutex::new(keys)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(|State(s): State<IssuerState>| async move {
                    Json(json!({"issuer": s.url, "jwks_uri": format!("{}/keys", s.url)}))
                }),
            )
            .route(
                "/keys",
                axum::routing::get(|State(s): State<IssuerState>| async move {
                    s.fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = s.keys.lock().unwrap().clone();
                    Json(JwkSet { keys })
                }),
            )
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Issuer {
            url,
            keys: state.keys,
            fetches: state.fetches,
        }
    }
}

/// A signing key from the fixtures, and its public half as a JWK with `kid`.
fn signing_key(file: &str, algorithm: Algorithm, kid: &str) -> (EncodingKey, Jwk) {
    let pem = std::fs::read(workspace_root().join("tests/fixtures/jwt").join(file)).unwrap();
    let key = match algorithm {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    };
    let mut jwk = Jwk::from_encoding_key(&key, algorithm).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    (key, jwk)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(key: &EncodingKey, algorithm: Algorithm, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn manifest(issuer: &str) -> String {
    format!(
        r#"
name = "todo"

[authorizer.users]
kind = "jwt"
issuer = "{issuer}"
audience = "{AUDIENCE}"
leeway = "5s"

[function.probe]
component = "probe.wasm"

[function.py]
runtime = "python3"
handler = "app.handler"
code = "python"

[[route]]
path = "/me/{{*rest}}"
function = "probe"
auth = "users"

[[route]]
path = "/admin/{{*rest}}"
function = "probe"
auth = "users"
scopes = ["todo:admin"]

[[route]]
path = "/open/{{*rest}}"
function = "probe"

[[route]]
path = "/py/{{*rest}}"
function = "py"
auth = "users"

[[route]]
path = "/quota/{{*rest}}"
function = "probe"
auth = "users"
rate_limit = {{ rate = "1/h", burst = 2, by = "subject" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_routes_admit_valid_tokens_refuse_the_rest_and_pass_the_claims_on() {
    let (es, es_jwk) = signing_key("es256.pem", Algorithm::ES256, "es-1");
    let (rs, rs_jwk) = signing_key("rs256.pem", Algorithm::RS256, "rs-1");
    let (next, next_jwk) = signing_key("es256-next.pem", Algorithm::ES256, "es-2");
    let issuer = Issuer::start(vec![es_jwk, rs_jwk]).await;
    let p = Platform::start().await;
    let python = nimbus_api::artifact::pack_dir(&lambda_fixture("python")).unwrap();
    p.deploy_bytes(
        &manifest(&issuer.url),
        [
            ("probe", std::fs::read(component("probe")).unwrap()),
            ("py", python),
        ]
        .into_iter(),
    )
    .await
    .unwrap();

    let claims = |extra: Value| {
        let mut claims = json!({
            "iss": issuer.url,
            "aud": AUDIENCE,
            "sub": "user-1",
            "email": "ada@example.com",
            "exp": now() + 600,
            "scope": "todo:read",
        });
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let call = async |path: &str, token: Option<&str>| {
        let mut request = p.http.get(p.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    };

    // A valid ES256 token: the function runs and sees the verified claims.
    let good = sign(&es, Algorithm::ES256, "es-1", &claims(json!({})));
    let response = call("/me/echo", Some(&good)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let seen = echoed_claims(&text);
    assert_eq!(seen["sub"], "user-1");
    assert_eq!(seen["email"], "ada@example.com");
    // And again, from the verified-token cache: the same answer.
    assert_eq!(call("/me/echo", Some(&good)).await.status(), 200);
    // RS256 from the same issuer.
    let rsa = sign(
        &rs,
        Algorithm::RS256,
        "rs-1",
        &claims(json!({"sub": "user-2"})),
    );
    assert_eq!(call("/me/echo", Some(&rsa)).await.status(), 200);

    // Lambda-style functions get them where API Gateway puts them.
    let response = call("/py/x", Some(&good)).await;
    assert_eq!(response.status(), 201);
    let facts: Value = response.json().await.unwrap();
    assert_eq!(
        facts["authorizer"]["jwt"]["claims"]["sub"], "user-1",
        "{facts}"
    );
    assert_eq!(facts["authorizer"]["jwt"]["scopes"], json!(["todo:read"]));
    assert!(facts["headers"].get("x-nimbus-claims").is_none());

    // No token: 401 with a bare challenge.
    let response = call("/me/echo", None).await;
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert!(response.headers().contains_key("x-request-id"));
    let (_, code, message) = error_code(response).await;
    assert_eq!(code, "unauthorized");
    assert!(message.contains("Authorization: Bearer"), "{message}");

    // Every bad token: 401 invalid_token, saying why.
    let header_of = |alg: &str, kid: &str| {
        b64(json!({"alg": alg, "kid": kid, "typ": "JWT"})
            .to_string()
            .as_bytes())
    };
    let body_of = |c: &Value| b64(c.to_string().as_bytes());
    let unsigned = format!(
        "{}.{}.",
        header_of("none", "es-1"),
        body_of(&claims(json!({})))
    );
    // The classic confusion: HS256 with the issuer's RSA public key as the HMAC secret.
    let public_pem =
        std::fs::read(workspace_root().join("tests/fixtures/jwt/rs256.pub.pem")).unwrap();
    let confused = sign(
        &EncodingKey::from_secret(&public_pem).unwrap(),
        Algorithm::HS256,
        "rs-1",
        &claims(json!({})),
    );
    let mut tampered = good.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let forged_payload = {
        let mut parts: Vec<&str> = good.split('.').collect();
        let admin = body_of(&claims(json!({"scope": "todo:admin"})));
        parts[1] = &admin;
        parts.join(".")
    };
    let (other, _) = signing_key("es256-next.pem", Algorithm::ES256, "es-1");
    for (token, says) in [
        (
            sign(
                &es,
                Algorithm::ES256,
                "es-1",
                &claims(json!({"exp": now() - 60})),
            ),
            "expired",
        ),
        (
            sign(
                &es,
                Algorithm::ES256,
                "es-1",
                &claims(json!({"nbf": now() + 600})),
            ),
            "not valid yet",
        ),
        (
            sign(
                &es,
                Algorithm::ES256,
                "es-1",
                &claims(json!({"aud": "other-api"})),
            ),
            "audience",
        ),
        (
            sign(
                &es,
                Algorithm::ES256,
                "es-1",
                &claims(json!({"iss": "https://evil.example"})),
            ),
            "issuer",
        ),
        (
            sign(
                &es,
                Algorithm::ES256,
                "es-1",
                &json!({"iss": issuer.url, "aud": AUDIENCE, "sub": "x"}),
            ),
            "expiry",
        ),
        (
            sign(
                &es,
                Algorithm::ES256,
                "es-1",
                &json!({"iss": issuer.url, "exp": now() + 600}),
            ),
            "audience",
        ),
        (
            sign(
                &es,
                Algorithm::ES256,
                "es-1",
                &json!({"iss": issuer.url, "client_id": "other", "exp": now() + 600}),
            ),
            "audience",
        ),
        (
            sign(&other, Algorithm::ES256, "es-1", &claims(json!({}))),
            "signature",
        ),
        (
            sign(&es, Algorithm::ES256, "rs-1", &claims(json!({}))),
            "no ES256 key",
        ),
        (tampered, "signature"),
        (forged_payload, "signature"),
        (unsigned, "alg: none"),
        (confused, "HS256"),
        ("not-a-jwt".to_owned(), "header"),
        ("a.b.c".to_owned(), "header"),
    ] {
        let response = call("/me/echo", Some(&token)).await;
        assert_eq!(response.status(), 401, "{says}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        let (_, code, message) = error_code(response).await;
        assert_eq!(code, "unauthorized");
        assert!(message.contains(says), "{says}: {message}");
    }

    // Without `aud`, a `client_id` naming an accepted audience will do (Cognito's access
    // tokens), as API Gateway allows.
    let cognito = sign(
        &es,
        Algorithm::ES256,
        "es-1",
        &json!({"iss": issuer.url, "client_id": AUDIENCE, "sub": "user-3", "exp": now() + 600}),
    );
    assert_eq!(call("/me/echo", Some(&cognito)).await.status(), 200);

    // A valid token without the route's scope: 403 insufficient_scope; with it, through.
    let response = call("/admin/echo", Some(&good)).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"todo:admin\""
    );
    assert_eq!(error_code(response).await.1, "forbidden");
    let admin = sign(
        &es,
        Algorithm::ES256,
        "es-1",
        &claims(json!({"scope": "todo:read todo:admin"})),
    );
    assert_eq!(call("/admin/echo", Some(&admin)).await.status(), 200);

    // The issuer rotates in a new key: a token naming it makes the gateway fetch the set again.
    let fetched = issuer.fetches.load(Ordering::SeqCst);
    issuer.keys.lock().unwrap().push(next_jwk);
    let rotated = sign(&next, Algorithm::ES256, "es-2", &claims(json!({})));
    assert_eq!(call("/me/echo", Some(&rotated)).await.status(), 200);
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), fetched + 1);
    // Made-up key ids cannot make it hammer the issuer: the early fetches have a small budget.
    for n in 0..20 {
        let made_up = sign(
            &next,
            Algorithm::ES256,
            &format!("nope-{n}"),
            &claims(json!({})),
        );
        assert_eq!(call("/me/echo", Some(&made_up)).await.status(), 401);
    }
    assert!(issuer.fetches.load(Ordering::SeqCst) <= fetched + 1 + 5);

    // Clients cannot forge the claims header: it is stripped on open routes, replaced on
    // authorized ones.
    let forged = json!({"sub": "admin"}).to_string();
    let text = p
        .http
        .get(p.url("/open/echo"))
        .header("x-nimbus-claims", &forged)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("x-nimbus-claims"), "{text}");
    let text = p
        .http
        .get(p.url("/me/echo"))
        .bearer_auth(&good)
        .header("x-nimbus-claims", &forged)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"sub\":\"user-1\""), "{text}");
    assert!(!text.contains("\"sub\":\"admin\""), "{text}");

    // A limit per caller: each subject has its own bucket, checked after the token.
    for _ in 0..2 {
        assert_eq!(call("/quota/echo", Some(&good)).await.status(), 200);
    }
    let refused = call("/quota/echo", Some(&good)).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(error_code(refused).await.1, "rate_limited");
    assert_eq!(call("/quota/echo", Some(&rsa)).await.status(), 200);
    // A bad token is refused as such, and spends no caller's budget.
    assert_eq!(call("/quota/echo", Some("not-a-jwt")).await.status(), 401);

    // Refused requests touched no function: the probe ran only for the admitted ones (good,
    // cached good, rsa, cognito, admin, rotated, open, forged-but-authorized, 2 + 1 within
    // the quota).
    assert_eq!(p.records("todo", "probe", 11).await.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_is_a_server_error_not_a_client_one() {
    // A port nothing listens on (bound, then released).
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let p = Platform::start().await;
    let manifest = format!(
        "name = \"todo\"\n[authorizer.users]\nkind = \"jwt\"\nissuer = \"{dead}\"\naudience = \"{AUDIENCE}\"\n\n[function.probe]\ncomponent = \"probe.wasm\"\n\n[[route]]\npath = \"/me/{{*rest}}\"\nfunction = \"probe\"\nauth = \"users\"\n"
    );
    p.deploy(&manifest, &[("probe", "probe")]).await.unwrap();
    let (es, _) = signing_key("es256.pem", Algorithm::ES256, "es-1");
    let token = sign(
        &es,
        Algorithm::ES256,
        "es-1",
        &json!({"iss": dead, "aud": AUDIENCE, "exp": now() + 600}),
    );
    let response = p
        .http
        .get(p.url("/me/echo"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_code(response).await;
    assert_eq!((status, code.as_str()), (500, "internal"));
    assert!(message.contains("openid-configuration"), "{message}");
}
