//! Who may do what on the admin API, and the record of what was done.
//!
//! The data directory's `admin.token` is the root token (every scope). Scoped tokens
//! (`nimbus tokens create --scope read|deploy|admin`) are 256 random bits, shown once and kept
//! as their SHA-256; the server holds their hashes in memory, swapped whole on each change.
//! A request needs the scope its route asks for ([`required`], a pure table): `read` for
//! reading, `deploy` for shipping code and driving what is deployed, `admin` for credentials,
//! data and removal. Every request that is not a read — refused or not — is appended to the
//! audit log with who made it and what was answered (`nimbus audit`).

use arc_swap::ArcSwap;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_store::{AdminStore, AdminTokenRecord, AuditEntry};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::Arc;

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// Scrape `/metrics` and nothing else: the metrics token's (`serve
    /// --metrics-token-file`), for a Prometheus server that should read no app's data.
    Metrics,
    Read,
    Deploy,
    Admin,
}

impl Scope {
    pub(crate) fn parse(text: &str) -> Option<Scope> {
        match text {
            "read" => Some(Scope::Read),
            "deploy" => Some(Scope::Deploy),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Metrics => "metrics",
            Scope::Read => "read",
            Scope::Deploy => "deploy",
            Scope::Admin => "admin",
        }
    }
}

