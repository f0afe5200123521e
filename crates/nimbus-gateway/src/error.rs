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
