//! The embedded [`ObjectStore`]: object bytes in files, their metadata in redb.
//!
//! A put streams the body into `objects/tmp/<id>` (hashing it as it goes), fsyncs it and renames
//! it to `objects/blobs/<id>`; then its commit fsyncs the directory and, in one redb
//! transaction, checks the precondition and points `(bucket, key)` at the new blob. Puts that
//! wait for a commit share the next one (group commit: one directory fsync and one redb commit
//! for all of them), so concurrent puts do not queue behind each other's fsyncs. A crash before that commit leaves
//! an unreferenced blob or temporary file, removed at the next open; after it, the new object is
//! whole. Multipart parts are blobs written the same way, recorded per upload; completing an
//! upload is one transaction that points the key at the listed parts' blobs, in order (no bytes
//! are copied), and forgets the upload.
//!
//! Objects of at most [`INLINE_MAX`] bytes skip the file: their bytes are a row of `inline`,
//! written by the commit that points the key at them, so a batch of small puts costs one redb
//! commit and no file fsyncs, and a reader gets the bytes in the same read transaction as the
//! row (nothing to pin). Their rows are removed by the transaction that replaces or deletes them.
//!
//! Replaced blobs are unlinked after the commit, unless a reader holds them: a single-blob
//! object's reader has its file open (Linux keeps an unlinked file's data while it is open); a
//! multipart object's reader opens its parts one after another, so it pins their blobs first
//! and their unlinking waits until it is done. Either way a reader finishes the version it
//! began.
//!
//! Change events are rows of `object_events`, inserted by the very transaction that changes
//! the object (numbered from a counter in `seqs`, so numbers survive settling every event).

use crate::{Inner, RedbStore, SEQS, backend, from_json, now_ms, to_json};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use nimbus_store::objects::{MAX_PART_NUMBER, MIN_PART_BYTES, check_key, multipart_etag};
use nimbus_store::{
    BucketInfo, ByteRange, ByteStream, Change, Created, Listing, NewObject, NewPart,
    NotificationRule, ObjectError, ObjectEvent, ObjectInfo, ObjectResult, ObjectStore, PartInfo,
    PutCondition, StoreError, UploadInfo,
};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

pub(crate) const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
pub(crate) const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");
/// (bucket, upload id) → [`UploadInfo`].
pub(crate) const UPLOADS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("uploads");
/// (bucket, upload id, part number) → [`StoredPart`].
pub(crate) const PARTS: TableDefinition<(&str, &str, u32), &[u8]> = TableDefinition::new("parts");
/// Sequence number → [`ObjectEvent`], until settled.
pub(crate) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("object_events");
/// Blob id → the bytes of a small object kept inline (see [`INLINE_MAX`]).
pub(crate) const INLINE: TableDefinition<&str, &[u8]> = TableDefinition::new("inline");
/// The largest object whose bytes are kept in redb rather than in a file of their own.
pub const INLINE_MAX: usize = 64 << 10;
/// The `seqs` row counting object events (not a function's name: those hold a `/`).
const EVENT_SEQ: &str = "#object-events";

/// Bytes read from a blob per chunk.
const READ_CHUNK: usize = 64 << 10;

/// One blob of an object's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Segment {
    blob: String,
    size: u64,
}

/// An object's row: what clients see, and which blobs hold its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    info: ObjectInfo,
    /// The one blob of a single-part object (empty for a multipart one).
    blob: String,
    /// Whether that blob is a row of [`INLINE`] rather than a file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    inline: bool,
    /// A multipart object's parts, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<Segment>,
}

impl Stored {
    fn segments(&self) -> Vec<Segment> {
        if self.segments.is_empty() {
            vec![Segment {
                blob: self.blob.clone(),
                size: self.info.size,
            }]
        } else {
            self.segments.clone()
        }
    }

    fn blobs(&self) -> Vec<String> {
        self.segments().into_iter().map(|s| s.blob).collect()
    }

