//! The typed admin API client.

use crate::*;
use nimbus_core::ErrorCode;

/// A failed API call: either nimbus answered with an error, or it could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message} [{code}, request {request_id}]")]
    Api {
        status: u16,
        code: ErrorCode,
        message: String,
        request_id: String,
    },
    #[error("cannot reach nimbus at {url}: {detail} (is `nimbus serve` or `nimbus up` running?)")]
    Unreachable { url: String, detail: String },
    #[error("unexpected answer from nimbus: {0}")]
    Protocol(String),
}

impl ApiError {
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ApiError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// `base` is the admin URL, e.g. `http://127.0.0.1:8089`.
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Client {
        Client::with_http(base, token, reqwest::Client::new())
    }

    /// [`Client::new`] over a configured HTTP client (one that trusts a private CA, say).
    pub fn with_http(
        base: impl Into<String>,
        token: impl Into<String>,
        http: reqwest::Client,
    ) -> Client {
        Client {
            base: base.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ApiError> {
        let response = self.respond(request).await?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ApiError::Protocol(e.to_string()));
        }
        Err(api_error(status, &bytes))
    }

    pub async fn status(&self) -> Result<Status, ApiError> {
        self.send(self.http.get(self.url("/v1/status"))).await
    }

    /// Upload a component; returns its digest. Uploading the same bytes twice is free.
    pub async fn upload_artifact(&self, bytes: Vec<u8>) -> Result<String, ApiError> {
        let digest = digest_hex(&bytes);
        #[derive(Deserialize)]
        struct Uploaded {
            digest: String,
        }
        let uploaded: Uploaded = self
            .send(
                self.http
                    .put(self.url(&format!("/v1/artifacts/{digest}")))
                    .body(bytes),
            )
            .await?;
        Ok(uploaded.digest)
    }

    pub async fn deploy(&self, request: &DeployRequest) -> Result<DeployResponse, ApiError> {
        self.send(self.http.post(self.url("/v1/deploy")).json(request))
            .await
    }

    pub async fn apps(&self) -> Result<Vec<AppInfo>, ApiError> {
        self.send(self.http.get(self.url("/v1/apps"))).await
    }

    pub async fn functions(&self) -> Result<Vec<FunctionInfo>, ApiError> {
        self.send(self.http.get(self.url("/v1/functions"))).await
    }

    pub async fn routes(&self) -> Result<Vec<RouteInfo>, ApiError> {
        self.send(self.http.get(self.url("/v1/routes"))).await
    }

