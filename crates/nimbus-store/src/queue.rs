//! The durable queue contract: what the asynchronous side's driver needs of a queue backend.
//!
//! Messages are named `app/queue`. A message is accepted once [`Queue::commit`] returns: from
//! then on it survives a crash and leaves only by an ack under a current lease, a move to a
//! dead-letter queue, or a purge. Delivery is at-least-once.
//!
//! # Leases
//!
//! [`Queue::lease`] hands out messages under a lease: invisible to other consumers until the
//! lease expires, named by (`queue`, `id`, `attempt`). Settling a message — [`Queue::ack`],
//! [`Queue::nack`], [`Queue::extend`], [`Queue::dead_letter`] — answers `false` when that lease
//! is no longer current (it expired and someone else holds the message): a slow consumer can
//! never settle a delivery it lost. How a lease is kept is the backend's business: the embedded
//! backend keeps it in memory (after a restart every unacknowledged message is visible again),
//! a JetStream backend would map it to a pull consumer's delivery (ack wait = visibility,
//! `+NAK` with delay = nack, `+WPI` = extend, the delivery count = `attempt`).
//!
//! # Keyed tables and conditions
//!
//! Beside the queues, a backend keeps small keyed [`EventTable`]s (invocation statuses,
//! idempotency keys, schedule ticks). [`TableOp`]s ride in a commit's atomic step, and
//! [`Queue::commit_if`] makes the whole step conditional on one key's current value — the
//! put-if-absent / compare-and-set that decides idempotency keys and exactly-once schedule ticks
//! in the store itself, whichever node asks (JetStream KV's `create` and `update` with the
//! last revision give the same).

use async_trait::async_trait;
use nimbus_core::message::{Dead, Leased, NewMessage, Peeked, QueueStats};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A backend's own error, kept whole so the log shows its cause chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue backend has stopped")]
    Stopped,
    #[error("queue backend failure")]
    Backend(#[source] BoxError),
}

impl QueueError {
    pub fn backend(error: impl Into<BoxError>) -> QueueError {
        QueueError::Backend(error.into())
    }
}

pub type QueueResult<T> = std::result::Result<T, QueueError>;

/// Keyed tables of the asynchronous side, beside the queues themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventTable {
    /// Async invocation id → its status and result.
    Invocations,
    /// `app/function/key` → the invocation an idempotency key produced, and until when.
    Idempotency,
    /// `app/schedule` → the last tick fired.
    Schedules,
    /// A relay's name → how far it has moved events from another store into queues (moved in
    /// the same commit as the messages, so nothing is relayed twice).
    Cursors,
}

/// One change to a keyed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableOp {
    Put {
        table: EventTable,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        table: EventTable,
        key: String,
    },
}

/// What a conditional commit expects one key to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The key is absent.
    Absent,
    /// The key holds exactly these bytes.
    Value(Vec<u8>),
}

/// The condition of [`Queue::commit_if`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub table: EventTable,
    pub key: String,
    pub expect: Expect,
}

/// How a conditional commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// The condition held: everything committed. Each message's queue and id.
    Done(Vec<(String, u64)>),
    /// The condition failed: nothing was written. What the key holds now.
    Conflict(Option<Vec<u8>>),
}

/// How soon a table write must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Durable when the call returns.
    Immediate,
    /// Queued: durable within a short interval; a crash before it may lose the write. For
    /// bookkeeping whose loss costs a redelivery or a stale status, never an event.
    Eventual,
}

