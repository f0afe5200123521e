//! A visit counter: a `wasi:http/proxy` component that counts with `wasi:keyvalue`'s atomic
//! increment (durable, and lossless under concurrent instances).

use wstd::http::{Body, Error, Request, Response, StatusCode};

wit_bindgen::generate!({
    path: "../../../crates/nimbus-runtime-wasm/wit/keyvalue",
    world: "wasi:keyvalue/imports",
    generate_all,
});

use wasi::keyvalue::{atomics, store};

fn count() -> Result<i64, store::Error> {
    let counters = store::open("counters")?;
    atomics::increment(&counters, "visits", 1)
}

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(match count() {
        Ok(visits) => Response::new(format!("{{\"visits\": {visits}}}\n").into()),
        Err(error) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(format!("the counter failed: {error:?}\n").into())?,
    })
}
