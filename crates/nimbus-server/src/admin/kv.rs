//! The admin API of the key-value service, for the CLI's `kv ls/get/set/rm`: an app's stores,
//! pages of a store's keys, and one key's value — the entries functions see.

use super::{AdminState, ApiFailure, ApiResult};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use nimbus_api::KvKeys;
use nimbus_store::KvStoreId;
use serde::Deserialize;
use std::time::Duration;

pub(super) fn routes() -> axum::Router<AdminState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/v1/apps/{app}/kv", get(stores))
        .route("/v1/apps/{app}/kv/{store}/keys", get(keys))
        .route(
            "/v1/apps/{app}/kv/{store}/keys/{*key}",
            get(value).put(set).delete(delete),
        )
}

async fn stores(
    State(state): State<AdminState>,
    Path(app): Path<String>,
) -> ApiResult<Vec<String>> {
    Ok(Json(state.services.kv.stores(&app).await?))
}

#[derive(Deserialize)]
struct KeysQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn keys(
    State(state): State<AdminState>,
    Path((app, store)): Path<(String, String)>,
    Query(query): Query<KeysQuery>,
) -> ApiResult<KvKeys> {
    let id = KvStoreId::new(app, store);
    let limit = query.limit.unwrap_or(nimbus_kv::MAX_PAGE);
    Ok(Json(
        state
            .services
            .kv
            .keys(&id, query.after.as_deref(), limit)
            .await?,
    ))
}

async fn value(
    State(state): State<AdminState>,
    Path((app, store, key)): Path<(String, String, String)>,
) -> Result<Bytes, ApiFailure> {
    let id = KvStoreId::new(app, store);
    Ok(state.services.kv.get(&id, &key).await?)
}

#[derive(Deserialize)]
struct SetQuery {
    /// Seconds until the entry expires.
    ttl: Option<u64>,
}

async fn set(
    State(state): State<AdminState>,
    Path((app, store, key)): Path<(String, String, String)>,
    Query(query): Query<SetQuery>,
    body: Bytes,
) -> ApiResult<serde_json::Value> {
    let id = KvStoreId::new(app, store);
    state
        .services
        .kv
        .set(&id, &key, body, query.ttl.map(Duration::from_secs))
        .await?;
    Ok(Json(serde_json::json!({"ok": true})))
}

async fn delete(
    State(state): State<AdminState>,
    Path((app, store, key)): Path<(String, String, String)>,
) -> ApiResult<serde_json::Value> {
    let id = KvStoreId::new(app, store);
    let deleted = state.services.kv.delete(&id, &key).await?;
    Ok(Json(serde_json::json!({"deleted": deleted})))
}
