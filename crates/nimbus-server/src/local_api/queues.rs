//! `POST /v1/queues/{queue}/messages`: send one message to a declared queue of the caller's
//! app, if its grants name the queue.

use super::{calling_app, header_text, not_found};
use crate::deployments::Deployments;
use crate::events::Events;
use bytes::Bytes;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_events::{MessageKind, MessageMeta};
use nimbus_runtime::{Service, ServiceRequest};
use std::sync::Arc;

pub(crate) struct Queues {
    pub(crate) deployments: Deployments,
    pub(crate) events: Arc<Events>,
}

#[async_trait::async_trait]
impl Service for Queues {
    async fn call(&self, request: ServiceRequest<'_>) -> Result<Bytes, Error> {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let (&http::Method::POST, ["v1", "queues", queue, "messages"]) =
            (request.method, segments.as_slice())
        else {
            return Err(not_found(request.method, request.path));
        };
        if !request.grants.may_send_to(queue) {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "function {:?} may not send to queue {queue:?}; add it to the function's `queues` in the manifest",
                    request.caller.function
                ),
            ));
        }
        let app = calling_app(&self.deployments, request.caller)?;
        let mut meta = MessageMeta::new(MessageKind::Message, self.events.now_ms());
        meta.content_type = header_text(request.headers, "content-type");
        meta.group = header_text(request.headers, "x-nimbus-group");
        let ids = self
            .events
            .send(&app, queue, vec![(request.body, meta)])
            .await?;
        Ok(Bytes::from(
            serde_json::json!({ "id": ids.first() }).to_string(),
        ))
    }
}
