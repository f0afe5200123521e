//! The gateway over TLS: certificates from a test CA (rcgen), the one for the host the client
//! names chosen by SNI, HTTP/2 agreed over ALPN, and a renewed certificate served without a
//! restart.

use crate::support::{Platform, data_dir, eventually};
use nimbus_wire::tls::CertFiles;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use std::path::Path;
use std::time::Duration;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A leaf certificate for `host`, written as `name.crt` / `name.key` under `dir`; returns
    /// its DER bytes.
    fn issue(&self, host: &str, dir: &Path, name: &str) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        // Written whole to a temporary name, then renamed: a reload never reads half a file.
        let write = |file: &str, text: &str| {
            let tmp = dir.join(format!("{file}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(tmp, dir.join(file)).unwrap();
        };
        write(&format!("{name}.key"), &key.serialize_pem());
        write(&format!("{name}.crt"), &cert.pem());
        cert.der().to_vec()
    }
}

/// A client that trusts only the test CA and sends `host` as SNI while dialling `port`.
fn client(ca: &Ca, host: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .tls_info(true)
        .build()
        .unwrap()
}

/// The certificate the server presented, and the HTTP version agreed.
async fn presented(client: &reqwest::Client, url: &str) -> (Vec<u8>, reqwest::Version, u16) {
    let response = client.get(url).send().await.unwrap();
    let cert = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .unwrap()
        .to_vec();
    (cert, response.version(), response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_sni_http2_and_certificates_reloaded_in_place() {
    let ca = Ca::new();
    let certs = tempfile::tempdir().unwrap();
    let a = ca.issue("a.test", certs.path(), "a");
    let b = ca.issue("b.test", certs.path(), "b");
    let files = |name: &str| CertFiles {
        cert: certs.path().join(format!("{name}.crt")),
        key: certs.path().join(format!("{name}.key")),
    };
    let p = Platform::start_in(data_dir(), |config| {
        config.tls = vec![files("a"), files("b")];
        config.http_redirect = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    assert!(p.url("/").starts_with("https://"), "{}", p.url("/"));
    p.deploy(
        &crate::support::probe_app("web", "probe", ""),
        &[("probe", "probe")],
    )
    .await
    .unwrap();
    let port = p.server.as_ref().unwrap().gateway_addr.port();

    // Each host gets its own certificate, and HTTP/2 by ALPN.
    let to_a = client(&ca, "a.test", port);
    let (cert, version, status) =
        presented(&to_a, &format!("https://a.test:{port}/probe/counter")).await;
    assert_eq!((status, version), (200, reqwest::Version::HTTP_2));
    assert_eq!(cert, a);
    let to_b = client(&ca, "b.test", port);
    let (cert, _, status) = presented(&to_b, &format!("https://b.test:{port}/probe/counter")).await;
    assert_eq!(status, 200);
    assert_eq!(cert, b);

    // A plain-HTTP request on the TLS port gets nowhere, and the server keeps serving.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/probe/counter"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);

    // The plain-HTTP redirect sends clients to the same place over HTTPS, method kept (308).
    let redirect = p.server.as_ref().unwrap().redirect_addr.unwrap();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = no_redirects
        .post(format!("http://{redirect}/probe/counter?x=1"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 308);
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("https://a.test:{port}/probe/counter?x=1"));
    let (_, _, status) = presented(&to_a, &location).await;
    assert_eq!(status, 200, "the redirect leads somewhere that answers");

    // A renewed certificate for a.test is served within seconds, without a restart.
    let renewed = ca.issue("a.test", certs.path(), "a");
    assert_ne!(renewed, a);
    let served = eventually(Duration::from_secs(15), async || {
        // A new client: a new connection, a new handshake.
        let fresh = client(&ca, "a.test", port);
        presented(&fresh, &format!("https://a.test:{port}/probe/counter"))
            .await
            .0
            == renewed
    })
    .await;
    assert!(served, "the renewed certificate was not served");

    // A broken file on a reload keeps the last good certificate.
    std::fs::write(certs.path().join("b.crt"), "not a certificate").unwrap();
    tokio::time::sleep(nimbus_server::TLS_RELOAD_INTERVAL * 2).await;
    let fresh = client(&ca, "b.test", port);
    let (cert, _, status) =
        presented(&fresh, &format!("https://b.test:{port}/probe/counter")).await;
    assert_eq!((cert, status), (b, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_refuses_to_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.crt"), "junk").unwrap();
    std::fs::write(dir.path().join("c.key"), "junk").unwrap();
    let data = data_dir();
    let mut config = crate::support::config(data.path());
    config.tls = vec![CertFiles {
        cert: dir.path().join("c.crt"),
        key: dir.path().join("c.key"),
    }];
    let error = match nimbus_server::start(config).await {
        Ok(_) => panic!("a server started with a junk certificate"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("c.crt"), "{error}");
    assert!(error.contains("TLS"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_and_the_aws_endpoint_serve_https_when_asked() {
    let ca = Ca::new();
    let certs = tempfile::tempdir().unwrap();
    let admin_cert = ca.issue("127.0.0.1", certs.path(), "admin");
    ca.issue("127.0.0.1", certs.path(), "aws");
    std::fs::write(certs.path().join("ca.pem"), &ca.pem).unwrap();
    let files = |name: &str| CertFiles {
        cert: certs.path().join(format!("{name}.crt")),
        key: certs.path().join(format!("{name}.key")),
    };
    let dir = data_dir();
    let mut config = crate::support::config(dir.path());
    config.admin_tls = Some(files("admin"));
    config.aws_tls = Some(files("aws"));
    let server = nimbus_server::start(config).await.unwrap();
    let admin = server.admin_url();
    let aws = server.aws_url();
    assert!(admin.starts_with("https://127.0.0.1:"), "{admin}");
    assert!(aws.starts_with("https://127.0.0.1:"), "{aws}");
    // What the CLI finds in the data directory says HTTPS too.
    let published =
        std::fs::read_to_string(dir.path().join(nimbus_server::ADMIN_URL_FILE)).unwrap();
    assert_eq!(published.trim(), admin);
    let published = std::fs::read_to_string(dir.path().join(nimbus_server::AWS_URL_FILE)).unwrap();
    assert_eq!(published.trim(), aws);

    // The admin API answers a client that trusts the CA, with the admin certificate.
    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .tls_info(true)
        .build()
        .unwrap();
    let client = nimbus_api::Client::with_http(&admin, server.token.clone(), trusting.clone());
    assert!(client.apps().await.unwrap().is_empty());
    let (cert, _, status) = presented(&trusting, &format!("{admin}/v1/status")).await;
    assert_eq!(status, 401, "no token, but answered over TLS");
    assert_eq!(cert, admin_cert);
    // Plain HTTP gets nowhere; a client that does not trust the CA neither.
    let plain = reqwest::Client::new()
        .get(admin.replace("https://", "http://") + "/v1/apps")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    assert!(
        reqwest::Client::new()
            .get(format!("{admin}/v1/apps"))
            .send()
            .await
            .is_err()
    );

    // The AWS-compatible endpoint: S3's own refusal of an unsigned request, over TLS.
    let response = trusting.get(format!("{aws}/")).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(response.headers().contains_key("x-amz-request-id"));
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<Code>AccessDenied</Code>")
    );

    // The CLI reaches it with --ca-cert, reading the URL and token from the data directory.
    let cli = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(extra)
            .arg("apps")
            .output()
            .unwrap()
    };
    let ca_pem = certs.path().join("ca.pem");
    let trusted = cli(&["--ca-cert", ca_pem.to_str().unwrap()]);
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let untrusted = cli(&[]);
    assert!(!untrusted.status.success());
    server.shutdown().await;
}
