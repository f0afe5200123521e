//! Buckets an app declares in its manifest: created for it when it deploys, removed with it.

use nimbus_store::{BucketInfo, ObjectError, ObjectStore};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "bucket {bucket:?} already exists and belongs to {}; bucket names are global on the \
         endpoint, choose another",
        owner.as_deref().map_or("the operator".to_owned(), |o| format!("app {o:?}"))
    )]
    Taken {
        bucket: String,
        owner: Option<String>,
    },
    #[error(
        "app {app:?}'s buckets still hold objects ({}); remove it with --force to delete them \
         too, or empty the buckets first",
        .nonempty.join(", ")
    )]
    NotEmpty { app: String, nonempty: Vec<String> },
    #[error("object storage failure")]
    Store(#[from] ObjectError),
}

/// Make sure each of `buckets` exists and belongs to `app`, creating the missing ones.
pub async fn ensure_buckets(
    store: &dyn ObjectStore,
    app: &str,
    buckets: &[String],
) -> Result<Vec<BucketInfo>, ProvisionError> {
    let mut out = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let info = match store.bucket(bucket).await {
            Ok(info) => info,
            Err(ObjectError::NoSuchBucket(_)) => match store.create_bucket(bucket, Some(app)).await
            {
                Ok(info) => info,
                // Created by someone else in between.
                Err(ObjectError::BucketExists { app: owner, .. }) => {
                    return Err(ProvisionError::Taken {
                        bucket: bucket.clone(),
                        owner,
                    });
                }
                Err(error) => return Err(error.into()),
            },
            Err(error) => return Err(error.into()),
        };
        if info.app.as_deref() != Some(app) {
            return Err(ProvisionError::Taken {
                bucket: bucket.clone(),
                owner: info.app,
            });
        }
        out.push(info);
    }
    Ok(out)
}

/// Remove every bucket `app` owns. Buckets holding objects are refused unless `force`, which
/// deletes their objects first. Nothing is removed if any bucket is refused.
async fn app_buckets(store: &dyn ObjectStore, app: &str) -> Result<Vec<String>, ProvisionError> {
    Ok(store
        .buckets()
        .await?
        .into_iter()
        .filter(|b| b.app.as_deref() == Some(app))
        .map(|b| b.name)
        .collect())
}

/// Refuse (`NotEmpty`, naming them) if any of `app`'s buckets holds objects.
pub async fn check_app_buckets_empty(
    store: &dyn ObjectStore,
    app: &str,
) -> Result<(), ProvisionError> {
    let mut nonempty = Vec::new();
    for bucket in app_buckets(store, app).await? {
        if !store
            .list_objects(&bucket, "", None, 1)
            .await?
            .objects
            .is_empty()
        {
            nonempty.push(bucket);
        }
    }
    if nonempty.is_empty() {
        return Ok(());
    }
    Err(ProvisionError::NotEmpty {
        app: app.to_owned(),
        nonempty,
    })
}

pub async fn remove_app_buckets(
    store: &dyn ObjectStore,
    app: &str,
    force: bool,
) -> Result<Vec<String>, ProvisionError> {
    if !force {
        check_app_buckets_empty(store, app).await?;
    }
    let owned = app_buckets(store, app).await?;
    for bucket in &owned {
        // The app is going: its triggers with it, before its objects are deleted.
        store.set_notifications(bucket, Vec::new()).await?;
        loop {
            let page = store.list_objects(bucket, "", None, 1000).await?;
            for object in &page.objects {
                store.delete_object(bucket, &object.key).await?;
            }
            if page.objects.is_empty() || !page.truncated {
                break;
            }
        }
        match store.delete_bucket(bucket).await {
            Ok(()) | Err(ObjectError::NoSuchBucket(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(owned)
}

/// Abort every multipart upload begun before `cutoff_ms` (ms since the epoch): S3's
/// `AbortIncompleteMultipartUpload` lifecycle rule, for every bucket. How many were aborted.
pub async fn abort_stale_uploads(
    store: &dyn ObjectStore,
    cutoff_ms: u64,
) -> Result<usize, ObjectError> {
    let mut aborted = 0;
    for bucket in store.buckets().await? {
        for upload in store.uploads(&bucket.name, "").await? {
            if upload.initiated_ms >= cutoff_ms {
                continue;
            }
            match store
                .abort_upload(&bucket.name, &upload.key, &upload.id)
                .await
            {
                // Completed or aborted by its client meanwhile.
                Ok(()) | Err(ObjectError::NoSuchUpload(_)) => aborted += 1,
                Err(error) => return Err(error),
            }
        }
    }
    Ok(aborted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_store::NewObject;

    #[tokio::test]
    async fn stale_uploads_are_aborted_and_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = nimbus_store_redb::RedbStore::open(dir.path()).unwrap();
        store.create_bucket("b", Some("app")).await.unwrap();
        let old = store
            .create_upload("b", "old", NewObject::default())
            .await
            .unwrap();
        let body = Box::pin(futures::stream::iter([Ok(bytes::Bytes::from_static(b"p"))]));
        store
            .put_part(
                "b",
                "old",
                &old.id,
                1,
                nimbus_store::NewPart::default(),
                body,
            )
            .await
            .unwrap();
        let cutoff = old.initiated_ms + 1;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let fresh = store
            .create_upload("b", "fresh", NewObject::default())
            .await
            .unwrap();
        assert_eq!(abort_stale_uploads(&store, cutoff).await.unwrap(), 1);
        let left: Vec<String> = store
            .uploads("b", "")
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.id)
            .collect();
        assert_eq!(left, [fresh.id]);
        assert!(matches!(
            store.upload("b", "old", &old.id).await,
            Err(ObjectError::NoSuchUpload(_))
        ));
        assert_eq!(abort_stale_uploads(&store, cutoff).await.unwrap(), 0);
    }
}
