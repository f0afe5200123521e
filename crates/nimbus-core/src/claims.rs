//! What an authorizer proved about a caller, as functions receive it: the verified token's
//! claims (or a function authorizer's context), as JSON, in the trusted `x-nimbus-claims` header (clients cannot send it: the gateway
//! strips every client `x-nimbus-*` header), and the scopes read from them.

use serde_json::{Map, Value};

/// The trusted header carrying a verified token's claims (a JSON object, UTF-8).
pub const CLAIMS_HEADER: &str = "x-nimbus-claims";
/// The trusted header naming the kind of authorizer when it is not a token's: for a function
/// authorizer ([`FUNCTION_AUTHORIZER`]) the claims header holds the context it answered.
pub const AUTHORIZER_HEADER: &str = "x-nimbus-authorizer";
/// [`AUTHORIZER_HEADER`]'s value for a function authorizer.
pub const FUNCTION_AUTHORIZER: &str = "function";

/// A token's scopes: OAuth's space-separated `scope`, or `scp` (a list or a string), as API
/// Gateway reads them.
pub fn scopes_of(claims: &Map<String, Value>) -> Vec<String> {
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(scope)), _) => words(scope),
        (_, Some(Value::String(scp))) => words(scp),
        (_, Some(Value::Array(scp))) => scp
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let claims = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(
            scopes_of(&claims(json!({"scope": "a b  c"}))),
            ["a", "b", "c"]
        );
        assert_eq!(
            scopes_of(&claims(json!({"scp": ["a", 1, "b"]}))),
            ["a", "b"]
        );
        assert_eq!(scopes_of(&claims(json!({"scp": "a b"}))), ["a", "b"]);
        assert!(scopes_of(&claims(json!({"scope": 7}))).is_empty());
    }
}
