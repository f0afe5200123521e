//! The embedded [`TableStore`]: items are rows of `items`, keyed by (table number, partition,
//! sort); `tables` maps (app, table) to the table's number, counters and meta; `changes` holds
//! change records by (table number, sequence). A table's number comes from a sequence and is
//! never reused, so a table created again under an old name sees none of the old one's rows.
//!
//! A write is one redb transaction: the current items are read, the caller decides, the
//! changes, counters and records are written, and the commit is durable before it returns.
//! redb has one writer at a time, so a decision cannot be overtaken by a concurrent write.

use crate::{Inner, RedbStore, SEQS, now_ms};
use async_trait::async_trait;
use bytes::Bytes;
use nimbus_store::tables::{
    Change, ChangeRecord, Decide, ItemKey, ItemPage, PageLimit, SortRange, TableError, TableId,
    TableInfo, TableMeta, TableResult, TableStore,
};
use redb::{ReadableTable, TableDefinition};
use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};

/// (app, table) → number (8) | created ms (8) | item count (8) | size (8) | stream (1) | spec.
pub(crate) const TABLES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tables");
/// An item's row key: (table number, partition, sort).
type RowKey = (u64, &'static [u8], &'static [u8]);

/// (table number, partition, sort) → item.
pub(crate) const ITEMS: TableDefinition<RowKey, &[u8]> = TableDefinition::new("table_items");
/// (table number, sequence) → encoded [`ChangeRecord`] (without its sequence).
pub(crate) const CHANGES: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("table_changes");
/// The `seqs` rows numbering tables and change records.
const TABLE_SEQ: &str = "#tables";
const CHANGE_SEQ: &str = "#table-changes";

const HEADER: usize = 33;

fn db(error: impl Into<nimbus_store::BoxError>) -> TableError {
    TableError::backend(error)
}

/// A `tables` row.
#[derive(Debug, Clone)]
struct TableRow {
    number: u64,
    created_ms: u64,
    item_count: u64,
    size_bytes: u64,
    meta: TableMeta,
}

