//! Validated specs of apps, functions and routes: what the manifest means, independent of how
//! it was written. The manifest crate is the only producer; everything else consumes these.

use crate::events::{DeliveryPolicy, EventsSpec};
use crate::{Name, OutboundRule};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Whether an instance serves one request and is discarded, or is kept for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceMode {
    /// Serial reuse, as Lambda does: globals survive between invocations. A trap, timeout or
    /// memory fault always discards the instance.
    #[default]
    Reuse,
    /// A fresh instance per request: strict isolation between requests.
    Fresh,
}

/// A managed or OS-only Lambda runtime for process functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// An executable named `bootstrap` in the code directory speaks the Runtime API itself.
    Provided,
    /// nimbus's Python interface client loads `handler` (`module.function`) with `python3`.
    Python3,
    /// nimbus's Node.js interface client loads `handler` (`module.function`) with `node`.
    Nodejs,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Provided => "provided",
            Runtime::Python3 => "python3",
            Runtime::Nodejs => "nodejs",
        }
    }
}

/// What network a process function sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// Only its own loopback, where the Runtime API listens (where the host permits network
    /// namespaces).
    #[default]
    None,
    /// The host's network, unfiltered.
    Host,
}

/// How a function runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FunctionKind {
    /// A `wasi:http` component on wasmtime.
    #[default]
    Wasm,
    /// A process speaking the AWS Lambda Runtime API.
    Process {
        runtime: Runtime,
        /// `module.function` for managed runtimes; `None` for `provided`.
        handler: Option<String>,
        network: Network,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: Name,
    #[serde(default)]
    pub kind: FunctionKind,
    /// Maximum linear memory per instance, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit per invocation.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
    /// Maximum invocations running at once.
    pub max_concurrency: u32,
    /// The only environment variables the guest sees.
    pub env: BTreeMap<String, String>,
    pub allowed_outbound_hosts: Vec<OutboundRule>,
    pub instance: InstanceMode,
    /// Instances kept warm even when idle.
    #[serde(default)]
    pub min_instances: u32,
    /// How asynchronous deliveries to this function are retried and where results go.
    #[serde(default)]
    pub delivery: DeliveryPolicy,
    /// What this function may touch through the local API.
    #[serde(default)]
    pub grants: Grants,
    /// Environment variables set, at each instance's start, to the current value of a secret:
    /// variable → secret name (each also in `grants.secrets`).
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// What a function may touch beyond its own code, as its manifest grants it: one value that
/// every service checks, deny by default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Grants {
    /// Queues of the app this function may send to (`queues = [...]`).
    #[serde(default)]
    pub queues: Vec<Name>,
    /// Whether this function may publish events to the app's bus (`publish = true`).
    #[serde(default)]
    pub publish: bool,
    /// Buckets of the app this function may read and write (`buckets = [...]`).
    #[serde(default)]
    pub buckets: Vec<BucketGrant>,
    /// Key-value stores of the app this function may use (`kv = [...]`).
    #[serde(default)]
    pub kv: Vec<KvGrant>,
    /// Tables of the app this function may use (`tables = [...]`).
    #[serde(default)]
    pub tables: Vec<TableGrant>,
    /// Secrets of the app this function may read (`secrets = [...]`).
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// The longest secret name.
pub const MAX_SECRET_NAME_BYTES: usize = 512;

/// Is `name` a secret name: 1 to [`MAX_SECRET_NAME_BYTES`] of letters, digits and `/_+=.@-`,
/// as Secrets Manager allows.
pub fn valid_secret_name(name: &str) -> bool {
    (1..=MAX_SECRET_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
}

/// A table an app declares (`[table.NAME]`); created for the app at deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    /// DynamoDB's table name rules: 3 to 255 of `[a-zA-Z0-9_.-]`.
    pub name: String,
    pub partition_key: TableKey,
    #[serde(default)]
    pub sort_key: Option<TableKey>,
    /// The change stream's view type (`NEW_AND_OLD_IMAGES`, …), when the table has one.
    #[serde(default)]
    pub stream: Option<String>,
    /// The attribute holding each item's expiry (epoch seconds), when items expire.
    #[serde(default)]
    pub ttl: Option<String>,
}

/// A key attribute of a declared table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableKey {
    pub name: String,
    /// `S`, `N` or `B`.
    pub kind: String,
}

