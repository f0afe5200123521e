//! The durable queue engine: messages on disk (an [`EventStore`]) before they are acknowledged,
//! scheduling state in memory.
//!
//! # Durability
//!
//! All writes go through one writer thread that commits whatever has queued up since its last
//! commit as one transaction (group commit): while one fsync runs, the next batch gathers, so
//! the fsync cost is shared by every enqueue that arrived meanwhile. [`Engine::commit`] returns
//! only after its batch is durable, and a message becomes visible to consumers only then.
//! Acks, retries and lease bookkeeping commit without fsync (a crash before the next durable
//! commit means redelivery — at-least-once — never loss); the writer makes them durable within
//! [`FLUSH_INTERVAL`].
//!
//! # Delivery
//!
//! Each queue keeps a set ordered by (visible-at, id). A lease takes visible messages, marks
//! them with a new attempt number (the lease token) and makes them invisible until the lease
//! expires; an ack with a stale token (the lease expired and someone else has the message) is
//! refused. A retry makes the message visible again after its backoff. Messages of a FIFO group
//! wait behind the group's head: only the head is ever in the visible set, so one group is
//! delivered one message at a time, in order, even across retries.
//!
//! After a restart, every message not acknowledged is visible again (leases are not persisted),
//! and a retry's backoff is honoured (it is).

use crate::message::{Dead, MessageMeta};
use bytes::Bytes;
use nimbus_store::{EventOp, EventStore, EventTable};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// Non-durable commits become durable at most this long after they were made.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Most ops one transaction gathers.
const MAX_OPS_PER_COMMIT: usize = 50_000;
/// Message bodies kept in memory across all queues; beyond this they are read from disk.
const BODY_CACHE_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("storage failure: {0}")]
    Store(String),
    #[error("the queue engine has stopped")]
    Stopped,
}

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub queue: String,
    pub meta: MessageMeta,
    pub body: Bytes,
}

/// A leased message: deliver it, then ack, retry or dead-letter it with its `attempt`.
#[derive(Debug, Clone)]
pub struct Leased {
    pub queue: String,
    pub id: u64,
    /// 1 on the first delivery; the lease token.
    pub attempt: u32,
    pub meta: Arc<MessageMeta>,
    pub body: Bytes,
}

/// A message as `peek` shows it.
#[derive(Debug, Clone)]
pub struct Peeked {
    pub id: u64,
    pub meta: Arc<MessageMeta>,
    pub body: Bytes,
    pub in_flight: bool,
}

/// Counts for one queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub queue: String,
    /// Deliverable now.
    pub ready: usize,
    /// Leased and not yet acknowledged.
    pub in_flight: usize,
    /// Waiting for a retry's backoff, or behind their FIFO group's head.
    pub delayed: usize,
    pub oldest_enqueued_ms: Option<u64>,
}

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

struct WriteJob {
    ops: Vec<EventOp>,
    durable: bool,
    done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

pub struct Engine {
    store: Arc<dyn EventStore>,
    queues: Mutex<HashMap<String, QueueState>>,
    writer: Mutex<Option<mpsc::Sender<WriteJob>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    cached_bytes: AtomicUsize,
    /// Ids are unique across restarts: they start above the time of opening in microseconds.
    id_floor: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn encode(meta: &MessageMeta) -> Vec<u8> {
    serde_json::to_vec(meta).unwrap_or_default()
}

impl Engine {
    /// Load every stored message and start the writer thread. Blocking: call from
    /// `spawn_blocking` or before the runtime is busy.
    pub fn open(store: Arc<dyn EventStore>) -> Result<Arc<Engine>, EngineError> {
        let metas = store
            .message_metas()
            .map_err(|e| EngineError::Store(e.to_string()))?;
        let id_floor = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut queues: HashMap<String, QueueState> = HashMap::new();
        let mut unreadable = 0usize;
        for (queue, id, raw) in metas {
            let Ok(meta) = serde_json::from_slice::<MessageMeta>(&raw) else {
                unreadable += 1;
                continue;
            };
            let state = queues.entry(queue).or_default();
            state.next_id = state.next_id.max(id + 1);
            let visible_at = meta.not_before_ms;
            insert(state, id, Arc::new(meta), None, visible_at);
        }
        if unreadable > 0 {
            tracing::error!(
                unreadable,
                "stored messages with unreadable metadata were skipped"
            );
        }
        for state in queues.values_mut() {
            state.next_id = state.next_id.max(id_floor);
        }
        let (sender, receiver) = mpsc::channel::<WriteJob>();
        let writer_store = store.clone();
        let writer_thread = std::thread::Builder::new()
            .name("nimbus-queue-writer".into())
            .spawn(move || writer_loop(writer_store, receiver))
            .map_err(|e| EngineError::Store(format!("start the writer thread: {e}")))?;
        Ok(Arc::new(Engine {
            store,
            queues: Mutex::new(queues),
            writer: Mutex::new(Some(sender)),
            writer_thread: Mutex::new(Some(writer_thread)),
            cached_bytes: AtomicUsize::new(0),
            id_floor,
        }))
    }

