//! The `nimbus` command: a server (`serve`, `up`) and a client of the admin API for everything
//! else. The client side never touches the data directory except to find the admin URL and
//! token a server published there.
//!
//! Exit codes: 0 success; 1 the server refused the request (the error code is printed);
//! 2 bad command-line usage; 3 the server could not be reached; 4 a build or local manifest
//! error; 5 `invoke` got an error status (4xx/5xx) from the function.

mod client;
mod commands;
mod kv;
mod objects;
mod output;
mod project;
mod secrets;
mod tables;
mod users;

use clap::{Parser, Subcommand};

// mimalloc: the event path allocates per message (HTTP, JSON, redb pages), and glibc's
// arenas showed up as ~15% of CPU and lock contention under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// nimbus — a self-hosted serverless platform in one binary.
///
/// Functions are WebAssembly components (wasi:http/proxy) declared in a nimbus.toml manifest.
/// `nimbus up` builds, deploys and serves an app for development; `nimbus serve` runs the
/// server; the other commands talk to a running server through its admin API.
#[derive(Parser, Debug)]
#[command(name = "nimbus", version, propagate_version = true, after_help = EXAMPLES)]
struct Cli {
    /// Print machine-readable JSON instead of human output.
    #[arg(long, global = true)]
    json: bool,

    /// The server's data directory (where `serve` keeps state and publishes the admin URL and
    /// token). Default: ./.nimbus if it exists, else ~/.local/share/nimbus.
    #[arg(long, global = true, env = "NIMBUS_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Admin API URL, overriding the one published in the data directory.
    #[arg(long, global = true, env = "NIMBUS_ADMIN_URL")]
    admin_url: Option<String>,

    /// Admin bearer token, overriding the data directory's admin.token.
    #[arg(long, global = true, env = "NIMBUS_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Trust this PEM CA certificate (besides the system's) for an admin API served over
    /// HTTPS with a private CA.
    #[arg(long, global = true, env = "NIMBUS_CA_CERT")]
    ca_cert: Option<PathBuf>,

