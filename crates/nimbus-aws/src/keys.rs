//! Access keys: created with a random id and secret, the secret sealed under the platform's
//! master key before it is stored (AES-256-GCM, the key id as associated data, so a sealed
//! secret cannot be moved to another id) and shown to its creator once.
//!
//! Signature checks need the secret in the clear, as AWS's do: a key's secret is opened on its
//! first use and kept in memory beside its principal, in a copy-on-write map read without a
//! lock; revoking a key removes it from both.

use arc_swap::ArcSwap;
use nimbus_store::{AccessKeyRecord, KeyStore, StoreError};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use nimbus_seal::{MASTER_KEY_FILE, MasterKey};

/// Prefix of every access key id nimbus issues (AWS's are `AKIA…`).
pub const KEY_ID_PREFIX: &str = "NKIA";

/// Who a request is, once its signature checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An operator-wide key: every bucket.
    Operator,
    /// An app's key: that app's resources only.
    App(String),
    /// No signature: only what is public (objects of a `public_read` bucket).
    Anonymous,
    /// A function instance's temporary credentials: its app's buckets, as its grants allow.
    Function {
        app: String,
        function: String,
        grants: Arc<nimbus_core::Grants>,
    },
}

/// A principal the platform vouches for without a signature: a request it forwards on behalf
/// of a function it has identified itself (a Wasm guest's `http://nimbus.internal/s3/…`).
/// Lives only in a request's extensions, which nothing outside the server can set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegated(pub Principal);

/// Prefix of temporary (session) access key ids.
pub const SESSION_KEY_PREFIX: &str = "NSIA";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the access key store failed")]
    Store(#[from] StoreError),
    #[error(
        "the secret of access key {0} cannot be opened with this data directory's master key; \
         revoke the key and create a new one"
    )]
    Unsealable(String),
}

/// A key as listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub app: Option<String>,
    pub created_ms: u64,
    pub description: Option<String>,
}

/// A key just created: the only time its secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: KeyInfo,
    pub secret: String,
}

pub(crate) struct Known {
    pub(crate) secret: s3s::auth::SecretKey,
    pub(crate) principal: Principal,
    /// Temporary credentials: the session token requests must carry, and the expiry.
    session: Option<(String, u64)>,
}

/// Temporary credentials just minted.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub secret: String,
    pub token: String,
    pub expires_ms: u64,
}

/// The platform's access keys. Cheap to clone.
#[derive(Clone)]
pub struct Keys {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    master: Arc<MasterKey>,
    known: ArcSwap<HashMap<String, Arc<Known>>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").finish_non_exhaustive()
    }
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .filter_map(|_| alphabet.get(rng.random_range(0..alphabet.len())))
        .map(|&b| char::from(b))
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn info(record: &AccessKeyRecord) -> KeyInfo {
    KeyInfo {
        id: record.id.clone(),
        app: record.app.clone(),
        created_ms: record.created_ms,
        description: record.description.clone(),
    }
}

impl Keys {
    pub fn new(store: Arc<dyn KeyStore>, master: Arc<MasterKey>) -> Keys {
        Keys {
            inner: Arc::new(Inner {
                store,
                master,
                known: ArcSwap::default(),
            }),
        }
    }

    /// Create a key for `app` (none: operator-wide).
    pub async fn create(
        &self,
        app: Option<&str>,
        description: Option<&str>,
    ) -> Result<CreatedKey, KeyError> {
        const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET_ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        loop {
            let id = format!("{KEY_ID_PREFIX}{}", random_string(ID_ALPHABET, 16));
            let secret = random_string(SECRET_ALPHABET, 40);
            let record = AccessKeyRecord {
                sealed_secret: self.inner.master.seal(id.as_bytes(), secret.as_bytes()),
                id,
                app: app.map(str::to_owned),
                created_ms: now_ms(),
                description: description.map(str::to_owned),
            };
            let info = info(&record);
            // 80 random bits: a collision is astronomically unlikely, but cheap to retry.
            if self.inner.store.insert_key(record).await? {
                return Ok(CreatedKey { info, secret });
            }
        }
    }

    /// Re-seal every key's secret under `new` (a master-key rotation); how many were moved.
    /// Secrets already under `new` are left as they are, so an interrupted rotation resumes.
    pub async fn reseal_all(&self, new: &MasterKey) -> Result<usize, KeyError> {
        let mut moved = 0;
        for record in self.inner.store.keys().await? {
            let context = record.id.as_bytes();
            let Some(secret) = self.inner.master.open(context, &record.sealed_secret) else {
                if new.open(context, &record.sealed_secret).is_some() {
                    continue;
                }
                return Err(KeyError::Unsealable(record.id));
            };
            let sealed = new.seal(context, &secret);
            if self
                .inner
                .store
                .reseal_key(&record.id, &record.sealed_secret, sealed)
                .await?
            {
                moved += 1;
            }
        }
        Ok(moved)
    }

