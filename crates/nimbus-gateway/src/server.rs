//! The gateway's HTTP server and per-request path.
//!
//! Per request: take or mint the request id; match the route; refuse bodies over the limit
//! (413, by `content-length` up front, or mid-stream for chunked bodies); strip any client-sent
//! `x-nimbus-*` headers and add the trusted ones (`x-nimbus-param-<name>`, `x-nimbus-route`,
//! `x-nimbus-path-info`, `x-request-id`); hand the request to the function's pool; stream the
//! response back with `x-request-id` set. HTTP/1.1 and h2c are served on the same port.
//!
//! Stages in front of the function, in order: a CORS preflight is answered from the app's
//! [`Cors`](crate::cors::Cors) policy; the route's
//! [`RateLimiter`](crate::ratelimit::RateLimiter) takes a token (429 `rate_limited` when the
//! bucket is empty); the route's authorizer checks the bearer token (401 `unauthorized`, 403
//! `forbidden` without the scope) and its claims go to the function in `x-nimbus-claims`. On
//! the way out, every response — the function's or an error — gets the CORS headers for an
//! allowed origin and the `RateLimit-*` headers of a limited route.

use crate::cors::{self, Cors, Preflight};
use crate::error::GatewayError;
use crate::ratelimit::{RateLimiter, Verdict};
use crate::router::{Match, RouteTable};
use crate::stages::RouteStages;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use nimbus_core::ErrorCode;
use nimbus_dispatch::{DispatchError, Pool};
use nimbus_runtime::{Body, BodyError, ClientAddr, Response, RouteService};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Accepts asynchronous invocations (`x-nimbus-invocation-type: event`): the gateway hands the
/// whole request over and answers 202 once it is durably queued.
#[async_trait::async_trait]
pub trait AsyncInvoke: Send + Sync {
    async fn enqueue_http(
        &self,
        app: &str,
        function: &str,
        parts: &http::request::Parts,
        body: Bytes,
        idempotency_key: Option<&str>,
    ) -> Result<AsyncAccepted, nimbus_core::error::Error>;
}

/// An asynchronous invocation the gateway accepted.
#[derive(Debug, Clone)]
pub struct AsyncAccepted {
    pub invocation_id: String,
    /// The idempotency key was seen before: this is the earlier invocation.
    pub replay: bool,
}

/// The header asking for an asynchronous invocation, and its value.
pub const INVOCATION_TYPE_HEADER: &str = "x-nimbus-invocation-type";
/// The header carrying an idempotency key for asynchronous invocations.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// What a request's headers ask for: `None` for an ordinary (synchronous) invocation, or an
/// asynchronous one with its idempotency key. The gateway and the admin API's `invoke` both
/// decide with this.
pub fn async_request(
    headers: &http::HeaderMap,
) -> Result<Option<Option<String>>, nimbus_core::error::Error> {
    let bad = |message: String| nimbus_core::error::Error::new(ErrorCode::BadRequest, message);
    match headers.get(INVOCATION_TYPE_HEADER).map(|v| v.as_bytes()) {
        None => return Ok(None),
        Some(v) if v.eq_ignore_ascii_case(b"request-response") => return Ok(None),
        Some(v) if v.eq_ignore_ascii_case(b"event") => {}
        Some(_) => {
            return Err(bad(format!(
                "{INVOCATION_TYPE_HEADER} must be \"event\" (asynchronous) or \"request-response\""
            )));
        }
    }
    match headers.get(IDEMPOTENCY_KEY_HEADER) {
        None => Ok(Some(None)),
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 256 => Ok(Some(Some(key.to_owned()))),
            _ => Err(bad(
                "the Idempotency-Key header must be 1-256 visible ASCII characters".into(),
            )),
        },
    }
}

/// What a route points at.
pub struct RouteTarget {
    pub app: String,
    /// The function's name, or the service's (for logs).
    pub function: String,
    pub handler: Handler,
    /// The app's CORS policy, this route's rate limit and authorizer.
    pub stages: RouteStages,
    /// What this route answered, counted as the gateway answers.
    pub stats: Arc<RouteStats>,
}

/// A route's answers by status class (1xx … 5xx): one atomic add per request, read when
/// metrics are scraped. Kept by the app's version, so a deploy of another app leaves it be.
#[derive(Debug)]
pub struct RouteStats {
    /// The route as the manifest gives it (`/orders/{id}`), a bounded label.
    pub route: String,
    answered: [std::sync::atomic::AtomicU64; 5],
}

