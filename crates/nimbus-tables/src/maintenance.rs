//! Background work over every table: removing items whose TTL has passed (each removal a
//! change record marked as the service's, as DynamoDB's TTL deletes are) and forgetting
//! change records past the streams' retention.

use crate::streams::RETENTION_MS;
use crate::table::{TableSchema, decode_item};
use crate::value::Value;
use nimbus_store::tables::{Change, ItemKey, PageLimit, TableError, TableId, TableStore};

/// Items expired longer ago than this are left alone, as DynamoDB leaves them (a TTL value
/// that far in the past is more likely a mistake — milliseconds for seconds — than a wish).
const MAX_PAST_SECONDS: i64 = 5 * 365 * 24 * 60 * 60;
/// How many items one sweep reads per page.
const PAGE_ITEMS: usize = 1000;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub expired: usize,
    pub trimmed: usize,
}

/// The epoch second an item expires at, if its TTL attribute holds one.
fn expiry_of(item: &crate::value::Item, attribute: &str) -> Option<i64> {
    let Some(Value::N(number)) = item.get(attribute) else {
        return None;
    };
    let text = number.to_string();
    let whole = text.split('.').next().unwrap_or_default();
    whole.parse().ok()
}

fn expired(item: &crate::value::Item, attribute: &str, now_s: i64) -> bool {
    expiry_of(item, attribute).is_some_and(|at| at <= now_s && at >= now_s - MAX_PAST_SECONDS)
}

/// Sweep every table once.
pub async fn sweep(store: &dyn TableStore, now_ms: u64) -> Result<Swept, TableError> {
    let mut swept = Swept::default();
    for id in store.all_tables().await? {
        let Some(info) = store.table(&id).await? else {
            continue;
        };
        let Ok(schema) = TableSchema::from_meta(&info.meta) else {
            continue;
        };
        if let Some(attribute) = &schema.ttl {
            swept.expired += expire(store, &id, attribute, now_ms).await?;
        }
        if info.meta.stream {
            swept.trimmed += store
                .trim_changes(&id, now_ms.saturating_sub(RETENTION_MS))
                .await?;
        }
    }
    Ok(swept)
}

async fn expire(
    store: &dyn TableStore,
    id: &TableId,
    attribute: &str,
    now_ms: u64,
) -> Result<usize, TableError> {
    let now_s = (now_ms / 1000) as i64;
    let mut after: Option<ItemKey> = None;
    let mut removed = 0;
    loop {
        let page = store
            .scan(
                id,
                after.as_ref(),
                PageLimit {
                    items: PAGE_ITEMS,
                    bytes: usize::MAX,
                },
            )
            .await?;
        after = page.items.last().map(|(key, _)| key.clone());
        let due: Vec<(TableId, ItemKey)> = page
            .items
            .iter()
            .filter(|(_, bytes)| {
                decode_item(bytes).is_ok_and(|item| expired(&item, attribute, now_s))
            })
            .map(|(key, _)| (id.clone(), key.clone()))
            .collect();
        if !due.is_empty() {
            let count = due.len();
            let attribute = attribute.to_owned();
            // Decided again inside the commit: an item rewritten since the scan stays.
            store
                .write(
                    due,
                    Box::new(move |current| {
                        Ok(current
                            .into_iter()
                            .map(|bytes| match bytes {
                                Some(bytes)
                                    if decode_item(&bytes)
                                        .is_ok_and(|item| expired(&item, &attribute, now_s)) =>
                                {
                                    Change::Expire
                                }
                                _ => Change::Keep,
                            })
                            .collect())
                    }),
                )
                .await?;
            removed += count;
        }
        if !page.more {
            return Ok(removed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::item_from_json;

    #[test]
    fn only_numbers_within_five_years_past_expire() {
        let now = 2_000_000_000;
        let item = |v: serde_json::Value| item_from_json(&serde_json::json!({ "ttl": v })).unwrap();
        assert!(expired(
            &item(serde_json::json!({"N": "1999999999"})),
            "ttl",
            now
        ));
        assert!(expired(
            &item(serde_json::json!({"N": "2000000000.9"})),
            "ttl",
            now
        ));
        assert!(!expired(
            &item(serde_json::json!({"N": "2000000001"})),
            "ttl",
            now
        ));
        assert!(!expired(&item(serde_json::json!({"S": "1"})), "ttl", now));
        assert!(
            !expired(&item(serde_json::json!({"N": "1000"})), "ttl", now),
            "too far past"
        );
        assert!(!expired(
            &item(serde_json::json!({"N": "1999999999"})),
            "other",
            now
        ));
    }
}
