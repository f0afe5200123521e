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

/// The acknowledgements `writer` (durability.py's `write`) prints: a few hundred land, then
/// the server is killed mid-stream, and the writer stops at its first failed write.
async fn acknowledged_until_killed(
    mut writer: tokio::process::Child,
    server: &mut crate::restart::Server,
) -> Vec<String> {
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(writer.stdout.take().unwrap()).lines();
    let mut acks = Vec::new();
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
    acks
}

/// kill -9 under a write load: every write the server acknowledged is there after the restart,
/// each with its stream record, in order per key — and no record exists without its item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write_or_its_record() {
    use crate::restart::{connect, spawn_server};
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
        crate::restart::deploy_probe(&client, probe_app("shop", "f", "")).await;
        let key = client
            .create_key(&CreateKeyRequest {
                app: Some("shop".into()),
                description: None,
            })
            .await
            .unwrap();
        let key = (key.id, key.secret.unwrap());
        let writer = tokio::process::Command::new("python3")
            .arg(&script)
            .arg("write")
            .env("PYTHONPATH", &boto3)
            .env("EP", aws(dir.path()))
            .env("AK", &key.0)
            .env("SK", &key.1)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let acks = acknowledged_until_killed(writer, &mut server).await;
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

/// `[[trigger.table]]`: 1,000 writes reach a Lambda function as DynamoDB's stream events, in
/// order per item, with a partial batch failure retried from its checkpoint; a Wasm function
/// gets the removals its filter lets through as CloudEvents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_streams_reach_functions_in_order_per_item() {
    use crate::events::Collector;
    use std::collections::{BTreeMap, HashMap};
    use std::time::Duration;
    const KEYS: usize = 190;
    const ROUNDS: usize = 5;
    const DELETES: usize = 49;
    let boto3 = python_package("boto3", BOTO3);
    let collector = Collector::start().await;
    let p = Platform::start().await;
    let manifest = format!(
        r#"name = "shop"

[table.orders]
partition_key = "id"
stream = "NEW_AND_OLD_IMAGES"

[function.lam]
runtime = "python3"
handler = "app.handler"
code = "lam"
network = "host"
env = {{ REPORT_URL = "{url}/" }}
delivery = {{ backoff = "100ms" }}

[function.wasm]
component = "probe.wasm"
{probe}

[[trigger.table]]
table = "orders"
function = "lam"
starting_position = "TRIM_HORIZON"

[[trigger.table]]
table = "orders"
function = "wasm"
filter = {{ eventName = ["REMOVE"] }}
"#,
        url = collector.url,
        probe = collector.probe_env()
    );
    let code = nimbus_api::artifact::pack_dir(&crate::support::lambda_fixture("streams")).unwrap();
    let probe = std::fs::read(crate::support::component("probe")).unwrap();
    p.deploy_bytes(&manifest, [("lam", code), ("wasm", probe)].into_iter())
        .await
        .unwrap();
    let key = p
        .client
        .create_key(&CreateKeyRequest {
            app: Some("shop".into()),
            description: None,
        })
        .await
        .unwrap();
    let script = format!(
        r#"
import os, boto3
orders = boto3.resource("dynamodb", endpoint_url=os.environ["EP"], region_name="us-east-1").Table("orders")
for round in range({ROUNDS}):
    for i in range({KEYS}):
        orders.put_item(Item={{"id": f"k{{i:03}}", "v": round}})
    if round == 2:
        orders.put_item(Item={{"id": "bad", "v": 0, "fail": True}})
for i in range({DELETES}):
    orders.delete_item(Key={{"id": f"k{{i:03}}"}})
"#
    );
    let output = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .env("PYTHONPATH", &boto3)
        .env("EP", aws_url(&p))
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", key.secret.unwrap())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let writes = ROUNDS * KEYS + 1 + DELETES;
    assert_eq!(writes, 1000);

    // Every write reached the Lambda function, at least once.
    let batches = |reports: &[crate::events::Report]| -> Vec<Vec<serde_json::Value>> {
        reports
            .iter()
            .filter(|r| r.ty == "stream")
            .map(|r| {
                let event: serde_json::Value = serde_json::from_str(&r.data).unwrap();
                event["Records"].as_array().unwrap().clone()
            })
            .collect()
    };
    let delivered = async || {
        let batches = batches(&collector.reports());
        let ids: std::collections::HashSet<String> = batches
            .iter()
            .flatten()
            .map(|r| r["eventID"].as_str().unwrap().to_owned())
            .collect();
        ids.len()
    };
    let all = crate::support::eventually(Duration::from_secs(120), async || {
        delivered().await >= writes
    })
    .await;
    assert!(all, "{} of {writes} records delivered", delivered().await);
    let reports = collector.reports();
    let batches = batches(&reports);
    let sequence =
        |r: &serde_json::Value| r["dynamodb"]["SequenceNumber"].as_str().unwrap().to_owned();
    for batch in &batches {
        assert!(!batch.is_empty() && batch.len() <= 100, "{}", batch.len());
        assert!(
            batch.windows(2).all(|w| sequence(&w[0]) < sequence(&w[1])),
            "a batch is in stream order"
        );
    }

    // In DynamoDB's Lambda shape.
    let records: Vec<&serde_json::Value> = batches.iter().flatten().collect();
    let modify = records
        .iter()
        .find(|r| r["eventName"] == "MODIFY")
        .expect("a MODIFY record");
    assert_eq!(modify["eventSource"], "aws:dynamodb");
    assert_eq!(modify["eventVersion"], "1.1");
    assert!(
        modify["eventSourceARN"]
            .as_str()
            .unwrap()
            .contains(":table/orders/stream/"),
        "{modify}"
    );
    let dynamodb = &modify["dynamodb"];
    assert_eq!(dynamodb["StreamViewType"], "NEW_AND_OLD_IMAGES");
    assert!(dynamodb["Keys"]["id"]["S"].is_string(), "{modify}");
    assert!(dynamodb["NewImage"]["v"]["N"].is_string(), "{modify}");
    assert!(dynamodb["OldImage"]["v"]["N"].is_string(), "{modify}");
    assert!(dynamodb["SizeBytes"].as_u64().unwrap() > 0);
    assert!(dynamodb["ApproximateCreationDateTime"].is_number());
    let remove = records.iter().find(|r| r["eventName"] == "REMOVE").unwrap();
    assert!(remove["dynamodb"].get("NewImage").is_none(), "{remove}");
    assert!(remove["dynamodb"]["OldImage"].is_object(), "{remove}");

    // Per item, records arrive in commit order: the first delivery of each follows the one
    // before it.
    let mut firsts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut times: HashMap<String, usize> = HashMap::new();
    for record in &records {
        let count = times.entry(sequence(record)).or_default();
        *count += 1;
        if *count == 1 {
            let id = record["dynamodb"]["Keys"]["id"]["S"].as_str().unwrap();
            firsts
                .entry(id.to_owned())
                .or_default()
                .push(sequence(record));
        }
    }
    assert_eq!(firsts.len(), KEYS + 1);
    for (id, sequences) in &firsts {
        assert!(
            sequences.windows(2).all(|w| w[0] < w[1]),
            "{id}: {sequences:?}"
        );
        let expected = if id == "bad" {
            1
        } else if id.as_str() < "k049" {
            ROUNDS + 1
        } else {
            ROUNDS
        };
        assert_eq!(sequences.len(), expected, "{id}");
    }

    // The failed record was retried, with those after it in its batch; those before it were
    // done.
    let bad = records
        .iter()
        .find(|r| r["dynamodb"]["Keys"]["id"]["S"] == "bad")
        .map(|r| sequence(r))
        .unwrap();
    assert!(times[&bad] >= 2, "the failed record was retried");
    let first_batch = batches
        .iter()
        .find(|b| b.iter().any(|r| sequence(r) == bad))
        .unwrap();
    for record in first_batch {
        let seq = sequence(record);
        if seq < bad {
            assert_eq!(
                times[&seq], 1,
                "a record before the checkpoint is not redelivered"
            );
        } else {
            assert!(
                times[&seq] >= 2,
                "a record after the checkpoint is redelivered"
            );
        }
    }

    // The Wasm function got only the removals, as CloudEvents.
    let wasm = crate::support::eventually(Duration::from_secs(60), async || {
        collector
            .reports()
            .iter()
            .filter(|r| r.ty.starts_with("com.amazonaws.dynamodb."))
            .count()
            >= DELETES
    })
    .await;
    assert!(wasm, "the removals reached the Wasm function");
    let reports = collector.reports();
    let cloudevents: Vec<_> = reports
        .iter()
        .filter(|r| r.ty.starts_with("com.amazonaws.dynamodb."))
        .collect();
    assert!(
        cloudevents
            .iter()
            .all(|r| r.ty == "com.amazonaws.dynamodb.REMOVE"),
        "the filter let only removals through"
    );
    let data: serde_json::Value = serde_json::from_str(&cloudevents[0].data).unwrap();
    assert_eq!(data["eventName"], "REMOVE");
    assert!(
        data["dynamodb"]["OldImage"]["id"]["S"].is_string(),
        "{data}"
    );
    p.stop().await;
}

