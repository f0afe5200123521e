//! S3 load with the Rust AWS SDK.
//!
//!   s3-bench ENDPOINT ACCESS_KEY SECRET CONCURRENCY COUNT SIZE
//!   s3-bench ENDPOINT ACCESS_KEY SECRET large MIB PART_MIB PARALLEL
//!
//! Small objects: creates a bucket, PUTs COUNT objects of SIZE bytes with CONCURRENCY requests
//! in flight, then GETs each one (reading the whole body). Prints one line:
//! `put_per_s put_p50_ms put_p99_ms get_per_s get_p50_ms get_p99_ms`.
//!
//! Large: one MIB object uploaded as a multipart upload of PART_MIB parts, PARALLEL in flight,
//! then downloaded as PARALLEL ranged GETs of PART_MIB at a time (as the SDKs' transfer
//! managers do). Prints `put_mb_s get_mb_s` (10^6 bytes per second).

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
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

fn client(endpoint: &str, key: &str, secret: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(Credentials::new(key, secret, None, None, "bench"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn large(s3: aws_sdk_s3::Client, mib: usize, part_mib: usize, parallel: usize) {
    let bucket = format!("rust-large-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let total = mib << 20;
    let part = part_mib << 20;
    let body = bytes::Bytes::from(bytes_of(total));

    let started = Instant::now();
    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key("large")
        .send()
        .await
        .expect("CreateMultipartUpload");
    let id = upload.upload_id().unwrap().to_owned();
    let mut parts: Vec<CompletedPart> = futures::stream::iter((0..total).step_by(part).enumerate())
        .map(|(i, start)| {
            let (s3, bucket, id) = (s3.clone(), bucket.clone(), id.clone());
            let chunk = body.slice(start..(start + part).min(total));
            async move {
                let number = i as i32 + 1;
                let done = s3
                    .upload_part()
                    .bucket(bucket)
                    .key("large")
                    .upload_id(id)
                    .part_number(number)
                    .body(ByteStream::from(chunk))
                    .send()
                    .await
                    .expect("UploadPart");
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(done.e_tag().unwrap())
                    .build()
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    parts.sort_by_key(|p| p.part_number());
    s3.complete_multipart_upload()
        .bucket(&bucket)
        .key("large")
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("CompleteMultipartUpload");
    let put = started.elapsed();

    let started = Instant::now();
    let read: usize = futures::stream::iter((0..total).step_by(part))
        .map(|start| {
            let (s3, bucket) = (s3.clone(), bucket.clone());
            let end = (start + part).min(total) - 1;
            async move {
                let mut got = s3
                    .get_object()
                    .bucket(bucket)
                    .key("large")
                    .range(format!("bytes={start}-{end}"))
                    .send()
                    .await
                    .expect("GET");
                let mut read = 0;
                while let Some(chunk) = got.body.next().await {
                    read += chunk.expect("GET body").len();
                }
                assert_eq!(read, end + 1 - start);
                read
            }
        })
        .buffer_unordered(parallel)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    let get = started.elapsed();
    assert_eq!(read, total);
    let rate = |d: Duration| total as f64 / d.as_secs_f64() / 1e6;
    println!("{:.0} {:.0}", rate(put), rate(get));
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, endpoint, key, secret, mode, mib, part_mib, parallel] = &args[..]
        && mode == "large"
    {
        let s3 = client(endpoint, key, secret);
        let number = |s: &str| s.parse::<usize>().expect("a number");
        return large(s3, number(mib), number(part_mib), number(parallel)).await;
    }
    let [_, endpoint, key, secret, concurrency, count, size] = &args[..] else {
        eprintln!("usage: s3-bench ENDPOINT ACCESS_KEY SECRET CONCURRENCY COUNT SIZE");
        std::process::exit(2);
    };
    let (concurrency, count, size): (usize, usize, usize) = (
        concurrency.parse().unwrap(),
        count.parse().unwrap(),
        size.parse().unwrap(),
    );
    let s3 = client(endpoint, key, secret);
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
