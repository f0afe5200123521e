//! The embedded [`AuthStore`]: users, sessions, refresh and one-time tokens and signing keys
//! as rows keyed by app first, with index tables (e-mail → user, user → sessions, session →
//! tokens, user → one-time tokens) kept in the same transactions as the rows they index.
//! Every write is a fully durable commit: a user told "signed up" or "signed out" stays so.

use crate::{Inner, RedbStore};
use async_trait::async_trait;
use nimbus_store::auth::{
    AuthError, AuthResult, AuthStore, OneTimePurpose, Refreshed, SessionRecord, SigningKeyRecord,
    UserRecord,
};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// (app, user id) → JSON [`UserRecord`].
pub(crate) const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("auth_users");
/// (app, e-mail) → user id.
pub(crate) const EMAILS: TableDefinition<(&str, &str), &str> = TableDefinition::new("auth_emails");
/// (app, session id) → JSON [`SessionRecord`].
pub(crate) const SESSIONS: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("auth_sessions");
/// (app, user id, session id).
pub(crate) const USER_SESSIONS: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("auth_user_sessions");
/// (app, token hash) → JSON [`TokenRow`].
pub(crate) const TOKENS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("auth_tokens");
/// (app, session id, token hash).
pub(crate) const SESSION_TOKENS: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("auth_session_tokens");
/// (app, purpose, token hash) → JSON [`OneTimeRow`].
pub(crate) const ONE_TIME: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("auth_one_time");
/// (app, user id, purpose) → token hash.
pub(crate) const USER_ONE_TIME: TableDefinition<(&str, &str, &str), &str> =
    TableDefinition::new("auth_user_one_time");
/// app → JSON array of [`SigningKeyRecord`], newest first.
pub(crate) const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("auth_keys");

#[derive(Serialize, Deserialize)]
struct TokenRow {
    session_id: String,
    /// When a refresh replaced it.
    revoked_ms: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct OneTimeRow {
    user_id: String,
    created_ms: u64,
}

fn db(error: impl Into<nimbus_store::BoxError>) -> AuthError {
    AuthError::backend(error)
}

fn to_json<T: Serialize>(value: &T) -> AuthResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(db)
}

fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> AuthResult<T> {
    serde_json::from_slice(bytes).map_err(db)
}

fn purpose_key(purpose: OneTimePurpose) -> &'static str {
    match purpose {
        OneTimePurpose::Confirmation => "confirmation",
        OneTimePurpose::Recovery => "recovery",
    }
}

