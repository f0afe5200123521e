//! Lambda-compatible process functions: unmodified handlers (Python, Node, Rust's
//! `lambda_runtime`, AWS's own Python interface client) behind routes, with payload 2.0
//! events, limits, crashes, sandboxing, logs and scaling to zero.

use crate::support::{
    Platform, data_dir, error_code, eventually, lambda_fixture, lambda_rust_bootstrap,
};
use nimbus_api::InvokeRequest;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn python_app(functions: &[(&str, &str, &str)]) -> String {
    let mut manifest = String::from("name = \"lam\"\n");
    for (name, handler, extra) in functions {
        manifest.push_str(&format!(
            "\n[function.{name}]\nruntime = \"python3\"\nhandler = \"{handler}\"\ncode = \"python\"\n{extra}\n\n[[route]]\npath = \"/{name}/{{*rest}}\"\nfunction = \"{name}\"\n"
        ));
    }
    manifest
}

async fn deploy_python(p: &Platform, functions: &[(&str, &str, &str)]) {
    let dir = lambda_fixture("python");
    let code: Vec<(&str, &Path)> = functions
        .iter()
        .map(|(n, _, _)| (*n, dir.as_path()))
        .collect();
    p.deploy_code(&python_app(functions), &code).await.unwrap();
}

async fn get_json(p: &Platform, path: &str) -> Value {
    p.http
        .get(p.url(path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// What `nimbus invoke` sends: a POST whose body is the event.
fn event_request() -> InvokeRequest {
    InvokeRequest {
        method: "POST".into(),
        path: "/".into(),
        headers: Default::default(),
    }
}

#[tokio::test]
async fn python_handler_gets_a_v2_event_and_its_result_is_mapped() {
    let p = Platform::start().await;
    let manifest = "name = \"lam\"\n\n[function.py]\nruntime = \"python3\"\nhandler = \"app.handler\"\ncode = \"python\"\ntimeout = \"7s\"\n\n[[route]]\npath = \"/items/{id}/{*rest}\"\nfunction = \"py\"\n";
    p.deploy_code(manifest, &[("py", &lambda_fixture("python"))])
        .await
        .unwrap();

    let response = p
        .http
        .post(p.url("/items/42/a/b?x=1&x=2&q=hello%20world"))
        .header("cookie", "c1=v1; c2=v2")
        .header("content-type", "application/json")
        .body(r#"{"order": 7}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if status != 201 {
        panic!("{status}: {}", response.text().await.unwrap());
    }
    let cookies: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies, ["session=abc; Path=/", "theme=dark"]);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let facts: Value = response.json().await.unwrap();
    assert_eq!(facts["routeKey"], "POST /items/{id}/{*rest}");
    assert_eq!(facts["rawPath"], "/items/42/a/b");
    assert_eq!(facts["rawQueryString"], "x=1&x=2&q=hello%20world");
    assert_eq!(facts["query"]["x"], "1,2");
    assert_eq!(facts["query"]["q"], "hello world");
    assert_eq!(facts["params"]["id"], "42");
    assert_eq!(facts["params"]["rest"], "a/b");
    assert_eq!(facts["cookies"], serde_json::json!(["c1=v1", "c2=v2"]));
    assert_eq!(facts["headers"]["content-type"], "application/json");
    assert!(facts["headers"].get("cookie").is_none());
    assert_eq!(facts["method"], "POST");
    assert_eq!(facts["sourceIp"], "127.0.0.1");
    assert_eq!(facts["body"], r#"{"order": 7}"#);
    assert_eq!(facts["isBase64Encoded"], false);
    assert_eq!(facts["aws_request_id"], request_id.as_str());
    assert_eq!(facts["contextRequestId"], request_id.as_str());
    assert_eq!(facts["function_name"], "py");
    assert_eq!(facts["function_version"], "1");
    assert_eq!(facts["memory_limit_in_mb"], "128");
    assert_eq!(facts["log_group_name"], "/aws/lambda/lam/py");
    assert!(facts["log_stream_name"].as_str().unwrap().contains("[1]"));
    assert!(
        facts["invoked_function_arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:lambda:"),
        "{facts}"
    );
    let remaining = facts["remaining_ms"].as_u64().unwrap();
    assert!(remaining > 0 && remaining <= 7000, "{remaining}");
    assert_eq!(facts["invocations"], 1);

    // Warm reuse: the same process serves the next request and its globals survive.
    let second = get_json(&p, "/items/1/x").await;
    assert_eq!(second["invocations"], 2);
    assert_eq!(second["pid"], facts["pid"]);

    // Logs: Lambda's framing, the handler's output, Init Duration only on the cold start.
    let records = p.records("lam", "py", 2).await;
    let first = records
        .iter()
        .find(|r| *r.request_id == request_id)
        .expect("record of the first request");
    assert!(first.cold);
    assert!(
        first
            .logs
            .contains(&format!("START RequestId: {request_id} Version: 1"))
    );
    assert!(
        first.logs.contains("handled /items/42/a/b"),
        "{}",
        first.logs
    );
    assert!(first.logs.contains(&format!("END RequestId: {request_id}")));
    let report = first
        .logs
        .lines()
        .find(|l| l.starts_with("REPORT"))
        .expect("REPORT line");
    for field in [
        "Duration: ",
        "Billed Duration: ",
        "Memory Size: 128 MB",
        "Max Memory Used: ",
        "Init Duration: ",
    ] {
        assert!(report.contains(field), "{report}");
    }
    let warm = records
        .iter()
        .find(|r| *r.request_id != request_id)
        .unwrap();
    assert!(!warm.cold);
    assert!(!warm.logs.contains("Init Duration"), "{}", warm.logs);
}

#[tokio::test]
async fn node_async_and_callback_handlers() {
    let p = Platform::start().await;
    let manifest = r#"
name = "js"

[function.asyncfn]
runtime = "nodejs"
handler = "index.handler"
code = "node"

[function.rejects]
runtime = "nodejs"
handler = "index.rejects"
code = "node"

[function.cb]
runtime = "nodejs"
handler = "callback.handler"
code = "node"

[function.cbfail]
runtime = "nodejs"
handler = "callback.fails"
code = "node"

[[route]]
path = "/async/{name}"
function = "asyncfn"

[[route]]
path = "/rejects"
function = "rejects"

[[route]]
path = "/cb"
function = "cb"

[[route]]
path = "/cbfail"
function = "cbfail"
"#;
    let dir = lambda_fixture("node");
    p.deploy_code(
        manifest,
        &[
            ("asyncfn", &dir),
            ("rejects", &dir),
            ("cb", &dir),
            ("cbfail", &dir),
        ],
    )
    .await
    .unwrap();

    let response = p.http.get(p.url("/async/ada")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["kind"], "async");
    assert_eq!(body["awsRequestId"], request_id.as_str());
    assert_eq!(body["functionName"], "asyncfn");
    assert_eq!(body["memoryLimitInMB"], "128");
    assert_eq!(body["name"], "ada");
    assert!(body["remaining"].as_u64().unwrap() > 0);

    let (status, text) = {
        let r = p.http.get(p.url("/cb")).send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        (r.status().as_u16(), (r.text().await.unwrap(), id))
    };
    assert_eq!(status, 202);
    assert_eq!(text.0, format!("callback saw /cb ({})", text.1));

    let (status, code, message) =
        error_code(p.http.get(p.url("/rejects")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (502, "function_error"));
    assert!(
        message.contains("TypeError: cannot read the cart"),
        "{message}"
    );
    let (status, code, message) =
        error_code(p.http.get(p.url("/cbfail")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (502, "function_error"));
    assert!(message.contains("callback failure"), "{message}");

    // Console output carries the request id, as in Lambda's Node runtime.
    let records = p.records("js", "asyncfn", 1).await;
    assert!(
        records[0]
            .logs
            .lines()
            .any(|l| l.contains(&request_id) && l.contains("\tINFO\thandling /async/ada")),
        "{}",
        records[0].logs
    );
    // A handler error leaves the runtime healthy: the instance is reused.
    let (status, _, _) = error_code(p.http.get(p.url("/rejects")).send().await.unwrap()).await;
    assert_eq!(status, 502);
    let records = p.records("js", "rejects", 2).await;
    assert_eq!(records.iter().filter(|r| r.cold).count(), 1);
}

#[tokio::test]
async fn rust_lambda_runtime_crate_runs_as_provided() {
    let bootstrap = lambda_rust_bootstrap();
    let code = tempfile::tempdir().unwrap();
    std::fs::copy(&bootstrap, code.path().join("bootstrap")).unwrap();
    let p = Platform::start().await;
    let manifest = "name = \"rs\"\n\n[function.greet]\nruntime = \"provided.al2023\"\ncode = \"dist\"\n\n[[route]]\npath = \"/greet/{name}\"\nfunction = \"greet\"\n";
    p.deploy_code(manifest, &[("greet", code.path())])
        .await
        .unwrap();

    let response = p.http.get(p.url("/greet/ada")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        response.text().await.unwrap(),
        format!("hello, ada, from greet ({request_id})")
    );

    // `invoke` sends a raw event, as Lambda's Invoke API does.
    let invoked = p
        .client
        .invoke("rs", "greet", &event_request(), br#"{"order": 7}"#.to_vec())
        .await
        .unwrap();
    assert_eq!(invoked.status, 200);
    let body: Value = serde_json::from_str(invoked.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["echo"], serde_json::json!({"order": 7}));
    assert_eq!(body["request_id"], invoked.request_id.as_str());
}

#[tokio::test]
async fn aws_python_runtime_interface_client_runs_unmodified() {
    // AWS's own runtime interface client (PyPI `awslambdaric`) as a `provided` bootstrap.
    let root = crate::support::workspace_root();
    let deps = root.join("target/pydeps");
    if !deps.join("awslambdaric").is_dir() {
        let status = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&deps)
            .arg("awslambdaric==4.2.2")
            .status()
            .expect("run pip");
        assert!(status.success(), "pip install awslambdaric failed");
    }
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = String::from_utf8(python.stdout).unwrap().trim().to_owned();
    let code = tempfile::tempdir().unwrap();
    std::fs::copy(lambda_fixture("python/app.py"), code.path().join("app.py")).unwrap();
    let bootstrap = code.path().join("bootstrap");
    std::fs::write(
        &bootstrap,
        format!(
            "#!/bin/sh\nexport PYTHONPATH={}\nexec {python} -m awslambdaric app.handler\n",
            deps.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755)).unwrap();

    let p = Platform::start().await;
    let manifest = "name = \"aws\"\n\n[function.ric]\nruntime = \"provided\"\ncode = \"x\"\n\n[[route]]\npath = \"/ric/{name}\"\nfunction = \"ric\"\n";
    p.deploy_code(manifest, &[("ric", code.path())])
        .await
        .unwrap();
    let response = p.http.get(p.url("/ric/aws?k=v")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let facts: Value = response.json().await.unwrap();
    assert_eq!(facts["aws_request_id"], request_id.as_str());
    assert_eq!(facts["params"]["name"], "aws");
    assert_eq!(facts["function_name"], "ric");
    assert!(facts["remaining_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn binary_bodies_round_trip_and_raw_events() {
    let p = Platform::start().await;
    deploy_python(
        &p,
        &[
            ("bin", "app.binary", ""),
            ("raw", "app.raw", ""),
            ("bare", "app.bare", ""),
        ],
    )
    .await;
    let bytes: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
    let response = p
        .http
        .post(p.url("/bin/x"))
        .header("content-type", "application/octet-stream")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/octet-stream"
    );
    let mut reversed = bytes.clone();
    reversed.reverse();
    assert_eq!(response.bytes().await.unwrap().to_vec(), reversed);

    let response = p.http.get(p.url("/bare/x")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.text().await.unwrap(), "just a string");

    let invoked = p
        .client
        .invoke("lam", "raw", &event_request(), br#"{"k": [1, 2]}"#.to_vec())
        .await
        .unwrap();
    let body: Value = serde_json::from_str(invoked.body.as_deref().unwrap()).unwrap();
    assert_eq!(body["got"], serde_json::json!({"k": [1, 2]}));
    assert_eq!(body["request_id"], invoked.request_id.as_str());

    let refused = p
        .client
        .invoke("lam", "raw", &event_request(), b"not json".to_vec())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(nimbus_core::ErrorCode::BadRequest),
        "{refused}"
    );
    assert!(refused.to_string().contains("must be JSON"), "{refused}");
}

#[tokio::test]
async fn timeouts_kill_and_crashes_get_a_new_instance() {
    let p = Platform::start().await;
    deploy_python(
        &p,
        &[
            ("slow", "app.slow", "timeout = \"1s\""),
            ("crash", "app.crash", ""),
        ],
    )
    .await;
    let (status, code, message) =
        error_code(p.http.get(p.url("/slow/x?s=30")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (504, "function_timeout"));
    assert!(message.contains("timeout"), "{message}");
    // Killed, not just abandoned: its process is gone (the crash function has none yet).
    let killed = eventually(Duration::from_secs(5), async || {
        function_processes(p.dir.path()).is_empty()
    })
    .await;
    assert!(killed, "{:?}", function_processes(p.dir.path()));
    // The killed instance is not reused: the next request is a cold start that answers.
    let response = p.http.get(p.url("/slow/x?s=0")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let records = p.records("lam", "slow", 2).await;
    assert!(records.iter().all(|r| r.cold), "{records:?}");
    assert_eq!(records[0].outcome, nimbus_core::Outcome::Timeout);

    let (status, code, message) =
        error_code(p.http.get(p.url("/crash/x")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (502, "function_crashed"));
    assert!(message.contains("exit status 3"), "{message}");
    let (status, code, _) = error_code(p.http.get(p.url("/crash/x")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (502, "function_crashed"));
    let records = p.records("lam", "crash", 2).await;
    assert!(
        records.iter().all(|r| r.cold),
        "a crashed instance was reused"
    );
    assert!(
        records[0].logs.contains("about to crash"),
        "{}",
        records[0].logs
    );
}

#[tokio::test]
async fn init_errors_and_missing_handlers_are_named() {
    let p = Platform::start().await;
    let manifest = "name = \"broken\"\n\n[function.f]\nruntime = \"python3\"\nhandler = \"app.handler\"\ncode = \"x\"\n\n[[route]]\npath = \"/f\"\nfunction = \"f\"\n";
    p.deploy_code(manifest, &[("f", &lambda_fixture("python-broken"))])
        .await
        .unwrap();
    let (status, code, message) = error_code(p.http.get(p.url("/f")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (502, "function_init_failed"));
    assert!(message.contains("RuntimeError"), "{message}");
    assert!(message.contains("DATABASE_URL is not set"), "{message}");

    // A handler module that is not in the code directory is refused at deploy.
    let refused = p
        .deploy_code(
            &manifest.replace("app.handler", "missing.handler"),
            &[("f", &lambda_fixture("python"))],
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(nimbus_core::ErrorCode::InvalidCode));
    assert!(refused.to_string().contains("missing.py"), "{refused}");
    // So is a `provided` function without a bootstrap.
    let refused = p
        .deploy_code(
            &manifest.replace(
                "runtime = \"python3\"\nhandler = \"app.handler\"",
                "runtime = \"provided\"",
            ),
            &[("f", &lambda_fixture("python"))],
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(nimbus_core::ErrorCode::InvalidCode));
    assert!(refused.to_string().contains("bootstrap"), "{refused}");
}

#[tokio::test]
async fn memory_limit_is_enforced() {
    let p = Platform::start().await;
    let status = p.client.status().await.unwrap();
    assert!(
        status.process_sandbox.cgroup.is_some(),
        "this host has no writable cgroup hierarchy: {status:?}"
    );
    deploy_python(&p, &[("hog", "app.hog", "memory = \"64MiB\"")]).await;
    let (status, code, message) =
        error_code(p.http.get(p.url("/hog/x")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (500, "function_memory_exceeded"));
    assert!(message.contains("64 MiB"), "{message}");
}

#[tokio::test]
async fn idle_instances_exit_and_the_next_request_starts_cold() {
    let dir = data_dir();
    let p = Platform::start_in(dir, |c| c.idle_timeout = Duration::from_millis(300)).await;
    deploy_python(&p, &[("py", "app.handler", "")]).await;
    get_json(&p, "/py/x").await;
    assert_eq!(function_processes(p.dir.path()).len(), 1);
    // Scaled to zero: no idle instance, and no process left on the host.
    let zero = eventually(Duration::from_secs(10), async || {
        let functions = p.client.functions().await.unwrap();
        functions[0].idle_instances == 0 && function_processes(p.dir.path()).is_empty()
    })
    .await;
    assert!(
        zero,
        "the idle instance was not reaped: {:?}",
        function_processes(p.dir.path())
    );
    let second = get_json(&p, "/py/x").await;
    assert_eq!(
        second["invocations"], 1,
        "a fresh process serves after scale to zero"
    );
    let records = p.records("lam", "py", 2).await;
    assert!(records.iter().all(|r| r.cold));
}

#[tokio::test]
async fn min_instances_are_kept_warm() {
    let dir = data_dir();
    let p = Platform::start_in(dir, |c| c.idle_timeout = Duration::from_millis(200)).await;
    deploy_python(&p, &[("py", "app.handler", "min_instances = 1")]).await;
    let warm = eventually(Duration::from_secs(10), async || {
        p.client.functions().await.unwrap()[0].idle_instances == 1
    })
    .await;
    assert!(warm, "no instance was prewarmed");
    // Past the idle timeout the minimum stays.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(p.client.functions().await.unwrap()[0].idle_instances, 1);
    let response = p.http.get(p.url("/py/x")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let records = p.records("lam", "py", 1).await;
    assert!(
        !records[0].cold,
        "the first request should find the prewarmed instance"
    );
    assert!(
        records[0].logs.contains("Init Duration"),
        "init is reported once, with the first invocation"
    );
}

#[tokio::test]
async fn concurrency_limit_answers_429() {
    let p = Platform::start().await;
    deploy_python(
        &p,
        &[("slow", "app.slow", "max_concurrency = 1\ntimeout = \"3s\"")],
    )
    .await;
    let requests = (0..8).map(|_| p.http.get(p.url("/slow/x?s=1")).send());
    let responses = futures::future::join_all(requests).await;
    let mut ok = 0;
    let mut refused = 0;
    for response in responses {
        let response = response.unwrap();
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                assert!(response.headers().contains_key("retry-after"));
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1, "{ok} ok");
    assert!(
        refused >= 3,
        "{refused} refused: 1 running + 4 waiting is the most admitted"
    );
}

#[tokio::test]
async fn process_sees_only_its_own_environment_and_sandbox() {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    let p = Platform::start().await;
    let data = p.dir.path().canonicalize().unwrap();
    let sandbox_env = format!(
        "env = {{ PROBE_PORT = \"{port}\", SECRET_FILE = \"{}\", STATE_DIR = \"{}\" }}",
        data.join("admin.token").display(),
        data.join("artifacts").display()
    );
    deploy_python(
        &p,
        &[
            (
                "env",
                "app.env",
                "env = { GREETING = \"hi\", AWS_LAMBDA_FUNCTION_NAME = \"spoof\" }",
            ),
            ("sandbox", "app.sandbox", &sandbox_env),
            (
                "hostnet",
                "app.sandbox",
                &format!("env = {{ PROBE_PORT = \"{port}\" }}\nnetwork = \"host\""),
            ),
        ],
    )
    .await;
    let env = get_json(&p, "/env/x").await;
    let env = env.as_object().unwrap();
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(
        env["AWS_LAMBDA_FUNCTION_NAME"], "env",
        "reserved variables cannot be overridden"
    );
    for key in [
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "_HANDLER",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "TZ",
    ] {
        assert!(env.contains_key(key), "{key} missing: {env:?}");
    }
    // Nothing of the host's (or the test runner's) environment leaks in.
    let leaked: Vec<&String> = env
        .keys()
        .filter(|k| k.starts_with("CARGO") || k.starts_with("RUST"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    assert!(
        std::env::vars().any(|(k, _)| k.starts_with("CARGO")),
        "the test runs under cargo"
    );

    let status = p.client.status().await.unwrap().process_sandbox;
    let seen = get_json(&p, "/sandbox/x").await;
    assert_eq!(seen["no_new_privs"], "1");
    assert_eq!(seen["pgid"], seen["pid"], "own process group");
    let data_under_tmp = p.dir.path().canonicalize().unwrap().starts_with("/tmp");
    assert_eq!(
        status.private_tmp,
        status.mount_namespace && !data_under_tmp,
        "{status:?}"
    );
    if status.mount_namespace {
        // The server's token and store are covered, and the cover cannot be lifted.
        assert_eq!(
            seen["SECRET_FILE"], "",
            "the admin token is visible: {seen}"
        );
        assert_eq!(seen["STATE_DIR"], serde_json::json!([]), "{seen}");
        assert!(
            seen["unmount_state"].as_str().unwrap().starts_with("error"),
            "{seen}"
        );
    }
    if status.private_tmp {
        assert_eq!(
            seen["tmp"],
            serde_json::json!(["marker"]),
            "private /tmp: {seen}"
        );
        // Everything but /tmp is read-only, as on Lambda.
        assert_eq!(
            seen["write_code_dir"], "error: Read-only file system",
            "{seen}"
        );
        assert_eq!(seen["tmpdir"], "/tmp", "{seen}");
    } else {
        // Otherwise the host's /tmp stays, and TMPDIR is the instance's own directory.
        assert_ne!(seen["tmpdir"], "/tmp", "{seen}");
        assert_eq!(
            seen["tmpdir_entries"],
            serde_json::json!(["marker"]),
            "{seen}"
        );
    }
    if status.pid_namespace {
        assert_eq!(seen["pid"], 1, "own PID namespace");
    }
    if status.network_namespace {
        assert!(
            seen["host_loopback"]
                .as_str()
                .unwrap()
                .starts_with("unreachable"),
            "{seen}"
        );
        // `network = "host"` opts out: the host's loopback is reachable.
        let host = get_json(&p, "/hostnet/x").await;
        assert_eq!(host["host_loopback"], "reachable", "{host}");
    }
    assert!(
        status.mount_namespace && status.pid_namespace && status.network_namespace,
        "this host permits namespaces; all three should be in effect: {status:?}"
    );
    drop(probe);
}

#[tokio::test]
async fn payload_and_process_limits() {
    let p = Platform::start().await;
    deploy_python(
        &p,
        &[
            ("big", "app.big", ""),
            ("raw", "app.raw", ""),
            ("forks", "app.forks", "memory = \"1GiB\""),
        ],
    )
    .await;
    let (status, code, message) =
        error_code(p.http.get(p.url("/big/x")).send().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (502, "function_response_too_large")
    );
    assert!(message.contains("6291456"), "{message}");
    // The runtime was told (413) and carries on: the same instance answers the next event.
    let (status, _, _) = error_code(p.http.get(p.url("/big/x")).send().await.unwrap()).await;
    assert_eq!(status, 502);
    let records = p.records("lam", "big", 2).await;
    assert_eq!(records.iter().filter(|r| r.cold).count(), 1);

    let event = vec![b'a'; 7 * 1024 * 1024];
    let (status, code, _) = error_code(
        p.http
            .post(p.url("/raw/x"))
            .header("content-type", "text/plain")
            .body(event)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));

    if p.client
        .status()
        .await
        .unwrap()
        .process_sandbox
        .cgroup
        .is_some()
    {
        let response = p.http.get(p.url("/forks/x")).send().await.unwrap();
        let status = response.status().as_u16();
        if status != 200 {
            panic!("{status}: {}", response.text().await.unwrap());
        }
        let started: u32 = response.text().await.unwrap().parse().unwrap();
        assert!(
            started < nimbus_runtime_process::PIDS_MAX,
            "{started} processes started; the pids limit is {}",
            nimbus_runtime_process::PIDS_MAX
        );
        assert!(started > 10, "forking works at all: {started}");
    }
}

#[tokio::test]
async fn runtimes_that_exit_are_replaced_not_reused() {
    let p = Platform::start().await;
    let manifest = r#"
name = "exits"

[function.late]
runtime = "nodejs"
handler = "index.throwsLater"
code = "node"

[function.idle]
runtime = "nodejs"
handler = "index.exitsWhenIdle"
code = "node"

[[route]]
path = "/late"
function = "late"

[[route]]
path = "/idle"
function = "idle"
"#;
    let dir = lambda_fixture("node");
    p.deploy_code(manifest, &[("late", &dir), ("idle", &dir)])
        .await
        .unwrap();

    // An uncaught exception outside the handler's promise: reported, and the runtime exits.
    for _ in 0..2 {
        let (status, code, message) =
            error_code(p.http.get(p.url("/late")).send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (502, "function_error"),
            "{message}"
        );
        assert!(message.contains("thrown outside the promise"), "{message}");
    }
    let records = p.records("exits", "late", 2).await;
    assert!(
        records.iter().all(|r| r.cold),
        "the exiting runtime was reused"
    );

    // A runtime that exits while idle is noticed before reuse: the next request starts a new one.
    let first = p.http.get(p.url("/idle?exit")).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let first = first.text().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = p.http.get(p.url("/idle")).send().await.unwrap();
    assert_eq!(second.status().as_u16(), 200);
    assert_ne!(
        second.text().await.unwrap(),
        first,
        "a new instance should answer"
    );
}

/// Processes running nimbus's Python client from `data_dir`.
fn function_processes(data_dir: &Path) -> Vec<String> {
    let data_dir = data_dir.canonicalize().unwrap();
    let needle = data_dir.join("process/runtime").display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_no_function_processes_and_restart_serves() {
    use crate::restart::{connect, spawn_server};
    let dir = data_dir();
    let http = reqwest::Client::new();
    let manifest = python_app(&[("py", "app.handler", "")]);
    {
        let mut server = spawn_server(dir.path());
        let (client, gateway) = connect(dir.path()).await;
        let bytes = nimbus_api::artifact::pack_dir(&lambda_fixture("python")).unwrap();
        let digest = client.upload_artifact(bytes).await.unwrap();
        client
            .deploy(&nimbus_api::DeployRequest {
                manifest: manifest.clone(),
                manifest_path: "nimbus.toml".into(),
                artifacts: [("py".to_owned(), digest)].into(),
            })
            .await
            .unwrap();
        let response = http.get(format!("{gateway}/py/x")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 201);
        assert_eq!(function_processes(dir.path()).len(), 1);

        server.0.kill().unwrap();
        server.0.wait().unwrap();
        // The runtime's connection to the Runtime API dies with the server, and so does it.
        let gone = eventually(Duration::from_secs(10), async || {
            function_processes(dir.path()).is_empty()
        })
        .await;
        assert!(gone, "orphans: {:?}", function_processes(dir.path()));
    }

    let _server = spawn_server(dir.path());
    let (client, gateway) = connect(dir.path()).await;
    let status = client.status().await.unwrap();
    assert_eq!(
        (status.compiled, status.cache_hits),
        (0, 1),
        "the unpacked code is reused after a restart"
    );
    let response = http.get(format!("{gateway}/py/x")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

/// What this host lets a process do, probed by the test itself (not asked of nimbus): the
/// sandbox must use every isolation the host permits, so nothing is silently skipped.
#[tokio::test]
async fn the_sandbox_uses_every_isolation_this_host_permits() {
    let permits = |args: &[&str]| {
        std::process::Command::new("unshare")
            .args(args)
            .arg("true")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mount = permits(&["--mount"]);
    let net = permits(&["--net"]);
    let pid = permits(&["--pid", "--fork"]);
    // A writable cgroup hierarchy: v2 at the root, or v1's memory and pids controllers.
    let writable = |dir: &str| {
        let probe = std::path::Path::new(dir).join(format!("nimbus-probe-{}", std::process::id()));
        let made = std::fs::create_dir(&probe).is_ok();
        if made {
            let _ = std::fs::remove_dir(&probe);
        }
        made
    };
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let cgroup = if cgroup_v2 {
        writable("/sys/fs/cgroup").then_some("v2")
    } else {
        (writable("/sys/fs/cgroup/memory") && writable("/sys/fs/cgroup/pids")).then_some("v1")
    };

    let p = Platform::start().await;
    let status = p.client.status().await.unwrap().process_sandbox;
    assert_eq!(
        (
            status.mount_namespace,
            status.network_namespace,
            status.pid_namespace
        ),
        (mount, net, pid),
        "namespaces in effect vs. what this host permits: {status:?}"
    );
    assert_eq!(
        status.cgroup.as_deref(),
        cgroup,
        "cgroup limits in effect vs. what this host permits: {status:?}"
    );
}
