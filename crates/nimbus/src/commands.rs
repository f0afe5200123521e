//! One function per command. Each returns a [`Failure`] that knows its exit code and message.

use crate::project::Project;
use crate::{
    Cli, Command, DlqCommand, InvokeArgs, MasterKeyCommand, QueueCommand, ServeArgs, client, output,
};
use base64::Engine as _;
use nimbus_api::{ApiError, Client, InvokeRequest, split_function_ref};
use nimbus_server::ServerConfig;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

/// Why a command failed, and so which exit code it returns.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered with an error.
    Api(ApiError),
    /// The server could not be reached.
    Unreachable(String),
    /// A local problem: manifest, build, files.
    Local(String),
    /// Bad usage the argument parser could not catch.
    Usage(String),
    /// The function answered with an error status.
    FunctionStatus,
    /// The server itself failed to start or run.
    Server(String),
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Unreachable { .. } => Failure::Unreachable(error.to_string()),
            other => Failure::Api(other),
        }
    }
}

impl Failure {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Api(_) | Failure::Server(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Local(_) => 4,
            Failure::FunctionStatus => 5,
        }
    }

    pub(crate) fn print(&self) {
        match self {
            Failure::Api(error) => eprintln!("error: {error}"),
            Failure::Unreachable(message)
            | Failure::Local(message)
            | Failure::Usage(message)
            | Failure::Server(message) => {
                eprintln!("error: {message}")
            }
            Failure::FunctionStatus => {}
        }
    }
}

pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Serve(args) => serve(&cli, args).await,
        Command::Up {
            dir,
            listen,
            no_watch,
        } => up(&cli, dir, *listen, *no_watch).await,
        Command::Deploy { dir } => {
            let client = client::connect(&cli)?;
            let project = Project::load(dir)?;
            project.build(cli.json)?;
            let result = project.deploy(&client, cli.json).await?;
            if cli.json {
                output::json(&result);
            } else {
                let gateway = client
                    .status()
                    .await
                    .map(|s| s.gateway_url)
                    .unwrap_or_default();
                output::deployed(&result, &gateway);
            }
            Ok(())
        }
        Command::Apps => {
            let apps = client::connect(&cli)?.apps().await?;
            if cli.json {
                output::json(&apps)
            } else {
                output::apps(&apps)
            }
            Ok(())
        }
        Command::Functions { function, grants } => {
            let mut functions = client::connect(&cli)?.functions().await?;
            if let Some(wanted) = function {
                functions
                    .retain(|f| f.name == *wanted || format!("{}/{}", f.app, f.name) == *wanted);
                match functions.len() {
                    0 => {
                        return Err(Failure::Usage(format!(
                            "no deployed function {wanted:?} (see `nimbus functions`)"
                        )));
                    }
                    1 => {}
                    _ => {
                        return Err(Failure::Usage(format!(
                            "{wanted:?} names functions of several apps: write APP/{wanted}"
                        )));
                    }
                }
            }
            if cli.json {
                output::json(&functions)
            } else if *grants {
                output::grants(&functions)
            } else {
                output::functions(&functions)
            }
            Ok(())
        }
        Command::Routes => {
            let routes = client::connect(&cli)?.routes().await?;
            if cli.json {
                output::json(&routes)
            } else {
                output::routes(&routes)
            }
            Ok(())
        }
        Command::Invoke(args) => invoke(&cli, args).await,
        Command::Logs {
            function,
            follow,
            tail,
            since,
            grep,
            failed,
        } => {
            let filter = LogFilter {
                since_ms: since.map(|since| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    now.saturating_sub(since.as_millis() as u64)
                }),
                grep: grep.clone(),
                failed: *failed,
            };
            // A time window searches everything kept; the server keeps 1,000 per function.
            let tail = if since.is_some() { 1000 } else { *tail };
            logs(&cli, function, *follow, tail, &filter).await
        }
        Command::Usage { app, since, by } => usage(&cli, app.as_deref(), *since, *by).await,
        Command::Rollback { app } => {
            let client = client::connect(&cli)?;
            let result = client.rollback(app).await?;
            if cli.json {
                output::json(&result);
            } else {
                println!("{} now serves version {}", result.app, result.version);
            }
            Ok(())
        }
        Command::Invocation { id } => {
            let status = client::connect(&cli)?.invocation(id).await?;
            if cli.json {
                output::json(&status);
            } else {
                output::invocation(&status);
            }
            Ok(())
        }
        Command::Queue(command) => queue(&cli, command).await,
        Command::Publish(args) => {
            let mut event = serde_json::Map::new();
            event.insert("specversion".into(), "1.0".into());
            event.insert("id".into(), uuid::Uuid::now_v7().to_string().into());
            event.insert("source".into(), args.source.clone().into());
            event.insert("type".into(), args.ty.clone().into());
            if let Some(subject) = &args.subject {
                event.insert("subject".into(), subject.clone().into());
            }
            if let Some(data) = &args.data {
                let data: serde_json::Value = serde_json::from_str(data)
                    .map_err(|e| Failure::Usage(format!("--data is not JSON: {e}")))?;
                event.insert("datacontenttype".into(), "application/json".into());
                event.insert("data".into(), data);
            }
            let event = serde_json::Value::Object(event);
            let published = client::connect(&cli)?.publish(&args.app, &event).await?;
            if cli.json {
                output::json(&published);
            } else {
                println!(
                    "published {} · matched {} rule target(s)",
                    published.id, published.matched
                );
            }
            Ok(())
        }
        Command::Keys(command) => crate::objects::keys(&cli, command).await,
        Command::Buckets { command } => crate::objects::buckets(&cli, command.as_ref()).await,
        Command::Objects(command) => crate::objects::objects(&cli, command).await,
        Command::Cp { source, target } => crate::objects::cp(&cli, source, target).await,
        Command::Tables => crate::tables::list(&cli).await,
        Command::Table(command) => crate::tables::table(&cli, command).await,
        Command::Kv(command) => crate::kv::run(&cli, command).await,
        Command::Users(command) => crate::users::run(&cli, command).await,
        Command::Secrets(command) => crate::secrets::run(&cli, command).await,
        Command::Apikeys(command) => crate::secrets::api_keys(&cli, command).await,
        Command::Tokens(command) => crate::secrets::tokens(&cli, command).await,
        Command::Audit { after, limit } => crate::secrets::audit(&cli, *after, *limit).await,
        Command::MasterKey(MasterKeyCommand::Rotate {
            master_key_file,
            new_key_file,
        }) => rotate_master_key(&cli, master_key_file.as_deref(), new_key_file.as_deref()).await,
        Command::Rm { app, force } => {
            let removed = client::connect(&cli)?.remove(app, *force).await?;
            if cli.json {
                output::json(&removed)
            } else {
                println!("removed {}", removed.name)
            }
            Ok(())
        }
    }
}

/// Where `serve` takes the master key from: `--master-key-file`, else `NIMBUS_MASTER_KEY`,
/// else the data directory.
fn master_key_source(file: Option<&std::path::Path>) -> Result<nimbus_server::KeySource, Failure> {
    if let Some(file) = file {
        return Ok(nimbus_server::KeySource::File(file.to_owned()));
    }
    match std::env::var(nimbus_server::MASTER_KEY_ENV) {
        Ok(text) => nimbus_server::parse_key(text.as_bytes())
            .filter(|_| text.trim().len() == 64)
            .map(nimbus_server::KeySource::Bytes)
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "{} must hold 64 hex digits (`openssl rand -hex 32`)",
                    nimbus_server::MASTER_KEY_ENV
                ))
            }),
        Err(_) => Ok(nimbus_server::KeySource::DataDir),
    }
}

