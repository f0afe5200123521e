//! Errors as GoTrue answers them, so Supabase's clients read the code they branch on.
//!
//! A request that declares `X-Supabase-Api-Version: 2024-01-01` (or later) gets
//! `{"code": "<error code>", "message": …}` and the header echoed; one without gets the
//! original shape `{"code": <status>, "error_code": …, "msg": …}`. Both carry the code in
//! `x-sb-error-code`. OAuth-style errors (`{"error", "error_description"}`) are used where
//! GoTrue uses them.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::BodyExt;
use nimbus_runtime::Response;

/// The API version Supabase's clients send and GoTrue answers with.
pub const API_VERSION: &str = "2024-01-01";
pub const API_VERSION_HEADER: &str = "x-supabase-api-version";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// GoTrue's error code (`invalid_credentials`, `weak_password`, …).
    pub code: &'static str,
    pub message: String,
    /// For `weak_password`: which rules the password broke.
    pub reasons: Vec<&'static str>,
    /// For 429: seconds until a retry can succeed.
    pub retry_after: Option<u64>,
    /// Answered in OAuth's shape (`error`, `error_description`).
    pub oauth: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            reasons: Vec::new(),
            retry_after: None,
            oauth: false,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::bad_request("validation_failed", message)
    }

    /// An OAuth-shaped error (`{"error": code, "error_description": message}`).
    pub fn oauth(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            oauth: true,
            ..ApiError::new(status, code, message)
        }
    }

    /// Too many attempts: 429 with `Retry-After`.
    pub fn throttled(retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "over_request_rate_limit",
                format!(
                    "Request rate limit reached; retry in {}s",
                    retry_after.max(1)
                ),
            )
        }
    }

    /// A failure inside nimbus; the cause is logged, not shown.
    pub fn internal(what: &str, cause: &dyn std::error::Error) -> ApiError {
        tracing::error!(cause = %cause, "auth: {what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_failure",
            format!("{what}; the server log has the cause"),
        )
    }

    /// The response, in the shape the request's API version asks for.
    pub fn into_response(self, versioned: bool) -> Response {
        let mut body = serde_json::Map::new();
        if self.oauth {
            body.insert("error".into(), self.code.into());
            body.insert("error_description".into(), self.message.into());
        } else if versioned {
            body.insert("code".into(), self.code.into());
            body.insert("message".into(), self.message.into());
        } else {
            body.insert("code".into(), self.status.as_u16().into());
            body.insert("error_code".into(), self.code.into());
            body.insert("msg".into(), self.message.into());
        }
        if !self.oauth && !self.reasons.is_empty() {
            body.insert(
                "weak_password".into(),
                serde_json::json!({"reasons": self.reasons}),
            );
        }
        let body = serde_json::Value::Object(body);
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        if !self.oauth {
            headers.insert("x-sb-error-code", HeaderValue::from_static(self.code));
        }
        if let Some(secs) = self.retry_after {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut response = http::Response::new(
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn shapes_follow_the_api_version() {
        let error = ApiError::bad_request("invalid_credentials", "Invalid login credentials");
        let versioned = error.clone().into_response(true);
        assert_eq!(versioned.status(), 400);
        assert_eq!(
            versioned.headers()["x-sb-error-code"],
            "invalid_credentials"
        );
        assert_eq!(
            body(versioned).await,
            serde_json::json!({"code": "invalid_credentials", "message": "Invalid login credentials"})
        );
        assert_eq!(
            body(error.into_response(false)).await,
            serde_json::json!({"code": 400, "error_code": "invalid_credentials", "msg": "Invalid login credentials"})
        );
        let mut weak = ApiError::unprocessable("weak_password", "too short");
        weak.reasons = vec!["length"];
        assert_eq!(
            body(weak.into_response(true)).await["weak_password"]["reasons"],
            serde_json::json!(["length"])
        );
        let throttled = ApiError::throttled(7).into_response(true);
        assert_eq!(throttled.status(), 429);
        assert_eq!(throttled.headers()["retry-after"], "7");
        let oauth = ApiError::oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "refresh_token required",
        );
        assert_eq!(
            body(oauth.into_response(true)).await,
            serde_json::json!({"error": "invalid_request", "error_description": "refresh_token required"})
        );
    }
}
