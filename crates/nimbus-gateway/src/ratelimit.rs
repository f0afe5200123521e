//! Route rate limits, checked before any function is touched.
//!
//! A token bucket of `burst` requests refilled at `rate` per `per`, kept as the generic cell
//! rate algorithm (GCRA) keeps it: one number per bucket, the theoretical arrival time (TAT) of
//! the next request. [`decide`] is the whole algorithm as a pure function of that number and
//! the time; [`RateLimiter`] only stores the numbers. A cluster can share the limit later by
//! storing the same number elsewhere (a compare-and-swap per request).
//!
//! Buckets live in memory, per node, sharded so one lock is held for one map operation. A full
//! bucket needs no entry (its TAT is in the past), so entries whose TAT has passed are dropped
//! when a shard grows past its bound; a redeploy starts every bucket full.

use http::{HeaderMap, HeaderName, HeaderValue};
use nimbus_core::spec::{RateLimitKey, RateLimitSpec};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A limit in the units [`decide`] works in: nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Time one request's token takes to come back: `per / rate`.
    emission: u64,
    /// How far ahead of now the TAT may run: `emission × burst`.
    capacity: u64,
    burst: u32,
    window_secs: u64,
}

impl Limit {
    pub fn new(spec: &RateLimitSpec) -> Limit {
        let rate = u64::from(spec.rate.max(1));
        let per = u64::try_from(spec.per.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let emission = (per / rate).max(1);
        let burst = spec.burst.max(1);
        Limit {
            emission,
            capacity: emission.saturating_mul(u64::from(burst)),
            burst,
            window_secs: spec.per.as_secs().max(1),
        }
    }
}

/// What [`decide`] concluded for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through; store `tat` as the bucket's new TAT.
    Allow {
        tat: u64,
        remaining: u32,
        /// Until the bucket is full again.
        reset: Duration,
    },
    /// Refuse it; the bucket is unchanged.
    Deny {
        retry_after: Duration,
        reset: Duration,
    },
}

/// GCRA: `tat` is the bucket's stored TAT (`None` for a full bucket), `now` the time, both in
/// nanoseconds since the same origin.
pub fn decide(tat: Option<u64>, now: u64, limit: &Limit) -> Decision {
    let tat = tat.unwrap_or(now).max(now);
    let next = tat.saturating_add(limit.emission);
    let ahead = next - now;
    if ahead <= limit.capacity {
        let remaining = (limit.capacity - ahead) / limit.emission;
        Decision::Allow {
            tat: next,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
            reset: Duration::from_nanos(ahead),
        }
    } else {
        Decision::Deny {
            retry_after: Duration::from_nanos(ahead - limit.capacity),
            reset: Duration::from_nanos(tat - now),
        }
    }
}

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
            self.limit.burst,
            Duration::from_nanos(self.limit.emission)
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
            burst: self.limit.burst,
            window_secs: self.limit.window_secs,
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

    const SEC: u64 = 1_000_000_000;

    fn limit(rate: u32, per: Duration, burst: u32) -> Limit {
        Limit::new(&RateLimitSpec {
            rate,
            per,
            burst,
            by: RateLimitKey::Ip,
        })
    }

    /// Run requests at the given times (seconds) through one bucket: `true` where allowed.
    fn run(limit: &Limit, times: &[f64]) -> Vec<bool> {
        let mut tat = None;
        times
            .iter()
            .map(|t| {
                let now = (t * SEC as f64) as u64;
                match decide(tat, now, limit) {
                    Decision::Allow { tat: next, .. } => {
                        tat = Some(next);
                        true
                    }
                    Decision::Deny { .. } => false,
                }
            })
            .collect()
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        // 1 per second, burst 3: three at once, the fourth refused, one more each second.
        let l = limit(1, Duration::from_secs(1), 3);
        let cases: &[(&[f64], &[bool])] = &[
            (&[0.0, 0.0, 0.0, 0.0], &[true, true, true, false]),
            (&[0.0, 0.0, 0.0, 1.0, 1.0], &[true, true, true, true, false]),
            (
                &[0.0, 0.0, 0.0, 0.5, 2.0, 2.0],
                &[true, true, true, false, true, true],
            ),
            // A quiet spell refills the bucket, but never beyond the burst.
            (
                &[0.0, 100.0, 100.0, 100.0, 100.0],
                &[true, true, true, true, false],
            ),
        ];
        for (times, expected) in cases {
            assert_eq!(run(&l, times), *expected, "{times:?}");
        }
    }

    #[test]
    fn burst_of_one_spaces_requests_by_the_emission_interval() {
        let l = limit(10, Duration::from_secs(1), 1);
        assert_eq!(
            run(&l, &[0.0, 0.05, 0.1, 0.15, 0.2]),
            [true, false, true, false, true]
        );
    }

    #[test]
    fn remaining_reset_and_retry_after() {
        let l = limit(2, Duration::from_secs(1), 4);
        let Decision::Allow {
            tat,
            remaining,
            reset,
        } = decide(None, 0, &l)
        else {
            panic!("first request refused")
        };
        assert_eq!(remaining, 3);
        assert_eq!(reset, Duration::from_millis(500));
        let mut tat = tat;
        for expected in [2, 1, 0] {
            match decide(Some(tat), 0, &l) {
                Decision::Allow {
                    tat: next,
                    remaining,
                    ..
                } => {
                    assert_eq!(remaining, expected);
                    tat = next;
                }
                Decision::Deny { .. } => panic!("refused inside the burst"),
            }
        }
        assert_eq!(
            decide(Some(tat), 0, &l),
            Decision::Deny {
                retry_after: Duration::from_millis(500),
                reset: Duration::from_secs(2),
            }
        );
        // After the retry-after, exactly one more fits.
        assert!(matches!(
            decide(Some(tat), SEC / 2, &l),
            Decision::Allow { remaining: 0, .. }
        ));
    }

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