/// One table a function may use, and whether it may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableGrant {
    pub table: String,
    /// Put, update, delete, transactions (reading is always granted).
    pub write: bool,
}

/// One key-value store a function may use, and whether it may write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvGrant {
    pub store: Name,
    /// Set, delete, increment, swap (reading is always granted).
    pub write: bool,
}

/// A key-value store an app declares (`[kv.NAME]`); created for the app at deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvSpec {
    pub name: Name,
    /// Publish every change (set, delete, expiry) on the app's bus (`events = true`).
    #[serde(default)]
    pub events: bool,
}

/// One bucket a function may touch, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketGrant {
    pub bucket: String,
    /// Get, head and list.
    pub read: bool,
    /// Put, copy into, delete, multipart.
    pub write: bool,
}

/// A bucket an app declares (`[bucket.NAME]`); created for the app at deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSpec {
    pub name: String,
    /// Anyone may read its objects, unsigned (GET and HEAD).
    #[serde(default)]
    pub public_read: bool,
}

/// Is `name` a bucket name as S3 accepts it: 3–63 characters of lower-case letters, digits,
/// dots and hyphens, starting and ending with a letter or digit, no two dots in a row, not an
/// IPv4 address, and none of S3's reserved prefixes and suffixes.
pub fn valid_bucket_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
        && edge(bytes.first())
        && edge(bytes.last())
        && !name.contains("..")
        && name.parse::<std::net::Ipv4Addr>().is_err()
        && !["xn--", "sthree-", "amzn-s3-demo-"]
            .iter()
            .any(|p| name.starts_with(p))
        && !["-s3alias", "--ol-s3", ".mrap", "--x-s3"]
            .iter()
            .any(|s| name.ends_with(s))
}

impl Grants {
    pub fn may_send_to(&self, queue: &str) -> bool {
        self.queues.iter().any(|q| q.as_str() == queue)
    }

    pub fn may_publish(&self) -> bool {
        self.publish
    }

    pub fn may_read_bucket(&self, bucket: &str) -> bool {
        self.buckets.iter().any(|g| g.bucket == bucket && g.read)
    }

    pub fn may_write_bucket(&self, bucket: &str) -> bool {
        self.buckets.iter().any(|g| g.bucket == bucket && g.write)
    }

    /// The grant of key-value store `store`, if any.
    pub fn kv_store(&self, store: &str) -> Option<&KvGrant> {
        self.kv.iter().find(|g| g.store.as_str() == store)
    }

    /// The grant of table `table`, if any.
    pub fn table(&self, table: &str) -> Option<&TableGrant> {
        self.tables.iter().find(|g| g.table == table)
    }

    pub fn may_read_secret(&self, name: &str) -> bool {
        self.secrets.iter().any(|s| s == name)
    }
}

/// One thing a function may touch and what it may do to it, as `nimbus functions --grants`
/// prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// `queue`, `bus`, `bucket`, `kv`, `table`, `secret` or `outbound`.
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl FunctionSpec {
    /// Everything this function may touch beyond its own code, from the one place every
    /// service checks (its [`Grants`] and outbound rules); what is not listed is refused.
    pub fn permissions(&self) -> Vec<Permission> {
        let entry = |kind: &str, name: &str, actions: &[&str]| Permission {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        };
        let read_write = |write: bool| {
            if write {
                &["read", "write"][..]
            } else {
                &["read"][..]
            }
        };
        let grants = &self.grants;
        let mut out = Vec::new();
        out.extend(
            grants
                .queues
                .iter()
                .map(|q| entry("queue", q.as_str(), &["send"])),
        );
        if grants.publish {
            out.push(entry("bus", "default", &["publish"]));
        }
        for bucket in &grants.buckets {
            let actions: Vec<&str> = [("read", bucket.read), ("write", bucket.write)]
                .into_iter()
                .filter_map(|(action, granted)| granted.then_some(action))
                .collect();
            out.push(entry("bucket", &bucket.bucket, &actions));
        }
        out.extend(
            grants
                .kv
                .iter()
                .map(|g| entry("kv", g.store.as_str(), read_write(g.write))),
        );
        out.extend(
            grants
                .tables
                .iter()
                .map(|g| entry("table", &g.table, read_write(g.write))),
        );
        out.extend(grants.secrets.iter().map(|s| entry("secret", s, &["read"])));
        out.extend(
            self.allowed_outbound_hosts
                .iter()
                .map(|rule| entry("outbound", rule.as_str(), &["connect"])),
        );
        out
    }
}

