//! API keys for an app's routes (`kind = "api_key"` authorizers), as API Gateway's usage
//! plans: `nimbus apikeys create --app APP [--rate 10/s] [--burst 20] [--quota 10000]` makes a
//! key (shown once), stored only as its SHA-256; each app's keys are lent to the gateway as an
//! [`ApiKeySet`], updated in place when a key is created or revoked — no redeploy.

use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_core::spec::{RateLimitKey, RateLimitSpec};
use nimbus_gateway::auth::apikey::{ApiKey, ApiKeySet, hash_key};
use nimbus_store::{ApiKeyRecord, ApiKeyStore, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Keys per app.
pub const MAX_KEYS_PER_APP: usize = 10_000;

/// A new key's name and usage plan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewApiKey {
    pub name: Option<String>,
    /// `"100/s"`, `"600/min"`, …
    pub rate: Option<String>,
    /// Requests at once (default: the rate's count).
    pub burst: Option<u32>,
    /// Requests per UTC day.
    pub quota_per_day: Option<u64>,
}

fn storage(error: StoreError) -> Error {
    Error::new(ErrorCode::Internal, "the API key store failed").caused_by(error)
}

fn bad(message: String) -> Error {
    Error::new(ErrorCode::BadRequest, message)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The gateway's view of a stored key.
fn lent(record: &ApiKeyRecord) -> Option<ApiKey> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&record.hash, &mut hash).ok()?;
    let rate = match (record.rate, record.rate_per_ms) {
        (Some(rate), Some(per_ms)) => Some(RateLimitSpec {
            rate,
            per: Duration::from_millis(per_ms),
            burst: record.burst.unwrap_or(rate),
            by: RateLimitKey::Route,
        }),
        _ => None,
    };
    Some(ApiKey {
        id: record.id.clone(),
        name: record.name.clone(),
        hash,
        rate,
        quota_per_day: record.quota_per_day,
    })
}

/// Every app's API keys.
pub struct ApiKeys {
    store: Arc<dyn ApiKeyStore>,
    sets: Mutex<HashMap<String, Arc<ApiKeySet>>>,
    /// One key change at a time, so a set is never replaced by an older listing.
    changes: tokio::sync::Mutex<()>,
}

impl ApiKeys {
    pub fn new(store: Arc<dyn ApiKeyStore>) -> Arc<ApiKeys> {
        Arc::new(ApiKeys {
            store,
            sets: Mutex::default(),
            changes: tokio::sync::Mutex::new(()),
        })
    }

    fn cached(&self, app: &str) -> Option<Arc<ApiKeySet>> {
        self.sets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(app)
            .cloned()
    }

    /// The app's key set, as its `api_key` authorizers check it (loaded at first use).
    pub async fn set(&self, app: &str) -> Result<Arc<ApiKeySet>, Error> {
        if let Some(set) = self.cached(app) {
            return Ok(set);
        }
        let _change = self.changes.lock().await;
        if let Some(set) = self.cached(app) {
            return Ok(set);
        }
        let set = Arc::new(ApiKeySet::default());
        let records = self.store.api_keys(app).await.map_err(storage)?;
        set.replace(records.iter().filter_map(lent).collect());
        self.sets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(app.to_owned(), set.clone());
        Ok(set)
    }

    async fn reload(&self, app: &str) -> Result<(), Error> {
        if let Some(set) = self.cached(app) {
            let records = self.store.api_keys(app).await.map_err(storage)?;
            set.replace(records.iter().filter_map(lent).collect());
        }
        Ok(())
    }

