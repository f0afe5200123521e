//! App secrets, the platform's KMS: values an operator sets (`nimbus secrets set`) and
//! functions read only as their grants allow — in environment variables at instance start, from
//! the local API (`GET /v1/secrets/NAME`), or through Secrets Manager's `GetSecretValue` on the
//! AWS-compatible endpoint (and its Lambda extension's `localhost:2773` shape).
//!
//! Each set adds a version; the newest is current (`AWSCURRENT`), the one before it previous
//! (`AWSPREVIOUS`), and up to [`KEPT_VERSIONS`] stay readable. Values are envelope-encrypted
//! ([`envelope`]) before they reach the [`SecretStore`]; opened current values are cached in
//! memory (never on disk), so a function reading its secret per request costs no store read.

use arc_swap::ArcSwap;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_seal::MasterKey;
use nimbus_store::secrets::{SecretError, SecretInfo, SecretStore, SecretVersion};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

mod envelope;
pub mod local;
pub mod manager;

/// Versions kept per secret (Secrets Manager keeps about 100).
pub const KEPT_VERSIONS: usize = 100;
/// The largest value, in bytes (Secrets Manager's limit).
pub const MAX_VALUE_BYTES: usize = 65_536;
pub use nimbus_core::{MAX_SECRET_NAME_BYTES as MAX_NAME_BYTES, valid_secret_name as valid_name};

/// One version of a secret, opened. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub name: String,
    pub version: u64,
    pub created_ms: u64,
    /// Whether this is the current version.
    pub current: bool,
    /// Whether this is the version before the current one.
    pub previous: bool,
    pub value: Arc<[u8]>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// Which version to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Current,
    Previous,
    Version(u64),
}

fn check_name(name: &str) -> Result<(), Error> {
    if valid_name(name) {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::BadRequest,
        format!(
            "{name:?} is not a secret name: use 1 to {MAX_NAME_BYTES} letters, digits and /_+=.@-"
        ),
    ))
}

fn not_found(app: &str, name: &str) -> Error {
    Error::new(
        ErrorCode::SecretNotFound,
        format!(
            "app {app:?} has no secret {name:?}; set it with `nimbus secrets set {app} {name}`"
        ),
    )
}

