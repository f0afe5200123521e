//! One key-value operation per request: `GET /get?store=S&key=K` answers the value (404 when
//! absent), `POST /set?store=S&key=K` stores the body. Anything else is a 400; a store error a
//! 500 with its text, so a load generator counts it as a failure.

use wstd::http::{Body, Error, Request, Response, StatusCode};

#[cfg(not(feature = "draft"))]
wit_bindgen::generate!({
    path: "../../crates/nimbus-runtime-wasm/wit/keyvalue",
    world: "wasi:keyvalue/imports",
    generate_all,
});

#[cfg(feature = "draft")]
wit_bindgen::generate!({
    path: "wit-draft",
    world: "wasi:keyvalue/imports",
    generate_all,
});

use wasi::keyvalue::store;

fn param<'q>(query: &'q str, name: &str) -> &'q str {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map_or("", |(_, v)| v)
}

fn answer(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(body.into())
        .expect("a response")
}

fn run(op: &str, query: &str, body: Vec<u8>) -> Result<Response<Body>, store::Error> {
    let bucket = store::open(param(query, "store"))?;
    let key = param(query, "key");
    Ok(match op {
        "get" => match bucket.get(key)? {
            Some(value) => answer(StatusCode::OK, value),
            None => answer(StatusCode::NOT_FOUND, "absent"),
        },
        "set" => {
            bucket.set(key, &body)?;
            answer(StatusCode::OK, "set")
        }
        _ => answer(StatusCode::BAD_REQUEST, "unknown operation"),
    })
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let op = request.uri().path().rsplit('/').next().unwrap_or("").to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let body = request.into_body().contents().await?.to_vec();
    Ok(run(&op, &query, body).unwrap_or_else(|error| {
        answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:?}"))
    }))
}
