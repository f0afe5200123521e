//! The `function` authorizer, as API Gateway's Lambda request authorizer (payload 2.0): another
//! function of the app receives the `REQUEST` event (the request's event without its body,
//! `routeArn` and `identitySource`) and answers in either of API Gateway's shapes —
//!
//! - simple: `{"isAuthorized": true, "context": {…}}`;
//! - an IAM policy: `{"principalId": …, "policyDocument": {"Statement": [{"Effect": "Allow",
//!   "Action": "execute-api:Invoke", "Resource": "arn:…"}]}, "context": {…}}`, which allows a
//!   route when a statement allows its ARN and none denies it (wildcards `*` and `?`).
//!
//! A request missing one of the identity sources is refused (401) without invoking anything.
//! The answer is remembered per identity for the authorizer's `ttl` — allow and deny alike, and
//! for every route the authorizer guards, as API Gateway does (a cached policy is evaluated again
//! against each route's ARN); a failed invocation is not remembered. The context reaches the
//! function in the trusted claims header, and Lambda handlers in `requestContext.authorizer.lambda`.
//!
//! The decisions ([`Answer::parse`], [`Answer::allows`], [`matches`]) are pure functions; only
//! [`FunctionAuthorizer::check`] invokes.

use super::{Refusal, Verified};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use nimbus_core::IdentitySource;
use nimbus_core::spec::FunctionAuthorizerSpec;
use nimbus_dispatch::{DispatchError, Pool};
use nimbus_runtime::{ClientAddr, RawEvent, read_limited};
use nimbus_wire::apigw::{self, RequestFacts};
use serde_json::{Map, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Longest an authorizer may take to answer, whatever its function's own timeout.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from an authorizer.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
const SHARDS: usize = 16;
const SHARD_BOUND: usize = 1024;

/// Where one identity source is read.
enum Source {
    Header(HeaderName),
    Query(String),
}

pub struct FunctionAuthorizer {
    /// `None` when the function is not deployed with the app (the manifest refuses that).
    pool: Option<Arc<Pool>>,
    name: String,
    sources: Box<[(Source, String)]>,
    ttl: Duration,
    remembered: [Shard; SHARDS],
}

/// Remembered answers by identity digest, with when each stops counting.
type Shard = Mutex<HashMap<[u8; 32], (Arc<Answer>, Instant)>>;

/// What an authorizer answered.
#[derive(Debug)]
pub struct Answer {
    policy: Policy,
    verified: Arc<Verified>,
}

#[derive(Debug, PartialEq, Eq)]
enum Policy {
    Simple(bool),
    /// The statements that apply to `execute-api:Invoke`: (allow, resource patterns).
    Statements(Vec<(bool, Vec<String>)>),
}

impl FunctionAuthorizer {
    pub fn new(spec: &FunctionAuthorizerSpec, pool: Option<Arc<Pool>>) -> FunctionAuthorizer {
        let sources = spec
            .identity_source
            .iter()
            .filter_map(|source| {
                let read = match source {
                    IdentitySource::Header(name) => {
                        Source::Header(HeaderName::from_bytes(name.as_bytes()).ok()?)
                    }
                    IdentitySource::Query(name) => Source::Query(name.clone()),
                };
                Some((read, source.to_string()))
            })
            .collect();
        FunctionAuthorizer {
            pool,
            name: spec.function.to_string(),
            sources,
            ttl: spec.ttl,
            remembered: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }

    /// Let the request through or not, asking the function unless a remembered answer holds.
    pub async fn check(
        &self,
        parts: &http::request::Parts,
        request_id: &str,
    ) -> Result<Arc<Verified>, Refusal> {
        let identity = self.identity(parts)?;
        let key = identity_key(&identity);
        let remembered = (!self.ttl.is_zero())
            .then(|| {
                let shard = self.shard(&key)?.lock().ok()?;
                let (answer, until) = shard.get(&key)?;
                (*until > Instant::now()).then(|| answer.clone())
            })
            .flatten();
        let answer = match remembered {
            Some(answer) => answer,
            None => {
                let answer = Arc::new(self.ask(parts, request_id, &identity, &key).await?);
                if !self.ttl.is_zero() {
                    self.remember(key, answer.clone());
                }
                answer
            }
        };
        if answer.allows(&parts.method, parts.uri.path()) {
            Ok(answer.verified.clone())
        } else {
            Err(Refusal::Denied)
        }
    }

    /// The values of the identity sources; a request missing any is refused.
    fn identity(&self, parts: &http::request::Parts) -> Result<Vec<String>, Refusal> {
        let missing = |source: &str| Refusal::IdentityMissing {
            source: source.to_owned(),
        };
        self.sources
            .iter()
            .map(|(source, written)| {
                let value = match source {
                    Source::Header(name) => header_value(&parts.headers, name),
                    Source::Query(name) => query_value(parts.uri.query().unwrap_or(""), name),
                };
                value
                    .filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| missing(written))
            })
            .collect()
    }

    fn shard(&self, key: &[u8; 32]) -> Option<&Shard> {
        self.remembered.get(usize::from(key[0]) % SHARDS)
    }

    fn remember(&self, key: [u8; 32], answer: Arc<Answer>) {
        let Some(shard) = self.shard(&key) else {
            return;
        };
        let mut shard = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        if shard.len() >= SHARD_BOUND {
            shard.retain(|_, (_, until)| *until > now);
            if shard.len() >= SHARD_BOUND {
                shard.clear();
            }
        }
        shard.insert(key, (answer, now + self.ttl));
    }

    /// Invoke the function with the request's `REQUEST` event and read its answer.
    async fn ask(
        &self,
        parts: &http::request::Parts,
        request_id: &str,
        identity: &[String],
        key: &[u8; 32],
    ) -> Result<Answer, Refusal> {
        let failed = |why: String| Refusal::AuthorizerFailed {
            function: self.name.clone(),
            why,
        };
        let Some(pool) = &self.pool else {
            return Err(failed("the function is not deployed".into()));
        };
        let facts = RequestFacts {
            request_id,
            source_ip: parts
                .extensions
                .get::<ClientAddr>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
            received: SystemTime::now(),
        };
        let identity_refs: Vec<&str> = identity.iter().map(String::as_str).collect();
        let event = apigw::authorizer_event(parts, &facts, &identity_refs);
        let mut request = http::Request::new(
            Full::new(Bytes::from(event.to_string()))
                .map_err(|never| match never {})
                .boxed_unsync(),
        );
        *request.method_mut() = http::Method::POST;
        request.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        request
            .headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static("localhost"));
        request.extensions_mut().insert(RawEvent);
        let id: Arc<str> = format!("{request_id}-authorizer").into();
        let asked = async {
            let response = pool
                .invoke(request, id, nimbus_core::Trigger::Other)
                .await
                .map_err(|error| match error {
                    DispatchError::Busy { retry_after, .. } => Refusal::Throttled {
                        retry_after,
                        why: format!(
                            "the route's authorizer (function {:?}) is at its concurrency limit",
                            self.name
                        ),
                    },
                    DispatchError::Invoke(error) => failed(error.to_string()),
                })?;
            let status = response.status();
            let body = read_limited(response.into_body(), MAX_ANSWER_BYTES)
                .await
                .map_err(|e| failed(format!("its answer could not be read ({e})")))?;
            if !status.is_success() {
                return Err(failed(format!("it answered HTTP {status}")));
            }
            Answer::parse(&body, key).map_err(failed)
        };
        tokio::time::timeout(TIMEOUT, asked)
            .await
            .map_err(|_| failed(format!("it did not answer within {TIMEOUT:?}")))?
    }
}

