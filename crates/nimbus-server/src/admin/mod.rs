//! The admin REST API (`/v1/...`) on its own listener, behind a bearer token.
//!
//! Handlers are thin: they parse, call the [`Platform`], and turn errors into the standard JSON
//! error body through [`ApiFailure`], the single place admin errors become responses (rendered
//! by `nimbus_wire::error_response`, like every other edge). Every failure is logged there, once,
//! with its request id and causes.

use crate::events::Events;
use crate::platform::Platform;
use axum::body::Body as AxumBody;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use http_body_util::BodyExt;
use nimbus_api::{InvokeResponse, LogsResponse, ProcessSandbox, Status};
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_runtime::BodyError;
use nimbus_store::Registry;

fn box_body_error(error: axum::Error) -> BodyError {
    Box::new(error)
}
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Largest artifact accepted by upload.
const MAX_ARTIFACT_BYTES: usize = 256 << 20;
/// Largest response body `invoke` returns (Lambda's synchronous payload limit).
const MAX_INVOKE_RESPONSE_BYTES: usize = 6 << 20;

mod access;
mod apikeys;
mod kv;
mod metrics;
mod objects;
mod secrets;
mod tables;
mod tokens;
mod users;

/// The services the admin API manages beside the platform.
#[derive(Clone)]
pub(crate) struct AdminServices {
    pub keys: nimbus_aws::Keys,
    pub objects: Arc<dyn nimbus_store::ObjectStore>,
    pub tables: Arc<dyn nimbus_store::tables::TableStore>,
    pub kv: nimbus_kv::Kv,
    pub auth: Arc<nimbus_auth::AuthService>,
    pub secrets: Arc<nimbus_secrets::Secrets>,
    pub api_keys: Arc<nimbus_apikeys::ApiKeys>,
}

#[derive(Clone)]
struct AdminState {
    platform: Arc<Platform>,
    events: Arc<Events>,
    services: AdminServices,
    access: Arc<access::Access>,
}

pub(crate) use access::Access;

pub(crate) fn router(
    platform: Arc<Platform>,
    events: Arc<Events>,
    services: AdminServices,
    access: Arc<Access>,
) -> Router {
    let state = AdminState {
        platform,
        events,
        services,
        access,
    };
    Router::new()
        .merge(objects::routes())
        .merge(tables::routes())
        .merge(kv::routes())
        .merge(users::routes())
        .merge(secrets::routes())
        .merge(apikeys::routes())
        .merge(tokens::routes())
        .merge(metrics::routes())
        .route("/v1/status", get(status))
        .route("/v1/artifacts/{digest}", put(upload_artifact))
        .route("/v1/deploy", post(deploy))
        .route("/v1/apps", get(apps))
        .route("/v1/apps/{app}", axum::routing::delete(remove_app))
        .route("/v1/apps/{app}/rollback", post(rollback))
        .route("/v1/functions", get(functions))
        .route("/v1/routes", get(routes))
        .route("/v1/apps/{app}/functions/{function}/invoke", post(invoke))
        .route("/v1/apps/{app}/functions/{function}/logs", get(logs))
        .route("/v1/usage", get(usage))
        .route("/v1/invocations/{id}", get(invocation))
        .route("/v1/queues", get(queues))
        .route(
            "/v1/apps/{app}/queues/{queue}/messages",
            post(send_one).get(peek),
        )
        .route(
            "/v1/apps/{app}/queues/{queue}/messages/batch",
            post(send_batch),
        )
        .route("/v1/apps/{app}/queues/{queue}/redrive", post(redrive))
        .route("/v1/apps/{app}/events", post(publish))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_ARTIFACT_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state(state)
}

/// An admin API failure; becomes `{"error":{...}}` with the mapped status.
struct ApiFailure(Error);

impl From<Error> for ApiFailure {
    fn from(error: Error) -> Self {
        ApiFailure(error)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::new_v4().simple().to_string();
        let error = &self.0;
        // Logged once, here, with its causes.
        if nimbus_wire::status_for(error.code).is_server_error() {
            tracing::error!(request_id, code = %error.code, error = %crate::report(error), "admin request failed");
        } else {
            tracing::info!(request_id, code = %error.code, message = %error.message, "admin request refused");
        }
        nimbus_wire::error_response(error.code, &error.message, Some(&request_id))
            .map(AxumBody::from)
    }
}

