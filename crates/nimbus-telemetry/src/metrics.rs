//! Metrics, derived from the invocation records and from what the platform holds at the moment
//! of a scrape, exposed in Prometheus's text format.
//!
//! The function metrics carry OpenTelemetry's FaaS names in their Prometheus form (`faas.invocations`
//! becomes `faas_invocations_total`, `faas.invoke_duration` in seconds
//! `faas_invoke_duration_seconds`), labelled by `app`, `function`, `version` and `faas_trigger`;
//! nimbus's own are `nimbus_*`. Labels are bounded: no request ids, no paths.
//!
//! Records are observed off the invocation path (by the task that writes them), so an
//! invocation pays nothing for its metrics; instance and queue gauges are read when scraped.

use nimbus_core::{InvocationRecord, Outcome};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::Mutex;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Invocation durations' buckets, in seconds: from sub-millisecond Wasm calls to the longest
/// timeout a function may have (15 minutes).
const DURATION_BUCKETS: [f64; 18] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0,
];

const FUNCTION: [&str; 4] = ["app", "function", "version", "faas_trigger"];
const VERSION: [&str; 3] = ["app", "function", "version"];

/// A function version's pool, as a scrape finds it.
#[derive(Debug, Clone, Copy)]
pub struct PoolState<'a> {
    pub app: &'a str,
    pub function: &'a str,
    pub version: u64,
    /// Invocations running.
    pub busy: usize,
    /// Instances idle and warm.
    pub idle: usize,
    /// Invocations refused at the concurrency limit since the pool started.
    pub throttles: u64,
}

/// A route of a deployed version: what the gateway answered on it so far, by status class.
#[derive(Debug, Clone, Copy)]
pub struct RouteState<'a> {
    pub app: &'a str,
    pub version: u64,
    /// The route as the manifest gives it.
    pub route: &'a str,
    /// `"2xx"`, `"4xx"`, …
    pub code: &'a str,
    pub answered: u64,
}

/// A queue, as a scrape finds it.
#[derive(Debug, Clone, Copy)]
pub struct QueueState<'a> {
    pub app: &'a str,
    pub queue: &'a str,
    /// Messages waiting or in flight.
    pub messages: u64,
    /// Age of the oldest of them (Lambda's `IteratorAge`), in seconds.
    pub oldest_age_seconds: f64,
    /// Messages in its dead-letter queue.
    pub dead: u64,
}

pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    errors: IntCounterVec,
    timeouts: IntCounterVec,
    coldstarts: IntCounterVec,
    duration: HistogramVec,
    gb_seconds: prometheus::CounterVec,
    records_dropped: IntCounter,
    throttles: IntCounterVec,
    requests: IntCounterVec,
    concurrent: IntGaugeVec,
    instances: IntGaugeVec,
    queue_messages: IntGaugeVec,
    queue_oldest: prometheus::GaugeVec,
    queue_dead: IntGaugeVec,
    /// Scrapes set the gauges one at a time.
    scrape: Mutex<()>,
}