async fn rotate_master_key(
    cli: &Cli,
    current: Option<&std::path::Path>,
    new: Option<&std::path::Path>,
) -> Result<(), Failure> {
    let dir = client::data_dir(cli);
    let source = master_key_source(current)?;
    let new = match new {
        None => None,
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| Failure::Usage(format!("read {}: {e}", path.display())))?;
            Some(nimbus_server::parse_key(&bytes).ok_or_else(|| {
                Failure::Usage(format!(
                    "{} is not a master key: it must hold 32 bytes or 64 hex digits",
                    path.display()
                ))
            })?)
        }
    };
    let external = !matches!(source, nimbus_server::KeySource::DataDir);
    let rotated = nimbus_server::rotate_master_key(&dir, source, new)
        .await
        .map_err(|e| Failure::Local(format!("{e:#}")))?;
    if cli.json {
        output::json(&serde_json::json!({
            "secret_versions": rotated.secret_versions,
            "access_keys": rotated.access_keys,
            "signing_keys": rotated.signing_keys,
        }));
        return Ok(());
    }
    println!(
        "re-sealed {} secret versions, {} access keys and {} signing keys",
        rotated.secret_versions, rotated.access_keys, rotated.signing_keys
    );
    if external {
        println!(
            "start the server with the new key from now on (--master-key-file or NIMBUS_MASTER_KEY)"
        );
    } else {
        println!(
            "the new key is in {}; back it up, and discard backups of the old one",
            dir.join(nimbus_server::MASTER_KEY_FILE).display()
        );
    }
    Ok(())
}

async fn serve(cli: &Cli, args: &ServeArgs) -> Result<(), Failure> {
    let mut config = ServerConfig::new(
        cli.data_dir
            .clone()
            .unwrap_or_else(client::default_data_dir),
    );
    config.listen = args.listen;
    config.admin_listen = args.admin_listen;
    config.idle_timeout = args.idle_timeout;
    config.gateway.max_body_bytes = args.max_body.as_u64();
    config.process_sandbox = !args.no_process_sandbox;
    config.aws_listen = args.aws_listen;
    config.aws_domain = args.aws_domain.clone();
    config.smtp_url = args.smtp_url.clone();
    config.http_redirect = args.http_redirect;
    config.master_key = master_key_source(args.master_key_file.as_deref())?;
    if let Some(path) = &args.metrics_token_file {
        let token = std::fs::read_to_string(path).map_err(|error| {
            Failure::Usage(format!(
                "cannot read the metrics token from {}: {error}",
                path.display()
            ))
        })?;
        let token = token.trim();
        if token.len() < 16 {
            return Err(Failure::Usage(format!(
                "the metrics token in {} is shorter than 16 characters; use a long random one \
                 (`openssl rand -hex 32 > {}`)",
                path.display(),
                path.display()
            )));
        }
        config.metrics_token = Some(token.to_owned());
    }
    config.abort_incomplete_uploads_after = args.abort_incomplete_uploads_after.0;
    if args.tls_cert.len() != args.tls_key.len() {
        return Err(Failure::Usage(format!(
            "give one --tls-key for each --tls-cert (got {} certificates, {} keys)",
            args.tls_cert.len(),
            args.tls_key.len()
        )));
    }
    let pair = |cert: &Option<std::path::PathBuf>, key: &Option<std::path::PathBuf>| {
        Some(nimbus_wire::tls::CertFiles {
            cert: cert.clone()?,
            key: key.clone()?,
        })
    };
    config.admin_tls = pair(&args.admin_tls_cert, &args.admin_tls_key);
    config.aws_tls = pair(&args.aws_tls_cert, &args.aws_tls_key);
    config.tls = args
        .tls_cert
        .iter()
        .zip(&args.tls_key)
        .map(|(cert, key)| nimbus_wire::tls::CertFiles {
            cert: cert.clone(),
            key: key.clone(),
        })
        .collect();
    let server = nimbus_server::start(config)
        .await
        .map_err(|e| Failure::Server(format!("{e:#}")))?;
    println!(
        "nimbus serving on {} (admin API {}, S3 {})",
        server.gateway_url(),
        server.admin_url(),
        server.aws_url()
    );
    let stop = server.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    server.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(term) => { term.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn up(
    cli: &Cli,
    dir: &Path,
    listen: std::net::SocketAddr,
    no_watch: bool,
) -> Result<(), Failure> {
    let project = Project::load(dir)?;
    project.build(false)?;
    let data_dir = dir.join(".nimbus");
    let mut config = ServerConfig::new(&data_dir);
    config.listen = listen;
    config.admin_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    config.aws_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let server = nimbus_server::start(config)
        .await
        .map_err(|e| Failure::Server(format!("{e:#}")))?;
    let client = Client::new(server.admin_url(), server.token.clone());
    let gateway_url = server.gateway_url();
    let result = project.deploy(&client, cli.json).await?;
    if cli.json {
        output::json(&result);
    } else {
        output::deployed(&result, &gateway_url);
        println!();
        println!(
            "serving {} at {gateway_url}; data in {}",
            result.app,
            data_dir.display()
        );
        println!(
            "AWS endpoint, S3 and DynamoDB (AWS_ENDPOINT_URL): {}",
            server.aws_url()
        );
        println!(
            "other commands: nimbus --data-dir {} <command>",
            data_dir.display()
        );
        if !no_watch {
            println!("watching {} for changes; Ctrl-C stops", dir.display());
        }
    }

    let stop = server.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.cancel();
    });
    if !no_watch {
        let dir = dir.to_owned();
        let token = server.shutdown_token();
        let json = cli.json;
        tokio::spawn(async move {
            if let Err(error) = watch(&dir, &client, &gateway_url, json, token).await {
                eprintln!("error: watching stopped: {error}");
            }
        });
    }
    server.wait().await;
    Ok(())
}

