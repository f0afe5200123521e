//! The embedded [`ObjectStore`]: object bytes in files, their metadata in redb.
//!
//! A put streams the body into `objects/tmp/<id>` (hashing it as it goes), fsyncs it, renames it
//! to `objects/blobs/<id>` and fsyncs the directory; only then does one redb transaction check
//! the precondition and point `(bucket, key)` at the new blob. A crash before that commit leaves
//! an unreferenced blob or temporary file, removed at the next open; after it, the new object is
//! whole. The replaced blob is unlinked after the commit: a reader that already opened it keeps
//! reading the version it began (Linux keeps an unlinked file's data while it is open).

use crate::{Inner, RedbStore, backend, from_json, now_ms, to_json};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use nimbus_store::objects::check_key;
use nimbus_store::{
    BucketInfo, ByteRange, ByteStream, Listing, NewObject, ObjectError, ObjectInfo, ObjectResult,
    ObjectStore, PutCondition, StoreError,
};
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

pub(crate) const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
pub(crate) const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");

/// Bytes read from a blob per chunk.
const READ_CHUNK: usize = 64 << 10;

/// An object's row: what clients see, and which blob holds its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    info: ObjectInfo,
    blob: String,
}

fn store_error(error: StoreError) -> ObjectError {
    ObjectError::backend(error)
}

fn io_error(error: std::io::Error) -> ObjectError {
    ObjectError::backend(error)
}

impl Inner {
    fn blob_path(&self, blob: &str) -> PathBuf {
        self.objects.join("blobs").join(blob)
    }

    fn tmp_path(&self, blob: &str) -> PathBuf {
        self.objects.join("tmp").join(blob)
    }

