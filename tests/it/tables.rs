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
    let p = Platform::start().await;
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
