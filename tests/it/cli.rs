//! The `nimbus` binary as users run it: the `up` dev loop and meaningful exit codes.

use crate::support::component;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn nimbus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nimbus"))
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_and_redeploys_when_sources_change() {
    let app = tempfile::tempdir().unwrap();
    // A "build" that copies a prebuilt component, so the test does not compile Rust.
    std::fs::copy(component("hello"), app.path().join("source.wasm")).unwrap();
    std::fs::write(
        app.path().join("nimbus.toml"),
        "name = \"dev\"\n[function.web]\ncomponent = \"out.wasm\"\nbuild = \"cp source.wasm out.wasm\"\n[[route]]\npath = \"/{*rest}\"\nfunction = \"web\"\n",
    )
    .unwrap();
    let mut child = nimbus()
        .args(["up", "--listen", "127.0.0.1:0"])
        .arg(app.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let _guard = Killed(child);
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut url = None;
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(60), lines.recv()).await {
        if let Some(rest) = line.strip_prefix("serving dev at ") {
            url = rest.split(';').next().map(str::to_owned);
            break;
        }
    }
    let url = url.expect("up prints the gateway URL");
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{url}/x"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Hello from nimbus!\n"
    );

    // Change the "source": up rebuilds and deploys version 2.
    std::fs::copy(component("probe"), app.path().join("source.wasm")).unwrap();
    let mut redeployed = false;
    for _ in 0..200 {
        let body = http
            .get(format!("{url}/counter"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if body == "1" {
            redeployed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        redeployed,
        "the changed component is served after the rebuild"
    );
    assert!(
        app.path().join(".nimbus/admin.token").exists(),
        "state lives under the app"
    );
}

#[test]
fn exit_codes_say_what_went_wrong() {
    let empty = tempfile::tempdir().unwrap();
    // No server published in this data directory: unreachable.
    let status = nimbus()
        .args(["apps", "--data-dir"])
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stderr).contains("nimbus serve"));

    // A directory without a manifest: a local problem, reported before any network call.
    let status = nimbus()
        .args(["deploy"])
        .arg(empty.path())
        .args(["--admin-url", "http://127.0.0.1:9", "--token", "x"])
        .output()
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stderr).contains("nimbus.toml"));

    // Bad usage.
    let status = nimbus().args(["invoke"]).output().unwrap();
    assert_eq!(status.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_examples_deploy_and_invoke_from_the_cli() {
    let p = crate::support::Platform::start().await;
    let server = p.server.as_ref().unwrap();
    let (admin, token) = (server.admin_url(), server.token.clone());
    let root = crate::support::workspace_root();
    for example in ["examples/lambda-python", "examples/lambda-node"] {
        let output = nimbus()
            .arg("deploy")
            .arg(root.join(example))
            .args(["--admin-url", &admin, "--token", &token])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("unpacked"));
    }
    let (status, body) = p.get("/py/ada").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""hello": "ada""#), "{body}");
    let (status, body) = p.get("/js/bob").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""hello":"bob""#), "{body}");

    // `invoke` sends a raw event and prints the handler's raw result.
    let output = nimbus()
        .args([
            "invoke",
            "lambda-python/hello",
            "-d",
            r#"{"pathParameters": {"name": "raw"}}"#,
        ])
        .args(["--admin-url", &admin, "--token", &token])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["statusCode"], 200);
    assert!(
        result["body"]
            .as_str()
            .unwrap()
            .contains(r#""hello": "raw""#)
    );
}
