//! The executor contract: what the dispatcher needs from anything that runs functions.
//!
//! An [`Executor`] turns an uploaded artifact into a [`LoadedFunction`] once per deployed
//! version (compile, link, type-check — the slow part, done at deploy). A loaded function makes
//! [`Instance`]s (a cold start). An instance serves one invocation at a time:
//! [`Instance::invoke`] consumes the instance and yields the response head as soon as the guest
//! produces it, plus a completion future that resolves when the guest has finished (the response
//! body may still be streaming until then). The completion hands the instance back if it is fit
//! for reuse — never after a trap, timeout or memory fault — so the dispatcher decides about
//! pooling without knowing how instances work.
//!
//! This crate must not depend on wasmtime or on any process machinery: executors depend on it,
//! never the other way (`cargo tree -p nimbus-runtime -i wasmtime` finds nothing; a test checks).

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::combinators::UnsyncBoxBody;
use nimbus_core::{ErrorCode, FunctionSpec, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Errors inside request and response bodies.
#[cfg(feature = "testing")]
pub mod testing;

pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// A streaming HTTP body as it crosses the gateway ↔ executor boundary.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;
pub type Request = http::Request<Body>;
pub type Response = http::Response<Body>;

/// Read a whole body (a function's response, typically), refusing more than `limit` bytes.
pub async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, String> {
    use http_body_util::BodyExt as _;
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(format!("the response is larger than {limit} bytes"));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Request extension: the body is a raw event for the function (from `nimbus invoke` or a
/// trigger), not an HTTP request to translate. Wasm functions still receive it as an HTTP POST;
/// Lambda-style functions receive the body verbatim as their event and answer with their raw
/// result as `application/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent;

/// Request extension: the address of the client that sent the request to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Per-invocation facts passed explicitly to the executor.
#[derive(Debug, Clone)]
pub struct InvocationContext {
    /// The request id the client sees in `x-request-id`.
    pub request_id: Arc<str>,
    /// When the invocation must be over (start + the function's timeout).
    pub deadline: Instant,
    /// The function's timeout, for messages.
    pub timeout: Duration,
}

/// Why an invocation failed, as the executor saw it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error(
        "the function ran longer than its timeout of {0:?} and was stopped; raise `timeout` in the manifest or make the handler faster"
    )]
    Timeout(Duration),
    #[error(
        "the function tried to use more than its memory limit of {limit_mib} MiB and was stopped; raise `memory` in the manifest"
    )]
    MemoryExceeded { limit_mib: u64 },
    #[error("the function trapped: {0}")]
    Trap(String),
    #[error("the function did not produce a valid response: {0}")]
    BadResponse(String),
    #[error("an instance of the function could not be started: {0}")]
    StartFailed(String),
    #[error("the function failed to initialise: {0}")]
    InitFailed(String),
    #[error("the handler failed: {error_type}: {message}")]
    Handler { error_type: String, message: String },
    #[error("the function's process exited during the invocation: {0}")]
    Crashed(String),
    #[error(
        "the function's response is larger than the limit of {limit} bytes for a synchronous invocation"
    )]
    ResponseTooLarge { limit: u64 },
    #[error("the event cannot be delivered: {0}")]
    BadEvent(String),
    #[error(
        "the event is larger than the limit of {limit} bytes for a synchronous invocation; send less, or store the payload and pass a reference"
    )]
    EventTooLarge { limit: u64 },
}

impl InvokeError {
    pub fn outcome(&self) -> Outcome {
        match self {
            InvokeError::Timeout(_) => Outcome::Timeout,
            InvokeError::MemoryExceeded { .. } => Outcome::MemoryExceeded,
            InvokeError::Trap(_) => Outcome::Trap,
            InvokeError::BadResponse(_) => Outcome::BadResponse,
            InvokeError::StartFailed(_) => Outcome::StartFailed,
            InvokeError::InitFailed(_) => Outcome::InitFailed,
            InvokeError::Handler { .. } => Outcome::HandlerError,
            InvokeError::Crashed(_) => Outcome::Crashed,
            InvokeError::ResponseTooLarge { .. } => Outcome::ResponseTooLarge,
            InvokeError::BadEvent(_) | InvokeError::EventTooLarge { .. } => Outcome::BadEvent,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            InvokeError::Timeout(_) => ErrorCode::FunctionTimeout,
            InvokeError::MemoryExceeded { .. } => ErrorCode::FunctionMemoryExceeded,
            InvokeError::Trap(_) => ErrorCode::FunctionTrapped,
            InvokeError::BadResponse(_) => ErrorCode::FunctionBadResponse,
            InvokeError::StartFailed(_) => ErrorCode::FunctionStartFailed,
            InvokeError::InitFailed(_) => ErrorCode::FunctionInitFailed,
            InvokeError::Handler { .. } => ErrorCode::FunctionError,
            InvokeError::Crashed(_) => ErrorCode::FunctionCrashed,
            InvokeError::ResponseTooLarge { .. } => ErrorCode::FunctionResponseTooLarge,
            InvokeError::BadEvent(_) => ErrorCode::BadRequest,
            InvokeError::EventTooLarge { .. } => ErrorCode::PayloadTooLarge,
        }
    }
}

