//! End-user auth: an app's GoTrue-compatible API driven by the unmodified Supabase clients
//! (`supabase-auth` from PyPI, `@supabase/auth-js` from npm), refresh-token rotation and reuse
//! detection, brute-force throttling, bad input, the `auth` authorizer in front of a
//! function, and users, sessions and keys surviving a restart.

use crate::support::{Platform, echoed_claims, npm_package, python_package, workspace_root};
use serde_json::{Value, json};
use std::time::Duration;

const ISSUER: &str = "http://login.nimbus.test/auth/v1";

fn manifest() -> String {
    format!(
        r#"
name = "todo"

[auth]
issuer = "{ISSUER}"
refresh_reuse_interval = "1s"
failures_per_account = {{ rate = "1/h", burst = 3 }}

[authorizer.users]
kind = "auth"

[function.probe]
component = "probe.wasm"

[[route]]
path = "/me/{{*rest}}"
function = "probe"
auth = "users"
"#
    )
}

async fn deployed() -> Platform {
    let p = Platform::start().await;
    p.deploy(&manifest(), &[("probe", "probe")]).await.unwrap();
    p
}

async fn post(p: &Platform, path: &str, body: Value) -> (u16, Value) {
    let response = p
        .http
        .post(p.url(path))
        .header("x-supabase-api-version", "2024-01-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn sign_up(p: &Platform, email: &str) -> Value {
    let (status, session) = post(
        p,
        "/auth/v1/signup",
        json!({"email": email, "password": "correct horse 1"}),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    session
}

async fn refresh(p: &Platform, token: &str) -> (u16, Value) {
    post(
        p,
        "/auth/v1/token?grant_type=refresh_token",
        json!({"refresh_token": token}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_signs_up_signs_in_updates_refreshes_and_signs_out() {
    let site = python_package("supabase-auth", "supabase-auth==2.34.1");
    let p = deployed().await;
    let output = tokio::process::Command::new("python3")
        .arg(workspace_root().join("tests/fixtures/auth/supabase_flow.py"))
        .arg(p.url("/auth/v1"))
        .arg("Ada@Example.com")
        .env("PYTHONPATH", &site)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        seen["weak"],
        json!({"code": "weak_password", "status": 422, "reasons": ["length"]})
    );
    assert_eq!(
        seen["signup"],
        json!({"email": "ada@example.com", "name": "Ada", "session": true})
    );
    assert_eq!(
        seen["duplicate"],
        json!({"code": "user_already_exists", "status": 422})
    );
    assert_eq!(
        seen["wrong"],
        json!({"code": "invalid_credentials", "status": 400, "message": "Invalid login credentials"})
    );
    assert_eq!(seen["signin"]["token_type"], "bearer");
    assert_eq!(seen["signin"]["expires_in"], 3600);
    let id = seen["signin"]["user"].as_str().unwrap();
    assert_eq!(
        seen["user"],
        json!({"id": id, "email": "ada@example.com", "aud": "authenticated", "role": "authenticated", "provider": "email", "confirmed": true})
    );
    assert_eq!(seen["updated"], json!({"name": "Ada", "plan": "pro"}));
    assert_eq!(seen["alg"], "ES256");
    let claims = &seen["claims"];
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], id);
    assert_eq!(
        (&claims["aud"], &claims["role"], &claims["aal"]),
        (
            &json!("authenticated"),
            &json!("authenticated"),
            &json!("aal1")
        )
    );
    assert_eq!(claims["email"], "ada@example.com");
    // That token was issued at sign-in, before the update, and says what was true then
    // (GoTrue reissues none on an update); the refreshed one carries the new metadata.
    assert_eq!(claims["user_metadata"], json!({"name": "Ada"}));
    assert_eq!(
        seen["refreshed_metadata"],
        json!({"name": "Ada", "plan": "pro"})
    );
    assert!(claims["session_id"].as_str().is_some_and(|s| s.len() == 36));
    assert_eq!(seen["refreshed"], json!({"rotated": true, "user": id}));
    assert_eq!(seen["signed_out"], true);
    assert_eq!(
        seen["after_sign_out"],
        json!({"code": "session_not_found", "status": 403}),
        "a signed-out session's access token is refused by the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_client_signs_up_signs_in_updates_refreshes_and_signs_out() {
    // The newest release whose engines include the machines' Node 20 (2.110 needs Node 22).
    let modules = npm_package("supabase-auth-js", "@supabase/auth-js@2.109.0");
    let p = deployed().await;
    // Node resolves packages from the script's directory upwards: run a copy beside them.
    let script = modules.join("auth_js_flow.mjs");
    std::fs::copy(
        workspace_root().join("tests/fixtures/auth/auth_js_flow.mjs"),
        &script,
    )
    .unwrap();
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(p.url("/auth/v1"))
        .arg("grace@example.com")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        seen["weak"],
        json!({"code": "weak_password", "status": 422, "weak": true, "reasons": ["length"]})
    );
    assert_eq!(
        seen["signup"],
        json!({"email": "grace@example.com", "name": "Ada", "session": true})
    );
    assert_eq!(
        seen["wrong"],
        json!({"code": "invalid_credentials", "status": 400, "message": "Invalid login credentials"})
    );
    let id = seen["signin"]["user"].as_str().unwrap();
    assert_eq!(seen["signin"]["token_type"], "bearer");
    assert_eq!(
        seen["user"],
        json!({"id": id, "email": "grace@example.com", "aud": "authenticated"})
    );
    assert_eq!(seen["updated"], json!({"name": "Ada", "plan": "pro"}));
    assert_eq!(seen["alg"], "ES256");
    assert_eq!(seen["claims"]["sub"], id);
    assert_eq!(seen["claims"]["role"], "authenticated");
    assert_eq!(seen["refreshed"], json!({"rotated": true, "user": id}));
    assert_eq!(seen["signed_out"], true);
    assert_eq!(
        seen["after_sign_out"],
        json!({"name": "AuthSessionMissingError", "code": null}),
        "the server answered session_not_found, which auth-js reports as a missing session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_refresh_token_answers_within_the_interval_and_revokes_its_family_after() {
    let p = deployed().await;
    let first = sign_up(&p, "lin@example.com").await;
    let t0 = first["refresh_token"].as_str().unwrap();

    let (status, second) = refresh(&p, t0).await;
    assert_eq!(status, 200, "{second}");
    let t1 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(t1, t0);
    // A second tab refreshing with the same token at once still gets a session.
    let (status, beside) = refresh(&p, t0).await;
    assert_eq!(status, 200, "within the reuse interval: {beside}");
    assert_eq!(beside["user"]["id"], first["user"]["id"]);

    // Later, presenting the replaced token again is taken as theft: the session ends.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, error) = refresh(&p, t0).await;
    assert_eq!(
        (status, &error["code"]),
        (400, &json!("refresh_token_already_used")),
        "{error}"
    );
    assert_eq!(error["message"], "Invalid Refresh Token: Already Used");
    let (status, error) = refresh(&p, &t1).await;
    assert_eq!(
        (status, &error["code"]),
        (400, &json!("refresh_token_not_found")),
        "the whole family is revoked: {error}"
    );
    // So is the session the access token names.
    let access = second["access_token"].as_str().unwrap();
    let response = p
        .http
        .get(p.url("/auth/v1/user"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Signing in again starts a new, working session.
    let (status, _) = post(
        &p,
        "/auth/v1/token?grant_type=password",
        json!({"email": "lin@example.com", "password": "correct horse 1"}),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_password_is_throttled_per_account_and_other_accounts_are_not() {
    let p = deployed().await;
    sign_up(&p, "kim@example.com").await;
    sign_up(&p, "max@example.com").await;
    let attempt = async |email: &str, password: &str| {
        p.http
            .post(p.url("/auth/v1/token?grant_type=password"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap()
    };
    for _ in 0..3 {
        let response = attempt("kim@example.com", "guess 1234").await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        // Without the API version header: GoTrue's original error shape.
        assert_eq!(body["error_code"], "invalid_credentials", "{body}");
        assert_eq!(body["code"], 400);
    }
    // The account's budget of failures is spent: even the right password waits.
    for password in ["guess 1234", "correct horse 1"] {
        let response = attempt("kim@example.com", password).await;
        assert_eq!(response.status(), 429);
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(wait > 0);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error_code"], "over_request_rate_limit");
    }
    // An unknown address spends its own budget, not anyone else's.
    assert_eq!(attempt("nobody@example.com", "x").await.status(), 400);
    assert_eq!(
        attempt("max@example.com", "correct horse 1").await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_gotrue_errors_and_changes_nothing() {
    let p = deployed().await;
    let cases = [
        (
            "/auth/v1/signup",
            json!({"email": "not-an-address", "password": "correct horse 1"}),
            400,
            "email_address_invalid",
        ),
        (
            "/auth/v1/signup",
            json!({"email": "a@example.com"}),
            400,
            "validation_failed",
        ),
        (
            "/auth/v1/signup",
            json!({"email": "a@example.com", "password": "x".repeat(73)}),
            400,
            "validation_failed",
        ),
        (
            "/auth/v1/token?grant_type=password",
            json!({"password": "x"}),
            400,
            "validation_failed",
        ),
        (
            "/auth/v1/token?grant_type=magic",
            json!({}),
            400,
            "invalid_credentials",
        ),
        (
            "/auth/v1/token?grant_type=refresh_token",
            json!({"refresh_token": "forged"}),
            400,
            "refresh_token_not_found",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, error) = post(&p, path, body.clone()).await;
        assert_eq!(
            (got, &error["code"]),
            (status, &json!(code)),
            "{path} {body}: {error}"
        );
    }
    // Not JSON at all.
    let response = p
        .http
        .post(p.url("/auth/v1/signup"))
        .header("x-supabase-api-version", "2024-01-01")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-sb-error-code"], "bad_json");
    // No refresh token at all: OAuth's shape, as GoTrue answers it.
    let (status, error) = post(&p, "/auth/v1/token?grant_type=refresh_token", json!({})).await;
    assert_eq!((status, &error["error"]), (400, &json!("invalid_request")));

    // Bearer tokens that are missing, malformed or not this issuer's.
    let user = async |token: Option<&str>| {
        let mut request = p.http.get(p.url("/auth/v1/user"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let code = response.headers()["x-sb-error-code"]
            .to_str()
            .unwrap()
            .to_owned();
        (status, code)
    };
    assert_eq!(user(None).await, (401, "no_authorization".into()));
    assert_eq!(user(Some("not.a.jwt")).await, (403, "bad_jwt".into()));
    let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    assert_eq!(user(Some(unsigned)).await, (403, "bad_jwt".into()));

    // None of it created a user: the address is still free.
    sign_up(&p, "a@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_authorizer_admits_the_apps_own_tokens_and_they_survive_a_restart() {
    let p = deployed().await;
    let session = sign_up(&p, "eve@example.com").await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let refresh_token = session["refresh_token"].as_str().unwrap().to_owned();
    let me = async |p: &Platform, token: Option<&str>| {
        let mut request = p.http.get(p.url("/me/echo"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    };
    assert_eq!(me(&p, None).await.status(), 401);
    let response = me(&p, Some(&access)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let claims = echoed_claims(&text);
    assert_eq!(claims["sub"], session["user"]["id"]);
    assert_eq!(claims["email"], "eve@example.com");
    assert_eq!(claims["role"], "authenticated");

    // Users, sessions and signing keys are durable: after a restart the same tokens work.
    let dir = p.stop().await;
    let p = Platform::start_in(dir, |_| {}).await;
    assert_eq!(me(&p, Some(&access)).await.status(), 200);
    let (status, renewed) = refresh(&p, &refresh_token).await;
    assert_eq!(status, 200, "{renewed}");
    let (status, _) = post(
        &p,
        "/auth/v1/token?grant_type=password",
        json!({"email": "eve@example.com", "password": "correct horse 1"}),
    )
    .await;
    assert_eq!(status, 200);

    // Discovery and the key set, where OpenID Connect clients look for them.
    let (status, body) = p.get("/auth/v1/.well-known/openid-configuration").await;
    assert_eq!(status, 200);
    let metadata: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(metadata["issuer"], ISSUER);
    assert_eq!(
        metadata["jwks_uri"],
        format!("{ISSUER}/.well-known/jwks.json")
    );
    let (status, body) = p.get("/auth/v1/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert!(jwks["keys"][0].get("d").is_none());
    let (status, body) = p.get("/auth/v1/settings").await;
    assert_eq!(status, 200);
    let settings: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(settings["external"]["email"], true);
    assert_eq!(settings["disable_signup"], false);
    assert_eq!(settings["mailer_autoconfirm"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_import_ban_and_remove_users_and_rotate_keys() {
    let p = deployed().await;
    let sign_in = async |email: &str, password: &str| {
        post(
            &p,
            "/auth/v1/token?grant_type=password",
            json!({"email": email, "password": password}),
        )
        .await
    };

    // A user moved from another GoTrue with their bcrypt hash signs in with their password.
    let imported = p
        .client
        .create_user(
            "todo",
            &nimbus_api::CreateUserRequest {
                email: "Old@Example.com".into(),
                password_hash: Some(bcrypt::hash("imported pw 1", 4).unwrap()),
                confirmed: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(imported.email, "old@example.com");
    let (status, session) = sign_in("old@example.com", "imported pw 1").await;
    assert_eq!(status, 200, "{session}");
    // Rehashed with Argon2id on that sign-in, the password still works.
    assert_eq!(sign_in("old@example.com", "imported pw 1").await.0, 200);
    assert_eq!(sign_in("old@example.com", "imported pw 2").await.0, 400);
    let error = p
        .client
        .create_user(
            "todo",
            &nimbus_api::CreateUserRequest {
                email: "old@example.com".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(nimbus_core::ErrorCode::UserExists));
    let error = p
        .client
        .create_user(
            "todo",
            &nimbus_api::CreateUserRequest {
                email: "new@example.com".into(),
                password_hash: Some("$md5$nope".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(nimbus_core::ErrorCode::BadRequest));

    let page = p.client.users("todo", None, 10).await.unwrap();
    assert_eq!(page.users.len(), 1);
    assert!(page.users[0].last_sign_in_ms.is_some());

    // A ban ends the user's sessions and refuses sign-in until lifted.
    let refresh_token = session["refresh_token"].as_str().unwrap();
    let banned = p.client.ban_user("todo", &imported.id, None).await.unwrap();
    assert!(banned.banned_until_ms.is_some());
    let (status, error) = sign_in("old@example.com", "imported pw 1").await;
    assert_eq!((status, &error["code"]), (400, &json!("user_banned")));
    assert_eq!(refresh(&p, refresh_token).await.0, 400);
    p.client.unban_user("todo", &imported.id).await.unwrap();
    let (status, session) = sign_in("old@example.com", "imported pw 1").await;
    assert_eq!(status, 200);

    // After a rotation new tokens carry the new key id; tokens signed before still verify.
    let before = session["access_token"].as_str().unwrap().to_owned();
    let rotated = p.client.rotate_auth_keys("todo").await.unwrap();
    let (_, fresh) = sign_in("old@example.com", "imported pw 1").await;
    let after = fresh["access_token"].as_str().unwrap().to_owned();
    let kid = |token: &str| jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    assert_eq!(kid(&after), rotated.kid);
    assert_ne!(kid(&before), rotated.kid);
    for token in [&before, &after] {
        let response = p
            .http
            .get(p.url("/me/echo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", kid(token));
    }
    let (_, body) = p.get("/auth/v1/.well-known/jwks.json").await;
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    // Removing the app is refused while it has users, unless forced.
    let error = p.client.remove("todo", false).await.unwrap_err();
    assert_eq!(error.code(), Some(nimbus_core::ErrorCode::AuthHasUsers));
    p.client.remove_user("todo", &imported.id).await.unwrap();
    let error = p
        .client
        .remove_user("todo", &imported.id)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(nimbus_core::ErrorCode::UserNotFound));
    p.client.remove("todo", false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_lists_bans_and_removes_users_with_the_password_from_stdin() {
    let p = deployed().await;
    let server = p.server.as_ref().unwrap();
    let (admin, token) = (server.admin_url(), server.token.clone());
    let cli = move |args: &[&str], stdin: &str| -> std::process::Output {
        crate::support::output_with_stdin(
            std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
                .args(["--admin-url", &admin, "--token", &token])
                .args(args),
            stdin.as_bytes(),
        )
    };
    let created = cli(
        &[
            "--json",
            "users",
            "create",
            "ops@example.com",
            "--app",
            "todo",
            "--password-stdin",
            "--confirmed",
        ],
        "stdin horse 9\n",
    );
    assert!(created.status.success(), "{created:?}");
    let user: Value = serde_json::from_slice(&created.stdout).unwrap();
    let id = user["id"].as_str().unwrap().to_owned();
    let (status, _) = post(
        &p,
        "/auth/v1/token?grant_type=password",
        json!({"email": "ops@example.com", "password": "stdin horse 9"}),
    )
    .await;
    assert_eq!(status, 200, "the password came from standard input");

    let listed = cli(&["users", "ls", "--app", "todo"], "");
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains("ops@example.com") && text.contains(&id),
        "{text}"
    );
    let weak = cli(
        &[
            "users",
            "create",
            "weak@example.com",
            "--app",
            "todo",
            "--password-stdin",
        ],
        "short\n",
    );
    assert!(!weak.status.success());
    assert!(
        String::from_utf8_lossy(&weak.stderr).contains("at least 8 characters"),
        "{weak:?}"
    );
    let banned = cli(&["users", "ban", &id, "--app", "todo", "--for", "1h"], "");
    assert!(banned.status.success(), "{banned:?}");
    let (status, error) = post(
        &p,
        "/auth/v1/token?grant_type=password",
        json!({"email": "ops@example.com", "password": "stdin horse 9"}),
    )
    .await;
    assert_eq!((status, &error["code"]), (400, &json!("user_banned")));
    assert!(
        cli(&["users", "rm", &id, "--app", "todo"], "")
            .status
            .success()
    );
    let missing = cli(&["users", "rm", &id, "--app", "todo"], "");
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("user_not_found")
            || String::from_utf8_lossy(&missing.stderr).contains("no user"),
        "{missing:?}"
    );
    let rotated = cli(&["users", "rotate-keys", "--app", "todo"], "");
    assert!(rotated.status.success(), "{rotated:?}");
}

/// A local SMTP server (aiosmtpd) saving what it receives into a directory.
struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    _process: tokio::process::Child,
}

impl SmtpSink {
    async fn start() -> SmtpSink {
        use tokio::io::AsyncBufReadExt;
        let site = python_package("aiosmtpd", "aiosmtpd==1.4.6");
        let dir = tempfile::tempdir().unwrap();
        let mut process = tokio::process::Command::new("python3")
            .arg(workspace_root().join("tests/fixtures/auth/smtp_sink.py"))
            .arg(dir.path())
            .env("PYTHONPATH", &site)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = process.stdout.take().unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .unwrap();
        SmtpSink {
            port: line.trim().parse().expect("the sink prints its port"),
            dir,
            _process: process,
        }
    }

    /// The `n`th message received (1-based), once it has arrived.
    async fn message(&self, n: usize) -> String {
        let path = self.dir.path().join(format!("{n:04}.eml"));
        let arrived =
            crate::support::eventually(Duration::from_secs(10), async || path.exists()).await;
        assert!(arrived, "message {n} never arrived");
        std::fs::read_to_string(path).unwrap()
    }
}

/// The link and the six-digit code of a message.
fn link_and_code(message: &str) -> (String, String) {
    let link = message
        .lines()
        .find(|l| l.starts_with("http"))
        .unwrap_or_else(|| panic!("no link in {message}"))
        .to_owned();
    let code = message
        .lines()
        .find_map(|l| l.strip_prefix("Or enter this code: "))
        .unwrap_or_else(|| panic!("no code in {message}"))
        .trim()
        .to_owned();
    (link, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_and_recovery_go_through_mail() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let p = Platform::start_in(crate::support::data_dir(), |config| {
        config.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
    })
    .await;
    // Wrong codes spend the account's failure budget as wrong passwords do: this test spends
    // three, so its budget is larger than the shared manifest's.
    let confirmed = manifest()
        .replace(
            "[auth]\n",
            "[auth]\nconfirm_email = true\nsite_url = \"http://app.todo.test\"\nmail_from = \"Todo <noreply@todo.test>\"\n",
        )
        .replace("burst = 3", "burst = 10");
    p.deploy(&confirmed, &[("probe", "probe")]).await.unwrap();

    // Signing up answers with the user but no session, and mails a code and a link.
    let (status, user) = post(
        &p,
        "/auth/v1/signup",
        json!({"email": "ivy@example.com", "password": "correct horse 1"}),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["email"], "ivy@example.com");
    assert!(user.get("access_token").is_none());
    assert!(user["confirmation_sent_at"].is_string(), "{user}");
    let sign_in = async |password: &str| {
        post(
            &p,
            "/auth/v1/token?grant_type=password",
            json!({"email": "ivy@example.com", "password": password}),
        )
        .await
    };
    let (status, error) = sign_in("correct horse 1").await;
    assert_eq!(
        (status, &error["code"]),
        (400, &json!("email_not_confirmed"))
    );
    let message = sink.message(1).await;
    assert!(
        message.contains("Subject: Confirm Your Signup"),
        "{message}"
    );
    assert!(message.contains("To: ivy@example.com"), "{message}");
    assert!(
        message.contains("From: Todo <noreply@todo.test>"),
        "{message}"
    );
    let (_, code) = link_and_code(&message);
    assert_eq!(code.len(), 6);

    // A wrong code is refused; the right one confirms the address and signs the user in.
    let (status, error) = post(
        &p,
        "/auth/v1/verify",
        json!({"type": "signup", "email": "ivy@example.com", "token": "000000x"}),
    )
    .await;
    assert_eq!((status, &error["code"]), (403, &json!("otp_expired")));
    let (status, session) = post(
        &p,
        "/auth/v1/verify",
        json!({"type": "signup", "email": "ivy@example.com", "token": code}),
    )
    .await;
    assert_eq!(status, 200, "{session}");
    assert!(session["user"]["email_confirmed_at"].is_string());
    assert!(session["access_token"].is_string());
    assert_eq!(sign_in("correct horse 1").await.0, 200);
    // A code works once.
    let (status, _) = post(
        &p,
        "/auth/v1/verify",
        json!({"type": "signup", "email": "ivy@example.com", "token": code}),
    )
    .await;
    assert_eq!(status, 403);

    // Recovery: the same answer for a registered and an unknown address; mail only to one.
    for email in ["nobody@example.com", "ivy@example.com"] {
        let (status, body) = post(
            &p,
            "/auth/v1/recover?redirect_to=http%3A%2F%2Fapp.todo.test%2Freset",
            json!({"email": email}),
        )
        .await;
        assert_eq!((status, &body), (200, &json!({})), "{email}");
    }
    let message = sink.message(2).await;
    assert!(
        message.contains("Subject: Reset Your Password"),
        "{message}"
    );
    assert!(message.contains("To: ivy@example.com"), "{message}");
    let (link, _) = link_and_code(&message);
    // Asking again at once is refused: one message a minute.
    let (status, error) = post(&p, "/auth/v1/recover", json!({"email": "ivy@example.com"})).await;
    assert_eq!(
        (status, &error["code"]),
        (429, &json!("over_email_send_rate_limit"))
    );

    // Following the link (it names the issuer; the test reaches it on the gateway) redirects
    // to the asked page with a session in the fragment.
    let path = link
        .strip_prefix(ISSUER)
        .expect("the link is under the issuer");
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let followed = no_redirects
        .get(p.url(&format!("/auth/v1{path}")))
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), 303);
    let location = followed.headers()["location"].to_str().unwrap().to_owned();
    let (target, fragment) = location.split_once('#').unwrap();
    assert_eq!(target, "http://app.todo.test/reset", "{link}");
    let fields: std::collections::HashMap<String, String> =
        form_urlencoded::parse(fragment.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(fields["type"], "recovery");
    assert_eq!(fields["token_type"], "bearer");
    let access = &fields["access_token"];
    // With that session the user sets a new password; the old one stops working.
    let response = p
        .http
        .put(p.url("/auth/v1/user"))
        .bearer_auth(access)
        .json(&json!({"password": "battery staple 2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(sign_in("correct horse 1").await.0, 400);
    assert_eq!(sign_in("battery staple 2").await.0, 200);
    // The link works once; again, it redirects with GoTrue's error.
    let again = no_redirects
        .get(p.url(&format!("/auth/v1{path}")))
        .send()
        .await
        .unwrap();
    let location = again.headers()["location"].to_str().unwrap();
    assert!(
        location.contains("#error=access_denied&error_code=otp_expired"),
        "{location}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requiring_confirmation_without_an_smtp_server_is_refused_at_deploy() {
    let p = Platform::start().await;
    let confirmed = manifest().replace("[auth]\n", "[auth]\nconfirm_email = true\n");
    let error = p
        .deploy(&confirmed, &[("probe", "probe")])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("--smtp-url"), "{error}");
    // Nothing was deployed; without the requirement the same app deploys.
    p.deploy(&manifest(), &[("probe", "probe")]).await.unwrap();
}
