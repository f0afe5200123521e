//! The embedded queue backend: messages on disk (redb) before they are acknowledged,
//! scheduling state and leases in memory. Implements [`nimbus_store::Queue`].
//!
//! # Durability
//!
//! All writes go through one writer thread that commits whatever has queued up since its last
//! commit as one transaction (group commit): while one fsync runs, the next batch gathers, so
//! the fsync cost is shared by every enqueue that arrived meanwhile. A commit returns only
//! after its batch is durable, and a message becomes visible to consumers only then. Acks,
//! retries and lease bookkeeping commit without fsync (a crash before the next durable commit
//! means redelivery — at-least-once — never loss); the writer makes them durable within
//! [`FLUSH_INTERVAL`].
//!
//! # Conditions
//!
//! The writer is the store's only writer, so it decides a conditional commit
//! ([`Queue::commit_if`]) itself: it reads the key as the batch so far left it and drops the
//! job, answering `Conflict`, if the expectation fails. Conditional commits still share group
//! commits with everything else.
//!
//! # Delivery
//!
//! Each queue keeps a set ordered by (visible-at, id). A lease takes visible messages, marks
//! them with a new attempt number (the lease token) and makes them invisible until the lease
//! expires; settling under a stale token (the lease expired and someone else has the message)
//! is refused. A retry makes the message visible again after its backoff. Messages of a FIFO
//! group wait behind the group's head: only the head is ever in the visible set, so one group
//! is delivered one message at a time, in order, even across retries.
//!
//! After a restart, every message not acknowledged is visible again (leases are not
//! persisted), and a retry's backoff is honoured. A message whose stored metadata cannot be
//! read is not skipped: it is moved, body intact, to its queue's dead-letter queue.

