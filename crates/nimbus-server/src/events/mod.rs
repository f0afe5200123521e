//! The asynchronous side, driven over one [`Queue`]: async invokes with idempotency keys,
//! invocation status, sending to queues, the event bus, and — through the registered
//! [`triggers`] — consumers ([`consumer`]) and schedulers for every deployed version.
//!
//! Every decision (retry or dead-letter, backoff, pattern match, what a schedule fires, what
//! shape an event takes) is a pure function of `nimbus-events`; every queue semantic (leases,
//! FIFO, conditions) is the queue backend's; this module only moves messages between the queue
//! and the pools.
//!
//! Queues are named `app/queue` in the queue backend. A function's asynchronous invocations — async
//! invokes, schedule ticks, bus events and destination records aimed at it — share its own
//! queue, `app/@function`; every queue has a dead-letter queue `<queue>.dlq` unless the
//! function's policy names one.

mod consumer;
pub(crate) mod kv;
mod outbox;
#[cfg(test)]
mod paused;
pub(crate) mod storage;
pub(crate) mod tables;
pub(crate) mod triggers;

use crate::deployments::{DeployedApp, DeploymentObserver};
use bytes::Bytes;
use nimbus_api::InvocationStatus;
use nimbus_core::clock::Clock;
use nimbus_core::error::Error;
use nimbus_core::{Destination, ErrorCode};
use nimbus_events::message::async_queue_of;
use nimbus_events::{CloudEvent, MessageKind, MessageMeta, NewMessage};
use nimbus_store::{
    Committed, Condition, Durability, EventTable, Expect, Queue, QueueError, TableOp,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use triggers::Trigger;

/// Largest result kept in an invocation's status.
const MAX_RESULT_BYTES: usize = 256 << 10;
/// Largest response read from a function invoked asynchronously.
const MAX_RESPONSE_BYTES: usize = 6 << 20;
/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// How long an invocation's status is kept after its last change.
pub const STATUS_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Conditional commits one keyed enqueue tries before it gives up (each conflict means another
/// writer changed the key meanwhile).
const CONDITIONAL_ATTEMPTS: usize = 4;
/// How often expired statuses and idempotency keys are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// Most consumer tasks for one function's own queue.
const MAX_ASYNC_WORKERS: u32 = 32;
/// Messages one async-queue worker leases at once (each is its own invocation).
const ASYNC_LEASE_BATCH: usize = 16;

/// The user-facing form of a queue failure; the cause rides along to the edge's log line.
pub(crate) fn queue_error(error: QueueError) -> Error {
    Error::new(
        ErrorCode::Internal,
        "the event store failed; see the server log",
    )
    .caused_by(error)
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("cannot encode a record: {e}")))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct IdempotencyEntry {
    invocation: String,
    expires_ms: u64,
}

/// The asynchronous side's driver over one [`Queue`]. Idempotency keys and schedule ticks are
/// decided by the queue's conditional commits, not by locks here, so any number of drivers
/// (of old and new versions, or of several nodes) can share one backend.
pub struct Events {
    queue: Arc<dyn Queue>,
    /// Started for every version that begins serving, in order.
    triggers: Vec<Box<dyn Trigger>>,
    /// Enqueue times, ages, schedule ticks (tests use paused time).
    clock: Arc<dyn Clock>,
    /// Itself, for the tasks it starts (which outlive a call but not the server).
    this: std::sync::Weak<Events>,
    /// Consumers and schedulers join the server's one tracker, so shutdown can wait for them
    /// (they hold the queue, and with it the store).
    tasks: tokio_util::task::TaskTracker,
}

#[async_trait::async_trait]
impl nimbus_gateway::AsyncInvoke for Events {
    async fn enqueue_http(
        &self,
        app: &str,
        function: &str,
        parts: &http::request::Parts,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<nimbus_gateway::AsyncAccepted, Error> {
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| {
                *name != nimbus_gateway::INVOCATION_TYPE_HEADER
                    && *name != nimbus_gateway::IDEMPOTENCY_KEY_HEADER
            })
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        let kind = MessageKind::Http {
            method: parts.method.to_string(),
            uri: parts.uri.to_string(),
            headers,
        };
        self.invoke_async(app, function, kind, body, idempotency_key)
            .await
    }
}

fn queue_key(app: &str, queue: &str) -> String {
    format!("{app}/{queue}")
}

impl Events {
    pub(crate) fn new(
        queue: Arc<dyn Queue>,
        triggers: Vec<Box<dyn Trigger>>,
        clock: Arc<dyn Clock>,
        tasks: tokio_util::task::TaskTracker,
    ) -> Arc<Events> {
        Arc::new_cyclic(|this| Events {
            queue,
            triggers,
            clock,
            this: this.clone(),
            tasks,
        })
    }

    /// The triggers every deployment gets, in the order they start.
    pub(crate) fn standard_triggers() -> Vec<Box<dyn Trigger>> {
        vec![
            Box::new(triggers::FunctionQueues),
            Box::new(triggers::QueueTriggers),
            Box::new(triggers::Schedules),
        ]
    }

    /// Now, in milliseconds since the epoch, on the driver's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// After every task has stopped: close the queue (it makes what it accepted durable).
    pub(crate) async fn close(&self) {
        self.queue.close().await;
    }

    /// Durably accept an asynchronous invocation of `app/function`.
    pub(crate) async fn invoke_async(
        &self,
        app: &str,
        function: &str,
        kind: MessageKind,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<nimbus_gateway::AsyncAccepted, Error> {
        let idem_key = idempotency_key.map(|k| format!("{app}/{function}/{k}"));
        let now = self.now_ms();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut meta = MessageMeta::new(kind, now);
        meta.invocation = Some(id.clone());
        let status = InvocationStatus {
            id: id.clone(),
            app: app.to_owned(),
            function: function.to_owned(),
            status: "queued".into(),
            attempts: 0,
            enqueued_ms: now,
            updated_ms: now,
            result: None,
            error: None,
            dead_letter: None,
        };
        let message = NewMessage {
            queue: queue_key(app, &async_queue_of(function)),
            meta,
            body,
        };
        let mut ops = vec![TableOp::Put {
            table: EventTable::Invocations,
            key: id.clone(),
            value: to_json(&status)?,
        }];
        let accepted = nimbus_gateway::AsyncAccepted {
            invocation_id: id.clone(),
            replay: false,
        };
        let Some(key) = idem_key else {
            self.queue
                .commit(vec![message], ops)
                .await
                .map_err(queue_error)?;
            return Ok(accepted);
        };
        // The key is claimed by the commit itself: put-if-absent, or replace an expired entry
        // only if it is still the one we read. A conflict means another request holds the key.
        ops.push(TableOp::Put {
            table: EventTable::Idempotency,
            key: key.clone(),
            value: to_json(&IdempotencyEntry {
                invocation: id.clone(),
                expires_ms: now + IDEMPOTENCY_WINDOW.as_millis() as u64,
            })?,
        });
        let mut expect = Expect::Absent;
        for _ in 0..CONDITIONAL_ATTEMPTS {
            let condition = Condition {
                table: EventTable::Idempotency,
                key: key.clone(),
                expect,
            };
            let committed = self
                .queue
                .commit_if(condition, vec![message.clone()], ops.clone())
                .await
                .map_err(queue_error)?;
            let current = match committed {
                Committed::Done(_) => return Ok(accepted),
                Committed::Conflict(current) => current,
            };
            match current
                .as_deref()
                .and_then(|raw| serde_json::from_slice::<IdempotencyEntry>(raw).ok())
            {
                Some(entry) if entry.expires_ms > now => {
                    return Ok(nimbus_gateway::AsyncAccepted {
                        invocation_id: entry.invocation,
                        replay: true,
                    });
                }
                // Expired or unreadable: take it over, if nobody else does first.
                _ => {
                    expect = match current {
                        Some(raw) => Expect::Value(raw),
                        None => Expect::Absent,
                    }
                }
            }
        }
        Err(Error::new(
            ErrorCode::Internal,
            format!("idempotency key {key:?} is contended; retry the request"),
        ))
    }

    pub(crate) async fn invocation(&self, id: &str) -> Result<InvocationStatus, Error> {
        let raw = self
            .queue
            .entry(EventTable::Invocations, id)
            .await
            .map_err(queue_error)?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvocationNotFound,
                    format!("no asynchronous invocation {id:?}"),
                )
            })?;
        serde_json::from_slice(&raw).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("stored status unreadable: {e}"),
            )
        })
    }

    /// Durably enqueue messages on a declared queue of `app`.
    pub(crate) async fn send(
        &self,
        app: &DeployedApp,
        queue: &str,
        messages: Vec<(Bytes, MessageMeta)>,
    ) -> Result<Vec<String>, Error> {
        let spec = app
            .spec
            .events
            .queues
            .iter()
            .find(|q| q.name.as_str() == queue)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::QueueNotFound,
                    format!(
                        "app {:?} declares no queue {queue:?}; declare it as [queue.{queue}] in the manifest",
                        app.spec.name.as_str()
                    ),
                )
            })?;
        let key = queue_key(app.spec.name.as_str(), queue);
        let batch = messages
            .into_iter()
            .map(|(body, mut meta)| {
                if !spec.fifo {
                    meta.group = None;
                } else if meta.group.is_none() {
                    meta.group = Some(String::new());
                }
                NewMessage {
                    queue: key.clone(),
                    meta,
                    body,
                }
            })
            .collect();
        let ids = self
            .queue
            .commit(batch, vec![])
            .await
            .map_err(queue_error)?;
        Ok(ids.into_iter().map(|(_, id)| id.to_string()).collect())
    }

    /// Publish a CloudEvent on `app`'s bus: queue it for every rule it matches.
    pub(crate) async fn publish(
        &self,
        app: &DeployedApp,
        event: CloudEvent,
    ) -> Result<nimbus_api::PublishResponse, Error> {
        let messages = self.rule_messages(app, &event);
        let matched = messages.len();
        if matched > 0 {
            self.queue
                .commit(messages, vec![])
                .await
                .map_err(queue_error)?;
        }
        Ok(nimbus_api::PublishResponse {
            id: event.id,
            matched,
        })
    }

    /// The messages that deliver `event` to the targets of the rules of `app` it matches.
    fn rule_messages(&self, app: &DeployedApp, event: &CloudEvent) -> Vec<NewMessage> {
        let document = event.to_json();
        let body = Bytes::from(document.to_string());
        let app_name = app.spec.name.as_str();
        app.rules
            .matching(&document)
            .map(|(rule, target)| {
                tracing::debug!(app = app_name, rule, event = %event.id, "rule matched");
                destination_message(
                    self.now_ms(),
                    app_name,
                    target,
                    MessageKind::Event,
                    body.clone(),
                    Some(nimbus_events::cloudevent::STRUCTURED_CONTENT_TYPE),
                )
            })
            .collect()
    }

    /// Delete invocation statuses older than [`STATUS_RETENTION`] and expired idempotency keys,
    /// now and every [`SWEEP_INTERVAL`] until `stop`.
    pub(crate) async fn sweep_forever(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.sweep(self.now_ms()).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    removed,
                    "expired invocation statuses and idempotency keys removed"
                ),
                Err(error) => {
                    tracing::warn!(error = %crate::report(&error), "sweeping expired statuses failed")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
        }
    }

    async fn sweep(&self, now: u64) -> Result<usize, QueueError> {
        let mut deletes = Vec::new();
        for (key, raw) in self.queue.entries(EventTable::Invocations, "").await? {
            let expired = serde_json::from_slice::<InvocationStatus>(&raw).map_or(true, |s| {
                s.updated_ms + (STATUS_RETENTION.as_millis() as u64) < now
            });
            if expired {
                deletes.push(TableOp::Delete {
                    table: EventTable::Invocations,
                    key,
                });
            }
        }
        for (key, raw) in self.queue.entries(EventTable::Idempotency, "").await? {
            let expired = serde_json::from_slice::<IdempotencyEntry>(&raw)
                .map_or(true, |e| e.expires_ms <= now);
            if expired {
                deletes.push(TableOp::Delete {
                    table: EventTable::Idempotency,
                    key,
                });
            }
        }
        let removed = deletes.len();
        if removed > 0 {
            self.queue.write(deletes, Durability::Immediate).await?;
        }
        Ok(removed)
    }

    /// Keep an invocation's status (eventually durable: losing it in a crash leaves the
    /// previous status, and the message is redelivered).
    async fn record_status(&self, status: &InvocationStatus) {
        let value = match serde_json::to_vec(status) {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(invocation = %status.id, %error, "invocation status not kept");
                return;
            }
        };
        let op = TableOp::Put {
            table: EventTable::Invocations,
            key: status.id.clone(),
            value,
        };
        if let Err(error) = self.queue.write(vec![op], Durability::Eventual).await {
            tracing::error!(invocation = %status.id, error = %crate::report(&error), "invocation status not kept");
        }
    }
}

