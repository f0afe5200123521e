//! nimbus's local API for functions: what a Wasm guest reaches at `http://nimbus.internal` and
//! a process function at `$NIMBUS_API`, served in-process. It finds the caller in the deployed
//! snapshot, routes by path prefix to one of the [`Service`]s registered at the composition
//! root, and renders what they answer; each service checks the caller's [`Grants`].
//!
//! [`Grants`]: nimbus_core::Grants

mod bus;
mod queues;

pub(crate) use bus::Bus;
pub(crate) use queues::Queues;

use crate::deployments::Deployments;
use bytes::Bytes;
use nimbus_core::ErrorCode;
use nimbus_core::error::Error;
use nimbus_runtime::{Caller, Service, ServiceRequest, ServiceResponse};
use std::sync::Arc;

pub(crate) struct LocalApi {
    deployments: Deployments,
    /// (path prefix, service), tried in order.
    services: Vec<(&'static str, Arc<dyn Service>)>,
    /// The AWS-compatible endpoint, and the keys that mint functions' credentials.
    aws: Option<(nimbus_aws::Endpoint, nimbus_aws::Keys)>,
    /// Secrets, for the variables set from them at instance start.
    secrets: Option<Arc<nimbus_secrets::Secrets>>,
}

/// How long a function instance's AWS credentials last (Lambda's default session length).
const AWS_SESSION: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

impl LocalApi {
    pub(crate) fn new(deployments: Deployments) -> LocalApi {
        LocalApi {
            deployments,
            services: Vec::new(),
            aws: None,
            secrets: None,
        }
    }

    /// Give functions credentials for, and a way to, the AWS-compatible endpoint.
    pub(crate) fn with_aws(
        mut self,
        service: nimbus_aws::Endpoint,
        keys: nimbus_aws::Keys,
    ) -> LocalApi {
        self.aws = Some((service, keys));
        self
    }

    /// Set functions' `env = { VAR = { secret = … } }` variables from `secrets`.
    pub(crate) fn with_secrets(mut self, secrets: Arc<nimbus_secrets::Secrets>) -> LocalApi {
        self.secrets = Some(secrets);
        self
    }

    /// The variables `caller`'s spec sets from secrets, with their current values.
    async fn secret_variables(&self, caller: &Caller) -> Result<Vec<(String, String)>, Error> {
        let app = calling_app(&self.deployments, caller)?;
        let Some((_, spec)) = app
            .spec
            .functions
            .iter()
            .find(|(name, _)| name.as_str() == &*caller.function)
        else {
            return Ok(Vec::new());
        };
        if spec.secret_env.is_empty() {
            return Ok(Vec::new());
        }
        let Some(secrets) = &self.secrets else {
            return Err(Error::new(
                ErrorCode::Internal,
                "this server has no secret store",
            ));
        };
        let mut variables = Vec::with_capacity(spec.secret_env.len());
        for (variable, name) in &spec.secret_env {
            let secret = secrets
                .get(&caller.app, name, nimbus_secrets::Which::Current)
                .await
                .map_err(|e| {
                    Error::new(
                        e.code,
                        format!("environment variable {variable}: {}", e.message),
                    )
                })?;
            let text = std::str::from_utf8(&secret.value).map_err(|_| {
                Error::new(
                    ErrorCode::BadRequest,
                    format!(
                        "environment variable {variable}: secret {name:?} is not text; read it \
                         from the local API (GET /v1/secrets/{name}) instead"
                    ),
                )
            })?;
            if text.contains('\0') {
                return Err(Error::new(
                    ErrorCode::BadRequest,
                    format!("environment variable {variable}: secret {name:?} holds a NUL byte"),
                ));
            }
            variables.push((variable.clone(), text.to_owned()));
        }
        Ok(variables)
    }

    /// Serve `service` under `prefix` (e.g. `/v1/queues/`).
    pub(crate) fn with(mut self, prefix: &'static str, service: Arc<dyn Service>) -> LocalApi {
        self.services.push((prefix, service));
        self
    }

    async fn serve(
        &self,
        caller: &Caller,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> Result<Bytes, Error> {
        let app = calling_app(&self.deployments, caller)?;
        let spec = app
            .spec
            .functions
            .iter()
            .find(|(name, _)| name.as_str() == &*caller.function)
            .map(|(_, spec)| spec)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::FunctionNotFound,
                    "the calling function is no longer deployed",
                )
            })?;
        let Some((_, service)) = self
            .services
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
        else {
            return Err(not_found(method, path));
        };
        service
            .call(ServiceRequest {
                caller,
                grants: &spec.grants,
                method,
                path,
                query,
                headers,
                body,
            })
            .await
    }
}

