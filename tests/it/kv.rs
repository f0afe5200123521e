//! Key-value stores: a Wasm component importing `wasi:keyvalue` 0.2.0-draft2 reads and writes
//! the stores its manifest grants, durably, and nothing else.

use crate::support::Platform;
use nimbus_core::ErrorCode;

const SHOP: &str = r#"
name = "shop"

[kv.sessions]
[kv.config]

[function.web]
component = "kv.wasm"
kv = ["sessions", "config:read"]

[function.bare]
component = "kv.wasm"

[[route]]
path = "/web/{*rest}"
function = "web"

[[route]]
path = "/bare/{*rest}"
function = "bare"
"#;

async fn call(p: &Platform, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, String) {
    let response = p
        .http
        .request(method, p.url(path))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn get(p: &Platform, path: &str) -> (u16, String) {
    call(p, reqwest::Method::GET, path, Vec::new()).await
}

async fn set(p: &Platform, path: &str, value: &[u8]) -> (u16, String) {
    call(p, reqwest::Method::PUT, path, value.to_vec()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_components_use_wasi_keyvalue_within_their_grants_durably() {
    let p = Platform::start().await;
    p.deploy(SHOP, &[("web", "kv"), ("bare", "kv")])
        .await
        .unwrap();
    let s = "/web/kv";
    assert_eq!(
        get(&p, &format!("{s}/get?store=sessions&key=u1")).await,
        (404, "absent".into())
    );
    assert_eq!(
        set(&p, &format!("{s}/set?store=sessions&key=u1"), b"ada").await,
        (200, "set".into())
    );
    assert_eq!(
        get(&p, &format!("{s}/get?store=sessions&key=u1")).await,
        (200, "ada".into())
    );
    assert_eq!(
        get(&p, &format!("{s}/exists?store=sessions&key=u1")).await,
        (200, "true".into())
    );
    for i in 0..3 {
        set(&p, &format!("{s}/set?store=sessions&key=k{i}"), b"v").await;
    }
    assert_eq!(
        get(&p, &format!("{s}/list?store=sessions")).await,
        (200, "k0\nk1\nk2\nu1".into())
    );
    assert_eq!(
        get(&p, &format!("{s}/delete?store=sessions&key=k1")).await,
        (200, "deleted".into())
    );
    assert_eq!(
        get(&p, &format!("{s}/exists?store=sessions&key=k1")).await,
        (200, "false".into())
    );
    assert_eq!(
        get(&p, &format!("{s}/batch?store=sessions")).await,
        (200, "a=1,missing=none,b=2 a-after=false".into())
    );
    // Counters, from many instances at once: no update lost either way.
    let incr = format!("{s}/incr?store=sessions&key=hits");
    let cas = format!("{s}/cas-incr?store=sessions&key=visits");
    let calls = (0..20).flat_map(|_| [get(&p, &incr), get(&p, &cas)]);
    for (status, body) in futures::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        get(&p, &format!("{s}/incr?store=sessions&key=hits&delta=0")).await,
        (200, "20".into())
    );
    assert_eq!(
        get(&p, &format!("{s}/get?store=sessions&key=visits")).await,
        (200, "20".into())
    );
    // An increment of something that is not a counter, and values and keys past the limits:
    // clear errors, nothing written.
    let (status, body) = get(&p, &format!("{s}/incr?store=sessions&key=u1")).await;
    assert_eq!(status, 500);
    assert!(body.contains("not a counter"), "{body}");
    let (status, body) = set(
        &p,
        &format!("{s}/set?store=sessions&key=u1"),
        &vec![b'x'; (1 << 20) + 1],
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("values are at most 1048576 bytes"), "{body}");
    let long = "k".repeat(1025);
    let (status, body) = set(&p, &format!("{s}/set?store=sessions&key={long}"), b"v").await;
    assert_eq!(status, 500);
    assert!(body.contains("keys are at most 1024 bytes"), "{body}");
    assert_eq!(
        get(&p, &format!("{s}/get?store=sessions&key=u1")).await,
        (200, "ada".into())
    );
    // A batch read answers at most 32 MiB of values, however many times it names a key.
    let mib = vec![b'm'; 1 << 20];
    set(&p, &format!("{s}/set?store=sessions&key=big"), &mib).await;
    assert_eq!(
        get(&p, &format!("{s}/get-many?store=sessions&key=big&times=8")).await,
        (200, (8 << 20).to_string())
    );
    let (status, body) = get(
        &p,
        &format!("{s}/get-many?store=sessions&key=big&times=10000"),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("more than 33554432 bytes"), "{body}");
    get(&p, &format!("{s}/delete?store=sessions&key=big")).await;
    // Read-only, undeclared, ungranted: access-denied.
    assert_eq!(get(&p, &format!("{s}/get?store=config&key=x")).await.0, 404);
    assert_eq!(
        set(&p, &format!("{s}/set?store=config&key=x"), b"v").await,
        (403, "access-denied".into())
    );
    assert_eq!(
        get(&p, &format!("{s}/incr?store=config&key=n")).await,
        (403, "access-denied".into())
    );
    assert_eq!(
        get(&p, &format!("{s}/get?store=elsewhere&key=x")).await,
        (403, "access-denied".into())
    );
    assert_eq!(
        get(&p, "/bare/kv/get?store=sessions&key=u1").await,
        (403, "access-denied".into())
    );
    // Another app's store of the same name is another store.
    let blog = SHOP
        .replace("name = \"shop\"", "name = \"blog\"")
        .replace("/web/", "/blog/")
        .replace("/bare/", "/blog-bare/");
    p.deploy(&blog, &[("web", "kv"), ("bare", "kv")])
        .await
        .unwrap();
    assert_eq!(
        get(&p, "/blog/kv/get?store=sessions&key=u1").await,
        (404, "absent".into())
    );

    // Durable: a restart keeps everything.
    let dir = p.stop().await;
    let p = Platform::start_in(dir, |_| {}).await;
    assert_eq!(
        get(&p, &format!("{s}/get?store=sessions&key=u1")).await,
        (200, "ada".into())
    );
    assert_eq!(
        get(&p, &format!("{s}/incr?store=sessions&key=hits")).await,
        (200, "21".into())
    );

    // Removing the app asks before destroying entries, then takes its stores with it.
    let refused = p.client.remove("shop", false).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::KvStoreNotEmpty),
        "{refused}"
    );
    assert!(refused.to_string().contains("sessions"), "{refused}");
    assert_eq!(
        get(&p, &format!("{s}/get?store=sessions&key=u1")).await,
        (200, "ada".into())
    );
    p.client.remove("shop", true).await.unwrap();
    p.deploy(SHOP, &[("web", "kv"), ("bare", "kv")])
        .await
        .unwrap();
    assert_eq!(
        get(&p, &format!("{s}/get?store=sessions&key=u1")).await,
        (404, "absent".into())
    );
    assert_eq!(
        get(&p, "/blog/kv/get?store=sessions&key=never").await.0,
        404
    );
    p.stop().await;
}

