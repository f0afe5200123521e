//! `/metrics` on the admin listener: parsed by `prometheus_client`'s own parser, checked by
//! `promtool check metrics`, and scraped by a real Prometheus server whose PromQL answers what
//! the invocations were.

use crate::support::{
    Platform, data_dir, debian_packages, free_port, output_with_stdin, probe_app, python_package,
};
use serde_json::Value;
use std::time::Duration;

const PROMETHEUS_CLIENT: &str = "prometheus-client==0.21.1";

/// Every sample of a scrape, as `prometheus_client` parses it: `[name, labels, value]`.
fn parse(text: &str) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
    let package = python_package("prometheus_client", PROMETHEUS_CLIENT);
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let output = output_with_stdin(
        std::process::Command::new("python3")
            .args(["-c", script])
            .env("PYTHONPATH", package),
        text.as_bytes(),
    );
    assert!(
        output.status.success(),
        "prometheus_client could not parse the scrape: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples: Vec<(String, serde_json::Map<String, Value>, f64)> =
        serde_json::from_slice(&output.stdout).unwrap();
    samples
}

/// The sum of `name`'s samples whose labels include all of `labels`.
fn total(
    samples: &[(String, serde_json::Map<String, Value>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).and_then(Value::as_str) == Some(*v))
        })
        .map(|(_, _, value)| value)
        .sum()
}

