//! The [`TableStore`] suite.

use crate::tables::{
    Change, ItemKey, PageLimit, SortRange, TableError, TableId, TableMeta, TableStore,
};
use bytes::Bytes;
use std::ops::Bound;
use std::sync::Arc;

pub async fn run_all<S: TableStore + 'static>(make: impl Fn() -> S) {
    tables_are_created_once_and_deleted_with_their_items(&make()).await;
    writes_are_decided_on_the_current_items(&make()).await;
    refused_writes_change_nothing(&make()).await;
    queries_read_one_partition_in_order(&make()).await;
    scans_page_through_every_item(&make()).await;
    changes_are_recorded_with_their_commit(&make()).await;
    followers_are_woken_by_recorded_changes(Arc::new(make())).await;
    concurrent_decisions_lose_no_update(Arc::new(make())).await;
}

fn meta(stream: bool) -> TableMeta {
    TableMeta {
        spec: Bytes::from_static(b"spec"),
        stream,
    }
}

fn key(partition: &str, sort: &str) -> ItemKey {
    ItemKey {
        partition: partition.as_bytes().to_vec(),
        sort: sort.as_bytes().to_vec(),
    }
}

async fn put(store: &impl TableStore, id: &TableId, key: ItemKey, item: &str) {
    let item = Bytes::from(item.to_owned());
    store
        .write(
            vec![(id.clone(), key)],
            Box::new(move |_| Ok(vec![Change::Put(item)])),
        )
        .await
        .unwrap();
}

const UNLIMITED: PageLimit = PageLimit {
    items: usize::MAX,
    bytes: usize::MAX,
};

pub async fn tables_are_created_once_and_deleted_with_their_items(store: &impl TableStore) {
    let id = TableId::new("shop", "orders");
    assert!(store.table(&id).await.unwrap().is_none());
    assert!(store.create_table(&id, meta(false)).await.unwrap());
    assert!(!store.create_table(&id, meta(true)).await.unwrap());
    assert!(
        store
            .create_table(&TableId::new("other", "orders"), meta(false))
            .await
            .unwrap()
    );
    assert!(
        store
            .create_table(&TableId::new("shop", "carts"), meta(false))
            .await
            .unwrap()
    );
    assert_eq!(store.tables("shop").await.unwrap(), ["carts", "orders"]);
    assert_eq!(
        store.all_tables().await.unwrap(),
        [
            TableId::new("other", "orders"),
            TableId::new("shop", "carts"),
            TableId::new("shop", "orders"),
        ]
    );
    let info = store.table(&id).await.unwrap().unwrap();
    assert_eq!(info.meta, meta(false), "the first create's meta stands");
    assert_eq!((info.item_count, info.size_bytes), (0, 0));

    put(store, &id, key("a", ""), "12345").await;
    put(store, &id, key("b", ""), "123").await;
    put(store, &id, key("a", ""), "1").await;
    let info = store.table(&id).await.unwrap().unwrap();
    assert_eq!((info.item_count, info.size_bytes), (2, 4));

    store.update_table(&id, meta(true)).await.unwrap();
    assert_eq!(store.table(&id).await.unwrap().unwrap().meta, meta(true));

    assert!(store.delete_table(&id).await.unwrap());
    assert!(!store.delete_table(&id).await.unwrap());
    assert!(matches!(
        store.get(&[(id.clone(), key("a", ""))]).await,
        Err(TableError::NoSuchTable(_))
    ));
    assert!(matches!(
        store.update_table(&id, meta(false)).await,
        Err(TableError::NoSuchTable(_))
    ));
    assert!(store.create_table(&id, meta(false)).await.unwrap());
    assert_eq!(
        store.get(&[(id.clone(), key("a", ""))]).await.unwrap(),
        [None],
        "a table created again starts empty"
    );
}

