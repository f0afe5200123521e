//! The invocation record: one per invocation, whatever the trigger or executor. Logs, `nimbus
//! logs`, and later metrics, traces and metering all derive from it.

use crate::ErrorCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How an invocation ended, from the platform's point of view (a guest that answers 500 on
/// purpose still ended `Ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Timeout,
    MemoryExceeded,
    Trap,
    BadResponse,
    StartFailed,
    InitFailed,
    /// The handler reported an error.
    HandlerError,
    /// The function's process died mid-invocation.
    Crashed,
    ResponseTooLarge,
    /// The event was refused before reaching the function (not JSON, too large).
    BadEvent,
    /// The client went away before the function finished.
    Cancelled,
}

impl Outcome {
    /// As records spell it (`ok`, `timeout`, `memory_exceeded`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::MemoryExceeded => "memory_exceeded",
            Outcome::Trap => "trap",
            Outcome::BadResponse => "bad_response",
            Outcome::StartFailed => "start_failed",
            Outcome::InitFailed => "init_failed",
            Outcome::HandlerError => "handler_error",
            Outcome::Crashed => "crashed",
            Outcome::ResponseTooLarge => "response_too_large",
            Outcome::BadEvent => "bad_event",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// The error code clients saw for this outcome, if it was a failure.
    pub fn error_code(self) -> Option<ErrorCode> {
        match self {
            Outcome::Ok | Outcome::Cancelled => None,
            Outcome::Timeout => Some(ErrorCode::FunctionTimeout),
            Outcome::MemoryExceeded => Some(ErrorCode::FunctionMemoryExceeded),
            Outcome::Trap => Some(ErrorCode::FunctionTrapped),
            Outcome::BadResponse => Some(ErrorCode::FunctionBadResponse),
            Outcome::StartFailed => Some(ErrorCode::FunctionStartFailed),
            Outcome::InitFailed => Some(ErrorCode::FunctionInitFailed),
            Outcome::HandlerError => Some(ErrorCode::FunctionError),
            Outcome::Crashed => Some(ErrorCode::FunctionCrashed),
            Outcome::ResponseTooLarge => Some(ErrorCode::FunctionResponseTooLarge),
            Outcome::BadEvent => Some(ErrorCode::BadRequest),
        }
    }
}

/// What started an invocation, in OpenTelemetry's `faas.trigger` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A request through the gateway (or an HTTP request made asynchronous).
    Http,
    /// A queue message or an event from the bus.
    Pubsub,
    /// A schedule's tick.
    Timer,
    /// A change to a bucket or a table.
    Datasource,
    /// Anything else: `nimbus invoke`, an asynchronous invoke, a destination's record, an
    /// authorizer.
    #[default]
    Other,
}

impl Trigger {
    pub const ALL: [Trigger; 5] = [
        Trigger::Http,
        Trigger::Pubsub,
        Trigger::Timer,
        Trigger::Datasource,
        Trigger::Other,
    ];

    /// The `faas.trigger` attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Pubsub => "pubsub",
            Trigger::Timer => "timer",
            Trigger::Datasource => "datasource",
            Trigger::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationRecord {
    /// Position in the function's record log; assigned by the store.
    #[serde(default)]
    pub seq: u64,
    // Shared strings: a record is built on the invocation path, and cloning an `Arc<str>` the
    // pool already holds costs no allocation.
    pub request_id: Arc<str>,
    pub app: Arc<str>,
    pub function: Arc<str>,
    pub version: u64,
    /// Start time, milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// The same instant in microseconds since the Unix epoch (for latency measurements).
    #[serde(default)]
    pub start_us: u64,
    /// Wall-clock duration of the invocation in microseconds (until the response body ended).
    pub duration_us: u64,
    /// Whether a new instance had to be created for this invocation.
    pub cold: bool,
    /// What started it.
    #[serde(default)]
    pub trigger: Trigger,
    /// The memory the function is configured with, in bytes (what its GB-seconds are
    /// counted against).
    #[serde(default)]
    pub memory_bytes: u64,
    pub outcome: Outcome,
    /// HTTP status returned to the client (for platform failures, the status of the error
    /// response nimbus sent); 0 if the client went away before an answer.
    pub status: u16,
    /// What the guest wrote to stdout and stderr during this invocation (truncated).
    pub logs: String,
}

impl InvocationRecord {
    /// The billed duration: the invocation's duration rounded up to the millisecond, at least
    /// one (Lambda's 1 ms granularity).
    pub fn billed_ms(&self) -> u64 {
        self.duration_us.div_ceil(1000).max(1)
    }

