//! Key-value changes as events on an app's bus (`[kv.NAME] events = true`).
//!
//! One CloudEvent per change: type `nimbus.kv.set`, `nimbus.kv.delete` or `nimbus.kv.expire`,
//! source `/apps/APP/kv/STORE`, subject the key, id `STORE.SEQUENCE` (the store's sequence
//! number, fixed-width, so ids sort in commit order), data `{"store", "key", "operation",
//! "version", "size", "sequence"}` — the key and what happened to it, not the value (a reader
//! that needs it reads the key; `version` says whether what it reads is this write), as Redis's
//! keyspace notifications and DynamoDB's `KEYS_ONLY` streams do.

use crate::cloudevent::CloudEvent;
use crate::format::millis_to_rfc3339;
use serde_json::json;

/// Every key-value CloudEvent type starts with this.
pub const TYPE_PREFIX: &str = "nimbus.kv.";

/// One change of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange<'a> {
    pub app: &'a str,
    pub store: &'a str,
    pub key: &'a str,
    /// `set`, `delete` or `expire`.
    pub operation: &'a str,
    /// After a set: the entry's new version and its value's size in bytes.
    pub version: Option<u64>,
    pub size: Option<u64>,
    /// The store's sequence number: orders every change of the app's stores.
    pub sequence: u64,
    pub at_ms: u64,
}

/// The change as a CloudEvent.
pub fn cloudevent(change: &KeyChange<'_>) -> CloudEvent {
    let mut event = CloudEvent::new(
        format!("/apps/{}/kv/{}", change.app, change.store),
        format!("{TYPE_PREFIX}{}", change.operation),
    )
    .with_json(&json!({
        "store": change.store,
        "key": change.key,
        "operation": change.operation,
        "version": change.version,
        "size": change.size,
        "sequence": change.sequence,
    }));
    event.id = format!("{}.{:020}", change.store, change.sequence);
    event.subject = Some(change.key.to_owned());
    event.time = Some(millis_to_rfc3339(change.at_ms));
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_a_cloudevent_naming_the_key_not_the_value() {
        let change = KeyChange {
            app: "shop",
            store: "carts",
            key: "user:7",
            operation: "set",
            version: Some(41),
            size: Some(12),
            sequence: 9,
            at_ms: 1_700_000_000_123,
        };
        let event = cloudevent(&change).to_json();
        assert_eq!(event["type"], "nimbus.kv.set");
        assert_eq!(event["source"], "/apps/shop/kv/carts");
        assert_eq!(event["subject"], "user:7");
        assert_eq!(event["id"], "carts.00000000000000000009");
        assert_eq!(event["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(
            event["data"],
            json!({"store": "carts", "key": "user:7", "operation": "set", "version": 41,
                   "size": 12, "sequence": 9})
        );
        let removed = cloudevent(&KeyChange {
            operation: "expire",
            version: None,
            size: None,
            ..change
        })
        .to_json();
        assert_eq!(removed["type"], "nimbus.kv.expire");
        assert_eq!(removed["data"]["version"], serde_json::Value::Null);
    }
}
