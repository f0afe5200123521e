//! Tables: what the DynamoDB-compatible service reads and writes.
//!
//! The store knows tables, items and change records as bytes; what an item means (attribute
//! values, key schemas, expressions) is the service's. An item lives under an [`ItemKey`] — the
//! encoded partition key and the encoded sort key (empty when the table has none) — and items of
//! one partition are kept in the byte order of their sort keys, which the service makes the
//! order its users expect.
//!
//! Writes are decided inside the store's transaction: [`TableStore::write`] reads the current
//! items, hands them to the caller's [`Decide`], and applies what it answers, all at one
//! instant, so a conditional write or a transaction over several items is atomic against every
//! concurrent writer. Every write is durable when it returns. A table with changes recorded
//! ([`TableMeta::stream`]) gets one [`ChangeRecord`] per changed item in the same commit as the
//! change — never one without the other — numbered in commit order.

use crate::queue::BoxError;
use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Bound;

/// One app's table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId {
    pub app: String,
    pub table: String,
}

impl TableId {
    pub fn new(app: impl Into<String>, table: impl Into<String>) -> TableId {
        TableId {
            app: app.into(),
            table: table.into(),
        }
    }
}

impl std::fmt::Display for TableId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app, self.table)
    }
}

/// Where an item lives: its encoded partition key and encoded sort key (empty for none).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    pub partition: Vec<u8>,
    pub sort: Vec<u8>,
}

/// A table's description as the service keeps it, and whether its changes are recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// The service's own description of the table (key schema, settings), opaque here.
    pub spec: Bytes,
    /// Record a [`ChangeRecord`] for every change.
    pub stream: bool,
}

/// A table's meta and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    pub meta: TableMeta,
    /// When the table was created, in ms since the epoch.
    pub created_ms: u64,
    pub item_count: u64,
    /// The sum of the stored items' sizes.
    pub size_bytes: u64,
}

/// What a [`Decide`] answers for one of the items it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Leave the item as it is.
    Keep,
    /// Store this item in its place.
    Put(Bytes),
    /// Remove the item.
    Delete,
    /// Remove the item because it expired: as `Delete`, recorded as the service's removal
    /// ([`ChangeRecord::expired`]).
    Expire,
}

/// The caller's decision, taken inside the write's transaction: given the current items of the
/// write's keys (in their order), the change to make to each, or a refusal that aborts the
/// whole write (a condition that failed) and is handed back as [`TableError::Refused`].
pub type Decide =
    Box<dyn FnOnce(Vec<Option<Bytes>>) -> Result<Vec<Change>, BoxError> + Send + 'static>;

/// One recorded change of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// Increases with every record of the table, in commit order; never 0, so that followers
    /// can say "after 0" for "from the first record".
    pub sequence: u64,
    /// When the change was committed, in ms since the epoch.
    pub at_ms: u64,
    pub key: ItemKey,
    pub old: Option<Bytes>,
    pub new: Option<Bytes>,
    /// The item was removed because it expired, not by a caller.
    pub expired: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("no table {0}")]
    NoSuchTable(TableId),
    /// The write's [`Decide`] refused; nothing was written.
    #[error("the write was refused")]
    Refused(#[source] BoxError),
    #[error("a write must name each item once; {0} is named twice")]
    DuplicateKey(TableId),
    #[error("table storage failure")]
    Backend(#[source] BoxError),
}

impl TableError {
    pub fn backend(error: impl Into<BoxError>) -> TableError {
        TableError::Backend(error.into())
    }
}

pub type TableResult<T> = Result<T, TableError>;

/// A page of items and whether the range has more after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemPage {
    pub items: Vec<(ItemKey, Bytes)>,
    /// The range holds more items than the page.
    pub more: bool,
}

/// How far a [`TableStore::query`] reads within a partition, by sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl SortRange {
    pub fn all() -> SortRange {
        SortRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    pub fn contains(&self, sort: &[u8]) -> bool {
        let after_start = match &self.start {
            Bound::Included(s) => sort >= s.as_slice(),
            Bound::Excluded(s) => sort > s.as_slice(),
            Bound::Unbounded => true,
        };
        let before_end = match &self.end {
            Bound::Included(e) => sort <= e.as_slice(),
            Bound::Excluded(e) => sort < e.as_slice(),
            Bound::Unbounded => true,
        };
        after_start && before_end
    }
}

/// A page's size: at most `items` items, and no more once their sizes reach `bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    pub items: usize,
    pub bytes: usize,
}

#[async_trait]
pub trait TableStore: Send + Sync {
    /// Create the table if it does not exist; whether it was created.
    async fn create_table(&self, id: &TableId, meta: TableMeta) -> TableResult<bool>;
    /// Replace the table's meta (a stream turned on or off, settings changed).
    async fn update_table(&self, id: &TableId, meta: TableMeta) -> TableResult<()>;
    /// Remove the table, its items and its records; whether it existed.
    async fn delete_table(&self, id: &TableId) -> TableResult<bool>;
    /// The table, if it exists.
    async fn table(&self, id: &TableId) -> TableResult<Option<TableInfo>>;
    /// The app's tables, by name.
    async fn tables(&self, app: &str) -> TableResult<Vec<String>>;
    /// Every table of every app, for background work (expiry, record retention).
    async fn all_tables(&self) -> TableResult<Vec<TableId>>;

    /// Items of `keys`, in their order, read at one instant (keys may name several tables).
    async fn get(&self, keys: &[(TableId, ItemKey)]) -> TableResult<Vec<Option<Bytes>>>;
    /// Decide and apply a change to each of `keys` in one atomic, durable commit.
    async fn write(&self, keys: Vec<(TableId, ItemKey)>, decide: Decide) -> TableResult<()>;
    /// Items of one partition within `range`, in sort-key order (reversed unless `forward`),
    /// after `start_after` (exclusive, a sort key) if given.
    async fn query(
        &self,
        id: &TableId,
        partition: &[u8],
        range: SortRange,
        forward: bool,
        start_after: Option<&[u8]>,
        limit: PageLimit,
    ) -> TableResult<ItemPage>;
    /// Every item in key order, after `start_after` (exclusive) if given.
    async fn scan(
        &self,
        id: &TableId,
        start_after: Option<&ItemKey>,
        limit: PageLimit,
    ) -> TableResult<ItemPage>;

    /// Up to `limit` change records with a sequence after `after` (all, if `None`).
    async fn changes(
        &self,
        id: &TableId,
        after: Option<u64>,
        limit: usize,
    ) -> TableResult<Vec<ChangeRecord>>;
    /// The sequence of the table's latest change record, if it keeps one.
    async fn last_change(&self, id: &TableId) -> TableResult<Option<u64>>;
    /// Forget the table's change records committed before `before_ms`; how many went.
    async fn trim_changes(&self, id: &TableId, before_ms: u64) -> TableResult<usize>;
    /// The sequence of the latest change record trimmed from the table (0 if none was): a
    /// reader positioned before it has missed records.
    async fn trimmed_through(&self, id: &TableId) -> TableResult<u64>;
    /// How many commits have recorded changes (of any table) since the store opened, once
    /// that count exceeds `seen` — at once if it already does. For followers of the change
    /// records: read, then wait with the count the previous wait answered (0 at first).
    async fn changes_recorded(&self, seen: u64) -> u64;
}
