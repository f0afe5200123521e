//! The local API's key-value request parser must never panic, whatever a function sends: it
//! reads paths and queries any guest or process function controls.
//!
//! Input: a method, a path and a query separated by NUL bytes (fewer parts: GET, no query).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let (first, second, third) = (parts.next(), parts.next(), parts.next());
    let (method, path, query) = match (first, second) {
        (Some(method), Some(path)) => (method, path, third),
        (Some(path), None) => ("GET", path, None),
        _ => return,
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    if let Ok((store, call)) = nimbus_kv::parse(&method, path, query) {
        assert!(!store.is_empty() && !store.contains('/'), "{store:?}");
        let _ = call.writes();
    }
});
