//! Storage traits: the registry (apps, immutable versions, artifacts), invocation records, and
//! the asynchronous side's durable queues and keyed tables ([`Queue`]), and the services' data:
//! objects, key-value stores and tables.
//!
//! This crate is a promise, not an implementation: it holds the traits and their plain types
//! and depends on no backend. Implementations live in their own crates (`nimbus-store-redb`
//! today, a NATS JetStream one for clusters later) and must pass the shared conformance suite
//! (feature `conformance`, kept out of production builds). Every trait is async, as a network
//! backend needs; an embedded backend runs its disk work on the blocking pool itself. Every
//! waiting method takes a cancellation token.
//!
//! Guarantees every backend gives:
//! - a deploy is atomic: after a crash either the new version is active or the old one is;
//! - versions are immutable once written; numbers increase per app and are never reused;
//! - artifacts are content-addressed: stored under the SHA-256 of their bytes, verified on write.

use nimbus_core::InvocationRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub mod admin;
pub mod auth;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod keys;
pub mod kv;
pub mod objects;
pub mod queue;
pub mod secrets;
pub mod tables;

pub use admin::{AdminStore, AdminTokenRecord, AuditEntry};
pub use auth::{AuthError, AuthResult, AuthStore};
pub use keys::{AccessKeyRecord, ApiKeyRecord, ApiKeyStore, KeyStore};
pub use kv::{
    KeyPage, KvChange, KvCondition, KvEntry, KvError, KvEvent, KvResult, KvStore, KvStoreId,
};
pub use objects::{
    BucketInfo, ByteRange, ByteStream, Change, Created, Listing, NewObject, NewPart,
    NotificationRule, ObjectError, ObjectEvent, ObjectInfo, ObjectResult, ObjectStore, PartInfo,
    PutCondition, UploadInfo,
};
pub use queue::{
    BoxError, Committed, Condition, Durability, EventTable, Expect, Queue, QueueError, QueueResult,
    TableOp,
};
pub use secrets::{SecretError, SecretInfo, SecretResult, SecretStore, SecretVersion};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no app named {0:?}")]
    AppNotFound(String),
    #[error("app {0:?} has no earlier version to roll back to")]
    NoPreviousVersion(String),
    #[error("artifact {0} has not been uploaded")]
    ArtifactNotFound(String),
    #[error("artifact bytes hash to {actual}, not {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("storage failure")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// A backend's own failure, kept whole as the source.
    pub fn backend(error: impl Into<BoxError>) -> StoreError {
        StoreError::Backend(error.into())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub name: String,
    /// The version serving traffic, if any.
    pub active: Option<u64>,
    /// Versions in the order they were activated (deploys and rollbacks); the last is active.
    pub history: Vec<u64>,
    /// Highest version number ever assigned.
    pub latest: u64,
}

/// What a deploy writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVersion {
    /// The manifest text, stored verbatim.
    pub manifest: String,
    /// Function name → artifact digest.
    pub functions: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub app: String,
    pub number: u64,
    /// SHA-256 over the manifest and the function → artifact map: equal content, equal digest.
    pub digest: String,
    pub manifest: String,
    pub functions: BTreeMap<String, String>,
    pub created_ms: u64,
}

impl NewVersion {
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.manifest.as_bytes());
        for (function, artifact) in &self.functions {
            hasher.update([0]);
            hasher.update(function.as_bytes());
            hasher.update([0]);
            hasher.update(artifact.as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

/// Is `digest` a lower-case hex SHA-256, the only form artifact addresses take?
pub fn is_sha256_hex(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// Apps, versions and artifacts.
#[async_trait::async_trait]
pub trait Registry: Send + Sync {
    /// Store `bytes` under `digest` after checking that they hash to it. Idempotent.
    async fn put_artifact(&self, digest: &str, bytes: bytes::Bytes) -> Result<()>;
    async fn get_artifact(&self, digest: &str) -> Result<Arc<[u8]>>;
    async fn has_artifact(&self, digest: &str) -> Result<bool>;

    /// Record a new version of `app` and make it active, atomically. Every referenced artifact
    /// must already be stored.
    async fn deploy(&self, app: &str, version: NewVersion) -> Result<VersionRecord>;
    /// Re-activate the version that was active before the current one.
    async fn rollback(&self, app: &str) -> Result<VersionRecord>;
    /// Remove an app, its versions and its records.
    async fn remove_app(&self, app: &str) -> Result<()>;

    async fn apps(&self) -> Result<Vec<AppRecord>>;
    async fn app(&self, app: &str) -> Result<AppRecord>;
    async fn version(&self, app: &str, number: u64) -> Result<VersionRecord>;
}

/// Invocation records, kept per function with a bounded history.
#[async_trait::async_trait]
pub trait RecordStore: Send + Sync {
    /// Append records, assigning each a per-function sequence number, and add each to its
    /// function's usage of the hour it started in, in the same commit. May trade durability
    /// for speed: records are telemetry, not state.
    async fn append_records(&self, records: Vec<InvocationRecord>) -> Result<()>;
    /// Records of `app`/`function` with `seq > after`, oldest first, at most `limit`.
    async fn records(
        &self,
        app: &str,
        function: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>>;
    /// The highest sequence number assigned for `app`/`function` (0 if none).
    async fn last_seq(&self, app: &str, function: &str) -> Result<u64>;
    /// Usage per function per hour, of `app` (or of every app), for the hours ending after
    /// `since_ms`; by app, function, then hour. Kept beyond the records' bounded history, and
    /// beyond the app's removal (what was used was used).
    async fn usage(&self, app: Option<&str>, since_ms: u64) -> Result<Vec<nimbus_core::UsageRow>>;
}