    /// Let go of this version's bytes inside `txn`, which replaces or removes it: an inline
    /// row goes with the transaction; the files to unlink once it commits are returned.
    fn release(&self, txn: &redb::WriteTransaction) -> ObjectResult<Vec<String>> {
        if self.inline {
            txn.open_table(INLINE)
                .map_err(db)?
                .remove(self.blob.as_str())
                .map_err(db)?;
            return Ok(Vec::new());
        }
        Ok(self.blobs())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredPart {
    info: PartInfo,
    blob: String,
}

/// Blobs readers hold, and replaced blobs waiting for their readers to finish.
#[derive(Default)]
pub(crate) struct Pins {
    held: Mutex<(HashMap<String, usize>, HashSet<String>)>,
}

/// A single-part put whose blob is written, waiting for its commit.
pub(crate) struct PutJob {
    bucket: String,
    stored: Stored,
    /// The bytes of an inline object (`stored.inline`).
    bytes: Bytes,
    condition: PutCondition,
    origin: Created,
    done: tokio::sync::oneshot::Sender<ObjectResult<()>>,
}

/// Single-part puts share commits (one directory fsync, one redb commit).
impl crate::group::Batch for PutJob {
    type Answer = Answer;

    fn group(inner: &Inner) -> &crate::group::GroupCommit<PutJob> {
        &inner.puts
    }

    fn commit(inner: &Inner, batch: Vec<PutJob>) -> Vec<Answer> {
        inner.commit_puts(batch)
    }

    fn deliver((done, outcome): Answer) {
        let _ = done.send(outcome);
    }
}

/// A put's answer, sent once its commit is decided.
type Answer = (
    tokio::sync::oneshot::Sender<ObjectResult<()>>,
    ObjectResult<()>,
);

fn store_error(error: StoreError) -> ObjectError {
    ObjectError::backend(error)
}

fn io_error(error: std::io::Error) -> ObjectError {
    ObjectError::backend(error)
}

fn db(error: impl Into<nimbus_store::BoxError>) -> ObjectError {
    ObjectError::backend(error)
}

impl Inner {
    fn blob_path(&self, blob: &str) -> PathBuf {
        self.objects.join("blobs").join(blob)
    }

    fn tmp_path(&self, blob: &str) -> PathBuf {
        self.objects.join("tmp").join(blob)
    }

    /// Remove puts that never committed: temporary files, and blobs no object or part points
    /// at.
    pub(crate) fn remove_orphaned_blobs(&self) -> nimbus_store::Result<()> {
        for entry in std::fs::read_dir(self.objects.join("tmp")).map_err(backend)? {
            let _ = std::fs::remove_file(entry.map_err(backend)?.path());
        }
        let txn = self.db.begin_read().map_err(backend)?;
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        let mut referenced = HashSet::new();
        for entry in objects.iter().map_err(backend)? {
            let (_, value) = entry.map_err(backend)?;
            referenced.extend(from_json::<Stored>(value.value())?.blobs());
        }
        let parts = txn.open_table(PARTS).map_err(backend)?;
        for entry in parts.iter().map_err(backend)? {
            let (_, value) = entry.map_err(backend)?;
            referenced.insert(from_json::<StoredPart>(value.value())?.blob);
        }
        let mut removed = 0usize;
        for entry in std::fs::read_dir(self.objects.join("blobs")).map_err(backend)? {
            let path = entry.map_err(backend)?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if !referenced.contains(name) && std::fs::remove_file(&path).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(removed, "object blobs of uncommitted puts removed");
        }
        Ok(())
    }

    /// Unlink `blobs` now, or when the last reader holding each lets go.
    fn discard(&self, blobs: impl IntoIterator<Item = String>) {
        let mut now = Vec::new();
        {
            let mut held = self.pins.held.lock().unwrap_or_else(|p| p.into_inner());
            let (counts, doomed) = &mut *held;
            for blob in blobs {
                if blob.is_empty() {
                    continue;
                }
                if counts.contains_key(&blob) {
                    doomed.insert(blob);
                } else {
                    now.push(blob);
                }
            }
        }
        for blob in now {
            let path = self.blob_path(&blob);
            if let Err(error) = std::fs::remove_file(&path)
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(%error, path = %path.display(), "a replaced object's blob was not removed; the next start removes it");
            }
        }
    }

    fn pin(&self, blobs: &[String]) {
        let mut held = self.pins.held.lock().unwrap_or_else(|p| p.into_inner());
        for blob in blobs {
            *held.0.entry(blob.clone()).or_default() += 1;
        }
    }

    fn unpin(&self, blobs: &[String]) {
        let mut free = Vec::new();
        {
            let mut held = self.pins.held.lock().unwrap_or_else(|p| p.into_inner());
            let (counts, doomed) = &mut *held;
            for blob in blobs {
                if let Some(count) = counts.get_mut(blob) {
                    *count -= 1;
                    if *count == 0 {
                        counts.remove(blob);
                        if doomed.remove(blob) {
                            free.push(blob.clone());
                        }
                    }
                }
            }
        }
        self.discard(free);
    }

    fn read_bucket(&self, bucket: &str) -> ObjectResult<BucketInfo> {
        let txn = self.db.begin_read().map_err(db)?;
        let buckets = txn.open_table(BUCKETS).map_err(db)?;
        let value = buckets
            .get(bucket)
            .map_err(db)?
            .ok_or_else(|| ObjectError::NoSuchBucket(bucket.to_owned()))?;
        from_json(value.value()).map_err(store_error)
    }

    fn read_object(&self, bucket: &str, key: &str) -> ObjectResult<Stored> {
        self.read_object_bytes(bucket, key, None)
            .map(|(stored, _)| stored)
    }

    /// An object's row and, if it is inline, the bytes of `range` (all of them when `None`),
    /// read in one transaction.
    fn read_object_bytes(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> ObjectResult<(Stored, Option<Bytes>)> {
        self.read_bucket(bucket)?;
        let txn = self.db.begin_read().map_err(db)?;
        let objects = txn.open_table(OBJECTS).map_err(db)?;
        let value =
            objects
                .get((bucket, key))
                .map_err(db)?
                .ok_or_else(|| ObjectError::NoSuchKey {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                })?;
        let mut stored: Stored = from_json(value.value()).map_err(store_error)?;
        stored.info.parts = stored.segments.iter().map(|s| s.size).collect();
        if !stored.inline {
            return Ok((stored, None));
        }
        let size = stored.info.size;
        let bytes = match range.map(|r| r.resolve(size, &[])) {
            None => 0..size,
            Some(Some(bytes)) => bytes,
            Some(None) => return Err(ObjectError::InvalidRange { size }),
        };
        let inline = txn.open_table(INLINE).map_err(db)?;
        let value = inline
            .get(stored.blob.as_str())
            .map_err(db)?
            .ok_or_else(|| ObjectError::backend("an inline object's bytes are missing"))?;
        let (start, end) = (bytes.start as usize, bytes.end as usize);
        let bytes = value
            .value()
            .get(start..end)
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| ObjectError::backend("an inline object's bytes are short"))?;
        Ok((stored, Some(bytes)))
    }

    fn create_bucket(&self, bucket: &str, app: Option<&str>) -> ObjectResult<BucketInfo> {
        let txn = self.db.begin_write().map_err(db)?;
        let info = {
            let mut buckets = txn.open_table(BUCKETS).map_err(db)?;
            if let Some(existing) = buckets.get(bucket).map_err(db)? {
                let existing: BucketInfo = from_json(existing.value()).map_err(store_error)?;
                return Err(ObjectError::BucketExists {
                    bucket: bucket.to_owned(),
                    app: existing.app,
                });
            }
            let info = BucketInfo {
                name: bucket.to_owned(),
                app: app.map(str::to_owned),
                created_ms: now_ms(),
                notifications: Vec::new(),
            };
            buckets
                .insert(bucket, to_json(&info).map_err(store_error)?.as_slice())
                .map_err(db)?;
            info
        };
        txn.commit().map_err(db)?;
        Ok(info)
    }

    /// Delete an empty bucket; uploads still in progress in it are aborted.
    fn delete_bucket(&self, bucket: &str) -> ObjectResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        let discarded = {
            let objects = txn.open_table(OBJECTS).map_err(db)?;
            let first = objects
                .range((bucket, "")..)
                .map_err(db)?
                .next()
                .transpose()
                .map_err(db)?;
            if first.is_some_and(|(k, _)| k.value().0 == bucket) {
                return Err(ObjectError::BucketNotEmpty(bucket.to_owned()));
            }
            let mut buckets = txn.open_table(BUCKETS).map_err(db)?;
            if buckets.remove(bucket).map_err(db)?.is_none() {
                return Err(ObjectError::NoSuchBucket(bucket.to_owned()));
            }
            let mut uploads = txn.open_table(UPLOADS).map_err(db)?;
            let ids: Vec<String> = uploads
                .range((bucket, "")..)
                .map_err(db)?
                .map_while(|entry| {
                    let (k, _) = entry.ok()?;
                    let (b, id) = k.value();
                    (b == bucket).then(|| id.to_owned())
                })
                .collect();
            let mut discarded = Vec::new();
            for id in ids {
                uploads.remove((bucket, id.as_str())).map_err(db)?;
                discarded.extend(remove_parts(&txn, bucket, &id)?);
            }
            discarded
        };
        txn.commit().map_err(db)?;
        self.discard(discarded);
        Ok(())
    }

