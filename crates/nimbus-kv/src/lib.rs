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
        let (path, query) = (request.path, request.query);
        let rest = path.strip_prefix("/v1/kv/").unwrap_or_default();
        let (store, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let (kind, key) = rest.split_once('/').unwrap_or((rest, ""));
        let key = percent_encoding::percent_decode_str(key)
            .decode_utf8()
            .map_err(|_| Error::new(ErrorCode::BadRequest, "a key must be UTF-8"))?;
        let method = request.method;
        let write = !matches!(*method, http::Method::GET | http::Method::HEAD);
        match request.grants.kv_store(store) {
            Some(grant) if grant.write || !write => {}
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
        match (method, kind, key.is_empty()) {
            (&http::Method::GET, "keys", true) => {
                let after = param(query, "after");
                let limit = number(query, "limit")?.unwrap_or(MAX_PAGE);
                let page = kv.keys(&id, after.as_deref(), limit).await?;
                Ok(json(serde_json::to_value(page).unwrap_or_default()))
            }
            (&http::Method::GET, "keys", false) => kv.get(&id, &key).await,
            (&http::Method::PUT, "keys", false) => {
                let ttl = number::<u64>(query, "ttl")?.map(Duration::from_secs);
                kv.set(&id, &key, request.body, ttl).await?;
                Ok(json(serde_json::json!({"ok": true})))
            }
            (&http::Method::DELETE, "keys", false) => {
                let deleted = kv.delete(&id, &key).await?;
                Ok(json(serde_json::json!({"deleted": deleted})))
            }
            (&http::Method::POST, "increment", false) => {
                let delta = number(query, "delta")?.unwrap_or(1);
                let value = kv.increment(&id, &key, delta).await?;
                Ok(json(serde_json::json!({"value": value})))
            }
            _ => Err(Error::new(
                ErrorCode::RouteNotFound,
                format!(
                    "no local API {method} {path}; the key-value API is GET /v1/kv/STORE/keys, \
                     GET|PUT|DELETE /v1/kv/STORE/keys/KEY and POST /v1/kv/STORE/increment/KEY \
                     (docs/kv.md)"
                ),
            )),
        }
    }
}
