//! What nimbus tells about what it runs. Everything derives from the one invocation record
//! each invocation emits (and from what the platform holds when asked); the invocation path
//! knows nothing of how it is exported.
//!
//! - [`metrics`]: Prometheus metrics with OpenTelemetry's FaaS names.

pub mod metrics;

pub use metrics::{Metrics, PoolState, QueueState, RouteState};
