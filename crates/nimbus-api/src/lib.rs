//! The admin API's wire types and the typed client the CLI and tests use.
//!
//! The API is versioned by path (`/v1/...`), JSON in and out (artifacts are raw bytes), and
//! requires `Authorization: Bearer <token>`. docs/api.md documents every endpoint. The CLI
//! talks to nimbus only through this client, so anything the CLI can do a script can do too.

use nimbus_core::InvocationRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub mod artifact;
mod client;
pub use client::{ApiError, Client};

pub use nimbus_wire::{Accepted as AsyncInvokeResponse, ErrorBody, ErrorDetail};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployRequest {
    /// The manifest text.
    pub manifest: String,
    /// Where the manifest came from, for error messages (e.g. `examples/hello/nimbus.toml`).
    pub manifest_path: String,
    /// Function name → SHA-256 of its uploaded component.
    pub artifacts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResponse {
    pub app: String,
    pub version: u64,
    pub digest: String,
    pub functions: Vec<LoadedInfo>,
    pub routes: Vec<RouteInfo>,
}

/// How a function's component was made ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadedInfo {
    pub function: String,
    /// `compiled` (a new Wasm component), `unpacked` (a new process function's code) or
    /// `cache` (already prepared on this server).
    pub source: String,
    pub load_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppInfo {
    pub name: String,
    pub active_version: Option<u64>,
    pub latest_version: u64,
    pub functions: Vec<String>,
    pub routes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionInfo {
    pub app: String,
    pub name: String,
    /// `wasm`, or the Lambda runtime (`python3`, `nodejs`, `provided`).
    #[serde(default)]
    pub runtime: String,
    pub version: u64,
    pub artifact: String,
    pub memory_bytes: u64,
    pub timeout_ms: u64,
    pub max_concurrency: u32,
    pub instance: String,
    pub idle_instances: usize,
    pub busy_instances: usize,
    /// What it may touch beyond its own code (deny by default).
    #[serde(default)]
    pub grants: Vec<nimbus_core::Permission>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteInfo {
    pub app: String,
    pub function: String,
    pub path: String,
    pub methods: Vec<String>,
    pub host: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub gateway_url: String,
    pub apps: usize,
    pub functions: usize,
    /// Components compiled since this server started.
    pub compiled: u64,
    /// Components loaded from the compiled-artifact cache since this server started.
    pub cache_hits: u64,
    pub pooling_allocator: bool,
    /// What confines process functions on this host.
    #[serde(default)]
    pub process_sandbox: ProcessSandbox,
    /// Requests the gateway's stages refused since the server started.
    #[serde(default)]
    pub refused: Refused,
}

/// Requests refused before reaching a function, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// By an app's firewall (403 `blocked`).
    pub blocked: u64,
    /// By a route's rate limit (429 `rate_limited`).
    pub rate_limited: u64,
    /// For a missing or bad credential (401 `unauthorized`).
    pub unauthorized: u64,
    /// For a missing scope or a refused CORS preflight (403 `forbidden`).
    pub forbidden: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSandbox {
    pub mount_namespace: bool,
    pub pid_namespace: bool,
    pub network_namespace: bool,
    /// `/tmp` is private to each instance and the rest of the filesystem read-only (needs the
    /// mount namespace and a data directory outside `/tmp`).
    #[serde(default)]
    pub private_tmp: bool,
    /// `"v1"` or `"v2"`; absent when no cgroup hierarchy is writable (see docs/process.md for
    /// what then limits memory).
    pub cgroup: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InvokeRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvokeResponse {
    pub request_id: String,
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    /// The body, when it is UTF-8.
    pub body: Option<String>,
    /// The body base64-encoded, when it is not UTF-8.
    pub body_base64: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsResponse {
    pub records: Vec<InvocationRecord>,
}

/// `app/function` or just `function`.
pub fn split_function_ref(reference: &str) -> (Option<&str>, &str) {
    match reference.split_once('/') {
        Some((app, function)) => (Some(app), function),
        None => (None, reference),
    }
}

/// An asynchronous invocation's status (`GET /v1/invocations/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationStatus {
    pub id: String,
    pub app: String,
    pub function: String,
    /// `queued`, `retrying`, `succeeded` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub enqueued_ms: u64,
    pub updated_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<InvocationResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<InvocationError>,
    /// The queue the event went to when it was given up on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationResult {
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The result was longer than the 256 KiB kept.
    #[serde(default)]
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvocationError {
    pub code: String,
    pub message: String,
}

/// One message to send (`POST /v1/apps/{app}/queues/{queue}/messages/batch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OutgoingMessage {
    /// The body as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body as base64, for binary messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// FIFO group (FIFO queues only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendBatch {
    pub messages: Vec<OutgoingMessage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendResponse {
    /// Message ids, in the order sent.
    pub ids: Vec<String>,
}

/// A queue and its counts (`nimbus queue ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub app: String,
    /// `orders`, `orders.dlq`, `@worker` (a function's asynchronous invocations).
    pub queue: String,
    pub ready: usize,
    pub in_flight: usize,
    pub delayed: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_age_ms: Option<u64>,
}

/// A message as `peek` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeekedMessage {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// `message`, `event`, `raw`, `http` or `record`.
    pub kind: String,
    pub attempts: u32,
    pub enqueued_ms: u64,
    pub in_flight: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// Set for dead-lettered messages: why, from where, and the last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead: Option<DeadInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadInfo {
    /// `RetriesExhausted` or `EventAgeExceeded`.
    pub reason: String,
    pub origin: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveResponse {
    pub moved: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResponse {
    pub id: String,
    /// Rule targets the event was queued for (0: no rule matched; the event was dropped).
    pub matched: usize,
}

/// `POST /v1/keys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateKeyRequest {
    /// The app whose buckets the key reaches; none for an operator-wide key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One end user of an app's auth, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEntry {
    pub id: String,
    pub email: String,
    /// Whether the address is confirmed (users with unconfirmed addresses cannot sign in).
    pub confirmed: bool,
    /// Signing in is refused until then (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banned_until_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sign_in_ms: Option<u64>,
    pub created_ms: u64,
    #[serde(default)]
    pub user_metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub app_metadata: serde_json::Map<String, serde_json::Value>,
}

/// A page of an app's users, by id; `next` continues after the last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPage {
    pub users: Vec<UserEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A user an operator creates (`nimbus users create`): with a password, an imported hash
/// (bcrypt or Argon2, from GoTrue or Auth0), or neither.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateUserRequest {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Whether the address counts as confirmed already.
    #[serde(default)]
    pub confirmed: bool,
    #[serde(default)]
    pub user_metadata: serde_json::Map<String, serde_json::Value>,
}

/// Ban a user: for a while, or (without `for_ms`) until unbanned. Their sessions end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BanRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_ms: Option<u64>,
}

/// The app's signing key after a rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RotatedKey {
    pub kid: String,
}

/// A scoped admin API token, as listed (`token` only in the answer that created it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTokenEntry {
    pub id: String,
    pub name: Option<String>,
    /// `read`, `deploy` or `admin`.
    pub scope: String,
    pub created_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateTokenRequest {
    pub scope: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// One admin write in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub time_ms: u64,
    /// `root` or a token's id.
    pub actor: String,
    pub method: String,
    pub path: String,
    pub status: u16,
}

/// An API key for an app's routes, as listed (`key` only in the answer that created it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyEntry {
    pub id: String,
    pub app: String,
    pub name: Option<String>,
    /// Its rate as requests per `rate_per_ms`, with `burst` at once.
    pub rate: Option<u32>,
    pub rate_per_ms: Option<u64>,
    pub burst: Option<u32>,
    pub quota_per_day: Option<u64>,
    pub created_ms: u64,
    /// The key itself: shown once, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `POST /v1/apps/{app}/apikeys`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateApiKeyRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// `"10/s"`, `"600/min"`, …
    #[serde(default)]
    pub rate: Option<String>,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub quota_per_day: Option<u64>,
}

