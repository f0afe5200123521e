//! Who may touch which bucket. Runs after s3s has checked the signature: the key's principal
//! is resolved once and left in the request's extensions for the operation; a bucket is
//! reachable by an operator's key, or by a key of the app that owns it. A copy also needs its
//! source bucket. Anonymous requests are refused, except reads (GET, HEAD) of objects in a
//! bucket its app declares `public_read`. A request the platform forwards for a function it
//! identified itself carries a [`Delegated`] principal instead of a signature.

use nimbus_aws::{Delegated, Keys, Principal};
use nimbus_store::{ObjectError, ObjectStore};
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{CopyObjectInput, CopySource, UploadPartCopyInput};
use s3s::{S3Request, S3Result, s3_error};
use std::sync::Arc;

pub struct Access {
    store: Arc<dyn ObjectStore>,
    keys: Keys,
    public: PublicBuckets,
}

/// The buckets anyone may read, as the deployed manifests declare them. Cheap to clone; read
/// without a lock.
#[derive(Clone, Default)]
pub struct PublicBuckets(Arc<arc_swap::ArcSwap<std::collections::HashSet<String>>>);

impl PublicBuckets {
    /// Replace the set.
    pub fn set(&self, buckets: std::collections::HashSet<String>) {
        self.0.store(Arc::new(buckets));
    }

    pub fn contains(&self, bucket: &str) -> bool {
        self.0.load().contains(bucket)
    }
}

impl Access {
    pub fn new(store: Arc<dyn ObjectStore>, keys: Keys, public: PublicBuckets) -> Access {
        Access {
            store,
            keys,
            public,
        }
    }

    /// May `principal` reach `bucket` (to write it, if `write`)? A missing bucket is left to
    /// the operation to report (`NoSuchBucket`), as S3 does for a caller who could own it.
    async fn reach(&self, principal: &Principal, bucket: &str, write: bool) -> S3Result<()> {
        let app = match principal {
            Principal::Operator => return Ok(()),
            Principal::App(app) => app,
            Principal::Anonymous => return Err(access_denied()),
            // A function reaches what its grants name, nothing else (grants name its own
            // app's buckets only).
            Principal::Function { grants, .. } => {
                let granted = if write {
                    grants.may_write_bucket(bucket)
                } else {
                    grants.may_read_bucket(bucket)
                };
                return if granted {
                    Ok(())
                } else {
                    Err(access_denied())
                };
            }
        };
        match self.store.bucket(bucket).await {
            Ok(info) if info.app.as_deref() == Some(app.as_str()) => Ok(()),
            Ok(_) => Err(access_denied()),
            Err(ObjectError::NoSuchBucket(_)) => Ok(()),
            Err(error) => Err(crate::error::s3_error(error, |_| false)),
        }
    }

    /// May `principal` do this operation on the bucket it names? If so, the operation finds
    /// the principal in the request's extensions.
    async fn authorize(&self, cx: &mut S3AccessContext<'_>, principal: Principal) -> S3Result<()> {
        let bucket = match cx.s3_path() {
            s3s::path::S3Path::Root => None,
            s3s::path::S3Path::Bucket { bucket } | s3s::path::S3Path::Object { bucket, .. } => {
                Some(bucket.to_string())
            }
        };
        let op = cx.s3_op().name();
        let is_function = matches!(principal, Principal::Function { .. });
        if is_function && matches!(op, "CreateBucket" | "DeleteBucket") {
            // Functions use the buckets their manifest declares.
            return Err(access_denied());
        }
        // Creating a bucket claims a name; whose it is, the operation decides.
        if let Some(bucket) = bucket
            && op != "CreateBucket"
        {
            self.reach(&principal, &bucket, !is_read(op)).await?;
        }
        cx.extensions_mut().insert(principal);
        Ok(())
    }

    async fn reach_source(
        &self,
        principal: Option<&Principal>,
        source: &CopySource,
    ) -> S3Result<()> {
        let principal = principal.ok_or_else(access_denied)?;
        match source {
            CopySource::Bucket { bucket, .. } => self.reach(principal, bucket, false).await,
            _ => Err(s3_error!(
                NotImplemented,
                "Copying from access points and outposts is not supported"
            )),
        }
    }
}

/// Operations that only read (a read-only grant allows them).
fn is_read(op: &str) -> bool {
    matches!(
        op,
        "GetObject"
            | "HeadObject"
            | "ListObjects"
            | "ListObjectsV2"
            | "ListObjectVersions"
            | "HeadBucket"
            | "GetBucketLocation"
            | "GetBucketVersioning"
            | "ListParts"
            | "ListMultipartUploads"
    )
}

pub(crate) fn access_denied() -> s3s::S3Error {
    s3_error!(AccessDenied, "Access Denied")
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if let Some(Delegated(principal)) = cx.extensions_mut().remove::<Delegated>() {
            return self.authorize(cx, principal).await;
        }
        let Some(credentials) = cx.credentials() else {
            let public_read = matches!(cx.s3_op().name(), "GetObject" | "HeadObject")
                && matches!(cx.s3_path(), s3s::path::S3Path::Object { bucket, .. } if self.public.contains(bucket));
            if public_read {
                cx.extensions_mut().insert(Principal::Anonymous);
                return Ok(());
            }
            return Err(access_denied());
        };
        let principal = match self.keys.principal(&credentials.access_key).await {
            Ok(Some(principal)) => principal,
            // Revoked between the signature check and now.
            Ok(None) => return Err(access_denied()),
            Err(error) => {
                tracing::error!(error = %error, "access key lookup");
                return Err(s3_error!(InternalError, "{error}"));
            }
        };
        let presented = cx
            .headers()
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| {
                cx.uri().query().and_then(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "X-Amz-Security-Token")
                        .map(|(_, v)| v.into_owned())
                })
            });
        if !self
            .keys
            .session_token_matches(&credentials.access_key, presented.as_deref())
        {
            return Err(s3_error!(
                InvalidToken,
                "The provided token is malformed or otherwise invalid."
            ));
        }
        self.authorize(cx, principal).await
    }

    async fn copy_object(&self, req: &mut S3Request<CopyObjectInput>) -> S3Result<()> {
        self.reach_source(req.extensions.get::<Principal>(), &req.input.copy_source)
            .await
    }

    async fn upload_part_copy(&self, req: &mut S3Request<UploadPartCopyInput>) -> S3Result<()> {
        self.reach_source(req.extensions.get::<Principal>(), &req.input.copy_source)
            .await
    }
}
