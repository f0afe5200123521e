//! The dispatcher: one [`Pool`] of instances per deployed function version.
//!
//! # Instance lifecycle
//!
//! A pool starts empty (scaled to zero). An invocation first takes a concurrency permit, then an
//! idle instance if there is one (warm) or creates one (cold). The instance is consumed by
//! `invoke`; when the guest finishes, the completion hands it back and it goes onto the idle
//! stack (last in, first out, so the hottest instance is reused and the rest can age out) — or
//! it is dropped, after a failure or in fresh-instance mode. [`Pool::reap_idle`] drops instances
//! idle longer than the idle timeout; the server calls it periodically, which is how a pool
//! returns to zero.
//!
//! # Back-pressure
//!
//! At most `max_concurrency` invocations run at once. Beyond that, up to `max_waiting` callers
//! wait (at most `wait_timeout`) for a permit; everyone else is refused at once with
//! [`DispatchError::Busy`], which the gateway turns into 429 with `Retry-After`. One function
//! at its limit therefore never holds resources another function needs.
//!
//! # Cancellation
//!
//! Each invocation runs on its own task: a client that goes away does not stop the guest
//! mid-flight (its deadline still does), and the record says `cancelled`. The permit is released
//! only when the guest has finished, so the concurrency limit counts real work, not open
//! connections.
//!
//! Decisions ([`admit`], [`is_expired`]) are pure functions; the async code only drives them.

use nimbus_core::{ErrorCode, InvocationRecord, Outcome, Trigger};
use nimbus_runtime::{Instance, InvocationContext, InvokeError, LoadedFunction, Request, Response};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

/// Receives one record per invocation. Must not block: implementations queue and return.
pub trait RecordSink: Send + Sync {
    fn record(&self, record: InvocationRecord);
}

/// Identity and limits of the function version a pool serves.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub app: Arc<str>,
    pub function: Arc<str>,
    pub version: u64,
    pub timeout: Duration,
    pub max_concurrency: u32,
    /// Callers allowed to wait for a permit before new ones are refused.
    pub max_waiting: usize,
    /// Longest a caller waits for a permit.
    pub wait_timeout: Duration,
    /// Idle instances older than this are dropped by [`Pool::reap_idle`].
    pub idle_timeout: Duration,
    /// Instances kept warm even when idle ([`Pool::prewarm`] makes them).
    pub min_instances: u32,
    /// The memory the function is configured with, recorded with each invocation (its
    /// GB-seconds are counted against it).
    pub memory_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error(
        "the function is at its concurrency limit of {max_concurrency}; retry after {retry_after:?}"
    )]
    Busy {
        max_concurrency: u32,
        retry_after: Duration,
    },
    #[error(transparent)]
    Invoke(#[from] InvokeError),
}

impl DispatchError {
    /// The stable code clients see for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            DispatchError::Busy { .. } => ErrorCode::TooManyRequests,
            DispatchError::Invoke(invoke) => invoke.code(),
        }
    }
}

/// What to do with a caller when no permit is free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Run,
    Wait,
    Reject,
}

/// Admission decision: run now if a permit is free, wait if the wait queue has room, else reject.
pub fn admit(permit_free: bool, waiting: usize, max_waiting: usize) -> Admission {
    if permit_free {
        Admission::Run
    } else if waiting < max_waiting {
        Admission::Wait
    } else {
        Admission::Reject
    }
}

/// Has an instance idle since `idle_since` outlived `idle_timeout` at `now`?
pub fn is_expired(idle_since: Instant, now: Instant, idle_timeout: Duration) -> bool {
    now.saturating_duration_since(idle_since) >= idle_timeout
}

struct IdleInstance {
    instance: Box<dyn Instance>,
    since: Instant,
}

pub struct Pool {
    function: Arc<dyn LoadedFunction>,
    config: PoolConfig,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    idle: Mutex<Vec<IdleInstance>>,
    records: Arc<dyn RecordSink>,
    prewarming: std::sync::atomic::AtomicBool,
    /// Invocations refused at the concurrency limit ([`DispatchError::Busy`]), ever.
    throttles: AtomicU64,
}

