//! The [`ObjectStore`] conformance suite.

use crate::BoxError;
use crate::objects::{
    ByteRange, ByteStream, Change, Created, MIN_PART_BYTES, NewObject, NewPart, NotificationRule,
    ObjectError, ObjectStore, PutCondition, multipart_etag,
};
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
    sizes_either_side_of_storage_thresholds_round_trip(&make()).await;
    multipart_uploads_join_their_parts_in_order(&make()).await;
    completing_checks_order_etags_and_sizes_and_changes_nothing_when_refused(&make()).await;
    aborted_uploads_and_deleted_buckets_take_their_parts(&make()).await;
    multipart_readers_finish_the_version_they_began(&make()).await;
    changes_record_events_in_their_own_commit(&make()).await;
    headers_known_at_the_end_of_the_body_are_stored(&make()).await;
    parts_keep_their_headers_and_completion_adds_the_objects(&make()).await;
    concurrent_puts_each_commit_once_and_conditions_see_each_other(&make()).await;
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
        ..NewObject::default()
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
    // A single-part object is its own part 1, and has no other.
    assert!(head.parts.is_empty());
    let (_, stream) = store
        .get_object("b", "dir/hello.txt", Some(ByteRange::Part(1)))
        .await
        .unwrap();
    assert_eq!(read(stream).await, b"hello world");
    assert!(matches!(
        store
            .get_object("b", "dir/hello.txt", Some(ByteRange::Part(2)))
            .await,
        Err(ObjectError::InvalidRange { .. })
    ));
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

/// Backends keep small and large objects differently (inline rows, files, chunks): every size
/// near the usual boundaries reads back whole and in ranges, and replacing an object by one
/// of another size, or deleting it, leaves exactly the last one written.
pub async fn sizes_either_side_of_storage_thresholds_round_trip(store: &impl ObjectStore) {
    store.create_bucket("s", Some("app")).await.unwrap();
    let sizes = [
        0usize,
        1,
        4 << 10,
        (16 << 10) + 1,
        (64 << 10) - 1,
        64 << 10,
        (64 << 10) + 1,
        (128 << 10) + 7,
        1 << 20,
    ];
    for (seed, size) in sizes.into_iter().enumerate() {
        let bytes = pattern(seed as u8, size);
        // In one chunk, and in uneven chunks that cross the boundaries.
        for (n, chunk) in [(0, size.max(1)), (1, 10_007)] {
            let key = format!("{size}-{n}");
            let chunks: Vec<&[u8]> = bytes.chunks(chunk).collect();
            let info = put_with(store, "s", &key, PutCondition::Always, body(&chunks))
                .await
                .unwrap();
            assert_eq!(info.size, size as u64, "{key}");
            let (got, stream) = store.get_object("s", &key, None).await.unwrap();
            assert_eq!(got, info, "{key}");
            assert!(read(stream).await == bytes, "{key} reads back whole");
            if size > 2 {
                let (_, stream) = store
                    .get_object("s", &key, Some((1..size as u64 - 1).into()))
                    .await
                    .unwrap();
                assert!(read(stream).await == bytes[1..size - 1], "{key} in a range");
            }
            assert!(matches!(
                store
                    .get_object("s", &key, Some((size as u64..size as u64 + 1).into()))
                    .await,
                Err(ObjectError::InvalidRange { .. })
            ));
        }
    }
    // Small, then large, then small again, then gone; a failed body changes nothing.
    let (small, large) = (pattern(1, 100), pattern(2, 300_000));
    for bytes in [&small, &large, &small, &large] {
        put(store, "s", "swap", bytes).await;
        let (_, stream) = store.get_object("s", "swap", None).await.unwrap();
        assert!(read(stream).await == *bytes);
    }
    assert!(matches!(
        put_with(
            store,
            "s",
            "swap",
            PutCondition::Always,
            failing_body(&[&small])
        )
        .await,
        Err(ObjectError::Body(_))
    ));
    let (_, stream) = store.get_object("s", "swap", None).await.unwrap();
    assert!(read(stream).await == large);
    put(store, "s", "swap", &small).await;
    let (_, mut stream) = store.get_object("s", "swap", None).await.unwrap();
    assert!(store.delete_object("s", "swap").await.unwrap());
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("the deleted version stays readable"));
    }
    assert_eq!(got, small);
    assert!(matches!(
        store.head_object("s", "swap").await,
        Err(ObjectError::NoSuchKey { .. })
    ));
}

