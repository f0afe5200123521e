//! API keys' part in deploys: an app with `api_key` authorizers gets its key set lent to
//! them; removing the app revokes its keys.

use crate::deployments::{Mounter, Mounts, Provisioner};
use nimbus_apikeys::ApiKeys;
use nimbus_core::error::Error;
use nimbus_core::{AppSpec, AuthorizerSpec};
use std::sync::Arc;

pub(crate) struct AppApiKeys {
    pub(crate) keys: Arc<ApiKeys>,
}

#[async_trait::async_trait]
impl Mounter for AppApiKeys {
    async fn mount(&self, spec: &AppSpec, _gateway_url: &str) -> Result<Mounts, Error> {
        let wanted = spec
            .authorizers
            .values()
            .any(|a| matches!(a, AuthorizerSpec::ApiKey { .. }));
        if !wanted {
            return Ok(Mounts::default());
        }
        Ok(Mounts {
            api_keys: Some(self.keys.set(spec.name.as_str()).await?),
            ..Mounts::default()
        })
    }
}

#[async_trait::async_trait]
impl Provisioner for AppApiKeys {
    async fn provision(&self, _spec: &AppSpec) -> Result<(), Error> {
        Ok(())
    }

    async fn release(&self, app: &str, _force: bool) -> Result<(), Error> {
        let keys = self.keys.list(app).await?;
        for key in &keys {
            self.keys.remove(app, &key.id).await?;
        }
        if !keys.is_empty() {
            tracing::info!(app, keys = keys.len(), "API keys revoked with the app");
        }
        Ok(())
    }
}
