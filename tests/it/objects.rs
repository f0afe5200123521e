//! The S3-compatible object service, through the clients users have: boto3 and the AWS CLI
//! (pinned, from PyPI, installed under `target/py`), against a real server.

use crate::support::{Platform, probe_app, workspace_root};
use nimbus_api::CreateKeyRequest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub(crate) const BOTO3: &str = "boto3==1.44.8";
const AWSCLI: &str = "awscli==1.46.3";

/// A pinned PyPI package installed (once) into its own directory under `target/py`.
pub(crate) fn python_package(name: &str, requirement: &str) -> PathBuf {
    let dir = workspace_root().join("target/py").join(name);
    let marker = dir.join(format!(".installed-{requirement}"));
    if !marker.exists() {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
            ])
            .arg(&dir)
            .arg(requirement)
            .status()
            .expect("run pip");
        assert!(status.success(), "pip install {requirement} failed");
        std::fs::write(&marker, "").unwrap();
    }
    dir
}

struct Keys {
    operator: (String, String),
    app: (String, String),
    revoked: (String, String),
}

async fn keys(p: &Platform) -> Keys {
    p.deploy(&probe_app("shop", "f", ""), &[("f", "probe")])
        .await
        .unwrap();
    let create = |app: Option<&str>| {
        let request = CreateKeyRequest {
            app: app.map(str::to_owned),
            description: Some("test".into()),
        };
        let client = p.client.clone();
        async move {
            let key = client.create_key(&request).await.unwrap();
            (key.id, key.secret.expect("the secret is shown at creation"))
        }
    };
    let operator = create(None).await;
    let app = create(Some("shop")).await;
    let revoked = create(None).await;
    p.client.revoke_key(&revoked.0).await.unwrap();
    let listed: Vec<String> = p
        .client
        .keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert!(listed.contains(&operator.0) && !listed.contains(&revoked.0));
    assert!(
        p.client
            .keys()
            .await
            .unwrap()
            .iter()
            .all(|k| k.secret.is_none()),
        "secrets are never listed"
    );
    Keys {
        operator,
        app,
        revoked,
    }
}

