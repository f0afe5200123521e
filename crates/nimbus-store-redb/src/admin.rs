//! The embedded [`AdminStore`]: `admin_tokens` (id → JSON record) and `audit` (seq → JSON
//! entry), fully durable commits; an entry's number is one more than the last one's, decided
//! inside its commit.

use crate::{Inner, RedbStore, backend, from_json, to_json};
use async_trait::async_trait;
use nimbus_store::{AdminStore, AdminTokenRecord, AuditEntry, Result};
use redb::{ReadableTable, TableDefinition};

pub(crate) const ADMIN_TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("admin_tokens");
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

impl Inner {
    fn insert_admin_token(&self, token: &AdminTokenRecord) -> Result<bool> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut tokens = txn.open_table(ADMIN_TOKENS).map_err(backend)?;
            if tokens.get(token.id.as_str()).map_err(backend)?.is_some() {
                return Ok(false);
            }
            tokens
                .insert(token.id.as_str(), to_json(token)?.as_slice())
                .map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(true)
    }

    fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let tokens = txn.open_table(ADMIN_TOKENS).map_err(backend)?;
        let mut all = Vec::new();
        for entry in tokens.iter().map_err(backend)? {
            let (_, value) = entry.map_err(backend)?;
            all.push(from_json(value.value())?);
        }
        Ok(all)
    }

    fn remove_admin_token(&self, id: &str) -> Result<bool> {
        let txn = self.db.begin_write().map_err(backend)?;
        let removed = {
            let mut tokens = txn.open_table(ADMIN_TOKENS).map_err(backend)?;
            tokens.remove(id).map_err(backend)?.is_some()
        };
        txn.commit().map_err(backend)?;
        Ok(removed)
    }

    fn append_audit(&self, mut entry: AuditEntry) -> Result<u64> {
        let txn = self.db.begin_write().map_err(backend)?;
        let seq = {
            let mut audit = txn.open_table(AUDIT).map_err(backend)?;
            let last = audit
                .last()
                .map_err(backend)?
                .map_or(0, |(key, _)| key.value());
            entry.seq = last + 1;
            audit
                .insert(entry.seq, to_json(&entry)?.as_slice())
                .map_err(backend)?;
            entry.seq
        };
        txn.commit().map_err(backend)?;
        Ok(seq)
    }

    fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let audit = txn.open_table(AUDIT).map_err(backend)?;
        let mut found = Vec::new();
        for entry in audit.range(after.saturating_add(1)..).map_err(backend)? {
            if found.len() >= limit {
                break;
            }
            let (_, value) = entry.map_err(backend)?;
            found.push(from_json(value.value())?);
        }
        Ok(found)
    }
}

#[async_trait]
impl AdminStore for RedbStore {
    async fn insert_admin_token(&self, token: AdminTokenRecord) -> Result<bool> {
        self.run(move |inner| inner.insert_admin_token(&token))
            .await
    }

    async fn admin_tokens(&self) -> Result<Vec<AdminTokenRecord>> {
        self.run(|inner| inner.admin_tokens()).await
    }

    async fn remove_admin_token(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.run(move |inner| inner.remove_admin_token(&id)).await
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<u64> {
        self.run(move |inner| inner.append_audit(entry)).await
    }

    async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>> {
        self.run(move |inner| inner.audit(after, limit)).await
    }
}

#[cfg(test)]
mod tests {
    use crate::TempStores;

    #[tokio::test]
    async fn conformance() {
        let stores = TempStores::default();
        nimbus_store::conformance::admin_tokens_and_audit(&stores.make()).await;
    }
}
