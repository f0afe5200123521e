//! App secrets: set from the CLI (standard input, never an argument), read by functions only as
//! granted — environment variables, the local API, boto3's Secrets Manager client, the Lambda
//! extension's `localhost:2773` — and never at rest or in a log in the clear; a server started
//! with the wrong master key refuses, changing nothing.

use crate::objects::{BOTO3, files};
use crate::restart::Server;
use crate::support::{component, data_dir, python_package, workspace_root};
use sha2::Digest;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const PLANTED: &str = "sk_live_PLANTED_c0ffee_5ecret_v1";
const ROTATED: &str = "sk_live_PLANTED_deadbeef_v2";
const DB_PASSWORD: &str = "PLANTED-db-password-9f8e7d";

fn sha(text: &str) -> String {
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// `nimbus serve` on ephemeral ports, everything it logs (at debug) into `log`.
fn spawn_logged(dir: &Path, log: &Path, master_key_hex: Option<&str>) -> Server {
    let _ = std::fs::remove_file(dir.join("admin.url"));
    let out = std::fs::File::create(log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_nimbus"));
    command
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
        .env("NIMBUS_LOG", "debug")
        .env_remove("NIMBUS_MASTER_KEY")
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    if let Some(key) = master_key_hex {
        command.env("NIMBUS_MASTER_KEY", key);
    }
    Server(command.spawn().unwrap())
}

/// Run the CLI against the server in `dir`, `stdin` piped in.
fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_granted_functions_only_and_never_rest_in_the_clear() {
    let boto3 = python_package("boto3", BOTO3);
    let dir = data_dir();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.log");
    let mut server = spawn_logged(dir.path(), &log, None);
    let (client, gateway) = crate::restart::connect(dir.path()).await;

    // Set from standard input (one trailing newline dropped), rotated, listed without values.
    let set = cli(
        dir.path(),
        &["secrets", "set", "shop", "stripe_key"],
        Some(&format!("{PLANTED}\n")),
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let value_file = logs.path().join("db.txt");
    std::fs::write(&value_file, DB_PASSWORD).unwrap();
    let set = cli(
        dir.path(),
        &[
            "secrets",
            "set",
            "shop",
            "db_password",
            "--file",
            value_file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    std::fs::remove_file(&value_file).unwrap();
    let rotated = cli(
        dir.path(),
        &["secrets", "rotate", "shop", "stripe_key"],
        Some(ROTATED),
    );
    assert!(
        rotated.status.success(),
        "{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    let entry: serde_json::Value = serde_json::from_slice(&rotated.stdout).unwrap();
    assert_eq!(entry["current"], 2, "{entry}");
    let typo = cli(
        dir.path(),
        &["secrets", "rotate", "shop", "stripe_kye"],
        Some("x"),
    );
    assert!(!typo.status.success(), "rotate does not create a secret");
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("secret_not_found"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
    let listed = cli(dir.path(), &["secrets", "ls", "shop"], None);
    let listed_text = String::from_utf8_lossy(&listed.stdout).into_owned();
    let names: Vec<String> = serde_json::from_str::<Vec<nimbus_api::SecretEntry>>(&listed_text)
        .unwrap()
        .into_iter()
        .map(|s| format!("{}@{}", s.name, s.current))
        .collect();
    assert_eq!(names, ["db_password@1", "stripe_key@2"]);
    for planted in [PLANTED, ROTATED, DB_PASSWORD] {
        assert!(
            !listed_text.contains(planted),
            "a listing never shows values"
        );
    }

    // A Lambda handler granted `stripe_key` (and given it as $STRIPE), a Wasm probe granted
    // it too, and one granted nothing.
    let manifest = format!(
        r#"name = "shop"

[function.api]
runtime = "python3"
handler = "app.handler"
code = "secrets"
timeout = "20s"
secrets = ["stripe_key"]
env = {{ PYTHONPATH = "{}", STRIPE = {{ secret = "stripe_key" }} }}

[function.isolated]
runtime = "python3"
handler = "app.handler"
code = "secrets"
timeout = "20s"
network = "none"
secrets = ["stripe_key"]
env = {{ PYTHONPATH = "{}" }}

[function.f]
component = "probe.wasm"
secrets = ["stripe_key"]
env = {{ FROM_SECRET = {{ secret = "stripe_key" }} }}

[function.g]
component = "probe.wasm"

[function.h]
component = "probe.wasm"
env = {{ MISSING = {{ secret = "not_set" }} }}

[[route]]
path = "/api"
function = "api"

[[route]]
path = "/isolated"
function = "isolated"

[[route]]
path = "/f/{{*rest}}"
function = "f"

[[route]]
path = "/g/{{*rest}}"
function = "g"

[[route]]
path = "/h/{{*rest}}"
function = "h"
"#,
        boto3.display(),
        boto3.display()
    );
    let code =
        nimbus_api::artifact::pack_dir(&workspace_root().join("tests/fixtures/lambda/secrets"))
            .unwrap();
    let probe = std::fs::read(component("probe")).unwrap();
    let mut artifacts = std::collections::BTreeMap::new();
    let code = client.upload_artifact(code).await.unwrap();
    artifacts.insert("api".to_owned(), code.clone());
    artifacts.insert("isolated".to_owned(), code);
    let probe = client.upload_artifact(probe).await.unwrap();
    artifacts.insert("f".to_owned(), probe.clone());
    artifacts.insert("g".to_owned(), probe.clone());
    artifacts.insert("h".to_owned(), probe);
    client
        .deploy(&nimbus_api::DeployRequest {
            manifest,
            manifest_path: "nimbus.toml".into(),
            artifacts,
        })
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let response = http.post(format!("{gateway}/api")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["env"], sha(ROTATED), "{answer}");
    assert_eq!(answer["boto3_current"]["value"], sha(ROTATED), "{answer}");
    assert_eq!(
        answer["boto3_current"]["stages"],
        serde_json::json!(["AWSCURRENT"])
    );
    assert_eq!(answer["boto3_by_arn"]["value"], sha(ROTATED), "{answer}");
    assert_eq!(answer["boto3_previous"]["value"], sha(PLANTED), "{answer}");
    assert_eq!(
        answer["boto3_ungranted"]["error"], "AccessDeniedException",
        "{answer}"
    );
    assert_eq!(
        answer["boto3_missing_stage"]["error"], "ResourceNotFoundException",
        "{answer}"
    );
    let extension = answer["extension"].as_object().unwrap();
    let served: Vec<&serde_json::Value> =
        extension.values().filter(|v| v["status"] == 200).collect();
    assert!(
        !served.is_empty(),
        "the extension shape answers on its port: {answer}"
    );
    for reply in served {
        assert_eq!(reply["value"], sha(ROTATED), "{answer}");
    }
    assert_eq!(answer["extension_without_token"], 401, "{answer}");
    assert_eq!(answer["local_previous"]["status"], 200, "{answer}");
    assert_eq!(answer["local_previous"]["value"], sha(PLANTED), "{answer}");
    assert_eq!(answer["local_ungranted"]["status"], 403, "{answer}");
    assert_eq!(answer["local_ungranted"]["code"], "forbidden", "{answer}");

    // With a network namespace of its own, the extension answers on 2773 itself, where
    // Lambda code that never reads PARAMETERS_SECRETS_EXTENSION_HTTP_PORT expects it.
    if client
        .status()
        .await
        .unwrap()
        .process_sandbox
        .network_namespace
    {
        let response = http
            .post(format!("{gateway}/isolated"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = response.json().await.unwrap();
        assert_eq!(answer["extension"]["2773"]["status"], 200, "{answer}");
        assert_eq!(
            answer["extension"]["2773"]["value"],
            sha(ROTATED),
            "{answer}"
        );
        assert_eq!(answer["boto3_current"]["value"], sha(ROTATED), "{answer}");
        assert_eq!(
            answer["env"],
            serde_json::Value::Null,
            "no variable was asked for"
        );
    }

    // Wasm: the variable at instance start, the local API at run time, grants enforced.
    let env = http
        .get(format!("{gateway}/f/env"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        env.lines().any(|l| l == format!("FROM_SECRET={ROTATED}")),
        "{env}"
    );
    let read = http
        .get(format!("{gateway}/f/forward?to=/v1/secrets/stripe_key"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let read: serde_json::Value = serde_json::from_str(&read.text().await.unwrap()).unwrap();
    assert_eq!(read["SecretString"], ROTATED);
    assert_eq!(read["Name"], "stripe_key");
    let denied = http
        .get(format!("{gateway}/g/forward?to=/v1/secrets/stripe_key"))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403, "an ungranted function is refused");
    let env = http
        .get(format!("{gateway}/g/env"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!env.contains("sk_live"), "{env}");

    // What the CLI says each may touch.
    let shown = cli(dir.path(), &["functions", "shop/api", "--grants"], None);
    let shown: Vec<nimbus_api::FunctionInfo> = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        serde_json::to_value(&shown[0].grants).unwrap(),
        serde_json::json!([{"kind": "secret", "name": "stripe_key", "actions": ["read"]}])
    );
    let shown = cli(dir.path(), &["functions", "g", "--grants"], None);
    let shown: Vec<nimbus_api::FunctionInfo> = serde_json::from_slice(&shown.stdout).unwrap();
    assert!(shown[0].grants.is_empty(), "g is granted nothing");

    // A variable whose secret is not set: the instance does not start, and says why.
    let failed = http.get(format!("{gateway}/h/env")).send().await.unwrap();
    let (status, code, message) = crate::support::error_code(failed).await;
    assert_eq!(
        (status, code.as_str()),
        (502, "function_init_failed"),
        "{message}"
    );
    assert!(
        message.contains("MISSING") && message.contains("not_set"),
        "{message}"
    );

    // boto3 with the app's own access key, outside any function.
    let key = client
        .create_key(&nimbus_api::CreateKeyRequest {
            app: Some("shop".into()),
            description: Some("secrets test".into()),
        })
        .await
        .unwrap();
    let aws = std::fs::read_to_string(dir.path().join("aws.url")).unwrap();
    let suite = tokio::process::Command::new("python3")
        .arg(workspace_root().join("tests/fixtures/secrets/boto3_suite.py"))
        .env("PYTHONPATH", &boto3)
        .env("EP", aws.trim())
        .env("AK", &key.id)
        .env("SK", key.secret.as_deref().unwrap())
        .env("CURRENT", ROTATED)
        .env("PREVIOUS", PLANTED)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&suite.stdout);
    assert!(
        suite.status.success() && stdout.contains("all cases passed"),
        "boto3 Secrets Manager suite failed\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&suite.stderr)
    );

    // Removal: the listing and the functions no longer see it.
    let removed = cli(dir.path(), &["secrets", "rm", "shop", "db_password"], None);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    assert_eq!(client.secrets("shop").await.unwrap().len(), 1);

    // Stop, then look for the planted values everywhere the platform writes.
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let mut looked_at = 0;
    for file in files(dir.path()).into_iter().chain([log.clone()]) {
        let bytes = std::fs::read(&file).unwrap();
        looked_at += bytes.len();
        for planted in [PLANTED, ROTATED, DB_PASSWORD, &PLANTED[8..]] {
            assert!(
                !contains(&bytes, planted),
                "{planted:?} is in the clear in {}",
                file.display()
            );
        }
    }
    assert!(
        looked_at > 100_000,
        "the data directory and log were there to search"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("secret set"),
        "the log was written at debug"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_refuses_to_start_and_changes_nothing() {
    let dir = data_dir();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("server.log");
    let key = hex::encode([7u8; 32]);
    {
        let _server = spawn_logged(dir.path(), &log, Some(&key));
        crate::restart::connect(dir.path()).await;
        let set = cli(
            dir.path(),
            &["secrets", "set", "shop", "api_token"],
            Some(PLANTED),
        );
        assert!(
            set.status.success(),
            "{}",
            String::from_utf8_lossy(&set.stderr)
        );
    }
    assert!(
        !dir.path().join("master.key").exists(),
        "a key from the environment is not written to the data directory"
    );
    let before: Vec<(std::path::PathBuf, Vec<u8>)> = files(dir.path())
        .into_iter()
        .filter(|f| !f.ends_with("admin.url"))
        .map(|f| {
            let digest = sha2::Sha256::digest(std::fs::read(&f).unwrap()).to_vec();
            (f, digest)
        })
        .collect();

    // The data directory's own key (none here, so it would be a new one) and another key
    // are both refused, with a message that says what to do.
    for wrong in [None, Some(hex::encode([8u8; 32]))] {
        let output = Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--aws-listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env_remove("NIMBUS_MASTER_KEY")
            .envs(wrong.as_ref().map(|k| ("NIMBUS_MASTER_KEY", k.as_str())))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "started with the wrong key: {stderr}"
        );
        assert!(
            stderr.contains("master key") && stderr.contains("nothing has been changed")
                || stderr.contains("master key") && stderr.contains("restore"),
            "{stderr}"
        );
        assert!(
            !dir.path().join("master.key").exists(),
            "no key was made over sealed data"
        );
    }
    for (file, bytes) in &before {
        assert_eq!(
            &sha2::Sha256::digest(std::fs::read(file).unwrap()).to_vec(),
            bytes,
            "{} changed",
            file.display()
        );
    }

    // The right key, from a file this time: the secret is there and reads back.
    let key_file = logs.path().join("master.hex");
    std::fs::write(&key_file, &key).unwrap();
    let _server = {
        let _ = std::fs::remove_file(dir.path().join("admin.url"));
        Server(
            Command::new(env!("CARGO_BIN_EXE_nimbus"))
                .args([
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--admin-listen",
                    "127.0.0.1:0",
                ])
                .args(["--aws-listen", "127.0.0.1:0", "--master-key-file"])
                .arg(&key_file)
                .arg("--data-dir")
                .arg(dir.path())
                .env_remove("NIMBUS_MASTER_KEY")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let (client, gateway) = crate::restart::connect(dir.path()).await;
    crate::restart::deploy_probe(
        &client,
        "name = \"shop\"\n\n[function.f]\ncomponent = \"probe.wasm\"\nsecrets = [\"api_token\"]\n\n[[route]]\npath = \"/f/{*rest}\"\nfunction = \"f\"\n".to_owned(),
    )
    .await;
    let read = reqwest::get(format!("{gateway}/f/forward?to=/v1/secrets/api_token"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let read: serde_json::Value = serde_json::from_str(&read).unwrap();
    assert_eq!(read["SecretString"], PLANTED);
}

/// `nimbus master-key rotate` on a stopped server's data directory: every secret version,
/// access key and signing key is re-sealed under a new key, which replaces the old one; after
/// a restart everything reads back as before — old secret versions, S3 with the same access
/// key, tokens signed before the rotation — and the old key opens nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_master_key_reseals_everything_and_loses_nothing() {
    use crate::support::Platform;
    let manifest = "name = \"shop\"\n\n[auth]\nissuer = \"https://shop.test/auth/v1\"\n\n[function.f]\ncomponent = \"probe.wasm\"\nsecrets = [\"api_token\"]\n\n[[route]]\npath = \"/f/{*rest}\"\nfunction = \"f\"\n";
    let p = Platform::start().await;
    p.deploy(manifest, &[("f", "probe")]).await.unwrap();
    p.client
        .set_secret("shop", "api_token", b"v1".to_vec(), false)
        .await
        .unwrap();
    p.client
        .set_secret("shop", "api_token", PLANTED.as_bytes().to_vec(), true)
        .await
        .unwrap();
    let key = p
        .client
        .create_key(&nimbus_api::CreateKeyRequest {
            app: Some("shop".into()),
            description: None,
        })
        .await
        .unwrap();
    let signed_up: serde_json::Value = p
        .http
        .post(p.url("/auth/v1/signup"))
        .json(&serde_json::json!({"email": "ann@shop.test", "password": "correct horse 1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = signed_up["access_token"].as_str().unwrap().to_owned();
    let jwks_before = p.get("/auth/v1/.well-known/jwks.json").await.1;
    let dir = p.stop().await;
    let old_key = std::fs::read(dir.path().join("master.key")).unwrap();

    let rotate_in = |dir: &Path, json: bool| {
        Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .arg("--data-dir")
            .arg(dir)
            .args(json.then_some("--json"))
            .args(["master-key", "rotate"])
            .env_remove("NIMBUS_MASTER_KEY")
            .env_remove("NIMBUS_MASTER_KEY_FILE")
            .output()
            .unwrap()
    };
    let rotate = rotate_in(dir.path(), false);
    let said = String::from_utf8_lossy(&rotate.stdout);
    assert!(
        rotate.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&rotate.stderr)
    );
    assert!(
        said.contains("re-sealed 2 secret versions, 1 access keys and 1 signing keys"),
        "{said}"
    );
    let new_key = std::fs::read(dir.path().join("master.key")).unwrap();
    assert_eq!(new_key.len(), 32);
    assert_ne!(new_key, old_key);
    assert!(!dir.path().join("master.rotating").exists());
    assert!(!dir.path().join("master.key.next").exists());
    // Run again: everything is under the new key already (and that key rotates on).
    let again = rotate_in(dir.path(), true);
    assert!(again.status.success());
    let counts: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(counts["secret_versions"], 2);
    assert_eq!(counts["access_keys"], 1);

    let p = Platform::start_in(dir, |_| {}).await;
    let read = |query: &'static str| {
        let url = p.url(&format!("/f/forward?to=/v1/secrets/api_token{query}"));
        async move {
            let text = reqwest::get(url).await.unwrap().text().await.unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["SecretString"].clone()
        }
    };
    assert_eq!(read("").await, PLANTED);
    assert_eq!(read("?versionStage=AWSPREVIOUS").await, "v1");
    let s3 = crate::objects::sdk(
        &p.server.as_ref().unwrap().aws_url(),
        &key.id,
        key.secret.as_deref().unwrap(),
    );
    s3.list_buckets().send().await.unwrap();
    assert_eq!(p.get("/auth/v1/.well-known/jwks.json").await.1, jwks_before);
    let user = p
        .http
        .get(p.url("/auth/v1/user"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        user.status(),
        200,
        "a token signed before the rotation still holds"
    );
    let signed_in = p
        .http
        .post(p.url("/auth/v1/token?grant_type=password"))
        .json(&serde_json::json!({"email": "ann@shop.test", "password": "correct horse 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        signed_in.status(),
        200,
        "the signing key opens under the new key"
    );
    let dir = p.stop().await;

    // The old key opens nothing any more.
    std::fs::write(dir.path().join("master.key"), &old_key).unwrap();
    let refused = nimbus_server::start(crate::support::config(dir.path())).await;
    let error = format!("{:#}", refused.err().expect("the old key is refused"));
    assert!(error.contains("not the one"), "{error}");
}