#[async_trait::async_trait]
impl DeploymentObserver for Events {
    fn started(&self, app: &Arc<DeployedApp>) {
        let Some(events) = self.this.upgrade() else {
            return;
        };
        for trigger in &self.triggers {
            trigger.start(&events, app);
        }
    }

    fn stopped(&self, app: &Arc<DeployedApp>) {
        tracing::debug!(
            app = app.name(),
            version = app.version.number,
            "consumers and schedulers stopping"
        );
    }

    async fn removed(&self, app: &str) {
        match self.queue.purge(&format!("{app}/")).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(app, purged, "queued messages of the removed app deleted"),
            Err(error) => {
                tracing::error!(app, error = %crate::report(&error), "queued messages of the removed app could not be deleted")
            }
        }
        // Its table triggers' cursors: an app created again under the name starts afresh.
        let cursors = match self
            .queue
            .entries(EventTable::Cursors, &tables::cursor_prefix(app))
            .await
        {
            Ok(entries) => entries
                .into_iter()
                .map(|(key, _)| TableOp::Delete {
                    table: EventTable::Cursors,
                    key,
                })
                .collect(),
            Err(error) => {
                tracing::error!(app, error = %crate::report(&error), "the removed app's table cursors could not be read");
                Vec::new()
            }
        };
        if !cursors.is_empty()
            && let Err(error) = self.queue.write(cursors, Durability::Immediate).await
        {
            tracing::error!(app, error = %crate::report(&error), "the removed app's table cursors could not be deleted");
        }
    }
}

