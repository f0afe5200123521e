//! A request body checked as it streams: its size against the limit, its MD5 against
//! `Content-MD5`, its `x-amz-checksum-*` values (from headers, or from the trailer of an
//! `aws-chunked` body) against the bytes. A mismatch is the stream's last item, an error, so the
//! store fails the put before it commits and the old object stays as it was.

use bytes::Bytes;
use futures::Stream;
use md5::{Digest, Md5};
use nimbus_store::{BoxError, ByteStream};
use s3s::checksum::ChecksumHasher;
use s3s::dto::Checksum;
use s3s::{S3Error, s3_error};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VerifyError {
    #[error("the Content-MD5 did not match the body")]
    Md5Mismatch,
    #[error("the {0} checksum did not match the body")]
    ChecksumMismatch(&'static str),
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
}

impl VerifyError {
    pub(crate) fn to_s3(&self) -> S3Error {
        match self {
            VerifyError::Md5Mismatch => s3_error!(
                BadDigest,
                "The Content-MD5 you specified did not match what we received."
            ),
            VerifyError::ChecksumMismatch(algorithm) => S3Error::with_message(
                s3s::S3ErrorCode::BadDigest,
                format!("The {algorithm} you specified did not match the calculated checksum."),
            ),
            VerifyError::TooLarge(_) => s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size"
            ),
        }
    }
}

/// What a body must match.
pub(crate) struct Expect {
    /// The decoded `Content-MD5`.
    pub md5: Option<Vec<u8>>,
    /// Checksums the request's headers carry.
    pub checksums: Checksum,
    /// The algorithms to compute (those above, the trailer's, the requested algorithm's).
    pub hasher: ChecksumHasher,
    /// Where an `aws-chunked` body's trailing checksum arrives.
    pub trailers: Option<s3s::TrailingHeaders>,
    /// Where the trailer's checksums go once verified, to be stored with the object.
    pub verified_trailer: Option<Arc<OnceLock<BTreeMap<String, String>>>>,
    /// The checksum (by header name, its hasher enabled) whose computed value joins the
    /// trailer's in `verified_trailer`: a part's checksum in its upload's algorithm, however it
    /// came — or computed here, for a part copied from an object.
    pub record: Option<&'static str>,
    pub limit: u64,
}

/// Decode a `Content-MD5` header: base64 of 16 bytes, or S3's `InvalidDigest`.
pub(crate) fn content_md5(value: Option<&str>) -> Result<Option<Vec<u8>>, S3Error> {
    use base64::Engine as _;
    let Some(value) = value else { return Ok(None) };
    match base64::engine::general_purpose::STANDARD.decode(value) {
        Ok(digest) if digest.len() == 16 => Ok(Some(digest)),
        _ => Err(s3_error!(
            InvalidDigest,
            "The Content-MD5 you specified is not valid."
        )),
    }
}

/// Enable the hashers for `algorithm` (an `x-amz-checksum-algorithm` or trailer name).
pub(crate) fn enable(hasher: &mut ChecksumHasher, algorithm: &str) -> Result<(), S3Error> {
    let name = algorithm
        .trim()
        .trim_start_matches("x-amz-checksum-")
        .to_ascii_lowercase();
    match name.as_str() {
        "crc32" => hasher.crc32 = Some(Default::default()),
        "crc32c" => hasher.crc32c = Some(Default::default()),
        "sha1" => hasher.sha1 = Some(Default::default()),
        "sha256" => hasher.sha256 = Some(Default::default()),
        "crc64nvme" => hasher.crc64nvme = Some(Default::default()),
        _ => {
            return Err(S3Error::with_message(
                s3s::S3ErrorCode::InvalidRequest,
                format!("Checksum algorithm {algorithm:?} is not supported."),
            ));
        }
    }
    Ok(())
}

/// Enable the hashers for every checksum `expected` carries.
pub(crate) fn enable_expected(hasher: &mut ChecksumHasher, expected: &Checksum) {
    if expected.checksum_crc32.is_some() {
        hasher.crc32 = Some(Default::default());
    }
    if expected.checksum_crc32c.is_some() {
        hasher.crc32c = Some(Default::default());
    }
    if expected.checksum_sha1.is_some() {
        hasher.sha1 = Some(Default::default());
    }
    if expected.checksum_sha256.is_some() {
        hasher.sha256 = Some(Default::default());
    }
    if expected.checksum_crc64nvme.is_some() {
        hasher.crc64nvme = Some(Default::default());
    }
}

