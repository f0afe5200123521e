//! The API Gateway HTTP API payload format 2.0, both ways: an HTTP request becomes the event a
//! Lambda handler expects, and the handler's result becomes the HTTP response, as API Gateway
//! maps them. Pure functions over bytes and headers; no I/O.

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::{Map, Value, json};
use std::time::SystemTime;

/// The facts about a request that are not in its head and body.
#[derive(Debug, Clone)]
pub struct RequestFacts<'a> {
    pub request_id: &'a str,
    pub source_ip: String,
    pub received: SystemTime,
}

const PARAM_PREFIX: &str = "x-nimbus-param-";
/// The API id and stage in events and ARNs.
const API_ID: &str = "nimbus";
const STAGE: &str = "$default";

/// Build the v2.0 event for `parts` + `body`.
pub fn request_event(parts: &http::request::Parts, body: &[u8], facts: &RequestFacts<'_>) -> Value {
    let route = header(&parts.headers, "x-nimbus-route");
    let method = parts.method.as_str();
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");

    let mut headers = Map::new();
    let mut cookies = Vec::new();
    let mut path_parameters = Map::new();
    for (name, value) in &parts.headers {
        let name = name.as_str();
        let Ok(value) = value.to_str() else { continue };
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_owned())),
            );
        } else if let Some(param) = name.strip_prefix(PARAM_PREFIX) {
            path_parameters.insert(param.to_owned(), Value::String(value.to_owned()));
        } else if name.starts_with("x-nimbus-") {
            continue;
        } else {
            match headers.get_mut(name) {
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(value);
                }
                _ => {
                    headers.insert(name.to_owned(), Value::String(value.to_owned()));
                }
            }
        }
    }
    // A trailing `{*rest}` segment arrives as the path info; API Gateway names such a greedy
    // parameter after its route segment (`{proxy+}` → `proxy`).
    if let (Some(route), Some(info)) = (route, header(&parts.headers, "x-nimbus-path-info"))
        && let Some(name) = route
            .rsplit('/')
            .next()
            .and_then(|s| s.strip_prefix("{*"))
            .and_then(|s| s.strip_suffix('}'))
    {
        path_parameters.insert(
            name.to_owned(),
            Value::String(info.trim_start_matches('/').to_owned()),
        );
    }

    let mut query_parameters: Map<String, Value> = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match query_parameters.get_mut(key.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                query_parameters.insert(key.into_owned(), Value::String(value.into_owned()));
            }
        }
    }

    let host = header(&parts.headers, "host").unwrap_or("localhost");
    let domain = host.split(':').next().unwrap_or(host);
    let route_key = match route {
        Some(route) => format!("{method} {route}"),
        None => "$default".to_owned(),
    };
    let epoch_ms = facts
        .received
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let protocol = match parts.version {
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };

    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": nimbus_core::aws::ACCOUNT,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": domain.split('.').next().unwrap_or(domain),
            "http": {
                "method": method,
                "path": path,
                "protocol": protocol,
                "sourceIp": facts.source_ip,
                "userAgent": header(&parts.headers, "user-agent").unwrap_or(""),
            },
            "requestId": facts.request_id,
            "routeKey": route_key,
            "stage": STAGE,
            "time": clf_time(facts.received),
            "timeEpoch": epoch_ms,
        },
        "isBase64Encoded": false,
    });
    let Some(object) = event.as_object_mut() else {
        return event;
    };
    if !cookies.is_empty() {
        object.insert("cookies".into(), Value::Array(cookies));
    }
    if !query_parameters.is_empty() {
        object.insert(
            "queryStringParameters".into(),
            Value::Object(query_parameters),
        );
    }
    if !path_parameters.is_empty() {
        object.insert("pathParameters".into(), Value::Object(path_parameters));
    }
    if let Some(authorizer) = authorizer(&parts.headers)
        && let Some(context) = object
            .get_mut("requestContext")
            .and_then(Value::as_object_mut)
    {
        context.insert("authorizer".into(), authorizer);
    }
    if !body.is_empty() {
        let text = is_textual(header(&parts.headers, "content-type"))
            .then(|| std::str::from_utf8(body).ok())
            .flatten();
        match text {
            Some(text) => {
                object.insert("body".into(), Value::String(text.to_owned()));
            }
            None => {
                object.insert(
                    "body".into(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
                );
                object.insert("isBase64Encoded".into(), Value::Bool(true));
            }
        }
    }
    event
}