    /// Remove puts that never committed: temporary files, and blobs no object points at.
    pub(crate) fn remove_orphaned_blobs(&self) -> nimbus_store::Result<()> {
        for entry in std::fs::read_dir(self.objects.join("tmp")).map_err(backend)? {
            let _ = std::fs::remove_file(entry.map_err(backend)?.path());
        }
        let txn = self.db.begin_read().map_err(backend)?;
        let objects = txn.open_table(OBJECTS).map_err(backend)?;
        let mut referenced = std::collections::HashSet::new();
        for entry in objects.iter().map_err(backend)? {
            let (_, value) = entry.map_err(backend)?;
            referenced.insert(from_json::<Stored>(value.value())?.blob);
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

    fn read_bucket(&self, bucket: &str) -> ObjectResult<BucketInfo> {
        let txn = self.db.begin_read().map_err(ObjectError::backend)?;
        let buckets = txn.open_table(BUCKETS).map_err(ObjectError::backend)?;
        let value = buckets
            .get(bucket)
            .map_err(ObjectError::backend)?
            .ok_or_else(|| ObjectError::NoSuchBucket(bucket.to_owned()))?;
        from_json(value.value()).map_err(store_error)
    }

    fn read_object(&self, bucket: &str, key: &str) -> ObjectResult<Stored> {
        self.read_bucket(bucket)?;
        let txn = self.db.begin_read().map_err(ObjectError::backend)?;
        let objects = txn.open_table(OBJECTS).map_err(ObjectError::backend)?;
        let value = objects
            .get((bucket, key))
            .map_err(ObjectError::backend)?
            .ok_or_else(|| ObjectError::NoSuchKey {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            })?;
        from_json(value.value()).map_err(store_error)
    }

    fn create_bucket(&self, bucket: &str, app: Option<&str>) -> ObjectResult<BucketInfo> {
        let txn = self.db.begin_write().map_err(ObjectError::backend)?;
        let info = {
            let mut buckets = txn.open_table(BUCKETS).map_err(ObjectError::backend)?;
            if let Some(existing) = buckets.get(bucket).map_err(ObjectError::backend)? {
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
            };
            buckets
                .insert(bucket, to_json(&info).map_err(store_error)?.as_slice())
                .map_err(ObjectError::backend)?;
            info
        };
        txn.commit().map_err(ObjectError::backend)?;
        Ok(info)
    }

    fn delete_bucket(&self, bucket: &str) -> ObjectResult<()> {
        let txn = self.db.begin_write().map_err(ObjectError::backend)?;
        {
            let objects = txn.open_table(OBJECTS).map_err(ObjectError::backend)?;
            let first = objects
                .range((bucket, "")..)
                .map_err(ObjectError::backend)?
                .next()
                .transpose()
                .map_err(ObjectError::backend)?;
            if first.is_some_and(|(k, _)| k.value().0 == bucket) {
                return Err(ObjectError::BucketNotEmpty(bucket.to_owned()));
            }
            let mut buckets = txn.open_table(BUCKETS).map_err(ObjectError::backend)?;
            if buckets
                .remove(bucket)
                .map_err(ObjectError::backend)?
                .is_none()
            {
                return Err(ObjectError::NoSuchBucket(bucket.to_owned()));
            }
        }
        txn.commit().map_err(ObjectError::backend)
    }

    fn buckets(&self) -> ObjectResult<Vec<BucketInfo>> {
        let txn = self.db.begin_read().map_err(ObjectError::backend)?;
        let buckets = txn.open_table(BUCKETS).map_err(ObjectError::backend)?;
        let mut out = Vec::new();
        for entry in buckets.iter().map_err(ObjectError::backend)? {
            let (_, value) = entry.map_err(ObjectError::backend)?;
            out.push(from_json(value.value()).map_err(store_error)?);
        }
        Ok(out)
    }

    /// Point `(bucket, key)` at `stored` if `condition` holds; returns the blob it replaced.
    fn commit_object(
        &self,
        bucket: &str,
        stored: &Stored,
        condition: &PutCondition,
    ) -> ObjectResult<Option<String>> {
        let txn = self.db.begin_write().map_err(ObjectError::backend)?;
        let replaced = {
            require_bucket(&txn, bucket)?;
            let mut objects = txn.open_table(OBJECTS).map_err(ObjectError::backend)?;
            let key = stored.info.key.as_str();
            let current: Option<Stored> = objects
                .get((bucket, key))
                .map_err(ObjectError::backend)?
                .map(|v| from_json(v.value()))
                .transpose()
                .map_err(store_error)?;
            let holds = match condition {
                PutCondition::Always => true,
                PutCondition::IfAbsent => current.is_none(),
                PutCondition::IfMatch(etag) => {
                    current.as_ref().is_some_and(|c| &c.info.etag == etag)
                }
            };
            if !holds {
                return Err(ObjectError::PreconditionFailed);
            }
            objects
                .insert(
                    (bucket, key),
                    to_json(stored).map_err(store_error)?.as_slice(),
                )
                .map_err(ObjectError::backend)?;
            current.map(|c| c.blob)
        };
        txn.commit().map_err(ObjectError::backend)?;
        Ok(replaced)
    }

    fn delete_object(&self, bucket: &str, key: &str) -> ObjectResult<Option<String>> {
        let txn = self.db.begin_write().map_err(ObjectError::backend)?;
        let removed = {
            require_bucket(&txn, bucket)?;
            let mut objects = txn.open_table(OBJECTS).map_err(ObjectError::backend)?;
            let removed = objects
                .remove((bucket, key))
                .map_err(ObjectError::backend)?
                .map(|v| from_json::<Stored>(v.value()))
                .transpose()
                .map_err(store_error)?;
            removed.map(|s| s.blob)
        };
        txn.commit().map_err(ObjectError::backend)?;
        Ok(removed)
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> ObjectResult<Listing> {
        self.read_bucket(bucket)?;
        let txn = self.db.begin_read().map_err(ObjectError::backend)?;
        let objects = txn.open_table(OBJECTS).map_err(ObjectError::backend)?;
        let from = match start_after {
            Some(after) if after > prefix => after,
            _ => prefix,
        };
        let mut out = Vec::new();
        let mut truncated = false;
        for entry in objects
            .range((bucket, from)..)
            .map_err(ObjectError::backend)?
        {
            let (k, value) = entry.map_err(ObjectError::backend)?;
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
}

/// Refuse, inside a write transaction, to touch a bucket that does not exist.
fn require_bucket(txn: &redb::WriteTransaction, bucket: &str) -> ObjectResult<()> {
    let buckets = txn.open_table(BUCKETS).map_err(ObjectError::backend)?;
    match buckets.get(bucket).map_err(ObjectError::backend)? {
        Some(_) => Ok(()),
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

impl RedbStore {
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> ObjectResult<T> + Send + 'static,
    ) -> ObjectResult<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(ObjectError::backend)?
    }

    async fn remove_blob(&self, blob: String) {
        let path = self.inner.blob_path(&blob);
        if let Err(error) = tokio::fs::remove_file(&path).await
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, path = %path.display(), "a replaced object's blob was not removed; the next start removes it");
        }
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
        let blob = uuid::Uuid::new_v4().simple().to_string();
        let tmp = self.inner.tmp_path(&blob);
        let written = write_body(&tmp, body).await;
        let (size, etag) = match written {
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
        let stored = Stored {
            info: ObjectInfo {
                key: key.to_owned(),
                size,
                etag,
                last_modified_ms: now_ms(),
                content_type: object.content_type,
                headers: object.headers,
            },
            blob: blob.clone(),
        };
        let info = stored.info.clone();
        let bucket_name = bucket.to_owned();
        match self
            .blocking(move |inner| inner.commit_object(&bucket_name, &stored, &condition))
            .await
        {
            Ok(replaced) => {
                if let Some(old) = replaced {
                    self.remove_blob(old).await;
                }
                Ok(info)
            }
            Err(error) => {
                self.remove_blob(blob).await;
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
        // The blob can be replaced between reading the row and opening the file: then read the
        // row again (a second replacement in that instant is answered as not found).
        for _ in 0..2 {
            let (b, k) = (bucket.to_owned(), key.to_owned());
            let stored = self
                .blocking(move |inner| inner.read_object(&b, &k))
                .await?;
            let size = stored.info.size;
            let (start, end) = match range {
                None => (0, size),
                Some(range) => match range.resolve(size) {
                    Some(bytes) => (bytes.start, bytes.end),
                    None => return Err(ObjectError::InvalidRange { size }),
                },
            };
            let mut file = match tokio::fs::File::open(self.inner.blob_path(&stored.blob)).await {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(io_error(error)),
            };
            if start > 0 {
                file.seek(std::io::SeekFrom::Start(start))
                    .await
                    .map_err(io_error)?;
            }
            let reader = tokio::io::AsyncReadExt::take(file, end.saturating_sub(start));
            let stream: ByteStream = Box::pin(
                tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK)
                    .map_ok(Bytes::from)
                    .map_err(|e| -> nimbus_store::BoxError { Box::new(e) }),
            );
            return Ok((stored.info, stream));
        }
        Err(ObjectError::NoSuchKey {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> ObjectResult<bool> {
        let (b, k) = (bucket.to_owned(), key.to_owned());
        let removed = self
            .blocking(move |inner| inner.delete_object(&b, &k))
            .await?;
        match removed {
            Some(blob) => {
                self.remove_blob(blob).await;
                Ok(true)
            }
            None => Ok(false),
        }
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

    /// What a crash mid-put leaves — a temporary file, or a renamed blob whose commit never
    /// happened — is removed at the next open; committed objects survive it whole.
    #[tokio::test]
    async fn uncommitted_puts_are_cleaned_up_and_committed_ones_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store.create_bucket("b", Some("app")).await.unwrap();
            store
                .put_object(
                    "b",
                    "kept",
                    NewObject::default(),
                    PutCondition::Always,
                    body(&[b"whole"]),
                )
                .await
                .unwrap();
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
        assert_eq!(read(stream).await, b"whole");
        assert_eq!(info.size, 5);
    }

    /// Overwrites and deletes unlink the blob they replace: the store does not grow.
    #[tokio::test]
    async fn replaced_blobs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        store.create_bucket("b", Some("app")).await.unwrap();
        for round in 0..5u8 {
            store
                .put_object(
                    "b",
                    "k",
                    NewObject::default(),
                    PutCondition::Always,
                    body(&[&[round]]),
                )
                .await
                .unwrap();
        }
        let blobs = dir.path().join(crate::OBJECTS_DIR).join("blobs");
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 1);
        assert!(store.delete_object("b", "k").await.unwrap());
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
    }
}