    pub async fn rollback(&self, app: &str) -> Result<DeployResponse, ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/apps/{app}/rollback"))),
        )
        .await
    }

    /// Remove `app`, its buckets and its access keys; buckets holding objects only with
    /// `force` (else `bucket_not_empty`).
    pub async fn remove(&self, app: &str, force: bool) -> Result<AppInfo, ApiError> {
        let mut request = self.http.delete(self.url(&format!("/v1/apps/{app}")));
        if force {
            request = request.query(&[("force", "true")]);
        }
        self.send(request).await
    }

    pub async fn invoke(
        &self,
        app: &str,
        function: &str,
        request: &InvokeRequest,
        body: Vec<u8>,
    ) -> Result<InvokeResponse, ApiError> {
        let mut query = vec![
            ("method", request.method.clone()),
            ("path", request.path.clone()),
        ];
        for (name, value) in &request.headers {
            query.push(("header", format!("{name}:{value}")));
        }
        self.send(
            self.http
                .post(self.url(&format!("/v1/apps/{app}/functions/{function}/invoke")))
                .query(&query)
                .body(body),
        )
        .await
    }

    /// Records after `after`, or the last `tail` records when `tail` is set.
    pub async fn logs(
        &self,
        app: &str,
        function: &str,
        after: u64,
        tail: Option<usize>,
    ) -> Result<LogsResponse, ApiError> {
        let mut query = vec![("after", after.to_string())];
        if let Some(tail) = tail {
            query.push(("tail", tail.to_string()));
        }
        self.send(
            self.http
                .get(self.url(&format!("/v1/apps/{app}/functions/{function}/logs")))
                .query(&query),
        )
        .await
    }

    /// Usage per function per hour of `app` (or every app) for the hours ending after
    /// `since_ms`.
    pub async fn usage(
        &self,
        app: Option<&str>,
        since_ms: u64,
    ) -> Result<Vec<nimbus_core::UsageRow>, ApiError> {
        let mut query = vec![("since_ms", since_ms.to_string())];
        if let Some(app) = app {
            query.push(("app", app.to_owned()));
        }
        self.send(self.http.get(self.url("/v1/usage")).query(&query))
            .await
    }

    /// Invoke asynchronously with `body` as the raw event: 202 with an invocation id.
    pub async fn invoke_async(
        &self,
        app: &str,
        function: &str,
        body: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<AsyncInvokeResponse, ApiError> {
        let mut request = self
            .http
            .post(self.url(&format!("/v1/apps/{app}/functions/{function}/invoke")))
            .header("x-nimbus-invocation-type", "event")
            .body(body);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        self.send(request).await
    }

    pub async fn invocation(&self, id: &str) -> Result<InvocationStatus, ApiError> {
        self.send(self.http.get(self.url(&format!("/v1/invocations/{id}"))))
            .await
    }

    pub async fn queues(&self) -> Result<Vec<QueueInfo>, ApiError> {
        self.send(self.http.get(self.url("/v1/queues"))).await
    }

    pub async fn send_messages(
        &self,
        app: &str,
        queue: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<SendResponse, ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/apps/{app}/queues/{queue}/messages/batch")))
                .json(&SendBatch { messages }),
        )
        .await
    }

    pub async fn peek(
        &self,
        app: &str,
        queue: &str,
        limit: usize,
    ) -> Result<Vec<PeekedMessage>, ApiError> {
        self.send(
            self.http
                .get(self.url(&format!("/v1/apps/{app}/queues/{queue}/messages")))
                .query(&[("limit", limit.to_string())]),
        )
        .await
    }

    /// Move every message of `queue`'s dead-letter queue back to where it came from.
    pub async fn redrive(&self, app: &str, queue: &str) -> Result<RedriveResponse, ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/apps/{app}/queues/{queue}/redrive"))),
        )
        .await
    }

    /// Publish a structured-mode CloudEvent (JSON) on `app`'s bus.
    pub async fn publish(
        &self,
        app: &str,
        event: &serde_json::Value,
    ) -> Result<PublishResponse, ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/apps/{app}/events")))
                .header("content-type", "application/cloudevents+json")
                .body(event.to_string()),
        )
        .await
    }

    pub async fn create_key(&self, request: &CreateKeyRequest) -> Result<AccessKey, ApiError> {
        self.send(self.http.post(self.url("/v1/keys")).json(request))
            .await
    }

    pub async fn keys(&self) -> Result<Vec<AccessKey>, ApiError> {
        self.send(self.http.get(self.url("/v1/keys"))).await
    }

    pub async fn revoke_key(&self, id: &str) -> Result<AccessKey, ApiError> {
        self.send(self.http.delete(self.url(&format!("/v1/keys/{id}"))))
            .await
    }

    pub async fn tables(&self) -> Result<Vec<TableEntry>, ApiError> {
        self.send(self.http.get(self.url("/v1/tables"))).await
    }

    /// A page of `table`'s items (of `app`, or an operator's table), after `after`.
    pub async fn table_items(
        &self,
        app: Option<&str>,
        table: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<TablePage, ApiError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(app) = app {
            query.push(("app", app.to_owned()));
        }
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        self.send(
            self.http
                .get(self.url(&format!("/v1/tables/{table}/items")))
                .query(&query),
        )
        .await
    }

    pub async fn buckets(&self) -> Result<Vec<BucketEntry>, ApiError> {
        self.send(self.http.get(self.url("/v1/buckets"))).await
    }

    pub async fn create_bucket(
        &self,
        request: &CreateBucketRequest,
    ) -> Result<BucketEntry, ApiError> {
        self.send(self.http.post(self.url("/v1/buckets")).json(request))
            .await
    }

    pub async fn delete_bucket(&self, bucket: &str) -> Result<BucketEntry, ApiError> {
        self.send(self.http.delete(self.url(&format!("/v1/buckets/{bucket}"))))
            .await
    }

    /// Up to `limit` objects of `bucket` under `prefix`, after the key `after`.
    pub async fn objects(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ObjectPage, ApiError> {
        let mut query = vec![("prefix", prefix.to_owned()), ("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        self.send(
            self.http
                .get(self.url(&format!("/v1/buckets/{bucket}/objects")))
                .query(&query),
        )
        .await
    }

    /// Store `body` (streamed) as `bucket`/`key`.
    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        content_type: Option<&str>,
        body: reqwest::Body,
    ) -> Result<ObjectEntry, ApiError> {
        let mut request = self
            .http
            .put(self.url(&object_path(bucket, key)))
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        self.send(request).await
    }

    /// Send `request` with the token; the response, whatever its status.
    async fn respond(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| ApiError::Unreachable {
                url: self.base.clone(),
                detail: e.to_string(),
            })
    }

    /// Read `bucket`/`key`: the response, its body still to stream.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<reqwest::Response, ApiError> {
        self.respond_ok(self.http.get(self.url(&object_path(bucket, key))))
            .await
    }

    /// Send `request` with the token; the response if it succeeded, else its error.
    async fn respond_ok(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let response = self.respond(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        Err(api_error(status, &bytes))
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<ObjectEntry, ApiError> {
        self.send(self.http.delete(self.url(&object_path(bucket, key))))
            .await
    }
}

impl Client {
    /// A page of the app's users, after the id `after`.
    pub async fn users(
        &self,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::UserPage, ApiError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        self.send(
            self.http
                .get(self.url(&format!("/v1/apps/{app}/users")))
                .query(&query),
        )
        .await
    }

    pub async fn create_user(
        &self,
        app: &str,
        request: &crate::CreateUserRequest,
    ) -> Result<crate::UserEntry, ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/apps/{app}/users")))
                .json(request),
        )
        .await
    }

    /// Ban a user for `for_ms` (or until unbanned); their sessions end.
    pub async fn ban_user(
        &self,
        app: &str,
        id: &str,
        for_ms: Option<u64>,
    ) -> Result<crate::UserEntry, ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/apps/{app}/users/{id}/ban")))
                .json(&crate::BanRequest { for_ms }),
        )
        .await
    }

    pub async fn unban_user(&self, app: &str, id: &str) -> Result<crate::UserEntry, ApiError> {
        self.send(
            self.http
                .delete(self.url(&format!("/v1/apps/{app}/users/{id}/ban"))),
        )
        .await
    }

    pub async fn remove_user(&self, app: &str, id: &str) -> Result<crate::UserEntry, ApiError> {
        self.send(
            self.http
                .delete(self.url(&format!("/v1/apps/{app}/users/{id}"))),
        )
        .await
    }

    /// Put a new signing key in front of the app's auth keys.
    pub async fn rotate_auth_keys(&self, app: &str) -> Result<crate::RotatedKey, ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/apps/{app}/auth/keys/rotate"))),
        )
        .await
    }

    /// Make a scoped admin token; the token is in the answer, once.
    pub async fn create_token(
        &self,
        request: &crate::CreateTokenRequest,
    ) -> Result<crate::AdminTokenEntry, ApiError> {
        self.send(self.http.post(self.url("/v1/tokens")).json(request))
            .await
    }

    /// The scoped admin tokens (never the tokens themselves).
    pub async fn tokens(&self) -> Result<Vec<crate::AdminTokenEntry>, ApiError> {
        self.send(self.http.get(self.url("/v1/tokens"))).await
    }

    /// Revoke a scoped admin token.
    pub async fn remove_token(&self, id: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .send(
                self.http
                    .delete(self.url(&format!("/v1/tokens/{}", encode_segment(id)))),
            )
            .await?;
        Ok(())
    }

    /// Admin writes after `after`, oldest first.
    pub async fn audit(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::AuditRecord>, ApiError> {
        self.send(
            self.http
                .get(self.url("/v1/audit"))
                .query(&[("after", after.to_string()), ("limit", limit.to_string())]),
        )
        .await
    }

    /// Make an API key for `app`'s `api_key` authorizers; the key is in the answer, once.
    pub async fn create_api_key(
        &self,
        app: &str,
        request: &crate::CreateApiKeyRequest,
    ) -> Result<crate::ApiKeyEntry, ApiError> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/apps/{app}/apikeys")))
                .json(request),
        )
        .await
    }

    /// The app's API keys (never the keys themselves).
    pub async fn api_keys(&self, app: &str) -> Result<Vec<crate::ApiKeyEntry>, ApiError> {
        self.send(self.http.get(self.url(&format!("/v1/apps/{app}/apikeys"))))
            .await
    }

    /// Revoke an API key.
    pub async fn remove_api_key(&self, app: &str, id: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .send(
                self.http
                    .delete(self.url(&format!("/v1/apps/{app}/apikeys/{}", encode_segment(id)))),
            )
            .await?;
        Ok(())
    }

    /// Set secret `name` of `app` to `value` (a new version); `rotate` refuses a secret that
    /// does not exist yet.
    pub async fn set_secret(
        &self,
        app: &str,
        name: &str,
        value: Vec<u8>,
        rotate: bool,
    ) -> Result<crate::SecretEntry, ApiError> {
        let mut request = self.http.put(self.url(&secret_path(app, name))).body(value);
        if rotate {
            request = request.query(&[("rotate", "true")]);
        }
        self.send(request).await
    }

    /// The app's secrets: names and versions.
    pub async fn secrets(&self, app: &str) -> Result<Vec<crate::SecretEntry>, ApiError> {
        self.send(self.http.get(self.url(&format!("/v1/apps/{app}/secrets"))))
            .await
    }

    /// Remove secret `name` of `app` with every version.
    pub async fn remove_secret(&self, app: &str, name: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self
            .send(self.http.delete(self.url(&secret_path(app, name))))
            .await?;
        Ok(())
    }

    /// The app's key-value stores, by name.
    pub async fn kv_stores(&self, app: &str) -> Result<Vec<String>, ApiError> {
        self.send(self.http.get(self.url(&format!("/v1/apps/{app}/kv"))))
            .await
    }

    /// A page of a store's keys, after `after`.
    pub async fn kv_keys(
        &self,
        app: &str,
        store: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::KvKeys, ApiError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        self.send(
            self.http
                .get(self.url(&format!("/v1/apps/{app}/kv/{store}/keys")))
                .query(&query),
        )
        .await
    }

    /// One key's value.
    pub async fn kv_get(&self, app: &str, store: &str, key: &str) -> Result<Vec<u8>, ApiError> {
        let response = self
            .respond_ok(self.http.get(self.url(&kv_path(app, store, key))))
            .await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiError::Protocol(e.to_string()))?;
        Ok(bytes.to_vec())
    }

    /// Write one key's value, expiring after `ttl_secs` if given.
    pub async fn kv_set(
        &self,
        app: &str,
        store: &str,
        key: &str,
        value: Vec<u8>,
        ttl_secs: Option<u64>,
    ) -> Result<(), ApiError> {
        let mut request = self
            .http
            .put(self.url(&kv_path(app, store, key)))
            .body(value);
        if let Some(ttl) = ttl_secs {
            request = request.query(&[("ttl", ttl.to_string())]);
        }
        let _: serde_json::Value = self.send(request).await?;
        Ok(())
    }

    /// Remove one key; whether it had an entry.
    pub async fn kv_delete(&self, app: &str, store: &str, key: &str) -> Result<bool, ApiError> {
        let answer: serde_json::Value = self
            .send(self.http.delete(self.url(&kv_path(app, store, key))))
            .await?;
        Ok(answer
            .get("deleted")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false))
    }
}

