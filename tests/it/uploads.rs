//! Upload triggers (`[[trigger.storage]]`): object changes reach functions and queues in S3's
//! event shapes, filtered by event, prefix and suffix — and none is lost across a kill -9.
//!
//! Consumers report what they receive to the collector of the events tests.

use crate::events::Collector;
use crate::objects::{BOTO3, aws_url, python_package};
use crate::restart::{connect, spawn_server};
use crate::support::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The manifest of the filters test: a Lambda function for new `in/*.jpg` objects, a Wasm one
/// for removals, and a queue for every change.
fn pics(collector: &Collector, triggers: bool) -> String {
    let triggers = if triggers {
        r#"
[[trigger.storage]]
bucket = "photos"
prefix = "in/"
suffix = ".jpg"
function = "lam"

[[trigger.storage]]
bucket = "photos"
events = ["removed"]
function = "wasm"

[[trigger.storage]]
bucket = "photos"
events = ["created", "removed"]
queue = "changes"
"#
    } else {
        ""
    };
    format!(
        "name = \"pics\"\n\n[bucket.photos]\n\n[function.lam]\nruntime = \"python3\"\nhandler = \"app.handler\"\ncode = \"lam\"\nnetwork = \"host\"\nenv = {{ REPORT_URL = \"{}/\" }}\n\n[function.wasm]\ncomponent = \"probe.wasm\"\n{}\n\n[queue.changes]\n{triggers}",
        collector.url,
        collector.probe_env()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_reach_functions_and_queues_in_s3_shapes_through_their_filters() {
    let collector = Collector::start().await;
    let p = Platform::start().await;
    let artifacts = |manifest: String| {
        let p = &p;
        async move {
            let code = nimbus_api::artifact::pack_dir(&lambda_fixture("events")).unwrap();
            let probe = std::fs::read(component("probe")).unwrap();
            p.deploy_bytes(&manifest, [("lam", code), ("wasm", probe)].into_iter())
                .await
                .unwrap();
        }
    };
    artifacts(pics(&collector, true)).await;
    let put = async |key: &str, bytes: &'static [u8]| {
        p.client
            .put_object("photos", key, Some("image/jpeg"), bytes.into())
            .await
            .unwrap()
    };
    let cat = put("in/red flower.jpg", b"a red flower").await;
    put("in/notes.txt", b"not a picture").await;
    put("out/elsewhere.jpg", b"not under in/").await;
    p.client
        .delete_object("photos", "in/red flower.jpg")
        .await
        .unwrap();

    // The Lambda function got S3's notification, key URL-encoded as S3 does.
    let reports = collector.wait_for(2, Duration::from_secs(60)).await;
    let lambda = reports
        .iter()
        .find(|r| r.data.contains("\"Records\""))
        .expect("the Lambda function's report");
    let event = json(&lambda.data);
    let records = event["Records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{event}");
    let record = &records[0];
    assert_eq!(record["eventSource"], "aws:s3");
    assert_eq!(record["eventName"], "ObjectCreated:Put");
    assert_eq!(record["awsRegion"], "us-east-1");
    assert_eq!(record["s3"]["bucket"]["name"], "photos");
    assert_eq!(record["s3"]["bucket"]["arn"], "arn:aws:s3:::photos");
    assert_eq!(record["s3"]["object"]["key"], "in/red+flower.jpg");
    assert_eq!(record["s3"]["object"]["size"], 12);
    assert_eq!(record["s3"]["object"]["eTag"], cat.etag.trim_matches('"'));
    assert!(record["s3"]["object"]["sequencer"].is_string());

    // The Wasm function got the removal as a CloudEvent.
    let wasm = reports
        .iter()
        .find(|r| r.ty.starts_with("com.amazonaws.s3."))
        .expect("the Wasm function's report");
    assert_eq!(wasm.ty, "com.amazonaws.s3.ObjectRemoved:Delete");
    let data = json(&wasm.data);
    assert_eq!(data["s3"]["object"]["key"], "in/red+flower.jpg");
    assert!(data["s3"]["object"].get("size").is_none(), "{data}");

    // The queue got every change, in order, as S3 sends them to SQS.
    let changes = p.client.peek("pics", "changes", 10).await.unwrap();
    let seen: Vec<(String, String)> = changes
        .iter()
        .map(|m| {
            let body = json(m.body.as_deref().unwrap());
            let record = &body["Records"][0];
            (
                record["eventName"].as_str().unwrap().to_owned(),
                record["s3"]["object"]["key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("ObjectCreated:Put", "in/red+flower.jpg"),
        ("ObjectCreated:Put", "in/notes.txt"),
        ("ObjectCreated:Put", "out/elsewhere.jpg"),
        ("ObjectRemoved:Delete", "in/red+flower.jpg"),
    ]
    .map(|(e, k)| (e.to_owned(), k.to_owned()));
    assert_eq!(seen, expected);

    // Through the S3 API, with boto3: a copy and a multipart upload say what they are.
    let key = p
        .client
        .create_key(&nimbus_api::CreateKeyRequest {
            app: Some("pics".into()),
            description: None,
        })
        .await
        .unwrap();
    let script = r#"
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1")
s3.copy_object(Bucket="photos", Key="in/copy.jpg", CopySource={"Bucket": "photos", "Key": "out/elsewhere.jpg"})
upload = s3.create_multipart_upload(Bucket="photos", Key="in/big.jpg")
part = s3.upload_part(Bucket="photos", Key="in/big.jpg", UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1000)
s3.complete_multipart_upload(Bucket="photos", Key="in/big.jpg", UploadId=upload["UploadId"],
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", python_package("boto3", BOTO3))
        .env("ENDPOINT", aws_url(&p))
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", key.secret.unwrap())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reports = collector.wait_for(4, Duration::from_secs(60)).await;
    let names: HashSet<String> = reports
        .iter()
        .filter(|r| r.data.contains("\"Records\""))
        .map(|r| {
            json(&r.data)["Records"][0]["eventName"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        HashSet::from([
            "ObjectCreated:Put".to_owned(),
            "ObjectCreated:Copy".to_owned(),
            "ObjectCreated:CompleteMultipartUpload".to_owned()
        ])
    );

    // Without the triggers, changes reach nobody.
    artifacts(pics(&collector, false)).await;
    put("in/late.jpg", b"late").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(p.client.peek("pics", "changes", 20).await.unwrap().len(), 6);
    assert_eq!(collector.count(), 4, "{:#?}", collector.reports());
    p.stop().await;
}

/// 1,000 uploads, a kill -9 in the middle of them: after the restart every acknowledged upload
/// has reached the function, and the rest do once uploaded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_upload_event() {
    const UPLOADS: usize = 1000;
    let collector = Collector::start().await;
    let dir = data_dir();
    let mut server = spawn_server(dir.path());
    let (client, _) = connect(dir.path()).await;
    let manifest = format!(
        "name = \"drop\"\n\n[bucket.inbox]\n\n[function.worker]\ncomponent = \"probe.wasm\"\n{}\n\n[[trigger.storage]]\nbucket = \"inbox\"\nfunction = \"worker\"\n",
        collector.probe_env()
    );
    let digest = client
        .upload_artifact(std::fs::read(component("probe")).unwrap())
        .await
        .unwrap();
    let deploy = nimbus_api::DeployRequest {
        manifest,
        manifest_path: "nimbus.toml".into(),
        artifacts: BTreeMap::from([("worker".to_owned(), digest)]),
    };
    client.deploy(&deploy).await.unwrap();

    let acknowledged = Arc::new(Mutex::new(HashSet::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut uploaders = Vec::new();
    for _ in 0..8 {
        let (client, acknowledged, next) = (client.clone(), acknowledged.clone(), next.clone());
        uploaders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= UPLOADS {
                    return;
                }
                let key = format!("k-{i:04}");
                let body = reqwest::Body::from(format!("upload {i}"));
                if client.put_object("inbox", &key, None, body).await.is_err() {
                    return;
                }
                acknowledged.lock().unwrap().insert(key);
            }
        }));
    }
    assert!(
        eventually(Duration::from_secs(120), async || acknowledged
            .lock()
            .unwrap()
            .len()
            >= UPLOADS * 2 / 5)
        .await
    );
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    for uploader in uploaders {
        uploader.await.unwrap();
    }
    let before: HashSet<String> = acknowledged.lock().unwrap().clone();
    let seen_before = collector.count();
    assert!(
        before.len() < UPLOADS,
        "every upload finished before the kill"
    );

    let _server = spawn_server(dir.path());
    let (client, _) = connect(dir.path()).await;
    let missing: Vec<String> = (0..UPLOADS)
        .map(|i| format!("k-{i:04}"))
        .filter(|k| !before.contains(k))
        .collect();
    for key in &missing {
        client
            .put_object("inbox", key, None, reqwest::Body::from("again"))
            .await
            .unwrap();
    }
    let delivered = || -> Vec<String> {
        collector
            .reports()
            .iter()
            .map(|r| {
                assert_eq!(r.ty, "com.amazonaws.s3.ObjectCreated:Put");
                json(&r.data)["s3"]["object"]["key"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let all = eventually(Duration::from_secs(180), async || {
        delivered().into_iter().collect::<HashSet<_>>().len() >= UPLOADS
    })
    .await;
    let keys = delivered();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert!(
        all,
        "{} of {UPLOADS} uploads reached the function",
        distinct.len()
    );
    for key in &before {
        assert!(
            distinct.contains(key),
            "the acknowledged upload {key} was lost"
        );
    }
    // At-least-once delivery: duplicates only for deliveries in flight at the kill and for
    // uploads committed but unacknowledged then (uploaded twice).
    let duplicates = keys.len() - distinct.len();
    assert!(
        duplicates <= seen_before + 8,
        "{duplicates} duplicates ({seen_before} delivered before the kill)"
    );
}

/// `examples/thumbnails`, deployed with the CLI (its build installs boto3 and Pillow): an
/// uploaded image gets a 128-pixel thumbnail, listed by the route and readable by anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_thumbnails_example_makes_thumbnails_of_uploads() {
    let p = Platform::start().await;
    let server = p.server.as_ref().unwrap();
    let example = workspace_root().join("examples/thumbnails");
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
    // A 640×480 image, made with the Pillow the example's build installed.
    let image = std::process::Command::new("python3")
        .args([
            "-c",
            "import io, sys; from PIL import Image; out = io.BytesIO(); \
             Image.new('RGB', (640, 480), (200, 30, 40)).save(out, format='JPEG'); \
             sys.stdout.buffer.write(out.getvalue())",
        ])
        .env("PYTHONPATH", example.join("app/.python"))
        .output()
        .unwrap();
    assert!(image.status.success());
    p.client
        .put_object(
            "uploads",
            "photos/red flower.jpg",
            Some("image/jpeg"),
            image.stdout.into(),
        )
        .await
        .unwrap();
    let mut listed = serde_json::Value::Null;
    let made = eventually(Duration::from_secs(60), async || {
        let (status, body) = p.get("/thumbnails").await;
        assert_eq!(status, 200, "{body}");
        listed = json(&body);
        !listed["thumbnails"].as_array().unwrap().is_empty()
    })
    .await;
    assert!(made, "no thumbnail: {listed}");
    let thumbnail = &listed["thumbnails"][0];
    assert_eq!(thumbnail["key"], "photos/red flower.png");
    assert_eq!(thumbnail["size"], "128x96");
    assert_eq!(thumbnail["source"], "uploads/photos/red flower.jpg");
    // Public: an unsigned GET on the endpoint reads it.
    let response = reqwest::get(format!(
        "{}/thumbnails/photos/red%20flower.png",
        aws_url(&p)
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let png = response.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (128, 96));
    p.stop().await;
}
