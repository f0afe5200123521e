//! What the admin API shows of tables: every table with its key and counts, and pages of a
//! table's items in DynamoDB JSON, for `nimbus tables` and `nimbus table scan`.

use crate::ops::OPERATOR_NAMESPACE;
use crate::table::{TableSchema, decode_item};
use crate::value::item_to_json;
use base64::Engine as _;
use nimbus_api::{TableEntry, TablePage};
use nimbus_store::tables::{ItemKey, PageLimit, TableError, TableId, TableStore};

/// The app a namespace belongs to (`None` for an operator's tables).
fn app_of(namespace: &str) -> Option<String> {
    (namespace != OPERATOR_NAMESPACE).then(|| namespace.to_owned())
}

/// Every table of every app, by app and name.
pub async fn tables(store: &dyn TableStore) -> Result<Vec<TableEntry>, TableError> {
    let mut entries = Vec::new();
    for id in store.all_tables().await? {
        let Some(info) = store.table(&id).await? else {
            continue;
        };
        let Ok(schema) = TableSchema::from_meta(&info.meta) else {
            continue;
        };
        let key = |k: &crate::table::KeyAttribute| format!("{} ({})", k.name, k.kind);
        entries.push(TableEntry {
            app: app_of(&id.app),
            name: id.table.clone(),
            partition_key: key(&schema.hash),
            sort_key: schema.range.as_ref().map(key),
            items: info.item_count,
            size_bytes: info.size_bytes,
            stream: schema.stream.clone(),
            ttl: schema.ttl.clone(),
            created_ms: info.created_ms,
        });
    }
    Ok(entries)
}

fn cursor_of(key: &ItemKey) -> String {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}",
        engine.encode(&key.partition),
        engine.encode(&key.sort)
    )
}

fn key_of_cursor(cursor: &str) -> Option<ItemKey> {
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (partition, sort) = cursor.split_once('.')?;
    Some(ItemKey {
        partition: engine.decode(partition).ok()?,
        sort: engine.decode(sort).ok()?,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("{0:?} is not a cursor this API gave out")]
    BadCursor(String),
    #[error(transparent)]
    Store(#[from] TableError),
    #[error("a stored item cannot be read: {0}")]
    Item(String),
}

/// Up to `limit` items of a table in key order, after `after` (a page's `next`).
pub async fn scan(
    store: &dyn TableStore,
    app: Option<&str>,
    table: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<TablePage, ScanError> {
    let id = TableId::new(app.unwrap_or(OPERATOR_NAMESPACE), table);
    let start = match after {
        Some(cursor) => {
            Some(key_of_cursor(cursor).ok_or_else(|| ScanError::BadCursor(cursor.to_owned()))?)
        }
        None => None,
    };
    let page = store
        .scan(
            &id,
            start.as_ref(),
            PageLimit {
                items: limit.max(1),
                bytes: 1 << 20,
            },
        )
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for (_, bytes) in &page.items {
        let item = decode_item(bytes).map_err(|e| ScanError::Item(e.message))?;
        items.push(item_to_json(&item));
    }
    Ok(TablePage {
        items,
        next: if page.more {
            page.items.last().map(|(key, _)| cursor_of(key))
        } else {
            None
        },
    })
}