/// The ARN of a request's route as an IAM policy names it: `arn:aws:execute-api:REGION:ACCOUNT:
/// API/STAGE/METHOD/PATH`, the path as requested.
pub fn route_arn(method: &http::Method, path: &str) -> String {
    format!(
        "arn:aws:execute-api:{}:{}:{API_ID}/{STAGE}/{method}{path}",
        nimbus_core::aws::REGION,
        nimbus_core::aws::ACCOUNT,
    )
}

/// The `REQUEST` event a Lambda authorizer receives (payload 2.0) for `parts`: the request's
/// event without a body, its route's ARN and the values of the identity sources.
pub fn authorizer_event(
    parts: &http::request::Parts,
    facts: &RequestFacts<'_>,
    identity: &[&str],
) -> Value {
    let mut event = request_event(parts, &[], facts);
    if let Some(object) = event.as_object_mut() {
        object.remove("isBase64Encoded");
        object.insert("type".into(), Value::String("REQUEST".into()));
        object.insert(
            "routeArn".into(),
            Value::String(route_arn(&parts.method, parts.uri.path())),
        );
        object.insert("identitySource".into(), json!(identity));
    }
    event
}

/// `requestContext.authorizer` for a request an authorizer let through (the gateway's trusted
/// claims header). A function authorizer's context goes under `lambda` as it answered it. A
/// JWT's claims go under `jwt` in API Gateway's shape: as strings (numbers and booleans in
/// their JSON form, lists as `[a b]`, objects as JSON), with the token's scopes (`null` when it
/// has none).
fn authorizer(headers: &HeaderMap) -> Option<Value> {
    let claims: Map<String, Value> =
        serde_json::from_slice(headers.get(nimbus_core::claims::CLAIMS_HEADER)?.as_bytes()).ok()?;
    if header(headers, nimbus_core::claims::AUTHORIZER_HEADER)
        == Some(nimbus_core::claims::FUNCTION_AUTHORIZER)
    {
        return Some(json!({ "lambda": claims }));
    }
    let scopes = nimbus_core::claims::scopes_of(&claims);
    let text = |value: &Value| match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let claims: Map<String, Value> = claims
        .iter()
        .map(|(name, value)| {
            let value = match value {
                Value::Array(items) => {
                    format!("[{}]", items.iter().map(text).collect::<Vec<_>>().join(" "))
                }
                other => text(other),
            };
            (name.clone(), Value::String(value))
        })
        .collect();
    Some(json!({
        "jwt": {
            "claims": claims,
            "scopes": if scopes.is_empty() { Value::Null } else { json!(scopes) },
        }
    }))
}

