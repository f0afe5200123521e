//! The table service's part in deploys: an app's declared tables (`[table.NAME]`) exist
//! before it serves; removing the app removes its tables (refused while they hold items,
//! unless forced).

use crate::deployments::Provisioner;
use nimbus_core::error::Error;
use nimbus_core::{AppSpec, ErrorCode};
use nimbus_store::tables::TableStore;
use nimbus_tables::provision::{self, ProvisionError};
use std::sync::Arc;

/// Sweep every table (expired items, old change records) this often.
pub const DEFAULT_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Sweep every `interval` until `stop`.
pub(crate) async fn sweep_forever(
    store: Arc<dyn TableStore>,
    interval: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        match nimbus_tables::maintenance::sweep(store.as_ref(), now).await {
            Ok(swept) if swept.expired > 0 || swept.trimmed > 0 => tracing::info!(
                expired = swept.expired,
                trimmed = swept.trimmed,
                "tables swept"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %nimbus_wire::report(&error), "table sweep failed")
            }
        }
    }
}

pub(crate) struct Tables {
    pub(crate) store: Arc<dyn TableStore>,
}

fn error(error: impl std::error::Error + Send + Sync + 'static, code: ErrorCode) -> Error {
    Error::new(code, error.to_string()).caused_by(error)
}

#[async_trait::async_trait]
impl Provisioner for Tables {
    async fn provision(&self, spec: &AppSpec) -> Result<(), Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        for table in &spec.tables {
            match provision::provision(self.store.as_ref(), spec.name.as_str(), table, now).await {
                Ok(true) => tracing::info!(app = %spec.name, table = %table.name, "table created"),
                Ok(false) => {}
                Err(e @ ProvisionError::KeyChanged { .. }) => {
                    return Err(error(e, ErrorCode::InvalidManifest));
                }
                Err(e) => return Err(error(e, ErrorCode::Internal)),
            }
        }
        Ok(())
    }

    async fn check_release(&self, app: &str) -> Result<(), Error> {
        let nonempty = provision::nonempty_tables(self.store.as_ref(), app)
            .await
            .map_err(|e| error(e, ErrorCode::Internal))?;
        if nonempty.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::TableNotEmpty,
            format!(
                "app {app:?} has tables holding items ({}); remove it with --force to delete \
                 them",
                nonempty.join(", ")
            ),
        ))
    }

    async fn release(&self, app: &str, _force: bool) -> Result<(), Error> {
        let removed = provision::release(self.store.as_ref(), app)
            .await
            .map_err(|e| error(e, ErrorCode::Internal))?;
        if removed > 0 {
            tracing::info!(app, tables = removed, "tables removed with the app");
        }
        Ok(())
    }
}
