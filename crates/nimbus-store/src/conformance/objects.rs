//! The [`ObjectStore`] conformance suite.

use crate::BoxError;
use crate::objects::{ByteRange, ByteStream, NewObject, ObjectError, ObjectStore, PutCondition};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;

/// Run every case, each on a fresh store from `make`.
pub async fn run_all<S: ObjectStore>(make: impl Fn() -> S) {
    buckets_belong_to_apps_and_must_be_empty_to_go(&make()).await;
    objects_round_trip_in_chunks_with_md5_etags(&make()).await;
    ranges_are_clamped_and_checked(&make()).await;
    overwrites_and_conditions(&make()).await;
    a_failed_body_leaves_the_old_object(&make()).await;
    listings_are_ordered_filtered_and_paged(&make()).await;
    readers_finish_the_version_they_began(&make()).await;
}

/// A body of `chunks`.
pub fn body(chunks: &[&[u8]]) -> ByteStream {
    let chunks: Vec<Result<Bytes, BoxError>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

/// A body that fails after `chunks`.
pub fn failing_body(chunks: &[&[u8]]) -> ByteStream {
    let mut items: Vec<Result<Bytes, BoxError>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    items.push(Err("the client went away".into()));
    Box::pin(futures::stream::iter(items))
}

pub async fn read(stream: ByteStream) -> Vec<u8> {
    let chunks: Vec<Bytes> = stream.try_collect().await.expect("read the body");
    chunks.concat()
}

/// A put with default metadata.
async fn put_with(
    store: &impl ObjectStore,
    bucket: &str,
    key: &str,
    condition: PutCondition,
    body: ByteStream,
) -> crate::objects::ObjectResult<crate::objects::ObjectInfo> {
    store
        .put_object(bucket, key, NewObject::default(), condition, body)
        .await
}

async fn put(store: &impl ObjectStore, bucket: &str, key: &str, bytes: &[u8]) {
    put_with(store, bucket, key, PutCondition::Always, body(&[bytes]))
        .await
        .expect("put");
}

pub async fn buckets_belong_to_apps_and_must_be_empty_to_go(store: &impl ObjectStore) {
    assert!(matches!(
        store.bucket("photos").await,
        Err(ObjectError::NoSuchBucket(_))
    ));
    let created = store.create_bucket("photos", Some("shop")).await.unwrap();
    assert_eq!(
        (created.name.as_str(), created.app.as_deref()),
        ("photos", Some("shop"))
    );
    assert_eq!(store.bucket("photos").await.unwrap(), created);
    match store.create_bucket("photos", Some("other")).await {
        Err(ObjectError::BucketExists { app, .. }) => assert_eq!(app.as_deref(), Some("shop")),
        other => panic!("a second create must be refused: {other:?}"),
    }
    store.create_bucket("archive", Some("shop")).await.unwrap();
    // An operator's bucket belongs to no app.
    let operators = store.create_bucket("shared", None).await.unwrap();
    assert_eq!(operators.app, None);
    assert_eq!(store.bucket("shared").await.unwrap().app, None);
    match store.create_bucket("shared", Some("shop")).await {
        Err(ObjectError::BucketExists { app, .. }) => assert_eq!(app, None),
        other => panic!("a second create must be refused: {other:?}"),
    }
    store.delete_bucket("shared").await.unwrap();
    let names: Vec<String> = store
        .buckets()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["archive", "photos"]);
    put(store, "photos", "a.jpg", b"x").await;
    assert!(matches!(
        store.delete_bucket("photos").await,
        Err(ObjectError::BucketNotEmpty(_))
    ));
    assert!(store.delete_object("photos", "a.jpg").await.unwrap());
    store.delete_bucket("photos").await.unwrap();
    assert!(matches!(
        store.delete_bucket("photos").await,
        Err(ObjectError::NoSuchBucket(_))
    ));
    assert!(matches!(
        put_with(store, "photos", "k", PutCondition::Always, body(&[b"x"])).await,
        Err(ObjectError::NoSuchBucket(_))
    ));
}

