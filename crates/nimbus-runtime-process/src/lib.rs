//! The process executor: runs AWS Lambda functions unmodified, as sandboxed processes speaking
//! the Lambda Runtime API.
//!
//! Three runtimes: `provided` (an executable `bootstrap` in the code directory, Lambda's OS-only
//! contract — the Rust `lambda_runtime` crate, AWS's interface clients, anything that speaks the
//! API), and the managed `python3` and `nodejs`, whose small interface clients ship inside
//! nimbus ([`ric`]) and load `handler = "module.function"`.
//!
//! [`ProcessExecutor::load`] unpacks a function's code archive once per digest (the archive is
//! the tar `nimbus_api::artifact::pack_dir` makes) and checks that the bootstrap or handler
//! file is there. Instances ([`instance`]) are processes started in a [`sandbox`], each with
//! its own Runtime API server ([`runtime_api`]); HTTP requests reach handlers as API Gateway
//! payload 2.0 events ([`event`]).
//!
//! This is the only crate that spawns function processes.

mod instance;
mod logs;
pub mod ric;
mod runtime_api;
pub mod sandbox;

use nimbus_core::{ErrorCode, FunctionKind, FunctionSpec, InstanceMode, Network, Runtime};
use nimbus_runtime::{Artifact, Executor, FunctionIdentity, LoadError, LoadSource, LoadedFunction};
use sandbox::{Capabilities, CgroupRoot, Sandbox};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use instance::{INIT_TIMEOUT, PIDS_MAX};
pub use runtime_api::PAYLOAD_LIMIT;

/// Executor settings.
#[derive(Clone)]
pub struct ProcessConfig {
    /// Where code is unpacked and instances get their working directories.
    pub work_dir: PathBuf,
    /// Use Linux namespaces and cgroups where the host permits (turn off to debug).
    pub sandbox: bool,
    /// Files and directories functions must not see (the server's token, store, artifacts):
    /// covered in each instance's mount namespace.
    pub hidden: Vec<PathBuf>,
    /// Serves instances' requests to `$NIMBUS_API` (queues, the event bus).
    pub services: Option<Arc<dyn nimbus_runtime::Services>>,
}

pub struct ProcessExecutor {
    code_dir: PathBuf,
    instances_dir: PathBuf,
    runtime_dir: PathBuf,
    sandbox: Arc<Sandbox>,
    python: Option<PathBuf>,
    node: Option<PathBuf>,
    services: Option<Arc<dyn nimbus_runtime::Services>>,
}

impl ProcessExecutor {
    pub fn new(config: ProcessConfig) -> std::io::Result<ProcessExecutor> {
        // Absolute: processes start in their code directory, so a relative program or script
        // path (a relative --data-dir) would resolve against the wrong directory.
        let at = |path: &Path| {
            let path = path.display().to_string();
            move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{path}: {e}"))
        };
        std::fs::create_dir_all(&config.work_dir).map_err(at(&config.work_dir))?;
        let work_dir = std::fs::canonicalize(&config.work_dir).map_err(at(&config.work_dir))?;
        let code_dir = work_dir.join("code");
        let instances_dir = work_dir.join("instances");
        let runtime_dir = work_dir.join("runtime");
        // Instances do not survive a restart; whatever a crash left behind goes.
        let _ = std::fs::remove_dir_all(&instances_dir);
        for dir in [&code_dir, &instances_dir, &runtime_dir] {
            std::fs::create_dir_all(dir).map_err(at(dir))?;
        }
        ric::install(&runtime_dir).map_err(at(&runtime_dir))?;
        let cgroups = if config.sandbox {
            CgroupRoot::create(&format!("nimbus-{}", std::process::id()))
        } else {
            CgroupRoot::None
        };
        let capabilities = if config.sandbox {
            Capabilities::detect(&cgroups)
        } else {
            Capabilities::default()
        };
        tracing::info!(?capabilities, "process sandbox");
        Ok(ProcessExecutor {
            code_dir,
            instances_dir,
            runtime_dir,
            sandbox: Arc::new(Sandbox::new(
                capabilities,
                cgroups,
                config
                    .hidden
                    .iter()
                    .filter_map(|path| std::fs::canonicalize(path).ok())
                    .collect(),
                !work_dir.starts_with("/tmp"),
            )),
            python: find_program("python3"),
            node: find_program("node"),
            services: config.services,
        })
    }