/// A secret as the admin API lists it: its name and versions, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEntry {
    pub name: String,
    /// The current version's number.
    pub current: u64,
    pub versions: Vec<SecretVersionEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersionEntry {
    pub version: u64,
    pub created_ms: u64,
}

/// An access key for the AWS-compatible endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessKey {
    pub id: String,
    pub app: Option<String>,
    pub created_ms: u64,
    pub description: Option<String>,
    /// Only in the answer to the key's creation; never shown again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `POST /v1/buckets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateBucketRequest {
    pub name: String,
    /// The owning app; none for an operator's bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BucketEntry {
    pub name: String,
    pub app: Option<String>,
    pub created_ms: u64,
}

/// A page of a key-value store's keys, in byte order; `next` is where the following page
/// starts (pass it as `after`), absent on the last page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvKeys {
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A table, as `GET /v1/tables` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableEntry {
    /// The owning app (`None`: an operator's table).
    pub app: Option<String>,
    pub name: String,
    /// `NAME (TYPE)`.
    pub partition_key: String,
    pub sort_key: Option<String>,
    pub items: u64,
    pub size_bytes: u64,
    /// The stream's view type, when the table has a stream.
    pub stream: Option<String>,
    /// The TTL attribute, when items expire.
    pub ttl: Option<String>,
    pub created_ms: u64,
}

/// A page of a table's items, in DynamoDB JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TablePage {
    pub items: Vec<serde_json::Value>,
    /// Where the next page starts (`after`), when there is one.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectEntry {
    pub key: String,
    pub size: u64,
    /// S3's ETag, unquoted.
    pub etag: String,
    pub last_modified_ms: u64,
    pub content_type: Option<String>,
}

/// A page of `GET /v1/buckets/{bucket}/objects`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectPage {
    pub objects: Vec<ObjectEntry>,
    /// More keys follow; ask again with `after` = the last key.
    pub truncated: bool,
}
