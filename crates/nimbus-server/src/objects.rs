//! The object service's part in deploys: an app's declared buckets are created (and its
//! `public_read` ones opened to anonymous reads, its `[[trigger.storage]]` set as their
//! notification rules) before it serves; removing the app removes its buckets and revokes its
//! access keys.

use crate::deployments::Provisioner;
use crate::events::storage::StorageTarget;
use nimbus_core::error::Error;
use nimbus_core::{AppSpec, ErrorCode};
use nimbus_objects::{ProvisionError, PublicBuckets};
use nimbus_store::{NotificationRule, ObjectStore};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

/// How long an incomplete multipart upload is kept by default.
pub(crate) const DEFAULT_UPLOAD_EXPIRY: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);
/// How often incomplete uploads are looked for.
const UPLOAD_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Abort uploads older than `after`, now and every [`UPLOAD_SWEEP_INTERVAL`] until `stop`.
pub(crate) async fn abort_stale_uploads_forever(
    objects: Arc<dyn ObjectStore>,
    after: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let cutoff = now.saturating_sub(after.as_millis() as u64);
        match nimbus_objects::abort_stale_uploads(&*objects, cutoff).await {
            Ok(0) => {}
            Ok(aborted) => tracing::info!(
                aborted,
                after_secs = after.as_secs(),
                "incomplete multipart uploads aborted"
            ),
            Err(error) => {
                tracing::error!(error = %crate::report(&error), "aborting incomplete multipart uploads failed")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(UPLOAD_SWEEP_INTERVAL) => {}
        }
    }
}

pub(crate) struct Buckets {
    pub(crate) objects: Arc<dyn ObjectStore>,
    pub(crate) keys: nimbus_aws::Keys,
    pub(crate) public: PublicBuckets,
    /// Each app's public buckets, from its serving version.
    public_by_app: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Buckets {
    pub(crate) fn new(
        objects: Arc<dyn ObjectStore>,
        keys: nimbus_aws::Keys,
        public: PublicBuckets,
    ) -> Buckets {
        Buckets {
            objects,
            keys,
            public,
            public_by_app: Mutex::default(),
        }
    }

    fn set_public(&self, app: &str, buckets: Option<Vec<String>>) {
        let mut by_app = self.public_by_app.lock().unwrap_or_else(|p| p.into_inner());
        match buckets {
            Some(buckets) => by_app.insert(app.to_owned(), buckets),
            None => by_app.remove(app),
        };
        let all: HashSet<String> = by_app.values().flatten().cloned().collect();
        self.public.set(all);
    }
}

/// The notification rules of `bucket` that `spec`'s storage triggers make.
fn notification_rules(spec: &AppSpec, bucket: &str) -> Vec<NotificationRule> {
    spec.events
        .storage_triggers
        .iter()
        .filter(|t| t.bucket == bucket)
        .map(|t| NotificationRule {
            target: StorageTarget {
                app: spec.name.to_string(),
                target: t.target.clone(),
            }
            .encode(),
            filter: t.filter.clone(),
        })
        .collect()
}

fn provision_error(error: ProvisionError) -> Error {
    let code = match &error {
        ProvisionError::Taken { .. } => ErrorCode::BucketExists,
        ProvisionError::NotEmpty { .. } => ErrorCode::BucketNotEmpty,
        ProvisionError::Store(_) => ErrorCode::Internal,
    };
    let message = error.to_string();
    Error::new(code, message).caused_by(error)
}

#[async_trait::async_trait]
impl Provisioner for Buckets {
    async fn provision(&self, spec: &AppSpec) -> Result<(), Error> {
        let names: Vec<String> = spec.buckets.iter().map(|b| b.name.clone()).collect();
        nimbus_objects::ensure_buckets(&*self.objects, spec.name.as_str(), &names)
            .await
            .map_err(provision_error)?;
        for bucket in &names {
            let rules = notification_rules(spec, bucket);
            self.objects
                .set_notifications(bucket, rules)
                .await
                .map_err(|error| provision_error(error.into()))?;
        }
        let public = spec
            .buckets
            .iter()
            .filter(|b| b.public_read)
            .map(|b| b.name.clone())
            .collect();
        self.set_public(spec.name.as_str(), Some(public));
        Ok(())
    }

    async fn check_release(&self, app: &str) -> Result<(), Error> {
        nimbus_objects::check_app_buckets_empty(&*self.objects, app)
            .await
            .map_err(provision_error)
    }

    async fn release(&self, app: &str, force: bool) -> Result<(), Error> {
        let removed = nimbus_objects::remove_app_buckets(&*self.objects, app, force)
            .await
            .map_err(provision_error)?;
        self.set_public(app, None);
        let revoked = self.keys.revoke_app(app).await.map_err(|error| {
            let message = error.to_string();
            Error::new(ErrorCode::Internal, message).caused_by(error)
        })?;
        if !removed.is_empty() || revoked > 0 {
            tracing::info!(
                app,
                buckets = removed.len(),
                keys = revoked,
                "removed with the app"
            );
        }
        Ok(())
    }
}
