//! The queue vocabulary: what a queued message is (its body plus metadata saying what kind of
//! delivery it is, how often it was tried and, once dead-lettered, why), and the shapes in which
//! a queue backend hands messages out.
//!
//! Plain data shared by the queue contract (`nimbus_store::Queue`), its backends, the pure
//! event logic (`nimbus-events`) and the driver that moves messages to functions.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How the body of a message is to be read and delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum MessageKind {
    /// A message sent to a declared queue: opaque bytes.
    Message,
    /// A CloudEvent in structured (JSON) form: bus events, schedule ticks.
    Event,
    /// A raw event for one function (`invoke --async`): delivered verbatim.
    Raw,
    /// An HTTP request made asynchronous (`x-nimbus-invocation-type: event`), replayed as it
    /// arrived.
    Http {
        method: String,
        uri: String,
        headers: Vec<(String, String)>,
    },
    /// An invocation record for an `on_success`/`on_failure` destination.
    Record { success: bool },
}

/// Why an event was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeadReason {
    /// Every allowed attempt failed.
    RetriesExhausted,
    /// The event grew older than `max_age` before it could succeed.
    EventAgeExceeded,
    /// The stored metadata could not be read back (the body is kept as it was).
    Unreadable,
}

impl DeadReason {
    /// The condition name Lambda's destination records use.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::RetriesExhausted => "RetriesExhausted",
            DeadReason::EventAgeExceeded => "EventAgeExceeded",
            DeadReason::Unreadable => "Unreadable",
        }
    }
}

/// A message that exhausted its attempts or its age.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dead {
    pub reason: DeadReason,
    /// The queue it was taken from (redrive sends it back there).
    pub origin: String,
    /// The last error, `code: message`.
    pub error: String,
    pub at_ms: u64,
}

/// Metadata stored beside each message body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    pub kind: MessageKind,
    pub enqueued_ms: u64,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// Not to be delivered before this time (a retry's backoff).
    #[serde(default)]
    pub not_before_ms: u64,
    /// FIFO group: messages of one group are delivered one at a time, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// User attributes of a queue message.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The asynchronous invocation this message is, if any (status is kept under it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<String>,
    /// Set once the message is in a dead-letter queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<Dead>,
    /// What the invocation it becomes is started by, when its kind does not say
    /// (a schedule's tick, a bucket's or a table's change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<crate::Trigger>,
}

impl MessageMeta {
    pub fn new(kind: MessageKind, enqueued_ms: u64) -> MessageMeta {
        MessageMeta {
            kind,
            enqueued_ms,
            attempts: 0,
            not_before_ms: 0,
            group: None,
            content_type: None,
            attributes: BTreeMap::new(),
            invocation: None,
            dead: None,
            trigger: None,
        }
    }

    /// What the invocation this message becomes was started by.
    pub fn trigger(&self) -> crate::Trigger {
        self.trigger.unwrap_or(match self.kind {
            MessageKind::Http { .. } => crate::Trigger::Http,
            MessageKind::Message | MessageKind::Event => crate::Trigger::Pubsub,
            MessageKind::Raw | MessageKind::Record { .. } => crate::Trigger::Other,
        })
    }
}

/// The dead-letter queue of a queue.
pub fn dlq_of(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// The queue holding asynchronous invocations of a function (`@function`).
pub fn async_queue_of(function: &str) -> String {
    format!("@{function}")
}

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// `app/queue`.
    pub queue: String,
    pub meta: MessageMeta,
    pub body: Bytes,
}

/// A leased message: deliver it, then ack, retry or dead-letter it while the lease holds.
#[derive(Debug, Clone)]
pub struct Leased {
    pub queue: String,
    pub id: u64,
    /// 1 on the first delivery. Together with `queue` and `id` it names the lease: a backend
    /// refuses to settle a message under an attempt that is no longer current.
    pub attempt: u32,
    pub meta: Arc<MessageMeta>,
    pub body: Bytes,
}

/// A message as `peek` shows it.
#[derive(Debug, Clone)]
pub struct Peeked {
    pub id: u64,
    pub meta: Arc<MessageMeta>,
    pub body: Bytes,
    pub in_flight: bool,
}

/// Counts for one queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueStats {
    pub queue: String,
    /// Deliverable now.
    pub ready: usize,
    /// Leased and not yet acknowledged.
    pub in_flight: usize,
    /// Waiting for a retry's backoff, or behind their FIFO group's head.
    pub delayed: usize,
    pub oldest_enqueued_ms: Option<u64>,
}

/// The shape a function takes asynchronous deliveries in, declared by its executor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventShape {
    /// HTTP requests: events in CloudEvents binary mode, one delivery per message
    /// (`wasi:http` components).
    CloudEvents,
    /// One JSON event per invocation, as Lambda's event sources send it: queue batches as SQS
    /// events, bus events and schedule ticks as EventBridge events, destination records and raw
    /// payloads verbatim.
    LambdaJson,
}

impl EventShape {
    /// Whether a queue trigger hands this shape a whole batch in one invocation.
    pub fn takes_batches(self) -> bool {
        matches!(self, EventShape::LambdaJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Trigger;

    #[test]
    fn a_message_says_what_triggers_its_invocation() {
        let of = |kind| MessageMeta::new(kind, 0).trigger();
        assert_eq!(of(MessageKind::Message), Trigger::Pubsub);
        assert_eq!(of(MessageKind::Event), Trigger::Pubsub);
        assert_eq!(of(MessageKind::Raw), Trigger::Other);
        assert_eq!(of(MessageKind::Record { success: true }), Trigger::Other);
        let http = MessageKind::Http {
            method: "GET".into(),
            uri: "/".into(),
            headers: Vec::new(),
        };
        assert_eq!(of(http), Trigger::Http);
        // A schedule's tick or a store's change says so itself, and it survives the store.
        let mut tick = MessageMeta::new(MessageKind::Event, 0);
        tick.trigger = Some(Trigger::Timer);
        let stored: MessageMeta =
            serde_json::from_str(&serde_json::to_string(&tick).unwrap()).unwrap();
        assert_eq!(stored.trigger(), Trigger::Timer);
    }
}
