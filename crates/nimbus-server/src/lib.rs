//! Server assembly: the composition root that picks the concrete store (redb), executor
//! (wasmtime) and wires them to the dispatcher, the gateway and the admin API.
//!
//! Start order: open the store; create the executor; load every app's active version (from the
//! compiled cache — a restart never recompiles); bind both listeners; publish the admin token
//! and addresses in the data directory; then serve. Shutdown cancels one token that both
//! servers and the background tasks watch.

mod admin;
mod apikeys;
mod auth;
mod deployments;
mod events;
mod executors;
mod kv;
mod local_api;
mod objects;
mod platform;
mod records;
mod rekey;
mod tables;

use anyhow::Context as _;
use nimbus_gateway::{Gateway, GatewayConfig};
use nimbus_runtime_process::{ProcessConfig, ProcessExecutor};
use nimbus_runtime_wasm::{WasmConfig, WasmExecutor};
pub use nimbus_seal::{KeySource, MASTER_KEY_ENV, MASTER_KEY_FILE, parse_key};
use nimbus_store_redb::RedbStore;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use platform::Platform;
pub use rekey::{Rotated, rotate_master_key};

pub(crate) use nimbus_wire::report;

/// File in the data directory holding the admin bearer token (mode 0600).
pub const TOKEN_FILE: &str = "admin.token";
/// File in the data directory holding the admin API's URL.
pub const ADMIN_URL_FILE: &str = "admin.url";
/// Directory in the data directory holding compiled components.
pub const CACHE_DIR: &str = "cache";
/// File in the data directory holding the gateway's URL.
pub const GATEWAY_URL_FILE: &str = "gateway.url";
/// How often the gateway's TLS certificate files are checked for changes.
pub const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// File in the data directory holding the AWS-compatible endpoint's URL.
pub const AWS_URL_FILE: &str = "aws.url";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// Where the gateway listens (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Where the admin API listens; loopback unless you mean otherwise.
    pub admin_listen: SocketAddr,
    pub gateway: GatewayConfig,
    /// Idle instances older than this are dropped (scale to zero).
    pub idle_timeout: Duration,
    /// Instance slots reserved by the pooling allocator, across all functions.
    pub max_instances: u32,
    /// Confine process functions with namespaces and cgroups where the host permits.
    pub process_sandbox: bool,
    /// Where the AWS-compatible endpoint (S3) listens; loopback unless you mean otherwise.
    pub aws_listen: SocketAddr,
    /// The domain under which buckets are addressed virtual-host style
    /// (`<bucket>.<domain>`); path-style addressing always works.
    pub aws_domain: Option<String>,
    /// Multipart uploads neither completed nor aborted for this long are aborted and their
    /// parts deleted (S3's `AbortIncompleteMultipartUpload` lifecycle rule); `None` keeps them
    /// until a client aborts them, as S3 does without the rule.
    pub abort_incomplete_uploads_after: Option<Duration>,
    /// How often tables are swept: items past their TTL removed, change records past the
    /// streams' 24-hour retention forgotten.
    pub table_sweep_interval: Duration,
    /// Certificate and key files the gateway serves HTTPS with (none: plain HTTP); the one
    /// valid for the client's SNI host is used, and changed files are read again.
    pub tls: Vec<nimbus_wire::tls::CertFiles>,
    /// The certificate and key the admin API serves HTTPS with (none: plain HTTP).
    pub admin_tls: Option<nimbus_wire::tls::CertFiles>,
    /// The certificate and key the AWS-compatible endpoint serves HTTPS with (none: plain
    /// HTTP). Functions reach the endpoint through their local API either way.
    pub aws_tls: Option<nimbus_wire::tls::CertFiles>,
    /// The SMTP server apps' auth sends confirmation and recovery mail through
    /// (`smtp://host:port`, `smtps://user:pass@host`, `smtp://…?tls=required`); none: apps
    /// cannot require confirmed addresses.
    pub smtp_url: Option<String>,
    /// A plain-HTTP listener answering every request with a redirect to the gateway over
    /// HTTPS (needs `tls`).
    pub http_redirect: Option<SocketAddr>,
    /// Where the master key comes from (by default `master.key` in the data directory).
    pub master_key: nimbus_seal::KeySource,
    /// A bearer token that may scrape `/metrics` on the admin listener and nothing else (any
    /// admin token may scrape too).
    pub metrics_token: Option<String>,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8089)),
            gateway: GatewayConfig::default(),
            idle_timeout: Duration::from_secs(300),
            max_instances: 1000,
            process_sandbox: true,
            aws_listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            aws_domain: None,
            abort_incomplete_uploads_after: Some(objects::DEFAULT_UPLOAD_EXPIRY),
            table_sweep_interval: tables::DEFAULT_SWEEP_INTERVAL,
            tls: Vec::new(),
            admin_tls: None,
            aws_tls: None,
            smtp_url: None,
            http_redirect: None,
            master_key: nimbus_seal::KeySource::DataDir,
            metrics_token: None,
        }
    }
}

