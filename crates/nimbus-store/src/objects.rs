//! The object-storage contract: buckets that belong to apps, and objects streamed to and from
//! the backend — never held whole in memory.
//!
//! Guarantees every backend gives:
//! - a put is atomic: readers see the old object or the new one, never part of one, and a put
//!   whose body fails (or a crash mid-put) leaves the old object as it was;
//! - a reader that has begun an object finishes reading the version it began, even if the
//!   object is overwritten or deleted meanwhile;
//! - listings are in key order (bytewise, as S3's), and stable under concurrent writes to other
//!   keys.
//!
//! Wire protocols (S3) and their naming rules live above this trait; the store only refuses what
//! it cannot store (an empty key or one longer than [`MAX_KEY_BYTES`]).
//!
//! # Change events
//!
//! A bucket carries [`NotificationRule`]s (S3's notification configuration). A change that
//! matches a rule records an [`ObjectEvent`] in the same atomic commit that makes the change
//! visible — a transactional outbox: no put or delete is acknowledged without its events, and
//! none is recorded for a change that did not happen. Events wait, in commit order, until whoever
//! relays them elsewhere settles them ([`ObjectStore::pending_events`],
//! [`ObjectStore::settle_events`]). Sequence numbers increase and are never reused, so a relay
//! can remember how far it got.

use crate::BoxError;
use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use std::collections::BTreeMap;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

/// Longest key, in bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// Smallest part of a multipart upload, except the last (S3's limit: 5 MiB).
pub const MIN_PART_BYTES: u64 = 5 << 20;

/// Highest part number of a multipart upload (S3's limit).
pub const MAX_PART_NUMBER: u32 = 10_000;

/// An object's bytes, as they stream.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("no bucket named {0:?}")]
    NoSuchBucket(String),
    #[error("bucket {bucket:?} already exists")]
    BucketExists {
        bucket: String,
        /// Its owner: an app, or none for an operator's bucket.
        app: Option<String>,
    },
    #[error("bucket {0:?} is not empty; delete its objects first")]
    BucketNotEmpty(String),
    #[error("no object {key:?} in bucket {bucket:?}")]
    NoSuchKey { bucket: String, key: String },
    #[error("the object does not match the request's precondition")]
    PreconditionFailed,
    #[error("invalid object key: {0}")]
    InvalidKey(String),
    #[error("the requested range is not satisfiable for an object of {size} bytes")]
    InvalidRange { size: u64 },
    #[error("no multipart upload {0:?} in this bucket (completed, aborted or never created)")]
    NoSuchUpload(String),
    #[error("part {0} was not uploaded, or its ETag does not match")]
    InvalidPart(u32),
    #[error("the parts must be listed in ascending order of part number")]
    InvalidPartOrder,
    #[error(
        "part {part} is {size} bytes; every part but the last must be at least {MIN_PART_BYTES}"
    )]
    PartTooSmall { part: u32, size: u64 },
    #[error("the request body could not be read")]
    Body(#[source] BoxError),
    #[error("object storage failure")]
    Backend(#[source] BoxError),
}

impl ObjectError {
    pub fn backend(error: impl Into<BoxError>) -> ObjectError {
        ObjectError::Backend(error.into())
    }
}

pub type ObjectResult<T> = std::result::Result<T, ObjectError>;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BucketInfo {
    pub name: String,
    /// The app the bucket belongs to; none for a bucket an operator created.
    pub app: Option<String>,
    pub created_ms: u64,
    /// Which changes record events, and for whom.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<NotificationRule>,
}

/// What a put stores beside the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewObject {
    pub content_type: Option<String>,
    /// Headers kept and returned as given (`content-encoding`, `cache-control`,
    /// `content-disposition`, `expires`) and user metadata (`x-amz-meta-*`), by lower-case name.
    pub headers: BTreeMap<String, String>,
    /// What the put is, for its event (not stored).
    #[serde(skip)]
    pub origin: Created,
    /// Headers known only once the body has been read (checksums sent in an `aws-chunked`
    /// trailer): set by the body stream before it ends, stored with `headers` by the put.
    #[serde(skip)]
    pub trailing: Option<Arc<std::sync::OnceLock<BTreeMap<String, String>>>>,
}

/// How an object came to be, as S3's event names say it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Created {
    #[default]
    Put,
    Post,
    Copy,
    CompleteMultipartUpload,
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Change {
    Created(Created),
    /// Deleted (S3's `ObjectRemoved:Delete`).
    Removed,
}

impl Change {
    /// S3's event name: `ObjectCreated:Put`, `ObjectRemoved:Delete`, …
    pub fn event_name(self) -> &'static str {
        match self {
            Change::Created(Created::Put) => "ObjectCreated:Put",
            Change::Created(Created::Post) => "ObjectCreated:Post",
            Change::Created(Created::Copy) => "ObjectCreated:Copy",
            Change::Created(Created::CompleteMultipartUpload) => {
                "ObjectCreated:CompleteMultipartUpload"
            }
            Change::Removed => "ObjectRemoved:Delete",
        }
    }
}

