//! Access tokens (JWTs with GoTrue's claims), refresh and one-time tokens (random, stored as
//! their SHA-256), and the JSON shapes of users and sessions as GoTrue returns them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nimbus_store::auth::{Metadata, UserRecord};
use serde::{Deserialize, Serialize};

/// The audience and role of every signed-in user's token, as GoTrue's default.
pub const AUDIENCE: &str = "authenticated";

/// An access token's claims, named as GoTrue names them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub email: String,
    pub phone: String,
    pub app_metadata: Metadata,
    pub user_metadata: Metadata,
    pub role: String,
    pub aal: String,
    pub amr: Vec<serde_json::Value>,
    pub session_id: String,
    pub is_anonymous: bool,
}

/// A random token: 32 bytes, URL-safe base64.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// What a token is stored as.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// RFC 3339 with microseconds, as GoTrue writes times.
pub fn timestamp(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A user as GoTrue's API returns one.
pub fn user_json(user: &UserRecord) -> serde_json::Value {
    let time = |ms: Option<u64>| ms.map(timestamp);
    let created = timestamp(user.created_ms);
    let updated = timestamp(user.updated_ms);
    let identity = serde_json::json!({
        "identity_id": user.id,
        "id": user.id,
        "user_id": user.id,
        "identity_data": {
            "sub": user.id,
            "email": user.email,
            "email_verified": user.email_confirmed_ms.is_some(),
            "phone_verified": false,
        },
        "provider": "email",
        "last_sign_in_at": time(user.last_sign_in_ms),
        "created_at": created,
        "updated_at": updated,
        "email": user.email,
    });
    let mut json = serde_json::json!({
        "id": user.id,
        "aud": AUDIENCE,
        "role": AUDIENCE,
        "email": user.email,
        "phone": "",
        "app_metadata": user.app_metadata,
        "user_metadata": user.user_metadata,
        "identities": [identity],
        "created_at": created,
        "updated_at": updated,
        "is_anonymous": false,
    });
    for (field, ms) in [
        ("email_confirmed_at", user.email_confirmed_ms),
        ("confirmed_at", user.email_confirmed_ms),
        ("confirmation_sent_at", user.confirmation_sent_ms),
        ("recovery_sent_at", user.recovery_sent_ms),
        ("last_sign_in_at", user.last_sign_in_ms),
        ("banned_until", user.banned_until_ms),
    ] {
        if let (Some(ms), Some(object)) = (ms, json.as_object_mut()) {
            object.insert(field.into(), timestamp(ms).into());
        }
    }
    json
}

/// A new user signing in with an e-mail address, as GoTrue records one (`provider: email`).
pub fn new_user(
    email: String,
    password_hash: Option<String>,
    confirmed: bool,
    user_metadata: Metadata,
    now_ms: u64,
) -> UserRecord {
    let mut app_metadata = Metadata::new();
    app_metadata.insert("provider".into(), "email".into());
    app_metadata.insert("providers".into(), serde_json::json!(["email"]));
    UserRecord {
        id: uuid::Uuid::new_v4().to_string(),
        email,
        password_hash,
        email_confirmed_ms: confirmed.then_some(now_ms),
        confirmation_sent_ms: None,
        recovery_sent_ms: None,
        last_sign_in_ms: None,
        banned_until_ms: None,
        app_metadata,
        user_metadata,
        created_ms: now_ms,
        updated_ms: now_ms,
    }
}

/// Apply a user's `data` to their metadata, as GoTrue merges it: each key set, a `null`
/// removing the key.
pub fn merge_metadata(into: &mut Metadata, data: &Metadata) {
    for (key, value) in data {
        if value.is_null() {
            into.remove(key);
        } else {
            into.insert(key.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_tokens() {
        assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22:13:20.123000Z");
        let token = random_token();
        assert_eq!(token.len(), 43);
        assert_ne!(token, random_token());
        assert_eq!(token_hash("abc").len(), 64);

        let mut metadata: Metadata = serde_json::from_str(r#"{"a": 1, "b": 2}"#).unwrap();
        merge_metadata(
            &mut metadata,
            &serde_json::from_str(r#"{"b": null, "c": 3}"#).unwrap(),
        );
        assert_eq!(
            serde_json::Value::Object(metadata),
            serde_json::json!({"a": 1, "c": 3})
        );
    }
}