    /// Configured memory (MiB) times billed duration (ms): GB-seconds × 1,024,000, exact.
    pub fn mib_ms(&self) -> u64 {
        (self.memory_bytes >> 20).saturating_mul(self.billed_ms())
    }
}

/// What a function used over a span of time (an hour, as usage is kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub invocations: u64,
    /// Invocations that failed (a client that went away is no failure).
    pub errors: u64,
    pub cold_starts: u64,
    /// Billed durations added up ([`InvocationRecord::billed_ms`]).
    pub billed_ms: u64,
    /// Configured memory × billed duration added up, in MiB·ms ([`Usage::gb_seconds`]).
    pub mib_ms: u64,
}

/// Milliseconds in the hour usage is kept by.
pub const USAGE_HOUR_MS: u64 = 3_600_000;

impl Usage {
    pub fn add(&mut self, record: &InvocationRecord) {
        self.invocations += 1;
        self.errors += u64::from(record.outcome.error_code().is_some());
        self.cold_starts += u64::from(record.cold);
        self.billed_ms = self.billed_ms.saturating_add(record.billed_ms());
        self.mib_ms = self.mib_ms.saturating_add(record.mib_ms());
    }

    pub fn merge(&mut self, other: &Usage) {
        self.invocations += other.invocations;
        self.errors += other.errors;
        self.cold_starts += other.cold_starts;
        self.billed_ms = self.billed_ms.saturating_add(other.billed_ms);
        self.mib_ms = self.mib_ms.saturating_add(other.mib_ms);
    }

    /// Lambda's GB-seconds: GiB of configured memory × seconds billed.
    pub fn gb_seconds(&self) -> f64 {
        self.mib_ms as f64 / 1024.0 / 1000.0
    }
}

/// One function's usage in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub app: String,
    pub function: String,
    /// The hour's start, milliseconds since the Unix epoch (a multiple of [`USAGE_HOUR_MS`]).
    pub hour_ms: u64,
    pub usage: Usage,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        duration_us: u64,
        memory_bytes: u64,
        outcome: Outcome,
        cold: bool,
    ) -> InvocationRecord {
        InvocationRecord {
            seq: 0,
            request_id: Arc::from("r"),
            app: Arc::from("a"),
            function: Arc::from("f"),
            version: 1,
            start_ms: 0,
            start_us: 0,
            duration_us,
            cold,
            trigger: Trigger::Http,
            memory_bytes,
            outcome,
            status: 200,
            logs: String::new(),
        }
    }

    #[test]
    fn outcomes_are_spelled_as_records_spell_them() {
        for outcome in [
            Outcome::Ok,
            Outcome::MemoryExceeded,
            Outcome::ResponseTooLarge,
        ] {
            let serialized = serde_json::to_string(&outcome).unwrap();
            assert_eq!(serialized, format!("\"{}\"", outcome.as_str()));
        }
    }

    #[test]
    fn billing_rounds_up_to_the_millisecond_and_counts_gb_seconds() {
        let mib = 1 << 20;
        assert_eq!(
            record(120_000, 256 * mib, Outcome::Ok, false).billed_ms(),
            120
        );
        assert_eq!(
            record(120_001, 256 * mib, Outcome::Ok, false).billed_ms(),
            121
        );
        assert_eq!(
            record(0, 256 * mib, Outcome::Ok, false).billed_ms(),
            1,
            "at least 1 ms"
        );
        let mut usage = Usage::default();
        usage.add(&record(120_000, 256 * mib, Outcome::Ok, true));
        usage.add(&record(880_000, 256 * mib, Outcome::Timeout, false));
        usage.add(&record(5_000, 256 * mib, Outcome::Cancelled, false));
        assert_eq!(
            (
                usage.invocations,
                usage.errors,
                usage.cold_starts,
                usage.billed_ms
            ),
            (3, 1, 1, 1005)
        );
        // 256 MiB for 1.005 s: a quarter GB for a second and a bit.
        assert!((usage.gb_seconds() - 0.25 * 1.005).abs() < 1e-12);
        let mut merged = Usage::default();
        merged.merge(&usage);
        merged.merge(&usage);
        assert_eq!(merged.mib_ms, 2 * usage.mib_ms);
    }
}
