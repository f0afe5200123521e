//! Secrets Manager's shapes: `GetSecretValue`, `DescribeSecret` and `ListSecrets` on the
//! AWS-compatible endpoint (JSON protocol 1.1, target `secretsmanager`), answered as AWS
//! answers them — the same JSON the local API and the Lambda extension's `localhost:2773` read
//! return, so code written for Lambda reads its secrets unchanged.
//!
//! Identifiers: a secret's ARN is `arn:aws:secretsmanager:REGION:000000000000:secret:NAME-XXXXXX`
//! (the six characters derived from the app and name, as AWS appends six random ones); a
//! version's id is a UUID-shaped form of its number, so ids round-trip.

use crate::{Secret, Secrets, Which};
use bytes::Bytes;
use nimbus_aws::{JsonAnswer, JsonError, Principal};
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use serde::Deserialize;
use std::sync::Arc;

/// The JSON protocol's target prefix.
pub const TARGET: &str = "secretsmanager";
const NAMESPACE: &str = "com.amazonaws.secretsmanager";

/// The current version's staging label.
pub const CURRENT: &str = "AWSCURRENT";
/// The previous version's.
pub const PREVIOUS: &str = "AWSPREVIOUS";

fn suffix(app: &str, name: &str) -> String {
    use sha2::Digest;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let digest = sha2::Sha256::digest(format!("{app}\0{name}").as_bytes());
    digest
        .iter()
        .take(6)
        .map(|b| {
            let at = usize::from(*b) % ALPHABET.len();
            char::from(ALPHABET.get(at).copied().unwrap_or(b'A'))
        })
        .collect()
}

/// The ARN of secret `name` of `app`.
pub fn arn(app: &str, name: &str) -> String {
    format!(
        "arn:aws:secretsmanager:{}:000000000000:secret:{name}-{}",
        nimbus_aws::REGION,
        suffix(app, name)
    )
}

/// The name a `SecretId` (name, ARN or partial ARN) means within `app`.
pub fn name_of<'a>(app: &str, id: &'a str) -> &'a str {
    let Some((_, rest)) = id
        .strip_prefix("arn:")
        .and_then(|arn| arn.split_once(":secret:"))
    else {
        return id;
    };
    match rest.rsplit_once('-') {
        Some((name, tail)) if tail == suffix(app, name) => name,
        _ => rest,
    }
}

/// A version's id: its number in a UUID's shape.
pub fn version_id(version: u64) -> String {
    format!("00000000-0000-4000-8000-{version:012x}")
}

/// The number a version id names, if it is one of ours.
pub fn version_of(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("00000000-0000-4000-8000-")?;
    if hex.len() != 12 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

fn stages(secret: &Secret) -> Vec<&'static str> {
    let mut stages = Vec::new();
    if secret.current {
        stages.push(CURRENT);
    }
    if secret.previous {
        stages.push(PREVIOUS);
    }
    stages
}

fn seconds(ms: u64) -> serde_json::Value {
    serde_json::json!(ms as f64 / 1000.0)
}

/// `GetSecretValue`'s answer for `secret` of `app`.
pub fn secret_value(app: &str, secret: &Secret) -> serde_json::Value {
    let mut answer = serde_json::Map::new();
    answer.insert("ARN".into(), arn(app, &secret.name).into());
    answer.insert("Name".into(), secret.name.clone().into());
    answer.insert("VersionId".into(), version_id(secret.version).into());
    answer.insert("VersionStages".into(), stages(secret).into());
    answer.insert("CreatedDate".into(), seconds(secret.created_ms));
    match std::str::from_utf8(&secret.value) {
        Ok(text) => {
            answer.insert("SecretString".into(), text.into());
        }
        Err(_) => {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(&secret.value);
            answer.insert("SecretBinary".into(), encoded.into());
        }
    }
    serde_json::Value::Object(answer)
}

/// Which version `VersionId` and `VersionStage` ask for (neither: the current one).
pub fn which(version_id: Option<&str>, stage: Option<&str>) -> Result<Which, Error> {
    let by_id = match version_id {
        None => None,
        Some(id) => Some(version_of(id).ok_or_else(|| {
            Error::new(
                ErrorCode::SecretNotFound,
                format!(
                    "Secrets Manager can't find the specified secret value for VersionId: {id}"
                ),
            )
        })?),
    };
    let by_stage = match stage {
        None => None,
        Some(CURRENT) => Some(Which::Current),
        Some(PREVIOUS) => Some(Which::Previous),
        Some(other) => {
            return Err(Error::new(
                ErrorCode::SecretNotFound,
                format!(
                    "Secrets Manager can't find the specified secret value for staging label: \
                     {other}"
                ),
            ));
        }
    };
    Ok(match (by_id, by_stage) {
        (Some(number), _) => Which::Version(number),
        (None, Some(which)) => which,
        (None, None) => Which::Current,
    })
}