/// What [`Instance::invoke`] yields.
pub struct Invoked {
    /// The response head (and streaming body), or why there is none.
    pub response: Result<Response, InvokeError>,
    /// Resolves when the guest has completely finished with this invocation.
    pub completion: BoxFuture<'static, Completion>,
}

/// The end of one invocation.
pub struct Completion {
    /// `Err` if the guest failed at any point, including after the response head was sent.
    pub result: Result<(), InvokeError>,
    /// What the guest wrote to stdout/stderr during this invocation.
    pub logs: String,
    /// The instance, if it may serve another invocation.
    pub instance: Option<Box<dyn Instance>>,
}

/// A function version ready to make instances. Created once per deployed version and shared by
/// all its instances; dropped when the version is no longer active and its instances are gone.
#[async_trait::async_trait]
pub trait LoadedFunction: Send + Sync {
    /// Create a new instance (a cold start). Called by the dispatcher when no idle instance is
    /// available; may be called concurrently.
    async fn instantiate(&self) -> Result<Box<dyn Instance>, InvokeError>;

    /// The shape asynchronous deliveries take for this function (the driver never asks what
    /// kind of function it is).
    fn event_shape(&self) -> nimbus_core::message::EventShape;
}

/// One live instance. Serves a single invocation at a time; `invoke` consumes it and the
/// completion hands it back when it may be reused.
#[async_trait::async_trait]
pub trait Instance: Send {
    async fn invoke(self: Box<Self>, request: Request, context: InvocationContext) -> Invoked;

    /// Whether an idle instance can still serve (a process may have exited or been killed while
    /// idle). Checked before a warm instance is reused; must be cheap and must not block.
    fn is_alive(&mut self) -> bool {
        true
    }
}

/// An artifact to load: content-addressed bytes.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Lower-case hex SHA-256 of `bytes`.
    pub digest: String,
    pub bytes: Arc<[u8]>,
}

/// Why an artifact could not be loaded for a function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub code: ErrorCode,
    pub message: String,
}

/// What loading cost, for status reporting and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Compiled now (and written to the cache).
    Compiled,
    /// Taken from the on-disk compiled-artifact cache.
    Cache,
}

/// Which deployed version a load is for: executors that expose names to guests (the Lambda
/// environment variables, ARNs) use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionIdentity {
    pub app: Arc<str>,
    pub version: u64,
}

/// Loads artifacts into runnable functions. One executor per kind (wasm, process), shared.
#[async_trait::async_trait]
pub trait Executor: Send + Sync {
    /// Validate and prepare `artifact` for `spec`. Called at deploy and at startup for each
    /// active version; may be slow (compilation), must not block the async runtime.
    async fn load(
        &self,
        identity: &FunctionIdentity,
        spec: &FunctionSpec,
        artifact: &Artifact,
    ) -> Result<(Arc<dyn LoadedFunction>, LoadSource), LoadError>;
}

/// A platform service an app's gateway routes can lead to instead of a function (the app's
/// auth API): it answers the request itself, errors included, in its own protocol.
#[async_trait::async_trait]
pub trait RouteService: Send + Sync {
    /// Answer `request`; `path` is what follows the mount point, starting with `/`. The
    /// request carries the gateway's `x-request-id` and the client's [`ClientAddr`].
    async fn serve(&self, request: Request, path: &str) -> Response;
}

/// The host every function reaches nimbus's local API under: `http://nimbus.internal/v1/...`
/// from Wasm (intercepted by the host, never dialled), `$NIMBUS_API/v1/...` from processes.
pub const LOCAL_API_HOST: &str = "nimbus.internal";
/// Largest request body the local API accepts from a function.
pub const LOCAL_API_MAX_BODY: usize = 1 << 20;

/// Which function is calling the local API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub app: Arc<str>,
    pub function: Arc<str>,
}

