//! The [`KvStore`] conformance suite.

use crate::kv::{
    KeyPage, KvChange, KvCondition, KvError, KvStore, KvStoreId, MAX_KEY_BYTES, MAX_VALUE_BYTES,
};
use bytes::Bytes;
use std::time::Duration;

/// Run every case, each on a fresh store from `make`.
pub async fn run_all<S: KvStore>(make: impl Fn() -> S) {
    stores_belong_to_apps_and_take_their_entries(&make()).await;
    entries_round_trip_with_versions_and_limits(&make()).await;
    conditional_writes_compare_versions(&make()).await;
    batches_are_all_or_nothing(&make()).await;
    keys_list_in_order_in_pages_per_store(&make()).await;
    counters_are_big_endian_and_checked(&make()).await;
    concurrent_increments_lose_nothing(&make()).await;
    refused_writes_leave_concurrent_ones_alone(&make()).await;
    entries_expire(&make()).await;
    changes_record_events_in_commit_order(&make()).await;
}

fn id(app: &str, store: &str) -> KvStoreId {
    KvStoreId::new(app, store)
}

async fn put(store: &impl KvStore, id: &KvStoreId, key: &str, value: &[u8]) -> u64 {
    store
        .set(
            id,
            key,
            Bytes::copy_from_slice(value),
            KvCondition::Always,
            None,
        )
        .await
        .expect("set")
        .expect("an unconditional set writes")
}

async fn value(store: &impl KvStore, id: &KvStoreId, key: &str) -> Option<Vec<u8>> {
    store
        .get(id, key)
        .await
        .expect("get")
        .map(|e| e.value.to_vec())
}

pub async fn stores_belong_to_apps_and_take_their_entries(store: &impl KvStore) {
    let (a, b) = (id("shop", "sessions"), id("blog", "sessions"));
    assert!(store.create_store(&a).await.unwrap());
    assert!(
        !store.create_store(&a).await.unwrap(),
        "creating is idempotent"
    );
    assert!(store.create_store(&b).await.unwrap());
    assert!(store.create_store(&id("shop", "carts")).await.unwrap());
    assert_eq!(
        store.stores("shop").await.unwrap(),
        ["carts", "sessions"],
        "by name"
    );
    put(store, &a, "k", b"shop's").await;
    put(store, &b, "k", b"blog's").await;
    assert_eq!(value(store, &a, "k").await.as_deref(), Some(&b"shop's"[..]));
    assert_eq!(value(store, &b, "k").await.as_deref(), Some(&b"blog's"[..]));
    assert!(store.delete_store(&a).await.unwrap());
    assert!(!store.delete_store(&a).await.unwrap());
    assert_eq!(store.stores("shop").await.unwrap(), ["carts"]);
    assert!(matches!(
        store.get(&a, "k").await,
        Err(KvError::NoSuchStore(missing)) if missing == a
    ));
    assert!(matches!(
        store
            .set(&a, "k", Bytes::new(), KvCondition::Always, None)
            .await,
        Err(KvError::NoSuchStore(_))
    ));
    assert!(matches!(
        store.increment(&a, "n", 1).await,
        Err(KvError::NoSuchStore(_))
    ));
    // A store made again starts empty.
    store.create_store(&a).await.unwrap();
    assert_eq!(value(store, &a, "k").await, None);
    assert_eq!(value(store, &b, "k").await.as_deref(), Some(&b"blog's"[..]));
}

