//! Triggers: what turns a deployed version into work for its functions. Each is started per
//! deployed version by the driver (in registration order, at the composition root) and its
//! workers stop with the version's `workers` token.
//!
//! - [`FunctionQueues`]: consumers of each function's own queue `@function` (async invokes,
//!   schedule ticks, bus events and destination records aimed at it).
//! - [`QueueTriggers`]: consumers of declared queues (`[[trigger.queue]]`).
//! - [`Schedules`]: producers of schedule ticks into a function's queue (`[[trigger.schedule]]`).
//!
//! - [`super::tables::TableTriggers`]: relays and consumers of table streams
//!   (`[[trigger.table]]`), registered at the composition root (they need the table store).
//!
//! The bus (`[[trigger.event]]`) needs no workers: rules are matched when an event is
//! published. A new trigger (external brokers) is a new `Trigger` and one registration line.

use super::consumer::{BatchMode, Consumer};
use super::{
    ASYNC_LEASE_BATCH, CONDITIONAL_ATTEMPTS, Events, MAX_ASYNC_WORKERS, queue_key, to_json,
};
use crate::deployments::DeployedApp;
use bytes::Bytes;
use nimbus_core::ScheduleSpec;
use nimbus_events::format;
use nimbus_events::message::async_queue_of;
use nimbus_events::schedule::{Schedule, resume};
use nimbus_events::{CloudEvent, MessageKind, MessageMeta, NewMessage};
use nimbus_store::{Committed, Condition, EventTable, Expect, TableOp};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A source of work for a deployed version's functions.
pub(crate) trait Trigger: Send + Sync {
    /// Start this trigger's workers for `app` on the driver's task tracker; they stop when
    /// `app.workers` is cancelled.
    fn start(&self, events: &Arc<Events>, app: &Arc<DeployedApp>);
}

/// Consumers of every function's own queue.
pub(crate) struct FunctionQueues;

impl Trigger for FunctionQueues {
    fn start(&self, events: &Arc<Events>, app: &Arc<DeployedApp>) {
        for (name, spec) in &app.spec.functions {
            let Some(pool) = app.pools.get(name.as_str()) else {
                continue;
            };
            let workers = spec.max_concurrency.clamp(1, MAX_ASYNC_WORKERS);
            Consumer {
                events: events.clone(),
                app: app.name().to_owned(),
                queue: async_queue_of(name.as_str()),
                function: spec.clone(),
                version: app.version.number,
                pool: pool.clone(),
                batch: BatchMode::Each(ASYNC_LEASE_BATCH),
            }
            .spawn(workers, &app.workers);
        }
    }
}

/// Consumers of declared queues, `concurrency` each; a function whose event shape takes
/// batches gets up to `batch_size` messages per invocation.
pub(crate) struct QueueTriggers;

impl Trigger for QueueTriggers {
    fn start(&self, events: &Arc<Events>, app: &Arc<DeployedApp>) {
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
            Consumer {
                events: events.clone(),
                app: app.name().to_owned(),
                queue: trigger.queue.to_string(),
                function: spec.clone(),
                version: app.version.number,
                pool: pool.clone(),
                batch,
            }
            .spawn(trigger.concurrency, &app.workers);
        }
    }
}

/// The last tick a schedule fired, as stored under `app/schedule`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ScheduleState {
    last_tick_ms: i64,
}

/// One scheduler per schedule: computes its plan from the stored last tick, sleeps in bounded
/// steps, fires each tick with a conditional commit.
pub(crate) struct Schedules;

impl Trigger for Schedules {
    fn start(&self, events: &Arc<Events>, app: &Arc<DeployedApp>) {
        for (schedule, parsed) in app.spec.events.schedules.iter().zip(&app.schedules) {
            events.tasks.spawn(Schedules::run(
                events.clone(),
                app.name().to_owned(),
                schedule.clone(),
                parsed.clone(),
                app.workers.clone(),
            ));
        }
    }
}

impl Schedules {
    async fn run(
        events: Arc<Events>,
        app: String,
        spec: ScheduleSpec,
        schedule: Schedule,
        stop: CancellationToken,
    ) {
        let key = format!("{app}/{}", spec.name);
        let last = match events.queue.entry(EventTable::Schedules, &key).await {
            Ok(raw) => raw
                .and_then(|raw| serde_json::from_slice::<ScheduleState>(&raw).ok())
                .map(|s| s.last_tick_ms),
            Err(error) => {
                tracing::error!(error = %crate::report(&error), schedule = %key, "cannot read the schedule's last tick; not starting it");
                return;
            }
        };
        let plan = resume(&schedule, last, events.now_ms() as i64, spec.missed);
        if let Some(tick) = plan.fire_now {
            Schedules::fire(&events, &app, &spec, &key, tick).await;
        }
        let mut next = plan.next;
        while let Some(tick) = next {
            // Sleep in bounded steps so clock changes are noticed.
            loop {
                let now = events.now_ms() as i64;
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
            Schedules::fire(&events, &app, &spec, &key, tick).await;
            next = schedule.next_after(tick.max(events.now_ms() as i64 - 1));
        }
    }

    /// Fire one tick: enqueue the event and record the tick in one conditional commit, unless
    /// it (or a later one) was already fired — by this scheduler, by the scheduler of a version
    /// being replaced, or by another node sharing the queue.
    async fn fire(events: &Events, app: &str, spec: &ScheduleSpec, key: &str, tick: i64) {
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
        let mut meta = MessageMeta::new(MessageKind::Event, events.now_ms());
        meta.invocation = Some(uuid::Uuid::now_v7().simple().to_string());
        meta.trigger = Some(nimbus_core::Trigger::Timer);
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
        let mut current = match events.queue.entry(EventTable::Schedules, key).await {
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
            match events
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
}