/// Rebuild and redeploy whenever a source file under `dir` changes.
async fn watch(
    dir: &Path,
    client: &Client,
    gateway_url: &str,
    json: bool,
    stop: tokio_util::sync::CancellationToken,
) -> notify::Result<()> {
    use notify::Watcher;
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    // What the build produces is not a source: writing it must not trigger another build.
    let outputs: Vec<std::path::PathBuf> = Project::load(dir)
        .map(|p| {
            p.manifest
                .sources
                .values()
                .filter(|s| s.form == nimbus_manifest::SourceForm::Component)
                .map(|s| absolute(&dir.join(&s.path)))
                .collect()
        })
        .unwrap_or_default();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && event
                .paths
                .iter()
                .any(|p| is_source(p) && !outputs.contains(&absolute(p)))
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            let _ = sender.send(());
        }
    })?;
    watcher.watch(dir, notify::RecursiveMode::Recursive)?;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            changed = receiver.recv() => if changed.is_none() { return Ok(()) },
        }
        // Let a burst of saves settle.
        tokio::time::sleep(Duration::from_millis(300)).await;
        while receiver.try_recv().is_ok() {}
        eprintln!("change detected; rebuilding");
        let outcome = async {
            let project = Project::load(dir)?;
            project.build(json)?;
            project.deploy(client, json).await
        }
        .await;
        match outcome {
            Ok(result) if json => output::json(&result),
            Ok(result) => output::deployed(&result, gateway_url),
            Err(failure) => {
                failure.print();
                eprintln!("the previous version keeps serving");
            }
        }
        // Our own build writes files; drop the events it caused.
        while receiver.try_recv().is_ok() {}
    }
}

