//! The spin-kv guest: written against `spin-sdk`'s key-value API, as a Spin component is.
//! `/spin/OP?store=S&key=K`: `get`, `set` (the body as the value), `delete`, `exists`, `keys`.
//! A store error answers 403 (`access-denied`), 404 (`no-such-store`) or 500 (`other: …`).

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::{Error, Store};

fn param(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

fn refusal(error: Error) -> Response {
    match error {
        Error::AccessDenied => Response::new(403, "access-denied"),
        Error::NoSuchStore => Response::new(404, "no-such-store"),
        Error::StoreTableFull => Response::new(500, "store-table-full"),
        Error::Other(message) => Response::new(500, format!("other: {message}")),
    }
}

fn run(op: &str, query: &str, body: &[u8]) -> Result<Response, Error> {
    let store = Store::open(&param(query, "store"))?;
    let key = param(query, "key");
    Ok(match op {
        "get" => match store.get(&key)? {
            Some(value) => Response::new(200, value),
            None => Response::new(404, "absent"),
        },
        "set" => {
            store.set(&key, body)?;
            Response::new(200, "set")
        }
        "delete" => {
            store.delete(&key)?;
            Response::new(200, "deleted")
        }
        "exists" => Response::new(200, store.exists(&key)?.to_string()),
        "keys" => {
            let mut keys = store.get_keys()?;
            keys.sort();
            Response::new(200, keys.join("\n"))
        }
        _ => Response::new(400, "unknown operation"),
    })
}

#[http_component]
fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
    let path = request.path().to_owned();
    let op = path.rsplit('/').next().unwrap_or_default().to_owned();
    let query = request.query().to_owned();
    Ok(run(&op, &query, request.body()).unwrap_or_else(refusal))
}