/// `examples/orders`, deployed with the CLI (its build installs boto3 and compiles the Wasm
/// counter): orders written through a route reach the read model through the stream trigger,
/// an order id is taken once, and the counter counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orders_example_projects_orders_into_its_read_model() {
    use std::time::Duration;
    let p = Platform::start().await;
    let server = p.server.as_ref().unwrap();
    let example = workspace_root().join("examples/orders");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .arg("deploy")
        .arg(&example)
        .args(["--admin-url", &server.admin_url(), "--token", &server.token])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let post = async |body: serde_json::Value| -> (u16, serde_json::Value) {
        let response = p
            .http
            .post(p.url("/orders"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    };
    for (id, customer, total) in [
        ("o-1", "ada", 12.5),
        ("o-2", "ada", 30.0),
        ("o-3", "bob", 7.0),
    ] {
        let (status, answer) =
            post(serde_json::json!({"id": id, "customer": customer, "total": total})).await;
        assert_eq!(status, 201, "{answer}");
    }
    let (status, answer) =
        post(serde_json::json!({"id": "o-1", "customer": "eve", "total": 1})).await;
    assert_eq!(status, 409, "an order id is taken once: {answer}");
    let (status, _) = post(serde_json::json!({"customer": "eve"})).await;
    assert_eq!(status, 400);

    let mut ada = serde_json::Value::Null;
    let projected = crate::support::eventually(Duration::from_secs(60), async || {
        let (status, body) = p.get("/customers/ada").await;
        ada = serde_json::from_str(&body).unwrap_or_default();
        status == 200 && ada["orders"] == 2
    })
    .await;
    assert!(projected, "the read model: {ada}");
    assert_eq!(ada["spent"], 42.5, "{ada}");
    let (status, body) = p.get("/customers/bob").await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = p.get("/customers/eve").await;
    assert_eq!(status, 404, "the refused order reached nobody");

    let (status, first) = p.get("/visits").await;
    assert_eq!(status, 200, "{first}");
    let (_, second) = p.get("/visits").await;
    let count = |text: &str| -> i64 {
        serde_json::from_str::<serde_json::Value>(text).unwrap()["visits"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(count(&second), count(&first) + 1);
    p.stop().await;
}

/// A table trigger across kill -9: every write acknowledged before the kill reaches the
/// function after the restart, and each counter's records arrive in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_stream_record_on_its_way_to_a_function() {
    use crate::events::Collector;
    use crate::restart::{connect, spawn_server};
    use std::collections::{BTreeMap, HashSet};
    use std::time::Duration;
    let boto3 = python_package("boto3", BOTO3);
    let script = workspace_root().join("tests/fixtures/dynamodb/durability.py");
    let collector = Collector::start().await;
    let dir = crate::support::data_dir();
    let aws = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("aws.url"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let manifest = format!(
        "name = \"shop\"\n\n[table.ledger]\npartition_key = \"k\"\nstream = \"NEW_AND_OLD_IMAGES\"\n\n\
         [function.f]\ncomponent = \"probe.wasm\"\n{}\n\n[[trigger.table]]\ntable = \"ledger\"\n\
         function = \"f\"\nstarting_position = \"TRIM_HORIZON\"\nconcurrency = 2\n",
        collector.probe_env()
    );
    let acks = {
        let mut server = spawn_server(dir.path());
        let (client, _) = connect(dir.path()).await;
        crate::restart::deploy_probe(&client, manifest).await;
        let key = client
            .create_key(&CreateKeyRequest {
                app: Some("shop".into()),
                description: None,
            })
            .await
            .unwrap();
        let writer = tokio::process::Command::new("python3")
            .arg(&script)
            .arg("write")
            .env("PYTHONPATH", &boto3)
            .env("EP", aws(dir.path()))
            .env("AK", &key.id)
            .env("SK", key.secret.unwrap())
            .env("DECLARED", "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Killed while writes and deliveries are both under way.
        acknowledged_until_killed(writer, &mut server).await
    };
    let delivered_before = collector.count();
    let mut items = HashSet::new();
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    for line in &acks {
        let ack: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(item) = ack["item"].as_str() {
            items.insert(item.to_owned());
        } else if let Some(counter) = ack["counter"].as_str() {
            let n = ack["n"].as_u64().unwrap();
            let top = counters.entry(counter.to_owned()).or_default();
            *top = (*top).max(n);
        }
    }
    assert!(items.len() >= 150, "{} items acknowledged", items.len());

    let _server = spawn_server(dir.path());
    connect(dir.path()).await;
    let records = || -> Vec<serde_json::Value> {
        collector
            .reports()
            .iter()
            .filter(|r| {
                r.ty == "com.amazonaws.dynamodb.INSERT" || r.ty == "com.amazonaws.dynamodb.MODIFY"
            })
            .map(|r| serde_json::from_str(&r.data).unwrap())
            .collect()
    };
    let key_of =
        |r: &serde_json::Value| r["dynamodb"]["Keys"]["k"]["S"].as_str().unwrap().to_owned();
    let n_of = |r: &serde_json::Value| -> u64 {
        r["dynamodb"]["NewImage"]["n"]["N"]
            .as_str()
            .map_or(0, |n| n.parse().unwrap())
    };
    let all = crate::support::eventually(Duration::from_secs(180), async || {
        let records = records();
        let seen: HashSet<String> = records.iter().map(key_of).collect();
        items.iter().all(|item| seen.contains(item))
            && counters.iter().all(|(counter, n)| {
                records
                    .iter()
                    .any(|r| &key_of(r) == counter && n_of(r) >= *n)
            })
    })
    .await;
    let records = records();
    let seen: HashSet<String> = records.iter().map(key_of).collect();
    let lost: Vec<&String> = items.iter().filter(|i| !seen.contains(*i)).collect();
    assert!(
        all && lost.is_empty(),
        "acknowledged writes whose records never arrived: {} (e.g. {:?}); {} records delivered, {delivered_before} before the kill",
        lost.len(),
        lost.iter().take(5).collect::<Vec<_>>(),
        records.len()
    );
    // Per counter, the first delivery of each value comes in commit order.
    for counter in counters.keys() {
        let mut firsts = Vec::new();
        for n in records.iter().filter(|r| &key_of(r) == counter).map(n_of) {
            if !firsts.contains(&n) {
                firsts.push(n);
            }
        }
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "{counter}: {firsts:?}"
        );
    }
}