/// The answer to a path or method no service serves.
pub(crate) fn not_found(method: &http::Method, path: &str) -> Error {
    Error::new(
        ErrorCode::RouteNotFound,
        format!(
            "no local API {method} {path}; see docs/events.md (POST /v1/queues/QUEUE/messages, POST /v1/events), docs/kv.md (/v1/kv/STORE/keys) and docs/secrets.md (GET /v1/secrets/NAME)"
        ),
    )
}

/// The caller's deployed app (gone only if it was removed mid-call).
fn calling_app(
    deployments: &Deployments,
    caller: &Caller,
) -> Result<Arc<crate::deployments::DeployedApp>, Error> {
    deployments.get(&caller.app).ok_or_else(|| {
        Error::new(
            ErrorCode::FunctionNotFound,
            "the calling function is no longer deployed",
        )
    })
}

impl LocalApi {
    /// The calling function's grants, while it is deployed.
    fn function_grants(&self, caller: &Caller) -> Option<nimbus_core::Grants> {
        let app = self.deployments.get(&caller.app)?;
        let (_, spec) = app
            .spec
            .functions
            .iter()
            .find(|(name, _)| name.as_str() == &*caller.function)?;
        Some(spec.grants.clone())
    }

    /// The endpoint's principal for `caller`: its function, with its grants.
    fn function_principal(&self, caller: &Caller) -> Option<nimbus_aws::Principal> {
        Some(nimbus_aws::Principal::Function {
            app: caller.app.to_string(),
            function: caller.function.to_string(),
            grants: Arc::new(self.function_grants(caller)?),
        })
    }
}

fn header_text(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[async_trait::async_trait]
impl nimbus_runtime::Services for LocalApi {
    fn grants(&self, caller: &Caller) -> Option<nimbus_core::Grants> {
        self.function_grants(caller)
    }

    async fn secret_env(&self, caller: &Caller) -> Result<Vec<(String, String)>, Error> {
        self.secret_variables(caller).await
    }

    fn aws_credentials(&self, caller: &Caller) -> Option<nimbus_runtime::AwsCredentials> {
        let (_, keys) = self.aws.as_ref()?;
        let session = keys.mint_session(self.function_principal(caller)?, AWS_SESSION);
        Some(nimbus_runtime::AwsCredentials {
            access_key_id: session.id,
            secret_access_key: session.secret,
            session_token: session.token,
            expires_ms: session.expires_ms,
        })
    }

    fn release_aws_credentials(&self, access_key_id: &str) {
        if let Some((_, keys)) = &self.aws {
            keys.end_session(access_key_id);
        }
    }

    async fn aws(
        &self,
        _caller: &Caller,
        request: http::Request<nimbus_runtime::Body>,
    ) -> nimbus_runtime::Response {
        let Some((service, _)) = &self.aws else {
            let mut response = http::Response::new(nimbus_runtime::Body::default());
            *response.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
            return response;
        };
        // Who is calling, the signature says: the credentials are the instance's own.
        let id = uuid::Uuid::new_v4().simple().to_string();
        nimbus_aws::call_streaming(service, request, &id).await
    }

    async fn aws_as_caller(
        &self,
        caller: &Caller,
        mut request: http::Request<nimbus_runtime::Body>,
    ) -> nimbus_runtime::Response {
        let (Some((service, _)), Some(principal)) = (&self.aws, self.function_principal(caller))
        else {
            let mut response = http::Response::new(nimbus_runtime::Body::default());
            *response.status_mut() = http::StatusCode::NOT_IMPLEMENTED;
            return response;
        };
        // Who is calling, the executor says: it serves only its own instances' requests.
        request
            .extensions_mut()
            .insert(nimbus_aws::Delegated(principal));
        let id = uuid::Uuid::new_v4().simple().to_string();
        nimbus_aws::call_streaming(service, request, &id).await
    }

    async fn call(
        &self,
        caller: &Caller,
        method: &http::Method,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
        body: Bytes,
    ) -> ServiceResponse {
        match self.serve(caller, method, path, query, headers, body).await {
            Ok(body) => ServiceResponse { status: 200, body },
            Err(error) => {
                let status = nimbus_wire::status_for(error.code);
                // Logged once, here, with its causes.
                if status.is_server_error() {
                    tracing::error!(app = %caller.app, function = %caller.function, code = %error.code, error = %crate::report(&error), "local API call failed");
                } else {
                    tracing::info!(app = %caller.app, function = %caller.function, code = %error.code, message = %error.message, "local API call refused");
                }
                ServiceResponse {
                    status: status.as_u16(),
                    body: nimbus_wire::error_body(error.code, &error.message, None),
                }
            }
        }
    }
}
