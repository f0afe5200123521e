//! The [`AuthStore`] suite.

use crate::auth::{
    AuthError, AuthStore, OneTimePurpose, Refreshed, SessionRecord, SigningKeyRecord, UserRecord,
};

pub async fn run_all<S: AuthStore>(make: impl Fn() -> S) {
    users_are_unique_by_email_per_app(&make()).await;
    refresh_rotates_tolerates_reuse_and_revokes_the_family(&make()).await;
    sessions_end_alone_or_together(&make()).await;
    one_time_tokens_are_taken_once(&make()).await;
    signing_keys_are_replaced_only_as_seen(&make()).await;
    removing_a_user_or_the_app_forgets_them(&make()).await;
}

fn user(id: &str, email: &str) -> UserRecord {
    UserRecord {
        id: id.to_owned(),
        email: email.to_owned(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        email_confirmed_ms: Some(5),
        confirmation_sent_ms: None,
        recovery_sent_ms: None,
        last_sign_in_ms: None,
        banned_until_ms: None,
        app_metadata: serde_json::json!({"provider": "email"})
            .as_object()
            .cloned()
            .unwrap(),
        user_metadata: Default::default(),
        created_ms: 1,
        updated_ms: 1,
    }
}

fn session(id: &str, user_id: &str) -> SessionRecord {
    SessionRecord {
        id: id.to_owned(),
        user_id: user_id.to_owned(),
        created_ms: 10,
        refreshed_ms: 10,
        not_after_ms: None,
    }
}

pub async fn users_are_unique_by_email_per_app(store: &impl AuthStore) {
    store
        .insert_user("shop", user("u1", "a@x.test"))
        .await
        .unwrap();
    assert!(matches!(
        store.insert_user("shop", user("u2", "a@x.test")).await,
        Err(AuthError::EmailTaken(_))
    ));
    // Another app's users are its own.
    store
        .insert_user("blog", user("u2", "a@x.test"))
        .await
        .unwrap();
    store
        .insert_user("shop", user("u3", "b@x.test"))
        .await
        .unwrap();
    assert_eq!(
        store
            .user_by_email("shop", "a@x.test")
            .await
            .unwrap()
            .unwrap()
            .id,
        "u1"
    );
    assert_eq!(store.user("shop", "u2").await.unwrap(), None);

    // Changing an address frees the old one and may not take another user's.
    let mut renamed = user("u1", "c@x.test");
    renamed.user_metadata.insert("name".into(), "Ada".into());
    store.update_user("shop", renamed.clone()).await.unwrap();
    assert_eq!(store.user_by_email("shop", "a@x.test").await.unwrap(), None);
    assert_eq!(
        store.user_by_email("shop", "c@x.test").await.unwrap(),
        Some(renamed)
    );
    assert!(matches!(
        store.update_user("shop", user("u1", "b@x.test")).await,
        Err(AuthError::EmailTaken(_))
    ));
    assert_eq!(
        store.user("shop", "u1").await.unwrap().unwrap().email,
        "c@x.test",
        "a refused update changes nothing"
    );
    assert!(matches!(
        store.update_user("shop", user("nobody", "n@x.test")).await,
        Err(AuthError::NoSuchUser(_))
    ));

    let ids = |users: Vec<UserRecord>| users.into_iter().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.users("shop", None, 10).await.unwrap()),
        ["u1", "u3"]
    );
    assert_eq!(ids(store.users("shop", None, 1).await.unwrap()), ["u1"]);
    assert_eq!(
        ids(store.users("shop", Some("u1"), 10).await.unwrap()),
        ["u3"]
    );
    assert_eq!(ids(store.users("blog", None, 10).await.unwrap()), ["u2"]);
}

pub async fn refresh_rotates_tolerates_reuse_and_revokes_the_family(store: &impl AuthStore) {
    store
        .insert_user("shop", user("u1", "a@x.test"))
        .await
        .unwrap();
    store
        .create_session("shop", session("s1", "u1"), "t0")
        .await
        .unwrap();
    assert_eq!(
        store.refresh("shop", "nope", "t9", 20, 10).await.unwrap(),
        Refreshed::Unknown
    );
    assert_eq!(
        store.refresh("blog", "t0", "t9", 20, 10).await.unwrap(),
        Refreshed::Unknown,
        "tokens are per app"
    );
    let Refreshed::Rotated(rotated) = store.refresh("shop", "t0", "t1", 100, 10).await.unwrap()
    else {
        panic!("the current token rotates");
    };
    assert_eq!((rotated.id.as_str(), rotated.refreshed_ms), ("s1", 100));
    // Within the reuse interval the replaced token still answers, beside its successor.
    assert!(matches!(
        store.refresh("shop", "t0", "t2", 105, 10).await.unwrap(),
        Refreshed::Reused(_)
    ));
    assert!(matches!(
        store.refresh("shop", "t1", "t3", 106, 10).await.unwrap(),
        Refreshed::Rotated(_)
    ));
    assert!(matches!(
        store.refresh("shop", "t2", "t4", 107, 10).await.unwrap(),
        Refreshed::Rotated(_)
    ));
    // After it, presenting a replaced token ends the session: every token of the family.
    assert_eq!(
        store.refresh("shop", "t1", "t5", 500, 10).await.unwrap(),
        Refreshed::FamilyRevoked
    );
    assert_eq!(store.session("shop", "s1").await.unwrap(), None);
    for token in ["t3", "t4", "t5"] {
        assert_eq!(
            store.refresh("shop", token, "t6", 501, 10).await.unwrap(),
            Refreshed::Unknown,
            "{token} died with its family"
        );
    }
}

