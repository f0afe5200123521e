//! End users of an app's auth service, their sessions and refresh tokens, and the app's token
//! signing keys, as stored.
//!
//! Nothing secret is held in the clear: passwords as PHC hash strings (Argon2id, or bcrypt
//! as imported), refresh and one-time tokens as the SHA-256 of their random value (they carry
//! 256 bits, so a fast hash is enough), signing keys sealed by the caller under the platform's
//! master key.
//!
//! # Refresh tokens
//!
//! A session holds a family of refresh tokens: signing in creates the session and its first
//! token; each refresh revokes the token it presents and issues a child
//! ([`AuthStore::refresh`], one atomic step, so two concurrent refreshes of one token cannot
//! both rotate it unnoticed). A revoked token presented again within the reuse interval still
//! answers (concurrent tabs of one browser refresh at once); after it, the presentation is
//! taken as theft and the whole session ends.

use crate::queue::BoxError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// One end user of one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// A UUID, as GoTrue's.
    pub id: String,
    /// Lower-case; unique within the app.
    pub email: String,
    /// A PHC string (`$argon2id$…`) or a bcrypt hash (`$2b$…`); none for a user invited
    /// without one.
    pub password_hash: Option<String>,
    pub email_confirmed_ms: Option<u64>,
    pub confirmation_sent_ms: Option<u64>,
    pub recovery_sent_ms: Option<u64>,
    pub last_sign_in_ms: Option<u64>,
    /// Signing in is refused until then.
    pub banned_until_ms: Option<u64>,
    /// Set by the platform and operators only (`provider`, `providers`, roles).
    pub app_metadata: Metadata,
    /// Set by the user.
    pub user_metadata: Metadata,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// A UUID; the access token's `session_id`.
    pub id: String,
    pub user_id: String,
    pub created_ms: u64,
    /// When a refresh last rotated its token.
    pub refreshed_ms: u64,
    /// Refreshing is refused after this (a session lifetime), if set.
    pub not_after_ms: Option<u64>,
}

/// What a one-time token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OneTimePurpose {
    /// The address of a new sign-up is the user's.
    Confirmation,
    /// A password reset.
    Recovery,
}

/// What [`AuthStore::refresh`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// The token was the session's current one: it is revoked and the new one issued.
    Rotated(SessionRecord),
    /// The token had been revoked within the reuse interval: the new one is issued beside
    /// the token that replaced it.
    Reused(SessionRecord),
    /// The token had been revoked before the reuse interval: the session has ended, with
    /// every token of its family.
    FamilyRevoked,
    /// No such token, or its session has ended.
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a user with the e-mail address {0:?} is already registered")]
    EmailTaken(String),
    #[error("no user {0}")]
    NoSuchUser(String),
    #[error("the app's signing keys changed meanwhile")]
    KeysChanged,
    #[error("auth storage failure")]
    Backend(#[source] BoxError),
}

impl AuthError {
    pub fn backend(error: impl Into<BoxError>) -> AuthError {
        AuthError::Backend(error.into())
    }
}

pub type AuthResult<T> = Result<T, AuthError>;

/// A token signing key; the private half sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub kid: String,
    /// `ES256` or `RS256`.
    pub algorithm: String,
    /// The private key (PKCS#8 DER), sealed under the master key with the kid as context.
    pub sealed_private: Vec<u8>,
    /// The public key as its JWK (JSON text).
    pub public_jwk: String,
    pub created_ms: u64,
    /// When a newer key took over signing; the key stays published until its last tokens
    /// have expired.
    pub retired_ms: Option<u64>,
}

/// Users, sessions, tokens and keys, per app.
#[async_trait]
pub trait AuthStore: Send + Sync {
    /// Store a new user; [`AuthError::EmailTaken`] if the address is registered.
    async fn insert_user(&self, app: &str, user: UserRecord) -> AuthResult<()>;
    async fn user(&self, app: &str, id: &str) -> AuthResult<Option<UserRecord>>;
    async fn user_by_email(&self, app: &str, email: &str) -> AuthResult<Option<UserRecord>>;
    /// Replace a user (by id); its address may change, to one not taken.
    async fn update_user(&self, app: &str, user: UserRecord) -> AuthResult<()>;
    /// Remove a user with its sessions, tokens and one-time tokens; whether there was one.
    async fn remove_user(&self, app: &str, id: &str) -> AuthResult<bool>;
    /// Up to `limit` users after the id `after`, by id.
    async fn users(
        &self,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> AuthResult<Vec<UserRecord>>;

    /// Start a session with its first refresh token (by hash).
    async fn create_session(
        &self,
        app: &str,
        session: SessionRecord,
        token_hash: &str,
    ) -> AuthResult<()>;
    async fn session(&self, app: &str, id: &str) -> AuthResult<Option<SessionRecord>>;
    /// Present the refresh token `old_hash` at `now_ms` and, if it still answers, issue
    /// `new_hash` in its session (module docs).
    async fn refresh(
        &self,
        app: &str,
        old_hash: &str,
        new_hash: &str,
        now_ms: u64,
        reuse_interval_ms: u64,
    ) -> AuthResult<Refreshed>;
    /// End one session and its tokens; whether it existed.
    async fn end_session(&self, app: &str, id: &str) -> AuthResult<bool>;
    /// End every session of a user but `keep`; how many ended.
    async fn end_sessions(&self, app: &str, user_id: &str, keep: Option<&str>)
    -> AuthResult<usize>;

    /// Store a one-time token (by hash) for `user_id`, replacing any earlier one of the same
    /// purpose for that user.
    async fn put_one_time(
        &self,
        app: &str,
        purpose: OneTimePurpose,
        token_hash: &str,
        user_id: &str,
        created_ms: u64,
    ) -> AuthResult<()>;
    /// Take (and remove) a one-time token: its user and when it was created.
    async fn take_one_time(
        &self,
        app: &str,
        purpose: OneTimePurpose,
        token_hash: &str,
    ) -> AuthResult<Option<(String, u64)>>;

    /// The app's signing keys, newest first.
    async fn signing_keys(&self, app: &str) -> AuthResult<Vec<SigningKeyRecord>>;
    /// Replace the app's keys if they are still those whose kids are `expected` (in order);
    /// [`AuthError::KeysChanged`] otherwise.
    async fn replace_signing_keys(
        &self,
        app: &str,
        expected: &[String],
        keys: Vec<SigningKeyRecord>,
    ) -> AuthResult<()>;
    /// Forget everything of the app's auth.
    async fn remove_auth(&self, app: &str) -> AuthResult<()>;
}