use crate::{EventOp, Inner, RedbStore};
use async_trait::async_trait;
use bytes::Bytes;
use nimbus_core::clock::{Clock, SystemClock};
use nimbus_core::message::{
    Dead, DeadReason, Leased, MessageKind, MessageMeta, NewMessage, Peeked, QueueStats, dlq_of,
};
use nimbus_store::{
    Committed, Condition, Durability, EventTable, Expect, Queue, QueueError, QueueResult,
    StoreError, TableOp,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Non-durable commits become durable at most this long after they were made.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Most ops one transaction gathers.
const MAX_OPS_PER_COMMIT: usize = 50_000;
/// Message bodies kept in memory across all queues; beyond this they are read from disk.
const BODY_CACHE_BYTES: usize = 64 << 20;

/// Messages by (visible-at, id): what a lease takes from the front.
type Schedule = BTreeSet<(u64, u64)>;

struct Entry {
    visible_at: u64,
    attempts: u32,
    leased: bool,
    /// In `ready` (a FIFO group's followers are not).
    scheduled: bool,
    meta: Arc<MessageMeta>,
    body: Option<Bytes>,
}

#[derive(Default)]
struct QueueState {
    next_id: u64,
    ready: Schedule,
    entries: HashMap<u64, Entry>,
    /// FIFO groups: ids in order; the front is the head (the only one scheduled).
    groups: HashMap<String, VecDeque<u64>>,
    notify: Arc<Notify>,
}

/// A store failure shared by every waiter of one group commit.
#[derive(Debug, Clone)]
struct Shared(Arc<StoreError>);

impl std::fmt::Display for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// How a write job ended: written, or dropped because its condition failed.
type JobResult = Result<Option<Option<Vec<u8>>>, Shared>;

struct WriteJob {
    ops: Vec<EventOp>,
    durable: bool,
    condition: Option<Condition>,
    done: Option<tokio::sync::oneshot::Sender<JobResult>>,
}

/// The embedded [`Queue`]: see the module docs.
pub struct QueueEngine {
    store: Arc<RedbStore>,
    queues: Mutex<HashMap<String, QueueState>>,
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    cached_bytes: AtomicUsize,
    /// Ids are unique across restarts: they start above the time of opening in microseconds.
    id_floor: u64,
    /// Visibility, backoff and redrive times.
    clock: Arc<dyn Clock>,
}

fn encode(meta: &MessageMeta) -> QueueResult<Vec<u8>> {
    serde_json::to_vec(meta).map_err(QueueError::backend)
}

fn store_error(error: StoreError) -> QueueError {
    QueueError::backend(error)
}

fn poisoned() -> QueueError {
    QueueError::backend(
        "the queue engine's in-memory state was left inconsistent by a panic; restart nimbus (stored messages are intact and load again)",
    )
}

impl QueueEngine {
    /// Load every stored message and start the writer thread. Blocking: call from
    /// `spawn_blocking` or before the runtime is busy.
    pub fn open(store: Arc<RedbStore>) -> QueueResult<Arc<QueueEngine>> {
        QueueEngine::open_with_clock(store, Arc::new(SystemClock))
    }

    /// [`QueueEngine::open`] on `clock` (tests use paused time).
    pub fn open_with_clock(
        store: Arc<RedbStore>,
        clock: Arc<dyn Clock>,
    ) -> QueueResult<Arc<QueueEngine>> {
        let metas = store.inner().message_metas().map_err(store_error)?;
        let id_floor = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut queues: HashMap<String, QueueState> = HashMap::new();
        let mut unreadable = Vec::new();
        for (queue, id, raw) in metas {
            let meta = match serde_json::from_slice::<MessageMeta>(&raw) {
                Ok(meta) => meta,
                Err(error) => {
                    unreadable.push((queue, id, error.to_string()));
                    continue;
                }
            };
            let state = queues.entry(queue).or_default();
            state.next_id = state.next_id.max(id + 1);
            let visible_at = meta.not_before_ms;
            insert(state, id, Arc::new(meta), None, visible_at);
        }
        for state in queues.values_mut() {
            state.next_id = state.next_id.max(id_floor);
        }
        if !unreadable.is_empty() {
            quarantine(
                store.inner(),
                &mut queues,
                unreadable,
                id_floor,
                clock.now_ms(),
            )?;
        }
        let (sender, receiver) = mpsc::channel::<WriteJob>();
        let writer_store = store.clone();
        let writer_thread = std::thread::Builder::new()
            .name("nimbus-queue-writer".into())
            .spawn(move || writer_loop(writer_store.inner(), receiver))
            .map_err(QueueError::backend)?;
        Ok(Arc::new(QueueEngine {
            store,
            queues: Mutex::new(queues),
            writer: Mutex::new(Some(sender)),
            writer_thread: Mutex::new(Some(writer_thread)),
            cached_bytes: AtomicUsize::new(0),
            id_floor,
            clock,
        }))
    }

    fn state(&self) -> QueueResult<MutexGuard<'_, HashMap<String, QueueState>>> {
        self.queues.lock().map_err(|_| poisoned())
    }

    fn send(&self, job: WriteJob) -> QueueResult<()> {
        let writer = self.writer.lock().map_err(|_| poisoned())?;
        writer
            .as_ref()
            .ok_or(QueueError::Stopped)?
            .send(job)
            .map_err(|_| QueueError::Stopped)
    }

    /// Commit `ops` durably (if `condition` holds) and wait for it.
    async fn write_durably(
        &self,
        ops: Vec<EventOp>,
        condition: Option<Condition>,
    ) -> QueueResult<Option<Option<Vec<u8>>>> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(WriteJob {
            ops,
            durable: true,
            condition,
            done: Some(done),
        })?;
        match wait.await {
            Ok(result) => result.map_err(QueueError::backend),
            Err(_) => Err(QueueError::Stopped),
        }
    }

    /// Queue `ops` to commit without waiting and without fsync (acks, retries, status
    /// bookkeeping: losing them in a crash costs a redelivery, never an event).
    fn write_lazily(&self, ops: Vec<EventOp>) -> QueueResult<()> {
        self.send(WriteJob {
            ops,
            durable: false,
            condition: None,
            done: None,
        })
    }

    /// Durably store `messages` and `extra` ops in one transaction (if `condition` holds), then
    /// make the messages deliverable.
    async fn commit_messages(
        &self,
        messages: Vec<NewMessage>,
        extra: Vec<EventOp>,
        condition: Option<Condition>,
    ) -> QueueResult<Committed> {
        let mut ids = Vec::with_capacity(messages.len());
        let mut ops = Vec::with_capacity(messages.len() + extra.len());
        {
            let mut queues = self.state()?;
            for message in &messages {
                let state = queues.entry(message.queue.clone()).or_default();
                let id = state.next_id.max(self.id_floor);
                state.next_id = id + 1;
                ids.push((message.queue.clone(), id));
                ops.push(EventOp::PutMessage {
                    queue: message.queue.clone(),
                    id,
                    meta: encode(&message.meta)?,
                    body: message.body.to_vec(),
                });
            }
        }
        ops.extend(extra);
        if let Some(current) = self.write_durably(ops, condition).await? {
            return Ok(Committed::Conflict(current));
        }
        let mut queues = self.state()?;
        let mut touched: Vec<&str> = Vec::new();
        for (message, (queue, id)) in messages.into_iter().zip(&ids) {
            let state = queues.entry(queue.clone()).or_default();
            let body = self.cache(message.body);
            let visible = message.meta.not_before_ms;
            insert(state, *id, Arc::new(message.meta), body, visible);
            if touched.last() != Some(&queue.as_str()) {
                touched.push(queue);
            }
        }
        for queue in touched {
            if let Some(state) = queues.get(queue) {
                state.notify.notify_waiters();
            }
        }
        Ok(Committed::Done(ids))
    }

    fn cache(&self, body: Bytes) -> Option<Bytes> {
        let len = body.len();
        if self.cached_bytes.fetch_add(len, Ordering::Relaxed) + len > BODY_CACHE_BYTES {
            self.cached_bytes.fetch_sub(len, Ordering::Relaxed);
            return None;
        }
        Some(body)
    }

    fn uncache(&self, body: &Option<Bytes>) {
        if let Some(body) = body {
            self.cached_bytes.fetch_sub(body.len(), Ordering::Relaxed);
        }
    }

    fn remove_leased(&self, leased: &Leased) -> QueueResult<Option<Entry>> {
        let mut queues = self.state()?;
        if lease_of(&mut queues, leased).is_none() {
            return Ok(None);
        }
        Ok(queues
            .get_mut(&leased.queue)
            .and_then(|state| remove(state, leased.id)))
    }

    /// Run a blocking read of the store off the async workers.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> nimbus_store::Result<T> + Send + 'static,
    ) -> QueueResult<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.inner()))
            .await
            .map_err(QueueError::backend)?
            .map_err(store_error)
    }
}

