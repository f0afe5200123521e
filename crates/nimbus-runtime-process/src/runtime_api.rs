//! The AWS Lambda Runtime API, one server per instance on its own loopback listener.
//!
//! The runtime inside the process long-polls `GET /2018-06-01/runtime/invocation/next`; the
//! instance hands it one [`Invocation`] at a time and waits for the runtime to post
//! `…/invocation/{id}/response` or `…/invocation/{id}/error`. `…/runtime/init/error` reports a
//! failed initialisation. Payloads are limited as Lambda limits them (6 MB each way for a
//! synchronous invocation); the runtime gets 413 past the limit and the caller a clear error.

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, watch};

/// Largest response a handler may return, and largest event it may receive, synchronously.
pub const PAYLOAD_LIMIT: u64 = 6 * 1024 * 1024;
/// Largest error document the runtime may post.
const ERROR_LIMIT: u64 = 256 * 1024;
const PREFIX: &str = "/2018-06-01/runtime";

/// One invocation handed to the runtime.
pub(crate) struct Invocation {
    pub request_id: Arc<str>,
    pub deadline_ms: u64,
    pub trace_id: String,
    pub event: Bytes,
    pub reply: oneshot::Sender<Reply>,
}

/// What the runtime answered.
#[derive(Debug)]
pub(crate) enum Reply {
    Response(Bytes),
    Error {
        error_type: String,
        message: String,
        /// The runtime said it is going away (`Lambda-Runtime-Function-Error-Type: Runtime.*`,
        /// e.g. after an uncaught exception).
        fatal: bool,
    },
    TooLarge,
}

/// What the runtime has said about itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct RuntimeState {
    /// The runtime has asked for its first event: init is over.
    pub ready: bool,
    /// `(errorType, errorMessage)` from `/runtime/init/error`.
    pub init_error: Option<(String, String)>,
}

/// nimbus's local API as served to one instance, under `/nimbus/` beside the Runtime API.
pub(crate) struct LocalRoute {
    pub services: Arc<dyn nimbus_runtime::Services>,
    pub caller: Arc<nimbus_runtime::Caller>,
    /// `NIMBUS_API_TOKEN` of the instance: requests must carry it as a bearer token.
    pub token: String,
    /// `AWS_SESSION_TOKEN` of the instance, if it has AWS credentials: what the Secrets
    /// extension's callers send as `X-Aws-Parameters-Secrets-Token`.
    pub session_token: Option<String>,
}

struct Shared {
    local: Option<LocalRoute>,
    invocations: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    current: Mutex<Option<(Arc<str>, oneshot::Sender<Reply>)>>,
    state: watch::Sender<RuntimeState>,
    function_arn: HeaderValue,
}

/// The instance's end of the Runtime API.
pub(crate) struct RuntimeApi {
    pub invocations: mpsc::Sender<Invocation>,
    pub state: watch::Receiver<RuntimeState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serve the Runtime API on `listener` until dropped.
    pub fn serve(
        listener: tokio::net::TcpListener,
        extension: Option<tokio::net::TcpListener>,
        function_arn: &str,
        local: Option<LocalRoute>,
    ) -> RuntimeApi {
        let (invocations, receiver) = mpsc::channel(1);
        let (state_tx, state) = watch::channel(RuntimeState::default());
        let shared = Arc::new(Shared {
            local,
            invocations: tokio::sync::Mutex::new(receiver),
            current: Mutex::new(None),
            state: state_tx,
            function_arn: HeaderValue::from_str(function_arn)
                .unwrap_or_else(|_| HeaderValue::from_static("arn:aws:lambda:us-east-1")),
        });
        let server = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            let accept = async |listener: &Option<tokio::net::TcpListener>| match listener {
                Some(listener) => listener.accept().await,
                None => std::future::pending().await,
            };
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    accepted = accept(&extension) => accepted,
                };
                let Ok((stream, _)) = accepted else { break };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(dispatch(&shared, request).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                // Reap finished connections so a chatty runtime cannot grow the set.
                while connections.try_join_next().is_some() {}
            }
        });
        RuntimeApi {
            invocations,
            state,
            server,
        }
    }
}

type ApiResponse = http::Response<Full<Bytes>>;

fn reply(status: StatusCode, body: serde_json::Value) -> ApiResponse {
    let mut response = http::Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, error_type: &str, message: &str) -> ApiResponse {
    reply(
        status,
        serde_json::json!({"errorMessage": message, "errorType": error_type}),
    )
}