/// `body`, checked against `expect` as it streams.
pub(crate) fn verified<S, E>(body: S, expect: Expect) -> ByteStream
where
    S: Stream<Item = Result<Bytes, E>> + Unpin + Send + 'static,
    E: Into<BoxError>,
{
    Box::pin(Verified {
        body,
        state: Some(State {
            md5: expect.md5.map(|digest| (Md5::new(), digest)),
            expect_checksums: expect.checksums,
            hasher: expect.hasher,
            trailers: expect.trailers,
            verified_trailer: expect.verified_trailer,
            record: expect.record,
            limit: expect.limit,
            seen: 0,
        }),
    })
}

struct Verified<S> {
    body: S,
    /// `None` once the stream has ended.
    state: Option<State>,
}

struct State {
    md5: Option<(Md5, Vec<u8>)>,
    expect_checksums: Checksum,
    hasher: ChecksumHasher,
    trailers: Option<s3s::TrailingHeaders>,
    verified_trailer: Option<Arc<OnceLock<BTreeMap<String, String>>>>,
    record: Option<&'static str>,
    limit: u64,
    seen: u64,
}

fn mismatch(
    expected: Option<&String>,
    computed: Option<&String>,
    algorithm: &'static str,
) -> Result<(), VerifyError> {
    match (expected, computed) {
        (Some(expected), Some(computed)) if expected != computed => {
            Err(VerifyError::ChecksumMismatch(algorithm))
        }
        _ => Ok(()),
    }
}

