//! The embedded [`KvStore`]: entries are rows of `kv`, keyed by (app, store, key), each value
//! prefixed by its version and expiry; `kv_expiry` orders the expiring ones by time so
//! purging reads only what is due. Writes share group commits (one redb transaction and one
//! fsync for the writes that arrive while the previous commit runs), durable before any is
//! answered; conditions and increments are decided inside the transaction, in turn (redb has
//! one writer at a time), so concurrent conditional writes cannot lose an update. A store in
//! `kv_watched` records each change in `kv_events` inside the same transaction.

use crate::{Inner, RedbStore, SEQS, now_ms};
use async_trait::async_trait;
use bytes::Bytes;
use nimbus_store::kv::{check_entry, counter_of};
use nimbus_store::{
    KeyPage, KvChange, KvCondition, KvEntry, KvError, KvEvent, KvResult, KvStore, KvStoreId,
};
use redb::{ReadableTable, TableDefinition};
use std::ops::Bound;
use std::time::Duration;
use tokio::sync::oneshot;

/// (app, store) → when it was created (ms).
pub(crate) const KV_STORES: TableDefinition<(&str, &str), u64> = TableDefinition::new("kv_stores");
/// (app, store, key) → version (8 bytes BE), expiry in ms (8 bytes BE, 0 for never), value.
pub(crate) const KV: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("kv");
/// (expiry ms, app, store, key) for entries that expire.
pub(crate) const KV_EXPIRY: TableDefinition<(u64, &str, &str, &str), ()> =
    TableDefinition::new("kv_expiry");
/// (app, store) of the stores that record their changes as events.
pub(crate) const KV_WATCHED: TableDefinition<(&str, &str), ()> = TableDefinition::new("kv_watched");
/// Sequence number → a recorded [`KvEvent`] (JSON), until settled.
pub(crate) const KV_EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("kv_events");
/// The `seqs` rows numbering versions and events.
const VERSION_SEQ: &str = "#kv-versions";
const EVENT_SEQ: &str = "#kv-events";

const HEADER: usize = 16;

type KvTable = redb::ReadOnlyTable<(&'static str, &'static str, &'static str), &'static [u8]>;

fn db(error: impl Into<nimbus_store::BoxError>) -> KvError {
    KvError::backend(error)
}

/// A row's parts.
struct Row<'a> {
    version: u64,
    expires_ms: u64,
    value: &'a [u8],
}

impl<'a> Row<'a> {
    fn parse(bytes: &'a [u8]) -> KvResult<Row<'a>> {
        let (Some(version), Some(expires), Some(value)) =
            (bytes.get(0..8), bytes.get(8..HEADER), bytes.get(HEADER..))
        else {
            return Err(KvError::backend(
                "a key-value row is shorter than its header",
            ));
        };
        let number = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or_default());
        Ok(Row {
            version: number(version),
            expires_ms: number(expires),
            value,
        })
    }

    fn live(&self, now: u64) -> bool {
        self.expires_ms == 0 || self.expires_ms > now
    }

    fn entry(&self) -> KvEntry {
        KvEntry {
            value: Bytes::copy_from_slice(self.value),
            version: self.version,
        }
    }
}

fn encode(version: u64, expires_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(HEADER + value.len());
    row.extend_from_slice(&version.to_be_bytes());
    row.extend_from_slice(&expires_ms.to_be_bytes());
    row.extend_from_slice(value);
    row
}

/// Check the store exists; whether it emits events.
fn require_store(txn: &redb::WriteTransaction, id: &KvStoreId) -> KvResult<bool> {
    let stores = txn.open_table(KV_STORES).map_err(db)?;
    let key = (id.app.as_str(), id.store.as_str());
    if stores.get(key).map_err(db)?.is_none() {
        return Err(KvError::NoSuchStore(id.clone()));
    }
    watched(txn, id)
}

fn watched(txn: &redb::WriteTransaction, id: &KvStoreId) -> KvResult<bool> {
    let watched = txn.open_table(KV_WATCHED).map_err(db)?;
    Ok(watched
        .get((id.app.as_str(), id.store.as_str()))
        .map_err(db)?
        .is_some())
}