impl Answer {
    /// Read an authorizer's answer: the simple shape when it has `isAuthorized`, else an IAM
    /// policy. `identity` names the caller when the answer has no `principalId`.
    pub fn parse(body: &[u8], identity: &[u8; 32]) -> Result<Answer, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("its answer is not JSON ({e})"))?;
        let Value::Object(answer) = value else {
            return Err("its answer is not a JSON object".into());
        };
        let context = match answer.get("context") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(context)) => context.clone(),
            Some(_) => return Err("`context` must be a JSON object".into()),
        };
        let policy = match (answer.get("isAuthorized"), answer.get("policyDocument")) {
            (Some(Value::Bool(allowed)), _) => Policy::Simple(*allowed),
            (Some(_), _) => return Err("`isAuthorized` must be true or false".into()),
            (None, Some(document)) => Policy::Statements(statements(document)?),
            (None, None) => {
                return Err(
                    "its answer has neither `isAuthorized` (the simple shape) nor \
                     `policyDocument` (an IAM policy)"
                        .into(),
                );
            }
        };
        let subject = match (answer.get("principalId"), context.get("sub")) {
            (Some(Value::String(principal)), _) => principal.clone(),
            (_, Some(Value::String(sub))) => sub.clone(),
            _ => hex::encode(identity),
        };
        Ok(Answer {
            policy,
            verified: Arc::new(Verified::answered(context, subject)),
        })
    }

    /// Whether the answer lets `method path` through.
    pub fn allows(&self, method: &http::Method, path: &str) -> bool {
        match &self.policy {
            Policy::Simple(allowed) => *allowed,
            Policy::Statements(statements) => {
                let arn = apigw::route_arn(method, path);
                let applies = |(_, resources): &&(bool, Vec<String>)| {
                    resources.iter().any(|pattern| matches(pattern, &arn))
                };
                let mut applying = statements.iter().filter(applies).peekable();
                applying.peek().is_some() && applying.all(|(allow, _)| *allow)
            }
        }
    }
}

