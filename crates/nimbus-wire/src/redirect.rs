//! HTTP → HTTPS: a plain listener that answers every request with a permanent redirect to the
//! same host, path and query over HTTPS (308, so a POST stays a POST), as a TLS front does.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Where a request for `host` (its `Host` header, port included or not) and `path_and_query`
/// goes over HTTPS on `https_port`; `None` without a usable host.
pub fn https_location(host: Option<&str>, path_and_query: &str, https_port: u16) -> Option<String> {
    let host = host?.trim();
    // The host without its port (an IPv6 literal keeps its brackets).
    let name = match host.strip_prefix('[') {
        Some(rest) => format!("[{}]", rest.split_once(']')?.0),
        None => host.split(':').next()?.to_owned(),
    };
    if name.is_empty() || name.contains(['/', ' ', '@', '\\']) {
        return None;
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };
    Some(format!("https://{name}{port}{path}"))
}

/// Answer every request on `listener` with a redirect to HTTPS on `https_port`, until
/// `shutdown`.
pub async fn redirect_to_https(
    listener: TcpListener,
    https_port: u16,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let make = move |_peer| {
        hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let host = request
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
                .or_else(|| request.uri().host().map(str::to_owned));
            let path = request
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned();
            let mut response = http::Response::new(Full::new(Bytes::new()));
            match https_location(host.as_deref(), &path, https_port)
                .and_then(|l| HeaderValue::from_str(&l).ok())
            {
                Some(location) => {
                    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
                    response
                        .headers_mut()
                        .insert(http::header::LOCATION, location);
                }
                None => *response.status_mut() = StatusCode::BAD_REQUEST,
            }
            async move { Ok::<_, std::convert::Infallible>(response) }
        })
    };
    crate::serve_with(listener, None, header_read_timeout, make, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_keep_host_path_and_query_and_name_the_https_port() {
        let cases = [
            (
                Some("todo.example.com"),
                "/a?b=1",
                443,
                Some("https://todo.example.com/a?b=1"),
            ),
            (
                Some("todo.example.com:8080"),
                "/",
                8443,
                Some("https://todo.example.com:8443/"),
            ),
            (Some("[::1]:8080"), "/x", 8443, Some("https://[::1]:8443/x")),
            (Some("127.0.0.1"), "*", 443, Some("https://127.0.0.1/")),
            (None, "/", 443, None),
            (Some(""), "/", 443, None),
            (Some("evil.test/x"), "/", 443, None),
            (Some("a@b"), "/", 443, None),
        ];
        for (host, path, port, expected) in cases {
            assert_eq!(
                https_location(host, path, port).as_deref(),
                expected,
                "{host:?} {path}"
            );
        }
    }
}