/// One store's writes inside a write transaction, recording their events if the store emits
/// them.
struct Scope<'a> {
    txn: &'a redb::WriteTransaction,
    id: &'a KvStoreId,
    now: u64,
    events: bool,
}

impl Scope<'_> {
    /// Write `value` under `key` if `condition` holds; the new version, or `None`.
    /// `expires_ms` of `None` keeps the current entry's expiry (an increment), `Some(0)`
    /// clears it.
    fn write(
        &self,
        key: &str,
        value: &[u8],
        condition: KvCondition,
        expires_ms: Option<u64>,
    ) -> KvResult<Option<u64>> {
        let mut kv = self.txn.open_table(KV).map_err(db)?;
        let row_key = (self.id.app.as_str(), self.id.store.as_str(), key);
        let current = match kv.get(row_key).map_err(db)? {
            Some(bytes) => {
                let row = Row::parse(bytes.value())?;
                Some((row.version, row.expires_ms, row.live(self.now)))
            }
            None => None,
        };
        let live = current.filter(|(_, _, live)| *live);
        let holds = match condition {
            KvCondition::Always => true,
            KvCondition::Absent => live.is_none(),
            KvCondition::Version(version) => live.is_some_and(|(v, _, _)| v == version),
        };
        if !holds {
            return Ok(None);
        }
        let mut expiry = self.txn.open_table(KV_EXPIRY).map_err(db)?;
        if let Some((_, old_expires, _)) = current
            && old_expires != 0
        {
            expiry
                .remove((old_expires, row_key.0, row_key.1, row_key.2))
                .map_err(db)?;
        }
        if current.is_some_and(|(_, _, live)| !live) {
            // Expired but not yet purged: its expiry is noticed now.
            self.record(key, KvChange::Expire, None)?;
        }
        let expires_ms = expires_ms.unwrap_or_else(|| live.map_or(0, |(_, e, _)| e));
        if expires_ms != 0 {
            expiry
                .insert((expires_ms, row_key.0, row_key.1, row_key.2), ())
                .map_err(db)?;
        }
        let version = next_seq(self.txn, VERSION_SEQ)?;
        kv.insert(row_key, encode(version, expires_ms, value).as_slice())
            .map_err(db)?;
        self.record(key, KvChange::Set, Some((version, value.len() as u64)))?;
        Ok(Some(version))
    }

    /// Remove `key`'s entry; whether it had a live one. Removing an expired entry (a purge,
    /// or a delete that finds it expired) records its expiry.
    fn remove(&self, key: &str) -> KvResult<bool> {
        let mut kv = self.txn.open_table(KV).map_err(db)?;
        let row_key = (self.id.app.as_str(), self.id.store.as_str(), key);
        let Some((expires_ms, live)) = kv
            .remove(row_key)
            .map_err(db)?
            .map(|bytes| Row::parse(bytes.value()).map(|row| (row.expires_ms, row.live(self.now))))
            .transpose()?
        else {
            return Ok(false);
        };
        if expires_ms != 0 {
            self.txn
                .open_table(KV_EXPIRY)
                .map_err(db)?
                .remove((expires_ms, row_key.0, row_key.1, row_key.2))
                .map_err(db)?;
        }
        let change = if live {
            KvChange::Delete
        } else {
            KvChange::Expire
        };
        self.record(key, change, None)?;
        Ok(live)
    }

    /// Add `delta` to the counter under `key` (0 if absent or expired), keeping its expiry.
    fn increment(&self, key: &str, delta: i64) -> KvResult<i64> {
        let current = {
            let kv = self.txn.open_table(KV).map_err(db)?;
            let row_key = (self.id.app.as_str(), self.id.store.as_str(), key);
            match kv.get(row_key).map_err(db)? {
                Some(bytes) => {
                    let row = Row::parse(bytes.value())?;
                    if row.live(self.now) {
                        counter_of(key, row.value)?
                    } else {
                        0
                    }
                }
                None => 0,
            }
        };
        let next = current
            .checked_add(delta)
            .ok_or_else(|| KvError::Overflow {
                key: key.to_owned(),
            })?;
        self.write(key, &next.to_be_bytes(), KvCondition::Always, None)?;
        Ok(next)
    }

    fn record(&self, key: &str, change: KvChange, set: Option<(u64, u64)>) -> KvResult<()> {
        if !self.events {
            return Ok(());
        }
        let seq = next_seq(self.txn, EVENT_SEQ)?;
        let event = KvEvent {
            seq,
            store: self.id.clone(),
            key: key.to_owned(),
            change,
            version: set.map(|(version, _)| version),
            size: set.map(|(_, size)| size),
            at_ms: self.now,
        };
        let bytes = serde_json::to_vec(&event).map_err(db)?;
        self.txn
            .open_table(KV_EVENTS)
            .map_err(db)?
            .insert(seq, bytes.as_slice())
            .map_err(db)?;
        Ok(())
    }
}

