//! The shapes events are delivered in, as pure functions.
//!
//! - Wasm (`wasi:http`) functions get each event as an HTTP POST in CloudEvents binary mode
//!   ([`CloudEvent::binary_headers`] plus the data as the body); queue messages become CloudEvents
//!   of type [`QUEUE_MESSAGE_TYPE`], raw asynchronous invocations of type [`INVOKE_TYPE`].
//! - Lambda-style functions get what Lambda users know: a queue batch as an SQS event
//!   (`{"Records": [...]}`, [`sqs_event`]), bus events and schedule ticks as EventBridge events
//!   ([`eventbridge_event`]), destination records as Lambda's invocation records
//!   ([`invocation_record`]). A Lambda consumer reports a partial batch failure with
//!   `{"batchItemFailures": [{"itemIdentifier": "<messageId>"}]}` ([`batch_item_failures`]).

use crate::cloudevent::CloudEvent;
use nimbus_core::message::{Leased, MessageKind};
use serde_json::{Value, json};

/// The account id in ARNs nimbus makes up for Lambda-shaped events.
pub const ACCOUNT: &str = "000000000000";
/// The region in ARNs and events.
pub const REGION: &str = "nimbus";
/// CloudEvent type of a queue message delivered to a Wasm function.
pub const QUEUE_MESSAGE_TYPE: &str = "nimbus.queue.message";
/// CloudEvent type of an asynchronous invocation's event delivered to a Wasm function.
pub const INVOKE_TYPE: &str = "nimbus.invoke";
/// CloudEvent type of a schedule tick.
pub const SCHEDULE_TYPE: &str = "nimbus.schedule.tick";
/// CloudEvent types of destination records.
pub const SUCCESS_TYPE: &str = "nimbus.invocation.success";
pub const FAILURE_TYPE: &str = "nimbus.invocation.failure";

/// Milliseconds since the epoch as RFC 3339 with milliseconds, in UTC.
pub fn millis_to_rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A queue's ARN as Lambda-shaped events name it.
pub fn queue_arn(app: &str, queue: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{app}-{queue}")
}

/// A function's ARN.
pub fn function_arn(app: &str, function: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{app}-{function}")
}

/// The message id users see: the queue's id number in decimal.
pub fn message_id(leased: &Leased) -> String {
    leased.id.to_string()
}

/// A queue message as a CloudEvent (for Wasm consumers).
pub fn queue_message_event(app: &str, queue: &str, leased: &Leased) -> CloudEvent {
    let mut event = CloudEvent::new(format!("/apps/{app}/queues/{queue}"), QUEUE_MESSAGE_TYPE);
    event.id = message_id(leased);
    event.time = Some(millis_to_rfc3339(leased.meta.enqueued_ms));
    event.datacontenttype = leased.meta.content_type.clone();
    if let Some(group) = &leased.meta.group {
        event.extensions.insert("group".into(), group.clone());
    }
    for (name, value) in &leased.meta.attributes {
        if crate::cloudevent::is_attribute_name(name) {
            event.extensions.insert(name.clone(), value.clone());
        }
    }
    event.data = (!leased.body.is_empty()).then(|| leased.body.clone());
    event
}

/// A batch of queue messages as SQS delivers it to Lambda.
pub fn sqs_event(app: &str, queue: &str, batch: &[Leased]) -> Value {
    let records: Vec<Value> = batch
        .iter()
        .map(|leased| {
            let meta = &leased.meta;
            let mut attributes = json!({
                "ApproximateReceiveCount": leased.attempt.to_string(),
                "SentTimestamp": meta.enqueued_ms.to_string(),
                "SenderId": "nimbus",
                "ApproximateFirstReceiveTimestamp": meta.enqueued_ms.to_string(),
            });
            if let Some(group) = &meta.group {
                attributes["MessageGroupId"] = group.clone().into();
                attributes["SequenceNumber"] = leased.id.to_string().into();
            }
            let message_attributes: serde_json::Map<String, Value> = meta
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), json!({"stringValue": v, "dataType": "String"})))
                .collect();
            json!({
                "messageId": message_id(leased),
                "receiptHandle": format!("{}:{}", leased.id, leased.attempt),
                "body": String::from_utf8_lossy(&leased.body),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn(app, queue),
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// A CloudEvent as an EventBridge event. Schedule ticks use EventBridge's `Scheduled Event`
/// detail type.
pub fn eventbridge_event(event: &CloudEvent) -> Value {
    let detail_type = if event.ty == SCHEDULE_TYPE {
        "Scheduled Event".to_owned()
    } else {
        event.ty.clone()
    };
    let detail = event.data_json().unwrap_or_else(|| match &event.data {
        Some(data) => Value::String(String::from_utf8_lossy(data).into_owned()),
        None => json!({}),
    });
    json!({
        "version": "0",
        "id": event.id,
        "detail-type": detail_type,
        "source": event.source,
        "account": ACCOUNT,
        "time": event.time.clone().unwrap_or_default(),
        "region": REGION,
        "resources": event.subject.iter().collect::<Vec<_>>(),
        "detail": detail,
    })
}

/// What an invocation's record says about how it ended.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    /// `Success`, `RetriesExhausted` or `EventAgeExceeded`.
    pub condition: &'a str,
    pub attempts: u32,
    pub status: u16,
    /// The error code, on failure.
    pub error: Option<&'a str>,
    pub response: Value,
    /// When the outcome was reached (the record's timestamp).
    pub at_ms: u64,
}

/// Lambda's destination invocation record.
pub fn invocation_record(
    app: &str,
    function: &str,
    version: u64,
    invocation: &str,
    request: Value,
    outcome: &Outcome<'_>,
) -> Value {
    let mut response_context = json!({
        "statusCode": outcome.status,
        "executedVersion": version.to_string(),
    });
    if let Some(error) = outcome.error {
        response_context["functionError"] = error.into();
    }
    json!({
        "version": "1.0",
        "timestamp": millis_to_rfc3339(outcome.at_ms),
        "requestContext": {
            "requestId": invocation,
            "functionArn": format!("{}:{version}", function_arn(app, function)),
            "condition": outcome.condition,
            "approximateInvokeCount": outcome.attempts,
        },
        "requestPayload": request,
        "responseContext": response_context,
        "responsePayload": outcome.response,
    })
}

/// The event a message's body stood for, as JSON, for `requestPayload`.
pub fn request_payload(kind: &MessageKind, body: &[u8]) -> Value {
    match kind {
        MessageKind::Event => serde_json::from_slice(body).unwrap_or(Value::Null),
        _ => serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned())),
    }
}

