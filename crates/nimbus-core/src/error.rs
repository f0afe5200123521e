//! Stable error codes. A code, once published, never changes meaning; clients and scripts match
//! on it. The HTTP status for each code is chosen in one place, the gateway.

use serde::{Deserialize, Serialize};

/// Every user-facing failure carries exactly one of these codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// No route matches the request's host and path.
    RouteNotFound,
    /// A route matches the path but not the method.
    MethodNotAllowed,
    /// The request body is larger than the gateway accepts.
    PayloadTooLarge,
    /// The function is at its concurrency limit and its wait queue is full.
    TooManyRequests,
    /// The function ran past its timeout and was stopped.
    FunctionTimeout,
    /// The function tried to use more memory than its limit.
    FunctionMemoryExceeded,
    /// The function trapped (panicked, hit `unreachable`, …).
    FunctionTrapped,
    /// The function finished without producing a valid response.
    FunctionBadResponse,
    /// An instance of the function could not be created.
    FunctionStartFailed,
    /// The function's initialisation failed (a Lambda-style handler could not be loaded, or
    /// the runtime reported an init error).
    FunctionInitFailed,
    /// The handler reported an error (an exception, a rejected promise, an error result).
    FunctionError,
    /// The function's process exited or was killed during the invocation.
    FunctionCrashed,
    /// The function's response is larger than the limit for a synchronous invocation.
    FunctionResponseTooLarge,
    /// The request has no valid credential: an admin request without the admin token, or a
    /// request to a route with an authorizer without an acceptable bearer token.
    Unauthorized,
    /// The admin request is malformed.
    BadRequest,
    /// The manifest is not valid.
    InvalidManifest,
    /// An uploaded component is not valid WebAssembly or not a component.
    InvalidComponent,
    /// The component does not export `wasi:http/incoming-handler`, or imports something nimbus
    /// does not provide.
    IncompatibleComponent,
    /// A process function's code archive is unreadable, or lacks its `bootstrap` or handler file.
    InvalidCode,
    /// A deploy references an artifact that was never uploaded.
    ArtifactNotFound,
    /// An uploaded artifact does not hash to the digest it was uploaded under.
    DigestMismatch,
    /// Two routes of the deployed apps claim the same host, path and method.
    RouteConflict,
    /// No app by that name.
    AppNotFound,
    /// No function by that name.
    FunctionNotFound,
    /// `rollback` was asked for but there is no earlier version.
    NoPreviousVersion,
    /// No queue by that name in the app.
    QueueNotFound,
    /// No asynchronous invocation with that id (or it has expired).
    InvocationNotFound,
    /// The event is not a valid CloudEvent, or a message is malformed.
    InvalidEvent,
    /// The function has no grant for what it tried (sending to a queue, publishing events).
    Forbidden,
    /// No bucket by that name.
    BucketNotFound,
    /// A bucket by that name exists already (bucket names are global).
    BucketExists,
    /// The bucket still holds objects.
    BucketNotEmpty,
    /// A key-value store still holds entries.
    KvStoreNotEmpty,
    /// A table still holds items.
    TableNotEmpty,
    /// No object by that key in the bucket.
    ObjectNotFound,
    /// No access key by that id (or it was revoked).
    KeyNotFound,
    /// No key-value store by that name in the app.
    KvStoreNotFound,
    /// The key-value store holds no entry under that key.
    KvKeyNotFound,
    /// The client sent more requests than the route's rate limit allows; retry after
    /// `Retry-After` seconds.
    RateLimited,
    /// The app's firewall refused the request (a client address, a method, or headers past
    /// its limits).
    Blocked,
    /// The app's auth still has users.
    AuthHasUsers,
    /// No user by that id in the app's auth.
    UserNotFound,
    /// A user with that e-mail address is already registered in the app's auth.
    UserExists,
    /// No secret by that name (or version) in the app.
    SecretNotFound,
    /// Something inside nimbus failed; the logs have the detail.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order (`Internal` last).
    pub const ALL: [ErrorCode; 45] = [
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::TooManyRequests,
        ErrorCode::FunctionTimeout,
        ErrorCode::FunctionMemoryExceeded,
        ErrorCode::FunctionTrapped,
        ErrorCode::FunctionBadResponse,
        ErrorCode::FunctionStartFailed,
        ErrorCode::FunctionInitFailed,
        ErrorCode::FunctionError,
        ErrorCode::FunctionCrashed,
        ErrorCode::FunctionResponseTooLarge,
        ErrorCode::Unauthorized,
        ErrorCode::BadRequest,
        ErrorCode::InvalidManifest,
        ErrorCode::InvalidComponent,
        ErrorCode::IncompatibleComponent,
        ErrorCode::InvalidCode,
        ErrorCode::ArtifactNotFound,
        ErrorCode::DigestMismatch,
        ErrorCode::RouteConflict,
        ErrorCode::AppNotFound,
        ErrorCode::FunctionNotFound,
        ErrorCode::NoPreviousVersion,
        ErrorCode::QueueNotFound,
        ErrorCode::InvocationNotFound,
        ErrorCode::InvalidEvent,
        ErrorCode::Forbidden,
        ErrorCode::BucketNotFound,
        ErrorCode::BucketExists,
        ErrorCode::BucketNotEmpty,
        ErrorCode::KvStoreNotEmpty,
        ErrorCode::TableNotEmpty,
        ErrorCode::ObjectNotFound,
        ErrorCode::KeyNotFound,
        ErrorCode::KvStoreNotFound,
        ErrorCode::KvKeyNotFound,
        ErrorCode::RateLimited,
        ErrorCode::Blocked,
        ErrorCode::AuthHasUsers,
        ErrorCode::UserNotFound,
        ErrorCode::UserExists,
        ErrorCode::SecretNotFound,
        ErrorCode::Internal,
    ];

    /// The code as it appears in JSON bodies, logs and CLI output.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::FunctionTimeout => "function_timeout",
            ErrorCode::FunctionMemoryExceeded => "function_memory_exceeded",
            ErrorCode::FunctionTrapped => "function_trapped",
            ErrorCode::FunctionBadResponse => "function_bad_response",
            ErrorCode::FunctionStartFailed => "function_start_failed",
            ErrorCode::FunctionInitFailed => "function_init_failed",
            ErrorCode::FunctionError => "function_error",
            ErrorCode::FunctionCrashed => "function_crashed",
            ErrorCode::FunctionResponseTooLarge => "function_response_too_large",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidManifest => "invalid_manifest",
            ErrorCode::InvalidComponent => "invalid_component",
            ErrorCode::IncompatibleComponent => "incompatible_component",
            ErrorCode::InvalidCode => "invalid_code",
            ErrorCode::ArtifactNotFound => "artifact_not_found",
            ErrorCode::DigestMismatch => "digest_mismatch",
            ErrorCode::RouteConflict => "route_conflict",
            ErrorCode::AppNotFound => "app_not_found",
            ErrorCode::FunctionNotFound => "function_not_found",
            ErrorCode::NoPreviousVersion => "no_previous_version",
            ErrorCode::QueueNotFound => "queue_not_found",
            ErrorCode::InvocationNotFound => "invocation_not_found",
            ErrorCode::InvalidEvent => "invalid_event",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::BucketNotFound => "bucket_not_found",
            ErrorCode::BucketExists => "bucket_exists",
            ErrorCode::BucketNotEmpty => "bucket_not_empty",
            ErrorCode::KvStoreNotEmpty => "kv_store_not_empty",
            ErrorCode::TableNotEmpty => "table_not_empty",
            ErrorCode::ObjectNotFound => "object_not_found",
            ErrorCode::KeyNotFound => "key_not_found",
            ErrorCode::KvStoreNotFound => "kv_store_not_found",
            ErrorCode::KvKeyNotFound => "kv_key_not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Blocked => "blocked",
            ErrorCode::AuthHasUsers => "auth_has_users",
            ErrorCode::UserNotFound => "user_not_found",
            ErrorCode::UserExists => "user_exists",
            ErrorCode::SecretNotFound => "secret_not_found",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure that leaves nimbus: a code plus a message that says what to do next, and — for
