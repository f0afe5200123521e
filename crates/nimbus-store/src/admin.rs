//! The admin API's own records: scoped tokens (stored as the SHA-256 of the token, which is
//! 256 random bits) and the audit log of admin writes, append-only and numbered.

use crate::Result;
use serde::{Deserialize, Serialize};

/// A token for the admin API with a scope (`read`, `deploy` or `admin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTokenRecord {
    /// Public (`at_…`): what listings and the audit log name.
    pub id: String,
    pub name: Option<String>,
    pub scope: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub created_ms: u64,
}

/// One admin write (or attempted write), as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Increasing, never reused; assigned by the store.
    pub seq: u64,
    pub time_ms: u64,
    /// Who: `root` (the data directory's admin token) or a token's id.
    pub actor: String,
    pub method: String,
    pub path: String,
    /// What the admin API answered.
    pub status: u16,
}

/// Admin tokens and the audit log.
#[async_trait::async_trait]
pub trait AdminStore: Send + Sync {
    /// Store a new token; false (and nothing written) if its id is taken.
    async fn insert_admin_token(&self, token: AdminTokenRecord) -> Result<bool>;
    /// Every token, by id.
    async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>>;
    /// Revoke a token; false if there was none.
    async fn remove_admin_token(&self, id: &str) -> Result<bool>;
    /// Append `entry` (its `seq` is ignored) durably; the number it was given.
    async fn append_audit(&self, entry: AuditEntry) -> Result<u64>;
    /// Up to `limit` entries with a number above `after`, oldest first.
    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>>;
}
