//! AWS's JSON protocol (`POST /` with `X-Amz-Target: <Service>_<version>.<Operation>`), as
//! DynamoDB and DynamoDB Streams speak it: the request is signed with SigV4 for the service's
//! signing name, the answer is `application/x-amz-json-1.0`, and an error is
//! `{"__type": "<namespace>#<Code>", "message": "…"}` with status 400 (500 for the service's
//! own failure).
//!
//! s3s verifies signatures for the `s3` and `sts` scopes only, so this module verifies the
//! others itself: it recomputes the signature with AWS's own signer (`aws-sigv4`) over exactly
//! the headers the client signed, and compares in constant time.

use crate::{Delegated, Keys, Principal};
use async_trait::async_trait;
use bytes::Bytes;
use std::time::{Duration, SystemTime};

/// The largest request body a JSON-protocol service reads (DynamoDB's limit).
pub const MAX_REQUEST_BYTES: usize = 16 << 20;
/// How far a request's signing time may be from ours.
const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// The coral namespace AWS's authentication errors come from.
const CORAL: &str = "com.amazon.coral.service";

/// A service answering AWS's JSON protocol on the endpoint.
#[async_trait]
pub trait JsonService: Send + Sync {
    /// The target prefix it answers (`DynamoDB_20120810`).
    fn target(&self) -> &'static str;
    /// The SigV4 signing names (credential scope services) requests may be signed for.
    fn signing_names(&self) -> &'static [&'static str];
    /// Answer `operation` (the target's part after the dot) for `principal`.
    async fn call(&self, principal: &Principal, operation: &str, body: Bytes) -> JsonAnswer;
}

/// A JSON-protocol answer: success, or one of the service's errors.
#[derive(Debug, Clone)]
pub enum JsonAnswer {
    Ok(serde_json::Value),
    Error(JsonError),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JsonError {
    pub status: u16,
    /// `<namespace>#<Code>`.
    pub kind: String,
    pub message: String,
    /// Further members of the error body (DynamoDB's `Item`, `CancellationReasons`).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl JsonError {
    /// A client error (400) of `namespace`.
    pub fn new(namespace: &str, code: &str, message: impl Into<String>) -> JsonError {
        JsonError {
            status: 400,
            kind: format!("{namespace}#{code}"),
            message: message.into(),
            fields: serde_json::Map::new(),
        }
    }

    fn coral(code: &str, message: impl Into<String>) -> JsonError {
        JsonError::new(CORAL, code, message)
    }
}

/// The JSON service `target` header names, if one of `services` answers it.
pub(crate) fn route<'a>(
    services: &'a [std::sync::Arc<dyn JsonService>],
    headers: &http::HeaderMap,
) -> Option<(&'a dyn JsonService, String)> {
    let target = headers.get("x-amz-target")?.to_str().ok()?;
    let (prefix, operation) = target.split_once('.')?;
    services
        .iter()
        .find(|s| s.target() == prefix)
        .map(|s| (s.as_ref(), operation.to_owned()))
}

/// Answer one JSON-protocol request: read the body, verify the signature (unless the platform
/// vouches for the caller), and call the service.
pub(crate) async fn call(
    service: &dyn JsonService,
    operation: &str,
    keys: &Keys,
    mut request: http::Request<s3s::Body>,
    request_id: &str,
) -> http::Response<s3s::Body> {
    let delegated = request.extensions_mut().remove::<Delegated>();
    let body = match request
        .body_mut()
        .store_all_limited(MAX_REQUEST_BYTES)
        .await
    {
        Ok(body) => body,
        Err(_) => {
            return render(
                &JsonAnswer::Error(JsonError::new(
                    "com.amazonaws.dynamodb.v20120810",
                    "ValidationException",
                    format!("Request size exceeded {MAX_REQUEST_BYTES} bytes"),
                )),
                request_id,
            );
        }
    };
    let principal = match delegated {
        Some(Delegated(principal)) => principal,
        None => match verify(service.signing_names(), keys, &request, &body).await {
            Ok(principal) => principal,
            Err(error) => return render(&JsonAnswer::Error(error), request_id),
        },
    };
    if request.method() != http::Method::POST {
        return render(
            &JsonAnswer::Error(JsonError::coral(
                "UnknownOperationException",
                "Requests must be POST",
            )),
            request_id,
        );
    }
    let answer = service.call(&principal, operation, body).await;
    render(&answer, request_id)
}

/// The answer to a request whose service failed outright.
pub(crate) fn internal_error(request_id: &str) -> http::Response<s3s::Body> {
    render(&JsonAnswer::Error(internal_failure()), request_id)
}

fn internal_failure() -> JsonError {
    JsonError {
        status: 500,
        ..JsonError::coral(
            "InternalFailure",
            "The request processing has failed because of an unknown error.",
        )
    }
}

