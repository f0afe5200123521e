//! Function authorizers: an unmodified Lambda request authorizer (payload 2.0, Python) decides
//! who may call a route, in the simple shape and as an IAM policy; its context reaches Lambda
//! handlers in `requestContext.authorizer.lambda` and Wasm functions in the trusted claims
//! header; answers are remembered per identity for the TTL; a request without the identity
//! never reaches the authorizer; a failing authorizer is a 500 that names it.

use crate::support::{Platform, component, echoed_claims, error_code, lambda_fixture};
use serde_json::Value;

const MANIFEST: &str = r#"name = "desk"

[function.simple]
runtime = "python3"
handler = "app.simple"
code = "authorizer"
max_concurrency = 1

[function.policy]
runtime = "python3"
handler = "app.policy"
code = "authorizer"
max_concurrency = 1

[function.count]
runtime = "python3"
handler = "app.count"
code = "authorizer"
max_concurrency = 1

[function.py]
runtime = "python3"
handler = "app.handler"
code = "python"

[function.w]
component = "probe.wasm"

[authorizer.simple]
kind = "function"
function = "simple"

[authorizer.policy]
kind = "function"
function = "policy"
identity_source = "$request.querystring.token"
ttl = "1m"

[authorizer.every]
kind = "function"
function = "count"
identity_source = []
ttl = "0s"

[[route]]
path = "/py/{*rest}"
function = "py"
auth = "simple"

[[route]]
path = "/w/{*rest}"
function = "w"
auth = "simple"

[[route]]
path = "/open/{*rest}"
function = "w"

[[route]]
path = "/docs/{*rest}"
methods = ["GET", "DELETE"]
function = "py"
auth = "policy"

[[route]]
path = "/every/{*rest}"
function = "py"
auth = "every"
"#;

async fn deploy(p: &Platform) {
    let authorizer = nimbus_api::artifact::pack_dir(&lambda_fixture("authorizer")).unwrap();
    let python = nimbus_api::artifact::pack_dir(&lambda_fixture("python")).unwrap();
    let artifacts = [
        ("simple", authorizer.clone()),
        ("policy", authorizer.clone()),
        ("count", authorizer),
        ("py", python),
        ("w", std::fs::read(component("probe")).unwrap()),
    ];
    p.deploy_bytes(MANIFEST, artifacts.into_iter())
        .await
        .unwrap();
}

/// `requestContext.authorizer` as the Python handler saw it (it answers 201).
async fn seen_by_lambda(response: reqwest::Response) -> Value {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    let facts: Value = serde_json::from_str(&text).unwrap();
    facts["authorizer"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_authorizer_decides_and_its_context_reaches_both_kinds() {
    let p = Platform::start().await;
    deploy(&p).await;
    let get = |path: &str, token: Option<&str>| {
        let mut request = p.http.get(p.url(path));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        request.send()
    };

    // No identity: refused before the authorizer is asked (its first answer below says 1).
    let (status, code, message) = error_code(get("/py/x", None).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"), "{message}");
    assert!(
        message.contains("$request.header.authorization"),
        "{message}"
    );

    // Allowed: the context reaches a Lambda handler under `lambda`, as API Gateway puts it.
    let authorizer = seen_by_lambda(get("/py/x", Some("allow-ann")).await.unwrap()).await;
    let context = &authorizer["lambda"];
    assert_eq!(context["user"], "ann");
    assert_eq!(context["asked"], 1);
    assert_eq!(
        context["route"],
        "arn:aws:execute-api:us-east-1:000000000000:nimbus/$default/GET/py/x"
    );
    // The same identity again: the remembered answer, not a second invocation, even on
    // another route the authorizer guards; a Wasm function gets the context as the claims.
    let response = get("/w/echo", Some("allow-ann"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let claims = echoed_claims(&response);
    assert_eq!(claims["user"], "ann");
    assert_eq!(claims["asked"], 1);
    assert!(
        response.contains("x-nimbus-authorizer: function"),
        "{response}"
    );
    // Another identity is asked for itself.
    let other = seen_by_lambda(get("/py/x", Some("allow-bob")).await.unwrap()).await;
    assert_eq!(other["lambda"]["user"], "bob");
    assert_eq!(other["lambda"]["asked"], 2);

    // Denied: 403, and a client cannot claim an authorizer's context on any route.
    let (status, code, _) = error_code(get("/py/x", Some("deny")).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let forged = p
        .http
        .get(p.url("/open/echo"))
        .header("x-nimbus-claims", r#"{"user":"root"}"#)
        .header("x-nimbus-authorizer", "function")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!forged.contains("root"), "{forged}");
    assert!(!forged.contains("x-nimbus-authorizer"), "{forged}");

    // An authorizer that raises, or answers something that is not an answer: 500, naming it.
    for token in ["crash", "garbage"] {
        let (status, code, message) = error_code(get("/py/x", Some(token)).await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (500, "internal"),
            "{token}: {message}"
        );
        assert!(
            message.contains("authorizer (function \"simple\")"),
            "{message}"
        );
    }
    // A failure is not remembered: the authorizer is asked again (and still fails).
    let (status, _, message) = error_code(get("/py/x", Some("crash")).await.unwrap()).await;
    assert_eq!(status, 500, "{message}");
    assert!(message.contains("the token service is down"), "{message}");
    let after = seen_by_lambda(get("/py/x", Some("allow-cy")).await.unwrap()).await;
    assert_eq!(
        after["lambda"]["asked"], 7,
        "deny, crash ×2, garbage, crash were each asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policies_are_judged_per_route_and_ttl_zero_asks_every_time() {
    let p = Platform::start().await;
    deploy(&p).await;
    let call = async |method: reqwest::Method, path: &str| {
        p.http.request(method, p.url(path)).send().await.unwrap()
    };

    // A reader's policy allows GET only; the cached policy is judged again for DELETE.
    let authorizer = seen_by_lambda(call(reqwest::Method::GET, "/docs/a?token=reader").await).await;
    assert_eq!(authorizer["lambda"]["role"], "reader");
    assert_eq!(authorizer["lambda"]["asked"], 1);
    let (status, code, _) =
        error_code(call(reqwest::Method::DELETE, "/docs/a?token=reader").await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let admin = seen_by_lambda(call(reqwest::Method::DELETE, "/docs/a?token=admin").await).await;
    assert_eq!(admin["lambda"]["role"], "admin");
    assert_eq!(admin["lambda"]["asked"], 2);
    let again = seen_by_lambda(call(reqwest::Method::GET, "/docs/b?token=reader").await).await;
    assert_eq!(
        again["lambda"]["asked"], 1,
        "the reader's policy was remembered"
    );
    // An explicit Deny, and a request without the query parameter.
    let (status, _, _) =
        error_code(call(reqwest::Method::GET, "/docs/a?token=mallory").await).await;
    assert_eq!(status, 403);
    let (status, _, message) = error_code(call(reqwest::Method::GET, "/docs/a").await).await;
    assert_eq!(status, 401);
    assert!(message.contains("$request.querystring.token"), "{message}");

    // TTL zero and no identity source: every request asks.
    for expected in 1..=3 {
        let seen = seen_by_lambda(call(reqwest::Method::GET, "/every/x").await).await;
        assert_eq!(seen["lambda"]["asked"], expected);
    }
}
