//! Small-object S3 load with the Rust AWS SDK.
//!
//!   s3-bench ENDPOINT ACCESS_KEY SECRET CONCURRENCY COUNT SIZE
//!
//! Creates a bucket, PUTs COUNT objects of SIZE bytes with CONCURRENCY requests in flight,
//! then GETs each one (reading the whole body). Prints one line:
//! `put_per_s put_p50_ms put_p99_ms get_per_s get_p50_ms get_p99_ms`.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

fn summary(mut latencies: Vec<Duration>, elapsed: Duration) -> String {
    latencies.sort();
    format!(
        "{:.0} {:.2} {:.2}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, key, secret, concurrency, count, size] = &args[..] else {
        eprintln!("usage: s3-bench ENDPOINT ACCESS_KEY SECRET CONCURRENCY COUNT SIZE");
        std::process::exit(2);
    };
    let (concurrency, count, size): (usize, usize, usize) = (
        concurrency.parse().unwrap(),
        count.parse().unwrap(),
        size.parse().unwrap(),
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(key, secret, None, None, "bench"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(config);
    let bucket = format!("rust-bench-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let body = bytes_of(size);

    let started = Instant::now();
    let puts: Vec<Duration> = futures::stream::iter(0..count)
        .map(|i| {
            let (s3, bucket, body) = (s3.clone(), bucket.clone(), body.clone());
            async move {
                let t = Instant::now();
                s3.put_object()
                    .bucket(bucket)
                    .key(format!("obj-{i:06}"))
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .expect("PUT");
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let put_elapsed = started.elapsed();

    let started = Instant::now();
    let gets: Vec<Duration> = futures::stream::iter(0..count)
        .map(|i| {
            let (s3, bucket) = (s3.clone(), bucket.clone());
            async move {
                let t = Instant::now();
                let got = s3
                    .get_object()
                    .bucket(bucket)
                    .key(format!("obj-{i:06}"))
                    .send()
                    .await
                    .expect("GET");
                let bytes = got.body.collect().await.expect("GET body").into_bytes();
                assert_eq!(bytes.len(), size);
                t.elapsed()
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let get_elapsed = started.elapsed();
    println!(
        "{} {}",
        summary(puts, put_elapsed),
        summary(gets, get_elapsed)
    );
}

fn bytes_of(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 % 251) as u8).collect()
}
