//! The admin API of end-user auth, for the CLI's `users ls/create/ban/unban/rm` and
//! `users rotate-keys`: an app's users and its token signing keys.

use super::{AdminState, ApiResult};
use axum::Json;
use axum::extract::{Path, Query, State};
use nimbus_api::{BanRequest, CreateUserRequest, RotatedKey, UserEntry, UserPage};
use serde::Deserialize;
use std::time::Duration;

pub(super) fn routes() -> axum::Router<AdminState> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/apps/{app}/users", get(list).post(create))
        .route("/v1/apps/{app}/users/{id}", axum::routing::delete(remove))
        .route("/v1/apps/{app}/users/{id}/ban", post(ban).delete(unban))
        .route("/v1/apps/{app}/auth/keys/rotate", post(rotate))
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<UserPage> {
    let limit = query.limit.unwrap_or(nimbus_auth::admin::MAX_PAGE);
    Ok(Json(
        state
            .services
            .auth
            .list_users(&app, query.after.as_deref(), limit)
            .await?,
    ))
}

async fn create(
    State(state): State<AdminState>,
    Path(app): Path<String>,
    Json(request): Json<CreateUserRequest>,
) -> ApiResult<UserEntry> {
    Ok(Json(state.services.auth.create_user(&app, request).await?))
}

async fn ban(
    State(state): State<AdminState>,
    Path((app, id)): Path<(String, String)>,
    Json(request): Json<BanRequest>,
) -> ApiResult<UserEntry> {
    let duration = request.for_ms.map(Duration::from_millis);
    Ok(Json(
        state
            .services
            .auth
            .ban_user(&app, &id, Some(duration))
            .await?,
    ))
}

async fn unban(
    State(state): State<AdminState>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<UserEntry> {
    Ok(Json(state.services.auth.ban_user(&app, &id, None).await?))
}

async fn remove(
    State(state): State<AdminState>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult<UserEntry> {
    Ok(Json(state.services.auth.remove_user(&app, &id).await?))
}

async fn rotate(State(state): State<AdminState>, Path(app): Path<String>) -> ApiResult<RotatedKey> {
    let kid = state.services.auth.rotate_keys(&app).await?;
    Ok(Json(RotatedKey { kid }))
}
