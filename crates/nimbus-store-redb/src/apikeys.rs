//! The embedded [`ApiKeyStore`]: `api_keys` ((app, id) → JSON [`ApiKeyRecord`]), fully
//! durable commits.

use crate::{Inner, RedbStore, backend, from_json, to_json};
use async_trait::async_trait;
use nimbus_store::{ApiKeyRecord, ApiKeyStore, Result};
use redb::{ReadableTable, TableDefinition};

pub(crate) const API_KEYS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("api_keys");

impl Inner {
    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<bool> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut keys = txn.open_table(API_KEYS).map_err(backend)?;
            let at = (key.app.as_str(), key.id.as_str());
            if keys.get(at).map_err(backend)?.is_some() {
                return Ok(false);
            }
            keys.insert(at, to_json(key)?.as_slice()).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(true)
    }

    fn api_keys(&self, app: &str) -> Result<Vec<ApiKeyRecord>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let keys = txn.open_table(API_KEYS).map_err(backend)?;
        let mut found = Vec::new();
        for entry in keys.range((app, "")..).map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            if key.value().0 != app {
                break;
            }
            found.push(from_json(value.value())?);
        }
        Ok(found)
    }

    fn remove_api_key(&self, app: &str, id: &str) -> Result<bool> {
        let txn = self.db.begin_write().map_err(backend)?;
        let removed = {
            let mut keys = txn.open_table(API_KEYS).map_err(backend)?;
            keys.remove((app, id)).map_err(backend)?.is_some()
        };
        txn.commit().map_err(backend)?;
        Ok(removed)
    }
}

#[async_trait]
impl ApiKeyStore for RedbStore {
    async fn insert_api_key(&self, key: ApiKeyRecord) -> Result<bool> {
        self.run(move |inner| inner.insert_api_key(&key)).await
    }

    async fn api_keys(&self, app: &str) -> Result<Vec<ApiKeyRecord>> {
        let app = app.to_owned();
        self.run(move |inner| inner.api_keys(&app)).await
    }

    async fn remove_api_key(&self, app: &str, id: &str) -> Result<bool> {
        let (app, id) = (app.to_owned(), id.to_owned());
        self.run(move |inner| inner.remove_api_key(&app, &id)).await
    }
}

#[cfg(test)]
mod tests {
    use crate::TempStores;

    #[tokio::test]
    async fn conformance() {
        let stores = TempStores::default();
        nimbus_store::conformance::api_keys_are_unique_per_app_and_revocable(&stores.make()).await;
    }
}
