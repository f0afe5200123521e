//! TLS for nimbus's listeners (rustls, its `ring` provider): certificate and key pairs from PEM
//! files; per connection, the first pair whose certificate is valid for the host the client
//! names (SNI), else the first pair; HTTP/2 and HTTP/1.1 offered over ALPN; and the files read
//! again when they change ([`Tls::watch`]), so a renewed certificate is served without a
//! restart. A pair that fails to load on a reload is reported and the previous keys stay.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// A certificate chain file and its private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read the TLS certificate {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("read the TLS private key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("no TLS certificate was given")]
    Empty,
}

/// What a TLS listener serves.
pub struct Tls {
    files: Vec<CertFiles>,
    resolver: Arc<Resolver>,
    acceptor: tokio_rustls::TlsAcceptor,
    /// The files' modification times when last loaded.
    loaded: Mutex<Vec<Option<SystemTime>>>,
}

impl Tls {
    /// Load every pair; any that fails is an error (a server must not start half-configured).
    pub fn load(files: Vec<CertFiles>) -> Result<Arc<Tls>, TlsError> {
        if files.is_empty() {
            return Err(TlsError::Empty);
        }
        let keys = load_all(&files)?;
        let resolver = Arc::new(Resolver {
            keys: ArcSwap::from_pointee(keys),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Certificate {
            path: PathBuf::new(),
            message: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let stamps = stamps(&files);
        Ok(Arc::new(Tls {
            files,
            resolver,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            loaded: Mutex::new(stamps),
        }))
    }

    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// Load the files again if any changed since they were loaded; `Ok(true)` when new keys
    /// are being served.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.files);
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *loaded == now {
            return Ok(false);
        }
        // Remember the attempt either way: a broken file is reported once per change.
        *loaded = now;
        drop(loaded);
        let keys = load_all(&self.files)?;
        self.resolver.keys.store(Arc::new(keys));
        Ok(true)
    }

    /// Check the files every `every` until `shutdown`.
    pub async fn watch(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let tls = self.clone();
            let reloaded = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            match reloaded {
                Ok(Ok(true)) => tracing::info!("TLS certificates reloaded"),
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "TLS certificates not reloaded; serving the previous ones")
                }
                Err(error) => tracing::warn!(error = %error, "TLS reload task failed"),
            }
        }
    }
}

fn stamps(files: &[CertFiles]) -> Vec<Option<SystemTime>> {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    files
        .iter()
        .flat_map(|pair| [modified(&pair.cert), modified(&pair.key)])
        .collect()
}

fn load_all(files: &[CertFiles]) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
    files.iter().map(load_pair).collect()
}

fn load_pair(pair: &CertFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_error = |message: String| TlsError::Certificate {
        path: pair.cert.clone(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in the file".into()));
    }
    let key_error = |message: String| TlsError::Key {
        path: pair.key.clone(),
        message,
    };
    let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(|e| key_error(e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| key_error(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| key_error(format!("it does not match the certificate ({e})")))?;
    Ok(Arc::new(certified))
}

/// Picks the certificate for a connection by the name the client asked for.
#[derive(Debug)]
struct Resolver {
    keys: ArcSwap<Vec<Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let keys = self.keys.load();
        if let Some(name) = hello
            .server_name()
            .and_then(|n| ServerName::try_from(n).ok())
        {
            let fits = |key: &&Arc<CertifiedKey>| {
                key.end_entity_cert()
                    .ok()
                    .and_then(|cert| webpki::EndEntityCert::try_from(cert).ok())
                    .is_some_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
            };
            if let Some(key) = keys.iter().find(fits) {
                return Some(key.clone());
            }
        }
        keys.first().cloned()
    }
}