impl TableRow {
    fn parse(bytes: &[u8]) -> TableResult<TableRow> {
        let number = |range: std::ops::Range<usize>| {
            bytes
                .get(range)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| db("a table row is shorter than its header"))
        };
        Ok(TableRow {
            number: number(0..8)?,
            created_ms: number(8..16)?,
            item_count: number(16..24)?,
            size_bytes: number(24..32)?,
            meta: TableMeta {
                stream: bytes.get(32).copied().unwrap_or(0) == 1,
                spec: Bytes::copy_from_slice(bytes.get(HEADER..).unwrap_or_default()),
            },
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut row = Vec::with_capacity(HEADER + self.meta.spec.len());
        for n in [
            self.number,
            self.created_ms,
            self.item_count,
            self.size_bytes,
        ] {
            row.extend_from_slice(&n.to_be_bytes());
        }
        row.push(u8::from(self.meta.stream));
        row.extend_from_slice(&self.meta.spec);
        row
    }

    fn info(&self) -> TableInfo {
        TableInfo {
            meta: self.meta.clone(),
            created_ms: self.created_ms,
            item_count: self.item_count,
            size_bytes: self.size_bytes,
        }
    }
}

fn put_part(out: &mut Vec<u8>, part: Option<&[u8]>) {
    match part {
        Some(bytes) => {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

fn take_part<'a>(bytes: &mut &'a [u8]) -> TableResult<Option<&'a [u8]>> {
    let truncated = || db("a change record is truncated");
    let (len, rest) = bytes.split_at_checked(4).ok_or_else(truncated)?;
    let len = u32::from_be_bytes(len.try_into().map_err(|_| truncated())?);
    if len == u32::MAX {
        *bytes = rest;
        return Ok(None);
    }
    let (part, rest) = rest.split_at_checked(len as usize).ok_or_else(truncated)?;
    *bytes = rest;
    Ok(Some(part))
}

fn encode_change(
    at_ms: u64,
    expired: bool,
    key: &ItemKey,
    old: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        9 + 16
            + key.partition.len()
            + key.sort.len()
            + old.map_or(0, <[u8]>::len)
            + new.map_or(0, <[u8]>::len),
    );
    out.extend_from_slice(&at_ms.to_be_bytes());
    out.push(u8::from(expired));
    put_part(&mut out, Some(&key.partition));
    put_part(&mut out, Some(&key.sort));
    put_part(&mut out, old);
    put_part(&mut out, new);
    out
}

fn decode_change(sequence: u64, bytes: &[u8]) -> TableResult<ChangeRecord> {
    let (at, rest) = bytes
        .split_at_checked(8)
        .ok_or_else(|| db("a change record is truncated"))?;
    let at_ms = u64::from_be_bytes(at.try_into().map_err(db)?);
    let (flag, mut rest) = rest
        .split_first()
        .ok_or_else(|| db("a change record is truncated"))?;
    let partition = take_part(&mut rest)?.unwrap_or_default().to_vec();
    let sort = take_part(&mut rest)?.unwrap_or_default().to_vec();
    let old = take_part(&mut rest)?.map(Bytes::copy_from_slice);
    let new = take_part(&mut rest)?.map(Bytes::copy_from_slice);
    Ok(ChangeRecord {
        sequence,
        at_ms,
        key: ItemKey { partition, sort },
        old,
        new,
        expired: *flag == 1,
    })
}

fn next_seq(txn: &redb::WriteTransaction, name: &str) -> TableResult<u64> {
    let mut seqs = txn.open_table(SEQS).map_err(db)?;
    let next = seqs.get(name).map_err(db)?.map_or(0, |v| v.value()) + 1;
    seqs.insert(name, next).map_err(db)?;
    Ok(next)
}

/// The `seqs` row holding the latest trimmed change record of table `number`.
fn trimmed_row(number: u64) -> String {
    format!("#table-trimmed/{number}")
}

fn table_row(
    tables: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    id: &TableId,
) -> TableResult<TableRow> {
    match tables
        .get((id.app.as_str(), id.table.as_str()))
        .map_err(db)?
    {
        Some(bytes) => TableRow::parse(bytes.value()),
        None => Err(TableError::NoSuchTable(id.clone())),
    }
}

/// Whether a page that holds `count` items of `bytes` in all is full.
fn full(limit: PageLimit, count: usize, bytes: usize) -> bool {
    count >= limit.items.max(1) || bytes >= limit.bytes
}

/// A write waiting for its group commit.
/// A count of events and a wake-up for whoever waits for it to grow.
#[derive(Default)]
pub(crate) struct Signal {
    count: AtomicU64,
    raised: tokio::sync::Notify,
}

impl Signal {
    pub(crate) fn raise(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.raised.notify_waiters();
    }

    /// The count, once it exceeds `seen`.
    pub(crate) async fn after(&self, seen: u64) -> u64 {
        loop {
            // Registered before the count is read, so a raise in between is not missed.
            let raised = self.raised.notified();
            tokio::pin!(raised);
            raised.as_mut().enable();
            let count = self.count.load(Ordering::Acquire);
            if count > seen {
                return count;
            }
            raised.await;
        }
    }
}

pub(crate) struct WriteJob {
    keys: Vec<(TableId, ItemKey)>,
    decide: Decide,
    done: tokio::sync::oneshot::Sender<TableResult<()>>,
}

/// Writes share commits: each is decided in turn inside one transaction (seeing the ones
/// before it), and one commit makes them all durable.
impl crate::group::Batch for WriteJob {
    type Answer = (
        tokio::sync::oneshot::Sender<TableResult<()>>,
        TableResult<()>,
    );

    fn group(inner: &Inner) -> &crate::group::GroupCommit<WriteJob> {
        &inner.table_writes
    }

