//! What operators do to an app's users through the admin API (`nimbus users …`): list,
//! create (with a password or an imported hash), ban and unban, remove. Errors are the
//! platform's own codes, not GoTrue's: this is nimbus's API.

use crate::{AuthService, now_ms, password};
use nimbus_api::{CreateUserRequest, UserEntry, UserPage};
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_store::auth::{AuthError, UserRecord};
use std::time::Duration;

/// Most users one listing page holds.
pub const MAX_PAGE: usize = 1000;

fn store_error(error: AuthError) -> Error {
    match error {
        AuthError::EmailTaken(email) => Error::new(
            ErrorCode::UserExists,
            format!("a user with the e-mail address {email:?} is already registered"),
        ),
        AuthError::NoSuchUser(id) => Error::new(ErrorCode::UserNotFound, format!("no user {id}")),
        other => {
            let message = other.to_string();
            Error::new(ErrorCode::Internal, message).caused_by(other)
        }
    }
}

pub fn entry(user: &UserRecord) -> UserEntry {
    UserEntry {
        id: user.id.clone(),
        email: user.email.clone(),
        confirmed: user.email_confirmed_ms.is_some(),
        banned_until_ms: user.banned_until_ms,
        last_sign_in_ms: user.last_sign_in_ms,
        created_ms: user.created_ms,
        user_metadata: user.user_metadata.clone(),
        app_metadata: user.app_metadata.clone(),
    }
}

impl AuthService {
    fn check_enabled(&self, app: &str) -> Result<(), Error> {
        if self.app(app).is_none() {
            return Err(Error::new(
                ErrorCode::AppNotFound,
                format!("no deployed app {app:?} has an [auth] section"),
            ));
        }
        Ok(())
    }

    async fn existing(&self, app: &str, id: &str) -> Result<UserRecord, Error> {
        self.check_enabled(app)?;
        self.store
            .user(app, id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UserNotFound,
                    format!("app {app:?} has no user {id}"),
                )
            })
    }

    /// A page of `app`'s users after the id `after`.
    pub async fn list_users(
        &self,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<UserPage, Error> {
        self.check_enabled(app)?;
        let limit = limit.clamp(1, MAX_PAGE);
        let users = self
            .store
            .users(app, after, limit + 1)
            .await
            .map_err(store_error)?;
        let more = users.len() > limit;
        let users: Vec<UserEntry> = users.iter().take(limit).map(entry).collect();
        Ok(UserPage {
            next: more.then(|| users.last().map(|u| u.id.clone())).flatten(),
            users,
        })
    }

    /// Create a user as an operator: the app's password rules apply to a password; an
    /// imported hash must be one nimbus can check (and is rehashed at the first sign-in).
    pub async fn create_user(
        &self,
        app: &str,
        request: CreateUserRequest,
    ) -> Result<UserEntry, Error> {
        let auth = self.app(app).ok_or_else(|| {
            Error::new(
                ErrorCode::AppNotFound,
                format!("no deployed app {app:?} has an [auth] section"),
            )
        })?;
        let bad = |message: String| Error::new(ErrorCode::BadRequest, message);
        let email = crate::api::validate_email(&request.email).map_err(|e| bad(e.message))?;
        let password_hash = match (request.password, request.password_hash) {
            (Some(_), Some(_)) => {
                return Err(bad("give a password or a password hash, not both".into()));
            }
            (Some(password), None) => {
                let config = auth.config.load_full();
                password::check_strength(
                    &password,
                    config.spec.password_min_length as usize,
                    &config.spec.password_requires,
                )
                .map_err(|e| bad(e.message))?;
                let _permit = self.hashing.acquire().await.map_err(|e| {
                    Error::new(ErrorCode::Internal, "the password hasher stopped").caused_by(e)
                })?;
                let hashed = tokio::task::spawn_blocking(move || password::hash(&password))
                    .await
                    .map_err(|e| Error::new(ErrorCode::Internal, "hashing failed").caused_by(e))?
                    .map_err(|e| Error::new(ErrorCode::Internal, format!("hashing failed: {e}")))?;
                Some(hashed)
            }
            (None, Some(hash)) => {
                if !password::is_supported_hash(&hash) {
                    return Err(bad(
                        "the password hash is neither bcrypt ($2a$/$2b$/$2y$, 60 characters) nor \
                         an Argon2 PHC string ($argon2id$…)"
                            .into(),
                    ));
                }
                Some(hash)
            }
            (None, None) => None,
        };
        let user = crate::tokens::new_user(
            email,
            password_hash,
            request.confirmed,
            request.user_metadata,
            now_ms(),
        );
        self.store
            .insert_user(app, user.clone())
            .await
            .map_err(store_error)?;
        Ok(entry(&user))
    }

    /// Refuse `id`'s sign-ins for `duration` (or until unbanned) and end their sessions;
    /// `None` lifts a ban.
    pub async fn ban_user(
        &self,
        app: &str,
        id: &str,
        duration: Option<Option<Duration>>,
    ) -> Result<UserEntry, Error> {
        let mut user = self.existing(app, id).await?;
        let now = now_ms();
        user.banned_until_ms =
            duration.map(|d| d.map_or(u64::MAX, |d| now.saturating_add(d.as_millis() as u64)));
        user.updated_ms = now;
        self.store
            .update_user(app, user.clone())
            .await
            .map_err(store_error)?;
        if user.banned_until_ms.is_some() {
            self.store
                .end_sessions(app, id, None)
                .await
                .map_err(store_error)?;
        }
        Ok(entry(&user))
    }

    /// Remove `id` with their sessions.
    pub async fn remove_user(&self, app: &str, id: &str) -> Result<UserEntry, Error> {
        let user = self.existing(app, id).await?;
        self.store.remove_user(app, id).await.map_err(store_error)?;
        Ok(entry(&user))
    }
}