/// Who may read which secrets of which app.
enum Reader {
    /// An app's access key: every secret of the app.
    App(String),
    /// A function's credentials: the secrets its grants name.
    Function {
        app: String,
        function: String,
        grants: Arc<nimbus_core::Grants>,
    },
}

impl Reader {
    fn app(&self) -> &str {
        match self {
            Reader::App(app) | Reader::Function { app, .. } => app,
        }
    }

    fn may_read(&self, name: &str) -> bool {
        match self {
            Reader::App(_) => true,
            Reader::Function { grants, .. } => grants.may_read_secret(name),
        }
    }

    fn denied(&self, action: &str, name: &str) -> JsonError {
        let who = match self {
            Reader::App(app) => format!("app {app}"),
            Reader::Function { app, function, .. } => format!("function {app}/{function}"),
        };
        JsonError::new(
            NAMESPACE,
            "AccessDeniedException",
            format!(
                "User: {who} is not authorized to perform: secretsmanager:{action} on resource: \
                 {name} because its grants do not name it (add it to the function's `secrets` \
                 in the manifest)"
            ),
        )
    }
}

fn reader(principal: &Principal) -> Result<Reader, JsonError> {
    match principal {
        Principal::App(app) => Ok(Reader::App(app.clone())),
        Principal::Function {
            app,
            function,
            grants,
        } => Ok(Reader::Function {
            app: app.clone(),
            function: function.clone(),
            grants: grants.clone(),
        }),
        Principal::Operator => Err(JsonError::new(
            NAMESPACE,
            "AccessDeniedException",
            "an operator key belongs to no app, and secrets belong to apps: sign with an app's \
             key (nimbus keys create --app APP)",
        )),
        Principal::Anonymous => Err(JsonError::new(
            "com.amazon.coral.service",
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        )),
    }
}

