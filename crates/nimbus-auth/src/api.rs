//! The GoTrue REST API of one app: `POST /signup`, `POST /token` (`password` and
//! `refresh_token` grants), `GET`/`PUT /user`, `POST /logout`, `GET /settings`, `GET /health`,
//! `GET /.well-known/jwks.json` and OpenID Connect discovery — with GoTrue's status codes,
//! error codes and messages, and its JSON shapes for users and sessions.

use crate::error::{API_VERSION, API_VERSION_HEADER, ApiError, json_response};
use crate::password::{self, Checked};
use crate::tokens::{self, AUDIENCE, Claims};
use crate::{AppAuth, LEEWAY, mail, now_ms};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use nimbus_runtime::{ClientAddr, Request, Response};
use nimbus_store::auth::{
    AuthError, Metadata, OneTimePurpose, Refreshed, SessionRecord, UserRecord,
};
use serde::Deserialize;
use std::sync::{Arc, OnceLock};

/// The largest request body the API reads.
const MAX_BODY: usize = 64 << 10;
/// How long an e-mailed link or code stays valid (GoTrue's `MAILER_OTP_EXP` default).
const ONE_TIME_TTL_MS: u64 = 3_600_000;
/// At most one message of a kind per user this often (GoTrue's `SMTP_MAX_FREQUENCY`).
const MAIL_INTERVAL_MS: u64 = 60_000;
/// Where links lead without a `site_url` (GoTrue's default `SITE_URL`).
const DEFAULT_SITE_URL: &str = "http://localhost:3000";
const DEFAULT_MAIL_FROM: &str = "nimbus <noreply@localhost>";

impl AppAuth {
    /// Answer one request; `path` is what follows the mount point (`/signup`, `/token`, …).
    pub async fn handle(&self, request: Request, path: &str) -> Response {
        let versioned = request
            .headers()
            .get(API_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v >= API_VERSION);
        let mut response = match self.route(request, path).await {
            Ok(response) => response,
            Err(error) => error.into_response(versioned),
        };
        if versioned {
            response
                .headers_mut()
                .insert(API_VERSION_HEADER, HeaderValue::from_static(API_VERSION));
        }
        response
    }