/// The message ids a Lambda consumer reported as failed, if its response says so. `None` means
/// the response is not a partial-failure report (the whole batch succeeded).
pub fn batch_item_failures(response: &[u8]) -> Option<Vec<String>> {
    let value: Value = serde_json::from_slice(response).ok()?;
    let failures = value.get("batchItemFailures")?.as_array()?;
    Some(
        failures
            .iter()
            .filter_map(|f| match f.get("itemIdentifier")? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nimbus_core::message::MessageMeta;
    use std::sync::Arc;

    fn leased(id: u64, body: &str) -> Leased {
        let mut meta = MessageMeta::new(MessageKind::Message, 1_700_000_000_000);
        meta.group = Some("g1".into());
        meta.attributes.insert("origin".into(), "test".into());
        Leased {
            queue: "shop/orders".into(),
            id,
            attempt: 2,
            meta: Arc::new(meta),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn sqs_shape() {
        let event = sqs_event("shop", "orders", &[leased(7, "{\"n\":1}"), leased(8, "x")]);
        let records = event["Records"].as_array().unwrap();
        assert_eq!(records.len(), 2);
        let first = &records[0];
        assert_eq!(first["messageId"], "7");
        assert_eq!(first["body"], "{\"n\":1}");
        assert_eq!(first["eventSource"], "aws:sqs");
        assert_eq!(
            first["eventSourceARN"],
            "arn:aws:sqs:nimbus:000000000000:shop-orders"
        );
        assert_eq!(first["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(first["attributes"]["SentTimestamp"], "1700000000000");
        assert_eq!(first["attributes"]["MessageGroupId"], "g1");
        assert_eq!(first["messageAttributes"]["origin"]["stringValue"], "test");
    }

    #[test]
    fn eventbridge_shape() {
        let mut event = CloudEvent::new("/apps/shop/schedules/nightly", SCHEDULE_TYPE)
            .with_json(&json!({"k": 1}));
        event.subject = Some("nightly".into());
        let bridged = eventbridge_event(&event);
        assert_eq!(bridged["detail-type"], "Scheduled Event");
        assert_eq!(bridged["detail"], json!({"k": 1}));
        assert_eq!(bridged["resources"], json!(["nightly"]));
        assert_eq!(bridged["version"], "0");
        let plain = CloudEvent::new("/orders", "order.created");
        assert_eq!(eventbridge_event(&plain)["detail"], json!({}));
        assert_eq!(eventbridge_event(&plain)["detail-type"], "order.created");
    }

    #[test]
    fn queue_messages_become_cloudevents() {
        let event = queue_message_event("shop", "orders", &leased(9, "hello"));
        assert_eq!(event.id, "9");
        assert_eq!(event.source, "/apps/shop/queues/orders");
        assert_eq!(event.ty, QUEUE_MESSAGE_TYPE);
        assert_eq!(event.extensions["group"], "g1");
        assert_eq!(event.data.as_deref(), Some(&b"hello"[..]));
    }

    #[test]
    fn partial_batch_failures() {
        assert_eq!(
            batch_item_failures(
                br#"{"batchItemFailures":[{"itemIdentifier":"7"},{"itemIdentifier":8}]}"#
            ),
            Some(vec!["7".to_owned(), "8".to_owned()])
        );
        assert_eq!(
            batch_item_failures(br#"{"batchItemFailures":[]}"#),
            Some(vec![])
        );
        assert_eq!(batch_item_failures(b"null"), None);
        assert_eq!(batch_item_failures(b"not json"), None);
    }
}
