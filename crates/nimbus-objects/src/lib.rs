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
mod checksums;
mod error;
mod listing;
mod meta;
mod provision;
mod s3;
mod verify;

pub use access::{Access, PublicBuckets};
pub use provision::{
    ProvisionError, abort_stale_uploads, check_app_buckets_empty, ensure_buckets,
    remove_app_buckets,
};
pub use s3::Objects;

/// The largest object a single PUT may store (S3's limit: 5 GiB).
pub const MAX_PUT_BYTES: u64 = 5 << 30;

/// Is `name` a bucket name S3 accepts (3–63 lower-case letters, digits, dots and hyphens,
/// …)? As the wire layer judges it, and as the manifest does.
pub fn valid_bucket_name(name: &str) -> bool {
    use s3s::validation::NameValidation as _;
    s3s::validation::AwsNameValidation::new().validate_bucket_name(name)
        && nimbus_core::valid_bucket_name(name)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    /// A request that trips a parser bug inside s3s (its SigV4 date parser subtracts before it
    /// checks for a digit, which panics where overflow checks are on, as in tests) is answered
    /// with an error; the endpoint keeps answering.
    #[tokio::test]
    async fn a_panic_inside_the_s3_layer_costs_only_its_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).unwrap());
        let keys = nimbus_aws::Keys::new(
            store.clone(),
            std::sync::Arc::new(nimbus_aws::MasterKey::from_bytes(&[1; 32])),
        );
        let objects: Arc<dyn nimbus_store::ObjectStore> = store;
        let service = nimbus_aws::service(
            nimbus_aws::Services {
                s3: crate::Objects::new(objects.clone()),
                access: crate::Access::new(objects, keys.clone(), Default::default()),
                json: Vec::new(),
            },
            keys,
            None,
        )
        .unwrap();
        let request = |authorization: &str| {
            http::Request::builder()
                .uri("/bucket/key")
                .header("host", "127.0.0.1")
                .header("x-amz-date", "20261201T120000Z")
                .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
                .header("authorization", authorization)
                .body(s3s::Body::empty())
                .unwrap()
        };
        let hostile = "AWS4-HMAC-SHA256 Credential=NKIA/2026120!/us-east-1/s3/aws4_request, \
                       SignedHeaders=host, Signature=00";
        let answered = nimbus_aws::call(&service, request(hostile), "r1").await;
        let status = answered.status().as_u16();
        assert!((400..=500).contains(&status), "{status}");
        let unknown = "AWS4-HMAC-SHA256 Credential=NKIAUNKNOWN/20261201/us-east-1/s3/aws4_request, \
                       SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=00";
        let answered = nimbus_aws::call(&service, request(unknown), "r2").await;
        assert_eq!(answered.status().as_u16(), 403, "still answering");
    }
}
