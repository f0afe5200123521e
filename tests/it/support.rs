//! The test harness: build guest components once per run, start an in-process platform on
//! ephemeral ports, deploy manifests with components, and talk to it with real clients.

use nimbus_api::{Client, DeployRequest, DeployResponse};
use nimbus_server::{RunningServer, ServerConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn guest_target_dir() -> PathBuf {
    workspace_root().join("target/guests")
}

/// Built components, by name: `probe`, `not-http`, `hello`, `echo`.
pub fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = workspace_root();
        ensure_target(&root);
        for manifest in [
            "guests/Cargo.toml",
            "examples/hello/Cargo.toml",
            "examples/echo/Cargo.toml",
        ] {
            // Cargo's own lock on the target directory serializes concurrent test processes.
            let status = std::process::Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--workspace",
                    "--manifest-path",
                    manifest,
                ])
                .env("CARGO_TARGET_DIR", guest_target_dir())
                .current_dir(&root)
                .status()
                .expect("run cargo for guests");
            assert!(status.success(), "building guest {manifest} failed");
        }
    });
    guest_target_dir().join(format!("wasm32-wasip2/release/{name}.wasm"))
}

fn ensure_target(root: &Path) {
    let installed = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(root)
        .output();
    if let Ok(output) = installed
        && !String::from_utf8_lossy(&output.stdout).contains("wasm32-wasip2")
    {
        let _ = std::process::Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .current_dir(root)
            .status();
    }
}

/// A fresh data directory under `target/` (not /tmp, so process functions get a private /tmp).
pub fn data_dir() -> tempfile::TempDir {
    let parent = workspace_root().join("target/it-data");
    std::fs::create_dir_all(&parent).unwrap();
    tempfile::tempdir_in(parent).unwrap()
}

/// A whole platform on ephemeral ports with its own data directory.
pub struct Platform {
    pub server: Option<RunningServer>,
    pub client: Client,
    pub http: reqwest::Client,
    pub gateway: String,
    pub dir: tempfile::TempDir,
}

pub fn config(dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::new(dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_listen = "127.0.0.1:0".parse().unwrap();
    config.aws_listen = "127.0.0.1:0".parse().unwrap();
    config.max_instances = 200;
    config
}

impl Platform {
    pub async fn start() -> Platform {
        let dir = data_dir();
        Platform::start_in(dir, |_| {}).await
    }

    pub async fn start_in(
        dir: tempfile::TempDir,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> Platform {
        let mut config = config(dir.path());
        adjust(&mut config);
        let server = nimbus_server::start(config).await.unwrap();
        let client = Client::new(server.admin_url(), server.token.clone());
        let gateway = server.gateway_url();
        Platform {
            server: Some(server),
            client,
            http: reqwest::Client::new(),
            gateway,
            dir,
        }
    }

    /// Stop the server, keeping the data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        self.dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// Deploy `manifest` with components given as function → guest name.
    pub async fn deploy(
        &self,
        manifest: &str,
        components: &[(&str, &str)],
    ) -> Result<DeployResponse, nimbus_api::ApiError> {
        let artifacts = components
            .iter()
            .map(|(function, guest)| (*function, std::fs::read(component(guest)).unwrap()));
        self.deploy_bytes(manifest, artifacts).await
    }

    /// Upload each function's artifact bytes, then deploy `manifest` with them.
    pub async fn deploy_bytes(
        &self,
        manifest: &str,
        artifacts: impl Iterator<Item = (&str, Vec<u8>)>,
    ) -> Result<DeployResponse, nimbus_api::ApiError> {
        let mut digests = BTreeMap::new();
        for (function, bytes) in artifacts {
            digests.insert(
                function.to_owned(),
                self.client.upload_artifact(bytes).await?,
            );
        }
        self.deploy_artifacts(manifest, digests).await
    }

    pub async fn deploy_artifacts(
        &self,
        manifest: &str,
        artifacts: BTreeMap<String, String>,
    ) -> Result<DeployResponse, nimbus_api::ApiError> {
        self.client
            .deploy(&DeployRequest {
                manifest: manifest.to_owned(),
                manifest_path: "nimbus.toml".into(),
                artifacts,
            })
            .await
    }
}

/// A manifest with one probe function `name` behind `/{name}/{*rest}`, plus extra TOML lines
/// for the function table.
pub fn probe_app(app: &str, name: &str, extra: &str) -> String {
    format!(
        "name = \"{app}\"\n\n[function.{name}]\ncomponent = \"probe.wasm\"\n{extra}\n\n[[route]]\npath = \"/{name}/{{*rest}}\"\nfunction = \"{name}\"\n"
    )
}

/// Poll until `check` is true or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Lambda fixture's code directory under `tests/fixtures/lambda`. The first call makes sure
/// the host has what process functions need: `node` for the nodejs runtime and `ip` for
/// loopback in network namespaces (installed from Debian when missing).
pub fn lambda_fixture(name: &str) -> PathBuf {
    static TOOLS: OnceLock<()> = OnceLock::new();
    TOOLS.get_or_init(|| debian_packages(&[("node", "nodejs"), ("ip", "iproute2")]));
    workspace_root().join("tests/fixtures/lambda").join(name)
}

/// Install from Debian the package of each `(program, package)` whose program is not on the
/// PATH (one apt run at a time).
pub fn debian_packages(wanted: &[(&str, &str)]) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(program, _)| {
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .map(|(_, package)| *package)
        .collect();
    if !missing.is_empty() {
        let install = format!(
            "apt-get install -y {0} || (apt-get update && apt-get install -y {0})",
            missing.join(" ")
        );
        let _ = std::process::Command::new("sh")
            .args(["-c", &install])
            .status();
    }
}

/// `examples/lambda-rust` built once per run (AWS's `lambda_runtime` crate); returns the binary.
pub fn lambda_rust_bootstrap() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = workspace_root();
            let target = root.join("target/examples");
            let status = std::process::Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--release",
                    "--manifest-path",
                    "examples/lambda-rust/Cargo.toml",
                ])
                .env("CARGO_TARGET_DIR", &target)
                .current_dir(&root)
                .status()
                .expect("run cargo for examples/lambda-rust");
            assert!(status.success(), "building examples/lambda-rust failed");
            target.join("release/bootstrap")
        })
        .clone()
}

