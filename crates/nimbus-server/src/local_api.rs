//! nimbus's local API for functions: what a Wasm guest reaches at `http://nimbus.internal` and
//! a process function at `$NIMBUS_API`, served in-process. It reads the deployed snapshot to
//! find the caller and checks the caller's grants before anything reaches the queues.

use crate::deployments::Deployments;
use crate::events::{Events, now_ms, parse_event};
use bytes::Bytes;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_events::{MessageKind, MessageMeta};
use std::sync::Arc;

/// nimbus's local API, as functions call it (`http://nimbus.internal/v1/...` from Wasm,
/// `$NIMBUS_API/v1/...` from processes): send to a queue, publish on the bus — each behind the
/// caller's grants (`queues = [...]`, `publish = true`).
pub(crate) struct LocalApi {
    deployments: Deployments,
    events: Arc<Events>,
}

impl LocalApi {
    pub(crate) fn new(deployments: Deployments, events: Arc<Events>) -> LocalApi {
        LocalApi {
            deployments,
            events,
        }
    }

    async fn serve(
        &self,
        caller: &nimbus_runtime::Caller,
        method: &http::Method,
        path: &str,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> Result<serde_json::Value, Error> {
        let app = self.deployments.get(&caller.app).ok_or_else(|| {
            Error::new(
                ErrorCode::FunctionNotFound,
                "the calling function is no longer deployed",
            )
        })?;
        let Some(spec) = app
            .spec
            .functions
            .iter()
            .find(|(name, _)| name.as_str() == &*caller.function)
            .map(|(_, spec)| spec)
        else {
            return Err(Error::new(
                ErrorCode::FunctionNotFound,
                "the calling function is no longer deployed",
            ));
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&http::Method::POST, ["v1", "queues", queue, "messages"]) => {
                if !spec.queues.iter().any(|q| q.as_str() == *queue) {
                    return Err(Error::new(
                        ErrorCode::Forbidden,
                        format!(
                            "function {:?} may not send to queue {queue:?}; add it to the function's `queues` in the manifest",
                            caller.function
                        ),
                    ));
                }
                let mut meta = MessageMeta::new(MessageKind::Message, now_ms());
                meta.content_type = header_text(headers, "content-type");
                meta.group = header_text(headers, "x-nimbus-group");
                let ids = self.events.send(&app, queue, vec![(body, meta)]).await?;
                Ok(serde_json::json!({ "id": ids.first() }))
            }
            (&http::Method::POST, ["v1", "events"]) => {
                if !spec.publish {
                    return Err(Error::new(
                        ErrorCode::Forbidden,
                        format!(
                            "function {:?} may not publish events; set `publish = true` on it in the manifest",
                            caller.function
                        ),
                    ));
                }
                let event = parse_event(headers, body)?;
                let published = self.events.publish(&app, event).await?;
                serde_json::to_value(published).map_err(|e| {
                    Error::new(
                        ErrorCode::Internal,
                        format!("cannot encode the answer: {e}"),
                    )
                })
            }
            _ => Err(Error::new(
                ErrorCode::RouteNotFound,
                format!(
                    "no local API {method} {path}; see docs/events.md (POST /v1/queues/QUEUE/messages, POST /v1/events)"
                ),
            )),
        }
    }
}

fn header_text(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[async_trait::async_trait]
impl nimbus_runtime::Services for LocalApi {
    async fn call(
        &self,
        caller: &nimbus_runtime::Caller,
        method: &http::Method,
        path: &str,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> nimbus_runtime::ServiceResponse {
        match self.serve(caller, method, path, headers, body).await {
            Ok(value) => nimbus_runtime::ServiceResponse {
                status: 200,
                body: Bytes::from(value.to_string()),
            },
            Err(error) => {
                tracing::info!(app = %caller.app, function = %caller.function, code = %error.code, message = %error.message, "local API call refused");
                nimbus_runtime::ServiceResponse {
                    status: nimbus_gateway::status_for(error.code).as_u16(),
                    body: Bytes::from(
                        serde_json::json!({"error": {"code": error.code, "message": error.message}})
                            .to_string(),
                    ),
                }
            }
        }
    }
}
