//! The local API's `GET /v1/secrets/NAME` (query `versionId` or `versionStage`, as the Lambda
//! extension takes them): the secret as `GetSecretValue` returns it, if the caller's grants
//! name it.

use crate::{Secrets, manager};
use bytes::Bytes;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_runtime::{Service, ServiceRequest};
use std::sync::Arc;

/// The prefix the service is registered under.
pub const PREFIX: &str = "/v1/secrets/";

/// What a request asks for: a secret and which of its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub name: String,
    pub version_id: Option<String>,
    pub version_stage: Option<String>,
}

/// Parse a local API request for a secret (`path` starts with [`PREFIX`]).
pub fn parse(method: &http::Method, path: &str, query: Option<&str>) -> Result<Read, Error> {
    if method != http::Method::GET {
        return Err(Error::new(
            ErrorCode::MethodNotAllowed,
            "secrets are read with GET; they are set by operators (`nimbus secrets set`)",
        ));
    }
    let name = path.strip_prefix(PREFIX).unwrap_or_default();
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .map_err(|_| {
            Error::new(
                ErrorCode::BadRequest,
                format!("{name:?} is not a percent-encoded UTF-8 secret name"),
            )
        })?
        .into_owned();
    // An ARN is resolved against the caller's app later.
    if !crate::valid_name(&name) && !name.starts_with("arn:") {
        return Err(Error::new(
            ErrorCode::BadRequest,
            format!("{name:?} is not a secret name: GET /v1/secrets/NAME"),
        ));
    }
    let mut read = Read {
        name,
        version_id: None,
        version_stage: None,
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "versionId" => read.version_id = Some(value.into_owned()),
            "versionStage" => read.version_stage = Some(value.into_owned()),
            other => {
                return Err(Error::new(
                    ErrorCode::BadRequest,
                    format!("unknown parameter {other:?}: use versionId or versionStage"),
                ));
            }
        }
    }
    Ok(read)
}

/// The local API's secrets.
pub struct LocalSecrets {
    pub secrets: Arc<Secrets>,
}

#[async_trait::async_trait]
impl Service for LocalSecrets {
    async fn call(&self, request: ServiceRequest<'_>) -> Result<Bytes, Error> {
        let mut read = parse(request.method, request.path, request.query)?;
        let app = &*request.caller.app;
        read.name = manager::name_of(app, &read.name).to_owned();
        if !request.grants.may_read_secret(&read.name) {
            return Err(Error::new(
                ErrorCode::Forbidden,
                format!(
                    "function {:?} may not read secret {:?}; add it to the function's `secrets` \
                     in the manifest",
                    request.caller.function, read.name
                ),
            ));
        }
        let which = manager::which(read.version_id.as_deref(), read.version_stage.as_deref())?;
        let secret = self.secrets.get(app, &read.name, which).await?;
        Ok(Bytes::from(manager::secret_value(app, &secret).to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_secret_and_a_version() {
        let get = http::Method::GET;
        assert_eq!(
            parse(
                &get,
                "/v1/secrets/prod%2Fdb",
                Some("versionStage=AWSPREVIOUS")
            )
            .unwrap(),
            Read {
                name: "prod/db".into(),
                version_id: None,
                version_stage: Some("AWSPREVIOUS".into())
            }
        );
        assert_eq!(
            parse(&get, "/v1/secrets/prod/db", None).unwrap().name,
            "prod/db"
        );
        for path in ["/v1/secrets/a%2Bb", "/v1/secrets/a+b"] {
            assert_eq!(
                parse(&get, path, None).unwrap().name,
                "a+b",
                "not form-decoded: {path}"
            );
        }
        for (path, query) in [
            ("/v1/secrets/", None),
            ("/v1/secrets/bad%zz", None),
            ("/v1/secrets/sp ace", None),
            ("/v1/secrets/k", Some("other=1")),
        ] {
            assert_eq!(
                parse(&get, path, query).unwrap_err().code,
                ErrorCode::BadRequest,
                "{path}"
            );
        }
        assert_eq!(
            parse(&http::Method::PUT, "/v1/secrets/k", None)
                .unwrap_err()
                .code,
            ErrorCode::MethodNotAllowed
        );
    }
}
