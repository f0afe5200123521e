//! The error edge every HTTP surface of nimbus shares — the gateway, the admin API, the local
//! API for functions and the Lambda Runtime API — so a failure looks the same wherever it
//! leaves: one status per stable code ([`status_for`], the only such map), one body
//! (`{"error":{"code","message","request_id"}}`, [`ErrorBody`]) and one renderer
//! ([`error_response`]); likewise the one 202 answer of an accepted asynchronous invocation
//! ([`accepted_response`]).
//!
//! Plain `http` types with a `Bytes` body: each edge maps the body into its server's type.
//!
//! [`serve`] is the accept loop every listener runs.

pub mod apigw;
pub mod redirect;
pub mod serve;
pub mod tls;
pub use serve::{DRAIN_TIMEOUT, serve, serve_with};

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use nimbus_core::ErrorCode;
use serde::{Deserialize, Serialize};

/// The header carrying the request id on every answer.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The header carrying an accepted asynchronous invocation's id.
pub const INVOCATION_ID_HEADER: &str = "x-nimbus-invocation-id";

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// The request's id, where the edge has one (the same id is in the server's log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The body of the 202 that accepts an asynchronous invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub invocation_id: String,
    /// Always `queued`.
    pub status: String,
    /// True when an idempotency key matched an earlier request within its window: this is the
    /// earlier invocation, and nothing new was queued.
    #[serde(default)]
    pub replay: bool,
}

/// The HTTP status for each stable error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::RouteNotFound
        | ErrorCode::AppNotFound
        | ErrorCode::FunctionNotFound
        | ErrorCode::ArtifactNotFound
        | ErrorCode::QueueNotFound
        | ErrorCode::InvocationNotFound
        | ErrorCode::BucketNotFound
        | ErrorCode::ObjectNotFound
        | ErrorCode::KeyNotFound
        | ErrorCode::KvStoreNotFound
        | ErrorCode::KvKeyNotFound
        | ErrorCode::UserNotFound
        | ErrorCode::SecretNotFound => StatusCode::NOT_FOUND,
        ErrorCode::Forbidden | ErrorCode::Blocked => StatusCode::FORBIDDEN,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooManyRequests | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::FunctionTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::FunctionMemoryExceeded
        | ErrorCode::FunctionTrapped
        | ErrorCode::FunctionStartFailed
        | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::FunctionBadResponse
        | ErrorCode::FunctionInitFailed
        | ErrorCode::FunctionError
        | ErrorCode::FunctionCrashed
        | ErrorCode::FunctionResponseTooLarge => StatusCode::BAD_GATEWAY,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::BadRequest
        | ErrorCode::InvalidManifest
        | ErrorCode::InvalidComponent
        | ErrorCode::InvalidCode
        | ErrorCode::IncompatibleComponent
        | ErrorCode::DigestMismatch
        | ErrorCode::InvalidEvent => StatusCode::BAD_REQUEST,
        ErrorCode::RouteConflict
        | ErrorCode::NoPreviousVersion
        | ErrorCode::BucketExists
        | ErrorCode::BucketNotEmpty
        | ErrorCode::KvStoreNotEmpty
        | ErrorCode::TableNotEmpty
        | ErrorCode::AuthHasUsers
        | ErrorCode::UserExists => StatusCode::CONFLICT,
    }
}

/// An error with its causes, `outer: inner: root`: the form failures take in the log.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The JSON error body.
pub fn error_body(code: ErrorCode, message: &str, request_id: Option<&str>) -> Bytes {
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message: message.to_owned(),
            request_id: request_id.map(str::to_owned),
        },
    };
    to_json(&body)
}

/// The whole error answer: status for `code`, JSON body, content type and request id.
pub fn error_response(
    code: ErrorCode,
    message: &str,
    request_id: Option<&str>,
) -> http::Response<Bytes> {
    let mut response = json_response(status_for(code), error_body(code, message, request_id));
    if let Some(value) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

/// The 202 that accepts an asynchronous invocation, with its id in a header too.
pub fn accepted_response(invocation_id: &str, replay: bool) -> http::Response<Bytes> {
    let body = Accepted {
        invocation_id: invocation_id.to_owned(),
        status: "queued".to_owned(),
        replay,
    };
    let mut response = json_response(StatusCode::ACCEPTED, to_json(&body));
    if let Ok(value) = HeaderValue::from_str(invocation_id) {
        response.headers_mut().insert(INVOCATION_ID_HEADER, value);
    }
    response
}

/// JSON of the wire types above: structs of strings, numbers, booleans and unit enums, which
/// serde_json always serializes.
#[allow(
    clippy::expect_used,
    reason = "the wire types hold only strings, numbers, booleans and unit enums"
)]
fn to_json(value: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("wire types always serialize"))
}

fn json_response(status: StatusCode, body: Bytes) -> http::Response<Bytes> {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use nimbus_core::ErrorCode;
    use std::collections::HashMap;

    /// The status every code answers with, stated once more by hand: a change to
    /// [`status_for`] must be a change here too (clients rely on both).
    fn expected(code: ErrorCode) -> u16 {
        use ErrorCode::*;
        match code {
            RouteNotFound | AppNotFound | FunctionNotFound | ArtifactNotFound | QueueNotFound
            | InvocationNotFound | BucketNotFound | ObjectNotFound | KeyNotFound
            | KvStoreNotFound | KvKeyNotFound | UserNotFound | SecretNotFound => 404,
            MethodNotAllowed => 405,
            PayloadTooLarge => 413,
            TooManyRequests | RateLimited => 429,
            FunctionTimeout => 504,
            FunctionMemoryExceeded | FunctionTrapped | FunctionStartFailed | Internal => 500,
            FunctionBadResponse
            | FunctionInitFailed
            | FunctionError
            | FunctionCrashed
            | FunctionResponseTooLarge => 502,
            Unauthorized => 401,
            BadRequest
            | InvalidManifest
            | InvalidComponent
            | IncompatibleComponent
            | InvalidCode
            | DigestMismatch
            | InvalidEvent => 400,
            RouteConflict | NoPreviousVersion | BucketExists | BucketNotEmpty | KvStoreNotEmpty
            | TableNotEmpty | AuthHasUsers | UserExists => 409,
            Forbidden | Blocked => 403,
        }
    }

    /// `code` → status from the error table of docs/api.md (`| `a` / `b` | 404 | … |`).
    fn documented() -> HashMap<String, u16> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md");
        let text = std::fs::read_to_string(path).expect("docs/api.md");
        let mut out = HashMap::new();
        for line in text.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (Some(codes), Some(status)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            let Ok(status) = status.parse::<u16>() else {
                continue;
            };
            for code in codes.split('/') {
                let code = code.trim().trim_matches('`');
                out.insert(code.to_owned(), status);
            }
        }
        out
    }

    #[test]
    fn every_code_has_its_status_and_is_documented_with_it() {
        let docs = documented();
        for code in ErrorCode::ALL {
            assert_eq!(
                status_for(code).as_u16(),
                expected(code),
                "status of {code}"
            );
            assert_eq!(
                docs.get(code.as_str()).copied(),
                Some(expected(code)),
                "docs/api.md's error table must list `{code}` with status {}",
                expected(code)
            );
        }
    }
}
