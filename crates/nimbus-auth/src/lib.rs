//! End-user auth for apps: the GoTrue (Supabase Auth) REST API, so `@supabase/auth-js`,
//! `supabase-auth` and every other GoTrue client work unmodified.
//!
//! An app enables it with `[auth]`; each deployed version then mounts the app's [`AppAuth`] on
//! the gateway (under `/auth/v1` by default). What an app's auth holds lives in the durable
//! store ([`nimbus_store::AuthStore`]): users with Argon2id password hashes, sessions with
//! their refresh-token families, one-time tokens, and ES256 signing keys sealed under the
//! master key. In memory per app: the opened key ring (swapped whole on rotation) and the
//! brute-force throttles.
//!
//! The wire protocol is [`api`]; passwords, keys, tokens and throttles each have a module of
//! pure functions with their own tests.

pub mod admin;
pub mod api;
pub mod error;
pub mod keys;
pub mod mail;
pub mod password;
pub mod throttle;
pub mod tokens;

use arc_swap::ArcSwap;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_core::spec::AuthSpec;
use nimbus_seal::MasterKey;
use nimbus_store::auth::{AuthError, AuthStore};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Semaphore;

pub use error::ApiError;

/// Argon2id hashes computed at once (each holds 19 MiB); more wait their turn.
const CONCURRENT_HASHES: usize = 4;

/// Clock skew tolerated when checking the service's own tokens.
const LEEWAY: Duration = Duration::from_secs(30);

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An app's auth configuration, as deployed.
#[derive(Debug, Clone)]
pub struct Config {
    pub spec: AuthSpec,
    /// The `iss` of the app's tokens.
    pub issuer: String,
}

/// The auth of every app that has one.
pub struct AuthService {
    store: Arc<dyn AuthStore>,
    master: Arc<MasterKey>,
    apps: Mutex<HashMap<String, Arc<AppAuth>>>,
    hashing: Arc<Semaphore>,
    mailer: Option<mail::Mailer>,
}

impl AuthService {
    /// The service; `mailer` sends confirmation and recovery mail (without one, apps cannot
    /// require confirmed addresses).
    pub fn new(
        store: Arc<dyn AuthStore>,
        master: Arc<MasterKey>,
        mailer: Option<mail::Mailer>,
    ) -> Arc<AuthService> {
        Arc::new(AuthService {
            store,
            master,
            apps: Mutex::new(HashMap::new()),
            hashing: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
            mailer,
        })
    }

