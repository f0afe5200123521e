//! The admin API's scopes and audit log: a `read` token reads and nothing more, a `deploy`
//! token also ships and drives code, only `admin` (and the root token) touches credentials and
//! data; a revoked token is refused at once; every write, refused or not, is in `nimbus audit`
//! with who made it and what it was answered, and the log survives a restart.

use crate::support::{Platform, component, probe_app};
use nimbus_api::{ApiError, Client, CreateTokenRequest};

async fn token(p: &Platform, scope: &str) -> (String, Client, String) {
    let created = p
        .client
        .create_token(&CreateTokenRequest {
            scope: scope.into(),
            name: Some(format!("{scope} for ci")),
        })
        .await
        .unwrap();
    let secret = created.token.expect("the token is shown at creation");
    let admin = p.server.as_ref().unwrap().admin_url();
    (created.id, Client::new(admin, secret.clone()), secret)
}

fn status_of<T: std::fmt::Debug>(result: Result<T, ApiError>) -> (u16, String) {
    match result {
        Ok(_) => (200, String::new()),
        Err(ApiError::Api { status, code, .. }) => (status, code.as_str().to_owned()),
        Err(other) => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_scoped_and_every_write_is_audited() {
    let p = Platform::start().await;
    let (reader_id, reader, _) = token(&p, "read").await;
    let (deployer_id, deployer, deployer_token) = token(&p, "deploy").await;
    let (admin_id, admin, _) = token(&p, "admin").await;

    // Read: listings, not writes.
    assert_eq!(status_of(reader.apps().await), (200, String::new()));
    let bytes = std::fs::read(component("probe")).unwrap();
    assert_eq!(
        status_of(reader.upload_artifact(bytes.clone()).await),
        (403, "forbidden".into())
    );
    // Deploy: ships code and invokes it, but no credentials.
    let digest = deployer.upload_artifact(bytes).await.unwrap();
    deployer
        .deploy(&nimbus_api::DeployRequest {
            manifest: probe_app("shop", "f", ""),
            manifest_path: "nimbus.toml".into(),
            artifacts: [("f".to_owned(), digest)].into(),
        })
        .await
        .unwrap();
    let make_key = nimbus_api::CreateKeyRequest {
        app: Some("shop".into()),
        description: None,
    };
    assert_eq!(
        status_of(deployer.create_key(&make_key).await),
        (403, "forbidden".into())
    );
    assert_eq!(
        status_of(deployer.set_secret("shop", "k", b"v".to_vec(), false).await),
        (403, "forbidden".into())
    );
    assert_eq!(
        status_of(deployer.audit(0, 10).await),
        (403, "forbidden".into())
    );
    // Admin: everything.
    admin.create_key(&make_key).await.unwrap();
    admin
        .set_secret("shop", "k", b"v".to_vec(), false)
        .await
        .unwrap();
    // Revoked: refused from the next request on.
    admin.remove_token(&reader_id).await.unwrap();
    assert_eq!(status_of(reader.apps().await), (401, "unauthorized".into()));
    let listed = p.client.tokens().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|t| t.token.is_none()),
        "listings never show tokens"
    );
    assert_eq!(
        status_of(
            p.client
                .create_token(&CreateTokenRequest {
                    scope: "owner".into(),
                    name: None
                })
                .await
        ),
        (400, "bad_request".into())
    );

    // The audit log: each write with who and what it was answered; reads are not in it.
    let log = p.client.audit(0, 100).await.unwrap();
    let lines: Vec<String> = log
        .iter()
        .map(|e| format!("{} {} {} {}", e.actor, e.method, e.path, e.status))
        .collect();
    let digest_path = log
        .iter()
        .find(|e| e.path.starts_with("/v1/artifacts/"))
        .map(|e| e.path.clone())
        .unwrap();
    let expected = [
        "root POST /v1/tokens 200".to_owned(),
        "root POST /v1/tokens 200".to_owned(),
        "root POST /v1/tokens 200".to_owned(),
        format!("{reader_id} PUT {digest_path} 403"),
        format!("{deployer_id} PUT {digest_path} 200"),
        format!("{deployer_id} POST /v1/deploy 200"),
        format!("{deployer_id} POST /v1/keys 403"),
        format!("{deployer_id} PUT /v1/apps/shop/secrets/k 403"),
        format!("{admin_id} POST /v1/keys 200"),
        format!("{admin_id} PUT /v1/apps/shop/secrets/k 200"),
        format!("{admin_id} DELETE /v1/tokens/{reader_id} 200"),
        "root POST /v1/tokens 400".to_owned(),
    ];
    assert_eq!(lines, expected);
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));

    // It survives a restart, and the CLI shows it.
    let dir = p.stop().await;
    let p = Platform::start_in(dir, |_| {}).await;
    let server = p.server.as_ref().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
        .args([
            "--json",
            "--admin-url",
            &server.admin_url(),
            "--token",
            &server.token,
        ])
        .args(["audit", "--limit", "2"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: Vec<nimbus_api::AuditRecord> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(shown.len(), 2, "the newest two");
    assert_eq!(shown[1].path, "/v1/tokens");
    assert_eq!(shown[1].status, 400);
    assert_eq!(
        status_of(Client::new(server.admin_url(), deployer_token).apps().await),
        (200, String::new()),
        "tokens survive a restart"
    );
}
