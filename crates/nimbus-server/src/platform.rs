//! The platform: deployed apps, their pools, and the operations of the admin API.
//!
//! Deploys, rollbacks and removals are serialized by one lock and follow the same order:
//! prepare everything that can fail (parse the manifest, load and link every component, build
//! the new routing table and check it for conflicts) *before* committing anything; then commit
//! the version to the store; then swap the in-memory state and the gateway's table. A refused
//! deploy therefore changes nothing, and the previous version keeps serving throughout.

use crate::deployments::{
    AppServices, DeployedApp, DeploymentObserver, Deployments, MountedService, Mounter,
    Provisioner, Snapshot,
};
use crate::records::RecordWriter;
use nimbus_api::{AppInfo, DeployRequest, DeployResponse, FunctionInfo, LoadedInfo, RouteInfo};
use nimbus_core::error::Error;
use nimbus_core::{ErrorCode, FunctionKind, InstanceMode, Name};
use nimbus_dispatch::{Pool, PoolConfig};
use nimbus_gateway::router::{RouteEntry, RouteTable};
use nimbus_gateway::stages::{AppStages, StageSources};
use nimbus_gateway::{Gateway, Handler, RouteTarget};
use nimbus_runtime::{Artifact, Executor, FunctionIdentity, LoadSource};
use nimbus_store::{NewVersion, RecordStore, Registry, StoreError, VersionRecord};
use nimbus_store_redb::RedbStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Callers allowed to wait for a permit, per unit of `max_concurrency`.
pub const WAIT_QUEUE_FACTOR: usize = 4;

pub struct Platform {
    store: Arc<RedbStore>,
    executor: Arc<dyn Executor>,
    gateway: Arc<Gateway>,
    records: Arc<RecordWriter>,
    metrics: Arc<nimbus_telemetry::Metrics>,
    deployments: Deployments,
    observer: Arc<dyn DeploymentObserver>,
    provisioner: Arc<dyn Provisioner>,
    mounter: Arc<dyn Mounter>,
    deploy_lock: tokio::sync::Mutex<()>,
    idle_timeout: Duration,
    shutdown: CancellationToken,
    /// Every background task; shutdown waits for them.
    tasks: TaskTracker,
    /// Set once, when the gateway has bound its port.
    gateway_url: std::sync::OnceLock<String>,
    pub(crate) compiled: AtomicU64,
    pub(crate) cache_hits: AtomicU64,
    pub(crate) pooling: bool,
    pub(crate) sandbox: nimbus_runtime_process::sandbox::Capabilities,
}

/// The user-facing form of a storage error.
pub(crate) fn store_error(error: StoreError) -> Error {
    match error {
        StoreError::AppNotFound(app) => Error::new(
            ErrorCode::AppNotFound,
            format!("no app named {app:?}; `nimbus apps` lists them"),
        ),
        StoreError::NoPreviousVersion(app) => Error::new(
            ErrorCode::NoPreviousVersion,
            format!("app {app:?} has no earlier version to roll back to"),
        ),
        StoreError::ArtifactNotFound(digest) => Error::new(
            ErrorCode::ArtifactNotFound,
            format!("artifact {digest} was never uploaded; PUT it to /v1/artifacts/{digest} first"),
        ),
        StoreError::DigestMismatch { expected, actual } => Error::new(
            ErrorCode::DigestMismatch,
            format!("uploaded bytes hash to {actual}, not {expected}"),
        ),
        error @ StoreError::Backend(_) => {
            Error::new(ErrorCode::Internal, "storage failure; see the server log").caused_by(error)
        }
    }
}

/// How the platform's background work lives and ends.
pub(crate) struct Lifecycle {
    /// Idle instances older than this are dropped (scale to zero).
    pub(crate) idle_timeout: Duration,
    pub(crate) shutdown: CancellationToken,
    /// The server's one task tracker.
    pub(crate) tasks: TaskTracker,
}