type ApiResult<T> = Result<Json<T>, ApiFailure>;

/// Who is calling and whether their token's scope covers the route; every request that is
/// not a read is recorded in the audit log with what it was answered.
async fn authenticate(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let actor = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| state.access.actor(token.trim()));
    let Some(actor) = actor else {
        return ApiFailure(Error::new(
            ErrorCode::Unauthorized,
            "missing or wrong bearer token; the root token is in admin.token in the server's data directory, scoped ones come from `nimbus tokens create`",
        ))
        .into_response();
    };
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let needed = access::required(&method, &path);
    let response = if actor.scope >= needed {
        next.run(request).await
    } else {
        ApiFailure(Error::new(
            ErrorCode::Forbidden,
            format!(
                "token {} has the {} scope; {method} {path} needs {}",
                actor.name,
                actor.scope.as_str(),
                needed.as_str()
            ),
        ))
        .into_response()
    };
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        state
            .access
            .record(&actor.name, &method, &path, response.status().as_u16())
            .await;
    }
    response
}

async fn not_found() -> ApiFailure {
    ApiFailure(Error::new(
        ErrorCode::RouteNotFound,
        "no such admin endpoint; see docs/api.md",
    ))
}

async fn status(State(state): State<AdminState>) -> ApiResult<Status> {
    let platform = &state.platform;
    Ok(Json(Status {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        gateway_url: platform.gateway_url().to_owned(),
        apps: platform.app_infos().len(),
        functions: platform.function_infos().len(),
        compiled: platform.compiled.load(std::sync::atomic::Ordering::Relaxed),
        cache_hits: platform
            .cache_hits
            .load(std::sync::atomic::Ordering::Relaxed),
        pooling_allocator: platform.pooling,
        process_sandbox: ProcessSandbox {
            mount_namespace: platform.sandbox.mount_namespace,
            pid_namespace: platform.sandbox.pid_namespace,
            network_namespace: platform.sandbox.network_namespace,
            private_tmp: platform.sandbox.private_tmp,
            cgroup: platform.sandbox.cgroup.map(|v| match v {
                nimbus_runtime_process::sandbox::CgroupVersion::V1 => "v1".to_owned(),
                nimbus_runtime_process::sandbox::CgroupVersion::V2 => "v2".to_owned(),
            }),
        },
        refused: {
            let refused = platform.refused();
            nimbus_api::Refused {
                blocked: refused.blocked,
                rate_limited: refused.rate_limited,
                unauthorized: refused.unauthorized,
                forbidden: refused.forbidden,
            }
        },
    }))
}

async fn upload_artifact(
    State(state): State<AdminState>,
    Path(digest): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<serde_json::Value> {
    if !nimbus_store::is_sha256_hex(&digest) {
        return Err(Error::new(
            ErrorCode::BadRequest,
            "the artifact address must be the lower-case hex SHA-256 of the bytes",
        )
        .into());
    }
    state
        .platform
        .store()
        .put_artifact(&digest, body)
        .await
        .map_err(crate::platform::store_error)?;
    Ok(Json(serde_json::json!({"digest": digest})))
}

async fn deploy(
    State(state): State<AdminState>,
    body: axum::body::Bytes,
) -> ApiResult<nimbus_api::DeployResponse> {
    let request: nimbus_api::DeployRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::new(
            ErrorCode::BadRequest,
            format!("the deploy request is not valid JSON of the documented shape: {e}"),
        )
    })?;
    Ok(Json(state.platform.deploy(request).await?))
}

async fn apps(State(state): State<AdminState>) -> ApiResult<Vec<nimbus_api::AppInfo>> {
    Ok(Json(state.platform.app_infos_with_latest().await?))
}

#[derive(Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    force: bool,
}

async fn remove_app(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    Query(query): Query<RemoveQuery>,
) -> ApiResult<nimbus_api::AppInfo> {
    Ok(Json(state.platform.remove(&app, query.force).await?))
}

async fn rollback(
    State(state): State<AdminState>,
    Path(app): Path<String>,
) -> ApiResult<nimbus_api::DeployResponse> {
    Ok(Json(state.platform.rollback(&app).await?))
}

