//! The S3 operations over the store. Each answers as S3 does; what is not here is refused by
//! s3s with `NotImplemented` (docs/objects.md lists both).

use crate::access::access_denied;
use crate::checksums::{self, Algorithm, Listed, UploadChecksum};
use crate::error::{precondition_failed, s3_error, with_request_id};
use crate::listing::{self, MAX_KEYS};
use crate::meta::{self, Described};
use crate::verify::{self, Expect};
use nimbus_aws::{Principal, RequestId};
use nimbus_store::{ByteRange, NewPart, ObjectInfo, ObjectStore, PartInfo, PutCondition};
use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, s3_error};
use std::sync::Arc;

/// The S3 service over an object store.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
}

impl Objects {
    pub fn new(store: Arc<dyn ObjectStore>) -> Objects {
        Objects { store }
    }
}

/// The principal [`crate::Access`] left in the request.
fn principal<T>(req: &S3Request<T>) -> S3Result<&Principal> {
    req.extensions.get::<Principal>().ok_or_else(access_denied)
}

fn owned_by(principal: &Principal) -> impl Fn(Option<&str>) -> bool + '_ {
    move |owner| match principal {
        Principal::Operator => owner.is_none(),
        Principal::App(app) => owner == Some(app.as_str()),
        Principal::Anonymous | Principal::Function { .. } => false,
    }
}

fn store_error(error: nimbus_store::ObjectError) -> S3Error {
    s3_error(error, |_| false)
}

fn owner() -> Owner {
    Owner {
        display_name: Some("nimbus".to_owned()),
        id: Some("nimbus".to_owned()),
    }
}

fn etag_matches(condition: &ETagCondition, info: &ObjectInfo) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(etag) => etag.value() == info.etag,
    }
}

fn modified_since(info: &ObjectInfo, since: &Timestamp) -> bool {
    (info.last_modified_ms / 1000) as i64 > meta::seconds(since)
}

/// The read preconditions of GET and HEAD, in S3's order, against the version read.
fn check_read(
    info: &ObjectInfo,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    match (if_match, if_unmodified_since) {
        (Some(condition), _) if !etag_matches(condition, info) => {
            return Err(precondition_failed());
        }
        (None, Some(since)) if modified_since(info, since) => return Err(precondition_failed()),
        _ => {}
    }
    let not_modified = match (if_none_match, if_modified_since) {
        (Some(condition), _) => etag_matches(condition, info),
        (None, Some(since)) => !modified_since(info, since),
        (None, None) => false,
    };
    if not_modified {
        let mut error = s3_error!(NotModified, "Not Modified");
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(&format!("\"{}\"", info.etag)) {
            headers.insert(http::header::ETAG, value);
        }
        error.set_headers(headers);
        return Err(error);
    }
    Ok(())
}

/// S3's answer to a `partNumber` other than 1 on a single-part object.
/// What a read asks for: a range or a part (`partNumber`), not both, as S3 says.
fn read_range(range: Option<&Range>, part: Option<i32>) -> S3Result<Option<ByteRange>> {
    match (range, part) {
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        (Some(range), None) => Ok(Some(byte_range(range))),
        (None, Some(n)) => match u32::try_from(n) {
            Ok(n) if (1..=nimbus_store::objects::MAX_PART_NUMBER).contains(&n) => {
                Ok(Some(ByteRange::Part(n)))
            }
            _ => Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )),
        },
        (None, None) => Ok(None),
    }
}

/// How many parts a read by part number reports (none for other reads, as S3).
fn parts_count(range: Option<ByteRange>, info: &ObjectInfo) -> Option<i32> {
    match range {
        Some(ByteRange::Part(_)) if !info.parts.is_empty() => Some(info.parts.len() as i32),
        _ => None,
    }
}

fn invalid_part_number() -> S3Error {
    let mut error = S3Error::with_message(
        s3s::S3ErrorCode::Custom("InvalidPartNumber".into()),
        "The requested partnumber is not satisfiable",
    );
    error.set_status_code(http::StatusCode::RANGE_NOT_SATISFIABLE);
    error
}

/// An object's bytes on their way out: s3s wants a `Sync` stream with its length.
struct Outgoing {
    inner: sync_wrapper::SyncWrapper<nimbus_store::ByteStream>,
    remaining: u64,
}

impl futures::Stream for Outgoing {
    type Item = Result<bytes::Bytes, s3s::StdError>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let polled = this.inner.get_mut().as_mut().poll_next(cx);
        if let std::task::Poll::Ready(Some(Ok(bytes))) = &polled {
            this.remaining = this.remaining.saturating_sub(bytes.len() as u64);
        }
        polled
    }
}

impl s3s::stream::ByteStream for Outgoing {
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        s3s::stream::RemainingLength::new_exact(self.remaining as usize)
    }
}