/// `len` bytes of a pattern that differs per `seed`, so misplaced parts show.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Upload part `number` of the upload `(bucket, key, id)`; its ETag.
async fn part(
    store: &impl ObjectStore,
    (bucket, key, upload): (&str, &str, &str),
    number: u32,
    bytes: &[u8],
) -> String {
    let chunks: Vec<&[u8]> = bytes.chunks(1 << 20).collect();
    store
        .put_part(
            bucket,
            key,
            upload,
            number,
            NewPart::default(),
            body(&chunks),
        )
        .await
        .expect("put part")
        .etag
}

pub async fn multipart_uploads_join_their_parts_in_order(store: &impl ObjectStore) {
    store.create_bucket("m", Some("app")).await.unwrap();
    let object = NewObject {
        content_type: Some("video/mp4".into()),
        headers: BTreeMap::from([("x-amz-meta-take".into(), "2".into())]),
        ..NewObject::default()
    };
    let upload = store
        .create_upload("m", "movie.mp4", object.clone())
        .await
        .unwrap();
    assert_eq!(upload.key, "movie.mp4");
    let min = MIN_PART_BYTES as usize;
    let (one, two, three) = (pattern(1, min), pattern(2, min + 7), pattern(3, 1000));
    // Parts may arrive in any order, and a part may be sent again.
    let e3 = part(store, ("m", "movie.mp4", &upload.id), 3, &three).await;
    part(store, ("m", "movie.mp4", &upload.id), 2, b"a first try").await;
    let e2 = part(store, ("m", "movie.mp4", &upload.id), 2, &two).await;
    let e1 = part(store, ("m", "movie.mp4", &upload.id), 1, &one).await;
    let (listed, parts) = store.upload("m", "movie.mp4", &upload.id).await.unwrap();
    assert_eq!(listed, upload);
    let numbers: Vec<(u32, u64)> = parts.iter().map(|p| (p.number, p.size)).collect();
    assert_eq!(numbers, [(1, min as u64), (2, min as u64 + 7), (3, 1000)]);
    assert_eq!(
        store.uploads("m", "").await.unwrap(),
        std::slice::from_ref(&upload)
    );
    assert!(store.uploads("m", "other").await.unwrap().is_empty());
    // Not visible until completed.
    assert!(matches!(
        store.head_object("m", "movie.mp4").await,
        Err(ObjectError::NoSuchKey { .. })
    ));
    let info = store
        .complete_upload(
            "m",
            "movie.mp4",
            &upload.id,
            &[(1, e1.clone()), (2, format!("\"{e2}\"")), (3, e3.clone())],
            BTreeMap::new(),
            PutCondition::Always,
        )
        .await
        .unwrap();
    let whole = [one.as_slice(), &two, &three].concat();
    assert_eq!(info.size, whole.len() as u64);
    assert_eq!(info.etag, multipart_etag(&[&e1, &e2, &e3]).unwrap());
    assert!(info.etag.ends_with("-3"));
    assert_eq!(info.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(info.headers, object.headers);
    // Reads report the parts, and read one by its number.
    let sizes = vec![min as u64, min as u64 + 7, 1000];
    assert_eq!(info.parts, sizes);
    assert_eq!(
        store.head_object("m", "movie.mp4").await.unwrap().parts,
        sizes
    );
    let (part, stream) = store
        .get_object("m", "movie.mp4", Some(ByteRange::Part(2)))
        .await
        .unwrap();
    assert_eq!(part.parts, sizes);
    assert!(
        read(stream).await == two,
        "part 2 is the second part's bytes"
    );
    for beyond in [0, 4] {
        assert!(matches!(
            store
                .get_object("m", "movie.mp4", Some(ByteRange::Part(beyond)))
                .await,
            Err(ObjectError::InvalidRange { .. })
        ));
    }
    let (_, stream) = store.get_object("m", "movie.mp4", None).await.unwrap();
    assert!(read(stream).await == whole, "the parts, in order");
    // Ranges across part boundaries.
    for (start, end) in [
        (min as u64 - 3, min as u64 + 3),
        (10, 2 * min as u64 + 100),
        (0, 1),
    ] {
        let range = ByteRange::From {
            start,
            end: Some(end),
        };
        let (_, stream) = store
            .get_object("m", "movie.mp4", Some(range))
            .await
            .unwrap();
        assert!(
            read(stream).await == whole[start as usize..end as usize],
            "{start}..{end}"
        );
    }
    let (_, stream) = store
        .get_object("m", "movie.mp4", Some(ByteRange::Suffix(1500)))
        .await
        .unwrap();
    assert!(read(stream).await == whole[whole.len() - 1500..]);
    // The upload is over.
    assert!(matches!(
        store.upload("m", "movie.mp4", &upload.id).await,
        Err(ObjectError::NoSuchUpload(_))
    ));
    assert!(store.uploads("m", "").await.unwrap().is_empty());
    assert!(matches!(
        store
            .put_part(
                "m",
                "movie.mp4",
                &upload.id,
                4,
                NewPart::default(),
                body(&[b"late"])
            )
            .await,
        Err(ObjectError::NoSuchUpload(_))
    ));
}

pub async fn completing_checks_order_etags_and_sizes_and_changes_nothing_when_refused(
    store: &impl ObjectStore,
) {
    store.create_bucket("c", Some("app")).await.unwrap();
    put(store, "c", "k", b"old").await;
    let upload = store
        .create_upload("c", "k", NewObject::default())
        .await
        .unwrap();
    let min = MIN_PART_BYTES as usize;
    let e1 = part(store, ("c", "k", &upload.id), 1, &pattern(1, min)).await;
    let small = part(store, ("c", "k", &upload.id), 2, b"small").await;
    let e3 = part(store, ("c", "k", &upload.id), 3, b"last").await;
    for (listed, refused) in [
        (vec![(2, small.clone()), (1, e1.clone())], "out of order"),
        (vec![(1, e1.clone()), (1, e1.clone())], "repeated"),
        (vec![(1, e1.clone()), (4, e3.clone())], "never uploaded"),
        (vec![(1, e3.clone())], "wrong ETag"),
        (
            vec![(1, e1.clone()), (2, small.clone()), (3, e3.clone())],
            "small middle part",
        ),
    ] {
        let result = store
            .complete_upload(
                "c",
                "k",
                &upload.id,
                &listed,
                BTreeMap::new(),
                PutCondition::Always,
            )
            .await;
        match (refused, result) {
            ("out of order" | "repeated", Err(ObjectError::InvalidPartOrder)) => {}
            ("never uploaded" | "wrong ETag", Err(ObjectError::InvalidPart(_))) => {}
            ("small middle part", Err(ObjectError::PartTooSmall { part: 2, size: 5 })) => {}
            (refused, other) => panic!("{refused}: {other:?}"),
        }
    }
    assert!(matches!(
        store
            .complete_upload(
                "c",
                "k",
                &upload.id,
                &[(1, e1.clone()), (3, e3.clone())],
                BTreeMap::new(),
                PutCondition::IfAbsent
            )
            .await,
        Err(ObjectError::PreconditionFailed)
    ));
    let (_, stream) = store.get_object("c", "k", None).await.unwrap();
    assert_eq!(
        read(stream).await,
        b"old",
        "a refused completion changes nothing"
    );
    assert_eq!(store.upload("c", "k", &upload.id).await.unwrap().1.len(), 3);
    assert!(
        matches!(
            store.upload("c", "other-key", &upload.id).await,
            Err(ObjectError::NoSuchUpload(_))
        ),
        "an upload id names an upload of its own key only"
    );
    assert!(matches!(
        store
            .put_part(
                "c",
                "other-key",
                &upload.id,
                1,
                NewPart::default(),
                body(&[b"x"])
            )
            .await,
        Err(ObjectError::NoSuchUpload(_))
    ));
    // Parts may be skipped: the unlisted ones are discarded.
    let info = store
        .complete_upload(
            "c",
            "k",
            &upload.id,
            &[(1, e1), (3, e3)],
            BTreeMap::new(),
            PutCondition::Always,
        )
        .await
        .unwrap();
    assert_eq!(info.size, min as u64 + 4);
    assert!(matches!(
        store
            .put_part(
                "c",
                "k",
                "no-such-upload",
                1,
                NewPart::default(),
                body(&[b"x"])
            )
            .await,
        Err(ObjectError::NoSuchUpload(_))
    ));
    assert!(matches!(
        store
            .put_part("c", "k", &upload.id, 0, NewPart::default(), body(&[b"x"]))
            .await,
        Err(ObjectError::InvalidPart(0))
    ));
}

pub async fn aborted_uploads_and_deleted_buckets_take_their_parts(store: &impl ObjectStore) {
    store.create_bucket("a", Some("app")).await.unwrap();
    let upload = store
        .create_upload("a", "k", NewObject::default())
        .await
        .unwrap();
    part(store, ("a", "k", &upload.id), 1, b"part").await;
    store.abort_upload("a", "k", &upload.id).await.unwrap();
    assert!(matches!(
        store.abort_upload("a", "k", &upload.id).await,
        Err(ObjectError::NoSuchUpload(_))
    ));
    assert!(matches!(
        store
            .complete_upload(
                "a",
                "k",
                &upload.id,
                &[(1, "x".into())],
                BTreeMap::new(),
                PutCondition::Always
            )
            .await,
        Err(ObjectError::NoSuchUpload(_))
    ));
    let pending = store
        .create_upload("a", "k2", NewObject::default())
        .await
        .unwrap();
    part(store, ("a", "k2", &pending.id), 1, b"part").await;
    store.delete_bucket("a").await.unwrap();
    store.create_bucket("a", Some("app")).await.unwrap();
    assert!(store.uploads("a", "").await.unwrap().is_empty());
    assert!(matches!(
        store.create_upload("gone", "k", NewObject::default()).await,
        Err(ObjectError::NoSuchBucket(_))
    ));
}

pub async fn multipart_readers_finish_the_version_they_began(store: &impl ObjectStore) {
    store.create_bucket("r", Some("app")).await.unwrap();
    let upload = store
        .create_upload("r", "k", NewObject::default())
        .await
        .unwrap();
    let min = MIN_PART_BYTES as usize;
    let (one, two) = (pattern(1, min), pattern(2, 300_000));
    let e1 = part(store, ("r", "k", &upload.id), 1, &one).await;
    let e2 = part(store, ("r", "k", &upload.id), 2, &two).await;
    store
        .complete_upload(
            "r",
            "k",
            &upload.id,
            &[(1, e1), (2, e2)],
            BTreeMap::new(),
            PutCondition::Always,
        )
        .await
        .unwrap();
    let (_, mut stream) = store.get_object("r", "k", None).await.unwrap();
    let mut got = stream
        .next()
        .await
        .expect("a first chunk")
        .expect("readable")
        .to_vec();
    put(store, "r", "k", b"new").await;
    assert!(store.delete_object("r", "k").await.unwrap());
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("the old version stays readable"));
    }
    assert!(got == [one, two].concat(), "the whole old version");
}

