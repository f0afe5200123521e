//! End-user auth's part in deploys: an app with `[auth]` mounts its GoTrue-compatible API on
//! the gateway and lends its key set to the app's `auth` authorizers; removing the app removes
//! its users (refused while it has any, unless forced).

use crate::deployments::{MountedService, Mounter, Mounts, Provisioner};
use nimbus_auth::AuthService;
use nimbus_core::error::Error;
use nimbus_core::{AppSpec, ErrorCode};
use nimbus_gateway::stages::OwnIssuer;
use std::sync::Arc;

pub(crate) struct Auth {
    pub(crate) service: Arc<AuthService>,
}

#[async_trait::async_trait]
impl Mounter for Auth {
    async fn mount(&self, spec: &AppSpec, gateway_url: &str) -> Result<Mounts, Error> {
        let Some(auth) = &spec.auth else {
            return Ok(Mounts::default());
        };
        let app = self
            .service
            .mount(spec.name.as_str(), auth, gateway_url)
            .await
            .map_err(|message| Error::new(ErrorCode::Internal, message))?;
        let keys = app.clone();
        Ok(Mounts {
            own_issuer: Some(OwnIssuer {
                issuer: app.issuer(),
                keys: Arc::new(move || keys.jwks()),
            }),
            services: vec![MountedService {
                path: auth.path.clone(),
                host: auth.host.clone(),
                name: "auth",
                service: app,
            }],
            api_keys: None,
        })
    }
}

#[async_trait::async_trait]
impl Provisioner for Auth {
    async fn provision(&self, _spec: &AppSpec) -> Result<(), Error> {
        Ok(())
    }

    async fn check_release(&self, app: &str) -> Result<(), Error> {
        let users = self.service.user_count(app, 1).await.map_err(internal)?;
        if users == 0 {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::AuthHasUsers,
            format!(
                "app {app:?} has users signed up through its auth; remove it with --force to \
                 delete them"
            ),
        ))
    }

    async fn release(&self, app: &str, _force: bool) -> Result<(), Error> {
        self.service.forget(app).await.map_err(internal)
    }
}

fn internal(error: nimbus_store::AuthError) -> Error {
    Error::new(ErrorCode::Internal, error.to_string()).caused_by(error)
}