async fn functions(State(state): State<AdminState>) -> ApiResult<Vec<nimbus_api::FunctionInfo>> {
    Ok(Json(state.platform.function_infos()))
}

async fn routes(State(state): State<AdminState>) -> ApiResult<Vec<nimbus_api::RouteInfo>> {
    Ok(Json(state.platform.route_infos()))
}

async fn invoke(
    State(state): State<AdminState>,
    Path((app, function)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    request_headers: HeaderMap,
    body: AxumBody,
) -> Result<Response, ApiFailure> {
    let pool = state.platform.pool(Some(&app), &function)?;
    if let Some(key) = nimbus_gateway::async_request(&request_headers)? {
        let body = axum::body::to_bytes(body, MAX_INVOKE_RESPONSE_BYTES)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorCode::PayloadTooLarge,
                    format!("an asynchronous event is at most {MAX_INVOKE_RESPONSE_BYTES} bytes"),
                )
            })?;
        let accepted = state
            .events
            .invoke_async(
                &app,
                &function,
                nimbus_events::MessageKind::Raw,
                body,
                key.as_deref(),
            )
            .await?;
        let response = nimbus_wire::accepted_response(&accepted.invocation_id, accepted.replay)
            .map(AxumBody::from);
        return Ok(response);
    }
    let mut method = "POST".to_owned();
    let mut path = "/".to_owned();
    let mut headers = HeaderMap::new();
    for (key, value) in query {
        match key.as_str() {
            "method" => method = value.to_ascii_uppercase(),
            "path" => path = value,
            "header" => {
                let (name, value) = value.split_once(':').ok_or_else(|| {
                    Error::new(
                        ErrorCode::BadRequest,
                        format!("header {value:?} is not NAME:VALUE"),
                    )
                })?;
                let name =
                    axum::http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
                        Error::new(
                            ErrorCode::BadRequest,
                            format!("invalid header name {name:?}"),
                        )
                    })?;
                let value = HeaderValue::from_str(value.trim()).map_err(|_| {
                    Error::new(
                        ErrorCode::BadRequest,
                        format!("invalid value for header {name}"),
                    )
                })?;
                headers.append(name, value);
            }
            _ => {}
        }
    }
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let request_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
    let mut request = axum::http::Request::builder()
        .method(method.as_str())
        .uri(path.as_str())
        .header("host", "localhost")
        .header("x-request-id", &*request_id)
        .body(body.map_err(box_body_error).boxed_unsync())
        .map_err(|e| {
            Error::new(
                ErrorCode::BadRequest,
                format!("invalid method or path: {e}"),
            )
        })?;
    request.headers_mut().extend(headers);
    // `invoke` sends the body as the function's event: Lambda-style functions get it verbatim.
    request.extensions_mut().insert(nimbus_runtime::RawEvent);

    let response = pool
        .invoke(request, request_id.clone(), nimbus_core::Trigger::Other)
        .await
        .map_err(|error| Error::new(error.code(), error.to_string()))?;
    let (parts, body) = response.into_parts();
    let collected = nimbus_runtime::read_limited(body, MAX_INVOKE_RESPONSE_BYTES)
        .await
        .map_err(|e| {
            Error::new(
                ErrorCode::FunctionBadResponse,
                format!("reading the function's response failed: {e}"),
            )
        })?;
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let (body, body_base64) = match std::str::from_utf8(&collected) {
        Ok(text) => (Some(text.to_owned()), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&collected)),
        ),
    };
    Ok(Json(InvokeResponse {
        request_id: request_id.to_string(),
        status: parts.status.as_u16(),
        headers,
        body,
        body_base64,
    })
    .into_response())
}