fn storage(error: SecretError) -> Error {
    Error::new(ErrorCode::Internal, "the secret store failed").caused_by(error)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// App → name → opened current version: nested so a lookup borrows its keys.
type Cached = HashMap<String, HashMap<String, Arc<Secret>>>;

/// The secret service over a store, sealing under one master key.
pub struct Secrets {
    store: Arc<dyn SecretStore>,
    master: Arc<MasterKey>,
    /// Opened current versions by (app, name); copied on write, read without locks.
    current: ArcSwap<Cached>,
    /// Raised by every write, so a read that raced one does not cache what it read.
    generation: AtomicU64,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    pub fn new(store: Arc<dyn SecretStore>, master: Arc<MasterKey>) -> Arc<Secrets> {
        Arc::new(Secrets {
            store,
            master,
            current: ArcSwap::default(),
            generation: AtomicU64::new(0),
        })
    }

    /// Set `name` to `value`: its first version, or a new current one. `must_exist` refuses a
    /// secret that does not exist yet (`rotate`, where a typo must not make a new secret).
    pub async fn set(
        &self,
        app: &str,
        name: &str,
        value: &[u8],
        must_exist: bool,
    ) -> Result<SecretInfo, Error> {
        check_name(name)?;
        if value.is_empty() {
            return Err(Error::new(
                ErrorCode::BadRequest,
                "the value is empty: give it on standard input or with --file",
            ));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "a value of {} bytes is too large: secrets hold at most {MAX_VALUE_BYTES} bytes",
                    value.len()
                ),
            ));
        }
        // A concurrent writer may take the number we chose: read again and retry.
        for _ in 0..16 {
            let current = self
                .store
                .secret_version(app, name, None)
                .await
                .map_err(storage)?
                .map(|v| v.version);
            if must_exist && current.is_none() {
                return Err(not_found(app, name));
            }
            let number = current.map_or(1, |v| v + 1);
            let sealed = envelope::seal(&self.master, &envelope::context(app, name, number), value);
            let version = SecretVersion {
                version: number,
                created_ms: now_ms(),
                sealed,
            };
            self.invalidate(app, name);
            match self
                .store
                .put_version(app, name, current, version, KEPT_VERSIONS)
                .await
            {
                Ok(()) => {
                    self.invalidate(app, name);
                    let listed = self.store.secrets(app).await.map_err(storage)?;
                    return listed
                        .into_iter()
                        .find(|s| s.name == name)
                        .ok_or_else(|| not_found(app, name));
                }
                Err(SecretError::Conflict { .. } | SecretError::OutOfOrder { .. }) => continue,
                Err(error) => return Err(storage(error)),
            }
        }
        Err(Error::new(
            ErrorCode::Internal,
            format!("secret {name:?} kept changing while it was being set; try again"),
        ))
    }

    /// One version of `name`, opened.
    pub async fn get(&self, app: &str, name: &str, which: Which) -> Result<Arc<Secret>, Error> {
        if which == Which::Current
            && let Some(secret) = self.current.load().get(app).and_then(|s| s.get(name))
        {
            return Ok(secret.clone());
        }
        check_name(name)?;
        let generation = self.generation.load(Ordering::Acquire);
        let listed = self.info(app, name).await?;
        let number = match which {
            Which::Current => listed.current,
            Which::Version(number) => number,
            Which::Previous => listed
                .versions
                .iter()
                .rev()
                .map(|v| v.0)
                .find(|v| *v < listed.current)
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::SecretNotFound,
                        format!("secret {name:?} has no previous version"),
                    )
                })?,
        };
        let Some(stored) = self
            .store
            .secret_version(app, name, Some(number))
            .await
            .map_err(storage)?
        else {
            return Err(Error::new(
                ErrorCode::SecretNotFound,
                format!("secret {name:?} has no version {number}"),
            ));
        };
        let value = envelope::open(
            &self.master,
            &envelope::context(app, name, number),
            &stored.sealed,
        )
        .ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!(
                    "version {number} of secret {name:?} does not open under the master key; \
                     it was sealed under another key or altered"
                ),
            )
        })?;
        let previous = listed
            .versions
            .iter()
            .rev()
            .map(|v| v.0)
            .find(|v| *v < listed.current);
        let secret = Arc::new(Secret {
            name: name.to_owned(),
            version: number,
            created_ms: stored.created_ms,
            current: number == listed.current,
            previous: Some(number) == previous,
            value: value.into(),
        });
        if secret.current {
            self.remember(app, &secret, generation);
        }
        Ok(secret)
    }

    async fn info(&self, app: &str, name: &str) -> Result<SecretInfo, Error> {
        self.store
            .secrets(app)
            .await
            .map_err(storage)?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| not_found(app, name))
    }

    /// The app's secrets: names and versions, never values.
    pub async fn list(&self, app: &str) -> Result<Vec<SecretInfo>, Error> {
        self.store.secrets(app).await.map_err(storage)
    }

    /// Remove `name` with every version.
    pub async fn remove(&self, app: &str, name: &str) -> Result<(), Error> {
        check_name(name)?;
        self.invalidate(app, name);
        let removed = self.store.remove_secret(app, name).await.map_err(storage)?;
        self.invalidate(app, name);
        if removed {
            Ok(())
        } else {
            Err(not_found(app, name))
        }
    }

    /// Re-wrap every version's data key under `new` (values are not re-encrypted); how many
    /// were re-wrapped. Versions already under `new` are left as they are. The caller swaps
    /// the master key it gives to [`Secrets::new`] afterwards.
    pub async fn rewrap_all(&self, new: &MasterKey) -> Result<usize, Error> {
        let mut moved = 0;
        for (app, name, number) in self.store.all_secret_versions().await.map_err(storage)? {
            let Some(stored) = self
                .store
                .secret_version(&app, &name, Some(number))
                .await
                .map_err(storage)?
            else {
                continue;
            };
            let context = envelope::context(&app, &name, number);
            let Some(rewrapped) = envelope::rewrap(&self.master, new, &context, &stored.sealed)
            else {
                if envelope::open(new, &context, &stored.sealed).is_some() {
                    continue;
                }
                return Err(Error::new(
                    ErrorCode::Internal,
                    format!(
                        "version {number} of secret {name:?} of app {app:?} opens under neither \
                         key; nothing more was re-wrapped"
                    ),
                ));
            };
            if self
                .store
                .reseal(&app, &name, number, &stored.sealed, rewrapped)
                .await
                .map_err(storage)?
            {
                moved += 1;
            }
        }
        Ok(moved)
    }

    fn invalidate(&self, app: &str, name: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.current.rcu(|map| {
            let mut map = Cached::clone(map);
            if let Some(secrets) = map.get_mut(app) {
                secrets.remove(name);
            }
            map
        });
    }

    fn remember(&self, app: &str, secret: &Arc<Secret>, generation: u64) {
        self.current.rcu(|map| {
            let mut map = Cached::clone(map);
            // Only if no write happened since the read began.
            if self.generation.load(Ordering::Acquire) == generation {
                map.entry(app.to_owned())
                    .or_default()
                    .insert(secret.name.clone(), secret.clone());
            }
            map
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secrets(dir: &tempfile::TempDir) -> Arc<Secrets> {
        let store = nimbus_store_redb::RedbStore::open(dir.path()).unwrap();
        Secrets::new(Arc::new(store), Arc::new(MasterKey::from_bytes(&[5; 32])))
    }

    #[tokio::test]
    async fn versions_are_set_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = secrets(&dir);
        let info = secrets.set("shop", "stripe", b"one", false).await.unwrap();
        assert_eq!(info.current, 1);
        let first = secrets.get("shop", "stripe", Which::Current).await.unwrap();
        assert_eq!(&*first.value, b"one");
        assert!(first.current && !first.previous);
        let info = secrets.set("shop", "stripe", b"two", true).await.unwrap();
        assert_eq!(info.current, 2);
        let now = secrets.get("shop", "stripe", Which::Current).await.unwrap();
        assert_eq!(&*now.value, b"two", "a set replaces the cached value");
        let before = secrets
            .get("shop", "stripe", Which::Previous)
            .await
            .unwrap();
        assert_eq!((&*before.value, before.previous), (&b"one"[..], true));
        let by_number = secrets
            .get("shop", "stripe", Which::Version(1))
            .await
            .unwrap();
        assert_eq!(&*by_number.value, b"one");
        assert_eq!(
            secrets
                .get("shop", "stripe", Which::Version(9))
                .await
                .unwrap_err()
                .code,
            ErrorCode::SecretNotFound
        );
        assert_eq!(
            secrets
                .get("blog", "stripe", Which::Current)
                .await
                .unwrap_err()
                .code,
            ErrorCode::SecretNotFound
        );
        assert_eq!(
            secrets
                .set("shop", "typo", b"x", true)
                .await
                .unwrap_err()
                .code,
            ErrorCode::SecretNotFound,
            "rotate does not create"
        );
        assert!(
            format!("{now:?}").find("two").is_none(),
            "Debug hides the value"
        );

        secrets.remove("shop", "stripe").await.unwrap();
        assert_eq!(
            secrets
                .get("shop", "stripe", Which::Current)
                .await
                .unwrap_err()
                .code,
            ErrorCode::SecretNotFound,
            "removal empties the cache"
        );
        assert_eq!(
            secrets.remove("shop", "stripe").await.unwrap_err().code,
            ErrorCode::SecretNotFound
        );
    }

    #[tokio::test]
    async fn bad_names_and_values_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = secrets(&dir);
        for name in ["", "has space", "semi;colon", &"x".repeat(513)] {
            assert_eq!(
                secrets.set("a", name, b"v", false).await.unwrap_err().code,
                ErrorCode::BadRequest,
                "{name:?}"
            );
        }
        assert_eq!(
            secrets.set("a", "k", b"", false).await.unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            secrets
                .set("a", "k", &vec![b'x'; MAX_VALUE_BYTES + 1], false)
                .await
                .unwrap_err()
                .code,
            ErrorCode::PayloadTooLarge
        );
        assert!(secrets.list("a").await.unwrap().is_empty());
        assert!(valid_name("prod/db_password+1=x.y@z-"));
    }

    #[tokio::test]
    async fn rewrapping_keeps_every_version_readable_under_the_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SecretStore> =
            Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).unwrap());
        let old = Secrets::new(store.clone(), Arc::new(MasterKey::from_bytes(&[1; 32])));
        old.set("app", "a", b"first", false).await.unwrap();
        old.set("app", "a", b"second", false).await.unwrap();
        old.set("other", "b", b"third", false).await.unwrap();
        let new_key = MasterKey::from_bytes(&[2; 32]);
        assert_eq!(old.rewrap_all(&new_key).await.unwrap(), 3);
        assert_eq!(old.rewrap_all(&new_key).await.unwrap(), 0, "already moved");
        let new = Secrets::new(store, Arc::new(new_key));
        assert_eq!(
            &*new.get("app", "a", Which::Version(1)).await.unwrap().value,
            b"first"
        );
        assert_eq!(
            &*new.get("app", "a", Which::Current).await.unwrap().value,
            b"second"
        );
        assert_eq!(
            &*new.get("other", "b", Which::Current).await.unwrap().value,
            b"third"
        );
    }
}
