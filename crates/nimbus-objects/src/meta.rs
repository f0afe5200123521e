//! What S3 keeps beside an object's bytes, as the store keeps it: lower-case header names in
//! [`NewObject::headers`] (`content-encoding`, `cache-control`, `content-disposition`,
//! `content-language`, `expires` as an HTTP date, `x-amz-meta-*` for user metadata and
//! `x-amz-checksum-*` for checksums the client sent), and back.

use nimbus_store::{NewObject, ObjectInfo};
use s3s::dto::{Checksum, ETag, Metadata, Timestamp, TimestampFormat};
use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

const META_PREFIX: &str = "x-amz-meta-";

pub(crate) fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

/// Whole seconds since the epoch: HTTP dates have no finer grain, so comparisons against them
/// (`If-Modified-Since`) are made in seconds.
pub(crate) fn seconds(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

pub(crate) fn etag(info: &ObjectInfo) -> ETag {
    ETag::Strong(info.etag.clone())
}

/// An object's description as a request gives it.
#[derive(Debug, Default)]
pub(crate) struct Described {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<Timestamp>,
    pub metadata: Option<Metadata>,
    pub checksum: Checksum,
}

fn http_date(ts: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    ts.format(TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

impl Described {
    pub(crate) fn into_new_object(self) -> NewObject {
        let mut headers = BTreeMap::new();
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                headers.insert(name.to_owned(), value);
            }
        };
        put("content-encoding", self.content_encoding);
        put("cache-control", self.cache_control);
        put("content-disposition", self.content_disposition);
        put("content-language", self.content_language);
        put("expires", self.expires.as_ref().and_then(http_date));
        put("x-amz-checksum-crc32", self.checksum.checksum_crc32);
        put("x-amz-checksum-crc32c", self.checksum.checksum_crc32c);
        put("x-amz-checksum-sha1", self.checksum.checksum_sha1);
        put("x-amz-checksum-sha256", self.checksum.checksum_sha256);
        put("x-amz-checksum-crc64nvme", self.checksum.checksum_crc64nvme);
        for (name, value) in self.metadata.unwrap_or_default() {
            headers.insert(format!("{META_PREFIX}{}", name.to_ascii_lowercase()), value);
        }
        NewObject {
            content_type: self.content_type,
            headers,
            ..NewObject::default()
        }
    }

    pub(crate) fn of(info: &ObjectInfo) -> Described {
        let get = |name: &str| info.headers.get(name).cloned();
        let metadata: Metadata = info
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let name = name.strip_prefix(META_PREFIX)?;
                Some((name.to_owned(), value.clone()))
            })
            .collect();
        Described {
            content_type: info.content_type.clone(),
            content_encoding: get("content-encoding"),
            cache_control: get("cache-control"),
            content_disposition: get("content-disposition"),
            content_language: get("content-language"),
            expires: get("expires")
                .and_then(|date| Timestamp::parse(TimestampFormat::HttpDate, &date).ok()),
            metadata: (!metadata.is_empty()).then_some(metadata),
            checksum: Checksum {
                checksum_crc32: get("x-amz-checksum-crc32"),
                checksum_crc32c: get("x-amz-checksum-crc32c"),
                checksum_sha1: get("x-amz-checksum-sha1"),
                checksum_sha256: get("x-amz-checksum-sha256"),
                checksum_crc64nvme: get("x-amz-checksum-crc64nvme"),
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_survives_the_store() {
        let described = Described {
            content_type: Some("image/png".into()),
            cache_control: Some("max-age=60".into()),
            expires: Some(timestamp(1_700_000_000_000)),
            metadata: Some(Metadata::from([("Owner".into(), "ada".into())])),
            checksum: Checksum {
                checksum_crc32: Some("DUoRhQ==".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let object = described.into_new_object();
        assert_eq!(object.headers["x-amz-meta-owner"], "ada");
        assert_eq!(object.headers["expires"], "Tue, 14 Nov 2023 22:13:20 GMT");
        let info = ObjectInfo {
            key: "k".into(),
            size: 0,
            etag: "e".into(),
            last_modified_ms: 0,
            content_type: object.content_type,
            headers: object.headers,
            parts: Vec::new(),
        };
        let back = Described::of(&info);
        assert_eq!(back.content_type.as_deref(), Some("image/png"));
        assert_eq!(back.cache_control.as_deref(), Some("max-age=60"));
        assert_eq!(back.expires.as_ref().map(seconds), Some(1_700_000_000));
        assert_eq!(back.metadata.unwrap()["owner"], "ada");
        assert_eq!(back.checksum.checksum_crc32.as_deref(), Some("DUoRhQ=="));
        assert_eq!(back.content_encoding, None);
    }
}
