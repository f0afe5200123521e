//! nimbus's one integration test binary: whole platforms on ephemeral ports, real components
//! built from `guests/` and `examples/`, real HTTP clients. Modules are scenarios by topic.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod support;

mod access;
mod apikeys;
mod auth;
mod authorizers;
mod browser;
mod cli;
mod deploy;
mod events;
mod gateway;
mod invariants;
mod invocation;
mod kv;
mod lambda;
mod limits;
mod metrics;
mod objects;
mod restart;
mod scenarios;
mod secrets;
mod tables;
mod tls;
mod todo;
mod uploads;
mod users;
