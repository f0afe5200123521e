//! An app's auth API must answer anything a client sends — any method, path, query, headers
//! (a bearer token among them) and body — with a response, never a panic, and keep its store
//! consistent: it faces the internet.
//!
//! Input: a request line (`METHOD /path?query`), header lines (`name: value`), a blank line,
//! then the body.

#![no_main]

use bytes::Bytes;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use nimbus_auth::{AppAuth, AuthService};
use nimbus_core::spec::{AuthSpec, RateLimitKey, RateLimitSpec};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    auth: Arc<AppAuth>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).unwrap());
        let service = AuthService::new(
            store,
            Arc::new(nimbus_seal::MasterKey::from_bytes(&[3; 32])),
            None,
        );
        let mut spec = AuthSpec::with_defaults();
        // Throttles would soon answer every input with 429; the parsers are the target.
        spec.attempts_per_ip = RateLimitSpec {
            rate: 1_000_000,
            per: Duration::from_secs(1),
            burst: 1_000_000,
            by: RateLimitKey::Ip,
        };
        let auth = runtime
            .block_on(service.mount("fuzz", &spec, "http://127.0.0.1:1"))
            .unwrap();
        Fixture {
            runtime,
            auth,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    let (head, body) = data.split_at(split);
    let body = body.get(2..).unwrap_or_default();
    let Ok(head) = std::str::from_utf8(head) else {
        return;
    };
    let mut lines = head.lines();
    let Some((method, target)) = lines.next().and_then(|l| l.split_once(' ')) else {
        return;
    };
    let mut builder = http::Request::builder().method(method).uri(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(": ") {
            builder = builder.header(name, value);
        }
    }
    let Ok(request) = builder.body(
        http_body_util::Full::new(Bytes::copy_from_slice(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    ) else {
        return;
    };
    let path = request
        .uri()
        .path()
        .strip_prefix("/auth/v1")
        .unwrap_or(request.uri().path())
        .to_owned();
    let fixture = fixture();
    let response = fixture.runtime.block_on(fixture.auth.handle(request, &path));
    assert!(
        response.status().as_u16() >= 200 && response.status().as_u16() < 600,
        "{:?}",
        response.status()
    );
});