impl RouteStats {
    pub fn new(route: impl Into<String>) -> RouteStats {
        RouteStats {
            route: route.into(),
            answered: Default::default(),
        }
    }

    fn count(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).saturating_sub(1);
        if let Some(counter) = self.answered.get(class) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers so far by status class: `("2xx", n)`, …
    pub fn answered(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ["1xx", "2xx", "3xx", "4xx", "5xx"]
            .into_iter()
            .zip(&self.answered)
            .map(|(class, n)| (class, n.load(Ordering::Relaxed)))
    }
}

/// Who answers a route's requests.
pub enum Handler {
    /// A function, through its pool.
    Function(Arc<Pool>),
    /// A platform service mounted on the app's routes (its auth API).
    Service(Arc<dyn RouteService>),
}

/// What the stages in front of the function leave for the response.
#[derive(Default)]
struct Outgoing {
    cors: Option<Arc<Cors>>,
    rate: Option<Verdict>,
    /// The route's counters, once a route matched.
    stats: Option<Arc<RouteStats>>,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// How long a client may take to send the request head.
    pub header_read_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_body_bytes: 16 << 20,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

pub struct Gateway {
    routes: ArcSwap<RouteTable<Arc<RouteTarget>>>,
    async_invoke: std::sync::OnceLock<Arc<dyn AsyncInvoke>>,
    config: GatewayConfig,
    id_prefix: u64,
    id_counter: AtomicU64,
    /// For what the stages fetch themselves (issuers' keys).
    outbound: reqwest::Client,
    /// Refusals by the stages, in [`Refused`]'s field order.
    refused: [AtomicU64; 4],
}

/// How many requests the gateway's stages refused since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    /// By an app's firewall (403 `blocked`).
    pub blocked: u64,
    /// By a route's rate limit (429 `rate_limited`).
    pub rate_limited: u64,
    /// For a missing or bad credential (401 `unauthorized`).
    pub unauthorized: u64,
    /// For a missing scope or a refused CORS preflight (403 `forbidden`).
    pub forbidden: u64,
}

