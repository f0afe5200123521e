//! The gateway's stages in front of functions: CORS answered without invoking anything, rate
//! limits checked before a function is touched, and both visible on every response.

use crate::support::Platform;

const MANIFEST: &str = r#"
name = "web"

[cors]
origins = ["https://app.example.com", "https://*.preview.example.com"]
methods = ["GET", "POST"]
headers = ["authorization", "content-type"]
expose_headers = ["x-request-id"]
credentials = true
max_age = "10m"

[function.probe]
component = "probe.wasm"

[[route]]
path = "/probe/{*rest}"
function = "probe"

[[route]]
path = "/limited/{*rest}"
function = "probe"
rate_limit = { rate = "1/h", burst = 3, by = "ip" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_and_every_response_carries_the_headers() {
    let p = Platform::start().await;
    p.deploy(MANIFEST, &[("probe", "probe")]).await.unwrap();
    let allowed = "https://app.example.com";

    let preflight = |origin: &'static str, method: &'static str, headers: &'static str| {
        p.http
            .request(reqwest::Method::OPTIONS, p.url("/probe/echo"))
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers)
            .send()
    };
    let response = preflight(allowed, "POST", "Authorization").await.unwrap();
    assert_eq!(response.status(), 204);
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], allowed);
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization, content-type"
    );
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h.contains_key("x-request-id"));

    let subdomain = preflight("https://pr-7.preview.example.com", "GET", "")
        .await
        .unwrap();
    assert_eq!(subdomain.status(), 204);
    assert_eq!(
        subdomain.headers()["access-control-allow-origin"],
        "https://pr-7.preview.example.com"
    );

    for (origin, method, headers, says) in [
        ("https://evil.example.net", "POST", "", "origin"),
        (allowed, "DELETE", "", "method DELETE"),
        (allowed, "POST", "x-admin", "x-admin"),
    ] {
        let refused = preflight(origin, method, headers).await.unwrap();
        assert_eq!(refused.status(), 403, "{origin} {method} {headers}");
        assert!(
            !refused
                .headers()
                .contains_key("access-control-allow-origin")
        );
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{body}"
        );
    }

    // The actual request: the function answers, the gateway adds the headers.
    let response = p
        .http
        .post(p.url("/probe/echo"))
        .header("origin", allowed)
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], allowed);
    assert_eq!(
        response.headers()["access-control-expose-headers"],
        "x-request-id"
    );
    assert_eq!(response.headers()["vary"], "Origin");
    assert!(response.text().await.unwrap().ends_with("\n\nhi"));

    // A refused origin still reaches the function but gets no CORS headers to read it with.
    let response = p
        .http
        .post(p.url("/probe/echo"))
        .header("origin", "https://evil.example.net")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );

    // Errors from the gateway carry them too, so the page can read why.
    let response = p
        .http
        .post(p.url("/probe/echo"))
        .header("origin", allowed)
        .header("x-nimbus-invocation-type", "sometimes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["access-control-allow-origin"], allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_routes_answer_429_before_the_function_and_other_routes_are_unaffected() {
    let p = Platform::start().await;
    p.deploy(MANIFEST, &[("probe", "probe")]).await.unwrap();
    let send = |path: &'static str| p.http.post(p.url(path)).body("x").send();

    for remaining in ["2", "1", "0"] {
        let response = send("/limited/echo").await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(response.headers()["ratelimit-remaining"], remaining);
        assert_eq!(response.headers()["ratelimit-policy"], "3;w=3600");
    }
    let refused = send("/limited/echo").await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After: {retry}");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    assert!(refused.headers().contains_key("x-request-id"));
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // A route without a limit is not slowed by the limited one.
    for _ in 0..5 {
        let response = send("/probe/echo").await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(!response.headers().contains_key("ratelimit-limit"));
    }

    // The refusal touched no function: 3 + 5 invocations were recorded, not 9. Records are
    // written in order, so once the last one is there, one for the refusal would be too.
    let count = async || {
        p.client
            .logs("web", "probe", 0, None)
            .await
            .unwrap()
            .records
            .len()
    };
    assert!(
        crate::support::eventually(std::time::Duration::from_secs(10), async || count().await
            >= 8)
        .await
    );
    assert_eq!(count().await, 8);
}