/// Move messages whose metadata cannot be read to their dead-letter queue with a fresh
/// envelope, keeping the body, so nothing stored is silently dropped. Runs at open, before the
/// writer starts.
fn quarantine(
    store: &Inner,
    queues: &mut HashMap<String, QueueState>,
    unreadable: Vec<(String, u64, String)>,
    id_floor: u64,
    now_ms: u64,
) -> QueueResult<()> {
    let mut ops = Vec::new();
    let mut moved = Vec::new();
    for (queue, id, error) in unreadable {
        let body = store
            .message_body(&queue, id)
            .map_err(store_error)?
            .unwrap_or_default();
        let target = if queue.ends_with(".dlq") {
            queue.clone()
        } else {
            dlq_of(&queue)
        };
        let state = queues.entry(target.clone()).or_default();
        let new_id = state.next_id.max(id_floor);
        state.next_id = new_id + 1;
        let mut meta = MessageMeta::new(MessageKind::Message, now_ms);
        meta.dead = Some(Dead {
            reason: DeadReason::Unreadable,
            origin: queue.clone(),
            error: format!("stored metadata of message {id} is unreadable: {error}"),
            at_ms: now_ms,
        });
        tracing::error!(%queue, id, %error, dead_letter = %target, "stored message metadata is unreadable; the message was moved to the dead-letter queue");
        ops.push(EventOp::DeleteMessage { queue, id });
        ops.push(EventOp::PutMessage {
            queue: target.clone(),
            id: new_id,
            meta: encode(&meta)?,
            body: body.clone(),
        });
        moved.push((target, new_id, meta));
    }
    store.commit_events(&ops, true).map_err(store_error)?;
    for (queue, id, meta) in moved {
        let state = queues.entry(queue).or_default();
        insert(state, id, Arc::new(meta), None, 0);
    }
    Ok(())
}

fn table_ops(ops: Vec<TableOp>) -> impl Iterator<Item = EventOp> {
    ops.into_iter().map(EventOp::Table)
}

#[async_trait]
impl Queue for QueueEngine {
    async fn commit(
        &self,
        messages: Vec<NewMessage>,
        ops: Vec<TableOp>,
    ) -> QueueResult<Vec<(String, u64)>> {
        match self
            .commit_messages(messages, table_ops(ops).collect(), None)
            .await?
        {
            Committed::Done(ids) => Ok(ids),
            Committed::Conflict(_) => Err(QueueError::backend(
                "an unconditional commit reported a conflict",
            )),
        }
    }

    async fn commit_if(
        &self,
        condition: Condition,
        messages: Vec<NewMessage>,
        ops: Vec<TableOp>,
    ) -> QueueResult<Committed> {
        self.commit_messages(messages, table_ops(ops).collect(), Some(condition))
            .await
    }

