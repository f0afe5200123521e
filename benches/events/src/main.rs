//! Durable enqueue → handled: throughput and enqueue → handler-start latency.
//!
//!   events-bench nimbus ADMIN_URL TOKEN APP QUEUE FUNCTION N   # a deployed no-op consumer
//!   events-bench nats NATS_URL N
//!
//! Prints one line: `events_per_s p50_ms p99_ms lost`.
//!
//! Throughput: N messages sent by 8 concurrent producers while the consumer runs; the clock
//! stops when every message has been handled and acknowledged. nimbus producers send batches
//! of 100 over the admin API, each acknowledged once on disk; NATS producers publish each
//! message and await JetStream's ack with up to 256 in flight per producer.
//!
//! Latency: 500 messages sent one at a time (each acknowledged before the next); latency is the
//! consumer's start time minus the time the send began — for nimbus, the invocation record's
//! start (µs) of the Wasm function the message was delivered to; for NATS, when the pull
//! consumer received it.

use futures::StreamExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PRODUCERS: usize = 8;
const BATCH: usize = 100;
const LATENCY_SAMPLES: usize = 500;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (eps, mut latencies, lost) = match args.get(1).map(String::as_str) {
        Some("nimbus") => {
            nimbus(
                &args[2],
                &args[3],
                &args[4],
                &args[5],
                &args[6],
                args[7].parse().unwrap(),
            )
            .await
        }
        Some("nats") => nats(&args[2], args[3].parse().unwrap()).await,
        _ => panic!("usage: events-bench nimbus ADMIN TOKEN APP QUEUE FUNCTION N | nats URL N"),
    };
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{eps:.0} {:.3} {:.3} {lost}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
}

async fn nimbus(
    admin: &str,
    token: &str,
    app: &str,
    queue: &str,
    function: &str,
    n: usize,
) -> (f64, Vec<f64>, usize) {
    let http = reqwest::Client::new();
    let batch_url = format!("{admin}/v1/apps/{app}/queues/{queue}/messages/batch");
    let pending = async || -> usize {
        let queues: serde_json::Value = http
            .get(format!("{admin}/v1/queues"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        queues
            .as_array()
            .unwrap()
            .iter()
            .filter(|q| q["app"] == app && q["queue"] == queue)
            .map(|q| {
                (q["ready"].as_u64().unwrap()
                    + q["in_flight"].as_u64().unwrap()
                    + q["delayed"].as_u64().unwrap()) as usize
            })
            .sum()
    };

    // Throughput.
    let started = Instant::now();
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let http = http.clone();
        let url = batch_url.clone();
        let token = token.to_owned();
        producers.push(tokio::spawn(async move {
            let mut sent = 0;
            let mut i = p;
            while i * BATCH < n {
                let count = BATCH.min(n - i * BATCH);
                let messages: Vec<serde_json::Value> = (0..count)
                    .map(|k| serde_json::json!({"body": format!("m-{}", i * BATCH + k)}))
                    .collect();
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"messages": messages}))
                    .send()
                    .await
                    .unwrap();
                assert!(
                    response.status().is_success(),
                    "{}",
                    response.text().await.unwrap()
                );
                sent += count;
                i += PRODUCERS;
            }
            sent
        }));
    }
    let mut sent = 0;
    for producer in producers {
        sent += producer.await.unwrap();
    }
    assert_eq!(sent, n);
    while pending().await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let eps = n as f64 / started.elapsed().as_secs_f64();
    let dead: serde_json::Value = http
        .get(format!("{admin}/v1/apps/{app}/queues/{queue}.dlq/messages"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lost = dead.as_array().map_or(0, Vec::len);

    // Latency: one at a time.
    let one_url = format!("{admin}/v1/apps/{app}/queues/{queue}/messages");
    let mut sends = Vec::new();
    for i in 0..LATENCY_SAMPLES {
        let at = now_us();
        let answer: serde_json::Value = http
            .post(&one_url)
            .bearer_auth(token)
            .body(format!("l-{i}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sends.push((answer["ids"][0].as_str().unwrap().to_owned(), at));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while pending().await > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Records are written in batches every ~100 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs: serde_json::Value = http
        .get(format!("{admin}/v1/apps/{app}/functions/{function}/logs"))
        .query(&[("tail", "1000")])
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let starts: std::collections::HashMap<String, u64> = logs["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["request_id"].as_str().unwrap().to_owned(),
                r["start_us"].as_u64().unwrap(),
            )
        })
        .collect();
    let latencies: Vec<f64> = sends
        .iter()
        .filter_map(|(id, at)| {
            starts
                .get(&format!("{id}-1"))
                .map(|start| (*start as f64 - *at as f64) / 1000.0)
        })
        .collect();
    assert!(
        latencies.len() > LATENCY_SAMPLES * 9 / 10,
        "only {} latency samples",
        latencies.len()
    );
    (eps, latencies, lost)
}

async fn nats(url: &str, n: usize) -> (f64, Vec<f64>, usize) {
    use async_nats::jetstream::{self, consumer::AckPolicy, stream::StorageType};
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let _ = js.delete_stream("NIMBUS_BENCH").await;
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "NIMBUS_BENCH".into(),
            subjects: vec!["nimbus-bench.>".into()],
            storage: StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();

    // Throughput: producers and the consumer run together.
    let started = Instant::now();
    let consume = tokio::spawn({
        let consumer = consumer.clone();
        async move {
            let mut messages = consumer.messages().await.unwrap();
            let mut seen = 0;
            while seen < n {
                let message = messages.next().await.unwrap().unwrap();
                message.ack().await.unwrap();
                seen += 1;
            }
        }
    });
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let js = js.clone();
        producers.push(tokio::spawn(async move {
            let mut acks = futures::stream::FuturesUnordered::new();
            let mut i = p;
            while i < n {
                let ack = js
                    .publish("nimbus-bench.t", format!("m-{i}").into())
                    .await
                    .unwrap();
                acks.push(ack.into_future());
                if acks.len() >= 256 {
                    acks.next().await.unwrap().unwrap();
                }
                i += PRODUCERS;
            }
            while let Some(ack) = acks.next().await {
                ack.unwrap();
            }
        }));
    }
    for producer in producers {
        producer.await.unwrap();
    }
    consume.await.unwrap();
    let eps = n as f64 / started.elapsed().as_secs_f64();
    let info = js
        .get_stream("NIMBUS_BENCH")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    let lost = n.saturating_sub(info.state.messages as usize);

    // Latency: one at a time.
    let receiver = tokio::spawn({
        let consumer = consumer.clone();
        async move {
            let mut messages = consumer.messages().await.unwrap();
            let mut latencies = Vec::new();
            while latencies.len() < LATENCY_SAMPLES {
                let message = messages.next().await.unwrap().unwrap();
                let received = now_us();
                let sent: u64 = std::str::from_utf8(&message.payload)
                    .unwrap()
                    .parse()
                    .unwrap();
                message.ack().await.unwrap();
                latencies.push((received as f64 - sent as f64) / 1000.0);
            }
            latencies
        }
    });
    for _ in 0..LATENCY_SAMPLES {
        let at = now_us();
        js.publish("nimbus-bench.l", at.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let latencies = receiver.await.unwrap();
    js.delete_stream("NIMBUS_BENCH").await.unwrap();
    (eps, latencies, lost)
}
