//! Specs of the asynchronous side of an app: queues, the delivery policy every asynchronous
//! trigger shares, schedules and event-bus rules. Plain data; the manifest crate produces them,
//! `nimbus-events` gives them behaviour.

use crate::Name;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a result or failure record goes next.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum Destination {
    /// Invoke another function of the same app asynchronously with the record as its event.
    Function(Name),
    /// Enqueue the record on a queue of the same app.
    Queue(Name),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Function(name) => write!(f, "function:{name}"),
            Destination::Queue(name) => write!(f, "queue:{name}"),
        }
    }
}

/// How every asynchronous delivery to one function behaves: async invokes, queue messages,
/// schedule ticks and bus events alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPolicy {
    /// Attempts after the first one fails (so `retries + 1` attempts at most).
    pub retries: u32,
    /// Delay before the first retry; doubles per attempt, with jitter.
    #[serde(with = "crate::spec::duration_ms")]
    pub backoff: Duration,
    /// Longest delay between two attempts.
    #[serde(with = "crate::spec::duration_ms")]
    pub max_backoff: Duration,
    /// An event older than this is not attempted again: it goes to the dead-letter queue.
    #[serde(with = "crate::spec::duration_ms")]
    pub max_age: Duration,
    /// Queue that receives events that exhausted their attempts or their age; `None` means the
    /// source's own dead-letter queue (`<source>.dlq`), so nothing is ever dropped.
    pub dead_letter: Option<Name>,
    /// Where the record of a successful invocation goes.
    pub on_success: Option<Destination>,
    /// Where the record of an invocation that finally failed goes (besides the dead-letter
    /// queue).
    pub on_failure: Option<Destination>,
}

impl DeliveryPolicy {
    pub const DEFAULT_RETRIES: u32 = 2;
    pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(6 * 3600);
    pub const MAX_RETRIES: u32 = 100;
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retries: Self::DEFAULT_RETRIES,
            backoff: Self::DEFAULT_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
            max_age: Self::DEFAULT_MAX_AGE,
            dead_letter: None,
            on_success: None,
            on_failure: None,
        }
    }
}

/// A queue declared by an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSpec {
    pub name: Name,
    /// Deliver messages of the same group one at a time, in the order they were sent.
    pub fifo: bool,
}

/// A function consuming a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueTriggerSpec {
    pub queue: Name,
    pub function: Name,
    /// Messages per invocation (Lambda-style functions get them as one `Records` batch; Wasm
    /// functions get one request per message).
    pub batch_size: u32,
    /// Batches in flight at once.
    pub concurrency: u32,
}

impl QueueTriggerSpec {
    pub const DEFAULT_BATCH_SIZE: u32 = 10;
    pub const MAX_BATCH_SIZE: u32 = 1000;
    pub const DEFAULT_CONCURRENCY: u32 = 4;
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "expr")]
pub enum ScheduleExpr {
    /// Six or seven fields: seconds minutes hours day-of-month month day-of-week [year].
    Cron(String),
    /// A fixed period, from `rate(5 minutes)`.
    #[serde(with = "crate::spec::duration_ms")]
    Rate(Duration),
}

/// What a scheduler does about ticks that passed while nimbus was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    /// Forget them; fire at the next tick.
    #[default]
    Skip,
    /// Fire once at start for all of them, then continue.
    RunOnce,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Stable identity of the schedule (its last fire is remembered under it).
    pub name: String,
    pub expr: ScheduleExpr,
    /// IANA time zone the cron fields are read in.
    pub timezone: String,
    pub missed: Missed,
    pub function: Name,
    /// JSON delivered as the event's `detail`/data.
    pub payload: Option<String>,
}

/// Where a matching bus event goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub name: String,
    /// The EventBridge-style pattern, as JSON text.
    pub pattern: String,
    pub target: Destination,
}

/// Which changes of a bucket's objects count: S3's event kinds and key filters.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ObjectFilter {
    /// Object-created changes (`s3:ObjectCreated:*`).
    pub created: bool,
    /// Object-removed changes (`s3:ObjectRemoved:*`).
    pub removed: bool,
    /// Keys must start with this.
    #[serde(default)]
    pub prefix: String,
    /// Keys must end with this.
    #[serde(default)]
    pub suffix: String,
}

impl ObjectFilter {
    /// Does a change of `key` (a creation if `created`, else a removal) pass?
    pub fn matches(&self, created: bool, key: &str) -> bool {
        let wanted = if created { self.created } else { self.removed };
        wanted && key.starts_with(&self.prefix) && key.ends_with(&self.suffix)
    }
}

/// Changes of a bucket's objects that reach a function or a queue (`[[trigger.storage]]`,
/// S3's event notifications).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageTriggerSpec {
    /// A bucket the app declares.
    pub bucket: String,
    #[serde(flatten)]
    pub filter: ObjectFilter,
    pub target: Destination,
}

/// Where a table trigger starts reading a stream it has not read before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartingPosition {
    /// The oldest record the stream still keeps (24 hours back at most).
    TrimHorizon,
    /// Only changes committed after the trigger first started.
    #[default]
    Latest,
}

/// A function fed by a table's change stream (`[[trigger.table]]`, Lambda's DynamoDB event
/// source mapping). Records of one item are delivered one at a time, in commit order, even
/// across retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableTriggerSpec {
    /// A table the app declares, with a stream.
    pub table: String,
    pub function: Name,
    /// Records per invocation at most (Lambda-style functions get them as one `Records`
    /// batch; Wasm functions get one CloudEvent per record).
    pub batch_size: u32,
    /// How long to gather records before invoking with fewer than `batch_size`.
    #[serde(with = "crate::spec::duration_ms")]
    pub batching_window: Duration,
    pub starting_position: StartingPosition,
    /// An EventBridge-style pattern (JSON text) a record, in Lambda's shape, must match to be
    /// delivered; the others are skipped, as Lambda's filter criteria do.
    pub filter: Option<String>,
    /// Batches in flight at once (Lambda's parallelization factor).
    pub concurrency: u32,
}

impl TableTriggerSpec {
    pub const DEFAULT_BATCH_SIZE: u32 = 100;
    pub const MAX_BATCH_SIZE: u32 = 10_000;
    pub const MAX_BATCHING_WINDOW: Duration = Duration::from_secs(300);
    pub const DEFAULT_CONCURRENCY: u32 = 1;
    pub const MAX_CONCURRENCY: u32 = 10;

    /// The queue, within the app, that holds the records on their way to the function
    /// (`@function:table`).
    pub fn queue(&self) -> String {
        format!("@{}:{}", self.function, self.table)
    }
}

/// Everything asynchronous an app declares.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventsSpec {
    pub queues: Vec<QueueSpec>,
    pub queue_triggers: Vec<QueueTriggerSpec>,
    pub schedules: Vec<ScheduleSpec>,
    pub rules: Vec<RuleSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_triggers: Vec<StorageTriggerSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub table_triggers: Vec<TableTriggerSpec>,
}