    async fn write(&self, ops: Vec<TableOp>, durability: Durability) -> QueueResult<()> {
        let ops = table_ops(ops).collect();
        match durability {
            Durability::Immediate => self.write_durably(ops, None).await.map(|_| ()),
            Durability::Eventual => self.write_lazily(ops),
        }
    }

    async fn try_lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> QueueResult<Vec<Leased>> {
        let now = self.clock.now_ms();
        let until = now + visibility.as_millis() as u64;
        let mut leased = Vec::new();
        let mut missing = Vec::new();
        {
            let mut queues = self.state()?;
            let Some(state) = queues.get_mut(queue) else {
                return Ok(leased);
            };
            let due: Vec<(u64, u64)> = state
                .ready
                .iter()
                .take_while(|(at, _)| *at <= now)
                .take(max)
                .copied()
                .collect();
            for key in due {
                state.ready.remove(&key);
                let Some(entry) = state.entries.get_mut(&key.1) else {
                    continue;
                };
                entry.attempts += 1;
                entry.leased = true;
                entry.visible_at = until;
                state.ready.insert((until, key.1));
                if entry.body.is_none() {
                    missing.push(key.1);
                }
                leased.push(Leased {
                    queue: queue.to_owned(),
                    id: key.1,
                    attempt: entry.attempts,
                    meta: entry.meta.clone(),
                    body: entry.body.clone().unwrap_or_default(),
                });
            }
        }
        if !missing.is_empty() {
            let name = queue.to_owned();
            let bodies = self
                .read(move |store| {
                    missing
                        .into_iter()
                        .map(|id| store.message_body(&name, id).map(|body| (id, body)))
                        .collect::<Result<HashMap<_, _>, _>>()
                })
                .await?;
            for message in &mut leased {
                if let Some(Some(body)) = bodies.get(&message.id) {
                    message.body = Bytes::from(body.clone());
                }
            }
        }
        Ok(leased)
    }

