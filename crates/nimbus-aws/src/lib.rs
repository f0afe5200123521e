//! The AWS-compatible endpoint: one listener for every AWS-shaped API nimbus offers, told apart
//! as AWS tells them apart — S3 by path and host (path-style `/<bucket>/<key>` or, under
//! `--aws-domain`, virtual-hosted `<bucket>.<domain>`), JSON-protocol services by
//! `X-Amz-Target` as they arrive (s3s's custom route). Like LocalStack's edge port.
//!
//! Signing is AWS's: s3s checks SigV4 (header and presigned, `UNSIGNED-PAYLOAD`, `aws-chunked`
//! with per-chunk signatures and trailers) and SigV2 presigned URLs, comparing signatures in
//! constant time and refusing a clock skew beyond 15 minutes, against the secrets [`Keys`]
//! holds. Every answer carries `x-amz-request-id` (and `x-amz-id-2`), as S3's do.

pub mod json;
pub mod keys;

pub use json::{JsonAnswer, JsonError, JsonService};
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

/// The endpoint's services, as the composition root holds them: S3 through s3s, and the
/// JSON-protocol services told apart by `X-Amz-Target`. Cheap to clone.
#[derive(Clone)]
pub struct Endpoint {
    s3: S3Service,
    json: Arc<[Arc<dyn JsonService>]>,
    keys: Keys,
}

pub use nimbus_core::aws::REGION;

/// A request's id, in the request's extensions for the services to quote in error bodies.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// What a service plugs into the endpoint.
pub struct Services<S, A> {
    /// The S3 implementation.
    pub s3: S,
    /// Who may do what, checked after the signature and before the operation.
    pub access: A,
    /// The JSON-protocol services (DynamoDB, …); each checks its own callers' reach.
    pub json: Vec<Arc<dyn JsonService>>,
}

/// Assemble the endpoint's service: `services` behind `keys`, with virtual-hosted addressing
/// under `domain` when given.
pub fn service<S, A>(
    services: Services<S, A>,
    keys: Keys,
    domain: Option<&str>,
) -> Result<Endpoint, String>
where
    S: s3s::S3,
    A: s3s::access::S3Access,
{
    let mut builder = S3ServiceBuilder::new(services.s3);
    builder.set_auth(keys.clone());
    builder.set_access(services.access);
    if let Some(domain) = domain {
        let host = s3s::host::SingleDomain::new(domain)
            .map_err(|error| format!("--aws-domain {domain:?}: {error}"))?;
        builder.set_host(host);
    }
    Ok(Endpoint {
        s3: builder.build(),
        json: services.json.into(),
        keys,
    })
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
    endpoint: &Endpoint,
    request: http::Request<s3s::Body>,
    request_id: &str,
) -> http::Response<s3s::Body> {
    use futures::FutureExt as _;
    if let Some((service, operation)) = json::route(&endpoint.json, request.headers()) {
        let answered = std::panic::AssertUnwindSafe(json::call(
            service,
            &operation,
            &endpoint.keys,
            request,
            request_id,
        ))
        .catch_unwind()
        .await;
        return answered.unwrap_or_else(|_| {
            tracing::error!(request_id, "a JSON-protocol service panicked; answered 500");
            json::internal_error(request_id)
        });
    }
    let answered = std::panic::AssertUnwindSafe(endpoint.s3.call(request))
        .catch_unwind()
        .await;
    match answered {
        Ok(Ok(response)) => complete_error(response, request_id),
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
    service: &Endpoint,
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

/// S3's default message for an error code, for errors raised without one.
fn default_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "AccessDenied" => "Access Denied",
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method."
        }
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the current time is too large."
        }
        "InvalidBucketName" => "The specified bucket is not valid.",
        "NoSuchBucket" => "The specified bucket does not exist",
        "NoSuchKey" => "The specified key does not exist.",
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our \
             published schema."
        }
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "InvalidRequest" => "Invalid Request",
        "InvalidArgument" => "Invalid Argument",
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed object size.",
        "XAmzContentSHA256Mismatch" => {
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        }
        _ => return None,
    })
}

/// Give an error answered by the S3 layer itself (signature, routing, validation) what S3's
/// error bodies always carry: a `<Message>` and the `<RequestId>`.
fn complete_error(
    mut response: http::Response<s3s::Body>,
    request_id: &str,
) -> http::Response<s3s::Body> {
    if !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    let Some(bytes) = response.body().bytes() else {
        return response;
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return response;
    };
    let Some((head, tail)) = text
        .rfind("</Error>")
        .and_then(|end| text.split_at_checked(end))
    else {
        return response;
    };
    let mut extra = String::new();
    if !text.contains("<Message>") {
        let code = text
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(code, _)| code);
        if let Some(message) = code.and_then(default_message) {
            extra.push_str(&format!("<Message>{message}</Message>"));
        }
    }
    if !text.contains("<RequestId>") {
        extra.push_str(&format!("<RequestId>{request_id}</RequestId>"));
    }
    if extra.is_empty() {
        return response;
    }
    let completed = format!("{head}{extra}{tail}");
    if let Ok(length) = http::HeaderValue::from_str(&completed.len().to_string()) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, length);
    }
    *response.body_mut() = s3s::Body::from(completed);
    response
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
pub async fn serve(
    listener: TcpListener,
    service: Endpoint,
    tls: Option<Arc<nimbus_wire::tls::Tls>>,
    shutdown: CancellationToken,
) {
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
    nimbus_wire::serve_with(listener, tls, Duration::from_secs(10), make, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn completed(status: u16, body: &str) -> String {
        let mut response = http::Response::new(s3s::Body::from(body.to_owned()));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        let response = complete_error(response, "REQ1");
        let length = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .cloned();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        if let Some(length) = length {
            assert_eq!(length.to_str().unwrap(), bytes.len().to_string());
        }
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn errors_get_s3s_missing_message_and_request_id() {
        let bare = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidBucketName</Code></Error>";
        assert_eq!(
            completed(400, bare).await,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidBucketName</Code>\
             <Message>The specified bucket is not valid.</Message><RequestId>REQ1</RequestId></Error>"
        );
        // A message and id already there stay as they are; an unknown code gets only the id.
        let full =
            "<Error><Code>NoSuchKey</Code><Message>gone</Message><RequestId>X</RequestId></Error>";
        assert_eq!(completed(404, full).await, full);
        assert_eq!(
            completed(400, "<Error><Code>Odd</Code></Error>").await,
            "<Error><Code>Odd</Code><RequestId>REQ1</RequestId></Error>"
        );
        // Successes and non-XML bodies are untouched.
        assert_eq!(completed(200, "<Error></Error>").await, "<Error></Error>");
        assert_eq!(completed(500, "plain").await, "plain");
    }
}
