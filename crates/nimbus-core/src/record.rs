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
    pub outcome: Outcome,
    /// HTTP status returned to the client (for platform failures, the status of the error
    /// response nimbus sent); 0 if the client went away before an answer.
    pub status: u16,
    /// What the guest wrote to stdout and stderr during this invocation (truncated).
    pub logs: String,
}
