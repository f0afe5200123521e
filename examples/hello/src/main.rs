//! The smallest nimbus function: a `wasi:http/proxy` component written with `wstd`.
//! The same .wasm runs unmodified on `wasmtime serve`, Spin and wasmCloud.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(_request: Request<Body>) -> Result<Response<Body>, Error> {
    Ok(Response::new("Hello from nimbus!\n".to_owned().into()))
}