/// The third parts of the keys of `table` that start with (`a`, `b`).
fn third_parts(
    table: &impl ReadableTable<(&'static str, &'static str, &'static str), ()>,
    a: &str,
    b: &str,
) -> AuthResult<Vec<String>> {
    let mut found = Vec::new();
    for entry in table.range((a, b, "")..).map_err(db)? {
        let (key, _) = entry.map_err(db)?;
        let (ka, kb, kc) = key.value();
        if ka != a || kb != b {
            break;
        }
        found.push(kc.to_owned());
    }
    Ok(found)
}

/// End `session` of `app` with its tokens, inside `txn`; whether it existed.
fn end_session_in(txn: &WriteTransaction, app: &str, session: &str) -> AuthResult<bool> {
    let mut sessions = txn.open_table(SESSIONS).map_err(db)?;
    let Some(row) = sessions.remove((app, session)).map_err(db)? else {
        return Ok(false);
    };
    let record: SessionRecord = from_json(row.value())?;
    drop(row);
    let mut user_sessions = txn.open_table(USER_SESSIONS).map_err(db)?;
    user_sessions
        .remove((app, record.user_id.as_str(), session))
        .map_err(db)?;
    let mut session_tokens = txn.open_table(SESSION_TOKENS).map_err(db)?;
    let hashes = third_parts(&session_tokens, app, session)?;
    let mut tokens = txn.open_table(TOKENS).map_err(db)?;
    for hash in &hashes {
        tokens.remove((app, hash.as_str())).map_err(db)?;
        session_tokens
            .remove((app, session, hash.as_str()))
            .map_err(db)?;
    }
    Ok(true)
}

impl Inner {
    fn auth_insert_user(&self, app: &str, user: &UserRecord) -> AuthResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut emails = txn.open_table(EMAILS).map_err(db)?;
            if emails
                .get((app, user.email.as_str()))
                .map_err(db)?
                .is_some()
            {
                return Err(AuthError::EmailTaken(user.email.clone()));
            }
            emails
                .insert((app, user.email.as_str()), user.id.as_str())
                .map_err(db)?;
            let mut users = txn.open_table(USERS).map_err(db)?;
            users
                .insert((app, user.id.as_str()), to_json(user)?.as_slice())
                .map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    fn auth_user(&self, app: &str, id: &str) -> AuthResult<Option<UserRecord>> {
        let txn = self.db.begin_read().map_err(db)?;
        let users = txn.open_table(USERS).map_err(db)?;
        let row = users.get((app, id)).map_err(db)?;
        row.map(|row| from_json(row.value())).transpose()
    }

    fn auth_user_by_email(&self, app: &str, email: &str) -> AuthResult<Option<UserRecord>> {
        let txn = self.db.begin_read().map_err(db)?;
        let emails = txn.open_table(EMAILS).map_err(db)?;
        let Some(id) = emails.get((app, email)).map_err(db)? else {
            return Ok(None);
        };
        let users = txn.open_table(USERS).map_err(db)?;
        let row = users.get((app, id.value())).map_err(db)?;
        row.map(|row| from_json(row.value())).transpose()
    }

    fn auth_update_user(&self, app: &str, user: &UserRecord) -> AuthResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut users = txn.open_table(USERS).map_err(db)?;
            let old: UserRecord = match users.get((app, user.id.as_str())).map_err(db)? {
                Some(row) => from_json(row.value())?,
                None => return Err(AuthError::NoSuchUser(user.id.clone())),
            };
            if old.email != user.email {
                let mut emails = txn.open_table(EMAILS).map_err(db)?;
                if emails
                    .get((app, user.email.as_str()))
                    .map_err(db)?
                    .is_some()
                {
                    return Err(AuthError::EmailTaken(user.email.clone()));
                }
                emails.remove((app, old.email.as_str())).map_err(db)?;
                emails
                    .insert((app, user.email.as_str()), user.id.as_str())
                    .map_err(db)?;
            }
            users
                .insert((app, user.id.as_str()), to_json(user)?.as_slice())
                .map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    fn auth_remove_user(&self, app: &str, id: &str) -> AuthResult<bool> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut users = txn.open_table(USERS).map_err(db)?;
            let Some(row) = users.remove((app, id)).map_err(db)? else {
                return Ok(false);
            };
            let user: UserRecord = from_json(row.value())?;
            drop(row);
            let mut emails = txn.open_table(EMAILS).map_err(db)?;
            emails.remove((app, user.email.as_str())).map_err(db)?;
        }
        let sessions = {
            let user_sessions = txn.open_table(USER_SESSIONS).map_err(db)?;
            third_parts(&user_sessions, app, id)?
        };
        for session in &sessions {
            end_session_in(&txn, app, session)?;
        }
        {
            let mut user_one_time = txn.open_table(USER_ONE_TIME).map_err(db)?;
            let mut one_time = txn.open_table(ONE_TIME).map_err(db)?;
            for purpose in [OneTimePurpose::Confirmation, OneTimePurpose::Recovery] {
                let purpose = purpose_key(purpose);
                if let Some(hash) = user_one_time.remove((app, id, purpose)).map_err(db)? {
                    one_time.remove((app, purpose, hash.value())).map_err(db)?;
                }
            }
        }
        txn.commit().map_err(db)?;
        Ok(true)
    }

    fn auth_users(
        &self,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> AuthResult<Vec<UserRecord>> {
        let txn = self.db.begin_read().map_err(db)?;
        let users = txn.open_table(USERS).map_err(db)?;
        let mut found = Vec::new();
        for entry in users.range((app, after.unwrap_or(""))..).map_err(db)? {
            let (key, row) = entry.map_err(db)?;
            let (key_app, key_id) = key.value();
            if key_app != app || found.len() == limit {
                break;
            }
            if after == Some(key_id) {
                continue;
            }
            found.push(from_json(row.value())?);
        }
        Ok(found)
    }

    fn auth_create_session(
        &self,
        app: &str,
        session: &SessionRecord,
        token_hash: &str,
    ) -> AuthResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut sessions = txn.open_table(SESSIONS).map_err(db)?;
            sessions
                .insert((app, session.id.as_str()), to_json(session)?.as_slice())
                .map_err(db)?;
            let mut user_sessions = txn.open_table(USER_SESSIONS).map_err(db)?;
            user_sessions
                .insert((app, session.user_id.as_str(), session.id.as_str()), ())
                .map_err(db)?;
            let mut tokens = txn.open_table(TOKENS).map_err(db)?;
            let row = TokenRow {
                session_id: session.id.clone(),
                revoked_ms: None,
            };
            tokens
                .insert((app, token_hash), to_json(&row)?.as_slice())
                .map_err(db)?;
            let mut session_tokens = txn.open_table(SESSION_TOKENS).map_err(db)?;
            session_tokens
                .insert((app, session.id.as_str(), token_hash), ())
                .map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    fn auth_session(&self, app: &str, id: &str) -> AuthResult<Option<SessionRecord>> {
        let txn = self.db.begin_read().map_err(db)?;
        let sessions = txn.open_table(SESSIONS).map_err(db)?;
        let row = sessions.get((app, id)).map_err(db)?;
        row.map(|row| from_json(row.value())).transpose()
    }

    fn auth_refresh(
        &self,
        app: &str,
        old_hash: &str,
        new_hash: &str,
        now_ms: u64,
        reuse_interval_ms: u64,
    ) -> AuthResult<Refreshed> {
        let txn = self.db.begin_write().map_err(db)?;
        let outcome = {
            let mut tokens = txn.open_table(TOKENS).map_err(db)?;
            let row: TokenRow = match tokens.get((app, old_hash)).map_err(db)? {
                Some(row) => from_json(row.value())?,
                None => return Ok(Refreshed::Unknown),
            };
            let mut sessions = txn.open_table(SESSIONS).map_err(db)?;
            let mut session: SessionRecord =
                match sessions.get((app, row.session_id.as_str())).map_err(db)? {
                    Some(session) => from_json(session.value())?,
                    None => return Ok(Refreshed::Unknown),
                };
            let reused = match row.revoked_ms {
                None => false,
                Some(revoked) if now_ms.saturating_sub(revoked) <= reuse_interval_ms => true,
                Some(_) => {
                    drop((tokens, sessions));
                    end_session_in(&txn, app, &row.session_id)?;
                    txn.commit().map_err(db)?;
                    return Ok(Refreshed::FamilyRevoked);
                }
            };
            if !reused {
                let revoked = TokenRow {
                    session_id: row.session_id.clone(),
                    revoked_ms: Some(now_ms),
                };
                tokens
                    .insert((app, old_hash), to_json(&revoked)?.as_slice())
                    .map_err(db)?;
            }
            let fresh = TokenRow {
                session_id: row.session_id.clone(),
                revoked_ms: None,
            };
            tokens
                .insert((app, new_hash), to_json(&fresh)?.as_slice())
                .map_err(db)?;
            let mut session_tokens = txn.open_table(SESSION_TOKENS).map_err(db)?;
            session_tokens
                .insert((app, row.session_id.as_str(), new_hash), ())
                .map_err(db)?;
            session.refreshed_ms = now_ms;
            sessions
                .insert(
                    (app, row.session_id.as_str()),
                    to_json(&session)?.as_slice(),
                )
                .map_err(db)?;
            if reused {
                Refreshed::Reused(session)
            } else {
                Refreshed::Rotated(session)
            }
        };
        txn.commit().map_err(db)?;
        Ok(outcome)
    }

    fn auth_end_session(&self, app: &str, id: &str) -> AuthResult<bool> {
        let txn = self.db.begin_write().map_err(db)?;
        let ended = end_session_in(&txn, app, id)?;
        txn.commit().map_err(db)?;
        Ok(ended)
    }

    fn auth_end_sessions(&self, app: &str, user_id: &str, keep: Option<&str>) -> AuthResult<usize> {
        let txn = self.db.begin_write().map_err(db)?;
        let sessions = {
            let user_sessions = txn.open_table(USER_SESSIONS).map_err(db)?;
            third_parts(&user_sessions, app, user_id)?
        };
        let mut ended = 0;
        for session in sessions.iter().filter(|s| Some(s.as_str()) != keep) {
            if end_session_in(&txn, app, session)? {
                ended += 1;
            }
        }
        txn.commit().map_err(db)?;
        Ok(ended)
    }

    fn auth_put_one_time(
        &self,
        app: &str,
        purpose: OneTimePurpose,
        token_hash: &str,
        user_id: &str,
        created_ms: u64,
    ) -> AuthResult<()> {
        let purpose = purpose_key(purpose);
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut user_one_time = txn.open_table(USER_ONE_TIME).map_err(db)?;
            let mut one_time = txn.open_table(ONE_TIME).map_err(db)?;
            if let Some(earlier) = user_one_time
                .insert((app, user_id, purpose), token_hash)
                .map_err(db)?
            {
                one_time
                    .remove((app, purpose, earlier.value()))
                    .map_err(db)?;
            }
            let row = OneTimeRow {
                user_id: user_id.to_owned(),
                created_ms,
            };
            one_time
                .insert((app, purpose, token_hash), to_json(&row)?.as_slice())
                .map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    fn auth_take_one_time(
        &self,
        app: &str,
        purpose: OneTimePurpose,
        token_hash: &str,
    ) -> AuthResult<Option<(String, u64)>> {
        let purpose = purpose_key(purpose);
        let txn = self.db.begin_write().map_err(db)?;
        let taken = {
            let mut one_time = txn.open_table(ONE_TIME).map_err(db)?;
            let Some(row) = one_time.remove((app, purpose, token_hash)).map_err(db)? else {
                return Ok(None);
            };
            let row: OneTimeRow = from_json(row.value())?;
            let mut user_one_time = txn.open_table(USER_ONE_TIME).map_err(db)?;
            user_one_time
                .remove((app, row.user_id.as_str(), purpose))
                .map_err(db)?;
            (row.user_id, row.created_ms)
        };
        txn.commit().map_err(db)?;
        Ok(Some(taken))
    }

    fn auth_signing_keys(&self, app: &str) -> AuthResult<Vec<SigningKeyRecord>> {
        let txn = self.db.begin_read().map_err(db)?;
        let keys = txn.open_table(KEYS).map_err(db)?;
        let row = keys.get(app).map_err(db)?;
        Ok(row
            .map(|row| from_json(row.value()))
            .transpose()?
            .unwrap_or_default())
    }

    fn auth_replace_signing_keys(
        &self,
        app: &str,
        expected: &[String],
        new: &[SigningKeyRecord],
    ) -> AuthResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut keys = txn.open_table(KEYS).map_err(db)?;
            let current: Vec<SigningKeyRecord> = match keys.get(app).map_err(db)? {
                Some(row) => from_json(row.value())?,
                None => Vec::new(),
            };
            if !current.iter().map(|k| &k.kid).eq(expected.iter()) {
                return Err(AuthError::KeysChanged);
            }
            keys.insert(app, to_json(&new)?.as_slice()).map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    fn auth_remove(&self, app: &str) -> AuthResult<()> {
        let txn = self.db.begin_write().map_err(db)?;
        // Every table is keyed by app first: remove each one's range of the app.
        clear_pairs(&txn, USERS, app)?;
        clear_pairs(&txn, EMAILS, app)?;
        clear_pairs(&txn, SESSIONS, app)?;
        clear_pairs(&txn, TOKENS, app)?;
        clear_triples(&txn, USER_SESSIONS, app)?;
        clear_triples(&txn, SESSION_TOKENS, app)?;
        clear_triples(&txn, ONE_TIME, app)?;
        clear_triples(&txn, USER_ONE_TIME, app)?;
        txn.open_table(KEYS).map_err(db)?.remove(app).map_err(db)?;
        txn.commit().map_err(db)
    }
}

/// Remove the rows of `app` from a table keyed by (app, _).
fn clear_pairs<V: redb::Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<(&'static str, &'static str), V>,
    app: &str,
) -> AuthResult<()> {
    let mut t = txn.open_table(table).map_err(db)?;
    let mut keys = Vec::new();
    for entry in t.range((app, "")..).map_err(db)? {
        let (key, _) = entry.map_err(db)?;
        let (a, b) = key.value();
        if a != app {
            break;
        }
        keys.push(b.to_owned());
    }
    for key in keys {
        t.remove((app, key.as_str())).map_err(db)?;
    }
    Ok(())
}

