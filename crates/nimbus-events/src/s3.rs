//! Object changes in the shapes S3's users know.
//!
//! - [`record`]: one record of S3's event notification (`eventVersion` 2.1), as Lambda
//!   functions and SQS consumers receive it inside `{"Records": [...]}` ([`notification`]).
//!   The key is URL-encoded the way S3 encodes it (`red flower.jpg` → `red+flower.jpg`;
//!   handlers decode it with `unquote_plus`).
//! - [`cloudevent`]: the same change as a CloudEvent for Wasm functions, following the
//!   CloudEvents AWS S3 adapter: type `com.amazonaws.s3.<eventName>`, source
//!   `aws:s3.<region>.<bucket>`, subject the (decoded) key, data the record.

use crate::cloudevent::CloudEvent;
use crate::format::millis_to_rfc3339;
use serde_json::{Value, json};

/// Every S3 CloudEvent type starts with this.
pub const TYPE_PREFIX: &str = "com.amazonaws.s3.";
pub use nimbus_core::aws::REGION;

/// One change of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    /// S3's event name: `ObjectCreated:Put`, `ObjectRemoved:Delete`, …
    pub event_name: &'a str,
    /// Size and ETag of the object created (not sent for removals, as S3 does).
    pub size: u64,
    pub etag: &'a str,
    /// Orders the changes of one key: the store's sequence number.
    pub sequence: u64,
    pub at_ms: u64,
}

impl ObjectChange<'_> {
    fn removed(&self) -> bool {
        self.event_name.starts_with("ObjectRemoved")
    }

    /// S3's sequencer: fixed-width upper-case hex, so that comparing them as strings orders
    /// the changes of a key.
    pub fn sequencer(&self) -> String {
        format!("{:016X}", self.sequence)
    }
}

/// S3's encoding of a key in events: space as `+`, unreserved bytes and `/` as they are,
/// every other byte as `%XX`.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// One record of S3's event notification.
pub fn record(change: &ObjectChange<'_>) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("key".into(), encode_key(change.key).into());
    object.insert("sequencer".into(), change.sequencer().into());
    if !change.removed() {
        object.insert("size".into(), change.size.into());
        object.insert("eTag".into(), change.etag.into());
    }
    let request = format!("{:016X}", change.sequence);
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": millis_to_rfc3339(change.at_ms),
        "eventName": change.event_name,
        "userIdentity": { "principalId": "nimbus" },
        "requestParameters": { "sourceIPAddress": "127.0.0.1" },
        "responseElements": { "x-amz-request-id": request, "x-amz-id-2": request },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "nimbus",
            "bucket": {
                "name": change.bucket,
                "ownerIdentity": { "principalId": "nimbus" },
                "arn": format!("arn:aws:s3:::{}", change.bucket),
            },
            "object": object,
        },
    })
}

/// S3's event notification: `{"Records": [...]}`.
pub fn notification(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// The change as a CloudEvent (the AWS S3 adapter's mapping), its data the record.
pub fn cloudevent(change: &ObjectChange<'_>) -> CloudEvent {
    let mut event = CloudEvent::new(
        format!("aws:s3.{REGION}.{}", change.bucket),
        format!("{TYPE_PREFIX}{}", change.event_name),
    )
    .with_json(&record(change));
    event.id = format!("{}.{}", change.bucket, change.sequencer());
    event.subject = Some(change.key.to_owned());
    event.time = Some(millis_to_rfc3339(change.at_ms));
    event
}

/// The record inside an S3 CloudEvent, if `event` is one.
pub fn record_of(event: &CloudEvent) -> Option<Value> {
    if !event.ty.starts_with(TYPE_PREFIX) {
        return None;
    }
    event.data_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change<'a>(key: &'a str, event_name: &'a str) -> ObjectChange<'a> {
        ObjectChange {
            bucket: "uploads",
            key,
            event_name,
            size: 1024,
            etag: "d41d8cd98f00b204e9800998ecf8427e",
            sequence: 0x2a,
            at_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn keys_are_encoded_as_s3_encodes_them() {
        for (key, encoded) in [
            ("photos/cat.jpg", "photos/cat.jpg"),
            ("red flower.jpg", "red+flower.jpg"),
            ("a+b=c&d", "a%2Bb%3Dc%26d"),
            ("été", "%C3%A9t%C3%A9"),
            ("x:y~z", "x%3Ay%7Ez"),
        ] {
            assert_eq!(encode_key(key), encoded, "{key}");
        }
    }

    #[test]
    fn created_record_has_the_s3_shape() {
        let record = record(&change("in/red flower.jpg", "ObjectCreated:Put"));
        assert_eq!(record["eventSource"], "aws:s3");
        assert_eq!(record["eventVersion"], "2.1");
        assert_eq!(record["eventName"], "ObjectCreated:Put");
        assert_eq!(record["eventTime"], "2023-11-14T22:13:20.123Z");
        assert_eq!(record["awsRegion"], REGION);
        let s3 = &record["s3"];
        assert_eq!(s3["bucket"]["name"], "uploads");
        assert_eq!(s3["bucket"]["arn"], "arn:aws:s3:::uploads");
        assert_eq!(s3["object"]["key"], "in/red+flower.jpg");
        assert_eq!(s3["object"]["size"], 1024);
        assert_eq!(s3["object"]["eTag"], "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(s3["object"]["sequencer"], "000000000000002A");
    }

    #[test]
    fn removed_record_has_no_size_or_etag() {
        let record = record(&change("gone.txt", "ObjectRemoved:Delete"));
        let object = record["s3"]["object"].as_object().unwrap();
        assert!(!object.contains_key("size") && !object.contains_key("eTag"));
        assert_eq!(object["key"], "gone.txt");
    }

    #[test]
    fn cloudevent_follows_the_adapter() {
        let event = cloudevent(&change(
            "in/a b.jpg",
            "ObjectCreated:CompleteMultipartUpload",
        ));
        assert_eq!(
            event.ty,
            "com.amazonaws.s3.ObjectCreated:CompleteMultipartUpload"
        );
        assert_eq!(event.source, "aws:s3.us-east-1.uploads");
        assert_eq!(event.subject.as_deref(), Some("in/a b.jpg"));
        assert_eq!(event.time.as_deref(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(event.id, "uploads.000000000000002A");
        let data = record_of(&event).unwrap();
        assert_eq!(data["s3"]["object"]["key"], "in/a+b.jpg");
        let other = CloudEvent::new("/x", "nimbus.invoke");
        assert!(record_of(&other).is_none());
    }
}
