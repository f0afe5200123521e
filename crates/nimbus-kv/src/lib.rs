//! Key-value stores as a service: the operations the local API (for process functions) and the
//! admin API (for the CLI) share, over [`nimbus_store::KvStore`] — the same entries Wasm
//! components reach through `wasi:keyvalue` and Spin's key-value interface — with the store's
//! limits and errors put in the platform's terms.
//!
//! [`LocalKv`] serves the local API under `/v1/kv/`:
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/kv/STORE/keys?after=K&limit=N` | `{"keys": [...], "next": "K"}` |
//! | `GET /v1/kv/STORE/keys/KEY` | the value's bytes; 404 `kv_key_not_found` |
//! | `PUT /v1/kv/STORE/keys/KEY?ttl=SECONDS` | the body becomes the value: `{"ok": true}` |
//! | `DELETE /v1/kv/STORE/keys/KEY` | `{"deleted": true\|false}` |
//! | `POST /v1/kv/STORE/increment/KEY?delta=N` | `{"value": N}` |
//!
//! Keys are percent-decoded from the path, so any key can be named.

use bytes::Bytes;
use nimbus_api::KvKeys;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_runtime::{Service, ServiceRequest};
use nimbus_store::{KvCondition, KvError, KvStore, KvStoreId};
use std::sync::Arc;
use std::time::Duration;

/// Most keys one page answers.
pub const MAX_PAGE: usize = 1000;
/// The longest time to live a write may ask for (a year).
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The key-value service over one store backend.
#[derive(Clone)]
pub struct Kv {
    store: Arc<dyn KvStore>,
}

fn kv_error(error: KvError, id: &KvStoreId) -> Error {
    match error {
        KvError::NoSuchStore(_) => Error::new(
            ErrorCode::KvStoreNotFound,
            format!(
                "app {:?} has no key-value store {:?}; declare it as [kv.{}] in the manifest",
                id.app, id.store, id.store
            ),
        ),
        KvError::Backend(_) => {
            let message = error.to_string();
            Error::new(ErrorCode::Internal, message).caused_by(error)
        }
        other => Error::new(ErrorCode::BadRequest, other.to_string()),
    }
}

impl Kv {
    pub fn new(store: Arc<dyn KvStore>) -> Kv {
        Kv { store }
    }

    /// The app's stores, by name.
    pub async fn stores(&self, app: &str) -> Result<Vec<String>, Error> {
        self.store
            .stores(app)
            .await
            .map_err(|e| kv_error(e, &KvStoreId::new(app, "")))
    }

    pub async fn get(&self, id: &KvStoreId, key: &str) -> Result<Bytes, Error> {
        match self.store.get(id, key).await.map_err(|e| kv_error(e, id))? {
            Some(entry) => Ok(entry.value),
            None => Err(Error::new(
                ErrorCode::KvKeyNotFound,
                format!("store {:?} holds no entry under {key:?}", id.store),
            )),
        }
    }

    /// Write `value` under `key`, expiring after `ttl` if given.
    pub async fn set(
        &self,
        id: &KvStoreId,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        if let Some(ttl) = ttl
            && (ttl.is_zero() || ttl > MAX_TTL)
        {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!(
                    "a time to live is 1 second to {} days",
                    MAX_TTL.as_secs() / 86_400
                ),
            ));
        }
        self.store
            .set(id, key, value, KvCondition::Always, ttl)
            .await
            .map_err(|e| kv_error(e, id))?;
        Ok(())
    }

    /// Remove the key's entry; whether it had one.
    pub async fn delete(&self, id: &KvStoreId, key: &str) -> Result<bool, Error> {
        self.store
            .delete(id, key)
            .await
            .map_err(|e| kv_error(e, id))
    }

    /// Add `delta` to the key's counter atomically; the new value.
    pub async fn increment(&self, id: &KvStoreId, key: &str, delta: i64) -> Result<i64, Error> {
        self.store
            .increment(id, key, delta)
            .await
            .map_err(|e| kv_error(e, id))
    }

    /// Up to `limit` keys (at most [`MAX_PAGE`]) after `after`.
    pub async fn keys(
        &self,
        id: &KvStoreId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KvKeys, Error> {
        let page = self
            .store
            .list_keys(id, after, limit.clamp(1, MAX_PAGE))
            .await
            .map_err(|e| kv_error(e, id))?;
        Ok(KvKeys {
            keys: page.keys,
            next: page.next,
        })
    }
}

/// One request's query parameter.
fn param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn number<T: std::str::FromStr>(query: Option<&str>, name: &str) -> Result<Option<T>, Error> {
    param(query, name)
        .map(|text| {
            text.parse().map_err(|_| {
                Error::new(
                    ErrorCode::BadRequest,
                    format!("`{name}` must be a whole number, not {text:?}"),
                )
            })
        })
        .transpose()
}

/// One local API request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Keys { after: Option<String>, limit: usize },
    Get { key: String },
    Set { key: String, ttl: Option<Duration> },
    Delete { key: String },
    Increment { key: String, delta: i64 },
}

impl Call {
    /// Whether the call writes (a read-only grant refuses it).
    pub fn writes(&self) -> bool {
        !matches!(self, Call::Keys { .. } | Call::Get { .. })
    }
}

/// Read a local API request under `/v1/kv/`: the store it names and what it asks. Pure, so
/// it is fuzzed (`fuzz/fuzz_targets/kv_request.rs`).
pub fn parse(
    method: &http::Method,
    path: &str,
    query: Option<&str>,
) -> Result<(String, Call), Error> {
    let unknown = || {
        Error::new(
            ErrorCode::RouteNotFound,
            format!(
                "no local API {method} {path}; the key-value API is GET /v1/kv/STORE/keys, \
                 GET|PUT|DELETE /v1/kv/STORE/keys/KEY and POST /v1/kv/STORE/increment/KEY \
                 (docs/kv.md)"
            ),
        )
    };
    let rest = path.strip_prefix("/v1/kv/").ok_or_else(unknown)?;
    let (store, rest) = rest.split_once('/').ok_or_else(unknown)?;
    if store.is_empty() {
        return Err(unknown());
    }
    let (kind, key) = rest.split_once('/').unwrap_or((rest, ""));
    let key = percent_encoding::percent_decode_str(key)
        .decode_utf8()
        .map_err(|_| {
            Error::new(
                ErrorCode::BadRequest,
                "a key must be UTF-8 (percent-encoded)",
            )
        })?
        .into_owned();
    let call = match (method, kind, key.is_empty()) {
        (&http::Method::GET, "keys", true) => Call::Keys {
            after: param(query, "after"),
            limit: number(query, "limit")?.unwrap_or(MAX_PAGE),
        },
        (&http::Method::GET, "keys", false) => Call::Get { key },
        (&http::Method::PUT, "keys", false) => Call::Set {
            key,
            ttl: number::<u64>(query, "ttl")?.map(Duration::from_secs),
        },
        (&http::Method::DELETE, "keys", false) => Call::Delete { key },
        (&http::Method::POST, "increment", false) => Call::Increment {
            key,
            delta: number(query, "delta")?.unwrap_or(1),
        },
        _ => return Err(unknown()),
    };
    Ok((store.to_owned(), call))
}

/// The key-value service of the local API, under `/v1/kv/`.
pub struct LocalKv {
    pub kv: Kv,
}

fn json(value: serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}

#[async_trait::async_trait]
impl Service for LocalKv {
    async fn call(&self, request: ServiceRequest<'_>) -> Result<Bytes, Error> {
        let (store, call) = parse(request.method, request.path, request.query)?;
        match request.grants.kv_store(&store) {
            Some(grant) if grant.write || !call.writes() => {}
            Some(_) => {
                return Err(Error::new(
                    ErrorCode::Forbidden,
                    format!(
                        "function {:?} may only read store {store:?}; grant \"{store}\" \
                         (not \"{store}:read\") in its `kv` to write",
                        request.caller.function
                    ),
                ));
            }
            None => {
                return Err(Error::new(
                    ErrorCode::Forbidden,
                    format!(
                        "function {:?} may not use store {store:?}; add \"{store}\" to its `kv` \
                         in the manifest (and declare [kv.{store}])",
                        request.caller.function
                    ),
                ));
            }
        }
        let id = KvStoreId::new(&*request.caller.app, store);
        let kv = &self.kv;
        match call {
            Call::Keys { after, limit } => {
                let page = kv.keys(&id, after.as_deref(), limit).await?;
                Ok(json(serde_json::to_value(page).unwrap_or_default()))
            }
            Call::Get { key } => kv.get(&id, &key).await,
            Call::Set { key, ttl } => {
                kv.set(&id, &key, request.body, ttl).await?;
                Ok(json(serde_json::json!({"ok": true})))
            }
            Call::Delete { key } => {
                let deleted = kv.delete(&id, &key).await?;
                Ok(json(serde_json::json!({"deleted": deleted})))
            }
            Call::Increment { key, delta } => {
                let value = kv.increment(&id, &key, delta).await?;
                Ok(json(serde_json::json!({"value": value})))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn code(result: Result<(String, Call), Error>) -> ErrorCode {
        result.unwrap_err().code
    }

    #[test]
    fn requests_are_read_into_calls() {
        let get = parse(&Method::GET, "/v1/kv/sessions/keys/user%2F1", None).unwrap();
        assert_eq!(
            get,
            (
                "sessions".into(),
                Call::Get {
                    key: "user/1".into()
                }
            )
        );
        let keys = parse(&Method::GET, "/v1/kv/s/keys", Some("after=a%20b&limit=5")).unwrap();
        assert_eq!(
            keys.1,
            Call::Keys {
                after: Some("a b".into()),
                limit: 5
            }
        );
        let set = parse(&Method::PUT, "/v1/kv/s/keys/k", Some("ttl=60")).unwrap();
        assert_eq!(
            set.1,
            Call::Set {
                key: "k".into(),
                ttl: Some(Duration::from_secs(60))
            }
        );
        assert!(set.1.writes());
        let incr = parse(&Method::POST, "/v1/kv/s/increment/hits", Some("delta=-2")).unwrap();
        assert_eq!(
            incr.1,
            Call::Increment {
                key: "hits".into(),
                delta: -2
            }
        );
        assert_eq!(
            parse(&Method::DELETE, "/v1/kv/s/keys/k", None).unwrap().1,
            Call::Delete { key: "k".into() }
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert_eq!(
            code(parse(&Method::GET, "/v1/kv/", None)),
            ErrorCode::RouteNotFound
        );
        assert_eq!(
            code(parse(&Method::GET, "/v1/kv/s", None)),
            ErrorCode::RouteNotFound
        );
        assert_eq!(
            code(parse(&Method::GET, "/v1/kv//keys/k", None)),
            ErrorCode::RouteNotFound
        );
        assert_eq!(
            code(parse(&Method::PUT, "/v1/kv/s/keys", None)),
            ErrorCode::RouteNotFound
        );
        assert_eq!(
            code(parse(&Method::POST, "/v1/kv/s/keys/k", None)),
            ErrorCode::RouteNotFound
        );
        assert_eq!(
            code(parse(&Method::GET, "/v1/kv/s/keys/%FF", None)),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(parse(&Method::PUT, "/v1/kv/s/keys/k", Some("ttl=soon"))),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(parse(
                &Method::POST,
                "/v1/kv/s/increment/k",
                Some("delta=99999999999999999999")
            )),
            ErrorCode::BadRequest
        );
    }
}