fn rule(
    target: &str,
    created: bool,
    removed: bool,
    prefix: &str,
    suffix: &str,
) -> NotificationRule {
    NotificationRule {
        target: target.into(),
        filter: nimbus_core::ObjectFilter {
            created,
            removed,
            prefix: prefix.into(),
            suffix: suffix.into(),
        },
    }
}

/// (target, key, change) of every pending event, in order.
async fn pending(store: &impl ObjectStore) -> Vec<(String, String, Change)> {
    let events = store.pending_events(1000).await.unwrap();
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "events come in sequence order"
    );
    events
        .into_iter()
        .map(|e| (e.target, e.key, e.change))
        .collect()
}

pub async fn changes_record_events_in_their_own_commit(store: &impl ObjectStore) {
    store.create_bucket("ev", Some("app")).await.unwrap();
    store.create_bucket("quiet", Some("app")).await.unwrap();
    // Nothing is recorded before a bucket has rules.
    put(store, "ev", "before.jpg", b"x").await;
    assert!(store.pending_events(10).await.unwrap().is_empty());
    store
        .set_notifications(
            "ev",
            vec![
                rule("thumbs", true, false, "in/", ".jpg"),
                rule("audit", true, true, "", ""),
            ],
        )
        .await
        .unwrap();
    assert_eq!(store.bucket("ev").await.unwrap().notifications.len(), 2);
    assert!(matches!(
        store.set_notifications("nope", vec![]).await,
        Err(ObjectError::NoSuchBucket(_))
    ));
    put(store, "ev", "in/cat.jpg", b"meow").await;
    put(store, "ev", "in/cat.png", b"png").await;
    put(store, "quiet", "in/dog.jpg", b"woof").await;
    // Changes that did not happen record nothing: a refused precondition, a failed body, a
    // delete of nothing.
    assert!(matches!(
        put_with(
            store,
            "ev",
            "in/cat.jpg",
            PutCondition::IfAbsent,
            body(&[b"again"])
        )
        .await,
        Err(ObjectError::PreconditionFailed)
    ));
    assert!(
        put_with(
            store,
            "ev",
            "in/bad.jpg",
            PutCondition::Always,
            failing_body(&[b"half"])
        )
        .await
        .is_err()
    );
    assert!(!store.delete_object("ev", "in/none.jpg").await.unwrap());
    assert!(store.delete_object("ev", "in/cat.jpg").await.unwrap());
    let copy = NewObject {
        origin: Created::Copy,
        ..NewObject::default()
    };
    store
        .put_object(
            "ev",
            "in/copy.jpg",
            copy,
            PutCondition::Always,
            body(&[b"c"]),
        )
        .await
        .unwrap();
    let put_ = Change::Created(Created::Put);
    let expected = [
        ("thumbs", "in/cat.jpg", put_),
        ("audit", "in/cat.jpg", put_),
        ("audit", "in/cat.png", put_),
        ("audit", "in/cat.jpg", Change::Removed),
        ("thumbs", "in/copy.jpg", Change::Created(Created::Copy)),
        ("audit", "in/copy.jpg", Change::Created(Created::Copy)),
    ]
    .map(|(t, k, c)| (t.to_owned(), k.to_owned(), c));
    assert_eq!(pending(store).await, expected);
    // The removal carries the removed object's size and ETag.
    let events = store.pending_events(1000).await.unwrap();
    assert_eq!((events[3].size, events[3].bucket.as_str()), (4, "ev"));
    assert_eq!(events[3].etag, events[0].etag);
    // A relay that wakes after these commits does not wait.
    tokio::time::timeout(std::time::Duration::from_secs(5), store.events_recorded())
        .await
        .expect("recorded events wake the relay");
    // Settling is by sequence number, and numbers are never reused.
    store.settle_events(events[2].seq).await.unwrap();
    assert_eq!(pending(store).await, expected[3..]);
    store.settle_events(events[5].seq).await.unwrap();
    assert!(store.pending_events(10).await.unwrap().is_empty());
    let min = MIN_PART_BYTES as usize;
    let upload = store
        .create_upload("ev", "in/big.jpg", NewObject::default())
        .await
        .unwrap();
    let e1 = part(store, ("ev", "in/big.jpg", &upload.id), 1, &pattern(1, min)).await;
    assert!(
        store.pending_events(10).await.unwrap().is_empty(),
        "parts are not objects"
    );
    store
        .complete_upload(
            "ev",
            "in/big.jpg",
            &upload.id,
            &[(1, e1)],
            BTreeMap::new(),
            PutCondition::Always,
        )
        .await
        .unwrap();
    let after = store.pending_events(10).await.unwrap();
    assert_eq!(after.len(), 2);
    assert!(after[0].seq > events[5].seq);
    assert_eq!(
        after[0].change,
        Change::Created(Created::CompleteMultipartUpload)
    );
    assert_eq!(after[0].size, min as u64);
    // Rules replaced by none: nothing more is recorded.
    store.set_notifications("ev", vec![]).await.unwrap();
    put(store, "ev", "in/late.jpg", b"late").await;
    assert_eq!(store.pending_events(10).await.unwrap().len(), 2);
}

