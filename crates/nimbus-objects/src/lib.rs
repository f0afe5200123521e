//! The S3-compatible object service.
//!
//! [`Objects`] implements s3s's `S3` trait — the operations — over any
//! [`nimbus_store::ObjectStore`]; s3s owns the wire protocol (routing, XML, SigV4/V2, chunked
//! payloads, error bodies). [`Access`] decides, after the signature checks out and before an
//! operation runs, whether the caller may touch the bucket (and a copy's source bucket): an
//! app's key reaches that app's buckets only, an operator's key every bucket.
//!
//! What S3 does that the store does not know about lives here: preconditions on reads
//! (`If-Match`, `If-None-Match`, `If-(Un)Modified-Since`, decided against the version read),
//! `Content-MD5` and `x-amz-checksum-*` verification (inside the body stream, so a mismatch
//! fails the put before it commits and the old object stays), listings with delimiters and
//! continuation tokens, and the mapping of store errors onto S3's codes.

mod access;
mod error;
mod listing;
mod meta;
mod s3;
mod verify;

pub use access::Access;
pub use s3::Objects;

/// The largest object a single PUT may store (S3's limit: 5 GiB).
pub const MAX_PUT_BYTES: u64 = 5 << 30;

/// Is `name` a bucket name S3 accepts (3–63 lower-case letters, digits, dots and hyphens, …)?
pub fn valid_bucket_name(name: &str) -> bool {
    use s3s::validation::NameValidation as _;
    s3s::validation::AwsNameValidation::new().validate_bucket_name(name)
}