async fn invocation(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<nimbus_api::InvocationStatus> {
    Ok(Json(state.events.invocation(&id).await?))
}

async fn queues(State(state): State<AdminState>) -> ApiResult<Vec<nimbus_api::QueueInfo>> {
    Ok(Json(queue_infos(&state).await?))
}

/// Every app's queues, declared or not, with their depths.
async fn queue_infos(state: &AdminState) -> Result<Vec<nimbus_api::QueueInfo>, ApiFailure> {
    let now = state.events.now_ms();
    let mut out = Vec::new();
    for app in state.platform.app_infos() {
        let prefix = format!("{}/", app.name);
        let deployed = state.platform.app(&app.name)?;
        // Every declared queue and every function's own queue shows, even when empty.
        let mut names: Vec<String> = deployed
            .spec
            .events
            .queues
            .iter()
            .map(|q| q.name.to_string())
            .chain(deployed.spec.functions.keys().map(|f| format!("@{f}")))
            .collect();
        let stats = state
            .events
            .queue()
            .stats(&prefix)
            .await
            .map_err(crate::events::queue_error)?;
        for stat in &stats {
            let name = stat.queue[prefix.len()..].to_owned();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names.sort();
        for name in names {
            let stat = stats.iter().find(|s| s.queue[prefix.len()..] == name);
            out.push(nimbus_api::QueueInfo {
                app: app.name.clone(),
                queue: name,
                ready: stat.map_or(0, |s| s.ready),
                in_flight: stat.map_or(0, |s| s.in_flight),
                delayed: stat.map_or(0, |s| s.delayed),
                oldest_age_ms: stat
                    .and_then(|s| s.oldest_enqueued_ms)
                    .map(|t| now.saturating_sub(t)),
            });
        }
    }
    Ok(out)
}

#[derive(Deserialize)]
struct SendQuery {
    group: Option<String>,
}

async fn send_one(
    State(state): State<AdminState>,
    Path((app, queue)): Path<(String, String)>,
    Query(query): Query<SendQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<nimbus_api::SendResponse> {
    let deployed = state.platform.app(&app)?;
    let mut meta =
        nimbus_events::MessageMeta::new(nimbus_events::MessageKind::Message, state.events.now_ms());
    meta.group = query.group;
    meta.content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ids = state
        .events
        .send(&deployed, &queue, vec![(body, meta)])
        .await?;
    Ok(Json(nimbus_api::SendResponse { ids }))
}

async fn send_batch(
    State(state): State<AdminState>,
    Path((app, queue)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<nimbus_api::SendResponse> {
    let deployed = state.platform.app(&app)?;
    let batch: nimbus_api::SendBatch = serde_json::from_slice(&body).map_err(|e| {
        Error::new(
            ErrorCode::BadRequest,
            format!("expected {{\"messages\": [{{\"body\": \"…\"}}, …]}}: {e}"),
        )
    })?;
    let now = state.events.now_ms();
    let mut messages = Vec::with_capacity(batch.messages.len());
    for (index, message) in batch.messages.into_iter().enumerate() {
        let body = match (message.body, message.body_base64) {
            (Some(text), None) => axum::body::Bytes::from(text),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map(axum::body::Bytes::from)
                .map_err(|e| {
                    Error::new(
                        ErrorCode::BadRequest,
                        format!("messages[{index}].body_base64 is not base64: {e}"),
                    )
                })?,
            _ => {
                return Err(Error::new(
                    ErrorCode::BadRequest,
                    format!("messages[{index}] needs exactly one of `body` or `body_base64`"),
                )
                .into());
            }
        };
        let mut meta = nimbus_events::MessageMeta::new(nimbus_events::MessageKind::Message, now);
        meta.group = message.group;
        meta.content_type = message.content_type;
        meta.attributes = message.attributes;
        messages.push((body, meta));
    }
    let ids = state.events.send(&deployed, &queue, messages).await?;
    Ok(Json(nimbus_api::SendResponse { ids }))
}

#[derive(Deserialize)]
struct PeekQuery {
    limit: Option<usize>,
}

async fn peek(
    State(state): State<AdminState>,
    Path((app, queue)): Path<(String, String)>,
    Query(query): Query<PeekQuery>,
) -> ApiResult<Vec<nimbus_api::PeekedMessage>> {
    let deployed = state.platform.app(&app)?;
    crate::events::check_queue(&deployed, &queue)?;
    let peeked = state
        .events
        .queue()
        .peek(
            &format!("{app}/{queue}"),
            query.limit.unwrap_or(10).min(1000),
        )
        .await
        .map_err(crate::events::queue_error)?;
    Ok(Json(
        peeked
            .into_iter()
            .map(|p| {
                let (body, body_base64) = match std::str::from_utf8(&p.body) {
                    Ok(text) => (Some(text.to_owned()), None),
                    Err(_) => (
                        None,
                        Some(base64::engine::general_purpose::STANDARD.encode(&p.body)),
                    ),
                };
                nimbus_api::PeekedMessage {
                    id: p.id.to_string(),
                    body,
                    body_base64,
                    kind: match p.meta.kind {
                        nimbus_events::MessageKind::Message => "message",
                        nimbus_events::MessageKind::Event => "event",
                        nimbus_events::MessageKind::Raw => "raw",
                        nimbus_events::MessageKind::Http { .. } => "http",
                        nimbus_events::MessageKind::Record { .. } => "record",
                    }
                    .to_owned(),
                    attempts: p.meta.attempts,
                    enqueued_ms: p.meta.enqueued_ms,
                    in_flight: p.in_flight,
                    group: p.meta.group.clone().filter(|g| !g.is_empty()),
                    invocation_id: p.meta.invocation.clone(),
                    dead: p.meta.dead.as_ref().map(|d| nimbus_api::DeadInfo {
                        reason: d.reason.as_str().to_owned(),
                        origin: d.origin.clone(),
                        error: d.error.clone(),
                    }),
                }
            })
            .collect(),
    ))
}

async fn redrive(
    State(state): State<AdminState>,
    Path((app, queue)): Path<(String, String)>,
) -> ApiResult<nimbus_api::RedriveResponse> {
    let deployed = state.platform.app(&app)?;
    crate::events::check_queue(&deployed, &queue)?;
    // A `.dlq`, or a declared queue some function uses as its `dead_letter`, is redriven
    // itself; any other queue means its `.dlq`.
    let custom_dead_letter = deployed.spec.functions.values().any(|f| {
        f.delivery
            .dead_letter
            .as_ref()
            .is_some_and(|q| q.as_str() == queue)
    });
    let dlq = if queue.ends_with(".dlq") || custom_dead_letter {
        format!("{app}/{queue}")
    } else {
        nimbus_events::message::dlq_of(&format!("{app}/{queue}"))
    };
    let moved = state
        .events
        .queue()
        .redrive(&dlq)
        .await
        .map_err(crate::events::queue_error)?;
    Ok(Json(nimbus_api::RedriveResponse { moved }))
}

async fn publish(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<nimbus_api::PublishResponse> {
    let deployed = state.platform.app(&app)?;
    let event = crate::events::parse_event(&headers, body)?;
    Ok(Json(state.events.publish(&deployed, event).await?))
}

#[derive(Deserialize)]
struct LogsQuery {
    #[serde(default)]
    after: u64,
    tail: Option<usize>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct UsageQuery {
    app: Option<String>,
    #[serde(default)]
    since_ms: u64,
}

/// Usage per function per hour (docs/observability.md, "Usage").
async fn usage(
    State(state): State<AdminState>,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Vec<nimbus_core::UsageRow>> {
    if let Some(app) = &query.app {
        state.platform.app(app)?;
    }
    let rows = state
        .platform
        .record_store()
        .usage(query.app.as_deref(), query.since_ms)
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, "usage could not be read").caused_by(e))?;
    Ok(Json(rows))
}

async fn logs(
    State(state): State<AdminState>,
    Path((app, function)): Path<(String, String)>,
    Query(query): Query<LogsQuery>,
) -> ApiResult<LogsResponse> {
    // Validate the function exists, so a typo is an error rather than an empty log.
    state.platform.pool(Some(&app), &function)?;
    let store = state.platform.record_store();
    let read = |e: nimbus_store::StoreError| {
        Error::new(
            ErrorCode::Internal,
            "the invocation records could not be read",
        )
        .caused_by(e)
    };
    let after = match query.tail {
        Some(tail) => store
            .last_seq(&app, &function)
            .await
            .map_err(read)?
            .saturating_sub(tail as u64)
            .max(query.after),
        None => query.after,
    };
    let records = store
        .records(
            &app,
            &function,
            after,
            query.limit.unwrap_or(1000).min(1000),
        )
        .await
        .map_err(read)?;
    Ok(Json(LogsResponse { records }))
}