fn render(answer: &JsonAnswer, request_id: &str) -> http::Response<s3s::Body> {
    let (status, body) = match answer {
        JsonAnswer::Ok(value) => (200, value.to_string()),
        JsonAnswer::Error(error) => {
            let mut body = error.fields.clone();
            body.insert("__type".to_owned(), error.kind.clone().into());
            body.insert("message".to_owned(), error.message.clone().into());
            (error.status, serde_json::Value::Object(body).to_string())
        }
    };
    let crc = crc32fast::hash(body.as_bytes());
    let mut response = http::Response::new(s3s::Body::from(body));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(id) = http::HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", id);
    }
    // Clients check the body against it, as they do against DynamoDB's.
    headers.insert("x-amz-crc32", http::HeaderValue::from(crc));
    response
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256")?.trim_start();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, value) = part.trim().split_once('=')?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed = Some(value),
            "Signature" => signature = Some(value),
            _ => return None,
        }
    }
    let mut scope = credential?.split('/');
    let (access_key, date, region, service, terminator) = (
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
        scope.next()?,
    );
    if terminator != "aws4_request" || scope.next().is_some() {
        return None;
    }
    Some(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn amz_date(text: &str) -> Option<SystemTime> {
    let parsed = chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ").ok()?;
    let seconds = u64::try_from(parsed.and_utc().timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// Who signed the request, if the signature is good.
async fn verify(
    signing_names: &[&str],
    keys: &Keys,
    request: &http::Request<s3s::Body>,
    body: &[u8],
) -> Result<Principal, JsonError> {
    let headers = request.headers();
    let Some(header) = headers.get(http::header::AUTHORIZATION) else {
        return Err(JsonError::coral(
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        ));
    };
    let incomplete = || {
        JsonError::coral(
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' \
             parameters, and a credential scope of date/region/service/aws4_request.",
        )
    };
    let authorization = header
        .to_str()
        .ok()
        .and_then(parse_authorization)
        .ok_or_else(incomplete)?;
    let Some(signing_name) = signing_names
        .iter()
        .copied()
        .find(|name| *name == authorization.service)
    else {
        return Err(JsonError::coral(
            "InvalidSignatureException",
            format!(
                "Credential should be scoped to correct service: '{}'.",
                signing_names.first().copied().unwrap_or_default()
            ),
        ));
    };
    let date_text = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            JsonError::coral(
                "IncompleteSignatureException",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
                 header.",
            )
        })?;
    let signed_at = amz_date(date_text).ok_or_else(incomplete)?;
    if !date_text.starts_with(authorization.date) {
        return Err(JsonError::coral(
            "InvalidSignatureException",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP",
        ));
    }
    let now = SystemTime::now();
    let skew = now
        .duration_since(signed_at)
        .or_else(|_| signed_at.duration_since(now))
        .unwrap_or_default();
    if skew > MAX_SKEW {
        return Err(JsonError::coral(
            "InvalidSignatureException",
            format!(
                "Signature expired: {date_text} is now earlier or later than 15 minutes from the current time."
            ),
        ));
    }
    let unknown = || {
        JsonError::coral(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    };
    let known = match keys.resolve(authorization.access_key).await {
        Ok(Some(known)) => known,
        Ok(None) => return Err(unknown()),
        Err(error) => {
            tracing::error!(error = %error, "access key lookup");
            return Err(internal_failure());
        }
    };
    let token = headers
        .get("x-amz-security-token")
        .and_then(|v| v.to_str().ok());
    if !keys.session_token_matches(authorization.access_key, token) {
        return Err(unknown());
    }
    // Sign what the client signed, as it did; the signer adds x-amz-date and the token itself.
    let mut signed = Vec::with_capacity(authorization.signed_headers.len());
    for name in &authorization.signed_headers {
        if matches!(*name, "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        let values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return Err(mismatch());
        }
        for value in values {
            signed.push((*name, value));
        }
    }
    let uri = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let credentials = aws_credential_types::Credentials::new(
        authorization.access_key,
        known.secret.expose(),
        token.map(str::to_owned),
        None,
        "nimbus",
    );
    let identity = credentials.into();
    let mut settings = aws_sigv4::http_request::SigningSettings::default();
    settings.excluded_headers = None;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(authorization.region)
        .name(signing_name)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|_| mismatch())?
        .into();
    let signable = aws_sigv4::http_request::SignableRequest::new(
        request.method().as_str(),
        &uri,
        signed.into_iter(),
        aws_sigv4::http_request::SignableBody::Bytes(body),
    )
    .map_err(|_| mismatch())?;
    let (_, expected) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|_| mismatch())?
        .into_parts();
    use subtle::ConstantTimeEq as _;
    if !bool::from(
        expected
            .as_bytes()
            .ct_eq(authorization.signature.as_bytes()),
    ) {
        return Err(mismatch());
    }
    Ok(known.principal.clone())
}

fn mismatch() -> JsonError {
    JsonError::coral(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check \
         your AWS Secret Access Key and signing method. Consult the service documentation for \
         details.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers_parse_as_botocore_writes_them() {
        let parsed = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=NKIA1/20261201/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=abc123",
        )
        .unwrap();
        assert_eq!(parsed.access_key, "NKIA1");
        assert_eq!(parsed.service, "dynamodb");
        assert_eq!(
            parsed.signed_headers,
            ["content-type", "host", "x-amz-date", "x-amz-target"]
        );
        assert_eq!(parsed.signature, "abc123");
        assert!(parse_authorization("AWS4-HMAC-SHA256 Credential=a/b/c").is_none());
        assert!(parse_authorization("Bearer x").is_none());
        assert!(amz_date("20261201T221756Z").is_some());
        assert!(amz_date("2026-12-01").is_none());
    }
}
