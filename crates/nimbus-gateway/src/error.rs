//! The one place error codes become HTTP responses.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use nimbus_core::ErrorCode;
use nimbus_runtime::{Body, Response};
use std::time::Duration;

/// The HTTP status for each stable error code.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::RouteNotFound
        | ErrorCode::AppNotFound
        | ErrorCode::FunctionNotFound
        | ErrorCode::ArtifactNotFound
        | ErrorCode::QueueNotFound
        | ErrorCode::InvocationNotFound => StatusCode::NOT_FOUND,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
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
        ErrorCode::RouteConflict | ErrorCode::NoPreviousVersion => StatusCode::CONFLICT,
    }
}

/// A failure answered by the gateway itself.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub allow: Option<String>,
}

impl GatewayError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> GatewayError {
        GatewayError {
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// The JSON error body for this failure.
    pub fn body_json(&self, request_id: &str) -> String {
        serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message, "request_id": request_id}})
            .to_string()
    }

    pub fn into_response(self, request_id: &str) -> Response {
        let body: Body = Full::new(Bytes::from(self.body_json(request_id)))
            .map_err(|never| match never {})
            .boxed_unsync();
        let mut response = http::Response::new(body);
        *response.status_mut() = status_for(self.code);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(retry) = self.retry_after {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry.as_secs().max(1)),
            );
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(header::ALLOW, allow);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::HashMap;

    /// The status every code answers with, stated once more by hand: a change to
    /// [`status_for`] must be a change here too (clients rely on both).
    fn expected(code: ErrorCode) -> u16 {
        use ErrorCode::*;
        match code {
            RouteNotFound | AppNotFound | FunctionNotFound | ArtifactNotFound | QueueNotFound
            | InvocationNotFound => 404,
            MethodNotAllowed => 405,
            PayloadTooLarge => 413,
            TooManyRequests => 429,
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
            RouteConflict | NoPreviousVersion => 409,
            Forbidden => 403,
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
