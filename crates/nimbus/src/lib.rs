//! nimbus
