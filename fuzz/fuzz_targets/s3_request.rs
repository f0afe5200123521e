//! Whatever a client sends the AWS-compatible endpoint — any method, path, query, headers
//! (SigV4 and SigV2 `Authorization` headers, presigned query strings, `x-amz-*`), any body
//! (XML for batch deletes and multipart completion, `aws-chunked` framing) — the service
//! answers with a status, and a panic never escapes the endpoint — S3 and the JSON-protocol
//! services (DynamoDB, DynamoDB Streams, by `x-amz-target`) alike. One store and one valid
//! access key for the whole run, so signed-looking requests reach the signature check.
//!
//! Input: the method on the first line, the path and query on the second, then `name: value`
//! header lines up to an empty line; the rest is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

struct Endpoint {
    runtime: tokio::runtime::Runtime,
    service: nimbus_aws::Endpoint,
    _dir: tempfile::TempDir,
}

fn endpoint() -> &'static Endpoint {
    static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).expect("store"));
        let keys = nimbus_aws::Keys::new(
            store.clone(),
            Arc::new(nimbus_aws::MasterKey::from_bytes(&[1; 32])),
        );
        runtime.block_on(async {
            use nimbus_store::ObjectStore as _;
            store.create_bucket("fuzz", None).await.expect("bucket");
            keys.create(None, None).await.expect("key");
        });
        let tables: Arc<dyn nimbus_store::tables::TableStore> = store.clone();
        let objects: Arc<dyn nimbus_store::ObjectStore> = store;
        let service = nimbus_aws::service(
            nimbus_aws::Services {
                s3: nimbus_objects::Objects::new(objects.clone()),
                access: nimbus_objects::Access::new(objects, keys.clone(), Default::default()),
                json: vec![
                    Arc::new(nimbus_tables::DynamoService::new(tables.clone())),
                    Arc::new(nimbus_tables::StreamsService::new(tables)),
                ],
            },
            keys,
            Some("s3.fuzz.test"),
        )
        .expect("service");
        Endpoint {
            runtime,
            service,
            _dir: dir,
        }
    })
}

fn request(data: &[u8]) -> Option<http::Request<s3s::Body>> {
    let text_end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(data.len());
    let head = std::str::from_utf8(data.get(..text_end)?).ok()?;
    let body = data.get(text_end + 2..).unwrap_or_default().to_vec();
    let mut lines = head.split('\n');
    let method = http::Method::from_bytes(lines.next()?.as_bytes()).ok()?;
    let uri: http::Uri = lines.next()?.parse().ok()?;
    let mut builder = http::Request::builder().method(method).uri(uri);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    builder.body(s3s::Body::from(body)).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = request(data) else {
        return;
    };
    let endpoint = endpoint();
    // Through the listener's own entry point, which answers a panic inside s3s with a 500.
    // Built with -O (fuzz/run.sh): see there for the one overflow s3s has with checks on.
    let response = endpoint
        .runtime
        .block_on(nimbus_aws::call(&endpoint.service, request, "fuzz"));
    let status = response.status().as_u16();
    assert!((200..600).contains(&status), "status {status}");
});