/// How many bytes a read of `range` in an object of `size` answers, and its `Content-Range`
/// (none for the whole object).
/// The length a read answers and its `Content-Range`, if it reads less than the whole object
/// (a part of a single-part object is the whole object).
fn extent(range: Option<ByteRange>, info: &ObjectInfo) -> S3Result<(u64, Option<String>)> {
    let size = info.size;
    let range = match range {
        None => return Ok((size, None)),
        Some(ByteRange::Part(_)) if info.parts.is_empty() => return Ok((size, None)),
        Some(range) => range,
    };
    let bytes = range
        .resolve(size, &info.parts)
        .ok_or_else(|| match range {
            ByteRange::Part(_) => invalid_part_number(),
            _ => s3_error!(InvalidRange, "The requested range is not satisfiable"),
        })?;
    let content_range = format!(
        "bytes {}-{}/{size}",
        bytes.start,
        bytes.end.saturating_sub(1)
    );
    Ok((bytes.end - bytes.start, Some(content_range)))
}

/// S3's limit on one PUT or part, judged by `Content-Length` before any byte is read (the
/// body stream enforces it again as it arrives).
fn check_length(length: Option<i64>) -> S3Result<()> {
    match length {
        Some(length) if length as u64 > crate::MAX_PUT_BYTES => Err(s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size"
        )),
        _ => Ok(()),
    }
}

fn byte_range(range: &Range) -> ByteRange {
    match *range {
        Range::Int { first, last } => ByteRange::From {
            start: first,
            end: last.map(|last| last.saturating_add(1)),
        },
        Range::Suffix { length } => ByteRange::Suffix(length),
    }
}

fn max_keys(max: Option<i32>) -> S3Result<usize> {
    match max {
        None => Ok(MAX_KEYS),
        Some(n) if n < 0 => Err(s3_error!(InvalidArgument, "max-keys cannot be negative")),
        Some(n) => Ok((n as usize).min(MAX_KEYS)),
    }
}

fn url_encoded(encoding: Option<&EncodingType>) -> S3Result<bool> {
    match encoding.map(|e| e.as_str()) {
        None => Ok(false),
        Some(e) if e.eq_ignore_ascii_case(EncodingType::URL) => Ok(true),
        Some(_) => Err(s3_error!(
            InvalidArgument,
            "Invalid Encoding Method specified in Request"
        )),
    }
}

fn listed(info: ObjectInfo, encode: &impl Fn(String) -> String) -> Object {
    Object {
        e_tag: Some(meta::etag(&info)),
        last_modified: Some(meta::timestamp(info.last_modified_ms)),
        size: Some(info.size as i64),
        storage_class: Some(ObjectStorageClass::from_static(
            ObjectStorageClass::STANDARD,
        )),
        key: Some(encode(info.key)),
        ..Default::default()
    }
}

fn prefixes_list(
    prefixes: Vec<String>,
    encode: &impl Fn(String) -> String,
) -> Option<CommonPrefixList> {
    (!prefixes.is_empty()).then(|| {
        prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(encode(p)),
            })
            .collect()
    })
}

/// What a put must match, from its headers (and trailer).
fn expect(
    content_md5: Option<&str>,
    checksums: Checksum,
    algorithm: Option<&ChecksumAlgorithm>,
    headers: &http::HeaderMap,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<Expect> {
    checksums::check_values(&checksums)?;
    let mut hasher = ChecksumHasher::default();
    verify::enable_expected(&mut hasher, &checksums);
    if let Some(algorithm) = algorithm {
        verify::enable(&mut hasher, algorithm.as_str())?;
    }
    if let Some(trailer) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
        for name in trailer.split(',').filter(|n| !n.trim().is_empty()) {
            verify::enable(&mut hasher, name)?;
        }
    }
    Ok(Expect {
        md5: verify::content_md5(content_md5)?,
        checksums,
        hasher,
        trailers,
        verified_trailer: None,
        record: None,
        limit: crate::MAX_PUT_BYTES,
    })
}

/// The algorithms a part's put sends a checksum of: in a header, announced for the trailer,
/// or named alone (`x-amz-sdk-checksum-algorithm`).
fn sent_algorithms(
    checksums: &Checksum,
    algorithm: Option<&ChecksumAlgorithm>,
    headers: &http::HeaderMap,
) -> Vec<Algorithm> {
    let mut sent = Algorithm::sent_in(checksums);
    let trailer = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok());
    let named = trailer
        .into_iter()
        .flat_map(|t| t.split(','))
        .map(|name| name.trim().trim_start_matches("x-amz-checksum-"))
        .chain(algorithm.map(ChecksumAlgorithm::as_str));
    for algorithm in named.filter_map(Algorithm::parse) {
        if !sent.contains(&algorithm) {
            sent.push(algorithm);
        }
    }
    sent
}

/// The part's checksum as a response gives it.
fn part_checksum(chosen: Option<UploadChecksum>, part: &PartInfo) -> Checksum {
    chosen
        .and_then(|c| {
            let value = part.headers.get(c.algorithm.header())?;
            Some(c.into_checksum(value.clone()))
        })
        .unwrap_or_default()
}

/// How a returned checksum was made: from the parts' (as the upload chose), or of the whole
/// object, as every single-part object's is.
fn checksum_type(info: &ObjectInfo, checksum: &Checksum) -> Option<ChecksumType> {
    if Algorithm::sent_in(checksum).is_empty() {
        return None;
    }
    match UploadChecksum::read(&info.headers) {
        Some(chosen) => Some(chosen.kind()),
        None => Some(ChecksumType::from_static(ChecksumType::FULL_OBJECT)),
    }
}