impl State {
    fn finish(self) -> Result<(), VerifyError> {
        if let Some((md5, expected)) = self.md5
            && md5.finalize().as_slice() != expected.as_slice()
        {
            return Err(VerifyError::Md5Mismatch);
        }
        let mut expected = self.expect_checksums;
        let mut from_trailer = BTreeMap::new();
        if let Some(trailers) = self.trailers.and_then(|t| t.take()) {
            for (name, value) in trailers.iter() {
                let name = name.as_str();
                if name.starts_with("x-amz-checksum-")
                    && let Ok(value) = value.to_str()
                {
                    from_trailer.insert(name.to_owned(), value.to_owned());
                }
            }
            let value = |name: &str| {
                trailers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            expected.checksum_crc32 = expected.checksum_crc32.or(value("x-amz-checksum-crc32"));
            expected.checksum_crc32c = expected.checksum_crc32c.or(value("x-amz-checksum-crc32c"));
            expected.checksum_sha1 = expected.checksum_sha1.or(value("x-amz-checksum-sha1"));
            expected.checksum_sha256 = expected.checksum_sha256.or(value("x-amz-checksum-sha256"));
            expected.checksum_crc64nvme = expected
                .checksum_crc64nvme
                .or(value("x-amz-checksum-crc64nvme"));
        }
        let computed = self.hasher.finalize();
        if let Some(name) = self.record {
            let value = match name {
                "x-amz-checksum-crc32" => computed.checksum_crc32.as_ref(),
                "x-amz-checksum-crc32c" => computed.checksum_crc32c.as_ref(),
                "x-amz-checksum-sha1" => computed.checksum_sha1.as_ref(),
                "x-amz-checksum-sha256" => computed.checksum_sha256.as_ref(),
                "x-amz-checksum-crc64nvme" => computed.checksum_crc64nvme.as_ref(),
                _ => None,
            };
            if let Some(value) = value {
                from_trailer.insert(name.to_owned(), value.clone());
            }
        }
        mismatch(
            expected.checksum_crc32.as_ref(),
            computed.checksum_crc32.as_ref(),
            "CRC32",
        )?;
        mismatch(
            expected.checksum_crc32c.as_ref(),
            computed.checksum_crc32c.as_ref(),
            "CRC32C",
        )?;
        mismatch(
            expected.checksum_sha1.as_ref(),
            computed.checksum_sha1.as_ref(),
            "SHA1",
        )?;
        mismatch(
            expected.checksum_sha256.as_ref(),
            computed.checksum_sha256.as_ref(),
            "SHA256",
        )?;
        mismatch(
            expected.checksum_crc64nvme.as_ref(),
            computed.checksum_crc64nvme.as_ref(),
            "CRC64NVME",
        )?;
        // Every trailer checksum matched what was computed: keep them with the object.
        if let Some(slot) = self.verified_trailer
            && !from_trailer.is_empty()
        {
            let _ = slot.set(from_trailer);
        }
        Ok(())
    }
}

impl<S, E> Stream for Verified<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<BoxError>,
{
    type Item = Result<Bytes, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(state) = this.state.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(&mut this.body).poll_next(cx)) {
            Some(Ok(bytes)) => {
                state.seen += bytes.len() as u64;
                if state.seen > state.limit {
                    let limit = state.limit;
                    this.state = None;
                    return Poll::Ready(Some(Err(Box::new(VerifyError::TooLarge(limit)))));
                }
                if let Some((md5, _)) = state.md5.as_mut() {
                    md5.update(&bytes);
                }
                state.hasher.update(&bytes);
                Poll::Ready(Some(Ok(bytes)))
            }
            Some(Err(error)) => {
                this.state = None;
                Poll::Ready(Some(Err(error.into())))
            }
            None => match this.state.take().map(State::finish) {
                Some(Err(error)) => Poll::Ready(Some(Err(Box::new(error)))),
                _ => Poll::Ready(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use s3s::dto::StreamingBlob;

    fn blob(chunks: &[&'static [u8]]) -> StreamingBlob {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        StreamingBlob::wrap(futures::stream::iter(chunks))
    }

    fn expect(md5: Option<&str>, crc32: Option<&str>, limit: u64) -> Expect {
        let checksums = Checksum {
            checksum_crc32: crc32.map(str::to_owned),
            ..Default::default()
        };
        let mut hasher = ChecksumHasher::default();
        enable_expected(&mut hasher, &checksums);
        Expect {
            md5: content_md5(md5).unwrap(),
            checksums,
            hasher,
            trailers: None,
            verified_trailer: None,
            record: None,
            limit,
        }
    }

    async fn outcome(stream: ByteStream) -> Result<Vec<u8>, String> {
        stream
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .map_err(|e| e.to_string())
    }

    // MD5("hello world") and CRC32("hello world"), base64, as S3 clients send them.
    const MD5: &str = "XrY7u+Ae7tCTyyK7j1rNww==";
    const CRC32: &str = "DUoRhQ==";

    #[tokio::test]
    async fn matching_digests_pass_the_bytes_through() {
        let body = blob(&[b"hello ", b"world"]);
        let got = outcome(verified(body, expect(Some(MD5), Some(CRC32), 100))).await;
        assert_eq!(got.unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn a_mismatch_fails_at_the_end() {
        let body = blob(&[b"hello ", b"there"]);
        let got = outcome(verified(body, expect(Some(MD5), None, 100))).await;
        assert_eq!(got.unwrap_err(), VerifyError::Md5Mismatch.to_string());
        let body = blob(&[b"hello ", b"there"]);
        let got = outcome(verified(body, expect(None, Some(CRC32), 100))).await;
        assert_eq!(
            got.unwrap_err(),
            "the CRC32 checksum did not match the body"
        );
    }

    #[tokio::test]
    async fn oversize_bodies_stop_at_the_limit() {
        let body = blob(&[b"hello ", b"world"]);
        let got = outcome(verified(body, expect(None, None, 8))).await;
        assert_eq!(got.unwrap_err(), VerifyError::TooLarge(8).to_string());
    }

    #[test]
    fn content_md5_must_be_sixteen_bytes_of_base64() {
        assert!(content_md5(Some(MD5)).unwrap().is_some());
        for bad in ["not base64!", "aGVsbG8="] {
            let error = content_md5(Some(bad)).unwrap_err();
            assert_eq!(error.code(), &s3s::S3ErrorCode::InvalidDigest);
        }
    }
}
