//! The admin API of the table service: every table, and pages of a table's items, for the
//! CLI's `tables` and `table scan`.

use super::{AdminState, ApiResult};
use axum::Json;
use axum::extract::{Path, Query, State};
use nimbus_api::{TableEntry, TablePage};
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_store::tables::TableError;
use nimbus_tables::admin::ScanError;
use serde::Deserialize;

/// Most items one page holds.
const MAX_PAGE: usize = 1000;

pub(super) fn routes() -> axum::Router<AdminState> {
    use axum::routing::get;
    axum::Router::new()
        .route("/v1/tables", get(tables))
        .route("/v1/tables/{table}/items", get(items))
}

fn table_error(error: TableError, table: &str, app: Option<&str>) -> Error {
    match error {
        TableError::NoSuchTable(_) => Error::new(
            ErrorCode::BadRequest,
            format!(
                "no table {table:?} in {}; `nimbus tables` lists them",
                app.map_or("the operator's tables".to_owned(), |a| format!("app {a:?}"))
            ),
        ),
        other => {
            let message = other.to_string();
            Error::new(ErrorCode::Internal, message).caused_by(other)
        }
    }
}

async fn tables(State(state): State<AdminState>) -> ApiResult<Vec<TableEntry>> {
    let entries = nimbus_tables::admin::tables(state.services.tables.as_ref())
        .await
        .map_err(|e| table_error(e, "", None))?;
    Ok(Json(entries))
}

#[derive(Deserialize)]
struct ItemsQuery {
    app: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn items(
    State(state): State<AdminState>,
    Path(table): Path<String>,
    Query(query): Query<ItemsQuery>,
) -> ApiResult<TablePage> {
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let app = query.app.as_deref();
    let page = nimbus_tables::admin::scan(
        state.services.tables.as_ref(),
        app,
        &table,
        query.after.as_deref(),
        limit,
    )
    .await
    .map_err(|error| match error {
        ScanError::Store(error) => table_error(error, &table, app),
        ScanError::BadCursor(_) => Error::new(ErrorCode::BadRequest, error.to_string()),
        ScanError::Item(_) => Error::new(ErrorCode::Internal, error.to_string()),
    })?;
    Ok(Json(page))
}
