//! The S3-compatible object service, through the clients users have: boto3 and the AWS CLI
//! (pinned, from PyPI, installed under `target/py`), against a real server.

pub(crate) use crate::support::python_package;
use crate::support::{Platform, probe_app, workspace_root};
use nimbus_api::CreateKeyRequest;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) const BOTO3: &str = "boto3==1.44.8";
const AWSCLI: &str = "awscli==1.46.3";

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
pub(crate) fn files(dir: &Path) -> Vec<PathBuf> {
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
    // The instance's credentials work while it lives, and end with it.
    let credentials: Vec<String> = serde_json::from_value(granted["credentials"].clone()).unwrap();
    let held = sdk_session(
        &aws_url(&p),
        &credentials[0],
        &credentials[1],
        Some(credentials[2].clone()),
    );
    let read = async || {
        held.get_object()
            .bucket("pics-rw")
            .key("hello.txt")
            .send()
            .await
    };
    read().await.expect("the live instance's credentials");
    p.client.remove("pics", true).await.unwrap();
    let ended = crate::support::eventually(Duration::from_secs(10), async || {
        read().await.is_err_and(|e| {
            use aws_sdk_s3::error::ProvideErrorMetadata as _;
            e.into_service_error().code() == Some("InvalidAccessKeyId")
        })
    })
    .await;
    assert!(ended, "credentials outlived their instance");
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
    let forward = async |method: reqwest::Method, to: &str, body: String| {
        let response = p
            .http
            .request(method, p.url(&format!("/f/forward?to={to}")))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let Some(etag) = response.headers().get("x-upstream-etag") else {
            panic!(
                "the guest's call failed ({status}): {}",
                response.text().await.unwrap()
            );
        };
        let etag = etag.to_str().unwrap().to_owned();
        (status, etag, response.text().await.unwrap())
    };
    let (status, etag, _) = forward(
        reqwest::Method::PUT,
        "/s3/pics-rw/notes/hello.txt",
        "hi".into(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        etag, "\"49f68a5c8493ec2c0bf489821c21fc3b\"",
        "S3's ETag: the MD5 of the bytes"
    );
    let (status, _, body) = forward(
        reqwest::Method::GET,
        "/s3/pics-rw/notes/hello.txt",
        String::new(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "hi"));
    let (status, _, body) = forward(
        reqwest::Method::GET,
        "/s3/pics-rw%3Flist-type=2&prefix=notes/",
        String::new(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<Key>notes/hello.txt</Key>"), "{body}");
    let (status, _, body) = forward(reqwest::Method::GET, "/s3/pics-ro/seed", String::new()).await;
    assert_eq!((status, body.as_str()), (200, "seeded"));
    // Outside the grants: S3's own refusal, which the guest reads whole even when it comes
    // before the guest has written its body (4 MiB, more than the host buffers, that the API
    // has no use for).
    let large = "x".repeat(4 << 20);
    for (method, to, upload) in [
        (reqwest::Method::PUT, "/s3/pics-ro/nope", "x"),
        (reqwest::Method::PUT, "/s3/pics-ro/nope", large.as_str()),
        (reqwest::Method::PUT, "/s3/elsewhere/k", "x"),
        (reqwest::Method::GET, "/s3/elsewhere/k", "x"),
        (reqwest::Method::GET, "/s3/elsewhere/k", large.as_str()),
        (reqwest::Method::PUT, "/s3/new-bucket", "x"),
    ] {
        let (status, _, body) = forward(method.clone(), to, upload.to_owned()).await;
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

/// The Rust AWS SDK (`aws-sdk-s3`) against the endpoint, with its default request checksums:
/// small and streamed puts, multipart, listings, batch delete, a presigned GET, and a wrong
/// secret refused. A recording proxy in front shows which payload framing the SDK chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_aws_sdk_works_unmodified() {
    use aws_sdk_s3::primitives::ByteStream;
    use sha2::Digest as _;
    let p = Platform::start().await;
    let key = p
        .client
        .create_key(&CreateKeyRequest {
            app: None,
            description: None,
        })
        .await
        .unwrap();
    let (proxy, seen) = recording_proxy(&aws_url(&p)).await;
    let client = |secret: &str| sdk(&proxy, &key.id, secret);
    let s3 = client(key.secret.as_deref().unwrap());
    s3.create_bucket().bucket("rusty").send().await.unwrap();
    s3.put_object()
        .bucket("rusty")
        .key("small.txt")
        .body(ByteStream::from_static(b"hello from rust"))
        .content_type("text/plain")
        .metadata("origin", "sdk")
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket("rusty")
        .key("small.txt")
        .send()
        .await
        .unwrap();
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(got.metadata().unwrap()["origin"], "sdk");
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(&bytes[..], b"hello from rust");

    // A 6 MiB file, streamed from disk.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    s3.put_object()
        .bucket("rusty")
        .key("big.bin")
        .body(ByteStream::from_path(&path).await.unwrap())
        .send()
        .await
        .unwrap();
    let back = read_all(&s3, "rusty", "big.bin").await;
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&back)),
        hex::encode(sha2::Sha256::digest(&data))
    );
    // The CRC32 its trailer carried comes back when asked for, and the SDK checks it.
    let checked = s3
        .get_object()
        .bucket("rusty")
        .key("big.bin")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    let crc32 = checked
        .checksum_crc32()
        .expect("the stored CRC32")
        .to_owned();
    assert_eq!(
        checked.body.collect().await.unwrap().into_bytes().len(),
        6 << 20
    );
    let head = s3
        .head_object()
        .bucket("rusty")
        .key("big.bin")
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert_eq!(head.checksum_crc32(), Some(crc32.as_str()));

    // Multipart: 5 MiB + 1 KiB.
    let upload = s3
        .create_multipart_upload()
        .bucket("rusty")
        .key("parts.bin")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (number, part) in [(1, &data[..5 << 20]), (2, &data[..1024])] {
        let uploaded = s3
            .upload_part()
            .bucket("rusty")
            .key("parts.bin")
            .upload_id(id)
            .part_number(number)
            .body(ByteStream::from(part.to_vec()))
            .send()
            .await
            .unwrap();
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(number)
                .e_tag(uploaded.e_tag().unwrap())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket("rusty")
        .key("parts.bin")
        .upload_id(id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("rusty")
        .key("parts.bin")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_length(), Some((5 << 20) + 1024));
    assert!(
        head.e_tag().unwrap().ends_with("-2\""),
        "{:?}",
        head.e_tag()
    );

    let listed = s3
        .list_objects_v2()
        .bucket("rusty")
        .prefix("b")
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["big.bin"]);

    // Presigned GET, fetched with a plain HTTP client.
    let presigned = s3
        .get_object()
        .bucket("rusty")
        .key("small.txt")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap(),
        )
        .await
        .unwrap();
    let response = reqwest::get(presigned.uri()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello from rust");

    let deleted = s3
        .delete_objects()
        .bucket("rusty")
        .delete(
            aws_sdk_s3::types::Delete::builder()
                .objects(
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key("small.txt")
                        .build()
                        .unwrap(),
                )
                .objects(
                    aws_sdk_s3::types::ObjectIdentifier::builder()
                        .key("big.bin")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.deleted().len(), 2);

    // A wrong secret is S3's SignatureDoesNotMatch.
    let error = client("not-the-secret")
        .list_buckets()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    assert_eq!(error.code(), Some("SignatureDoesNotMatch"), "{error:?}");

    // What the SDK sent for its uploads: which payload framing it chose.
    let heads = seen.lock().unwrap().clone();
    let puts: Vec<&String> = heads.iter().filter(|h| h.starts_with("PUT ")).collect();
    // The file went as signed aws-chunked frames with a trailing CRC32: the framing was
    // checked and stripped (the bytes read back above are the file's).
    assert!(
        puts.iter().any(|h| h.contains("PUT /rusty/big.bin")
            && h.contains("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
            && h.contains("x-amz-trailer: x-amz-checksum-crc32")),
        "{puts:#?}"
    );
    p.stop().await;
}

/// An `aws-sdk-s3` client for `endpoint` with a key, over plain HTTP.
pub(crate) fn sdk(endpoint: &str, id: &str, secret: &str) -> aws_sdk_s3::Client {
    sdk_session(endpoint, id, secret, None)
}

/// The whole of one object, read with the SDK.
async fn read_all(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    got.body.collect().await.unwrap().into_bytes().to_vec()
}

/// [`sdk`] with temporary credentials' session token.
fn sdk_session(
    endpoint: &str,
    id: &str,
    secret: &str,
    token: Option<String>,
) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(id, secret, token, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// kill -9 racing multipart completions (at different moments after the request is sent):
/// after each restart the object is the old one or the new one, whole (SHA-256), an upload
/// that did not complete is still there to retry or abort, and only live blobs remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_multipart_complete_leaves_old_or_new_whole() {
    use crate::restart::{connect, spawn_server};
    use aws_sdk_s3::primitives::ByteStream;
    use sha2::Digest as _;
    let sha = |bytes: &[u8]| hex::encode(sha2::Sha256::digest(bytes));
    let dir = crate::support::data_dir();
    let mut server = spawn_server(dir.path());
    let (client, _) = connect(dir.path()).await;
    let key = client
        .create_key(&CreateKeyRequest {
            app: None,
            description: None,
        })
        .await
        .unwrap();
    let secret = key.secret.unwrap();
    let endpoint = || {
        std::fs::read_to_string(dir.path().join("aws.url"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let s3 = sdk(&endpoint(), &key.id, &secret);
    s3.create_bucket().bucket("mpu").send().await.unwrap();
    let original = vec![b'o'; 1 << 20];
    s3.put_object()
        .bucket("mpu")
        .key("file")
        .body(ByteStream::from(original.clone()))
        .send()
        .await
        .unwrap();
    let (mut current, mut current_blobs) = (sha(&original), 1);
    let mut completed_rounds = 0;
    for (round, delay_ms) in [0u64, 1, 3, 10].into_iter().enumerate() {
        let s3 = sdk(&endpoint(), &key.id, &secret);
        let first: Vec<u8> = (0..5u32 << 20).map(|i| (i as u8) ^ round as u8).collect();
        let last = vec![round as u8; 4096];
        let upload = s3
            .create_multipart_upload()
            .bucket("mpu")
            .key("file")
            .send()
            .await
            .unwrap();
        let id = upload.upload_id().unwrap().to_owned();
        let mut parts = Vec::new();
        for (number, bytes) in [(1, &first), (2, &last)] {
            let uploaded = s3
                .upload_part()
                .bucket("mpu")
                .key("file")
                .upload_id(&id)
                .part_number(number)
                .body(ByteStream::from(bytes.clone()))
                .send()
                .await
                .unwrap();
            parts.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(number)
                    .e_tag(uploaded.e_tag().unwrap())
                    .build(),
            );
        }
        let expected = sha(&[first.as_slice(), last.as_slice()].concat());
        let complete = tokio::spawn({
            let (s3, id) = (s3.clone(), id.clone());
            async move {
                s3.complete_multipart_upload()
                    .bucket("mpu")
                    .key("file")
                    .upload_id(id)
                    .multipart_upload(
                        aws_sdk_s3::types::CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        let acknowledged = complete.await.unwrap().is_ok();

        server = spawn_server(dir.path());
        connect(dir.path()).await;
        let s3 = sdk(&endpoint(), &key.id, &secret);
        let bytes = read_all(&s3, "mpu", "file").await;
        let now = sha(&bytes);
        let pending = s3
            .list_multipart_uploads()
            .bucket("mpu")
            .send()
            .await
            .unwrap()
            .uploads()
            .len();
        if now == expected {
            completed_rounds += 1;
            assert_eq!(pending, 0, "a completed upload is gone");
            (current, current_blobs) = (now, 2);
        } else {
            assert_eq!(
                now, current,
                "round {round}: neither the old object nor the new one"
            );
            assert!(
                !acknowledged,
                "round {round}: an acknowledged completion was lost"
            );
            assert_eq!(pending, 1, "an upload that did not complete can be retried");
            s3.abort_multipart_upload()
                .bucket("mpu")
                .key("file")
                .upload_id(&id)
                .send()
                .await
                .unwrap();
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects/blobs"))
                .unwrap()
                .count(),
            current_blobs,
            "round {round}: only the live object's blobs"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("objects/tmp"))
                .unwrap()
                .count(),
            0
        );
    }
    // Which rounds completed depends on timing; say what was exercised.
    eprintln!("{completed_rounds} of 4 completions committed before the kill");
}

/// A TCP proxy to `upstream` that records each request's first line and its
/// `x-amz-content-sha256`, `content-encoding` and `x-amz-trailer` headers.
async fn recording_proxy(
    upstream: &str,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            let record = record.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut in_read, mut in_write) = inbound.split();
                let (mut out_read, mut out_write) = outbound.split();
                let requests = async {
                    let mut buffer = vec![0u8; 64 << 10];
                    let mut pending = Vec::new();
                    loop {
                        let n = in_read.read(&mut buffer).await?;
                        if n == 0 {
                            break;
                        }
                        pending.extend_from_slice(&buffer[..n]);
                        // Record every request head that starts in what has passed so far.
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&pending[..end]).to_string();
                            let mut lines = head.lines();
                            let first = lines.next().unwrap_or("").to_owned();
                            if first.contains(" HTTP/1.1") {
                                let wanted: Vec<String> = lines
                                    .filter(|l| {
                                        let l = l.to_ascii_lowercase();
                                        l.starts_with("x-amz-content-sha256")
                                            || l.starts_with("content-encoding")
                                            || l.starts_with("x-amz-trailer")
                                    })
                                    .map(str::to_owned)
                                    .collect();
                                record
                                    .lock()
                                    .unwrap()
                                    .push(format!("{first} | {}", wanted.join(" | ")));
                            }
                            pending.drain(..end + 4);
                        }
                        if pending.len() > 1 << 20 {
                            pending.clear();
                        }
                        out_write.write_all(&buffer[..n]).await?;
                    }
                    out_write.shutdown().await
                };
                let responses = tokio::io::copy(&mut out_read, &mut in_write);
                let _ = tokio::join!(requests, responses);
            });
        }
    });
    (url, seen)
}