    /// What the sandbox can apply on this host.
    pub fn capabilities(&self) -> Capabilities {
        self.sandbox.capabilities()
    }
}

fn load_error(code: ErrorCode, message: impl Into<String>) -> LoadError {
    LoadError {
        code,
        message: message.into(),
    }
}

#[async_trait::async_trait]
impl Executor for ProcessExecutor {
    async fn load(
        &self,
        identity: &FunctionIdentity,
        spec: &FunctionSpec,
        artifact: &Artifact,
    ) -> Result<(Arc<dyn LoadedFunction>, LoadSource), LoadError> {
        let FunctionKind::Process {
            runtime,
            handler,
            network,
        } = &spec.kind
        else {
            return Err(load_error(ErrorCode::Internal, "not a process function"));
        };
        let target = self.code_dir.join(&artifact.digest);
        let artifact_bytes = artifact.bytes.clone();
        let unpack_target = target.clone();
        let (source, target) = tokio::task::spawn_blocking(move || {
            unpack(&artifact_bytes, &unpack_target).map(|source| (source, unpack_target))
        })
        .await
        .map_err(|e| load_error(ErrorCode::Internal, format!("unpack task failed: {e}")))??;

        let handler_name = handler.clone().unwrap_or_default();
        let (program, args, execution_env) = match runtime {
            Runtime::Provided => {
                check_bootstrap(&target)?;
                (target.join("bootstrap"), Vec::new(), None)
            }
            Runtime::Python3 => {
                check_handler(&target, &handler_name, &["py"], true)?;
                let python = self.python.clone().ok_or_else(|| {
                    load_error(
                        ErrorCode::FunctionStartFailed,
                        "runtime python3 needs `python3` on the server's PATH; install Python 3",
                    )
                })?;
                if source == LoadSource::Compiled {
                    // Functions see their code read-only, so Python could not cache bytecode
                    // and would recompile every module at every cold start: compile once here.
                    let (python, code) = (python.clone(), target.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        std::process::Command::new(python)
                            .args(["-m", "compileall", "-q", "-j", "0"])
                            .arg(code)
                            .stdout(std::process::Stdio::null())
                            .stderr(std::process::Stdio::null())
                            .status()
                    })
                    .await;
                }
                let script = self.runtime_dir.join(ric::PYTHON_FILE);
                (
                    python,
                    vec![script.display().to_string()],
                    Some("AWS_Lambda_python3"),
                )
            }
            Runtime::Nodejs => {
                check_handler(&target, &handler_name, &["js", "mjs", "cjs"], false)?;
                let node = self.node.clone().ok_or_else(|| {
                    load_error(
                        ErrorCode::FunctionStartFailed,
                        "runtime nodejs needs `node` on the server's PATH; install Node.js",
                    )
                })?;
                let heap_mib = (spec.memory_bytes >> 20).saturating_mul(3) / 4;
                let script = self.runtime_dir.join(ric::NODE_FILE);
                (
                    node,
                    vec![
                        format!("--max-old-space-size={}", heap_mib.max(16)),
                        script.display().to_string(),
                    ],
                    Some("AWS_Lambda_nodejs"),
                )
            }
        };

        let name = spec.name.as_str();
        let mut env: Vec<(String, String)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut path = String::from("/usr/local/bin:/usr/bin:/bin");
        if let Some(dir) = program.parent().filter(|_| *runtime != Runtime::Provided) {
            path = format!("{}:{path}", dir.display());
        }
        let reserved = [
            ("_HANDLER", handler_name.clone()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", identity.version.to_string()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                (spec.memory_bytes >> 20).to_string(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}/{name}", identity.app),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_REGION", nimbus_core::aws::REGION.to_owned()),
            ("AWS_DEFAULT_REGION", nimbus_core::aws::REGION.to_owned()),
            ("LAMBDA_TASK_ROOT", target.display().to_string()),
            ("LAMBDA_RUNTIME_DIR", self.runtime_dir.display().to_string()),
            ("TZ", ":UTC".to_owned()),
            ("LANG", "en_US.UTF-8".to_owned()),
            ("HOME", "/tmp".to_owned()),
            ("PATH", path),
            ("PYTHONUNBUFFERED", "1".to_owned()),
        ];
        env.retain(|(k, _)| !reserved.iter().any(|(r, _)| r == k));
        env.extend(reserved.into_iter().map(|(k, v)| (k.to_owned(), v)));
        if let Some(execution_env) = execution_env {
            env.retain(|(k, _)| k != "AWS_EXECUTION_ENV");
            env.push(("AWS_EXECUTION_ENV".into(), execution_env.into()));
        }

