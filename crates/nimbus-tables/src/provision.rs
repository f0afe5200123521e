//! An app's declared tables (`[table.NAME]`): created before the app serves, kept in step
//! with the manifest's stream and TTL settings, and removed with the app.

use crate::table::{KeyAttribute, TableSchema};
use nimbus_store::tables::{PageLimit, TableError, TableId, TableStore};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "table {table:?} exists with key {existing}, but the manifest declares {declared}; a \
         table's key cannot change: declare a new table, or remove the app with --force to \
         delete this one"
    )]
    KeyChanged {
        table: String,
        existing: String,
        declared: String,
    },
    #[error("table storage failed")]
    Store(#[from] TableError),
}

fn key_text(schema: &TableSchema) -> String {
    let part = |k: &KeyAttribute| format!("{} ({})", k.name, k.kind);
    match &schema.range {
        Some(range) => format!("{} + {}", part(&schema.hash), part(range)),
        None => part(&schema.hash),
    }
}

/// What a declaration makes of a table.
pub fn schema_of(declared: &nimbus_core::TableSpec, now_ms: u64) -> TableSchema {
    let key = |k: &nimbus_core::TableKey| KeyAttribute {
        name: k.name.clone(),
        kind: k.kind.clone(),
    };
    TableSchema {
        name: declared.name.clone(),
        hash: key(&declared.partition_key),
        range: declared.sort_key.as_ref().map(key),
        billing: "PAY_PER_REQUEST".to_owned(),
        throughput: None,
        stream_since_ms: declared.stream.as_ref().map(|_| now_ms),
        stream: declared.stream.clone(),
        ttl: declared.ttl.clone(),
    }
}

/// Make `declared` exist in `app` as declared; whether it was created.
pub async fn provision(
    store: &dyn TableStore,
    app: &str,
    declared: &nimbus_core::TableSpec,
    now_ms: u64,
) -> Result<bool, ProvisionError> {
    let id = TableId::new(app, declared.name.as_str());
    let wanted = schema_of(declared, now_ms);
    let Some(info) = store.table(&id).await? else {
        return Ok(store.create_table(&id, wanted.meta()).await?);
    };
    let mut existing = TableSchema::from_meta(&info.meta)
        .map_err(|e| ProvisionError::Store(TableError::backend(e.message)))?;
    if (&existing.hash, &existing.range) != (&wanted.hash, &wanted.range) {
        return Err(ProvisionError::KeyChanged {
            table: declared.name.clone(),
            existing: key_text(&existing),
            declared: key_text(&wanted),
        });
    }
    let stream_changed = existing.stream != wanted.stream;
    if stream_changed || existing.ttl != wanted.ttl {
        if stream_changed {
            existing.stream_since_ms = wanted.stream_since_ms;
            existing.stream = wanted.stream;
        }
        existing.ttl = wanted.ttl;
        store.update_table(&id, existing.meta()).await?;
    }
    Ok(false)
}

/// The app's tables that hold items.
pub async fn nonempty_tables(store: &dyn TableStore, app: &str) -> Result<Vec<String>, TableError> {
    let mut nonempty = Vec::new();
    for name in store.tables(app).await? {
        let page = store
            .scan(
                &TableId::new(app, name.as_str()),
                None,
                PageLimit {
                    items: 1,
                    bytes: usize::MAX,
                },
            )
            .await?;
        if !page.items.is_empty() {
            nonempty.push(name);
        }
    }
    Ok(nonempty)
}

/// Remove every table of the app; how many there were.
pub async fn release(store: &dyn TableStore, app: &str) -> Result<usize, TableError> {
    let names = store.tables(app).await?;
    for name in &names {
        store
            .delete_table(&TableId::new(app, name.as_str()))
            .await?;
    }
    Ok(names.len())
}