    /// Stop the writer after it has committed everything sent so far, and wait for it (a
    /// short blocking wait: at most one commit).
    pub fn close(&self) {
        if let Ok(mut writer) = self.writer.lock() {
            writer.take();
        }
        let thread = self.writer_thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the queue writer thread panicked");
        }
    }

    fn send(&self, job: WriteJob) -> Result<(), EngineError> {
        let writer = self.writer.lock().map_err(|_| EngineError::Stopped)?;
        writer
            .as_ref()
            .ok_or(EngineError::Stopped)?
            .send(job)
            .map_err(|_| EngineError::Stopped)
    }

    /// Commit `ops` durably and wait for it.
    pub async fn write(&self, ops: Vec<EventOp>) -> Result<(), EngineError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        self.send(WriteJob {
            ops,
            durable: true,
            done: Some(done),
        })?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(EngineError::Store(error)),
            Err(_) => Err(EngineError::Stopped),
        }
    }

    /// Queue `ops` to commit without waiting and without fsync (acks, retries, status
    /// bookkeeping: losing them in a crash costs a redelivery, never an event).
    pub fn write_lazily(&self, ops: Vec<EventOp>) {
        if self
            .send(WriteJob {
                ops,
                durable: false,
                done: None,
            })
            .is_err()
        {
            tracing::warn!("queue engine stopped; an ack or retry was not persisted");
        }
    }

    /// Durably store `messages` (and `extra` ops, in the same transaction), then make the
    /// messages deliverable. Returns each message's queue and id.
    pub async fn commit(
        &self,
        messages: Vec<NewMessage>,
        extra: Vec<EventOp>,
    ) -> Result<Vec<(String, u64)>, EngineError> {
        let mut ids = Vec::with_capacity(messages.len());
        let mut ops = Vec::with_capacity(messages.len() + extra.len());
        {
            let mut queues = self.queues.lock().map_err(|_| EngineError::Stopped)?;
            for message in &messages {
                let state = queues.entry(message.queue.clone()).or_default();
                let id = state.next_id.max(self.id_floor);
                state.next_id = id + 1;
                ids.push((message.queue.clone(), id));
                ops.push(EventOp::PutMessage {
                    queue: message.queue.clone(),
                    id,
                    meta: encode(&message.meta),
                    body: message.body.to_vec(),
                });
            }
        }
        ops.extend(extra);
        self.write(ops).await?;
        let mut queues = self.queues.lock().map_err(|_| EngineError::Stopped)?;
        let mut touched = Vec::new();
        for (message, (queue, id)) in messages.into_iter().zip(&ids) {
            let state = queues.entry(queue.clone()).or_default();
            let body = self.cache(message.body);
            let visible = message.meta.not_before_ms;
            insert(state, *id, Arc::new(message.meta), body, visible);
            if touched.last() != Some(queue) {
                touched.push(queue.clone());
            }
        }
        for queue in touched {
            if let Some(state) = queues.get(&queue) {
                state.notify.notify_waiters();
            }
        }
        Ok(ids)
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

    /// Lease up to `max` messages visible now, without waiting.
    pub async fn try_lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<Leased>, EngineError> {
        let now = now_ms();
        let until = now + visibility.as_millis() as u64;
        let mut leased = Vec::new();
        let mut missing = Vec::new();
        {
            let mut queues = self.queues.lock().map_err(|_| EngineError::Stopped)?;
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
                    missing.push(leased.len());
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
            let wanted: Vec<(String, u64)> = missing
                .iter()
                .map(|&i| (leased[i].queue.clone(), leased[i].id))
                .collect();
            let bodies = self
                .read(move |store| {
                    wanted
                        .iter()
                        .map(|(q, id)| store.message_body(q, *id))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
            for (&i, body) in missing.iter().zip(bodies) {
                leased[i].body = Bytes::from(body.unwrap_or_default());
            }
        }
        Ok(leased)
    }

    /// Lease up to `max` messages, waiting until some are visible or `stop` resolves.
    pub async fn lease(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Vec<Leased>, EngineError> {
        loop {
            let (notify, next_at) = {
                let mut queues = self.queues.lock().map_err(|_| EngineError::Stopped)?;
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
                .map(|at| Duration::from_millis(at.saturating_sub(now_ms()).max(1)))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = stop.cancelled() => return Ok(Vec::new()),
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Acknowledge a delivered message: it is done. False if the lease was lost meanwhile.
    pub fn ack(&self, queue: &str, id: u64, attempt: u32) -> bool {
        let Some(entry) = self.remove_leased(queue, id, attempt) else {
            return false;
        };
        self.uncache(&entry.body);
        self.write_lazily(vec![EventOp::DeleteMessage {
            queue: queue.to_owned(),
            id,
        }]);
        true
    }

    /// Make a delivered message visible again after `delay`. False if the lease was lost.
    pub fn retry(&self, queue: &str, id: u64, attempt: u32, delay: Duration) -> bool {
        let at = now_ms() + delay.as_millis() as u64;
        let meta = {
            let Ok(mut queues) = self.queues.lock() else {
                return false;
            };
            let Some((ready, entry, notify)) = leased(&mut queues, queue, id, attempt) else {
                return false;
            };
            ready.remove(&(entry.visible_at, id));
            entry.leased = false;
            entry.visible_at = at;
            let mut meta = (*entry.meta).clone();
            meta.attempts = entry.attempts;
            meta.not_before_ms = at;
            entry.meta = Arc::new(meta.clone());
            ready.insert((at, id));
            notify.notify_waiters();
            meta
        };
        self.write_lazily(vec![EventOp::PutMeta {
            queue: queue.to_owned(),
            id,
            meta: encode(&meta),
        }]);
        true
    }

    /// Keep a lease for `visibility` more from now (long work). False if the lease was lost.
    pub fn extend(&self, queue: &str, id: u64, attempt: u32, visibility: Duration) -> bool {
        let Ok(mut queues) = self.queues.lock() else {
            return false;
        };
        let Some((ready, entry, _)) = leased(&mut queues, queue, id, attempt) else {
            return false;
        };
        ready.remove(&(entry.visible_at, id));
        entry.visible_at = now_ms() + visibility.as_millis() as u64;
        ready.insert((entry.visible_at, id));
        true
    }

    /// Move a delivered message to `dead_letter` (its origin and reason recorded), durably.
    /// False if the lease was lost meanwhile.
    pub async fn dead_letter(
        &self,
        leased: &Leased,
        dead_letter: &str,
        dead: Dead,
    ) -> Result<bool, EngineError> {
        let Some(entry) = self.remove_leased(&leased.queue, leased.id, leased.attempt) else {
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
        self.commit(
            vec![NewMessage {
                queue: dead_letter.to_owned(),
                meta,
                body: leased.body.clone(),
            }],
            vec![removed],
        )
        .await?;
        Ok(true)
    }

    fn remove_leased(&self, queue: &str, id: u64, attempt: u32) -> Option<Entry> {
        let mut queues = self.queues.lock().ok()?;
        leased(&mut queues, queue, id, attempt)?;
        remove(queues.get_mut(queue)?, id)
    }

    /// Move every dead-lettered message of `dlq` back to the queue it came from, as new
    /// (attempts and age reset). Returns how many moved.
    pub async fn redrive(&self, dlq: &str) -> Result<usize, EngineError> {
        let taken: Vec<(u64, Entry)> = {
            let mut queues = self.queues.lock().map_err(|_| EngineError::Stopped)?;
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
            meta.enqueued_ms = now_ms();
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
        self.commit(messages, deletes).await?;
        Ok(count)
    }

    /// The first `limit` messages of `queue` by id, without leasing them.
    pub async fn peek(&self, queue: &str, limit: usize) -> Result<Vec<Peeked>, EngineError> {
        let mut out: Vec<Peeked> = {
            let queues = self.queues.lock().map_err(|_| EngineError::Stopped)?;
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

    /// Counts for every queue whose name starts with `prefix`.
    pub fn stats(&self, prefix: &str) -> Vec<QueueStats> {
        let now = now_ms();
        let Ok(queues) = self.queues.lock() else {
            return Vec::new();
        };
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
        out
    }

    /// Delete every message of queues whose name starts with `prefix` (an app was removed).
    pub async fn purge(&self, prefix: &str) -> Result<usize, EngineError> {
        let ops: Vec<EventOp> = {
            let mut queues = self.queues.lock().map_err(|_| EngineError::Stopped)?;
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
        self.write(ops).await?;
        Ok(count)
    }

    /// Run a blocking read of the store off the async workers.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn EventStore) -> nimbus_store::Result<T> + Send + 'static,
    ) -> Result<T, EngineError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(store.as_ref()))
            .await
            .map_err(|e| EngineError::Store(e.to_string()))?
            .map_err(|e| EngineError::Store(e.to_string()))
    }

    /// Read one entry of a keyed table.
    pub async fn entry(
        &self,
        table: EventTable,
        key: &str,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let key = key.to_owned();
        self.read(move |store| store.event_entry(table, &key)).await
    }

    /// Entries of a keyed table under `prefix`.
    pub async fn entries(
        &self,
        table: EventTable,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, EngineError> {
        let prefix = prefix.to_owned();
        self.read(move |store| store.event_entries(table, &prefix))
            .await
    }
}

/// A queue's ready set, message `id`'s entry and the queue's notifier, if the message is leased
/// under token `attempt`.
fn leased<'a>(
    queues: &'a mut HashMap<String, QueueState>,
    queue: &str,
    id: u64,
    attempt: u32,
) -> Option<(&'a mut Schedule, &'a mut Entry, &'a Notify)> {
    let state = queues.get_mut(queue)?;
    let entry = state.entries.get_mut(&id)?;
    (entry.leased && entry.attempts == attempt).then_some((&mut state.ready, entry, &*state.notify))
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

fn writer_loop(store: Arc<dyn EventStore>, jobs: mpsc::Receiver<WriteJob>) {
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
        let durable = batch.iter().any(|job| job.durable);
        let mut ops = Vec::with_capacity(count);
        let mut waiters = Vec::new();
        for job in batch {
            ops.extend(job.ops);
            if let Some(done) = job.done {
                waiters.push(done);
            }
        }
        let result = store.commit_events(&ops, durable);
        match &result {
            Ok(()) => dirty = !durable,
            Err(error) => tracing::error!(%error, ops = ops.len(), "queue commit failed"),
        }
        let result = result.map_err(|e| e.to_string());
        for done in waiters {
            let _ = done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageKind;

    fn message(queue: &str, body: &str, group: Option<&str>) -> NewMessage {
        let mut meta = MessageMeta::new(MessageKind::Message, now_ms());
        meta.group = group.map(str::to_owned);
        NewMessage {
            queue: queue.into(),
            meta,
            body: Bytes::from(body.to_owned()),
        }
    }

    fn open(dir: &std::path::Path) -> Arc<Engine> {
        let store = nimbus_store_redb::RedbStore::open(dir).unwrap();
        Engine::open(Arc::new(store)).unwrap()
    }

    const LEASE: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn lease_ack_retry_and_stale_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine
            .commit(
                vec![message("a/q", "one", None), message("a/q", "two", None)],
                vec![],
            )
            .await
            .unwrap();
        let leased = engine.try_lease("a/q", 10, LEASE).await.unwrap();
        assert_eq!(leased.len(), 2);
        assert_eq!(leased[0].body, "one");
        assert_eq!(leased[0].attempt, 1);
        // Leased messages are invisible.
        assert!(engine.try_lease("a/q", 10, LEASE).await.unwrap().is_empty());
        assert!(engine.ack("a/q", leased[0].id, 1));
        assert!(!engine.ack("a/q", leased[0].id, 1), "acked twice");
        assert!(engine.retry("a/q", leased[1].id, 1, Duration::ZERO));
        let again = engine.try_lease("a/q", 10, LEASE).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].attempt, 2);
        assert!(!engine.ack("a/q", leased[1].id, 1), "a stale lease token");
        assert!(engine.ack("a/q", again[0].id, 2));
        assert_eq!(
            engine.stats("a/"),
            vec![QueueStats {
                queue: "a/q".into(),
                ..QueueStats::default()
            }]
        );
    }

    #[tokio::test]
    async fn expired_leases_are_redelivered() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine
            .commit(vec![message("a/q", "x", None)], vec![])
            .await
            .unwrap();
        let first = engine
            .try_lease("a/q", 1, Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = engine.try_lease("a/q", 1, LEASE).await.unwrap();
        assert_eq!((second[0].id, second[0].attempt), (first[0].id, 2));
        assert!(!engine.ack("a/q", first[0].id, 1));
    }

    #[tokio::test]
    async fn extended_leases_hold() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        engine
            .commit(vec![message("a/q", "x", None)], vec![])
            .await
            .unwrap();
        let first = engine
            .try_lease("a/q", 1, Duration::from_millis(20))
            .await
            .unwrap();
        assert!(engine.extend("a/q", first[0].id, 1, LEASE));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(engine.try_lease("a/q", 1, LEASE).await.unwrap().is_empty());
        assert!(
            !engine.extend("a/q", first[0].id, 2, LEASE),
            "a token never issued"
        );
        assert!(engine.ack("a/q", first[0].id, 1));
    }

    #[tokio::test]
    async fn fifo_groups_deliver_in_order_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        let batch = vec![
            message("a/f", "a1", Some("a")),
            message("a/f", "b1", Some("b")),
            message("a/f", "a2", Some("a")),
            message("a/f", "b2", Some("b")),
        ];
        engine.commit(batch, vec![]).await.unwrap();
        let heads = engine.try_lease("a/f", 10, LEASE).await.unwrap();
        let bodies: Vec<&[u8]> = heads.iter().map(|l| &l.body[..]).collect();
        assert_eq!(bodies, [&b"a1"[..], b"b1"]);
        // A retried head keeps its group blocked: a2 must not overtake a1.
        assert!(engine.retry("a/f", heads[0].id, 1, Duration::ZERO));
        assert!(engine.ack("a/f", heads[1].id, 1));
        let next = engine.try_lease("a/f", 10, LEASE).await.unwrap();
        let mut bodies: Vec<&[u8]> = next.iter().map(|l| &l.body[..]).collect();
        bodies.sort();
        assert_eq!(bodies, [&b"a1"[..], b"b2"]);
    }

    #[tokio::test]
    async fn survives_reopen_and_redrives() {
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
                reason: crate::policy::DeadReason::RetriesExhausted,
                origin: "a/q".into(),
                error: "function_error: boom".into(),
                at_ms: now_ms(),
            };
            assert!(
                engine
                    .dead_letter(&leased[1], "a/q.dlq", dead)
                    .await
                    .unwrap()
            );
            engine.close();
            drop(engine);
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
        assert_eq!(
            peeked[0].meta.dead.as_ref().unwrap().error,
            "function_error: boom"
        );
        assert_ne!(peeked[0].id, dead);
        assert_eq!(engine.redrive("a/q.dlq").await.unwrap(), 1);
        assert!(engine.peek("a/q.dlq", 10).await.unwrap().is_empty());
        let redriven = engine.try_lease("a/q", 10, LEASE).await.unwrap();
        assert_eq!(redriven.len(), 1);
        assert_eq!(redriven[0].body, "dies");
        assert_eq!(redriven[0].attempt, 1);
        // Ids stay unique across restarts.
        assert!(redriven[0].id > kept);
    }
}