/// An HTTP response as API Gateway builds it from a handler's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Map a handler's result (the bytes posted to `/response`) to the HTTP response.
///
/// A JSON object with `statusCode` is a structured response (`headers`, `cookies`, `body`,
/// `isBase64Encoded`); any other JSON value is returned as a 200 `application/json` body (a bare
/// string as its text). Anything that is not JSON is an error, as it is for API Gateway.
pub fn map_result(result: &[u8]) -> Result<MappedResponse, String> {
    let value: Value = if result.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(result)
            .map_err(|e| format!("the handler's result is not JSON ({e})"))?
    };
    let json_headers = || {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers
    };
    let object = match value {
        Value::Object(object) if object.contains_key("statusCode") => object,
        Value::String(text) => {
            return Ok(MappedResponse {
                status: StatusCode::OK,
                headers: json_headers(),
                body: Bytes::from(text),
            });
        }
        Value::Null if result.is_empty() => {
            return Ok(MappedResponse {
                status: StatusCode::OK,
                headers: json_headers(),
                body: Bytes::new(),
            });
        }
        other => {
            return Ok(MappedResponse {
                status: StatusCode::OK,
                headers: json_headers(),
                body: Bytes::from(other.to_string()),
            });
        }
    };

    let status = match object.get("statusCode") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .and_then(|n| u16::try_from(n).ok())
    .and_then(|n| StatusCode::from_u16(n).ok())
    .ok_or_else(|| {
        format!(
            "statusCode must be an HTTP status number, got {}",
            object
                .get("statusCode")
                .map(Value::to_string)
                .unwrap_or_default()
        )
    })?;

    let mut headers = HeaderMap::new();
    if let Some(Value::Object(given)) = object.get("headers") {
        for (name, value) in given {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => return Err(format!("header {name:?} must be a string")),
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{name:?} is not a valid header name"))?;
            let value = HeaderValue::from_str(&text)
                .map_err(|_| format!("the value of header {name} is not a valid header value"))?;
            headers.append(name, value);
        }
    }
    if let Some(Value::Array(cookies)) = object.get("cookies") {
        for cookie in cookies {
            let Value::String(cookie) = cookie else {
                return Err("cookies must be strings".into());
            };
            let value = HeaderValue::from_str(cookie)
                .map_err(|_| format!("cookie {cookie:?} is not a valid header value"))?;
            headers.append(http::header::SET_COOKIE, value);
        }
    }
    let base64 = matches!(object.get("isBase64Encoded"), Some(Value::Bool(true)));
    let body = match object.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) if base64 => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("isBase64Encoded is true but body is not base64 ({e})"))?,
        ),
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(other) => Bytes::from(other.to_string()),
    };
    Ok(MappedResponse {
        status,
        headers,
        body,
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Bodies API Gateway passes as text; everything else is base64-encoded.
fn is_textual(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
                | "application/graphql"
        )
}

/// `23/Nov/2026:15:43:44 +0000`, the time format of `requestContext.time`.
fn clf_time(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // RFC 3339 in UTC: `2026-11-23T15:43:44Z`.
    let iso = humantime::format_rfc3339_seconds(time).to_string();
    let month = iso
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{}/{month}/{}:{} +0000",
        iso.get(8..10).unwrap_or("01"),
        iso.get(0..4).unwrap_or("1970"),
        iso.get(11..19).unwrap_or("00:00:00")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parts(request: http::Request<()>) -> http::request::Parts {
        request.into_parts().0
    }

    /// A request from loopback at the epoch.
    fn facts(request_id: &str) -> RequestFacts<'_> {
        RequestFacts {
            request_id,
            source_ip: "127.0.0.1".into(),
            received: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn request_becomes_a_v2_event() {
        let request = http::Request::post("/items/42/a/b?x=1&x=2&name=J%C3%BCrgen+K")
            .header("host", "api.example.com:8080")
            .header("user-agent", "curl/8")
            .header("cookie", "a=1; b=2")
            .header("accept", "text/html")
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .header("x-nimbus-route", "/items/{id}/{*rest}")
            .header("x-nimbus-param-id", "42")
            .header("x-nimbus-path-info", "/a/b")
            .body(())
            .unwrap();
        let facts = RequestFacts {
            request_id: "req-1",
            source_ip: "10.0.0.7".into(),
            received: SystemTime::UNIX_EPOCH + Duration::from_millis(1_583_348_638_390),
        };
        let event = request_event(&parts(request), br#"{"a":1}"#, &facts);
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "POST /items/{id}/{*rest}");
        assert_eq!(event["rawPath"], "/items/42/a/b");
        assert_eq!(event["rawQueryString"], "x=1&x=2&name=J%C3%BCrgen+K");
        assert_eq!(event["queryStringParameters"]["x"], "1,2");
        assert_eq!(event["queryStringParameters"]["name"], "Jürgen K");
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(event["headers"]["accept"], "text/html,application/json");
        assert!(event["headers"].get("cookie").is_none());
        assert!(event["headers"].get("x-nimbus-route").is_none());
        assert_eq!(event["pathParameters"], json!({"id": "42", "rest": "a/b"}));
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["requestContext"]["http"]["sourceIp"], "10.0.0.7");
        assert_eq!(event["requestContext"]["http"]["userAgent"], "curl/8");
        assert_eq!(event["requestContext"]["domainName"], "api.example.com");
        assert_eq!(event["requestContext"]["domainPrefix"], "api");
        assert_eq!(event["requestContext"]["requestId"], "req-1");
        assert_eq!(
            event["requestContext"]["time"],
            "04/Mar/2020:19:03:58 +0000"
        );
        assert_eq!(event["requestContext"]["timeEpoch"], 1_583_348_638_390u64);
        assert_eq!(event["body"], r#"{"a":1}"#);
        assert_eq!(event["isBase64Encoded"], false);
    }

    #[test]
    fn verified_claims_are_the_authorizer_context() {
        let request = http::Request::get("/me")
            .header(
                "x-nimbus-claims",
                r#"{"sub":"u1","exp":1700000000,"groups":["admin","ops"],"scope":"todo:read todo:write","email_verified":true}"#,
            )
            .body(())
            .unwrap();
        let facts = facts("r");
        let event = request_event(&parts(request), b"", &facts);
        let jwt = &event["requestContext"]["authorizer"]["jwt"];
        assert_eq!(jwt["claims"]["sub"], "u1");
        assert_eq!(jwt["claims"]["exp"], "1700000000");
        assert_eq!(jwt["claims"]["groups"], "[admin ops]");
        assert_eq!(jwt["claims"]["email_verified"], "true");
        assert_eq!(jwt["scopes"], json!(["todo:read", "todo:write"]));
        assert!(event["headers"].get("x-nimbus-claims").is_none());

        let plain = request_event(
            &parts(http::Request::get("/").body(()).unwrap()),
            b"",
            &facts,
        );
        assert!(plain["requestContext"].get("authorizer").is_none());
    }

    #[test]
    fn authorizer_events_carry_the_route_arn_and_identity() {
        let request = http::Request::get("/todos/7?token=abc")
            .header("authorization", "Bearer t")
            .header("x-nimbus-route", "/todos/{id}")
            .header("x-nimbus-param-id", "7")
            .body(())
            .unwrap();
        let facts = facts("req-2");
        let event = authorizer_event(&parts(request), &facts, &["Bearer t", "abc"]);
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["type"], "REQUEST");
        assert_eq!(
            event["routeArn"],
            "arn:aws:execute-api:us-east-1:000000000000:nimbus/$default/GET/todos/7"
        );
        assert_eq!(event["identitySource"], json!(["Bearer t", "abc"]));
        assert_eq!(event["routeKey"], "GET /todos/{id}");
        assert_eq!(event["headers"]["authorization"], "Bearer t");
        assert_eq!(event["pathParameters"]["id"], "7");
        assert!(event.get("body").is_none());
        assert!(event.get("isBase64Encoded").is_none());
    }

    #[test]
    fn a_function_authorizers_context_is_under_lambda() {
        let request = http::Request::get("/")
            .header(
                nimbus_core::claims::CLAIMS_HEADER,
                r#"{"user":"ann","n":3}"#,
            )
            .header(
                nimbus_core::claims::AUTHORIZER_HEADER,
                nimbus_core::claims::FUNCTION_AUTHORIZER,
            )
            .body(())
            .unwrap();
        let facts = facts("r");
        let event = request_event(&parts(request), b"", &facts);
        assert_eq!(
            event["requestContext"]["authorizer"],
            json!({"lambda": {"user": "ann", "n": 3}})
        );
        assert!(
            event["headers"]
                .get(nimbus_core::claims::AUTHORIZER_HEADER)
                .is_none()
        );
    }

    #[test]
    fn binary_bodies_are_base64() {
        let request = http::Request::put("/blob")
            .header("content-type", "application/octet-stream")
            .body(())
            .unwrap();
        let facts = RequestFacts {
            request_id: "r",
            source_ip: "127.0.0.1".into(),
            received: SystemTime::now(),
        };
        let event = request_event(&parts(request), &[0, 159, 146, 150], &facts);
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], "AJ+Slg==");
        assert_eq!(event["routeKey"], "$default");
        assert!(event.get("pathParameters").is_none());
        assert!(event.get("queryStringParameters").is_none());
    }

    #[test]
    fn results_map_as_api_gateway_maps_them() {
        let structured = map_result(
            br#"{"statusCode": 201, "headers": {"x-a": "1", "x-n": 2}, "cookies": ["s=1", "t=2"], "body": "made"}"#,
        )
        .unwrap();
        assert_eq!(structured.status, StatusCode::CREATED);
        assert_eq!(structured.headers["x-a"], "1");
        assert_eq!(structured.headers["x-n"], "2");
        let cookies: Vec<_> = structured
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["s=1", "t=2"]);
        assert_eq!(structured.body, "made");

        let binary =
            map_result(br#"{"statusCode": 200, "body": "AJ+Slg==", "isBase64Encoded": true}"#)
                .unwrap();
        assert_eq!(binary.body.as_ref(), &[0, 159, 146, 150]);

        let bare = map_result(br#""Hello from Lambda!""#).unwrap();
        assert_eq!(
            (bare.status, bare.body.as_ref()),
            (StatusCode::OK, b"Hello from Lambda!".as_ref())
        );
        assert_eq!(bare.headers["content-type"], "application/json");

        let object = map_result(br#"{"hello": "world"}"#).unwrap();
        assert_eq!(object.body, r#"{"hello":"world"}"#);

        assert!(map_result(b"not json").is_err());
        assert!(map_result(br#"{"statusCode": 99999}"#).is_err());
        assert!(map_result(br#"{"statusCode": 200, "headers": {"bad name": "x"}}"#).is_err());
        assert!(
            map_result(br#"{"statusCode": 200, "body": "%%", "isBase64Encoded": true}"#).is_err()
        );
    }
}