/// `metric`, registered in `registry`.
#[allow(
    clippy::expect_used,
    reason = "names, help and labels are this module's constants, valid and each registered \
              once (the unit tests build every metric); a failure is a bug in this file"
)]
fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, IntCounterVec::new(Opts::new(name, help), labels))
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(registry, IntGaugeVec::new(Opts::new(name, help), labels))
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Memory, CPU time, open file descriptors and threads of the server process.
        let _ = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let duration = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "faas_invoke_duration_seconds",
                    "How long invocations took, from admission to the end of the response \
                     (OpenTelemetry faas.invoke_duration).",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                &FUNCTION,
            ),
        );
        let gb_seconds = register(
            &registry,
            prometheus::CounterVec::new(
                Opts::new(
                    "nimbus_gibibyte_seconds_total",
                    "Configured memory (GiB) times billed duration (seconds, each invocation \
                     rounded up to the millisecond): Lambda's GB-seconds.",
                ),
                &VERSION,
            ),
        );
        let records_dropped = register(
            &registry,
            IntCounter::new(
                "nimbus_records_dropped_total",
                "Invocation records dropped because their writer was behind (they are missing \
                 from logs and from the faas_* metrics).",
            ),
        );
        let queue_oldest = register(
            &registry,
            prometheus::GaugeVec::new(
                Opts::new(
                    "nimbus_queue_oldest_message_age_seconds",
                    "Age of a queue's oldest message (Lambda's IteratorAge).",
                ),
                &["app", "queue"],
            ),
        );
        Metrics {
            invocations: counter(
                &registry,
                "faas_invocations_total",
                "Invocations of a function version (OpenTelemetry faas.invocations).",
                &FUNCTION,
            ),
            errors: counter(
                &registry,
                "faas_errors_total",
                "Invocations that failed, by error code (OpenTelemetry faas.errors); timeouts \
                 included.",
                &["app", "function", "version", "faas_trigger", "error_type"],
            ),
            timeouts: counter(
                &registry,
                "faas_timeouts_total",
                "Invocations stopped at their timeout (OpenTelemetry faas.timeouts).",
                &FUNCTION,
            ),
            coldstarts: counter(
                &registry,
                "faas_coldstarts_total",
                "Invocations that had to start a new instance (OpenTelemetry faas.coldstarts).",
                &FUNCTION,
            ),
            duration,
            gb_seconds,
            records_dropped,
            throttles: counter(
                &registry,
                "nimbus_throttles_total",
                "Invocations refused with 429 because the function was at its concurrency limit.",
                &VERSION,
            ),
            requests: counter(
                &registry,
                "nimbus_gateway_requests_total",
                "Requests the gateway answered on a route, by status class (code=\"2xx\", …).",
                &["app", "version", "route", "code"],
            ),
            concurrent: gauge(
                &registry,
                "nimbus_concurrent_executions",
                "Invocations running now.",
                &VERSION,
            ),
            instances: gauge(
                &registry,
                "nimbus_instances",
                "Instances of a function version, warm (idle) or busy.",
                &["app", "function", "version", "state"],
            ),
            queue_messages: gauge(
                &registry,
                "nimbus_queue_messages",
                "Messages waiting in a queue or being delivered.",
                &["app", "queue"],
            ),
            queue_oldest,
            queue_dead: gauge(
                &registry,
                "nimbus_queue_dead_letters",
                "Messages in a queue's dead-letter queue.",
                &["app", "queue"],
            ),
            registry,
            scrape: Mutex::new(()),
        }
    }

    /// Count one invocation.
    pub fn observe(&self, record: &InvocationRecord) {
        let version = record.version.to_string();
        let labels = [
            &*record.app,
            &*record.function,
            version.as_str(),
            record.trigger.as_str(),
        ];
        self.invocations.with_label_values(&labels).inc();
        if record.cold {
            self.coldstarts.with_label_values(&labels).inc();
        }
        if record.outcome == Outcome::Timeout {
            self.timeouts.with_label_values(&labels).inc();
        }
        if let Some(code) = record.outcome.error_code() {
            let [app, function, version, trigger] = labels;
            self.errors
                .with_label_values(&[app, function, version, trigger, code.as_str()])
                .inc();
        }
        self.duration
            .with_label_values(&labels)
            .observe(record.duration_us as f64 / 1e6);
        let [app, function, version, _] = labels;
        self.gb_seconds
            .with_label_values(&[app, function, version])
            .inc_by(record.mib_ms() as f64 / 1024.0 / 1000.0);
    }

    /// Count a record that was dropped before it was observed.
    pub fn record_dropped(&self) {
        self.records_dropped.inc();
    }

    /// Every metric in Prometheus's text format, with the pools' and queues' present state.
    pub fn render<'a>(
        &self,
        pools: impl IntoIterator<Item = PoolState<'a>>,
        routes: impl IntoIterator<Item = RouteState<'a>>,
        queues: impl IntoIterator<Item = QueueState<'a>>,
    ) -> String {
        let families = {
            let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
            // Versions and queues that are gone take their gauges with them.
            self.concurrent.reset();
            self.instances.reset();
            for pool in pools {
                let version = pool.version.to_string();
                let labels = [pool.app, pool.function, version.as_str()];
                self.concurrent
                    .with_label_values(&labels)
                    .set(pool.busy as i64);
                for (state, count) in [("warm", pool.idle), ("busy", pool.busy)] {
                    self.instances
                        .with_label_values(&[pool.app, pool.function, version.as_str(), state])
                        .set(count as i64);
                }
                // The pool counts its refusals; the counter catches up with it.
                let throttles = self.throttles.with_label_values(&labels);
                if pool.throttles > throttles.get() {
                    throttles.inc_by(pool.throttles - throttles.get());
                }
            }
            for route in routes {
                let version = route.version.to_string();
                let counter = self.requests.with_label_values(&[
                    route.app,
                    version.as_str(),
                    route.route,
                    route.code,
                ]);
                if route.answered > counter.get() {
                    counter.inc_by(route.answered - counter.get());
                }
            }
            self.queue_messages.reset();
            self.queue_oldest.reset();
            self.queue_dead.reset();
            for queue in queues {
                let labels = [queue.app, queue.queue];
                self.queue_messages
                    .with_label_values(&labels)
                    .set(queue.messages as i64);
                self.queue_oldest
                    .with_label_values(&labels)
                    .set(queue.oldest_age_seconds);
                self.queue_dead
                    .with_label_values(&labels)
                    .set(queue.dead as i64);
            }
            self.registry.gather()
        };
        let mut out = Vec::with_capacity(16 << 10);
        // Encoding metrics already gathered into memory cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::Trigger;
    use std::sync::Arc;

    fn record(outcome: Outcome, cold: bool, duration_us: u64) -> InvocationRecord {
        InvocationRecord {
            seq: 0,
            request_id: Arc::from("r"),
            app: Arc::from("shop"),
            function: Arc::from("api"),
            version: 3,
            start_ms: 0,
            start_us: 0,
            duration_us,
            cold,
            trigger: Trigger::Http,
            memory_bytes: 128 << 20,
            outcome,
            status: 200,
            logs: String::new(),
        }
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn records_become_faas_metrics() {
        let metrics = Metrics::new();
        metrics.observe(&record(Outcome::Ok, true, 1_500));
        metrics.observe(&record(Outcome::Ok, false, 700));
        metrics.observe(&record(Outcome::Timeout, false, 3_000_000));
        metrics.observe(&record(Outcome::Cancelled, false, 10));
        let text = metrics.render([], [], []);
        let labels = r#"app="shop",faas_trigger="http",function="api",version="3""#;
        assert_eq!(
            line(&text, &format!("faas_invocations_total{{{labels}}}")),
            Some(format!("faas_invocations_total{{{labels}}} 4").as_str())
        );
        assert!(text.contains(&format!("faas_coldstarts_total{{{labels}}} 1")));
        assert!(text.contains(&format!("faas_timeouts_total{{{labels}}} 1")));
        // A client that went away is no error of the function's.
        assert!(text.contains(r#"error_type="function_timeout""#), "{text}");
        assert_eq!(text.matches("faas_errors_total{").count(), 1);
        assert!(text.contains(&format!(
            "faas_invoke_duration_seconds_bucket{{{labels},le=\"0.001\"}} 2"
        )));
        assert!(text.contains(&format!(
            "faas_invoke_duration_seconds_bucket{{{labels},le=\"5\"}} 4"
        )));
        assert!(text.contains(&format!("faas_invoke_duration_seconds_count{{{labels}}} 4")));
        assert!(text.contains("# TYPE faas_invoke_duration_seconds histogram"));
        // 128 MiB for 2 + 1 + 3000 + 1 billed milliseconds.
        assert!(text.contains(&format!(
            "nimbus_gibibyte_seconds_total{{app=\"shop\",function=\"api\",version=\"3\"}} {}",
            0.125 * 3.004
        )));
    }

    #[test]
    fn scrapes_show_the_present_pools_and_queues() {
        let metrics = Metrics::new();
        let pool = |busy, idle, throttles| PoolState {
            app: "shop",
            function: "api",
            version: 3,
            busy,
            idle,
            throttles,
        };
        let queue = QueueState {
            app: "shop",
            queue: "orders",
            messages: 7,
            oldest_age_seconds: 2.5,
            dead: 1,
        };
        let route = |answered| RouteState {
            app: "shop",
            version: 3,
            route: "/orders/{id}",
            code: "2xx",
            answered,
        };
        let text = metrics.render([pool(2, 1, 5)], [route(4)], [queue]);
        assert!(text.contains(
            r#"nimbus_gateway_requests_total{app="shop",code="2xx",route="/orders/{id}",version="3"} 4"#
        ), "{text}");
        let labels = r#"app="shop",function="api",version="3""#;
        assert!(text.contains(&format!("nimbus_concurrent_executions{{{labels}}} 2")));
        assert!(text.contains(&format!("nimbus_throttles_total{{{labels}}} 5")));
        assert!(
            text.contains(
                r#"nimbus_instances{app="shop",function="api",state="warm",version="3"} 1"#
            )
        );
        assert!(text.contains(r#"nimbus_queue_messages{app="shop",queue="orders"} 7"#));
        assert!(
            text.contains(
                r#"nimbus_queue_oldest_message_age_seconds{app="shop",queue="orders"} 2.5"#
            )
        );
        // The throttle counter follows the pool's; a version that is gone loses its gauges.
        let text = metrics.render([pool(0, 1, 9)], [], []);
        assert!(text.contains(&format!("nimbus_throttles_total{{{labels}}} 9")));
        let text = metrics.render([], [], []);
        assert!(!text.contains("nimbus_concurrent_executions{"));
        assert!(!text.contains("nimbus_queue_messages{"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