    fn commit(inner: &Inner, batch: Vec<WriteJob>) -> Vec<Self::Answer> {
        inner.commit_table_writes(batch)
    }

    fn deliver((done, outcome): Self::Answer) {
        let _ = done.send(outcome);
    }
}

impl Inner {
    fn commit_table_writes(
        &self,
        batch: Vec<WriteJob>,
    ) -> Vec<(
        tokio::sync::oneshot::Sender<TableResult<()>>,
        TableResult<()>,
    )> {
        let now = now_ms();
        let mut recorded = false;
        let batch = batch
            .into_iter()
            .map(|job| ((job.keys, job.decide), job.done))
            .collect();
        let (answers, committed) = crate::group::commit_in_turn(
            &self.db,
            batch,
            |txn, (keys, decide)| match write_in(txn, keys, decide, now) {
                Err(TableError::Backend(error)) => Err(error.to_string()),
                outcome => {
                    recorded |= outcome.as_ref().is_ok_and(|r| *r);
                    Ok(outcome.map(drop))
                }
            },
            |error| Err(db(format!("commit a table write: {error}"))),
        );
        if committed && recorded {
            self.table_changes.raise();
        }
        answers
    }
}

/// Decide and apply one write inside `txn`. A refusal (or a missing table) changes nothing;
/// only a storage failure leaves the transaction unusable.
fn write_in(
    txn: &redb::WriteTransaction,
    keys: Vec<(TableId, ItemKey)>,
    decide: Decide,
    now: u64,
) -> TableResult<bool> {
    let mut recorded = false;
    let mut seen = HashSet::with_capacity(keys.len());
    for (id, key) in &keys {
        if !seen.insert((id, key)) {
            return Err(TableError::DuplicateKey(id.clone()));
        }
    }
    {
        {
            let mut tables = txn.open_table(TABLES).map_err(db)?;
            let mut rows: BTreeMap<&TableId, TableRow> = BTreeMap::new();
            for (id, _) in &keys {
                if !rows.contains_key(id) {
                    rows.insert(id, table_row(&tables, id)?);
                }
            }
            let mut items = txn.open_table(ITEMS).map_err(db)?;
            let mut current = Vec::with_capacity(keys.len());
            for (id, key) in &keys {
                let number = rows.get(id).map_or(0, |row| row.number);
                let item = items
                    .get((number, key.partition.as_slice(), key.sort.as_slice()))
                    .map_err(db)?
                    .map(|v| Bytes::copy_from_slice(v.value()));
                current.push(item);
            }
            // A decision that panics refuses its own write, not the whole group's.
            let decided =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decide(current.clone())))
                    .unwrap_or_else(|_| Err("the write's decision panicked".into()));
            let changes = decided.map_err(TableError::Refused)?;
            if changes.len() != keys.len() {
                return Err(db("a write's decision must answer for every item"));
            }
            let mut records = txn.open_table(CHANGES).map_err(db)?;
            for (((id, key), old), change) in keys.iter().zip(current).zip(changes) {
                let Some(row) = rows.get_mut(id) else {
                    continue;
                };
                let row_key = (row.number, key.partition.as_slice(), key.sort.as_slice());
                let expired = change == Change::Expire;
                let new = match change {
                    Change::Keep => continue,
                    Change::Put(item) => {
                        items.insert(row_key, item.as_ref()).map_err(db)?;
                        Some(item)
                    }
                    Change::Delete | Change::Expire => {
                        if old.is_none() {
                            continue;
                        }
                        items.remove(row_key).map_err(db)?;
                        None
                    }
                };
                let size = |item: &Option<Bytes>| item.as_ref().map_or(0, |b| b.len() as u64);
                row.item_count = (row.item_count + u64::from(new.is_some()))
                    .saturating_sub(u64::from(old.is_some()));
                row.size_bytes = (row.size_bytes + size(&new)).saturating_sub(size(&old));
                if row.meta.stream {
                    let sequence = next_seq(txn, CHANGE_SEQ)?;
                    let record = encode_change(now, expired, key, old.as_deref(), new.as_deref());
                    records
                        .insert((row.number, sequence), record.as_slice())
                        .map_err(db)?;
                    recorded = true;
                }
            }
            for (id, row) in rows {
                tables
                    .insert(
                        (id.app.as_str(), id.table.as_str()),
                        row.encode().as_slice(),
                    )
                    .map_err(db)?;
            }
        }
    }
    Ok(recorded)
}

