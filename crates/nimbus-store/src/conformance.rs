//! The conformance suites every store backend must pass, and a fault-injecting wrapper.
//! Compiled only with the `conformance` feature: backends enable it in their dev-dependencies.
//!
//! A backend's tests call [`run_all`] with a factory for fresh, empty registry and record
//! stores, and [`queue::run_all`] with one for fresh queues — also wrapped in
//! [`unreliable::Unreliable`], which proves that a failed call surfaces as an error and leaves
//! the state as it was (the suite retries what failed, as the driver does).

// Test support: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::{AccessKeyRecord, KeyStore, NewVersion, RecordStore, Registry, StoreError, sha256_hex};
use nimbus_core::{InvocationRecord, Outcome};
use std::collections::BTreeMap;

pub mod auth;
pub mod kv;
pub mod objects;
pub mod queue;
pub mod secrets;
pub mod tables;
pub mod unreliable;

/// A store under test: the registry-side traits on one value.
pub trait Store: Registry + RecordStore + KeyStore {}
impl<T: Registry + RecordStore + KeyStore> Store for T {}

pub async fn run_all<S: Store>(make: impl Fn() -> S) {
    artifacts_are_content_addressed(&make()).await;
    deploy_activates_and_rollback_restores(&make()).await;
    remove_app_forgets_everything(&make()).await;
    records_are_sequenced_and_bounded(&make()).await;
    usage_adds_up_per_function_per_hour(&make()).await;
    access_keys_are_unique_and_revocable(&make()).await;
}

