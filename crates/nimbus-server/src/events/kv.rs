//! Key-value change events (`[kv.NAME] events = true`): the relay that publishes the stores'
//! recorded changes on their apps' buses.
//!
//! A store that emits events records each change in the commit that makes it (its outbox, see
//! `nimbus_store::kv`). The relay reads them in order and queues each, as a CloudEvent
//! (`nimbus_events::kv`), for every bus rule of the store's app that matches it, through
//! [`super::outbox`]; an event no rule matches is dropped, as a published one is.

use super::Events;
use super::outbox::{self, Forwarded};
use crate::deployments::Deployments;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_events::NewMessage;
use nimbus_events::kv::{KeyChange, cloudevent};
use nimbus_store::{KvEvent, KvStore};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Events relayed per queue commit.
const BATCH: usize = 256;
/// The relay's row in `EventTable::Cursors`.
const CURSOR: &str = "kv";

pub(crate) struct KvRelay {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) events: Arc<Events>,
    pub(crate) deployments: Deployments,
}

impl KvRelay {
    /// Relay until `stop`, waking when the store records events.
    pub(crate) async fn run(self, stop: CancellationToken) {
        super::relay_forever(
            &stop,
            "key-value events",
            || self.relay_once(),
            || self.store.events_recorded(),
        )
        .await;
    }

    /// Relay one batch; how many events it settled.
    async fn relay_once(&self) -> Result<usize, Error> {
        let pending = self.store.pending_events(BATCH).await.map_err(|error| {
            Error::new(
                ErrorCode::Internal,
                "cannot read the key-value store's events",
            )
            .caused_by(error)
        })?;
        let forwarded = outbox::forward(
            self.events.queue().as_ref(),
            CURSOR,
            &pending,
            |e| e.seq,
            |e| self.messages(e),
        )
        .await?;
        let last = match forwarded {
            Forwarded::Empty => return Ok(0),
            Forwarded::Conflict => return Ok(1),
            Forwarded::Done { last } => last,
        };
        self.store.settle_events(last).await.map_err(|error| {
            Error::new(
                ErrorCode::Internal,
                "cannot settle the key-value store's events",
            )
            .caused_by(error)
        })?;
        Ok(pending.len())
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
