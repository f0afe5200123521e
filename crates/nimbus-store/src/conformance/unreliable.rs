//! A [`Queue`] that fails every n-th call before it reaches the backend (in the spirit of
//! neon's `UnreliableWrapper`): what a flaky network backend does to its callers. A failed
//! call changes nothing, so callers that retry must end up where a reliable backend would
//! have taken them.

use crate::queue::{
    Committed, Condition, Durability, EventTable, Queue, QueueError, QueueResult, TableOp,
};
use async_trait::async_trait;
use nimbus_core::message::{Dead, Leased, NewMessage, Peeked, QueueStats};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The error an injected fault carries as its source.
#[derive(Debug, thiserror::Error)]
#[error("injected fault in {0}")]
pub struct InjectedFault(pub &'static str);

pub struct Unreliable<Q> {
    inner: Q,
    every: u64,
    calls: AtomicU64,
    injected: AtomicU64,
}

impl<Q: Queue> Unreliable<Q> {
    /// Fail calls number `every`, `2 × every`, … (`every` ≥ 2, so a retry gets through).
    pub fn new(inner: Q, every: u64) -> Unreliable<Q> {
        Unreliable {
            inner,
            every: every.max(2),
            calls: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn gate(&self, op: &'static str) -> QueueResult<()> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if call.is_multiple_of(self.every) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(QueueError::backend(InjectedFault(op)));
        }
        Ok(())
    }
}

#[async_trait]
impl<Q: Queue> Queue for Unreliable<Q> {
    async fn commit(
        &self,
        messages: Vec<NewMessage>,
        ops: Vec<TableOp>,
    ) -> QueueResult<Vec<(String, u64)>> {
        self.gate("commit")?;
        self.inner.commit(messages, ops).await
    }

    async fn commit_if(
        &self,
        condition: Condition,
        messages: Vec<NewMessage>,
        ops: Vec<TableOp>,
    ) -> QueueResult<Committed> {
        self.gate("commit_if")?;
        self.inner.commit_if(condition, messages, ops).await
    }

    async fn write(&self, ops: Vec<TableOp>, durability: Durability) -> QueueResult<()> {
        self.gate("write")?;
        self.inner.write(ops, durability).await
    }

    async fn try_lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> QueueResult<Vec<Leased>> {
        self.gate("try_lease")?;
        self.inner.try_lease(queue, max, visibility).await
    }

    async fn lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        cancel: &CancellationToken,
    ) -> QueueResult<Vec<Leased>> {
        self.gate("lease")?;
        self.inner.lease(queue, max, visibility, cancel).await
    }

    async fn ack(&self, leased: &Leased) -> QueueResult<bool> {
        self.gate("ack")?;
        self.inner.ack(leased).await
    }

    async fn nack(&self, leased: &Leased, delay: Duration) -> QueueResult<bool> {
        self.gate("nack")?;
        self.inner.nack(leased, delay).await
    }

    async fn extend(&self, leased: &Leased, visibility: Duration) -> QueueResult<bool> {
        self.gate("extend")?;
        self.inner.extend(leased, visibility).await
    }

    async fn dead_letter(
        &self,
        leased: &Leased,
        dead_letter: &str,
        dead: Dead,
    ) -> QueueResult<bool> {
        self.gate("dead_letter")?;
        self.inner.dead_letter(leased, dead_letter, dead).await
    }

    async fn redrive(&self, dlq: &str) -> QueueResult<usize> {
        self.gate("redrive")?;
        self.inner.redrive(dlq).await
    }

    async fn peek(&self, queue: &str, limit: usize) -> QueueResult<Vec<Peeked>> {
        self.gate("peek")?;
        self.inner.peek(queue, limit).await
    }

    async fn stats(&self, prefix: &str) -> QueueResult<Vec<QueueStats>> {
        self.gate("stats")?;
        self.inner.stats(prefix).await
    }

    async fn purge(&self, prefix: &str) -> QueueResult<usize> {
        self.gate("purge")?;
        self.inner.purge(prefix).await
    }

    async fn entry(&self, table: EventTable, key: &str) -> QueueResult<Option<Vec<u8>>> {
        self.gate("entry")?;
        self.inner.entry(table, key).await
    }

    async fn entries(
        &self,
        table: EventTable,
        prefix: &str,
    ) -> QueueResult<Vec<(String, Vec<u8>)>> {
        self.gate("entries")?;
        self.inner.entries(table, prefix).await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
