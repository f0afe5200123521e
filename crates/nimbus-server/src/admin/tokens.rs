//! The admin API of its own access: scoped tokens (`nimbus tokens create/ls/rm`) and the
//! audit log (`nimbus audit`).

use super::{AdminState, ApiResult};
use axum::Json;
use axum::extract::{Path, Query, State};
use nimbus_api::{AdminTokenEntry, AuditRecord, CreateTokenRequest};
use serde::Deserialize;

/// Most audit entries one request returns.
const MAX_AUDIT_PAGE: usize = 1000;

pub(super) fn routes() -> axum::Router<AdminState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/v1/tokens", get(list).post(create))
        .route("/v1/tokens/{id}", axum::routing::delete(remove))
        .route("/v1/audit", get(audit))
}

fn entry(record: nimbus_store::AdminTokenRecord, token: Option<String>) -> AdminTokenEntry {
    AdminTokenEntry {
        id: record.id,
        name: record.name,
        scope: record.scope,
        created_ms: record.created_ms,
        token,
    }
}

async fn create(
    State(state): State<AdminState>,
    Json(request): Json<CreateTokenRequest>,
) -> ApiResult<AdminTokenEntry> {
    let (record, token) = state.access.create(&request.scope, request.name).await?;
    tracing::info!(
        token = record.id,
        scope = record.scope,
        "admin token created"
    );
    Ok(Json(entry(record, Some(token))))
}

async fn list(State(state): State<AdminState>) -> ApiResult<Vec<AdminTokenEntry>> {
    let tokens = state.access.list().await?;
    Ok(Json(tokens.into_iter().map(|t| entry(t, None)).collect()))
}

async fn remove(
    State(state): State<AdminState>,
    Path(id): Path<String>,
) -> ApiResult<serde_json::Value> {
    state.access.remove(&id).await?;
    tracing::info!(token = id, "admin token revoked");
    Ok(Json(serde_json::json!({ "revoked": id })))
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn audit(
    State(state): State<AdminState>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Vec<AuditRecord>> {
    let limit = query.limit.unwrap_or(MAX_AUDIT_PAGE).min(MAX_AUDIT_PAGE);
    let entries = state.access.audit(query.after, limit).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AuditRecord {
                seq: e.seq,
                time_ms: e.time_ms,
                actor: e.actor,
                method: e.method,
                path: e.path,
                status: e.status,
            })
            .collect(),
    ))
}
