//! Architecture invariants that can be checked mechanically.

use crate::support::workspace_root;

/// `cargo tree --offline --prefix none` with `args`, from the workspace root.
fn cargo_tree(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--prefix", "none"])
        .args(args)
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

fn normal_deps(package: &str) -> String {
    cargo_tree(&["-e", "normal", "-p", package])
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

/// `package`'s normal dependencies include none of `forbidden`; `why` says what it is.
fn assert_depends_on_none(package: &str, forbidden: &[&str], why: &str) {
    let tree = normal_deps(package);
    for name in forbidden {
        assert!(
            !tree.contains(name),
            "{package} {why} and must not depend on {name}:\n{tree}"
        );
    }
}

#[test]
fn the_events_logic_is_pure() {
    assert_depends_on_none(
        "nimbus-events",
        &["tokio", "nimbus-store", "nimbus-store-redb"],
        "is pure logic",
    );
}

#[test]
fn the_manifest_parser_knows_no_async_runtime_or_store() {
    assert_depends_on_none(
        "nimbus-manifest",
        &["tokio", "nimbus-store", "redb"],
        "only parses nimbus.toml",
    );
}

#[test]
fn the_gateway_does_not_reach_the_store() {
    assert_depends_on_none(
        "nimbus-gateway",
        &["nimbus-store", "redb"],
        "is on the invocation path",
    );
}

#[test]
fn the_store_traits_depend_on_no_backend() {
    assert_depends_on_none(
        "nimbus-store",
        &["redb", "nimbus-store-redb", "async-nats"],
        "is the storage contract",
    );
}

#[test]
fn the_conformance_suite_stays_out_of_production_builds() {
    // `-e normal` leaves dev-dependencies out: what the server binary links.
    let tree = cargo_tree(&[
        "-e",
        "normal,features",
        "-p",
        "nimbus",
        "-i",
        "nimbus-store",
    ]);
    assert!(
        !tree.contains("\"conformance\""),
        "the nimbus binary must not enable nimbus-store's conformance feature:\n{tree}"
    );
}

#[test]
fn the_platform_does_not_call_the_asynchronous_side() {
    // The platform publishes deployments and reports them to an observer; it never names the
    // events driver (the cycle this replaced).
    let platform =
        std::fs::read_to_string(workspace_root().join("crates/nimbus-server/src/platform.rs"))
            .unwrap();
    for forbidden in ["crate::events", "Events", "Weak"] {
        assert!(
            !platform.contains(forbidden),
            "platform.rs must not mention {forbidden}"
        );
    }
}

#[test]
fn the_events_driver_never_asks_what_kind_a_function_is() {
    // Executors declare the event shape they take; the driver reads it from the pool.
    let dir = workspace_root().join("crates/nimbus-server/src/events");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let driver = std::fs::read_to_string(&path).unwrap();
        assert!(
            !driver.contains("FunctionKind"),
            "{} must not match on the function kind; use Pool::event_shape",
            path.display()
        );
    }
}

#[test]
fn only_the_wire_crate_writes_error_bodies() {
    // One error edge: every surface renders failures through nimbus_wire. APIs someone else
    // defined answer in their own shapes from one module each: GoTrue's (OAuth's `error`,
    // `error_description`) is the auth service's error module.
    let foreign = [workspace_root().join("crates/nimbus-auth/src/error.rs")];
    let mut offenders = Vec::new();
    let crates = workspace_root().join("crates");
    let mut stack = vec![crates.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.starts_with(crates.join("nimbus-wire"))
                && !foreign.contains(&path)
            {
                let text = std::fs::read_to_string(&path).unwrap();
                let writes_one = text
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("//"))
                    .any(|line| {
                        line.contains(r#"json!({"error""#) || line.contains(r#"{"error":{"#)
                    });
                if writes_one {
                    offenders.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "error bodies must come from nimbus_wire::error_body/error_response: {offenders:?}"
    );
}

#[test]
fn the_gateway_does_not_depend_on_the_manifest_parser() {
    // Route syntax is the tiny nimbus-route crate both share.
    assert_depends_on_none(
        "nimbus-gateway",
        &["nimbus-manifest", "nimbus-events", "toml"],
        "is on the invocation path",
    );
}

#[test]
fn the_server_composes_and_implements_no_engine_protocol_or_format() {
    // Direct dependencies only: the server may name the crates that own these, not the
    // libraries that do the work.
    let direct = cargo_tree(&["-e", "normal", "--depth", "1", "-p", "nimbus-server"]);
    for (forbidden, owner) in [
        ("redb ", "nimbus-store-redb (storage engine)"),
        ("wasmtime", "nimbus-runtime-wasm (executor)"),
        ("hyper ", "nimbus-gateway (HTTP ingress)"),
        ("cron ", "nimbus-events (schedules)"),
        ("chrono", "nimbus-events (time formats)"),
        ("toml ", "nimbus-manifest (the manifest format)"),
    ] {
        assert!(
            !direct.lines().any(|line| line.starts_with(forbidden)),
            "nimbus-server must not depend on {forbidden} directly; that is {owner}'s:\n{direct}"
        );
    }
}