/// The statements of an IAM policy document that speak of `execute-api:Invoke`. A statement
/// with a `Condition`, `NotAction` or `NotResource` cannot be judged here, so it is read the
/// safe way: such an Allow allows nothing, such a Deny denies (everything, for `NotResource`).
fn statements(document: &Value) -> Result<Vec<(bool, Vec<String>)>, String> {
    let list = match document.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return Err("`policyDocument.Statement` must be a statement or a list of them".into()),
    };
    let strings = |value: Option<&Value>, field: &str| -> Result<Vec<String>, String> {
        match value {
            None => Ok(Vec::new()),
            Some(Value::String(one)) => Ok(vec![one.clone()]),
            Some(Value::Array(many)) => many
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("`{field}` must be a string or a list of strings")),
            Some(_) => Err(format!("`{field}` must be a string or a list of strings")),
        }
    };
    let mut out = Vec::new();
    for statement in list {
        let allow = match statement.get("Effect").and_then(Value::as_str) {
            Some("Allow") => true,
            Some("Deny") => false,
            _ => return Err("each statement's `Effect` must be \"Allow\" or \"Deny\"".into()),
        };
        let has = |field: &str| statement.get(field).is_some();
        if allow && (has("Condition") || has("NotAction") || has("NotResource")) {
            continue;
        }
        let actions = strings(statement.get("Action"), "Action")?;
        let invokes = has("NotAction")
            || actions
                .iter()
                .any(|a| matches(&a.to_ascii_lowercase(), "execute-api:invoke"));
        if !invokes {
            continue;
        }
        let resources = if has("NotResource") {
            vec!["*".to_owned()]
        } else {
            strings(statement.get("Resource"), "Resource")?
        };
        out.push((allow, resources));
    }
    Ok(out)
}

/// IAM's wildcard match: `*` any run of characters, `?` any one.
pub fn matches(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in the text it is tried to end.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = t.get(ti) {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&want) if want == b'?' || want == c => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.iter().skip(pi).all(|&c| c == b'*')
}

