//! The key-value service's part in deploys: an app's declared stores (`[kv.NAME]`) exist,
//! emitting events or not as declared, before it serves; removing the app removes them
//! (refused while they hold entries, unless forced). Expired entries are purged in the background; reads never see them either way.

use crate::deployments::Provisioner;
use nimbus_core::error::Error;
use nimbus_core::{AppSpec, ErrorCode};
use nimbus_store::{KvError, KvStore, KvStoreId};
use std::sync::Arc;

/// How often expired entries are purged, and how many at a time.
const PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
const PURGE_BATCH: usize = 10_000;

pub(crate) struct KvStores {
    pub(crate) store: Arc<dyn KvStore>,
}

fn kv_error(error: KvError) -> Error {
    let message = error.to_string();
    Error::new(ErrorCode::Internal, message).caused_by(error)
}

#[async_trait::async_trait]
impl Provisioner for KvStores {
    async fn provision(&self, spec: &AppSpec) -> Result<(), Error> {
        for kv in &spec.kv {
            let id = KvStoreId::new(spec.name.as_str(), kv.name.as_str());
            if self.store.create_store(&id).await.map_err(kv_error)? {
                tracing::info!(app = %spec.name, store = %kv.name, "key-value store created");
            }
            self.store
                .set_events(&id, kv.events)
                .await
                .map_err(kv_error)?;
        }
        Ok(())
    }

    async fn check_release(&self, app: &str) -> Result<(), Error> {
        let mut nonempty = Vec::new();
        for name in self.store.stores(app).await.map_err(kv_error)? {
            let id = KvStoreId::new(app, name.as_str());
            if !self
                .store
                .list_keys(&id, None, 1)
                .await
                .map_err(kv_error)?
                .keys
                .is_empty()
            {
                nonempty.push(name);
            }
        }
        if nonempty.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::KvStoreNotEmpty,
            format!(
                "app {app:?} has key-value stores holding entries ({}); remove it with --force \
                 to delete them",
                nonempty.join(", ")
            ),
        ))
    }

    async fn release(&self, app: &str, _force: bool) -> Result<(), Error> {
        let stores = self.store.stores(app).await.map_err(kv_error)?;
        for name in &stores {
            self.store
                .delete_store(&KvStoreId::new(app, name.as_str()))
                .await
                .map_err(kv_error)?;
        }
        if !stores.is_empty() {
            tracing::info!(
                app,
                stores = stores.len(),
                "key-value stores removed with the app"
            );
        }
        Ok(())
    }
}

/// Purge expired entries every [`PURGE_INTERVAL`] until `stop`.
pub(crate) async fn purge_expired_forever(
    store: Arc<dyn KvStore>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PURGE_INTERVAL) => {}
        }
        loop {
            match store.purge_expired(PURGE_BATCH).await {
                Ok(purged) if purged == PURGE_BATCH => continue,
                Ok(0) => break,
                Ok(purged) => {
                    tracing::debug!(purged, "expired key-value entries purged");
                    break;
                }
                Err(error) => {
                    tracing::error!(error = %crate::report(&error), "purging expired key-value entries failed");
                    break;
                }
            }
        }
    }
}