impl Gateway {
    pub fn new(config: GatewayConfig) -> Arc<Gateway> {
        Arc::new(Gateway {
            routes: ArcSwap::from_pointee(RouteTable::default()),
            async_invoke: std::sync::OnceLock::new(),
            config,
            id_prefix: rand::random(),
            id_counter: AtomicU64::new(0),
            refused: Default::default(),
            outbound: reqwest::Client::builder()
                .user_agent(concat!("nimbus/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        })
    }

    /// The HTTP client the stages fetch with (an authorizer's issuer keys).
    pub fn outbound(&self) -> &reqwest::Client {
        &self.outbound
    }

    pub fn refused(&self) -> Refused {
        let [blocked, rate_limited, unauthorized, forbidden] =
            self.refused.each_ref().map(|n| n.load(Ordering::Relaxed));
        Refused {
            blocked,
            rate_limited,
            unauthorized,
            forbidden,
        }
    }

    /// Where asynchronous invocations go; set once at start.
    pub fn set_async(&self, invoker: Arc<dyn AsyncInvoke>) {
        let _ = self.async_invoke.set(invoker);
    }

    /// Atomically replace the routing table.
    pub fn set_routes(&self, table: RouteTable<Arc<RouteTarget>>) {
        self.routes.store(Arc::new(table));
    }

    pub fn routes(&self) -> Arc<RouteTable<Arc<RouteTarget>>> {
        self.routes.load_full()
    }

    fn request_id(&self, request: &http::Request<Incoming>) -> Arc<str> {
        if let Some(given) = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            && !given.is_empty()
            && given.len() <= 128
            && given.bytes().all(|b| b.is_ascii_graphic())
        {
            return Arc::from(given);
        }
        let n = self.id_counter.fetch_add(1, Ordering::Relaxed);
        Arc::from(format!("{:016x}{:016x}", self.id_prefix, n))
    }

    /// Handle one request end to end; never fails (errors become responses).
    pub async fn handle(self: Arc<Self>, request: http::Request<Incoming>) -> Response {
        let request_id = self.request_id(&request);
        let origin = request.headers().get(http::header::ORIGIN).cloned();
        let mut outgoing = Outgoing::default();
        let mut response = match self.route(request, request_id.clone(), &mut outgoing).await {
            Ok(response) => response,
            Err(error) => {
                let counter = match error.code {
                    ErrorCode::Blocked => self.refused.first(),
                    ErrorCode::RateLimited => self.refused.get(1),
                    ErrorCode::Unauthorized => self.refused.get(2),
                    ErrorCode::Forbidden => self.refused.get(3),
                    _ => None,
                };
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                match &error.source {
                    // A failure inside nimbus: this is its one log line, with the cause.
                    Some(source) => {
                        tracing::error!(request_id = %request_id, code = %error.code, message = %error.message, cause = %nimbus_wire::report(&**source), "request failed")
                    }
                    None => {
                        tracing::debug!(request_id = %request_id, code = %error.code, message = %error.message, "request failed")
                    }
                }
                error.into_response(&request_id)
            }
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(X_REQUEST_ID, value);
        }
        if let Some(cors) = &outgoing.cors {
            cors.decorate(origin.as_ref(), response.headers_mut());
        }
        if let Some(verdict) = &outgoing.rate {
            verdict.write(response.headers_mut());
        }
        if let Some(stats) = &outgoing.stats {
            stats.count(response.status());
        }
        response
    }

    async fn route(
        &self,
        mut request: http::Request<Incoming>,
        request_id: Arc<str>,
        outgoing: &mut Outgoing,
    ) -> Result<Response, GatewayError> {
        let table = self.routes.load();
        let host = request.uri().host().map(str::to_owned).or_else(|| {
            request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(strip_port)
        });
        let path = request.uri().path().to_owned();
        if let Some(method) = cors::preflight_method(request.method(), request.headers())
            && let Match::Found { target, .. } = table.lookup(host.as_deref(), &method, &path)
            && let Some(policy) = &target.stages.cors
        {
            outgoing.stats = Some(target.stats.clone());
            screen(&target.stages, &mut request)?;
            let headers = request.headers();
            let origin = headers
                .get(http::header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .unwrap_or("");
            let asked = headers
                .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
                .and_then(|h| h.to_str().ok());
            return match policy.preflight(origin, &method, asked) {
                Preflight::Allowed(headers) => {
                    let mut response = http::Response::new(
                        http_body_util::Empty::new()
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                    );
                    *response.status_mut() = http::StatusCode::NO_CONTENT;
                    *response.headers_mut() = headers;
                    Ok(response)
                }
                Preflight::Refused(message) => {
                    Err(GatewayError::new(ErrorCode::Forbidden, message))
                }
            };
        }
        let (target, route, params, rest) =
            match table.lookup(host.as_deref(), request.method().as_str(), &path) {
                Match::Found {
                    target,
                    route,
                    params,
                    rest,
                } => (target.clone(), route.to_owned(), params, rest),
                Match::MethodNotAllowed { allow } => {
                    let mut error = GatewayError::new(
                        ErrorCode::MethodNotAllowed,
                        format!(
                            "{} is not allowed on {path}; allowed: {}",
                            request.method(),
                            allow.join(", ")
                        ),
                    );
                    error.allow = Some(allow.join(", "));
                    return Err(error);
                }
                Match::NotFound => {
                    return Err(GatewayError::new(
                        ErrorCode::RouteNotFound,
                        format!("no route matches {path}; `nimbus routes` lists them"),
                    ));
                }
            };
        outgoing.cors = target.stages.cors.clone();
        outgoing.stats = Some(target.stats.clone());
        let client = screen(&target.stages, &mut request)?;
        if let Some(limiter) = &target.stages.rate_limit
            && !limiter.by_subject()
        {
            admit(limiter.check(client), limiter, &route, outgoing)?;
        }

        let limit = target
            .stages
            .max_body_bytes
            .map_or(self.config.max_body_bytes, |route| {
                route.min(self.config.max_body_bytes)
            });
        let too_large = || {
            GatewayError::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than the limit of {limit} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(too_large());
        }

        let (mut parts, body) = request.into_parts();
        let asynchronous =
            async_request(&parts.headers).map_err(|e| GatewayError::new(e.code, e.message))?;
        // Only nimbus may speak in x-nimbus-* headers.
        let spoofed: Vec<HeaderName> = parts
            .headers
            .keys()
            .filter(|name| name.as_str().starts_with("x-nimbus-"))
            .cloned()
            .collect();
        for name in spoofed {
            parts.headers.remove(name);
        }
        for (name, value) in &params {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(
                    format!("x-nimbus-param-{}", name.to_ascii_lowercase()).as_bytes(),
                ),
                HeaderValue::from_str(value),
            ) {
                parts.headers.insert(name, value);
            }
        }
        if let Ok(value) = HeaderValue::from_str(&route) {
            parts.headers.insert(X_NIMBUS_ROUTE, value);
        }
        if let Some(value) = rest.and_then(|r| HeaderValue::from_str(&format!("/{r}")).ok()) {
            parts.headers.insert(X_NIMBUS_PATH_INFO, value);
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            parts.headers.insert(X_REQUEST_ID, value);
        }
        if parts.uri.authority().is_none() && !parts.headers.contains_key(http::header::HOST) {
            parts
                .headers
                .insert(http::header::HOST, HeaderValue::from_static("localhost"));
        }
        drop(params);
        drop(table);
        if let Some(auth) = &target.stages.auth {
            let verified = auth
                .check(&parts, &request_id)
                .await
                .map_err(GatewayError::refused)?;
            if let Some(limiter) = &target.stages.rate_limit
                && limiter.by_subject()
            {
                admit(
                    limiter.check_subject(&verified.subject),
                    limiter,
                    &route,
                    outgoing,
                )?;
            }
            parts.headers.insert(CLAIMS, verified.header.clone());
            if verified.function {
                parts.headers.insert(
                    AUTHORIZER,
                    HeaderValue::from_static(nimbus_core::claims::FUNCTION_AUTHORIZER),
                );
            }
        }

        let pool = match &target.handler {
            Handler::Function(pool) => pool,
            Handler::Service(service) => {
                let body: Body = LimitedBody {
                    inner: body,
                    remaining: limit,
                    exceeded: Arc::new(AtomicBool::new(false)),
                }
                .boxed_unsync();
                // What follows the mount point: the path info set above for functions.
                let path = parts
                    .headers
                    .get(X_NIMBUS_PATH_INFO)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("/")
                    .to_owned();
                let request = http::Request::from_parts(parts, body);
                return Ok(service.serve(request, &path).await);
            }
        };
        if let Some(idempotency_key) = asynchronous {
            return self
                .enqueue(&target, parts, body, limit, idempotency_key)
                .await;
        }

        let exceeded = Arc::new(AtomicBool::new(false));
        let body: Body = LimitedBody {
            inner: body,
            remaining: limit,
            exceeded: exceeded.clone(),
        }
        .boxed_unsync();
        let request = http::Request::from_parts(parts, body);

        let result = pool
            .invoke(request, request_id, nimbus_core::Trigger::Http)
            .await;
        if exceeded.load(Ordering::Relaxed) {
            return Err(too_large());
        }
        result.map_err(|error| {
            let mut failure = GatewayError::new(error.code(), error.to_string());
            match error {
                DispatchError::Busy { retry_after, .. } => failure.retry_after = Some(retry_after),
                DispatchError::Invoke(invoke) => {
                    tracing::warn!(app = %target.app, function = %target.function, error = %invoke, "invocation failed")
                }
            }
            failure
        })
    }
}

/// The firewall stage: resolve the client's address (through trusted proxies; the request's
/// `ClientAddr` becomes it, so rate limits and Lambda's `sourceIp` see the same client) and
/// refuse what the app's firewall blocks (403 `blocked`).
fn screen(
    stages: &RouteStages,
    request: &mut http::Request<Incoming>,
) -> Result<Option<std::net::IpAddr>, GatewayError> {
    let peer = request.extensions().get::<ClientAddr>().map(|c| c.0);
    let Some(firewall) = &stages.firewall else {
        return Ok(peer.map(|p| p.ip()));
    };
    // Every connection has a peer; a request without one is judged as from nowhere.
    let peer = peer.unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let client = firewall.client(peer.ip(), request.headers());
    if let Err(blocked) = firewall.check(client, request.method(), request.headers()) {
        return Err(GatewayError::new(ErrorCode::Blocked, blocked.0));
    }
    if client != peer.ip() {
        request
            .extensions_mut()
            .insert(ClientAddr(std::net::SocketAddr::new(client, peer.port())));
    }
    Ok(Some(client))
}

/// Let a request through `limiter` or refuse it (429); either way its response will carry the
/// bucket's `RateLimit-*` headers.
fn admit(
    verdict: Verdict,
    limiter: &RateLimiter,
    route: &str,
    outgoing: &mut Outgoing,
) -> Result<(), GatewayError> {
    outgoing.rate = Some(verdict);
    match verdict.retry_after_secs() {
        None => Ok(()),
        Some(secs) => {
            let mut error = GatewayError::new(
                ErrorCode::RateLimited,
                format!(
                    "too many requests to {route}: {}; retry in {secs}s",
                    limiter.describe()
                ),
            );
            error.retry_after = Some(Duration::from_secs(secs));
            Err(error)
        }
    }
}

impl Gateway {
    /// Read the whole body and queue the request as an asynchronous invocation: 202 with the
    /// invocation id once it is durable.
    async fn enqueue(
        &self,
        target: &RouteTarget,
        parts: http::request::Parts,
        body: Incoming,
        limit: u64,
        key: Option<String>,
    ) -> Result<Response, GatewayError> {
        let Some(invoker) = self.async_invoke.get() else {
            return Err(GatewayError::new(
                ErrorCode::BadRequest,
                "asynchronous invocation is not available on this server",
            ));
        };
        let collected = http_body_util::Limited::new(body, limit as usize)
            .collect()
            .await
            .map_err(|_| {
                GatewayError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the request body is larger than the limit of {limit} bytes"),
                )
            })?
            .to_bytes();
        let accepted = invoker
            .enqueue_http(
                &target.app,
                &target.function,
                &parts,
                collected,
                key.as_deref(),
            )
            .await
            .map_err(GatewayError::from)?;
        Ok(
            nimbus_wire::accepted_response(&accepted.invocation_id, accepted.replay).map(|bytes| {
                http_body_util::Full::new(bytes)
                    .map_err(|never| match never {})
                    .boxed_unsync()
            }),
        )
    }
}
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_NIMBUS_ROUTE: HeaderName = HeaderName::from_static("x-nimbus-route");
const X_NIMBUS_PATH_INFO: HeaderName = HeaderName::from_static("x-nimbus-path-info");
const CLAIMS: HeaderName = HeaderName::from_static(nimbus_core::claims::CLAIMS_HEADER);
const AUTHORIZER: HeaderName = HeaderName::from_static(nimbus_core::claims::AUTHORIZER_HEADER);

fn strip_port(host: &str) -> String {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map(|(h, _)| format!("{h}]"))
            .unwrap_or_else(|| host.to_owned());
    }
    host.split(':').next().unwrap_or(host).to_ascii_lowercase()
}

/// A request body that stops at `remaining` bytes and records that the client sent more.
struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.exceeded.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(
                            "request body exceeds the gateway's limit".into()
                        )));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Box::new(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub use nimbus_wire::DRAIN_TIMEOUT;

/// Serve HTTP/1.1 and h2c on `listener` (over TLS with HTTP/2 by ALPN, when `tls` is given)
/// until `shutdown` is cancelled; then stop accepting, let in-flight requests finish (at most
/// [`DRAIN_TIMEOUT`]) and close idle connections.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Option<Arc<nimbus_wire::tls::Tls>>,
    shutdown: CancellationToken,
) {
    let header_read_timeout = gateway.config.header_read_timeout;
    let make = move |peer| {
        let gateway = gateway.clone();
        hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ClientAddr(peer));
            let gateway = gateway.clone();
            async move { Ok::<_, std::convert::Infallible>(gateway.handle(request).await) }
        })
    };
    nimbus_wire::serve_with(listener, tls, header_read_timeout, make, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn async_request_headers() {
        assert_eq!(async_request(&headers(&[])).unwrap(), None);
        let rr = [(INVOCATION_TYPE_HEADER, "Request-Response")];
        assert_eq!(async_request(&headers(&rr)).unwrap(), None);
        let event = [(INVOCATION_TYPE_HEADER, "Event")];
        assert_eq!(async_request(&headers(&event)).unwrap(), Some(None));
        let keyed = [
            (INVOCATION_TYPE_HEADER, "event"),
            (IDEMPOTENCY_KEY_HEADER, "k-1"),
        ];
        assert_eq!(
            async_request(&headers(&keyed)).unwrap(),
            Some(Some("k-1".to_owned()))
        );
        let long = "k".repeat(257);
        for bad in [
            vec![(INVOCATION_TYPE_HEADER, "sometimes")],
            vec![
                (INVOCATION_TYPE_HEADER, "event"),
                (IDEMPOTENCY_KEY_HEADER, ""),
            ],
            vec![
                (INVOCATION_TYPE_HEADER, "event"),
                (IDEMPOTENCY_KEY_HEADER, long.as_str()),
            ],
        ] {
            let error = async_request(&headers(&bad)).unwrap_err();
            assert_eq!(error.code, ErrorCode::BadRequest, "{bad:?}");
        }
    }
}
