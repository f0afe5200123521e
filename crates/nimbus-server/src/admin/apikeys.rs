//! The admin API of API keys, for the CLI's `apikeys create/ls/rm`.

use super::{AdminState, ApiResult};
use axum::Json;
use axum::extract::{Path, State};
use nimbus_api::{ApiKeyEntry, CreateApiKeyRequest};

pub(super) fn routes() -> axum::Router<AdminState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/v1/apps/{app}/apikeys", get(list).post(create))
        .route("/v1/apps/{app}/apikeys/{id}", axum::routing::delete(remove))
}

fn entry(record: nimbus_store::ApiKeyRecord, key: Option<String>) -> ApiKeyEntry {
    ApiKeyEntry {
        id: record.id,
        app: record.app,
        name: record.name,
        rate: record.rate,
        rate_per_ms: record.rate_per_ms,
        burst: record.burst,
        quota_per_day: record.quota_per_day,
        created_ms: record.created_ms,
        key,
    }
}

async fn create(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    Json(request): Json<CreateApiKeyRequest>,
) -> ApiResult<ApiKeyEntry> {
    let (record, key) = state
        .services
        .api_keys
        .create(
            &app,
            nimbus_apikeys::NewApiKey {
                name: request.name,
                rate: request.rate,
                burst: request.burst,
                quota_per_day: request.quota_per_day,
            },
        )
        .await?;
    tracing::info!(app, key = record.id, "API key created");
    Ok(Json(entry(record, Some(key))))
}

async fn list(
    State(state): State<AdminState>,
    Path(app): Path<String>,
) -> ApiResult<Vec<ApiKeyEntry>> {
    let keys = state.services.api_keys.list(&app).await?;
    Ok(Json(keys.into_iter().map(|k| entry(k, None)).collect()))
}

async fn remove(
    State(state): State<AdminState>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<serde_json::Value> {
    state.services.api_keys.remove(&app, &id).await?;
    tracing::info!(app, key = id, "API key revoked");
    Ok(Json(serde_json::json!({ "revoked": id })))
}
