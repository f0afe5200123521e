//! Deploys are atomic: bad ones are refused with a clear error and the previous version keeps
//! serving; rollback and removal do what they say; the admin API needs its token.

use crate::support::{Platform, component, probe_app};
use nimbus_core::ErrorCode;
use std::collections::BTreeMap;

const HELLO: &str = include_str!("../../examples/hello/nimbus.toml");

async fn refused(p: &Platform, manifest: &str, bytes: Vec<u8>) -> (ErrorCode, String) {
    let digest = p.client.upload_artifact(bytes).await.unwrap();
    let error = p
        .deploy_artifacts(manifest, BTreeMap::from([("hello".to_owned(), digest)]))
        .await
        .unwrap_err();
    match error {
        nimbus_api::ApiError::Api {
            code,
            message,
            status,
            request_id,
        } => {
            assert_eq!(status, 400);
            assert!(!request_id.is_empty());
            (code, message)
        }
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_are_refused_and_the_old_version_keeps_serving() {
    let p = Platform::start().await;
    p.deploy(HELLO, &[("hello", "hello")]).await.unwrap();

    let (code, message) = refused(&p, HELLO, b"definitely not wasm".to_vec()).await;
    assert_eq!(code, ErrorCode::InvalidComponent);
    assert!(message.contains("not a WebAssembly binary"), "{message}");

    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let (code, message) = refused(&p, HELLO, core_module).await;
    assert_eq!(code, ErrorCode::InvalidComponent);
    assert!(message.contains("core WebAssembly module"), "{message}");

    let mut truncated = std::fs::read(component("hello")).unwrap();
    truncated.truncate(truncated.len() / 2);
    let (code, _) = refused(&p, HELLO, truncated).await;
    assert_eq!(code, ErrorCode::InvalidComponent);

    let (code, message) = refused(&p, HELLO, std::fs::read(component("not-http")).unwrap()).await;
    assert_eq!(code, ErrorCode::IncompatibleComponent);
    assert!(message.contains("wasi:http/incoming-handler"), "{message}");

    let broken = HELLO.replace("timeout = \"5s\"", "timeout = \"forever\"");
    let (code, message) = refused(&p, &broken, std::fs::read(component("hello")).unwrap()).await;
    assert_eq!(code, ErrorCode::InvalidManifest);
    assert!(
        message.contains("nimbus.toml:9:") && message.contains("function.hello.timeout"),
        "{message}"
    );

    assert_eq!(
        p.get("/hello").await,
        (200, "Hello from nimbus!\n".to_owned())
    );
    let apps = p.client.apps().await.unwrap();
    assert_eq!(
        (apps[0].active_version, apps[0].latest_version),
        (Some(1), 1),
        "refused deploys create no version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeploy_swaps_and_rollback_restores() {
    let p = Platform::start().await;
    p.deploy(HELLO, &[("hello", "hello")]).await.unwrap();
    let v2 = HELLO.replace("path = \"/hello\"", "path = \"/hello-v2\"");
    let deployed = p.deploy(&v2, &[("hello", "probe")]).await.unwrap();
    assert_eq!(deployed.version, 2);
    assert_eq!(p.get("/hello").await.0, 404);
    assert_eq!(p.get("/hello-v2").await.0, 200);

    let rolled = p.client.rollback("hello").await.unwrap();
    assert_eq!(rolled.version, 1);
    assert_eq!(
        p.get("/hello").await,
        (200, "Hello from nimbus!\n".to_owned())
    );
    assert_eq!(p.get("/hello-v2").await.0, 404);

    let error = p.client.rollback("hello").await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::NoPreviousVersion));

    p.client.remove("hello", false).await.unwrap();
    assert_eq!(p.get("/hello").await.0, 404);
    assert!(p.client.apps().await.unwrap().is_empty());
    assert_eq!(
        p.client.remove("hello", false).await.unwrap_err().code(),
        Some(ErrorCode::AppNotFound)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_conflicts_between_apps_are_refused() {
    let p = Platform::start().await;
    p.deploy(&probe_app("one", "probe", ""), &[("probe", "probe")])
        .await
        .unwrap();
    let error = p
        .deploy(&probe_app("two", "probe", ""), &[("probe", "probe")])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::RouteConflict));
    assert!(
        error.to_string().contains("\"one\"") && error.to_string().contains("\"two\""),
        "{error}"
    );
    assert_eq!(p.client.apps().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_requires_the_token() {
    let p = Platform::start().await;
    let admin = p.server.as_ref().unwrap().admin_url();
    for auth in [None, Some("Bearer wrong"), Some("Basic abc")] {
        let mut request = p.http.get(format!("{admin}/v1/apps"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let token = std::fs::read_to_string(p.dir.path().join("admin.token")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p.dir.path().join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let response = p
        .http
        .get(format!("{admin}/v1/apps"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_must_match_their_digest() {
    let p = Platform::start().await;
    let admin = p.server.as_ref().unwrap().admin_url();
    let wrong = "0".repeat(64);
    let response = p
        .http
        .put(format!("{admin}/v1/artifacts/{wrong}"))
        .bearer_auth(&p.server.as_ref().unwrap().token)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "digest_mismatch");
}
