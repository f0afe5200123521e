//! The vocabulary every nimbus crate shares: names, function and route specs, outbound-host
//! rules, invocation records, the queue vocabulary and the stable error codes users see.
//!
//! This crate does no I/O and knows nothing of tokio, wasmtime or HTTP status codes (only the
//! gateway maps codes to statuses). Everything here is plain data plus pure functions, so it can
//! be tested exhaustively and depended on by every layer without dragging anything in.

pub mod aws;
pub mod claims;
pub mod clock;
pub mod error;
pub mod events;
pub mod gcra;
pub mod message;
pub mod name;
pub mod outbound;
pub mod record;
pub mod spec;

pub use error::ErrorCode;
pub use events::{
    DeliveryPolicy, Destination, EventsSpec, Missed, ObjectFilter, QueueSpec, QueueTriggerSpec,
    RuleSpec, ScheduleExpr, ScheduleSpec, StartingPosition, StorageTriggerSpec, TableTriggerSpec,
};
pub use name::{Name, NameError};
pub use outbound::OutboundRule;
pub use record::{InvocationRecord, Outcome, Trigger, Usage, UsageRow};
pub use spec::{
    AppSpec, AuthSpec, AuthorizerSpec, BucketGrant, BucketSpec, CorsSpec, FirewallSpec,
    FunctionAuthorizerSpec, FunctionKind, FunctionSpec, Grants, IdentitySource, InstanceMode,
    JwtAuthorizerSpec, KvGrant, KvSpec, MAX_SECRET_NAME_BYTES, Network, Permission, RateLimitKey,
    RateLimitSpec, RouteSpec, Runtime, TableGrant, TableKey, TableSpec, valid_bucket_name,
    valid_secret_name,
};
