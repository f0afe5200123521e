//! The [`SecretStore`] suite.

use crate::secrets::{SecretError, SecretInfo, SecretStore, SecretVersion};
use std::sync::Arc;

pub async fn run_all<S: SecretStore + 'static>(make: impl Fn() -> S) {
    versions_follow_one_another_per_app(&make()).await;
    old_versions_are_kept_up_to_the_limit(&make()).await;
    removal_forgets_every_version(&make()).await;
    reseal_replaces_only_what_it_saw(&make()).await;
    concurrent_writers_cannot_both_win(Arc::new(make())).await;
}

fn version(number: u64, sealed: &[u8]) -> SecretVersion {
    SecretVersion {
        version: number,
        created_ms: 100 + number,
        sealed: sealed.to_vec(),
    }
}

pub async fn versions_follow_one_another_per_app(store: &impl SecretStore) {
    assert_eq!(
        store.secret_version("shop", "stripe", None).await.unwrap(),
        None
    );
    assert!(store.secrets("shop").await.unwrap().is_empty());
    store
        .put_version("shop", "stripe", None, version(1, b"one"), 10)
        .await
        .unwrap();
    assert!(
        matches!(
            store
                .put_version("shop", "stripe", None, version(1, b"again"), 10)
                .await,
            Err(SecretError::Conflict { current: Some(1) })
        ),
        "creating an existing secret conflicts"
    );
    assert!(matches!(
        store
            .put_version("shop", "stripe", Some(1), version(3, b"skip"), 10)
            .await,
        Err(SecretError::OutOfOrder {
            given: 3,
            current: Some(1)
        })
    ));
    assert!(matches!(
        store
            .put_version("shop", "other", Some(4), version(5, b"x"), 10)
            .await,
        Err(SecretError::Conflict { current: None })
    ));
    store
        .put_version("shop", "stripe", Some(1), version(2, b"two"), 10)
        .await
        .unwrap();
    assert_eq!(
        store.secret_version("shop", "stripe", None).await.unwrap(),
        Some(version(2, b"two"))
    );
    assert_eq!(
        store
            .secret_version("shop", "stripe", Some(1))
            .await
            .unwrap(),
        Some(version(1, b"one")),
        "earlier versions stay readable"
    );
    assert_eq!(
        store
            .secret_version("shop", "stripe", Some(3))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.secret_version("blog", "stripe", None).await.unwrap(),
        None,
        "apps do not share secrets"
    );
    store
        .put_version("blog", "stripe", None, version(1, b"blog's"), 10)
        .await
        .unwrap();
    store
        .put_version("shop", "a-first", None, version(1, b"a"), 10)
        .await
        .unwrap();
    assert_eq!(
        store.secrets("shop").await.unwrap(),
        vec![
            SecretInfo {
                name: "a-first".into(),
                current: 1,
                versions: vec![(1, 101)],
            },
            SecretInfo {
                name: "stripe".into(),
                current: 2,
                versions: vec![(1, 101), (2, 102)],
            },
        ]
    );
}

pub async fn old_versions_are_kept_up_to_the_limit(store: &impl SecretStore) {
    let mut current = None;
    for n in 1..=5u64 {
        store
            .put_version("app", "key", current, version(n, &[n as u8]), 3)
            .await
            .unwrap();
        current = Some(n);
    }
    let listed = store.secrets("app").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].current, 5);
    assert_eq!(
        listed[0].versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert_eq!(
        store.secret_version("app", "key", Some(2)).await.unwrap(),
        None
    );
    assert_eq!(
        store.secret_version("app", "key", Some(3)).await.unwrap(),
        Some(version(3, &[3]))
    );
}

pub async fn removal_forgets_every_version(store: &impl SecretStore) {
    store
        .put_version("app", "gone", None, version(1, b"1"), 10)
        .await
        .unwrap();
    store
        .put_version("app", "gone", Some(1), version(2, b"2"), 10)
        .await
        .unwrap();
    store
        .put_version("app", "kept", None, version(1, b"k"), 10)
        .await
        .unwrap();
    assert!(store.remove_secret("app", "gone").await.unwrap());
    assert!(!store.remove_secret("app", "gone").await.unwrap());
    assert_eq!(
        store.secret_version("app", "gone", Some(1)).await.unwrap(),
        None
    );
    assert_eq!(
        store.secret_version("app", "gone", None).await.unwrap(),
        None
    );
    let names: Vec<String> = store
        .secrets("app")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["kept".to_owned()]);
    // A secret set again after its removal starts over.
    store
        .put_version("app", "gone", None, version(1, b"new"), 10)
        .await
        .unwrap();
    assert_eq!(
        store.secret_version("app", "gone", None).await.unwrap(),
        Some(version(1, b"new"))
    );
}

pub async fn reseal_replaces_only_what_it_saw(store: &impl SecretStore) {
    store
        .put_version("app", "k", None, version(1, b"old-wrap"), 10)
        .await
        .unwrap();
    store
        .put_version("other", "k", None, version(1, b"x"), 10)
        .await
        .unwrap();
    let mut all = store.all_secret_versions().await.unwrap();
    all.sort();
    assert_eq!(
        all,
        vec![
            ("app".to_owned(), "k".to_owned(), 1),
            ("other".to_owned(), "k".to_owned(), 1)
        ]
    );
    assert!(
        !store
            .reseal("app", "k", 1, b"not-what-is-there", b"y".to_vec())
            .await
            .unwrap()
    );
    assert!(
        store
            .reseal("app", "k", 1, b"old-wrap", b"new-wrap".to_vec())
            .await
            .unwrap()
    );
    let resealed = store
        .secret_version("app", "k", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resealed.sealed, b"new-wrap");
    assert_eq!(resealed.created_ms, 101, "only the sealed bytes change");
    assert!(
        !store
            .reseal("app", "missing", 1, b"old-wrap", b"z".to_vec())
            .await
            .unwrap()
    );
}

pub async fn concurrent_writers_cannot_both_win<S: SecretStore + 'static>(store: Arc<S>) {
    store
        .put_version("app", "race", None, version(1, b"1"), 10)
        .await
        .unwrap();
    let writers: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put_version("app", "race", Some(1), version(2, &[i]), 10)
                    .await
                    .is_ok()
            })
        })
        .collect();
    let mut won = 0;
    for writer in writers {
        if writer.await.unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one writer makes version 2");
    let info = store.secrets("app").await.unwrap();
    assert_eq!(info[0].versions.len(), 2);
}
