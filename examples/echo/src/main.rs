//! An example function that uses what real handlers need: a path parameter (nimbus passes each
//! matched `{param}` as an `x-nimbus-param-<name>` header), an environment variable declared in
//! the manifest, the request body, and an outbound HTTP call to a host the manifest allows.

use wstd::http::{Body, Client, Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let name = request
        .headers()
        .get("x-nimbus-param-name")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("stranger")
        .to_owned();
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_owned());
    let path = request.uri().path().to_owned();

    if path.starts_with("/upstream") {
        // Outbound calls go only to hosts listed in `allowed_outbound_hosts`.
        let Ok(url) = std::env::var("UPSTREAM_URL") else {
            return Ok(Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body("set UPSTREAM_URL in the manifest's env".to_owned().into())?);
        };
        let mut upstream = Client::new().send(Request::get(url).body(Body::empty())?).await?;
        let text = upstream.body_mut().str_contents().await?.to_owned();
        return Ok(Response::new(format!("upstream said: {text}").into()));
    }

    let mut body = request.into_body();
    let body = body.str_contents().await?.to_owned();
    let reply = if body.is_empty() {
        format!("{greeting}, {name}!\n")
    } else {
        format!("{greeting}, {name}! You sent {} bytes: {body}\n", body.len())
    };
    Ok(Response::new(reply.into()))
}
