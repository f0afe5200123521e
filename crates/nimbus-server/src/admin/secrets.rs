//! The admin API of app secrets, for the CLI's `secrets set/ls/rm/rotate`: values go in, only
//! names and versions come out.

use super::{AdminState, ApiResult};
use axum::Json;
use axum::extract::{Path, Query, State};
use nimbus_api::{SecretEntry, SecretVersionEntry};
use serde::Deserialize;

pub(super) fn routes() -> axum::Router<AdminState> {
    use axum::routing::{get, put};
    axum::Router::new()
        .route("/v1/apps/{app}/secrets", get(list))
        .route("/v1/apps/{app}/secrets/{name}", put(set).delete(remove))
}

fn entry(info: nimbus_store::SecretInfo) -> SecretEntry {
    SecretEntry {
        name: info.name,
        current: info.current,
        versions: info
            .versions
            .into_iter()
            .map(|(version, created_ms)| SecretVersionEntry {
                version,
                created_ms,
            })
            .collect(),
    }
}

#[derive(Deserialize)]
struct SetQuery {
    #[serde(default)]
    rotate: bool,
}

async fn set(
    State(state): State<AdminState>,
    Path((app, name)): Path<(String, String)>,
    Query(query): Query<SetQuery>,
    value: axum::body::Bytes,
) -> ApiResult<SecretEntry> {
    let info = state
        .services
        .secrets
        .set(&app, &name, &value, query.rotate)
        .await?;
    tracing::info!(app, secret = name, version = info.current, "secret set");
    Ok(Json(entry(info)))
}

async fn list(
    State(state): State<AdminState>,
    Path(app): Path<String>,
) -> ApiResult<Vec<SecretEntry>> {
    let listed = state.services.secrets.list(&app).await?;
    Ok(Json(listed.into_iter().map(entry).collect()))
}

async fn remove(
    State(state): State<AdminState>,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult<serde_json::Value> {
    state.services.secrets.remove(&app, &name).await?;
    tracing::info!(app, secret = name, "secret removed");
    Ok(Json(serde_json::json!({ "removed": name })))
}