impl Pool {
    pub fn new(
        function: Arc<dyn LoadedFunction>,
        config: PoolConfig,
        records: Arc<dyn RecordSink>,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            function,
            permits: Arc::new(Semaphore::new(config.max_concurrency as usize)),
            config,
            waiting: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            records,
            prewarming: std::sync::atomic::AtomicBool::new(false),
            throttles: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The shape asynchronous deliveries to this function take.
    pub fn event_shape(&self) -> nimbus_core::message::EventShape {
        self.function.event_shape()
    }

    /// Instances currently idle (warm).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    /// Invocations currently running.
    pub fn busy_count(&self) -> usize {
        self.config.max_concurrency as usize - self.permits.available_permits()
    }

    /// Invocations refused at the concurrency limit since the pool started.
    pub fn throttle_count(&self) -> u64 {
        self.throttles.load(Ordering::Relaxed)
    }

    /// Run one invocation that `trigger` started; returns when the response head is ready.
    pub async fn invoke(
        self: &Arc<Self>,
        request: Request,
        request_id: Arc<str>,
        trigger: Trigger,
    ) -> Result<Response, DispatchError> {
        let busy = || {
            self.throttles.fetch_add(1, Ordering::Relaxed);
            DispatchError::Busy {
                max_concurrency: self.config.max_concurrency,
                retry_after: Duration::from_secs(1),
            }
        };
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => match admit(
                false,
                self.waiting.load(Ordering::Relaxed),
                self.config.max_waiting,
            ) {
                Admission::Run | Admission::Wait => {
                    self.waiting.fetch_add(1, Ordering::Relaxed);
                    let acquired = tokio::time::timeout(
                        self.config.wait_timeout,
                        self.permits.clone().acquire_owned(),
                    )
                    .await;
                    self.waiting.fetch_sub(1, Ordering::Relaxed);
                    match acquired {
                        Ok(Ok(permit)) => permit,
                        _ => return Err(busy()),
                    }
                }
                Admission::Reject => return Err(busy()),
            },
        };

        let start = Instant::now();
        let start_wall = SystemTime::now();
        let warm = self.take_idle();
        let (instance, cold) = match warm {
            Some(idle) => (idle.instance, false),
            None => match self.function.instantiate().await {
                Ok(instance) => (instance, true),
                Err(error) => {
                    self.emit(
                        &request_id,
                        start,
                        start_wall,
                        true,
                        trigger,
                        error.outcome(),
                        0,
                        String::new(),
                    );
                    return Err(error.into());
                }
            },
        };

        let context = InvocationContext {
            request_id: request_id.clone(),
            deadline: start + self.config.timeout,
            timeout: self.config.timeout,
        };
        // The invocation runs on its own task so that a caller who goes away (a client
        // disconnect drops this future) cannot release the permit or lose the instance and the
        // record while the guest is still running.
        let (response_tx, response_rx) = tokio::sync::oneshot::channel();
        let pool = self.clone();
        tokio::spawn(async move {
            let invoked = instance.invoke(request, context).await;
            let status = invoked
                .response
                .as_ref()
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            let delivered = response_tx.send(invoked.response).is_ok();
            let completion = invoked.completion.await;
            let outcome = match &completion.result {
                Ok(()) if !delivered => Outcome::Cancelled,
                Ok(()) => Outcome::Ok,
                Err(error) => error.outcome(),
            };
            if let Some(instance) = completion.instance
                && let Ok(mut idle) = pool.idle.lock()
            {
                idle.push(IdleInstance {
                    instance,
                    since: Instant::now(),
                });
            }
            drop(permit);
            pool.emit(
                &request_id,
                start,
                start_wall,
                cold,
                trigger,
                outcome,
                status,
                completion.logs,
            );
        });

        match response_rx.await {
            Ok(response) => response.map_err(DispatchError::Invoke),
            Err(_) => Err(DispatchError::Invoke(InvokeError::Trap(
                "the invocation task ended without an answer".into(),
            ))),
        }
    }