    async fn route(&self, request: Request, path: &str) -> Result<Response, ApiError> {
        let method = request.method().clone();
        match (method, path.trim_end_matches('/')) {
            (Method::GET, "/health") => Ok(ok(serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "name": "nimbus-auth",
                "description": "nimbus's GoTrue-compatible user registration and authentication API",
            }))),
            (Method::GET, "/settings") => Ok(ok(self.settings())),
            (Method::GET, "/.well-known/jwks.json") => {
                let mut response =
                    bytes_response(StatusCode::OK, Bytes::from(self.jwks().to_vec()));
                response.headers_mut().insert(
                    http::header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=600"),
                );
                Ok(response)
            }
            (Method::GET, "/.well-known/openid-configuration") => {
                let issuer = self.issuer();
                Ok(ok(serde_json::json!({
                    "issuer": issuer,
                    "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
                    "token_endpoint": format!("{issuer}/token"),
                    "userinfo_endpoint": format!("{issuer}/user"),
                    "authorization_endpoint": format!("{issuer}/authorize"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["ES256"],
                    "grant_types_supported": ["password", "refresh_token"],
                })))
            }
            (Method::POST, "/signup") => {
                let client = client_key(&request);
                let redirect = query_param(request.uri(), "redirect_to");
                let body: SignupParams = read_json(request).await?;
                self.signup(body, &client, redirect.as_deref()).await
            }
            (Method::POST, "/recover") => {
                let client = client_key(&request);
                let redirect = query_param(request.uri(), "redirect_to");
                let body: RecoverParams = read_json(request).await?;
                self.recover(body, &client, redirect.as_deref()).await
            }
            (Method::POST, "/verify") => {
                let client = client_key(&request);
                let body: VerifyParams = read_json(request).await?;
                let user = self.verify_one_time(&body, &client).await?;
                Ok(ok(self.sign_in(user, "otp").await?))
            }
            (Method::GET, "/verify") => {
                let client = client_key(&request);
                let uri = request.uri();
                let params = VerifyParams {
                    kind: query_param(uri, "type"),
                    token: None,
                    token_hash: query_param(uri, "token"),
                    email: None,
                };
                let redirect = self.redirect_target(query_param(uri, "redirect_to").as_deref());
                Ok(self.verify_link(params, &client, &redirect).await)
            }
            (Method::POST, "/token") => {
                let grant = query_param(request.uri(), "grant_type");
                let client = client_key(&request);
                match grant.as_deref() {
                    Some("password") => {
                        let body: PasswordParams = read_json(request).await?;
                        self.password_grant(body, &client).await
                    }
                    Some("refresh_token") => {
                        let body: RefreshParams = read_json(request).await?;
                        self.refresh_grant(body).await
                    }
                    _ => Err(ApiError::bad_request(
                        "invalid_credentials",
                        "unsupported_grant_type",
                    )),
                }
            }
            (Method::GET, "/user") => {
                let (user, _) = self.authenticate(request.headers()).await?;
                Ok(ok(tokens::user_json(&user)))
            }
            (Method::PUT, "/user") => {
                let (user, _) = self.authenticate(request.headers()).await?;
                let body: UpdateParams = read_json(request).await?;
                self.update_user(user, body).await
            }
            (Method::POST, "/logout") => {
                let scope = query_param(request.uri(), "scope");
                let (user, session) = self.authenticate(request.headers()).await?;
                self.logout(&user, &session, scope.as_deref()).await
            }
            (
                _,
                "/health" | "/settings" | "/signup" | "/token" | "/user" | "/logout" | "/recover"
                | "/verify",
            ) => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {path}", request.method()),
            )),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "{path} is not an endpoint of this auth API (it serves /signup, /token, /user, \
                     /logout, /settings, /health and /.well-known/jwks.json)"
                ),
            )),
        }
    }

    fn settings(&self) -> serde_json::Value {
        let config = self.config.load();
        let mut external = serde_json::Map::new();
        for provider in [
            "anonymous_users",
            "apple",
            "azure",
            "bitbucket",
            "discord",
            "facebook",
            "figma",
            "github",
            "gitlab",
            "google",
            "keycloak",
            "linkedin_oidc",
            "notion",
            "slack_oidc",
            "spotify",
            "twitch",
            "twitter",
            "workos",
            "zoom",
            "phone",
        ] {
            external.insert(provider.into(), false.into());
        }
        external.insert("email".into(), true.into());
        serde_json::json!({
            "external": external,
            "disable_signup": !config.spec.signup,
            "mailer_autoconfirm": !config.spec.confirm_email,
            "phone_autoconfirm": false,
            "sms_provider": "",
            "saml_enabled": false,
        })
    }

    /// Draw one sign-in or sign-up attempt for the client (per-IP throttle).
    fn admit(&self, client: &str) -> Result<(), ApiError> {
        self.throttles
            .load()
            .per_ip
            .take(client)
            .map_err(ApiError::throttled)
    }

    async fn signup(
        &self,
        params: SignupParams,
        client: &str,
        redirect: Option<&str>,
    ) -> Result<Response, ApiError> {
        let config = self.config.load_full();
        if !config.spec.signup {
            return Err(ApiError::unprocessable(
                "signup_disabled",
                "Signups not allowed for this instance",
            ));
        }
        self.admit(client)?;
        if params.phone.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(ApiError::bad_request(
                "phone_provider_disabled",
                "Phone signups are disabled",
            ));
        }
        let Some(password) = params.password.filter(|p| !p.is_empty()) else {
            return Err(ApiError::validation("Signup requires a valid password"));
        };
        password::check_strength(
            &password,
            config.spec.password_min_length as usize,
            &config.spec.password_requires,
        )?;
        let email = validate_email(params.email.as_deref().unwrap_or(""))?;
        if let Some(existing) = self
            .store
            .user_by_email(&self.app, &email)
            .await
            .map_err(store)?
        {
            if existing.email_confirmed_ms.is_some() || !config.spec.confirm_email {
                return Err(ApiError::unprocessable(
                    "user_already_exists",
                    "User already registered",
                ));
            }
            // An unconfirmed sign-up repeated: send the confirmation again and answer as the
            // first time, revealing nothing.
            let existing = self
                .send_one_time(OneTimePurpose::Confirmation, existing, redirect)
                .await?;
            return Ok(ok(tokens::user_json(&existing)));
        }
        let hash = self.hash(password).await?;
        let user = tokens::new_user(
            email,
            Some(hash),
            !config.spec.confirm_email,
            params.data.unwrap_or_default(),
            now_ms(),
        );
        match self.store.insert_user(&self.app, user.clone()).await {
            Ok(()) => {}
            Err(AuthError::EmailTaken(_)) => {
                return Err(ApiError::unprocessable(
                    "user_already_exists",
                    "User already registered",
                ));
            }
            Err(error) => return Err(store(error)),
        }
        if user.email_confirmed_ms.is_some() {
            return self.start_session(user).await;
        }
        let user = self
            .send_one_time(OneTimePurpose::Confirmation, user, redirect)
            .await?;
        Ok(ok(tokens::user_json(&user)))
    }

    async fn password_grant(
        &self,
        params: PasswordParams,
        client: &str,
    ) -> Result<Response, ApiError> {
        self.admit(client)?;
        let email = params.email.unwrap_or_default().trim().to_lowercase();
        if email.is_empty() {
            return Err(ApiError::validation("missing email or phone"));
        }
        let password = params.password.unwrap_or_default();
        let throttles = self.throttles.load_full();
        throttles
            .per_account
            .allows(&email)
            .map_err(ApiError::throttled)?;
        let invalid = || ApiError::bad_request("invalid_credentials", "Invalid login credentials");
        let user = self
            .store
            .user_by_email(&self.app, &email)
            .await
            .map_err(store)?;
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        // An unknown address (or a user without a password) is checked against a hash of
        // nothing anyone knows: the same cost as a known one, so timing tells nothing.
        let checked = self
            .verify(
                password.clone(),
                stored.unwrap_or_else(|| dummy_hash().to_owned()),
            )
            .await?;
        let (Some(mut user), Checked::Right { rehash }) = (user, checked) else {
            let _ = throttles.per_account.take(&email);
            return Err(invalid());
        };
        if user.banned_until_ms.is_some_and(|until| until > now_ms()) {
            return Err(ApiError::bad_request("user_banned", "User is banned"));
        }
        if rehash {
            user.password_hash = Some(self.hash(password).await?);
        }
        if user.email_confirmed_ms.is_none() {
            if rehash {
                self.store
                    .update_user(&self.app, user)
                    .await
                    .map_err(store)?;
            }
            return Err(ApiError::bad_request(
                "email_not_confirmed",
                "Email not confirmed",
            ));
        }
        self.start_session(user).await
    }

    /// Where an e-mailed link leads after verifying: `asked` if it is under the app's site
    /// URL, else the site URL (GoTrue's rule without an allow list).
    fn redirect_target(&self, asked: Option<&str>) -> String {
        let site = self
            .config
            .load()
            .spec
            .site_url
            .clone()
            .unwrap_or_else(|| DEFAULT_SITE_URL.to_owned());
        match asked {
            Some(asked) if asked.starts_with(&site) => asked.to_owned(),
            _ => site,
        }
    }

    /// Mail `user` a one-time link and code for `purpose`, at most once a minute.
    async fn send_one_time(
        &self,
        purpose: OneTimePurpose,
        mut user: UserRecord,
        redirect: Option<&str>,
    ) -> Result<UserRecord, ApiError> {
        let Some(mailer) = &self.mailer else {
            return Err(ApiError::unprocessable(
                "email_provider_disabled",
                "this app's auth cannot send e-mail: the server has no SMTP server (nimbus serve --smtp-url)",
            ));
        };
        let now = now_ms();
        let sent = match purpose {
            OneTimePurpose::Confirmation => user.confirmation_sent_ms,
            OneTimePurpose::Recovery => user.recovery_sent_ms,
        };
        if let Some(sent) = sent {
            let wait = (sent + MAIL_INTERVAL_MS).saturating_sub(now);
            if wait > 0 {
                let secs = wait.div_ceil(1000);
                let mut error = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "over_email_send_rate_limit",
                    format!(
                        "For security purposes, you can only request this after {secs} seconds."
                    ),
                );
                error.retry_after = Some(secs);
                return Err(error);
            }
        }
        let code = format!("{:06}", rand::random_range(0..1_000_000u32));
        let hash = tokens::token_hash(&format!("{}{code}", user.email));
        self.store
            .put_one_time(&self.app, purpose, &hash, &user.id, now)
            .await
            .map_err(store)?;
        let (kind, template) = match purpose {
            OneTimePurpose::Confirmation => ("signup", mail::Template::Confirmation),
            OneTimePurpose::Recovery => ("recovery", mail::Template::Recovery),
        };
        let redirect = self.redirect_target(redirect);
        let link = format!(
            "{}/verify?token={hash}&type={kind}&redirect_to={}",
            self.issuer(),
            form_urlencoded::byte_serialize(redirect.as_bytes()).collect::<String>()
        );
        let from = self
            .config
            .load()
            .spec
            .mail_from
            .clone()
            .unwrap_or_else(|| DEFAULT_MAIL_FROM.to_owned());
        mailer
            .send(&mail::compose(template, &from, &user.email, &link, &code))
            .await
            .map_err(|cause| {
                tracing::error!(app = %self.app, cause, "auth: sending mail failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unexpected_failure",
                    format!("Error sending {kind} email; the server log has the cause"),
                )
            })?;
        match purpose {
            OneTimePurpose::Confirmation => user.confirmation_sent_ms = Some(now),
            OneTimePurpose::Recovery => user.recovery_sent_ms = Some(now),
        }
        user.updated_ms = now;
        self.store
            .update_user(&self.app, user.clone())
            .await
            .map_err(store)?;
        Ok(user)
    }

    async fn recover(
        &self,
        params: RecoverParams,
        client: &str,
        redirect: Option<&str>,
    ) -> Result<Response, ApiError> {
        self.admit(client)?;
        let email = validate_email(params.email.as_deref().unwrap_or(""))?;
        // Whether the address is registered is not the caller's business: the answer is the
        // same either way.
        if let Some(user) = self
            .store
            .user_by_email(&self.app, &email)
            .await
            .map_err(store)?
        {
            self.send_one_time(OneTimePurpose::Recovery, user, redirect)
                .await?;
        }
        Ok(ok(serde_json::json!({})))
    }

    /// The user a one-time token (a link's token, or an address and its code) proves, taken
    /// so it cannot be used again; confirming the address on the way.
    async fn verify_one_time(
        &self,
        params: &VerifyParams,
        client: &str,
    ) -> Result<UserRecord, ApiError> {
        self.admit(client)?;
        let purpose = match params.kind.as_deref() {
            Some("signup" | "email") => OneTimePurpose::Confirmation,
            Some("recovery") => OneTimePurpose::Recovery,
            other => {
                return Err(ApiError::validation(format!(
                    "Verify requires a verification type: \"signup\", \"email\" or \"recovery\", got {other:?}"
                )));
            }
        };
        let expired = || ApiError::forbidden("otp_expired", "Token has expired or is invalid");
        // A code is short: guessing it spends the account's failure budget, as a wrong
        // password does. A link's token is 256 bits: nothing to guess.
        let (hash, account) = match (&params.token_hash, &params.token, &params.email) {
            (Some(hash), _, _) if !hash.is_empty() => (hash.clone(), None),
            (_, Some(code), Some(email)) if !code.is_empty() => {
                let email = validate_email(email)?;
                self.throttles
                    .load()
                    .per_account
                    .allows(&email)
                    .map_err(ApiError::throttled)?;
                let hash = tokens::token_hash(&format!("{email}{}", code.trim()));
                (hash, Some(email))
            }
            _ => {
                return Err(ApiError::validation(
                    "Verify requires a token_hash, or a token and the email it was sent to",
                ));
            }
        };
        let Some((user_id, created)) = self
            .store
            .take_one_time(&self.app, purpose, &hash)
            .await
            .map_err(store)?
        else {
            if let Some(email) = account {
                let _ = self.throttles.load().per_account.take(&email);
            }
            return Err(expired());
        };
        let now = now_ms();
        if now.saturating_sub(created) > ONE_TIME_TTL_MS {
            return Err(expired());
        }
        let mut user = self
            .store
            .user(&self.app, &user_id)
            .await
            .map_err(store)?
            .ok_or_else(expired)?;
        if user.banned_until_ms.is_some_and(|until| until > now) {
            return Err(ApiError::bad_request("user_banned", "User is banned"));
        }
        if user.email_confirmed_ms.is_none() {
            user.email_confirmed_ms = Some(now);
        }
        Ok(user)
    }

    /// An e-mailed link followed: a redirect to `redirect` with the new session in the
    /// fragment, or with the error, as GoTrue answers.
    async fn verify_link(&self, params: VerifyParams, client: &str, redirect: &str) -> Response {
        let kind = params.kind.clone().unwrap_or_default();
        let fragment = match self.verify_one_time(&params, client).await {
            Ok(user) => match self.sign_in(user, "otp").await {
                Ok(session) => {
                    let mut fragment = form_urlencoded::Serializer::new(String::new());
                    for field in [
                        "access_token",
                        "expires_at",
                        "expires_in",
                        "refresh_token",
                        "token_type",
                    ] {
                        let value = match session.get(field) {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        fragment.append_pair(field, &value);
                    }
                    fragment.append_pair("type", &kind);
                    fragment.finish()
                }
                Err(error) => error_fragment(&error),
            },
            Err(error) => error_fragment(&error),
        };
        let mut response = bytes_response(StatusCode::SEE_OTHER, Bytes::new());
        if let Ok(location) = HeaderValue::from_str(&format!("{redirect}#{fragment}")) {
            response
                .headers_mut()
                .insert(http::header::LOCATION, location);
        }
        response.headers_mut().remove(http::header::CONTENT_TYPE);
        response
    }

    /// Sign `user` in: a new session, its first refresh token and an access token.
    async fn start_session(&self, user: UserRecord) -> Result<Response, ApiError> {
        Ok(ok(self.sign_in(user, "password").await?))
    }

    /// A new session for `user`, authenticated by `method` (`password`, `otp`): the session's
    /// JSON, as the token endpoint answers.
    async fn sign_in(
        &self,
        mut user: UserRecord,
        method: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let config = self.config.load_full();
        let now = now_ms();
        let session = SessionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            user_id: user.id.clone(),
            created_ms: now,
            refreshed_ms: now,
            not_after_ms: config
                .spec
                .session_ttl
                .map(|ttl| now.saturating_add(ttl.as_millis() as u64)),
        };
        let refresh = tokens::random_token();
        self.store
            .create_session(&self.app, session.clone(), &tokens::token_hash(&refresh))
            .await
            .map_err(store)?;
        user.last_sign_in_ms = Some(now);
        user.updated_ms = now;
        self.store
            .update_user(&self.app, user.clone())
            .await
            .map_err(store)?;
        self.session_json(&user, &session, refresh, method)
    }

    fn session_json(
        &self,
        user: &UserRecord,
        session: &SessionRecord,
        refresh_token: String,
        method: &str,
    ) -> Result<serde_json::Value, ApiError> {
        let config = self.config.load_full();
        let now = now_ms() / 1000;
        let ttl = config.spec.access_token_ttl.as_secs();
        let claims = Claims {
            iss: config.issuer.clone(),
            sub: user.id.clone(),
            aud: AUDIENCE.into(),
            exp: now + ttl,
            iat: now,
            email: user.email.clone(),
            phone: String::new(),
            app_metadata: user.app_metadata.clone(),
            user_metadata: user.user_metadata.clone(),
            role: AUDIENCE.into(),
            aal: "aal1".into(),
            amr: vec![serde_json::json!({
                "method": method,
                "timestamp": session.created_ms / 1000,
            })],
            session_id: session.id.clone(),
            is_anonymous: false,
        };
        let keys = self.keys.load();
        let mut header = jsonwebtoken::Header::new(keys.signer.algorithm);
        header.kid = Some(keys.signer.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &keys.signer.key)
            .map_err(|e| ApiError::internal("signing an access token failed", &e))?;
        Ok(serde_json::json!({
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": ttl,
            "expires_at": now + ttl,
            "refresh_token": refresh_token,
            "user": tokens::user_json(user),
        }))
    }

    async fn refresh_grant(&self, params: RefreshParams) -> Result<Response, ApiError> {
        let Some(presented) = params.refresh_token.filter(|t| !t.is_empty()) else {
            return Err(ApiError::oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "refresh_token required",
            ));
        };
        let config = self.config.load_full();
        let next = tokens::random_token();
        let now = now_ms();
        let outcome = self
            .store
            .refresh(
                &self.app,
                &tokens::token_hash(&presented),
                &tokens::token_hash(&next),
                now,
                config.spec.refresh_reuse_interval.as_millis() as u64,
            )
            .await
            .map_err(store)?;
        let session = match outcome {
            Refreshed::Rotated(session) | Refreshed::Reused(session) => session,
            Refreshed::Unknown => {
                return Err(ApiError::bad_request(
                    "refresh_token_not_found",
                    "Invalid Refresh Token: Refresh Token Not Found",
                ));
            }
            Refreshed::FamilyRevoked => {
                tracing::warn!(app = %self.app, "a replaced refresh token was presented again: its session was ended");
                return Err(ApiError::bad_request(
                    "refresh_token_already_used",
                    "Invalid Refresh Token: Already Used",
                ));
            }
        };
        if session.not_after_ms.is_some_and(|end| end <= now) {
            self.store
                .end_session(&self.app, &session.id)
                .await
                .map_err(store)?;
            return Err(ApiError::bad_request(
                "session_expired",
                "Invalid Refresh Token: Session Expired",
            ));
        }
        let user = self
            .store
            .user(&self.app, &session.user_id)
            .await
            .map_err(store)?
            .ok_or_else(|| {
                ApiError::bad_request(
                    "session_not_found",
                    "Invalid Refresh Token: No Valid Session Found",
                )
            })?;
        if user.banned_until_ms.is_some_and(|until| until > now) {
            return Err(ApiError::bad_request(
                "user_banned",
                "Invalid Refresh Token: User Banned",
            ));
        }
        Ok(ok(self.session_json(&user, &session, next, "password")?))
    }

    /// The user and session of the request's bearer token.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<(UserRecord, SessionRecord), ApiError> {
        let token = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "no_authorization",
                    "This endpoint requires a valid Bearer token",
                )
            })?;
        let claims = self.verify_token(token)?;
        let user = self
            .store
            .user(&self.app, &claims.sub)
            .await
            .map_err(store)?
            .ok_or_else(|| {
                ApiError::forbidden(
                    "user_not_found",
                    "User from sub claim in JWT does not exist",
                )
            })?;
        let session = self
            .store
            .session(&self.app, &claims.session_id)
            .await
            .map_err(store)?
            .filter(|s| s.user_id == user.id)
            .ok_or_else(|| {
                ApiError::forbidden(
                    "session_not_found",
                    "Session from session_id claim in JWT does not exist",
                )
            })?;
        Ok((user, session))
    }

    /// Check one of the app's own access tokens.
    pub fn verify_token(&self, token: &str) -> Result<Claims, ApiError> {
        let bad = |why: String| {
            ApiError::forbidden(
                "bad_jwt",
                format!("invalid JWT: unable to parse or verify signature, {why}"),
            )
        };
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(e.to_string()))?;
        let keys = self.keys.load();
        let kid = header.kid.as_deref().unwrap_or("");
        let key = keys
            .verifier(kid)
            .ok_or_else(|| bad(format!("no signing key {kid:?}")))?;
        if header.alg != keys.signer.algorithm {
            return Err(bad(format!(
                "{:?} is not this issuer's algorithm",
                header.alg
            )));
        }
        let mut validation = jsonwebtoken::Validation::new(keys.signer.algorithm);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[self.config.load().issuer.as_str()]);
        validation.leeway = LEEWAY.as_secs();
        jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| bad(e.to_string()))
    }

    async fn update_user(
        &self,
        mut user: UserRecord,
        params: UpdateParams,
    ) -> Result<Response, ApiError> {
        let config = self.config.load_full();
        if let Some(password) = params.password {
            password::check_strength(
                &password,
                config.spec.password_min_length as usize,
                &config.spec.password_requires,
            )?;
            if let Some(current) = user.password_hash.clone()
                && matches!(
                    self.verify(password.clone(), current).await?,
                    Checked::Right { .. }
                )
            {
                return Err(ApiError::unprocessable(
                    "same_password",
                    "New password should be different from the old password.",
                ));
            }
            user.password_hash = Some(self.hash(password).await?);
        }
        if let Some(email) = params.email.filter(|e| !e.is_empty()) {
            let email = validate_email(&email)?;
            if email != user.email {
                if config.spec.confirm_email {
                    return Err(ApiError::unprocessable(
                        "email_provider_disabled",
                        "Changing the e-mail address needs a confirmation e-mail, and this app sends none yet; an operator can change it with `nimbus users`",
                    ));
                }
                user.email = email;
            }
        }
        if let Some(data) = &params.data {
            tokens::merge_metadata(&mut user.user_metadata, data);
        }
        user.updated_ms = now_ms();
        match self.store.update_user(&self.app, user.clone()).await {
            Ok(()) => Ok(ok(tokens::user_json(&user))),
            Err(AuthError::EmailTaken(_)) => Err(ApiError::unprocessable(
                "email_exists",
                "A user with this email address has already been registered",
            )),
            Err(error) => Err(store(error)),
        }
    }

    async fn logout(
        &self,
        user: &UserRecord,
        session: &SessionRecord,
        scope: Option<&str>,
    ) -> Result<Response, ApiError> {
        match scope.unwrap_or("global") {
            "" | "global" => {
                self.store
                    .end_sessions(&self.app, &user.id, None)
                    .await
                    .map_err(store)?;
            }
            "local" => {
                self.store
                    .end_session(&self.app, &session.id)
                    .await
                    .map_err(store)?;
            }
            "others" => {
                self.store
                    .end_sessions(&self.app, &user.id, Some(&session.id))
                    .await
                    .map_err(store)?;
            }
            other => {
                return Err(ApiError::validation(format!(
                    "Unsupported logout scope {other:?}"
                )));
            }
        }
        Ok(bytes_response(StatusCode::NO_CONTENT, Bytes::new()))
    }

    async fn hash(&self, password: String) -> Result<String, ApiError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| ApiError::internal("the password hasher stopped", &e))?;
        tokio::task::spawn_blocking(move || password::hash(&password))
            .await
            .map_err(|e| ApiError::internal("hashing a password failed", &e))?
            .map_err(|e| ApiError::internal("hashing a password failed", &e))
    }

    async fn verify(&self, password: String, stored: String) -> Result<Checked, ApiError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|e| ApiError::internal("the password hasher stopped", &e))?;
        tokio::task::spawn_blocking(move || password::verify(&password, &stored))
            .await
            .map_err(|e| ApiError::internal("checking a password failed", &e))
    }
}

