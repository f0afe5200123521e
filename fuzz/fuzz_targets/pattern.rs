//! The event-pattern parser and matcher must never panic, whatever the pattern and the event:
//! patterns come from manifests, events from anyone allowed to publish.
//!
//! Input: a pattern and an event separated by the first NUL byte (no NUL: the input is the
//! pattern, matched against a fixed event).

#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_events::Pattern;

fuzz_target!(|data: &[u8]| {
    let (pattern, event) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(pattern) = std::str::from_utf8(pattern) else {
        return;
    };
    let Ok(compiled) = Pattern::parse(pattern) else {
        return;
    };
    let fixed = serde_json::json!({
        "specversion": "1.0", "id": "1", "source": "/s", "type": "t.x",
        "data": {"n": 1.5, "s": "héllo", "a": [1, "b", null, {"c": true}], "o": {}}
    });
    let _ = compiled.matches(&fixed);
    if let Some(event) = event.and_then(|e| serde_json::from_slice::<serde_json::Value>(e).ok()) {
        let _ = compiled.matches(&event);
    }
});