/// failures inside nimbus — the cause, kept for the one log line at the edge (never shown to
/// the client).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    #[source]
    pub source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            source: None,
        }
    }

    /// The same failure, caused by `source`.
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(source));
        self
    }
}

/// Equal when code and message are (the cause is for the log).
impl PartialEq for Error {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.message == other.message
    }
}

impl Eq for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Declaration position; adding a variant breaks this match until it is listed here and
    /// in [`ErrorCode::ALL`].
    fn position(code: ErrorCode) -> usize {
        match code {
            ErrorCode::RouteNotFound => 0,
            ErrorCode::MethodNotAllowed => 1,
            ErrorCode::PayloadTooLarge => 2,
            ErrorCode::TooManyRequests => 3,
            ErrorCode::FunctionTimeout => 4,
            ErrorCode::FunctionMemoryExceeded => 5,
            ErrorCode::FunctionTrapped => 6,
            ErrorCode::FunctionBadResponse => 7,
            ErrorCode::FunctionStartFailed => 8,
            ErrorCode::FunctionInitFailed => 9,
            ErrorCode::FunctionError => 10,
            ErrorCode::FunctionCrashed => 11,
            ErrorCode::FunctionResponseTooLarge => 12,
            ErrorCode::Unauthorized => 13,
            ErrorCode::BadRequest => 14,
            ErrorCode::InvalidManifest => 15,
            ErrorCode::InvalidComponent => 16,
            ErrorCode::IncompatibleComponent => 17,
            ErrorCode::InvalidCode => 18,
            ErrorCode::ArtifactNotFound => 19,
            ErrorCode::DigestMismatch => 20,
            ErrorCode::RouteConflict => 21,
            ErrorCode::AppNotFound => 22,
            ErrorCode::FunctionNotFound => 23,
            ErrorCode::NoPreviousVersion => 24,
            ErrorCode::QueueNotFound => 25,
            ErrorCode::InvocationNotFound => 26,
            ErrorCode::InvalidEvent => 27,
            ErrorCode::Forbidden => 28,
            ErrorCode::BucketNotFound => 29,
            ErrorCode::BucketExists => 30,
            ErrorCode::BucketNotEmpty => 31,
            ErrorCode::KvStoreNotEmpty => 32,
            ErrorCode::TableNotEmpty => 33,
            ErrorCode::ObjectNotFound => 34,
            ErrorCode::KeyNotFound => 35,
            ErrorCode::KvStoreNotFound => 36,
            ErrorCode::KvKeyNotFound => 37,
            ErrorCode::RateLimited => 38,
            ErrorCode::Blocked => 39,
            ErrorCode::AuthHasUsers => 40,
            ErrorCode::UserNotFound => 41,
            ErrorCode::UserExists => 42,
            ErrorCode::SecretNotFound => 43,
            ErrorCode::Internal => 44,
        }
    }

    #[test]
    fn all_lists_every_code_once_in_order() {
        assert_eq!(ErrorCode::ALL.len(), position(ErrorCode::Internal) + 1);
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(position(*code), i, "{code} is out of place in ALL");
        }
    }

    #[test]
    fn serde_form_matches_as_str() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
