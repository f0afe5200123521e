//! The shapes events are delivered in, as pure functions.
//!
//! - Wasm (`wasi:http`) functions get each event as an HTTP POST in CloudEvents binary mode
//!   ([`CloudEvent::binary_headers`] plus the data as the body); queue messages become CloudEvents
//!   of type [`QUEUE_MESSAGE_TYPE`], raw asynchronous invocations of type [`INVOKE_TYPE`].
//! - Lambda-style functions get what Lambda users know: a queue batch as an SQS event
//!   (`{"Records": [...]}`, [`sqs_event`]), bus events and schedule ticks as EventBridge events
//!   ([`eventbridge_event`]), destination records as Lambda's invocation records
//!   ([`invocation_record`]), object changes as S3 event notifications ([`crate::s3`]), table
//!   changes as DynamoDB stream events ([`crate::dynamodb`]). A
//!   Lambda consumer reports a partial batch failure with
//!   `{"batchItemFailures": [{"itemIdentifier": "<messageId>"}]}` ([`batch_item_failures`]).
//!
//! [`delivery`] puts these together: the one request a leased batch becomes, for a function of
//! a given [`EventShape`].

use crate::cloudevent::CloudEvent;
use bytes::Bytes;
use nimbus_core::message::{EventShape, Leased, MessageKind};
use serde_json::{Value, json};

pub use nimbus_core::aws::{ACCOUNT, REGION};
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
            let mut attributes = serde_json::Map::new();
            for (name, value) in [
                ("ApproximateReceiveCount", leased.attempt.to_string()),
                ("SentTimestamp", meta.enqueued_ms.to_string()),
                ("SenderId", "nimbus".to_owned()),
                (
                    "ApproximateFirstReceiveTimestamp",
                    meta.enqueued_ms.to_string(),
                ),
            ] {
                attributes.insert(name.to_owned(), value.into());
            }
            if let Some(group) = &meta.group {
                attributes.insert("MessageGroupId".to_owned(), group.clone().into());
                attributes.insert("SequenceNumber".to_owned(), leased.id.to_string().into());
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
    let mut response_context = serde_json::Map::new();
    response_context.insert("statusCode".to_owned(), outcome.status.into());
    response_context.insert("executedVersion".to_owned(), version.to_string().into());
    if let Some(error) = outcome.error {
        response_context.insert("functionError".to_owned(), error.into());
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

/// Who a delivery is for.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub app: &'a str,
    pub function: &'a str,
    /// The queue's name within the app (`orders`, `@worker`).
    pub queue: &'a str,
    pub shape: EventShape,
}

/// The HTTP request a delivery becomes, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The body is the function's event, verbatim (Lambda-style functions): no HTTP event
    /// wrapping.
    pub raw: bool,
}

impl Delivery {
    fn post(headers: Vec<(String, String)>, body: Bytes, raw: bool) -> Delivery {
        Delivery {
            method: "POST".into(),
            uri: "/".into(),
            headers,
            body,
            raw,
        }
    }

    /// A CloudEvent in HTTP binary mode.
    fn binary(mut headers: Vec<(String, String)>, event: &CloudEvent) -> Delivery {
        headers.extend(event.binary_headers());
        Delivery::post(headers, event.data.clone().unwrap_or_default(), false)
    }
}

