//! HTTP ingress: accept, route, limit, hand to the dispatcher, answer.
//!
//! Every failure leaves through the shared error edge (`nimbus-wire`, which owns the one code →
//! status map): a JSON body `{"error":{"code","message","request_id"}}` with the request id
//! also in `x-request-id`. Route matching is the pure [`router`] module; the table is swapped
//! atomically on deploy ([`Gateway::set_routes`]), so a request sees either the old or the new
//! table, never a mix.

pub mod auth;
pub mod cors;
pub mod error;
pub mod firewall;
pub mod ratelimit;
pub mod router;
mod server;
pub mod stages;

pub use error::{GatewayError, status_for};
pub use server::{
    AsyncAccepted, AsyncInvoke, DRAIN_TIMEOUT, Gateway, GatewayConfig, Handler,
    IDEMPOTENCY_KEY_HEADER, INVOCATION_TYPE_HEADER, Refused, RouteStats, RouteTarget,
    async_request, serve,
};