fn absolute(path: &Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Changes under build output or nimbus's own data do not trigger a rebuild.
fn is_source(path: &Path) -> bool {
    !path.components().any(|c| {
        let c = c.as_os_str();
        c == "target" || c == ".nimbus" || c == ".git"
    })
}

async fn invoke(cli: &Cli, args: &InvokeArgs) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    let body = match (&args.data, &args.data_file) {
        (Some(data), _) if data == "-" => {
            let mut buffer = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buffer)
                .map_err(|e| Failure::Local(format!("read standard input: {e}")))?;
            buffer
        }
        (Some(data), _) => data.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path)
            .map_err(|e| Failure::Local(format!("read {}: {e}", path.display())))?,
        (None, None) => Vec::new(),
    };
    let method = args.method.clone().unwrap_or_else(|| {
        if body.is_empty() {
            "GET".into()
        } else {
            "POST".into()
        }
    });
    let mut request = InvokeRequest {
        method,
        path: args.path.clone(),
        ..Default::default()
    };
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| Failure::Usage(format!("header {header:?} must be NAME:VALUE")))?;
        request
            .headers
            .insert(name.trim().to_owned(), value.trim().to_owned());
    }
    let (app, function) = resolve_function(&client, &args.function).await?;
    if args.asynchronous {
        let accepted = client
            .invoke_async(&app, &function, body, args.idempotency_key.as_deref())
            .await?;
        if cli.json {
            output::json(&accepted);
        } else {
            println!("{}", accepted.invocation_id);
            eprintln!(
                "{} · `nimbus invocation {}` shows its status",
                if accepted.replay {
                    "already queued under this idempotency key"
                } else {
                    "queued"
                },
                accepted.invocation_id
            );
        }
        return Ok(());
    }
    let response = client.invoke(&app, &function, &request, body).await?;
    if cli.json {
        output::json(&response);
    } else {
        if let Some(text) = &response.body {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
        } else if let Some(encoded) = &response.body_base64 {
            use std::io::Write;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_default();
            let _ = std::io::stdout().write_all(&bytes);
        }
        eprintln!(
            "status {} · request {}",
            response.status, response.request_id
        );
    }
    if response.status >= 400 {
        Err(Failure::FunctionStatus)
    } else {
        Ok(())
    }
}

/// `APP/FUNCTION`, or a function name unique across apps.
/// `APP/QUEUE` → (app, queue).
fn queue_ref(reference: &str) -> Result<(&str, &str), Failure> {
    reference
        .split_once('/')
        .filter(|(a, q)| !a.is_empty() && !q.is_empty())
        .ok_or_else(|| Failure::Usage(format!("name the queue as APP/QUEUE, got {reference:?}")))
}

async fn queue(cli: &Cli, command: &QueueCommand) -> Result<(), Failure> {
    // A malformed APP/QUEUE is a usage error, whether or not a server is reachable.
    match command {
        QueueCommand::Ls => {}
        QueueCommand::Send { queue, .. }
        | QueueCommand::Peek { queue, .. }
        | QueueCommand::Dlq(DlqCommand::Redrive { queue }) => {
            queue_ref(queue)?;
        }
    }
    let client = client::connect(cli)?;
    match command {
        QueueCommand::Ls => {
            let queues = client.queues().await?;
            if cli.json {
                output::json(&queues);
            } else {
                output::queues(&queues);
            }
        }
        QueueCommand::Send {
            queue,
            body,
            group,
            content_type,
        } => {
            let (app, queue) = queue_ref(queue)?;
            let body = if body == "-" {
                let mut buffer = String::new();
                std::io::stdin()
                    .read_to_string(&mut buffer)
                    .map_err(|e| Failure::Local(format!("read standard input: {e}")))?;
                buffer
            } else {
                body.clone()
            };
            let sent = client
                .send_messages(
                    app,
                    queue,
                    vec![nimbus_api::OutgoingMessage {
                        body: Some(body),
                        group: group.clone(),
                        content_type: content_type.clone(),
                        ..Default::default()
                    }],
                )
                .await?;
            if cli.json {
                output::json(&sent);
            } else {
                println!("sent {}", sent.ids.join(", "));
            }
        }
        QueueCommand::Peek { queue, limit } => {
            let (app, queue) = queue_ref(queue)?;
            let messages = client.peek(app, queue, *limit).await?;
            if cli.json {
                output::json(&messages);
            } else {
                output::messages(&messages);
            }
        }
        QueueCommand::Dlq(DlqCommand::Redrive { queue }) => {
            let (app, queue) = queue_ref(queue)?;
            let moved = client.redrive(app, queue).await?;
            if cli.json {
                output::json(&moved);
            } else {
                println!("moved {} message(s) back to {app}/{queue}", moved.moved);
            }
        }
    }
    Ok(())
}

