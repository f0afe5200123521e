//! `examples/todo` as README says to use it: users sign up through the app's auth, `/todos`
//! serves each signed-in user their own list (a Lambda handler reading its caller's claims),
//! `/stats` is public with CORS and a rate limit, and answers are signed with a secret.

use crate::support::{Platform, error_code, workspace_root};

/// Is `signature` the hex HMAC-SHA256 of `body` under `key`, as the example signs?
fn verify(key: &str, body: &str, signature: &str) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    hex::decode(signature).is_ok_and(|tag| ring::hmac::verify(&key, body.as_bytes(), &tag).is_ok())
}

const SIGNING_KEY: &str = "4f1c2a9e7d3b5c8a0e6f2d4b9a1c7e3f5d8b0a2c4e6f8a1b3d5c7e9f0a2b4c6d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_todo_example_serves_its_users_their_own_lists() {
    let p = Platform::start().await;
    let example = workspace_root().join("examples/todo");
    let manifest = std::fs::read_to_string(example.join("nimbus.toml")).unwrap();
    p.client
        .set_secret("todo", "signing_key", SIGNING_KEY.into(), false)
        .await
        .unwrap();
    p.deploy_code(&manifest, &[("api", &example.join("api"))])
        .await
        .unwrap();

    let sign_up = async |email: &str| -> String {
        let response = p
            .http
            .post(p.url("/auth/v1/signup"))
            .json(&serde_json::json!({"email": email, "password": "correct horse 1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let session: serde_json::Value = response.json().await.unwrap();
        session["access_token"].as_str().unwrap().to_owned()
    };
    let ada = sign_up("ada@example.com").await;
    let bob = sign_up("bob@example.com").await;

    // Signed-in users add and list their own to-dos; every answer is signed.
    let signed = async |response: reqwest::Response| -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let signature = response.headers()["x-todo-signature"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        assert!(
            verify(SIGNING_KEY, &body, &signature),
            "signed with the secret"
        );
        (status, serde_json::from_str(&body).unwrap())
    };
    let add = |token: &str, title: &str| {
        p.http
            .post(p.url("/todos"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "title": title }))
            .send()
    };
    let (status, milk) = signed(add(&ada, "buy milk").await.unwrap()).await;
    assert_eq!(status, 201, "{milk}");
    let (status, _) = signed(add(&ada, "call bob").await.unwrap()).await;
    assert_eq!(status, 201);
    let (status, _) = signed(add(&bob, "reply to ada").await.unwrap()).await;
    assert_eq!(status, 201);
    let list = |token: &str| p.http.get(p.url("/todos")).bearer_auth(token).send();
    let (_, mine) = signed(list(&ada).await.unwrap()).await;
    assert_eq!(mine["user"], "ada@example.com");
    let titles: Vec<&str> = mine["todos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["buy milk", "call bob"],
        "in the order added, and only ada's"
    );
    let (status, refused) = signed(add(&ada, "").await.unwrap()).await;
    assert_eq!(status, 400, "{refused}");

    // Without a token: refused before the function runs.
    let (status, code, _) = error_code(p.http.get(p.url("/todos")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));

    // Deleting one of ada's; bob cannot delete it.
    let id = milk["id"].as_str().unwrap();
    let delete = |token: &str| {
        p.http
            .delete(p.url(&format!("/todos/{id}")))
            .bearer_auth(token)
            .send()
    };
    let (status, _) = signed(delete(&bob).await.unwrap()).await;
    assert_eq!(status, 404, "bob has no such to-do");
    let (status, _) = signed(delete(&ada).await.unwrap()).await;
    assert_eq!(status, 200);

    // The public route: CORS for the front end's origin, a rate limit, the count.
    let stats = p
        .http
        .get(p.url("/stats"))
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stats.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(stats.headers()["ratelimit-limit"], "10");
    let (_, counted) = signed(stats).await;
    assert_eq!(counted["todos"], 2);
    let preflight = p
        .http
        .request(reqwest::Method::OPTIONS, p.url("/todos"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );
    let elsewhere = p
        .http
        .get(p.url("/stats"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        !elsewhere
            .headers()
            .contains_key("access-control-allow-origin"),
        "another origin is not allowed"
    );
    // Past the burst of 10 (two calls above, and the limit refills at one a second).
    let mut limited = false;
    for _ in 0..20 {
        let response = p.http.get(p.url("/stats")).send().await.unwrap();
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            limited = true;
            break;
        }
    }
    assert!(limited, "the public route is rate limited");
}
