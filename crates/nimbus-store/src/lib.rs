//! nimbus-store
