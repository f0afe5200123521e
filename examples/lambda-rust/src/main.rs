//! A Lambda function written with AWS's `lambda_runtime` crate, unchanged: it answers API
//! Gateway HTTP API (payload 2.0) events with a greeting, and any other event with an echo.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if payload.get("version").and_then(Value::as_str) != Some("2.0") {
        return Ok(json!({ "echo": payload, "request_id": context.request_id }));
    }
    let name = payload
        .pointer("/pathParameters/name")
        .and_then(Value::as_str)
        .unwrap_or("world");
    Ok(json!({
        "statusCode": 200,
        "headers": { "content-type": "text/plain" },
        "body": format!(
            "hello, {name}, from {} ({})",
            context.env_config.function_name, context.request_id
        ),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handler)).await
}