    fn buckets(&self) -> ObjectResult<Vec<BucketInfo>> {
        let txn = self.db.begin_read().map_err(db)?;
        let buckets = txn.open_table(BUCKETS).map_err(db)?;
        let mut out = Vec::new();
        for entry in buckets.iter().map_err(db)? {
            let (_, value) = entry.map_err(db)?;
            out.push(from_json(value.value()).map_err(store_error)?);
        }
        Ok(out)
    }

    /// Point `(bucket, key)` at `stored` inside `txn` if `condition` holds, recording the
    /// change's events; the blobs it replaced, and whether events were recorded.
    fn put_row(
        txn: &redb::WriteTransaction,
        bucket: &str,
        stored: &Stored,
        bytes: &[u8],
        condition: &PutCondition,
        origin: Created,
    ) -> ObjectResult<(Vec<String>, bool)> {
        let info = require_bucket(txn, bucket)?;
        let mut objects = txn.open_table(OBJECTS).map_err(db)?;
        let key = stored.info.key.as_str();
        let current: Option<Stored> = objects
            .get((bucket, key))
            .map_err(db)?
            .map(|v| from_json(v.value()))
            .transpose()
            .map_err(store_error)?;
        let holds = match condition {
            PutCondition::Always => true,
            PutCondition::IfAbsent => current.is_none(),
            PutCondition::IfMatch(etag) => current.as_ref().is_some_and(|c| &c.info.etag == etag),
        };
        if !holds {
            return Err(ObjectError::PreconditionFailed);
        }
        if stored.inline {
            txn.open_table(INLINE)
                .map_err(db)?
                .insert(stored.blob.as_str(), bytes)
                .map_err(db)?;
        }
        let replaced = match &current {
            Some(current) => current.release(txn)?,
            None => Vec::new(),
        };
        objects
            .insert(
                (bucket, key),
                to_json(stored).map_err(store_error)?.as_slice(),
            )
            .map_err(db)?;
        let recorded = record_events(
            txn,
            &info.notifications,
            bucket,
            &stored.info,
            Change::Created(origin),
        )?;
        Ok((replaced, recorded))
    }

