//! The invocation path end to end: routes, params, env, bodies, errors, reuse, logs, outbound.

use crate::support::{Platform, eventually, probe_app};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const HELLO: &str = include_str!("../../examples/hello/nimbus.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_example_serves_and_errors_are_json() {
    let p = Platform::start().await;
    let deployed = p.deploy(HELLO, &[("hello", "hello")]).await.unwrap();
    assert_eq!(deployed.version, 1);

    let response = p.http.get(p.url("/hello")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "Hello from nimbus!\n");

    let response = p
        .http
        .get(p.url("/nowhere"))
        .header("x-request-id", "my-id-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "my-id-1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "route_not_found");
    assert_eq!(body["error"]["request_id"], "my-id-1");

    let response = p.http.delete(p.url("/hello")).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert!(
        body["error"]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_example_sees_params_env_and_body() {
    let p = Platform::start().await;
    p.deploy(
        include_str!("../../examples/echo/nimbus.toml"),
        &[("echo", "echo")],
    )
    .await
    .unwrap();
    assert_eq!(p.get("/greet/ada").await, (200, "Howdy, ada!\n".to_owned()));
    let response = p
        .http
        .post(p.url("/greet/bob"))
        .body("some bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        "Howdy, bob! You sent 10 bytes: some bytes\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sees_trusted_headers_only_and_declared_env_only() {
    let p = Platform::start().await;
    p.deploy(
        &probe_app("app", "probe", "env = { COLOR = \"blue\" }"),
        &[("probe", "probe")],
    )
    .await
    .unwrap();
    let response = p
        .http
        .put(p.url("/probe/a/b"))
        .header("x-nimbus-param-rest", "spoofed")
        .header("x-custom", "kept")
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with("PUT /probe/a/b\n"), "{text}");
    assert!(text.contains("x-nimbus-param-rest: a/b"), "{text}");
    assert!(
        !text.contains("spoofed"),
        "client must not forge x-nimbus-* headers: {text}"
    );
    assert!(text.contains("x-nimbus-path-info: /a/b"), "{text}");
    assert!(text.contains("x-custom: kept"), "{text}");
    assert!(text.ends_with("\n\npayload"), "{text}");

    let (status, env) = p.get("/probe/env").await;
    assert_eq!(status, 200);
    assert_eq!(
        env, "COLOR=blue",
        "only declared variables, none of the host's"
    );
    let (_, files) = p.get("/probe/files").await;
    assert_eq!(files, "root:denied", "no preopened directories");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_keeps_globals_and_fresh_does_not() {
    let p = Platform::start().await;
    let manifest = format!(
        "{}\n{}",
        probe_app("app", "reused", ""),
        probe_app("app", "fresh", "instance = \"fresh\"").replace("name = \"app\"\n", "")
    );
    p.deploy(&manifest, &[("reused", "probe"), ("fresh", "probe")])
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(p.get("/reused/counter").await.1);
    }
    assert_eq!(seen, ["1", "2", "3"]);
    for _ in 0..3 {
        assert_eq!(p.get("/fresh/counter").await.1, "1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_all_succeed() {
    let p = Platform::start().await;
    p.deploy(
        &probe_app("app", "probe", "max_concurrency = 50"),
        &[("probe", "probe")],
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = p.http.clone();
        let url = p.url(&format!("/probe/item/{i}"));
        tasks.push(tokio::spawn(async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, 200, "request {i}: {body}");
        assert!(
            body.starts_with(&format!("GET /probe/item/{i}\n")),
            "request {i}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_capture_guest_output_per_invocation() {
    let p = Platform::start().await;
    p.deploy(&probe_app("app", "probe", ""), &[("probe", "probe")])
        .await
        .unwrap();
    let response = p.http.get(p.url("/probe/log")).send().await.unwrap();
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.text().await.unwrap(), "logged");
    let found = eventually(Duration::from_secs(5), async || {
        let logs = p.client.logs("app", "probe", 0, None).await.unwrap();
        logs.records.iter().any(|r| {
            *r.request_id == *request_id
                && r.logs.contains("to stdout from the probe")
                && r.logs.contains("to stderr from the probe")
                && r.status == 200
        })
    })
    .await;
    assert!(
        found,
        "the invocation record carries the guest's output and request id"
    );
}

/// A tiny upstream server for outbound tests that counts the requests it receives.
async fn upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { "upstream says hi" }
        }),
    );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_http_only_to_allowed_hosts() {
    let (addr, hits) = upstream().await;
    let p = Platform::start().await;
    let allowed = probe_app(
        "app",
        "allowed",
        &format!(
            "allowed_outbound_hosts = [\"http://127.0.0.1:{}\"]",
            addr.port()
        ),
    );
    let denied = probe_app("app", "denied", "").replace("name = \"app\"\n", "");
    p.deploy(
        &format!("{allowed}\n{denied}"),
        &[("allowed", "probe"), ("denied", "probe")],
    )
    .await
    .unwrap();

    let target = format!("http://127.0.0.1:{}/", addr.port());
    let (status, body) = p.get(&format!("/allowed/outbound?url={target}")).await;
    assert_eq!(
        (status, body.as_str()),
        (200, "upstream 200: upstream says hi")
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Not in the function's list: the host refuses before any connection is made.
    let (status, body) = p.get(&format!("/denied/outbound?url={target}")).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.starts_with("outbound refused"), "{body}");
    // Allowed host, wrong port; and a name that resolves to the allowed address (judged by name).
    for url in [
        "http://127.0.0.1:1/".to_owned(),
        format!("http://localhost:{}/", addr.port()),
    ] {
        let (status, body) = p.get(&format!("/allowed/outbound?url={url}")).await;
        assert_eq!(status, 502, "{url}: {body}");
        assert!(body.starts_with("outbound refused"), "{body}");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "denied calls never reach the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_is_served_on_the_same_port() {
    let p = Platform::start().await;
    p.deploy(HELLO, &[("hello", "hello")]).await.unwrap();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(p.url("/hello")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "Hello from nimbus!\n");
}