    async fn lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        cancel: &CancellationToken,
    ) -> QueueResult<Vec<Leased>> {
        loop {
            let (notify, next_at) = {
                let mut queues = self.state()?;
                let state = queues.entry(queue.to_owned()).or_default();
                (state.notify.clone(), state.ready.first().map(|(at, _)| *at))
            };
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let leased = self.try_lease(queue, max, visibility).await?;
            if !leased.is_empty() {
                return Ok(leased);
            }
            let wait = next_at
                .map(|at| Duration::from_millis(at.saturating_sub(self.clock.now_ms()).max(1)))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Vec::new()),
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn ack(&self, leased: &Leased) -> QueueResult<bool> {
        let Some(entry) = self.remove_leased(leased)? else {
            return Ok(false);
        };
        self.uncache(&entry.body);
        self.write_lazily(vec![EventOp::DeleteMessage {
            queue: leased.queue.clone(),
            id: leased.id,
        }])?;
        Ok(true)
    }

    async fn nack(&self, leased: &Leased, delay: Duration) -> QueueResult<bool> {
        let at = self.clock.now_ms() + delay.as_millis() as u64;
        let meta = {
            let mut queues = self.state()?;
            let Some((ready, entry, notify)) = lease_of(&mut queues, leased) else {
                return Ok(false);
            };
            let mut meta = (*entry.meta).clone();
            meta.attempts = entry.attempts;
            meta.not_before_ms = at;
            // Encoded before anything changes: a failure leaves the lease as it was.
            let encoded = encode(&meta)?;
            ready.remove(&(entry.visible_at, leased.id));
            entry.leased = false;
            entry.visible_at = at;
            entry.meta = Arc::new(meta);
            ready.insert((at, leased.id));
            notify.notify_waiters();
            encoded
        };
        self.write_lazily(vec![EventOp::PutMeta {
            queue: leased.queue.clone(),
            id: leased.id,
            meta,
        }])?;
        Ok(true)
    }

    async fn extend(&self, leased: &Leased, visibility: Duration) -> QueueResult<bool> {
        let mut queues = self.state()?;
        let Some((ready, entry, _)) = lease_of(&mut queues, leased) else {
            return Ok(false);
        };
        ready.remove(&(entry.visible_at, leased.id));
        entry.visible_at = self.clock.now_ms() + visibility.as_millis() as u64;
        ready.insert((entry.visible_at, leased.id));
        Ok(true)
    }

    async fn dead_letter(
        &self,
        leased: &Leased,
        dead_letter: &str,
        dead: Dead,
    ) -> QueueResult<bool> {
        let Some(entry) = self.remove_leased(leased)? else {
            return Ok(false);
        };
        self.uncache(&entry.body);
        let mut meta = (*entry.meta).clone();
        meta.attempts = entry.attempts;
        meta.not_before_ms = 0;
        meta.dead = Some(dead);
        let removed = EventOp::DeleteMessage {
            queue: leased.queue.clone(),
            id: leased.id,
        };
        let message = NewMessage {
            queue: dead_letter.to_owned(),
            meta,
            body: leased.body.clone(),
        };
        self.commit_messages(vec![message], vec![removed], None)
            .await?;
        Ok(true)
    }

    async fn redrive(&self, dlq: &str) -> QueueResult<usize> {
        let taken: Vec<(u64, Entry)> = {
            let mut queues = self.state()?;
            let Some(state) = queues.get_mut(dlq) else {
                return Ok(0);
            };
            // Only dead-lettered messages know where they came from; anything sent to a
            // dead-letter queue directly stays.
            let ids: Vec<u64> = state
                .entries
                .iter()
                .filter(|(_, e)| !e.leased && e.meta.dead.is_some())
                .map(|(id, _)| *id)
                .collect();
            let mut taken: Vec<(u64, Entry)> = ids
                .into_iter()
                .filter_map(|id| remove(state, id).map(|e| (id, e)))
                .collect();
            taken.sort_by_key(|(id, _)| *id);
            taken
        };
        let mut messages = Vec::with_capacity(taken.len());
        let mut deletes = Vec::with_capacity(taken.len());
        for (id, entry) in taken {
            self.uncache(&entry.body);
            let body = match entry.body {
                Some(body) => body,
                None => {
                    let queue = dlq.to_owned();
                    self.read(move |store| store.message_body(&queue, id))
                        .await?
                        .map(Bytes::from)
                        .unwrap_or_default()
                }
            };
            let mut meta = (*entry.meta).clone();
            let origin = meta.dead.take().map(|d| d.origin).unwrap_or_default();
            meta.attempts = 0;
            meta.not_before_ms = 0;
            meta.enqueued_ms = self.clock.now_ms();
            messages.push(NewMessage {
                queue: origin,
                meta,
                body,
            });
            deletes.push(EventOp::DeleteMessage {
                queue: dlq.to_owned(),
                id,
            });
        }
        let count = messages.len();
        self.commit_messages(messages, deletes, None).await?;
        Ok(count)
    }

    async fn peek(&self, queue: &str, limit: usize) -> QueueResult<Vec<Peeked>> {
        let mut out: Vec<Peeked> = {
            let queues = self.state()?;
            let Some(state) = queues.get(queue) else {
                return Ok(Vec::new());
            };
            let mut ids: Vec<u64> = state.entries.keys().copied().collect();
            ids.sort_unstable();
            ids.truncate(limit);
            ids.into_iter()
                .filter_map(|id| {
                    state.entries.get(&id).map(|e| Peeked {
                        id,
                        meta: e.meta.clone(),
                        body: e.body.clone().unwrap_or_default(),
                        in_flight: e.leased,
                    })
                })
                .collect()
        };
        let queue = queue.to_owned();
        let wanted: Vec<u64> = out
            .iter()
            .filter(|p| p.body.is_empty())
            .map(|p| p.id)
            .collect();
        if !wanted.is_empty() {
            let bodies = self
                .read(move |store| {
                    wanted
                        .into_iter()
                        .map(|id| store.message_body(&queue, id).map(|b| (id, b)))
                        .collect::<Result<HashMap<_, _>, _>>()
                })
                .await?;
            for peeked in &mut out {
                if let Some(Some(body)) = bodies.get(&peeked.id) {
                    peeked.body = Bytes::from(body.clone());
                }
            }
        }
        Ok(out)
    }

    async fn stats(&self, prefix: &str) -> QueueResult<Vec<QueueStats>> {
        let now = self.clock.now_ms();
        let queues = self.state()?;
        let mut out: Vec<QueueStats> = queues
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, state)| {
                let mut stats = QueueStats {
                    queue: name.clone(),
                    ..QueueStats::default()
                };
                for entry in state.entries.values() {
                    if entry.leased && entry.visible_at > now {
                        stats.in_flight += 1;
                    } else if entry.scheduled && entry.visible_at <= now {
                        stats.ready += 1;
                    } else {
                        stats.delayed += 1;
                    }
                    let enqueued = entry.meta.enqueued_ms;
                    stats.oldest_enqueued_ms = Some(
                        stats
                            .oldest_enqueued_ms
                            .map_or(enqueued, |o| o.min(enqueued)),
                    );
                }
                stats
            })
            .collect();
        out.sort_by(|a, b| a.queue.cmp(&b.queue));
        Ok(out)
    }

    async fn purge(&self, prefix: &str) -> QueueResult<usize> {
        let ops: Vec<EventOp> = {
            let mut queues = self.state()?;
            let names: Vec<String> = queues
                .keys()
                .filter(|name| name.starts_with(prefix))
                .cloned()
                .collect();
            let mut ops = Vec::new();
            for name in names {
                if let Some(state) = queues.remove(&name) {
                    for (id, entry) in state.entries {
                        self.uncache(&entry.body);
                        ops.push(EventOp::DeleteMessage {
                            queue: name.clone(),
                            id,
                        });
                    }
                }
            }
            ops
        };
        let count = ops.len();
        self.write_durably(ops, None).await?;
        Ok(count)
    }

    async fn entry(&self, table: EventTable, key: &str) -> QueueResult<Option<Vec<u8>>> {
        let key = key.to_owned();
        self.read(move |store| store.event_entry(table, &key)).await
    }

    async fn entries(
        &self,
        table: EventTable,
        prefix: &str,
    ) -> QueueResult<Vec<(String, Vec<u8>)>> {
        let prefix = prefix.to_owned();
        self.read(move |store| store.event_entries(table, &prefix))
            .await
    }

    async fn close(&self) {
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
        let thread = self.writer_thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            // At most one commit's wait, off the async workers.
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::error!("the queue writer thread panicked"),
                Err(error) => tracing::error!(%error, "waiting for the queue writer failed"),
            }
        }
    }
}