fn next_seq(txn: &redb::WriteTransaction, row: &str) -> KvResult<u64> {
    let mut seqs = txn.open_table(SEQS).map_err(db)?;
    let next = seqs.get(row).map_err(db)?.map_or(0, |v| v.value()) + 1;
    seqs.insert(row, next).map_err(db)?;
    Ok(next)
}

fn expiry_of(ttl: Option<Duration>, now: u64) -> u64 {
    // At least 1 ms, so a TTL always expires rather than meaning "never".
    ttl.map_or(0, |ttl| now.saturating_add((ttl.as_millis() as u64).max(1)))
}

/// A write waiting for its group commit.
pub(crate) struct WriteJob {
    id: KvStoreId,
    op: Op,
    done: oneshot::Sender<KvResult<Done>>,
}

/// What a write does. Each refuses (a missing store, a condition that does not hold, a value
/// that is not a counter) before it changes anything, so a refusal leaves the shared
/// transaction as the writes before it left it.
pub(crate) enum Op {
    Set {
        key: String,
        value: Bytes,
        condition: KvCondition,
        ttl: Option<Duration>,
    },
    SetMany(Vec<(String, Bytes)>),
    Delete(String),
    DeleteMany(Vec<String>),
    Increment {
        key: String,
        delta: i64,
    },
}

/// What a write answers.
pub(crate) enum Done {
    Set(Option<u64>),
    Deleted(bool),
    Incremented(i64),
    Applied,
}

impl Op {
    fn apply(self, scope: &Scope<'_>) -> KvResult<Done> {
        match self {
            Op::Set {
                key,
                value,
                condition,
                ttl,
            } => {
                let expires = expiry_of(ttl, scope.now);
                scope
                    .write(&key, &value, condition, Some(expires))
                    .map(Done::Set)
            }
            Op::SetMany(entries) => {
                for (key, value) in &entries {
                    scope.write(key, value, KvCondition::Always, Some(0))?;
                }
                Ok(Done::Applied)
            }
            Op::Delete(key) => scope.remove(&key).map(Done::Deleted),
            Op::DeleteMany(keys) => {
                for key in &keys {
                    scope.remove(key)?;
                }
                Ok(Done::Applied)
            }
            Op::Increment { key, delta } => scope.increment(&key, delta).map(Done::Incremented),
        }
    }
}

/// Writes share commits: each is applied in turn inside one transaction (seeing the ones
/// before it, so a condition or an increment is decided against every earlier write), and
/// one commit makes them all durable before any is answered.
impl crate::group::Batch for WriteJob {
    type Answer = (oneshot::Sender<KvResult<Done>>, KvResult<Done>);

    fn group(inner: &Inner) -> &crate::group::GroupCommit<WriteJob> {
        &inner.kv_writes
    }

    fn commit(inner: &Inner, batch: Vec<WriteJob>) -> Vec<Self::Answer> {
        inner.commit_kv_writes(batch)
    }

    fn deliver((done, outcome): Self::Answer) {
        let _ = done.send(outcome);
    }
}

impl Inner {
    fn commit_kv_writes(
        &self,
        batch: Vec<WriteJob>,
    ) -> Vec<(oneshot::Sender<KvResult<Done>>, KvResult<Done>)> {
        let now = now_ms();
        let mut recorded = false;
        let batch = batch
            .into_iter()
            .map(|job| ((job.id, job.op), job.done))
            .collect();
        let (answers, committed) = crate::group::commit_in_turn(
            &self.db,
            batch,
            |txn, (id, op)| {
                let outcome = require_store(txn, &id).and_then(|events| {
                    recorded |= events;
                    op.apply(&Scope {
                        txn,
                        id: &id,
                        now,
                        events,
                    })
                });
                match outcome {
                    Err(KvError::Backend(error)) => Err(error.to_string()),
                    outcome => Ok(outcome),
                }
            },
            |error| Err(db(format!("commit a key-value write: {error}"))),
        );
        if committed && recorded {
            self.kv_events.notify_one();
        }
        answers
    }