/// Drive a relay until `stop`: `once` moves one batch along (answering how many items it
/// settled); after progress it runs again at once, when idle it waits for `wake`, and after a
/// failure it pauses a second (logging the first failure of a spell, naming `what`).
async fn relay_forever<Once, Wake>(
    stop: &CancellationToken,
    what: &str,
    mut once: impl FnMut() -> Once,
    mut wake: impl FnMut() -> Wake,
) where
    Once: Future<Output = Result<usize, Error>>,
    Wake: Future<Output = ()>,
{
    let mut failing = false;
    loop {
        match once().await {
            Ok(0) => {
                failing = false;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = wake() => {}
                }
            }
            Ok(_) => {
                failing = false;
                if stop.is_cancelled() {
                    return;
                }
            }
            Err(error) => {
                if !failing {
                    tracing::error!(error = %crate::report(&error), "relaying {what} failed; retrying");
                }
                failing = true;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// A message carrying a result, error record or event to a destination.
fn destination_message(
    now_ms: u64,
    app: &str,
    target: &Destination,
    kind: MessageKind,
    body: Bytes,
    content_type: Option<&str>,
) -> NewMessage {
    let (queue, kind) = match target {
        Destination::Function(function) => (async_queue_of(function.as_str()), kind),
        Destination::Queue(queue) => (queue.to_string(), MessageKind::Message),
    };
    let mut meta = MessageMeta::new(kind, now_ms);
    meta.content_type = content_type.map(str::to_owned);
    if matches!(target, Destination::Function(_)) {
        meta.invocation = Some(uuid::Uuid::now_v7().simple().to_string());
    }
    NewMessage {
        queue: queue_key(app, &queue),
        meta,
        body,
    }
}

/// The name a queue is shown under, and whether it exists in `app`.
pub(crate) fn check_queue(app: &DeployedApp, queue: &str) -> Result<(), Error> {
    let base = queue.strip_suffix(".dlq").unwrap_or(queue);
    let known = app
        .spec
        .events
        .queues
        .iter()
        .any(|q| q.name.as_str() == base)
        || base
            .strip_prefix('@')
            .is_some_and(|f| app.spec.functions.keys().any(|n| n.as_str() == f));
    if known {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::QueueNotFound,
            format!(
                "app {:?} has no queue {queue:?}; `nimbus queue ls` lists them",
                app.spec.name.as_str()
            ),
        ))
    }
}

/// A CloudEvent from an HTTP request: structured mode when the content type says
/// `application/cloudevents+json`, binary mode (`ce-*` headers) otherwise.
pub(crate) fn parse_event(headers: &http::HeaderMap, body: Bytes) -> Result<CloudEvent, Error> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parsed = if content_type.starts_with(nimbus_events::cloudevent::STRUCTURED_CONTENT_TYPE) {
        CloudEvent::from_json(&body)
    } else {
        CloudEvent::from_binary(
            headers
                .iter()
                .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
            body,
        )
    };
    parsed.map_err(|e| Error::new(ErrorCode::InvalidEvent, e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use nimbus_core::clock::SystemClock;

    #[tokio::test]
    async fn expired_statuses_and_idempotency_keys_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).unwrap());
        let queue = nimbus_store_redb::QueueEngine::open(store).unwrap();
        let events = Events::new(
            queue,
            Vec::new(),
            Arc::new(SystemClock),
            tokio_util::task::TaskTracker::new(),
        );
        let now = SystemClock.now_ms();
        let day = STATUS_RETENTION.as_millis() as u64;
        let status = |id: &str, updated_ms: u64| InvocationStatus {
            id: id.into(),
            app: "a".into(),
            function: "f".into(),
            status: "succeeded".into(),
            attempts: 1,
            enqueued_ms: updated_ms,
            updated_ms,
            result: None,
            error: None,
            dead_letter: None,
        };
        let mut ops = Vec::new();
        for (id, updated) in [("old", now - day - 1), ("new", now - 1000)] {
            ops.push(TableOp::Put {
                table: EventTable::Invocations,
                key: id.into(),
                value: serde_json::to_vec(&status(id, updated)).unwrap(),
            });
        }
        for (key, expires_ms) in [("a/f/old", now - 1), ("a/f/new", now + 1000)] {
            ops.push(TableOp::Put {
                table: EventTable::Idempotency,
                key: key.into(),
                value: serde_json::to_vec(&IdempotencyEntry {
                    invocation: "x".into(),
                    expires_ms,
                })
                .unwrap(),
            });
        }
        events
            .queue
            .write(ops, Durability::Immediate)
            .await
            .unwrap();
        assert_eq!(events.sweep(now).await.unwrap(), 2);
        assert!(events.invocation("old").await.is_err());
        assert_eq!(events.invocation("new").await.unwrap().id, "new");
        let keys = events
            .queue
            .entries(EventTable::Idempotency, "")
            .await
            .unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].0, "a/f/new");
    }
}
