//! The embedded [`SecretStore`]: `secrets` ((app, name) → current version) and
//! `secret_versions` ((app, name, version) → (created at, sealed bytes)), changed together in
//! fully durable commits. redb's single writer decides the conditions.

use crate::{Inner, RedbStore};
use async_trait::async_trait;
use nimbus_store::secrets::{SecretError, SecretInfo, SecretResult, SecretStore, SecretVersion};
use redb::{ReadableTable, TableDefinition};

/// (app, name) → the current version.
pub(crate) const SECRETS: TableDefinition<(&str, &str), u64> = TableDefinition::new("secrets");
/// (app, name, version) → (created at ms, sealed value).
pub(crate) const SECRET_VERSIONS: TableDefinition<(&str, &str, u64), (u64, &[u8])> =
    TableDefinition::new("secret_versions");

fn db(error: impl Into<nimbus_store::BoxError>) -> SecretError {
    SecretError::backend(error)
}

impl Inner {
    fn secret_put(
        &self,
        app: &str,
        name: &str,
        expected: Option<u64>,
        version: &SecretVersion,
        keep: usize,
    ) -> SecretResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut secrets = txn.open_table(SECRETS).map_err(db)?;
            let current = secrets.get((app, name)).map_err(db)?.map(|row| row.value());
            if current != expected {
                return Err(SecretError::Conflict { current });
            }
            if version.version != current.map_or(1, |v| v + 1) {
                return Err(SecretError::OutOfOrder {
                    given: version.version,
                    current,
                });
            }
            secrets.insert((app, name), version.version).map_err(db)?;
            let mut versions = txn.open_table(SECRET_VERSIONS).map_err(db)?;
            versions
                .insert(
                    (app, name, version.version),
                    (version.created_ms, version.sealed.as_slice()),
                )
                .map_err(db)?;
            let kept = versions_of(&versions, app, name)?;
            let excess = kept.len().saturating_sub(keep.max(1));
            for (old, _) in kept.into_iter().take(excess) {
                versions.remove((app, name, old)).map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    fn secret_get(
        &self,
        app: &str,
        name: &str,
        version: Option<u64>,
    ) -> SecretResult<Option<SecretVersion>> {
        let txn = self.db.begin_read().map_err(db)?;
        let number = match version {
            Some(number) => number,
            None => {
                let secrets = txn.open_table(SECRETS).map_err(db)?;
                match secrets.get((app, name)).map_err(db)? {
                    Some(row) => row.value(),
                    None => return Ok(None),
                }
            }
        };
        let versions = txn.open_table(SECRET_VERSIONS).map_err(db)?;
        let row = versions.get((app, name, number)).map_err(db)?;
        Ok(row.map(|row| {
            let (created_ms, sealed) = row.value();
            SecretVersion {
                version: number,
                created_ms,
                sealed: sealed.to_vec(),
            }
        }))
    }

    fn secret_list(&self, app: &str) -> SecretResult<Vec<SecretInfo>> {
        let txn = self.db.begin_read().map_err(db)?;
        let secrets = txn.open_table(SECRETS).map_err(db)?;
        let versions = txn.open_table(SECRET_VERSIONS).map_err(db)?;
        let mut listed = Vec::new();
        for entry in secrets.range((app, "")..).map_err(db)? {
            let (key, current) = entry.map_err(db)?;
            let (a, name) = key.value();
            if a != app {
                break;
            }
            listed.push(SecretInfo {
                name: name.to_owned(),
                current: current.value(),
                versions: versions_of(&versions, app, name)?,
            });
        }
        Ok(listed)
    }

    fn secret_remove(&self, app: &str, name: &str) -> SecretResult<bool> {
        let txn = self.db.begin_write().map_err(db)?;
        let existed = {
            let mut secrets = txn.open_table(SECRETS).map_err(db)?;
            let existed = secrets.remove((app, name)).map_err(db)?.is_some();
            let mut versions = txn.open_table(SECRET_VERSIONS).map_err(db)?;
            for (number, _) in versions_of(&versions, app, name)? {
                versions.remove((app, name, number)).map_err(db)?;
            }
            existed
        };
        txn.commit().map_err(db)?;
        Ok(existed)
    }

    fn secret_all(&self) -> SecretResult<Vec<(String, String, u64)>> {
        let txn = self.db.begin_read().map_err(db)?;
        let versions = txn.open_table(SECRET_VERSIONS).map_err(db)?;
        let mut all = Vec::new();
        for entry in versions.iter().map_err(db)? {
            let (key, _) = entry.map_err(db)?;
            let (app, name, number) = key.value();
            all.push((app.to_owned(), name.to_owned(), number));
        }
        Ok(all)
    }

    fn secret_reseal(
        &self,
        app: &str,
        name: &str,
        number: u64,
        expected: &[u8],
        sealed: &[u8],
    ) -> SecretResult<bool> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut versions = txn.open_table(SECRET_VERSIONS).map_err(db)?;
            let created_ms = match versions.get((app, name, number)).map_err(db)? {
                Some(row) if row.value().1 == expected => row.value().0,
                _ => return Ok(false),
            };
            versions
                .insert((app, name, number), (created_ms, sealed))
                .map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(true)
    }
}

