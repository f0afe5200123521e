//! The driver's consumers and schedulers on paused time: a scripted function instead of an
//! executor, tokio's clock instead of the wall's, so backoffs of minutes and schedules of
//! hours run in milliseconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::triggers::{FunctionQueues, Schedules, Trigger};
use super::*;
use crate::deployments::DeployedApp;
use nimbus_core::InvocationRecord;
use nimbus_core::message::{DeadReason, EventShape};
use nimbus_dispatch::{Pool, PoolConfig, RecordSink};
use nimbus_runtime::InvokeError;
use nimbus_runtime::testing::ScriptedFunction;
use nimbus_store::conformance::TokioClock;
use std::collections::BTreeMap;

const EPOCH_MS: u64 = 1_700_000_000_000;

struct NoRecords;

impl RecordSink for NoRecords {
    fn record(&self, _: InvocationRecord) {}
}

struct Fixture {
    events: Arc<Events>,
    _dir: tempfile::TempDir,
}

fn fixture(triggers: Vec<Box<dyn Trigger>>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(TokioClock::new(EPOCH_MS));
    let store = Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).unwrap());
    let queue = nimbus_store_redb::QueueEngine::open_with_clock(store, clock.clone()).unwrap();
    let events = Events::new(queue, triggers, clock, tokio_util::task::TaskTracker::new());
    Fixture { events, _dir: dir }
}

/// A deployed version of `manifest` whose every function is `function`.
fn deploy(manifest: &str, function: &Arc<ScriptedFunction>) -> Arc<DeployedApp> {
    let parsed = nimbus_manifest::parse("nimbus.toml", manifest).unwrap();
    let spec = parsed.app;
    let pools = spec
        .functions
        .iter()
        .map(|(name, f)| {
            let config = PoolConfig {
                app: spec.name.as_str().into(),
                function: name.as_str().into(),
                version: 1,
                timeout: f.timeout,
                max_concurrency: f.max_concurrency,
                max_waiting: 0,
                wait_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(300),
                min_instances: 0,
                memory_bytes: 128 << 20,
            };
            let loaded: Arc<dyn nimbus_runtime::LoadedFunction> = function.clone();
            (
                name.to_string(),
                Pool::new(loaded, config, Arc::new(NoRecords)),
            )
        })
        .collect();
    Arc::new(DeployedApp {
        route_stats: Vec::new(),
        version: nimbus_store::VersionRecord {
            app: spec.name.to_string(),
            number: 1,
            digest: String::new(),
            manifest: manifest.to_owned(),
            functions: BTreeMap::new(),
            created_ms: 0,
        },
        rules: parsed.compiled.rules,
        schedules: parsed.compiled.schedules,
        spec,
        pools,
        stages: Default::default(),
        mounts: Default::default(),
        workers: CancellationToken::new(),
    })
}

/// Let every task run until `done` holds, without letting time move (a busy runtime never
/// auto-advances). Bounded so a broken driver fails instead of hanging.
async fn run_until(what: &str, done: impl AsyncFn() -> bool) {
    let guard = std::time::Instant::now();
    while !done().await {
        assert!(
            guard.elapsed() < std::time::Duration::from_secs(20),
            "never happened: {what}"
        );
        tokio::task::yield_now().await;
    }
}

/// Let the tasks run for a while without moving time, to show that something does not happen.
async fn run_a_while() {
    for _ in 0..2_000 {
        tokio::task::yield_now().await;
    }
}

/// Move time forward by `seconds`, a second at a time, letting every task run in between.
async fn advance_by(seconds: u64) {
    for _ in 0..seconds {
        tokio::time::advance(Duration::from_secs(1)).await;
        run_a_while().await;
    }
}