/// The [`crate::AdminStore`] suite.
pub async fn admin_tokens_and_audit(store: &impl crate::AdminStore) {
    let token = |id: &str, scope: &str| crate::AdminTokenRecord {
        id: id.to_owned(),
        name: Some("ci".into()),
        scope: scope.to_owned(),
        hash: format!("{id:0>64}"),
        created_ms: 9,
    };
    assert!(store.admin_tokens().await.unwrap().is_empty());
    assert!(
        store
            .insert_admin_token(token("at_b", "read"))
            .await
            .unwrap()
    );
    assert!(
        store
            .insert_admin_token(token("at_a", "deploy"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_admin_token(token("at_a", "admin"))
            .await
            .unwrap(),
        "ids are unique"
    );
    let listed = store.admin_tokens().await.unwrap();
    assert_eq!(listed, vec![token("at_a", "deploy"), token("at_b", "read")]);
    assert!(store.remove_admin_token("at_a").await.unwrap());
    assert!(!store.remove_admin_token("at_a").await.unwrap());
    assert_eq!(store.admin_tokens().await.unwrap().len(), 1);

    let entry = |actor: &str, status: u16| crate::AuditEntry {
        seq: 0,
        time_ms: 5,
        actor: actor.to_owned(),
        method: "POST".into(),
        path: "/v1/deploy".into(),
        status,
    };
    assert!(store.audit(0, 10).await.unwrap().is_empty());
    for (i, actor) in ["root", "at_b", "root"].iter().enumerate() {
        let seq = store
            .append_audit(entry(actor, 200 + i as u16))
            .await
            .unwrap();
        assert_eq!(seq, i as u64 + 1, "numbered in order");
    }
    let all = store.audit(0, 10).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(all[1].actor, "at_b");
    assert_eq!(all[1].status, 201);
    assert_eq!(
        store.audit(1, 1).await.unwrap()[0].seq,
        2,
        "after and limit page"
    );
    assert!(store.audit(3, 10).await.unwrap().is_empty());
}

/// The [`crate::ApiKeyStore`] suite.
pub async fn api_keys_are_unique_per_app_and_revocable(store: &impl crate::ApiKeyStore) {
    let key = |app: &str, id: &str| crate::ApiKeyRecord {
        id: id.to_owned(),
        app: app.to_owned(),
        hash: format!("{id:0>64}"),
        name: Some("mobile".into()),
        rate: Some(10),
        rate_per_ms: Some(1000),
        burst: Some(20),
        quota_per_day: Some(5000),
        created_ms: 3,
    };
    assert!(store.api_keys("shop").await.unwrap().is_empty());
    assert!(store.insert_api_key(key("shop", "ak_b")).await.unwrap());
    assert!(store.insert_api_key(key("shop", "ak_a")).await.unwrap());
    assert!(
        store.insert_api_key(key("blog", "ak_a")).await.unwrap(),
        "ids are per app"
    );
    assert!(
        !store.insert_api_key(key("shop", "ak_a")).await.unwrap(),
        "an id is never reused"
    );
    let ids: Vec<String> = store
        .api_keys("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["ak_a", "ak_b"]);
    assert_eq!(
        store.api_keys("shop").await.unwrap()[0],
        key("shop", "ak_a")
    );
    assert!(store.remove_api_key("shop", "ak_a").await.unwrap());
    assert!(!store.remove_api_key("shop", "ak_a").await.unwrap());
    assert_eq!(store.api_keys("shop").await.unwrap().len(), 1);
    assert_eq!(
        store.api_keys("blog").await.unwrap().len(),
        1,
        "other apps keep theirs"
    );
}

pub async fn access_keys_are_unique_and_revocable(store: &impl Store) {
    let key = |id: &str, app: Option<&str>| AccessKeyRecord {
        id: id.to_owned(),
        app: app.map(str::to_owned),
        sealed_secret: vec![1, 2, 3],
        created_ms: 7,
        description: Some("ci".to_owned()),
    };
    assert_eq!(store.key("NK1").await.unwrap(), None);
    assert!(store.insert_key(key("NK2", None)).await.unwrap());
    assert!(store.insert_key(key("NK1", Some("shop"))).await.unwrap());
    assert!(
        !store.insert_key(key("NK1", None)).await.unwrap(),
        "an id is never reused"
    );
    assert_eq!(
        store.key("NK1").await.unwrap(),
        Some(key("NK1", Some("shop")))
    );
    let ids: Vec<String> = store
        .keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ids, ["NK1", "NK2"]);
    // Resealing swaps the secret only from the expected one.
    assert!(!store.reseal_key("NK1", &[9], vec![4]).await.unwrap());
    assert!(
        store
            .reseal_key("NK1", &[1, 2, 3], vec![4, 5])
            .await
            .unwrap()
    );
    let resealed = store.key("NK1").await.unwrap().unwrap();
    assert_eq!(resealed.sealed_secret, [4, 5]);
    assert_eq!(
        resealed.app.as_deref(),
        Some("shop"),
        "nothing else changes"
    );
    assert!(!store.reseal_key("NK9", &[1, 2, 3], vec![4]).await.unwrap());
    assert!(store.remove_key("NK1").await.unwrap());
    assert!(!store.remove_key("NK1").await.unwrap());
    assert_eq!(store.key("NK1").await.unwrap(), None);
}

async fn version(store: &impl Store, manifest: &str) -> NewVersion {
    let bytes = format!("wasm for {manifest}");
    let digest = sha256_hex(bytes.as_bytes());
    store
        .put_artifact(&digest, bytes::Bytes::from(bytes.clone()))
        .await
        .expect("put artifact");
    NewVersion {
        manifest: manifest.to_owned(),
        functions: BTreeMap::from([("f".to_owned(), digest)]),
    }
}

pub async fn artifacts_are_content_addressed(store: &impl Store) {
    let bytes = b"\0asm not really";
    let digest = sha256_hex(bytes);
    assert!(!store.has_artifact(&digest).await.unwrap());
    assert!(matches!(
        store.get_artifact(&digest).await,
        Err(StoreError::ArtifactNotFound(_))
    ));
    let wrong = sha256_hex(b"other");
    assert!(matches!(
        store
            .put_artifact(&wrong, bytes::Bytes::from_static(bytes))
            .await,
        Err(StoreError::DigestMismatch { .. })
    ));
    store
        .put_artifact(&digest, bytes::Bytes::from_static(bytes))
        .await
        .unwrap();
    store
        .put_artifact(&digest, bytes::Bytes::from_static(bytes))
        .await
        .unwrap();
    assert_eq!(&*store.get_artifact(&digest).await.unwrap(), bytes);
    // A digest that is not hex must never become a path.
    assert!(store.get_artifact("../../etc/passwd").await.is_err());
}

pub async fn deploy_activates_and_rollback_restores(store: &impl Store) {
    assert!(matches!(
        store.app("shop").await,
        Err(StoreError::AppNotFound(_))
    ));
    let missing = NewVersion {
        manifest: "m".into(),
        functions: BTreeMap::from([("f".into(), sha256_hex(b"never"))]),
    };
    assert!(matches!(
        store.deploy("shop", missing).await,
        Err(StoreError::ArtifactNotFound(_))
    ));
    assert!(
        matches!(store.app("shop").await, Err(StoreError::AppNotFound(_))),
        "a failed deploy leaves nothing"
    );

    let v1 = store
        .deploy("shop", version(store, "one").await)
        .await
        .unwrap();
    assert_eq!(v1.number, 1);
    assert!(matches!(
        store.rollback("shop").await,
        Err(StoreError::NoPreviousVersion(_))
    ));
    let v2 = store
        .deploy("shop", version(store, "two").await)
        .await
        .unwrap();
    assert_eq!(v2.number, 2);
    assert_ne!(v1.digest, v2.digest);
    assert_eq!(store.app("shop").await.unwrap().active, Some(2));

    let back = store.rollback("shop").await.unwrap();
    assert_eq!(back.number, 1);
    assert_eq!(back.manifest, "one");
    assert_eq!(store.app("shop").await.unwrap().active, Some(1));
    assert!(matches!(
        store.rollback("shop").await,
        Err(StoreError::NoPreviousVersion(_))
    ));

    let v3 = store
        .deploy("shop", version(store, "three").await)
        .await
        .unwrap();
    assert_eq!(v3.number, 3, "numbers are never reused");
    assert_eq!(
        store.version("shop", 2).await.unwrap().manifest,
        "two",
        "versions are immutable and kept"
    );
    assert_eq!(store.apps().await.unwrap().len(), 1);
}

pub async fn remove_app_forgets_everything(store: &impl Store) {
    store
        .deploy("gone", version(store, "x").await)
        .await
        .unwrap();
    store
        .append_records(vec![record("gone", "f", "r1")])
        .await
        .unwrap();
    store.remove_app("gone").await.unwrap();
    assert!(matches!(
        store.app("gone").await,
        Err(StoreError::AppNotFound(_))
    ));
    assert!(store.records("gone", "f", 0, 10).await.unwrap().is_empty());
    assert!(matches!(
        store.remove_app("gone").await,
        Err(StoreError::AppNotFound(_))
    ));
}

pub async fn records_are_sequenced_and_bounded(store: &impl Store) {
    let batch: Vec<_> = (0..5).map(|i| record("a", "f", &format!("r{i}"))).collect();
    store.append_records(batch).await.unwrap();
    store
        .append_records(vec![record("a", "g", "other")])
        .await
        .unwrap();
    let all = store.records("a", "f", 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(&*all[0].request_id, "r0");
    let after = store.records("a", "f", 3, 100).await.unwrap();
    assert_eq!(
        after.iter().map(|r| &*r.request_id).collect::<Vec<_>>(),
        vec!["r3", "r4"]
    );
    assert_eq!(store.records("a", "f", 0, 2).await.unwrap().len(), 2);
    assert_eq!(store.records("a", "g", 0, 100).await.unwrap().len(), 1);
    assert_eq!(store.last_seq("a", "f").await.unwrap(), 5);
    assert_eq!(store.last_seq("a", "none").await.unwrap(), 0);
}

pub async fn usage_adds_up_per_function_per_hour(store: &impl Store) {
    use nimbus_core::record::USAGE_HOUR_MS;
    let hour = 400_000 * USAGE_HOUR_MS;
    let at = |app: &str, function: &str, start_ms: u64, duration_us: u64| InvocationRecord {
        start_ms,
        duration_us,
        ..record(app, function, "r")
    };
    store
        .append_records(vec![
            at("a", "f", hour + 1, 120_000),
            at("a", "f", hour + USAGE_HOUR_MS - 1, 1_500),
            at("a", "f", hour + USAGE_HOUR_MS, 10),
            at("a", "g", hour + 5, 1_000),
            at("b", "f", hour + 5, 1_000),
        ])
        .await
        .unwrap();
    // A later batch adds to the same hour.
    store
        .append_records(vec![InvocationRecord {
            cold: true,
            outcome: Outcome::Timeout,
            ..at("a", "f", hour + 7, 2_000)
        }])
        .await
        .unwrap();
    let rows = store.usage(Some("a"), 0).await.unwrap();
    let summary: Vec<(&str, u64, u64, u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            let u = &r.usage;
            (
                r.function.as_str(),
                r.hour_ms,
                u.invocations,
                u.billed_ms,
                u.errors,
                u.cold_starts,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("f", hour, 3, 120 + 2 + 2, 1, 1),
            ("f", hour + USAGE_HOUR_MS, 1, 1, 0, 0),
            ("g", hour, 1, 1, 0, 0),
        ]
    );
    assert_eq!(rows[0].usage.mib_ms, 128 * 124);
    assert!(rows.iter().all(|r| r.app == "a"));
    // Every app; and only hours that end after `since`.
    assert_eq!(store.usage(None, 0).await.unwrap().len(), 4);
    let recent = store.usage(None, hour + USAGE_HOUR_MS).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].hour_ms, hour + USAGE_HOUR_MS);
    assert!(store.usage(Some("none"), 0).await.unwrap().is_empty());
}

fn record(app: &str, function: &str, id: &str) -> InvocationRecord {
    InvocationRecord {
        seq: 0,
        request_id: id.into(),
        app: app.into(),
        function: function.into(),
        version: 1,
        start_ms: 0,
        start_us: 0,
        duration_us: 10,
        cold: false,
        trigger: nimbus_core::Trigger::Http,
        memory_bytes: 128 << 20,
        outcome: Outcome::Ok,
        status: 200,
        logs: String::new(),
    }
}

/// A clock that follows tokio's: under `#[tokio::test(start_paused = true)]` it moves only
/// when the runtime's time does (`tokio::time::advance`, or auto-advance when idle), so tests
/// of leases, retries and schedules run in milliseconds.
pub struct TokioClock {
    base_ms: u64,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `base_ms` now.
    pub fn new(base_ms: u64) -> TokioClock {
        TokioClock {
            base_ms,
            start: tokio::time::Instant::now(),
        }
    }
}

impl nimbus_core::clock::Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.base_ms + self.start.elapsed().as_millis() as u64
    }
}