pub(crate) fn aws_url(p: &Platform) -> String {
    p.server.as_ref().unwrap().aws_url()
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn boto3_speaks_s3_to_the_endpoint() {
    let boto3 = python_package("boto3", BOTO3);
    let p = Platform::start().await;
    let keys = keys(&p).await;
    let work = tempfile::tempdir().unwrap();
    let script = workspace_root().join("tests/fixtures/s3/boto3_suite.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .env("PYTHONPATH", &boto3)
        .env("EP", aws_url(&p))
        .env("AK", &keys.operator.0)
        .env("SK", &keys.operator.1)
        .env("APP_AK", &keys.app.0)
        .env("APP_SK", &keys.app.1)
        .env("REVOKED_AK", &keys.revoked.0)
        .env("REVOKED_SK", &keys.revoked.1)
        .env("WORK", work.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("all cases passed"),
        "boto3 suite failed\n--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Keys are names, never paths: nothing was written outside the object store's blobs, and
    // no secret is stored in the clear.
    let data = p.dir.path().to_owned();
    for file in files(&data) {
        assert!(
            file.file_name().is_none_or(|n| n != "passwd"),
            "a key escaped into the file system: {}",
            file.display()
        );
    }
    let database = std::fs::read(data.join("nimbus.redb")).unwrap();
    assert!(
        !database
            .windows(keys.operator.1.len())
            .any(|w| w == keys.operator.1.as_bytes()),
        "access key secrets are sealed at rest"
    );
    // What boto3 stored, seen through the admin API.
    let listed = p.client.objects("photos", "big", None, 10).await.unwrap();
    assert_eq!(listed.objects.len(), 1);
    assert_eq!(listed.objects[0].size, 64 << 20);
    p.stop().await;
}

#[tokio::test]
async fn the_aws_cli_copies_syncs_lists_and_removes() {
    let awscli = python_package("awscli", AWSCLI);
    let p = Platform::start().await;
    let keys = keys(&p).await;
    let home = tempfile::tempdir().unwrap();
    let aws = async |args: &[&str]| {
        let output = tokio::process::Command::new("python3")
            .arg(awscli.join("bin/aws"))
            .args(["--endpoint-url", &aws_url(&p)])
            .args(args)
            .env("PYTHONPATH", &awscli)
            .env("HOME", home.path())
            .env("AWS_ACCESS_KEY_ID", &keys.operator.0)
            .env("AWS_SECRET_ACCESS_KEY", &keys.operator.1)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "aws {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("sub")).unwrap();
    std::fs::write(tree.path().join("a.txt"), "alpha").unwrap();
    std::fs::write(tree.path().join("sub/b.txt"), "beta").unwrap();
    let big: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(tree.path().join("big.bin"), &big).unwrap();

    aws(&["s3", "mb", "s3://site"]).await;
    assert!(aws(&["s3", "ls"]).await.contains("site"));
    let local = tree.path().to_str().unwrap();
    aws(&["s3", "sync", local, "s3://site/www"]).await;
    let listing = aws(&["s3", "ls", "--recursive", "s3://site/www/"]).await;
    for key in ["www/a.txt", "www/sub/b.txt", "www/big.bin"] {
        assert!(listing.contains(key), "{key} missing from {listing}");
    }
    // A second sync has nothing to do.
    assert_eq!(
        aws(&["s3", "sync", local, "s3://site/www"]).await.trim(),
        ""
    );
    let head = aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "site",
        "--key",
        "www/big.bin",
    ])
    .await;
    let head: serde_json::Value = serde_json::from_str(&head).unwrap();
    assert_eq!(head["ContentLength"], 20 << 20);
    assert!(
        head["ETag"].as_str().unwrap().contains('-'),
        "multipart: {head}"
    );
    let back = tempfile::tempdir().unwrap();
    aws(&[
        "s3",
        "cp",
        "s3://site/www/big.bin",
        back.path().to_str().unwrap(),
    ])
    .await;
    assert!(std::fs::read(back.path().join("big.bin")).unwrap() == big);
    aws(&["s3", "rm", "--recursive", "s3://site/www"]).await;
    assert_eq!(
        aws(&["s3", "ls", "--recursive", "s3://site"]).await.trim(),
        ""
    );
    aws(&["s3", "rb", "s3://site"]).await;
    assert!(!aws(&["s3", "ls"]).await.contains("site"));
    p.stop().await;
}

/// Buckets declared in a manifest are created for the app at deploy, `public_read` ones answer
/// unsigned reads, a name another app holds refuses the deploy, and removing the app takes its
/// buckets (only with `force` if they hold objects) and its keys.
#[tokio::test]
async fn manifest_buckets_follow_their_app() {
    let p = Platform::start().await;
    let manifest = probe_app("gallery", "f", "buckets = [\"pictures:read\", \"drafts\"]")
        + "\n[bucket.pictures]\npublic_read = true\n\n[bucket.drafts]\n";
    p.deploy(&manifest, &[("f", "probe")]).await.unwrap();
    let owned: Vec<(String, Option<String>)> = p
        .client
        .buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| (b.name, b.app))
        .collect();
    assert_eq!(
        owned,
        [
            ("drafts".to_owned(), Some("gallery".to_owned())),
            ("pictures".to_owned(), Some("gallery".to_owned()))
        ]
    );
    // Redeploying is idempotent.
    p.deploy(&manifest, &[("f", "probe")]).await.unwrap();
    for bucket in ["pictures", "drafts"] {
        p.client
            .put_object(bucket, "a b.txt", Some("text/plain"), "hello".into())
            .await
            .unwrap();
    }
    let url = |bucket: &str| format!("{}/{bucket}/a%20b.txt", aws_url(&p));
    let public = p.http.get(url("pictures")).send().await.unwrap();
    assert_eq!(public.status(), 200);
    assert!(public.headers().contains_key("x-amz-request-id"));
    assert_eq!(public.text().await.unwrap(), "hello");
    let private = p.http.get(url("drafts")).send().await.unwrap();
    assert_eq!(private.status(), 403);
    assert!(
        private
            .text()
            .await
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );
    let listing = p
        .http
        .get(format!("{}/pictures", aws_url(&p)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        listing.status(),
        403,
        "public means reading objects, not listing"
    );

    // Another app cannot claim the names; the first keeps them.
    let thief = probe_app("thief", "g", "") + "\n[bucket.pictures]\n";
    let refused = p.deploy(&thief, &[("g", "probe")]).await.unwrap_err();
    assert_eq!(refused.code(), Some(nimbus_core::ErrorCode::BucketExists));
    assert!(refused.to_string().contains("gallery"), "{refused}");

    let key = p
        .client
        .create_key(&CreateKeyRequest {
            app: Some("gallery".into()),
            description: None,
        })
        .await
        .unwrap();
    let kept = p.client.remove("gallery", false).await.unwrap_err();
    assert_eq!(kept.code(), Some(nimbus_core::ErrorCode::BucketNotEmpty));
    assert!(kept.to_string().contains("drafts, pictures"), "{kept}");
    assert_eq!(
        p.client.apps().await.unwrap().len(),
        1,
        "refused: nothing removed"
    );
    p.client.remove("gallery", true).await.unwrap();
    assert!(p.client.buckets().await.unwrap().is_empty());
    assert!(
        p.client
            .keys()
            .await
            .unwrap()
            .iter()
            .all(|k| k.id != key.id)
    );
    let gone = p.http.get(url("pictures")).send().await.unwrap();
    assert_eq!(gone.status(), 403, "no longer public");
    // The names are free again.
    p.deploy(&thief, &[("g", "probe")]).await.unwrap();
    p.stop().await;
}

/// An unmodified Lambda handler calls `boto3.client("s3")` with no endpoint or keys in its
/// code: nimbus hands it `AWS_ENDPOINT_URL` (its own local listener, so `network = "none"`
/// works) and per-instance temporary credentials limited to its grants.
#[tokio::test]
async fn lambda_handlers_use_boto3_within_their_grants() {
    let boto3 = python_package("boto3", BOTO3);
    let p = Platform::start().await;
    let manifest = format!(
        "name = \"pics\"\n\n[bucket.pics-rw]\n[bucket.pics-ro]\n\n[function.up]\nruntime = \"python3\"\nhandler = \"app.handler\"\ncode = \"s3\"\ntimeout = \"20s\"\nnetwork = \"none\"\nbuckets = [\"pics-rw\", \"pics-ro:read\"]\nenv = {{ PYTHONPATH = \"{}\" }}\n\n[[route]]\npath = \"/up\"\nfunction = \"up\"\n",
        boto3.display()
    );
    let code = workspace_root().join("tests/fixtures/lambda/s3");
    p.deploy_code(&manifest, &[("up", &code)]).await.unwrap();
    p.client
        .put_object("pics-ro", "seed", None, "seeded".into())
        .await
        .unwrap();
    p.client
        .create_bucket(&nimbus_api::CreateBucketRequest {
            name: "elsewhere".into(),
            app: None,
        })
        .await
        .unwrap();
    let call = async |body: serde_json::Value| -> serde_json::Value {
        let response = p.http.post(p.url("/up")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    };
    let granted = call(serde_json::json!({
        "bucket": "pics-rw", "key": "hello.txt", "value": "hi", "read_only": "pics-ro"
    }))
    .await;
    assert!(
        granted["endpoint"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"),
        "{granted}"
    );
    assert_eq!(granted["read"], "hi", "{granted}");
    assert_eq!(granted["listed"], serde_json::json!(["hello.txt"]));
    assert_eq!(granted["read_only"], "seeded");
    assert_eq!(granted["read_only_write"], "AccessDenied");
    // The object is really there, for everyone else too.
    let page = p.client.objects("pics-rw", "", None, 10).await.unwrap();
    assert_eq!(page.objects[0].key, "hello.txt");
    let refused = call(serde_json::json!({"bucket": "elsewhere", "key": "k", "value": "v"})).await;
    assert_eq!(refused["error"], "AccessDenied", "{refused}");
    assert_eq!(refused["status"], 403);
    assert!(
        p.client
            .objects("elsewhere", "", None, 10)
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    p.stop().await;
}

/// A Wasm guest reaches the same API over wasi:http at `http://nimbus.internal/s3/…`, unsigned:
/// the platform knows who is calling and applies the function's grants.
#[tokio::test]
async fn wasm_guests_use_s3_at_nimbus_internal_within_their_grants() {
    let p = Platform::start().await;
    let manifest = "name = \"pics\"\n\n[bucket.pics-rw]\n[bucket.pics-ro]\n\n[function.f]\ncomponent = \"probe.wasm\"\nbuckets = [\"pics-rw\", \"pics-ro:read\"]\n\n[[route]]\npath = \"/f/{*rest}\"\nfunction = \"f\"\n";
    p.deploy(manifest, &[("f", "probe")]).await.unwrap();
    p.client
        .put_object("pics-ro", "seed", None, "seeded".into())
        .await
        .unwrap();
    p.client
        .create_bucket(&nimbus_api::CreateBucketRequest {
            name: "elsewhere".into(),
            app: None,
        })
        .await
        .unwrap();
    let forward = async |method: reqwest::Method, to: &str, body: &'static str| {
        let response = p
            .http
            .request(method, p.url(&format!("/f/forward?to={to}")))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let etag = response.headers()["x-upstream-etag"]
            .to_str()
            .unwrap()
            .to_owned();
        (status, etag, response.text().await.unwrap())
    };
    let (status, etag, _) =
        forward(reqwest::Method::PUT, "/s3/pics-rw/notes/hello.txt", "hi").await;
    assert_eq!(status, 200);
    assert_eq!(
        etag, "\"49f68a5c8493ec2c0bf489821c21fc3b\"",
        "S3's ETag: the MD5 of the bytes"
    );
    let (status, _, body) = forward(reqwest::Method::GET, "/s3/pics-rw/notes/hello.txt", "").await;
    assert_eq!((status, body.as_str()), (200, "hi"));
    let (status, _, body) = forward(
        reqwest::Method::GET,
        "/s3/pics-rw%3Flist-type=2&prefix=notes/",
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Key>notes/hello.txt</Key>"), "{body}");
    let (status, _, body) = forward(reqwest::Method::GET, "/s3/pics-ro/seed", "").await;
    assert_eq!((status, body.as_str()), (200, "seeded"));
    // Outside the grants: S3's own refusal.
    for (method, to) in [
        (reqwest::Method::PUT, "/s3/pics-ro/nope"),
        (reqwest::Method::PUT, "/s3/elsewhere/k"),
        (reqwest::Method::GET, "/s3/elsewhere/k"),
        (reqwest::Method::PUT, "/s3/new-bucket"),
    ] {
        let (status, _, body) = forward(method.clone(), to, "x").await;
        assert_eq!(status, 403, "{method} {to}: {body}");
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    }
    let page = p.client.objects("pics-rw", "", None, 10).await.unwrap();
    assert_eq!(page.objects.len(), 1);
    assert!(
        p.client
            .objects("elsewhere", "", None, 10)
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    // A function without grants reaches nothing.
    let bare = "name = \"bare\"\n\n[function.g]\ncomponent = \"probe.wasm\"\n\n[[route]]\npath = \"/g/{*rest}\"\nfunction = \"g\"\n";
    p.deploy(bare, &[("g", "probe")]).await.unwrap();
    let response = p
        .http
        .get(p.url("/g/forward?to=/s3/pics-rw/notes/hello.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    p.stop().await;
}

/// kill -9 in the middle of a large upload replacing an object: after the restart the old
/// object is whole (same SHA-256), the new one was never visible, and the half-written bytes
/// are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_upload_leaves_the_old_object_whole() {
    use crate::restart::{connect, spawn_server};
    use sha2::Digest as _;
    let dir = crate::support::data_dir();
    let old: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 % 256) as u8).collect();
    {
        let mut server = spawn_server(dir.path());
        let (client, _) = connect(dir.path()).await;
        client
            .create_bucket(&nimbus_api::CreateBucketRequest {
                name: "big".into(),
                app: None,
            })
            .await
            .unwrap();
        client
            .put_object("big", "file", None, old.clone().into())
            .await
            .unwrap();
        // A 64 MiB replacement, sent slowly; the server dies a third of the way in.
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        let stream = tokio_stream_from(receiver);
        let upload = tokio::spawn({
            let client = client.clone();
            async move {
                client
                    .put_object("big", "file", None, reqwest::Body::wrap_stream(stream))
                    .await
            }
        });
        for _ in 0..20 {
            sender.send(Ok(vec![b'n'; 1 << 20])).await.unwrap();
        }
        let tmp = dir.path().join("objects/tmp");
        let mut partial = false;
        for _ in 0..200 {
            let written: u64 = std::fs::read_dir(&tmp)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            if written > 8 << 20 {
                partial = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(partial, "the upload never reached the disk");
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        assert!(
            upload.await.unwrap().is_err(),
            "the upload was never acknowledged"
        );
    }
    let _server = spawn_server(dir.path());
    let (client, _) = connect(dir.path()).await;
    let response = client.get_object("big", "file").await.unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&bytes)),
        hex::encode(sha2::Sha256::digest(&old)),
        "the old object, whole"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("objects/tmp"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("objects/blobs"))
            .unwrap()
            .count(),
        1,
        "only the old object's blob"
    );
}

/// A stream of the chunks `receiver` yields.
fn tokio_stream_from(
    receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}
