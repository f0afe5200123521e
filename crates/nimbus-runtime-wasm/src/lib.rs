//! nimbus-runtime-wasm