pub async fn headers_known_at_the_end_of_the_body_are_stored(store: &impl ObjectStore) {
    store.create_bucket("tr", None).await.unwrap();
    let slot = std::sync::Arc::new(std::sync::OnceLock::new());
    let set = slot.clone();
    let body: ByteStream = Box::pin(
        futures::stream::iter([Ok(Bytes::from_static(b"payload"))]).chain(futures::stream::once(
            async move {
                let _ = set.set(BTreeMap::from([(
                    "x-amz-checksum-crc32".to_owned(),
                    "trailer".to_owned(),
                )]));
                Ok(Bytes::new())
            },
        )),
    );
    let object = NewObject {
        headers: BTreeMap::from([("x-amz-meta-a".into(), "1".into())]),
        trailing: Some(slot),
        ..NewObject::default()
    };
    store
        .put_object("tr", "k", object, PutCondition::Always, body)
        .await
        .unwrap();
    let info = store.head_object("tr", "k").await.unwrap();
    assert_eq!(info.headers["x-amz-checksum-crc32"], "trailer");
    assert_eq!(info.headers["x-amz-meta-a"], "1");
    assert_eq!(info.size, 7);
}

/// A body of `bytes` that sets `slot` to `trailing` as it ends, as an `aws-chunked` trailer
/// arrives after the last chunk.
fn body_with_trailer(
    bytes: &'static [u8],
    slot: std::sync::Arc<std::sync::OnceLock<BTreeMap<String, String>>>,
    trailing: BTreeMap<String, String>,
) -> ByteStream {
    Box::pin(
        futures::stream::iter([Ok(Bytes::from_static(bytes))]).chain(futures::stream::once(
            async move {
                let _ = slot.set(trailing);
                Ok(Bytes::new())
            },
        )),
    )
}