/// The request that delivers `batch` (leased from `target.queue`, oldest first) to
/// `target.function`. Only a batch of queue messages or of table records to a
/// [`EventShape::LambdaJson`] function is delivered whole (as one SQS or DynamoDB event); for
/// everything else only the first message counts.
/// An error says why a stored event cannot be delivered (it is not retried differently).
pub fn delivery(
    target: &Target<'_>,
    batch: &[Leased],
    request_id: &str,
) -> Result<Delivery, String> {
    let first = batch.first().ok_or("nothing to deliver")?;
    let lambda = target.shape == EventShape::LambdaJson;
    let mut headers = vec![
        ("host".to_owned(), "localhost".to_owned()),
        ("x-request-id".to_owned(), request_id.to_owned()),
        ("x-nimbus-attempt".to_owned(), first.attempt.to_string()),
    ];
    if let Some(invocation) = &first.meta.invocation {
        headers.push(("x-nimbus-invocation-id".to_owned(), invocation.clone()));
    }
    Ok(match &first.meta.kind {
        MessageKind::Http {
            method,
            uri,
            headers: stored,
        } => {
            headers.extend(
                stored
                    .iter()
                    .filter(|(name, _)| name != "x-request-id" && name != "host")
                    .cloned(),
            );
            Delivery {
                method: method.clone(),
                uri: uri.clone(),
                headers,
                body: first.body.clone(),
                raw: false,
            }
        }
        MessageKind::Raw if lambda => {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
            Delivery::post(headers, first.body.clone(), true)
        }
        MessageKind::Raw => {
            let mut event = CloudEvent::new(
                format!("/apps/{}/functions/{}", target.app, target.function),
                INVOKE_TYPE,
            );
            event.id = request_id.to_owned();
            event.time = Some(millis_to_rfc3339(first.meta.enqueued_ms));
            event.datacontenttype = Some("application/json".into());
            event.data = (!first.body.is_empty()).then(|| first.body.clone());
            Delivery::binary(headers, &event)
        }
        MessageKind::Event => {
            let event = CloudEvent::from_json(&first.body).map_err(|e| e.to_string())?;
            if lambda && crate::dynamodb::record_of(&event).is_some() {
                // A table trigger's batch: every record, in stream order.
                let mut records = Vec::with_capacity(batch.len());
                for leased in batch {
                    let record = CloudEvent::from_json(&leased.body)
                        .ok()
                        .as_ref()
                        .and_then(crate::dynamodb::record_of)
                        .ok_or("a stored table record cannot be read")?;
                    records.push(record);
                }
                let body = crate::dynamodb::stream_event(records);
                return Ok(Delivery::post(headers, Bytes::from(body.to_string()), true));
            }
            if lambda {
                let body = match crate::s3::record_of(&event) {
                    Some(record) => crate::s3::notification(vec![record]),
                    None => eventbridge_event(&event),
                };
                Delivery::post(headers, Bytes::from(body.to_string()), true)
            } else {
                Delivery::binary(headers, &event)
            }
        }
        MessageKind::Message if lambda => Delivery::post(
            headers,
            Bytes::from(sqs_event(target.app, target.queue, batch).to_string()),
            true,
        ),
        MessageKind::Message => Delivery::binary(
            headers,
            &queue_message_event(target.app, target.queue, first),
        ),
        MessageKind::Record { .. } if lambda => Delivery::post(headers, first.body.clone(), true),
        MessageKind::Record { success } => {
            let mut event = CloudEvent::new(
                format!("/apps/{}/functions", target.app),
                if *success { SUCCESS_TYPE } else { FAILURE_TYPE },
            );
            event.datacontenttype = Some("application/json".into());
            event.data = Some(first.body.clone());
            Delivery::binary(headers, &event)
        }
    })
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
            "arn:aws:sqs:us-east-1:000000000000:shop-orders"
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

    fn message_of(kind: MessageKind, body: &str, invocation: Option<&str>) -> Leased {
        let mut meta = MessageMeta::new(kind, 1_700_000_000_000);
        meta.invocation = invocation.map(str::to_owned);
        Leased {
            queue: "shop/@worker".into(),
            id: 41,
            attempt: 3,
            meta: Arc::new(meta),
            body: Bytes::from(body.to_owned()),
        }
    }

    fn header<'a>(delivery: &'a Delivery, name: &str) -> Option<&'a str> {
        delivery
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_message_kind_has_one_delivery_per_shape() {
        let event = CloudEvent::new("/shop", "order.placed")
            .with_json(&json!({"id": 1}))
            .to_json()
            .to_string();
        let http = MessageKind::Http {
            method: "PUT".into(),
            uri: "/orders/1?x=y".into(),
            headers: vec![
                ("host".into(), "evil.example".into()),
                ("x-request-id".into(), "forged".into()),
                ("content-type".into(), "text/plain".into()),
            ],
        };
        // kind, body, shape → method, uri, raw, content-type, ce-type, body check
        type Case<'a> = (
            MessageKind,
            &'a str,
            EventShape,
            (&'a str, &'a str, bool, Option<&'a str>, Option<&'a str>),
        );
        let cases: Vec<Case> = vec![
            (
                http.clone(),
                "hi",
                EventShape::CloudEvents,
                ("PUT", "/orders/1?x=y", false, Some("text/plain"), None),
            ),
            (
                http,
                "hi",
                EventShape::LambdaJson,
                ("PUT", "/orders/1?x=y", false, Some("text/plain"), None),
            ),
            (
                MessageKind::Raw,
                "{\"a\":1}",
                EventShape::CloudEvents,
                (
                    "POST",
                    "/",
                    false,
                    Some("application/json"),
                    Some(INVOKE_TYPE),
                ),
            ),
            (
                MessageKind::Raw,
                "{\"a\":1}",
                EventShape::LambdaJson,
                ("POST", "/", true, Some("application/json"), None),
            ),
            (
                MessageKind::Event,
                &event,
                EventShape::CloudEvents,
                (
                    "POST",
                    "/",
                    false,
                    Some("application/json"),
                    Some("order.placed"),
                ),
            ),
            (
                MessageKind::Event,
                &event,
                EventShape::LambdaJson,
                ("POST", "/", true, None, None),
            ),
            (
                MessageKind::Message,
                "m",
                EventShape::CloudEvents,
                ("POST", "/", false, None, Some(QUEUE_MESSAGE_TYPE)),
            ),
            (
                MessageKind::Message,
                "m",
                EventShape::LambdaJson,
                ("POST", "/", true, None, None),
            ),
            (
                MessageKind::Record { success: true },
                "{}",
                EventShape::CloudEvents,
                (
                    "POST",
                    "/",
                    false,
                    Some("application/json"),
                    Some(SUCCESS_TYPE),
                ),
            ),
            (
                MessageKind::Record { success: false },
                "{}",
                EventShape::CloudEvents,
                (
                    "POST",
                    "/",
                    false,
                    Some("application/json"),
                    Some(FAILURE_TYPE),
                ),
            ),
            (
                MessageKind::Record { success: false },
                "{}",
                EventShape::LambdaJson,
                ("POST", "/", true, None, None),
            ),
        ];
        for (kind, body, shape, (method, uri, raw, content_type, ce_type)) in cases {
            let target = Target {
                app: "shop",
                function: "worker",
                queue: "@worker",
                shape,
            };
            let leased = message_of(kind.clone(), body, Some("inv-1"));
            let got = delivery(&target, std::slice::from_ref(&leased), "req-9").unwrap();
            let what = format!("{kind:?} to {shape:?}");
            assert_eq!(
                (got.method.as_str(), got.uri.as_str(), got.raw),
                (method, uri, raw),
                "{what}"
            );
            assert_eq!(header(&got, "content-type"), content_type, "{what}");
            assert_eq!(header(&got, "ce-type"), ce_type, "{what}");
            // The platform's own headers win over stored ones, and come once.
            assert_eq!(header(&got, "host"), Some("localhost"), "{what}");
            assert_eq!(header(&got, "x-request-id"), Some("req-9"), "{what}");
            assert_eq!(
                got.headers
                    .iter()
                    .filter(|(n, _)| n == "x-request-id")
                    .count(),
                1,
                "{what}"
            );
            assert_eq!(header(&got, "x-nimbus-attempt"), Some("3"), "{what}");
            assert_eq!(
                header(&got, "x-nimbus-invocation-id"),
                Some("inv-1"),
                "{what}"
            );
        }
    }

    #[test]
    fn lambda_deliveries_carry_the_lambda_event() {
        let lambda = Target {
            app: "shop",
            function: "worker",
            queue: "orders",
            shape: EventShape::LambdaJson,
        };
        let batch = [leased(7, "a"), leased(8, "b")];
        let sqs = delivery(&lambda, &batch, "r").unwrap();
        let parsed: Value = serde_json::from_slice(&sqs.body).unwrap();
        assert_eq!(
            parsed["Records"].as_array().unwrap().len(),
            2,
            "the whole batch, once"
        );
        let event = CloudEvent::new("/shop", "order.placed").with_json(&json!({"id": 1}));
        let leased = message_of(MessageKind::Event, &event.to_json().to_string(), None);
        let bridge = delivery(&lambda, &[leased], "r").unwrap();
        let parsed: Value = serde_json::from_slice(&bridge.body).unwrap();
        assert_eq!(parsed["detail-type"], "order.placed");
        assert_eq!(parsed["detail"]["id"], 1);
        let raw = message_of(MessageKind::Raw, "{\"verbatim\":true}", None);
        assert_eq!(
            delivery(&lambda, &[raw], "r").unwrap().body,
            "{\"verbatim\":true}"
        );
        // An object change is S3's notification, not an EventBridge event.
        let change = crate::s3::ObjectChange {
            bucket: "uploads",
            key: "a b.jpg",
            event_name: "ObjectCreated:Put",
            size: 3,
            etag: "e",
            sequence: 1,
            at_ms: 0,
        };
        let event = crate::s3::cloudevent(&change);
        let leased = message_of(MessageKind::Event, &event.to_json().to_string(), None);
        let s3 = delivery(&lambda, &[leased], "r").unwrap();
        assert!(s3.raw);
        let parsed: Value = serde_json::from_slice(&s3.body).unwrap();
        assert_eq!(parsed["Records"][0]["eventSource"], "aws:s3");
        assert_eq!(parsed["Records"][0]["s3"]["object"]["key"], "a+b.jpg");
        assert!(parsed.get("detail-type").is_none());
    }

    #[test]
    fn cloudevents_deliveries_are_binary_mode_one_message_at_a_time() {
        let wasm = Target {
            app: "shop",
            function: "worker",
            queue: "orders",
            shape: EventShape::CloudEvents,
        };
        let batch = [leased(7, "a"), leased(8, "b")];
        let got = delivery(&wasm, &batch, "r").unwrap();
        assert_eq!(got.body, "a", "only the first message");
        assert_eq!(header(&got, "ce-id"), Some("7"));
        assert_eq!(header(&got, "ce-source"), Some("/apps/shop/queues/orders"));
        let raw = message_of(MessageKind::Raw, "", None);
        let got = delivery(&wasm, &[raw], "req-5").unwrap();
        assert_eq!(
            header(&got, "ce-id"),
            Some("req-5"),
            "a raw invoke's event id is its request id"
        );
        assert!(got.body.is_empty());
        assert!(delivery(&wasm, &[], "r").is_err());
        let broken = message_of(MessageKind::Event, "not json", None);
        assert!(delivery(&wasm, &[broken], "r").is_err());
    }
}