/// The checksum a copy of `source` keeps: a copy is one part, so a checksum made of the
/// source's parts' checksums (`COMPOSITE`) says nothing of it and goes.
fn copied_checksum(source: &ObjectInfo) -> Checksum {
    match UploadChecksum::read(&source.headers) {
        Some(chosen) if !chosen.full_object => Checksum::default(),
        _ => Described::of(source).checksum,
    }
}

fn invalid_part() -> S3Error {
    store_error(nimbus_store::ObjectError::InvalidPart(0))
}

impl Objects {
    async fn create_bucket_(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let principal = principal(&req)?;
        let app = match principal {
            Principal::Operator => None,
            Principal::App(app) => Some(app.as_str()),
            // Access lets anonymous callers read public objects only, and functions use the
            // buckets their manifest declares.
            Principal::Anonymous | Principal::Function { .. } => return Err(access_denied()),
        };
        self.store
            .create_bucket(&req.input.bucket, app)
            .await
            .map_err(|e| s3_error(e, owned_by(principal)))?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", req.input.bucket)),
        }))
    }

    async fn delete_bucket_(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.store
            .delete_bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket_(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.store
            .bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(nimbus_aws::REGION.to_owned()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location_(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.store
            .bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        // us-east-1 answers an empty location constraint, as S3 does.
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn get_bucket_versioning_(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.store
            .bucket(&req.input.bucket)
            .await
            .map_err(store_error)?;
        // Never versioned: S3 answers an empty configuration.
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }

    async fn list_buckets_(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let principal = principal(&req)?;
        let buckets = self.store.buckets().await.map_err(store_error)?;
        let prefix = req.input.prefix.as_deref().unwrap_or("");
        let buckets: Vec<Bucket> = buckets
            .into_iter()
            .filter(|b| match principal {
                Principal::Operator => true,
                Principal::App(app) => b.app.as_deref() == Some(app.as_str()),
                Principal::Anonymous => false,
                Principal::Function { grants, .. } => grants.may_read_bucket(&b.name),
            })
            .filter(|b| b.name.starts_with(prefix))
            .map(|b| Bucket {
                bucket_region: Some(nimbus_aws::REGION.to_owned()),
                creation_date: Some(meta::timestamp(b.created_ms)),
                name: Some(b.name),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner()),
            prefix: req.input.prefix,
            continuation_token: None,
        }))
    }

    async fn put_object_(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        check_length(input.content_length)?;
        let condition = match (&input.if_none_match, &input.if_match) {
            (Some(_), Some(_)) => {
                return Err(s3_error!(
                    NotImplemented,
                    "If-Match and If-None-Match together are not supported"
                ));
            }
            (Some(ETagCondition::Any), None) => PutCondition::IfAbsent,
            (Some(_), None) => {
                return Err(s3_error!(
                    NotImplemented,
                    "If-None-Match on a PUT supports only *"
                ));
            }
            (None, Some(ETagCondition::ETag(etag))) => {
                PutCondition::IfMatch(etag.value().to_owned())
            }
            (None, Some(ETagCondition::Any)) => {
                return Err(s3_error!(NotImplemented, "If-Match on a PUT needs an ETag"));
            }
            (None, None) => PutCondition::Always,
        };
        let checksums = Checksum {
            checksum_crc32: input.checksum_crc32.clone(),
            checksum_crc32c: input.checksum_crc32c.clone(),
            checksum_sha1: input.checksum_sha1.clone(),
            checksum_sha256: input.checksum_sha256.clone(),
            checksum_crc64nvme: input.checksum_crc64nvme.clone(),
            ..Default::default()
        };
        let mut expect = expect(
            input.content_md5.as_deref(),
            checksums.clone(),
            input.checksum_algorithm.as_ref(),
            &req.headers,
            req.trailing_headers,
        )?;
        let trailing = Arc::new(std::sync::OnceLock::new());
        expect.verified_trailer = Some(trailing.clone());
        let body = match input.body {
            Some(body) => verify::verified(body, expect),
            None => verify::verified(
                StreamingBlob::wrap(
                    futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>(),
                ),
                expect,
            ),
        };
        let described = Described {
            content_type: input.content_type,
            content_encoding: input.content_encoding,
            cache_control: input.cache_control,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            expires: input.expires,
            metadata: input.metadata,
            checksum: checksums,
        };
        let object = nimbus_store::NewObject {
            trailing: Some(trailing),
            ..described.into_new_object()
        };
        let info = self
            .store
            .put_object(&input.bucket, &input.key, object, condition, body)
            .await
            .map_err(store_error)?;
        let stored = Described::of(&info).checksum;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(meta::etag(&info)),
            checksum_crc32: stored.checksum_crc32,
            checksum_crc32c: stored.checksum_crc32c,
            checksum_sha1: stored.checksum_sha1,
            checksum_sha256: stored.checksum_sha256,
            checksum_crc64nvme: stored.checksum_crc64nvme,
            size: Some(info.size as i64),
            ..Default::default()
        }))
    }

    async fn get_object_(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let range = read_range(input.range.as_ref(), input.part_number)?;
        let (info, body) = self
            .store
            .get_object(&input.bucket, &input.key, range)
            .await
            .map_err(|error| match (error, range) {
                (nimbus_store::ObjectError::InvalidRange { .. }, Some(ByteRange::Part(_))) => {
                    invalid_part_number()
                }
                (error, _) => store_error(error),
            })?;
        check_read(
            &info,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        // The store already refused a range outside the object.
        let (length, content_range) = extent(range, &info)?;
        let whole = content_range.is_none();
        let described = Described::of(&info);
        let checksum = if whole && input.checksum_mode.is_some() {
            described.checksum
        } else {
            Checksum::default()
        };
        let checksum_type = checksum_type(&info, &checksum);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::new(Outgoing {
                inner: sync_wrapper::SyncWrapper::new(body),
                remaining: length,
            })),
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(length as i64),
            content_range,
            e_tag: Some(meta::etag(&info)),
            last_modified: Some(meta::timestamp(info.last_modified_ms)),
            content_type: described.content_type,
            content_encoding: described.content_encoding,
            cache_control: described.cache_control,
            content_disposition: described.content_disposition,
            content_language: described.content_language,
            expires: described.expires,
            metadata: described.metadata,
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            checksum_type,
            parts_count: parts_count(range, &info),
            ..Default::default()
        }))
    }

    async fn head_object_(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let range = read_range(input.range.as_ref(), input.part_number)?;
        let info = self
            .store
            .head_object(&input.bucket, &input.key)
            .await
            .map_err(store_error)?;
        check_read(
            &info,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (length, content_range) = extent(range, &info)?;
        let described = Described::of(&info);
        let checksum = if content_range.is_none() && input.checksum_mode.is_some() {
            described.checksum
        } else {
            Checksum::default()
        };
        let checksum_type = checksum_type(&info, &checksum);
        Ok(S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".to_owned()),
            content_length: Some(length as i64),
            content_range,
            e_tag: Some(meta::etag(&info)),
            last_modified: Some(meta::timestamp(info.last_modified_ms)),
            content_type: described.content_type,
            content_encoding: described.content_encoding,
            cache_control: described.cache_control,
            content_disposition: described.content_disposition,
            content_language: described.content_language,
            expires: described.expires,
            metadata: described.metadata,
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            checksum_type,
            parts_count: parts_count(range, &info),
            ..Default::default()
        }))
    }

    async fn delete_object_(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.store
            .delete_object(&req.input.bucket, &req.input.key)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects_(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema"
            ));
        }
        self.store
            .bucket(&input.bucket)
            .await
            .map_err(store_error)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for object in input.delete.objects {
            match self.store.delete_object(&input.bucket, &object.key).await {
                Ok(_) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(object.key),
                            version_id: object.version_id,
                            ..Default::default()
                        });
                    }
                }
                Err(error) => {
                    let error = store_error(error);
                    errors.push(Error {
                        code: Some(error.code().as_str().to_owned()),
                        message: error.message().map(str::to_owned),
                        key: Some(object.key),
                        version_id: object.version_id,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            request_charged: None,
        }))
    }

    async fn copy_object_(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let CopySource::Bucket {
            bucket: source_bucket,
            key: source_key,
            version_id,
        } = &input.copy_source
        else {
            return Err(s3_error!(
                NotImplemented,
                "Copying from access points and outposts is not supported"
            ));
        };
        if version_id.as_deref().is_some_and(|v| v != "null") {
            return Err(s3_error!(
                NoSuchVersion,
                "The specified version does not exist."
            ));
        }
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if !replace && **source_bucket == *input.bucket && **source_key == *input.key {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself \
                 without changing the object's metadata, storage class, website redirect \
                 location or encryption attributes."
            ));
        }
        let (source, body) = self
            .store
            .get_object(source_bucket, source_key, None)
            .await
            .map_err(store_error)?;
        if source.size > crate::MAX_PUT_BYTES {
            return Err(s3_error!(
                InvalidRequest,
                "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120"
            ));
        }
        // Copy-source preconditions answer 412 either way.
        check_read(
            &source,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )
        .map_err(|error| match error.code() {
            s3s::S3ErrorCode::NotModified => precondition_failed(),
            _ => error,
        })?;
        let described = if replace {
            Described {
                content_type: input.content_type,
                content_encoding: input.content_encoding,
                cache_control: input.cache_control,
                content_disposition: input.content_disposition,
                content_language: input.content_language,
                expires: input.expires,
                metadata: input.metadata,
                checksum: copied_checksum(&source),
            }
        } else {
            Described {
                checksum: copied_checksum(&source),
                ..Described::of(&source)
            }
        };
        let object = nimbus_store::NewObject {
            origin: nimbus_store::Created::Copy,
            ..described.into_new_object()
        };
        let info = self
            .store
            .put_object(
                &input.bucket,
                &input.key,
                object,
                PutCondition::Always,
                body,
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(meta::etag(&info)),
                last_modified: Some(meta::timestamp(info.last_modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2_(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let url = url_encoded(input.encoding_type.as_ref())?;
        let after = match &input.continuation_token {
            Some(token) => Some(listing::cursor(token).ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "The continuation token provided is incorrect"
                )
            })?),
            None => input.start_after.clone(),
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = listing::list(
            &*self.store,
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            after.as_deref(),
            max,
        )
        .await
        .map_err(store_error)?;
        let encode = listing::encoder(url);
        let key_count = (page.objects.len() + page.prefixes.len()) as i32;
        let fetch_owner = input.fetch_owner.unwrap_or(false);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode(prefix)),
            delimiter: input.delimiter.map(&encode),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            is_truncated: Some(page.truncated),
            next_continuation_token: page
                .last
                .as_deref()
                .filter(|_| page.truncated)
                .map(listing::token),
            continuation_token: input.continuation_token,
            start_after: input.start_after.map(&encode),
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|o| Object {
                        owner: fetch_owner.then(owner),
                        ..listed(o, &encode)
                    })
                    .collect(),
            ),
            common_prefixes: prefixes_list(page.prefixes, &encode),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }

    async fn list_objects_(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let url = url_encoded(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = listing::list(
            &*self.store,
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            input.marker.as_deref().filter(|m| !m.is_empty()),
            max,
        )
        .await
        .map_err(store_error)?;
        let encode = listing::encoder(url);
        // S3 sends NextMarker only when a delimiter is given; clients use the last key
        // otherwise.
        let next_marker = page
            .last
            .clone()
            .filter(|_| page.truncated && input.delimiter.is_some())
            .map(&encode);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encode(prefix)),
            marker: Some(encode(input.marker.unwrap_or_default())),
            delimiter: input.delimiter.map(&encode),
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_marker,
            contents: Some(
                page.objects
                    .into_iter()
                    .map(|o| Object {
                        owner: Some(owner()),
                        ..listed(o, &encode)
                    })
                    .collect(),
            ),
            common_prefixes: prefixes_list(page.prefixes, &encode),
            encoding_type: input.encoding_type,
            request_charged: None,
        }))
    }

    async fn list_object_versions_(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_keys)?;
        let url = url_encoded(input.encoding_type.as_ref())?;
        let prefix = input.prefix.clone().unwrap_or_default();
        let page = listing::list(
            &*self.store,
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            input.key_marker.as_deref().filter(|m| !m.is_empty()),
            max,
        )
        .await
        .map_err(store_error)?;
        let encode = listing::encoder(url);
        // Unversioned: each object is its one version, "null".
        let versions = page
            .objects
            .into_iter()
            .map(|info| ObjectVersion {
                e_tag: Some(meta::etag(&info)),
                is_latest: Some(true),
                last_modified: Some(meta::timestamp(info.last_modified_ms)),
                owner: Some(owner()),
                size: Some(info.size as i64),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                version_id: Some("null".to_owned()),
                key: Some(encode(info.key)),
                ..Default::default()
            })
            .collect();
        let truncated = page.truncated;
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(input.bucket),
            prefix: Some(encode(prefix)),
            delimiter: input.delimiter.map(&encode),
            key_marker: Some(encode(input.key_marker.unwrap_or_default())),
            version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
            max_keys: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: page.last.filter(|_| truncated).map(&encode),
            next_version_id_marker: truncated.then(|| "null".to_owned()),
            versions: Some(versions),
            common_prefixes: prefixes_list(page.prefixes, &encode),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

