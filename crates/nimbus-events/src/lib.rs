//! nimbus's asynchronous side, as pure logic: everything decided between "an event was
//! accepted" and "a function handled it", without I/O, an async runtime or a store.
//!
//! - [`policy`]: the delivery policy's decisions (backoff with jitter, max attempts, max age).
//! - [`pattern`]: EventBridge-style event patterns, compiled once into matchers.
//! - [`schedule`]: cron (with seconds and time zones) and rates, and exactly-once resumption.
//! - [`cloudevent`]: CloudEvents 1.0, structured and HTTP binary modes.
//! - [`format`]: the shapes events are delivered in (CloudEvents binary mode for Wasm; SQS,
//!   EventBridge and destination records for Lambda-style functions).
//! - [`s3`]: object changes as S3's event notification records, and as CloudEvents.
//! - [`dynamodb`]: table changes as Lambda's DynamoDB stream events, and as CloudEvents.
//! - [`kv`]: key-value changes as CloudEvents for the bus.
//!
//! Decisions are pure functions and table-tested. The durable queues they act on sit behind
//! `nimbus_store::Queue`; the server's driver moves messages between a queue and the pools.

pub mod cloudevent;
pub mod dynamodb;
pub mod format;
pub mod kv;
pub mod pattern;
pub mod policy;
pub mod s3;
pub mod schedule;

pub use cloudevent::CloudEvent;
pub use nimbus_core::message::{
    self, Dead, Leased, MessageKind, MessageMeta, NewMessage, Peeked, QueueStats,
};
pub use pattern::{Pattern, Rules};