    fn kv_read<T>(
        &self,
        id: &KvStoreId,
        work: impl FnOnce(&KvTable, u64) -> KvResult<T>,
    ) -> KvResult<T> {
        let txn = self.db.begin_read().map_err(db)?;
        let stores = txn.open_table(KV_STORES).map_err(db)?;
        if stores
            .get((id.app.as_str(), id.store.as_str()))
            .map_err(db)?
            .is_none()
        {
            return Err(KvError::NoSuchStore(id.clone()));
        }
        let kv = txn.open_table(KV).map_err(db)?;
        work(&kv, now_ms())
    }

    fn kv_get_many(&self, id: &KvStoreId, keys: &[String]) -> KvResult<Vec<Option<KvEntry>>> {
        self.kv_read(id, |kv, now| {
            keys.iter()
                .map(|key| {
                    check_entry(key, None)?;
                    let Some(bytes) = kv
                        .get((id.app.as_str(), id.store.as_str(), key.as_str()))
                        .map_err(db)?
                    else {
                        return Ok(None);
                    };
                    let row = Row::parse(bytes.value())?;
                    Ok(row.live(now).then(|| row.entry()))
                })
                .collect()
        })
    }

    fn kv_list(&self, id: &KvStoreId, cursor: Option<&str>, limit: usize) -> KvResult<KeyPage> {
        let (app, store) = (id.app.as_str(), id.store.as_str());
        self.kv_read(id, |kv, now| {
            let start = match cursor {
                Some(after) => Bound::Excluded((app, store, after)),
                None => Bound::Included((app, store, "")),
            };
            let range = kv
                .range::<(&str, &str, &str)>((start, Bound::Unbounded))
                .map_err(db)?;
            let mut page = KeyPage::default();
            for entry in range {
                let (row_key, bytes) = entry.map_err(db)?;
                let (a, s, key) = row_key.value();
                if (a, s) != (app, store) {
                    break;
                }
                if !Row::parse(bytes.value())?.live(now) {
                    continue;
                }
                if page.keys.len() == limit {
                    page.next = page.keys.last().cloned();
                    break;
                }
                page.keys.push(key.to_owned());
            }
            Ok(page)
        })
    }

    fn kv_delete_store(&self, id: &KvStoreId) -> KvResult<bool> {
        let txn = self.db.begin_write().map_err(db)?;
        let (app, store) = (id.app.as_str(), id.store.as_str());
        let existed = txn
            .open_table(KV_STORES)
            .map_err(db)?
            .remove((app, store))
            .map_err(db)?
            .is_some();
        txn.open_table(KV_WATCHED)
            .map_err(db)?
            .remove((app, store))
            .map_err(db)?;
        let mut keys = Vec::new();
        {
            let kv = txn.open_table(KV).map_err(db)?;
            for entry in kv
                .range::<(&str, &str, &str)>((app, store, "")..)
                .map_err(db)?
            {
                let (row_key, _) = entry.map_err(db)?;
                let (a, s, key) = row_key.value();
                if (a, s) != (app, store) {
                    break;
                }
                keys.push(key.to_owned());
            }
        }
        // A removed store's entries go without events.
        let scope = Scope {
            txn: &txn,
            id,
            now: 0,
            events: false,
        };
        for key in &keys {
            scope.remove(key)?;
        }
        txn.commit().map_err(db)?;
        Ok(existed)
    }