/// A component built with Spin's own SDK (`spin-sdk` 5, `fermyon:spin/key-value@2.0.0`) runs
/// unchanged: it reaches the stores it is granted — the very entries a `wasi:keyvalue`
/// component of the app sees — with the same limits, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_sdk_components_share_the_stores_within_their_grants() {
    const APP: &str = r#"
name = "spun"

[kv.default]
[kv.sessions]
[kv.config]

[function.spin]
component = "spin_kv.wasm"
kv = ["default", "sessions", "config:read"]

[function.wasi]
component = "kv.wasm"
kv = ["sessions", "config"]

[function.bare]
component = "spin_kv.wasm"

[[route]]
path = "/spin/{*rest}"
function = "spin"

[[route]]
path = "/wasi/{*rest}"
function = "wasi"

[[route]]
path = "/bare/{*rest}"
function = "bare"
"#;
    let p = Platform::start().await;
    p.deploy(
        APP,
        &[("spin", "spin_kv"), ("wasi", "kv"), ("bare", "spin_kv")],
    )
    .await
    .unwrap();
    // Spin's default store, as `Store::open_default()` opens it.
    assert_eq!(
        get(&p, "/spin/spin/get?store=default&key=greeting").await,
        (404, "absent".into())
    );
    assert_eq!(
        set(&p, "/spin/spin/set?store=default&key=greeting", b"hello").await,
        (200, "set".into())
    );
    assert_eq!(
        get(&p, "/spin/spin/get?store=default&key=greeting").await,
        (200, "hello".into())
    );
    assert_eq!(
        get(&p, "/spin/spin/exists?store=default&key=greeting").await,
        (200, "true".into())
    );
    // One store, two interfaces.
    set(&p, "/spin/spin/set?store=sessions&key=u1", b"ada").await;
    assert_eq!(
        get(&p, "/wasi/kv/get?store=sessions&key=u1").await,
        (200, "ada".into())
    );
    set(&p, "/wasi/kv/set?store=sessions&key=u2", b"bob").await;
    assert_eq!(
        get(&p, "/spin/spin/keys?store=sessions").await,
        (200, "u1\nu2".into())
    );
    // Read-only where the grant says so; refused outside the grants.
    set(&p, "/wasi/kv/set?store=config&key=mode", b"live").await;
    assert_eq!(
        get(&p, "/spin/spin/get?store=config&key=mode").await,
        (200, "live".into())
    );
    assert_eq!(
        set(&p, "/spin/spin/set?store=config&key=mode", b"test").await,
        (403, "access-denied".into())
    );
    assert_eq!(
        get(&p, "/spin/spin/get?store=nope&key=x").await,
        (403, "access-denied".into())
    );
    assert_eq!(
        get(&p, "/bare/spin/get?store=default&key=greeting").await,
        (403, "access-denied".into())
    );
    // The same limits, with the same words.
    let (status, text) = set(
        &p,
        "/spin/spin/set?store=default&key=big",
        &vec![b'x'; (1 << 20) + 1],
    )
    .await;
    assert_eq!(status, 500, "{text}");
    assert!(
        text.starts_with("other: ") && text.contains("1048576"),
        "{text}"
    );
    assert_eq!(
        get(&p, "/spin/spin/delete?store=sessions&key=u1").await,
        (200, "deleted".into())
    );
    assert_eq!(
        get(&p, "/spin/spin/exists?store=sessions&key=u1").await,
        (200, "false".into())
    );
    assert_eq!(
        get(&p, "/wasi/kv/get?store=sessions&key=u1").await,
        (404, "absent".into())
    );
    p.stop().await;
}