pub async fn parts_keep_their_headers_and_completion_adds_the_objects(store: &impl ObjectStore) {
    store.create_bucket("ph", None).await.unwrap();
    let object = NewObject {
        headers: BTreeMap::from([("x-amz-checksum-algorithm".into(), "CRC32".into())]),
        ..NewObject::default()
    };
    let upload = store.create_upload("ph", "k", object).await.unwrap();
    assert_eq!(
        store.upload_info("ph", "k", &upload.id).await.unwrap(),
        upload
    );
    assert!(matches!(
        store.upload_info("ph", "other", &upload.id).await,
        Err(ObjectError::NoSuchUpload(_))
    ));
    let first = pattern(7, MIN_PART_BYTES as usize);
    let given = NewPart {
        headers: BTreeMap::from([("x-amz-checksum-crc32".into(), "given".into())]),
        trailing: None,
    };
    let chunks: Vec<&[u8]> = first.chunks(1 << 20).collect();
    let one = store
        .put_part("ph", "k", &upload.id, 1, given, body(&chunks))
        .await
        .unwrap();
    assert_eq!(one.headers["x-amz-checksum-crc32"], "given");
    let slot = std::sync::Arc::new(std::sync::OnceLock::new());
    let late = NewPart {
        headers: BTreeMap::new(),
        trailing: Some(slot.clone()),
    };
    let trailer = BTreeMap::from([("x-amz-checksum-crc32".to_owned(), "trailer".to_owned())]);
    let two = store
        .put_part(
            "ph",
            "k",
            &upload.id,
            2,
            late,
            body_with_trailer(b"tail", slot, trailer),
        )
        .await
        .unwrap();
    assert_eq!(two.headers["x-amz-checksum-crc32"], "trailer");
    let (_, parts) = store.upload("ph", "k", &upload.id).await.unwrap();
    assert_eq!(parts, [one.clone(), two.clone()]);
    let info = store
        .complete_upload(
            "ph",
            "k",
            &upload.id,
            &[(1, one.etag), (2, two.etag)],
            BTreeMap::from([("x-amz-checksum-crc32".into(), "whole-2".into())]),
            PutCondition::Always,
        )
        .await
        .unwrap();
    assert_eq!(info.headers["x-amz-checksum-crc32"], "whole-2");
    assert_eq!(info.headers["x-amz-checksum-algorithm"], "CRC32");
    assert_eq!(
        store.head_object("ph", "k").await.unwrap().headers,
        info.headers
    );
}

