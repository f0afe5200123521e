//! The manifest parser must never panic, whatever the text: it reads files users write, and an
//! error must point at a line and column inside the text. The route path parser it uses (and
//! the gateway shares) is reached through `[[route]]` paths.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = nimbus_manifest::parse("fuzz.toml", text) {
        let lines = text.split('\n').count().max(1);
        assert!(
            error.line >= 1 && error.line <= lines,
            "line {} of {lines}",
            error.line
        );
        assert!(error.column >= 1, "column {}", error.column);
    }
    let _ = nimbus_route::RoutePath::parse(text);
});