    /// The most recently used idle instance that is still alive; dead ones are dropped.
    fn take_idle(&self) -> Option<IdleInstance> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(mut candidate) = idle.pop() {
            if candidate.instance.is_alive() {
                return Some(candidate);
            }
        }
        None
    }

    /// Create instances until `min_instances` are live (idle or busy); returns how many were
    /// made. Failures are logged and retried on the next call.
    pub async fn prewarm(&self) -> usize {
        if self.config.min_instances == 0 || self.prewarming.swap(true, Ordering::AcqRel) {
            return 0;
        }
        let mut made = 0;
        while self.idle_count() + self.busy_count() < self.config.min_instances as usize {
            match self.function.instantiate().await {
                Ok(instance) => {
                    if let Ok(mut idle) = self.idle.lock() {
                        // Oldest position: requests take the newest first, so a prewarmed
                        // instance is used when the warm ones are busy.
                        idle.insert(
                            0,
                            IdleInstance {
                                instance,
                                since: Instant::now(),
                            },
                        );
                    }
                    made += 1;
                }
                Err(error) => {
                    tracing::warn!(app = %self.config.app, function = %self.config.function, error = %error, "could not prewarm an instance");
                    break;
                }
            }
        }
        self.prewarming.store(false, Ordering::Release);
        made
    }

    /// Drop instances idle longer than the idle timeout, keeping `min_instances` of them;
    /// returns how many were dropped.
    pub fn reap_idle(&self, now: Instant) -> usize {
        let keep = self.config.min_instances as usize;
        let expired: Vec<IdleInstance> = match self.idle.lock() {
            Ok(mut idle) => {
                // The stack's top is the most recently used; the bottom ages out first.
                let (mut expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *idle)
                    .into_iter()
                    .partition(|i| is_expired(i.since, now, self.config.idle_timeout));
                let missing = keep.saturating_sub(kept.len());
                let spared: Vec<IdleInstance> = expired
                    .drain(expired.len().saturating_sub(missing)..)
                    .collect();
                *idle = spared.into_iter().chain(kept).collect();
                expired
            }
            Err(_) => Vec::new(),
        };
        // Instances are dropped outside the lock: tearing down a store is not free.
        expired.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        request_id: &Arc<str>,
        start: Instant,
        start_wall: SystemTime,
        cold: bool,
        trigger: Trigger,
        outcome: Outcome,
        status: u16,
        logs: String,
    ) {
        self.records.record(InvocationRecord {
            seq: 0,
            request_id: request_id.clone(),
            app: self.config.app.clone(),
            function: self.config.function.clone(),
            version: self.config.version,
            start_ms: start_wall
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            start_us: start_wall
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
            duration_us: start.elapsed().as_micros() as u64,
            cold,
            trigger,
            memory_bytes: self.config.memory_bytes,
            outcome,
            status,
            logs,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_table() {
        assert_eq!(admit(true, 0, 0), Admission::Run);
        assert_eq!(admit(true, 100, 10), Admission::Run);
        assert_eq!(admit(false, 0, 10), Admission::Wait);
        assert_eq!(admit(false, 9, 10), Admission::Wait);
        assert_eq!(admit(false, 10, 10), Admission::Reject);
        assert_eq!(admit(false, 0, 0), Admission::Reject);
    }

    #[test]
    fn expiry() {
        let now = Instant::now();
        let minute = Duration::from_secs(60);
        assert!(!is_expired(now, now, minute));
        assert!(is_expired(now, now + minute, minute));
        assert!(
            !is_expired(now + minute, now, minute),
            "clock order must not panic or expire"
        );
    }

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use nimbus_core::message::EventShape;
    use nimbus_runtime::testing::ScriptedFunction;

    #[derive(Default)]
    struct Records(std::sync::Mutex<Vec<InvocationRecord>>);

    impl RecordSink for Records {
        fn record(&self, record: InvocationRecord) {
            self.0.lock().unwrap().push(record);
        }
    }

    fn config(max_concurrency: u32, max_waiting: usize) -> PoolConfig {
        PoolConfig {
            app: "a".into(),
            function: "f".into(),
            version: 1,
            timeout: Duration::from_secs(5),
            max_concurrency,
            max_waiting,
            wait_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(60),
            min_instances: 0,
            memory_bytes: 128 << 20,
        }
    }

    fn request() -> Request {
        http::Request::new(
            http_body_util::Full::new(Bytes::new())
                .map_err(
                    |never: std::convert::Infallible| -> nimbus_runtime::BodyError {
                        match never {}
                    },
                )
                .boxed_unsync(),
        )
    }

    /// Yield until `done` holds (the invocation task settles its instance after the answer).
    async fn settle(done: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the pool never settled");
    }

    #[tokio::test]
    async fn warm_instances_are_reused_and_failed_ones_discarded() {
        // Calls 0 and 1 succeed, call 2 traps, call 3 succeeds.
        let function = ScriptedFunction::new(EventShape::CloudEvents, |n, _| match n {
            2 => Err(InvokeError::Trap("boom".into())),
            _ => Ok((200, Bytes::from_static(b"ok"))),
        });
        let records = Arc::new(Records::default());
        let pool = Arc::new(Pool::new(function.clone(), config(4, 0), records.clone()));
        for call in 0..4 {
            let answer = pool
                .invoke(request(), format!("r{call}").into(), Trigger::Http)
                .await;
            assert_eq!(answer.is_ok(), call != 2, "call {call}");
            settle(|| records.0.lock().unwrap().len() == call + 1).await;
        }
        assert_eq!(function.calls(), 4);
        assert_eq!(
            function.instances(),
            2,
            "one instance served calls 0-2; the trap discarded it"
        );
        let records = records.0.lock().unwrap();
        let cold: Vec<bool> = records.iter().map(|r| r.cold).collect();
        assert_eq!(cold, [true, false, false, true]);
        assert!(records.iter().all(|r| r.trigger == Trigger::Http));
        assert_eq!(records[2].outcome, Outcome::Trap);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn idle_instances_are_reaped_after_the_idle_timeout() {
        let function =
            ScriptedFunction::new(EventShape::CloudEvents, |_, _| Ok((200, Bytes::new())));
        let pool = Arc::new(Pool::new(
            function.clone(),
            config(4, 0),
            Arc::new(Records::default()),
        ));
        pool.invoke(request(), "r".into(), Trigger::Http)
            .await
            .unwrap();
        settle(|| pool.idle_count() == 1).await;
        let now = Instant::now();
        assert_eq!(pool.reap_idle(now), 0, "not idle long enough");
        assert_eq!(pool.reap_idle(now + Duration::from_secs(61)), 1);
        assert_eq!(pool.idle_count(), 0, "scaled to zero");
        pool.invoke(request(), "r2".into(), Trigger::Http)
            .await
            .unwrap();
        assert_eq!(function.instances(), 2, "the next call is a cold start");
    }
}