/// The kept versions of one secret as (number, created at), oldest first.
fn versions_of(
    table: &impl ReadableTable<(&'static str, &'static str, u64), (u64, &'static [u8])>,
    app: &str,
    name: &str,
) -> SecretResult<Vec<(u64, u64)>> {
    let mut found = Vec::new();
    for entry in table
        .range((app, name, 0)..=(app, name, u64::MAX))
        .map_err(db)?
    {
        let (key, value) = entry.map_err(db)?;
        found.push((key.value().2, value.value().0));
    }
    Ok(found)
}

impl RedbStore {
    async fn secret<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> SecretResult<T> + Send + 'static,
    ) -> SecretResult<T> {
        self.on_blocking_pool(work).await.map_err(db)?
    }
}

#[async_trait]
impl SecretStore for RedbStore {
    async fn put_version(
        &self,
        app: &str,
        name: &str,
        expected: Option<u64>,
        version: SecretVersion,
        keep: usize,
    ) -> SecretResult<()> {
        let (app, name) = (app.to_owned(), name.to_owned());
        self.secret(move |inner| inner.secret_put(&app, &name, expected, &version, keep))
            .await
    }

    async fn secret_version(
        &self,
        app: &str,
        name: &str,
        version: Option<u64>,
    ) -> SecretResult<Option<SecretVersion>> {
        let (app, name) = (app.to_owned(), name.to_owned());
        self.secret(move |inner| inner.secret_get(&app, &name, version))
            .await
    }

    async fn secrets(&self, app: &str) -> SecretResult<Vec<SecretInfo>> {
        let app = app.to_owned();
        self.secret(move |inner| inner.secret_list(&app)).await
    }

    async fn remove_secret(&self, app: &str, name: &str) -> SecretResult<bool> {
        let (app, name) = (app.to_owned(), name.to_owned());
        self.secret(move |inner| inner.secret_remove(&app, &name))
            .await
    }

    async fn all_secret_versions(&self) -> SecretResult<Vec<(String, String, u64)>> {
        self.secret(|inner| inner.secret_all()).await
    }

    async fn reseal(
        &self,
        app: &str,
        name: &str,
        version: u64,
        expected: &[u8],
        sealed: Vec<u8>,
    ) -> SecretResult<bool> {
        let (app, name, expected) = (app.to_owned(), name.to_owned(), expected.to_vec());
        self.secret(move |inner| inner.secret_reseal(&app, &name, version, &expected, &sealed))
            .await
    }
}

#[cfg(test)]
mod tests {
    use crate::TempStores;

    #[tokio::test]
    async fn conformance() {
        let stores = TempStores::default();
        nimbus_store::conformance::secrets::run_all(|| stores.make()).await;
    }
}