/// Process (Lambda-style) functions reach the same stores through the local API, within the
/// same grants; the CLI reads and writes them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_functions_and_the_cli_use_the_stores_through_the_apis() {
    const APP: &str = r#"
name = "lam"

[kv.sessions]
[kv.config]

[function.py]
runtime = "python3"
handler = "app.handler"
code = "code"
kv = ["sessions", "config:read"]

[function.wasi]
component = "kv.wasm"
kv = ["sessions"]

[[route]]
path = "/wasi/{*rest}"
function = "wasi"
"#;
    let p = Platform::start().await;
    let code = nimbus_api::artifact::pack_dir(&crate::support::lambda_fixture("kv")).unwrap();
    let wasm = std::fs::read(crate::support::component("kv")).unwrap();
    p.deploy_bytes(APP, [("py", code), ("wasi", wasm)].into_iter())
        .await
        .unwrap();
    let ops = async |ops: serde_json::Value| -> Vec<(u16, String)> {
        let invoked = p
            .client
            .invoke(
                "lam",
                "py",
                &nimbus_api::InvokeRequest {
                    method: "POST".into(),
                    path: "/".into(),
                    ..Default::default()
                },
                serde_json::to_vec(&serde_json::json!({ "ops": ops })).unwrap(),
            )
            .await
            .unwrap();
        let answers: serde_json::Value =
            serde_json::from_str(invoked.body.as_deref().unwrap()).unwrap();
        answers
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["status"].as_u64().unwrap() as u16,
                    a["body"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let answers = ops(serde_json::json!([
        {"method": "PUT", "path": "/v1/kv/sessions/keys/user%2F1", "body": "ada"},
        {"method": "GET", "path": "/v1/kv/sessions/keys/user%2F1"},
        {"method": "POST", "path": "/v1/kv/sessions/increment/hits?delta=5"},
        {"method": "POST", "path": "/v1/kv/sessions/increment/hits"},
        {"method": "GET", "path": "/v1/kv/sessions/keys?limit=1"},
        {"method": "GET", "path": "/v1/kv/sessions/keys/absent"},
        {"method": "PUT", "path": "/v1/kv/config/keys/mode", "body": "x"},
        {"method": "GET", "path": "/v1/kv/other/keys/x"},
        {"method": "PUT", "path": "/v1/kv/sessions/keys/short?ttl=0", "body": "x"},
        {"method": "PUT", "path": "/v1/kv/sessions/keys/brief?ttl=3600", "body": "soon"},
    ]))
    .await;
    assert_eq!(answers[0], (200, r#"{"ok":true}"#.into()));
    assert_eq!(answers[1], (200, "ada".into()));
    assert_eq!(answers[2], (200, r#"{"value":5}"#.into()));
    assert_eq!(answers[3], (200, r#"{"value":6}"#.into()));
    let page: serde_json::Value = serde_json::from_str(&answers[4].1).unwrap();
    assert_eq!(page["keys"], serde_json::json!(["hits"]), "{page}");
    assert_eq!(page["next"], "hits", "{page}");
    let error = |answer: &(u16, String)| -> (u16, String, String) {
        let body: serde_json::Value = serde_json::from_str(&answer.1).unwrap();
        (
            answer.0,
            body["error"]["code"].as_str().unwrap().to_owned(),
            body["error"]["message"].as_str().unwrap().to_owned(),
        )
    };
    let (status, code, _) = error(&answers[5]);
    assert_eq!((status, code.as_str()), (404, "kv_key_not_found"));
    let (status, code, message) = error(&answers[6]);
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    assert!(message.contains("may only read"), "{message}");
    let (status, code, message) = error(&answers[7]);
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    assert!(message.contains("[kv.other]"), "{message}");
    let (status, code, _) = error(&answers[8]);
    assert_eq!((status, code.as_str()), (400, "bad_request"));

    // The Wasm component sees what the process function wrote.
    let (status, value) = get(&p, "/wasi/kv/get?store=sessions&key=user%2F1").await;
    assert_eq!((status, value.as_str()), (200, "ada"));

    // The CLI: ls, get, set, rm.
    let cli = |args: &[&str]| -> std::process::Output {
        let server = p.server.as_ref().unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_nimbus"))
            .args(["--admin-url", &server.admin_url(), "--token", &server.token])
            .args(args)
            .output()
            .unwrap()
    };
    let listed = cli(&["kv", "ls", "sessions", "--app", "lam"]);
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "brief\nhits\nuser/1\n"
    );
    let stores = cli(&["--json", "kv", "ls", "--app", "lam"]);
    let stores: serde_json::Value = serde_json::from_slice(&stores.stdout).unwrap();
    assert_eq!(stores, serde_json::json!(["config", "sessions"]));
    let got = cli(&["kv", "get", "sessions", "user/1", "--app", "lam"]);
    assert_eq!(got.stdout, b"ada");
    let set = cli(&["kv", "set", "config", "mode", "live", "--app", "lam"]);
    assert!(set.status.success(), "{set:?}");
    let answers = ops(serde_json::json!([
        {"method": "GET", "path": "/v1/kv/config/keys/mode"},
    ]))
    .await;
    assert_eq!(answers[0], (200, "live".into()));
    let removed = cli(&["--json", "kv", "rm", "sessions", "user/1", "--app", "lam"]);
    let removed: serde_json::Value = serde_json::from_slice(&removed.stdout).unwrap();
    assert_eq!(removed["deleted"], true);
    let missing = cli(&["kv", "get", "sessions", "user/1", "--app", "lam"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("kv_key_not_found"),
        "{missing:?}"
    );
    let nowhere = cli(&["kv", "ls", "nope", "--app", "lam"]);
    assert!(
        String::from_utf8_lossy(&nowhere.stderr).contains("kv_store_not_found"),
        "{nowhere:?}"
    );
    p.stop().await;
}

/// `[kv.NAME] events = true`: every set, delete and expiry of the store is published on the
/// app's bus, in commit order, once, across a restart; other stores publish nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_events_publishes_its_changes_on_the_bus() {
    const APP: &str = r#"
name = "shop"

[kv.carts]
events = true

[kv.quiet]

[queue.changes]
[queue.deletes]

[function.web]
component = "kv.wasm"
kv = ["carts", "quiet"]

[[route]]
path = "/web/{*rest}"
function = "web"

[[trigger.event]]
pattern = { source = [{ prefix = "/apps/shop/kv/" }] }
queue = "changes"

[[trigger.event]]
pattern = { type = ["nimbus.kv.delete"] }
queue = "deletes"
"#;
    let p = Platform::start().await;
    p.deploy(APP, &[("web", "kv")]).await.unwrap();
    let (status, _) = get(&p, "/web/kv/incr?store=carts&key=hits").await;
    assert_eq!(status, 200);
    let (status, _) = get(&p, "/web/kv/incr?store=quiet&key=hits").await;
    assert_eq!(status, 200);
    p.client
        .kv_set("shop", "carts", "user/1", b"three apples".to_vec(), None)
        .await
        .unwrap();
    assert!(p.client.kv_delete("shop", "carts", "user/1").await.unwrap());
    p.client
        .kv_set("shop", "carts", "brief", b"x".to_vec(), Some(1))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Written again after its TTL: the expiry is published before the new value.
    p.client
        .kv_set("shop", "carts", "brief", b"again".to_vec(), None)
        .await
        .unwrap();

    // A restart in between loses and repeats nothing.
    let dir = p.stop().await;
    let p = Platform::start_in(dir, |_| {}).await;
    p.client
        .kv_set("shop", "carts", "after", b"restart".to_vec(), None)
        .await
        .unwrap();

    let events = async |queue: &str| queued_events(&p.client, queue).await;
    let arrived = crate::support::eventually(std::time::Duration::from_secs(30), async || {
        events("changes").await.len() >= 7
    })
    .await;
    let changes = events("changes").await;
    assert!(arrived, "{changes:#?}");
    let seen: Vec<(&str, &str, &serde_json::Value)> = changes
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["subject"].as_str().unwrap(),
                &e["data"]["size"],
            )
        })
        .collect();
    use serde_json::json;
    assert_eq!(
        seen,
        [
            ("nimbus.kv.set", "hits", &json!(8)),
            ("nimbus.kv.set", "user/1", &json!(12)),
            ("nimbus.kv.delete", "user/1", &json!(null)),
            ("nimbus.kv.set", "brief", &json!(1)),
            ("nimbus.kv.expire", "brief", &json!(null)),
            ("nimbus.kv.set", "brief", &json!(5)),
            ("nimbus.kv.set", "after", &json!(7)),
        ],
        "{changes:#?}"
    );
    for event in &changes {
        assert_eq!(event["source"], "/apps/shop/kv/carts");
        assert_eq!(event["data"]["store"], "carts");
        assert_eq!(event["data"]["key"], event["subject"]);
        assert_eq!(event["specversion"], "1.0");
    }
    let sequences: Vec<u64> = changes
        .iter()
        .map(|e| e["data"]["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    let deletes = events("deletes").await;
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert_eq!(deletes[0]["id"], changes[2]["id"]);
}

/// The events waiting on a queue of app `shop`, oldest first (up to 1,000).
async fn queued_events(client: &nimbus_api::Client, queue: &str) -> Vec<serde_json::Value> {
    client
        .peek("shop", queue, 1000)
        .await
        .unwrap()
        .iter()
        .map(|m| serde_json::from_str(m.body.as_deref().unwrap()).unwrap())
        .collect()
}

/// kill -9 under a write load on a store with events: after the restart, every acknowledged
/// set has its event in the queue its rule feeds, once, in commit order — at most one more per
/// writer (the write in flight at the kill may have committed unanswered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_change_event_and_repeats_none() {
    use crate::restart::{connect, spawn_server};
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const WRITERS: usize = 4;
    const KILL_AFTER: usize = 300;
    let extra = r#"
[kv.carts]
events = true

[queue.changes]

[[trigger.event]]
pattern = { source = ["/apps/shop/kv/carts"] }
queue = "changes"
"#;
    let dir = crate::support::data_dir();
    // Per key: sets acknowledged, and the values it may hold (the last acknowledged one, or
    // the one a writer had in flight at the kill).
    type PerKey<T> = BTreeMap<String, T>;
    let (acked, last): (PerKey<usize>, PerKey<Vec<Vec<u8>>>) = {
        let mut server = spawn_server(dir.path());
        let (client, _) = connect(dir.path()).await;
        crate::restart::deploy_probe(&client, crate::support::probe_app("shop", "f", extra)).await;
        let total = std::sync::Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (client, total) = (client.clone(), total.clone());
                tokio::spawn(async move {
                    // Sets acknowledged per key, until the first one that fails.
                    let mut acked = BTreeMap::<String, usize>::new();
                    let mut last = BTreeMap::<String, Vec<Vec<u8>>>::new();
                    for i in 0.. {
                        let key = format!("w{w}/k{}", i % 3);
                        let value = format!("{w}:{i}").into_bytes();
                        let set = client
                            .kv_set("shop", "carts", &key, value.clone(), None)
                            .await;
                        let values = last.entry(key.clone()).or_default();
                        if set.is_err() {
                            values.push(value);
                            break;
                        }
                        *values = vec![value];
                        *acked.entry(key).or_default() += 1;
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                    (acked, last)
                })
            })
            .collect();
        while total.load(Ordering::Relaxed) < KILL_AFTER {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        let (mut acked, mut last) = (BTreeMap::new(), BTreeMap::new());
        for writer in writers {
            let (a, l) = writer.await.unwrap();
            acked.extend(a);
            last.extend(l);
        }
        (acked, last)
    };
    let acknowledged: usize = acked.values().sum();
    assert!(acknowledged >= KILL_AFTER, "{acknowledged}");

    let _server = spawn_server(dir.path());
    let (client, _) = connect(dir.path()).await;
    let events = async || queued_events(&client, "changes").await;
    let arrived = crate::support::eventually(std::time::Duration::from_secs(30), async || {
        events().await.len() >= acknowledged
    })
    .await;
    // Nothing more is on its way: the count holds still.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let events = events().await;
    assert!(
        arrived,
        "{} events for {acknowledged} acknowledged sets",
        events.len()
    );
    assert!(
        events.len() <= acknowledged + WRITERS,
        "{} events",
        events.len()
    );
    let sequences: Vec<u64> = events
        .iter()
        .map(|e| e["data"]["sequence"].as_u64().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "queued out of commit order or repeated: {sequences:?}"
    );
    let mut per_key = BTreeMap::<String, Vec<u64>>::new();
    for event in &events {
        assert_eq!(event["type"], "nimbus.kv.set", "{event}");
        per_key
            .entry(event["subject"].as_str().unwrap().to_owned())
            .or_default()
            .push(event["data"]["version"].as_u64().unwrap());
    }
    for (key, count) in &acked {
        let versions = per_key.get(key).map_or(&[][..], Vec::as_slice);
        assert!(
            versions.len() == *count || versions.len() == count + 1,
            "{key}: {count} acknowledged sets, {} events",
            versions.len()
        );
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{key}: {versions:?}"
        );
    }
    for (key, values) in &last {
        let Ok(held) = client.kv_get("shop", "carts", key).await else {
            // Only a first set in flight at the kill may have left nothing.
            assert!(
                !acked.contains_key(key),
                "{key} lost its acknowledged value"
            );
            continue;
        };
        assert!(
            values.contains(&held),
            "{key} holds {held:?}, not one of {values:?}"
        );
    }
}