impl FunctionSpec {
    pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;
    pub const MAX_MEMORY_BYTES: u64 = 4 << 30;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
    pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;

    /// A spec with every default, for tests and programmatic deploys.
    pub fn with_defaults(name: Name) -> FunctionSpec {
        FunctionSpec {
            name,
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
            max_concurrency: Self::DEFAULT_MAX_CONCURRENCY,
            env: BTreeMap::new(),
            allowed_outbound_hosts: Vec::new(),
            instance: InstanceMode::Reuse,
            kind: FunctionKind::Wasm,
            min_instances: 0,
            delivery: DeliveryPolicy::default(),
            grants: Grants::default(),
            secret_env: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// `/literal/{param}/{*rest}`.
    pub path: String,
    /// Upper-case methods; empty means any method.
    pub methods: Vec<String>,
    /// Exact host (without port) the route answers on; `None` means any host.
    pub host: Option<String>,
    pub function: Name,
    /// A token bucket checked before the function is touched (`rate_limit = {...}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// The authorizer a request must satisfy before the function is touched (`auth = "NAME"`,
    /// one of the app's `[authorizer.NAME]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Name>,
    /// Scopes of which the credential must carry at least one (API Gateway's authorization
    /// scopes); empty means any valid credential.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Largest request body this route accepts, when smaller than the server's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    /// This route's own CORS policy, in place of the app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
}

/// An app's firewall (`[firewall]`), checked by the gateway for every route of the app before
/// anything else.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FirewallSpec {
    /// Client networks (CIDR, or single addresses) allowed; empty allows every address not
    /// denied.
    pub allow: Vec<String>,
    /// Client networks refused, even when also allowed.
    pub deny: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed; from anyone else it is ignored.
    pub trusted_proxies: Vec<String>,
    /// Most header fields a request may carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_headers: Option<u32>,
    /// Largest total size of a request's header fields (names and values), in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<u32>,
    /// Methods refused outright (upper case).
    pub blocked_methods: Vec<String>,
}

/// How an authorizer decides who may call a route (`[authorizer.NAME]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthorizerSpec {
    /// A bearer JWT signed by a key in the issuer's JWKS.
    Jwt(JwtAuthorizerSpec),
    /// A bearer access token issued by the app's own `[auth]`.
    Auth {
        /// Clock skew tolerated on `exp`.
        #[serde(with = "duration_ms")]
        leeway: Duration,
    },
    /// One of the app's API keys (`nimbus apikeys create`), within its usage plan.
    ApiKey {
        /// The header the key is sent in (lower-case; `x-api-key` by default).
        header: String,
    },
    /// Another function of the app decides, as API Gateway's Lambda request authorizer.
    Function(FunctionAuthorizerSpec),
}

impl AuthorizerSpec {
    /// API Gateway's header for API keys.
    pub const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
}

/// A JWT authorizer, as API Gateway's: the token's `iss` must be `issuer`, its `aud` one of
/// `audience`, its signature by a key the issuer publishes, with one of `algorithms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtAuthorizerSpec {
    pub issuer: String,
    pub audience: Vec<String>,
    /// Where the issuer's keys are; `None` discovers them from
    /// `{issuer}/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Signature algorithms accepted (asymmetric only: `RS256`, `ES256`, …).
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(with = "duration_ms")]
    pub leeway: Duration,
}

impl JwtAuthorizerSpec {
    pub const DEFAULT_ALGORITHMS: [&str; 2] = ["RS256", "ES256"];
    pub const SUPPORTED_ALGORITHMS: [&str; 8] = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    ];
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
}

/// A Lambda-style request authorizer: the app's `function` receives API Gateway's `REQUEST`
/// authorizer event (payload 2.0) and answers allow or deny, in the simple shape
/// (`{"isAuthorized": …, "context": {…}}`) or as an IAM policy; the answer is remembered for
/// `ttl` per identity (the values of `identity_source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionAuthorizerSpec {
    pub function: Name,
    /// Where a request's identity is read; a request missing any of them is refused (401)
    /// without invoking the function.
    pub identity_source: Vec<IdentitySource>,
    /// How long an answer is reused for the same identity; zero asks every time.
    #[serde(with = "duration_ms")]
    pub ttl: Duration,
}

