//! nimbus-dispatch