fn part_number(number: i32) -> S3Result<u32> {
    match u32::try_from(number) {
        Ok(n) if (1..=nimbus_store::objects::MAX_PART_NUMBER).contains(&n) => Ok(n),
        _ => Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        )),
    }
}

fn initiator() -> Initiator {
    Initiator {
        display_name: Some("nimbus".to_owned()),
        id: Some("nimbus".to_owned()),
    }
}

/// The bytes of `range` (`bytes=a-b`, inclusive) that a part copy asks for.
fn copy_range(range: Option<&str>) -> S3Result<Option<ByteRange>> {
    let Some(range) = range else { return Ok(None) };
    let invalid = || {
        s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first \
             and last are the zero-based offsets of the first and last bytes to copy"
        )
    };
    let (first, last) = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(invalid)?;
    let first: u64 = first.parse().map_err(|_| invalid())?;
    let last: u64 = last.parse().map_err(|_| invalid())?;
    if last < first {
        return Err(invalid());
    }
    Ok(Some(ByteRange::From {
        start: first,
        end: Some(last + 1),
    }))
}

impl Objects {
    async fn create_multipart_upload_(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let described = Described {
            content_type: input.content_type,
            content_encoding: input.content_encoding,
            cache_control: input.cache_control,
            content_disposition: input.content_disposition,
            content_language: input.content_language,
            expires: input.expires,
            metadata: input.metadata,
            checksum: Checksum::default(),
        };
        let chosen = UploadChecksum::chosen(
            input.checksum_algorithm.as_ref(),
            input.checksum_type.as_ref(),
        )?;
        let mut object = described.into_new_object();
        if let Some(chosen) = chosen {
            chosen.write(&mut object.headers);
        }
        let upload = self
            .store
            .create_upload(&input.bucket, &input.key, object)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload.id),
            checksum_algorithm: chosen
                .map(|c| ChecksumAlgorithm::from(c.algorithm.name().to_owned())),
            checksum_type: chosen.map(UploadChecksum::kind),
            ..Default::default()
        }))
    }

    async fn upload_part_(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        let number = part_number(input.part_number)?;
        check_length(input.content_length)?;
        let checksums = Checksum {
            checksum_crc32: input.checksum_crc32,
            checksum_crc32c: input.checksum_crc32c,
            checksum_sha1: input.checksum_sha1,
            checksum_sha256: input.checksum_sha256,
            checksum_crc64nvme: input.checksum_crc64nvme,
            ..Default::default()
        };
        let upload = self
            .store
            .upload_info(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(store_error)?;
        let chosen = UploadChecksum::read(&upload.object.headers);
        if let Some(chosen) = chosen {
            chosen.check_part(&sent_algorithms(
                &checksums,
                input.checksum_algorithm.as_ref(),
                &req.headers,
            ))?;
        }
        let mut expect = expect(
            input.content_md5.as_deref(),
            checksums.clone(),
            input.checksum_algorithm.as_ref(),
            &req.headers,
            req.trailing_headers,
        )?;
        // The part keeps its checksum in the upload's algorithm (verified against what the
        // client sent, header or trailer), to make the object's checksum when it completes.
        let mut new = NewPart::default();
        if let Some(chosen) = chosen {
            let slot = Arc::new(std::sync::OnceLock::new());
            expect.verified_trailer = Some(slot.clone());
            expect.record = Some(chosen.algorithm.header());
            new.trailing = Some(slot);
        }
        let body = verify::verified(input.body.unwrap_or_else(empty_body), expect);
        let part = self
            .store
            .put_part(
                &input.bucket,
                &input.key,
                &input.upload_id,
                number,
                new,
                body,
            )
            .await
            .map_err(store_error)?;
        let checksums = match chosen {
            Some(_) => part_checksum(chosen, &part),
            None => checksums,
        };
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(part.etag)),
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn upload_part_copy_(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let number = part_number(input.part_number)?;
        let CopySource::Bucket {
            bucket: source_bucket,
            key: source_key,
            ..
        } = &input.copy_source
        else {
            return Err(s3_error!(
                NotImplemented,
                "Copying from access points and outposts is not supported"
            ));
        };
        let range = copy_range(input.copy_source_range.as_deref())?;
        let upload = self
            .store
            .upload_info(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(store_error)?;
        let chosen = UploadChecksum::read(&upload.object.headers);
        let (source, body) = self
            .store
            .get_object(source_bucket, source_key, range)
            .await
            .map_err(|error| match error {
                nimbus_store::ObjectError::InvalidRange { .. } => s3_error!(
                    InvalidRange,
                    "The x-amz-copy-source-range is outside the source object"
                ),
                other => store_error(other),
            })?;
        check_read(
            &source,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )
        .map_err(|error| match error.code() {
            s3s::S3ErrorCode::NotModified => precondition_failed(),
            _ => error,
        })?;
        // A copied part's checksum in the upload's algorithm is computed as it is copied.
        let mut new = NewPart::default();
        let body = match chosen {
            Some(chosen) => {
                let slot = Arc::new(std::sync::OnceLock::new());
                new.trailing = Some(slot.clone());
                let mut hasher = ChecksumHasher::default();
                verify::enable(&mut hasher, chosen.algorithm.name())?;
                verify::verified(
                    body,
                    Expect {
                        md5: None,
                        checksums: Checksum::default(),
                        hasher,
                        trailers: None,
                        verified_trailer: Some(slot),
                        record: Some(chosen.algorithm.header()),
                        limit: crate::MAX_PUT_BYTES,
                    },
                )
            }
            None => body,
        };
        let part = self
            .store
            .put_part(
                &input.bucket,
                &input.key,
                &input.upload_id,
                number,
                new,
                body,
            )
            .await
            .map_err(store_error)?;
        let checksum = part_checksum(chosen, &part);
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(part.etag)),
                last_modified: Some(meta::timestamp(part.last_modified_ms)),
                checksum_crc32: checksum.checksum_crc32,
                checksum_crc32c: checksum.checksum_crc32c,
                checksum_sha1: checksum.checksum_sha1,
                checksum_sha256: checksum.checksum_sha256,
                checksum_crc64nvme: checksum.checksum_crc64nvme,
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload_(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let malformed = || {
            s3_error!(
                MalformedXML,
                "The XML you provided was not well-formed or did not validate against our \
                 published schema"
            )
        };
        let listed = input
            .multipart_upload
            .and_then(|m| m.parts)
            .filter(|p| !p.is_empty())
            .ok_or_else(malformed)?;
        let (upload, stored) = self
            .store
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(store_error)?;
        let chosen = UploadChecksum::read(&upload.object.headers);
        if let Some(kind) = &input.checksum_type
            && chosen.is_none_or(|c| !c.kind().as_str().eq_ignore_ascii_case(kind.as_str()))
        {
            return Err(S3Error::with_message(
                s3s::S3ErrorCode::InvalidRequest,
                format!(
                    "The upload was created using the {} checksum mode. The complete request \
                     must use the same checksum mode.",
                    chosen.map_or("null".to_owned(), |c| c.kind().as_str().to_owned())
                ),
            ));
        }
        let mut parts = Vec::with_capacity(listed.len());
        let mut sums: Vec<(&str, u64)> = Vec::new();
        for part in &listed {
            let number = part.part_number.ok_or_else(malformed)?;
            let number = u32::try_from(number).map_err(|_| malformed())?;
            let etag = part
                .e_tag
                .clone()
                .map(ETag::into_value)
                .ok_or_else(malformed)?;
            let listed_sum = Checksum {
                checksum_crc32: part.checksum_crc32.clone(),
                checksum_crc32c: part.checksum_crc32c.clone(),
                checksum_sha1: part.checksum_sha1.clone(),
                checksum_sha256: part.checksum_sha256.clone(),
                checksum_crc64nvme: part.checksum_crc64nvme.clone(),
                ..Default::default()
            };
            let found = stored.iter().find(|p| p.number == number);
            let stored_sum = chosen.and_then(|c| found?.headers.get(c.algorithm.header()));
            match checksums::check_listed(chosen, number, &listed_sum, stored_sum) {
                Ok(()) => {}
                Err(Listed::Missing(error)) => return Err(error),
                Err(Listed::NotThePart) => return Err(invalid_part()),
            }
            if let (Some(sum), Some(found)) = (stored_sum, found) {
                sums.push((sum.as_str(), found.size));
            }
            parts.push((number, etag));
        }
        // The object's checksum, made of its parts' (and checked against the whole-object
        // checksum the request may carry).
        let mut headers = std::collections::BTreeMap::new();
        let mut object_checksum = Checksum::default();
        if let Some(chosen) = chosen {
            let value = chosen.combine(&sums)?;
            let requested = Checksum {
                checksum_crc32: input.checksum_crc32.clone(),
                checksum_crc32c: input.checksum_crc32c.clone(),
                checksum_sha1: input.checksum_sha1.clone(),
                checksum_sha256: input.checksum_sha256.clone(),
                checksum_crc64nvme: input.checksum_crc64nvme.clone(),
                ..Default::default()
            };
            if let Some(requested) = chosen.algorithm.value_in(&requested) {
                let requested = match chosen.full_object || requested.contains('-') {
                    true => requested.clone(),
                    false => format!("{requested}-{}", sums.len()),
                };
                if requested != value {
                    return Err(S3Error::with_message(
                        s3s::S3ErrorCode::BadDigest,
                        format!(
                            "The {} you specified did not match the calculated checksum.",
                            chosen.algorithm.name().to_ascii_lowercase()
                        ),
                    ));
                }
            }
            headers.insert(chosen.algorithm.header().to_owned(), value.clone());
            object_checksum = chosen.into_checksum(value);
        }
        let condition = match (&input.if_none_match, &input.if_match) {
            (Some(ETagCondition::Any), None) => PutCondition::IfAbsent,
            (None, Some(ETagCondition::ETag(etag))) => {
                PutCondition::IfMatch(etag.value().to_owned())
            }
            (None, None) => PutCondition::Always,
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "CompleteMultipartUpload supports If-None-Match: * or If-Match: ETag"
                ));
            }
        };
        let info = self
            .store
            .complete_upload(
                &input.bucket,
                &input.key,
                &input.upload_id,
                &parts,
                headers,
                condition,
            )
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(meta::etag(&info)),
            checksum_crc32: object_checksum.checksum_crc32,
            checksum_crc32c: object_checksum.checksum_crc32c,
            checksum_sha1: object_checksum.checksum_sha1,
            checksum_sha256: object_checksum.checksum_sha256,
            checksum_crc64nvme: object_checksum.checksum_crc64nvme,
            checksum_type: chosen.map(UploadChecksum::kind),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload_(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        self.store
            .abort_upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(store_error)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts_(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_parts)?;
        let marker = u32::try_from(input.part_number_marker.unwrap_or(0))
            .map_err(|_| s3_error!(InvalidArgument, "part-number-marker cannot be negative"))?;
        let (upload, parts) = self
            .store
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await
            .map_err(store_error)?;
        let chosen = UploadChecksum::read(&upload.object.headers);
        let mut after: Vec<PartInfo> = parts.into_iter().filter(|p| p.number > marker).collect();
        let truncated = after.len() > max;
        after.truncate(max);
        let next = after.last().map(|p| p.number as i32);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: next,
            is_truncated: Some(truncated),
            initiator: Some(initiator()),
            owner: Some(owner()),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            parts: Some(
                after
                    .into_iter()
                    .map(|p| {
                        let checksum = part_checksum(chosen, &p);
                        Part {
                            e_tag: Some(ETag::Strong(p.etag)),
                            last_modified: Some(meta::timestamp(p.last_modified_ms)),
                            part_number: Some(p.number as i32),
                            size: Some(p.size as i64),
                            checksum_crc32: checksum.checksum_crc32,
                            checksum_crc32c: checksum.checksum_crc32c,
                            checksum_sha1: checksum.checksum_sha1,
                            checksum_sha256: checksum.checksum_sha256,
                            checksum_crc64nvme: checksum.checksum_crc64nvme,
                        }
                    })
                    .collect(),
            ),
            checksum_algorithm: chosen
                .map(|c| ChecksumAlgorithm::from(c.algorithm.name().to_owned())),
            checksum_type: chosen.map(UploadChecksum::kind),
            ..Default::default()
        }))
    }

    async fn list_multipart_uploads_(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let max = max_keys(input.max_uploads)?;
        let url = url_encoded(input.encoding_type.as_ref())?;
        let encode = listing::encoder(url);
        let prefix = input.prefix.clone().unwrap_or_default();
        let all = self
            .store
            .uploads(&input.bucket, &prefix)
            .await
            .map_err(store_error)?;
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let after = all.into_iter().filter(|u| {
            key_marker.is_empty()
                || u.key > key_marker
                || (u.key == key_marker && !id_marker.is_empty() && u.id > id_marker)
        });
        let mut uploads = Vec::new();
        let mut prefixes: Vec<String> = Vec::new();
        let mut truncated = false;
        let mut last: Option<(String, String)> = None;
        let delimiter = input.delimiter.as_deref().filter(|d| !d.is_empty());
        for upload in after {
            let common = delimiter.and_then(|d| {
                let rest = upload.key.get(prefix.len()..)?;
                let at = rest.find(d)?;
                upload
                    .key
                    .get(..prefix.len() + at + d.len())
                    .map(str::to_owned)
            });
            if common.as_ref().is_some_and(|c| prefixes.last() == Some(c)) {
                continue;
            }
            if uploads.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            last = Some((upload.key.clone(), upload.id.clone()));
            match common {
                Some(common) => prefixes.push(common),
                None => uploads.push(MultipartUpload {
                    initiated: Some(meta::timestamp(upload.initiated_ms)),
                    initiator: Some(initiator()),
                    owner: Some(owner()),
                    storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                    key: Some(encode(upload.key)),
                    upload_id: Some(upload.id),
                    ..Default::default()
                }),
            }
        }
        let (next_key, next_id) = match last.filter(|_| truncated) {
            Some((key, id)) => (Some(encode(key)), Some(id)),
            None => (None, None),
        };
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: Some(encode(prefix)),
            delimiter: input.delimiter.map(&encode),
            key_marker: Some(encode(key_marker)),
            upload_id_marker: Some(id_marker),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            uploads: Some(uploads),
            common_prefixes: prefixes_list(prefixes, &encode),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

fn empty_body() -> StreamingBlob {
    StreamingBlob::wrap(futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>())
}

/// Each operation quotes the request id in its error bodies.
macro_rules! operations {
    ($($op:ident / $imp:ident: $input:ty => $output:ty;)*) => {
        #[async_trait::async_trait]
        impl S3 for Objects {
            $(
                async fn $op(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    let id = req.extensions.get::<RequestId>().cloned();
                    self.$imp(req).await.map_err(|error| match id {
                        Some(id) => with_request_id(error, &id),
                        None => error,
                    })
                }
            )*
        }
    };
}

operations! {
    create_bucket / create_bucket_: CreateBucketInput => CreateBucketOutput;
    delete_bucket / delete_bucket_: DeleteBucketInput => DeleteBucketOutput;
    head_bucket / head_bucket_: HeadBucketInput => HeadBucketOutput;
    get_bucket_location / get_bucket_location_: GetBucketLocationInput => GetBucketLocationOutput;
    get_bucket_versioning / get_bucket_versioning_: GetBucketVersioningInput => GetBucketVersioningOutput;
    list_buckets / list_buckets_: ListBucketsInput => ListBucketsOutput;
    put_object / put_object_: PutObjectInput => PutObjectOutput;
    get_object / get_object_: GetObjectInput => GetObjectOutput;
    head_object / head_object_: HeadObjectInput => HeadObjectOutput;
    delete_object / delete_object_: DeleteObjectInput => DeleteObjectOutput;
    delete_objects / delete_objects_: DeleteObjectsInput => DeleteObjectsOutput;
    copy_object / copy_object_: CopyObjectInput => CopyObjectOutput;
    list_objects / list_objects_: ListObjectsInput => ListObjectsOutput;
    list_objects_v2 / list_objects_v2_: ListObjectsV2Input => ListObjectsV2Output;
    list_object_versions / list_object_versions_: ListObjectVersionsInput => ListObjectVersionsOutput;
    create_multipart_upload / create_multipart_upload_: CreateMultipartUploadInput => CreateMultipartUploadOutput;
    upload_part / upload_part_: UploadPartInput => UploadPartOutput;
    upload_part_copy / upload_part_copy_: UploadPartCopyInput => UploadPartCopyOutput;
    complete_multipart_upload / complete_multipart_upload_: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
    abort_multipart_upload / abort_multipart_upload_: AbortMultipartUploadInput => AbortMultipartUploadOutput;
    list_parts / list_parts_: ListPartsInput => ListPartsOutput;
    list_multipart_uploads / list_multipart_uploads_: ListMultipartUploadsInput => ListMultipartUploadsOutput;
}
