//! Access keys for the AWS-compatible endpoint, as stored: the secret arrives sealed (encrypted
//! by the caller under the platform's master key), so no backend ever holds it in the clear.

use crate::Result;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKeyRecord {
    /// The access key id (public, like AWS's `AKIA…`).
    pub id: String,
    /// The app whose resources the key reaches; none for an operator-wide key.
    pub app: Option<String>,
    /// The secret, sealed under the master key (nonce + ciphertext).
    pub sealed_secret: Vec<u8>,
    pub created_ms: u64,
    /// What the key is for, as its creator described it.
    pub description: Option<String>,
}

/// Stored access keys.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Store a new key; false (and nothing written) if its id is taken.
    async fn insert_key(&self, key: AccessKeyRecord) -> Result<bool>;
    async fn key(&self, id: &str) -> Result<Option<AccessKeyRecord>>;
    /// Every key, by id.
    async fn keys(&self) -> Result<Vec<AccessKeyRecord>>;
    /// Revoke a key; false if there was none.
    async fn remove_key(&self, id: &str) -> Result<bool>;
}