    fn apps(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AppAuth>>> {
        self.apps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `app`'s auth configured by `spec`: created (with a first signing key) the first time,
    /// reconfigured in place later, so throttles and keys outlive a redeploy. `gateway_url`
    /// is where the default issuer lives.
    pub async fn mount(
        &self,
        app: &str,
        spec: &AuthSpec,
        gateway_url: &str,
    ) -> Result<Arc<AppAuth>, String> {
        if spec.confirm_email && self.mailer.is_none() {
            return Err(format!(
                "app {app:?} sets auth.confirm_email, which mails a link to each new user, but \
                 this server has no SMTP server: start it with --smtp-url, or set \
                 confirm_email = false"
            ));
        }
        let issuer = spec
            .issuer
            .clone()
            .unwrap_or_else(|| format!("{}{}", gateway_url.trim_end_matches('/'), spec.path));
        let config = Config {
            spec: spec.clone(),
            issuer,
        };
        if let Some(existing) = self.apps().get(app).cloned() {
            existing.reconfigure(config);
            return Ok(existing);
        }
        let ring = self.key_ring(app).await?;
        let auth = Arc::new(AppAuth {
            app: app.to_owned(),
            throttles: ArcSwap::from_pointee(Throttles::new(&config.spec)),
            config: ArcSwap::from_pointee(config),
            keys: ArcSwap::from_pointee(ring),
            store: self.store.clone(),
            hashing: self.hashing.clone(),
            mailer: self.mailer.clone(),
        });
        Ok(self.apps().entry(app.to_owned()).or_insert(auth).clone())
    }

    /// The app's key ring, creating its first key if it has none.
    async fn key_ring(&self, app: &str) -> Result<keys::KeyRing, String> {
        loop {
            let records = self
                .store
                .signing_keys(app)
                .await
                .map_err(|e| format!("reading the signing keys of {app:?}: {e}"))?;
            if !records.is_empty() {
                return keys::KeyRing::open(app, &records, &self.master);
            }
            let first = keys::generate(app, &self.master, now_ms())?;
            match self.store.replace_signing_keys(app, &[], vec![first]).await {
                Ok(()) | Err(AuthError::KeysChanged) => continue,
                Err(error) => return Err(format!("storing a signing key of {app:?}: {error}")),
            }
        }
    }

    /// The app's mounted auth, if it has one.
    pub fn app(&self, app: &str) -> Option<Arc<AppAuth>> {
        self.apps().get(app).cloned()
    }

    /// Put a new signing key in front of `app`'s; the old ones verify until their tokens
    /// expire. The new key's id.
    pub async fn rotate_keys(&self, app: &str) -> Result<String, Error> {
        let auth = self.app(app).ok_or_else(|| {
            Error::new(
                ErrorCode::AppNotFound,
                format!("no deployed app {app:?} has an [auth] section"),
            )
        })?;
        let keep = auth.config.load().spec.access_token_ttl + LEEWAY;
        let internal = |message: String| Error::new(ErrorCode::Internal, message);
        loop {
            let records = self
                .store
                .signing_keys(app)
                .await
                .map_err(|e| internal(format!("reading the signing keys failed: {e}")))?;
            let next =
                keys::rotated(app, &records, &self.master, now_ms(), keep).map_err(internal)?;
            let expected: Vec<String> = records.iter().map(|k| k.kid.clone()).collect();
            match self
                .store
                .replace_signing_keys(app, &expected, next.clone())
                .await
            {
                Ok(()) => {
                    let ring = keys::KeyRing::open(app, &next, &self.master).map_err(internal)?;
                    let kid = ring.signer.kid.clone();
                    auth.keys.store(Arc::new(ring));
                    tracing::info!(app, kid, "auth signing key rotated");
                    return Ok(kid);
                }
                Err(AuthError::KeysChanged) => continue,
                Err(error) => {
                    return Err(internal(format!(
                        "storing the signing keys failed: {error}"
                    )));
                }
            }
        }
    }

    /// How many users `app` has, counting at most `at_most`.
    pub async fn user_count(&self, app: &str, at_most: usize) -> Result<usize, AuthError> {
        Ok(self.store.users(app, None, at_most).await?.len())
    }

    /// Forget `app`'s auth: its users, sessions and keys (the app is being removed).
    pub async fn forget(&self, app: &str) -> Result<(), AuthError> {
        self.apps().remove(app);
        self.store.remove_auth(app).await
    }
}

/// The brute-force throttles of one app.
pub(crate) struct Throttles {
    limits: (
        nimbus_core::spec::RateLimitSpec,
        nimbus_core::spec::RateLimitSpec,
    ),
    pub(crate) per_ip: throttle::Throttle,
    pub(crate) per_account: throttle::Throttle,
}

impl Throttles {
    fn new(spec: &AuthSpec) -> Throttles {
        Throttles {
            limits: (
                spec.attempts_per_ip.clone(),
                spec.failures_per_account.clone(),
            ),
            per_ip: throttle::Throttle::new(&spec.attempts_per_ip),
            per_account: throttle::Throttle::new(&spec.failures_per_account),
        }
    }
}

/// One app's auth: what the gateway routes `/auth/v1/…` to.
pub struct AppAuth {
    app: String,
    config: ArcSwap<Config>,
    keys: ArcSwap<keys::KeyRing>,
    throttles: ArcSwap<Throttles>,
    store: Arc<dyn AuthStore>,
    hashing: Arc<Semaphore>,
    mailer: Option<mail::Mailer>,
}

impl AppAuth {
    fn reconfigure(&self, config: Config) {
        let throttles = self.throttles.load();
        if throttles.limits
            != (
                config.spec.attempts_per_ip.clone(),
                config.spec.failures_per_account.clone(),
            )
        {
            self.throttles.store(Arc::new(Throttles::new(&config.spec)));
        }
        self.config.store(Arc::new(config));
    }

    pub fn app(&self) -> &str {
        &self.app
    }

    /// The `iss` of the app's tokens.
    pub fn issuer(&self) -> String {
        self.config.load().issuer.clone()
    }

    /// The app's public keys, as a JWKS document.
    pub fn jwks(&self) -> Arc<[u8]> {
        self.keys.load().jwks.clone()
    }
}
