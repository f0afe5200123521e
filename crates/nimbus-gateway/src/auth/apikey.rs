//! API keys (`kind = "api_key"` authorizers), as API Gateway's usage plans offer them: a key
//! sent in a header (`x-api-key` by default) admits its caller, within the key's own rate
//! (a token bucket) and daily quota (UTC days).
//!
//! The set of an app's keys is held in memory by hash only (SHA-256 of the presented key, so
//! the gateway never holds a key), swapped whole when keys are created or revoked, and read
//! without locks; a key's usage (its bucket's one GCRA number and today's count) is kept across
//! swaps while the key and its plan stay. Usage is per node, like route rate limits.

use super::{Refusal, Verified};
use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderName};
use nimbus_core::gcra::{Decision, Limit, decide};
use nimbus_core::spec::RateLimitSpec;
use serde_json::{Map, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest key accepted; a longer one is refused before it is hashed.
pub const MAX_KEY_BYTES: usize = 256;

const DAY_SECS: u64 = 86_400;

/// One key of an app, as the platform hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: Option<String>,
    /// SHA-256 of the key.
    pub hash: [u8; 32],
    pub rate: Option<RateLimitSpec>,
    pub quota_per_day: Option<u64>,
}

/// The SHA-256 under which a key is known.
pub fn hash_key(key: &str) -> [u8; 32] {
    sha2::Sha256::digest(key.as_bytes()).into()
}

struct Entry {
    key: ApiKey,
    verified: Arc<Verified>,
    limit: Option<Limit>,
    /// The bucket's TAT (nanoseconds since the set's origin).
    tat: Mutex<Option<u64>>,
    /// (UTC day, requests that day).
    used: Mutex<(u64, u64)>,
}

/// An app's API keys.
pub struct ApiKeySet {
    keys: ArcSwap<HashMap<[u8; 32], Arc<Entry>>>,
    origin: Instant,
}

impl Default for ApiKeySet {
    fn default() -> Self {
        ApiKeySet {
            keys: ArcSwap::default(),
            origin: Instant::now(),
        }
    }
}

impl std::fmt::Debug for ApiKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeySet({} keys)", self.keys.load().len())
    }
}

fn claims(key: &ApiKey) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), key.id.clone().into());
    claims.insert("api_key_id".into(), key.id.clone().into());
    if let Some(name) = &key.name {
        claims.insert("api_key_name".into(), name.clone().into());
    }
    claims
}

impl ApiKeySet {
    /// Make `keys` the app's keys; a key that stays with the same plan keeps its usage.
    pub fn replace(&self, keys: Vec<ApiKey>) {
        let current = self.keys.load();
        let next: HashMap<[u8; 32], Arc<Entry>> = keys
            .into_iter()
            .map(|key| {
                let entry = match current.get(&key.hash) {
                    Some(entry) if entry.key == key => entry.clone(),
                    _ => Arc::new(Entry {
                        limit: key.rate.as_ref().map(Limit::new),
                        verified: Arc::new(Verified::granted(claims(&key), key.id.clone())),
                        tat: Mutex::new(None),
                        used: Mutex::new((0, 0)),
                        key,
                    }),
                };
                (entry.key.hash, entry)
            })
            .collect();
        self.keys.store(Arc::new(next));
    }

    /// How many keys the app has.
    pub fn len(&self) -> usize {
        self.keys.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admit a request carrying its key in `header`, within the key's plan.
    pub fn check(
        &self,
        headers: &HeaderMap,
        header: &HeaderName,
    ) -> Result<Arc<Verified>, Refusal> {
        let key = presented(headers, header)?;
        let keys = self.keys.load();
        let Some(entry) = keys.get(&hash_key(key)) else {
            return Err(Refusal::KeyInvalid {
                header: header.as_str().to_owned(),
            });
        };
        let now_ns = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        admit(entry, now_ns, now_secs)?;
        Ok(entry.verified.clone())
    }
}

/// The key in `header`: exactly one value, not empty, not too long.
fn presented<'a>(headers: &'a HeaderMap, header: &HeaderName) -> Result<&'a str, Refusal> {
    let mut values = headers.get_all(header).iter();
    let Some(value) = values.next() else {
        return Err(Refusal::KeyMissing {
            header: header.as_str().to_owned(),
        });
    };
    let invalid = || Refusal::KeyInvalid {
        header: header.as_str().to_owned(),
    };
    if values.next().is_some() || value.len() > MAX_KEY_BYTES {
        return Err(invalid());
    }
    let key = value.to_str().map_err(|_| invalid())?.trim();
    if key.is_empty() {
        return Err(Refusal::KeyMissing {
            header: header.as_str().to_owned(),
        });
    }
    Ok(key)
}