pub async fn writes_are_decided_on_the_current_items(store: &impl TableStore) {
    let (a, b) = (TableId::new("shop", "a"), TableId::new("shop", "b"));
    store.create_table(&a, meta(false)).await.unwrap();
    store.create_table(&b, meta(false)).await.unwrap();
    put(store, &a, key("x", "1"), "old").await;
    let keys = vec![(a.clone(), key("x", "1")), (b.clone(), key("y", ""))];
    store
        .write(
            keys.clone(),
            Box::new(|current| {
                assert_eq!(current, [Some(Bytes::from_static(b"old")), None]);
                Ok(vec![
                    Change::Delete,
                    Change::Put(Bytes::from_static(b"new")),
                ])
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get(&keys).await.unwrap(),
        [None, Some(Bytes::from_static(b"new"))]
    );
    store
        .write(
            keys.clone(),
            Box::new(|_| Ok(vec![Change::Delete, Change::Keep])),
        )
        .await
        .unwrap();
    assert_eq!(store.table(&a).await.unwrap().unwrap().item_count, 0);
    assert_eq!(store.table(&b).await.unwrap().unwrap().item_count, 1);
    assert!(matches!(
        store
            .write(
                vec![(a.clone(), key("x", "1")), (a.clone(), key("x", "1"))],
                Box::new(|_| Ok(vec![Change::Keep, Change::Keep])),
            )
            .await,
        Err(TableError::DuplicateKey(_))
    ));
    assert!(matches!(
        store
            .write(
                vec![(TableId::new("shop", "nope"), key("x", ""))],
                Box::new(|_| Ok(vec![Change::Keep])),
            )
            .await,
        Err(TableError::NoSuchTable(_))
    ));
}

pub async fn refused_writes_change_nothing(store: &impl TableStore) {
    let id = TableId::new("shop", "t");
    store.create_table(&id, meta(true)).await.unwrap();
    put(store, &id, key("x", ""), "v1").await;
    let refused = store
        .write(
            vec![(id.clone(), key("x", "")), (id.clone(), key("y", ""))],
            Box::new(|_| Err("condition failed".into())),
        )
        .await;
    match refused {
        Err(TableError::Refused(reason)) => assert_eq!(reason.to_string(), "condition failed"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        store
            .get(&[(id.clone(), key("x", "")), (id.clone(), key("y", ""))])
            .await
            .unwrap(),
        [Some(Bytes::from_static(b"v1")), None]
    );
    assert_eq!(store.changes(&id, None, 10).await.unwrap().len(), 1);
    assert_eq!(store.table(&id).await.unwrap().unwrap().item_count, 1);
    // A decision that panics refuses its write and leaves the store working.
    let panicked = store
        .write(
            vec![(id.clone(), key("x", ""))],
            Box::new(|_| panic!("a bug in the caller")),
        )
        .await;
    assert!(
        matches!(panicked, Err(TableError::Refused(_))),
        "{panicked:?}"
    );
    put(store, &id, key("x", ""), "v2").await;
    assert_eq!(
        store.get(&[(id.clone(), key("x", ""))]).await.unwrap(),
        [Some(Bytes::from_static(b"v2"))]
    );
}

pub async fn queries_read_one_partition_in_order(store: &impl TableStore) {
    let id = TableId::new("shop", "q");
    store.create_table(&id, meta(false)).await.unwrap();
    // Neighbouring partitions, one a prefix of the other, must not leak into the query.
    for (p, s) in [
        ("p", "b"),
        ("p", "a"),
        ("p", "c"),
        ("p", "d"),
        ("pp", "a"),
        ("o", "z"),
    ] {
        put(store, &id, key(p, s), &format!("{p}{s}")).await;
    }
    let sorts = |page: crate::tables::ItemPage| {
        page.items
            .into_iter()
            .map(|(k, _)| String::from_utf8(k.sort).unwrap())
            .collect::<Vec<_>>()
    };
    let all = store
        .query(&id, b"p", SortRange::all(), true, None, UNLIMITED)
        .await
        .unwrap();
    assert!(!all.more);
    assert_eq!(sorts(all), ["a", "b", "c", "d"]);
    let back = store
        .query(&id, b"p", SortRange::all(), false, None, UNLIMITED)
        .await
        .unwrap();
    assert_eq!(sorts(back), ["d", "c", "b", "a"]);
    let range = SortRange {
        start: Bound::Excluded(b"a".to_vec()),
        end: Bound::Included(b"c".to_vec()),
    };
    let page = store
        .query(&id, b"p", range.clone(), true, None, UNLIMITED)
        .await
        .unwrap();
    assert_eq!(sorts(page), ["b", "c"]);
    let first = store
        .query(
            &id,
            b"p",
            SortRange::all(),
            false,
            None,
            PageLimit {
                items: 2,
                bytes: usize::MAX,
            },
        )
        .await
        .unwrap();
    assert!(first.more);
    assert_eq!(sorts(first), ["d", "c"]);
    let rest = store
        .query(&id, b"p", SortRange::all(), false, Some(b"c"), UNLIMITED)
        .await
        .unwrap();
    assert_eq!(sorts(rest), ["b", "a"]);
    let by_size = store
        .query(
            &id,
            b"p",
            SortRange::all(),
            true,
            None,
            PageLimit {
                items: usize::MAX,
                bytes: 3,
            },
        )
        .await
        .unwrap();
    assert!(by_size.more);
    assert_eq!(
        sorts(by_size),
        ["a", "b"],
        "a page stops once its items reach the byte limit"
    );
    let none = store
        .query(&id, b"q", SortRange::all(), true, None, UNLIMITED)
        .await
        .unwrap();
    assert!(none.items.is_empty() && !none.more);
}

pub async fn scans_page_through_every_item(store: &impl TableStore) {
    let id = TableId::new("shop", "s");
    let other = TableId::new("shop", "s2");
    store.create_table(&id, meta(false)).await.unwrap();
    store.create_table(&other, meta(false)).await.unwrap();
    for i in 0..25 {
        put(
            store,
            &id,
            key(&format!("p{:02}", i % 7), &format!("{i:02}")),
            "v",
        )
        .await;
    }
    put(store, &other, key("zz", ""), "not in the scan").await;
    let mut seen = Vec::new();
    let mut after: Option<ItemKey> = None;
    loop {
        let page = store
            .scan(
                &id,
                after.as_ref(),
                PageLimit {
                    items: 10,
                    bytes: usize::MAX,
                },
            )
            .await
            .unwrap();
        assert!(page.items.len() <= 10);
        after = page.items.last().map(|(k, _)| k.clone());
        seen.extend(page.items.into_iter().map(|(k, _)| k));
        if !page.more {
            break;
        }
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "a scan reads in key order");
}

pub async fn changes_are_recorded_with_their_commit(store: &impl TableStore) {
    let id = TableId::new("shop", "c");
    store.create_table(&id, meta(true)).await.unwrap();
    put(store, &id, key("a", ""), "1").await;
    put(store, &id, key("a", ""), "2").await;
    store
        .write(
            vec![(id.clone(), key("a", "")), (id.clone(), key("gone", ""))],
            Box::new(|_| Ok(vec![Change::Delete, Change::Delete])),
        )
        .await
        .unwrap();
    put(store, &id, key("b", ""), "3").await;
    store
        .write(
            vec![(id.clone(), key("b", ""))],
            Box::new(|_| Ok(vec![Change::Expire])),
        )
        .await
        .unwrap();
    let all_records = store.changes(&id, None, 10).await.unwrap();
    assert_eq!(
        store.last_change(&id).await.unwrap(),
        all_records.last().map(|r| r.sequence)
    );
    let shape: Vec<_> = all_records
        .iter()
        .map(|r| (r.key.clone(), r.old.clone(), r.new.clone(), r.expired))
        .collect();
    let b = |s: &'static str| Some(Bytes::from_static(s.as_bytes()));
    assert_eq!(
        shape,
        [
            (key("a", ""), None, b("1"), false),
            (key("a", ""), b("1"), b("2"), false),
            (key("a", ""), b("2"), None, false),
            (key("b", ""), None, b("3"), false),
            (key("b", ""), b("3"), None, true),
        ],
        "deleting what is not there records nothing; expiring is recorded as such"
    );
    assert_eq!(store.table(&id).await.unwrap().unwrap().item_count, 0);
    let records = &all_records[..3];
    assert!(records.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert!(records[0].sequence > 0, "sequences start above 0");
    assert_eq!(
        store.changes(&id, Some(0), 10).await.unwrap(),
        all_records,
        "after 0 is from the first record"
    );
    let later = store
        .changes(&id, Some(records[0].sequence), 1)
        .await
        .unwrap();
    assert_eq!(later, records[1..2]);

    let quiet = TableId::new("shop", "quiet");
    store.create_table(&quiet, meta(false)).await.unwrap();
    put(store, &quiet, key("a", ""), "1").await;
    assert!(store.changes(&quiet, None, 10).await.unwrap().is_empty());
    assert_eq!(store.last_change(&quiet).await.unwrap(), None);

    assert_eq!(store.trim_changes(&id, 0).await.unwrap(), 0);
    assert_eq!(store.trimmed_through(&id).await.unwrap(), 0);
    let newest = all_records.last().unwrap().at_ms;
    let all = store.trim_changes(&id, newest + 1).await.unwrap();
    assert_eq!(all, 5);
    assert!(store.changes(&id, None, 10).await.unwrap().is_empty());
    // The trim point stays where the last trimmed record was, and the next record is after it.
    let last = all_records.last().unwrap().sequence;
    assert_eq!(store.trimmed_through(&id).await.unwrap(), last);
    assert_eq!(store.trim_changes(&id, u64::MAX).await.unwrap(), 0);
    assert_eq!(store.trimmed_through(&id).await.unwrap(), last);
    put(store, &id, key("a", "after"), "1").await;
    let next = store.changes(&id, None, 10).await.unwrap();
    assert!(next.len() == 1 && next[0].sequence > last, "{next:?}");
    assert_eq!(store.trimmed_through(&quiet).await.unwrap(), 0);
    // A table created again under the name starts untrimmed.
    store.delete_table(&id).await.unwrap();
    store.create_table(&id, meta(true)).await.unwrap();
    assert_eq!(store.trimmed_through(&id).await.unwrap(), 0);
}

pub async fn followers_are_woken_by_recorded_changes<S: TableStore + 'static>(store: Arc<S>) {
    let id = TableId::new("shop", "followed");
    let quiet = TableId::new("shop", "unfollowed");
    store.create_table(&id, meta(true)).await.unwrap();
    store.create_table(&quiet, meta(false)).await.unwrap();
    // A fresh store: nothing recorded yet.
    let seen = 0;
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move { store.changes_recorded(seen).await })
    };
    tokio::task::yield_now().await;
    put(&*store, &quiet, key("a", ""), "1").await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiting.is_finished(),
        "a commit that records nothing wakes no follower"
    );
    put(&*store, &id, key("a", ""), "1").await;
    let now = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("a recorded change wakes the follower")
        .unwrap();
    assert!(now > seen);
    // A change recorded before the wait is not missed.
    put(&*store, &id, key("a", ""), "2").await;
    let later = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        store.changes_recorded(now),
    )
    .await
    .expect("a change recorded before the wait answers it at once");
    assert!(later > now);
}

pub async fn concurrent_decisions_lose_no_update<S: TableStore + 'static>(store: Arc<S>) {
    let id = TableId::new("shop", "counter");
    store.create_table(&id, meta(true)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move {
                for _ in 0..25 {
                    store
                        .write(
                            vec![(id.clone(), key("n", ""))],
                            Box::new(|current| {
                                let n: u64 = current[0].as_ref().map_or(0, |b| {
                                    std::str::from_utf8(b).unwrap().parse().unwrap()
                                });
                                Ok(vec![Change::Put(Bytes::from((n + 1).to_string()))])
                            }),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let got = store.get(&[(id.clone(), key("n", ""))]).await.unwrap();
    assert_eq!(got, [Some(Bytes::from_static(b"200"))]);
    assert_eq!(store.changes(&id, None, 1000).await.unwrap().len(), 200);
}
