//! API keys on routes: `kind = "api_key"` authorizers admit an app's keys within each key's
//! usage plan (rate and daily quota), refuse missing, wrong and revoked keys with 401, and tell
//! the function which key called; keys are created and revoked without a redeploy and survive
//! a restart.

use crate::support::{Platform, echoed_claims, error_code};
use nimbus_api::CreateApiKeyRequest;

const MANIFEST: &str = r#"name = "shop"

[function.f]
component = "probe.wasm"

[authorizer.keys]
kind = "api_key"

[authorizer.partner]
kind = "api_key"
header = "X-Partner-Key"

[[route]]
path = "/open/{*rest}"
function = "f"

[[route]]
path = "/f/{*rest}"
function = "f"
auth = "keys"

[[route]]
path = "/partner/{*rest}"
function = "f"
auth = "partner"
"#;

async fn key(p: &Platform, request: CreateApiKeyRequest) -> (String, String) {
    let created = p.client.create_api_key("shop", &request).await.unwrap();
    (
        created.id,
        created.key.expect("the key is shown at creation"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_admit_within_their_plans_and_revoke_at_once() {
    let p = Platform::start().await;
    // A key made before the app is deployed works once it is.
    let (free_id, free) = key(
        &p,
        CreateApiKeyRequest {
            name: Some("web".into()),
            ..Default::default()
        },
    )
    .await;
    p.deploy(MANIFEST, &[("f", "probe")]).await.unwrap();
    let call = async |path: &str, header: &str, value: Option<&str>| {
        let mut request = p.http.get(p.url(path));
        if let Some(value) = value {
            request = request.header(header, value);
        }
        request.send().await.unwrap()
    };

    assert_eq!(call("/open/echo", "x-api-key", None).await.status(), 200);
    let missing = call("/f/echo", "x-api-key", None).await;
    assert_eq!(
        missing.headers()["www-authenticate"],
        "ApiKey header=\"x-api-key\""
    );
    let (status, code, message) = error_code(missing).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"), "{message}");
    assert!(message.contains("x-api-key"), "{message}");
    let (status, code, _) =
        error_code(call("/f/echo", "x-api-key", Some("nk_not-a-key")).await).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));

    // A good key: the function learns which key called, and a client cannot pretend.
    let response = p
        .http
        .get(p.url("/f/echo"))
        .header("x-api-key", &free)
        .header("x-nimbus-claims", r#"{"sub":"forged"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = echoed_claims(&response.text().await.unwrap());
    assert_eq!(seen["sub"], free_id.as_str());
    assert_eq!(seen["api_key_id"], free_id.as_str());
    assert_eq!(seen["api_key_name"], "web");
    // Each authorizer reads its own header.
    assert_eq!(
        call("/partner/echo", "x-api-key", Some(&free))
            .await
            .status(),
        401
    );
    assert_eq!(
        call("/partner/echo", "x-partner-key", Some(&free))
            .await
            .status(),
        200
    );

    // A rate of 2 per hour: two pass, the third waits, other keys are unaffected.
    let (_, slow) = key(
        &p,
        CreateApiKeyRequest {
            rate: Some("2/h".into()),
            ..Default::default()
        },
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            call("/f/echo", "x-api-key", Some(&slow)).await.status(),
            200
        );
    }
    let throttled = call("/f/echo", "x-api-key", Some(&slow)).await;
    let retry: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 1000 && retry <= 1800, "{retry}");
    let (status, code, message) = error_code(throttled).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"), "{message}");
    for _ in 0..5 {
        assert_eq!(
            call("/f/echo", "x-api-key", Some(&free)).await.status(),
            200
        );
    }

    // A daily quota of 1.
    let (_, quota) = key(
        &p,
        CreateApiKeyRequest {
            quota_per_day: Some(1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        call("/f/echo", "x-api-key", Some(&quota)).await.status(),
        200
    );
    let over = call("/f/echo", "x-api-key", Some(&quota)).await;
    let retry: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "until UTC midnight: {retry}");
    let (status, _, message) = error_code(over).await;
    assert_eq!(status, 429);
    assert!(message.contains("quota of 1"), "{message}");

    // Listing shows plans, never keys; revoking refuses at once, without a redeploy.
    let listed = p.client.api_keys("shop").await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|k| k.key.is_none()));
    p.client.remove_api_key("shop", &free_id).await.unwrap();
    assert_eq!(
        call("/f/echo", "x-api-key", Some(&free)).await.status(),
        401
    );
    let (status, code, _) = match p.client.remove_api_key("shop", &free_id).await {
        Err(nimbus_api::ApiError::Api {
            status,
            code,
            message,
            ..
        }) => (status, code, message),
        other => panic!("revoking twice: {other:?}"),
    };
    assert_eq!((status, code.as_str()), (404, "key_not_found"));

    // Bad plans are refused and store nothing.
    for bad in [
        CreateApiKeyRequest {
            rate: Some("lots".into()),
            ..Default::default()
        },
        CreateApiKeyRequest {
            burst: Some(3),
            ..Default::default()
        },
        CreateApiKeyRequest {
            quota_per_day: Some(0),
            ..Default::default()
        },
    ] {
        match p.client.create_api_key("shop", &bad).await {
            Err(nimbus_api::ApiError::Api {
                status: 400, code, ..
            }) => {
                assert_eq!(code.as_str(), "bad_request")
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(p.client.api_keys("shop").await.unwrap().len(), 2);

    // Keys survive a restart.
    let dir = p.stop().await;
    let p = Platform::start_in(dir, |_| {}).await;
    let response = p
        .http
        .get(p.url("/f/echo"))
        .header("x-api-key", &slow)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "a restart keeps the key (its bucket starts full)"
    );
}
