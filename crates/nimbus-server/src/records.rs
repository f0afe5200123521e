//! Invocation records leave the hot path through a bounded channel and are written to the
//! store in batches by one task: records gather for up to 100 ms, then one redb commit writes
//! them all. If the channel
//! is full the record is dropped and counted rather than slowing invocations down. The same
//! task feeds each record to the metrics before writing it, so metrics cost the invocation
//! path nothing.

use nimbus_core::InvocationRecord;
use nimbus_dispatch::RecordSink;
use nimbus_store::RecordStore;
use nimbus_telemetry::Metrics;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CHANNEL: usize = 64 * 1024;
const BATCH: usize = 4096;
/// How long records gather before they are written.
const BATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

pub(crate) struct RecordWriter {
    sender: mpsc::Sender<Message>,
    dropped: AtomicU64,
    metrics: Arc<Metrics>,
    /// Closed when the writer task has exited (and released the store).
    done: tokio::sync::watch::Receiver<bool>,
}

enum Message {
    Record(InvocationRecord),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl RecordWriter {
    pub(crate) fn start(
        store: Arc<dyn RecordStore>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Arc<RecordWriter> {
        let (sender, mut receiver) = mpsc::channel(CHANNEL);
        let (done_tx, done) = tokio::sync::watch::channel(false);
        let observer = metrics.clone();
        tasks.spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut waiters = Vec::new();
            loop {
                let first = tokio::select! {
                    message = receiver.recv() => message,
                    // On shutdown, write what is queued and stop, releasing the store.
                    _ = shutdown.cancelled() => receiver.try_recv().ok(),
                };
                let Some(first) = first else { break };
                // Let a batch accumulate: one commit per interval instead of one per record
                // keeps the writer's cost flat under load. A flush request skips the wait.
                if matches!(first, Message::Record(_)) && !shutdown.is_cancelled() {
                    tokio::select! {
                        _ = tokio::time::sleep(BATCH_INTERVAL) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    match message {
                        Message::Record(record) => batch.push(record),
                        Message::Flush(done) => waiters.push(done),
                    }
                    if batch.len() < BATCH {
                        next = receiver.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    for record in &batch {
                        observer.observe(record);
                        log(record);
                    }
                    let records = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    if let Err(error) = store.append_records(records).await {
                        tracing::warn!(error = %crate::report(&error), "write invocation records");
                    }
                }
                for done in waiters.drain(..) {
                    let _ = done.send(());
                }
            }
            drop(store);
            let _ = done_tx.send(true);
        });
        Arc::new(RecordWriter {
            sender,
            dropped: AtomicU64::new(0),
            metrics,
            done,
        })
    }

    /// Resolves once the writer task has exited.
    pub(crate) async fn stopped(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|finished| *finished).await;
    }

    /// Wait until every record sent so far is written.
    pub(crate) async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// An invocation's report and what its function printed, as log events (targets `invocation`
/// and `function`), each with the request id, app, function and version.
fn log(record: &InvocationRecord) {
    if tracing::enabled!(target: "function", tracing::Level::INFO) {
        for line in record.logs.lines() {
            tracing::info!(
                target: "function",
                request_id = %record.request_id, app = %record.app, function = %record.function,
                version = record.version,
                "{line}"
            );
        }
    }
    if tracing::enabled!(target: "invocation", tracing::Level::INFO) {
        tracing::info!(
            target: "invocation",
            request_id = %record.request_id, app = %record.app, function = %record.function,
            version = record.version, trigger = record.trigger.as_str(),
            outcome = record.outcome.as_str(), status = record.status,
            duration_ms = record.duration_us as f64 / 1000.0, billed_ms = record.billed_ms(),
            memory_mb = record.memory_bytes >> 20, cold = record.cold,
            "invocation"
        );
    }
}

impl RecordSink for RecordWriter {
    fn record(&self, mut record: InvocationRecord) {
        // The dispatcher does not know HTTP statuses; failures get the status the gateway sent.
        if record.status == 0
            && let Some(code) = record.outcome.error_code()
        {
            record.status = nimbus_wire::status_for(code).as_u16();
        }
        tracing::debug!(
            request_id = %record.request_id, app = %record.app, function = %record.function,
            outcome = record.outcome.as_str(), status = record.status, duration_us = record.duration_us, cold = record.cold,
            "invocation"
        );
        if self.sender.try_send(Message::Record(record)).is_err() {
            self.metrics.record_dropped();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "invocation record channel full; records dropped");
            }
        }
    }
}