/// A header's values, joined by commas as API Gateway joins them.
fn header_value(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// A query-string parameter's values, joined by commas.
fn query_value(query: &str, name: &str) -> Option<String> {
    let values: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// What answers are remembered under: a digest of the identity (so no credential is kept).
fn identity_key(identity: &[String]) -> [u8; 32] {
    let mut hash = sha2::Sha256::new();
    for value in identity {
        hash.update((value.len() as u64).to_le_bytes());
        hash.update(value.as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(value: Value) -> Result<Answer, String> {
        Answer::parse(value.to_string().as_bytes(), &[7; 32])
    }

    fn allows(value: Value, method: &str, path: &str) -> bool {
        answer(value)
            .unwrap()
            .allows(&method.parse().unwrap(), path)
    }

    fn policy(statements: Value) -> Value {
        json!({"principalId": "ann", "policyDocument": {"Version": "2012-10-17", "Statement": statements}})
    }

    const ARN: &str = "arn:aws:execute-api:us-east-1:000000000000:nimbus/$default";

    #[test]
    fn wildcards_match_as_iam_does() {
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("a*c", "abbbc"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("arn:*:GET/*", "arn:x:GET/todos/1"));
        assert!(!matches("arn:*:GET/*", "arn:x:POST/todos/1"));
        assert!(!matches("abc", "abcd"));
        assert!(matches("*/todos/*", "x/todos/y/todos/z"));
    }

    #[test]
    fn simple_answers() {
        assert!(allows(json!({"isAuthorized": true}), "GET", "/"));
        assert!(!allows(json!({"isAuthorized": false}), "GET", "/"));
        let verified = answer(json!({"isAuthorized": true, "context": {"user": "ann", "n": 1}}))
            .unwrap()
            .verified
            .clone();
        assert_eq!(verified.claims["user"], "ann");
        assert_eq!(verified.subject, hex::encode([7; 32]));
        assert!(verified.function);
    }

    #[test]
    fn policies_allow_what_they_allow_and_deny_wins() {
        let allow_get = policy(json!([{
            "Effect": "Allow", "Action": "execute-api:Invoke", "Resource": format!("{ARN}/GET/*")
        }]));
        assert!(allows(allow_get.clone(), "GET", "/todos/1"));
        assert!(!allows(allow_get, "DELETE", "/todos/1"));

        let deny_one = policy(json!([
            {"Effect": "Allow", "Action": "execute-api:*", "Resource": "*"},
            {"Effect": "Deny", "Action": ["execute-api:Invoke"], "Resource": [format!("{ARN}/DELETE/*")]}
        ]));
        assert!(allows(deny_one.clone(), "GET", "/todos/1"));
        assert!(!allows(deny_one, "DELETE", "/todos/1"));

        // Nothing applies: denied.
        let other_service =
            policy(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}));
        assert!(!allows(other_service, "GET", "/"));
        assert!(!allows(policy(json!([])), "GET", "/"));
        // A condition cannot be judged: it never allows.
        let conditional = policy(json!([{
            "Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}
        }]));
        assert!(!allows(conditional, "GET", "/"));
        assert_eq!(answer(policy(json!([]))).unwrap().verified.subject, "ann");
    }

    #[test]
    fn malformed_answers_are_failures() {
        for bad in [
            json!([]),
            json!({}),
            json!({"isAuthorized": "true"}),
            json!({"isAuthorized": true, "context": "x"}),
            json!({"policyDocument": {"Statement": "x"}}),
            json!({"policyDocument": {"Statement": [{"Effect": "allow", "Action": "*", "Resource": "*"}]}}),
            json!({"policyDocument": {"Statement": [{"Effect": "Allow", "Action": 1, "Resource": "*"}]}}),
        ] {
            assert!(answer(bad.clone()).is_err(), "{bad}");
        }
        assert!(Answer::parse(b"not json", &[0; 32]).is_err());
    }

    #[test]
    fn identities_are_read_from_headers_and_the_query() {
        let spec = FunctionAuthorizerSpec {
            function: nimbus_core::Name::new("authz").unwrap(),
            identity_source: vec![
                IdentitySource::Header("authorization".into()),
                IdentitySource::Query("tenant".into()),
            ],
            ttl: Duration::from_secs(60),
        };
        let authorizer = FunctionAuthorizer::new(&spec, None);
        let parts = |uri: &str, auth: Option<&str>| {
            let mut request = http::Request::get(uri);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            request.body(()).unwrap().into_parts().0
        };
        assert_eq!(
            authorizer
                .identity(&parts("/x?tenant=a%20b&tenant=c", Some("t")))
                .unwrap(),
            ["t", "a b,c"]
        );
        assert_eq!(
            authorizer.identity(&parts("/x", Some("t"))).unwrap_err(),
            Refusal::IdentityMissing {
                source: "$request.querystring.tenant".into()
            }
        );
        assert!(
            authorizer
                .identity(&parts("/x?tenant=a", Some(" ")))
                .is_err()
        );
        assert_ne!(
            identity_key(&["ab".into(), "c".into()]),
            identity_key(&["a".into(), "bc".into()])
        );
    }
}