/// An error in a redirect's fragment, as GoTrue puts it there.
fn error_fragment(error: &ApiError) -> String {
    let kind = if error.status == StatusCode::FORBIDDEN || error.status.is_client_error() {
        "access_denied"
    } else {
        "server_error"
    };
    let description = if error.code == "otp_expired" {
        "Email link is invalid or has expired".to_owned()
    } else {
        error.message.clone()
    };
    form_urlencoded::Serializer::new(String::new())
        .append_pair("error", kind)
        .append_pair("error_code", error.code)
        .append_pair("error_description", &description)
        .finish()
}

/// A hash of nothing anyone knows, checked when the address is unknown.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| password::hash(&tokens::random_token()).unwrap_or_default())
}

fn store(error: AuthError) -> ApiError {
    ApiError::internal("the auth store failed", &error)
}

fn ok(body: serde_json::Value) -> Response {
    json_response(StatusCode::OK, &body)
}

fn bytes_response(status: StatusCode, bytes: Bytes) -> Response {
    let mut response = http::Response::new(
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    if status != StatusCode::NO_CONTENT {
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    response
}

/// Whose attempts share a throttle bucket: the client's address.
fn client_key(request: &Request) -> String {
    request
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

fn query_param(uri: &http::Uri, name: &str) -> Option<String> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A lower-cased address, or GoTrue's refusal.
pub fn validate_email(email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    if email.is_empty() {
        return Err(ApiError::validation("An email address is required"));
    }
    if email.len() > 255 {
        return Err(ApiError::validation("An email address is too long"));
    }
    let valid = email_address::EmailAddress::parse_with_options(
        email,
        email_address::Options::default()
            .without_display_text()
            .without_domain_literal(),
    )
    .is_ok_and(|parsed| parsed.domain().contains('.'));
    if !valid {
        return Err(ApiError::bad_request(
            "email_address_invalid",
            format!("Email address \"{email}\" is invalid"),
        ));
    }
    Ok(email.to_lowercase())
}

async fn read_json<T: serde::de::DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    let bad_json = |why: String| {
        ApiError::bad_request(
            "bad_json",
            format!("Could not parse request body as JSON: {why}"),
        )
    };
    let mut body = request.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| bad_json(format!("reading the body failed ({e})")))?;
        if let Some(data) = frame.data_ref() {
            if bytes.len() + data.len() > MAX_BODY {
                return Err(bad_json(format!(
                    "the body is larger than {MAX_BODY} bytes"
                )));
            }
            bytes.extend_from_slice(data);
        }
    }
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(body).map_err(|e| bad_json(e.to_string()))
}

