//! The secret reads' parsers must never panic, whatever a function sends: the local API's
//! path and query, a Secrets Manager `SecretId` (name, ARN or partial ARN) and `VersionId` /
//! `VersionStage`, all of which guest and process functions control.
//!
//! Input: a method, a path and a query separated by NUL bytes (fewer parts: GET, no query);
//! the path also serves as a `SecretId` and the query as a `VersionId`.

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
    let name = nimbus_secrets::manager::name_of("shop", path);
    assert!(path.contains(name), "{name:?} of {path:?}");
    if let Some(version) = nimbus_secrets::manager::version_of(query.unwrap_or(path)) {
        assert_eq!(
            nimbus_secrets::manager::version_of(&nimbus_secrets::manager::version_id(version)),
            Some(version)
        );
    }
    let _ = nimbus_secrets::manager::which(query, Some(path));
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    if let Ok(read) = nimbus_secrets::local::parse(&method, path, query) {
        assert!(
            nimbus_secrets::valid_name(&read.name) || read.name.starts_with("arn:"),
            "{:?}",
            read.name
        );
    }
});