        let function = instance::ProcessFunction {
            program,
            args,
            env,
            code_dir: target,
            instances_dir: self.instances_dir.clone(),
            memory_bytes: spec.memory_bytes,
            isolate_network: *network == Network::None,
            reuse: spec.instance == InstanceMode::Reuse,
            secret_env: !spec.secret_env.is_empty(),
            runtime_name: runtime.as_str(),
            version: identity.version,
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{name}:{}",
                nimbus_core::aws::REGION,
                nimbus_core::aws::ACCOUNT,
                identity.version
            ),
            sandbox: self.sandbox.clone(),
            services: self.services.clone().map(|services| {
                let caller = nimbus_runtime::Caller {
                    app: identity.app.clone(),
                    function: Arc::from(name),
                };
                (services, Arc::new(caller))
            }),
        };
        Ok((Arc::new(function), source))
    }
}

/// Unpack `archive` into `target` once; later loads of the same digest reuse it.
fn unpack(archive: &[u8], target: &Path) -> Result<LoadSource, LoadError> {
    if target.is_dir() {
        return Ok(LoadSource::Cache);
    }
    let parent = target.parent().unwrap_or(Path::new("."));
    let staging = tempfile_dir(parent).map_err(|e| {
        load_error(
            ErrorCode::Internal,
            format!("create staging directory: {e}"),
        )
    })?;
    let mut tar = tar::Archive::new(archive);
    tar.set_preserve_permissions(true);
    tar.set_overwrite(false);
    if let Err(error) = tar.unpack(&staging) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(load_error(
            ErrorCode::InvalidCode,
            format!(
                "the code archive cannot be unpacked ({error}); deploy a directory with `code = \"dir/\"`"
            ),
        ));
    }
    match std::fs::rename(&staging, target) {
        Ok(()) => Ok(LoadSource::Compiled),
        // Another load of the same digest won the race.
        Err(_) if target.is_dir() => {
            let _ = std::fs::remove_dir_all(&staging);
            Ok(LoadSource::Cache)
        }
        Err(error) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(load_error(
                ErrorCode::Internal,
                format!("install unpacked code: {error}"),
            ))
        }
    }
}

fn tempfile_dir(parent: &Path) -> std::io::Result<PathBuf> {
    let dir = parent.join(format!(".unpack-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

fn check_bootstrap(code: &Path) -> Result<(), LoadError> {
    use std::os::unix::fs::PermissionsExt;
    let bootstrap = code.join("bootstrap");
    match std::fs::metadata(&bootstrap) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(meta) if meta.is_file() => Err(load_error(
            ErrorCode::InvalidCode,
            "`bootstrap` is not executable; `chmod +x` it before deploying",
        )),
        _ => Err(load_error(
            ErrorCode::InvalidCode,
            "runtime \"provided\" needs an executable named `bootstrap` at the top of the code directory",
        )),
    }
}

fn check_handler(
    code: &Path,
    handler: &str,
    extensions: &[&str],
    dotted_modules: bool,
) -> Result<(), LoadError> {
    let module = handler.rsplit_once('.').map(|(m, _)| m).unwrap_or(handler);
    let module_path = if dotted_modules {
        module.replace('.', "/")
    } else {
        module.to_owned()
    };
    let mut candidates: Vec<PathBuf> = extensions
        .iter()
        .map(|ext| code.join(format!("{module_path}.{ext}")))
        .collect();
    if dotted_modules {
        candidates.push(code.join(&module_path).join("__init__.py"));
    }
    if candidates.iter().any(|c| c.is_file()) {
        Ok(())
    } else {
        Err(load_error(
            ErrorCode::InvalidCode,
            format!(
                "handler {handler:?}: no module {module:?} in the code directory (looked for {})",
                candidates
                    .iter()
                    .filter_map(|c| c.strip_prefix(code).ok())
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// The absolute path of `name` on this process's PATH.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())?;
    // Version managers put shims on PATH; resolve to the real interpreter so a clean
    // environment still finds its libraries.
    let resolved = std::process::Command::new(&found)
        .args(match name {
            "python3" => ["-c", "import sys; print(sys.executable)"],
            _ => ["-e", "console.log(process.execPath)"],
        })
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_file());
    Some(resolved.unwrap_or(found))
}
