//! The kv guest: a `wasi:http/proxy` component that imports `wasi:keyvalue` 0.2.0-draft2
//! (bindings from the same WIT the host links) and exposes each operation at a path:
//! `/kv/OP?store=S&key=K` (`get`, `set` with the body as the value, `delete`, `exists`,
//! `incr`, `cas-incr`, `list`, `batch`, `get-many` of one key `times` times). A store error answers 403 (`access-denied`), 404
//! (`no-such-store`) or 500 (`other: …`) with its text.

use wstd::http::{Body, Error, Request, Response, StatusCode};

wit_bindgen::generate!({
    path: "../../crates/nimbus-runtime-wasm/wit/keyvalue",
    world: "wasi:keyvalue/imports",
    generate_all,
});

use wasi::keyvalue::{atomics, batch, store};

fn param(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.replace("%2F", "/"))
        .unwrap_or_default()
}

fn refusal(error: store::Error) -> Response<Body> {
    let (status, text) = match error {
        store::Error::AccessDenied => (StatusCode::FORBIDDEN, "access-denied".to_owned()),
        store::Error::NoSuchStore => (StatusCode::NOT_FOUND, "no-such-store".to_owned()),
        store::Error::Other(message) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("other: {message}"))
        }
    };
    Response::builder()
        .status(status)
        .body(text.into())
        .expect("a response")
}

/// A counter kept as decimal text, incremented with compare-and-swap until it holds.
fn cas_increment(bucket: &store::Bucket, key: &str) -> Result<u64, store::Error> {
    let mut cas = atomics::Cas::new(bucket, key)?;
    let mut retries = 0;
    loop {
        let current = cas.current()?;
        let n: u64 = current
            .map(|v| String::from_utf8_lossy(&v).parse().unwrap_or(0))
            .unwrap_or(0);
        match atomics::swap(cas, (n + 1).to_string().as_bytes()) {
            Ok(()) => return Ok(n + 1),
            Err(atomics::CasError::CasFailed(fresh)) => {
                retries += 1;
                if retries > 10_000 {
                    return Err(store::Error::Other("too many retries".into()));
                }
                cas = fresh;
            }
            Err(atomics::CasError::StoreError(error)) => return Err(error),
        }
    }
}

fn run(op: &str, query: &str, body: Vec<u8>) -> Result<Response<Body>, store::Error> {
    let bucket = store::open(&param(query, "store"))?;
    let key = param(query, "key");
    let text = |s: String| Response::new(Body::from(s));
    Ok(match op {
        "get" => match bucket.get(&key)? {
            Some(value) => Response::new(Body::from(value)),
            None => Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body("absent".into())
                .expect("a response"),
        },
        "set" => {
            bucket.set(&key, &body)?;
            text("set".into())
        }
        "delete" => {
            bucket.delete(&key)?;
            text("deleted".into())
        }
        "exists" => text(bucket.exists(&key)?.to_string()),
        "incr" => {
            let delta = param(query, "delta").parse().unwrap_or(1);
            text(atomics::increment(&bucket, &key, delta)?.to_string())
        }
        "cas-incr" => text(cas_increment(&bucket, &key)?.to_string()),
        "list" => {
            let (mut keys, mut cursor) = (Vec::new(), None);
            loop {
                let page = bucket.list_keys(cursor.as_deref())?;
                keys.extend(page.keys);
                match page.cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            text(keys.join("\n"))
        }
        "get-many" => {
            let times = param(query, "times").parse().unwrap_or(1);
            let got = batch::get_many(&bucket, &vec![key; times])?;
            let bytes: usize = got.iter().map(|(_, v)| v.as_ref().map_or(0, Vec::len)).sum();
            text(bytes.to_string())
        }
        "batch" => {
            batch::set_many(
                &bucket,
                &[
                    ("a".to_owned(), b"1".to_vec()),
                    ("b".to_owned(), b"2".to_vec()),
                ],
            )?;
            let got = batch::get_many(&bucket, &["a".into(), "missing".into(), "b".into()])?;
            batch::delete_many(&bucket, &["a".into()])?;
            let described: Vec<String> = got
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k}={}", String::from_utf8_lossy(&v)),
                    None => format!("{k}=none"),
                })
                .collect();
            text(format!("{} a-after={}", described.join(","), bucket.exists("a")?))
        }
        _ => Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .body("unknown operation".into())
            .expect("a response"),
    })
}

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let op = request.uri().path().rsplit('/').next().unwrap_or("").to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let mut body = request.into_body();
    let body = body.contents().await?.to_vec();
    Ok(run(&op, &query, body).unwrap_or_else(refusal))
}
