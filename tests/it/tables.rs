//! Tables that speak DynamoDB, through boto3 (client and resource APIs, pinned from PyPI)
//! against a real server's AWS-compatible endpoint.

use crate::objects::{BOTO3, aws_url, python_package};
use crate::support::{Platform, probe_app, workspace_root};
use nimbus_api::CreateKeyRequest;

async fn app_key(p: &Platform, app: &str) -> (String, String) {
    p.deploy(&probe_app(app, app, ""), &[(app, "probe")])
        .await
        .unwrap();
    let key = p
        .client
        .create_key(&CreateKeyRequest {
            app: Some(app.to_owned()),
            description: Some("tables test".into()),
        })
        .await
        .unwrap();
    (key.id, key.secret.expect("the secret is shown at creation"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_speaks_dynamodb_to_the_endpoint() {
    let boto3 = python_package("boto3", BOTO3);
    // Sweeps often, so expired items go within the case's patience.
    let p = Platform::start_in(crate::support::data_dir(), |config| {
        config.table_sweep_interval = std::time::Duration::from_millis(200);
    })
    .await;
    let shop = app_key(&p, "shop").await;
    let other = app_key(&p, "other").await;
    let script = workspace_root().join("tests/fixtures/dynamodb/boto3_suite.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .env("PYTHONPATH", &boto3)
        .env("EP", aws_url(&p))
        .env("AK", &shop.0)
        .env("SK", &shop.1)
        .env("BAD_SK", format!("{}x", shop.1))
        .env("OTHER_AK", &other.0)
        .env("OTHER_SK", &other.1)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("all cases passed"),
        "boto3 DynamoDB suite failed\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    p.stop().await;
}

/// An unmodified Lambda handler uses `boto3.resource("dynamodb")` with no endpoint or keys in
/// its code: the tables its manifest declares exist, and it reaches only those it is granted,
/// read-only where the grant says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_handlers_use_declared_tables_within_their_grants() {
    let boto3 = python_package("boto3", BOTO3);
    let p = Platform::start().await;
    let manifest = format!(
        r#"name = "shop"

[table.orders]
partition_key = "customer"
sort_key = {{ name = "created", type = "N" }}

[table.catalog]
partition_key = "sku"

[table.secret]
partition_key = "id"

[function.api]
runtime = "python3"
handler = "app.handler"
code = "dynamodb"
timeout = "20s"
network = "none"
tables = ["orders", "catalog:read"]
env = {{ PYTHONPATH = "{}" }}

[[route]]
path = "/api"
function = "api"
"#,
        boto3.display()
    );
    let code = workspace_root().join("tests/fixtures/lambda/dynamodb");
    p.deploy_code(&manifest, &[("api", &code)]).await.unwrap();
    let call = async |body: serde_json::Value| -> (u16, serde_json::Value) {
        let response = p.http.post(p.url("/api")).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    };
    let (status, answer) = call(serde_json::json!({"customer": "ada", "n": 1, "total": 42})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["orders"][0]["total"], "42", "{answer}");
    assert_eq!(answer["catalog_read"], "allowed", "{answer}");
    assert_eq!(answer["catalog_write"], "AccessDeniedException", "{answer}");
    assert_eq!(answer["secret_read"], "AccessDeniedException", "{answer}");
    assert_eq!(
        answer["tables"],
        serde_json::json!(["catalog", "orders"]),
        "a function lists only the tables it is granted"
    );
    // What the CLI shows of them.
    let cli = |args: &[&str]| -> serde_json::Value {
        let server = p.server.as_ref().unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args([
                "--json",
                "--admin-url",
                &server.admin_url(),
                "--token",
                &server.token,
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "nimbus {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };
    let listed = cli(&["tables"]);
    let orders = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap();
    assert_eq!(orders["app"], "shop");
    assert_eq!(orders["items"], 1);
    assert_eq!(orders["sort_key"], "created (N)");
    let items = cli(&["table", "scan", "orders", "--app", "shop"]);
    assert_eq!(
        items,
        serde_json::json!([{"customer": {"S": "ada"}, "created": {"N": "1"}, "total": {"N": "42"}}])
    );
    // The conditional put refuses a second order with the same key: the handler fails.
    let (status, _) = call(serde_json::json!({"customer": "ada", "n": 1, "total": 7})).await;
    assert_eq!(status, 502);
    // Tables holding items keep their app from being removed, unless forced.
    let refused = p.client.remove("shop", false).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(nimbus_core::ErrorCode::TableNotEmpty),
        "{refused}"
    );
    assert!(refused.to_string().contains("orders"), "{refused}");
    p.client.remove("shop", true).await.unwrap();
    // Declared again, the tables start empty.
    p.deploy_code(&manifest, &[("api", &code)]).await.unwrap();
    let (status, answer) = call(serde_json::json!({"customer": "ada", "n": 1, "total": 9})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["orders"].as_array().unwrap().len(), 1, "{answer}");
    p.stop().await;
}

/// kill -9 under a write load: every write the server acknowledged is there after the restart,
/// each with its stream record, in order per key — and no record exists without its item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write_or_its_record() {
    use crate::restart::{connect, spawn_server};
    use tokio::io::AsyncBufReadExt as _;
    let boto3 = python_package("boto3", BOTO3);
    let script = workspace_root().join("tests/fixtures/dynamodb/durability.py");
    let dir = crate::support::data_dir();
    let aws = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("aws.url"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (key, acks) = {
        let mut server = spawn_server(dir.path());
        let (client, _) = connect(dir.path()).await;
        let digest = client
            .upload_artifact(std::fs::read(crate::support::component("probe")).unwrap())
            .await
            .unwrap();
        client
            .deploy(&nimbus_api::DeployRequest {
                manifest: probe_app("shop", "f", ""),
                manifest_path: "nimbus.toml".into(),
                artifacts: [("f".to_owned(), digest)].into(),
            })
            .await
            .unwrap();
        let key = client
            .create_key(&CreateKeyRequest {
                app: Some("shop".into()),
                description: None,
            })
            .await
            .unwrap();
        let key = (key.id, key.secret.unwrap());
        let mut writer = tokio::process::Command::new("python3")
            .arg(&script)
            .arg("write")
            .env("PYTHONPATH", &boto3)
            .env("EP", aws(dir.path()))
            .env("AK", &key.0)
            .env("SK", &key.1)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(writer.stdout.take().unwrap()).lines();
        let mut acks = Vec::new();
        // Let a few hundred writes land, then kill the server mid-stream.
        while let Some(line) = lines.next_line().await.unwrap() {
            acks.push(line);
            if acks.len() == 400 {
                server.0.kill().unwrap();
                server.0.wait().unwrap();
                break;
            }
        }
        while let Some(line) = lines.next_line().await.unwrap() {
            acks.push(line);
        }
        writer.wait().await.unwrap();
        (key, acks)
    };
    assert!(
        acks.len() >= 400,
        "the writers stopped early: {}",
        acks.len()
    );
    let _server = spawn_server(dir.path());
    connect(dir.path()).await;
    let mut checker = tokio::process::Command::new("python3")
        .arg(&script)
        .arg("check")
        .env("PYTHONPATH", &boto3)
        .env("EP", aws(dir.path()))
        .env("AK", &key.0)
        .env("SK", &key.1)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = checker.stdin.take().unwrap();
        for line in acks.iter().filter(|l| !l.contains("ready")) {
            stdin
                .write_all(format!("{line}\n").as_bytes())
                .await
                .unwrap();
        }
    }
    let output = checker.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "after the restart:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
