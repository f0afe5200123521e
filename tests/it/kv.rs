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