pub async fn objects_round_trip_in_chunks_with_md5_etags(store: &impl ObjectStore) {
    store.create_bucket("b", Some("app")).await.unwrap();
    let mut headers = BTreeMap::new();
    headers.insert("x-amz-meta-owner".to_owned(), "ada".to_owned());
    headers.insert("cache-control".to_owned(), "max-age=60".to_owned());
    let object = NewObject {
        content_type: Some("text/plain".into()),
        headers: headers.clone(),
    };
    let info = store
        .put_object(
            "b",
            "dir/hello.txt",
            object,
            PutCondition::Always,
            body(&[b"hello ", b"", b"world"]),
        )
        .await
        .unwrap();
    assert_eq!(info.size, 11);
    // MD5 of "hello world".
    assert_eq!(info.etag, "5eb63bbbe01eeed093cb22bb8f5acdc3");
    let head = store.head_object("b", "dir/hello.txt").await.unwrap();
    assert_eq!(head, info);
    assert_eq!(head.content_type.as_deref(), Some("text/plain"));
    assert_eq!(head.headers, headers);
    let (got, stream) = store.get_object("b", "dir/hello.txt", None).await.unwrap();
    assert_eq!(got, info);
    assert_eq!(read(stream).await, b"hello world");
    // An empty object is an object.
    let empty = put_with(store, "b", "empty", PutCondition::Always, body(&[]))
        .await
        .unwrap();
    assert_eq!(
        (empty.size, empty.etag.as_str()),
        (0, "d41d8cd98f00b204e9800998ecf8427e")
    );
    let (_, stream) = store.get_object("b", "empty", None).await.unwrap();
    assert!(read(stream).await.is_empty());
    // Keys are strings, not paths: nothing escapes the store.
    for key in ["../../escape", "/abs", "a//b", "dot/./x", "ünï/ç😀de"] {
        put(store, "b", key, key.as_bytes()).await;
        let (_, stream) = store.get_object("b", key, None).await.unwrap();
        assert_eq!(read(stream).await, key.as_bytes(), "{key}");
    }
    assert!(matches!(
        store.head_object("b", "missing").await,
        Err(ObjectError::NoSuchKey { .. })
    ));
    assert!(matches!(
        put_with(store, "b", "", PutCondition::Always, body(&[])).await,
        Err(ObjectError::InvalidKey(_))
    ));
    let long = "k".repeat(crate::objects::MAX_KEY_BYTES + 1);
    assert!(matches!(
        put_with(store, "b", &long, PutCondition::Always, body(&[])).await,
        Err(ObjectError::InvalidKey(_))
    ));
}

pub async fn ranges_are_clamped_and_checked(store: &impl ObjectStore) {
    store.create_bucket("r", Some("app")).await.unwrap();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let chunks: Vec<&[u8]> = bytes.chunks(7_000).collect();
    put_with(store, "r", "big", PutCondition::Always, body(&chunks))
        .await
        .unwrap();
    for (range, expect) in [
        (0..10, &bytes[0..10]),
        (99_990..100_000, &bytes[99_990..]),
        (99_990..200_000, &bytes[99_990..]),
        (6_999..7_001, &bytes[6_999..7_001]),
    ] {
        let (info, stream) = store
            .get_object("r", "big", Some(range.clone().into()))
            .await
            .unwrap();
        assert_eq!(info.size, 100_000, "the info is the whole object's");
        assert_eq!(read(stream).await, expect, "{range:?}");
    }
    for (range, expect) in [
        (ByteRange::Suffix(10), &bytes[99_990..]),
        (ByteRange::Suffix(1 << 40), &bytes[..]),
        (
            ByteRange::From {
                start: 99_999,
                end: None,
            },
            &bytes[99_999..],
        ),
    ] {
        let (_, stream) = store.get_object("r", "big", Some(range)).await.unwrap();
        assert_eq!(read(stream).await, expect, "{range:?}");
    }
    for unsatisfiable in [
        (100_000..100_010).into(),
        ByteRange::Suffix(0),
        ByteRange::From {
            start: 100_000,
            end: None,
        },
    ] {
        assert!(matches!(
            store.get_object("r", "big", Some(unsatisfiable)).await,
            Err(ObjectError::InvalidRange { size: 100_000 })
        ));
    }
}