impl Platform {
    pub(crate) fn new(
        store: Arc<RedbStore>,
        executors: crate::executors::Executors,
        gateway: Arc<Gateway>,
        deployments: Deployments,
        observer: Arc<dyn DeploymentObserver>,
        services: AppServices,
        lifecycle: Lifecycle,
    ) -> Arc<Platform> {
        let Lifecycle {
            idle_timeout,
            shutdown,
            tasks,
        } = lifecycle;
        let pooling = executors.wasm.is_pooling();
        let sandbox = executors.process.capabilities();
        let executor = Arc::new(executors);
        let metrics = Arc::new(nimbus_telemetry::Metrics::new());
        let records = RecordWriter::start(store.clone(), metrics.clone(), shutdown.clone(), &tasks);
        Arc::new(Platform {
            store,
            executor,
            gateway,
            records,
            metrics,
            deployments,
            observer,
            provisioner: services.provisioner,
            mounter: services.mounter,
            deploy_lock: tokio::sync::Mutex::new(()),
            idle_timeout,
            shutdown,
            tasks,
            gateway_url: std::sync::OnceLock::new(),
            compiled: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            pooling,
            sandbox,
        })
    }

    pub(crate) fn set_gateway_url(&self, url: String) {
        if self.gateway_url.set(url).is_err() {
            tracing::warn!("the gateway URL was already set");
        }
    }

    pub(crate) fn gateway_url(&self) -> &str {
        self.gateway_url.get().map_or("", String::as_str)
    }

    /// Requests the gateway's stages refused since the server started.
    pub(crate) fn refused(&self) -> nimbus_gateway::Refused {
        self.gateway.refused()
    }

    pub(crate) async fn flush_records(&self) {
        self.records.flush().await;
    }

    /// Wait for the record writer to drain and stop (after shutdown was signalled).
    pub(crate) async fn records_stopped(&self) {
        self.records.stopped().await;
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.deployments.snapshot()
    }