    /// Commit a batch of single-part puts in one transaction, after one fsync of the blob
    /// directory makes every blob's rename durable; the blobs they replaced are discarded.
    /// A put refused by its condition or bucket changes nothing and fails alone; a storage
    /// failure fails the whole batch and commits none of it.
    fn commit_puts(&self, batch: Vec<PutJob>) -> Vec<Answer> {
        let fail_all = |batch: Vec<PutJob>, error: &dyn std::fmt::Display| -> Vec<Answer> {
            batch
                .into_iter()
                .map(|job| {
                    let error = ObjectError::backend(format!("commit a put: {error}"));
                    (job.done, Err(error))
                })
                .collect()
        };
        if batch.iter().any(|job| !job.stored.inline)
            && let Err(error) =
                std::fs::File::open(self.objects.join("blobs")).and_then(|d| d.sync_all())
        {
            return fail_all(batch, &error);
        }
        let txn = match self.db.begin_write() {
            Ok(txn) => txn,
            Err(error) => return fail_all(batch, &error),
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        let (mut replaced, mut recorded) = (Vec::new(), false);
        for job in &batch {
            let row = Inner::put_row(
                &txn,
                &job.bucket,
                &job.stored,
                &job.bytes,
                &job.condition,
                job.origin,
            );
            match row {
                Ok((blobs, events)) => {
                    replaced.extend(blobs);
                    recorded |= events;
                    outcomes.push(Ok(()));
                }
                Err(ObjectError::Backend(error)) => {
                    drop(txn);
                    return fail_all(batch, &error);
                }
                Err(refused) => outcomes.push(Err(refused)),
            }
        }
        if let Err(error) = txn.commit() {
            return fail_all(batch, &error);
        }
        self.events_committed(recorded);
        self.discard(replaced);
        batch
            .into_iter()
            .zip(outcomes)
            .map(|(job, outcome)| (job.done, outcome))
            .collect()
    }

    /// After a commit: wake the relay if it recorded events.
    fn events_committed(&self, recorded: bool) {
        if recorded {
            self.object_events.notify_one();
        }
    }

    fn delete_object(&self, bucket: &str, key: &str) -> ObjectResult<bool> {
        let txn = self.db.begin_write().map_err(db)?;
        let (existed, recorded, released) = {
            let info = require_bucket(&txn, bucket)?;
            let mut objects = txn.open_table(OBJECTS).map_err(db)?;
            let removed = objects
                .remove((bucket, key))
                .map_err(db)?
                .map(|v| from_json::<Stored>(v.value()))
                .transpose()
                .map_err(store_error)?;
            let (recorded, released) = match &removed {
                Some(stored) => (
                    record_events(
                        &txn,
                        &info.notifications,
                        bucket,
                        &stored.info,
                        Change::Removed,
                    )?,
                    stored.release(&txn)?,
                ),
                None => (false, Vec::new()),
            };
            (removed.is_some(), recorded, released)
        };
        txn.commit().map_err(db)?;
        self.events_committed(recorded);
        self.discard(released);
        Ok(existed)
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> ObjectResult<Listing> {
        self.read_bucket(bucket)?;
        let txn = self.db.begin_read().map_err(db)?;
        let objects = txn.open_table(OBJECTS).map_err(db)?;
        let from = match start_after {
            Some(after) if after > prefix => after,
            _ => prefix,
        };
        let mut out = Vec::new();
        let mut truncated = false;
        for entry in objects.range((bucket, from)..).map_err(db)? {
            let (k, value) = entry.map_err(db)?;
            let (b, key) = k.value();
            if b != bucket || !key.starts_with(prefix) {
                break;
            }
            if start_after.is_some_and(|after| key <= after) {
                continue;
            }
            if out.len() == max {
                truncated = true;
                break;
            }
            out.push(
                from_json::<Stored>(value.value())
                    .map_err(store_error)?
                    .info,
            );
        }
        Ok(Listing {
            objects: out,
            truncated,
        })
    }

    /// The upload `(bucket, key, upload)`: an id names an upload of its own key only.
    fn read_upload(
        table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
        bucket: &str,
        key: &str,
        upload: &str,
    ) -> ObjectResult<UploadInfo> {
        let info: Option<UploadInfo> = table
            .get((bucket, upload))
            .map_err(db)?
            .map(|v| from_json(v.value()))
            .transpose()
            .map_err(store_error)?;
        info.filter(|u| u.key == key)
            .ok_or_else(|| ObjectError::NoSuchUpload(upload.to_owned()))
    }

    fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        object: NewObject,
    ) -> ObjectResult<UploadInfo> {
        let upload = UploadInfo {
            id: uuid::Uuid::new_v4().simple().to_string(),
            key: key.to_owned(),
            initiated_ms: now_ms(),
            object,
        };
        let txn = self.db.begin_write().map_err(db)?;
        {
            require_bucket(&txn, bucket)?;
            let mut uploads = txn.open_table(UPLOADS).map_err(db)?;
            uploads
                .insert(
                    (bucket, upload.id.as_str()),
                    to_json(&upload).map_err(store_error)?.as_slice(),
                )
                .map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(upload)
    }

    fn commit_part(
        &self,
        (bucket, key, upload): (&str, &str, &str),
        part: &StoredPart,
    ) -> ObjectResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        let replaced = {
            let uploads = txn.open_table(UPLOADS).map_err(db)?;
            Inner::read_upload(&uploads, bucket, key, upload)?;
            let mut parts = txn.open_table(PARTS).map_err(db)?;
            parts
                .insert(
                    (bucket, upload, part.info.number),
                    to_json(part).map_err(store_error)?.as_slice(),
                )
                .map_err(db)?
                .map(|old| from_json::<StoredPart>(old.value()))
                .transpose()
                .map_err(store_error)?
        };
        txn.commit().map_err(db)?;
        self.discard(replaced.map(|p| p.blob));
        Ok(())
    }

    fn upload_info(&self, (bucket, key, upload): (&str, &str, &str)) -> ObjectResult<UploadInfo> {
        let txn = self.db.begin_read().map_err(db)?;
        Inner::read_upload(&txn.open_table(UPLOADS).map_err(db)?, bucket, key, upload)
    }

    fn upload(
        &self,
        (bucket, key, upload): (&str, &str, &str),
    ) -> ObjectResult<(UploadInfo, Vec<PartInfo>)> {
        let txn = self.db.begin_read().map_err(db)?;
        let info = Inner::read_upload(&txn.open_table(UPLOADS).map_err(db)?, bucket, key, upload)?;
        let parts = read_parts(&txn, bucket, upload)?
            .into_iter()
            .map(|p| p.info)
            .collect();
        Ok((info, parts))
    }

    fn uploads(&self, bucket: &str, prefix: &str) -> ObjectResult<Vec<UploadInfo>> {
        self.read_bucket(bucket)?;
        let txn = self.db.begin_read().map_err(db)?;
        let uploads = txn.open_table(UPLOADS).map_err(db)?;
        let mut out: Vec<UploadInfo> = Vec::new();
        for entry in uploads.range((bucket, "")..).map_err(db)? {
            let (k, value) = entry.map_err(db)?;
            if k.value().0 != bucket {
                break;
            }
            let upload: UploadInfo = from_json(value.value()).map_err(store_error)?;
            if upload.key.starts_with(prefix) {
                out.push(upload);
            }
        }
        out.sort_by(|a, b| (&a.key, a.initiated_ms).cmp(&(&b.key, b.initiated_ms)));
        Ok(out)
    }

    fn complete_upload(
        &self,
        (bucket, key, upload): (&str, &str, &str),
        listed: &[(u32, String)],
        headers: BTreeMap<String, String>,
        condition: &PutCondition,
    ) -> ObjectResult<ObjectInfo> {
        let txn = self.db.begin_write().map_err(db)?;
        let (info, discarded, recorded) = {
            let uploads = txn.open_table(UPLOADS).map_err(db)?;
            let upload_info = Inner::read_upload(&uploads, bucket, key, upload)?;
            drop(uploads);
            let mut stored_parts: HashMap<u32, StoredPart> = HashMap::new();
            {
                let parts = txn.open_table(PARTS).map_err(db)?;
                for entry in parts
                    .range((bucket, upload, 0)..=(bucket, upload, u32::MAX))
                    .map_err(db)?
                {
                    let (_, value) = entry.map_err(db)?;
                    let part: StoredPart = from_json(value.value()).map_err(store_error)?;
                    stored_parts.insert(part.info.number, part);
                }
            }
            if listed.windows(2).any(|w| matches!(w, [a, b] if a.0 >= b.0)) {
                return Err(ObjectError::InvalidPartOrder);
            }
            let mut segments = Vec::with_capacity(listed.len());
            let mut etags = Vec::with_capacity(listed.len());
            for (index, (number, etag)) in listed.iter().enumerate() {
                let part = stored_parts
                    .get(number)
                    .filter(|p| p.info.etag == etag.trim_matches('"'))
                    .ok_or(ObjectError::InvalidPart(*number))?;
                if index + 1 < listed.len() && part.info.size < MIN_PART_BYTES {
                    return Err(ObjectError::PartTooSmall {
                        part: *number,
                        size: part.info.size,
                    });
                }
                segments.push(Segment {
                    blob: part.blob.clone(),
                    size: part.info.size,
                });
                etags.push(part.info.etag.as_str());
            }
            let etag = multipart_etag(&etags)
                .ok_or_else(|| ObjectError::backend("a stored part's ETag is not hex MD5"))?;
            let mut object_headers = upload_info.object.headers.clone();
            object_headers.extend(headers);
            let stored = Stored {
                info: ObjectInfo {
                    key: upload_info.key.clone(),
                    size: segments.iter().map(|s| s.size).sum(),
                    etag,
                    last_modified_ms: now_ms(),
                    content_type: upload_info.object.content_type.clone(),
                    headers: object_headers,
                    parts: segments.iter().map(|s| s.size).collect(),
                },
                blob: String::new(),
                inline: false,
                segments,
            };
            let (mut discarded, recorded) = Inner::put_row(
                &txn,
                bucket,
                &stored,
                &[],
                condition,
                Created::CompleteMultipartUpload,
            )?;
            let used: HashSet<&str> = stored.segments.iter().map(|s| s.blob.as_str()).collect();
            let parts = remove_parts(&txn, bucket, upload)?;
            discarded.extend(parts.into_iter().filter(|b| !used.contains(b.as_str())));
            let mut uploads = txn.open_table(UPLOADS).map_err(db)?;
            uploads.remove((bucket, upload)).map_err(db)?;
            (stored.info, discarded, recorded)
        };
        txn.commit().map_err(db)?;
        self.events_committed(recorded);
        self.discard(discarded);
        Ok(info)
    }

    fn abort_upload(&self, (bucket, key, upload): (&str, &str, &str)) -> ObjectResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        let discarded = {
            let mut uploads = txn.open_table(UPLOADS).map_err(db)?;
            Inner::read_upload(&uploads, bucket, key, upload)?;
            uploads.remove((bucket, upload)).map_err(db)?;
            drop(uploads);
            remove_parts(&txn, bucket, upload)?
        };
        txn.commit().map_err(db)?;
        self.discard(discarded);
        Ok(())
    }