    fn kv_purge(&self, max: usize) -> KvResult<usize> {
        let txn = self.db.begin_write().map_err(db)?;
        let now = now_ms();
        let due: Vec<(String, String, String)> = {
            let expiry = txn.open_table(KV_EXPIRY).map_err(db)?;
            let mut due = Vec::new();
            for entry in expiry.iter().map_err(db)? {
                let (row_key, _) = entry.map_err(db)?;
                let (expires_ms, app, store, key) = row_key.value();
                if expires_ms > now || due.len() == max {
                    break;
                }
                due.push((app.to_owned(), store.to_owned(), key.to_owned()));
            }
            due
        };
        let mut recorded = false;
        for (app, store, key) in &due {
            let id = KvStoreId::new(app.as_str(), store.as_str());
            let events = watched(&txn, &id)?;
            recorded |= events;
            Scope {
                txn: &txn,
                id: &id,
                now,
                events,
            }
            .remove(key)?;
        }
        txn.commit().map_err(db)?;
        if recorded {
            self.kv_events.notify_one();
        }
        Ok(due.len())
    }
}

impl RedbStore {
    async fn kv<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> KvResult<T> + Send + 'static,
    ) -> KvResult<T> {
        self.on_blocking_pool(work).await.map_err(db)?
    }

    /// Apply `op` to the store `id` in the next group commit; its answer once durable.
    async fn kv_write(&self, id: &KvStoreId, op: Op) -> KvResult<Done> {
        let (done, wait) = oneshot::channel();
        let job = WriteJob {
            id: id.clone(),
            op,
            done,
        };
        crate::group::submit(&self.inner, job);
        wait.await
            .map_err(|_| db("the key-value write's commit was abandoned"))?
    }
}

/// An answer of another kind than its write's: cannot happen, each [`Op`] has its own.
fn mismatched() -> KvError {
    db("a key-value write was answered for another kind of write")
}

#[async_trait]
impl KvStore for RedbStore {
    async fn create_store(&self, id: &KvStoreId) -> KvResult<bool> {
        let id = id.clone();
        self.kv(move |inner| {
            let txn = inner.db.begin_write().map_err(db)?;
            let created = {
                let mut stores = txn.open_table(KV_STORES).map_err(db)?;
                let key = (id.app.as_str(), id.store.as_str());
                let created = stores.get(key).map_err(db)?.is_none();
                if created {
                    stores.insert(key, now_ms()).map_err(db)?;
                }
                created
            };
            txn.commit().map_err(db)?;
            Ok(created)
        })
        .await
    }

    async fn delete_store(&self, id: &KvStoreId) -> KvResult<bool> {
        let id = id.clone();
        self.kv(move |inner| inner.kv_delete_store(&id)).await
    }