impl FunctionAuthorizerSpec {
    /// API Gateway's default identity source.
    pub const DEFAULT_IDENTITY_SOURCE: &str = "$request.header.Authorization";
    pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
    /// API Gateway's longest result TTL.
    pub const MAX_TTL: Duration = Duration::from_secs(3600);
}

/// One part of a request that identifies its caller to a function authorizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentitySource {
    /// A header (lower-case name): `$request.header.NAME`.
    Header(String),
    /// A query-string parameter: `$request.querystring.NAME`.
    Query(String),
}

impl IdentitySource {
    /// Read API Gateway's selection expression; `None` for anything but a header or a
    /// query-string parameter with a name.
    pub fn parse(expression: &str) -> Option<IdentitySource> {
        let valid = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        };
        if let Some(name) = expression.strip_prefix("$request.header.") {
            let lower = name.to_ascii_lowercase();
            return (valid(name) && !lower.starts_with("x-nimbus-"))
                .then_some(IdentitySource::Header(lower));
        }
        let name = expression.strip_prefix("$request.querystring.")?;
        (!name.is_empty() && !name.contains(['&', '=', '#']))
            .then(|| IdentitySource::Query(name.to_owned()))
    }
}

impl std::fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentitySource::Header(name) => write!(f, "$request.header.{name}"),
            IdentitySource::Query(name) => write!(f, "$request.querystring.{name}"),
        }
    }
}

/// A route's rate limit: a token bucket of `burst` requests refilled at `rate` per `per`,
/// one bucket per client IP, per authenticated caller, or one for the whole route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitSpec {
    /// Requests allowed per `per`, sustained.
    pub rate: u32,
    /// The window `rate` is counted over.
    #[serde(with = "duration_ms")]
    pub per: Duration,
    /// Requests allowed at once after a quiet spell (at least 1).
    pub burst: u32,
    pub by: RateLimitKey,
}

/// Whose requests share one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    /// Each client IP address has its own bucket.
    Ip,
    /// Every client shares the route's one bucket.
    Route,
    /// Each authenticated caller (the verified token's `sub`) has its own bucket; the route
    /// needs an authorizer.
    Subject,
}

impl RateLimitSpec {
    /// A rate as written: `"100/s"`, `"600/min"`, `"5000/h"`, `"10000/day"` (1 to 1,000,000
    /// requests per second, minute, hour or day).
    pub fn parse_rate(text: &str) -> Option<(u32, Duration)> {
        let (count, unit) = text.split_once('/')?;
        let rate: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return None,
        };
        Some((rate, per))
    }
}

/// An app's cross-origin policy (`[cors]`), answered by the gateway for every route of the app.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CorsSpec {
    /// Allowed origins: exact (`https://app.example.com`), with a leading wildcard label
    /// (`https://*.example.com`), or `*` for any.
    pub origins: Vec<String>,
    /// Allowed methods (upper case).
    pub methods: Vec<String>,
    /// Allowed request headers (lower case); `*` allows any.
    pub headers: Vec<String>,
    /// Response headers scripts may read (lower case).
    pub expose_headers: Vec<String>,
    /// Whether cookies and `Authorization` may accompany cross-origin requests.
    pub credentials: bool,
    /// How long a browser may cache a preflight answer.
    #[serde(default, with = "option_duration_ms")]
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppSpec {
    pub name: Name,
    pub functions: BTreeMap<Name, FunctionSpec>,
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub events: EventsSpec,
    #[serde(default)]
    pub buckets: Vec<BucketSpec>,
    #[serde(default)]
    pub kv: Vec<KvSpec>,
    /// Tables the app declares (`[table.NAME]`).
    #[serde(default)]
    pub tables: Vec<TableSpec>,
    /// The app's cross-origin policy (`[cors]`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    /// The app's authorizers (`[authorizer.NAME]`), named by routes' `auth`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorizers: BTreeMap<Name, AuthorizerSpec>,
    /// The app's firewall (`[firewall]`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallSpec>,
    /// The app's end-user auth service (`[auth]`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
}