/// A key's bytes percent-encoded, every byte but the unreserved ones (keys may hold `/`).
fn encode_segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// `/v1/apps/{app}/kv/{store}/keys/{key}`.
fn kv_path(app: &str, store: &str, key: &str) -> String {
    format!("/v1/apps/{app}/kv/{store}/keys/{}", encode_segment(key))
}

/// `/v1/apps/{app}/secrets/{name}`, the name in one segment.
fn secret_path(app: &str, name: &str) -> String {
    format!("/v1/apps/{app}/secrets/{}", encode_segment(name))
}

/// `/v1/buckets/{bucket}/objects/{key}`, the key's bytes percent-encoded except `/`.
fn object_path(bucket: &str, key: &str) -> String {
    let key: Vec<String> = key.split('/').map(encode_segment).collect();
    format!("/v1/buckets/{bucket}/objects/{}", key.join("/"))
}

fn api_error(status: reqwest::StatusCode, bytes: &[u8]) -> ApiError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => ApiError::Api {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
            request_id: body.error.request_id.unwrap_or_default(),
        },
        Err(_) => ApiError::Protocol(format!("{status}: {}", String::from_utf8_lossy(bytes))),
    }
}

/// SHA-256 hex of `bytes`: the artifact's address.
fn digest_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
