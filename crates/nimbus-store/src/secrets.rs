//! App secrets as stored: per app, each secret a short list of numbered versions, the newest
//! current. A version's value is opaque to the store: the caller seals it (envelope
//! encryption, its data key wrapped under the platform's master key) before it gets here, so
//! nothing a backend holds or logs is a value in the clear.
//!
//! Versions are added under a condition on the current one ([`SecretStore::put_version`]), so
//! two concurrent writers cannot both believe they made version 3; a version's sealed bytes can
//! be replaced only by compare-and-swap ([`SecretStore::reseal`]), which is how data keys are
//! re-wrapped under a new master key without a writer's value being lost.

use crate::queue::BoxError;
use async_trait::async_trait;

/// One version of one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    /// 1 for a secret's first version, one more for each after it.
    pub version: u64,
    pub created_ms: u64,
    /// The sealed value (the caller's format).
    pub sealed: Vec<u8>,
}

/// A secret as listed: its name and versions, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    /// The current version's number.
    pub current: u64,
    /// Every kept version as (number, created at), oldest first.
    pub versions: Vec<(u64, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret's current version is not the one the write expected.
    #[error("the secret's current version is {current:?}, not the one expected")]
    Conflict { current: Option<u64> },
    /// A version's number must follow the current one.
    #[error("version {given} does not follow the current version {current:?}")]
    OutOfOrder { given: u64, current: Option<u64> },
    #[error("secret storage failure")]
    Backend(#[source] BoxError),
}

impl SecretError {
    pub fn backend(error: impl Into<BoxError>) -> SecretError {
        SecretError::Backend(error.into())
    }
}

pub type SecretResult<T> = Result<T, SecretError>;

/// Secrets, per app.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Add `version` of secret `name` and make it current, if the current version is still
    /// `expected` (`None`: the secret does not exist). Its number must be one more than
    /// `expected` (1 for a new secret). Keeps at most `keep` versions, forgetting the oldest.
    async fn put_version(
        &self,
        app: &str,
        name: &str,
        expected: Option<u64>,
        version: SecretVersion,
        keep: usize,
    ) -> SecretResult<()>;

    /// Version `version` of secret `name` (the current one if `None`), if kept.
    async fn secret_version(
        &self,
        app: &str,
        name: &str,
        version: Option<u64>,
    ) -> SecretResult<Option<SecretVersion>>;

    /// The app's secrets by name.
    async fn secrets(&self, app: &str) -> SecretResult<Vec<SecretInfo>>;

    /// Forget secret `name` with every version; whether it existed.
    async fn remove_secret(&self, app: &str, name: &str) -> SecretResult<bool>;

    /// Every (app, secret, version) kept, for re-wrapping under a new master key.
    async fn all_secret_versions(&self) -> SecretResult<Vec<(String, String, u64)>>;

    /// Replace the sealed bytes of one version if they are still `expected`; whether they
    /// were (a removed or replaced version is left alone).
    async fn reseal(
        &self,
        app: &str,
        name: &str,
        version: u64,
        expected: &[u8],
        sealed: Vec<u8>,
    ) -> SecretResult<bool>;
}
