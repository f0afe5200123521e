//! A real browser against the gateway's CORS answers: headless Chromium (Debian's, driven by
//! the pinned `playwright-core` from npm) loads a page from one origin and calls an app on
//! another, with credentials and a header that needs a preflight. The allowed origin reads the
//! answer; a refused origin's page is stopped by the browser itself.

use crate::support::{Platform, debian_packages, npm_package};
use serde_json::Value;

const PLAYWRIGHT: &str = "playwright-core@1.65.1";
const CHROMIUM: &str = "/usr/bin/chromium";

const SCRIPT: &str = r#"
const { chromium } = require(process.env.PLAYWRIGHT);
(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, chromiumSandbox: false });
  const results = {};
  for (const [name, page_url] of [["refused", process.env.REFUSED], ["allowed", process.env.ALLOWED]]) {
    const page = await browser.newPage();
    await page.goto(page_url);
    results[name] = await page.evaluate(async (target) => {
      try {
        const response = await fetch(target, {
          method: "POST",
          credentials: "include",
          headers: { "content-type": "application/json", "authorization": "Bearer page" },
          body: JSON.stringify({ from: location.origin }),
        });
        return { ok: true, status: response.status, body: await response.text(),
                 request_id: response.headers.get("x-request-id") };
      } catch (e) {
        return { ok: false, error: String(e) };
      }
    }, process.env.TARGET);
    await page.close();
  }
  await browser.close();
  console.log(JSON.stringify(results));
})().catch((e) => { console.error(e); process.exit(1); });
"#;

/// A static page server on its own port (its own origin).
async fn page_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html("<!doctype html><title>page</title>") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_page_on_an_allowed_origin_reads_the_answer_and_others_are_stopped() {
    debian_packages(&[("chromium", "chromium")]);
    assert!(
        std::path::Path::new(CHROMIUM).exists(),
        "this test drives Debian's chromium, which could not be installed: `apt-get install chromium`"
    );
    let playwright = npm_package("playwright", PLAYWRIGHT);
    let allowed = page_server().await;
    let refused = page_server().await;
    let p = Platform::start().await;
    let manifest = format!(
        r#"
name = "web"

[cors]
origins = ["{allowed}"]
methods = ["GET", "POST"]
headers = ["authorization", "content-type"]
expose_headers = ["x-request-id"]
credentials = true

[function.probe]
component = "probe.wasm"

[[route]]
path = "/probe/{{*rest}}"
function = "probe"
"#
    );
    p.deploy(&manifest, &[("probe", "probe")]).await.unwrap();

    let output = tokio::process::Command::new("node")
        .arg("-e")
        .arg(SCRIPT)
        .env(
            "PLAYWRIGHT",
            playwright.join("node_modules/playwright-core"),
        )
        .env("CHROMIUM", CHROMIUM)
        .env("ALLOWED", format!("{allowed}/"))
        .env("REFUSED", format!("{refused}/"))
        .env("TARGET", p.url("/probe/echo"))
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Value = serde_json::from_slice(&output.stdout).unwrap();

    let ok = &results["allowed"];
    assert_eq!(ok["ok"], true, "{results}");
    assert_eq!(ok["status"], 200);
    // The function got the page's request, with its credentials header, after the preflight.
    let body = ok["body"].as_str().unwrap();
    assert!(body.starts_with("POST /probe/echo"), "{body}");
    assert!(
        body.contains(&format!("{{\"from\":\"{allowed}\"}}")),
        "{body}"
    );
    // An exposed header is readable by the script.
    assert!(
        ok["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{results}"
    );

    let stopped = &results["refused"];
    assert_eq!(stopped["ok"], false, "{results}");
    assert!(
        stopped["error"]
            .as_str()
            .unwrap()
            .contains("Failed to fetch"),
        "{results}"
    );
    // The refused page's preflight was answered by the gateway: its POST never ran. It went
    // first, so once the allowed page's invocation is recorded, it would have been too.
    assert_eq!(p.records("web", "probe", 1).await.len(), 1);
}