fn accepted() -> ApiResponse {
    reply(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
}

/// Is `request` signed for AWS (SigV4 header or query, SigV2 query)? Such requests go to the
/// AWS-compatible endpoint, whatever their path (a bucket may be called `nimbus`).
fn aws_signed(request: &http::Request<Incoming>) -> bool {
    let header = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"AWS4-HMAC-SHA256") || v.as_bytes().starts_with(b"AWS ")
        });
    let query = request
        .uri()
        .query()
        .is_some_and(|q| q.contains("X-Amz-Signature=") || q.contains("AWSAccessKeyId="));
    header || query
}

/// The Runtime API and the local API; AWS-signed requests (an SDK pointed at
/// `AWS_ENDPOINT_URL`) are streamed to the platform's AWS-compatible endpoint, so they work
/// with `network = "none"` too.
async fn dispatch(shared: &Shared, request: http::Request<Incoming>) -> nimbus_runtime::Response {
    if let Some(local) = &shared.local
        && aws_signed(&request)
    {
        let request = request.map(|body| {
            body.map_err(|e| -> nimbus_runtime::BodyError { Box::new(e) })
                .boxed_unsync()
        });
        return local.services.aws(&local.caller, request).await;
    }
    handle(shared, request)
        .await
        .map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

async fn handle(shared: &Shared, request: http::Request<Incoming>) -> ApiResponse {
    let path = request.uri().path().to_owned();
    if let Some(local_path) = path.strip_prefix("/nimbus")
        && let Some(local) = &shared.local
    {
        return serve_local(local, local_path, request).await;
    }
    if path == EXTENSION_PATH
        && let Some(local) = &shared.local
    {
        return serve_extension(local, request).await;
    }
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return error(
            StatusCode::NOT_FOUND,
            "NotFound",
            "unknown Runtime API path",
        );
    };
    match (request.method(), rest) {
        (&Method::GET, "/invocation/next") => next(shared).await,
        (&Method::POST, "/init/error") => {
            let (error_type, message) = read_error(request).await;
            shared.state.send_modify(|state| {
                state.init_error = Some((error_type, message));
            });
            accepted()
        }
        (&Method::POST, rest) => {
            let Some((id, action)) = rest
                .strip_prefix("/invocation/")
                .and_then(|r| r.rsplit_once('/'))
            else {
                return error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "unknown Runtime API path",
                );
            };
            let waiting = match shared.current.lock() {
                Ok(mut current) => match current.take() {
                    Some((current_id, sender)) if &*current_id == id => Some(sender),
                    other => {
                        *current = other;
                        None
                    }
                },
                Err(_) => None,
            };
            let Some(sender) = waiting else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestID",
                    "no invocation with this id is waiting for an answer",
                );
            };
            match action {
                "response" => match Limited::new(request.into_body(), PAYLOAD_LIMIT as usize)
                    .collect()
                    .await
                {
                    Ok(body) => {
                        let _ = sender.send(Reply::Response(body.to_bytes()));
                        accepted()
                    }
                    Err(_) => {
                        let _ = sender.send(Reply::TooLarge);
                        error(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "RequestEntityTooLarge",
                            &format!("the response exceeds the limit of {PAYLOAD_LIMIT} bytes"),
                        )
                    }
                },
                "error" => {
                    let header_type = request
                        .headers()
                        .get("lambda-runtime-function-error-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let (error_type, message) = read_error(request).await;
                    let fatal = header_type
                        .as_deref()
                        .is_some_and(|t| t.starts_with("Runtime."))
                        || error_type.starts_with("Runtime.");
                    let _ = sender.send(Reply::Error {
                        error_type: header_type
                            .filter(|t| error_type == "Unknown" && !t.is_empty())
                            .unwrap_or(error_type),
                        message,
                        fatal,
                    });
                    accepted()
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "unknown Runtime API path",
                ),
            }
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "method not allowed on this Runtime API path",
        ),
    }
}

/// The local API: check the instance's token, then hand the request to the platform.
async fn serve_local(
    local: &LocalRoute,
    path: &str,
    request: http::Request<Incoming>,
) -> ApiResponse {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(local.token.as_str()) {
        return nimbus_wire::error_response(
            nimbus_core::ErrorCode::Unauthorized,
            "send NIMBUS_API_TOKEN as a bearer token",
            None,
        )
        .map(Full::new);
    }
    let (parts, body) = request.into_parts();
    let answer =
        nimbus_runtime::call_local(local.services.as_ref(), &local.caller, &parts, path, body)
            .await;
    local_response(answer)
}

