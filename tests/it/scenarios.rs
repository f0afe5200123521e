//! Runs every folder in `tests/scenarios/` (see its README): deploy the folder's manifest with
//! test guests, send its requests, compare the answers.

use crate::support::{Platform, component, workspace_root};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    deploy_error: Option<String>,
    deploy_error_contains: Option<String>,
    #[serde(default)]
    request: Vec<Request>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default = "get")]
    method: String,
    path: String,
    host: Option<String>,
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    expect: Expect,
}

fn get() -> String {
    "GET".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: u16,
    body: Option<String>,
    #[serde(default)]
    body_contains: Vec<String>,
    error_code: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios() {
    let root = workspace_root().join("tests/scenarios");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        run(&name, &dir).await;
    }
}

async fn run(name: &str, dir: &std::path::Path) {
    let manifest = std::fs::read_to_string(dir.join("nimbus.toml")).unwrap();
    let scenario: Scenario =
        toml::from_str(&std::fs::read_to_string(dir.join("scenario.toml")).unwrap())
            .unwrap_or_else(|e| panic!("{name}/scenario.toml: {e}"));
    let p = Platform::start().await;

    // Upload each referenced guest; the manifest's component names pick them.
    let raw: toml::Table = toml::from_str(&manifest).unwrap_or_default();
    let mut artifacts = BTreeMap::new();
    if let Some(functions) = raw.get("function").and_then(|f| f.as_table()) {
        for (function, table) in functions {
            let file = table["component"].as_str().unwrap();
            let guest = file.trim_end_matches(".wasm");
            let digest = p
                .client
                .upload_artifact(std::fs::read(component(guest)).unwrap())
                .await
                .unwrap();
            artifacts.insert(function.clone(), digest);
        }
    }
    let deployed = p.deploy_artifacts(&manifest, artifacts).await;
    match (&scenario.deploy_error, deployed) {
        (Some(code), Err(error)) => {
            assert_eq!(
                error.code().map(|c| c.as_str().to_owned()).as_deref(),
                Some(code.as_str()),
                "{name}: {error}"
            );
            if let Some(text) = &scenario.deploy_error_contains {
                assert!(error.to_string().contains(text.as_str()), "{name}: {error}");
            }
            return;
        }
        (Some(code), Ok(_)) => panic!("{name}: deploy succeeded, expected {code}"),
        (None, Err(error)) => panic!("{name}: deploy failed: {error}"),
        (None, Ok(_)) => {}
    }

    for (index, request) in scenario.request.iter().enumerate() {
        let label = format!(
            "{name} request {index} ({} {})",
            request.method, request.path
        );
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).unwrap();
        let mut builder = p.http.request(method, p.url(&request.path));
        if let Some(host) = &request.host {
            builder = builder.header("host", host);
        }
        for (key, value) in &request.headers {
            builder = builder.header(key, value);
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        let expect = &request.expect;
        assert_eq!(status, expect.status, "{label}: {body}");
        if let Some(exact) = &expect.body {
            assert_eq!(&body, exact, "{label}");
        }
        for part in &expect.body_contains {
            assert!(
                body.contains(part.as_str()),
                "{label}: {part:?} not in {body:?}"
            );
        }
        if let Some(code) = &expect.error_code {
            let json: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|_| panic!("{label}: not JSON: {body}"));
            assert_eq!(
                json["error"]["code"].as_str(),
                Some(code.as_str()),
                "{label}"
            );
        }
        for (key, value) in &expect.headers {
            assert_eq!(
                headers.get(key).and_then(|v| v.to_str().ok()),
                Some(value.as_str()),
                "{label}: header {key}"
            );
        }
    }
}
