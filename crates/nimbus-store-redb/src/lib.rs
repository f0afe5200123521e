//! The embedded store: redb for the registry and records, plain files for artifacts.
//!
//! Layout of a data directory:
//! - `nimbus.redb`: tables `apps` (name → JSON [`AppRecord`]), `versions` ((app, number) →
//!   JSON [`VersionRecord`]), `records` ((app/function, last seq of the chunk) → JSON array of
//!   the records one batch wrote for that function) and `seqs` (app/function → last seq).
//!   Storing a batch as one chunk makes a record cost one serialization, not one B-tree insert.
//! - `artifacts/<sha256>.wasm`: written to a temporary file, fsynced, renamed, directory fsynced.
//! - `objects/blobs/<id>`: one file per stored object version, written under `objects/tmp/`,
//!   fsynced and renamed before the `objects` table ((bucket, key) → JSON metadata + blob id)
//!   points at it; `buckets`: name → JSON. See the `objects` module.
//!
//! - `queue_meta` / `queue_body`: (queue, message id) → message metadata (JSON, rewritten on
//!   retries) / body (written once); `invocations`, `idempotency`, `schedules`: key → JSON.
//!   The [`queue`] module's engine is their only writer and implements [`nimbus_store::Queue`].
//!
//! Crash safety: redb commits are atomic and durable (registry writes use the default, fully
//! durable commit); artifacts are written before the version that references them, so a crash
//! leaves at worst an unreferenced artifact. Records use eventual durability: a crash may lose
//! the last few records, never corrupt the registry.

use async_trait::async_trait;
use bytes::Bytes;
use nimbus_core::InvocationRecord;
use nimbus_store::{
    AccessKeyRecord, AppRecord, EventTable, KeyStore, NewVersion, RecordStore, Registry, Result,
    StoreError, TableOp, VersionRecord, is_sha256_hex, sha256_hex,
};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

mod admin;
mod apikeys;
mod auth;
mod group;
mod kv;
mod objects;
pub mod queue;
mod secrets;
mod tables;

pub use queue::QueueEngine;

const APPS: TableDefinition<&str, &[u8]> = TableDefinition::new("apps");
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
const RECORDS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("records");
pub(crate) const SEQS: TableDefinition<&str, u64> = TableDefinition::new("seqs");
/// Usage per (app, function, hour's start in ms): a JSON `Usage`.
const USAGE: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("usage");
const QUEUE_META: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_meta");
const QUEUE_BODY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_body");
const INVOCATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("invocations");
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
const SCHEDULES: TableDefinition<&str, &[u8]> = TableDefinition::new("schedules");
const CURSORS: TableDefinition<&str, &[u8]> = TableDefinition::new("cursors");
const ACCESS_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("access_keys");

fn event_table(table: EventTable) -> TableDefinition<'static, &'static str, &'static [u8]> {
    match table {
        EventTable::Invocations => INVOCATIONS,
        EventTable::Idempotency => IDEMPOTENCY,
        EventTable::Schedules => SCHEDULES,
        EventTable::Cursors => CURSORS,
    }
}

/// Records kept per function; older ones are dropped as new ones arrive.
pub const RECORDS_PER_FUNCTION: u64 = 1000;

/// The database file in the store's directory.
pub const DATABASE_FILE: &str = "nimbus.redb";
/// The directory of uploaded artifacts in the store's directory.
pub const ARTIFACTS_DIR: &str = "artifacts";
/// The directory of stored objects' bytes in the store's directory.
pub const OBJECTS_DIR: &str = "objects";

/// The embedded store. Cheap to clone (one shared database); every trait method runs its redb
/// transaction or file I/O on tokio's blocking pool.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

