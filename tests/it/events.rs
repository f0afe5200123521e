//! Asynchronous events end to end: queues and their consumers, retries, dead-letter queues and
//! redrive, max age, FIFO order, async invokes with idempotency keys, chaining, schedules across
//! restarts, the event bus, Lambda-shaped deliveries — and kill -9 with 10,000 events queued.
//!
//! Consumers are the probe guest (or a Python function) reporting every event they receive to
//! a collector HTTP server in the test, so the test counts what functions really saw.

use crate::restart::{connect, spawn_server};
use crate::support::*;
use nimbus_api::OutgoingMessage;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One event as a consumer reported it.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) id: String,
    pub(crate) ty: String,
    pub(crate) attempt: u32,
    pub(crate) data: String,
    pub(crate) at: Instant,
}

/// An HTTP server collecting what consumers report (`POST /`).
#[derive(Clone)]
pub(crate) struct Collector {
    pub(crate) url: String,
    reports: Arc<Mutex<Vec<Report>>>,
}

impl Collector {
    pub(crate) async fn start() -> Collector {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let sink = reports.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: String| {
                let sink = sink.clone();
                async move {
                    let (head, data) = body.split_once('\n').unwrap_or((&body, ""));
                    let mut parts = head.split(' ');
                    let report = Report {
                        id: parts.next().unwrap_or("").to_owned(),
                        ty: parts.next().unwrap_or("").to_owned(),
                        attempt: parts.next().and_then(|a| a.parse().ok()).unwrap_or(0),
                        data: data.to_owned(),
                        at: Instant::now(),
                    };
                    sink.lock().unwrap().push(report);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Collector { url, reports }
    }

    pub(crate) fn reports(&self) -> Vec<Report> {
        self.reports.lock().unwrap().clone()
    }

    pub(crate) fn count(&self) -> usize {
        self.reports.lock().unwrap().len()
    }

    /// Wait until at least `n` reports arrived.
    pub(crate) async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Report> {
        let arrived = eventually(limit, async || self.count() >= n).await;
        let reports = self.reports();
        assert!(
            arrived,
            "expected {n} reports, got {}: {reports:#?}",
            reports.len()
        );
        reports
    }

    /// The probe settings that make a function report here.
    pub(crate) fn probe_env(&self) -> String {
        format!(
            "env = {{ REPORT_URL = \"{0}/\", FAIL_ON = \"fail\" }}\nallowed_outbound_hosts = [\"{0}\"]",
            self.url
        )
    }
}

fn text(body: &str) -> OutgoingMessage {
    OutgoingMessage {
        body: Some(body.to_owned()),
        ..Default::default()
    }
}

fn grouped(body: &str, group: &str) -> OutgoingMessage {
    OutgoingMessage {
        group: Some(group.to_owned()),
        ..text(body)
    }
}

/// An app whose probe function `worker` consumes queue `jobs`.
fn consumer_app(collector: &Collector, delivery: &str, queue: &str, trigger: &str) -> String {
    format!(
        "name = \"ev\"\n\n[function.worker]\ncomponent = \"probe.wasm\"\n{}\n{delivery}\n\n[queue.jobs]\n{queue}\n\n[[trigger.queue]]\nqueue = \"jobs\"\nfunction = \"worker\"\n{trigger}\n",
        collector.probe_env()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_messages_reach_a_wasm_consumer_as_cloudevents_in_fifo_order_per_group() {
    let collector = Collector::start().await;
    let platform = Platform::start().await;
    platform
        .deploy(
            &consumer_app(
                &collector,
                "",
                "fifo = true",
                "batch_size = 3\nconcurrency = 4",
            ),
            &[("worker", "probe")],
        )
        .await
        .unwrap();
    let mut messages = Vec::new();
    for i in 0..10 {
        for group in ["a", "b", "c"] {
            messages.push(grouped(&format!("{group}-{i}"), group));
        }
    }
    let sent = platform
        .client
        .send_messages("ev", "jobs", messages)
        .await
        .unwrap();
    assert_eq!(sent.ids.len(), 30);
    let reports = collector.wait_for(30, Duration::from_secs(30)).await;
    for report in &reports {
        assert_eq!(report.ty, "nimbus.queue.message", "{report:?}");
        assert_eq!(report.attempt, 1, "{report:?}");
        assert!(sent.ids.contains(&report.id), "{report:?}");
    }
    // Per group, the consumer saw the messages in the order they were sent.
    for group in ["a", "b", "c"] {
        let seen: Vec<String> = reports
            .iter()
            .filter(|r| r.data.starts_with(group))
            .map(|r| r.data.clone())
            .collect();
        let expected: Vec<String> = (0..10).map(|i| format!("{group}-{i}")).collect();
        assert_eq!(seen, expected);
    }
    let queues = platform.client.queues().await.unwrap();
    let jobs = queues.iter().find(|q| q.queue == "jobs").unwrap();
    assert_eq!(
        (jobs.ready, jobs.in_flight, jobs.delayed),
        (0, 0, 0),
        "{queues:?}"
    );
    assert!(queues.iter().any(|q| q.queue == "@worker"), "{queues:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_consumer_is_retried_with_backoff_then_dead_lettered_and_redriven() {
    let collector = Collector::start().await;
    let platform = Platform::start().await;
    platform
        .deploy(
            &consumer_app(
                &collector,
                "delivery = { retries = 2, backoff = \"200ms\" }",
                "",
                "batch_size = 1",
            ),
            &[("worker", "probe")],
        )
        .await
        .unwrap();
    let sent = platform
        .client
        .send_messages("ev", "jobs", vec![text("please fail")])
        .await
        .unwrap();
    let reports = collector.wait_for(3, Duration::from_secs(20)).await;
    let attempts: Vec<u32> = reports.iter().map(|r| r.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(reports.iter().all(|r| r.id == sent.ids[0]));
    // Backoff: 200 ms doubling, half of it jittered, so at least 100 ms then 200 ms.
    assert!(reports[1].at - reports[0].at >= Duration::from_millis(100));
    assert!(reports[2].at - reports[1].at >= Duration::from_millis(200));

    let dead = async || platform.client.peek("ev", "jobs.dlq", 10).await.unwrap();
    assert!(eventually(Duration::from_secs(10), async || dead().await.len() == 1).await);
    let dead = dead().await;
    let info = dead[0].dead.as_ref().unwrap();
    assert_eq!(info.reason, "RetriesExhausted");
    assert_eq!(info.origin, "ev/jobs");
    assert!(info.error.contains("500"), "{info:?}");
    assert_eq!(dead[0].body.as_deref(), Some("please fail"));
    assert_eq!(dead[0].attempts, 3);
    // Nothing more is attempted once dead.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(collector.count(), 3);

    let moved = platform.client.redrive("ev", "jobs").await.unwrap();
    assert_eq!(moved.moved, 1);
    let reports = collector.wait_for(6, Duration::from_secs(20)).await;
    assert_eq!(reports[3].attempt, 1, "a redriven message starts over");
    assert_eq!(reports[3].data, "please fail");
    assert!(
        eventually(Duration::from_secs(10), async || {
            platform
                .client
                .peek("ev", "jobs.dlq", 10)
                .await
                .unwrap()
                .len()
                == 1
        })
        .await
    );
    // Unknown queues are refused with a stable code.
    let error = platform.client.redrive("ev", "nope").await.unwrap_err();
    assert_eq!(error.code(), Some(nimbus_core::ErrorCode::QueueNotFound));
    let error = platform
        .client
        .send_messages("ev", "nope", vec![text("x")])
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(nimbus_core::ErrorCode::QueueNotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_max_age_go_to_the_dead_letter_queue() {
    let collector = Collector::start().await;
    let platform = Platform::start().await;
    platform
        .deploy(
            &consumer_app(
                &collector,
                "delivery = { retries = 10, backoff = \"3s\", max_age = \"1s\", dead_letter = \"expired\" }",
                "",
                "",
            )
            .replace("[[trigger.queue]]", "[queue.expired]\n\n[[trigger.queue]]"),
            &[("worker", "probe")],
        )
        .await
        .unwrap();
    platform
        .client
        .send_messages("ev", "jobs", vec![text("fail slowly")])
        .await
        .unwrap();
    let peek = async || platform.client.peek("ev", "expired", 10).await.unwrap();
    assert!(eventually(Duration::from_secs(10), async || peek().await.len() == 1).await);
    let dead = peek().await;
    let info = dead[0].dead.as_ref().unwrap();
    assert_eq!(info.reason, "EventAgeExceeded");
    assert!(
        info.error.contains("500"),
        "the last error is kept: {info:?}"
    );
    // The retry would have landed past max_age, so it was never attempted.
    assert_eq!(collector.count(), 1);
    assert!(
        platform
            .client
            .peek("ev", "jobs.dlq", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A declared dead-letter queue is redriven itself: back to `jobs`, tried once more, back.
    assert_eq!(
        platform
            .client
            .redrive("ev", "expired")
            .await
            .unwrap()
            .moved,
        1
    );
    collector.wait_for(2, Duration::from_secs(10)).await;
    assert!(eventually(Duration::from_secs(10), async || peek().await.len() == 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_invocations_are_accepted_deduplicated_and_queryable() {
    let collector = Collector::start().await;
    let platform = Platform::start().await;
    platform
        .deploy(
            &probe_app("asy", "probe", &collector.probe_env()),
            &[("probe", "probe")],
        )
        .await
        .unwrap();
    // Any route becomes asynchronous with the header; the request is replayed as it came.
    let send = async |key: &str| {
        platform
            .http
            .post(platform.url("/probe/orders?x=1"))
            .header("x-nimbus-invocation-type", "event")
            .header("idempotency-key", key)
            .header("x-custom", "kept")
            .body("payload")
            .send()
            .await
            .unwrap()
    };
    let first = send("key-1").await;
    assert_eq!(first.status(), 202);
    let id = first.headers()["x-nimbus-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["invocation_id"], id.as_str());
    assert_eq!(body["replay"], false);
    let again: serde_json::Value = send("key-1").await.json().await.unwrap();
    assert_eq!(again["invocation_id"], id.as_str());
    assert_eq!(again["replay"], true);
    let other: serde_json::Value = send("key-2").await.json().await.unwrap();
    assert_ne!(other["invocation_id"], id.as_str());

    let status = async |id: &str| platform.client.invocation(id).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || status(&id).await.status
            == "succeeded")
        .await
    );
    let done = status(&id).await;
    assert_eq!(
        (done.app.as_str(), done.function.as_str()),
        ("asy", "probe")
    );
    assert_eq!(done.attempts, 1);
    let result = done.result.unwrap();
    assert_eq!(result.status, 200);
    let echoed = result.body.unwrap();
    assert!(echoed.starts_with("POST /probe/orders"), "{echoed}");
    assert!(echoed.contains("x-custom: kept"), "{echoed}");
    assert!(echoed.ends_with("payload"), "{echoed}");

    // The admin API's async invoke: the event arrives as a CloudEvent, deduplicated by key.
    let accepted = platform
        .client
        .invoke_async("asy", "probe", b"{\"n\":1}".to_vec(), Some("k"))
        .await
        .unwrap();
    let replay = platform
        .client
        .invoke_async("asy", "probe", b"{\"n\":1}".to_vec(), Some("k"))
        .await
        .unwrap();
    assert_eq!(replay.invocation_id, accepted.invocation_id);
    assert!(replay.replay);
    let reports = collector.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(reports[0].id, accepted.invocation_id);
    assert_eq!(reports[0].ty, "nimbus.invoke");
    assert_eq!(reports[0].data, "{\"n\":1}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(collector.count(), 1, "the duplicate ran");

    let missing = platform.client.invocation("nope").await.unwrap_err();
    assert_eq!(
        missing.code(),
        Some(nimbus_core::ErrorCode::InvocationNotFound)
    );
    let bad = platform
        .http
        .post(platform.url("/probe/x"))
        .header("x-nimbus-invocation-type", "sometimes")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_success_and_on_failure_chain_a_into_b() {
    let collector = Collector::start().await;
    let platform = Platform::start().await;
    let manifest = format!(
        "name = \"chain\"\n\n[function.a]\ncomponent = \"probe.wasm\"\nenv = {{ FAIL_ON = \"boom\" }}\ndelivery = {{ retries = 0, on_success = \"function:b\", on_failure = \"function:b\" }}\n\n[function.b]\ncomponent = \"probe.wasm\"\nenv = {{ REPORT_URL = \"{0}/\" }}\nallowed_outbound_hosts = [\"{0}\"]\n",
        collector.url
    );
    platform
        .deploy(&manifest, &[("a", "probe"), ("b", "probe")])
        .await
        .unwrap();
    let ok = platform
        .client
        .invoke_async("chain", "a", b"{\"order\":1}".to_vec(), None)
        .await
        .unwrap();
    let reports = collector.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(reports[0].ty, "nimbus.invocation.success");
    let record: serde_json::Value = serde_json::from_str(&reports[0].data).unwrap();
    assert_eq!(
        record["requestContext"]["requestId"],
        ok.invocation_id.as_str()
    );
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["requestPayload"], serde_json::json!({"order": 1}));
    assert_eq!(
        record["responsePayload"],
        serde_json::json!({"handled": ok.invocation_id})
    );

    let failed = platform
        .client
        .invoke_async("chain", "a", b"{\"order\":\"boom\"}".to_vec(), None)
        .await
        .unwrap();
    let reports = collector.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(reports[1].ty, "nimbus.invocation.failure");
    let record: serde_json::Value = serde_json::from_str(&reports[1].data).unwrap();
    assert_eq!(
        record["requestContext"]["requestId"],
        failed.invocation_id.as_str()
    );
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 1);
    assert_eq!(record["responseContext"]["functionError"], "function_error");
    assert_eq!(
        record["requestPayload"],
        serde_json::json!({"order": "boom"})
    );
    let status = async || {
        platform
            .client
            .invocation(&failed.invocation_id)
            .await
            .unwrap()
    };
    assert!(
        eventually(Duration::from_secs(5), async || status().await.status
            == "failed")
        .await
    );
    let status = status().await;
    assert_eq!(status.error.as_ref().unwrap().code, "function_error");
    assert_eq!(status.dead_letter.as_deref(), Some("chain/@a.dlq"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_rules_route_matching_cloudevents_to_functions_and_queues() {
    let collector = Collector::start().await;
    let platform = Platform::start().await;
    let manifest = format!(
        "name = \"bus\"\n\n[function.big]\ncomponent = \"probe.wasm\"\nenv = {{ REPORT_URL = \"{0}/\" }}\nallowed_outbound_hosts = [\"{0}\"]\n\n[queue.audit]\n\n[[trigger.event]]\npattern = {{ type = [{{ prefix = \"order.\" }}], data = {{ amount = [{{ numeric = [\">\", 100] }}] }} }}\nfunction = \"big\"\n\n[[trigger.event]]\npattern = '{{\"source\": [{{\"suffix\": \"/orders\"}}]}}'\nqueue = \"audit\"\n",
        collector.url
    );
    platform
        .deploy(&manifest, &[("big", "probe")])
        .await
        .unwrap();
    let event = |ty: &str, amount: u32| {
        serde_json::json!({
            "specversion": "1.0", "id": format!("{ty}-{amount}"), "source": "/shop/orders",
            "type": ty, "datacontenttype": "application/json", "data": {"amount": amount}
        })
    };
    let matched = platform
        .client
        .publish("bus", &event("order.created", 250))
        .await
        .unwrap();
    assert_eq!(matched.matched, 2);
    let small = platform
        .client
        .publish("bus", &event("order.created", 5))
        .await
        .unwrap();
    assert_eq!(small.matched, 1, "only the audit rule");
    // Binary mode over plain HTTP.
    let response = platform
        .http
        .post(format!("{}/v1/apps/bus/events", platform.client.base_url()))
        .bearer_auth(&platform.server.as_ref().unwrap().token)
        .header("ce-specversion", "1.0")
        .header("ce-id", "bin-1")
        .header("ce-source", "/elsewhere")
        .header("ce-type", "order.paid")
        .header("content-type", "application/json")
        .body("{\"amount\": 101}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let published: serde_json::Value = response.json().await.unwrap();
    assert_eq!(published["matched"], 1);

    let reports = collector.wait_for(2, Duration::from_secs(10)).await;
    let mut ids: Vec<&str> = reports.iter().map(|r| r.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["bin-1", "order.created-250"]);
    let created = reports
        .iter()
        .find(|r| r.id == "order.created-250")
        .unwrap();
    assert_eq!(
        created.ty, "order.created",
        "delivered in binary mode with its own type"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&created.data).unwrap(),
        serde_json::json!({"amount": 250})
    );
    let audit = platform.client.peek("bus", "audit", 10).await.unwrap();
    assert_eq!(audit.len(), 2);
    let first: serde_json::Value = serde_json::from_str(audit[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(first["id"], "order.created-250");

    // Not a CloudEvent: refused with a stable code, nothing queued.
    let error = platform
        .client
        .publish("bus", &serde_json::json!({"id": "x", "type": "t"}))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(nimbus_core::ErrorCode::InvalidEvent));
    assert_eq!(
        platform
            .client
            .peek("bus", "audit", 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_each_tick_once_across_restarts() {
    let collector = Collector::start().await;
    let manifest = format!(
        "name = \"cron\"\n\n[function.tick]\ncomponent = \"probe.wasm\"\nenv = {{ REPORT_URL = \"{0}/\" }}\nallowed_outbound_hosts = [\"{0}\"]\n\n[[trigger.schedule]]\nname = \"every-two\"\ncron = \"*/2 * * * * *\"\nmissed = \"run_once\"\nfunction = \"tick\"\npayload = {{ job = \"sweep\" }}\n",
        collector.url
    );
    let platform = Platform::start().await;
    platform
        .deploy(&manifest, &[("tick", "probe")])
        .await
        .unwrap();
    let first = collector.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(first[0].ty, "nimbus.schedule.tick");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&first[0].data).unwrap(),
        serde_json::json!({"job": "sweep"})
    );
    // Let the ack become durable, then stop for long enough to miss two ticks.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let dir = platform.stop().await;
    let before = collector.count();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(collector.count(), before);
    let restarted_at = Instant::now();
    let platform = Platform::start_in(dir, |_| {}).await;
    collector
        .wait_for(before + 2, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let dir = platform.stop().await;
    let reports = collector.reports();

    let tick = |r: &Report| -> i64 { r.id.rsplit('-').next().unwrap().parse().unwrap() };
    let ticks: Vec<i64> = reports.iter().map(tick).collect();
    let distinct: HashSet<i64> = ticks.iter().copied().collect();
    assert_eq!(distinct.len(), ticks.len(), "a tick fired twice: {ticks:?}");
    assert!(ticks.iter().all(|t| t % 2000 == 0), "{ticks:?}");
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
    // The missed ticks fired once, together, right at the restart: the first tick after the
    // restart is at least two periods after the one before it, and the next one follows it by
    // one period.
    let resumed = &reports[before..];
    assert!(
        resumed[0].at - restarted_at < Duration::from_millis(1900),
        "{reports:?}"
    );
    assert!(tick(&resumed[0]) - ticks[before - 1] >= 4000, "{ticks:?}");
    assert_eq!(tick(&resumed[1]) - tick(&resumed[0]), 2000, "{ticks:?}");
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_consumers_get_sqs_batches_and_report_partial_failures() {
    let collector = Collector::start().await;
    let platform = Platform::start().await;
    let manifest = format!(
        "name = \"sqs\"\n\n[function.consumer]\nruntime = \"python3\"\nhandler = \"app.handler\"\ncode = \"code\"\nnetwork = \"host\"\nenv = {{ REPORT_URL = \"{0}/\" }}\ndelivery = {{ retries = 1, backoff = \"100ms\" }}\n\n[queue.jobs]\n\n[[trigger.queue]]\nqueue = \"jobs\"\nfunction = \"consumer\"\nbatch_size = 10\nconcurrency = 1\n\n[[trigger.event]]\npattern = {{ type = [\"order.created\"] }}\nfunction = \"consumer\"\n",
        collector.url
    );
    platform
        .deploy_code(&manifest, &[("consumer", &lambda_fixture("events"))])
        .await
        .unwrap();
    let sent = platform
        .client
        .send_messages(
            "sqs",
            "jobs",
            vec![text("a"), text("please fail"), text("c")],
        )
        .await
        .unwrap();
    let reports = collector.wait_for(2, Duration::from_secs(30)).await;
    let batch: serde_json::Value = serde_json::from_str(&reports[0].data).unwrap();
    let records = batch["Records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{batch}");
    assert_eq!(records[0]["messageId"], sent.ids[0].as_str());
    assert_eq!(records[0]["body"], "a");
    assert_eq!(records[0]["eventSource"], "aws:sqs");
    assert_eq!(records[0]["attributes"]["ApproximateReceiveCount"], "1");
    // Only the reported failure came back, once more, then went to the dead-letter queue.
    let retry: serde_json::Value = serde_json::from_str(&reports[1].data).unwrap();
    let records = retry["Records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{retry}");
    assert_eq!(records[0]["messageId"], sent.ids[1].as_str());
    assert_eq!(records[0]["attributes"]["ApproximateReceiveCount"], "2");
    assert!(
        eventually(Duration::from_secs(10), async || platform
            .client
            .peek("sqs", "jobs.dlq", 10)
            .await
            .unwrap()
            .len()
            == 1)
        .await
    );
    let dead = platform.client.peek("sqs", "jobs.dlq", 10).await.unwrap();
    assert_eq!(dead[0].body.as_deref(), Some("please fail"));

    // Bus events arrive EventBridge-shaped.
    platform
        .client
        .publish(
            "sqs",
            &serde_json::json!({"specversion": "1.0", "id": "e-1", "source": "/shop",
                "type": "order.created", "datacontenttype": "application/json", "data": {"n": 7}}),
        )
        .await
        .unwrap();
    let reports = collector.wait_for(3, Duration::from_secs(30)).await;
    let bridged: serde_json::Value = serde_json::from_str(&reports[2].data).unwrap();
    assert_eq!(bridged["detail-type"], "order.created");
    assert_eq!(bridged["source"], "/shop");
    assert_eq!(bridged["id"], "e-1");
    assert_eq!(bridged["detail"], serde_json::json!({"n": 7}));
    assert_eq!(collector.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_10000_events_queued_or_in_flight_loses_none() {
    const EVENTS: usize = 10_000;
    let collector = Collector::start().await;
    let dir = data_dir();
    let server = spawn_server(dir.path());
    let (client, _) = connect(dir.path()).await;
    let manifest = consumer_app(&collector, "", "", "batch_size = 16\nconcurrency = 8");
    let digest = client
        .upload_artifact(std::fs::read(component("probe")).unwrap())
        .await
        .unwrap();
    client
        .deploy(&nimbus_api::DeployRequest {
            manifest: manifest.clone(),
            manifest_path: "nimbus.toml".into(),
            artifacts: BTreeMap::from([("worker".to_owned(), digest)]),
        })
        .await
        .unwrap();
    // Every send is acknowledged (durable) before the kill.
    let mut sends = Vec::new();
    for chunk in 0..EVENTS / 100 {
        let client = client.clone();
        sends.push(tokio::spawn(async move {
            let batch = (0..100)
                .map(|i| text(&format!("m-{}", chunk * 100 + i)))
                .collect();
            client.send_messages("ev", "jobs", batch).await.unwrap()
        }));
    }
    let mut accepted = 0;
    for send in sends {
        accepted += send.await.unwrap().ids.len();
    }
    assert_eq!(accepted, EVENTS);
    // Kill in the middle of consumption.
    collector.wait_for(1000, Duration::from_secs(60)).await;
    let mut server = server;
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let seen_before = collector.count();
    assert!(
        seen_before < EVENTS,
        "everything was consumed before the kill"
    );

    let _server = spawn_server(dir.path());
    connect(dir.path()).await;
    let all = eventually(Duration::from_secs(180), async || {
        let distinct: HashSet<String> = collector.reports().into_iter().map(|r| r.data).collect();
        distinct.len() >= EVENTS
    })
    .await;
    let reports = collector.reports();
    let distinct: HashSet<&str> = reports.iter().map(|r| r.data.as_str()).collect();
    assert!(
        all,
        "only {} of {EVENTS} events were processed",
        distinct.len()
    );
    for i in 0..EVENTS {
        assert!(
            distinct.contains(format!("m-{i}").as_str()),
            "m-{i} was lost"
        );
    }
    // At-least-once: duplicates are possible only for what was in flight at the kill.
    let duplicates = reports.len() - distinct.len();
    assert!(duplicates <= seen_before, "{duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_send_and_publish_through_the_local_api_within_their_grants() {
    let platform = Platform::start().await;
    let manifest = "name = \"prod\"\n\n[function.w]\ncomponent = \"probe.wasm\"\nqueues = [\"jobs\"]\npublish = true\n\n[function.denied]\ncomponent = \"probe.wasm\"\n\n[function.py]\nruntime = \"python3\"\nhandler = \"app.handler\"\ncode = \"code\"\nqueues = [\"jobs\"]\n\n[queue.jobs]\n\n[queue.seen]\n\n[[trigger.event]]\npattern = { type = [\"made.by.function\"] }\nqueue = \"seen\"\n\n[[route]]\npath = \"/w/{*rest}\"\nfunction = \"w\"\n\n[[route]]\npath = \"/denied/{*rest}\"\nfunction = \"denied\"\n";
    let probe = std::fs::read(component("probe")).unwrap();
    let code = nimbus_api::artifact::pack_dir(&lambda_fixture("producer")).unwrap();
    let mut artifacts = BTreeMap::new();
    for (function, bytes) in [("w", probe.clone()), ("denied", probe), ("py", code)] {
        artifacts.insert(
            function.to_owned(),
            platform.client.upload_artifact(bytes).await.unwrap(),
        );
    }
    platform
        .deploy_artifacts(manifest, artifacts)
        .await
        .unwrap();

    let produce = async |route: &str, to: &str, content_type: &str, body: &str| {
        let response = platform
            .http
            .post(platform.url(&format!("/{route}/produce?to={to}")))
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        (status, body)
    };
    let (status, answer) =
        produce("w", "/v1/queues/jobs/messages", "text/plain", "from wasm").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["id"].is_string(), "{answer}");
    let (status, answer) =
        produce("denied", "/v1/queues/jobs/messages", "text/plain", "sneaky").await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "forbidden");
    let (status, answer) = produce("w", "/v1/queues/other/messages", "text/plain", "x").await;
    assert_eq!(status, 403, "{answer}");
    let event = serde_json::json!({"specversion": "1.0", "id": "f-1", "source": "/w",
        "type": "made.by.function"});
    let (status, answer) = produce(
        "w",
        "/v1/events",
        "application/cloudevents+json",
        &event.to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["matched"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );
    let (status, _) = produce(
        "denied",
        "/v1/events",
        "application/cloudevents+json",
        &event.to_string(),
    )
    .await;
    assert_eq!(status, 403);

    // A process function reaches the same API through $NIMBUS_API with its instance's token.
    let invoked = platform
        .client
        .invoke(
            "prod",
            "py",
            &nimbus_api::InvokeRequest {
                method: "POST".into(),
                path: "/".into(),
                ..Default::default()
            },
            b"{\"from\": \"python\"}".to_vec(),
        )
        .await
        .unwrap();
    let result: serde_json::Value = serde_json::from_str(invoked.body.as_deref().unwrap()).unwrap();
    assert_eq!(result["status"], 200, "{result}");
    let jobs = platform.client.peek("prod", "jobs", 10).await.unwrap();
    let bodies: Vec<&str> = jobs.iter().filter_map(|m| m.body.as_deref()).collect();
    assert_eq!(bodies, ["from wasm", "{\"from\": \"python\"}"]);
    let seen = platform.client.peek("prod", "seen", 10).await.unwrap();
    assert_eq!(seen.len(), 1);
}