impl Platform {
    /// Deploy `manifest` with code directories given as function → directory.
    pub async fn deploy_code(
        &self,
        manifest: &str,
        code: &[(&str, &Path)],
    ) -> Result<DeployResponse, nimbus_api::ApiError> {
        let artifacts = code
            .iter()
            .map(|(function, dir)| (*function, nimbus_api::artifact::pack_dir(dir).unwrap()));
        self.deploy_bytes(manifest, artifacts).await
    }

    /// The records of `app/function` once `count` of them are stored.
    pub async fn records(
        &self,
        app: &str,
        function: &str,
        count: usize,
    ) -> Vec<nimbus_core::InvocationRecord> {
        let mut records = Vec::new();
        eventually(Duration::from_secs(10), async || {
            records = self
                .client
                .logs(app, function, 0, None)
                .await
                .unwrap()
                .records;
            records.len() >= count
        })
        .await;
        records
    }
}

/// An error answer's status, stable code and message (empty when the body has none).
pub async fn error_code(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    let field = |name: &str| body["error"][name].as_str().unwrap_or_default().to_owned();
    (status, field("code"), field("message"))
}

/// The verified claims a probe function echoed back (its `x-nimbus-claims` request header).
pub fn echoed_claims(text: &str) -> serde_json::Value {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("x-nimbus-claims: "))
        .unwrap_or_else(|| panic!("no claims header in {text}"));
    serde_json::from_str(line).unwrap()
}

/// Run `command` with `input` on its standard input; its output, captured.
pub fn output_with_stdin(
    command: &mut std::process::Command,
    input: &[u8],
) -> std::process::Output {
    use std::io::Write as _;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// A loopback port nothing listens on now, for a server a test starts that cannot be
/// handed a listener (it may, rarely, be taken again before that server binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A pinned PyPI package installed (once) into its own directory under `target/py`.
pub fn python_package(name: &str, requirement: &str) -> PathBuf {
    install_once("py", name, requirement, |dir| {
        let mut pip = std::process::Command::new("python3");
        pip.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
        ])
        .arg(dir)
        .arg(requirement);
        pip
    })
}

/// A pinned npm package installed (once) into its own directory under `target/npm`; returns
/// that directory (its `node_modules` holds the package).
pub fn npm_package(name: &str, spec: &str) -> PathBuf {
    install_once("npm", name, spec, |dir| {
        let mut npm = std::process::Command::new("npm");
        npm.args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(dir)
            .arg(spec);
        npm
    })
}

/// Run `install` into `target/<kind>/<name>` unless `spec` was installed there already (a
/// marker file says so). Tests run in parallel threads: one install at a time, so two never
/// write the same directory.
fn install_once(
    kind: &str,
    name: &str,
    spec: &str,
    install: impl FnOnce(&Path) -> std::process::Command,
) -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let dir = workspace_root().join("target").join(kind).join(name);
    let marker = dir.join(format!(".installed-{}", spec.replace('/', "_")));
    if !marker.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let status = install(&dir).status().expect("run the installer");
        assert!(status.success(), "installing {spec} failed");
        std::fs::write(&marker, "").unwrap();
    }
    dir
}