/// One entry of a bucket's notification configuration: which changes of which keys record an
/// event for `target`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NotificationRule {
    /// Who the event is for; opaque to the store (the platform's name for a function or queue).
    pub target: String,
    #[serde(flatten)]
    pub filter: nimbus_core::ObjectFilter,
}

impl NotificationRule {
    pub fn matches(&self, change: Change, key: &str) -> bool {
        self.filter
            .matches(matches!(change, Change::Created(_)), key)
    }
}

/// A change recorded for one rule's target, waiting to be relayed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectEvent {
    /// Increases with every event the store records; never reused.
    pub seq: u64,
    pub target: String,
    pub bucket: String,
    pub key: String,
    pub change: Change,
    /// The object's size and ETag (for a removal, those of the object removed).
    pub size: u64,
    pub etag: String,
    pub at_ms: u64,
}

impl ObjectEvent {
    /// The events `rules` want for one change.
    pub fn for_rules(
        rules: &[NotificationRule],
        bucket: &str,
        info: &ObjectInfo,
        change: Change,
        at_ms: u64,
    ) -> impl Iterator<Item = ObjectEvent> {
        rules
            .iter()
            .filter(move |rule| rule.matches(change, &info.key))
            .map(move |rule| ObjectEvent {
                seq: 0,
                target: rule.target.clone(),
                bucket: bucket.to_owned(),
                key: info.key.clone(),
                change,
                size: info.size,
                etag: info.etag.clone(),
                at_ms,
            })
    }
}

/// A stored object's description.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Lower-case hex MD5 of the bytes (S3's ETag for a single-part object, unquoted).
    pub etag: String,
    pub last_modified_ms: u64,
    pub content_type: Option<String>,
    pub headers: BTreeMap<String, String>,
    /// A multipart object's part sizes, in order, as a read of it (head, get, a completion)
    /// reports them; empty for a single-part object, and in listings.
    #[serde(skip)]
    pub parts: Vec<u64>,
}

/// The part of an object a read asks for (HTTP's byte ranges, resolved against the size of the
/// version the read finds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// From `start` to `end` (exclusive), or to the end; an `end` past the size is clamped.
    From { start: u64, end: Option<u64> },
    /// The last `n` bytes (all of them if the object is shorter).
    Suffix(u64),
    /// Part `n` (from 1) of a multipart object, however few bytes it has; a single-part
    /// object is its own part 1.
    Part(u32),
}

impl ByteRange {
    /// The bytes this range covers in an object of `size` bytes made of `parts` (sizes, in
    /// order; none for a single-part object); `None` if it covers none (S3's `InvalidRange`,
    /// or for a part, `InvalidPartNumber`).
    pub fn resolve(self, size: u64, parts: &[u64]) -> Option<Range<u64>> {
        match self {
            ByteRange::Part(1) if parts.is_empty() => Some(0..size),
            ByteRange::Part(n) => {
                let index = usize::try_from(n).ok()?.checked_sub(1)?;
                let start: u64 = parts.get(..index)?.iter().sum();
                Some(start..start + parts.get(index)?)
            }
            ByteRange::From { start, end } => {
                let end = end.map_or(size, |end| end.min(size));
                (start < end).then_some(start..end)
            }
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(n) => Some(size.saturating_sub(n)..size),
        }
    }
}

impl From<Range<u64>> for ByteRange {
    fn from(range: Range<u64>) -> ByteRange {
        ByteRange::From {
            start: range.start,
            end: Some(range.end),
        }
    }
}

/// A put's precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    Always,
    /// Only if no object has the key (`If-None-Match: *`).
    IfAbsent,
    /// Only if the current object's ETag is this one (`If-Match`).
    IfMatch(String),
}

/// A part of a multipart upload, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartInfo {
    pub number: u32,
    pub size: u64,
    /// Lower-case hex MD5 of the part's bytes, unquoted.
    pub etag: String,
    pub last_modified_ms: u64,
    /// What the part's put stored beside it ([`NewPart::headers`] and its trailing ones).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// What a part's put stores beside its bytes: headers (the S3 service keeps the part's
/// checksum here), and those known only once the body has been read, as for
/// [`NewObject::trailing`].
#[derive(Debug, Clone, Default)]
pub struct NewPart {
    pub headers: BTreeMap<String, String>,
    pub trailing: Option<Arc<std::sync::OnceLock<BTreeMap<String, String>>>>,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadInfo {
    pub id: String,
    pub key: String,
    pub initiated_ms: u64,
    /// What the completed object will carry.
    pub object: NewObject,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub objects: Vec<ObjectInfo>,
    /// More keys follow the last one returned.
    pub truncated: bool,
}

/// Buckets and objects. See the module docs for what every backend guarantees.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Create `bucket` for `app` (none: an operator's bucket). Bucket names are global, as in
    /// S3.
    async fn create_bucket(&self, bucket: &str, app: Option<&str>) -> ObjectResult<BucketInfo>;
    /// Delete an empty bucket.
    async fn delete_bucket(&self, bucket: &str) -> ObjectResult<()>;
    async fn bucket(&self, bucket: &str) -> ObjectResult<BucketInfo>;
    /// Every bucket, by name.
    async fn buckets(&self) -> ObjectResult<Vec<BucketInfo>>;