    /// Every metric in Prometheus's text format: the invocation records' and the present
    /// state of every deployed version's pool, and of `queues`.
    pub(crate) fn metrics(&self, queues: &[nimbus_telemetry::QueueState<'_>]) -> String {
        let snapshot = self.snapshot();
        let pools = snapshot.iter().flat_map(|(app, deployed)| {
            deployed
                .pools
                .iter()
                .map(move |(function, pool)| nimbus_telemetry::PoolState {
                    app,
                    function,
                    version: pool.config().version,
                    busy: pool.busy_count(),
                    idle: pool.idle_count(),
                    throttles: pool.throttle_count(),
                })
        });
        let routes = snapshot.iter().flat_map(|(app, deployed)| {
            deployed.route_stats.iter().flat_map(move |stats| {
                stats.answered().filter(|(_, answered)| *answered > 0).map(
                    move |(code, answered)| nimbus_telemetry::RouteState {
                        app,
                        version: deployed.version.number,
                        route: &stats.route,
                        code,
                        answered,
                    },
                )
            })
        });
        self.metrics.render(pools, routes, queues.iter().copied())
    }

    /// The current snapshot plus `app`'s new version (or without `app`): what a deploy,
    /// rollback or removal will publish.
    fn next_snapshot(&self, app: &str, deployed: Option<DeployedApp>) -> Snapshot {
        let mut next = Snapshot::clone(&self.snapshot());
        match deployed {
            Some(deployed) => next.insert(app.to_owned(), Arc::new(deployed)),
            None => next.remove(app),
        };
        next
    }

    /// Load every app's active version; used at startup.
    pub(crate) async fn restore(&self) -> anyhow::Result<()> {
        let _guard = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let apps = store.apps().await.map_err(store_error)?;
        let mut loaded = BTreeMap::new();
        for app in apps {
            let Some(active) = app.active else { continue };
            let store = self.store.clone();
            let name = app.name.clone();
            let version = store.version(&name, active).await.map_err(store_error)?;
            let prepared = match self.prepare(version).await {
                Ok((deployed, _)) => self
                    .provisioner
                    .provision(&deployed.spec)
                    .await
                    .map(|()| deployed),
                Err(error) => Err(error),
            };
            match prepared {
                Ok(deployed) => {
                    loaded.insert(app.name.clone(), Arc::new(deployed));
                }
                // One broken app must not keep the others from serving.
                Err(error) => {
                    tracing::error!(app = %app.name, error = %error, "could not restore app")
                }
            }
        }
        let table = build_routes(&loaded).map_err(|e| anyhow::anyhow!("{}", e.message))?;
        self.install(loaded, table);
        Ok(())
    }

    /// Parse, load and pool one stored version, without touching live state.
    async fn prepare(
        &self,
        version: VersionRecord,
    ) -> Result<(DeployedApp, Vec<LoadedInfo>), Error> {
        let manifest = nimbus_manifest::parse(
            &format!("{} (version {})", version.app, version.number),
            &version.manifest,
        )
        .map_err(|e| Error::new(ErrorCode::InvalidManifest, e.to_string()))?;
        self.prepare_parsed(version, manifest).await
    }

    async fn prepare_parsed(
        &self,
        version: VersionRecord,
        manifest: nimbus_manifest::Manifest,
    ) -> Result<(DeployedApp, Vec<LoadedInfo>), Error> {
        let nimbus_manifest::Manifest {
            app: spec,
            compiled,
            ..
        } = manifest;
        let mut pools = BTreeMap::new();
        let mut infos = Vec::new();
        for (name, function) in &spec.functions {
            let digest = version
                .functions
                .get(name.as_str())
                .cloned()
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::BadRequest,
                        format!("no artifact was given for function {name:?}"),
                    )
                })?;
            let store = self.store.clone();
            let key = digest.clone();
            let bytes = store.get_artifact(&key).await.map_err(store_error)?;
            let started = Instant::now();
            let (loaded, source) = self
                .executor
                .load(
                    &FunctionIdentity {
                        app: spec.name.as_str().into(),
                        version: version.number,
                    },
                    function,
                    &Artifact { digest, bytes },
                )
                .await
                .map_err(|e| Error::new(e.code, format!("function {name:?}: {}", e.message)))?;
            match source {
                LoadSource::Compiled => self.compiled.fetch_add(1, Ordering::Relaxed),
                LoadSource::Cache => self.cache_hits.fetch_add(1, Ordering::Relaxed),
            };
            infos.push(LoadedInfo {
                function: name.to_string(),
                source: match (source, &function.kind) {
                    (LoadSource::Cache, _) => "cache".into(),
                    (LoadSource::Compiled, FunctionKind::Wasm) => "compiled".into(),
                    (LoadSource::Compiled, FunctionKind::Process { .. }) => "unpacked".into(),
                },
                load_ms: started.elapsed().as_millis() as u64,
            });
            let config = PoolConfig {
                app: spec.name.as_str().into(),
                function: name.as_str().into(),
                version: version.number,
                timeout: function.timeout,
                max_concurrency: function.max_concurrency,
                max_waiting: function.max_concurrency as usize * WAIT_QUEUE_FACTOR,
                wait_timeout: function.timeout.min(Duration::from_secs(10)),
                idle_timeout: self.idle_timeout,
                min_instances: function.min_instances,
                memory_bytes: function.memory_bytes,
            };
            pools.insert(
                name.to_string(),
                Pool::new(loaded, config, self.records.clone()),
            );
        }
        let mounts = self.mounter.mount(&spec, self.gateway_url()).await?;
        let route_stats = spec
            .routes
            .iter()
            .map(|r| r.path.clone())
            .chain(mounts.services.iter().map(MountedService::pattern))
            .map(|route| Arc::new(nimbus_gateway::RouteStats::new(route)))
            .collect();
        Ok((
            DeployedApp {
                version,
                route_stats,
                stages: AppStages::new(
                    &spec,
                    StageSources {
                        client: self.gateway.outbound(),
                        own: mounts.own_issuer.as_ref(),
                        api_keys: mounts.api_keys.as_ref(),
                        functions: &pools,
                    },
                ),
                mounts,
                spec,
                pools,
                rules: compiled.rules,
                schedules: compiled.schedules,
                workers: self.shutdown.child_token(),
            },
            infos,
        ))
    }

    /// Publish `apps` and `table`, then tell the observer which versions stopped and started.
    fn install(&self, apps: Snapshot, table: RouteTable<Arc<RouteTarget>>) {
        for app in apps.values() {
            for pool in app.pools.values() {
                if pool.config().min_instances > 0 && pool.idle_count() + pool.busy_count() == 0 {
                    let pool = pool.clone();
                    self.tasks.spawn(async move { pool.prewarm().await });
                }
            }
        }
        let previous = self.deployments.publish(apps);
        self.gateway.set_routes(table);
        let current = self.snapshot();
        // Versions that stopped serving stop consuming; new ones start.
        for (name, old) in previous.iter() {
            if current.get(name).is_none_or(|new| !Arc::ptr_eq(new, old)) {
                old.workers.cancel();
                self.observer.stopped(old);
            }
        }
        for (name, new) in current.iter() {
            if previous.get(name).is_none_or(|old| !Arc::ptr_eq(new, old)) {
                self.observer.started(new);
            }
        }
    }

    pub async fn deploy(&self, request: DeployRequest) -> Result<DeployResponse, Error> {
        let manifest = nimbus_manifest::parse(&request.manifest_path, &request.manifest)
            .map_err(|e| Error::new(ErrorCode::InvalidManifest, e.to_string()))?;
        let declared: Vec<&str> = manifest.app.functions.keys().map(Name::as_str).collect();
        for name in &declared {
            if !request.artifacts.contains_key(*name) {
                return Err(Error::new(
                    ErrorCode::BadRequest,
                    format!("no artifact was given for function {name:?}"),
                ));
            }
        }
        if let Some(extra) = request
            .artifacts
            .keys()
            .find(|k| !declared.contains(&k.as_str()))
        {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!("artifact given for {extra:?}, which the manifest does not declare"),
            ));
        }

        let _guard = self.deploy_lock.lock().await;
        let app_name = manifest.app.name.to_string();
        let new_version = NewVersion {
            manifest: request.manifest.clone(),
            functions: request.artifacts.clone(),
        };
        // Deploys are serialized by the lock, so the store will assign exactly latest + 1.
        let store = self.store.clone();
        let name = app_name.clone();
        let latest = match store.app(&name).await.map_err(store_error) {
            Ok(record) => record.latest,
            Err(error) if error.code == ErrorCode::AppNotFound => 0,
            Err(error) => return Err(error),
        };
        let pending = VersionRecord {
            app: app_name.clone(),
            number: latest + 1,
            digest: new_version.digest(),
            manifest: new_version.manifest.clone(),
            functions: new_version.functions.clone(),
            created_ms: 0,
        };
        let (deployed, infos) = self.prepare_parsed(pending, manifest).await?;
        let response = describe(&deployed, infos);
        let spec = deployed.spec.clone();
        let apps = self.next_snapshot(&app_name, Some(deployed));
        let table = build_routes(&apps)?;
        self.provisioner.provision(&spec).await?;

        let store = self.store.clone();
        let name = app_name.clone();
        let committed = store
            .deploy(&name, new_version)
            .await
            .map_err(store_error)?;
        if committed.number != latest + 1 {
            tracing::error!(app = %app_name, expected = latest + 1, got = committed.number, "version numbering raced");
        }
        self.install(apps, table);
        tracing::info!(app = %app_name, version = committed.number, "deployed");
        Ok(response)
    }

    pub async fn rollback(&self, app: &str) -> Result<DeployResponse, Error> {
        let _guard = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let name = app.to_owned();
        let record = store.app(&name).await.map_err(store_error)?;
        let Some(&previous) = record.history.iter().rev().nth(1) else {
            return Err(store_error(StoreError::NoPreviousVersion(app.to_owned())));
        };
        let store = self.store.clone();
        let name = app.to_owned();
        let version = store.version(&name, previous).await.map_err(store_error)?;
        let (deployed, infos) = self.prepare(version).await?;
        let response = describe(&deployed, infos);
        let spec = deployed.spec.clone();
        let apps = self.next_snapshot(app, Some(deployed));
        let table = build_routes(&apps)?;
        self.provisioner.provision(&spec).await?;
        let store = self.store.clone();
        let name = app.to_owned();
        store.rollback(&name).await.map_err(store_error)?;
        self.install(apps, table);
        tracing::info!(app, version = previous, "rolled back");
        Ok(response)
    }

    /// Remove `app`; what it owns (buckets, keys) goes too — buckets holding objects only with
    /// `force`.
    pub async fn remove(&self, app: &str, force: bool) -> Result<AppInfo, Error> {
        let _guard = self.deploy_lock.lock().await;
        let info = self.app_infos().into_iter().find(|a| a.name == app);
        let store = self.store.clone();
        let name = app.to_owned();
        store.app(&name).await.map_err(store_error)?;
        self.provisioner.release(app, force).await?;
        store.remove_app(&name).await.map_err(store_error)?;
        let apps = self.next_snapshot(app, None);
        let table = build_routes(&apps)?;
        self.install(apps, table);
        self.observer.removed(app).await;
        tracing::info!(app, "removed");
        Ok(info.unwrap_or(AppInfo {
            name: app.to_owned(),
            active_version: None,
            latest_version: 0,
            functions: vec![],
            routes: 0,
        }))
    }

    pub fn app_infos(&self) -> Vec<AppInfo> {
        self.snapshot()
            .values()
            .map(|app| AppInfo {
                name: app.spec.name.to_string(),
                active_version: Some(app.version.number),
                latest_version: app.version.number,
                functions: app.spec.functions.keys().map(|n| n.to_string()).collect(),
                routes: app.spec.routes.len(),
            })
            .collect()
    }

    pub(crate) async fn app_infos_with_latest(&self) -> Result<Vec<AppInfo>, Error> {
        let store = self.store.clone();
        let records = store.apps().await.map_err(store_error)?;
        let mut infos = self.app_infos();
        for info in &mut infos {
            if let Some(record) = records.iter().find(|r| r.name == info.name) {
                info.latest_version = record.latest;
            }
        }
        Ok(infos)
    }

    pub fn function_infos(&self) -> Vec<FunctionInfo> {
        let mut out = Vec::new();
        for app in self.snapshot().values() {
            for (name, spec) in &app.spec.functions {
                let pool = app.pools.get(name.as_str());
                out.push(FunctionInfo {
                    app: app.spec.name.to_string(),
                    name: name.to_string(),
                    version: app.version.number,
                    artifact: app
                        .version
                        .functions
                        .get(name.as_str())
                        .cloned()
                        .unwrap_or_default(),
                    memory_bytes: spec.memory_bytes,
                    grants: spec.permissions(),
                    timeout_ms: spec.timeout.as_millis() as u64,
                    max_concurrency: spec.max_concurrency,
                    runtime: match &spec.kind {
                        FunctionKind::Wasm => "wasm".into(),
                        FunctionKind::Process { runtime, .. } => runtime.as_str().into(),
                    },
                    instance: match spec.instance {
                        InstanceMode::Reuse => "reuse".into(),
                        InstanceMode::Fresh => "fresh".into(),
                    },
                    idle_instances: pool.map(|p| p.idle_count()).unwrap_or(0),
                    busy_instances: pool.map(|p| p.busy_count()).unwrap_or(0),
                });
            }
        }
        out
    }

    pub fn route_infos(&self) -> Vec<RouteInfo> {
        self.gateway
            .routes()
            .entries()
            .map(|entry| RouteInfo {
                app: entry.target.app.clone(),
                function: entry.target.function.clone(),
                path: entry.path.clone(),
                methods: entry.methods.clone(),
                host: entry.host.clone(),
            })
            .collect()
    }

    /// The pool of `app`/`function`; with no app, the only function of that name.
    pub fn pool(&self, app: Option<&str>, function: &str) -> Result<Arc<Pool>, Error> {
        let apps = self.snapshot();
        let mut found: Vec<(&String, Arc<Pool>)> = apps
            .iter()
            .filter(|(name, _)| app.is_none_or(|a| a == name.as_str()))
            .filter_map(|(name, deployed)| deployed.pools.get(function).map(|p| (name, p.clone())))
            .collect();
        match found.len() {
            0 => {
                if let Some(app) = app
                    && !apps.contains_key(app)
                {
                    return Err(store_error(StoreError::AppNotFound(app.to_owned())));
                }
                Err(Error::new(
                    ErrorCode::FunctionNotFound,
                    format!("no function named {function:?}; `nimbus functions` lists them"),
                ))
            }
            1 => Ok(found.remove(0).1),
            _ => Err(Error::new(
                ErrorCode::BadRequest,
                format!(
                    "function {function:?} exists in several apps ({}); name it as APP/{function}",
                    found
                        .iter()
                        .map(|(a, _)| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// The deployed app named `app`.
    pub(crate) fn app(&self, app: &str) -> Result<Arc<DeployedApp>, Error> {
        self.deployments
            .get(app)
            .ok_or_else(|| store_error(StoreError::AppNotFound(app.to_owned())))
    }

    pub(crate) fn store(&self) -> Arc<RedbStore> {
        self.store.clone()
    }

    pub(crate) fn record_store(&self) -> Arc<dyn RecordStore> {
        self.store.clone()
    }

    /// Stop serving everything (at shutdown, after every task has stopped): publish an empty
    /// snapshot and an empty routing table. This also breaks the one reference cycle of a
    /// running server — pools hold their functions, functions hold the local API, the local
    /// API reads the snapshot that holds the pools — so the store is released.
    pub(crate) fn unpublish(&self) {
        let previous = self.deployments.publish(Snapshot::new());
        self.gateway.set_routes(RouteTable::default());
        for app in previous.values() {
            app.workers.cancel();
            self.observer.stopped(app);
        }
    }

    /// Periodically drop instances idle past the idle timeout (scale to zero).
    pub(crate) async fn reap_idle_forever(self: Arc<Self>) {
        let period =
            (self.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let now = Instant::now();
            for app in self.snapshot().values() {
                for pool in app.pools.values() {
                    pool.reap_idle(now);
                    if pool.config().min_instances > 0 {
                        let pool = pool.clone();
                        self.tasks.spawn(async move { pool.prewarm().await });
                    }
                }
            }
        }
    }
}

fn describe(app: &DeployedApp, functions: Vec<LoadedInfo>) -> DeployResponse {
    DeployResponse {
        app: app.spec.name.to_string(),
        version: app.version.number,
        digest: app.version.digest.clone(),
        functions,
        routes: app
            .spec
            .routes
            .iter()
            .map(|r| RouteInfo {
                app: app.spec.name.to_string(),
                function: r.function.to_string(),
                path: r.path.clone(),
                methods: r.methods.clone(),
                host: r.host.clone(),
            })
            .collect(),
    }
}

/// The gateway table for a set of deployed apps; conflicts between apps are refused here.
fn build_routes(apps: &Snapshot) -> Result<RouteTable<Arc<RouteTarget>>, Error> {
    let mut entries = Vec::new();
    for (name, app) in apps {
        let stats = |index: usize| {
            app.route_stats
                .get(index)
                .cloned()
                .unwrap_or_else(|| Arc::new(nimbus_gateway::RouteStats::new("")))
        };
        for (index, route) in app.spec.routes.iter().enumerate() {
            let function = route.function.to_string();
            let Some(pool) = app.pools.get(&function) else {
                continue;
            };
            entries.push(RouteEntry {
                host: route.host.clone(),
                path: route.path.clone(),
                methods: route.methods.clone(),
                owner: format!("app {name:?} (function {function:?})"),
                target: Arc::new(RouteTarget {
                    app: name.clone(),
                    function,
                    handler: Handler::Function(pool.clone()),
                    stages: app.stages.route(index),
                    stats: stats(index),
                }),
            });
        }
        for (offset, mounted) in app.mounts.services.iter().enumerate() {
            entries.push(RouteEntry {
                host: mounted.host.clone(),
                path: mounted.pattern(),
                methods: Vec::new(),
                owner: format!("app {name:?} (its {} API)", mounted.name),
                target: Arc::new(RouteTarget {
                    app: name.clone(),
                    function: mounted.name.to_owned(),
                    handler: Handler::Service(mounted.service.clone()),
                    stages: app.stages.service(),
                    stats: stats(app.spec.routes.len() + offset),
                }),
            });
        }
    }
    RouteTable::build(entries).map_err(|e| Error::new(ErrorCode::RouteConflict, e.to_string()))
}
