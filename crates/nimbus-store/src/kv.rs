//! Key-value stores: what `wasi:keyvalue`, Spin's key-value API and the local API's `kv`
//! calls read and write.
//!
//! A store belongs to one app and holds keys (strings of at most [`MAX_KEY_BYTES`]) with byte
//! values (at most [`MAX_VALUE_BYTES`]), each optionally expiring. Every write is durable when
//! it returns. Each entry carries a version that changes with every write to it, which is what
//! compare-and-swap compares. Counters ([`KvStore::increment`]) are 8-byte big-endian signed
//! integers, as Spin's embedded store keeps them, so a component sees the same bytes on both.
//!
//! # Change events
//!
//! A store may emit its changes ([`KvStore::set_events`]): then every set, delete and expiry
//! records a [`KvEvent`] in the same commit as the change (a transactional outbox, as objects
//! have), so no change is acknowledged without its event and no event is recorded for a change
//! that did not happen. Events wait, in commit order, until a relay settles them
//! ([`KvStore::pending_events`], [`KvStore::settle_events`]); sequence numbers increase and are
//! never reused.

use crate::queue::BoxError;
use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// One app's store.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct KvStoreId {
    pub app: String,
    pub store: String,
}

impl KvStoreId {
    pub fn new(app: impl Into<String>, store: impl Into<String>) -> KvStoreId {
        KvStoreId {
            app: app.into(),
            store: store.into(),
        }
    }
}

impl std::fmt::Display for KvStoreId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.app, self.store)
    }
}

/// A key's value and its version (different after every write to the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Bytes,
    pub version: u64,
}

/// What a write requires of the key's current entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvCondition {
    /// Write whatever is there.
    Always,
    /// Write only if the key has no (unexpired) entry.
    Absent,
    /// Write only if the key's entry is still at this version.
    Version(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("no key-value store {0}")]
    NoSuchStore(KvStoreId),
    #[error("a key of {size} bytes is too long: keys are at most {MAX_KEY_BYTES} bytes")]
    KeyTooLong { size: usize },
    #[error("a value of {size} bytes is too large: values are at most {MAX_VALUE_BYTES} bytes")]
    ValueTooLarge { size: usize },
    #[error("the value of {key:?} is {size} bytes, not a counter (an 8-byte big-endian integer)")]
    NotACounter { key: String, size: usize },
    #[error("incrementing {key:?} would overflow a 64-bit integer")]
    Overflow { key: String },
    #[error("key-value storage failure")]
    Backend(#[source] BoxError),
}

impl KvError {
    pub fn backend(error: impl Into<BoxError>) -> KvError {
        KvError::Backend(error.into())
    }
}

pub type KvResult<T> = Result<T, KvError>;

/// Refuse a key or value past the limits, before anything is written.
pub fn check_entry(key: &str, value: Option<&[u8]>) -> KvResult<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::KeyTooLong { size: key.len() });
    }
    if let Some(value) = value
        && value.len() > MAX_VALUE_BYTES
    {
        return Err(KvError::ValueTooLarge { size: value.len() });
    }
    Ok(())
}

/// A counter's value from its bytes.
pub fn counter_of(key: &str, value: &[u8]) -> KvResult<i64> {
    let bytes: [u8; 8] = value.try_into().map_err(|_| KvError::NotACounter {
        key: key.to_owned(),
        size: value.len(),
    })?;
    Ok(i64::from_be_bytes(bytes))
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvChange {
    /// Written (set, swap, increment, a batch's set).
    Set,
    /// Deleted by a caller.
    Delete,
    /// Removed because its time-to-live passed.
    Expire,
}

impl KvChange {
    pub fn as_str(self) -> &'static str {
        match self {
            KvChange::Set => "set",
            KvChange::Delete => "delete",
            KvChange::Expire => "expire",
        }
    }
}

/// One change of a store that emits events, waiting to be relayed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KvEvent {
    /// Increases with every event the store records; never reused.
    pub seq: u64,
    pub store: KvStoreId,
    pub key: String,
    pub change: KvChange,
    /// After a set: the entry's new version and its value's size in bytes.
    pub version: Option<u64>,
    pub size: Option<u64>,
    pub at_ms: u64,
}

/// A page of keys and, if there are more, the cursor for the next page (the last key given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    pub next: Option<String>,
}

#[async_trait]
pub trait KvStore: Send + Sync {
    /// Create the store if it does not exist; whether it was created.
    async fn create_store(&self, id: &KvStoreId) -> KvResult<bool>;
    /// Remove the store and every entry in it; whether it existed.
    async fn delete_store(&self, id: &KvStoreId) -> KvResult<bool>;
    /// The app's stores, by name.
    async fn stores(&self, app: &str) -> KvResult<Vec<String>>;
    /// Whether the store records a [`KvEvent`] for each change from now on.
    async fn set_events(&self, id: &KvStoreId, on: bool) -> KvResult<()>;

    /// The key's entry, if it has one that has not expired.
    async fn get(&self, id: &KvStoreId, key: &str) -> KvResult<Option<KvEntry>>;
    /// Entries of `keys`, in their order, read at one instant.
    async fn get_many(&self, id: &KvStoreId, keys: &[String]) -> KvResult<Vec<Option<KvEntry>>>;
    /// Write `value` under `key` if `condition` holds, expiring after `ttl` if given; the new
    /// version, or `None` when the condition did not hold (nothing written).
    async fn set(
        &self,
        id: &KvStoreId,
        key: &str,
        value: Bytes,
        condition: KvCondition,
        ttl: Option<Duration>,
    ) -> KvResult<Option<u64>>;
    /// Write every entry, all or none.
    async fn set_many(&self, id: &KvStoreId, entries: Vec<(String, Bytes)>) -> KvResult<()>;
    /// Remove the key's entry; whether it had one.
    async fn delete(&self, id: &KvStoreId, key: &str) -> KvResult<bool>;
    /// Remove every one of `keys`, all or none.
    async fn delete_many(&self, id: &KvStoreId, keys: &[String]) -> KvResult<()>;
    /// Up to `limit` keys in byte order, after `cursor` (exclusive) if given.
    async fn list_keys(
        &self,
        id: &KvStoreId,
        cursor: Option<&str>,
        limit: usize,
    ) -> KvResult<KeyPage>;
    /// Add `delta` to the key's counter (absent counts as 0) atomically; the new value. The
    /// counter keeps its expiry, if it had one.
    async fn increment(&self, id: &KvStoreId, key: &str, delta: i64) -> KvResult<i64>;
    /// Remove up to `max` entries whose time has passed; how many were removed. Reads never
    /// see expired entries whether or not this has run.
    async fn purge_expired(&self, max: usize) -> KvResult<usize>;

    /// Up to `max` recorded events not yet settled, by sequence number.
    async fn pending_events(&self, max: usize) -> KvResult<Vec<KvEvent>>;
    /// Forget events up to and including sequence number `through`.
    async fn settle_events(&self, through: u64) -> KvResult<()>;
    /// Returns once an event may have been recorded since the last return (at once if one
    /// was). For one relay: waiters share one wake-up.
    async fn events_recorded(&self);
}
