//! `POST /v1/events`: publish a CloudEvent (structured or binary mode) on the caller's app's
//! bus, if its grants allow publishing.

use super::{calling_app, not_found};
use crate::deployments::Deployments;
use crate::events::{Events, parse_event};
use bytes::Bytes;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_runtime::{Service, ServiceRequest};
use std::sync::Arc;

pub(crate) struct Bus {
    pub(crate) deployments: Deployments,
    pub(crate) events: Arc<Events>,
}

#[async_trait::async_trait]
impl Service for Bus {
    async fn call(&self, request: ServiceRequest<'_>) -> Result<Bytes, Error> {
        if request.method != http::Method::POST
            || request.path.trim_end_matches('/') != "/v1/events"
        {
            return Err(not_found(request.method, request.path));
        }
        if !request.grants.may_publish() {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "function {:?} may not publish events; set `publish = true` on it in the manifest",
                    request.caller.function
                ),
            ));
        }
        let app = calling_app(&self.deployments, request.caller)?;
        let event = parse_event(request.headers, request.body)?;
        let published = self.events.publish(&app, event).await?;
        serde_json::to_vec(&published)
            .map(Bytes::from)
            .map_err(|e| {
                Error::new(
                    ErrorCode::Internal,
                    format!("cannot encode the answer: {e}"),
                )
            })
    }
}