impl Inner {
    fn table_query(
        &self,
        id: &TableId,
        partition: &[u8],
        range: &SortRange,
        forward: bool,
        start_after: Option<&[u8]>,
        limit: PageLimit,
    ) -> TableResult<ItemPage> {
        let txn = self.db.begin_read().map_err(db)?;
        let number = table_row(&txn.open_table(TABLES).map_err(db)?, id)?.number;
        let items = txn.open_table(ITEMS).map_err(db)?;
        fn bound<'a>(
            number: u64,
            partition: &'a [u8],
            b: &'a Bound<Vec<u8>>,
        ) -> Bound<(u64, &'a [u8], &'a [u8])> {
            match b {
                Bound::Included(s) => Bound::Included((number, partition, s.as_slice())),
                Bound::Excluded(s) => Bound::Excluded((number, partition, s.as_slice())),
                Bound::Unbounded => Bound::Unbounded,
            }
        }
        let (mut start, mut end) = (
            bound(number, partition, &range.start),
            bound(number, partition, &range.end),
        );
        // A partition's rows run from (number, partition, "") to the next partition.
        // `partition` followed by a zero byte is the least partition after it.
        let next_partition = [partition, &[0][..]].concat();
        if matches!(start, Bound::Unbounded) {
            start = Bound::Included((number, partition, &[][..]));
        }
        if matches!(end, Bound::Unbounded) {
            end = Bound::Excluded((number, next_partition.as_slice(), &[][..]));
        }
        if let Some(after) = start_after {
            if forward {
                start = Bound::Excluded((number, partition, after));
            } else {
                end = Bound::Excluded((number, partition, after));
            }
        }
        let rows = items
            .range::<(u64, &[u8], &[u8])>((start, end))
            .map_err(db)?;
        let mut page = ItemPage::default();
        let mut bytes = 0;
        type Entry<'a> = Result<
            (
                redb::AccessGuard<'a, RowKey>,
                redb::AccessGuard<'a, &'static [u8]>,
            ),
            redb::StorageError,
        >;
        let mut take = |entry: Entry<'_>| -> TableResult<bool> {
            let (key, value) = entry.map_err(db)?;
            let (n, p, s) = key.value();
            if n != number || p != partition {
                return Ok(true);
            }
            if full(limit, page.items.len(), bytes) {
                page.more = true;
                return Ok(true);
            }
            bytes += value.value().len();
            page.items.push((
                ItemKey {
                    partition: p.to_vec(),
                    sort: s.to_vec(),
                },
                Bytes::copy_from_slice(value.value()),
            ));
            Ok(false)
        };
        if forward {
            for entry in rows {
                if take(entry)? {
                    break;
                }
            }
        } else {
            for entry in rows.rev() {
                if take(entry)? {
                    break;
                }
            }
        }
        Ok(page)
    }

    fn table_scan(
        &self,
        id: &TableId,
        start_after: Option<&ItemKey>,
        limit: PageLimit,
    ) -> TableResult<ItemPage> {
        let txn = self.db.begin_read().map_err(db)?;
        let number = table_row(&txn.open_table(TABLES).map_err(db)?, id)?.number;
        let items = txn.open_table(ITEMS).map_err(db)?;
        let start = match start_after {
            Some(key) => Bound::Excluded((number, key.partition.as_slice(), key.sort.as_slice())),
            None => Bound::Included((number, &[][..], &[][..])),
        };
        let end = Bound::Excluded((number + 1, &[][..], &[][..]));
        let mut page = ItemPage::default();
        let mut bytes = 0;
        for entry in items
            .range::<(u64, &[u8], &[u8])>((start, end))
            .map_err(db)?
        {
            let (key, value) = entry.map_err(db)?;
            if full(limit, page.items.len(), bytes) {
                page.more = true;
                break;
            }
            let (_, p, s) = key.value();
            bytes += value.value().len();
            page.items.push((
                ItemKey {
                    partition: p.to_vec(),
                    sort: s.to_vec(),
                },
                Bytes::copy_from_slice(value.value()),
            ));
        }
        Ok(page)
    }

    fn table_delete(&self, id: &TableId) -> TableResult<bool> {
        let txn = self.db.begin_write().map_err(db)?;
        let existed = {
            let mut tables = txn.open_table(TABLES).map_err(db)?;
            let removed = tables
                .remove((id.app.as_str(), id.table.as_str()))
                .map_err(db)?
                .map(|row| TableRow::parse(row.value()))
                .transpose()?;
            if let Some(row) = &removed {
                let number = row.number;
                txn.open_table(ITEMS)
                    .map_err(db)?
                    .retain_in::<(u64, &[u8], &[u8]), _>(
                        (number, &[][..], &[][..])..(number + 1, &[][..], &[][..]),
                        |_, _| false,
                    )
                    .map_err(db)?;
                txn.open_table(CHANGES)
                    .map_err(db)?
                    .retain_in::<(u64, u64), _>((number, 0)..(number + 1, 0), |_, _| false)
                    .map_err(db)?;
                txn.open_table(SEQS)
                    .map_err(db)?
                    .remove(trimmed_row(number).as_str())
                    .map_err(db)?;
            }
            removed.is_some()
        };
        txn.commit().map_err(db)?;
        Ok(existed)
    }
}

