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
pub async fn remove_app_buckets(
    store: &dyn ObjectStore,
    app: &str,
    force: bool,
) -> Result<Vec<String>, ProvisionError> {
    let owned: Vec<String> = store
        .buckets()
        .await?
        .into_iter()
        .filter(|b| b.app.as_deref() == Some(app))
        .map(|b| b.name)
        .collect();
    if !force {
        let mut nonempty = Vec::new();
        for bucket in &owned {
            if !store
                .list_objects(bucket, "", None, 1)
                .await?
                .objects
                .is_empty()
            {
                nonempty.push(bucket.clone());
            }
        }
        if !nonempty.is_empty() {
            return Err(ProvisionError::NotEmpty {
                app: app.to_owned(),
                nonempty,
            });
        }
    }
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