    /// Make a key for `app`: its record and the key itself (shown once, never stored).
    pub async fn create(&self, app: &str, new: NewApiKey) -> Result<(ApiKeyRecord, String), Error> {
        if let Some(name) = &new.name
            && (name.is_empty() || name.len() > 128 || name.chars().any(char::is_control))
        {
            return Err(bad(format!(
                "{name:?} is not a key name: 1 to 128 printable characters"
            )));
        }
        let (rate, rate_per_ms) = match new.rate.as_deref() {
            None => (None, None),
            Some(text) => {
                let (rate, per) = RateLimitSpec::parse_rate(text).ok_or_else(|| {
                    bad(format!(
                        "{text:?} is not a rate: write requests per unit, like \"10/s\", \
                         \"600/min\" or \"5000/h\""
                    ))
                })?;
                (
                    Some(rate),
                    Some(u64::try_from(per.as_millis()).unwrap_or(u64::MAX)),
                )
            }
        };
        if new.burst.is_some() && rate.is_none() {
            return Err(bad("a burst needs a rate: give --rate too".into()));
        }
        if new.burst == Some(0) || new.quota_per_day == Some(0) {
            return Err(bad(
                "a burst or quota of 0 would refuse every request".into()
            ));
        }
        let _change = self.changes.lock().await;
        if self.store.api_keys(app).await.map_err(storage)?.len() >= MAX_KEYS_PER_APP {
            return Err(bad(format!(
                "app {app:?} has {MAX_KEYS_PER_APP} API keys already; revoke some first"
            )));
        }
        let key = format!("nk_{}", hex::encode(rand::random::<[u8; 32]>()));
        let record = ApiKeyRecord {
            id: format!("ak_{}", hex::encode(rand::random::<[u8; 8]>())),
            app: app.to_owned(),
            hash: hex::encode(hash_key(&key)),
            name: new.name,
            rate,
            rate_per_ms,
            burst: new.burst,
            quota_per_day: new.quota_per_day,
            created_ms: now_ms(),
        };
        if !self
            .store
            .insert_api_key(record.clone())
            .await
            .map_err(storage)?
        {
            return Err(Error::new(
                ErrorCode::Internal,
                "a random key id was taken; try again",
            ));
        }
        self.reload(app).await?;
        Ok((record, key))
    }

    /// The app's keys, never the keys themselves.
    pub async fn list(&self, app: &str) -> Result<Vec<ApiKeyRecord>, Error> {
        self.store.api_keys(app).await.map_err(storage)
    }

    /// Revoke a key: refused from the next request on.
    pub async fn remove(&self, app: &str, id: &str) -> Result<(), Error> {
        let _change = self.changes.lock().await;
        if !self.store.remove_api_key(app, id).await.map_err(storage)? {
            return Err(Error::new(
                ErrorCode::KeyNotFound,
                format!("app {app:?} has no API key {id:?} (`nimbus apikeys ls --app {app}`)"),
            ));
        }
        self.reload(app).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(key: &str) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        map.insert("x-api-key", key.parse().unwrap());
        map
    }

    #[tokio::test]
    async fn keys_are_shown_once_stored_hashed_and_lent_live() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).unwrap());
        let keys = ApiKeys::new(store);
        let set = keys.set("shop").await.unwrap();
        assert!(set.is_empty());
        let (record, key) = keys
            .create(
                "shop",
                NewApiKey {
                    name: Some("mobile".into()),
                    rate: Some("2/h".into()),
                    ..NewApiKey::default()
                },
            )
            .await
            .unwrap();
        assert!(key.starts_with("nk_") && key.len() == 67);
        assert_ne!(record.hash, key, "only the hash is kept");
        assert_eq!(record.burst, None, "the burst defaults to the rate's count");
        let header = http::HeaderName::from_static("x-api-key");
        assert!(
            set.check(&headers(&key), &header).is_ok(),
            "a new key works at once"
        );
        assert!(set.check(&headers(&key), &header).is_ok());
        assert!(
            set.check(&headers(&key), &header).is_err(),
            "2 at once, then the rate"
        );
        assert_eq!(keys.list("shop").await.unwrap().len(), 1);
        assert!(keys.list("blog").await.unwrap().is_empty());
        keys.remove("shop", &record.id).await.unwrap();
        assert!(set.is_empty(), "a revoked key is gone from the lent set");
        assert_eq!(
            keys.remove("shop", &record.id).await.unwrap_err().code,
            ErrorCode::KeyNotFound
        );
        for bad in [
            NewApiKey {
                rate: Some("fast".into()),
                ..NewApiKey::default()
            },
            NewApiKey {
                burst: Some(5),
                ..NewApiKey::default()
            },
            NewApiKey {
                quota_per_day: Some(0),
                ..NewApiKey::default()
            },
            NewApiKey {
                name: Some(String::new()),
                ..NewApiKey::default()
            },
        ] {
            assert_eq!(
                keys.create("shop", bad.clone()).await.unwrap_err().code,
                ErrorCode::BadRequest,
                "{bad:?}"
            );
        }
        assert!(
            keys.list("shop").await.unwrap().is_empty(),
            "refusals store nothing"
        );
    }
}