    fn set_notifications(&self, bucket: &str, rules: Vec<NotificationRule>) -> ObjectResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut info = require_bucket(&txn, bucket)?;
            info.notifications = rules;
            let mut buckets = txn.open_table(BUCKETS).map_err(db)?;
            buckets
                .insert(bucket, to_json(&info).map_err(store_error)?.as_slice())
                .map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(())
    }

    fn pending_events(&self, max: usize) -> ObjectResult<Vec<ObjectEvent>> {
        let txn = self.db.begin_read().map_err(db)?;
        let events = txn.open_table(EVENTS).map_err(db)?;
        let mut out = Vec::new();
        for entry in events.iter().map_err(db)?.take(max) {
            let (_, value) = entry.map_err(db)?;
            out.push(from_json(value.value()).map_err(store_error)?);
        }
        Ok(out)
    }

    fn settle_events(&self, through: u64) -> ObjectResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut events = txn.open_table(EVENTS).map_err(db)?;
            events.retain_in(..=through, |_, _| false).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(())
    }
}

/// Record, inside `txn`, the events `rules` want for one change; whether there were any.
fn record_events(
    txn: &redb::WriteTransaction,
    rules: &[NotificationRule],
    bucket: &str,
    info: &ObjectInfo,
    change: Change,
) -> ObjectResult<bool> {
    let mut wanted = ObjectEvent::for_rules(rules, bucket, info, change, now_ms()).peekable();
    if wanted.peek().is_none() {
        return Ok(false);
    }
    let mut seqs = txn.open_table(SEQS).map_err(db)?;
    let mut seq = seqs.get(EVENT_SEQ).map_err(db)?.map_or(0, |v| v.value());
    let mut events = txn.open_table(EVENTS).map_err(db)?;
    for mut event in wanted {
        seq += 1;
        event.seq = seq;
        events
            .insert(seq, to_json(&event).map_err(store_error)?.as_slice())
            .map_err(db)?;
    }
    seqs.insert(EVENT_SEQ, seq).map_err(db)?;
    Ok(true)
}

fn read_parts(
    txn: &redb::ReadTransaction,
    bucket: &str,
    upload: &str,
) -> ObjectResult<Vec<StoredPart>> {
    let parts = txn.open_table(PARTS).map_err(db)?;
    let mut out = Vec::new();
    for entry in parts
        .range((bucket, upload, 0)..=(bucket, upload, u32::MAX))
        .map_err(db)?
    {
        let (_, value) = entry.map_err(db)?;
        out.push(from_json(value.value()).map_err(store_error)?);
    }
    Ok(out)
}

/// Remove an upload's part rows inside `txn`; their blobs.
fn remove_parts(
    txn: &redb::WriteTransaction,
    bucket: &str,
    upload: &str,
) -> ObjectResult<Vec<String>> {
    let mut parts = txn.open_table(PARTS).map_err(db)?;
    let mut blobs = Vec::new();
    let removed = parts
        .extract_from_if((bucket, upload, 0)..=(bucket, upload, u32::MAX), |_, _| {
            true
        })
        .map_err(db)?;
    for entry in removed {
        let (_, value) = entry.map_err(db)?;
        blobs.push(
            from_json::<StoredPart>(value.value())
                .map_err(store_error)?
                .blob,
        );
    }
    Ok(blobs)
}

/// Refuse, inside a write transaction, to touch a bucket that does not exist; the bucket.
fn require_bucket(txn: &redb::WriteTransaction, bucket: &str) -> ObjectResult<BucketInfo> {
    let buckets = txn.open_table(BUCKETS).map_err(db)?;
    match buckets.get(bucket).map_err(db)? {
        Some(value) => from_json(value.value()).map_err(store_error),
        None => Err(ObjectError::NoSuchBucket(bucket.to_owned())),
    }
}

/// Stream `body` into `path`, returning its size and MD5; the file is fsynced.
async fn write_body(path: &Path, mut body: ByteStream) -> ObjectResult<(u64, String)> {
    let mut file = tokio::fs::File::create(path).await.map_err(io_error)?;
    let mut md5 = Md5::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(ObjectError::Body)?;
        md5.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(io_error)?;
    }
    file.sync_all().await.map_err(io_error)?;
    Ok((size, hex::encode(md5.finalize())))
}