pub async fn sessions_end_alone_or_together(store: &impl AuthStore) {
    store
        .insert_user("shop", user("u1", "a@x.test"))
        .await
        .unwrap();
    store
        .insert_user("shop", user("u2", "b@x.test"))
        .await
        .unwrap();
    for (s, u, t) in [
        ("s1", "u1", "a"),
        ("s2", "u1", "b"),
        ("s3", "u1", "c"),
        ("s4", "u2", "d"),
    ] {
        store
            .create_session("shop", session(s, u), t)
            .await
            .unwrap();
    }
    assert!(store.end_session("shop", "s1").await.unwrap());
    assert!(!store.end_session("shop", "s1").await.unwrap());
    assert_eq!(
        store.refresh("shop", "a", "a2", 20, 10).await.unwrap(),
        Refreshed::Unknown
    );
    assert_eq!(
        store.end_sessions("shop", "u1", Some("s3")).await.unwrap(),
        1
    );
    assert_eq!(store.session("shop", "s2").await.unwrap(), None);
    assert!(store.session("shop", "s3").await.unwrap().is_some());
    assert_eq!(store.end_sessions("shop", "u1", None).await.unwrap(), 1);
    assert_eq!(store.session("shop", "s3").await.unwrap(), None);
    assert!(
        store.session("shop", "s4").await.unwrap().is_some(),
        "another user's session is untouched"
    );
}

pub async fn one_time_tokens_are_taken_once(store: &impl AuthStore) {
    let recovery = OneTimePurpose::Recovery;
    store
        .put_one_time("shop", recovery, "h1", "u1", 7)
        .await
        .unwrap();
    assert_eq!(
        store
            .take_one_time("shop", OneTimePurpose::Confirmation, "h1")
            .await
            .unwrap(),
        None,
        "a token proves one purpose"
    );
    assert_eq!(
        store.take_one_time("shop", recovery, "h1").await.unwrap(),
        Some(("u1".to_owned(), 7))
    );
    assert_eq!(
        store.take_one_time("shop", recovery, "h1").await.unwrap(),
        None
    );
    // A new token replaces the user's earlier one.
    store
        .put_one_time("shop", recovery, "h2", "u1", 8)
        .await
        .unwrap();
    store
        .put_one_time("shop", recovery, "h3", "u1", 9)
        .await
        .unwrap();
    assert_eq!(
        store.take_one_time("shop", recovery, "h2").await.unwrap(),
        None
    );
    assert_eq!(
        store.take_one_time("shop", recovery, "h3").await.unwrap(),
        Some(("u1".to_owned(), 9))
    );
}

pub async fn signing_keys_are_replaced_only_as_seen(store: &impl AuthStore) {
    let key = |kid: &str| SigningKeyRecord {
        kid: kid.to_owned(),
        algorithm: "ES256".to_owned(),
        sealed_private: vec![1, 2, 3],
        public_jwk: "{}".to_owned(),
        created_ms: 1,
        retired_ms: None,
    };
    assert!(store.signing_keys("shop").await.unwrap().is_empty());
    store
        .replace_signing_keys("shop", &[], vec![key("k1")])
        .await
        .unwrap();
    assert!(matches!(
        store
            .replace_signing_keys("shop", &[], vec![key("k9")])
            .await,
        Err(AuthError::KeysChanged)
    ));
    store
        .replace_signing_keys("shop", &["k1".to_owned()], vec![key("k2"), key("k1")])
        .await
        .unwrap();
    let kids: Vec<String> = store
        .signing_keys("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k2", "k1"]);
    assert!(store.signing_keys("blog").await.unwrap().is_empty());
}

pub async fn removing_a_user_or_the_app_forgets_them(store: &impl AuthStore) {
    store
        .insert_user("shop", user("u1", "a@x.test"))
        .await
        .unwrap();
    store
        .insert_user("shop", user("u2", "b@x.test"))
        .await
        .unwrap();
    store
        .insert_user("shops", user("u1", "a@x.test"))
        .await
        .unwrap();
    store
        .create_session("shop", session("s1", "u1"), "t1")
        .await
        .unwrap();
    store
        .put_one_time("shop", OneTimePurpose::Recovery, "h1", "u1", 1)
        .await
        .unwrap();
    assert!(store.remove_user("shop", "u1").await.unwrap());
    assert!(!store.remove_user("shop", "u1").await.unwrap());
    assert_eq!(store.user_by_email("shop", "a@x.test").await.unwrap(), None);
    assert_eq!(store.session("shop", "s1").await.unwrap(), None);
    assert_eq!(
        store
            .take_one_time("shop", OneTimePurpose::Recovery, "h1")
            .await
            .unwrap(),
        None
    );
    // The address is free again.
    store
        .insert_user("shop", user("u9", "a@x.test"))
        .await
        .unwrap();

    store.remove_auth("shop").await.unwrap();
    assert!(store.users("shop", None, 10).await.unwrap().is_empty());
    assert_eq!(store.user_by_email("shop", "b@x.test").await.unwrap(), None);
    assert_eq!(
        store.users("shops", None, 10).await.unwrap().len(),
        1,
        "an app whose name shares a prefix keeps its users"
    );
}