/// An app's end-user auth (`[auth]`): the GoTrue-compatible API nimbus serves for it on the
/// gateway, its tokens and its rules for passwords and sign-in attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthSpec {
    /// Where the API is mounted on the gateway (`/auth/v1`, where Supabase's clients look
    /// under a project URL).
    pub path: String,
    /// The host it answers on; `None` means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The `iss` of the app's tokens; `None` means the gateway's URL followed by `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where e-mailed links lead by default (GoTrue's `SITE_URL`); a client's `redirect_to`
    /// is honoured only under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_url: Option<String>,
    /// The sender of the app's confirmation and recovery mail (`Todo <noreply@todo.example>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_from: Option<String>,
    /// Whether anyone may sign up (GoTrue's `DISABLE_SIGNUP` is its negation).
    pub signup: bool,
    /// Whether a new address must be confirmed before its user can sign in (GoTrue's
    /// `MAILER_AUTOCONFIRM` is its negation).
    pub confirm_email: bool,
    /// How long an access token is valid.
    #[serde(with = "duration_ms")]
    pub access_token_ttl: Duration,
    /// How long a replaced refresh token still answers (concurrent refreshes of one session).
    #[serde(with = "duration_ms")]
    pub refresh_reuse_interval: Duration,
    /// How long a session may be refreshed after sign-in; `None` means until sign-out.
    #[serde(default, with = "option_duration_ms")]
    pub session_ttl: Option<Duration>,
    pub password_min_length: u32,
    /// Character classes a password must contain: `lowercase`, `uppercase`, `digits`,
    /// `symbols`.
    #[serde(default)]
    pub password_requires: Vec<String>,
    /// Sign-in and sign-up attempts allowed per client address.
    pub attempts_per_ip: RateLimitSpec,
    /// Failed sign-ins allowed per account.
    pub failures_per_account: RateLimitSpec,
}

impl AuthSpec {
    pub const DEFAULT_PATH: &str = "/auth/v1";
    /// The `aud` (and `role`) of a signed-in user's access token, as GoTrue's.
    pub const AUDIENCE: &str = "authenticated";
    /// The algorithm the app's tokens are signed with.
    pub const ALGORITHM: &str = "ES256";
    pub const PASSWORD_CLASSES: [&str; 4] = ["lowercase", "uppercase", "digits", "symbols"];

    /// The defaults of an `[auth]` section with no keys: GoTrue's lifetimes, a minimum
    /// password length of 8 (OWASP's), 30 attempts a minute per address and 5 failures a
    /// minute per account.
    pub fn with_defaults() -> AuthSpec {
        AuthSpec {
            path: AuthSpec::DEFAULT_PATH.into(),
            host: None,
            issuer: None,
            site_url: None,
            mail_from: None,
            signup: true,
            confirm_email: false,
            access_token_ttl: Duration::from_secs(3600),
            refresh_reuse_interval: Duration::from_secs(10),
            session_ttl: None,
            password_min_length: 8,
            password_requires: Vec::new(),
            attempts_per_ip: RateLimitSpec {
                rate: 30,
                per: Duration::from_secs(60),
                burst: 30,
                by: RateLimitKey::Ip,
            },
            failures_per_account: RateLimitSpec {
                rate: 5,
                per: Duration::from_secs(60),
                burst: 5,
                by: RateLimitKey::Subject,
            },
        }
    }
}

pub(crate) mod option_duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.serialize_some(&(d.as_millis() as u64)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}

pub(crate) mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_list_every_grant_with_its_actions() {
        let mut spec = FunctionSpec::with_defaults(Name::new("f").unwrap());
        assert!(spec.permissions().is_empty(), "deny by default");
        spec.grants = Grants {
            queues: vec![Name::new("orders").unwrap()],
            publish: true,
            buckets: vec![BucketGrant {
                bucket: "uploads".into(),
                read: true,
                write: false,
            }],
            kv: vec![KvGrant {
                store: Name::new("sessions").unwrap(),
                write: true,
            }],
            tables: vec![TableGrant {
                table: "catalog".into(),
                write: false,
            }],
            secrets: vec!["stripe_key".into()],
        };
        spec.allowed_outbound_hosts = vec![OutboundRule::parse("https://api.stripe.com").unwrap()];
        let listed: Vec<String> = spec
            .permissions()
            .iter()
            .map(|p| format!("{} {} {}", p.kind, p.name, p.actions.join(",")))
            .collect();
        assert_eq!(
            listed,
            [
                "queue orders send",
                "bus default publish",
                "bucket uploads read",
                "kv sessions read,write",
                "table catalog read",
                "secret stripe_key read",
                "outbound https://api.stripe.com connect",
            ]
        );
    }
}
