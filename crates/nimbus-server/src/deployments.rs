//! What is deployed, as one immutable snapshot: per app its active version, parsed spec,
//! pools, compiled bus rules and the cancellation token of its workers.
//!
//! The platform is the only writer: it builds a new map and publishes it whole (`ArcSwap`), so
//! a reader — the gateway's tables work the same way — sees the old snapshot or the new one,
//! never a mix, takes no lock and copies nothing. What changed is then reported to a
//! [`DeploymentObserver`] the composition root wires (the asynchronous side starts and stops
//! its consumers and schedulers there); the platform knows nothing of what observes it.

use arc_swap::ArcSwap;
use nimbus_core::AppSpec;
use nimbus_dispatch::Pool;
use nimbus_events::Rules;
use nimbus_store::VersionRecord;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One app's active version, ready to serve.
pub(crate) struct DeployedApp {
    pub(crate) version: VersionRecord,
    pub(crate) spec: AppSpec,
    pub(crate) pools: BTreeMap<String, Arc<Pool>>,
    /// The gateway stages of this version's routes (CORS, rate limits, authorizers).
    pub(crate) stages: nimbus_gateway::stages::AppStages,
    /// The platform services this version mounts on the gateway (its auth API).
    pub(crate) mounts: Mounts,
    /// What each of `spec.routes`, then each of `mounts.services`, answered (in that order).
    pub(crate) route_stats: Vec<Arc<nimbus_gateway::RouteStats>>,
    pub(crate) rules: Rules,
    /// The parsed `spec.events.schedules`, in the same order.
    pub(crate) schedules: Vec<nimbus_events::schedule::Schedule>,
    /// Cancelled when this version stops serving: its consumers and schedulers stop.
    pub(crate) workers: CancellationToken,
}

impl DeployedApp {
    pub(crate) fn name(&self) -> &str {
        self.spec.name.as_str()
    }
}

pub(crate) type Snapshot = BTreeMap<String, Arc<DeployedApp>>;

/// The published snapshot; cheap to clone and share.
#[derive(Clone, Default)]
pub(crate) struct Deployments {
    current: Arc<ArcSwap<Snapshot>>,
}

impl Deployments {
    /// The current snapshot (a reference count, no copy).
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub(crate) fn get(&self, app: &str) -> Option<Arc<DeployedApp>> {
        self.current.load().get(app).cloned()
    }

    /// Publish `next`; returns the snapshot it replaced. Only the platform calls this, under
    /// its deploy lock.
    pub(crate) fn publish(&self, next: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(next))
    }
}

/// Told what changed after each publish. Calls come in order, from the deploy lock.
#[async_trait::async_trait]
pub(crate) trait DeploymentObserver: Send + Sync {
    /// `app` began serving (a deploy, rollback or restore); its workers stop with
    /// `app.workers`.
    fn started(&self, app: &Arc<DeployedApp>);
    /// `app` stopped serving (replaced or removed); its workers token is already cancelled.
    fn stopped(&self, app: &Arc<DeployedApp>);
    /// The app named `app` was removed: whatever is kept for it goes too.
    async fn removed(&self, app: &str);
}

/// Makes what an app's manifest declares beside its functions exist (its buckets) before a
/// version serves, and takes it away with the app. Wired at the composition root; the platform
/// knows nothing of what it provisions.
#[async_trait::async_trait]
pub(crate) trait Provisioner: Send + Sync {
    /// Before `spec` serves (deploy, rollback, restore): create what it declares, or refuse
    /// the version. Idempotent.
    async fn provision(&self, spec: &AppSpec) -> Result<(), nimbus_core::error::Error>;
    /// Before `app` is removed: take away what it owns, refusing (unless `force`) to destroy
    /// data.
    async fn release(&self, app: &str, force: bool) -> Result<(), nimbus_core::error::Error>;
    /// Would [`Provisioner::release`] without `force` refuse? Asked of every provisioner
    /// before any releases, so a refusal destroys nothing.
    async fn check_release(&self, _app: &str) -> Result<(), nimbus_core::error::Error> {
        Ok(())
    }
}

/// Mounts what an app's manifest asks the platform to serve on the gateway beside its
/// functions (its `[auth]` API) when a version is prepared. Wired at the composition root.
#[async_trait::async_trait]
pub(crate) trait Mounter: Send + Sync {
    /// What `spec` mounts; `gateway_url` is where the gateway answers.
    async fn mount(
        &self,
        spec: &AppSpec,
        gateway_url: &str,
    ) -> Result<Mounts, nimbus_core::error::Error>;
}

/// What a version mounts: routes to services, and its own token issuer, if any.
#[derive(Clone, Default)]
pub(crate) struct Mounts {
    pub(crate) services: Vec<MountedService>,
    pub(crate) own_issuer: Option<nimbus_gateway::stages::OwnIssuer>,
    /// The app's API keys, for its `api_key` authorizers.
    pub(crate) api_keys: Option<Arc<nimbus_gateway::auth::apikey::ApiKeySet>>,
}

/// Several mounters as one: every one mounts, in order; what they mount is put together.
pub(crate) struct Mounters(pub(crate) Vec<Arc<dyn Mounter>>);

#[async_trait::async_trait]
impl Mounter for Mounters {
    async fn mount(
        &self,
        spec: &AppSpec,
        gateway_url: &str,
    ) -> Result<Mounts, nimbus_core::error::Error> {
        let mut all = Mounts::default();
        for mounter in &self.0 {
            let mounts = mounter.mount(spec, gateway_url).await?;
            all.services.extend(mounts.services);
            all.own_issuer = all.own_issuer.or(mounts.own_issuer);
            all.api_keys = all.api_keys.or(mounts.api_keys);
        }
        Ok(all)
    }
}

#[derive(Clone)]
pub(crate) struct MountedService {
    /// A literal path; the service answers everything under it.
    pub(crate) path: String,
    pub(crate) host: Option<String>,
    /// For logs and conflict messages (`auth`).
    pub(crate) name: &'static str,
    pub(crate) service: Arc<dyn nimbus_runtime::RouteService>,
}

impl MountedService {
    /// The route pattern it is mounted on: everything under its path.
    pub(crate) fn pattern(&self) -> String {
        format!("{}/{{*rest}}", self.path)
    }
}

/// What the platform asks of the services beside functions: to provision and release what an
/// app declares, and to mount what it serves.
pub(crate) struct AppServices {
    pub(crate) provisioner: Arc<dyn Provisioner>,
    pub(crate) mounter: Arc<dyn Mounter>,
}

/// Several provisioners as one: each provisions in order; releasing asks every one whether it
/// would refuse (unless `force`), then releases in reverse order.
pub(crate) struct Provisioners(pub(crate) Vec<Arc<dyn Provisioner>>);

#[async_trait::async_trait]
impl Provisioner for Provisioners {
    async fn provision(&self, spec: &AppSpec) -> Result<(), nimbus_core::error::Error> {
        for provisioner in &self.0 {
            provisioner.provision(spec).await?;
        }
        Ok(())
    }

    async fn release(&self, app: &str, force: bool) -> Result<(), nimbus_core::error::Error> {
        if !force {
            for provisioner in &self.0 {
                provisioner.check_release(app).await?;
            }
        }
        for provisioner in self.0.iter().rev() {
            provisioner.release(app, force).await?;
        }
        Ok(())
    }
}
