//! nimbus-api