/// Durable queues with leases, dead-letter queues and keyed tables. See the module docs.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Store `messages` and `ops` in one atomic, durable step; then the messages are
    /// deliverable. Returns each message's queue and id, in order.
    async fn commit(
        &self,
        messages: Vec<NewMessage>,
        ops: Vec<TableOp>,
    ) -> QueueResult<Vec<(String, u64)>>;

    /// [`Queue::commit`], if `condition` holds at the moment of the commit; otherwise nothing.
    async fn commit_if(
        &self,
        condition: Condition,
        messages: Vec<NewMessage>,
        ops: Vec<TableOp>,
    ) -> QueueResult<Committed>;

    /// Write table ops with the given durability.
    async fn write(&self, ops: Vec<TableOp>, durability: Durability) -> QueueResult<()>;

    /// Lease up to `max` messages visible now, without waiting.
    async fn try_lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> QueueResult<Vec<Leased>>;

    /// Lease up to `max` messages, waiting until some are visible; an empty answer once
    /// `cancel` is cancelled.
    async fn lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        cancel: &CancellationToken,
    ) -> QueueResult<Vec<Leased>>;

    /// The delivery succeeded: the message is done. False if the lease was lost.
    async fn ack(&self, leased: &Leased) -> QueueResult<bool>;

    /// The delivery failed: visible again after `delay`. False if the lease was lost.
    async fn nack(&self, leased: &Leased, delay: Duration) -> QueueResult<bool>;

    /// Keep the lease for `visibility` more from now. False if the lease was lost.
    async fn extend(&self, leased: &Leased, visibility: Duration) -> QueueResult<bool>;

    /// Move the message to `dead_letter` (with why), durably. False if the lease was lost.
    async fn dead_letter(
        &self,
        leased: &Leased,
        dead_letter: &str,
        dead: Dead,
    ) -> QueueResult<bool>;

    /// Move every dead-lettered message of `dlq` back to the queue it came from, as new
    /// (attempts and age reset). Returns how many moved.
    async fn redrive(&self, dlq: &str) -> QueueResult<usize>;

    /// The first `limit` messages of `queue` by id, without leasing them.
    async fn peek(&self, queue: &str, limit: usize) -> QueueResult<Vec<Peeked>>;

    /// Counts for every queue whose name starts with `prefix`, by name.
    async fn stats(&self, prefix: &str) -> QueueResult<Vec<QueueStats>>;

    /// Delete every message of queues whose name starts with `prefix`. Returns how many.
    async fn purge(&self, prefix: &str) -> QueueResult<usize>;

    /// One entry of a keyed table.
    async fn entry(&self, table: EventTable, key: &str) -> QueueResult<Option<Vec<u8>>>;

    /// Entries of a keyed table whose key starts with `prefix`, by key.
    async fn entries(&self, table: EventTable, prefix: &str)
    -> QueueResult<Vec<(String, Vec<u8>)>>;

    /// Stop after making everything accepted so far durable; later calls fail with
    /// [`QueueError::Stopped`].
    async fn close(&self);
}

/// A shared queue is a queue (so `Arc<dyn Queue>` and `Arc<Backend>` go wherever one is asked).
#[async_trait]
impl<Q: Queue + ?Sized> Queue for std::sync::Arc<Q> {
    async fn commit(
        &self,
        messages: Vec<NewMessage>,
        ops: Vec<TableOp>,
    ) -> QueueResult<Vec<(String, u64)>> {
        (**self).commit(messages, ops).await
    }

    async fn commit_if(
        &self,
        condition: Condition,
        messages: Vec<NewMessage>,
        ops: Vec<TableOp>,
    ) -> QueueResult<Committed> {
        (**self).commit_if(condition, messages, ops).await
    }

    async fn write(&self, ops: Vec<TableOp>, durability: Durability) -> QueueResult<()> {
        (**self).write(ops, durability).await
    }

    async fn try_lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> QueueResult<Vec<Leased>> {
        (**self).try_lease(queue, max, visibility).await
    }

    async fn lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        cancel: &CancellationToken,
    ) -> QueueResult<Vec<Leased>> {
        (**self).lease(queue, max, visibility, cancel).await
    }

    async fn ack(&self, leased: &Leased) -> QueueResult<bool> {
        (**self).ack(leased).await
    }

    async fn nack(&self, leased: &Leased, delay: Duration) -> QueueResult<bool> {
        (**self).nack(leased, delay).await
    }

    async fn extend(&self, leased: &Leased, visibility: Duration) -> QueueResult<bool> {
        (**self).extend(leased, visibility).await
    }

    async fn dead_letter(
        &self,
        leased: &Leased,
        dead_letter: &str,
        dead: Dead,
    ) -> QueueResult<bool> {
        (**self).dead_letter(leased, dead_letter, dead).await
    }

    async fn redrive(&self, dlq: &str) -> QueueResult<usize> {
        (**self).redrive(dlq).await
    }

    async fn peek(&self, queue: &str, limit: usize) -> QueueResult<Vec<Peeked>> {
        (**self).peek(queue, limit).await
    }

    async fn stats(&self, prefix: &str) -> QueueResult<Vec<QueueStats>> {
        (**self).stats(prefix).await
    }

    async fn purge(&self, prefix: &str) -> QueueResult<usize> {
        (**self).purge(prefix).await
    }

    async fn entry(&self, table: EventTable, key: &str) -> QueueResult<Option<Vec<u8>>> {
        (**self).entry(table, key).await
    }

    async fn entries(
        &self,
        table: EventTable,
        prefix: &str,
    ) -> QueueResult<Vec<(String, Vec<u8>)>> {
        (**self).entries(table, prefix).await
    }

    async fn close(&self) {
        (**self).close().await
    }
}
