//! Upload triggers (`[[trigger.storage]]`): the relay that moves the object store's recorded
//! change events into queues.
//!
//! The object store records an event in the very commit that changes an object (its outbox,
//! see `nimbus_store::objects`), so no change is acknowledged without its event. The relay
//! reads them in order and enqueues each for its target — the target function's own queue
//! (`app/@function`, delivered with the function's delivery policy, as a CloudEvent that
//! Lambda-style functions receive as S3's `{"Records": [...]}`), or a declared queue (the S3
//! notification as the message body, as S3 sends to SQS), through [`super::outbox`].

use super::outbox::{self, Forwarded};
use super::{Events, destination_message};
use crate::deployments::Deployments;
use bytes::Bytes;
use nimbus_core::error::Error;
use nimbus_core::{Destination, ErrorCode};
use nimbus_events::s3::{ObjectChange, cloudevent, notification, record};
use nimbus_events::{MessageKind, NewMessage};
use nimbus_store::{ObjectEvent, ObjectStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Events relayed per queue commit.
const BATCH: usize = 256;
/// The relay's row in [`EventTable::Cursors`].
const CURSOR: &str = "objects";

/// Who a bucket's notification rule is for, as the store keeps it (opaque to the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StorageTarget {
    pub(crate) app: String,
    pub(crate) target: Destination,
}

impl StorageTarget {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn decode(text: &str) -> Option<StorageTarget> {
        serde_json::from_str(text).ok()
    }
}

pub(crate) struct StorageRelay {
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) events: Arc<Events>,
    pub(crate) deployments: Deployments,
}

impl StorageRelay {
    /// Relay until `stop`, waking when the store records events.
    pub(crate) async fn run(self, stop: CancellationToken) {
        super::relay_forever(
            &stop,
            "object events",
            || self.relay_once(),
            || self.objects.events_recorded(),
        )
        .await;
    }

    /// Relay one batch; how many events it settled.
    async fn relay_once(&self) -> Result<usize, Error> {
        let pending = self.objects.pending_events(BATCH).await.map_err(|error| {
            Error::new(ErrorCode::Internal, "cannot read the object store's events")
                .caused_by(error)
        })?;
        let forwarded = outbox::forward(
            self.events.queue().as_ref(),
            CURSOR,
            &pending,
            |e| e.seq,
            |e| self.message(e).into_iter().collect(),
        )
        .await?;
        let last = match forwarded {
            Forwarded::Empty => return Ok(0),
            Forwarded::Conflict => return Ok(1),
            Forwarded::Done { last } => last,
        };
        self.objects.settle_events(last).await.map_err(|error| {
            Error::new(
                ErrorCode::Internal,
                "cannot settle the object store's events",
            )
            .caused_by(error)
        })?;
        Ok(pending.len())
    }

    /// The message that delivers `event`, unless its target no longer exists.
    fn message(&self, event: &ObjectEvent) -> Option<NewMessage> {
        let Some(StorageTarget { app, target }) = StorageTarget::decode(&event.target) else {
            tracing::warn!(target = %event.target, "an object event names no known target; dropped");
            return None;
        };
        let deployed = self.deployments.get(&app);
        let exists = deployed.as_ref().is_some_and(|d| match &target {
            Destination::Function(f) => d.spec.functions.contains_key(f),
            Destination::Queue(q) => d.spec.events.queues.iter().any(|s| &s.name == q),
        });
        if !exists {
            tracing::warn!(app, %target, bucket = event.bucket, key = event.key, "an object event's target is not deployed; dropped");
            return None;
        }
        let change = ObjectChange {
            bucket: &event.bucket,
            key: &event.key,
            event_name: event.change.event_name(),
            size: event.size,
            etag: &event.etag,
            sequence: event.seq,
            at_ms: event.at_ms,
        };
        let now = self.events.now_ms();
        let mut message = match &target {
            Destination::Function(_) => destination_message(
                now,
                &app,
                &target,
                MessageKind::Event,
                Bytes::from(cloudevent(&change).to_json().to_string()),
                Some(nimbus_events::cloudevent::STRUCTURED_CONTENT_TYPE),
            ),
            Destination::Queue(_) => destination_message(
                now,
                &app,
                &target,
                MessageKind::Message,
                Bytes::from(notification(vec![record(&change)]).to_string()),
                Some("application/json"),
            ),
        };
        let fifo =
            deployed.as_ref().is_some_and(|d| {
                d.spec.events.queues.iter().any(|q| {
                    q.fifo && matches!(&target, Destination::Queue(name) if name == &q.name)
                })
            });
        if fifo {
            // One bucket's changes in order.
            message.meta.group = Some(event.bucket.clone());
        }
        Some(message)
    }
}
