//! The asynchronous side, driven: consumers that lease messages and invoke functions through
//! their pools, schedulers, the event bus, async invokes with idempotency keys, invocation
//! status, and the on_success / on_failure destinations.
//!
//! Every decision (retry or dead-letter, backoff, pattern match, what a schedule fires, what
//! shape an event takes) is a pure function of `nimbus-events`; this module only moves
//! messages between the engine and the pools.
//!
//! Queues are named `app/queue` in the engine. A function's asynchronous invocations — async
//! invokes, schedule ticks, bus events and destination records aimed at it — share its own
//! queue, `app/@function`; every queue has a dead-letter queue `<queue>.dlq` unless the
//! function's policy names one.

use crate::deployments::{DeployedApp, DeploymentObserver};
use bytes::Bytes;
use http_body_util::BodyExt;
use nimbus_api::{InvocationError, InvocationResult, InvocationStatus};
use nimbus_core::error::Error;
use nimbus_core::{DeliveryPolicy, Destination, ErrorCode, FunctionSpec};
use nimbus_dispatch::Pool;
use nimbus_events::format::{self, Outcome};
use nimbus_events::message::{async_queue_of, dlq_of};
use nimbus_events::policy::{self, AfterFailure, DeadReason};
use nimbus_events::schedule::{Schedule, resume};
use nimbus_events::{CloudEvent, Dead, Leased, MessageKind, MessageMeta, NewMessage};
use nimbus_runtime::{Body, BodyError, RawEvent};
use nimbus_store::{
    Committed, Condition, Durability, EventTable, Expect, Queue, QueueError, TableOp,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn queue_error(error: QueueError) -> Error {
    tracing::error!(error = %crate::report(&error), "queue backend failure");
    Error::new(
        ErrorCode::Internal,
        "the event store failed; see the server log",
    )
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScheduleState {
    last_tick_ms: i64,
}

/// The asynchronous side's driver over one [`Queue`]. Idempotency keys and schedule ticks are
/// decided by the queue's conditional commits, not by locks here, so any number of drivers
/// (of old and new versions, or of several nodes) can share one backend.
pub struct Events {
    queue: Arc<dyn Queue>,
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
    pub(crate) fn new(queue: Arc<dyn Queue>, tasks: tokio_util::task::TaskTracker) -> Arc<Events> {
        Arc::new_cyclic(|this| Events {
            queue,
            this: this.clone(),
            tasks,
        })
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
        let now = now_ms();
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
        let document = event.to_json();
        let body = Bytes::from(document.to_string());
        let app_name = app.spec.name.as_str();
        let mut messages = Vec::new();
        for (rule, target) in app.rules.matching(&document) {
            tracing::debug!(app = app_name, rule, event = %event.id, "rule matched");
            messages.push(destination_message(
                app_name,
                target,
                MessageKind::Event,
                body.clone(),
                Some(nimbus_events::cloudevent::STRUCTURED_CONTENT_TYPE),
            ));
        }
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

    /// Start consumers and schedulers of a deployed app version; they stop with its workers
    /// token.
    fn start(&self, app: &Arc<DeployedApp>) {
        let Some(events) = self.this.upgrade() else {
            return;
        };
        let stop = &app.workers;
        let app_name = app.spec.name.to_string();
        for (name, spec) in &app.spec.functions {
            let Some(pool) = app.pools.get(name.as_str()) else {
                continue;
            };
            let workers = spec.max_concurrency.clamp(1, MAX_ASYNC_WORKERS);
            let consumer = Arc::new(Consumer {
                events: events.clone(),
                app: app_name.clone(),
                queue: async_queue_of(name.as_str()),
                function: spec.clone(),
                version: app.version.number,
                pool: pool.clone(),
                batch: BatchMode::Each(ASYNC_LEASE_BATCH),
            });
            for _ in 0..workers {
                self.tasks.spawn(consumer.clone().run(stop.clone()));
            }
        }
        for trigger in &app.spec.events.queue_triggers {
            let (Some(pool), Some(spec)) = (
                app.pools.get(trigger.function.as_str()),
                app.spec.functions.get(&trigger.function),
            ) else {
                continue;
            };
            let batch = if pool.event_shape().takes_batches() {
                BatchMode::Records(trigger.batch_size as usize)
            } else {
                BatchMode::Each(trigger.batch_size as usize)
            };
            let consumer = Arc::new(Consumer {
                events: events.clone(),
                app: app_name.clone(),
                queue: trigger.queue.to_string(),
                function: spec.clone(),
                version: app.version.number,
                pool: pool.clone(),
                batch,
            });
            for _ in 0..trigger.concurrency {
                self.tasks.spawn(consumer.clone().run(stop.clone()));
            }
        }
        for schedule in &app.spec.events.schedules {
            match Schedule::new(&schedule.expr, &schedule.timezone) {
                Ok(parsed) => {
                    self.tasks.spawn(events.clone().schedule(
                        app_name.clone(),
                        schedule.clone(),
                        parsed,
                        stop.clone(),
                    ));
                }
                Err(error) => {
                    tracing::error!(app = %app_name, schedule = %schedule.name, %error, "schedule not started")
                }
            }
        }
    }

    async fn schedule(
        self: Arc<Self>,
        app: String,
        spec: nimbus_core::ScheduleSpec,
        schedule: Schedule,
        stop: CancellationToken,
    ) {
        let key = format!("{app}/{}", spec.name);
        let last = match self.queue.entry(EventTable::Schedules, &key).await {
            Ok(raw) => raw
                .and_then(|raw| serde_json::from_slice::<ScheduleState>(&raw).ok())
                .map(|s| s.last_tick_ms),
            Err(error) => {
                tracing::error!(error = %crate::report(&error), schedule = %key, "cannot read the schedule's last tick; not starting it");
                return;
            }
        };
        let plan = resume(&schedule, last, now_ms() as i64, spec.missed);
        if let Some(tick) = plan.fire_now {
            self.fire(&app, &spec, &key, tick).await;
        }
        let mut next = plan.next;
        while let Some(tick) = next {
            // Sleep in bounded steps so clock changes are noticed.
            loop {
                let now = now_ms() as i64;
                if now >= tick {
                    break;
                }
                let wait = Duration::from_millis((tick - now).min(1000) as u64);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if stop.is_cancelled() {
                return;
            }
            self.fire(&app, &spec, &key, tick).await;
            next = schedule.next_after(tick.max(now_ms() as i64 - 1));
        }
    }

    /// Fire one tick: enqueue the event and record the tick in one conditional commit, unless
    /// it (or a later one) was already fired — by this scheduler, by the scheduler of a version
    /// being replaced, or by another node sharing the queue.
    async fn fire(&self, app: &str, spec: &nimbus_core::ScheduleSpec, key: &str, tick: i64) {
        let payload = spec
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok())
            .unwrap_or_else(|| serde_json::json!({}));
        let mut event = CloudEvent::new(
            format!("/apps/{app}/schedules/{}", spec.name),
            format::SCHEDULE_TYPE,
        )
        .with_json(&payload);
        event.id = format!("{app}-{}-{tick}", spec.name);
        event.subject = Some(spec.name.clone());
        event.time = Some(format::millis_to_rfc3339(tick.max(0) as u64));
        let mut meta = MessageMeta::new(MessageKind::Event, now_ms());
        meta.invocation = Some(uuid::Uuid::now_v7().simple().to_string());
        let message = NewMessage {
            queue: queue_key(app, &async_queue_of(spec.function.as_str())),
            meta,
            body: Bytes::from(event.to_json().to_string()),
        };
        let state = match to_json(&ScheduleState { last_tick_ms: tick }) {
            Ok(value) => TableOp::Put {
                table: EventTable::Schedules,
                key: key.to_owned(),
                value,
            },
            Err(error) => {
                tracing::error!(schedule = %key, %error, "schedule tick not fired");
                return;
            }
        };
        let mut current = match self.queue.entry(EventTable::Schedules, key).await {
            Ok(current) => current,
            Err(error) => {
                tracing::error!(schedule = %key, error = %crate::report(&error), "schedule tick not fired");
                return;
            }
        };
        for _ in 0..CONDITIONAL_ATTEMPTS {
            let last = current
                .as_deref()
                .and_then(|raw| serde_json::from_slice::<ScheduleState>(raw).ok())
                .map(|s| s.last_tick_ms);
            if last.is_some_and(|last| last >= tick) {
                return;
            }
            let condition = Condition {
                table: EventTable::Schedules,
                key: key.to_owned(),
                expect: match current {
                    Some(raw) => Expect::Value(raw),
                    None => Expect::Absent,
                },
            };
            match self
                .queue
                .commit_if(condition, vec![message.clone()], vec![state.clone()])
                .await
            {
                Ok(Committed::Done(_)) => {
                    tracing::info!(schedule = %key, tick, "schedule fired");
                    return;
                }
                Ok(Committed::Conflict(now)) => current = now,
                Err(error) => {
                    tracing::error!(schedule = %key, error = %crate::report(&error), "schedule tick not fired");
                    return;
                }
            }
        }
        tracing::error!(schedule = %key, tick, "schedule tick not fired: its state kept changing");
    }

    /// Delete invocation statuses older than [`STATUS_RETENTION`] and expired idempotency keys,
    /// now and every [`SWEEP_INTERVAL`] until `stop`.
    pub(crate) async fn sweep_forever(self: Arc<Self>, stop: CancellationToken) {
        loop {
            match self.sweep(now_ms()).await {
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
        self.start(app);
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
    }
}

/// A message carrying a result, error record or event to a destination.
fn destination_message(
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
    let mut meta = MessageMeta::new(kind, now_ms());
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

#[derive(Debug, Clone, Copy)]
enum BatchMode {
    /// Lease up to n, invoke once per message.
    Each(usize),
    /// Lease up to n, invoke once with all of them as SQS `Records`.
    Records(usize),
}

struct Consumer {
    events: Arc<Events>,
    app: String,
    /// The queue's name within the app (`orders`, `@worker`).
    queue: String,
    function: FunctionSpec,
    version: u64,
    pool: Arc<Pool>,
    batch: BatchMode,
}

/// How one invocation ended, as the policy sees it.
struct Attempt {
    ok: bool,
    status: u16,
    body: Bytes,
    error: Option<(ErrorCode, String)>,
}

impl Consumer {
    fn key(&self) -> String {
        queue_key(&self.app, &self.queue)
    }

    fn policy(&self) -> &DeliveryPolicy {
        &self.function.delivery
    }

    async fn run(self: Arc<Self>, stop: CancellationToken) {
        let key = self.key();
        let (max, per_message) = match self.batch {
            BatchMode::Each(n) => (n, true),
            BatchMode::Records(n) => (n, false),
        };
        // A lease outlives the invocation it covers by a margin; messages of a batch invoked
        // one after the other get their lease extended as their turn comes, so a consumer that
        // dies mid-batch holds the rest back for one timeout, not one per message.
        let visibility = self.function.timeout + Duration::from_secs(10);
        loop {
            let leased = match self.events.queue.lease(&key, max, visibility, &stop).await {
                Ok(leased) => leased,
                Err(error) => {
                    tracing::error!(queue = %key, error = %crate::report(&error), "lease failed");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if leased.is_empty() {
                if stop.is_cancelled() {
                    return;
                }
                continue;
            }
            // Too old to try: dead-letter without invoking.
            let now = now_ms();
            let (expired, live): (Vec<Leased>, Vec<Leased>) = leased
                .into_iter()
                .partition(|l| policy::expired(self.policy(), l.meta.enqueued_ms, now));
            for leased in expired {
                let attempt = Attempt {
                    ok: false,
                    status: 0,
                    body: Bytes::new(),
                    error: None,
                };
                self.give_up(&leased, DeadReason::EventAgeExceeded, &attempt)
                    .await;
            }
            if live.is_empty() {
                continue;
            }
            if per_message {
                for leased in live {
                    match self.events.queue.extend(&leased, visibility).await {
                        Ok(true) => {}
                        // The lease ran out while earlier messages ran: someone else has it.
                        Ok(false) => continue,
                        Err(error) => {
                            tracing::warn!(queue = %key, id = leased.id, error = %crate::report(&error), "lease not extended; the message will be redelivered");
                            continue;
                        }
                    }
                    let attempt = self.invoke(std::slice::from_ref(&leased)).await;
                    self.settle(&leased, &attempt).await;
                }
            } else {
                let attempt = self.invoke(&live).await;
                let failed_ids = if attempt.ok {
                    format::batch_item_failures(&attempt.body).unwrap_or_default()
                } else {
                    Vec::new()
                };
                for leased in &live {
                    if attempt.ok && failed_ids.contains(&format::message_id(leased)) {
                        let partial = Attempt {
                            ok: false,
                            status: attempt.status,
                            body: Bytes::new(),
                            error: Some((
                                ErrorCode::FunctionError,
                                "reported in batchItemFailures".into(),
                            )),
                        };
                        self.settle(leased, &partial).await;
                    } else {
                        self.settle(leased, &attempt).await;
                    }
                }
            }
        }
    }

    /// Build the request for a batch and run it through the pool.
    async fn invoke(&self, batch: &[Leased]) -> Attempt {
        let Some(first) = batch.first() else {
            return Attempt {
                ok: true,
                status: 200,
                body: Bytes::new(),
                error: None,
            };
        };
        let request_id: Arc<str> = Arc::from(
            first
                .meta
                .invocation
                .clone()
                .unwrap_or_else(|| format!("{}-{}", first.id, first.attempt)),
        );
        let request = match self.request(batch, &request_id) {
            Ok(request) => request,
            Err(message) => {
                return Attempt {
                    ok: false,
                    status: 0,
                    body: Bytes::new(),
                    error: Some((ErrorCode::InvalidEvent, message)),
                };
            }
        };
        match self.pool.invoke(request, request_id).await {
            Ok(response) => {
                let status = response.status().as_u16();
                match read_limited(response.into_body(), MAX_RESPONSE_BYTES).await {
                    Ok(body) if (200..300).contains(&status) => Attempt {
                        ok: true,
                        status,
                        body,
                        error: None,
                    },
                    Ok(body) => Attempt {
                        ok: false,
                        status,
                        error: Some((
                            ErrorCode::FunctionError,
                            format!(
                                "the function answered {status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(512)])
                            ),
                        )),
                        body,
                    },
                    Err(message) => Attempt {
                        ok: false,
                        status,
                        body: Bytes::new(),
                        error: Some((ErrorCode::FunctionBadResponse, message)),
                    },
                }
            }
            Err(error) => Attempt {
                ok: false,
                status: 0,
                body: Bytes::new(),
                error: Some((error.code(), error.to_string())),
            },
        }
    }

    /// The request for a batch: its shape is decided by `nimbus_events::format::delivery`.
    fn request(
        &self,
        batch: &[Leased],
        request_id: &str,
    ) -> Result<nimbus_runtime::Request, String> {
        let target = format::Target {
            app: &self.app,
            function: self.function.name.as_str(),
            queue: &self.queue,
            shape: self.pool.event_shape(),
        };
        let delivery = format::delivery(&target, batch, request_id)?;
        let mut builder = http::Request::builder()
            .method(delivery.method.as_str())
            .uri(delivery.uri.as_str());
        for (name, value) in &delivery.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut request = builder
            .body(
                http_body_util::Full::new(delivery.body)
                    .map_err(|never: std::convert::Infallible| -> BodyError { match never {} })
                    .boxed_unsync(),
            )
            .map_err(|e| format!("the stored request cannot be replayed: {e}"))?;
        if delivery.raw {
            request.extensions_mut().insert(RawEvent);
        }
        Ok(request)
    }

    /// Ack, retry or give up on one message after an attempt.
    async fn settle(&self, leased: &Leased, attempt: &Attempt) {
        let key = self.key();
        if attempt.ok {
            if let Some(destination) = &self.policy().on_success {
                self.send_record(destination, leased, attempt, true, "Success")
                    .await;
            }
            if let Err(error) = self.events.queue.ack(leased).await {
                tracing::error!(queue = %key, id = leased.id, error = %crate::report(&error), "ack failed; the message will be redelivered");
            }
            self.update_status(leased, "succeeded", attempt, None).await;
            return;
        }
        let decision = policy::after_failure(
            self.policy(),
            leased.attempt,
            leased.meta.enqueued_ms,
            now_ms(),
            rand::random::<f64>(),
        );
        match decision {
            AfterFailure::Retry { delay } => {
                tracing::info!(queue = %key, id = leased.id, attempt = leased.attempt, ?delay, error = ?attempt.error, "delivery failed; will retry");
                if let Err(error) = self.events.queue.nack(leased, delay).await {
                    tracing::error!(queue = %key, id = leased.id, error = %crate::report(&error), "retry not scheduled; the message will be redelivered when its lease expires");
                }
                self.update_status(leased, "retrying", attempt, None).await;
            }
            AfterFailure::DeadLetter(reason) => self.give_up(leased, reason, attempt).await,
        }
    }

    async fn give_up(&self, leased: &Leased, reason: DeadReason, attempt: &Attempt) {
        let key = self.key();
        let dlq = match &self.policy().dead_letter {
            Some(queue) => queue_key(&self.app, queue.as_str()),
            None => dlq_of(&key),
        };
        let error = match &attempt.error {
            Some((code, message)) => format!("{code}: {message}"),
            None => format!(
                "the event was older than the delivery policy's max_age of {:?} before it could be attempted again",
                self.policy().max_age
            ),
        };
        tracing::warn!(queue = %key, id = leased.id, attempts = leased.attempt, reason = reason.as_str(), %error, dead_letter = %dlq, "delivery given up");
        if let Some(destination) = &self.policy().on_failure {
            self.send_record(destination, leased, attempt, false, reason.as_str())
                .await;
        }
        let dead = Dead {
            reason,
            origin: key.clone(),
            error,
            at_ms: now_ms(),
        };
        if let Err(error) = self.events.queue.dead_letter(leased, &dlq, dead).await {
            tracing::error!(queue = %key, id = leased.id, error = %crate::report(&error), "could not dead-letter; the message will be redelivered");
            return;
        }
        self.update_status(leased, "failed", attempt, Some(dlq))
            .await;
    }

    async fn send_record(
        &self,
        destination: &Destination,
        leased: &Leased,
        attempt: &Attempt,
        success: bool,
        condition: &str,
    ) {
        let response = if success {
            serde_json::from_slice(&attempt.body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&attempt.body).into_owned())
            })
        } else {
            match &attempt.error {
                Some((code, message)) => {
                    serde_json::json!({"errorType": code.as_str(), "errorMessage": message})
                }
                None => {
                    serde_json::json!({"errorType": condition, "errorMessage": "the event expired"})
                }
            }
        };
        let invocation = leased
            .meta
            .invocation
            .clone()
            .unwrap_or_else(|| leased.id.to_string());
        let record = format::invocation_record(
            &self.app,
            self.function.name.as_str(),
            self.version,
            &invocation,
            format::request_payload(&leased.meta.kind, &leased.body),
            &Outcome {
                condition,
                attempts: leased.attempt,
                status: attempt.status,
                error: attempt.error.as_ref().map(|(code, _)| code.as_str()),
                response,
                at_ms: now_ms(),
            },
        );
        let message = destination_message(
            &self.app,
            destination,
            MessageKind::Record { success },
            Bytes::from(record.to_string()),
            Some("application/json"),
        );
        if let Err(error) = self.events.queue.commit(vec![message], vec![]).await {
            tracing::error!(error = %crate::report(&error), destination = %destination, "destination record not sent");
        }
    }

    async fn update_status(
        &self,
        leased: &Leased,
        status: &str,
        attempt: &Attempt,
        dead_letter: Option<String>,
    ) {
        let Some(id) = &leased.meta.invocation else {
            return;
        };
        let result = attempt.ok.then(|| {
            let truncated = attempt.body.len() > MAX_RESULT_BYTES;
            let body = &attempt.body[..attempt.body.len().min(MAX_RESULT_BYTES)];
            let (text, base64) = match std::str::from_utf8(body) {
                Ok(text) => (Some(text.to_owned()), None),
                Err(_) => (
                    None,
                    Some(base64::Engine::encode(
                        &base64::engine::general_purpose::STANDARD,
                        body,
                    )),
                ),
            };
            InvocationResult {
                status: attempt.status,
                body: text,
                body_base64: base64,
                truncated,
            }
        });
        self.events
            .record_status(&InvocationStatus {
                id: id.clone(),
                app: self.app.clone(),
                function: self.function.name.to_string(),
                status: status.to_owned(),
                attempts: leased.attempt,
                enqueued_ms: leased.meta.enqueued_ms,
                updated_ms: now_ms(),
                result,
                error: attempt
                    .error
                    .as_ref()
                    .map(|(code, message)| InvocationError {
                        code: code.as_str().to_owned(),
                        message: message.clone(),
                    }),
                dead_letter,
            })
            .await;
    }
}

/// Read a whole body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, String> {
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(format!("the response is larger than {limit} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
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

    #[tokio::test]
    async fn expired_statuses_and_idempotency_keys_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).unwrap());
        let queue = nimbus_store_redb::QueueEngine::open(store).unwrap();
        let events = Events::new(queue, tokio_util::task::TaskTracker::new());
        let now = now_ms();
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