/// The scope a request needs: reads need `read`; uploading, deploying, rolling back, invoking,
/// sending, publishing and redriving need `deploy`; everything else (keys, secrets, users,
/// tokens, buckets, objects, entries, removal) needs `admin`.
pub(crate) fn required(method: &http::Method, path: &str) -> Scope {
    if (method == http::Method::GET || method == http::Method::HEAD) && path == "/metrics" {
        return Scope::Metrics;
    }
    if method == http::Method::GET || method == http::Method::HEAD {
        // The audit log tells who did what: it is the administrators' to read.
        return if path.starts_with("/v1/audit") || path.starts_with("/v1/tokens") {
            Scope::Admin
        } else {
            Scope::Read
        };
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let deploy = matches!(
        (method.as_str(), segments.as_slice()),
        ("PUT", ["v1", "artifacts", _])
            | ("POST", ["v1", "deploy"])
            | ("POST", ["v1", "apps", _, "rollback"])
            | ("POST", ["v1", "apps", _, "functions", _, "invoke"])
            | (
                "POST",
                ["v1", "apps", _, "queues", _, "messages" | "redrive"]
            )
            | ("POST", ["v1", "apps", _, "queues", _, "messages", "batch"])
            | ("POST", ["v1", "apps", _, "events"])
    );
    if deploy { Scope::Deploy } else { Scope::Admin }
}

/// Who presented a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Actor {
    /// `root`, or the token's id.
    pub(crate) name: String,
    pub(crate) scope: Scope,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn storage(error: nimbus_store::StoreError) -> Error {
    Error::new(ErrorCode::Internal, "the admin store failed").caused_by(error)
}

/// The admin API's tokens and audit log.
pub(crate) struct Access {
    root: [u8; 32],
    /// The metrics token's hash, if the server was given one.
    metrics: Option<[u8; 32]>,
    store: Arc<dyn AdminStore>,
    /// Hash of each scoped token → its id and scope.
    tokens: ArcSwap<HashMap<[u8; 32], Actor>>,
    changes: tokio::sync::Mutex<()>,
}

impl Access {
    /// Load the scoped tokens from `store`; `root` is the data directory's token, `metrics`
    /// the one that may only scrape metrics.
    pub(crate) async fn load(
        root: &str,
        metrics: Option<&str>,
        store: Arc<dyn AdminStore>,
    ) -> anyhow::Result<Access> {
        let access = Access {
            root: hash(root),
            metrics: metrics.map(hash),
            store,
            tokens: ArcSwap::default(),
            changes: tokio::sync::Mutex::new(()),
        };
        access.reload().await.map_err(|e| anyhow::anyhow!(e))?;
        Ok(access)
    }

    async fn reload(&self) -> Result<(), Error> {
        let records = self.store.admin_tokens().await.map_err(storage)?;
        let map = records
            .into_iter()
            .filter_map(|record| {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(&record.hash, &mut bytes).ok()?;
                let scope = Scope::parse(&record.scope)?;
                Some((
                    bytes,
                    Actor {
                        name: record.id,
                        scope,
                    },
                ))
            })
            .collect();
        self.tokens.store(Arc::new(map));
        Ok(())
    }

    /// Who `token` is, if anyone. Compares hashes, so the comparison's time says nothing
    /// about the token.
    pub(crate) fn actor(&self, token: &str) -> Option<Actor> {
        let presented = hash(token);
        if presented == self.root {
            return Some(Actor {
                name: "root".into(),
                scope: Scope::Admin,
            });
        }
        if self.metrics == Some(presented) {
            return Some(Actor {
                name: "metrics".into(),
                scope: Scope::Metrics,
            });
        }
        self.tokens.load().get(&presented).cloned()
    }

    /// Make a token: its record and the token itself (shown once).
    pub(crate) async fn create(
        &self,
        scope: &str,
        name: Option<String>,
    ) -> Result<(AdminTokenRecord, String), Error> {
        let Some(scope) = Scope::parse(scope) else {
            return Err(Error::new(
                ErrorCode::BadRequest,
                format!("{scope:?} is not a scope: read, deploy or admin"),
            ));
        };
        let token = format!("nt_{}", hex::encode(rand::random::<[u8; 32]>()));
        let record = AdminTokenRecord {
            id: format!("at_{}", hex::encode(rand::random::<[u8; 8]>())),
            name,
            scope: scope.as_str().to_owned(),
            hash: hex::encode(hash(&token)),
            created_ms: now_ms(),
        };
        let _change = self.changes.lock().await;
        if !self
            .store
            .insert_admin_token(record.clone())
            .await
            .map_err(storage)?
        {
            return Err(Error::new(
                ErrorCode::Internal,
                "a random id was taken; try again",
            ));
        }
        self.reload().await?;
        Ok((record, token))
    }

    pub(crate) async fn list(&self) -> Result<Vec<AdminTokenRecord>, Error> {
        self.store.admin_tokens().await.map_err(storage)
    }

    /// Revoke a token: refused from the next request on.
    pub(crate) async fn remove(&self, id: &str) -> Result<(), Error> {
        let _change = self.changes.lock().await;
        if !self.store.remove_admin_token(id).await.map_err(storage)? {
            return Err(Error::new(
                ErrorCode::KeyNotFound,
                format!("no admin token {id:?} (`nimbus tokens ls`)"),
            ));
        }
        self.reload().await
    }

    /// Append one admin write to the audit log. A failure is logged, not answered: the
    /// write it records has already happened.
    pub(crate) async fn record(&self, actor: &str, method: &http::Method, path: &str, status: u16) {
        let entry = AuditEntry {
            seq: 0,
            time_ms: now_ms(),
            actor: actor.to_owned(),
            method: method.to_string(),
            path: path.to_owned(),
            status,
        };
        if let Err(error) = self.store.append_audit(entry).await {
            tracing::error!(error = %crate::report(&error), actor, %method, path, status, "the audit log could not be written");
        }
    }

    pub(crate) async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, Error> {
        self.store.audit(after, limit).await.map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn each_route_needs_its_scope() {
        for (method, path, scope) in [
            (Method::GET, "/metrics", Scope::Metrics),
            (Method::POST, "/metrics", Scope::Admin),
            (Method::GET, "/metrics/extra", Scope::Read),
            (Method::GET, "/v1/apps", Scope::Read),
            (Method::GET, "/v1/apps/shop/secrets", Scope::Read),
            (Method::GET, "/v1/audit", Scope::Admin),
            (Method::GET, "/v1/tokens", Scope::Admin),
            (Method::PUT, "/v1/artifacts/abc", Scope::Deploy),
            (Method::POST, "/v1/deploy", Scope::Deploy),
            (Method::POST, "/v1/apps/shop/rollback", Scope::Deploy),
            (
                Method::POST,
                "/v1/apps/shop/functions/f/invoke",
                Scope::Deploy,
            ),
            (
                Method::POST,
                "/v1/apps/shop/queues/jobs/messages",
                Scope::Deploy,
            ),
            (
                Method::POST,
                "/v1/apps/shop/queues/jobs/messages/batch",
                Scope::Deploy,
            ),
            (
                Method::POST,
                "/v1/apps/shop/queues/jobs/redrive",
                Scope::Deploy,
            ),
            (Method::POST, "/v1/apps/shop/events", Scope::Deploy),
            (Method::DELETE, "/v1/apps/shop", Scope::Admin),
            (Method::POST, "/v1/keys", Scope::Admin),
            (Method::PUT, "/v1/apps/shop/secrets/k", Scope::Admin),
            (Method::POST, "/v1/apps/shop/apikeys", Scope::Admin),
            (Method::POST, "/v1/apps/shop/users", Scope::Admin),
            (Method::POST, "/v1/tokens", Scope::Admin),
            (Method::PUT, "/v1/buckets/b/objects/k", Scope::Admin),
            (Method::POST, "/v1/deploy/extra", Scope::Admin),
        ] {
            assert_eq!(required(&method, path), scope, "{method} {path}");
        }
        assert!(Scope::Admin > Scope::Deploy && Scope::Deploy > Scope::Read);
        assert!(
            Scope::Read > Scope::Metrics,
            "the metrics token reads nothing else"
        );
    }
}