/// A running server.
pub struct RunningServer {
    pub gateway_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub aws_addr: SocketAddr,
    admin_scheme: &'static str,
    aws_scheme: &'static str,
    /// Where the HTTP → HTTPS redirect listens, if it does.
    pub redirect_addr: Option<SocketAddr>,
    pub token: String,
    pub platform: Arc<Platform>,
    events: Arc<events::Events>,
    shutdown: CancellationToken,
    /// Every task the server started; shutdown waits for them.
    tasks: TaskTracker,
}

impl RunningServer {
    pub fn gateway_url(&self) -> String {
        self.platform.gateway_url().to_owned()
    }

    pub fn admin_url(&self) -> String {
        format!("{}://{}", self.admin_scheme, self.admin_addr)
    }

    /// The AWS-compatible endpoint (`AWS_ENDPOINT_URL`).
    pub fn aws_url(&self) -> String {
        format!("{}://{}", self.aws_scheme, self.aws_addr)
    }

    /// A token that, when cancelled, stops the server.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stop serving and wait for the servers to close.
    ///
    /// Order: records queued so far are written; the token is cancelled (the gateway drains
    /// in-flight requests, consumers finish the deliveries they started — anything cut short is
    /// redelivered after the restart); every task is awaited, at most a little longer than the
    /// gateway's drain; every app is unpublished; then the queue is closed (its writer commits
    /// what is queued) and the record writer releases the store.
    pub async fn shutdown(self) {
        self.platform.flush_records().await;
        self.shutdown.cancel();
        self.tasks.close();
        let limit = nimbus_gateway::DRAIN_TIMEOUT + Duration::from_secs(1);
        if tokio::time::timeout(limit, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?limit,
                "tasks still running at shutdown; unfinished deliveries will be redelivered"
            );
        }
        self.platform.unpublish();
        self.events.close().await;
        self.platform.records_stopped().await;
    }

    /// Wait until the shutdown token is cancelled, then shut down.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.shutdown().await;
    }
}

pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data directory {}", config.data_dir.display()))?;
    let token = load_or_create_token(&config.data_dir).context("prepare admin token")?;

    // Before the store is opened: a refused key must leave every file as it was.
    let master_key = {
        let (dir, source) = (config.data_dir.clone(), config.master_key.clone());
        tokio::task::spawn_blocking(move || nimbus_seal::open_for_data_dir(&dir, &source))
            .await
            .context("prepare the master key")?
            .context("prepare the master key")?
    };
    let store_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || RedbStore::open(&store_dir))
        .await
        .context("open store")?
        .context("open store")?;
    let store = Arc::new(store);
    let master_key = Arc::new(master_key);
    let secrets = nimbus_secrets::Secrets::new(store.clone(), master_key.clone());
    let store_for_admin: Arc<dyn nimbus_store::AdminStore> = store.clone();
    let api_keys = Arc::new(apikeys::AppApiKeys {
        keys: nimbus_apikeys::ApiKeys::new(store.clone()),
    });
    let keys = nimbus_aws::Keys::new(store.clone(), master_key.clone());
    let auth = Arc::new(auth::Auth {
        service: nimbus_auth::AuthService::new(
            store.clone(),
            master_key,
            config
                .smtp_url
                .as_deref()
                .map(nimbus_auth::mail::Mailer::from_url)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--smtp-url: {e}"))?,
        ),
    });
    let objects: Arc<dyn nimbus_store::ObjectStore> = store.clone();
    let kv: Arc<dyn nimbus_store::KvStore> = store.clone();
    let tables: Arc<dyn nimbus_store::tables::TableStore> = store.clone();
    let kv_service = nimbus_kv::Kv::new(kv.clone());
    let public_buckets = nimbus_objects::PublicBuckets::default();
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let queue = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || nimbus_store_redb::QueueEngine::open(store))
            .await
            .context("open the queue engine")?
            .context("open the queue engine")?
    };
    let mut triggers = events::Events::standard_triggers();
    triggers.push(Box::new(events::tables::TableTriggers {
        tables: tables.clone(),
    }));
    let events = events::Events::new(
        queue,
        triggers,
        Arc::new(nimbus_core::clock::SystemClock),
        tasks.clone(),
    );
    let deployments = deployments::Deployments::default();
    let aws = nimbus_aws::service(
        nimbus_aws::Services {
            s3: nimbus_objects::Objects::new(objects.clone()),
            access: nimbus_objects::Access::new(
                objects.clone(),
                keys.clone(),
                public_buckets.clone(),
            ),
            json: vec![
                Arc::new(nimbus_tables::DynamoService::new(tables.clone())),
                Arc::new(nimbus_tables::StreamsService::new(tables.clone())),
                Arc::new(nimbus_secrets::manager::SecretsManager {
                    secrets: secrets.clone(),
                }),
            ],
        },
        keys.clone(),
        config.aws_domain.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    // The local API's services: one line each.
    let local_api = Arc::new(
        local_api::LocalApi::new(deployments.clone())
            .with_aws(aws.clone(), keys.clone())
            .with_secrets(secrets.clone())
            .with(
                "/v1/queues/",
                Arc::new(local_api::Queues {
                    deployments: deployments.clone(),
                    events: events.clone(),
                }),
            )
            .with(
                "/v1/events",
                Arc::new(local_api::Bus {
                    deployments: deployments.clone(),
                    events: events.clone(),
                }),
            )
            .with(
                "/v1/kv/",
                Arc::new(nimbus_kv::LocalKv {
                    kv: kv_service.clone(),
                }),
            )
            .with(
                nimbus_secrets::local::PREFIX,
                Arc::new(nimbus_secrets::local::LocalSecrets {
                    secrets: secrets.clone(),
                }),
            ),
    );
    let services: Arc<dyn nimbus_runtime::Services> = local_api.clone();
    let executor = WasmExecutor::new(WasmConfig {
        cache_dir: config.data_dir.join(CACHE_DIR),
        max_instances: config.max_instances,
        services: Some(services.clone()),
        kv: Some(kv.clone()),
    })
    .map_err(|e| anyhow::anyhow!("{e:#}"))
    .context("start wasm executor")?;
    let process = tokio::task::spawn_blocking({
        let config = ProcessConfig {
            work_dir: config.data_dir.join("process"),
            sandbox: config.process_sandbox,
            // Nothing of the server's state is a function's business.
            hidden: [
                TOKEN_FILE,
                nimbus_store_redb::DATABASE_FILE,
                nimbus_store_redb::ARTIFACTS_DIR,
                nimbus_store_redb::OBJECTS_DIR,
                nimbus_aws::MASTER_KEY_FILE,
                nimbus_seal::CHECK_FILE,
                CACHE_DIR,
            ]
            .iter()
            .map(|name| config.data_dir.join(name))
            .collect(),
            services: Some(services),
        };
        move || ProcessExecutor::new(config)
    })
    .await
    .context("start process executor")?
    .context("start process executor")?;
    let gateway = Gateway::new(config.gateway.clone());
    gateway.set_async(events.clone());

    let platform = Platform::new(
        store,
        executors::Executors {
            wasm: Arc::new(executor),
            process: Arc::new(process),
        },
        gateway.clone(),
        deployments.clone(),
        events.clone(),
        deployments::AppServices {
            provisioner: Arc::new(deployments::Provisioners(vec![
                Arc::new(objects::Buckets::new(
                    objects.clone(),
                    keys.clone(),
                    public_buckets.clone(),
                )),
                Arc::new(kv::KvStores { store: kv.clone() }),
                Arc::new(tables::Tables {
                    store: tables.clone(),
                }),
                auth.clone(),
                api_keys.clone(),
            ])),
            mounter: Arc::new(deployments::Mounters(vec![auth.clone(), api_keys.clone()])),
        },
        platform::Lifecycle {
            idle_timeout: config.idle_timeout,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        },
    );
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!(
            "bind gateway to {} (in use? choose another with --listen)",
            config.listen
        )
    })?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| {
            format!(
                "bind admin API to {} (in use? choose another with --admin-listen)",
                config.admin_listen
            )
        })?;
    let aws_listener = TcpListener::bind(config.aws_listen)
        .await
        .with_context(|| {
            format!(
                "bind the AWS-compatible endpoint to {} (in use? choose another with --aws-listen)",
                config.aws_listen
            )
        })?;
    let gateway_addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let aws_addr = aws_listener.local_addr()?;
    let load_tls = |files: Vec<nimbus_wire::tls::CertFiles>, what: &str| {
        if files.is_empty() {
            return Ok(None);
        }
        let tls = nimbus_wire::tls::Tls::load(files).with_context(|| format!("{what} TLS"))?;
        tasks.spawn(tls.clone().watch(TLS_RELOAD_INTERVAL, shutdown.clone()));
        anyhow::Ok(Some(tls))
    };
    let tls = load_tls(config.tls.clone(), "gateway")?;
    let admin_tls = load_tls(config.admin_tls.iter().cloned().collect(), "admin API")?;
    let aws_tls = load_tls(
        config.aws_tls.iter().cloned().collect(),
        "AWS-compatible endpoint",
    )?;
    let scheme_of = |tls: &Option<_>| if tls.is_some() { "https" } else { "http" };
    let (admin_scheme, aws_scheme) = (scheme_of(&admin_tls), scheme_of(&aws_tls));
    tasks.spawn(nimbus_aws::serve(
        aws_listener,
        aws,
        aws_tls,
        shutdown.clone(),
    ));
    let redirect_addr = match config.http_redirect {
        None => None,
        Some(_) if tls.is_none() => {
            anyhow::bail!(
                "--http-redirect redirects to the gateway's HTTPS: give --tls-cert and --tls-key too"
            )
        }
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.with_context(|| {
                format!(
                    "bind the HTTP redirect to {addr} (in use? choose another with --http-redirect)"
                )
            })?;
            let bound = listener.local_addr()?;
            tasks.spawn(nimbus_wire::redirect::redirect_to_https(
                listener,
                gateway_addr.port(),
                config.gateway.header_read_timeout,
                shutdown.clone(),
            ));
            Some(bound)
        }
    };
    platform.set_gateway_url(format!("{}://{gateway_addr}", scheme_of(&tls)));
    // After the gateway's URL is known: it is the default issuer of apps' auth.
    platform.restore().await.context("restore deployed apps")?;

    tasks.spawn(nimbus_gateway::serve(
        listener,
        gateway,
        tls,
        shutdown.clone(),
    ));
    let router = admin::router(
        platform.clone(),
        events.clone(),
        admin::AdminServices {
            keys,
            objects: objects.clone(),
            tables: tables.clone(),
            kv: kv_service,
            auth: auth.service.clone(),
            secrets: secrets.clone(),
            api_keys: api_keys.keys.clone(),
        },
        Arc::new(
            admin::Access::load(&token, config.metrics_token.as_deref(), store_for_admin)
                .await
                .context("load the admin tokens")?,
        ),
    );
    tasks.spawn(nimbus_wire::serve_with(
        admin_listener,
        admin_tls,
        config.gateway.header_read_timeout,
        move |_peer| hyper_util::service::TowerToHyperService::new(router.clone()),
        shutdown.clone(),
    ));
    tasks.spawn(platform.clone().reap_idle_forever());
    tasks.spawn(events.clone().sweep_forever(shutdown.clone()));
    tasks.spawn(
        events::kv::KvRelay {
            store: kv.clone(),
            events: events.clone(),
            deployments: deployments.clone(),
        }
        .run(shutdown.clone()),
    );
    tasks.spawn(kv::purge_expired_forever(kv, shutdown.clone()));
    tasks.spawn(tables::sweep_forever(
        tables,
        config.table_sweep_interval,
        shutdown.clone(),
    ));
    if let Some(after) = config.abort_incomplete_uploads_after {
        tasks.spawn(objects::abort_stale_uploads_forever(
            objects.clone(),
            after,
            shutdown.clone(),
        ));
    }
    tasks.spawn(
        events::storage::StorageRelay {
            objects: objects.clone(),
            events: events.clone(),
            deployments: deployments.clone(),
        }
        .run(shutdown.clone()),
    );

    write_file(
        &config.data_dir.join(ADMIN_URL_FILE),
        &format!("{admin_scheme}://{admin_addr}\n"),
    )?;
    write_file(
        &config.data_dir.join(GATEWAY_URL_FILE),
        &format!("{}\n", platform.gateway_url()),
    )?;
    write_file(
        &config.data_dir.join(AWS_URL_FILE),
        &format!("{aws_scheme}://{aws_addr}\n"),
    )?;
    tracing::info!(gateway = %gateway_addr, admin = %admin_addr, aws = %aws_addr, data_dir = %config.data_dir.display(), "nimbus serving");

    Ok(RunningServer {
        gateway_addr,
        admin_addr,
        aws_addr,
        admin_scheme,
        aws_scheme,
        redirect_addr,
        token,
        platform,
        events,
        shutdown,
        tasks,
    })
}

fn write_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("write {}", path.display()))
}

/// Read the admin token, creating it (32 random bytes, hex, mode 0600) on first start.
fn load_or_create_token(dir: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(TOKEN_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}