/// The key's plan decides: today's quota first (nothing is spent when it is used up), then
/// the rate; a request let through counts towards the quota.
fn admit(entry: &Entry, now_ns: u64, now_secs: u64) -> Result<(), Refusal> {
    let day = now_secs / DAY_SECS;
    let mut used = entry
        .used
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if used.0 != day {
        *used = (day, 0);
    }
    if let Some(quota) = entry.key.quota_per_day
        && used.1 >= quota
    {
        let midnight = (day + 1) * DAY_SECS;
        return Err(Refusal::Throttled {
            retry_after: Duration::from_secs(midnight.saturating_sub(now_secs).max(1)),
            why: format!(
                "API key {} has used its quota of {quota} requests today (UTC)",
                entry.key.id
            ),
        });
    }
    if let Some(limit) = &entry.limit {
        let mut tat = entry
            .tat
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match decide(*tat, now_ns, limit) {
            Decision::Allow { tat: next, .. } => *tat = Some(next),
            Decision::Deny { retry_after, .. } => {
                return Err(Refusal::Throttled {
                    retry_after,
                    why: format!(
                        "API key {} is over its rate of {} requests at once, refilled one per {:?}",
                        entry.key.id,
                        limit.burst(),
                        limit.emission()
                    ),
                });
            }
        }
    }
    used.1 += 1;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nimbus_core::ErrorCode;

    fn key(id: &str, secret: &str, rate: Option<(u32, u64, u32)>, quota: Option<u64>) -> ApiKey {
        ApiKey {
            id: id.into(),
            name: Some(format!("{id}'s")),
            hash: hash_key(secret),
            rate: rate.map(|(rate, per_secs, burst)| RateLimitSpec {
                rate,
                per: Duration::from_secs(per_secs),
                burst,
                by: nimbus_core::spec::RateLimitKey::Route,
            }),
            quota_per_day: quota,
        }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-api-key", v.parse().unwrap());
        }
        map
    }

    const HEADER: HeaderName = HeaderName::from_static("x-api-key");

    #[test]
    fn a_known_key_admits_with_its_identity() {
        let set = ApiKeySet::default();
        set.replace(vec![key("ak_1", "secret-one", None, None)]);
        let verified = set.check(&headers(&["secret-one"]), &HEADER).unwrap();
        assert_eq!(verified.claims["sub"], "ak_1");
        assert_eq!(verified.claims["api_key_name"], "ak_1's");
        assert_eq!(
            verified.header.to_str().unwrap(),
            r#"{"api_key_id":"ak_1","api_key_name":"ak_1's","sub":"ak_1"}"#
        );
        for (presented, code) in [
            (&[][..], "missing"),
            (&["secret-two"][..], "invalid"),
            (&["  "][..], "missing"),
            (&["secret-one", "secret-one"][..], "invalid"),
        ] {
            let refusal = set.check(&headers(presented), &HEADER).unwrap_err();
            assert_eq!(refusal.code(), ErrorCode::Unauthorized, "{presented:?}");
            let expected = if code == "missing" {
                matches!(refusal, Refusal::KeyMissing { .. })
            } else {
                matches!(refusal, Refusal::KeyInvalid { .. })
            };
            assert!(expected, "{presented:?}: {refusal:?}");
            assert!(refusal.challenge().is_some());
        }
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            set.check(&headers(&[&long]), &HEADER),
            Err(Refusal::KeyInvalid { .. })
        ));
        set.replace(Vec::new());
        assert!(
            set.check(&headers(&["secret-one"]), &HEADER).is_err(),
            "a revoked key is refused at once"
        );
    }

    #[test]
    fn plans_limit_each_key_alone() {
        let set = ApiKeySet::default();
        set.replace(vec![
            key("ak_slow", "slow", Some((1, 3600, 2)), None),
            key("ak_free", "free", None, None),
        ]);
        let slow = headers(&["slow"]);
        assert!(set.check(&slow, &HEADER).is_ok());
        assert!(set.check(&slow, &HEADER).is_ok());
        let refusal = set.check(&slow, &HEADER).unwrap_err();
        assert_eq!(refusal.code(), ErrorCode::RateLimited);
        assert!(refusal.retry_after().unwrap() > Duration::from_secs(1000));
        for _ in 0..10 {
            assert!(
                set.check(&headers(&["free"]), &HEADER).is_ok(),
                "other keys unaffected"
            );
        }
        // Replacing the set with the same keys keeps their usage.
        set.replace(vec![
            key("ak_slow", "slow", Some((1, 3600, 2)), None),
            key("ak_free", "free", None, None),
        ]);
        assert!(set.check(&slow, &HEADER).is_err(), "usage survives a swap");
    }

    #[test]
    fn quotas_count_per_utc_day() {
        let entry = Entry {
            key: key("ak_q", "q", None, Some(2)),
            verified: Arc::new(Verified::granted(Map::new(), String::new())),
            limit: None,
            tat: Mutex::new(None),
            used: Mutex::new((0, 0)),
        };
        let day = 20_000 * DAY_SECS;
        assert!(admit(&entry, 0, day + 10).is_ok());
        assert!(admit(&entry, 0, day + 20).is_ok());
        let Err(Refusal::Throttled { retry_after, why }) = admit(&entry, 0, day + 100) else {
            panic!("the third request of the day is refused");
        };
        assert_eq!(
            retry_after,
            Duration::from_secs(DAY_SECS - 100),
            "until UTC midnight"
        );
        assert!(why.contains("quota of 2"), "{why}");
        assert!(
            admit(&entry, 0, day + DAY_SECS).is_ok(),
            "a new day, a new quota"
        );
    }

    #[test]
    fn a_rate_refusal_spends_no_quota() {
        let entry = Entry {
            key: key("ak_r", "r", Some((1, 3600, 1)), Some(2)),
            verified: Arc::new(Verified::granted(Map::new(), String::new())),
            limit: Some(Limit::new(&RateLimitSpec {
                rate: 1,
                per: Duration::from_secs(3600),
                burst: 1,
                by: nimbus_core::spec::RateLimitKey::Route,
            })),
            tat: Mutex::new(None),
            used: Mutex::new((0, 0)),
        };
        assert!(admit(&entry, 0, 50).is_ok());
        assert!(admit(&entry, 1, 50).is_err(), "over the rate");
        assert_eq!(
            entry.used.lock().unwrap().1,
            1,
            "the refused request was not counted"
        );
    }
}