#[derive(Deserialize)]
struct SignupParams {
    email: Option<String>,
    phone: Option<String>,
    password: Option<String>,
    data: Option<Metadata>,
}

#[derive(Deserialize)]
struct RecoverParams {
    email: Option<String>,
}

#[derive(Deserialize)]
struct VerifyParams {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// The six-digit code, with `email`.
    token: Option<String>,
    /// The token of an e-mailed link.
    token_hash: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
struct PasswordParams {
    email: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct RefreshParams {
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct UpdateParams {
    email: Option<String>,
    password: Option<String>,
    data: Option<Metadata>,
}

#[async_trait::async_trait]
impl nimbus_runtime::RouteService for AppAuth {
    async fn serve(&self, request: Request, path: &str) -> Response {
        self.handle(request, path).await
    }
}

/// A shared app auth as a route service.
pub fn route_service(auth: Arc<AppAuth>) -> Arc<dyn nimbus_runtime::RouteService> {
    auth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_validated_and_lower_cased() {
        assert_eq!(
            validate_email(" Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "Ada <ada@example.com>",
        ] {
            let error = validate_email(bad).unwrap_err();
            assert!(
                matches!(error.code, "validation_failed" | "email_address_invalid"),
                "{bad}: {error:?}"
            );
        }
        assert!(validate_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