    async fn stores(&self, app: &str) -> KvResult<Vec<String>> {
        let app = app.to_owned();
        self.kv(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            let stores = txn.open_table(KV_STORES).map_err(db)?;
            let mut names = Vec::new();
            for entry in stores
                .range::<(&str, &str)>((app.as_str(), "")..)
                .map_err(db)?
            {
                let (key, _) = entry.map_err(db)?;
                let (a, store) = key.value();
                if a != app {
                    break;
                }
                names.push(store.to_owned());
            }
            Ok(names)
        })
        .await
    }

    async fn get(&self, id: &KvStoreId, key: &str) -> KvResult<Option<KvEntry>> {
        let mut got = self.get_many(id, &[key.to_owned()]).await?;
        Ok(got.pop().flatten())
    }

    async fn get_many(&self, id: &KvStoreId, keys: &[String]) -> KvResult<Vec<Option<KvEntry>>> {
        let (id, keys) = (id.clone(), keys.to_vec());
        self.kv(move |inner| inner.kv_get_many(&id, &keys)).await
    }

    async fn set(
        &self,
        id: &KvStoreId,
        key: &str,
        value: Bytes,
        condition: KvCondition,
        ttl: Option<Duration>,
    ) -> KvResult<Option<u64>> {
        check_entry(key, Some(&value))?;
        let op = Op::Set {
            key: key.to_owned(),
            value,
            condition,
            ttl,
        };
        match self.kv_write(id, op).await? {
            Done::Set(version) => Ok(version),
            _ => Err(mismatched()),
        }
    }

    async fn set_many(&self, id: &KvStoreId, entries: Vec<(String, Bytes)>) -> KvResult<()> {
        for (key, value) in &entries {
            check_entry(key, Some(value))?;
        }
        self.kv_write(id, Op::SetMany(entries)).await.map(drop)
    }

    async fn delete(&self, id: &KvStoreId, key: &str) -> KvResult<bool> {
        check_entry(key, None)?;
        match self.kv_write(id, Op::Delete(key.to_owned())).await? {
            Done::Deleted(existed) => Ok(existed),
            _ => Err(mismatched()),
        }
    }

    async fn delete_many(&self, id: &KvStoreId, keys: &[String]) -> KvResult<()> {
        for key in keys {
            check_entry(key, None)?;
        }
        self.kv_write(id, Op::DeleteMany(keys.to_vec()))
            .await
            .map(drop)
    }

    async fn list_keys(
        &self,
        id: &KvStoreId,
        cursor: Option<&str>,
        limit: usize,
    ) -> KvResult<KeyPage> {
        let (id, cursor) = (id.clone(), cursor.map(str::to_owned));
        self.kv(move |inner| inner.kv_list(&id, cursor.as_deref(), limit.max(1)))
            .await
    }

    async fn increment(&self, id: &KvStoreId, key: &str, delta: i64) -> KvResult<i64> {
        check_entry(key, None)?;
        let op = Op::Increment {
            key: key.to_owned(),
            delta,
        };
        match self.kv_write(id, op).await? {
            Done::Incremented(value) => Ok(value),
            _ => Err(mismatched()),
        }
    }

    async fn purge_expired(&self, max: usize) -> KvResult<usize> {
        self.kv(move |inner| inner.kv_purge(max)).await
    }

    async fn set_events(&self, id: &KvStoreId, on: bool) -> KvResult<()> {
        let id = id.clone();
        self.kv(move |inner| {
            let txn = inner.db.begin_write().map_err(db)?;
            require_store(&txn, &id)?;
            if watched(&txn, &id)? == on {
                // Every deploy asks; only a change costs a commit.
                txn.abort().map_err(db)?;
                return Ok(());
            }
            {
                let mut watched = txn.open_table(KV_WATCHED).map_err(db)?;
                let key = (id.app.as_str(), id.store.as_str());
                if on {
                    watched.insert(key, ()).map_err(db)?;
                } else {
                    watched.remove(key).map_err(db)?;
                }
            }
            txn.commit().map_err(db)
        })
        .await
    }

    async fn pending_events(&self, max: usize) -> KvResult<Vec<KvEvent>> {
        self.kv(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            let events = txn.open_table(KV_EVENTS).map_err(db)?;
            let mut out = Vec::new();
            for entry in events.iter().map_err(db)?.take(max) {
                let (_, value) = entry.map_err(db)?;
                out.push(serde_json::from_slice(value.value()).map_err(db)?);
            }
            Ok(out)
        })
        .await
    }

    async fn settle_events(&self, through: u64) -> KvResult<()> {
        self.kv(move |inner| {
            let txn = inner.db.begin_write().map_err(db)?;
            txn.open_table(KV_EVENTS)
                .map_err(db)?
                .retain_in(..=through, |_, _| false)
                .map_err(db)?;
            txn.commit().map_err(db)
        })
        .await
    }

    async fn events_recorded(&self) {
        self.inner.kv_events.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let stores = crate::TempStores::default();
        nimbus_store::conformance::kv::run_all(|| stores.make()).await;
    }

    /// Entries, versions and expiries survive a reopen; versions keep increasing.
    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = KvStoreId::new("app", "s");
        let version = {
            let store = RedbStore::open(dir.path()).unwrap();
            store.create_store(&id).await.unwrap();
            store.increment(&id, "n", 3).await.unwrap();
            store
                .set(
                    &id,
                    "k",
                    Bytes::from_static(b"v"),
                    KvCondition::Always,
                    Some(Duration::from_secs(3600)),
                )
                .await
                .unwrap()
                .unwrap()
        };
        let store = RedbStore::open(dir.path()).unwrap();
        let entry = store.get(&id, "k").await.unwrap().unwrap();
        assert_eq!((entry.value.as_ref(), entry.version), (&b"v"[..], version));
        assert_eq!(store.increment(&id, "n", 1).await.unwrap(), 4);
        let next = store.get(&id, "n").await.unwrap().unwrap().version;
        assert!(next > version);
        assert_eq!(store.purge_expired(10).await.unwrap(), 0);
    }
}
