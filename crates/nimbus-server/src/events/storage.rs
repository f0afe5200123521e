//! Upload triggers (`[[trigger.storage]]`): the relay that moves the object store's recorded
//! change events into queues.
//!
//! The object store records an event in the very commit that changes an object (its outbox,
//! see `nimbus_store::objects`), so no change is acknowledged without its event. The relay
//! reads them in order and enqueues each for its target — the target function's own queue
//! (`app/@function`, delivered with the function's delivery policy, as a CloudEvent that
//! Lambda-style functions receive as S3's `{"Records": [...]}`), or a declared queue (the S3
//! notification as the message body, as S3 sends to SQS), through [`super::outbox`].

use super::outbox::{self, Outbox};
use super::{Events, destination_message};
use crate::deployments::Deployments;
use bytes::Bytes;
use nimbus_core::Destination;
use nimbus_events::s3::{ObjectChange, cloudevent, notification, record};
use nimbus_events::{MessageKind, NewMessage};
use nimbus_store::{ObjectError, ObjectEvent, ObjectStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
        outbox::relay(&self, self.events.queue().as_ref(), &stop).await;
    }
}

#[async_trait::async_trait]
impl Outbox for StorageRelay {
    type Event = ObjectEvent;
    type Error = ObjectError;
    const WHAT: &'static str = "object events";
    const CURSOR: &'static str = "objects";

    async fn pending(&self, max: usize) -> Result<Vec<ObjectEvent>, ObjectError> {
        self.objects.pending_events(max).await
    }

    async fn settle(&self, through: u64) -> Result<(), ObjectError> {
        self.objects.settle_events(through).await
    }

    async fn recorded(&self) {
        self.objects.events_recorded().await
    }

    fn seq(event: &ObjectEvent) -> u64 {
        event.seq
    }

    fn messages(&self, event: &ObjectEvent) -> Vec<NewMessage> {
        self.message(event).into_iter().collect()
    }
}

impl StorageRelay {
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
        message.meta.trigger = Some(nimbus_core::Trigger::Datasource);
        Some(message)
    }
}
