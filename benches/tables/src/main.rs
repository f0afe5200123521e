//! DynamoDB load with the Rust AWS SDK, the same phases as `ddb_load.py`.
//!
//!   ddb-bench ENDPOINT ACCESS_KEY SECRET CONCURRENCY COUNT
//!
//! Creates table `rust-bench-PID` (hash `pk` S, range `sk` N); then, with CONCURRENCY requests
//! in flight: COUNT PutItems of ~110-byte items, COUNT GetItems of them, COUNT/10 Queries of
//! 100 items, COUNT conditional increments of one item (`SET n = n + :one` if
//! `attribute_exists(pk)`), checking the counter ends at COUNT. Prints one line: `ops/s p50_ms
//! p99_ms` for each phase, in that order.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use futures::StreamExt;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// Run `op(i)` for i in 0..n with `concurrency` in flight; `ops/s p50 p99`.
async fn run<F, Fut>(n: usize, concurrency: usize, op: F) -> String
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let began = Instant::now();
    let mut latencies: Vec<Duration> = futures::stream::iter(0..n)
        .map(|i| {
            let started = Instant::now();
            let fut = op(i);
            async move {
                fut.await;
                started.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = began.elapsed();
    latencies.sort();
    format!(
        "{:.0} {:.2} {:.2}",
        n as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    )
}

fn key(pk: &str, sk: u32) -> [(String, AttributeValue); 2] {
    [
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::N(sk.to_string())),
    ]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, access_key, secret, concurrency, count] = &args[..] else {
        eprintln!("usage: ddb-bench ENDPOINT ACCESS_KEY SECRET CONCURRENCY COUNT");
        std::process::exit(2);
    };
    let (concurrency, count): (usize, usize) =
        (concurrency.parse().unwrap(), count.parse().unwrap());
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(access_key, secret, None, None, "bench"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let ddb = Client::from_conf(config);
    let table = format!("rust-bench-{}", std::process::id());
    ddb.create_table()
        .table_name(&table)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("sk")
                .key_type(KeyType::Range)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("sk")
                .attribute_type(ScalarAttributeType::N)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("CreateTable");
    let payload = AttributeValue::S("x".repeat(100));
    let put = |pk: String, sk: u32| {
        let (ddb, table, payload) = (ddb.clone(), table.clone(), payload.clone());
        async move {
            let mut request = ddb.put_item().table_name(table).item("data", payload);
            for (name, value) in key(&pk, sk) {
                request = request.item(name, value);
            }
            request.send().await.expect("PutItem");
        }
    };

    let puts = run(count, concurrency, |i| put(format!("user-{i}"), 0)).await;
    let gets = run(count, concurrency, |i| {
        let (ddb, table) = (ddb.clone(), table.clone());
        async move {
            let got = ddb
                .get_item()
                .table_name(table)
                .set_key(Some(key(&format!("user-{i}"), 0).into_iter().collect()))
                .send()
                .await
                .expect("GetItem");
            assert!(got.item().is_some(), "GetItem found user-{i}");
        }
    })
    .await;
    for sk in 0..100 {
        put("query".to_owned(), sk).await;
    }
    let queries = run((count / 10).max(10), concurrency, |_| {
        let (ddb, table) = (ddb.clone(), table.clone());
        async move {
            let got = ddb
                .query()
                .table_name(table)
                .key_condition_expression("pk = :p")
                .expression_attribute_values(":p", AttributeValue::S("query".into()))
                .send()
                .await
                .expect("Query");
            assert_eq!(got.count(), 100);
        }
    })
    .await;
    let counter = || key("counter", 0).into_iter().collect();
    ddb.put_item()
        .table_name(&table)
        .set_item(Some(
            key("counter", 0)
                .into_iter()
                .chain([("n".to_owned(), AttributeValue::N("0".into()))])
                .collect(),
        ))
        .send()
        .await
        .expect("PutItem counter");
    let increments = run(count, concurrency, |_| {
        let (ddb, table) = (ddb.clone(), table.clone());
        async move {
            ddb.update_item()
                .table_name(table)
                .set_key(Some(counter()))
                .update_expression("SET n = n + :one")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .send()
                .await
                .expect("UpdateItem");
        }
    })
    .await;
    let last = ddb
        .get_item()
        .table_name(&table)
        .set_key(Some(counter()))
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem counter");
    let n = last.item().and_then(|i| i.get("n")).cloned();
    assert_eq!(
        n,
        Some(AttributeValue::N(count.to_string())),
        "no lost increment"
    );
    println!("{puts} {gets} {queries} {increments}");
}
