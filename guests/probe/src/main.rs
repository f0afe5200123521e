//! The probe guest: one `wasi:http/proxy` component whose paths exercise the behaviours nimbus
//! must handle — global state across invocations, infinite loops, runaway allocation, traps,
//! echoing the request and environment, guest logs and outbound HTTP.
//!
//! It is deliberately hostile in places; it exists so tests can prove the host survives it.

use std::sync::atomic::{AtomicU64, Ordering};

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

/// Survives between invocations only when the host reuses the instance.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// An event delivered in CloudEvents binary mode: report it to `REPORT_URL` (if set), then fail
/// if its data contains `FAIL_ON` (if set), else answer with what was handled.
async fn event(request: Request<Body>, id: String) -> Result<Response<Body>, Error> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let ty = header("ce-type");
    let attempt = header("x-nimbus-attempt");
    let mut body = request.into_body();
    let data = body.str_contents().await?.to_owned();
    if let Ok(url) = std::env::var("REPORT_URL") {
        let report = format!("{id} {ty} {attempt}\n{data}");
        let outbound = Request::post(url).body(Body::from(report))?;
        Client::new().send(outbound).await?;
    }
    let fail_on = std::env::var("FAIL_ON").unwrap_or_default();
    if !fail_on.is_empty() && data.contains(&fail_on) {
        return Ok(Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(format!("failing {id} as asked").into())?);
    }
    Ok(Response::new(format!("{{\"handled\":\"{id}\"}}").into()))
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    if let Some(id) = request.headers().get("ce-id").and_then(|v| v.to_str().ok()) {
        let id = id.to_owned();
        return event(request, id).await;
    }
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let tail = path.rsplit('/').next().unwrap_or("").to_owned();
    match tail.as_str() {
        "counter" => {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Response::new(format!("{n}").into()))
        }
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "alloc" => {
            // Grow until the host refuses more memory.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("probe asked to panic"),
        "log" => {
            println!("to stdout from the probe");
            eprintln!("to stderr from the probe");
            Ok(Response::new("logged".to_owned().into()))
        }
        "spam" => {
            // A megabyte of output: the host must cap what it keeps.
            let line = "x".repeat(1023);
            for _ in 0..1024 {
                println!("{line}");
            }
            Ok(Response::new("spammed".to_owned().into()))
        }
        "sleep" => {
            let ms: u64 = query.strip_prefix("ms=").and_then(|v| v.parse().ok()).unwrap_or(100);
            wstd::task::sleep(wstd::time::Duration::from_millis(ms)).await;
            Ok(Response::new(format!("slept {ms}").into()))
        }
        "outbound" => {
            let url = query.strip_prefix("url=").unwrap_or("").to_owned();
            let outbound = Request::get(url).body(Body::empty())?;
            match Client::new().send(outbound).await {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let body = response.body_mut().str_contents().await?.to_owned();
                    Ok(Response::new(format!("upstream {status}: {body}").into()))
                }
                Err(error) => Ok(Response::builder()
                    .status(StatusCode::BAD_GATEWAY)
                    .body(format!("outbound refused: {error:?}").into())?),
            }
        }
        "produce" => {
            // Forward the request body to nimbus's local API at the path in `to=`.
            let to = query.strip_prefix("to=").unwrap_or("").to_owned();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/plain")
                .to_owned();
            let mut body = request.into_body();
            let body = body.str_contents().await?.to_owned();
            let outbound = Request::post(format!("http://nimbus.internal{to}"))
                .header("content-type", content_type)
                .body(Body::from(body))?;
            let mut response = Client::new().send(outbound).await?;
            let status = response.status();
            let body = response.body_mut().str_contents().await?.to_owned();
            Ok(Response::builder().status(status).body(body.into())?)
        }
        "forward" => {
            // Send this request's method and body to nimbus's local API at `to=` (query
            // percent-encoded as `%3F`), answering with its status, ETag and body.
            let to = query.strip_prefix("to=").unwrap_or("").replace("%3F", "?");
            let method = request.method().clone();
            let mut body = request.into_body();
            let body = body.contents().await?.to_vec();
            let outbound = Request::builder()
                .method(method)
                .uri(format!("http://nimbus.internal{to}"))
                .body(Body::from(body))?;
            let mut response = Client::new().send(outbound).await?;
            let status = response.status();
            let etag = response
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = response.body_mut().str_contents().await?.to_owned();
            Ok(Response::builder()
                .status(status)
                .header("x-upstream-etag", etag)
                .body(body.into())?)
        }
        "env" => {
            let mut vars: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
            vars.sort();
            Ok(Response::new(vars.join("\n").into()))
        }
        "files" => {
            let root = std::fs::read_dir("/").map(|_| "readable").unwrap_or("denied");
            Ok(Response::new(format!("root:{root}").into()))
        }
        _ => {
            let method = request.method().to_string();
            let mut headers: Vec<String> = request
                .headers()
                .iter()
                .filter(|(name, _)| name.as_str().starts_with("x-"))
                .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap_or("?")))
                .collect();
            headers.sort();
            let mut body = request.into_body();
            let body = body.str_contents().await?.to_owned();
            Ok(Response::new(
                format!("{method} {path}\n{}\n\n{body}", headers.join("\n")).into(),
            ))
        }
    }
}
