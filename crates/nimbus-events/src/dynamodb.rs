//! Table changes in the shapes DynamoDB's users know.
//!
//! A record is built by the tables service in Lambda's shape (`eventID`, `eventName`,
//! `dynamodb: {Keys, NewImage, OldImage, SequenceNumber, …}`, `eventSourceARN`); here it is
//! wrapped for delivery:
//!
//! - [`cloudevent`]: one record as a CloudEvent for Wasm functions: type
//!   `com.amazonaws.dynamodb.<eventName>` (`INSERT`, `MODIFY`, `REMOVE`), source
//!   `/apps/<app>/tables/<table>`, id the record's `eventID`, data the record.
//! - [`stream_event`]: a batch as Lambda's DynamoDB event, `{"Records": [...]}`, in stream order.
//!   A consumer reports a partial failure with the failed record's sequence number as
//!   `itemIdentifier` ([`sequence_number`]).

use crate::cloudevent::CloudEvent;
use crate::format::millis_to_rfc3339;
use serde_json::{Value, json};

/// Every table-change CloudEvent type starts with this.
pub const TYPE_PREFIX: &str = "com.amazonaws.dynamodb.";

/// A record (Lambda's shape) of `table` of `app`, committed at `at_ms`, as a CloudEvent.
pub fn cloudevent(app: &str, table: &str, record: &Value, at_ms: u64) -> CloudEvent {
    let name = record
        .get("eventName")
        .and_then(Value::as_str)
        .unwrap_or("MODIFY");
    let mut event = CloudEvent::new(
        format!("/apps/{app}/tables/{table}"),
        format!("{TYPE_PREFIX}{name}"),
    )
    .with_json(record);
    if let Some(id) = record.get("eventID").and_then(Value::as_str) {
        event.id = id.to_owned();
    }
    event.time = Some(millis_to_rfc3339(at_ms));
    event
}

/// The record inside a table-change CloudEvent, if `event` is one.
pub fn record_of(event: &CloudEvent) -> Option<Value> {
    if !event.ty.starts_with(TYPE_PREFIX) {
        return None;
    }
    event.data_json()
}

/// Lambda's DynamoDB event: the batch's records, in stream order.
pub fn stream_event(records: Vec<Value>) -> Value {
    json!({ "Records": records })
}

/// The message attribute a queued record keeps its sequence number in, so settling a batch
/// needs no parse of the records.
pub const SEQUENCE_ATTRIBUTE: &str = "SequenceNumber";

/// Where a stream batch's retry starts, decided from the function's answer as Lambda decides
/// it for stream sources: `None` when the batch is done (no `batchItemFailures`, or an empty
/// list); else the position of the earliest record named — it and every later record are
/// retried — or 0 (the whole batch) when the answer names no record of the batch.
/// `sequences` are the batch's sequence numbers, in stream order.
pub fn checkpoint(sequences: &[Option<&str>], response: &[u8]) -> Option<usize> {
    let failed = crate::format::batch_item_failures(response)?;
    if failed.is_empty() {
        return None;
    }
    let named = sequences
        .iter()
        .position(|s| s.is_some_and(|s| failed.iter().any(|f| f == s)));
    Some(named.unwrap_or(0))
}

/// A record's sequence number: what `batchItemFailures` names it by.
pub fn sequence_number(record: &Value) -> Option<&str> {
    record.get("dynamodb")?.get("SequenceNumber")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Value {
        json!({
            "eventID": "00ab",
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "dynamodb": {"Keys": {"id": {"S": "a"}}, "SequenceNumber": "000000000000000000007"},
        })
    }

    #[test]
    fn records_become_cloudevents_and_back() {
        let event = cloudevent("shop", "orders", &record(), 1_700_000_000_000);
        assert_eq!(event.ty, "com.amazonaws.dynamodb.INSERT");
        assert_eq!(event.source, "/apps/shop/tables/orders");
        assert_eq!(event.id, "00ab");
        assert_eq!(event.time.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        let back = CloudEvent::from_json(event.to_json().to_string().as_bytes()).unwrap();
        assert_eq!(record_of(&back), Some(record()));
        let other = CloudEvent::new("/x", "com.amazonaws.s3.ObjectCreated:Put");
        assert_eq!(record_of(&other), None);
    }

    #[test]
    fn failures_are_checkpoints() {
        let batch = [Some("1"), Some("2"), Some("3")];
        assert_eq!(checkpoint(&batch, b"null"), None);
        assert_eq!(checkpoint(&batch, br#"{"batchItemFailures": []}"#), None);
        let one = br#"{"batchItemFailures": [{"itemIdentifier": "2"}]}"#;
        assert_eq!(checkpoint(&batch, one), Some(1));
        let both = br#"{"batchItemFailures": [{"itemIdentifier": "3"}, {"itemIdentifier": "2"}]}"#;
        assert_eq!(checkpoint(&batch, both), Some(1), "the earliest named");
        let stranger = br#"{"batchItemFailures": [{"itemIdentifier": "9"}]}"#;
        assert_eq!(checkpoint(&batch, stranger), Some(0), "the whole batch");
        assert_eq!(checkpoint(&[None, Some("2")], one), Some(1));
    }

    #[test]
    fn batches_are_lambda_events() {
        let event = stream_event(vec![record()]);
        assert_eq!(event["Records"][0]["eventName"], "INSERT");
        assert_eq!(
            sequence_number(&event["Records"][0]),
            Some("000000000000000000007")
        );
        assert_eq!(sequence_number(&json!({})), None);
    }
}
