//! The gateway's own failures, rendered by the shared error edge (`nimbus-wire`).

use http::{HeaderValue, header};
use http_body_util::{BodyExt, Full};
use nimbus_core::ErrorCode;
use nimbus_runtime::{Body, Response};
use std::time::Duration;

pub use nimbus_wire::status_for;

/// A failure answered by the gateway itself.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub allow: Option<String>,
    /// The `WWW-Authenticate` challenge of a refused credential.
    pub challenge: Option<Box<HeaderValue>>,
    /// What caused a failure inside nimbus; logged once where the answer is sent.
    pub source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl From<nimbus_core::error::Error> for GatewayError {
    fn from(error: nimbus_core::error::Error) -> GatewayError {
        GatewayError {
            source: error.source,
            ..GatewayError::new(error.code, error.message)
        }
    }
}

impl GatewayError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> GatewayError {
        GatewayError {
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
            challenge: None,
            source: None,
        }
    }

    /// A request an authorizer refused.
    pub fn refused(refusal: crate::auth::Refusal) -> GatewayError {
        let mut error = GatewayError::new(refusal.code(), refusal.message());
        error.challenge = refusal.challenge().map(Box::new);
        error.retry_after = refusal.retry_after();
        if let crate::auth::Refusal::KeysUnavailable(why) = refusal {
            error.source = Some(std::sync::Arc::new(std::io::Error::other(why)));
        }
        error
    }

    pub fn into_response(self, request_id: &str) -> Response {
        let mut response = nimbus_wire::error_response(self.code, &self.message, Some(request_id))
            .map(|bytes| -> Body {
                Full::new(bytes)
                    .map_err(|never| match never {})
                    .boxed_unsync()
            });
        let headers = response.headers_mut();
        if let Some(retry) = self.retry_after {
            headers.insert(
                header::RETRY_AFTER,
                // Whole seconds, rounded up: waiting less than asked would be refused again.
                HeaderValue::from((retry.as_secs() + u64::from(retry.subsec_nanos() > 0)).max(1)),
            );
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(header::ALLOW, allow);
        }
        if let Some(challenge) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, *challenge);
        }
        response
    }
}
