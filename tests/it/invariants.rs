//! Architecture invariants that can be checked mechanically.

use crate::support::workspace_root;

fn normal_deps(package: &str) -> String {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            package,
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_runtime_contract_does_not_depend_on_wasmtime() {
    let tree = normal_deps("nimbus-runtime");
    assert!(
        !tree.contains("wasmtime"),
        "nimbus-runtime must not pull in wasmtime:\n{tree}"
    );
}

#[test]
fn core_does_no_io_and_knows_no_async_runtime() {
    let tree = normal_deps("nimbus-core");
    for forbidden in ["tokio", "hyper", "wasmtime", "redb"] {
        assert!(
            !tree.contains(forbidden),
            "nimbus-core must not depend on {forbidden}:\n{tree}"
        );
    }
}

#[test]
fn the_invocation_path_does_not_depend_on_the_control_plane() {
    for package in [
        "nimbus-gateway",
        "nimbus-dispatch",
        "nimbus-runtime-wasm",
        "nimbus-runtime-process",
    ] {
        let tree = normal_deps(package);
        for forbidden in ["nimbus-server", "nimbus-api", "axum"] {
            assert!(
                !tree.contains(forbidden),
                "{package} must not depend on {forbidden}:\n{tree}"
            );
        }
    }
}

#[test]
fn the_executors_do_not_depend_on_each_other() {
    let process = normal_deps("nimbus-runtime-process");
    assert!(
        !process.contains("wasmtime"),
        "the process executor must not pull in wasmtime:\n{process}"
    );
    let wasm = normal_deps("nimbus-runtime-wasm");
    assert!(
        !wasm.contains("nimbus-runtime-process"),
        "the wasm executor must not depend on the process executor:\n{wasm}"
    );
}

#[test]
fn the_events_logic_knows_no_http_pools_executors_or_storage_engine() {
    let tree = normal_deps("nimbus-events");
    for forbidden in [
        "hyper",
        "nimbus-dispatch",
        "nimbus-runtime",
        "wasmtime",
        "redb",
    ] {
        assert!(
            !tree.contains(forbidden),
            "nimbus-events must not depend on {forbidden}:\n{tree}"
        );
    }
}