/// Remove the rows of `app` from a table keyed by (app, _, _).
fn clear_triples<V: redb::Value + 'static>(
    txn: &WriteTransaction,
    table: TableDefinition<(&'static str, &'static str, &'static str), V>,
    app: &str,
) -> AuthResult<()> {
    let mut t = txn.open_table(table).map_err(db)?;
    let mut keys = Vec::new();
    for entry in t.range((app, "", "")..).map_err(db)? {
        let (key, _) = entry.map_err(db)?;
        let (a, b, c) = key.value();
        if a != app {
            break;
        }
        keys.push((b.to_owned(), c.to_owned()));
    }
    for (b, c) in keys {
        t.remove((app, b.as_str(), c.as_str())).map_err(db)?;
    }
    Ok(())
}

impl RedbStore {
    async fn auth<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Inner) -> AuthResult<T> + Send + 'static,
    ) -> AuthResult<T> {
        self.on_blocking_pool(work).await.map_err(db)?
    }
}

#[async_trait]
impl AuthStore for RedbStore {
    async fn insert_user(&self, app: &str, user: UserRecord) -> AuthResult<()> {
        let app = app.to_owned();
        self.auth(move |inner| inner.auth_insert_user(&app, &user))
            .await
    }

    async fn user(&self, app: &str, id: &str) -> AuthResult<Option<UserRecord>> {
        let (app, id) = (app.to_owned(), id.to_owned());
        self.auth(move |inner| inner.auth_user(&app, &id)).await
    }

