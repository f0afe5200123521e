//! Master-key rotation of a stopped server's data directory: every value sealed under the
//! master key — secrets' data keys, access-key secrets, auth signing keys — is re-sealed under
//! a new one, then the new key replaces the old. Each value is re-sealed on its own and
//! values already under the new key are skipped, so an interrupted rotation (no server starts
//! meanwhile: `nimbus_seal::ROTATING_FILE`) is finished by running it again.

use anyhow::Context as _;
use nimbus_seal::KeySource;
use nimbus_store::{AuthStore, Registry};
use nimbus_store_redb::RedbStore;
use std::path::Path;
use std::sync::Arc;

/// What a rotation moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    pub secret_versions: usize,
    pub access_keys: usize,
    pub signing_keys: usize,
}

/// Rotate the master key of the data directory `dir` from the one `source` gives to `new`
/// (for a key kept in the data directory, a fresh random one when `None`). The server must be
/// stopped: the store cannot be opened while it runs.
pub async fn rotate_master_key(
    dir: &Path,
    source: KeySource,
    new: Option<[u8; 32]>,
) -> anyhow::Result<Rotated> {
    let store_dir = dir.to_owned();
    // The store first: it is locked while a server runs, and then nothing may change.
    let store = tokio::task::spawn_blocking(move || RedbStore::open(&store_dir))
        .await?
        .context("open the data directory's store (stop the server first)")?;
    let store = Arc::new(store);
    let at = dir.to_owned();
    let rotation =
        tokio::task::spawn_blocking(move || nimbus_seal::begin_rotation(&at, &source, new))
            .await?
            .context("begin the master-key rotation")?;

    let secret_versions = nimbus_secrets::Secrets::new(store.clone(), rotation.old.clone())
        .rewrap_all(&rotation.new)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))
        .context("re-wrap the secrets' data keys")?;
    let access_keys = nimbus_aws::Keys::new(store.clone(), rotation.old.clone())
        .reseal_all(&rotation.new)
        .await
        .context("re-seal the access keys")?;
    let mut signing_keys = 0;
    for app in store.apps().await.context("list the apps")? {
        let records = AuthStore::signing_keys(&*store, &app.name)
            .await
            .with_context(|| format!("read app {:?}'s signing keys", app.name))?;
        if records.is_empty() {
            continue;
        }
        let (resealed, moved) =
            nimbus_auth::keys::resealed(&app.name, &records, &rotation.old, &rotation.new)
                .map_err(anyhow::Error::msg)?;
        if moved > 0 {
            let kids: Vec<String> = records.iter().map(|r| r.kid.clone()).collect();
            store
                .replace_signing_keys(&app.name, &kids, resealed)
                .await
                .with_context(|| format!("re-seal app {:?}'s signing keys", app.name))?;
            signing_keys += moved;
        }
    }
    drop(store);
    tokio::task::spawn_blocking(move || rotation.commit())
        .await?
        .context("make the new master key the data directory's")?;
    Ok(Rotated {
        secret_versions,
        access_keys,
        signing_keys,
    })
}