    pub async fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(self.inner.store.keys().await?.iter().map(info).collect())
    }

    /// Revoke a key; false if there was none. Requests signed with it fail from now on.
    pub async fn revoke(&self, id: &str) -> Result<bool, KeyError> {
        let removed = self.inner.store.remove_key(id).await?;
        self.forget(|known_id, _| known_id == id);
        Ok(removed)
    }

    /// Revoke every key of `app` (the app is being removed); how many there were.
    pub async fn revoke_app(&self, app: &str) -> Result<usize, KeyError> {
        let mut revoked = 0;
        for key in self.inner.store.keys().await? {
            if key.app.as_deref() == Some(app) && self.inner.store.remove_key(&key.id).await? {
                revoked += 1;
            }
        }
        self.forget(|_, known| known.principal == Principal::App(app.to_owned()));
        Ok(revoked)
    }

    fn forget(&self, gone: impl Fn(&str, &Known) -> bool) {
        self.inner.known.rcu(|known| {
            let mut known = HashMap::clone(known);
            known.retain(|id, k| !gone(id, k));
            known
        });
    }

    /// Who `id` signs for, if it is a live key.
    pub async fn principal(&self, id: &str) -> Result<Option<Principal>, KeyError> {
        Ok(self.resolve(id).await?.map(|k| k.principal.clone()))
    }

    /// Temporary credentials for `principal`, valid for `ttl`: kept in memory only (a restart
    /// restarts every instance, which get new ones), never stored.
    pub fn mint_session(&self, principal: Principal, ttl: std::time::Duration) -> Session {
        const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET_ALPHABET: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let session = Session {
            id: format!("{SESSION_KEY_PREFIX}{}", random_string(ID_ALPHABET, 16)),
            secret: random_string(SECRET_ALPHABET, 40),
            token: random_string(SECRET_ALPHABET, 64),
            expires_ms: now_ms() + ttl.as_millis() as u64,
        };
        let known = Arc::new(Known {
            secret: s3s::auth::SecretKey::from(session.secret.clone()),
            principal,
            session: Some((session.token.clone(), session.expires_ms)),
        });
        let now = now_ms();
        self.inner.known.rcu(|all| {
            let mut all = HashMap::clone(all);
            // Expired sessions go as new ones come.
            all.retain(|_, k| k.session.as_ref().is_none_or(|(_, expires)| *expires > now));
            all.insert(session.id.clone(), known.clone());
            all
        });
        session
    }

    /// End temporary credentials before they expire (their instance has ended). Stored keys
    /// are revoked with [`Keys::revoke`], not here.
    pub fn end_session(&self, id: &str) {
        if id.starts_with(SESSION_KEY_PREFIX) {
            self.forget(|known_id, _| known_id == id);
        }
    }

    /// Does a request signed with `id` carry the session token it needs (none for a stored
    /// key; the minted one for temporary credentials)?
    pub fn session_token_matches(&self, id: &str, presented: Option<&str>) -> bool {
        use subtle::ConstantTimeEq as _;
        match self.inner.known.load().get(id).map(|k| k.session.clone()) {
            Some(Some((token, _))) => {
                presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(token.as_bytes())))
            }
            _ => true,
        }
    }

    pub(crate) async fn resolve(&self, id: &str) -> Result<Option<Arc<Known>>, KeyError> {
        if let Some(known) = self.inner.known.load().get(id) {
            if let Some((_, expires)) = &known.session
                && *expires <= now_ms()
            {
                return Ok(None);
            }
            return Ok(Some(known.clone()));
        }
        if id.starts_with(SESSION_KEY_PREFIX) {
            // Sessions live in memory only.
            return Ok(None);
        }
        let Some(record) = self.inner.store.key(id).await? else {
            return Ok(None);
        };
        let secret = self
            .inner
            .master
            .open(record.id.as_bytes(), &record.sealed_secret)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| KeyError::Unsealable(record.id.clone()))?;
        let known = Arc::new(Known {
            secret: s3s::auth::SecretKey::from(secret),
            principal: match record.app {
                Some(app) => Principal::App(app),
                None => Principal::Operator,
            },
            session: None,
        });
        self.inner.known.rcu(|all| {
            let mut all = HashMap::clone(all);
            all.insert(record.id.clone(), known.clone());
            all
        });
        Ok(Some(known))
    }
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        match self.resolve(access_key).await {
            Ok(Some(known)) => Ok(known.secret.clone()),
            Ok(None) => Err(s3s::s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
            Err(error) => {
                tracing::error!(error = %error, key = access_key, "access key lookup");
                Err(s3s::s3_error!(InternalError, "{error}"))
            }
        }
    }
}
