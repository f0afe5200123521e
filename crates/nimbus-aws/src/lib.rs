//! The AWS-compatible endpoint: one listener for every AWS-shaped API nimbus offers, told apart
//! as AWS tells them apart — S3 by path and host (path-style `/<bucket>/<key>` or, under
//! `--aws-domain`, virtual-hosted `<bucket>.<domain>`), JSON-protocol services by
//! `X-Amz-Target` as they arrive (s3s's custom route). Like LocalStack's edge port.
//!
//! Signing is AWS's: s3s checks SigV4 (header and presigned, `UNSIGNED-PAYLOAD`, `aws-chunked`
//! with per-chunk signatures and trailers) and SigV2 presigned URLs, comparing signatures in
//! constant time and refusing a clock skew beyond 15 minutes, against the secrets [`Keys`]
//! holds. Every answer carries `x-amz-request-id` (and `x-amz-id-2`), as S3's do.

pub mod keys;

pub use keys::{
    CreatedKey, Delegated, KeyError, KeyInfo, Keys, MASTER_KEY_FILE, MasterKey, Principal,
};

use s3s::service::{S3Service, S3ServiceBuilder};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A boxed body, as the local listeners of functions carry them.
pub type StreamingBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, s3s::StdError>;

/// The endpoint's service, as the composition root holds it.
pub type Endpoint = S3Service;

/// The region nimbus answers as, and hands to functions.
pub const REGION: &str = "us-east-1";

/// A request's id, in the request's extensions for the services to quote in error bodies.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// What a service plugs into the endpoint.
pub struct Services<S, A> {
    /// The S3 implementation.
    pub s3: S,
    /// Who may do what, checked after the signature and before the operation.
    pub access: A,
}

/// Assemble the endpoint's service: `services` behind `keys`, with virtual-hosted addressing
/// under `domain` when given.
pub fn service<S, A>(
    services: Services<S, A>,
    keys: Keys,
    domain: Option<&str>,
) -> Result<S3Service, String>
where
    S: s3s::S3,
    A: s3s::access::S3Access,
{
    let mut builder = S3ServiceBuilder::new(services.s3);
    builder.set_auth(keys);
    builder.set_access(services.access);
    if let Some(domain) = domain {
        let host = s3s::host::SingleDomain::new(domain)
            .map_err(|error| format!("--aws-domain {domain:?}: {error}"))?;
        builder.set_host(host);
    }
    Ok(builder.build())
}

/// Mints S3-style request ids: 16 upper-case hex digits, unique per process.
struct RequestIds {
    prefix: u32,
    counter: AtomicU64,
}

impl RequestIds {
    fn next(&self) -> (Arc<str>, String) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08X}{:08X}", self.prefix, n as u32);
        let id2 = format!("{:016x}{:016x}", u64::from(self.prefix) << 32 | n, n);
        (Arc::from(id), id2)
    }
}

/// Answer one request. A panic inside the S3 layer (a parser bug in s3s, say) is caught and
/// answered as S3's `InternalError`, so a hostile request costs its own answer and nothing
/// else.
pub async fn call(
    service: &S3Service,
    request: http::Request<s3s::Body>,
    request_id: &str,
) -> http::Response<s3s::Body> {
    use futures::FutureExt as _;
    let answered = std::panic::AssertUnwindSafe(service.call(request))
        .catch_unwind()
        .await;
    match answered {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::error!(error = ?error, request_id, "AWS endpoint");
            internal_error(request_id)
        }
        Err(_) => {
            tracing::error!(
                request_id,
                "the S3 layer panicked on a request; answered 500"
            );
            internal_error(request_id)
        }
    }
}

/// [`call`] with any body in and a boxed body out, for callers that are not hyper servers
/// (a function's local listener).
pub async fn call_streaming(
    service: &S3Service,
    request: http::Request<StreamingBody>,
    request_id: &str,
) -> http::Response<StreamingBody> {
    use http_body_util::BodyExt as _;
    call(
        service,
        request.map(s3s::Body::http_body_unsync),
        request_id,
    )
    .await
    .map(|body| body.boxed_unsync())
}

fn internal_error(request_id: &str) -> http::Response<s3s::Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
         <Message>We encountered an internal error. Please try again.</Message>\
         <RequestId>{request_id}</RequestId></Error>"
    );
    let mut response = http::Response::new(s3s::Body::from(body));
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    response
}

/// Serve `service` on `listener` until `shutdown` is cancelled; then drain.
pub async fn serve(listener: TcpListener, service: S3Service, shutdown: CancellationToken) {
    let ids = Arc::new(RequestIds {
        prefix: rand::random(),
        counter: AtomicU64::new(0),
    });
    let make = move |_peer| {
        let service = service.clone();
        let ids = ids.clone();
        hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            let service = service.clone();
            let (id, id2) = ids.next();
            request.extensions_mut().insert(RequestId(id.clone()));
            async move {
                let mut response = call(&service, request.map(s3s::Body::from), &id).await;
                let headers = response.headers_mut();
                if let Ok(value) = http::HeaderValue::from_str(&id) {
                    headers.insert("x-amz-request-id", value);
                }
                if let Ok(value) = http::HeaderValue::from_str(&id2) {
                    headers.insert("x-amz-id-2", value);
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    nimbus_wire::serve(listener, Duration::from_secs(10), make, shutdown).await;
}