#[async_trait]
impl TableStore for RedbStore {
    async fn create_table(&self, id: &TableId, meta: TableMeta) -> TableResult<bool> {
        let id = id.clone();
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_write().map_err(db)?;
            let created = {
                let mut tables = txn.open_table(TABLES).map_err(db)?;
                let key = (id.app.as_str(), id.table.as_str());
                let created = tables.get(key).map_err(db)?.is_none();
                if created {
                    let row = TableRow {
                        number: next_seq(&txn, TABLE_SEQ)?,
                        created_ms: now_ms(),
                        item_count: 0,
                        size_bytes: 0,
                        meta,
                    };
                    tables.insert(key, row.encode().as_slice()).map_err(db)?;
                }
                created
            };
            txn.commit().map_err(db)?;
            Ok(created)
        })
        .await
        .map_err(db)?
    }

    async fn update_table(&self, id: &TableId, meta: TableMeta) -> TableResult<()> {
        let id = id.clone();
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_write().map_err(db)?;
            {
                let mut tables = txn.open_table(TABLES).map_err(db)?;
                let mut row = table_row(&tables, &id)?;
                row.meta = meta;
                tables
                    .insert(
                        (id.app.as_str(), id.table.as_str()),
                        row.encode().as_slice(),
                    )
                    .map_err(db)?;
            }
            txn.commit().map_err(db)?;
            Ok(())
        })
        .await
        .map_err(db)?
    }

    async fn delete_table(&self, id: &TableId) -> TableResult<bool> {
        let id = id.clone();
        self.on_blocking_pool(move |inner| inner.table_delete(&id))
            .await
            .map_err(db)?
    }

    async fn table(&self, id: &TableId) -> TableResult<Option<TableInfo>> {
        let id = id.clone();
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            match table_row(&txn.open_table(TABLES).map_err(db)?, &id) {
                Ok(row) => Ok(Some(row.info())),
                Err(TableError::NoSuchTable(_)) => Ok(None),
                Err(error) => Err(error),
            }
        })
        .await
        .map_err(db)?
    }

    async fn tables(&self, app: &str) -> TableResult<Vec<String>> {
        let app = app.to_owned();
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            let tables = txn.open_table(TABLES).map_err(db)?;
            let mut names = Vec::new();
            for entry in tables
                .range::<(&str, &str)>((app.as_str(), "")..)
                .map_err(db)?
            {
                let (key, _) = entry.map_err(db)?;
                let (a, table) = key.value();
                if a != app {
                    break;
                }
                names.push(table.to_owned());
            }
            Ok(names)
        })
        .await
        .map_err(db)?
    }

    async fn all_tables(&self) -> TableResult<Vec<TableId>> {
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            let tables = txn.open_table(TABLES).map_err(db)?;
            let mut ids = Vec::new();
            for entry in tables.iter().map_err(db)? {
                let (key, _) = entry.map_err(db)?;
                let (app, table) = key.value();
                ids.push(TableId::new(app, table));
            }
            Ok(ids)
        })
        .await
        .map_err(db)?
    }

    async fn get(&self, keys: &[(TableId, ItemKey)]) -> TableResult<Vec<Option<Bytes>>> {
        let keys = keys.to_vec();
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            let tables = txn.open_table(TABLES).map_err(db)?;
            let items = txn.open_table(ITEMS).map_err(db)?;
            let mut numbers = BTreeMap::new();
            keys.iter()
                .map(|(id, key)| {
                    let number = match numbers.get(id) {
                        Some(number) => *number,
                        None => {
                            let number = table_row(&tables, id)?.number;
                            numbers.insert(id.clone(), number);
                            number
                        }
                    };
                    Ok(items
                        .get((number, key.partition.as_slice(), key.sort.as_slice()))
                        .map_err(db)?
                        .map(|v| Bytes::copy_from_slice(v.value())))
                })
                .collect()
        })
        .await
        .map_err(db)?
    }

    async fn write(&self, keys: Vec<(TableId, ItemKey)>, decide: Decide) -> TableResult<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        crate::group::submit(&self.inner, WriteJob { keys, decide, done });
        wait.await
            .map_err(|_| db("the table write's commit was abandoned"))?
    }

    async fn query(
        &self,
        id: &TableId,
        partition: &[u8],
        range: SortRange,
        forward: bool,
        start_after: Option<&[u8]>,
        limit: PageLimit,
    ) -> TableResult<ItemPage> {
        let (id, partition, start_after) = (
            id.clone(),
            partition.to_vec(),
            start_after.map(<[u8]>::to_vec),
        );
        self.on_blocking_pool(move |inner| {
            inner.table_query(
                &id,
                &partition,
                &range,
                forward,
                start_after.as_deref(),
                limit,
            )
        })
        .await
        .map_err(db)?
    }

    async fn scan(
        &self,
        id: &TableId,
        start_after: Option<&ItemKey>,
        limit: PageLimit,
    ) -> TableResult<ItemPage> {
        let (id, start_after) = (id.clone(), start_after.cloned());
        self.on_blocking_pool(move |inner| inner.table_scan(&id, start_after.as_ref(), limit))
            .await
            .map_err(db)?
    }

    async fn changes(
        &self,
        id: &TableId,
        after: Option<u64>,
        limit: usize,
    ) -> TableResult<Vec<ChangeRecord>> {
        let id = id.clone();
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            let number = table_row(&txn.open_table(TABLES).map_err(db)?, &id)?.number;
            let changes = txn.open_table(CHANGES).map_err(db)?;
            let start = match after {
                Some(after) => Bound::Excluded((number, after)),
                None => Bound::Included((number, 0)),
            };
            let mut records = Vec::new();
            for entry in changes
                .range::<(u64, u64)>((start, Bound::Excluded((number + 1, 0))))
                .map_err(db)?
            {
                if records.len() == limit {
                    break;
                }
                let (key, value) = entry.map_err(db)?;
                records.push(decode_change(key.value().1, value.value())?);
            }
            Ok(records)
        })
        .await
        .map_err(db)?
    }

    async fn last_change(&self, id: &TableId) -> TableResult<Option<u64>> {
        let id = id.clone();
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            let number = table_row(&txn.open_table(TABLES).map_err(db)?, &id)?.number;
            let changes = txn.open_table(CHANGES).map_err(db)?;
            let last = changes
                .range::<(u64, u64)>((number, 0)..(number + 1, 0))
                .map_err(db)?
                .next_back()
                .transpose()
                .map_err(db)?;
            Ok(last.map(|(key, _)| key.value().1))
        })
        .await
        .map_err(db)?
    }

    async fn changes_recorded(&self, seen: u64) -> u64 {
        self.inner.table_changes.after(seen).await
    }

    async fn trimmed_through(&self, id: &TableId) -> TableResult<u64> {
        let id = id.clone();
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            let number = table_row(&txn.open_table(TABLES).map_err(db)?, &id)?.number;
            let seqs = txn.open_table(SEQS).map_err(db)?;
            let through = seqs.get(trimmed_row(number).as_str()).map_err(db)?;
            Ok(through.map_or(0, |v| v.value()))
        })
        .await
        .map_err(db)?
    }

    async fn trim_changes(&self, id: &TableId, before_ms: u64) -> TableResult<usize> {
        let id = id.clone();
        self.on_blocking_pool(move |inner| {
            let txn = inner.db.begin_write().map_err(db)?;
            let mut trimmed = 0;
            {
                let number = table_row(&txn.open_table(TABLES).map_err(db)?, &id)?.number;
                let mut changes = txn.open_table(CHANGES).map_err(db)?;
                let mut old = Vec::new();
                for entry in changes
                    .range::<(u64, u64)>((number, 0)..(number + 1, 0))
                    .map_err(db)?
                {
                    let (key, value) = entry.map_err(db)?;
                    let at = value
                        .value()
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_be_bytes);
                    if at >= before_ms {
                        break;
                    }
                    old.push(key.value());
                }
                if let Some(&(_, through)) = old.last() {
                    txn.open_table(SEQS)
                        .map_err(db)?
                        .insert(trimmed_row(number).as_str(), through)
                        .map_err(db)?;
                }
                for key in old {
                    changes.remove(key).map_err(db)?;
                    trimmed += 1;
                }
            }
            txn.commit().map_err(db)?;
            Ok(trimmed)
        })
        .await
        .map_err(db)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let stores = crate::TempStores::default();
        nimbus_store::conformance::tables::run_all(|| stores.make()).await;
    }

    /// Items, counters and records survive a reopen, and table numbers are not reused.
    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = TableId::new("app", "t");
        let meta = TableMeta {
            spec: Bytes::from_static(b"{}"),
            stream: true,
        };
        let key = ItemKey {
            partition: b"p".to_vec(),
            sort: vec![],
        };
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store.create_table(&id, meta.clone()).await.unwrap();
            store
                .write(
                    vec![(id.clone(), key.clone())],
                    Box::new(|_| Ok(vec![Change::Put(Bytes::from_static(b"item"))])),
                )
                .await
                .unwrap();
        }
        let store = RedbStore::open(dir.path()).unwrap();
        let got = store.get(&[(id.clone(), key.clone())]).await.unwrap();
        assert_eq!(got, [Some(Bytes::from_static(b"item"))]);
        let info = store.table(&id).await.unwrap().unwrap();
        assert_eq!((info.item_count, info.size_bytes), (1, 4));
        assert_eq!(store.changes(&id, None, 10).await.unwrap().len(), 1);
        assert!(store.delete_table(&id).await.unwrap());
        assert!(store.create_table(&id, meta).await.unwrap());
        assert_eq!(store.get(&[(id.clone(), key)]).await.unwrap(), [None]);
        assert!(store.changes(&id, None, 10).await.unwrap().is_empty());
    }
}
