//! The admin API of the object service: access keys for the AWS-compatible endpoint, buckets,
//! and objects (streamed both ways) for the CLI's `buckets`, `keys`, `objects` and `cp`.

use super::{AdminState, ApiFailure, ApiResult};
use axum::Json;
use axum::body::Body as AxumBody;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::TryStreamExt;
use nimbus_api::{
    AccessKey, BucketEntry, CreateBucketRequest, CreateKeyRequest, ObjectEntry, ObjectPage,
};
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_store::{BucketInfo, NewObject, ObjectError, ObjectInfo, PutCondition, Registry};
use serde::Deserialize;

/// Most objects one listing page holds.
const MAX_PAGE: usize = 1000;

pub(super) fn routes() -> axum::Router<AdminState> {
    use axum::routing::{delete, get};
    axum::Router::new()
        .route("/v1/keys", get(keys).post(create_key))
        .route("/v1/keys/{id}", delete(revoke_key))
        .route("/v1/buckets", get(buckets).post(create_bucket))
        .route("/v1/buckets/{bucket}", delete(delete_bucket))
        .route("/v1/buckets/{bucket}/objects", get(list_objects))
        .route(
            "/v1/buckets/{bucket}/objects/{*key}",
            get(get_object).put(put_object).delete(delete_object),
        )
}

pub(crate) fn object_error(error: ObjectError) -> Error {
    let code = match &error {
        ObjectError::NoSuchBucket(_) => ErrorCode::BucketNotFound,
        ObjectError::BucketExists { .. } => ErrorCode::BucketExists,
        ObjectError::BucketNotEmpty(_) => ErrorCode::BucketNotEmpty,
        ObjectError::NoSuchKey { .. } => ErrorCode::ObjectNotFound,
        ObjectError::InvalidKey(_)
        | ObjectError::InvalidRange { .. }
        | ObjectError::Body(_)
        | ObjectError::PreconditionFailed
        | ObjectError::NoSuchUpload(_)
        | ObjectError::InvalidPart(_)
        | ObjectError::InvalidPartOrder
        | ObjectError::PartTooSmall { .. } => ErrorCode::BadRequest,
        ObjectError::Backend(_) => ErrorCode::Internal,
    };
    let message = error.to_string();
    Error::new(code, message).caused_by(error)
}

fn key_error(error: nimbus_aws::KeyError) -> Error {
    let message = error.to_string();
    Error::new(ErrorCode::Internal, message).caused_by(error)
}

fn access_key(info: nimbus_aws::KeyInfo, secret: Option<String>) -> AccessKey {
    AccessKey {
        id: info.id,
        app: info.app,
        created_ms: info.created_ms,
        description: info.description,
        secret,
    }
}

fn bucket_entry(info: BucketInfo) -> BucketEntry {
    BucketEntry {
        name: info.name,
        app: info.app,
        created_ms: info.created_ms,
    }
}

fn object_entry(info: ObjectInfo) -> ObjectEntry {
    ObjectEntry {
        key: info.key,
        size: info.size,
        etag: info.etag,
        last_modified_ms: info.last_modified_ms,
        content_type: info.content_type,
    }
}

/// `app` must be a deployed app.
async fn check_app(state: &AdminState, app: Option<&str>) -> Result<(), Error> {
    if let Some(app) = app {
        state
            .platform
            .store()
            .app(app)
            .await
            .map_err(crate::platform::store_error)?;
    }
    Ok(())
}

async fn create_key(
    State(state): State<AdminState>,
    Json(request): Json<CreateKeyRequest>,
) -> ApiResult<AccessKey> {
    check_app(&state, request.app.as_deref()).await?;
    let created = state
        .services
        .keys
        .create(request.app.as_deref(), request.description.as_deref())
        .await
        .map_err(key_error)?;
    Ok(Json(access_key(created.info, Some(created.secret))))
}

async fn keys(State(state): State<AdminState>) -> ApiResult<Vec<AccessKey>> {
    let keys = state.services.keys.list().await.map_err(key_error)?;
    Ok(Json(
        keys.into_iter().map(|k| access_key(k, None)).collect(),
    ))
}