    async fn user_by_email(&self, app: &str, email: &str) -> AuthResult<Option<UserRecord>> {
        let (app, email) = (app.to_owned(), email.to_owned());
        self.auth(move |inner| inner.auth_user_by_email(&app, &email))
            .await
    }

    async fn update_user(&self, app: &str, user: UserRecord) -> AuthResult<()> {
        let app = app.to_owned();
        self.auth(move |inner| inner.auth_update_user(&app, &user))
            .await
    }

    async fn remove_user(&self, app: &str, id: &str) -> AuthResult<bool> {
        let (app, id) = (app.to_owned(), id.to_owned());
        self.auth(move |inner| inner.auth_remove_user(&app, &id))
            .await
    }

    async fn users(
        &self,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> AuthResult<Vec<UserRecord>> {
        let (app, after) = (app.to_owned(), after.map(str::to_owned));
        self.auth(move |inner| inner.auth_users(&app, after.as_deref(), limit))
            .await
    }

    async fn create_session(
        &self,
        app: &str,
        session: SessionRecord,
        token_hash: &str,
    ) -> AuthResult<()> {
        let (app, hash) = (app.to_owned(), token_hash.to_owned());
        self.auth(move |inner| inner.auth_create_session(&app, &session, &hash))
            .await
    }

    async fn session(&self, app: &str, id: &str) -> AuthResult<Option<SessionRecord>> {
        let (app, id) = (app.to_owned(), id.to_owned());
        self.auth(move |inner| inner.auth_session(&app, &id)).await
    }

    async fn refresh(
        &self,
        app: &str,
        old_hash: &str,
        new_hash: &str,
        now_ms: u64,
        reuse_interval_ms: u64,
    ) -> AuthResult<Refreshed> {
        let (app, old, new) = (app.to_owned(), old_hash.to_owned(), new_hash.to_owned());
        self.auth(move |inner| inner.auth_refresh(&app, &old, &new, now_ms, reuse_interval_ms))
            .await
    }

    async fn end_session(&self, app: &str, id: &str) -> AuthResult<bool> {
        let (app, id) = (app.to_owned(), id.to_owned());
        self.auth(move |inner| inner.auth_end_session(&app, &id))
            .await
    }

    async fn end_sessions(
        &self,
        app: &str,
        user_id: &str,
        keep: Option<&str>,
    ) -> AuthResult<usize> {
        let (app, user, keep) = (app.to_owned(), user_id.to_owned(), keep.map(str::to_owned));
        self.auth(move |inner| inner.auth_end_sessions(&app, &user, keep.as_deref()))
            .await
    }

    async fn put_one_time(
        &self,
        app: &str,
        purpose: OneTimePurpose,
        token_hash: &str,
        user_id: &str,
        created_ms: u64,
    ) -> AuthResult<()> {
        let (app, hash, user) = (app.to_owned(), token_hash.to_owned(), user_id.to_owned());
        self.auth(move |inner| inner.auth_put_one_time(&app, purpose, &hash, &user, created_ms))
            .await
    }

    async fn take_one_time(
        &self,
        app: &str,
        purpose: OneTimePurpose,
        token_hash: &str,
    ) -> AuthResult<Option<(String, u64)>> {
        let (app, hash) = (app.to_owned(), token_hash.to_owned());
        self.auth(move |inner| inner.auth_take_one_time(&app, purpose, &hash))
            .await
    }

    async fn signing_keys(&self, app: &str) -> AuthResult<Vec<SigningKeyRecord>> {
        let app = app.to_owned();
        self.auth(move |inner| inner.auth_signing_keys(&app)).await
    }

    async fn replace_signing_keys(
        &self,
        app: &str,
        expected: &[String],
        keys: Vec<SigningKeyRecord>,
    ) -> AuthResult<()> {
        let (app, expected) = (app.to_owned(), expected.to_vec());
        self.auth(move |inner| inner.auth_replace_signing_keys(&app, &expected, &keys))
            .await
    }

    async fn remove_auth(&self, app: &str) -> AuthResult<()> {
        let app = app.to_owned();
        self.auth(move |inner| inner.auth_remove(&app)).await
    }
}

#[cfg(test)]
mod tests {
    use crate::TempStores;

    #[tokio::test]
    async fn conformance() {
        let stores = TempStores::default();
        nimbus_store::conformance::auth::run_all(|| stores.make()).await;
    }
}
