//! Listings as S3 answers them, over the store's plain ordered pages: keys rolled up into
//! common prefixes at the delimiter, at most `max` entries (keys and prefixes together), and a
//! cursor (the last key or prefix returned) to continue from.

use nimbus_store::{ObjectInfo, ObjectResult, ObjectStore};

/// S3's ceiling on one page, and its default.
pub(crate) const MAX_KEYS: usize = 1000;

/// Keys the store is asked for at a time.
const BATCH: usize = 1000;

#[derive(Debug, Default)]
pub(crate) struct Page {
    pub objects: Vec<ObjectInfo>,
    pub prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned: where the next page starts.
    pub last: Option<String>,
}

/// The smallest string after every key that starts with `prefix` (all but keys continuing
/// with U+10FFFF itself, which no client sends in practice).
fn past(prefix: &str) -> String {
    format!("{prefix}{}", char::MAX)
}

/// The common prefix `key` rolls up into, if it has the delimiter after `prefix`.
fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: &str) -> Option<&'k str> {
    let rest = key.get(prefix.len()..)?;
    let at = rest.find(delimiter)?;
    key.get(..prefix.len() + at + delimiter.len())
}

pub(crate) async fn list(
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> ObjectResult<Page> {
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut page = Page::default();
    // A cursor that is itself a common prefix continues after everything under it.
    let mut cursor: Option<String> = after.map(|after| match delimiter {
        Some(d) if common_prefix(after, prefix, d) == Some(after) => past(after),
        _ => after.to_owned(),
    });
    if max == 0 {
        // S3 answers an empty page, truncated if there is anything to list.
        let probe = store
            .list_objects(bucket, prefix, cursor.as_deref(), 1)
            .await?;
        page.truncated = !probe.objects.is_empty();
        return Ok(page);
    }
    loop {
        let batch = store
            .list_objects(bucket, prefix, cursor.as_deref(), BATCH)
            .await?;
        let more = batch.truncated;
        let mut skipped_to = None;
        for object in batch.objects {
            if page.objects.len() + page.prefixes.len() == max {
                page.truncated = true;
                return Ok(page);
            }
            if let Some(d) = delimiter
                && let Some(common) = common_prefix(&object.key, prefix, d)
            {
                let common = common.to_owned();
                page.prefixes.push(common.clone());
                page.last = Some(common.clone());
                // Skip the rest of the rolled-up keys with a fresh query.
                skipped_to = Some(past(&common));
                break;
            }
            page.last = Some(object.key.clone());
            cursor = Some(object.key.clone());
            page.objects.push(object);
        }
        match skipped_to {
            Some(skip) => cursor = Some(skip),
            None if !more => return Ok(page),
            None => {}
        }
        if page.objects.len() + page.prefixes.len() == max {
            // Full: truncated if anything at all follows.
            let probe = store
                .list_objects(bucket, prefix, cursor.as_deref(), 1)
                .await?;
            page.truncated = !probe.objects.is_empty();
            return Ok(page);
        }
    }
}

/// How a listing quotes keys and prefixes: as they are, or URL-encoded (`encoding-type=url`).
pub(crate) fn encoder(url: bool) -> impl Fn(String) -> String {
    move |s| {
        if url {
            form_urlencoded::byte_serialize(s.as_bytes()).collect()
        } else {
            s
        }
    }
}

/// A continuation token: the cursor, opaque to clients.
pub(crate) fn token(cursor: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cursor)
}

pub(crate) fn cursor(token: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nimbus_store::{NewObject, PutCondition};

    async fn store(keys: &[&str]) -> (tempfile::TempDir, nimbus_store_redb::RedbStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = nimbus_store_redb::RedbStore::open(dir.path()).unwrap();
        store.create_bucket("b", Some("app")).await.unwrap();
        for key in keys {
            let body = Box::pin(futures::stream::iter([Ok(Bytes::from_static(b"x"))]));
            store
                .put_object("b", key, NewObject::default(), PutCondition::Always, body)
                .await
                .unwrap();
        }
        (dir, store)
    }

    fn names(page: &Page) -> (Vec<&str>, Vec<&str>) {
        (
            page.objects.iter().map(|o| o.key.as_str()).collect(),
            page.prefixes.iter().map(String::as_str).collect(),
        )
    }

    const KEYS: &[&str] = &[
        "a.txt",
        "photos/2024/a.jpg",
        "photos/2024/b.jpg",
        "photos/2025/c.jpg",
        "photos/top.jpg",
        "videos/v.mp4",
        "z",
    ];

    #[tokio::test]
    async fn delimiters_roll_keys_up_into_prefixes() {
        let (_dir, store) = store(KEYS).await;
        let page = list(&store, "b", "", Some("/"), None, 1000).await.unwrap();
        assert_eq!(
            names(&page),
            (vec!["a.txt", "z"], vec!["photos/", "videos/"])
        );
        assert!(!page.truncated);
        let page = list(&store, "b", "photos/", Some("/"), None, 1000)
            .await
            .unwrap();
        assert_eq!(
            names(&page),
            (vec!["photos/top.jpg"], vec!["photos/2024/", "photos/2025/"])
        );
        let page = list(&store, "b", "photos/", None, None, 1000)
            .await
            .unwrap();
        assert_eq!(page.objects.len(), 4);
    }

    #[tokio::test]
    async fn pages_continue_after_keys_and_prefixes() {
        let (_dir, store) = store(KEYS).await;
        let mut seen = (Vec::new(), Vec::new());
        let mut after: Option<String> = None;
        loop {
            let page = list(&store, "b", "", Some("/"), after.as_deref(), 1)
                .await
                .unwrap();
            let (objects, prefixes) = names(&page);
            seen.0.extend(objects.iter().map(|s| s.to_string()));
            seen.1.extend(prefixes.iter().map(|s| s.to_string()));
            assert_eq!(objects.len() + prefixes.len(), 1);
            if !page.truncated {
                break;
            }
            after = page.last;
        }
        assert_eq!(seen.0, ["a.txt", "z"]);
        assert_eq!(seen.1, ["photos/", "videos/"]);
    }

    #[tokio::test]
    async fn a_full_page_is_truncated_only_if_more_follows() {
        let (_dir, store) = store(&["a", "b"]).await;
        let page = list(&store, "b", "", None, None, 2).await.unwrap();
        assert!(!page.truncated);
        let page = list(&store, "b", "", None, None, 1).await.unwrap();
        assert!(page.truncated);
        let page = list(&store, "b", "", None, None, 0).await.unwrap();
        assert!(page.truncated && page.objects.is_empty());
    }

    #[test]
    fn tokens_round_trip() {
        for cursor_value in ["", "photos/", "ключ with spaces/and+plus"] {
            assert_eq!(cursor(&token(cursor_value)).as_deref(), Some(cursor_value));
        }
        assert_eq!(cursor("!!"), None);
    }

    #[test]
    fn url_encoding_is_what_s3_sends() {
        assert_eq!(encoder(true)("a b/c+d".into()), "a+b%2Fc%2Bd");
        assert_eq!(encoder(false)("a b".into()), "a b");
    }
}
