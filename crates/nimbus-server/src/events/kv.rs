//! Key-value change events (`[kv.NAME] events = true`): the relay that publishes the stores'
//! recorded changes on their apps' buses.
//!
//! A store that emits events records each change in the commit that makes it (its outbox, see
//! `nimbus_store::kv`). The relay reads them in order and queues each, as a CloudEvent
//! (`nimbus_events::kv`), for every bus rule of the store's app that matches it, through
//! [`super::outbox`]; an event no rule matches is dropped, as a published one is.

use super::Events;
use super::outbox::{self, Outbox};
use crate::deployments::Deployments;
use nimbus_events::NewMessage;
use nimbus_events::kv::{KeyChange, cloudevent};
use nimbus_store::{KvError, KvEvent, KvStore};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(crate) struct KvRelay {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) events: Arc<Events>,
    pub(crate) deployments: Deployments,
}

impl KvRelay {
    /// Relay until `stop`, waking when the store records events.
    pub(crate) async fn run(self, stop: CancellationToken) {
        outbox::relay(&self, self.events.queue().as_ref(), &stop).await;
    }
}

#[async_trait::async_trait]
impl Outbox for KvRelay {
    type Event = KvEvent;
    type Error = KvError;
    const WHAT: &'static str = "key-value events";
    const CURSOR: &'static str = "kv";

    async fn pending(&self, max: usize) -> Result<Vec<KvEvent>, KvError> {
        self.store.pending_events(max).await
    }

    async fn settle(&self, through: u64) -> Result<(), KvError> {
        self.store.settle_events(through).await
    }

    async fn recorded(&self) {
        self.store.events_recorded().await
    }

    fn seq(event: &KvEvent) -> u64 {
        event.seq
    }

    /// The messages that deliver `event` to the rules it matches, none if its app is gone.
    fn messages(&self, event: &KvEvent) -> Vec<NewMessage> {
        let Some(app) = self.deployments.get(&event.store.app) else {
            tracing::debug!(store = %event.store, "a key-value event's app is not deployed; dropped");
            return Vec::new();
        };
        let change = KeyChange {
            app: &event.store.app,
            store: &event.store.store,
            key: &event.key,
            operation: event.change.as_str(),
            version: event.version,
            size: event.size,
            sequence: event.seq,
            at_ms: event.at_ms,
        };
        self.events.rule_messages(&app, &cloudevent(&change))
    }
}
