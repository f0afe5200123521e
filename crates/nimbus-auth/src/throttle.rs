//! Brute-force protection: token buckets per client address (every sign-in and sign-up
//! attempt) and per account (failed sign-ins only, so a guesser cannot lock a user out by
//! succeeding less often than the user). The buckets are GCRA cells
//! ([`nimbus_core::gcra`]), one number each, keyed by a keyed hash of the address or e-mail,
//! in memory per node.

use nimbus_core::gcra::{Decision, Limit, decide};
use nimbus_core::spec::RateLimitSpec;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before full ones are swept out.
const BOUND: usize = 16_384;

pub struct Throttle {
    limit: Limit,
    origin: Instant,
    keys: std::collections::hash_map::RandomState,
    buckets: Mutex<HashMap<u64, u64>>,
}

impl Throttle {
    pub fn new(spec: &RateLimitSpec) -> Throttle {
        Throttle {
            limit: Limit::new(spec),
            origin: Instant::now(),
            keys: Default::default(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Draw one attempt from `key`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn take(&self, key: &str) -> Result<(), u64> {
        self.check(key, true)
    }

    /// Would [`Throttle::take`] succeed? Draws nothing.
    pub fn allows(&self, key: &str) -> Result<(), u64> {
        self.check(key, false)
    }

    fn check(&self, key: &str, draw: bool) -> Result<(), u64> {
        let hash = self.keys.hash_one(key);
        let now = self.now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match decide(buckets.get(&hash).copied(), now, &self.limit) {
            Decision::Allow { tat, .. } => {
                if draw {
                    if buckets.len() >= BOUND {
                        buckets.retain(|_, kept| *kept > now);
                    }
                    buckets.insert(hash, tat);
                }
                Ok(())
            }
            Decision::Deny { retry_after, .. } => Err(retry_after.as_secs_f64().ceil() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::spec::RateLimitKey;
    use std::time::Duration;

    #[test]
    fn buckets_are_per_key_and_peeking_draws_nothing() {
        let throttle = Throttle::new(&RateLimitSpec {
            rate: 1,
            per: Duration::from_secs(3600),
            burst: 2,
            by: RateLimitKey::Ip,
        });
        for _ in 0..5 {
            assert_eq!(throttle.allows("a@x.test"), Ok(()));
        }
        assert_eq!(throttle.take("a@x.test"), Ok(()));
        assert_eq!(throttle.take("a@x.test"), Ok(()));
        let wait = throttle.take("a@x.test").unwrap_err();
        assert!((3000..=3600).contains(&wait), "{wait}");
        assert!(throttle.allows("a@x.test").is_err());
        assert_eq!(
            throttle.take("b@x.test"),
            Ok(()),
            "other keys are unaffected"
        );
    }
}