/// A body read as far as [`INLINE_MAX`] bytes.
enum Small {
    /// The whole body, at most `INLINE_MAX` bytes.
    Whole(Bytes),
    /// A larger body: what was read, then the rest.
    Larger(ByteStream),
}

/// Read `body` whole if it has at most [`INLINE_MAX`] bytes.
async fn read_small(mut body: ByteStream) -> ObjectResult<Small> {
    let (mut chunks, mut size) = (Vec::<Bytes>::new(), 0usize);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(ObjectError::Body)?;
        size += chunk.len();
        chunks.push(chunk);
        if size > INLINE_MAX {
            let read = futures::stream::iter(chunks.into_iter().map(Ok));
            return Ok(Small::Larger(Box::pin(read.chain(body))));
        }
    }
    if chunks.len() == 1 {
        return Ok(Small::Whole(chunks.swap_remove(0)));
    }
    Ok(Small::Whole(Bytes::from(chunks.concat())))
}

/// A stream that keeps blobs pinned until it is dropped.
struct Pinned {
    inner: ByteStream,
    store: Arc<Inner>,
    blobs: Vec<String>,
}

impl Stream for Pinned {
    type Item = Result<Bytes, nimbus_store::BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.as_mut().poll_next(cx)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.store.unpin(&self.blobs);
    }
}

/// Open `path` at `start` and stream `len` bytes of it.
async fn read_blob(path: PathBuf, start: u64, len: u64) -> std::io::Result<ByteStream> {
    let mut file = tokio::fs::File::open(path).await?;
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start)).await?;
    }
    let reader = tokio::io::AsyncReadExt::take(file, len);
    Ok(Box::pin(
        tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK)
            .map_ok(Bytes::from)
            .map_err(|e| -> nimbus_store::BoxError { Box::new(e) }),
    ))
}

impl RedbStore {
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> ObjectResult<T> + Send + 'static,
    ) -> ObjectResult<T> {
        self.on_blocking_pool(work)
            .await
            .map_err(ObjectError::backend)?
    }

    /// Write `body` to a new blob (temporary file, fsync, rename, and the directory's fsync if
    /// `sync_dir` — else the commit that records it does that); its id, size and MD5.
    async fn write_blob(
        &self,
        body: ByteStream,
        sync_dir: bool,
    ) -> ObjectResult<(String, u64, String)> {
        let blob = uuid::Uuid::new_v4().simple().to_string();
        let tmp = self.inner.tmp_path(&blob);
        let (size, etag) = match write_body(&tmp, body).await {
            Ok(written) => written,
            Err(error) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(error);
            }
        };
        let path = self.inner.blob_path(&blob);
        let dir = self.inner.objects.join("blobs");
        let placed = async {
            tokio::fs::rename(&tmp, &path).await?;
            if !sync_dir {
                return Ok(());
            }
            tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
                .await
                .map_err(std::io::Error::other)?
        }
        .await;
        if let Err(error) = placed {
            let _ = tokio::fs::remove_file(&tmp).await;
            let _ = tokio::fs::remove_file(&path).await;
            return Err(io_error(error));
        }
        Ok((blob, size, etag))
    }

    /// Commit a put through the group commit ([`crate::group`]).
    async fn commit_put(
        &self,
        bucket: String,
        stored: Stored,
        bytes: Bytes,
        condition: PutCondition,
        origin: Created,
    ) -> ObjectResult<()> {
        let (done, wait) = tokio::sync::oneshot::channel();
        crate::group::submit(
            &self.inner,
            PutJob {
                bucket,
                stored,
                bytes,
                condition,
                origin,
                done,
            },
        );
        wait.await
            .map_err(|_| ObjectError::backend("the put's commit was abandoned"))?
    }

    async fn discard(&self, blobs: Vec<String>) {
        let _ = self
            .blocking(move |inner| {
                inner.discard(blobs);
                Ok(())
            })
            .await;
    }
}

#[async_trait]
impl ObjectStore for RedbStore {
    async fn create_bucket(&self, bucket: &str, app: Option<&str>) -> ObjectResult<BucketInfo> {
        let (bucket, app) = (bucket.to_owned(), app.map(str::to_owned));
        self.blocking(move |inner| inner.create_bucket(&bucket, app.as_deref()))
            .await
    }

