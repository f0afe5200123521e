//! Hostile guests and overload: none of it may take the platform down or leak into other
//! functions.

use crate::support::{Platform, error_code, probe_app};
use std::time::Duration;

fn two_functions(first: &str, first_extra: &str) -> String {
    format!(
        "{}\n{}",
        probe_app("app", first, first_extra),
        probe_app("app", "other", "").replace("name = \"app\"\n", "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_times_out_and_others_keep_serving() {
    let p = Platform::start().await;
    p.deploy(
        &two_functions("spin", "timeout = \"500ms\""),
        &[("spin", "probe"), ("other", "probe")],
    )
    .await
    .unwrap();

    // Two spinning guests at once (as many as this machine has cores) while others are served.
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let request = p.http.get(p.url("/spin/loop"));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        assert_eq!(
            p.get("/other/counter").await.0,
            200,
            "a looping guest must not starve other functions"
        );
    }
    for spinner in spinners {
        let (status, code, message) = error_code(spinner.await.unwrap()).await;
        assert_eq!((status, code.as_str()), (504, "function_timeout"));
        assert!(message.contains("timeout"), "{message}");
    }
    // The looping instance was killed; the function itself still works.
    assert_eq!(p.get("/spin/counter").await, (200, "1".to_owned()));
    // The record says what happened and what the client got.
    let recorded = crate::support::eventually(Duration::from_secs(5), async || {
        let logs = p.client.logs("app", "spin", 0, None).await.unwrap();
        logs.records
            .iter()
            .filter(|r| r.outcome == nimbus_core::Outcome::Timeout && r.status == 504)
            .count()
            == 2
    })
    .await;
    assert!(recorded, "both timeouts are recorded with status 504");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_gets_a_clear_500_and_the_server_lives() {
    let p = Platform::start().await;
    p.deploy(
        &two_functions("hog", "memory = \"32MiB\""),
        &[("hog", "probe"), ("other", "probe")],
    )
    .await
    .unwrap();
    let (status, code, message) =
        error_code(p.http.get(p.url("/hog/alloc")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (500, "function_memory_exceeded"));
    assert!(message.contains("32 MiB"), "{message}");
    assert_eq!(p.get("/other/counter").await.0, 200);
    assert_eq!(
        p.get("/hog/counter").await,
        (200, "1".to_owned()),
        "a fresh instance replaces the failed one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_is_a_500_and_the_next_request_gets_a_fresh_instance() {
    let p = Platform::start().await;
    p.deploy(&probe_app("app", "probe", ""), &[("probe", "probe")])
        .await
        .unwrap();
    assert_eq!(p.get("/probe/counter").await.1, "1");
    assert_eq!(p.get("/probe/counter").await.1, "2");
    let (status, code, _) =
        error_code(p.http.get(p.url("/probe/panic")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (500, "function_trapped"));
    assert_eq!(
        p.get("/probe/counter").await,
        (200, "1".to_owned()),
        "the trapped instance was discarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let p = Platform::start_in(dir, |config| config.gateway.max_body_bytes = 1024).await;
    p.deploy(&probe_app("app", "probe", ""), &[("probe", "probe")])
        .await
        .unwrap();
    let response = p
        .http
        .post(p.url("/probe/echo"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    // Chunked, so no content-length to judge up front.
    let chunks = futures_chunks(8, 512);
    let response = p
        .http
        .post(p.url("/probe/echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_code(response).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    let response = p
        .http
        .post(p.url("/probe/echo"))
        .body(vec![b'y'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn futures_chunks(
    count: usize,
    size: usize,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    futures::stream::iter((0..count).map(move |_| Ok(vec![b'z'; size])))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_answers_429_with_retry_after() {
    let p = Platform::start().await;
    p.deploy(
        &probe_app("app", "probe", "max_concurrency = 1\ntimeout = \"10s\""),
        &[("probe", "probe")],
    )
    .await
    .unwrap();
    // One running and four waiting (the wait queue holds 4 x max_concurrency); the next is refused.
    let mut slow = Vec::new();
    for _ in 0..5 {
        let request = p.http.get(p.url("/probe/sleep?ms=400"));
        slow.push(tokio::spawn(async move {
            request.send().await.unwrap().status().as_u16()
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = p.http.get(p.url("/probe/counter")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let (_, code, _) = error_code(response).await;
    assert_eq!(code, "too_many_requests");
    for task in slow {
        assert_eq!(
            task.await.unwrap(),
            200,
            "queued requests are served in turn"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_their_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let p = Platform::start_in(dir, |config| {
        config.gateway.header_read_timeout = Duration::from_millis(300)
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(p.server.as_ref().unwrap().gateway_addr)
        .await
        .unwrap();
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the server must close a connection whose headers never complete"
    );
    // The server is still there for everyone else.
    assert_eq!(p.get("/nothing-here").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_output_floods_are_capped_per_invocation() {
    let p = Platform::start().await;
    p.deploy(&probe_app("app", "probe", ""), &[("probe", "probe")])
        .await
        .unwrap();
    assert_eq!(p.get("/probe/spam").await, (200, "spammed".to_owned()));
    assert_eq!(p.get("/probe/log").await, (200, "logged".to_owned()));
    let recorded = crate::support::eventually(Duration::from_secs(5), async || {
        p.client
            .logs("app", "probe", 0, None)
            .await
            .unwrap()
            .records
            .len()
            == 2
    })
    .await;
    assert!(recorded);
    let records = p
        .client
        .logs("app", "probe", 0, None)
        .await
        .unwrap()
        .records;
    let flood = &records[0].logs;
    assert!(flood.len() <= 64 * 1024 + 100, "kept {} bytes", flood.len());
    assert!(
        flood.contains("more bytes of output dropped"),
        "the truncation is said"
    );
    // The next invocation on the same instance starts with a clean buffer.
    assert_eq!(
        records[1].logs,
        "to stdout from the probe\nto stderr from the probe\n"
    );
}
