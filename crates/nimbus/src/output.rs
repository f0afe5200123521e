//! Human and JSON output. Tables are plain aligned columns so they read well in a terminal and
//! survive `grep`; `--json` prints the API's own shapes.

use nimbus_api::{AppInfo, DeployResponse, FunctionInfo, RouteInfo};

pub(crate) fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(error) => eprintln!("error: cannot encode output: {error}"),
    }
}

pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths.iter().copied().chain(std::iter::repeat(0)))
            .map(|(c, width)| format!("{c:<width$}"))
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

pub(crate) fn deployed(result: &DeployResponse, gateway_url: &str) {
    println!("deployed {} version {}", result.app, result.version);
    for function in &result.functions {
        let how = match function.source.as_str() {
            "cache" => "from cache",
            "unpacked" => "unpacked",
            _ => "compiled",
        };
        println!(
            "  function {:<20} {how} in {} ms",
            function.function, function.load_ms
        );
    }
    for route in &result.routes {
        let methods = if route.methods.is_empty() {
            "ANY".to_owned()
        } else {
            route.methods.join(",")
        };
        let base = match &route.host {
            Some(host) => format!("http://{host}"),
            None => gateway_url.to_owned(),
        };
        println!("  {methods:<10} {base}{}  → {}", route.path, route.function);
    }
}

pub(crate) fn apps(apps: &[AppInfo]) {
    table(
        &["APP", "VERSION", "LATEST", "FUNCTIONS", "ROUTES"],
        apps.iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    a.active_version
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into()),
                    a.latest_version.to_string(),
                    a.functions.join(","),
                    a.routes.to_string(),
                ]
            })
            .collect(),
    );
}

/// What each function may touch: one row per resource; a function granted nothing says so.
pub(crate) fn grants(functions: &[FunctionInfo]) {
    let mut rows = Vec::new();
    for f in functions {
        let function = format!("{}/{}", f.app, f.name);
        if f.grants.is_empty() {
            rows.push(vec![
                function,
                "-".into(),
                "(nothing beyond its own code)".into(),
                String::new(),
            ]);
            continue;
        }
        for grant in &f.grants {
            rows.push(vec![
                function.clone(),
                grant.kind.clone(),
                grant.name.clone(),
                grant.actions.join(","),
            ]);
        }
    }
    table(&["FUNCTION", "KIND", "RESOURCE", "ACTIONS"], rows);
}

pub(crate) fn functions(functions: &[FunctionInfo]) {
    table(
        &[
            "APP",
            "FUNCTION",
            "RUNTIME",
            "VERSION",
            "MEMORY",
            "TIMEOUT",
            "CONCURRENCY",
            "INSTANCE",
            "IDLE",
            "BUSY",
        ],
        functions
            .iter()
            .map(|f| {
                vec![
                    f.app.clone(),
                    f.name.clone(),
                    f.runtime.clone(),
                    f.version.to_string(),
                    format!("{}MiB", f.memory_bytes >> 20),
                    format!("{}ms", f.timeout_ms),
                    f.max_concurrency.to_string(),
                    f.instance.clone(),
                    f.idle_instances.to_string(),
                    f.busy_instances.to_string(),
                ]
            })
            .collect(),
    );
}

pub(crate) fn routes(routes: &[RouteInfo]) {
    table(
        &["METHODS", "HOST", "PATH", "APP", "FUNCTION"],
        routes
            .iter()
            .map(|r| {
                vec![
                    if r.methods.is_empty() {
                        "ANY".into()
                    } else {
                        r.methods.join(",")
                    },
                    r.host.clone().unwrap_or_else(|| "*".into()),
                    r.path.clone(),
                    r.app.clone(),
                    r.function.clone(),
                ]
            })
            .collect(),
    );
}