pub async fn entries_round_trip_with_versions_and_limits(store: &impl KvStore) {
    let s = id("app", "s");
    store.create_store(&s).await.unwrap();
    assert_eq!(store.get(&s, "missing").await.unwrap(), None);
    let first = put(store, &s, "k", b"one").await;
    let entry = store.get(&s, "k").await.unwrap().unwrap();
    assert_eq!((entry.value.as_ref(), entry.version), (&b"one"[..], first));
    let second = put(store, &s, "k", b"one").await;
    assert_ne!(
        first, second,
        "every write makes a new version, same bytes or not"
    );
    // Empty values and keys, and keys that are not path-like, are values and keys.
    for key in ["", "a/b", "../x", "ünï😀", " "] {
        put(store, &s, key, key.as_bytes()).await;
        assert_eq!(value(store, &s, key).await.as_deref(), Some(key.as_bytes()));
    }
    put(store, &s, "empty", b"").await;
    assert_eq!(value(store, &s, "empty").await.as_deref(), Some(&b""[..]));
    assert!(store.delete(&s, "k").await.unwrap());
    assert!(!store.delete(&s, "k").await.unwrap());
    assert_eq!(value(store, &s, "k").await, None);
    // The limits, inclusive; past them, a clear error and nothing written.
    let long = "k".repeat(MAX_KEY_BYTES);
    let big = vec![7u8; MAX_VALUE_BYTES];
    put(store, &s, &long, &big).await;
    assert!(value(store, &s, &long).await == Some(big.clone()));
    let too_long = "k".repeat(MAX_KEY_BYTES + 1);
    assert!(matches!(
        store
            .set(&s, &too_long, Bytes::new(), KvCondition::Always, None)
            .await,
        Err(KvError::KeyTooLong { size }) if size == MAX_KEY_BYTES + 1
    ));
    let too_big = Bytes::from(vec![1u8; MAX_VALUE_BYTES + 1]);
    assert!(matches!(
        store
            .set(&s, &long, too_big, KvCondition::Always, None)
            .await,
        Err(KvError::ValueTooLarge { size }) if size == MAX_VALUE_BYTES + 1
    ));
    assert!(value(store, &s, &long).await == Some(big));
}

pub async fn conditional_writes_compare_versions(store: &impl KvStore) {
    let s = id("app", "c");
    store.create_store(&s).await.unwrap();
    let set = |key: &'static str, value: &'static [u8], condition| {
        store.set(&s, key, Bytes::from_static(value), condition, None)
    };
    let created = set("k", b"1", KvCondition::Absent).await.unwrap();
    assert!(created.is_some());
    assert_eq!(set("k", b"2", KvCondition::Absent).await.unwrap(), None);
    assert_eq!(value(store, &s, "k").await.as_deref(), Some(&b"1"[..]));
    let version = created.unwrap();
    let swapped = set("k", b"2", KvCondition::Version(version)).await.unwrap();
    assert!(swapped.is_some_and(|v| v != version));
    assert_eq!(
        set("k", b"3", KvCondition::Version(version)).await.unwrap(),
        None,
        "a stale version swaps nothing"
    );
    assert_eq!(value(store, &s, "k").await.as_deref(), Some(&b"2"[..]));
    assert_eq!(
        set("absent", b"x", KvCondition::Version(version))
            .await
            .unwrap(),
        None,
        "no entry is at any version"
    );
    assert_eq!(value(store, &s, "absent").await, None);
    // Deleted, then absent again.
    store.delete(&s, "k").await.unwrap();
    assert!(set("k", b"4", KvCondition::Absent).await.unwrap().is_some());
}

pub async fn batches_are_all_or_nothing(store: &impl KvStore) {
    let s = id("app", "b");
    store.create_store(&s).await.unwrap();
    let entries = |pairs: &[(&str, &[u8])]| -> Vec<(String, Bytes)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Bytes::copy_from_slice(v)))
            .collect()
    };
    store
        .set_many(&s, entries(&[("a", b"1"), ("b", b"2"), ("c", b"3")]))
        .await
        .unwrap();
    let keys: Vec<String> = ["c", "missing", "a"].map(str::to_owned).to_vec();
    let got: Vec<Option<Vec<u8>>> = store
        .get_many(&s, &keys)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.map(|e| e.value.to_vec()))
        .collect();
    assert_eq!(got, [Some(b"3".to_vec()), None, Some(b"1".to_vec())]);
    let too_big = vec![0u8; MAX_VALUE_BYTES + 1];
    assert!(matches!(
        store
            .set_many(&s, entries(&[("a", b"new"), ("d", &too_big)]))
            .await,
        Err(KvError::ValueTooLarge { .. })
    ));
    assert_eq!(value(store, &s, "a").await.as_deref(), Some(&b"1"[..]));
    assert_eq!(value(store, &s, "d").await, None);
    store
        .delete_many(&s, &["a".to_owned(), "c".to_owned(), "never".to_owned()])
        .await
        .unwrap();
    let left = store.list_keys(&s, None, 10).await.unwrap();
    assert_eq!(left.keys, ["b"]);
    let too_long = "k".repeat(MAX_KEY_BYTES + 1);
    assert!(matches!(
        store.delete_many(&s, &["b".to_owned(), too_long]).await,
        Err(KvError::KeyTooLong { .. })
    ));
    assert_eq!(value(store, &s, "b").await.as_deref(), Some(&b"2"[..]));
}

