//! nimbus's asynchronous side: everything between "an event was accepted" and "a function
//! handled it".
//!
//! - [`engine`]: the durable queue engine (group-committed enqueues, leases, acks, retries,
//!   dead-letter queues, redrive, FIFO groups), over any [`nimbus_store::EventStore`].
//! - [`policy`]: the delivery policy's decisions (backoff with jitter, max attempts, max age).
//! - [`pattern`]: EventBridge-style event patterns, compiled once into matchers.
//! - [`schedule`]: cron (with seconds and time zones) and rates, and exactly-once resumption.
//! - [`cloudevent`]: CloudEvents 1.0, structured and HTTP binary modes.
//! - [`format`]: the shapes events are delivered in (CloudEvents binary mode for Wasm; SQS,
//!   EventBridge and destination records for Lambda-style functions).
//!
//! Decisions are pure functions and table-tested; the engine is the only stateful part, and the
//! server drives it (consumers, schedulers, the bus).

pub mod cloudevent;
pub mod engine;
pub mod format;
pub mod message;
pub mod pattern;
pub mod policy;
pub mod schedule;

pub use cloudevent::CloudEvent;
pub use engine::{Engine, EngineError, Leased, NewMessage};
pub use message::{Dead, MessageKind, MessageMeta};
pub use pattern::Pattern;