/// The database and the artifact directory, used synchronously.
pub(crate) struct Inner {
    db: Database,
    artifacts: PathBuf,
    /// `blobs/` (one file per stored object version) and `tmp/` (puts in progress).
    objects: PathBuf,
    /// Blobs that readers hold (see the `objects` module).
    pins: objects::Pins,
    /// Woken after a commit that recorded object events.
    object_events: tokio::sync::Notify,
    /// Woken after a commit that may have recorded key-value events.
    kv_events: tokio::sync::Notify,
    /// Single-part puts waiting for their group commit.
    puts: group::GroupCommit<objects::PutJob>,
    /// Key-value writes waiting for their group commit.
    kv_writes: group::GroupCommit<kv::WriteJob>,
    /// Table writes waiting for their group commit.
    table_writes: group::GroupCommit<tables::WriteJob>,
    /// Raised after a commit that recorded table changes.
    table_changes: tables::Signal,
}

fn backend(error: impl Into<nimbus_store::BoxError>) -> StoreError {
    StoreError::backend(error)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(backend)
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(backend)
}

impl RedbStore {
    /// Open (or create) the store in `dir`. Blocking: call it from `spawn_blocking` or before
    /// the runtime is busy.
    pub fn open(dir: &Path) -> Result<RedbStore> {
        Ok(RedbStore {
            inner: Arc::new(Inner::open(dir)?),
        })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Run `work` on the blocking pool; `Err` only if it panicked.
    pub(crate) async fn on_blocking_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> T + Send + 'static,
    ) -> std::result::Result<T, tokio::task::JoinError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner)).await
    }

    /// Run `work` on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.on_blocking_pool(work).await.map_err(backend)?
    }
}

impl Inner {
    fn open(dir: &Path) -> Result<Inner> {
        let artifacts = dir.join(ARTIFACTS_DIR);
        std::fs::create_dir_all(&artifacts).map_err(backend)?;
        let objects = dir.join(OBJECTS_DIR);
        std::fs::create_dir_all(objects.join("blobs")).map_err(backend)?;
        std::fs::create_dir_all(objects.join("tmp")).map_err(backend)?;
        let db = Database::create(dir.join(DATABASE_FILE)).map_err(backend)?;
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(APPS).map_err(backend)?;
            txn.open_table(VERSIONS).map_err(backend)?;
            txn.open_table(RECORDS).map_err(backend)?;
            txn.open_table(SEQS).map_err(backend)?;
            txn.open_table(QUEUE_META).map_err(backend)?;
            txn.open_table(QUEUE_BODY).map_err(backend)?;
            txn.open_table(INVOCATIONS).map_err(backend)?;
            txn.open_table(IDEMPOTENCY).map_err(backend)?;
            txn.open_table(SCHEDULES).map_err(backend)?;
            txn.open_table(CURSORS).map_err(backend)?;
            txn.open_table(ACCESS_KEYS).map_err(backend)?;
            txn.open_table(apikeys::API_KEYS).map_err(backend)?;
            txn.open_table(admin::ADMIN_TOKENS).map_err(backend)?;
            txn.open_table(admin::AUDIT).map_err(backend)?;
            txn.open_table(auth::USERS).map_err(backend)?;
            txn.open_table(auth::EMAILS).map_err(backend)?;
            txn.open_table(auth::SESSIONS).map_err(backend)?;
            txn.open_table(auth::USER_SESSIONS).map_err(backend)?;
            txn.open_table(auth::TOKENS).map_err(backend)?;
            txn.open_table(auth::SESSION_TOKENS).map_err(backend)?;
            txn.open_table(auth::ONE_TIME).map_err(backend)?;
            txn.open_table(auth::USER_ONE_TIME).map_err(backend)?;
            txn.open_table(auth::KEYS).map_err(backend)?;
            txn.open_table(objects::BUCKETS).map_err(backend)?;
            txn.open_table(objects::OBJECTS).map_err(backend)?;
            txn.open_table(objects::UPLOADS).map_err(backend)?;
            txn.open_table(objects::PARTS).map_err(backend)?;
            txn.open_table(objects::EVENTS).map_err(backend)?;
            txn.open_table(objects::INLINE).map_err(backend)?;
            txn.open_table(kv::KV_STORES).map_err(backend)?;
            txn.open_table(kv::KV).map_err(backend)?;
            txn.open_table(kv::KV_EXPIRY).map_err(backend)?;
            txn.open_table(kv::KV_WATCHED).map_err(backend)?;
            txn.open_table(kv::KV_EVENTS).map_err(backend)?;
            txn.open_table(tables::TABLES).map_err(backend)?;
            txn.open_table(tables::ITEMS).map_err(backend)?;
            txn.open_table(tables::CHANGES).map_err(backend)?;
            txn.open_table(secrets::SECRETS).map_err(backend)?;
            txn.open_table(secrets::SECRET_VERSIONS).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        let inner = Inner {
            db,
            artifacts,
            objects,
            pins: objects::Pins::default(),
            object_events: tokio::sync::Notify::new(),
            kv_events: tokio::sync::Notify::new(),
            puts: group::GroupCommit::default(),
            table_changes: tables::Signal::default(),
            kv_writes: group::GroupCommit::default(),
            table_writes: group::GroupCommit::default(),
        };
        inner.remove_orphaned_blobs()?;
        Ok(inner)
    }