pub async fn overwrites_and_conditions(store: &impl ObjectStore) {
    store.create_bucket("c", Some("app")).await.unwrap();
    let first = put_with(store, "c", "k", PutCondition::IfAbsent, body(&[b"one"]))
        .await
        .unwrap();
    assert!(matches!(
        put_with(store, "c", "k", PutCondition::IfAbsent, body(&[b"two"])).await,
        Err(ObjectError::PreconditionFailed)
    ));
    assert!(matches!(
        put_with(
            store,
            "c",
            "k",
            PutCondition::IfMatch("0".repeat(32)),
            body(&[b"two"])
        )
        .await,
        Err(ObjectError::PreconditionFailed)
    ));
    let (_, stream) = store.get_object("c", "k", None).await.unwrap();
    assert_eq!(read(stream).await, b"one", "refused puts change nothing");
    let second = put_with(
        store,
        "c",
        "k",
        PutCondition::IfMatch(first.etag.clone()),
        body(&[b"two"]),
    )
    .await
    .unwrap();
    assert_ne!(second.etag, first.etag);
    let (_, stream) = store.get_object("c", "k", None).await.unwrap();
    assert_eq!(read(stream).await, b"two");
    assert!(store.delete_object("c", "k").await.unwrap());
    assert!(!store.delete_object("c", "k").await.unwrap(), "idempotent");
    assert!(matches!(
        put_with(
            store,
            "c",
            "k",
            PutCondition::IfMatch(second.etag),
            body(&[b"three"])
        )
        .await,
        Err(ObjectError::PreconditionFailed)
    ));
}

pub async fn a_failed_body_leaves_the_old_object(store: &impl ObjectStore) {
    store.create_bucket("f", Some("app")).await.unwrap();
    put(store, "f", "k", b"old").await;
    assert!(matches!(
        put_with(
            store,
            "f",
            "k",
            PutCondition::Always,
            failing_body(&[b"new, but ", b"cut"])
        )
        .await,
        Err(ObjectError::Body(_))
    ));
    let (_, stream) = store.get_object("f", "k", None).await.unwrap();
    assert_eq!(read(stream).await, b"old");
    assert!(matches!(
        put_with(
            store,
            "f",
            "fresh",
            PutCondition::Always,
            failing_body(&[b"x"])
        )
        .await,
        Err(ObjectError::Body(_))
    ));
    assert!(matches!(
        store.head_object("f", "fresh").await,
        Err(ObjectError::NoSuchKey { .. })
    ));
}

pub async fn listings_are_ordered_filtered_and_paged(store: &impl ObjectStore) {
    store.create_bucket("l", Some("app")).await.unwrap();
    store.create_bucket("l2", Some("app")).await.unwrap();
    let keys = ["b/2", "a", "b/1", "b/10", "c", "b", "ba"];
    for key in keys {
        put(store, "l", key, key.as_bytes()).await;
    }
    put(store, "l2", "b/other-bucket", b"x").await;
    let all: Vec<String> = store
        .list_objects("l", "", None, 100)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        all,
        ["a", "b", "b/1", "b/10", "b/2", "ba", "c"],
        "bytewise order"
    );
    let page = store.list_objects("l", "b/", None, 2).await.unwrap();
    let got: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(got, ["b/1", "b/10"]);
    assert!(page.truncated);
    let rest = store
        .list_objects("l", "b/", Some("b/10"), 2)
        .await
        .unwrap();
    let got: Vec<&str> = rest.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(got, ["b/2"]);
    assert!(!rest.truncated);
    assert_eq!(rest.objects[0].size, 3);
    assert!(
        store
            .list_objects("l", "zzz", None, 10)
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    assert!(matches!(
        store.list_objects("nope", "", None, 10).await,
        Err(ObjectError::NoSuchBucket(_))
    ));
}

pub async fn readers_finish_the_version_they_began(store: &impl ObjectStore) {
    store.create_bucket("v", Some("app")).await.unwrap();
    let old: Vec<u8> = vec![b'o'; 300_000];
    put(store, "v", "k", &old).await;
    let (_, mut stream) = store.get_object("v", "k", None).await.unwrap();
    let mut got = stream
        .next()
        .await
        .expect("a first chunk")
        .expect("readable")
        .to_vec();
    put(store, "v", "k", b"new").await;
    assert!(store.delete_object("v", "k").await.unwrap());
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("the old version stays readable"));
    }
    assert_eq!(got, old);
}