/// A queue's ready set, the leased message's entry and the queue's notifier, if the lease is
/// current.
fn lease_of<'a>(
    queues: &'a mut HashMap<String, QueueState>,
    leased: &Leased,
) -> Option<(&'a mut Schedule, &'a mut Entry, &'a Notify)> {
    let state = queues.get_mut(&leased.queue)?;
    let entry = state.entries.get_mut(&leased.id)?;
    (entry.leased && entry.attempts == leased.attempt).then_some((
        &mut state.ready,
        entry,
        &*state.notify,
    ))
}

fn insert(
    state: &mut QueueState,
    id: u64,
    meta: Arc<MessageMeta>,
    body: Option<Bytes>,
    visible_at: u64,
) {
    let attempts = meta.attempts;
    let scheduled = match &meta.group {
        Some(group) => {
            let members = state.groups.entry(group.clone()).or_default();
            members.push_back(id);
            members.len() == 1
        }
        None => true,
    };
    if scheduled {
        state.ready.insert((visible_at, id));
    }
    state.entries.insert(
        id,
        Entry {
            visible_at,
            attempts,
            leased: false,
            scheduled,
            meta,
            body,
        },
    );
}

/// Remove a message; if it headed a FIFO group, the next one becomes deliverable.
fn remove(state: &mut QueueState, id: u64) -> Option<Entry> {
    let entry = state.entries.remove(&id)?;
    if entry.scheduled {
        state.ready.remove(&(entry.visible_at, id));
    }
    if let Some(group) = &entry.meta.group
        && let Some(members) = state.groups.get_mut(group)
    {
        members.retain(|m| *m != id);
        match members.front().copied() {
            Some(next) => {
                if let Some(next_entry) = state.entries.get_mut(&next)
                    && !next_entry.scheduled
                {
                    next_entry.scheduled = true;
                    state.ready.insert((next_entry.visible_at, next));
                    state.notify.notify_waiters();
                }
            }
            None => {
                state.groups.remove(group);
            }
        }
    }
    Some(entry)
}

/// What a table key holds as the batch so far leaves it.
type Overlay = HashMap<(EventTable, String), Option<Vec<u8>>>;

/// Does `condition` hold, given the store and the ops of earlier jobs in the same batch? Its
/// error or, when it fails, what the key holds.
fn check(
    store: &Inner,
    overlay: &Overlay,
    condition: &Condition,
) -> Result<Result<(), Option<Vec<u8>>>, StoreError> {
    let current = match overlay.get(&(condition.table, condition.key.clone())) {
        Some(value) => value.clone(),
        None => store.event_entry(condition.table, &condition.key)?,
    };
    let holds = match &condition.expect {
        Expect::Absent => current.is_none(),
        Expect::Value(expected) => current.as_ref() == Some(expected),
    };
    Ok(if holds { Ok(()) } else { Err(current) })
}