/// A platform error in Secrets Manager's terms.
fn as_json(error: &Error) -> JsonError {
    match error.code {
        ErrorCode::SecretNotFound => {
            let message = if error.message.starts_with("Secrets Manager") {
                error.message.clone()
            } else {
                "Secrets Manager can't find the specified secret.".to_owned()
            };
            JsonError::new(NAMESPACE, "ResourceNotFoundException", message)
        }
        ErrorCode::BadRequest => JsonError::new(
            NAMESPACE,
            "InvalidParameterException",
            error.message.clone(),
        ),
        _ => JsonError {
            status: 500,
            ..JsonError::new(
                NAMESPACE,
                "InternalServiceError",
                "An error occurred on the server side.",
            )
        },
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretRequest {
    secret_id: Option<String>,
    version_id: Option<String>,
    version_stage: Option<String>,
}

/// Secrets Manager on the AWS-compatible endpoint.
pub struct SecretsManager {
    pub secrets: Arc<Secrets>,
}

impl SecretsManager {
    async fn answer(
        &self,
        reader: &Reader,
        operation: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, JsonError> {
        let app = reader.app();
        match operation {
            "GetSecretValue" | "DescribeSecret" => {
                let request: SecretRequest = serde_json::from_slice(body).map_err(|e| {
                    JsonError::new(
                        NAMESPACE,
                        "InvalidRequestException",
                        format!("the request body is not valid JSON: {e}"),
                    )
                })?;
                let Some(id) = request.secret_id.as_deref() else {
                    return Err(JsonError::new(
                        NAMESPACE,
                        "InvalidParameterException",
                        "You must provide a SecretId.",
                    ));
                };
                let name = name_of(app, id);
                if !reader.may_read(name) {
                    return Err(reader.denied(operation, name));
                }
                if operation == "DescribeSecret" {
                    let mut described = self.describe(app, name).await.map_err(|e| as_json(&e))?;
                    // DescribeSecret names the map `VersionIdsToStages`; ListSecrets does not.
                    if let Some(object) = described.as_object_mut()
                        && let Some(stages) = object.remove("SecretVersionsToStages")
                    {
                        object.insert("VersionIdsToStages".into(), stages);
                    }
                    return Ok(described);
                }
                let which = which(
                    request.version_id.as_deref(),
                    request.version_stage.as_deref(),
                )
                .map_err(|e| as_json(&e))?;
                let secret = self
                    .secrets
                    .get(app, name, which)
                    .await
                    .map_err(|e| as_json(&e))?;
                Ok(secret_value(app, &secret))
            }
            "ListSecrets" => {
                let listed = self.secrets.list(app).await.map_err(|e| as_json(&e))?;
                let list: Vec<serde_json::Value> = listed
                    .iter()
                    .filter(|s| reader.may_read(&s.name))
                    .map(|s| describe(app, s))
                    .collect();
                Ok(serde_json::json!({ "SecretList": list }))
            }
            other => Err(JsonError::new(
                "com.amazon.coral.service",
                "UnknownOperationException",
                format!(
                    "nimbus's Secrets Manager does not offer {other}; it answers GetSecretValue, DescribeSecret and ListSecrets (set secrets with `nimbus secrets set`)"
                ),
            )),
        }
    }

    async fn describe(&self, app: &str, name: &str) -> Result<serde_json::Value, Error> {
        let info = self
            .secrets
            .list(app)
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::new(ErrorCode::SecretNotFound, String::new()))?;
        Ok(describe(app, &info))
    }
}

fn describe(app: &str, info: &nimbus_store::SecretInfo) -> serde_json::Value {
    let previous = info
        .versions
        .iter()
        .rev()
        .map(|v| v.0)
        .find(|v| *v < info.current);
    let mut stages = serde_json::Map::new();
    for (number, _) in &info.versions {
        let mut labels = Vec::new();
        if *number == info.current {
            labels.push(CURRENT);
        }
        if Some(*number) == previous {
            labels.push(PREVIOUS);
        }
        stages.insert(version_id(*number), labels.into());
    }
    let created = info.versions.first().map_or(0, |v| v.1);
    let changed = info.versions.last().map_or(0, |v| v.1);
    serde_json::json!({
        "ARN": arn(app, &info.name),
        "Name": info.name,
        "CreatedDate": seconds(created),
        "LastChangedDate": seconds(changed),
        "SecretVersionsToStages": stages,
    })
}

#[async_trait::async_trait]
impl nimbus_aws::JsonService for SecretsManager {
    fn target(&self) -> &'static str {
        TARGET
    }

    fn signing_names(&self) -> &'static [&'static str] {
        &["secretsmanager"]
    }

    async fn call(&self, principal: &Principal, operation: &str, body: Bytes) -> JsonAnswer {
        let answer = match reader(principal) {
            Ok(reader) => self.answer(&reader, operation, &body).await,
            Err(error) => Err(error),
        };
        match answer {
            Ok(value) => JsonAnswer::Ok(value),
            Err(error) => JsonAnswer::Error(error),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_version_ids_round_trip() {
        let arn = arn("shop", "prod/db-password");
        assert!(
            arn.starts_with(
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db-password-"
            )
        );
        assert_eq!(
            arn.len(),
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:prod/db-password-".len() + 6
        );
        assert_eq!(name_of("shop", &arn), "prod/db-password");
        assert_eq!(name_of("shop", "prod/db-password"), "prod/db-password");
        assert_eq!(
            name_of(
                "shop",
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:api-key"
            ),
            "api-key",
            "a partial ARN names the secret without a suffix"
        );
        assert_eq!(version_of(&version_id(7)), Some(7));
        assert_eq!(version_id(7).len(), 36);
        assert_eq!(version_of("a1b2c3d4-5678-90ab-cdef-EXAMPLE11111"), None);
    }

    #[test]
    fn stages_and_ids_pick_versions() {
        assert_eq!(which(None, None).unwrap(), Which::Current);
        assert_eq!(which(None, Some("AWSPREVIOUS")).unwrap(), Which::Previous);
        assert_eq!(
            which(Some(&version_id(3)), None).unwrap(),
            Which::Version(3)
        );
        assert_eq!(
            which(Some("nope"), None).unwrap_err().code,
            ErrorCode::SecretNotFound
        );
        assert!(
            which(None, Some("AWSPENDING"))
                .unwrap_err()
                .message
                .contains("staging label: AWSPENDING")
        );
    }

    #[test]
    fn binary_values_are_base64() {
        let secret = Secret {
            name: "b".into(),
            version: 1,
            created_ms: 1500,
            current: true,
            previous: false,
            value: vec![0xff, 0x00].into(),
        };
        let answer = secret_value("a", &secret);
        assert_eq!(answer["SecretBinary"], "/wA=");
        assert!(answer.get("SecretString").is_none());
        assert_eq!(answer["CreatedDate"], 1.5);
        assert_eq!(answer["VersionStages"], serde_json::json!(["AWSCURRENT"]));
    }
}
