//! Route rate limits, checked before any function is touched.
//!
//! A token bucket of `burst` requests refilled at `rate` per `per`, kept as the generic cell
//! rate algorithm (GCRA) keeps it: one number per bucket, the theoretical arrival time (TAT) of
//! the next request. [`decide`] ([`nimbus_core::gcra`]) is the whole algorithm as a pure
//! function of that number and the time; [`RateLimiter`] only stores the numbers. A cluster can share the limit later by
//! storing the same number elsewhere (a compare-and-swap per request).
//!
//! Buckets live in memory, per node, sharded so one lock is held for one map operation. A full
//! bucket needs no entry (its TAT is in the past), so entries whose TAT has passed are dropped
//! when a shard grows past its bound; a redeploy starts every bucket full.

use http::{HeaderMap, HeaderName, HeaderValue};
use nimbus_core::gcra::{Decision, Limit, decide};
use nimbus_core::spec::{RateLimitKey, RateLimitSpec};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets per shard before full ones are swept out.
const SHARD_BOUND: usize = 4096;
const SHARDS: usize = 16;

/// Whose bucket a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bucket {
    Route,
    Ip(IpAddr),
    /// An authenticated caller, by a keyed hash of the token's `sub`: fixed size, no
    /// allocation per request, and callers cannot aim for a collision they cannot compute.
    Subject(u64),
}

impl Bucket {
    fn shard(&self) -> usize {
        let spread = match self {
            Bucket::Route => 0,
            Bucket::Ip(IpAddr::V4(ip)) => usize::from(ip.octets()[3]),
            Bucket::Ip(IpAddr::V6(ip)) => usize::from(ip.octets()[15]),
            Bucket::Subject(hash) => *hash as usize,
        };
        spread % SHARDS
    }
}

/// One route's buckets.
pub struct RateLimiter {
    limit: Limit,
    by: RateLimitKey,
    origin: Instant,
    subjects: std::collections::hash_map::RandomState,
    shards: [Mutex<HashMap<Bucket, u64>>; SHARDS],
}

/// What a checked request carries to its response: the `RateLimit-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    burst: u32,
    window_secs: u64,
    remaining: u32,
    reset: Duration,
    /// Set when the request was refused.
    pub retry_after: Option<Duration>,
}

impl RateLimiter {
    pub fn new(spec: &RateLimitSpec) -> RateLimiter {
        RateLimiter {
            limit: Limit::new(spec),
            by: spec.by,
            origin: Instant::now(),
            subjects: Default::default(),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// The limit in words, for error messages.
    pub fn describe(&self) -> String {
        let whose = match self.by {
            RateLimitKey::Ip => "per client address",
            RateLimitKey::Route => "for the route",
            RateLimitKey::Subject => "per caller",
        };
        format!(
            "the limit is {} requests at once, refilled one per {:?}, {whose}",
            self.limit.burst(),
            self.limit.emission()
        )
    }

    /// Whether buckets are per authenticated caller: then the limit is checked after the
    /// route's authorizer, with [`RateLimiter::check_subject`].
    pub fn by_subject(&self) -> bool {
        self.by == RateLimitKey::Subject
    }

    /// Take a token for a request from `client` (for a per-route or per-address limit).
    pub fn check(&self, client: Option<IpAddr>) -> Verdict {
        let bucket = match (self.by, client) {
            (RateLimitKey::Ip, Some(ip)) => Bucket::Ip(ip),
            _ => Bucket::Route,
        };
        self.take(bucket)
    }

    /// Take a token for a request from the authenticated caller `subject`.
    pub fn check_subject(&self, subject: &str) -> Verdict {
        self.take(Bucket::Subject(self.subjects.hash_one(subject)))
    }

    fn take(&self, key: Bucket) -> Verdict {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let Some(shard) = self.shards.get(key.shard()) else {
            return self.verdict(Decision::Deny {
                retry_after: Duration::from_secs(1),
                reset: Duration::from_secs(1),
            });
        };
        let mut buckets = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let decision = decide(buckets.get(&key).copied(), now, &self.limit);
        if let Decision::Allow { tat, .. } = decision {
            if buckets.len() >= SHARD_BOUND && !buckets.contains_key(&key) {
                buckets.retain(|_, tat| *tat > now);
            }
            buckets.insert(key, tat);
        }
        drop(buckets);
        self.verdict(decision)
    }

    fn verdict(&self, decision: Decision) -> Verdict {
        let (remaining, reset, retry_after) = match decision {
            Decision::Allow {
                remaining, reset, ..
            } => (remaining, reset, None),
            Decision::Deny { retry_after, reset } => (0, reset, Some(retry_after)),
        };
        Verdict {
            burst: self.limit.burst(),
            window_secs: self.limit.window_secs(),
            remaining,
            reset,
            retry_after,
        }
    }
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

impl Verdict {
    /// Whole seconds a client should wait, never 0 (`Retry-After` has no finer unit).
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(ceil_secs)
    }

    /// The IETF draft's `RateLimit-Limit`, `-Remaining`, `-Reset` and `-Policy` headers.
    pub fn write(&self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.burst));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(ceil_secs(self.reset)));
        if let Ok(policy) = HeaderValue::from_str(&format!("{};w={}", self.burst, self.window_secs))
        {
            headers.insert(RATELIMIT_POLICY, policy);
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_have_their_own_buckets_unless_the_route_shares_one() {
        let spec = |by| RateLimitSpec {
            rate: 1,
            per: Duration::from_secs(3600),
            burst: 1,
            by,
        };
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        let per_ip = RateLimiter::new(&spec(RateLimitKey::Ip));
        assert!(per_ip.check(a).retry_after.is_none());
        assert!(per_ip.check(a).retry_after.is_some());
        assert!(per_ip.check(b).retry_after.is_none());
        let shared = RateLimiter::new(&spec(RateLimitKey::Route));
        assert!(shared.check(a).retry_after.is_none());
        assert!(shared.check(b).retry_after.is_some());
        let per_caller = RateLimiter::new(&spec(RateLimitKey::Subject));
        assert!(per_caller.by_subject());
        assert!(per_caller.check_subject("ada").retry_after.is_none());
        assert!(per_caller.check_subject("ada").retry_after.is_some());
        assert!(per_caller.check_subject("bob").retry_after.is_none());
    }

    #[test]
    fn headers_follow_the_draft() {
        let limiter = RateLimiter::new(&RateLimitSpec {
            rate: 1,
            per: Duration::from_secs(60),
            burst: 2,
            by: RateLimitKey::Route,
        });
        let mut headers = HeaderMap::new();
        limiter.check(None).write(&mut headers);
        assert_eq!(headers["ratelimit-limit"], "2");
        assert_eq!(headers["ratelimit-remaining"], "1");
        assert_eq!(headers["ratelimit-reset"], "60");
        assert_eq!(headers["ratelimit-policy"], "2;w=60");
        limiter.check(None);
        let refused = limiter.check(None);
        assert_eq!(refused.retry_after_secs(), Some(60));
    }
}