pub async fn concurrent_puts_each_commit_once_and_conditions_see_each_other(
    store: &impl ObjectStore,
) {
    store.create_bucket("cc", None).await.unwrap();
    // Create-only puts racing for one key: exactly one wins, whole.
    let racing = (0..40).map(|i| {
        let bytes = format!("writer {i}");
        async move {
            let outcome = put_with(
                store,
                "cc",
                "contested",
                PutCondition::IfAbsent,
                body(&[bytes.as_bytes()]),
            )
            .await;
            (bytes, outcome)
        }
    });
    let outcomes = futures::future::join_all(racing).await;
    let winners: Vec<&String> = outcomes
        .iter()
        .filter(|(_, o)| o.is_ok())
        .map(|(b, _)| b)
        .collect();
    assert_eq!(winners.len(), 1, "one create-only put wins");
    assert!(outcomes.iter().all(|(_, o)| match o {
        Ok(_) => true,
        Err(e) => matches!(e, ObjectError::PreconditionFailed),
    }));
    let (_, stream) = store.get_object("cc", "contested", None).await.unwrap();
    assert_eq!(read(stream).await, winners[0].as_bytes());
    // Puts to many keys at once, one into a bucket that does not exist: each lands or fails
    // alone.
    let many = (0..60).map(|i| async move {
        let bucket = if i == 30 { "missing" } else { "cc" };
        put_with(
            store,
            bucket,
            &format!("k{i:02}"),
            PutCondition::Always,
            body(&[format!("v{i}").as_bytes()]),
        )
        .await
    });
    let results = futures::future::join_all(many).await;
    for (i, result) in results.iter().enumerate() {
        if i == 30 {
            assert!(matches!(result, Err(ObjectError::NoSuchBucket(_))));
        } else {
            assert!(result.is_ok(), "k{i:02}: {result:?}");
        }
    }
    let listed = store.list_objects("cc", "k", None, 100).await.unwrap();
    assert_eq!(listed.objects.len(), 59);
    for object in &listed.objects {
        let (_, stream) = store.get_object("cc", &object.key, None).await.unwrap();
        assert_eq!(
            read(stream).await,
            format!(
                "v{}",
                object.key[1..]
                    .trim_start_matches('0')
                    .parse::<u32>()
                    .unwrap_or(0)
            )
            .as_bytes()
        );
    }
}
