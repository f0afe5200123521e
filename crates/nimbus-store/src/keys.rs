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
    /// Replace the key's sealed secret if it is still `expected` (a master-key rotation);
    /// false, changing nothing, if the key is gone or its secret differs.
    async fn reseal_key(&self, id: &str, expected: &[u8], sealed: Vec<u8>) -> Result<bool>;
}

/// An app's API key for its gateway routes (`kind = "api_key"` authorizers), as stored: only
/// the SHA-256 of the key (256 random bits, so a fast hash is enough), never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Public, unique per app (`ak_…`): what listings and logs name.
    pub id: String,
    pub app: String,
    /// Hex SHA-256 of the key.
    pub hash: String,
    /// What the key is for, as its creator named it.
    pub name: Option<String>,
    /// Its usage plan: requests per `rate_per_ms` with a burst, and a daily quota.
    pub rate: Option<u32>,
    pub rate_per_ms: Option<u64>,
    pub burst: Option<u32>,
    pub quota_per_day: Option<u64>,
    pub created_ms: u64,
}

/// Stored API keys, per app.
#[async_trait::async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Store a new key; false (and nothing written) if the app has a key with its id.
    async fn insert_api_key(&self, key: ApiKeyRecord) -> Result<bool>;
    /// The app's keys, by id.
    async fn api_keys(&self, app: &str) -> Result<Vec<ApiKeyRecord>>;
    /// Revoke a key; false if there was none.
    async fn remove_api_key(&self, app: &str, id: &str) -> Result<bool>;
}
