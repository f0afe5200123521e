//! A consumer: one task that leases messages from one queue, delivers them to one function
//! through its pool (the same permits, limits and records as HTTP), and settles each — ack,
//! retry with backoff, or dead-letter with the `on_failure` record — as the delivery policy
//! decides.

use super::{Events, MAX_RESPONSE_BYTES, MAX_RESULT_BYTES, destination_message, queue_key};
use bytes::Bytes;
use http_body_util::BodyExt;
use nimbus_api::{InvocationError, InvocationResult, InvocationStatus};
use nimbus_core::{DeliveryPolicy, Destination, ErrorCode, FunctionSpec};
use nimbus_dispatch::Pool;
use nimbus_events::format::{self, Outcome};
use nimbus_events::message::dlq_of;
use nimbus_events::policy::{self, AfterFailure, DeadReason};
use nimbus_events::{Dead, Leased, MessageKind};
use nimbus_runtime::{BodyError, RawEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub(super) enum BatchMode {
    /// Lease up to n, invoke once per message.
    Each(usize),
    /// Lease up to n, invoke once with all of them as SQS `Records`.
    Records(usize),
    /// A table trigger's records for a function that takes batches: lease up to `size`,
    /// gathering for up to `window`, invoke once with all of them in stream order. A reported
    /// failure is a checkpoint, as Lambda's stream event sources treat it: that record and
    /// every later one of the batch are retried, the earlier ones are done.
    Stream { size: usize, window: Duration },
}

pub(super) struct Consumer {
    pub(super) events: Arc<Events>,
    pub(super) app: String,
    /// The queue's name within the app (`orders`, `@worker`).
    pub(super) queue: String,
    pub(super) function: FunctionSpec,
    pub(super) version: u64,
    pub(super) pool: Arc<Pool>,
    pub(super) batch: BatchMode,
}

/// How one invocation ended, as the policy sees it.
struct Attempt {
    ok: bool,
    status: u16,
    body: Bytes,
    error: Option<(ErrorCode, String)>,
}

impl Attempt {
    /// A message of this (successful) invocation's batch that the function reported failed.
    fn reported_failed(&self, why: &str) -> Attempt {
        Attempt {
            ok: false,
            status: self.status,
            body: Bytes::new(),
            error: Some((ErrorCode::FunctionError, why.to_owned())),
        }
    }
}

impl Consumer {
    /// Start `workers` tasks consuming, stopping with `stop`.
    pub(super) fn spawn(self, workers: u32, stop: &CancellationToken) {
        let consumer = Arc::new(self);
        for _ in 0..workers {
            consumer
                .events
                .tasks
                .spawn(consumer.clone().run(stop.clone()));
        }
    }

    fn key(&self) -> String {
        queue_key(&self.app, &self.queue)
    }

    fn policy(&self) -> &DeliveryPolicy {
        &self.function.delivery
    }

    pub(super) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let key = self.key();
        let (max, per_message, window) = match self.batch {
            BatchMode::Each(n) => (n, true, Duration::ZERO),
            BatchMode::Records(n) => (n, false, Duration::ZERO),
            BatchMode::Stream { size, window } => (size, false, window),
        };
        // A lease outlives the invocation it covers by a margin; messages of a batch invoked
        // one after the other get their lease extended as their turn comes, so a consumer that
        // dies mid-batch holds the rest back for one timeout, not one per message.
        let visibility = self.function.timeout + window + Duration::from_secs(10);
        loop {
            let leased = match self.lease(max, window, visibility, &stop).await {
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
            let now = self.events.now_ms();
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
            } else if let BatchMode::Stream { .. } = self.batch {
                self.deliver_stream(live).await;
            } else {
                let attempt = self.invoke(&live).await;
                let failed_ids = if attempt.ok {
                    format::batch_item_failures(&attempt.body).unwrap_or_default()
                } else {
                    Vec::new()
                };
                for leased in &live {
                    if attempt.ok && failed_ids.contains(&format::message_id(leased)) {
                        let partial = attempt.reported_failed("reported in batchItemFailures");
                        self.settle(leased, &partial).await;
                    } else {
                        self.settle(leased, &attempt).await;
                    }
                }
            }
        }
    }

    /// Lease up to `max` messages, waiting for the first; with a `window`, keep gathering
    /// until `max` or the window's end.
    async fn lease(
        &self,
        max: usize,
        window: Duration,
        visibility: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Leased>, nimbus_store::QueueError> {
        let key = self.key();
        let mut leased = self.events.queue.lease(&key, max, visibility, stop).await?;
        if window.is_zero() || leased.is_empty() || leased.len() >= max {
            return Ok(leased);
        }
        let gathering = stop.child_token();
        let deadline = {
            let gathering = gathering.clone();
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                gathering.cancel();
            })
        };
        while leased.len() < max && !gathering.is_cancelled() {
            match self
                .events
                .queue
                .lease(&key, max - leased.len(), visibility, &gathering)
                .await
            {
                Ok(more) => leased.extend(more),
                Err(error) => {
                    // Deliver what was gathered; the next lease reports it again if it lasts.
                    tracing::warn!(queue = %key, error = %crate::report(&error), "lease failed while gathering a batch");
                    break;
                }
            }
        }
        deadline.abort();
        Ok(leased)
    }

    /// Deliver a table trigger's batch in stream order and settle it from its checkpoint.
    async fn deliver_stream(&self, mut batch: Vec<Leased>) {
        // Enqueued in stream order, so the queue's ids are.
        batch.sort_by_key(|leased| leased.id);
        let attempt = self.invoke(&batch).await;
        let checkpoint = if attempt.ok {
            let sequences: Vec<Option<&str>> = batch
                .iter()
                .map(|leased| {
                    leased
                        .meta
                        .attributes
                        .get(nimbus_events::dynamodb::SEQUENCE_ATTRIBUTE)
                        .map(String::as_str)
                })
                .collect();
            nimbus_events::dynamodb::checkpoint(&sequences, &attempt.body)
        } else {
            None
        };
        for (position, leased) in batch.iter().enumerate() {
            if checkpoint.is_some_and(|checkpoint| position >= checkpoint) {
                let partial =
                    attempt.reported_failed("at or after the record reported in batchItemFailures");
                self.settle(leased, &partial).await;
            } else {
                self.settle(leased, &attempt).await;
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
        match self
            .pool
            .invoke(request, request_id, first.meta.trigger())
            .await
        {
            Ok(response) => {
                let status = response.status().as_u16();
                match nimbus_runtime::read_limited(response.into_body(), MAX_RESPONSE_BYTES).await {
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
                                String::from_utf8_lossy(body.get(..512).unwrap_or(&body))
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
            self.events.now_ms(),
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
            at_ms: self.events.now_ms(),
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
                at_ms: self.events.now_ms(),
            },
        );
        let message = destination_message(
            self.events.now_ms(),
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
            let body = attempt
                .body
                .get(..MAX_RESULT_BYTES)
                .unwrap_or(&attempt.body);
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
                updated_ms: self.events.now_ms(),
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