pub async fn keys_list_in_order_in_pages_per_store(store: &impl KvStore) {
    // Store names that are prefixes of each other keep their keys apart.
    let (a, ab) = (id("app", "a"), id("app", "ab"));
    store.create_store(&a).await.unwrap();
    store.create_store(&ab).await.unwrap();
    let mut expected: Vec<String> = (0..25).map(|i| format!("key-{i:02}")).collect();
    expected.push("z".to_owned());
    expected.push("é".to_owned());
    for key in expected.iter().rev() {
        put(store, &a, key, b"v").await;
    }
    put(store, &ab, "key-00-other", b"v").await;
    let (mut listed, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let KeyPage { keys, next } = store.list_keys(&a, cursor.as_deref(), 10).await.unwrap();
        assert!(keys.len() <= 10);
        listed.extend(keys);
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, expected, "every key once, in byte order");
    let page = store.list_keys(&a, Some("key-23"), 10).await.unwrap();
    assert_eq!(page.keys, ["key-24", "z", "é"]);
    assert_eq!(page.next, None);
    assert_eq!(
        store.list_keys(&ab, None, 10).await.unwrap().keys,
        ["key-00-other"]
    );
}

pub async fn counters_are_big_endian_and_checked(store: &impl KvStore) {
    let s = id("app", "n");
    store.create_store(&s).await.unwrap();
    assert_eq!(store.increment(&s, "hits", 5).await.unwrap(), 5);
    assert_eq!(store.increment(&s, "hits", -7).await.unwrap(), -2);
    assert_eq!(
        value(store, &s, "hits").await.as_deref(),
        Some(&(-2i64).to_be_bytes()[..])
    );
    put(store, &s, "set", &41i64.to_be_bytes()).await;
    assert_eq!(store.increment(&s, "set", 1).await.unwrap(), 42);
    put(store, &s, "text", b"42").await;
    assert!(matches!(
        store.increment(&s, "text", 1).await,
        Err(KvError::NotACounter { size: 2, .. })
    ));
    assert_eq!(value(store, &s, "text").await.as_deref(), Some(&b"42"[..]));
    put(store, &s, "max", &i64::MAX.to_be_bytes()).await;
    assert!(matches!(
        store.increment(&s, "max", 1).await,
        Err(KvError::Overflow { .. })
    ));
    assert_eq!(
        value(store, &s, "max").await.as_deref(),
        Some(&i64::MAX.to_be_bytes()[..])
    );
    let version = store.get(&s, "hits").await.unwrap().unwrap().version;
    store.increment(&s, "hits", 0).await.unwrap();
    assert_ne!(
        store.get(&s, "hits").await.unwrap().unwrap().version,
        version,
        "an increment is a write"
    );
}

