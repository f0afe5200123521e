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

use crate::platform::DeployedApp;
use bytes::Bytes;
use http_body_util::BodyExt;
use nimbus_api::{InvocationError, InvocationResult, InvocationStatus};
use nimbus_core::error::Error;
use nimbus_core::{DeliveryPolicy, Destination, ErrorCode, FunctionKind, FunctionSpec};
use nimbus_dispatch::Pool;
use nimbus_events::engine::{EngineError, now_ms};
use nimbus_events::format::{self, Outcome};
use nimbus_events::message::{async_queue_of, dlq_of};
use nimbus_events::policy::{self, AfterFailure, DeadReason};
use nimbus_events::schedule::{Schedule, resume};
use nimbus_events::{
    CloudEvent, Dead, Engine, Leased, MessageKind, MessageMeta, NewMessage, Pattern,
};
use nimbus_runtime::{Body, BodyError, RawEvent};
use nimbus_store::{EventOp, EventTable};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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
/// Locks guarding idempotency keys (a key always takes the same one).
const IDEMPOTENCY_STRIPES: usize = 64;
/// How often expired statuses and idempotency keys are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// Most consumer tasks for one function's own queue.
const MAX_ASYNC_WORKERS: u32 = 32;
/// Messages one async-queue worker leases at once (each is its own invocation).
const ASYNC_LEASE_BATCH: usize = 16;