async fn revoke_key(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<AccessKey> {
    let keys = &state.services.keys;
    let found = keys
        .list()
        .await
        .map_err(key_error)?
        .into_iter()
        .find(|k| k.id == id);
    let Some(found) = found else {
        return Err(no_key(&id));
    };
    if !keys.revoke(&id).await.map_err(key_error)? {
        return Err(no_key(&id));
    }
    Ok(Json(access_key(found, None)))
}

fn no_key(id: &str) -> ApiFailure {
    ApiFailure(Error::new(
        ErrorCode::KeyNotFound,
        format!("no access key {id:?}; `nimbus keys ls` lists them"),
    ))
}

async fn buckets(State(state): State<AdminState>) -> ApiResult<Vec<BucketEntry>> {
    let buckets = state
        .services
        .objects
        .buckets()
        .await
        .map_err(object_error)?;
    Ok(Json(buckets.into_iter().map(bucket_entry).collect()))
}

async fn create_bucket(
    State(state): State<AdminState>,
    Json(request): Json<CreateBucketRequest>,
) -> ApiResult<BucketEntry> {
    if !nimbus_objects::valid_bucket_name(&request.name) {
        return Err(Error::new(
            ErrorCode::BadRequest,
            format!(
                "{:?} is not a valid bucket name: 3-63 lower-case letters, digits, dots and \
                 hyphens, starting and ending with a letter or digit (S3's rules)",
                request.name
            ),
        )
        .into());
    }
    check_app(&state, request.app.as_deref()).await?;
    let created = state
        .services
        .objects
        .create_bucket(&request.name, request.app.as_deref())
        .await
        .map_err(object_error)?;
    Ok(Json(bucket_entry(created)))
}

async fn delete_bucket(
    State(state): State<AdminState>,
    Path(bucket): Path<String>,
) -> ApiResult<BucketEntry> {
    let objects = &state.services.objects;
    let info = objects.bucket(&bucket).await.map_err(object_error)?;
    objects.delete_bucket(&bucket).await.map_err(object_error)?;
    Ok(Json(bucket_entry(info)))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_objects(
    State(state): State<AdminState>,
    Path(bucket): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<ObjectPage> {
    let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let listing = state
        .services
        .objects
        .list_objects(&bucket, &query.prefix, query.after.as_deref(), limit)
        .await
        .map_err(object_error)?;
    Ok(Json(ObjectPage {
        objects: listing.objects.into_iter().map(object_entry).collect(),
        truncated: listing.truncated,
    }))
}

async fn put_object(
    State(state): State<AdminState>,
    Path((bucket, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: AxumBody,
) -> ApiResult<ObjectEntry> {
    let object = NewObject {
        content_type: headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ..NewObject::default()
    };
    let stream = body
        .into_data_stream()
        .map_err(|e| -> nimbus_store::BoxError { Box::new(e) });
    let info = state
        .services
        .objects
        .put_object(
            &bucket,
            &key,
            object,
            PutCondition::Always,
            Box::pin(stream),
        )
        .await
        .map_err(object_error)?;
    Ok(Json(object_entry(info)))
}

async fn get_object(
    State(state): State<AdminState>,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<Response, ApiFailure> {
    let (info, stream) = state
        .services
        .objects
        .get_object(&bucket, &key, None)
        .await
        .map_err(object_error)?;
    let mut response = Response::new(AxumBody::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(axum::http::header::CONTENT_LENGTH, info.size.into());
    if let Some(value) = info
        .content_type
        .as_deref()
        .and_then(|t| axum::http::HeaderValue::from_str(t).ok())
    {
        headers.insert(axum::http::header::CONTENT_TYPE, value);
    }
    if let Ok(value) = axum::http::HeaderValue::from_str(&format!("\"{}\"", info.etag)) {
        headers.insert(axum::http::header::ETAG, value);
    }
    Ok(response)
}

async fn delete_object(
    State(state): State<AdminState>,
    Path((bucket, key)): Path<(String, String)>,
) -> ApiResult<ObjectEntry> {
    let objects = &state.services.objects;
    let info = objects
        .head_object(&bucket, &key)
        .await
        .map_err(object_error)?;
    objects
        .delete_object(&bucket, &key)
        .await
        .map_err(object_error)?;
    Ok(Json(object_entry(info)))
}