    async fn delete_bucket(&self, bucket: &str) -> ObjectResult<()> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| inner.delete_bucket(&bucket))
            .await
    }

    async fn bucket(&self, bucket: &str) -> ObjectResult<BucketInfo> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| inner.read_bucket(&bucket)).await
    }

    async fn buckets(&self) -> ObjectResult<Vec<BucketInfo>> {
        self.blocking(|inner| inner.buckets()).await
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        object: NewObject,
        condition: PutCondition,
        body: ByteStream,
    ) -> ObjectResult<ObjectInfo> {
        check_key(key)?;
        self.bucket(bucket).await?;
        let (blob, size, etag, bytes) = match read_small(body).await? {
            Small::Whole(bytes) => {
                let etag = hex::encode(Md5::digest(&bytes));
                let blob = uuid::Uuid::new_v4().simple().to_string();
                (blob, bytes.len() as u64, etag, Some(bytes))
            }
            Small::Larger(body) => {
                let (blob, size, etag) = self.write_blob(body, false).await?;
                (blob, size, etag, None)
            }
        };
        let inline = bytes.is_some();
        let mut headers = object.headers;
        if let Some(trailing) = object.trailing.as_ref().and_then(|t| t.get()) {
            headers.extend(trailing.clone());
        }
        let stored = Stored {
            info: ObjectInfo {
                key: key.to_owned(),
                size,
                etag,
                last_modified_ms: now_ms(),
                content_type: object.content_type,
                headers,
                parts: Vec::new(),
            },
            blob: blob.clone(),
            inline,
            segments: Vec::new(),
        };
        let info = stored.info.clone();
        let bytes = bytes.unwrap_or_default();
        match self
            .commit_put(bucket.to_owned(), stored, bytes, condition, object.origin)
            .await
        {
            Ok(()) => Ok(info),
            Err(error) => {
                if !inline {
                    self.discard(vec![blob]).await;
                }
                Err(error)
            }
        }
    }

    async fn head_object(&self, bucket: &str, key: &str) -> ObjectResult<ObjectInfo> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| inner.read_object(&bucket, &key).map(|s| s.info))
            .await
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> ObjectResult<(ObjectInfo, ByteStream)> {
        // The version can be replaced between reading its row and reaching its blobs: then
        // read the row again (replacements in that instant, over and over, are answered as not
        // found).
        for _ in 0..3 {
            let (b, k) = (bucket.to_owned(), key.to_owned());
            let (stored, bytes) = self
                .blocking(move |inner| inner.read_object_bytes(&b, &k, range))
                .await?;
            if let Some(bytes) = bytes {
                let stream = futures::stream::once(std::future::ready(Ok(bytes)));
                return Ok((stored.info, Box::pin(stream)));
            }
            let size = stored.info.size;
            let (start, end) = match range {
                None => (0, size),
                Some(range) => match range.resolve(size, &stored.info.parts) {
                    Some(bytes) => (bytes.start, bytes.end),
                    None => return Err(ObjectError::InvalidRange { size }),
                },
            };
            if stored.segments.is_empty() {
                // One blob: an open file outlives its unlinking.
                match read_blob(self.inner.blob_path(&stored.blob), start, end - start).await {
                    Ok(stream) => return Ok((stored.info, stream)),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(io_error(error)),
                }
            }
            // Parts are opened one after another: pin them, then check the row still names
            // them (a replacement committed before the pin may already have unlinked them).
            let blobs = stored.blobs();
            self.inner.pin(&blobs);
            // Unpinned on drop, whichever way this attempt ends.
            let mut pinned = Pinned {
                inner: Box::pin(futures::stream::empty()),
                store: self.inner.clone(),
                blobs: blobs.clone(),
            };
            let (b, k) = (bucket.to_owned(), key.to_owned());
            let current = self.blocking(move |inner| inner.read_object(&b, &k)).await;
            match current {
                Ok(current) if current.blobs() == blobs => {}
                Ok(_) | Err(ObjectError::NoSuchKey { .. }) => continue,
                Err(error) => return Err(error),
            }
            let mut pieces = Vec::new();
            let mut offset = 0u64;
            for segment in stored.segments() {
                let (seg_start, seg_end) = (offset, offset + segment.size);
                offset = seg_end;
                let (from, to) = (start.max(seg_start), end.min(seg_end));
                if from < to {
                    pieces.push((
                        self.inner.blob_path(&segment.blob),
                        from - seg_start,
                        to - from,
                    ));
                }
            }
            let stream = futures::stream::iter(pieces)
                .then(|(path, from, len)| read_blob(path, from, len))
                .map_err(|e| -> nimbus_store::BoxError { Box::new(e) })
                .try_flatten();
            pinned.inner = Box::pin(stream);
            return Ok((stored.info, Box::pin(pinned)));
        }
        Err(ObjectError::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> ObjectResult<bool> {
        let (b, k) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| inner.delete_object(&b, &k))
            .await
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> ObjectResult<Listing> {
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        let start_after = start_after.map(str::to_owned);
        self.blocking(move |inner| inner.list(&bucket, &prefix, start_after.as_deref(), max))
            .await
    }

    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        object: NewObject,
    ) -> ObjectResult<UploadInfo> {
        check_key(key)?;
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        self.blocking(move |inner| inner.create_upload(&bucket, &key, object))
            .await
    }

    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload: &str,
        number: u32,
        new: NewPart,
        body: ByteStream,
    ) -> ObjectResult<PartInfo> {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(ObjectError::InvalidPart(number));
        }
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload.to_owned());
        self.blocking(move |inner| {
            let txn = inner.db.begin_read().map_err(db)?;
            let uploads = txn.open_table(UPLOADS).map_err(db)?;
            Inner::read_upload(&uploads, &b, &k, &u).map(drop)
        })
        .await?;
        let (blob, size, etag) = self.write_blob(body, true).await?;
        let mut headers = new.headers;
        if let Some(trailing) = new.trailing.as_ref().and_then(|t| t.get()) {
            headers.extend(trailing.clone());
        }
        let part = StoredPart {
            info: PartInfo {
                number,
                size,
                etag,
                last_modified_ms: now_ms(),
                headers,
            },
            blob: blob.clone(),
        };
        let info = part.info.clone();
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload.to_owned());
        match self
            .blocking(move |inner| inner.commit_part((&b, &k, &u), &part))
            .await
        {
            Ok(()) => Ok(info),
            Err(error) => {
                self.discard(vec![blob]).await;
                Err(error)
            }
        }
    }

    async fn upload_info(&self, bucket: &str, key: &str, upload: &str) -> ObjectResult<UploadInfo> {
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload.to_owned());
        self.blocking(move |inner| inner.upload_info((&b, &k, &u)))
            .await
    }

    async fn upload(
        &self,
        bucket: &str,
        key: &str,
        upload: &str,
    ) -> ObjectResult<(UploadInfo, Vec<PartInfo>)> {
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload.to_owned());
        self.blocking(move |inner| inner.upload((&b, &k, &u))).await
    }

    async fn uploads(&self, bucket: &str, prefix: &str) -> ObjectResult<Vec<UploadInfo>> {
        let (b, p) = (bucket.to_owned(), prefix.to_owned());
        self.blocking(move |inner| inner.uploads(&b, &p)).await
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload: &str,
        parts: &[(u32, String)],
        headers: BTreeMap<String, String>,
        condition: PutCondition,
    ) -> ObjectResult<ObjectInfo> {
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload.to_owned());
        let parts = parts.to_vec();
        self.blocking(move |inner| inner.complete_upload((&b, &k, &u), &parts, headers, &condition))
            .await
    }

    async fn abort_upload(&self, bucket: &str, key: &str, upload: &str) -> ObjectResult<()> {
        let (b, k, u) = (bucket.to_owned(), key.to_owned(), upload.to_owned());
        self.blocking(move |inner| inner.abort_upload((&b, &k, &u)))
            .await
    }

    async fn set_notifications(
        &self,
        bucket: &str,
        rules: Vec<NotificationRule>,
    ) -> ObjectResult<()> {
        let bucket = bucket.to_owned();
        self.blocking(move |inner| inner.set_notifications(&bucket, rules))
            .await
    }

    async fn pending_events(&self, max: usize) -> ObjectResult<Vec<ObjectEvent>> {
        self.blocking(move |inner| inner.pending_events(max)).await
    }

    async fn settle_events(&self, through: u64) -> ObjectResult<()> {
        self.blocking(move |inner| inner.settle_events(through))
            .await
    }

    async fn events_recorded(&self) {
        self.inner.object_events.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_store::conformance::objects::{body, read};

    #[tokio::test]
    async fn conformance() {
        let stores = crate::TempStores::default();
        nimbus_store::conformance::objects::run_all(|| stores.make()).await;
    }

    /// Rows of the inline table: the small objects' bytes.
    fn inline_rows(store: &RedbStore) -> u64 {
        let txn = store.inner.db.begin_read().unwrap();
        redb::ReadableTableMetadata::len(&txn.open_table(INLINE).unwrap()).unwrap()
    }

    /// What a crash mid-put leaves — a temporary file, or a renamed blob whose commit never
    /// happened — is removed at the next open; committed objects, in a file or inline, survive
    /// it whole.
    #[tokio::test]
    async fn uncommitted_puts_are_cleaned_up_and_committed_ones_survive() {
        let dir = tempfile::tempdir().unwrap();
        let large = vec![b'w'; INLINE_MAX + 1];
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store.create_bucket("b", Some("app")).await.unwrap();
            for (key, bytes) in [("kept", &large[..]), ("small", b"whole")] {
                store
                    .put_object(
                        "b",
                        key,
                        NewObject::default(),
                        PutCondition::Always,
                        body(&[bytes]),
                    )
                    .await
                    .unwrap();
            }
        }
        let objects = dir.path().join(crate::OBJECTS_DIR);
        std::fs::write(objects.join("tmp").join("half-written"), b"par").unwrap();
        std::fs::write(objects.join("blobs").join("never-committed"), b"x").unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(objects.join("tmp")).unwrap().count(), 0);
        let blobs: Vec<_> = std::fs::read_dir(objects.join("blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            blobs.len(),
            1,
            "only the committed object's blob: {blobs:?}"
        );
        let (info, stream) = store.get_object("b", "kept", None).await.unwrap();
        assert!(read(stream).await == large);
        assert_eq!(info.size, large.len() as u64);
        let (info, stream) = store.get_object("b", "small", None).await.unwrap();
        assert_eq!(read(stream).await, b"whole");
        assert_eq!(info.size, 5);
        assert_eq!(inline_rows(&store), 1);
    }

    /// Overwrites and deletes unlink the blob or remove the inline row they replace, whichever
    /// size replaces whichever: the store does not grow.
    #[tokio::test]
    async fn replaced_blobs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        store.create_bucket("b", Some("app")).await.unwrap();
        let blobs = dir.path().join(crate::OBJECTS_DIR).join("blobs");
        let files = || std::fs::read_dir(&blobs).unwrap().count();
        for (round, size, expect) in [
            (0u8, INLINE_MAX + 1, (1, 0)),
            (1, INLINE_MAX + 1, (1, 0)),
            (2, 1, (0, 1)),
            (3, INLINE_MAX, (0, 1)),
            (4, INLINE_MAX + 1, (1, 0)),
            (5, 0, (0, 1)),
        ] {
            store
                .put_object(
                    "b",
                    "k",
                    NewObject::default(),
                    PutCondition::Always,
                    body(&[&vec![round; size]]),
                )
                .await
                .unwrap();
            assert_eq!((files(), inline_rows(&store)), expect, "round {round}");
        }
        assert!(store.delete_object("b", "k").await.unwrap());
        assert_eq!((files(), inline_rows(&store)), (0, 0));
    }

    /// Parts of an upload in progress and the blobs of a multipart object are referenced:
    /// they survive a restart's clean-up; once an upload is aborted, or a reader holding a
    /// replaced multipart object lets go, nothing is left behind.
    #[tokio::test]
    async fn multipart_blobs_survive_reopen_and_are_removed_when_released() {
        use futures::StreamExt as _;
        let dir = tempfile::tempdir().unwrap();
        let five = vec![7u8; nimbus_store::objects::MIN_PART_BYTES as usize];
        let (done, pending) = {
            let store = RedbStore::open(dir.path()).unwrap();
            store.create_bucket("b", Some("app")).await.unwrap();
            let done = store
                .create_upload("b", "done", NewObject::default())
                .await
                .unwrap();
            let e1 = store
                .put_part("b", "done", &done.id, 1, NewPart::default(), body(&[&five]))
                .await
                .unwrap()
                .etag;
            let e2 = store
                .put_part(
                    "b",
                    "done",
                    &done.id,
                    2,
                    NewPart::default(),
                    body(&[b"tail"]),
                )
                .await
                .unwrap()
                .etag;
            store
                .complete_upload(
                    "b",
                    "done",
                    &done.id,
                    &[(1, e1), (2, e2)],
                    BTreeMap::new(),
                    PutCondition::Always,
                )
                .await
                .unwrap();
            let pending = store
                .create_upload("b", "pending", NewObject::default())
                .await
                .unwrap();
            store
                .put_part(
                    "b",
                    "pending",
                    &pending.id,
                    1,
                    NewPart::default(),
                    body(&[b"p"]),
                )
                .await
                .unwrap();
            (done, pending)
        };
        let blobs = dir.path().join(crate::OBJECTS_DIR).join("blobs");
        let store = RedbStore::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 3);
        let (info, stream) = store.get_object("b", "done", None).await.unwrap();
        assert_eq!(read(stream).await.len() as u64, info.size);
        assert!(matches!(
            store.upload("b", "done", &done.id).await,
            Err(ObjectError::NoSuchUpload(_))
        ));
        store
            .abort_upload("b", "pending", &pending.id)
            .await
            .unwrap();
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 2);
        let (_, mut reading) = store.get_object("b", "done", None).await.unwrap();
        reading.next().await.unwrap().unwrap();
        assert!(store.delete_object("b", "done").await.unwrap());
        assert_eq!(
            std::fs::read_dir(&blobs).unwrap().count(),
            2,
            "kept while a reader holds them"
        );
        drop(reading);
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
    }
}
