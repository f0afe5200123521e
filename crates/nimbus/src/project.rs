//! An app on disk: read its manifest, run its build commands, upload its components and deploy.

use crate::commands::Failure;
use indicatif::{ProgressBar, ProgressStyle};
use nimbus_api::{Client, DeployRequest, DeployResponse};
use nimbus_manifest::SourceForm;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) const MANIFEST: &str = "nimbus.toml";

pub(crate) struct Project {
    pub dir: PathBuf,
    pub manifest_path: PathBuf,
    pub text: String,
    pub manifest: nimbus_manifest::Manifest,
}

impl Project {
    pub(crate) fn load(dir: &Path) -> Result<Project, Failure> {
        let manifest_path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
            Failure::Local(format!(
                "cannot read {}: {e} (is this an app directory with a {MANIFEST}?)",
                manifest_path.display()
            ))
        })?;
        let manifest = nimbus_manifest::parse(&manifest_path.display().to_string(), &text)
            .map_err(|e| Failure::Local(e.to_string()))?;
        Ok(Project {
            dir: dir.to_owned(),
            manifest_path,
            text,
            manifest,
        })
    }

    /// Run every distinct build command, in the app directory.
    pub(crate) fn build(&self, quiet: bool) -> Result<(), Failure> {
        let mut seen = Vec::new();
        for source in self.manifest.sources.values() {
            let Some(command) = &source.build else {
                continue;
            };
            if seen.contains(command) {
                continue;
            }
            seen.push(command.clone());
            if command.contains("wasm32-wasip2") {
                ensure_wasm_target(&self.dir);
            }
            let spinner = spinner(quiet, format!("building: {command}"));
            let output = std::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&self.dir)
                .output()
                .map_err(|e| {
                    Failure::Local(format!("cannot run build command {command:?}: {e}"))
                })?;
            spinner.finish_and_clear();
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail: Vec<&str> = stderr
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                return Err(Failure::Local(format!(
                    "build command {command:?} failed ({}):\n{}",
                    output.status,
                    tail.join("\n")
                )));
            }
        }
        Ok(())
    }

    /// Upload the components and deploy; prints progress unless `quiet`.
    pub(crate) async fn deploy(
        &self,
        client: &Client,
        quiet: bool,
    ) -> Result<DeployResponse, Failure> {
        let mut artifacts = BTreeMap::new();
        for (name, source) in &self.manifest.sources {
            let path = self.dir.join(&source.path);
            let bytes = match source.form {
                SourceForm::Component => std::fs::read(&path).map_err(|e| {
                    Failure::Local(format!(
                        "cannot read component of function {name:?} at {}: {e} (does its `build` command produce it?)",
                        path.display()
                    ))
                })?,
                SourceForm::CodeDirectory => nimbus_api::artifact::pack_dir(&path).map_err(|e| {
                    Failure::Local(format!(
                        "cannot pack the code directory of function {name:?} at {}: {e} (does `code` name a directory? does its `build` command produce it?)",
                        path.display()
                    ))
                })?,
            };
            let spinner = spinner(
                quiet,
                format!("uploading {name} ({} KiB)", bytes.len() / 1024),
            );
            let digest = client.upload_artifact(bytes).await?;
            spinner.finish_and_clear();
            artifacts.insert(name.to_string(), digest);
        }
        let spinner = spinner(
            quiet,
            format!(
                "deploying {} (compiling new components)",
                self.manifest.app.name
            ),
        );
        let request = DeployRequest {
            manifest: self.text.clone(),
            manifest_path: self.manifest_path.display().to_string(),
            artifacts,
        };
        let result = client.deploy(&request).await;
        spinner.finish_and_clear();
        Ok(result?)
    }
}

fn spinner(quiet: bool, message: String) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Install the wasm32-wasip2 target if rustup manages the toolchain and lacks it.
///
/// The toolchain's own sysroot is asked first: when the target's library directory is there,
/// rustup is not consulted at all (its listing can read as empty while another rustup process
/// is updating the toolchain, and two concurrent `target add`s of one component fail).
pub(crate) fn ensure_wasm_target(dir: &Path) {
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(dir)
        .output();
    if let Ok(output) = &sysroot
        && output.status.success()
    {
        let root = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if Path::new(&root)
            .join("lib/rustlib/wasm32-wasip2/lib")
            .is_dir()
        {
            return;
        }
    }
    let installed = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .output();
    match installed {
        Ok(output)
            if String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2") => {}
        Ok(_) => {
            eprintln!("installing the wasm32-wasip2 target (once)...");
            let _ = std::process::Command::new("rustup")
                .args(["target", "add", "wasm32-wasip2"])
                .current_dir(dir)
                .status();
        }
        Err(_) => {}
    }
}