pub async fn concurrent_increments_lose_nothing(store: &impl KvStore) {
    let s = id("app", "race");
    store.create_store(&s).await.unwrap();
    let workers = (0..8).map(|_| async {
        for _ in 0..25 {
            store.increment(&s, "n", 1).await.unwrap();
        }
    });
    futures::future::join_all(workers).await;
    assert_eq!(store.increment(&s, "n", 0).await.unwrap(), 200);
    // Compare-and-swap loops, the other way to count.
    let workers = (0..4).map(|_| async {
        for _ in 0..10 {
            loop {
                let current = store.get(&s, "cas").await.unwrap();
                let (n, condition) = match &current {
                    Some(e) => (
                        i64::from_be_bytes(e.value.as_ref().try_into().unwrap()),
                        KvCondition::Version(e.version),
                    ),
                    None => (0, KvCondition::Absent),
                };
                let next = Bytes::copy_from_slice(&(n + 1).to_be_bytes());
                if store
                    .set(&s, "cas", next, condition, None)
                    .await
                    .unwrap()
                    .is_some()
                {
                    break;
                }
            }
        }
    });
    futures::future::join_all(workers).await;
    assert_eq!(store.increment(&s, "cas", 0).await.unwrap(), 40);
}

/// Writes in flight together (which a store may commit together) succeed or are refused each
/// on its own: a refusal among them changes nothing and costs the others nothing.
pub async fn refused_writes_leave_concurrent_ones_alone(store: &impl KvStore) {
    let s = id("app", "mixed");
    store.create_store(&s).await.unwrap();
    let first = put(store, &s, "text", b"abc").await;
    let missing = id("app", "never-created");
    let s = &s;
    let sets = (0..20).map(|i| {
        let key = format!("k{i}");
        async move { put(store, s, &key, key.as_bytes()).await }
    });
    let (versions, not_counter, no_store, taken, deleted, counted) = futures::join!(
        futures::future::join_all(sets),
        store.increment(s, "text", 1),
        store.set(
            &missing,
            "k",
            Bytes::from_static(b"x"),
            KvCondition::Always,
            None
        ),
        store.set(
            s,
            "text",
            Bytes::from_static(b"x"),
            KvCondition::Absent,
            None
        ),
        store.delete(s, "k-absent"),
        store.increment(s, "n", 5),
    );
    assert!(matches!(not_counter, Err(KvError::NotACounter { .. })));
    assert!(matches!(no_store, Err(KvError::NoSuchStore(_))));
    assert_eq!(
        taken.unwrap(),
        None,
        "an Absent condition on a live key is refused"
    );
    assert!(!deleted.unwrap());
    assert_eq!(counted.unwrap(), 5);
    let mut distinct = versions.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 20, "each write has its own version");
    assert!(versions.iter().all(|v| *v > first));
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(value(store, s, &key).await.as_deref(), Some(key.as_bytes()));
    }
    let text = store.get(s, "text").await.unwrap().unwrap();
    assert_eq!((&text.value[..], text.version), (&b"abc"[..], first));
    assert_eq!(
        store
            .list_keys(&missing, None, 10)
            .await
            .err()
            .map(|e| e.to_string()),
        Some(KvError::NoSuchStore(missing.clone()).to_string())
    );
}

pub async fn entries_expire(store: &impl KvStore) {
    let s = id("app", "ttl");
    store.create_store(&s).await.unwrap();
    let set = |key: &'static str, ttl: Option<Duration>| {
        store.set(&s, key, Bytes::from_static(b"v"), KvCondition::Always, ttl)
    };
    set("brief", Some(Duration::from_millis(500)))
        .await
        .unwrap();
    set("long", Some(Duration::from_secs(3600))).await.unwrap();
    set("forever", None).await.unwrap();
    set("renewed", Some(Duration::from_millis(30)))
        .await
        .unwrap();
    store.increment(&s, "counter", 1).await.unwrap();
    set("renewed", None).await.unwrap();
    assert!(value(store, &s, "brief").await.is_some());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(value(store, &s, "brief").await, None, "expired");
    assert!(
        store
            .set(&s, "brief", Bytes::new(), KvCondition::Absent, None)
            .await
            .unwrap()
            .is_some(),
        "an expired entry is absent"
    );
    store.delete(&s, "brief").await.unwrap();
    set("gone", Some(Duration::from_millis(1))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        store.list_keys(&s, None, 10).await.unwrap().keys,
        ["counter", "forever", "long", "renewed"],
        "listings skip expired entries"
    );
    assert_eq!(store.purge_expired(100).await.unwrap(), 1);
    assert_eq!(store.purge_expired(100).await.unwrap(), 0);
    assert!(value(store, &s, "long").await.is_some());
    assert!(
        value(store, &s, "renewed").await.is_some(),
        "a set without ttl keeps it"
    );
}