    /// Store `body` under `key`, atomically, if `condition` holds when it commits.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        object: NewObject,
        condition: PutCondition,
        body: ByteStream,
    ) -> ObjectResult<ObjectInfo>;
    async fn head_object(&self, bucket: &str, key: &str) -> ObjectResult<ObjectInfo>;
    /// The object and its bytes, or the bytes of `range` resolved against the version read
    /// ([`ByteRange::resolve`]); `InvalidRange` if it covers none.
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        range: Option<ByteRange>,
    ) -> ObjectResult<(ObjectInfo, ByteStream)>;
    /// Delete `key`; false if there was none (deleting is idempotent, as in S3).
    async fn delete_object(&self, bucket: &str, key: &str) -> ObjectResult<bool>;
    /// Up to `max` objects whose key starts with `prefix` and sorts after `start_after`.
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        max: usize,
    ) -> ObjectResult<Listing>;

    /// Begin a multipart upload of `key`. An upload is named by its bucket, key and id
    /// together: with another key, the id names no upload (`NoSuchUpload`).
    async fn create_upload(
        &self,
        bucket: &str,
        key: &str,
        object: NewObject,
    ) -> ObjectResult<UploadInfo>;
    /// The upload, without its parts.
    async fn upload_info(&self, bucket: &str, key: &str, upload: &str) -> ObjectResult<UploadInfo>;
    /// Store part `number` (1 to [`MAX_PART_NUMBER`]) of an upload, replacing an earlier part
    /// of that number.
    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload: &str,
        number: u32,
        part: NewPart,
        body: ByteStream,
    ) -> ObjectResult<PartInfo>;
    /// The upload and its parts, by number.
    async fn upload(
        &self,
        bucket: &str,
        key: &str,
        upload: &str,
    ) -> ObjectResult<(UploadInfo, Vec<PartInfo>)>;
    /// Uploads in progress under `prefix`, by key then initiation.
    async fn uploads(&self, bucket: &str, prefix: &str) -> ObjectResult<Vec<UploadInfo>>;
    /// Make the listed parts (number, ETag), in ascending order, one object — atomically, if
    /// `condition` holds — and end the upload; parts not listed are discarded. Every part but
    /// the last is at least [`MIN_PART_BYTES`]. The object's ETag is S3's multipart ETag: the
    /// MD5 of the parts' binary MD5s, `-` and the part count. `headers` join those the upload
    /// was created with (the S3 service adds the object's checksum, made of the parts').
    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload: &str,
        parts: &[(u32, String)],
        headers: BTreeMap<String, String>,
        condition: PutCondition,
    ) -> ObjectResult<ObjectInfo>;
    /// Discard an upload and its parts.
    async fn abort_upload(&self, bucket: &str, key: &str, upload: &str) -> ObjectResult<()>;

    /// Replace `bucket`'s notification configuration; changes committed from then on follow it.
    async fn set_notifications(
        &self,
        bucket: &str,
        rules: Vec<NotificationRule>,
    ) -> ObjectResult<()>;
    /// Up to `max` recorded events not yet settled, by sequence number.
    async fn pending_events(&self, max: usize) -> ObjectResult<Vec<ObjectEvent>>;
    /// Forget events up to and including sequence number `through`.
    async fn settle_events(&self, through: u64) -> ObjectResult<()>;
    /// Returns once an event may have been recorded since the last return (at once if one
    /// was). For one relay: waiters share one wake-up.
    async fn events_recorded(&self);
}

/// S3's ETag of a multipart object: the hex MD5 of the parts' binary MD5s, `-`, the count.
/// `None` if a part's ETag is not hex MD5.
pub fn multipart_etag(part_etags: &[&str]) -> Option<String> {
    use md5::Digest as _;
    let mut md5 = md5::Md5::new();
    for etag in part_etags {
        let bytes = hex::decode(etag).ok()?;
        md5.update(&bytes);
    }
    Some(format!(
        "{}-{}",
        hex::encode(md5.finalize()),
        part_etags.len()
    ))
}

/// Can a store hold `key`?
pub fn check_key(key: &str) -> ObjectResult<()> {
    if key.is_empty() {
        return Err(ObjectError::InvalidKey("a key cannot be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ObjectError::InvalidKey(format!(
            "a key is at most {MAX_KEY_BYTES} bytes, this one is {}",
            key.len()
        )));
    }
    Ok(())
}