    fn artifact_path(&self, digest: &str) -> Result<PathBuf> {
        if !is_sha256_hex(digest) {
            return Err(StoreError::ArtifactNotFound(digest.to_owned()));
        }
        Ok(self.artifacts.join(format!("{digest}.wasm")))
    }

    fn read_app(&self, name: &str) -> Result<AppRecord> {
        let txn = self.db.begin_read().map_err(backend)?;
        let apps = txn.open_table(APPS).map_err(backend)?;
        let value = apps
            .get(name)
            .map_err(backend)?
            .ok_or_else(|| StoreError::AppNotFound(name.to_owned()))?;
        from_json(value.value())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Inner {
    pub(crate) fn put_artifact(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let path = self.artifact_path(digest)?;
        let actual = sha256_hex(bytes);
        if actual != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.to_owned(),
                actual,
            });
        }
        if path.exists() {
            return Ok(());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(&self.artifacts).map_err(backend)?;
        tmp.write_all(bytes).map_err(backend)?;
        tmp.as_file().sync_all().map_err(backend)?;
        tmp.persist(&path).map_err(backend)?;
        std::fs::File::open(&self.artifacts)
            .and_then(|dir| dir.sync_all())
            .map_err(backend)?;
        Ok(())
    }

    pub(crate) fn get_artifact(&self, digest: &str) -> Result<Arc<[u8]>> {
        let path = self.artifact_path(digest)?;
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes.into()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::ArtifactNotFound(digest.to_owned()))
            }
            Err(error) => Err(backend(error)),
        }
    }

    pub(crate) fn has_artifact(&self, digest: &str) -> Result<bool> {
        Ok(is_sha256_hex(digest) && self.artifact_path(digest)?.exists())
    }

    pub(crate) fn deploy(&self, app: &str, version: NewVersion) -> Result<VersionRecord> {
        for digest in version.functions.values() {
            if !self.has_artifact(digest)? {
                return Err(StoreError::ArtifactNotFound(digest.clone()));
            }
        }
        let txn = self.db.begin_write().map_err(backend)?;
        let record = {
            let mut apps = txn.open_table(APPS).map_err(backend)?;
            let mut versions = txn.open_table(VERSIONS).map_err(backend)?;
            let mut record: AppRecord = match apps.get(app).map_err(backend)? {
                Some(value) => from_json(value.value())?,
                None => AppRecord {
                    name: app.to_owned(),
                    active: None,
                    history: Vec::new(),
                    latest: 0,
                },
            };
            let number = record.latest + 1;
            let stored = VersionRecord {
                app: app.to_owned(),
                number,
                digest: version.digest(),
                manifest: version.manifest,
                functions: version.functions,
                created_ms: now_ms(),
            };
            versions
                .insert((app, number), to_json(&stored)?.as_slice())
                .map_err(backend)?;
            record.latest = number;
            record.active = Some(number);
            record.history.push(number);
            apps.insert(app, to_json(&record)?.as_slice())
                .map_err(backend)?;
            stored
        };
        txn.commit().map_err(backend)?;
        Ok(record)
    }

    pub(crate) fn rollback(&self, app: &str) -> Result<VersionRecord> {
        let txn = self.db.begin_write().map_err(backend)?;
        let version = {
            let mut apps = txn.open_table(APPS).map_err(backend)?;
            let versions = txn.open_table(VERSIONS).map_err(backend)?;
            let mut record: AppRecord = match apps.get(app).map_err(backend)? {
                Some(value) => from_json(value.value())?,
                None => return Err(StoreError::AppNotFound(app.to_owned())),
            };
            if record.history.len() < 2 {
                return Err(StoreError::NoPreviousVersion(app.to_owned()));
            }
            record.history.pop();
            let previous = *record
                .history
                .last()
                .ok_or_else(|| StoreError::NoPreviousVersion(app.to_owned()))?;
            record.active = Some(previous);
            let version: VersionRecord = match versions.get((app, previous)).map_err(backend)? {
                Some(value) => from_json(value.value())?,
                None => return Err(backend(format!("version {previous} of {app} is missing"))),
            };
            apps.insert(app, to_json(&record)?.as_slice())
                .map_err(backend)?;
            version
        };
        txn.commit().map_err(backend)?;
        Ok(version)
    }

    pub(crate) fn remove_app(&self, app: &str) -> Result<()> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut apps = txn.open_table(APPS).map_err(backend)?;
            if apps.remove(app).map_err(backend)?.is_none() {
                return Err(StoreError::AppNotFound(app.to_owned()));
            }
            let mut versions = txn.open_table(VERSIONS).map_err(backend)?;
            versions
                .retain_in((app, 0)..=(app, u64::MAX), |_, _| false)
                .map_err(backend)?;
            let prefix = format!("{app}/");
            let mut seqs = txn.open_table(SEQS).map_err(backend)?;
            let keys: Vec<String> = seqs
                .iter()
                .map_err(backend)?
                .filter_map(|entry| entry.ok().map(|(k, _)| k.value().to_owned()))
                .filter(|k| k.starts_with(&prefix))
                .collect();
            let mut records = txn.open_table(RECORDS).map_err(backend)?;
            for key in keys {
                seqs.remove(key.as_str()).map_err(backend)?;
                records
                    .retain_in((key.as_str(), 0)..=(key.as_str(), u64::MAX), |_, _| false)
                    .map_err(backend)?;
            }
        }
        txn.commit().map_err(backend)
    }

    pub(crate) fn apps(&self) -> Result<Vec<AppRecord>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let apps = txn.open_table(APPS).map_err(backend)?;
        let mut out = Vec::new();
        for entry in apps.iter().map_err(backend)? {
            let (_, value) = entry.map_err(backend)?;
            out.push(from_json(value.value())?);
        }
        Ok(out)
    }

    pub(crate) fn app(&self, app: &str) -> Result<AppRecord> {
        self.read_app(app)
    }

    pub(crate) fn version(&self, app: &str, number: u64) -> Result<VersionRecord> {
        let txn = self.db.begin_read().map_err(backend)?;
        let versions = txn.open_table(VERSIONS).map_err(backend)?;
        let value = versions
            .get((app, number))
            .map_err(backend)?
            .ok_or_else(|| backend(format!("version {number} of {app} is missing")))?;
        from_json(value.value())
    }
}