async fn scrape(p: &Platform, token: &str) -> reqwest::Response {
    p.http
        .get(format!("{}/metrics", p.client.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_invocations_errors_throttles_and_cold_starts() {
    // promtool and the Prometheus server come from Debian's package.
    debian_packages(&[("promtool", "prometheus")]);
    let metrics_token = "metrics-token-".repeat(3);
    let token = metrics_token.clone();
    let p = Platform::start_in(data_dir(), move |c| c.metrics_token = Some(token)).await;
    p.deploy(
        &probe_app("app", "probe", "max_concurrency = 1\ntimeout = \"1s\""),
        &[("probe", "probe")],
    )
    .await
    .unwrap();

    // Three answers (the first from a new instance), a panic (its instance is discarded), a
    // timeout (its instance is killed), then one running, four waiting and more refused.
    for _ in 0..3 {
        assert_eq!(p.get("/probe/counter").await.0, 200);
    }
    assert_eq!(p.get("/probe/panic").await.0, 500);
    assert_eq!(p.get("/probe/loop").await.0, 504);
    let mut calls = Vec::new();
    for i in 0..8 {
        let request = p.http.get(p.url("/probe/sleep?ms=300"));
        calls.push(tokio::spawn(async move {
            request.send().await.unwrap().status().as_u16()
        }));
        if i == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    let slept = statuses.iter().filter(|s| **s == 200).count();
    assert!(throttled >= 1, "the wait queue holds four: {statuses:?}");
    assert_eq!(throttled + slept, 8, "{statuses:?}");
    let invocations = (5 + slept) as f64;

    // Records reach the metrics in batches: wait for all of them.
    let http = [
        ("app", "app"),
        ("function", "probe"),
        ("faas_trigger", "http"),
    ];
    let mut samples = Vec::new();
    let counted = crate::support::eventually(Duration::from_secs(10), async || {
        let text = scrape(&p, &metrics_token).await.text().await.unwrap();
        samples = parse(&text);
        total(&samples, "faas_invocations_total", &http) == invocations
    })
    .await;
    assert!(
        counted,
        "faas_invocations_total reached {} of {invocations}",
        total(&samples, "faas_invocations_total", &http)
    );
    assert_eq!(total(&samples, "faas_coldstarts_total", &http), 3.0);
    assert_eq!(total(&samples, "faas_timeouts_total", &http), 1.0);
    let errors = |code| {
        total(
            &samples,
            "faas_errors_total",
            &[("function", "probe"), ("error_type", code)],
        )
    };
    assert_eq!(errors("function_trapped"), 1.0);
    assert_eq!(errors("function_timeout"), 1.0);
    assert_eq!(
        total(&samples, "nimbus_throttles_total", &[("function", "probe")]),
        throttled as f64
    );
    // The histogram counts every invocation.
    assert_eq!(
        total(&samples, "faas_invoke_duration_seconds_count", &http),
        invocations
    );
    let within = |le| {
        total(
            &samples,
            "faas_invoke_duration_seconds_bucket",
            &[("function", "probe"), ("le", le)],
        )
    };
    assert_eq!(within("+Inf"), invocations);
    // Cumulative buckets; the timeout ran a second or more, so it is in none below 1 s (how
    // long the others took is the machine's business).
    assert!(within("0.001") <= within("0.5") && within("0.5") <= within("1"));
    assert!(
        within("0.5") <= invocations - 1.0,
        "the timeout is not under 0.5 s"
    );
    assert_eq!(
        total(
            &samples,
            "nimbus_instances",
            &[("function", "probe"), ("state", "warm")]
        ),
        1.0,
        "one warm instance is left"
    );
    assert_eq!(
        total(
            &samples,
            "nimbus_concurrent_executions",
            &[("function", "probe")]
        ),
        0.0
    );
    assert!(total(&samples, "process_resident_memory_bytes", &[]) > 1e6);
    // What the gateway answered on the route, by status class.
    let answered = |code| {
        total(
            &samples,
            "nimbus_gateway_requests_total",
            &[("app", "app"), ("route", "/probe/{*rest}"), ("code", code)],
        )
    };
    assert_eq!(answered("2xx"), (3 + slept) as f64);
    assert_eq!(
        answered("5xx"),
        2.0,
        "the panic's 500 and the timeout's 504"
    );
    assert_eq!(answered("4xx"), throttled as f64, "the 429s");
    assert!(
        !samples
            .iter()
            .any(|(_, labels, _)| labels.contains_key("request_id") || labels.contains_key("path")),
        "no unbounded labels"
    );

    // promtool (Prometheus's own linter) finds nothing wrong with the exposition.
    let text = scrape(&p, &metrics_token).await.text().await.unwrap();
    // (promtool comes from Debian's prometheus package.)
    let checked = output_with_stdin(
        std::process::Command::new("promtool").args(["check", "metrics"]),
        text.as_bytes(),
    );
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // The metrics token scrapes and reads nothing else; no token, no metrics.
    let refused = p
        .http
        .get(format!("{}/v1/apps", p.client.base_url()))
        .bearer_auth(&metrics_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let anonymous = p
        .http
        .get(format!("{}/metrics", p.client.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // Any admin token scrapes too.
    let root = p.server.as_ref().unwrap().token.clone();
    assert_eq!(scrape(&p, &root).await.status(), 200);

    // A real Prometheus server scrapes the endpoint with the metrics token; PromQL sees the
    // invocations by trigger.
    let prometheus_dir = tempfile::tempdir().unwrap();
    let token_file = prometheus_dir.path().join("token");
    std::fs::write(&token_file, &metrics_token).unwrap();
    let admin = p.client.base_url().trim_start_matches("http://").to_owned();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: nimbus\n    \
         authorization:\n      credentials_file: {}\n    static_configs:\n      - targets: \
         ['{admin}']\n",
        token_file.display()
    );
    let config_file = prometheus_dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let port = free_port();
    let mut server = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            prometheus_dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus (Debian's package) is installed");
    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=sum%20by%20(faas_trigger)%20(faas_invocations_total%7Bapp%3D%22app%22%7D)"
    );
    let mut answer = Value::Null;
    let scraped = crate::support::eventually(Duration::from_secs(30), async || {
        let Ok(response) = p.http.get(&query).send().await else {
            return false;
        };
        answer = response.json().await.unwrap_or(Value::Null);
        answer["data"]["result"][0]["value"][1].as_str() == Some(&invocations.to_string())
    })
    .await;
    assert!(scraped, "PromQL over the scraped series: {answer}");
    assert_eq!(
        answer["data"]["result"][0]["metric"]["faas_trigger"],
        "http"
    );
    let _ = server.kill().await;
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_billed_by_the_millisecond_and_kept_per_hour() {
    let p = Platform::start().await;
    p.deploy(
        &probe_app("app", "probe", "memory = \"256MiB\""),
        &[("probe", "probe")],
    )
    .await
    .unwrap();
    for _ in 0..3 {
        assert_eq!(p.get("/probe/sleep?ms=120").await.0, 200);
    }
    assert_eq!(p.get("/probe/panic").await.0, 500);
    let mut rows = Vec::new();
    let kept = crate::support::eventually(Duration::from_secs(10), async || {
        rows = p.client.usage(Some("app"), 0).await.unwrap();
        rows.iter().map(|r| r.usage.invocations).sum::<u64>() == 4
    })
    .await;
    assert!(kept, "usage of 4 invocations: {rows:?}");
    assert_eq!(rows.len(), 1, "one function, one hour: {rows:?}");
    let usage = rows[0].usage;
    assert_eq!((usage.errors, usage.cold_starts), (1, 1));
    // Each invocation is billed its duration rounded up to the millisecond, and no less than
    // the 120 ms it slept; GB-seconds are the configured 256 MiB times that.
    let records = p
        .client
        .logs("app", "probe", 0, None)
        .await
        .unwrap()
        .records;
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r.memory_bytes == 256 << 20));
    let billed: Vec<u64> = records
        .iter()
        .map(|r| r.duration_us.div_ceil(1000))
        .collect();
    assert!(billed[..3].iter().all(|ms| *ms >= 120), "{billed:?}");
    assert_eq!(usage.billed_ms, billed.iter().sum::<u64>());
    assert!((usage.gb_seconds() - 0.25 * usage.billed_ms as f64 / 1000.0).abs() < 1e-9);
    // The same from Prometheus's side.
    let text = scrape(&p, &p.server.as_ref().unwrap().token)
        .await
        .text()
        .await
        .unwrap();
    let samples = parse(&text);
    let gb_s = total(
        &samples,
        "nimbus_gibibyte_seconds_total",
        &[("function", "probe")],
    );
    assert!(
        (gb_s - usage.gb_seconds()).abs() < 1e-9,
        "{gb_s} vs {}",
        usage.gb_seconds()
    );
    assert!(
        p.client
            .usage(Some("app"), u64::MAX / 2)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        p.client.usage(Some("nope"), 0).await.is_err(),
        "an unknown app is an error"
    );

    // Usage is kept across a restart (and beyond the records' bounded history).
    let dir = p.stop().await;
    let p = Platform::start_in(dir, |_| {}).await;
    let after = p.client.usage(None, 0).await.unwrap();
    assert_eq!(after, rows);
    p.stop().await;
}
