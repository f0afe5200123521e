//! nimbus-store-redb