pub(crate) fn record(record: &nimbus_core::InvocationRecord) {
    let start = humantime::format_rfc3339_millis(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.start_ms),
    );
    let status = if record.status == 0 {
        "-".to_owned()
    } else {
        record.status.to_string()
    };
    println!(
        "{start} {} v{} {:?} status={status} duration={:.3}ms{} request_id={}",
        record.function,
        record.version,
        record.outcome,
        record.duration_us as f64 / 1000.0,
        if record.cold { " cold" } else { "" },
        record.request_id
    );
    for line in record.logs.lines() {
        println!("  | {line}");
    }
}

pub(crate) fn invocation(status: &nimbus_api::InvocationStatus) {
    println!(
        "invocation {} · {}/{}",
        status.id, status.app, status.function
    );
    println!(
        "status     {} after {} attempt(s)",
        status.status, status.attempts
    );
    if let Some(result) = &status.result {
        println!("result     {}", result.status);
        if let Some(body) = &result.body {
            println!("{body}");
        }
    }
    if let Some(error) = &status.error {
        println!("error      {}: {}", error.code, error.message);
    }
    if let Some(dlq) = &status.dead_letter {
        println!("dead-lettered to {dlq}");
    }
}

pub(crate) fn queues(queues: &[nimbus_api::QueueInfo]) {
    table(
        &["APP", "QUEUE", "READY", "IN FLIGHT", "DELAYED", "OLDEST"],
        queues
            .iter()
            .map(|q| {
                vec![
                    q.app.clone(),
                    q.queue.clone(),
                    q.ready.to_string(),
                    q.in_flight.to_string(),
                    q.delayed.to_string(),
                    q.oldest_age_ms
                        .map(|ms| format!("{}s", ms / 1000))
                        .unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
    );
}

pub(crate) fn messages(messages: &[nimbus_api::PeekedMessage]) {
    for message in messages {
        let mut head = format!(
            "{} · {} · attempts {}",
            message.id, message.kind, message.attempts
        );
        if let Some(group) = &message.group {
            head.push_str(&format!(" · group {group}"));
        }
        if message.in_flight {
            head.push_str(" · in flight");
        }
        println!("{head}");
        if let Some(dead) = &message.dead {
            println!(
                "  dead: {} from {}: {}",
                dead.reason, dead.origin, dead.error
            );
        }
        match (&message.body, &message.body_base64) {
            (Some(body), _) => println!("  {body}"),
            (None, Some(encoded)) => println!("  (binary, base64) {encoded}"),
            _ => {}
        }
    }
}

/// Usage grouped by (period start, app, function), as `nimbus usage` shows it.
pub(crate) fn usage(
    grouped: &std::collections::BTreeMap<(Option<u64>, String, String), nimbus_core::Usage>,
    by: crate::UsageBy,
) {
    if grouped.is_empty() {
        println!("no invocations in that time");
        return;
    }
    let period = |start: Option<u64>| {
        let Some(start) = start else {
            return String::new();
        };
        let text = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(start),
        )
        .to_string();
        match by {
            crate::UsageBy::Day => text.get(..10).unwrap_or(&text).to_owned(),
            _ => text.get(..16).unwrap_or(&text).replace('T', " "),
        }
    };
    let mut headers = vec![
        "APP",
        "FUNCTION",
        "INVOCATIONS",
        "ERRORS",
        "COLD",
        "BILLED",
        "GB-S",
    ];
    match by {
        crate::UsageBy::Day => headers.insert(0, "DAY (UTC)"),
        crate::UsageBy::Hour => headers.insert(0, "HOUR (UTC)"),
        crate::UsageBy::Function => {}
    }
    let rows = grouped
        .iter()
        .map(|((start, app, function), usage)| {
            let mut row = vec![
                app.clone(),
                function.clone(),
                usage.invocations.to_string(),
                usage.errors.to_string(),
                usage.cold_starts.to_string(),
                format!("{:.3}s", usage.billed_ms as f64 / 1000.0),
                format!("{:.6}", usage.gb_seconds()),
            ];
            if start.is_some() {
                row.insert(0, period(*start));
            }
            row
        })
        .collect();
    table(&headers, rows);
}