/// The local API's answer: a status and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceResponse {
    pub status: u16,
    pub body: Bytes,
}

/// Temporary credentials for the AWS-compatible endpoint, limited to one function's grants,
/// as Lambda hands a function its execution role's.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    pub expires_ms: u64,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// The platform's side of what functions call — sending to queues, publishing events — behind
/// the grants of the caller's manifest. Executors hand requests for the local API to it; the
/// server implements it.
#[async_trait::async_trait]
pub trait Services: Send + Sync {
    /// Serve one local API request (`path` starts with `/v1/`; `query` is the query string).
    async fn call(
        &self,
        caller: &Caller,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> ServiceResponse;

    /// Fresh temporary credentials for an instance of `caller`, if the platform has an
    /// AWS-compatible endpoint.
    fn aws_credentials(&self, _caller: &Caller) -> Option<AwsCredentials> {
        None
    }

    /// The instance that held these credentials has ended: refuse them from now on.
    fn release_aws_credentials(&self, _access_key_id: &str) {}

    /// Serve one request to the AWS-compatible endpoint (signed with credentials from
    /// [`Services::aws_credentials`]), streamed both ways.
    async fn aws(&self, _caller: &Caller, _request: http::Request<Body>) -> Response {
        let mut response = http::Response::new(Body::default());
        *response.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
        response
    }

    /// The calling function's grants, while it is deployed (what host interfaces such as
    /// `wasi:keyvalue` check).
    fn grants(&self, _caller: &Caller) -> Option<nimbus_core::Grants> {
        None
    }

    /// The environment variables `caller`'s manifest sets from secrets (`env = { VAR = {
    /// secret = "NAME" } }`), with the secrets' current values: for an instance about to
    /// start. An error (a secret not set, or not text) fails the start with its message.
    async fn secret_env(
        &self,
        _caller: &Caller,
    ) -> Result<Vec<(String, String)>, nimbus_core::error::Error> {
        Ok(Vec::new())
    }

    /// Serve one unsigned request to the AWS-compatible endpoint as `caller`, authorized by
    /// its grants (a Wasm guest's `http://nimbus.internal/s3/…`, path already stripped of
    /// `/s3`), streamed both ways.
    async fn aws_as_caller(&self, _caller: &Caller, _request: http::Request<Body>) -> Response {
        let mut response = http::Response::new(Body::default());
        *response.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
        response
    }
}

/// Where a Wasm guest reaches the S3 API on [`LOCAL_API_HOST`]: `http://nimbus.internal/s3/BUCKET/KEY`.
pub const LOCAL_S3_PREFIX: &str = "/s3";

/// One request to one service of the local API, with who is calling and what they may touch.
#[derive(Debug)]
pub struct ServiceRequest<'a> {
    pub caller: &'a Caller,
    /// The caller's grants; a service refuses (`forbidden`) what they do not name.
    pub grants: &'a nimbus_core::Grants,
    pub method: &'a http::Method,
    /// The whole path, starting with the prefix the service is registered under (without the
    /// query).
    pub path: &'a str,
    /// The query string, if the request had one.
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body: Bytes,
}

/// One service of the local API (queues, the bus; objects, key-value, tables and secrets
/// next), registered at the composition root under a path prefix. It answers with a JSON body
/// or an error; the local API turns errors into the standard error body and status.
#[async_trait::async_trait]
pub trait Service: Send + Sync {
    async fn call(&self, request: ServiceRequest<'_>) -> Result<Bytes, nimbus_core::error::Error>;
}

/// Serve one local API request whose body is still unread, the same way for every executor:
/// at most [`LOCAL_API_MAX_BODY`] bytes (else 413), then `services` answers.
pub async fn call_local<B>(
    services: &dyn Services,
    caller: &Caller,
    parts: &http::request::Parts,
    path: &str,
    body: B,
) -> ServiceResponse
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, LOCAL_API_MAX_BODY)
        .collect()
        .await
    {
        Ok(collected) => {
            services
                .call(
                    caller,
                    &parts.method,
                    path,
                    parts.uri.query(),
                    &parts.headers,
                    collected.to_bytes(),
                )
                .await
        }
        Err(_) => ServiceResponse {
            status: nimbus_wire::status_for(nimbus_core::ErrorCode::PayloadTooLarge).as_u16(),
            body: nimbus_wire::error_body(
                nimbus_core::ErrorCode::PayloadTooLarge,
                "the local API takes at most 1 MiB per request; send less, or store the payload and pass a reference",
                None,
            ),
        },
    }
}
