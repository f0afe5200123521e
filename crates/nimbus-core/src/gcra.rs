//! The generic cell rate algorithm (GCRA): a token bucket of `burst` requests refilled at
//! `rate` per `per`, kept as one number per bucket — the theoretical arrival time (TAT) of the
//! next request. [`decide`] is the whole algorithm as a pure function of that number and the
//! time; callers store the numbers (the gateway's route limits, the auth service's throttles,
//! a JWKS refresh budget), in memory now, in a shared store for a cluster later.

use crate::spec::RateLimitSpec;
use std::time::Duration;

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

impl Limit {
    /// Requests allowed at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The time one request's token takes to come back.
    pub fn emission(&self) -> Duration {
        Duration::from_nanos(self.emission)
    }

    /// The window `rate` is counted over, in whole seconds.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RateLimitKey;

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
}