/// Move time forward a second at a time until `done` holds, at most `seconds`; then let work
/// started in that time (a commit's fsync takes real time) finish without moving time further.
async fn advance_until(what: &str, seconds: u64, done: impl AsyncFn() -> bool) {
    for _ in 0..seconds {
        if done().await {
            return;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        run_a_while().await;
    }
    run_until(what, done).await;
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_then_dead_letter_on_paused_time() {
    let function = ScriptedFunction::new(EventShape::CloudEvents, |_, _| {
        Err(InvokeError::Handler {
            error_type: "Boom".into(),
            message: "always".into(),
        })
    });
    let fixture = fixture(vec![Box::new(FunctionQueues)]);
    let events = &fixture.events;
    let app = deploy(
        r#"
name = "shop"
[function.worker]
component = "worker.wasm"
max_concurrency = 1
delivery = { retries = 2, backoff = "1m", max_backoff = "10m" }
"#,
        &function,
    );
    events.started(&app);
    let accepted = events
        .invoke_async("shop", "worker", MessageKind::Raw, Bytes::from("{}"), None)
        .await
        .unwrap();
    run_until("the first attempt", async || function.calls() == 1).await;
    // The first retry waits between 30 s and 1 min (equal jitter over a 1 min backoff).
    advance_by(25).await;
    assert_eq!(function.calls(), 1, "no retry before the backoff");
    advance_until("the second attempt", 40, async || function.calls() == 2).await;
    // The second waits between 1 and 2 min.
    advance_by(55).await;
    assert_eq!(function.calls(), 2, "the backoff doubles");
    advance_until("the third attempt", 70, async || function.calls() == 3).await;
    run_until("the dead letter", async || {
        !events
            .queue()
            .peek("shop/@worker.dlq", 10)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let dead = events.queue().peek("shop/@worker.dlq", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    let why = dead[0].meta.dead.as_ref().unwrap();
    assert_eq!(why.reason, DeadReason::RetriesExhausted);
    assert!(why.error.starts_with("function_error: "), "{}", why.error);
    run_until("the final status", async || {
        events
            .invocation(&accepted.invocation_id)
            .await
            .is_ok_and(|s| s.status == "failed")
    })
    .await;
    advance_by(600).await;
    assert_eq!(
        function.calls(),
        3,
        "retries = 2 means three attempts in all"
    );
    app.workers.cancel();
}

#[tokio::test(start_paused = true)]
async fn each_tick_fires_once_even_with_two_schedulers() {
    let function = ScriptedFunction::new(EventShape::CloudEvents, |_, _| Ok((200, Bytes::new())));
    let fixture = fixture(vec![Box::new(Schedules)]);
    let events = &fixture.events;
    let manifest = r#"
name = "shop"
[function.tick]
component = "tick.wasm"
[[trigger.schedule]]
rate = "1 minute"
function = "tick"
"#;
    let old = deploy(manifest, &function);
    events.started(&old);
    let queued = async || events.queue().peek("shop/@tick", 100).await.unwrap().len();
    for minute in 1..=3 {
        advance_until(&format!("tick {minute}"), 61, async || {
            queued().await == minute
        })
        .await;
    }
    // A redeploy: the new version's scheduler starts while the old one still runs. The store's
    // conditional commit lets only one of them fire each tick.
    let new = deploy(manifest, &function);
    events.started(&new);
    run_a_while().await;
    for minute in 4..=6 {
        advance_until(&format!("tick {minute}"), 61, async || {
            queued().await >= minute
        })
        .await;
        run_a_while().await;
        assert_eq!(queued().await, minute, "tick {minute} fired once");
    }
    run_a_while().await;
    let ticks = events.queue().peek("shop/@tick", 100).await.unwrap();
    assert_eq!(ticks.len(), 6, "one message per tick, none doubled");
    let mut ids: Vec<String> = ticks
        .iter()
        .map(|t| {
            let event: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
            event["id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 6, "six distinct ticks: {ids:?}");
    assert_eq!(function.calls(), 0, "no consumer was started");
    old.workers.cancel();
    new.workers.cancel();
}