/// The local API's answer as the instance's listener sends it.
fn local_response(answer: nimbus_runtime::ServiceResponse) -> ApiResponse {
    let mut response = http::Response::new(Full::new(answer.body));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The AWS Parameters and Secrets Lambda extension's secret read.
const EXTENSION_PATH: &str = "/secretsmanager/get";

/// `GET /secretsmanager/get?secretId=…[&versionId=…|&versionStage=…]` with
/// `X-Aws-Parameters-Secrets-Token`, as Lambda's extension serves it on `localhost:2773`: the
/// local API's secret read, answered with `GetSecretValue`'s JSON.
async fn serve_extension(local: &LocalRoute, request: http::Request<Incoming>) -> ApiResponse {
    let presented = request
        .headers()
        .get("x-aws-parameters-secrets-token")
        .and_then(|v| v.to_str().ok());
    let known =
        presented.is_some_and(|p| p == local.token || local.session_token.as_deref() == Some(p));
    if !known {
        return nimbus_wire::error_response(
            nimbus_core::ErrorCode::Unauthorized,
            "send AWS_SESSION_TOKEN (or NIMBUS_API_TOKEN) in X-Aws-Parameters-Secrets-Token",
            None,
        )
        .map(Full::new);
    }
    let mut secret_id = None;
    let query = {
        let mut rest = form_urlencoded::Serializer::new(String::new());
        let query = request.uri().query().unwrap_or_default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "secretId" => secret_id = Some(value.into_owned()),
                _ => {
                    rest.append_pair(&key, &value);
                }
            }
        }
        rest.finish()
    };
    let Some(secret_id) = secret_id else {
        return nimbus_wire::error_response(
            nimbus_core::ErrorCode::BadRequest,
            "give the secret's name or ARN as ?secretId=",
            None,
        )
        .map(Full::new);
    };
    // Percent-encoded, not form-encoded: a `+` in a name must stay a `+`.
    let path = format!(
        "/v1/secrets/{}",
        percent_encoding::utf8_percent_encode(&secret_id, percent_encoding::NON_ALPHANUMERIC)
    );
    let answer = local
        .services
        .call(
            &local.caller,
            &http::Method::GET,
            &path,
            (!query.is_empty()).then_some(query.as_str()),
            request.headers(),
            Bytes::new(),
        )
        .await;
    local_response(answer)
}

async fn next(shared: &Shared) -> ApiResponse {
    // Only the first call changes anything; later ones notify nobody.
    shared
        .state
        .send_if_modified(|state| !std::mem::replace(&mut state.ready, true));
    let invocation = {
        let mut invocations = shared.invocations.lock().await;
        invocations.recv().await
    };
    let Some(invocation) = invocation else {
        return error(
            StatusCode::GONE,
            "InstanceStopped",
            "this instance is being stopped",
        );
    };
    let mut response = http::Response::new(Full::new(invocation.event));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = HeaderValue::from_str(&invocation.request_id) {
        headers.insert("lambda-runtime-aws-request-id", id);
    }
    headers.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from(invocation.deadline_ms),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        shared.function_arn.clone(),
    );
    if let Ok(trace) = HeaderValue::from_str(&invocation.trace_id) {
        headers.insert("lambda-runtime-trace-id", trace);
    }
    if let Ok(mut current) = shared.current.lock() {
        // A runtime that asks for the next event without answering the previous one drops it;
        // the waiting caller sees its reply channel close.
        *current = Some((invocation.request_id, invocation.reply));
    }
    response
}

/// `(errorType, errorMessage)` from an error document; tolerant of what runtimes send.
async fn read_error(request: http::Request<Incoming>) -> (String, String) {
    let body = match Limited::new(request.into_body(), ERROR_LIMIT as usize)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return ("Unknown".into(), "the error document was too large".into()),
    };
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(document) => {
            let text = |key: &str| {
                document
                    .get(key)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            (
                text("errorType").unwrap_or_else(|| "Unknown".into()),
                text("errorMessage").unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
            )
        }
        Err(_) => (
            "Unknown".into(),
            String::from_utf8_lossy(&body).into_owned(),
        ),
    }
}