/// One change to the queue tables; a batch of them commits atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EventOp {
    /// Store a message: its metadata and its body (written once).
    PutMessage {
        queue: String,
        id: u64,
        meta: Vec<u8>,
        body: Vec<u8>,
    },
    /// Replace a stored message's metadata (attempts, next visibility).
    PutMeta {
        queue: String,
        id: u64,
        meta: Vec<u8>,
    },
    /// Forget a message (acknowledged, moved, purged).
    DeleteMessage {
        queue: String,
        id: u64,
    },
    Table(TableOp),
}

/// The queue tables, as the engine reads and writes them. A commit is atomic; a `durable` one
/// is on disk when it returns, a non-durable one becomes durable with the next durable commit.
impl Inner {
    pub(crate) fn commit_events(&self, ops: &[EventOp], durable: bool) -> Result<()> {
        let mut txn = self.db.begin_write().map_err(backend)?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        {
            let mut metas = txn.open_table(QUEUE_META).map_err(backend)?;
            let mut bodies = txn.open_table(QUEUE_BODY).map_err(backend)?;
            for op in ops {
                match op {
                    EventOp::PutMessage {
                        queue,
                        id,
                        meta,
                        body,
                    } => {
                        metas
                            .insert((queue.as_str(), *id), meta.as_slice())
                            .map_err(backend)?;
                        bodies
                            .insert((queue.as_str(), *id), body.as_slice())
                            .map_err(backend)?;
                    }
                    EventOp::PutMeta { queue, id, meta } => {
                        metas
                            .insert((queue.as_str(), *id), meta.as_slice())
                            .map_err(backend)?;
                    }
                    EventOp::DeleteMessage { queue, id } => {
                        metas.remove((queue.as_str(), *id)).map_err(backend)?;
                        bodies.remove((queue.as_str(), *id)).map_err(backend)?;
                    }
                    EventOp::Table(TableOp::Put { table, key, value }) => {
                        txn.open_table(event_table(*table))
                            .map_err(backend)?
                            .insert(key.as_str(), value.as_slice())
                            .map_err(backend)?;
                    }
                    EventOp::Table(TableOp::Delete { table, key }) => {
                        txn.open_table(event_table(*table))
                            .map_err(backend)?
                            .remove(key.as_str())
                            .map_err(backend)?;
                    }
                }
            }
        }
        txn.commit().map_err(backend)
    }

