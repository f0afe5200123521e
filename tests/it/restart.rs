//! Everything survives a restart and a kill -9, and a restart never recompiles.

use crate::support::{Platform, component};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const HELLO: &str = include_str!("../../examples/hello/nimbus.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_serves_from_the_compiled_cache() {
    let p = Platform::start().await;
    p.deploy(HELLO, &[("hello", "hello")]).await.unwrap();
    assert_eq!(p.client.status().await.unwrap().compiled, 1);
    let dir = p.stop().await;

    let p = Platform::start_in(dir, |_| {}).await;
    let status = p.client.status().await.unwrap();
    assert_eq!(
        (status.compiled, status.cache_hits),
        (0, 1),
        "a restart must not recompile"
    );
    assert_eq!(
        p.get("/hello").await,
        (200, "Hello from nimbus!\n".to_owned())
    );
}

pub(crate) struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn spawn_server(dir: &std::path::Path) -> Server {
    let _ = std::fs::remove_file(dir.join("admin.url"));
    let child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--aws-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server(child)
}

pub(crate) async fn connect(dir: &std::path::Path) -> (nimbus_api::Client, String) {
    for _ in 0..200 {
        if let (Ok(admin), Ok(gateway), Ok(token)) = (
            std::fs::read_to_string(dir.join("admin.url")),
            std::fs::read_to_string(dir.join("gateway.url")),
            std::fs::read_to_string(dir.join("admin.token")),
        ) {
            let client = nimbus_api::Client::new(admin.trim(), token.trim());
            if client.status().await.is_ok() {
                return (client, gateway.trim().to_owned());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not come up");
}

/// Deploy `manifest` (whose one function `f` is the probe component) to a spawned server.
pub(crate) async fn deploy_probe(client: &nimbus_api::Client, manifest: String) {
    let digest = client
        .upload_artifact(std::fs::read(crate::support::component("probe")).unwrap())
        .await
        .unwrap();
    client
        .deploy(&nimbus_api::DeployRequest {
            manifest,
            manifest_path: "nimbus.toml".into(),
            artifacts: [("f".to_owned(), digest)].into(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_and_does_not_recompile() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    {
        let mut server = spawn_server(dir.path());
        let (client, _) = connect(dir.path()).await;
        let digest = client
            .upload_artifact(std::fs::read(component("hello")).unwrap())
            .await
            .unwrap();
        let request = nimbus_api::DeployRequest {
            manifest: HELLO.to_owned(),
            manifest_path: "nimbus.toml".into(),
            artifacts: [("hello".to_owned(), digest.clone())].into(),
        };
        client.deploy(&request).await.unwrap();
        let v2 = HELLO.replace("/hello\"", "/hi\"");
        client
            .deploy(&nimbus_api::DeployRequest {
                manifest: v2,
                ..request
            })
            .await
            .unwrap();
        // SIGKILL: no chance to flush or close anything.
        server.0.kill().unwrap();
        server.0.wait().unwrap();
    }
    let _server = spawn_server(dir.path());
    let (client, gateway) = connect(dir.path()).await;
    let status = client.status().await.unwrap();
    assert_eq!((status.compiled, status.cache_hits), (0, 1));
    let apps = client.apps().await.unwrap();
    assert_eq!(apps[0].active_version, Some(2));
    let response = http.get(format!("{gateway}/hi")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "Hello from nimbus!\n");
    assert_eq!(
        client.rollback("hello").await.unwrap().version,
        1,
        "history survived too"
    );
    assert_eq!(
        http.get(format!("{gateway}/hello"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_in_flight_requests_finish() {
    let mut p = Platform::start().await;
    p.deploy(
        &crate::support::probe_app("app", "probe", ""),
        &[("probe", "probe")],
    )
    .await
    .unwrap();
    let in_flight = tokio::spawn(p.http.get(p.url("/probe/sleep?ms=800")).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    p.server.take().unwrap().shutdown().await;
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "slept 800");
    assert!(
        reqwest::get(p.url("/probe/counter")).await.is_err(),
        "no new connections after shutdown"
    );
}