async fn resolve_function(client: &Client, reference: &str) -> Result<(String, String), Failure> {
    if let (Some(app), function) = split_function_ref(reference) {
        return Ok((app.to_owned(), function.to_owned()));
    }
    let functions = client.functions().await?;
    let matching: Vec<_> = functions.iter().filter(|f| f.name == reference).collect();
    match matching.as_slice() {
        [one] => Ok((one.app.clone(), one.name.clone())),
        [] => Err(Failure::Usage(format!(
            "no function named {reference:?}; `nimbus functions` lists them"
        ))),
        several => Err(Failure::Usage(format!(
            "function {reference:?} exists in several apps ({}); write APP/{reference}",
            several
                .iter()
                .map(|f| f.app.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

async fn usage(
    cli: &Cli,
    app: Option<&str>,
    since: Duration,
    by: crate::UsageBy,
) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let rows = client
        .usage(app, now_ms.saturating_sub(since.as_millis() as u64))
        .await?;
    // Hours folded into the grouping asked for, in order.
    let span = match by {
        crate::UsageBy::Function => None,
        crate::UsageBy::Day => Some(24 * nimbus_core::record::USAGE_HOUR_MS),
        crate::UsageBy::Hour => Some(nimbus_core::record::USAGE_HOUR_MS),
    };
    let mut grouped: std::collections::BTreeMap<(Option<u64>, String, String), nimbus_core::Usage> =
        std::collections::BTreeMap::new();
    for row in &rows {
        let start = span.map(|span| row.hour_ms - row.hour_ms % span);
        grouped
            .entry((start, row.app.clone(), row.function.clone()))
            .or_default()
            .merge(&row.usage);
    }
    if cli.json {
        let out: Vec<serde_json::Value> = grouped
            .iter()
            .map(|((start, app, function), usage)| {
                serde_json::json!({
                    "start_ms": start,
                    "app": app,
                    "function": function,
                    "invocations": usage.invocations,
                    "errors": usage.errors,
                    "cold_starts": usage.cold_starts,
                    "billed_ms": usage.billed_ms,
                    "gb_seconds": usage.gb_seconds(),
                })
            })
            .collect();
        output::json(&out);
        return Ok(());
    }
    output::usage(&grouped, by);
    Ok(())
}

/// Which invocations `nimbus logs` shows.
struct LogFilter {
    since_ms: Option<u64>,
    grep: Option<String>,
    failed: bool,
}

impl LogFilter {
    fn keeps(&self, record: &nimbus_core::InvocationRecord) -> bool {
        self.since_ms.is_none_or(|since| record.start_ms >= since)
            && (!self.failed || record.outcome.error_code().is_some())
            && self.grep.as_deref().is_none_or(|text| {
                record.logs.contains(text)
                    || record.request_id.contains(text)
                    || record.outcome.as_str().contains(text)
            })
    }
}

async fn logs(
    cli: &Cli,
    reference: &str,
    follow: bool,
    tail: usize,
    filter: &LogFilter,
) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    let (app, function) = resolve_function(&client, reference).await?;
    let mut after = 0;
    let mut first = true;
    loop {
        let page = client
            .logs(
                &app,
                &function,
                after,
                if first { Some(tail) } else { None },
            )
            .await?;
        first = false;
        for record in &page.records {
            after = after.max(record.seq);
            if !filter.keeps(record) {
                continue;
            }
            if cli.json {
                match serde_json::to_string(record) {
                    Ok(line) => println!("{line}"),
                    Err(error) => eprintln!("error: {error}"),
                }
            } else {
                output::record(record);
            }
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