    pub(crate) fn message_metas(&self) -> Result<Vec<(String, u64, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let metas = txn.open_table(QUEUE_META).map_err(backend)?;
        let mut out = Vec::new();
        for entry in metas.iter().map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            let (queue, id) = key.value();
            out.push((queue.to_owned(), id, value.value().to_vec()));
        }
        Ok(out)
    }

    pub(crate) fn message_body(&self, queue: &str, id: u64) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let bodies = txn.open_table(QUEUE_BODY).map_err(backend)?;
        Ok(bodies
            .get((queue, id))
            .map_err(backend)?
            .map(|v| v.value().to_vec()))
    }

    pub(crate) fn event_entry(&self, table: EventTable, key: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(event_table(table)).map_err(backend)?;
        Ok(table.get(key).map_err(backend)?.map(|v| v.value().to_vec()))
    }

    pub(crate) fn event_entries(
        &self,
        table: EventTable,
        prefix: &str,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = txn.open_table(event_table(table)).map_err(backend)?;
        let mut out = Vec::new();
        for entry in table.range(prefix..).map_err(backend)? {
            let (key, value) = entry.map_err(backend)?;
            if !key.value().starts_with(prefix) {
                break;
            }
            out.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(out)
    }
}

impl Inner {
    pub(crate) fn append_records(&self, batch: Vec<InvocationRecord>) -> Result<()> {
        // Group by function, keeping arrival order within each function.
        let mut groups: BTreeMap<String, Vec<InvocationRecord>> = BTreeMap::new();
        let mut usage: BTreeMap<(Arc<str>, Arc<str>, u64), nimbus_core::Usage> = BTreeMap::new();
        for record in &batch {
            let hour = record.start_ms - record.start_ms % nimbus_core::record::USAGE_HOUR_MS;
            usage
                .entry((record.app.clone(), record.function.clone(), hour))
                .or_default()
                .add(record);
        }
        for record in batch {
            groups
                .entry(format!("{}/{}", record.app, record.function))
                .or_default()
                .push(record);
        }
        let mut txn = self.db.begin_write().map_err(backend)?;
        txn.set_durability(Durability::Eventual);
        {
            let mut seqs = txn.open_table(SEQS).map_err(backend)?;
            let mut records = txn.open_table(RECORDS).map_err(backend)?;
            for (key, mut chunk) in groups {
                let mut seq = seqs
                    .get(key.as_str())
                    .map_err(backend)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                for record in &mut chunk {
                    seq += 1;
                    record.seq = seq;
                }
                // One chunk per function per batch, keyed by its last sequence number.
                records
                    .insert((key.as_str(), seq), to_json(&chunk)?.as_slice())
                    .map_err(backend)?;
                seqs.insert(key.as_str(), seq).map_err(backend)?;
                if seq > RECORDS_PER_FUNCTION {
                    let oldest_kept = seq - RECORDS_PER_FUNCTION + 1;
                    // Chunks that end before the oldest kept record go entirely.
                    records
                        .retain_in((key.as_str(), 0)..(key.as_str(), oldest_kept), |_, _| false)
                        .map_err(backend)?;
                }
            }
            let mut table = txn.open_table(USAGE).map_err(backend)?;
            for ((app, function, hour), added) in usage {
                let key = (&*app, &*function, hour);
                let mut total: nimbus_core::Usage = match table.get(key).map_err(backend)? {
                    Some(value) => from_json(value.value())?,
                    None => nimbus_core::Usage::default(),
                };
                total.merge(&added);
                table
                    .insert(key, to_json(&total)?.as_slice())
                    .map_err(backend)?;
            }
        }
        txn.commit().map_err(backend)
    }