fn record_overlay(overlay: &mut Overlay, ops: &[EventOp]) {
    for op in ops {
        match op {
            EventOp::Table(TableOp::Put { table, key, value }) => {
                overlay.insert((*table, key.clone()), Some(value.clone()));
            }
            EventOp::Table(TableOp::Delete { table, key }) => {
                overlay.insert((*table, key.clone()), None);
            }
            _ => {}
        }
    }
}

fn writer_loop(store: &Inner, jobs: mpsc::Receiver<WriteJob>) {
    let mut dirty = false;
    loop {
        let first = match jobs.recv_timeout(if dirty {
            FLUSH_INTERVAL
        } else {
            Duration::from_secs(3600)
        }) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if dirty {
                    match store.commit_events(&[], true) {
                        Ok(()) => dirty = false,
                        Err(error) => tracing::error!(%error, "queue flush failed"),
                    }
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if dirty && let Err(error) = store.commit_events(&[], true) {
                    tracing::error!(%error, "final queue flush failed");
                }
                return;
            }
        };
        let mut count = first.ops.len();
        let mut batch = vec![first];
        while count < MAX_OPS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => {
                    count += job.ops.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let mut durable = false;
        let mut ops = Vec::with_capacity(count);
        let mut waiters = Vec::new();
        let mut overlay = Overlay::new();
        for job in batch {
            if let Some(condition) = &job.condition {
                match check(store, &overlay, condition) {
                    Ok(Ok(())) => {}
                    Ok(Err(current)) => {
                        if let Some(done) = job.done {
                            let _ = done.send(Ok(Some(current)));
                        }
                        continue;
                    }
                    Err(error) => {
                        if let Some(done) = job.done {
                            let _ = done.send(Err(Shared(Arc::new(error))));
                        }
                        continue;
                    }
                }
            }
            record_overlay(&mut overlay, &job.ops);
            durable |= job.durable;
            ops.extend(job.ops);
            if let Some(done) = job.done {
                waiters.push(done);
            }
        }
        if ops.is_empty() && waiters.is_empty() {
            continue;
        }
        let result = store.commit_events(&ops, durable).map_err(|error| {
            tracing::error!(%error, ops = ops.len(), "queue commit failed");
            Shared(Arc::new(error))
        });
        if result.is_ok() {
            dirty = !durable;
        }
        for done in waiters {
            let _ = done.send(result.clone().map(|()| None));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_store::conformance::queue::{message, retry};
    use nimbus_store::conformance::unreliable::Unreliable;

    const LEASE: Duration = Duration::from_secs(30);

    /// Fresh engines over fresh stores that live as long as the factory.
    #[derive(Default)]
    struct Engines(crate::TempStores);

    impl Engines {
        fn make(&self) -> Arc<QueueEngine> {
            QueueEngine::open(Arc::new(self.0.make())).unwrap()
        }
    }

    fn open(dir: &std::path::Path) -> Arc<QueueEngine> {
        QueueEngine::open(Arc::new(RedbStore::open(dir).unwrap())).unwrap()
    }

    #[tokio::test]
    async fn conformance() {
        let engines = Engines::default();
        nimbus_store::conformance::queue::run_all(|| engines.make()).await;
    }

    #[tokio::test]
    async fn conformance_through_faults() {
        let engines = Engines::default();
        let injected = Arc::new(AtomicUsize::new(0));
        let wrappers = Mutex::new(Vec::new());
        nimbus_store::conformance::queue::run_all(|| {
            let wrapper = Arc::new(Unreliable::new(engines.make(), 3));
            wrappers.lock().unwrap().push(wrapper.clone());
            wrapper
        })
        .await;
        for wrapper in wrappers.lock().unwrap().iter() {
            injected.fetch_add(wrapper.injected() as usize, Ordering::Relaxed);
        }
        assert!(
            injected.load(Ordering::Relaxed) > 20,
            "the wrapper injected faults"
        );
    }

    #[tokio::test]
    async fn survives_reopen_with_ids_unique() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, dead) = {
            let engine = open(dir.path());
            let ids = engine
                .commit(
                    vec![message("a/q", "keep", None), message("a/q", "dies", None)],
                    vec![],
                )
                .await
                .unwrap();
            let leased = engine.try_lease("a/q", 10, LEASE).await.unwrap();
            let dead = Dead {
                reason: DeadReason::RetriesExhausted,
                origin: "a/q".into(),
                error: "function_error: boom".into(),
                at_ms: SystemClock.now_ms(),
            };
            assert!(
                engine
                    .dead_letter(&leased[1], "a/q.dlq", dead)
                    .await
                    .unwrap()
            );
            engine.close().await;
            (ids[0].1, ids[1].1)
        };
        // Reopened: the leased-but-unacked message is visible again; the dead one is in the DLQ.
        let engine = open(dir.path());
        let leased = engine.try_lease("a/q", 10, LEASE).await.unwrap();
        assert_eq!(leased.len(), 1);
        assert_eq!((leased[0].id, &leased[0].body[..]), (kept, &b"keep"[..]));
        let peeked = engine.peek("a/q.dlq", 10).await.unwrap();
        assert_eq!(peeked.len(), 1);
        assert_eq!(peeked[0].body, "dies");
        assert_ne!(peeked[0].id, dead);
        assert_eq!(engine.redrive("a/q.dlq").await.unwrap(), 1);
        let redriven = engine.try_lease("a/q", 10, LEASE).await.unwrap();
        assert!(redriven[0].id > kept, "ids stay unique across restarts");
    }

    /// Once, metadata that failed to serialize was stored as empty bytes, and the next start
    /// skipped the message as unreadable: accepted, then lost. An unreadable message now
    /// reaches the dead-letter queue with its body.
    #[tokio::test]
    async fn unreadable_metadata_is_dead_lettered_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store
                .inner()
                .commit_events(
                    &[EventOp::PutMessage {
                        queue: "a/q".into(),
                        id: 7,
                        meta: Vec::new(),
                        body: b"precious".to_vec(),
                    }],
                    true,
                )
                .unwrap();
        }
        let engine = open(dir.path());
        assert!(engine.try_lease("a/q", 10, LEASE).await.unwrap().is_empty());
        let dead = engine.peek("a/q.dlq", 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body, "precious");
        let why = dead[0].meta.dead.as_ref().unwrap();
        assert_eq!(why.reason, DeadReason::Unreadable);
        assert_eq!(why.origin, "a/q");
        engine.close().await;
        drop(engine);
        // The move itself is durable: a second start finds it where the first put it.
        let engine = open(dir.path());
        assert_eq!(engine.peek("a/q.dlq", 10).await.unwrap().len(), 1);
        assert!(engine.peek("a/q", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn conditions_see_earlier_writes_of_the_same_batch() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        let put = TableOp::Put {
            table: EventTable::Schedules,
            key: "a/s".into(),
            value: b"1".to_vec(),
        };
        let absent = Condition {
            table: EventTable::Schedules,
            key: "a/s".into(),
            expect: Expect::Absent,
        };
        // Sent back to back, the two jobs can share one group commit.
        let (first, second) = tokio::join!(
            engine.write(vec![put.clone()], Durability::Immediate),
            engine.commit_if(absent, vec![], vec![put.clone()]),
        );
        first.unwrap();
        assert_eq!(second.unwrap(), Committed::Conflict(Some(b"1".to_vec())));
        let _ = retry(|| engine.entry(EventTable::Schedules, "a/s")).await;
    }

    /// Leases, retries' backoff and lease waits follow the injected clock: a 30 s lease and a
    /// one-minute backoff take no wall-clock time on paused time.
    #[tokio::test(start_paused = true)]
    async fn leases_and_backoff_follow_the_injected_clock() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(nimbus_store::conformance::TokioClock::new(
            1_700_000_000_000,
        ));
        let store = Arc::new(RedbStore::open(dir.path()).unwrap());
        let engine = QueueEngine::open_with_clock(store, clock).unwrap();
        let mut message = message("a/q", "x", None);
        message.meta.enqueued_ms = 1_700_000_000_000;
        engine.commit(vec![message], vec![]).await.unwrap();
        let first = engine.try_lease("a/q", 1, LEASE).await.unwrap();
        assert_eq!(first.len(), 1);
        tokio::time::advance(LEASE - Duration::from_millis(1)).await;
        assert!(engine.try_lease("a/q", 1, LEASE).await.unwrap().is_empty());
        tokio::time::advance(Duration::from_millis(2)).await;
        let second = engine.try_lease("a/q", 1, LEASE).await.unwrap();
        assert_eq!(second[0].attempt, 2, "the expired lease is redelivered");
        assert!(!engine.ack(&first[0]).await.unwrap());
        assert!(
            engine
                .nack(&second[0], Duration::from_secs(60))
                .await
                .unwrap()
        );
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(engine.try_lease("a/q", 1, LEASE).await.unwrap().is_empty());
        // A waiting lease wakes when the backoff ends (auto-advance runs the clock forward).
        let cancel = CancellationToken::new();
        let third = engine.lease("a/q", 1, LEASE, &cancel).await.unwrap();
        assert_eq!(third[0].attempt, 3);
        engine.close().await;
    }
}
