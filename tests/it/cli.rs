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

    // Change the "source": up rebuilds and deploys version 2 (compiling it takes a while on a
    // loaded machine: wait up to 90 s).
    std::fs::copy(component("probe"), app.path().join("source.wasm")).unwrap();
    let mut redeployed = false;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline {
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
    for example in [
        "examples/lambda-python",
        "examples/lambda-node",
        "examples/events",
    ] {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_invocation_and_publish_commands() {
    let p = crate::support::Platform::start().await;
    let server = p.server.as_ref().unwrap();
    let (admin, token) = (server.admin_url(), server.token.clone());
    let manifest = "name = \"q\"\n\n[function.f]\ncomponent = \"probe.wasm\"\nenv = { FAIL_ON = \"fail\" }\ndelivery = { retries = 0 }\n\n[queue.inbox]\n";
    p.deploy(manifest, &[("f", "probe")]).await.unwrap();
    let run = |args: &[&str]| {
        let output = nimbus()
            .args(args)
            .args(["--admin-url", &admin, "--token", &token])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?}: {stderr}");
        stdout
    };

    let sent = run(&["queue", "send", "q/inbox", "hello queue"]);
    assert!(sent.starts_with("sent "), "{sent}");
    let listed = run(&["queue", "ls"]);
    let inbox = listed.lines().find(|l| l.contains("inbox")).unwrap();
    assert_eq!(
        inbox.split_whitespace().collect::<Vec<_>>()[..3],
        ["q", "inbox", "1"],
        "{listed}"
    );
    assert!(listed.contains("@f"), "{listed}");
    let peeked = run(&["queue", "peek", "q/inbox"]);
    assert!(peeked.contains("hello queue"), "{peeked}");

    // An async invoke that fails lands in the function's dead-letter queue; redrive moves it back.
    let id = run(&["invoke", "q/f", "--async", "-d", "{\"please\": \"fail\"}"]);
    let id = id.trim().to_owned();
    let failed = crate::support::eventually(Duration::from_secs(10), async || {
        run(&["invocation", &id]).contains("failed after 1 attempt")
    })
    .await;
    assert!(failed, "{}", run(&["invocation", &id]));
    let dead = run(&["queue", "peek", "q/@f.dlq"]);
    assert!(dead.contains("RetriesExhausted"), "{dead}");
    let moved = run(&["queue", "dlq", "redrive", "q/@f"]);
    assert!(moved.contains("moved 1"), "{moved}");

    let published = run(&["publish", "q", "--type", "nothing.listens", "--data", "{}"]);
    assert!(published.contains("matched 0"), "{published}");

    // `usage` adds up what the function's invocations used: the failed delivery and its
    // redrive.
    let used = crate::support::eventually(Duration::from_secs(10), async || {
        run(&["usage", "q"])
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["q", "f", "2"]))
    })
    .await;
    assert!(used, "{}", run(&["usage", "q"]));
    let by_day: serde_json::Value =
        serde_json::from_str(&run(&["usage", "q", "--by", "day", "--json"])).unwrap();
    let f = &by_day[0];
    assert_eq!(
        (f["app"].as_str(), f["function"].as_str()),
        (Some("q"), Some("f"))
    );
    // The guest answered both times (an error status is the guest's answer, not a failed
    // invocation, as in Lambda).
    assert_eq!(f["invocations"].as_u64(), Some(2), "{by_day}");
    assert_eq!(f["errors"].as_u64(), Some(0), "{by_day}");
    assert_eq!(
        f["start_ms"].as_u64().unwrap() % 86_400_000,
        0,
        "days start at midnight UTC"
    );
    assert!(f["gb_seconds"].as_f64() > Some(0.0), "{by_day}");

    // Usage errors exit 2; unknown queues are refused by the server (exit 1).
    let usage = nimbus()
        .args(["queue", "peek", "no-slash"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    let unknown = nimbus()
        .args(["queue", "peek", "q/nope"])
        .args(["--admin-url", &admin, "--token", &token])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("queue_not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_json_lines_with_each_invocation_and_its_output() {
    let data = crate::support::data_dir();
    let mut child = nimbus()
        .args(["serve", "--log-format", "json"])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--aws-listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env_remove("NIMBUS_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let _guard = Killed(child);
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let read = |name: &str| std::fs::read_to_string(data.path().join(name)).ok();
    let started = crate::support::eventually(Duration::from_secs(30), async || {
        read("admin.url").is_some() && read("gateway.url").is_some()
    })
    .await;
    assert!(started, "the server publishes its URLs");
    let client = nimbus_api::Client::new(
        read("admin.url").unwrap().trim().to_owned(),
        read("admin.token").unwrap().trim().to_owned(),
    );
    let digest = client
        .upload_artifact(std::fs::read(component("probe")).unwrap())
        .await
        .unwrap();
    client
        .deploy(&nimbus_api::DeployRequest {
            manifest: crate::support::probe_app("app", "probe", ""),
            manifest_path: "nimbus.toml".into(),
            artifacts: [("probe".to_owned(), digest)].into(),
        })
        .await
        .unwrap();
    let gateway = read("gateway.url").unwrap().trim().to_owned();
    let counted = reqwest::get(format!("{gateway}/probe/counter"))
        .await
        .unwrap();
    assert_eq!(counted.status(), 200);
    let response = reqwest::get(format!("{gateway}/probe/log")).await.unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    // Every line is a JSON object; the function's output and the invocation's report carry
    // the request id, app, function and version.
    let (mut output, mut report) = (None, None);
    while output.is_none() || report.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.recv())
            .await
            .expect("the logs arrive")
            .expect("the server is running");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if event["request_id"] != id.as_str() {
            continue;
        }
        match event["target"].as_str() {
            Some("function") if event["message"] == "to stdout from the probe" => {
                output = Some(event)
            }
            Some("invocation") => report = Some(event),
            _ => {}
        }
    }
    let (output, report) = (output.unwrap(), report.unwrap());
    for event in [&output, &report] {
        assert_eq!(event["app"], "app");
        assert_eq!(event["function"], "probe");
        assert_eq!(event["version"], 1);
        assert_eq!(event["level"], "INFO");
        assert!(event["timestamp"].is_string());
    }
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["status"], 200);
    assert_eq!(report["trigger"], "http");
    assert_eq!(
        report["cold"], false,
        "the counter call started the instance"
    );
    assert!(report["billed_ms"].as_u64() >= Some(1));

    // `nimbus logs` narrows what it shows: by text, by time, to failures.
    let admin = read("admin.url").unwrap().trim().to_owned();
    let token = read("admin.token").unwrap().trim().to_owned();
    let logs = |args: &[&str]| {
        let output = nimbus()
            .args(["logs", "app/probe", "--json"])
            .args(args)
            .args(["--admin-url", &admin, "--token", &token])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let both = crate::support::eventually(Duration::from_secs(10), async || {
        logs(&["--since", "1h"]).len() == 2
    })
    .await;
    assert!(both, "{:?}", logs(&["--since", "1h"]));
    let found = logs(&["--grep", "to stdout from the probe"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["request_id"], id.as_str());
    assert!(logs(&["--failed"]).is_empty());
}