    /// How the server logs to standard error: `text` for people, `json` (one object per
    /// line, with each invocation's report and its function's output) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "NIMBUS_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  nimbus up examples/hello           build, deploy and serve an app; redeploy on change
  nimbus serve                       run the server (gateway :8080, admin API 127.0.0.1:8089)
  nimbus deploy ./my-app             build and deploy to a running server
  nimbus invoke hello --path /hello  call a function directly
  nimbus logs hello -f               follow a function's invocations and output
  nimbus invoke worker --async -d '{}'  queue an invocation; `nimbus invocation ID` shows it
  nimbus queue send shop/orders 'hi'  send a message; `nimbus queue ls` shows the queues
  nimbus rollback my-app             go back to the previous version
  nimbus keys create --app shop      an access key for the AWS endpoint (127.0.0.1:8090)
  nimbus cp photo.jpg s3://uploads/  upload a file to a bucket";

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server: the HTTP gateway and the admin API.
    Serve(Box<ServeArgs>),
    /// Development loop: build the app in DIR, serve it with its data under DIR/.nimbus, deploy,
    /// print the URLs, and rebuild + redeploy when sources change.
    Up {
        /// The app's directory (containing nimbus.toml).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where the gateway listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Do not watch for changes; deploy once and keep serving.
        #[arg(long)]
        no_watch: bool,
    },
    /// Build the app in DIR and deploy it to the running server (atomically: a refused deploy
    /// leaves the current version serving).
    Deploy {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// List deployed apps.
    Apps,
    /// List deployed functions with their limits and instances; with `--grants`, what each
    /// may touch (queues, the bus, buckets, stores, tables, secrets, outbound hosts).
    Functions {
        /// Only this function (`name` if unique, or `app/name`).
        function: Option<String>,
        #[arg(long)]
        grants: bool,
    },
    /// List the gateway's routes.
    Routes,
    /// Invoke a function directly (bypassing routes) and print its response.
    Invoke(InvokeArgs),
    /// Show a function's invocations and what it printed, with request ids.
    Logs {
        /// FUNCTION or APP/FUNCTION.
        function: String,
        /// Keep printing new invocations as they happen.
        #[arg(short, long)]
        follow: bool,
        /// How many recent invocations to show first.
        #[arg(long, default_value_t = 20)]
        tail: usize,
        /// Only invocations that started within this long (`10m`, `2h`); with it, up to the
        /// last 1,000 kept are searched instead of `--tail`.
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only invocations whose output, request id or outcome contains this text.
        #[arg(long)]
        grep: Option<String>,
        /// Only failed invocations (timeouts, traps, handler errors, …).
        #[arg(long)]
        failed: bool,
    },
    /// What functions used — invocations, errors, cold starts, billed time and GB-seconds —
    /// kept per function per hour.
    Usage {
        /// Only this app.
        app: Option<String>,
        /// How far back (`24h`, `7d`, …).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: std::time::Duration,
        /// One line per function, per function and day, or per function and hour (UTC).
        #[arg(long, value_enum, default_value_t = UsageBy::Function)]
        by: UsageBy,
    },
    /// Re-activate an app's previous version.
    Rollback { app: String },
    /// Remove an app: its routes stop answering at once; its buckets, key-value stores and
    /// access keys go too.
    Rm {
        app: String,
        /// Also delete the objects in the app's buckets and the entries in its key-value
        /// stores (without it, either holding data keeps the app from being removed).
        #[arg(long)]
        force: bool,
    },
    /// Show an asynchronous invocation's status and result.
    Invocation { id: String },
    /// Queues: list, send, peek, dead-letter redrive.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Publish a CloudEvent on an app's event bus.
    Publish(PublishArgs),
    /// Access keys for the AWS-compatible endpoint (S3, DynamoDB).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Buckets of the object store (`nimbus buckets` lists them).
    Buckets {
        #[command(subcommand)]
        command: Option<BucketsCommand>,
    },
    /// Objects in a bucket.
    #[command(subcommand)]
    Objects(ObjectsCommand),
    /// Copy a file to or from a bucket: `nimbus cp photo.jpg s3://uploads/photo.jpg`,
    /// `nimbus cp s3://uploads/photo.jpg .` (`-` is standard input or output).
    Cp { source: String, target: String },
    /// Tables of every app (the DynamoDB-compatible service), with their keys and sizes.
    Tables,
    /// One table's items.
    #[command(subcommand)]
    Table(TableCommand),
    /// Key-value stores: list keys, read and write entries (the ones functions see).
    #[command(subcommand)]
    Kv(KvCommand),
    /// End users of an app's auth (`[auth]`): list, create, ban, remove; rotate its keys.
    #[command(subcommand)]
    Users(UsersCommand),
    /// An app's secrets: set (value from standard input or a file, never an argument), list
    /// names and versions, remove, rotate.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// API keys for an app's `api_key` authorizers: create (with a usage plan), list, revoke.
    #[command(subcommand)]
    Apikeys(ApiKeysCommand),
    /// Scoped tokens for the admin API (`read`, `deploy`, `admin`): create, list, revoke.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The audit log: every admin write, who made it and what it was answered.
    Audit {
        /// Only entries after this number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (the newest when more exist).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// The master key that seals secrets and keys at rest (the server must be stopped).
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCommand),
}

#[derive(Subcommand, Debug)]
enum MasterKeyCommand {
    /// Re-seal everything under a new master key, then make it the data directory's. Run it
    /// again, with the same options, if it was interrupted.
    Rotate {
        /// The current key, when it is kept outside the data directory (else `master.key`, or
        /// NIMBUS_MASTER_KEY).
        #[arg(long, env = "NIMBUS_MASTER_KEY_FILE")]
        master_key_file: Option<PathBuf>,
        /// The new key (32 bytes or 64 hex digits); required when the current one is kept
        /// outside the data directory, else a random key is made and kept in `master.key`.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum TokensCommand {
    /// Make a token; it is printed once and stored only as its hash.
    Create {
        /// `read` (listings, logs), `deploy` (also upload, deploy, roll back, invoke, send,
        /// publish) or `admin` (everything).
        #[arg(long)]
        scope: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// The scoped tokens (never the tokens).
    Ls,
    /// Revoke a token: refused from the next request on.
    Rm { id: String },
}

#[derive(Subcommand, Debug)]
enum ApiKeysCommand {
    /// Make a key; it is printed once and stored only as its hash.
    Create {
        #[arg(long)]
        app: String,
        /// What the key is for.
        #[arg(long)]
        name: Option<String>,
        /// Requests per second, minute, hour or day (`10/s`, `600/min`).
        #[arg(long)]
        rate: Option<String>,
        /// Requests at once (default: the rate's count).
        #[arg(long)]
        burst: Option<u32>,
        /// Requests per UTC day.
        #[arg(long)]
        quota: Option<u64>,
    },
    /// The app's keys and their plans (never the keys).
    Ls {
        #[arg(long)]
        app: String,
    },
    /// Revoke a key: refused from the next request on.
    Rm {
        id: String,
        #[arg(long)]
        app: String,
    },
}

#[derive(Subcommand, Debug)]
enum SecretsCommand {
    /// Set a secret (a new version if it exists). The value is read from standard input (one
    /// trailing newline dropped) or, exactly, from `--file`.
    Set {
        app: String,
        name: String,
        /// Read the value from this file instead of standard input.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Give an existing secret a new value; the previous version stays readable
    /// (`AWSPREVIOUS`). Refuses a secret that does not exist.
    Rotate {
        app: String,
        name: String,
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// The app's secrets: names, current versions and when they were set (never values).
    Ls { app: String },
    /// Remove a secret with every version.
    Rm { app: String, name: String },
}

#[derive(Subcommand, Debug)]
enum UsersCommand {
    /// List the app's users, by id.
    Ls {
        #[arg(long)]
        app: String,
        /// Start after this user id.
        #[arg(long)]
        after: Option<String>,
        /// Stop after this many users.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Create a user. The password is read from standard input (`--password-stdin`), never
    /// from an argument; or import a bcrypt/Argon2 hash from another system.
    Create {
        email: String,
        #[arg(long)]
        app: String,
        /// Read the password from standard input (one line).
        #[arg(long, conflicts_with = "password_hash")]
        password_stdin: bool,
        /// A hash exported from GoTrue, Auth0 or similar (`$2b$…`, `$argon2id$…`); rehashed
        /// with Argon2id at the first sign-in.
        #[arg(long)]
        password_hash: Option<String>,
        /// Count the address as confirmed.
        #[arg(long)]
        confirmed: bool,
    },
    /// Refuse a user's sign-ins (for a while with `--for`, else until unbanned) and end their
    /// sessions.
    Ban {
        id: String,
        #[arg(long)]
        app: String,
        /// How long (`1h`, `7d`).
        #[arg(long = "for")]
        duration: Option<String>,
    },
    /// Lift a ban.
    Unban {
        id: String,
        #[arg(long)]
        app: String,
    },
    /// Remove a user with their sessions.
    Rm {
        id: String,
        #[arg(long)]
        app: String,
    },
    /// Put a new token signing key in front; tokens signed by the old one stay valid until
    /// they expire.
    RotateKeys {
        #[arg(long)]
        app: String,
    },
}

#[derive(Subcommand, Debug)]
enum KvCommand {
    /// List a store's keys, in byte order (without STORE: the app's stores).
    Ls {
        store: Option<String>,
        /// The owning app.
        #[arg(long)]
        app: String,
        /// Start after this key.
        #[arg(long)]
        after: Option<String>,
        /// Stop after this many keys.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Print a key's value (as it is stored, bytes and all).
    Get {
        store: String,
        key: String,
        #[arg(long)]
        app: String,
    },
    /// Write a key's value (`-` reads it from standard input).
    Set {
        store: String,
        key: String,
        value: String,
        #[arg(long)]
        app: String,
        /// Expire the entry after this long (`30s`, `10m`, `1d`).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Remove a key.
    Rm {
        store: String,
        key: String,
        #[arg(long)]
        app: String,
    },
}

#[derive(Subcommand, Debug)]
enum TableCommand {
    /// Print a table's items, in key order, as DynamoDB JSON (one item per line).
    Scan {
        table: String,
        /// The owning app (default: an operator's table).
        #[arg(long)]
        app: Option<String>,
        /// Stop after this many items.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// Limit the key to this app's buckets (default: an operator key, every bucket).
        #[arg(long)]
        app: Option<String>,
        /// What the key is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// List keys (never their secrets).
    Ls,
    /// Revoke a key: requests signed with it are refused from now on.
    Rm { id: String },
}

#[derive(Subcommand, Debug)]
enum BucketsCommand {
    /// List buckets.
    Ls,
    /// Create a bucket.
    Create {
        name: String,
        /// The owning app (default: an operator's bucket).
        #[arg(long)]
        app: Option<String>,
    },
    /// Remove an empty bucket.
    Rm { name: String },
}

#[derive(Subcommand, Debug)]
enum ObjectsCommand {
    /// List a bucket's objects, optionally under a prefix.
    Ls {
        bucket: String,
        prefix: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum QueueCommand {
    /// Every queue with its counts (declared queues, functions' `@function` queues, `.dlq`s).
    Ls,
    /// Send a message: `nimbus queue send APP/QUEUE 'body'` (or `-` for standard input).
    Send {
        queue: String,
        body: String,
        /// FIFO group (FIFO queues).
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Show the first messages of a queue without taking them.
    Peek {
        queue: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Dead-letter queues.
    #[command(subcommand)]
    Dlq(DlqCommand),
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// Move every message of APP/QUEUE's dead-letter queue back to APP/QUEUE.
    Redrive { queue: String },
}

#[derive(clap::Args, Debug)]
struct PublishArgs {
    app: String,
    /// The event's `type`.
    #[arg(long = "type")]
    ty: String,
    /// The event's `source`.
    #[arg(long, default_value = "/cli")]
    source: String,
    #[arg(long)]
    subject: Option<String>,
    /// JSON data.
    #[arg(long)]
    data: Option<String>,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Where the gateway listens.
    #[arg(long, default_value = "127.0.0.1:8080", env = "NIMBUS_LISTEN")]
    listen: SocketAddr,
    /// Where the admin API listens (keep it on loopback unless you front it with TLS).
    #[arg(long, default_value = "127.0.0.1:8089", env = "NIMBUS_ADMIN_LISTEN")]
    admin_listen: SocketAddr,
    /// Drop instances idle for this long (scale to zero), e.g. "5m", "30s".
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    idle_timeout: std::time::Duration,
    /// Largest request body the gateway accepts, e.g. "16MiB".
    #[arg(long, default_value = "16MiB")]
    max_body: bytesize::ByteSize,
    /// Run process functions without namespaces or cgroups (own process group, clean
    /// environment and timeouts still apply). For debugging, or hosts that forbid them.
    #[arg(long)]
    no_process_sandbox: bool,
    /// Where the AWS-compatible endpoint (S3, DynamoDB) listens.
    #[arg(long, default_value = "127.0.0.1:8090", env = "NIMBUS_AWS_LISTEN")]
    aws_listen: SocketAddr,
    /// Serve buckets virtual-host style under this domain too (`BUCKET.DOMAIN`), as S3 does;
    /// path-style (`/BUCKET/KEY`) always works.
    #[arg(long, env = "NIMBUS_AWS_DOMAIN")]
    aws_domain: Option<String>,
    /// Abort multipart uploads left incomplete this long (deleting their parts), e.g. "7d";
    /// "never" keeps them until a client aborts them.
    #[arg(long, default_value = "7d", value_parser = parse_expiry)]
    abort_incomplete_uploads_after: Expiry,
    /// Serve the gateway over HTTPS with this PEM certificate chain (repeat with `--tls-key`
    /// for each host: the certificate valid for the client's SNI name is used, else the
    /// first). Changed files are read again within seconds.
    #[arg(long, requires = "tls_key")]
    tls_cert: Vec<std::path::PathBuf>,
    /// The PEM private key of the `--tls-cert` in the same position.
    #[arg(long, requires = "tls_cert")]
    tls_key: Vec<std::path::PathBuf>,
    /// Serve the admin API over HTTPS with this PEM certificate chain (and `--admin-tls-key`);
    /// reloaded on change like the gateway's.
    #[arg(long, requires = "admin_tls_key")]
    admin_tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--admin-tls-cert`.
    #[arg(long, requires = "admin_tls_cert")]
    admin_tls_key: Option<std::path::PathBuf>,
    /// Serve the AWS-compatible endpoint over HTTPS with this PEM certificate chain (and
    /// `--aws-tls-key`).
    #[arg(long, requires = "aws_tls_key")]
    aws_tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of `--aws-tls-cert`.
    #[arg(long, requires = "aws_tls_cert")]
    aws_tls_key: Option<std::path::PathBuf>,
    /// The SMTP server apps' auth sends confirmation and password-recovery mail through:
    /// `smtp://host:25` (plain, or STARTTLS with `?tls=required`), `smtps://user:pass@host`.
    #[arg(long, env = "NIMBUS_SMTP_URL")]
    smtp_url: Option<String>,
    /// Also listen for plain HTTP here and redirect every request to the gateway over HTTPS
    /// (308, same host, path and query), e.g. `0.0.0.0:80`; needs `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    http_redirect: Option<SocketAddr>,
    /// Read the master key (32 bytes, or 64 hex digits) from this file instead of
    /// `master.key` in the data directory; `NIMBUS_MASTER_KEY` may hold the hex digits
    /// instead.
    #[arg(long, env = "NIMBUS_MASTER_KEY_FILE")]
    master_key_file: Option<std::path::PathBuf>,
    /// A file holding a bearer token that may scrape `/metrics` on the admin listener and
    /// nothing else, for a Prometheus server (any admin token may scrape too).
    #[arg(long, env = "NIMBUS_METRICS_TOKEN_FILE")]
    metrics_token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// How `nimbus usage` groups what it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum UsageBy {
    Function,
    Day,
    Hour,
}

/// A duration, or never.
#[derive(Debug, Clone, Copy)]
struct Expiry(Option<std::time::Duration>);

fn parse_expiry(text: &str) -> Result<Expiry, humantime::DurationError> {
    if text == "never" {
        return Ok(Expiry(None));
    }
    humantime::parse_duration(text).map(|d| Expiry(Some(d)))
}

#[derive(clap::Args, Debug)]
struct InvokeArgs {
    /// FUNCTION or APP/FUNCTION.
    function: String,
    /// Request path the function sees.
    #[arg(long, default_value = "/")]
    path: String,
    /// HTTP method (default: POST with a body, GET without).
    #[arg(short = 'X', long)]
    method: Option<String>,
    /// Request body; "-" reads standard input.
    #[arg(short, long, conflicts_with = "data_file")]
    data: Option<String>,
    /// Read the request body from a file.
    #[arg(long)]
    data_file: Option<PathBuf>,
    /// Extra request header, NAME:VALUE (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Queue the invocation and return its id at once (202) instead of waiting.
    #[arg(long = "async")]
    asynchronous: bool,
    /// With --async: the same key within 24 h returns the first invocation instead of a new one.
    #[arg(long, requires = "asynchronous")]
    idempotency_key: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Invocation reports and functions' output (targets `invocation` and `function`) are
    // logged when shipping JSON; a person at a terminal reads them with `nimbus logs`.
    let filter =
        std::env::var("NIMBUS_LOG").unwrap_or_else(|_| match (&cli.command, cli.log_format) {
            (Command::Serve(_) | Command::Up { .. }, LogFormat::Json) => "info,notify=warn".into(),
            (Command::Serve(_) | Command::Up { .. }, LogFormat::Text) => {
                "info,notify=warn,invocation=off,function=off".into()
            }
            _ => "warn".into(),
        });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.with_target(false).init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.print();
            ExitCode::from(failure.exit_code())
        }
    }
}