    pub(crate) fn usage(
        &self,
        app: Option<&str>,
        since_ms: u64,
    ) -> Result<Vec<nimbus_core::UsageRow>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let table = match txn.open_table(USAGE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(backend(error)),
        };
        let mut out = Vec::new();
        let rows = match app {
            Some(app) => table.range((app, "", 0)..).map_err(backend)?,
            None => table.iter().map_err(backend)?,
        };
        for row in rows {
            let (key, value) = row.map_err(backend)?;
            let (row_app, function, hour_ms) = key.value();
            if app.is_some_and(|app| app != row_app) {
                break;
            }
            if hour_ms + nimbus_core::record::USAGE_HOUR_MS <= since_ms {
                continue;
            }
            out.push(nimbus_core::UsageRow {
                app: row_app.to_owned(),
                function: function.to_owned(),
                hour_ms,
                usage: from_json(value.value())?,
            });
        }
        Ok(out)
    }

    pub(crate) fn records(
        &self,
        app: &str,
        function: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>> {
        let key = format!("{app}/{function}");
        let txn = self.db.begin_read().map_err(backend)?;
        let seqs = txn.open_table(SEQS).map_err(backend)?;
        let last = seqs
            .get(key.as_str())
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0);
        let oldest_kept = last.saturating_sub(RECORDS_PER_FUNCTION) + 1;
        let first_wanted = after.saturating_add(1).max(oldest_kept);
        let records = txn.open_table(RECORDS).map_err(backend)?;
        let mut out = Vec::new();
        for entry in records
            .range((key.as_str(), first_wanted)..=(key.as_str(), u64::MAX))
            .map_err(backend)?
        {
            let (_, value) = entry.map_err(backend)?;
            let chunk: Vec<InvocationRecord> = from_json(value.value())?;
            for record in chunk {
                if record.seq >= first_wanted {
                    if out.len() == limit {
                        return Ok(out);
                    }
                    out.push(record);
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn last_seq(&self, app: &str, function: &str) -> Result<u64> {
        let key = format!("{app}/{function}");
        let txn = self.db.begin_read().map_err(backend)?;
        let seqs = txn.open_table(SEQS).map_err(backend)?;
        Ok(seqs
            .get(key.as_str())
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0))
    }
}

#[async_trait]
impl Registry for RedbStore {
    async fn put_artifact(&self, digest: &str, bytes: Bytes) -> Result<()> {
        let digest = digest.to_owned();
        self.run(move |inner| inner.put_artifact(&digest, &bytes))
            .await
    }

    async fn get_artifact(&self, digest: &str) -> Result<Arc<[u8]>> {
        let digest = digest.to_owned();
        self.run(move |inner| inner.get_artifact(&digest)).await
    }

    async fn has_artifact(&self, digest: &str) -> Result<bool> {
        let digest = digest.to_owned();
        self.run(move |inner| inner.has_artifact(&digest)).await
    }

    async fn deploy(&self, app: &str, version: NewVersion) -> Result<VersionRecord> {
        let app = app.to_owned();
        self.run(move |inner| inner.deploy(&app, version)).await
    }

    async fn rollback(&self, app: &str) -> Result<VersionRecord> {
        let app = app.to_owned();
        self.run(move |inner| inner.rollback(&app)).await
    }

    async fn remove_app(&self, app: &str) -> Result<()> {
        let app = app.to_owned();
        self.run(move |inner| inner.remove_app(&app)).await
    }

    async fn apps(&self) -> Result<Vec<AppRecord>> {
        self.run(|inner| inner.apps()).await
    }

    async fn app(&self, app: &str) -> Result<AppRecord> {
        let app = app.to_owned();
        self.run(move |inner| inner.app(&app)).await
    }

    async fn version(&self, app: &str, number: u64) -> Result<VersionRecord> {
        let app = app.to_owned();
        self.run(move |inner| inner.version(&app, number)).await
    }
}

#[async_trait]
impl RecordStore for RedbStore {
    async fn append_records(&self, records: Vec<InvocationRecord>) -> Result<()> {
        self.run(move |inner| inner.append_records(records)).await
    }

    async fn records(
        &self,
        app: &str,
        function: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>> {
        let (app, function) = (app.to_owned(), function.to_owned());
        self.run(move |inner| inner.records(&app, &function, after, limit))
            .await
    }

    async fn last_seq(&self, app: &str, function: &str) -> Result<u64> {
        let (app, function) = (app.to_owned(), function.to_owned());
        self.run(move |inner| inner.last_seq(&app, &function)).await
    }

    async fn usage(&self, app: Option<&str>, since_ms: u64) -> Result<Vec<nimbus_core::UsageRow>> {
        let app = app.map(str::to_owned);
        self.run(move |inner| inner.usage(app.as_deref(), since_ms))
            .await
    }
}

impl Inner {
    fn insert_key(&self, key: &AccessKeyRecord) -> Result<bool> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut keys = txn.open_table(ACCESS_KEYS).map_err(backend)?;
            if keys.get(key.id.as_str()).map_err(backend)?.is_some() {
                return Ok(false);
            }
            keys.insert(key.id.as_str(), to_json(key)?.as_slice())
                .map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(true)
    }

    fn key(&self, id: &str) -> Result<Option<AccessKeyRecord>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let keys = txn.open_table(ACCESS_KEYS).map_err(backend)?;
        let value = keys.get(id).map_err(backend)?;
        value.map(|value| from_json(value.value())).transpose()
    }

    fn keys(&self) -> Result<Vec<AccessKeyRecord>> {
        let txn = self.db.begin_read().map_err(backend)?;
        let keys = txn.open_table(ACCESS_KEYS).map_err(backend)?;
        let mut all = Vec::new();
        for entry in keys.iter().map_err(backend)? {
            let (_, value) = entry.map_err(backend)?;
            all.push(from_json(value.value())?);
        }
        Ok(all)
    }

    fn remove_key(&self, id: &str) -> Result<bool> {
        let txn = self.db.begin_write().map_err(backend)?;
        let removed = {
            let mut keys = txn.open_table(ACCESS_KEYS).map_err(backend)?;
            keys.remove(id).map_err(backend)?.is_some()
        };
        txn.commit().map_err(backend)?;
        Ok(removed)
    }

    fn reseal_key(&self, id: &str, expected: &[u8], sealed: Vec<u8>) -> Result<bool> {
        let txn = self.db.begin_write().map_err(backend)?;
        {
            let mut keys = txn.open_table(ACCESS_KEYS).map_err(backend)?;
            let current: Option<AccessKeyRecord> = keys
                .get(id)
                .map_err(backend)?
                .map(|value| from_json(value.value()))
                .transpose()?;
            let Some(mut record) = current.filter(|r| r.sealed_secret == expected) else {
                return Ok(false);
            };
            record.sealed_secret = sealed;
            keys.insert(id, to_json(&record)?.as_slice())
                .map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(true)
    }
}

#[async_trait]
impl KeyStore for RedbStore {
    async fn insert_key(&self, key: AccessKeyRecord) -> Result<bool> {
        self.run(move |inner| inner.insert_key(&key)).await
    }

    async fn key(&self, id: &str) -> Result<Option<AccessKeyRecord>> {
        let id = id.to_owned();
        self.run(move |inner| inner.key(&id)).await
    }

    async fn keys(&self) -> Result<Vec<AccessKeyRecord>> {
        self.run(|inner| inner.keys()).await
    }

    async fn remove_key(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.run(move |inner| inner.remove_key(&id)).await
    }

    async fn reseal_key(&self, id: &str, expected: &[u8], sealed: Vec<u8>) -> Result<bool> {
        let (id, expected) = (id.to_owned(), expected.to_vec());
        self.run(move |inner| inner.reseal_key(&id, &expected, sealed))
            .await
    }
}

/// Fresh stores in temporary directories that live as long as the factory.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TempStores(std::sync::Mutex<Vec<tempfile::TempDir>>);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
impl TempStores {
    pub(crate) fn make(&self) -> RedbStore {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        self.0.lock().unwrap().push(dir);
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conformance() {
        let stores = TempStores::default();
        nimbus_store::conformance::run_all(|| stores.make()).await;
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            let digest = sha256_hex(b"x");
            store
                .put_artifact(&digest, Bytes::from_static(b"x"))
                .await
                .unwrap();
            store
                .deploy(
                    "a",
                    NewVersion {
                        manifest: "m".into(),
                        functions: [("f".to_owned(), digest)].into(),
                    },
                )
                .await
                .unwrap();
        }
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(store.app("a").await.unwrap().active, Some(1));
    }

    #[tokio::test]
    async fn records_are_pruned_to_the_retention_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let record = |i: u64| InvocationRecord {
            seq: 0,
            request_id: format!("r{i}").into(),
            app: "a".into(),
            function: "f".into(),
            version: 1,
            start_ms: 0,
            start_us: 0,
            duration_us: 0,
            cold: false,
            trigger: nimbus_core::Trigger::Http,
            memory_bytes: 128 << 20,
            outcome: nimbus_core::Outcome::Ok,
            status: 200,
            logs: String::new(),
        };
        for chunk in (0..RECORDS_PER_FUNCTION + 250)
            .collect::<Vec<_>>()
            .chunks(100)
        {
            store
                .append_records(chunk.iter().map(|&i| record(i)).collect())
                .await
                .unwrap();
        }
        let kept = store.records("a", "f", 0, usize::MAX).await.unwrap();
        assert_eq!(kept.len() as u64, RECORDS_PER_FUNCTION);
        assert_eq!(kept[0].seq, 251);
        assert_eq!(
            &*kept.last().unwrap().request_id,
            format!("r{}", RECORDS_PER_FUNCTION + 249).as_str()
        );
    }
}
