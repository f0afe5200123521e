//! The gateway's stages in front of functions: CORS answered without invoking anything, rate
//! limits checked before a function is touched, and both visible on every response.

use crate::support::{Platform, error_code};

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

[[route]]
path = "/admin/{*rest}"
function = "probe"
cors = { origins = ["https://admin.example.com"], methods = ["DELETE"] }
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
        let (_, code, message) = error_code(refused).await;
        assert_eq!(code, "forbidden");
        assert!(message.contains(says), "{message}");
    }

    // A route with its own policy answers by it, not by the app's.
    let admin = |origin: &'static str| {
        p.http
            .request(reqwest::Method::OPTIONS, p.url("/admin/users"))
            .header("origin", origin)
            .header("access-control-request-method", "DELETE")
            .send()
    };
    let own = admin("https://admin.example.com").await.unwrap();
    assert_eq!(own.status(), 204);
    assert_eq!(own.headers()["access-control-allow-methods"], "DELETE");
    assert_eq!(admin(allowed).await.unwrap().status(), 403);

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
    assert_eq!(error_code(refused).await.1, "rate_limited");

    // A route without a limit is not slowed by the limited one.
    for _ in 0..5 {
        let response = send("/probe/echo").await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(!response.headers().contains_key("ratelimit-limit"));
    }

    // The refusal touched no function: 3 + 5 invocations were recorded, not 9. Records are
    // written in order, so once the last one is there, one for the refusal would be too.
    assert_eq!(p.records("web", "probe", 8).await.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_firewall_refuses_by_address_method_and_headers_and_trusts_only_its_proxies() {
    let p = Platform::start().await;
    // The test's requests come from 127.0.0.1: that is the trusted proxy, and what it
    // forwards in X-Forwarded-For is the client.
    let manifest = r#"
name = "walled"

[firewall]
allow = ["127.0.0.1", "203.0.113.0/24"]
deny = ["203.0.113.66"]
trusted_proxies = ["127.0.0.1"]
max_headers = 30
max_header_bytes = "4KiB"
blocked_methods = ["DELETE"]

[function.probe]
component = "probe.wasm"

[[route]]
path = "/probe/{*rest}"
function = "probe"

[[route]]
path = "/small/{*rest}"
function = "probe"
max_body = "1KiB"

[[route]]
path = "/limited/{*rest}"
function = "probe"
rate_limit = { rate = "1/h", burst = 1 }
"#;
    p.deploy(manifest, &[("probe", "probe")]).await.unwrap();
    let from = |client: &str| {
        p.http
            .get(p.url("/probe/echo"))
            .header("x-forwarded-for", client)
    };
    let blocked = async |response: reqwest::Response, says: &str| {
        let (status, code, message) = error_code(response).await;
        assert_eq!((status, code.as_str()), (403, "blocked"), "{message}");
        assert!(message.contains(says), "{says}: {message}");
    };

    assert_eq!(p.get("/probe/echo").await.0, 200);
    assert_eq!(from("203.0.113.5").send().await.unwrap().status(), 200);
    // What the client wrote itself (left of the proxy's entry) proves nothing.
    assert_eq!(
        from("198.51.100.1, 203.0.113.5")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    blocked(from("203.0.113.66").send().await.unwrap(), "denied").await;
    blocked(from("198.51.100.1").send().await.unwrap(), "allow list").await;
    blocked(
        p.http.delete(p.url("/probe/echo")).send().await.unwrap(),
        "DELETE",
    )
    .await;
    let mut many = p.http.get(p.url("/probe/echo"));
    for n in 0..40 {
        many = many.header(format!("x-h{n}"), "v");
    }
    blocked(many.send().await.unwrap(), "header fields").await;
    blocked(
        p.http
            .get(p.url("/probe/echo"))
            .header("x-big", "a".repeat(5000))
            .send()
            .await
            .unwrap(),
        "bytes",
    )
    .await;

    // Rate limits key on the client the firewall resolved, not on the proxy.
    let limited = |client: &str| {
        p.http
            .get(p.url("/limited/echo"))
            .header("x-forwarded-for", client)
    };
    assert_eq!(limited("203.0.113.5").send().await.unwrap().status(), 200);
    assert_eq!(limited("203.0.113.5").send().await.unwrap().status(), 429);
    assert_eq!(limited("203.0.113.6").send().await.unwrap().status(), 200);

    // A route's own body limit, below the server's.
    let post = |bytes: usize| p.http.post(p.url("/small/echo")).body("b".repeat(bytes));
    assert_eq!(post(512).send().await.unwrap().status(), 200);
    let (status, code, _) = error_code(post(2048).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    let refused = p.client.status().await.unwrap().refused;
    assert_eq!((refused.blocked, refused.rate_limited), (5, 1));
}
