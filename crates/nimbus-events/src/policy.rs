//! The delivery policy's decisions, as pure functions: when to retry, how long to wait, when an
//! event is dead. Every asynchronous path (async invoke, queues, schedules, bus rules) asks
//! these same questions.

use nimbus_core::DeliveryPolicy;
use std::time::Duration;

pub use nimbus_core::message::DeadReason;

/// What happens after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    Retry { delay: Duration },
    DeadLetter(DeadReason),
}

/// The wait before retry number `attempts_made` (1 after the first failure): `backoff`
/// doubled per attempt, capped at `max_backoff`, with "equal jitter" — half fixed, half
/// random (`jitter` in [0, 1)) — so failing consumers do not retry in lockstep.
pub fn backoff(policy: &DeliveryPolicy, attempts_made: u32, jitter: f64) -> Duration {
    let exponent = attempts_made.saturating_sub(1).min(32);
    let base = policy
        .backoff
        .saturating_mul(1u32 << exponent.min(31))
        .min(policy.max_backoff);
    let half = base / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Is an event enqueued at `enqueued_ms` too old to attempt at `now_ms`?
pub fn expired(policy: &DeliveryPolicy, enqueued_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(enqueued_ms) > policy.max_age.as_millis() as u64
}

/// Decide after attempt number `attempts_made` failed.
pub fn after_failure(
    policy: &DeliveryPolicy,
    attempts_made: u32,
    enqueued_ms: u64,
    now_ms: u64,
    jitter: f64,
) -> AfterFailure {
    if attempts_made > policy.retries {
        return AfterFailure::DeadLetter(DeadReason::RetriesExhausted);
    }
    let delay = backoff(policy, attempts_made, jitter);
    if expired(policy, enqueued_ms, now_ms + delay.as_millis() as u64) {
        return AfterFailure::DeadLetter(DeadReason::EventAgeExceeded);
    }
    AfterFailure::Retry { delay }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            retries: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            max_age: Duration::from_secs(60),
            ..DeliveryPolicy::default()
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_cap() {
        let p = policy();
        assert_eq!(backoff(&p, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(&p, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&p, 2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(&p, 3, 0.5), Duration::from_secs(3));
        assert_eq!(backoff(&p, 10, 1.0), Duration::from_secs(5));
        assert_eq!(backoff(&p, u32::MAX, 1.0), Duration::from_secs(5));
    }

    #[test]
    fn retries_then_dead_letters() {
        let p = policy();
        for attempt in 1..=3 {
            assert!(matches!(
                after_failure(&p, attempt, 0, 1_000, 0.5),
                AfterFailure::Retry { .. }
            ));
        }
        assert_eq!(
            after_failure(&p, 4, 0, 1_000, 0.5),
            AfterFailure::DeadLetter(DeadReason::RetriesExhausted)
        );
        // A retry that would land past max_age is not scheduled.
        assert_eq!(
            after_failure(&p, 1, 0, 59_900, 1.0),
            AfterFailure::DeadLetter(DeadReason::EventAgeExceeded)
        );
        assert!(expired(&p, 0, 60_001));
        assert!(!expired(&p, 0, 60_000));
        let none = DeliveryPolicy {
            retries: 0,
            ..policy()
        };
        assert_eq!(
            after_failure(&none, 1, 0, 0, 0.0),
            AfterFailure::DeadLetter(DeadReason::RetriesExhausted)
        );
    }
}