pub(crate) fn engine_error(error: EngineError) -> Error {
    tracing::error!(%error, "queue engine failure");
    Error::new(
        ErrorCode::Internal,
        "the event store failed; see the server log",
    )
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

/// Rules of one app, compiled.
pub(crate) struct CompiledRules {
    rules: Vec<(String, Pattern, Destination)>,
}

impl CompiledRules {
    pub(crate) fn compile(spec: &nimbus_core::EventsSpec) -> Result<CompiledRules, Error> {
        let mut rules = Vec::new();
        for rule in &spec.rules {
            let pattern = Pattern::parse(&rule.pattern).map_err(|e| {
                Error::new(
                    ErrorCode::InvalidManifest,
                    format!("rule {}: {e}", rule.name),
                )
            })?;
            rules.push((rule.name.clone(), pattern, rule.target.clone()));
        }
        Ok(CompiledRules { rules })
    }
}

pub struct Events {
    engine: Arc<Engine>,
    /// Serializes enqueues that carry the same idempotency key (striped by the key's hash), so
    /// two requests with one key cannot both miss the other, while different keys still share
    /// group commits.
    idempotency: [tokio::sync::Mutex<()>; IDEMPOTENCY_STRIPES],
    /// Last tick fired per `app/schedule`, guarding against an old scheduler (of a replaced
    /// version) and a new one firing the same tick.
    fired: tokio::sync::Mutex<HashMap<String, i64>>,
    /// Consumers and schedulers, so shutdown can wait for them (they hold the engine, and
    /// with it the store).
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
    pub(crate) fn new(engine: Arc<Engine>) -> Arc<Events> {
        Arc::new(Events {
            engine,
            idempotency: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
            fired: tokio::sync::Mutex::new(HashMap::new()),
            tasks: tokio_util::task::TaskTracker::new(),
        })
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// After shutdown was signalled: wait (at most `limit`) for consumers to finish the
    /// deliveries they started and for schedulers to stop, then close the engine (its writer
    /// commits what is queued). A delivery cut short is redelivered after the restart.
    pub(crate) async fn stop(&self, limit: Duration) {
        self.tasks.close();
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?limit,
                "deliveries still running at shutdown; they will be redelivered"
            );
        }
        let engine = self.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.close()).await;
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
        let _serial = match &idem_key {
            Some(key) => {
                use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
                let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(key);
                Some(
                    self.idempotency[hash as usize % IDEMPOTENCY_STRIPES]
                        .lock()
                        .await,
                )
            }
            None => None,
        };
        let now = now_ms();
        if let Some(key) = &idem_key
            && let Some(raw) = self
                .engine
                .entry(EventTable::Idempotency, key)
                .await
                .map_err(engine_error)?
            && let Ok(entry) = serde_json::from_slice::<IdempotencyEntry>(&raw)
            && entry.expires_ms > now
        {
            return Ok(nimbus_gateway::AsyncAccepted {
                invocation_id: entry.invocation,
                replay: true,
            });
        }
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
        let mut extra = vec![EventOp::Put {
            table: EventTable::Invocations,
            key: id.clone(),
            value: serde_json::to_vec(&status).unwrap_or_default(),
        }];
        if let Some(key) = idem_key {
            extra.push(EventOp::Put {
                table: EventTable::Idempotency,
                key,
                value: serde_json::to_vec(&IdempotencyEntry {
                    invocation: id.clone(),
                    expires_ms: now + IDEMPOTENCY_WINDOW.as_millis() as u64,
                })
                .unwrap_or_default(),
            });
        }
        self.engine
            .commit(
                vec![NewMessage {
                    queue: queue_key(app, &async_queue_of(function)),
                    meta,
                    body,
                }],
                extra,
            )
            .await
            .map_err(engine_error)?;
        Ok(nimbus_gateway::AsyncAccepted {
            invocation_id: id,
            replay: false,
        })
    }

    pub(crate) async fn invocation(&self, id: &str) -> Result<InvocationStatus, Error> {
        let raw = self
            .engine
            .entry(EventTable::Invocations, id)
            .await
            .map_err(engine_error)?
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
            .engine
            .commit(batch, vec![])
            .await
            .map_err(engine_error)?;
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
        for (rule, pattern, target) in &app.rules.rules {
            if !pattern.matches(&document) {
                continue;
            }
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
            self.engine
                .commit(messages, vec![])
                .await
                .map_err(engine_error)?;
        }
        Ok(nimbus_api::PublishResponse {
            id: event.id,
            matched,
        })
    }

    /// Start consumers and schedulers of a deployed app version; they stop with `stop`.
    pub(crate) fn start(self: &Arc<Self>, app: &Arc<DeployedApp>, stop: &CancellationToken) {
        let app_name = app.spec.name.to_string();
        for (name, spec) in &app.spec.functions {
            let Some(pool) = app.pools.get(name.as_str()) else {
                continue;
            };
            let workers = spec.max_concurrency.clamp(1, MAX_ASYNC_WORKERS);
            let consumer = Arc::new(Consumer {
                events: self.clone(),
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
            let batch = match spec.kind {
                FunctionKind::Wasm => BatchMode::Each(trigger.batch_size as usize),
                FunctionKind::Process { .. } => BatchMode::Records(trigger.batch_size as usize),
            };
            let consumer = Arc::new(Consumer {
                events: self.clone(),
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
                    self.tasks.spawn(self.clone().schedule(
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
        let last = match self.engine.entry(EventTable::Schedules, &key).await {
            Ok(raw) => raw
                .and_then(|raw| serde_json::from_slice::<ScheduleState>(&raw).ok())
                .map(|s| s.last_tick_ms),
            Err(error) => {
                tracing::error!(%error, schedule = %key, "cannot read the schedule's last tick; not starting it");
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

    /// Fire one tick: enqueue the event and record the tick in one transaction, unless it (or
    /// a later one) was already fired.
    async fn fire(&self, app: &str, spec: &nimbus_core::ScheduleSpec, key: &str, tick: i64) {
        let mut fired = self.fired.lock().await;
        if fired.get(key).is_some_and(|last| *last >= tick) {
            return;
        }
        if let Ok(Some(raw)) = self.engine.entry(EventTable::Schedules, key).await
            && let Ok(state) = serde_json::from_slice::<ScheduleState>(&raw)
            && state.last_tick_ms >= tick
        {
            fired.insert(key.to_owned(), state.last_tick_ms);
            return;
        }
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
        let state = EventOp::Put {
            table: EventTable::Schedules,
            key: key.to_owned(),
            value: serde_json::to_vec(&ScheduleState { last_tick_ms: tick }).unwrap_or_default(),
        };
        match self.engine.commit(vec![message], vec![state]).await {
            Ok(_) => {
                fired.insert(key.to_owned(), tick);
                tracing::info!(schedule = %key, tick, "schedule fired");
            }
            Err(error) => tracing::error!(schedule = %key, %error, "schedule tick not fired"),
        }
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
                Err(error) => tracing::warn!(%error, "sweeping expired statuses failed"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
        }
    }

    async fn sweep(&self, now: u64) -> Result<usize, EngineError> {
        let mut deletes = Vec::new();
        for (key, raw) in self.engine.entries(EventTable::Invocations, "").await? {
            let expired = serde_json::from_slice::<InvocationStatus>(&raw).map_or(true, |s| {
                s.updated_ms + (STATUS_RETENTION.as_millis() as u64) < now
            });
            if expired {
                deletes.push(EventOp::Delete {
                    table: EventTable::Invocations,
                    key,
                });
            }
        }
        for (key, raw) in self.engine.entries(EventTable::Idempotency, "").await? {
            let expired = serde_json::from_slice::<IdempotencyEntry>(&raw)
                .map_or(true, |e| e.expires_ms <= now);
            if expired {
                deletes.push(EventOp::Delete {
                    table: EventTable::Idempotency,
                    key,
                });
            }
        }
        let removed = deletes.len();
        if removed > 0 {
            self.engine.write(deletes).await?;
        }
        Ok(removed)
    }

    fn record_status(&self, status: &InvocationStatus) {
        self.engine.write_lazily(vec![EventOp::Put {
            table: EventTable::Invocations,
            key: status.id.clone(),
            value: serde_json::to_vec(status).unwrap_or_default(),
        }]);
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
            let leased = match self.events.engine.lease(&key, max, visibility, &stop).await {
                Ok(leased) => leased,
                Err(error) => {
                    tracing::error!(queue = %key, %error, "lease failed");
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
                    if !self
                        .events
                        .engine
                        .extend(&key, leased.id, leased.attempt, visibility)
                    {
                        // The lease ran out while earlier messages ran: someone else has it.
                        continue;
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

    fn request(
        &self,
        batch: &[Leased],
        request_id: &str,
    ) -> Result<nimbus_runtime::Request, String> {
        let first = &batch[0];
        let lambda = matches!(self.function.kind, FunctionKind::Process { .. });
        let mut builder = http::Request::builder()
            .header("host", "localhost")
            .header("x-request-id", request_id)
            .header("x-nimbus-attempt", first.attempt.to_string());
        if let Some(invocation) = &first.meta.invocation {
            builder = builder.header("x-nimbus-invocation-id", invocation.as_str());
        }
        let (builder, body, raw) = match &first.meta.kind {
            MessageKind::Http {
                method,
                uri,
                headers,
            } => {
                let mut builder = builder.method(method.as_str()).uri(uri.as_str());
                for (name, value) in headers {
                    if name != "x-request-id" && name != "host" {
                        builder = builder.header(name.as_str(), value.as_str());
                    }
                }
                (builder, first.body.clone(), false)
            }
            MessageKind::Raw if lambda => (
                builder
                    .method("POST")
                    .uri("/")
                    .header("content-type", "application/json"),
                first.body.clone(),
                true,
            ),
            MessageKind::Raw => {
                let mut event = CloudEvent::new(
                    format!("/apps/{}/functions/{}", self.app, self.function.name),
                    format::INVOKE_TYPE,
                );
                event.id = request_id.to_owned();
                event.time = Some(format::millis_to_rfc3339(first.meta.enqueued_ms));
                event.datacontenttype = Some("application/json".into());
                event.data = (!first.body.is_empty()).then(|| first.body.clone());
                binary(builder, &event)
            }
            MessageKind::Event => {
                let event = CloudEvent::from_json(&first.body).map_err(|e| e.to_string())?;
                if lambda {
                    (
                        builder.method("POST").uri("/"),
                        Bytes::from(format::eventbridge_event(&event).to_string()),
                        true,
                    )
                } else {
                    binary(builder, &event)
                }
            }
            MessageKind::Message => {
                if lambda {
                    (
                        builder.method("POST").uri("/"),
                        Bytes::from(format::sqs_event(&self.app, &self.queue, batch).to_string()),
                        true,
                    )
                } else {
                    binary(
                        builder,
                        &format::queue_message_event(&self.app, &self.queue, first),
                    )
                }
            }
            MessageKind::Record { success } => {
                if lambda {
                    (builder.method("POST").uri("/"), first.body.clone(), true)
                } else {
                    let mut event = CloudEvent::new(
                        format!("/apps/{}/functions", self.app),
                        if *success {
                            format::SUCCESS_TYPE
                        } else {
                            format::FAILURE_TYPE
                        },
                    );
                    event.datacontenttype = Some("application/json".into());
                    event.data = Some(first.body.clone());
                    binary(builder, &event)
                }
            }
        };
        let mut request = builder
            .body(
                http_body_util::Full::new(body)
                    .map_err(|never: std::convert::Infallible| -> BodyError { match never {} })
                    .boxed_unsync(),
            )
            .map_err(|e| format!("the stored request cannot be replayed: {e}"))?;
        if raw {
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
            self.events.engine.ack(&key, leased.id, leased.attempt);
            self.update_status(leased, "succeeded", attempt, None);
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
                self.events
                    .engine
                    .retry(&key, leased.id, leased.attempt, delay);
                self.update_status(leased, "retrying", attempt, None);
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
        if let Err(error) = self.events.engine.dead_letter(leased, &dlq, dead).await {
            tracing::error!(queue = %key, id = leased.id, %error, "could not dead-letter; the message will be redelivered");
            return;
        }
        self.update_status(leased, "failed", attempt, Some(dlq));
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
            },
        );
        let message = destination_message(
            &self.app,
            destination,
            MessageKind::Record { success },
            Bytes::from(record.to_string()),
            Some("application/json"),
        );
        if let Err(error) = self.events.engine.commit(vec![message], vec![]).await {
            tracing::error!(%error, destination = %destination, "destination record not sent");
        }
    }

    fn update_status(
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
        self.events.record_status(&InvocationStatus {
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
        });
    }
}

fn binary(
    builder: http::request::Builder,
    event: &CloudEvent,
) -> (http::request::Builder, Bytes, bool) {
    let mut builder = builder.method("POST").uri("/");
    for (name, value) in event.binary_headers() {
        builder = builder.header(name, value);
    }
    (builder, event.data.clone().unwrap_or_default(), false)
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

/// nimbus's local API, as functions call it (`http://nimbus.internal/v1/...` from Wasm,
/// `$NIMBUS_API/v1/...` from processes): send to a queue, publish on the bus — each behind the
/// caller's grants (`queues = [...]`, `publish = true`).
#[derive(Default)]
pub(crate) struct LocalApi {
    platform: std::sync::OnceLock<std::sync::Weak<crate::Platform>>,
}

impl LocalApi {
    /// Connect to the platform once it exists (executors are made before it).
    pub(crate) fn attach(&self, platform: &Arc<crate::Platform>) {
        let _ = self.platform.set(Arc::downgrade(platform));
    }

    async fn serve(
        &self,
        caller: &nimbus_runtime::Caller,
        method: &http::Method,
        path: &str,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> Result<serde_json::Value, Error> {
        let platform = self
            .platform
            .get()
            .and_then(std::sync::Weak::upgrade)
            .ok_or_else(|| Error::new(ErrorCode::Internal, "nimbus is starting or stopping"))?;
        let app = platform.app(&caller.app)?;
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
                let ids = platform
                    .events
                    .send(&app, queue, vec![(body, meta)])
                    .await?;
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
                let published = platform.events.publish(&app, event).await?;
                Ok(serde_json::to_value(published).unwrap_or_default())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn expired_statuses_and_idempotency_keys_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).unwrap());
        let events = Events::new(Engine::open(store).unwrap());
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
            ops.push(EventOp::Put {
                table: EventTable::Invocations,
                key: id.into(),
                value: serde_json::to_vec(&status(id, updated)).unwrap(),
            });
        }
        for (key, expires_ms) in [("a/f/old", now - 1), ("a/f/new", now + 1000)] {
            ops.push(EventOp::Put {
                table: EventTable::Idempotency,
                key: key.into(),
                value: serde_json::to_vec(&IdempotencyEntry {
                    invocation: "x".into(),
                    expires_ms,
                })
                .unwrap(),
            });
        }
        events.engine.write(ops).await.unwrap();
        assert_eq!(events.sweep(now).await.unwrap(), 2);
        assert!(events.invocation("old").await.is_err());
        assert_eq!(events.invocation("new").await.unwrap().id, "new");
        let keys = events
            .engine
            .entries(EventTable::Idempotency, "")
            .await
            .unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].0, "a/f/new");
    }
}