pub async fn changes_record_events_in_commit_order(store: &impl KvStore) {
    let (watched, quiet) = (id("app", "watched"), id("app", "quiet"));
    store.create_store(&watched).await.unwrap();
    store.create_store(&quiet).await.unwrap();
    assert!(matches!(
        store.set_events(&id("app", "missing"), true).await,
        Err(KvError::NoSuchStore(_))
    ));
    store.set_events(&watched, true).await.unwrap();
    assert!(store.pending_events(10).await.unwrap().is_empty());
    put(store, &quiet, "k", b"not watched").await;
    let version = put(store, &watched, "a", b"12345").await;
    assert!(
        store
            .set(&watched, "a", Bytes::new(), KvCondition::Absent, None)
            .await
            .unwrap()
            .is_none(),
        "a write whose condition fails records nothing"
    );
    store.increment(&watched, "n", 2).await.unwrap();
    assert!(store.delete(&watched, "a").await.unwrap());
    assert!(!store.delete(&watched, "a").await.unwrap());
    let pair = |k: &str| (k.to_owned(), Bytes::from_static(b"1"));
    store
        .set_many(&watched, vec![pair("b"), pair("c")])
        .await
        .unwrap();
    store
        .delete_many(&watched, &["b".to_owned(), "never".to_owned()])
        .await
        .unwrap();
    let brief = Some(Duration::from_millis(1));
    for key in ["purged", "rewritten"] {
        store
            .set(&watched, key, Bytes::new(), KvCondition::Always, brief)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.purge_expired(1).await.unwrap(), 1);
    put(store, &watched, "rewritten", b"again").await;
    tokio::time::timeout(Duration::from_secs(5), store.events_recorded())
        .await
        .expect("a recorded event wakes the relay");

    let events = store.pending_events(100).await.unwrap();
    let seen: Vec<(&str, KvChange, Option<u64>)> = events
        .iter()
        .map(|e| (e.key.as_str(), e.change, e.size))
        .collect();
    use KvChange::{Delete, Expire, Set};
    assert_eq!(
        seen,
        [
            ("a", Set, Some(5)),
            ("n", Set, Some(8)),
            ("a", Delete, None),
            ("b", Set, Some(1)),
            ("c", Set, Some(1)),
            ("b", Delete, None),
            ("purged", Set, Some(0)),
            ("rewritten", Set, Some(0)),
            ("purged", Expire, None),
            ("rewritten", Expire, None),
            ("rewritten", Set, Some(5)),
        ],
        "every change of the watched store, none of the other's, in commit order; an expired \
         entry's expiry is recorded once, by the purge or by the write that finds it"
    );
    assert!(events.iter().all(|e| e.store == watched));
    assert_eq!(events[0].version, Some(version));
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.pending_events(3).await.unwrap(), events[..3]);

    store.settle_events(events[2].seq).await.unwrap();
    assert_eq!(store.pending_events(100).await.unwrap(), events[3..]);
    store.set_events(&watched, false).await.unwrap();
    put(store, &watched, "after", b"off").await;
    assert_eq!(
        store.pending_events(100).await.unwrap(),
        events[3..],
        "a store no longer watched records nothing"
    );
    store.set_events(&watched, true).await.unwrap();
    store.settle_events(events[10].seq).await.unwrap();
    put(store, &watched, "later", b"on").await;
    let later = store.pending_events(100).await.unwrap();
    assert_eq!(later.len(), 1);
    assert!(
        later[0].seq > events[10].seq,
        "sequence numbers are never reused"
    );
    assert!(store.delete_store(&watched).await.unwrap());
    store.create_store(&watched).await.unwrap();
    store.settle_events(later[0].seq).await.unwrap();
    put(store, &watched, "fresh", b"x").await;
    assert!(
        store.pending_events(100).await.unwrap().is_empty(),
        "a store made again does not emit until told to"
    );
}
