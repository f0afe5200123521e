//! `nimbus.toml` → validated [`AppSpec`]: the only parser of the manifest format.
//!
//! Parsing has two layers. Serde maps the TOML onto raw structs that mirror the file (unknown
//! keys are errors, so typos never pass silently); then validation turns raw values into specs
//! (sizes, durations, names, outbound rules, route shapes, references between sections). Every
//! error names the file, the line and column, and the dotted key, and says what was expected.
//! The manifest's own paths (component, build) are kept beside the spec in [`Manifest`] because
//! only the CLI, which builds and uploads, needs them; the server deploys from artifacts.

use nimbus_core::{
    AppSpec, AuthSpec, AuthorizerSpec, BucketGrant, BucketSpec, CorsSpec, DeliveryPolicy,
    Destination, EventsSpec, FirewallSpec, FunctionAuthorizerSpec, FunctionKind, FunctionSpec,
    IdentitySource, InstanceMode, JwtAuthorizerSpec, KvGrant, KvSpec, MAX_SECRET_NAME_BYTES,
    Missed, Name, Network, ObjectFilter, OutboundRule, QueueSpec, QueueTriggerSpec, RateLimitKey,
    RateLimitSpec, RouteSpec, RuleSpec, Runtime, ScheduleExpr, ScheduleSpec, StartingPosition,
    StorageTriggerSpec, TableGrant, TableKey, TableSpec, TableTriggerSpec, valid_secret_name,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::ops::Range;
use toml::Spanned;

pub use nimbus_route as route_path;

/// A parsed manifest: the app spec plus what the CLI needs to build and upload it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub app: AppSpec,
    /// Per function: the component path (relative to the manifest) and optional build command.
    pub sources: BTreeMap<Name, FunctionSource>,
    /// What the spec keeps as text, parsed once here so nothing parses it again.
    pub compiled: Compiled,
}

/// The parsed forms of the spec's event rules and schedules.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// The bus rules with their patterns compiled, in `app.events.rules` order.
    pub rules: nimbus_events::Rules,
    /// One per `app.events.schedules` entry, in the same order.
    pub schedules: Vec<nimbus_events::schedule::Schedule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSource {
    /// Relative to the manifest: a `.wasm` component, or a code directory for process
    /// functions.
    pub path: String,
    pub form: SourceForm,
    pub build: Option<String>,
}

/// How a function's artifact is made from its source path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceForm {
    /// The file is uploaded as is.
    Component,
    /// The directory is packed into a tar archive.
    CodeDirectory,
}

/// A manifest error: where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {key}{sep}{message}", sep = if key.is_empty() { "" } else { ": " })]
pub struct ManifestError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted key path, e.g. `function.hello.memory`; empty when the error is not about a key.
    pub key: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: Spanned<String>,
    #[serde(default)]
    function: BTreeMap<Spanned<String>, RawFunction>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    queue: BTreeMap<Spanned<String>, RawQueue>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    bucket: BTreeMap<String, Spanned<RawBucket>>,
    #[serde(default)]
    kv: BTreeMap<String, Spanned<RawKv>>,
    #[serde(default)]
    table: BTreeMap<String, Spanned<RawTable>>,
    cors: Option<Spanned<RawCors>>,
    #[serde(default)]
    authorizer: BTreeMap<Spanned<String>, Spanned<RawAuthorizer>>,
    firewall: Option<Spanned<RawFirewall>>,
    auth: Option<Spanned<RawAuth>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    path: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
    issuer: Option<Spanned<String>>,
    site_url: Option<Spanned<String>>,
    mail_from: Option<Spanned<String>>,
    signup: Option<bool>,
    confirm_email: Option<bool>,
    access_token_ttl: Option<Spanned<String>>,
    refresh_reuse_interval: Option<Spanned<String>>,
    session_ttl: Option<Spanned<String>>,
    password_min_length: Option<Spanned<i64>>,
    #[serde(default)]
    password_requires: Vec<Spanned<String>>,
    attempts_per_ip: Option<Spanned<RawRateLimit>>,
    failures_per_account: Option<Spanned<RawRateLimit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFirewall {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    max_headers: Option<Spanned<i64>>,
    max_header_bytes: Option<Spanned<String>>,
    #[serde(default)]
    blocked_methods: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorizer {
    kind: Spanned<String>,
    issuer: Option<Spanned<String>>,
    audience: Option<Spanned<RawStrings>>,
    jwks_url: Option<Spanned<String>>,
    algorithms: Option<Vec<Spanned<String>>>,
    leeway: Option<Spanned<String>>,
    header: Option<Spanned<String>>,
    function: Option<Spanned<String>>,
    identity_source: Option<Spanned<RawStrings>>,
    ttl: Option<Spanned<String>>,
}

/// A value written as one string or a list of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawStrings {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    origins: Vec<Spanned<String>>,
    methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    headers: Vec<Spanned<String>>,
    #[serde(default)]
    expose_headers: Vec<Spanned<String>>,
    #[serde(default)]
    credentials: bool,
    max_age: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    rate: Spanned<String>,
    burst: Option<Spanned<i64>>,
    by: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKv {
    #[serde(default)]
    events: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    partition_key: Spanned<RawTableKey>,
    sort_key: Option<Spanned<RawTableKey>>,
    stream: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
}

/// A key attribute: `"NAME"` (a string) or `{ name = "NAME", type = "S" | "N" | "B" }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawTableKey {
    Name(String),
    Typed {
        name: String,
        #[serde(rename = "type")]
        kind: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBucket {
    #[serde(default)]
    public_read: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(default)]
    fifo: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTriggers {
    #[serde(default)]
    queue: Vec<Spanned<RawQueueTrigger>>,
    #[serde(default)]
    schedule: Vec<Spanned<RawSchedule>>,
    #[serde(default)]
    event: Vec<Spanned<RawRule>>,
    #[serde(default)]
    storage: Vec<Spanned<RawStorageTrigger>>,
    #[serde(default)]
    table: Vec<Spanned<RawTableTrigger>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTableTrigger {
    table: Spanned<String>,
    function: Spanned<String>,
    batch_size: Option<Spanned<i64>>,
    batching_window: Option<Spanned<String>>,
    starting_position: Option<Spanned<String>>,
    filter: Option<Spanned<toml::Value>>,
    concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorageTrigger {
    bucket: Spanned<String>,
    events: Option<Spanned<Vec<String>>>,
    prefix: Option<String>,
    suffix: Option<String>,
    function: Option<Spanned<String>>,
    queue: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueueTrigger {
    queue: Spanned<String>,
    function: Spanned<String>,
    batch_size: Option<Spanned<i64>>,
    concurrency: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    name: Option<Spanned<String>>,
    cron: Option<Spanned<String>>,
    rate: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    missed: Option<Spanned<String>>,
    function: Spanned<String>,
    payload: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    pattern: Spanned<toml::Value>,
    function: Option<Spanned<String>>,
    queue: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    retries: Option<Spanned<i64>>,
    backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    max_age: Option<Spanned<String>>,
    dead_letter: Option<Spanned<String>>,
    on_success: Option<Spanned<String>>,
    on_failure: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    component: Option<Spanned<String>>,
    runtime: Option<Spanned<String>>,
    handler: Option<Spanned<String>>,
    code: Option<Spanned<String>>,
    network: Option<Spanned<String>>,
    min_instances: Option<Spanned<i64>>,
    build: Option<String>,
    memory: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    max_concurrency: Option<Spanned<i64>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<Spanned<String>>,
    instance: Option<Spanned<String>>,
    delivery: Option<RawDelivery>,
    #[serde(default)]
    queues: Vec<Spanned<String>>,
    publish: Option<bool>,
    #[serde(default)]
    buckets: Vec<Spanned<String>>,
    #[serde(default)]
    kv: Vec<Spanned<String>>,
    #[serde(default)]
    tables: Vec<Spanned<String>>,
    #[serde(default)]
    secrets: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Spanned<String>,
    #[serde(default)]
    methods: Vec<Spanned<String>>,
    host: Option<Spanned<String>>,
    function: Spanned<String>,
    rate_limit: Option<Spanned<RawRateLimit>>,
    auth: Option<Spanned<String>>,
    scopes: Option<Spanned<Vec<String>>>,
    max_body: Option<Spanned<String>>,
    cors: Option<Spanned<RawCors>>,
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// Parse and validate manifest `text`; `file` is only used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Manifest, ManifestError> {
    let mut ctx = Ctx {
        file,
        text,
        queue_names: Vec::new(),
        function_names: Vec::new(),
        bucket_names: Vec::new(),
        kv_names: Vec::new(),
        table_names: Vec::new(),
        authorizer_names: Vec::new(),
        scopeless_authorizers: Vec::new(),
        auth_enabled: false,
    };
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| ctx.at(e.span(), String::new(), e.message().to_owned()))?;
    let raw: RawManifest = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // `Spanned` values show up in the path under toml's private field name.
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        ctx.at(inner.span(), key, inner.message().trim().to_owned())
    })?;

    let app_name = Name::new(raw.name.get_ref())
        .map_err(|e| ctx.at(Some(raw.name.span()), "name".into(), e.to_string()))?;

    // Queues first: functions' grants and policies refer to them.
    let mut queues = Vec::new();
    for (raw_name, q) in &raw.queue {
        let name = Name::new(raw_name.get_ref()).map_err(|e| {
            ctx.at(
                Some(raw_name.span()),
                format!("queue.{}", raw_name.get_ref()),
                e.to_string(),
            )
        })?;
        queues.push(QueueSpec { name, fifo: q.fifo });
    }
    ctx.queue_names = queues.iter().map(|q| q.name.to_string()).collect();
    let mut buckets = Vec::new();
    for (name, b) in &raw.bucket {
        if !nimbus_core::valid_bucket_name(name) {
            return Err(ctx.at(
                Some(b.span()),
                format!("bucket.{name}"),
                "a bucket name is 3-63 lower-case letters, digits, dots and hyphens, starting \
                 and ending with a letter or digit (S3's rules; names are global on the \
                 endpoint)"
                    .into(),
            ));
        }
        buckets.push(BucketSpec {
            name: name.clone(),
            public_read: b.get_ref().public_read,
        });
    }
    ctx.bucket_names = buckets.iter().map(|b| b.name.clone()).collect();
    let mut kv = Vec::new();
    for (raw_name, raw_kv) in &raw.kv {
        let name = Name::new(raw_name)
            .map_err(|e| ctx.at(Some(raw_kv.span()), format!("kv.{raw_name}"), e.to_string()))?;
        kv.push(KvSpec {
            name,
            events: raw_kv.get_ref().events,
        });
    }
    ctx.kv_names = kv.iter().map(|k| k.name.to_string()).collect();
    let mut tables = Vec::new();
    for (name, raw_table) in &raw.table {
        tables.push(table(&ctx, name, raw_table)?);
    }
    ctx.table_names = tables.iter().map(|t| t.name.clone()).collect();
    ctx.function_names = raw.function.keys().map(|k| k.get_ref().clone()).collect();

    let mut functions = BTreeMap::new();
    let mut sources = BTreeMap::new();
    for (raw_name, f) in raw.function {
        let (name, spec, source) = function(&ctx, raw_name, f)?;
        sources.insert(name.clone(), source);
        functions.insert(name, spec);
    }
    let cors = raw
        .cors
        .as_ref()
        .map(|c| cors(&ctx, "cors", c.get_ref()))
        .transpose()?;
    let auth = raw
        .auth
        .as_ref()
        .map(|a| auth(&ctx, a.get_ref()))
        .transpose()?;
    ctx.auth_enabled = auth.is_some();
    let mut authorizers = BTreeMap::new();
    for (raw_name, raw_authorizer) in &raw.authorizer {
        let (name, spec) = authorizer(&ctx, raw_name, raw_authorizer)?;
        authorizers.insert(name, spec);
    }
    ctx.authorizer_names = authorizers.keys().map(|n| n.to_string()).collect();
    ctx.scopeless_authorizers = authorizers
        .iter()
        .filter_map(|(n, spec)| match spec {
            AuthorizerSpec::ApiKey { .. } => Some((n.to_string(), "takes API keys")),
            AuthorizerSpec::Function(_) => Some((n.to_string(), "takes a function's answers")),
            _ => None,
        })
        .collect();
    let firewall = raw
        .firewall
        .as_ref()
        .map(|f| firewall(&ctx, f.get_ref()))
        .transpose()?;
    let routes = raw
        .route
        .iter()
        .enumerate()
        .map(|(index, r)| route(&ctx, index, r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut queue_triggers = Vec::new();
    for (index, t) in raw.trigger.queue.iter().enumerate() {
        let trigger = queue_trigger(&ctx, index, t, &queue_triggers)?;
        queue_triggers.push(trigger);
    }
    let mut schedules = Vec::new();
    let mut parsed_schedules = Vec::new();
    for (index, s) in raw.trigger.schedule.iter().enumerate() {
        let (spec, parsed) = schedule(&ctx, index, s, &schedules)?;
        schedules.push(spec);
        parsed_schedules.push(parsed);
    }
    let mut rules = Vec::new();
    let mut patterns = Vec::new();
    for (index, r) in raw.trigger.event.iter().enumerate() {
        let (spec, pattern) = rule(&ctx, index, r)?;
        patterns.push((spec.name.clone(), pattern, spec.target.clone()));
        rules.push(spec);
    }
    let storage_triggers = raw
        .trigger
        .storage
        .iter()
        .enumerate()
        .map(|(index, t)| storage_trigger(&ctx, index, t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut table_triggers = Vec::new();
    for (index, t) in raw.trigger.table.iter().enumerate() {
        let trigger = table_trigger(&ctx, index, t, &tables, &table_triggers)?;
        table_triggers.push(trigger);
    }
    let events = EventsSpec {
        queues,
        queue_triggers,
        schedules,
        rules,
        storage_triggers,
        table_triggers,
    };
    Ok(Manifest {
        app: AppSpec {
            name: app_name,
            functions,
            routes,
            events,
            buckets,
            kv,
            tables,
            cors,
            authorizers,
            firewall,
            auth,
        },
        sources,
        compiled: Compiled {
            rules: nimbus_events::Rules::new(patterns),
            schedules: parsed_schedules,
        },
    })
}

/// A declared table: DynamoDB's name rules, key types S, N or B, one of DynamoDB's stream
/// view types.
fn table(ctx: &Ctx, name: &str, raw: &Spanned<RawTable>) -> Result<TableSpec, ManifestError> {
    let key = format!("table.{name}");
    let valid_name = (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid_name {
        return Err(ctx.at(
            Some(raw.span()),
            key,
            "a table name is 3 to 255 letters, digits, '_', '-' or '.'".to_owned(),
        ));
    }
    let table_key = |raw_key: &Spanned<RawTableKey>, which: &str| {
        let (name, kind) = match raw_key.get_ref() {
            RawTableKey::Name(name) => (name.clone(), "S".to_owned()),
            RawTableKey::Typed { name, kind } => (name.clone(), kind.clone()),
        };
        if name.is_empty() || name.len() > 255 {
            return Err(ctx.at(
                Some(raw_key.span()),
                format!("{key}.{which}"),
                "a key attribute's name is 1 to 255 bytes".to_owned(),
            ));
        }
        if !matches!(kind.as_str(), "S" | "N" | "B") {
            return Err(ctx.at(
                Some(raw_key.span()),
                format!("{key}.{which}"),
                format!("{kind:?} is not a key type: write \"S\" (string), \"N\" (number) or \"B\" (binary)"),
            ));
        }
        Ok(TableKey { name, kind })
    };
    let table = raw.get_ref();
    let partition_key = table_key(&table.partition_key, "partition_key")?;
    let sort_key = table
        .sort_key
        .as_ref()
        .map(|k| table_key(k, "sort_key"))
        .transpose()?;
    if sort_key
        .as_ref()
        .is_some_and(|s| s.name == partition_key.name)
    {
        return Err(ctx.at(
            table.sort_key.as_ref().map(Spanned::span),
            format!("{key}.sort_key"),
            "the sort key must be another attribute than the partition key".to_owned(),
        ));
    }
    const VIEWS: [&str; 4] = ["NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY"];
    if let Some(stream) = &table.stream
        && !VIEWS.contains(&stream.get_ref().as_str())
    {
        return Err(ctx.at(
            Some(stream.span()),
            format!("{key}.stream"),
            format!(
                "{:?} is not a stream view type: write one of {}",
                stream.get_ref(),
                VIEWS.join(", ")
            ),
        ));
    }
    Ok(TableSpec {
        name: name.to_owned(),
        partition_key,
        sort_key,
        stream: table.stream.as_ref().map(|s| s.get_ref().clone()),
        ttl: table.ttl.as_ref().map(|t| t.get_ref().clone()),
    })
}

/// What every section's parser needs: where errors point, and the names declared elsewhere in
/// the file (grants, policies and triggers refer to queues and functions).
struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
    queue_names: Vec<String>,
    function_names: Vec<String>,
    bucket_names: Vec<String>,
    kv_names: Vec<String>,
    table_names: Vec<String>,
    authorizer_names: Vec<String>,
    /// The authorizers whose credentials carry no scopes, and what they take.
    scopeless_authorizers: Vec<(String, &'static str)>,
    /// Whether the manifest has an `[auth]` section.
    auth_enabled: bool,
}

impl Ctx<'_> {
    /// An error at `span` (line and column computed from the text), under `key`.
    fn at(&self, span: Option<Range<usize>>, key: String, message: String) -> ManifestError {
        let offset = self
            .text
            .floor_char_boundary(span.map(|s| s.start).unwrap_or(0));
        let before = self.text.get(..offset).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
        ManifestError {
            file: self.file.to_owned(),
            line,
            column,
            key,
            message,
        }
    }

    fn known(names: &[&str]) -> String {
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }

    /// A declared queue's name.
    fn queue_ref(&self, value: &Spanned<String>, key: String) -> Result<Name, ManifestError> {
        let names: Vec<&str> = self.queue_names.iter().map(String::as_str).collect();
        Name::new(value.get_ref())
            .ok()
            .filter(|n| names.contains(&n.as_str()))
            .ok_or_else(|| {
                self.at(
                    Some(value.span()),
                    key,
                    format!(
                        "no queue {:?} in this manifest (declared: {}); declare it as [queue.{}]",
                        value.get_ref(),
                        Ctx::known(&names),
                        value.get_ref()
                    ),
                )
            })
    }

    /// A table grant: `"NAME"` (read and write) or `"NAME:read"`, naming a declared table.
    fn table_grant(
        &self,
        value: &Spanned<String>,
        key: String,
    ) -> Result<TableGrant, ManifestError> {
        let (table, write) = match value.get_ref().rsplit_once(':') {
            None => (value.get_ref().as_str(), true),
            Some((table, "read")) => (table, false),
            Some((_, other)) => {
                return Err(self.at(
                    Some(value.span()),
                    key,
                    format!(
                        "{other:?} is not an access: write \"TABLE\" (read and write) or \
                         \"TABLE:read\""
                    ),
                ));
            }
        };
        let names: Vec<&str> = self.table_names.iter().map(String::as_str).collect();
        if !names.contains(&table) {
            return Err(self.at(
                Some(value.span()),
                key,
                format!(
                    "no table {table:?} in this manifest (declared: {}); declare it as \
                     [table.{table}]",
                    Ctx::known(&names)
                ),
            ));
        }
        Ok(TableGrant {
            table: table.to_owned(),
            write,
        })
    }

    /// A secret's name, as `secrets = [...]` and `env = { VAR = { secret = "NAME" } }` give
    /// it (secrets are set apart from deploys, so it need not exist yet).
    fn secret_name(&self, value: &Spanned<String>, key: String) -> Result<String, ManifestError> {
        let name = value.get_ref();
        if valid_secret_name(name) {
            return Ok(name.clone());
        }
        Err(self.at(
            Some(value.span()),
            key,
            format!(
                "{name:?} is not a secret name: use 1 to {MAX_SECRET_NAME_BYTES} letters, digits \
                 and /_+=.@-"
            ),
        ))
    }

    /// A key-value grant: `"NAME"` (read and write) or `"NAME:read"`, naming a declared store.
    fn kv_grant(&self, value: &Spanned<String>, key: String) -> Result<KvGrant, ManifestError> {
        let (store, write) = match value.get_ref().split_once(':') {
            None => (value.get_ref().as_str(), true),
            Some((store, "read")) => (store, false),
            Some((_, other)) => {
                return Err(self.at(
                    Some(value.span()),
                    key,
                    format!(
                        "{other:?} is not an access: write \"STORE\" (read and write) or \
                         \"STORE:read\""
                    ),
                ));
            }
        };
        let names: Vec<&str> = self.kv_names.iter().map(String::as_str).collect();
        let Some(store) = Name::new(store)
            .ok()
            .filter(|n| names.contains(&n.as_str()))
        else {
            return Err(self.at(
                Some(value.span()),
                key,
                format!(
                    "no key-value store {store:?} in this manifest (declared: {}); declare it \
                     as [kv.{store}]",
                    Ctx::known(&names)
                ),
            ));
        };
        Ok(KvGrant { store, write })
    }

    /// A bucket grant: `"NAME"` (read and write), `"NAME:read"` or `"NAME:write"`, naming a
    /// declared bucket.
    fn bucket_grant(
        &self,
        value: &Spanned<String>,
        key: String,
    ) -> Result<BucketGrant, ManifestError> {
        let (bucket, read, write) = match value.get_ref().split_once(':') {
            None => (value.get_ref().as_str(), true, true),
            Some((bucket, "read")) => (bucket, true, false),
            Some((bucket, "write")) => (bucket, false, true),
            Some((_, other)) => {
                return Err(self.at(
                    Some(value.span()),
                    key,
                    format!(
                        "{other:?} is not an access: write \"BUCKET\" (read and write), \
                         \"BUCKET:read\" or \"BUCKET:write\""
                    ),
                ));
            }
        };
        if !self.bucket_names.iter().any(|b| b == bucket) {
            let names: Vec<&str> = self.bucket_names.iter().map(String::as_str).collect();
            return Err(self.at(
                Some(value.span()),
                key,
                format!(
                    "no bucket {bucket:?} in this manifest (declared: {}); declare it as \
                     [bucket.{bucket}]",
                    Ctx::known(&names)
                ),
            ));
        }
        Ok(BucketGrant {
            bucket: bucket.to_owned(),
            read,
            write,
        })
    }

    /// A declared function's name.
    fn function_ref(&self, value: &Spanned<String>, key: String) -> Result<Name, ManifestError> {
        Name::new(value.get_ref())
            .ok()
            .filter(|n| self.function_names.iter().any(|f| f == n.as_str()))
            .ok_or_else(|| {
                let names: Vec<&str> = self.function_names.iter().map(String::as_str).collect();
                self.at(
                    Some(value.span()),
                    key,
                    format!(
                        "no function {:?} in this manifest (declared: {})",
                        value.get_ref(),
                        Ctx::known(&names)
                    ),
                )
            })
    }

    /// A size like `"64KiB"` or `"1MB"` (or a plain number of bytes), from `min` to `max`.
    fn size(
        &self,
        value: &Spanned<String>,
        key: String,
        min: u64,
        max: u64,
    ) -> Result<u64, ManifestError> {
        let text = value.get_ref();
        let bytes = text
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .ok()
            .filter(|n| (min..=max).contains(n));
        bytes.ok_or_else(|| {
            self.at(
                Some(value.span()),
                key,
                format!(
                    "expected a size like \"64KiB\" or \"10MB\" from {} to {}, got {text:?}",
                    bytesize::ByteSize::b(min).display().iec(),
                    bytesize::ByteSize::b(max).display().iec()
                ),
            )
        })
    }

    /// A host name without scheme or port, lower-cased.
    fn host(&self, value: &Spanned<String>, key: String) -> Result<String, ManifestError> {
        let h = value.get_ref().to_ascii_lowercase();
        if h.is_empty() || h.contains(['/', ':', ' ']) {
            return Err(self.at(
                Some(value.span()),
                key,
                format!(
                    "expected a host name without scheme or port, got {:?}",
                    value.get_ref()
                ),
            ));
        }
        Ok(h)
    }

    /// An `http://` or `https://` URL with a host, as written; `what` says what it is for.
    fn http_url(
        &self,
        value: &Spanned<String>,
        key: String,
        what: &str,
    ) -> Result<String, ManifestError> {
        let v = value.get_ref();
        let valid = ["https://", "http://"].iter().any(|scheme| {
            v.strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        }) && !v.contains(char::is_whitespace);
        if valid {
            Ok(v.clone())
        } else {
            Err(self.at(
                Some(value.span()),
                key,
                format!("expected {what} (an http:// or https:// URL), got {v:?}"),
            ))
        }
    }

    fn duration(
        &self,
        value: &Spanned<String>,
        key: String,
    ) -> Result<std::time::Duration, ManifestError> {
        humantime::parse_duration(value.get_ref()).map_err(|_| {
            self.at(
                Some(value.span()),
                key,
                format!(
                    "expected a duration like \"30s\" or \"6h\", got {:?}",
                    value.get_ref()
                ),
            )
        })
    }
}

/// One `[function.NAME]` table.
fn function(
    ctx: &Ctx<'_>,
    raw_name: Spanned<String>,
    f: RawFunction,
) -> Result<(Name, FunctionSpec, FunctionSource), ManifestError> {
    let key = |field: &str| format!("function.{}.{field}", raw_name.get_ref());
    let name = Name::new(raw_name.get_ref()).map_err(|e| {
        ctx.at(
            Some(raw_name.span()),
            format!("function.{}", raw_name.get_ref()),
            e.to_string(),
        )
    })?;
    let mut spec = FunctionSpec::with_defaults(name.clone());
    if let Some(memory) = &f.memory {
        let parsed: bytesize::ByteSize = memory.get_ref().parse().map_err(|_| {
            ctx.at(
                Some(memory.span()),
                key("memory"),
                format!(
                    "expected a size like \"128MiB\", got {:?}",
                    memory.get_ref()
                ),
            )
        })?;
        if parsed.as_u64() < (1 << 20) || parsed.as_u64() > FunctionSpec::MAX_MEMORY_BYTES {
            return Err(ctx.at(
                Some(memory.span()),
                key("memory"),
                "expected a size between 1MiB and 4GiB".into(),
            ));
        }
        spec.memory_bytes = parsed.as_u64();
    }
    if let Some(timeout) = &f.timeout {
        let parsed = humantime::parse_duration(timeout.get_ref()).map_err(|_| {
            ctx.at(
                Some(timeout.span()),
                key("timeout"),
                format!(
                    "expected a duration like \"5s\" or \"250ms\", got {:?}",
                    timeout.get_ref()
                ),
            )
        })?;
        if parsed.is_zero() || parsed > FunctionSpec::MAX_TIMEOUT {
            return Err(ctx.at(
                Some(timeout.span()),
                key("timeout"),
                "expected a duration above 0 and at most 15m".into(),
            ));
        }
        spec.timeout = parsed;
    }
    if let Some(max) = &f.max_concurrency {
        let value = *max.get_ref();
        if !(1..=10_000).contains(&value) {
            return Err(ctx.at(
                Some(max.span()),
                key("max_concurrency"),
                format!("expected a number from 1 to 10000, got {value}"),
            ));
        }
        spec.max_concurrency = value as u32;
    }
    for secret in &f.secrets {
        let name = ctx.secret_name(secret, key("secrets"))?;
        if !spec.grants.secrets.contains(&name) {
            spec.grants.secrets.push(name);
        }
    }
    for (env_key, value) in &f.env {
        let valid = !env_key.get_ref().is_empty()
            && !env_key.get_ref().contains(['=', '\0'])
            && !matches!(value.get_ref(), toml::Value::String(text) if text.contains('\0'));
        if !valid {
            return Err(ctx.at(
                Some(env_key.span()),
                key("env"),
                format!("invalid environment variable name {:?}", env_key.get_ref()),
            ));
        }
        let secret = match value.get_ref() {
            toml::Value::String(text) => {
                spec.env.insert(env_key.get_ref().clone(), text.clone());
                continue;
            }
            toml::Value::Table(table) if table.len() == 1 => table.get("secret"),
            _ => None,
        };
        let Some(toml::Value::String(secret)) = secret else {
            return Err(ctx.at(
                Some(value.span()),
                format!("{}.{}", key("env"), env_key.get_ref()),
                "expected a string or { secret = \"NAME\" }".to_owned(),
            ));
        };
        // Naming a secret in `env` grants it: the manifest says so in one place.
        let name = ctx.secret_name(
            &Spanned::new(value.span(), secret.clone()),
            format!("{}.{}", key("env"), env_key.get_ref()),
        )?;
        if !spec.grants.secrets.contains(&name) {
            spec.grants.secrets.push(name.clone());
        }
        spec.secret_env.insert(env_key.get_ref().clone(), name);
    }
    for host in &f.allowed_outbound_hosts {
        let rule = OutboundRule::parse(host.get_ref()).map_err(|e| {
            ctx.at(
                Some(host.span()),
                key("allowed_outbound_hosts"),
                e.to_string(),
            )
        })?;
        spec.allowed_outbound_hosts.push(rule);
    }
    if let Some(instance) = &f.instance {
        spec.instance = match instance.get_ref().as_str() {
            "reuse" => InstanceMode::Reuse,
            "fresh" => InstanceMode::Fresh,
            other => {
                return Err(ctx.at(
                    Some(instance.span()),
                    key("instance"),
                    format!("expected \"reuse\" or \"fresh\", got {other:?}"),
                ));
            }
        };
    }
    if let Some(min) = &f.min_instances {
        let value = *min.get_ref();
        if value < 0 || value > i64::from(spec.max_concurrency) {
            return Err(ctx.at(
                Some(min.span()),
                key("min_instances"),
                format!(
                    "expected a number from 0 to max_concurrency ({}), got {value}",
                    spec.max_concurrency
                ),
            ));
        }
        spec.min_instances = value as u32;
    }
    for queue in &f.queues {
        spec.grants
            .queues
            .push(ctx.queue_ref(queue, key("queues"))?);
    }
    spec.grants.publish = f.publish.unwrap_or(false);
    for grant in &f.buckets {
        spec.grants
            .buckets
            .push(ctx.bucket_grant(grant, key("buckets"))?);
    }
    for grant in &f.kv {
        spec.grants.kv.push(ctx.kv_grant(grant, key("kv"))?);
    }
    for grant in &f.tables {
        spec.grants
            .tables
            .push(ctx.table_grant(grant, key("tables"))?);
    }
    if let Some(raw) = &f.delivery {
        delivery(ctx, &key, raw, &mut spec.delivery)?;
    }
    let (path, form) = source(ctx, &raw_name, &key, &f, &mut spec)?;
    Ok((
        name,
        spec,
        FunctionSource {
            path,
            form,
            build: f.build.clone(),
        },
    ))
}

/// A function's `delivery = { ... }` policy, over the defaults in `policy`.
fn delivery(
    ctx: &Ctx<'_>,
    key: &dyn Fn(&str) -> String,
    delivery: &RawDelivery,
    policy: &mut DeliveryPolicy,
) -> Result<(), ManifestError> {
    if let Some(retries) = &delivery.retries {
        let value = *retries.get_ref();
        if !(0..=i64::from(DeliveryPolicy::MAX_RETRIES)).contains(&value) {
            return Err(ctx.at(
                Some(retries.span()),
                key("delivery.retries"),
                format!(
                    "expected a number from 0 to {}, got {value}",
                    DeliveryPolicy::MAX_RETRIES
                ),
            ));
        }
        policy.retries = value as u32;
    }
    if let Some(v) = &delivery.backoff {
        policy.backoff = ctx.duration(v, key("delivery.backoff"))?;
    }
    if let Some(v) = &delivery.max_backoff {
        policy.max_backoff = ctx.duration(v, key("delivery.max_backoff"))?;
    }
    if let Some(v) = &delivery.max_age {
        policy.max_age = ctx.duration(v, key("delivery.max_age"))?;
        if policy.max_age < std::time::Duration::from_secs(1) {
            return Err(ctx.at(
                Some(v.span()),
                key("delivery.max_age"),
                "expected at least 1s".into(),
            ));
        }
    }
    if policy.max_backoff < policy.backoff {
        policy.max_backoff = policy.backoff;
    }
    if let Some(v) = &delivery.dead_letter {
        policy.dead_letter = Some(ctx.queue_ref(v, key("delivery.dead_letter"))?);
    }
    for (field, raw_value, slot) in [
        ("on_success", &delivery.on_success, &mut policy.on_success),
        ("on_failure", &delivery.on_failure, &mut policy.on_failure),
    ] {
        let Some(value) = raw_value else { continue };
        let field_key = key(&format!("delivery.{field}"));
        let destination = match value.get_ref().split_once(':') {
            Some(("function", name)) => Destination::Function(
                ctx.function_ref(&Spanned::new(value.span(), name.to_owned()), field_key)?,
            ),
            Some(("queue", name)) => Destination::Queue(
                ctx.queue_ref(&Spanned::new(value.span(), name.to_owned()), field_key)?,
            ),
            _ => {
                return Err(ctx.at(
                    Some(value.span()),
                    field_key,
                    format!(
                        "expected \"function:NAME\" or \"queue:NAME\", got {:?}",
                        value.get_ref()
                    ),
                ));
            }
        };
        *slot = Some(destination);
    }
    Ok(())
}

/// Where a function's code is and what runs it: a Wasm `component`, or `runtime` + `code`
/// (+ `handler`, `network`) for a Lambda-style process. Sets `spec.kind`.
fn source(
    ctx: &Ctx<'_>,
    raw_name: &Spanned<String>,
    key: &dyn Fn(&str) -> String,
    f: &RawFunction,
    spec: &mut FunctionSpec,
) -> Result<(String, SourceForm), ManifestError> {
    let here = |field: &Option<Spanned<String>>| field.as_ref().map(|v| v.span());
    Ok(match (&f.component, &f.runtime) {
        (Some(component), None) => {
            for (field, span) in [
                ("handler", here(&f.handler)),
                ("code", here(&f.code)),
                ("network", here(&f.network)),
            ] {
                if span.is_some() {
                    return Err(ctx.at(
                        span,
                        key(field),
                        format!(
                            "`{field}` is for process functions (with `runtime`); a component function takes `component` only"
                        ),
                    ));
                }
            }
            if component.get_ref().trim().is_empty() {
                return Err(ctx.at(
                    Some(component.span()),
                    key("component"),
                    "expected the path of a .wasm component".into(),
                ));
            }
            (component.get_ref().clone(), SourceForm::Component)
        }
        (None, Some(runtime)) => {
            let runtime_value = match runtime.get_ref().as_str() {
                "provided" | "provided.al2" | "provided.al2023" => Runtime::Provided,
                "python3" => Runtime::Python3,
                "nodejs" => Runtime::Nodejs,
                other => {
                    return Err(ctx.at(
                        Some(runtime.span()),
                        key("runtime"),
                        format!("expected \"provided\", \"python3\" or \"nodejs\", got {other:?}"),
                    ));
                }
            };
            let Some(code) = &f.code else {
                return Err(ctx.at(
                    Some(runtime.span()),
                    key("code"),
                    "a process function needs `code`, the directory holding its handler (or `bootstrap`)".into(),
                ));
            };
            if code.get_ref().trim().is_empty() {
                return Err(ctx.at(
                    Some(code.span()),
                    key("code"),
                    "expected the path of a directory".into(),
                ));
            }
            let handler = match (runtime_value, &f.handler) {
                (Runtime::Provided, None) => None,
                (Runtime::Provided, Some(handler)) => Some(handler.get_ref().clone()),
                (_, None) => {
                    return Err(ctx.at(
                        Some(runtime.span()),
                        key("handler"),
                        "a managed runtime needs `handler = \"module.function\"`".into(),
                    ));
                }
                (_, Some(handler)) => {
                    let valid =
                        handler
                            .get_ref()
                            .rsplit_once('.')
                            .is_some_and(|(module, function)| {
                                !module.is_empty()
                                    && !function.is_empty()
                                    && !module.starts_with('/')
                                    && !module.split('/').any(|part| part == "..")
                                    && function
                                        .chars()
                                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
                            });
                    if !valid {
                        return Err(ctx.at(
                            Some(handler.span()),
                            key("handler"),
                            format!(
                                "expected \"module.function\" (e.g. \"app.handler\"), got {:?}",
                                handler.get_ref()
                            ),
                        ));
                    }
                    Some(handler.get_ref().clone())
                }
            };
            let network = match f.network.as_ref().map(|n| n.get_ref().as_str()) {
                None | Some("none") => Network::None,
                Some("host") => Network::Host,
                Some(other) => {
                    return Err(ctx.at(
                        here(&f.network),
                        key("network"),
                        format!("expected \"none\" or \"host\", got {other:?}"),
                    ));
                }
            };
            if let Some(first) = f.allowed_outbound_hosts.first() {
                return Err(ctx.at(
                    Some(first.span()),
                    key("allowed_outbound_hosts"),
                    "process functions cannot be limited per host; use `network = \"host\"` to give the process the host's network, unfiltered".into(),
                ));
            }
            spec.kind = FunctionKind::Process {
                runtime: runtime_value,
                handler,
                network,
            };
            (code.get_ref().clone(), SourceForm::CodeDirectory)
        }
        (Some(component), Some(_)) => {
            return Err(ctx.at(
                Some(component.span()),
                key("component"),
                "a function has either `component` (Wasm) or `runtime` + `code` (process), not both".into(),
            ));
        }
        (None, None) => {
            return Err(ctx.at(
                Some(raw_name.span()),
                format!("function.{}", raw_name.get_ref()),
                "expected `component = \"path.wasm\"`, or `runtime` and `code` for a Lambda-style function".into(),
            ));
        }
    })
}

/// One `[[route]]`.
fn route(
    ctx: &Ctx<'_>,
    index: usize,
    route: &Spanned<RawRoute>,
) -> Result<RouteSpec, ManifestError> {
    let key = |field: &str| format!("route[{index}].{field}");
    let r = route.get_ref();
    route_path::RoutePath::parse(r.path.get_ref())
        .map_err(|e| ctx.at(Some(r.path.span()), key("path"), e.to_string()))?;
    let function = ctx.function_ref(&r.function, key("function"))?;
    let mut methods = Vec::new();
    for method in &r.methods {
        let upper = method.get_ref().to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return Err(ctx.at(
                Some(method.span()),
                key("methods"),
                format!(
                    "expected one of {}, got {:?}",
                    METHODS.join(", "),
                    method.get_ref()
                ),
            ));
        }
        if !methods.contains(&upper) {
            methods.push(upper);
        }
    }
    let host = r
        .host
        .as_ref()
        .map(|host| ctx.host(host, key("host")))
        .transpose()?;
    let rate_limit = r
        .rate_limit
        .as_ref()
        .map(|limit| rate_limit(ctx, &key("rate_limit"), limit.get_ref()))
        .transpose()?;
    let auth = match &r.auth {
        None => None,
        Some(auth) => {
            if !ctx.authorizer_names.iter().any(|n| n == auth.get_ref()) {
                let names: Vec<&str> = ctx.authorizer_names.iter().map(String::as_str).collect();
                return Err(ctx.at(
                    Some(auth.span()),
                    key("auth"),
                    format!(
                        "no authorizer {:?} in this manifest (declared: {}); add an \
                         `[authorizer.{}]` table",
                        auth.get_ref(),
                        Ctx::known(&names),
                        auth.get_ref()
                    ),
                ));
            }
            Name::new(auth.get_ref()).ok()
        }
    };
    let scopes = match &r.scopes {
        None => Vec::new(),
        Some(scopes) => {
            if auth.is_none() {
                return Err(ctx.at(
                    Some(scopes.span()),
                    key("scopes"),
                    "scopes are checked by an authorizer: add `auth = \"NAME\"` to the route"
                        .into(),
                ));
            }
            if let Some(bad) = scopes
                .get_ref()
                .iter()
                .find(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"'))
            {
                return Err(ctx.at(
                    Some(scopes.span()),
                    key("scopes"),
                    format!(
                        "{bad:?} is not a scope: scopes are non-empty and have no spaces or quotes"
                    ),
                ));
            }
            scopes.get_ref().clone()
        }
    };
    if let (Some(limit), None) = (&rate_limit, &auth)
        && limit.by == RateLimitKey::Subject
    {
        return Err(ctx.at(
            r.rate_limit.as_ref().map(|l| l.span()),
            key("rate_limit.by"),
            "a limit per caller needs an authorizer to say who the caller is: add `auth = \"NAME\"` to the route"
                .into(),
        ));
    }
    if let (Some(auth), Some(raw)) = (&auth, &r.scopes)
        && !scopes.is_empty()
        && let Some((_, what)) = ctx
            .scopeless_authorizers
            .iter()
            .find(|(n, _)| n == auth.as_str())
    {
        return Err(ctx.at(
            Some(raw.span()),
            key("scopes"),
            format!(
                "authorizer {:?} {what}, which carry no scopes: remove `scopes`",
                auth.as_str()
            ),
        ));
    }
    let cors = r
        .cors
        .as_ref()
        .map(|c| cors(ctx, &key("cors"), c.get_ref()))
        .transpose()?;
    let max_body_bytes = r
        .max_body
        .as_ref()
        .map(|size| ctx.size(size, key("max_body"), 1, 1 << 40))
        .transpose()?;
    Ok(RouteSpec {
        path: r.path.get_ref().clone(),
        methods,
        host,
        function,
        rate_limit,
        auth,
        scopes,
        max_body_bytes,
        cors,
    })
}

/// The app's `[firewall]` table.
fn firewall(ctx: &Ctx<'_>, raw: &RawFirewall) -> Result<FirewallSpec, ManifestError> {
    let networks = |list: &[Spanned<String>], field: &str| {
        list.iter()
            .map(|entry| {
                let text = entry.get_ref().trim();
                let valid = text.parse::<ipnet::IpNet>().is_ok()
                    || text.parse::<std::net::IpAddr>().is_ok();
                if valid {
                    Ok(text.to_owned())
                } else {
                    Err(ctx.at(
                        Some(entry.span()),
                        format!("firewall.{field}"),
                        format!(
                            "expected an address or a network like \"10.0.0.0/8\", \"192.0.2.7\" or \"2001:db8::/32\", got {text:?}"
                        ),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let max_headers = match &raw.max_headers {
        None => None,
        Some(n) => Some(
            u32::try_from(*n.get_ref())
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| {
                    ctx.at(
                        Some(n.span()),
                        "firewall.max_headers".into(),
                        format!("expected 1 to 10000 header fields, got {}", n.get_ref()),
                    )
                })?,
        ),
    };
    let max_header_bytes = raw
        .max_header_bytes
        .as_ref()
        .map(|size| {
            ctx.size(size, "firewall.max_header_bytes".into(), 256, 1 << 20)
                .map(|n| n as u32)
        })
        .transpose()?;
    let mut blocked_methods = Vec::new();
    for method in &raw.blocked_methods {
        let upper = method.get_ref().to_ascii_uppercase();
        if !METHODS.contains(&upper.as_str()) {
            return Err(ctx.at(
                Some(method.span()),
                "firewall.blocked_methods".into(),
                format!(
                    "expected one of {}, got {:?}",
                    METHODS.join(", "),
                    method.get_ref()
                ),
            ));
        }
        blocked_methods.push(upper);
    }
    Ok(FirewallSpec {
        allow: networks(&raw.allow, "allow")?,
        deny: networks(&raw.deny, "deny")?,
        trusted_proxies: networks(&raw.trusted_proxies, "trusted_proxies")?,
        max_headers,
        max_header_bytes,
        blocked_methods,
    })
}

/// The first of a JWT authorizer's own fields (and `leeway` too, if `with_leeway`) that `a`
/// sets: other kinds take their issuer and keys from elsewhere.
fn jwt_fields(
    a: &RawAuthorizer,
    with_leeway: bool,
) -> Option<(&'static str, Option<Range<usize>>)> {
    let given = [
        ("issuer", a.issuer.as_ref().map(|v| v.span())),
        ("audience", a.audience.as_ref().map(|v| v.span())),
        ("jwks_url", a.jwks_url.as_ref().map(|v| v.span())),
        (
            "leeway",
            a.leeway.as_ref().filter(|_| with_leeway).map(|v| v.span()),
        ),
        (
            "algorithms",
            a.algorithms
                .as_ref()
                .and_then(|v| v.first())
                .map(|v| v.span()),
        ),
    ];
    given.into_iter().find(|(_, span)| span.is_some())
}

/// The first of a function authorizer's own fields that `a` sets.
fn function_fields(a: &RawAuthorizer) -> Option<(&'static str, Option<Range<usize>>)> {
    [
        ("function", a.function.as_ref().map(|v| v.span())),
        (
            "identity_source",
            a.identity_source.as_ref().map(|v| v.span()),
        ),
        ("ttl", a.ttl.as_ref().map(|v| v.span())),
    ]
    .into_iter()
    .find(|(_, span)| span.is_some())
}

/// The rest of an `[authorizer.NAME]` table of kind "function".
fn function_authorizer(
    ctx: &Ctx<'_>,
    section: &str,
    raw: &Spanned<RawAuthorizer>,
) -> Result<AuthorizerSpec, ManifestError> {
    let key = |field: &str| format!("{section}.{field}");
    let a = raw.get_ref();
    let Some(function) = &a.function else {
        return Err(ctx.at(
            Some(raw.span()),
            section.to_owned(),
            "a function authorizer needs `function`: the app's function that answers allow or \
             deny"
                .into(),
        ));
    };
    let function = ctx.function_ref(function, key("function"))?;
    let ttl = match &a.ttl {
        None => FunctionAuthorizerSpec::DEFAULT_TTL,
        Some(ttl) => {
            let d = ctx.duration(ttl, key("ttl"))?;
            if d > FunctionAuthorizerSpec::MAX_TTL {
                return Err(ctx.at(
                    Some(ttl.span()),
                    key("ttl"),
                    "at most 1h, as API Gateway allows".into(),
                ));
            }
            d
        }
    };
    let expressions = match a.identity_source.as_ref().map(|v| v.get_ref()) {
        None => vec![FunctionAuthorizerSpec::DEFAULT_IDENTITY_SOURCE.to_owned()],
        Some(RawStrings::One(one)) => vec![one.clone()],
        Some(RawStrings::Many(many)) => many.clone(),
    };
    let span = a.identity_source.as_ref().map(|v| v.span());
    let mut identity_source = Vec::new();
    for expression in &expressions {
        let Some(source) = IdentitySource::parse(expression) else {
            return Err(ctx.at(
                span.clone(),
                key("identity_source"),
                format!(
                    "{expression:?} is not an identity source: expected \
                     \"$request.header.NAME\" or \"$request.querystring.NAME\""
                ),
            ));
        };
        if !identity_source.contains(&source) {
            identity_source.push(source);
        }
    }
    if identity_source.is_empty() && !ttl.is_zero() {
        return Err(ctx.at(
            span,
            key("identity_source"),
            "answers are remembered per identity: name where it is read, or set `ttl = \"0s\"` \
             to ask the function every time"
                .into(),
        ));
    }
    Ok(AuthorizerSpec::Function(FunctionAuthorizerSpec {
        function,
        identity_source,
        ttl,
    }))
}

/// One `[authorizer.NAME]` table.
fn authorizer(
    ctx: &Ctx<'_>,
    raw_name: &Spanned<String>,
    raw: &Spanned<RawAuthorizer>,
) -> Result<(Name, AuthorizerSpec), ManifestError> {
    let section = format!("authorizer.{}", raw_name.get_ref());
    let name = Name::new(raw_name.get_ref())
        .map_err(|e| ctx.at(Some(raw_name.span()), section.clone(), e.to_string()))?;
    let key = |field: &str| format!("{section}.{field}");
    let a = raw.get_ref();
    let leeway = match &a.leeway {
        None => JwtAuthorizerSpec::DEFAULT_LEEWAY,
        Some(leeway) => {
            let d = ctx.duration(leeway, key("leeway"))?;
            if d > std::time::Duration::from_secs(300) {
                return Err(ctx.at(
                    Some(leeway.span()),
                    key("leeway"),
                    "at most 5m: a larger leeway accepts tokens long expired".into(),
                ));
            }
            d
        }
    };
    if a.kind.get_ref() != "api_key"
        && let Some(header) = &a.header
    {
        return Err(ctx.at(
            Some(header.span()),
            key("header"),
            "`header` is where an \"api_key\" authorizer reads keys; tokens come in \
             Authorization"
                .into(),
        ));
    }
    if a.kind.get_ref() != "function"
        && let Some((field, span)) = function_fields(a)
    {
        return Err(ctx.at(
            span,
            key(field),
            format!("`{field}` belongs to a \"function\" authorizer; remove it"),
        ));
    }
    match a.kind.get_ref().as_str() {
        "jwt" => {}
        "function" => {
            if let Some((field, span)) = jwt_fields(a, true) {
                return Err(ctx.at(
                    span,
                    key(field),
                    format!("a \"function\" authorizer lets its function decide; remove `{field}`"),
                ));
            }
            return function_authorizer(ctx, &section, raw).map(|spec| (name, spec));
        }
        "api_key" => {
            if let Some((field, span)) = jwt_fields(a, true) {
                return Err(ctx.at(
                    span,
                    key(field),
                    format!(
                        "an \"api_key\" authorizer checks the app's API keys (`nimbus apikeys \
                         create`); remove `{field}`"
                    ),
                ));
            }
            let header = match &a.header {
                None => AuthorizerSpec::DEFAULT_API_KEY_HEADER.to_owned(),
                Some(header) => {
                    let lower = header.get_ref().to_ascii_lowercase();
                    let valid = !lower.is_empty()
                        && lower
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                        && !lower.starts_with("x-nimbus-")
                        && lower != "authorization";
                    if !valid {
                        return Err(ctx.at(
                            Some(header.span()),
                            key("header"),
                            format!(
                                "{:?} is not a header an API key can come in: letters, digits, \
                                 `-` and `_`, not Authorization or x-nimbus-*",
                                header.get_ref()
                            ),
                        ));
                    }
                    lower
                }
            };
            return Ok((name, AuthorizerSpec::ApiKey { header }));
        }
        "auth" => {
            if !ctx.auth_enabled {
                return Err(ctx.at(
                    Some(a.kind.span()),
                    key("kind"),
                    "an \"auth\" authorizer checks the tokens of the app's own auth: add an \
                     `[auth]` section"
                        .into(),
                ));
            }
            if let Some((field, span)) = jwt_fields(a, false) {
                return Err(ctx.at(
                    span,
                    key(field),
                    format!(
                        "an \"auth\" authorizer takes its issuer, audience and keys from the \
                         app's [auth]; remove `{field}`"
                    ),
                ));
            }
            return Ok((name, AuthorizerSpec::Auth { leeway }));
        }
        other => {
            return Err(ctx.at(
                Some(a.kind.span()),
                key("kind"),
                format!(
                    "expected \"jwt\" (a bearer token signed by an OpenID Connect issuer), \
                     \"auth\" (an access token of the app's own [auth]), \"api_key\" (one of \
                     the app's API keys) or \"function\" (a function of the app decides), got \
                     {other:?}"
                ),
            ));
        }
    }
    let url =
        |value: &Spanned<String>, field: &str, what: &str| ctx.http_url(value, key(field), what);
    let issuer = match &a.issuer {
        Some(issuer) => url(issuer, "issuer", "the issuer tokens name in `iss`")?,
        None => {
            return Err(ctx.at(
                Some(raw.span()),
                section,
                "a jwt authorizer needs `issuer`: the URL tokens carry in `iss`".into(),
            ));
        }
    };
    let audience = match a.audience.as_ref().map(|v| (v, v.get_ref())) {
        Some((_, RawStrings::One(one))) if !one.is_empty() => vec![one.clone()],
        Some((_, RawStrings::Many(many)))
            if !many.is_empty() && many.iter().all(|a| !a.is_empty()) =>
        {
            many.clone()
        }
        other => {
            return Err(ctx.at(
                other.map(|(v, _)| v.span()).or(Some(raw.span())),
                key("audience"),
                "a jwt authorizer needs `audience`: the `aud` value (or list of values) its tokens \
                 are issued for"
                    .into(),
            ));
        }
    };
    let jwks_url = a
        .jwks_url
        .as_ref()
        .map(|u| url(u, "jwks_url", "the URL of the issuer's JSON Web Key Set"))
        .transpose()?;
    let algorithms = match &a.algorithms {
        None => JwtAuthorizerSpec::DEFAULT_ALGORITHMS
            .map(String::from)
            .to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for alg in list {
                let upper = alg.get_ref().to_ascii_uppercase();
                if !JwtAuthorizerSpec::SUPPORTED_ALGORITHMS.contains(&upper.as_str()) {
                    let why = if upper.starts_with("HS") || upper == "NONE" {
                        "symmetric and unsigned tokens are refused: a key anyone can read from \
                         the JWKS would sign them"
                    } else {
                        "not a supported signature algorithm"
                    };
                    return Err(ctx.at(
                        Some(alg.span()),
                        key("algorithms"),
                        format!(
                            "{:?}: {why}; expected some of {}",
                            alg.get_ref(),
                            JwtAuthorizerSpec::SUPPORTED_ALGORITHMS.join(", ")
                        ),
                    ));
                }
                if !out.contains(&upper) {
                    out.push(upper);
                }
            }
            if out.is_empty() {
                return Err(ctx.at(
                    Some(raw.span()),
                    key("algorithms"),
                    "list at least one algorithm".into(),
                ));
            }
            out
        }
    };
    Ok((
        name,
        AuthorizerSpec::Jwt(JwtAuthorizerSpec {
            issuer,
            audience,
            jwks_url,
            algorithms,
            leeway,
        }),
    ))
}

/// The app's `[auth]` table.
fn auth(ctx: &Ctx<'_>, raw: &RawAuth) -> Result<AuthSpec, ManifestError> {
    let mut spec = AuthSpec::with_defaults();
    let key = |field: &str| format!("auth.{field}");
    if let Some(path) = &raw.path {
        let p = path.get_ref();
        let valid = p.len() > 1
            && p.starts_with('/')
            && !p.ends_with('/')
            && !p.contains("//")
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
        if !valid {
            return Err(ctx.at(
                Some(path.span()),
                key("path"),
                format!(
                    "expected a literal path like \"/auth/v1\" (no trailing slash, no \
                     parameters), got {p:?}"
                ),
            ));
        }
        spec.path = p.clone();
    }
    spec.host = raw
        .host
        .as_ref()
        .map(|host| ctx.host(host, key("host")))
        .transpose()?;
    // Links and issuers are joined with paths: kept without a trailing slash.
    let url = |value: &Spanned<String>, field: &str, what: &str| {
        ctx.http_url(value, key(field), what)
            .map(|url| url.trim_end_matches('/').to_owned())
    };
    spec.issuer = raw
        .issuer
        .as_ref()
        .map(|v| url(v, "issuer", "the public URL of the auth API"))
        .transpose()?;
    spec.site_url = raw
        .site_url
        .as_ref()
        .map(|v| url(v, "site_url", "the app's own URL"))
        .transpose()?;
    if let Some(from) = &raw.mail_from {
        let address = from.get_ref().trim();
        let mailbox = address
            .rsplit_once('<')
            .map_or(address, |(_, rest)| rest.trim_end_matches('>'));
        let valid = mailbox
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
            && !address.contains(['\r', '\n']);
        if !valid {
            return Err(ctx.at(
                Some(from.span()),
                key("mail_from"),
                format!(
                    "expected a sender like \"noreply@todo.example\" or \"Todo <noreply@todo.example>\", got {address:?}"
                ),
            ));
        }
        spec.mail_from = Some(address.to_owned());
    }
    spec.signup = raw.signup.unwrap_or(spec.signup);
    spec.confirm_email = raw.confirm_email.unwrap_or(spec.confirm_email);
    let bounded = |value: &Spanned<String>,
                   field: &str,
                   min: std::time::Duration,
                   max: std::time::Duration| {
        let d = ctx.duration(value, key(field))?;
        if d < min || d > max {
            return Err(ctx.at(
                Some(value.span()),
                key(field),
                format!(
                    "expected from {} to {}, got {:?}",
                    humantime::format_duration(min),
                    humantime::format_duration(max),
                    value.get_ref()
                ),
            ));
        }
        Ok(d)
    };
    let secs = std::time::Duration::from_secs;
    if let Some(ttl) = &raw.access_token_ttl {
        spec.access_token_ttl = bounded(ttl, "access_token_ttl", secs(5), secs(7 * 86_400))?;
    }
    if let Some(interval) = &raw.refresh_reuse_interval {
        spec.refresh_reuse_interval =
            bounded(interval, "refresh_reuse_interval", secs(0), secs(3600))?;
    }
    if let Some(ttl) = &raw.session_ttl {
        spec.session_ttl = Some(bounded(ttl, "session_ttl", secs(60), secs(365 * 86_400))?);
    }
    if let Some(length) = &raw.password_min_length {
        spec.password_min_length = u32::try_from(*length.get_ref())
            .ok()
            .filter(|n| (6..=72).contains(n))
            .ok_or_else(|| {
                ctx.at(
                    Some(length.span()),
                    key("password_min_length"),
                    format!("expected 6 to 72 characters, got {}", length.get_ref()),
                )
            })?;
    }
    for class in &raw.password_requires {
        if !AuthSpec::PASSWORD_CLASSES.contains(&class.get_ref().as_str()) {
            return Err(ctx.at(
                Some(class.span()),
                key("password_requires"),
                format!(
                    "expected some of {}, got {:?}",
                    AuthSpec::PASSWORD_CLASSES.join(", "),
                    class.get_ref()
                ),
            ));
        }
        if !spec.password_requires.contains(class.get_ref()) {
            spec.password_requires.push(class.get_ref().clone());
        }
    }
    for (raw_limit, field, by) in [
        (&raw.attempts_per_ip, "attempts_per_ip", RateLimitKey::Ip),
        (
            &raw.failures_per_account,
            "failures_per_account",
            RateLimitKey::Subject,
        ),
    ] {
        let Some(raw_limit) = raw_limit else { continue };
        if let Some(given) = &raw_limit.get_ref().by {
            return Err(ctx.at(
                Some(given.span()),
                key(&format!("{field}.by")),
                format!(
                    "`{field}` is counted {} already; remove `by`",
                    match by {
                        RateLimitKey::Ip => "per client address",
                        _ => "per account",
                    }
                ),
            ));
        }
        let mut limit = rate_limit(ctx, &key(field), raw_limit.get_ref())?;
        limit.by = by;
        match field {
            "attempts_per_ip" => spec.attempts_per_ip = limit,
            _ => spec.failures_per_account = limit,
        }
    }
    Ok(spec)
}

/// A route's `rate_limit = { rate = "100/s", burst = 200, by = "ip" }`.
fn rate_limit(
    ctx: &Ctx<'_>,
    key: &str,
    raw: &RawRateLimit,
) -> Result<RateLimitSpec, ManifestError> {
    let field = |f: &str| format!("{key}.{f}");
    let bad_rate = || {
        ctx.at(
            Some(raw.rate.span()),
            field("rate"),
            format!(
                "expected requests per unit like \"100/s\", \"600/min\" or \"5000/h\" (1 to 1000000), got {:?}",
                raw.rate.get_ref()
            ),
        )
    };
    let (rate, per) = RateLimitSpec::parse_rate(raw.rate.get_ref()).ok_or_else(bad_rate)?;
    let burst = match &raw.burst {
        None => rate,
        Some(burst) => u32::try_from(*burst.get_ref())
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| {
                ctx.at(
                    Some(burst.span()),
                    field("burst"),
                    format!("expected 1 to 1000000 requests, got {}", burst.get_ref()),
                )
            })?,
    };
    let by = match raw.by.as_ref().map(|b| (b, b.get_ref().as_str())) {
        None | Some((_, "ip")) => RateLimitKey::Ip,
        Some((_, "route")) => RateLimitKey::Route,
        Some((_, "subject")) => RateLimitKey::Subject,
        Some((by, other)) => {
            return Err(ctx.at(
                Some(by.span()),
                field("by"),
                format!(
                    "expected \"ip\" (a bucket per client address), \"subject\" (a bucket per authenticated caller) or \"route\" (one bucket for every client), got {other:?}"
                ),
            ));
        }
    };
    Ok(RateLimitSpec {
        rate,
        per,
        burst,
        by,
    })
}

/// A CORS policy: the app's `[cors]` table, or a route's `cors`; `section` is where it is.
fn cors(ctx: &Ctx<'_>, section: &str, raw: &RawCors) -> Result<CorsSpec, ManifestError> {
    let key = |field: &str| format!("{section}.{field}");
    let mut origins = Vec::new();
    for origin in &raw.origins {
        let o = origin.get_ref();
        let valid = o == "*"
            || ["http://", "https://"].iter().any(|scheme| {
                o.strip_prefix(scheme).is_some_and(|host| {
                    let host = host.strip_prefix("*.").unwrap_or(host);
                    !host.is_empty() && !host.contains(['/', '*', ' ', '?', '#']) && host.is_ascii()
                })
            });
        if !valid {
            return Err(ctx.at(
                Some(origin.span()),
                key("origins"),
                format!(
                    "expected an origin like \"https://app.example.com\" (scheme and host, optional port, no path), \"https://*.example.com\" for its subdomains, or \"*\"; got {o:?}"
                ),
            ));
        }
        origins.push(o.clone());
    }
    if origins.is_empty() {
        return Err(ctx.at(None, key("origins"), "list at least one origin".into()));
    }
    if raw.credentials && origins.iter().any(|o| o == "*") {
        return Err(ctx.at(
            raw.origins
                .iter()
                .find(|o| o.get_ref() == "*")
                .map(|o| o.span()),
            key("origins"),
            "`*` cannot be combined with `credentials = true`: any site could then read \
             responses with its visitors' cookies; list the origins instead"
                .into(),
        ));
    }
    let methods = match &raw.methods {
        None => ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
            .map(String::from)
            .to_vec(),
        Some(methods) => {
            let mut out = Vec::new();
            for method in methods {
                let upper = method.get_ref().to_ascii_uppercase();
                if !METHODS.contains(&upper.as_str()) {
                    return Err(ctx.at(
                        Some(method.span()),
                        key("methods"),
                        format!(
                            "expected one of {}, got {:?}",
                            METHODS.join(", "),
                            method.get_ref()
                        ),
                    ));
                }
                out.push(upper);
            }
            out
        }
    };
    let header_names = |list: &[Spanned<String>], field: &str| {
        list.iter()
            .map(|h| {
                let name = h.get_ref().to_ascii_lowercase();
                if name == "*" || http_token(&name) {
                    Ok(name)
                } else {
                    Err(ctx.at(
                        Some(h.span()),
                        key(field),
                        format!("expected a header name, got {:?}", h.get_ref()),
                    ))
                }
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let max_age = raw
        .max_age
        .as_ref()
        .map(|d| ctx.duration(d, key("max_age")))
        .transpose()?;
    Ok(CorsSpec {
        origins,
        methods,
        headers: header_names(&raw.headers, "headers")?,
        expose_headers: header_names(&raw.expose_headers, "expose_headers")?,
        credentials: raw.credentials,
        max_age,
    })
}

/// A header name as HTTP allows it (an RFC 9110 token).
fn http_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// One `[[trigger.queue]]`.
fn queue_trigger(
    ctx: &Ctx<'_>,
    index: usize,
    trigger: &Spanned<RawQueueTrigger>,
    earlier: &[QueueTriggerSpec],
) -> Result<QueueTriggerSpec, ManifestError> {
    let key = |field: &str| format!("trigger.queue[{index}].{field}");
    let t = trigger.get_ref();
    let queue = ctx.queue_ref(&t.queue, key("queue"))?;
    let function = ctx.function_ref(&t.function, key("function"))?;
    if earlier.iter().any(|q| q.queue == queue) {
        return Err(ctx.at(
            Some(t.queue.span()),
            key("queue"),
            format!("queue {queue:?} already has a consumer; a queue is consumed by one function"),
        ));
    }
    let mut spec = QueueTriggerSpec {
        queue,
        function,
        batch_size: QueueTriggerSpec::DEFAULT_BATCH_SIZE,
        concurrency: QueueTriggerSpec::DEFAULT_CONCURRENCY,
    };
    if let Some(v) = &t.batch_size {
        let value = *v.get_ref();
        if !(1..=i64::from(QueueTriggerSpec::MAX_BATCH_SIZE)).contains(&value) {
            return Err(ctx.at(
                Some(v.span()),
                key("batch_size"),
                format!(
                    "expected a number from 1 to {}, got {value}",
                    QueueTriggerSpec::MAX_BATCH_SIZE
                ),
            ));
        }
        spec.batch_size = value as u32;
    }
    if let Some(v) = &t.concurrency {
        let value = *v.get_ref();
        if !(1..=1000).contains(&value) {
            return Err(ctx.at(
                Some(v.span()),
                key("concurrency"),
                format!("expected a number from 1 to 1000, got {value}"),
            ));
        }
        spec.concurrency = value as u32;
    }
    Ok(spec)
}

/// One `[[trigger.schedule]]`.
fn schedule(
    ctx: &Ctx<'_>,
    index: usize,
    schedule: &Spanned<RawSchedule>,
    earlier: &[ScheduleSpec],
) -> Result<(ScheduleSpec, nimbus_events::schedule::Schedule), ManifestError> {
    let key = |field: &str| format!("trigger.schedule[{index}].{field}");
    let s = schedule.get_ref();
    let function = ctx.function_ref(&s.function, key("function"))?;
    let timezone = s
        .timezone
        .as_ref()
        .map(|t| t.get_ref().clone())
        .unwrap_or_else(|| "UTC".to_owned());
    let (expr, expr_span, expr_key) = match (&s.cron, &s.rate) {
        (Some(cron), None) => (
            ScheduleExpr::Cron(cron.get_ref().clone()),
            cron.span(),
            key("cron"),
        ),
        (None, Some(rate)) => (
            ScheduleExpr::Rate(
                nimbus_events::schedule::parse_rate(rate.get_ref())
                    .map_err(|e| ctx.at(Some(rate.span()), key("rate"), e))?,
            ),
            rate.span(),
            key("rate"),
        ),
        _ => {
            return Err(ctx.at(
                Some(schedule.span()),
                format!("trigger.schedule[{index}]"),
                "expected exactly one of `cron = \"0 */5 * * * *\"` or `rate = \"5 minutes\"`"
                    .into(),
            ));
        }
    };
    let parsed = match nimbus_events::schedule::Schedule::new(&expr, &timezone) {
        Ok(parsed) => parsed,
        Err(message) => {
            let (span, key) = match &s.timezone {
                Some(tz) if message.contains("time zone") => (tz.span(), key("timezone")),
                _ => (expr_span, expr_key),
            };
            return Err(ctx.at(Some(span), key, message));
        }
    };
    let missed = match s.missed.as_ref().map(|m| m.get_ref().as_str()) {
        None | Some("skip") => Missed::Skip,
        Some("run_once") => Missed::RunOnce,
        Some(other) => {
            return Err(ctx.at(
                s.missed.as_ref().map(|m| m.span()),
                key("missed"),
                format!("expected \"skip\" or \"run_once\", got {other:?}"),
            ));
        }
    };
    let name = match &s.name {
        Some(name) => Name::new(name.get_ref())
            .map_err(|e| ctx.at(Some(name.span()), key("name"), e.to_string()))?
            .to_string(),
        None => format!("{function}-{index}"),
    };
    if earlier.iter().any(|other| other.name == name) {
        return Err(ctx.at(
            Some(schedule.span()),
            key("name"),
            format!("two schedules are named {name:?}; give each a distinct `name`"),
        ));
    }
    let payload = s
        .payload
        .as_ref()
        .map(|p| {
            serde_json::to_string(p).map_err(|e| {
                ctx.at(
                    Some(schedule.span()),
                    key("payload"),
                    format!("the payload cannot be read as JSON: {e}"),
                )
            })
        })
        .transpose()?;
    Ok((
        ScheduleSpec {
            name,
            expr,
            timezone,
            missed,
            function,
            payload,
        },
        parsed,
    ))
}

/// One `[[trigger.storage]]`.
fn storage_trigger(
    ctx: &Ctx<'_>,
    index: usize,
    trigger: &Spanned<RawStorageTrigger>,
) -> Result<StorageTriggerSpec, ManifestError> {
    let key = |field: &str| format!("trigger.storage[{index}].{field}");
    let t = trigger.get_ref();
    let bucket = t.bucket.get_ref();
    if !ctx.bucket_names.iter().any(|b| b == bucket) {
        let names: Vec<&str> = ctx.bucket_names.iter().map(String::as_str).collect();
        return Err(ctx.at(
            Some(t.bucket.span()),
            key("bucket"),
            format!(
                "no bucket {bucket:?} in this manifest (declared: {}); an app's triggers \
                 watch its own buckets: declare it as [bucket.{bucket}]",
                Ctx::known(&names)
            ),
        ));
    }
    let (mut created, mut removed) = (true, false);
    if let Some(events) = &t.events {
        (created, removed) = (false, false);
        for event in events.get_ref() {
            match event.as_str() {
                "created" => created = true,
                "removed" => removed = true,
                other => {
                    return Err(ctx.at(
                        Some(events.span()),
                        key("events"),
                        format!(
                            "{other:?} is not an event: expected \"created\" \
                             (s3:ObjectCreated:*) or \"removed\" (s3:ObjectRemoved:*)"
                        ),
                    ));
                }
            }
        }
        if !created && !removed {
            return Err(ctx.at(
                Some(events.span()),
                key("events"),
                "list at least one event: \"created\", \"removed\"".into(),
            ));
        }
    }
    let target = match (&t.function, &t.queue) {
        (Some(function), None) => {
            Destination::Function(ctx.function_ref(function, key("function"))?)
        }
        (None, Some(queue)) => Destination::Queue(ctx.queue_ref(queue, key("queue"))?),
        _ => {
            return Err(ctx.at(
                Some(trigger.span()),
                format!("trigger.storage[{index}]"),
                "expected exactly one target: `function = \"name\"` or `queue = \"name\"`".into(),
            ));
        }
    };
    Ok(StorageTriggerSpec {
        bucket: bucket.clone(),
        filter: ObjectFilter {
            created,
            removed,
            prefix: t.prefix.clone().unwrap_or_default(),
            suffix: t.suffix.clone().unwrap_or_default(),
        },
        target,
    })
}

/// A pattern given as a TOML table or as JSON text, as JSON text, checked by compiling it.
fn pattern_text(
    ctx: &Ctx<'_>,
    value: &Spanned<toml::Value>,
    key: String,
) -> Result<(String, nimbus_events::Pattern), ManifestError> {
    let text = match value.get_ref() {
        toml::Value::String(text) => text.clone(),
        other => serde_json::to_string(other).map_err(|e| {
            ctx.at(
                Some(value.span()),
                key.clone(),
                format!("the pattern cannot be read as JSON: {e}"),
            )
        })?,
    };
    let compiled = nimbus_events::Pattern::parse(&text)
        .map_err(|e| ctx.at(Some(value.span()), key, e.to_string()))?;
    Ok((text, compiled))
}

/// One `[[trigger.table]]`: a declared table with a stream, a declared function, Lambda's
/// limits for a DynamoDB event source mapping.
fn table_trigger(
    ctx: &Ctx<'_>,
    index: usize,
    trigger: &Spanned<RawTableTrigger>,
    tables: &[TableSpec],
    earlier: &[TableTriggerSpec],
) -> Result<TableTriggerSpec, ManifestError> {
    let key = |field: &str| format!("trigger.table[{index}].{field}");
    let t = trigger.get_ref();
    let name = t.table.get_ref();
    let Some(table) = tables.iter().find(|table| &table.name == name) else {
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        return Err(ctx.at(
            Some(t.table.span()),
            key("table"),
            format!(
                "no table {name:?} in this manifest (declared: {}); an app's triggers watch \
                 its own tables: declare it as [table.{name}] with a stream",
                Ctx::known(&names)
            ),
        ));
    };
    if table.stream.is_none() {
        return Err(ctx.at(
            Some(t.table.span()),
            key("table"),
            format!(
                "table {name:?} has no stream to trigger on: add `stream = \"NEW_AND_OLD_IMAGES\"` \
                 (or NEW_IMAGE, OLD_IMAGE, KEYS_ONLY) to [table.{name}]"
            ),
        ));
    }
    let function = ctx.function_ref(&t.function, key("function"))?;
    if earlier
        .iter()
        .any(|e| &e.table == name && e.function == function)
    {
        return Err(ctx.at(
            Some(trigger.span()),
            format!("trigger.table[{index}]"),
            format!(
                "function {:?} already has a trigger on table {name:?}; put both filters \
                 in one pattern",
                function.as_str()
            ),
        ));
    }
    let number = |value: &Option<Spanned<i64>>, field: &str, default: u32, max: u32| {
        let Some(value) = value else {
            return Ok(default);
        };
        let n = *value.get_ref();
        if (1..=i64::from(max)).contains(&n) {
            Ok(n as u32)
        } else {
            Err(ctx.at(
                Some(value.span()),
                key(field),
                format!("expected a number from 1 to {max}, got {n}"),
            ))
        }
    };
    let batch_size = number(
        &t.batch_size,
        "batch_size",
        TableTriggerSpec::DEFAULT_BATCH_SIZE,
        TableTriggerSpec::MAX_BATCH_SIZE,
    )?;
    let concurrency = number(
        &t.concurrency,
        "concurrency",
        TableTriggerSpec::DEFAULT_CONCURRENCY,
        TableTriggerSpec::MAX_CONCURRENCY,
    )?;
    let batching_window = match &t.batching_window {
        None => std::time::Duration::ZERO,
        Some(window) => {
            let parsed = ctx.duration(window, key("batching_window"))?;
            if parsed > TableTriggerSpec::MAX_BATCHING_WINDOW {
                return Err(ctx.at(
                    Some(window.span()),
                    key("batching_window"),
                    "the batching window is 5 minutes at most".into(),
                ));
            }
            parsed
        }
    };
    let starting_position = match t.starting_position.as_ref() {
        None => StartingPosition::default(),
        Some(position) => match position.get_ref().as_str() {
            "LATEST" => StartingPosition::Latest,
            "TRIM_HORIZON" => StartingPosition::TrimHorizon,
            other => {
                return Err(ctx.at(
                    Some(position.span()),
                    key("starting_position"),
                    format!(
                        "{other:?} is not a starting position: write \"LATEST\" (changes from \
                         now on) or \"TRIM_HORIZON\" (the oldest record kept)"
                    ),
                ));
            }
        },
    };
    let filter = t
        .filter
        .as_ref()
        .map(|filter| pattern_text(ctx, filter, key("filter")).map(|(text, _)| text))
        .transpose()?;
    Ok(TableTriggerSpec {
        table: name.clone(),
        function,
        batch_size,
        batching_window,
        starting_position,
        filter,
        concurrency,
    })
}

/// One `[[trigger.event]]` rule.
fn rule(
    ctx: &Ctx<'_>,
    index: usize,
    rule: &Spanned<RawRule>,
) -> Result<(RuleSpec, nimbus_events::Pattern), ManifestError> {
    let key = |field: &str| format!("trigger.event[{index}].{field}");
    let r = rule.get_ref();
    let (pattern, compiled) = pattern_text(ctx, &r.pattern, key("pattern"))?;
    let target = match (&r.function, &r.queue) {
        (Some(function), None) => {
            Destination::Function(ctx.function_ref(function, key("function"))?)
        }
        (None, Some(queue)) => Destination::Queue(ctx.queue_ref(queue, key("queue"))?),
        _ => {
            return Err(ctx.at(
                Some(rule.span()),
                format!("trigger.event[{index}]"),
                "expected exactly one target: `function = \"name\"` or `queue = \"name\"`".into(),
            ));
        }
    };
    Ok((
        RuleSpec {
            name: r.name.clone().unwrap_or_else(|| format!("rule-{index}")),
            pattern,
            target,
        },
        compiled,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "shop"

[function.hello]
component = "hello.wasm"
build = "cargo build"
memory = "64MiB"
timeout = "250ms"
max_concurrency = 8
env = { GREETING = "hi" }
allowed_outbound_hosts = ["https://api.example.com"]
instance = "fresh"

[[route]]
path = "/hello/{name}"
methods = ["get", "POST"]
function = "hello"
"#;

    #[test]
    fn parses_a_full_manifest() {
        let manifest = parse("nimbus.toml", GOOD).unwrap();
        let hello = &manifest.app.functions[&Name::new("hello").unwrap()];
        assert_eq!(hello.memory_bytes, 64 << 20);
        assert_eq!(hello.timeout.as_millis(), 250);
        assert_eq!(hello.max_concurrency, 8);
        assert_eq!(hello.env["GREETING"], "hi");
        assert_eq!(hello.instance, InstanceMode::Fresh);
        assert_eq!(manifest.app.routes[0].methods, vec!["GET", "POST"]);
        assert_eq!(
            manifest.sources[&Name::new("hello").unwrap()]
                .build
                .as_deref(),
            Some("cargo build")
        );
    }

    fn error(text: &str) -> ManifestError {
        parse("nimbus.toml", text).unwrap_err()
    }

    #[test]
    fn errors_name_line_and_key() {
        let e = error(&GOOD.replace("\"64MiB\"", "\"lots\""));
        assert_eq!((e.line, e.key.as_str()), (7, "function.hello.memory"));
        assert!(e.message.contains("128MiB"), "{e}");
        assert!(e.to_string().starts_with("nimbus.toml:7:"), "{e}");

        let e = error(&GOOD.replace("timeout = \"250ms\"", "timeout = \"soon\""));
        assert_eq!((e.line, e.key.as_str()), (8, "function.hello.timeout"));

        let e = error(&GOOD.replace("function = \"hello\"", "function = \"nope\""));
        assert_eq!((e.line, e.key.as_str()), (17, "route[0].function"));
        assert!(e.message.contains("declared: hello"), "{e}");

        let e = error(&GOOD.replace("memory =", "memroy ="));
        assert_eq!(e.line, 7, "{e}");
        assert!(e.key.starts_with("function"), "{e}");
        assert!(e.message.contains("memroy"), "{e}");

        let e = error(&GOOD.replace("\"/hello/{name}\"", "\"hello/{name\""));
        assert_eq!(e.key, "route[0].path");

        let e = error(&GOOD.replace("[\"get\", \"POST\"]", "[\"FETCH\"]"));
        assert_eq!(e.key, "route[0].methods");

        let e = error("name = \"Bad Name\"\n");
        assert_eq!((e.line, e.key.as_str()), (1, "name"));

        let e = error("name = \"ok\"\n[function.a\n");
        assert_eq!(e.line, 2, "{e}");

        let e = error(&GOOD.replace("https://api.example.com", "api.example.com"));
        assert_eq!(e.key, "function.hello.allowed_outbound_hosts");

        let e = error(&GOOD.replace("max_concurrency = 8", "max_concurrency = 0"));
        assert_eq!(e.key, "function.hello.max_concurrency");
    }

    const PROCESS: &str = r#"
name = "lambdas"

[function.py]
runtime = "python3"
handler = "app.handler"
code = "py/"
min_instances = 1

[function.native]
runtime = "provided.al2023"
code = "target/lambda/native"
network = "host"
"#;

    #[test]
    fn parses_process_functions() {
        let manifest = parse("nimbus.toml", PROCESS).unwrap();
        let py = &manifest.app.functions[&Name::new("py").unwrap()];
        assert_eq!(
            py.kind,
            FunctionKind::Process {
                runtime: Runtime::Python3,
                handler: Some("app.handler".into()),
                network: Network::None
            }
        );
        assert_eq!(py.min_instances, 1);
        let source = &manifest.sources[&Name::new("py").unwrap()];
        assert_eq!(
            (source.path.as_str(), source.form),
            ("py/", SourceForm::CodeDirectory)
        );
        let native = &manifest.app.functions[&Name::new("native").unwrap()];
        assert!(matches!(
            native.kind,
            FunctionKind::Process {
                runtime: Runtime::Provided,
                handler: None,
                network: Network::Host
            }
        ));
    }

    #[test]
    fn process_function_errors() {
        let e = error(&PROCESS.replace("handler = \"app.handler\"\n", ""));
        assert_eq!(e.key, "function.py.handler");
        let e = error(&PROCESS.replace("app.handler", "handler"));
        assert_eq!((e.line, e.key.as_str()), (6, "function.py.handler"));
        let e = error(&PROCESS.replace("\"python3\"", "\"ruby\""));
        assert_eq!(e.key, "function.py.runtime");
        assert!(e.message.contains("python3"), "{e}");
        let e = error(&PROCESS.replace("code = \"py/\"\n", ""));
        assert_eq!(e.key, "function.py.code");
        let e = error(&PROCESS.replace("min_instances = 1", "min_instances = 500"));
        assert_eq!(e.key, "function.py.min_instances");
        let e = error(&PROCESS.replace(
            "network = \"host\"",
            "allowed_outbound_hosts = [\"https://a.example\"]",
        ));
        assert_eq!(e.key, "function.native.allowed_outbound_hosts");
        let e = error(&PROCESS.replace("code = \"py/\"", "code = \"py/\"\ncomponent = \"x.wasm\""));
        assert_eq!(e.key, "function.py.component");
        let e = error("name = \"a\"\n[function.f]\nmemory = \"64MiB\"\n");
        assert_eq!(e.key, "function.f");
        let e = error("name = \"a\"\n[function.f]\ncomponent = \"f.wasm\"\nhandler = \"a.b\"\n");
        assert_eq!(e.key, "function.f.handler");
    }

    const EVENTS: &str = r#"
name = "shop"

[function.worker]
component = "w.wasm"
queues = ["orders"]
publish = true
delivery = { retries = 4, backoff = "2s", max_age = "1h", dead_letter = "failed", on_success = "function:audit", on_failure = "queue:failed" }

[function.audit]
component = "a.wasm"

[queue.orders]
fifo = true

[queue.failed]

[[trigger.queue]]
queue = "orders"
function = "worker"
batch_size = 5

[[trigger.schedule]]
name = "nightly"
cron = "0 0 3 * * *"
timezone = "Europe/Paris"
missed = "run_once"
function = "audit"
payload = { kind = "nightly" }

[[trigger.schedule]]
rate = "5 minutes"
function = "audit"

[[trigger.event]]
pattern = { type = [{ prefix = "order." }], data = { amount = [{ numeric = [">", 100] }] } }
function = "worker"

[[trigger.event]]
pattern = '{"source": ["/billing"]}'
queue = "orders"
"#;

    #[test]
    fn parses_events() {
        let manifest = parse("nimbus.toml", EVENTS).unwrap();
        let worker = &manifest.app.functions[&Name::new("worker").unwrap()];
        assert_eq!(worker.delivery.retries, 4);
        assert_eq!(worker.delivery.backoff.as_secs(), 2);
        assert_eq!(worker.delivery.max_age.as_secs(), 3600);
        assert_eq!(
            worker.delivery.dead_letter.as_ref().unwrap().as_str(),
            "failed"
        );
        assert_eq!(
            worker.delivery.on_success,
            Some(Destination::Function(Name::new("audit").unwrap()))
        );
        assert_eq!(
            worker.delivery.on_failure,
            Some(Destination::Queue(Name::new("failed").unwrap()))
        );
        assert!(worker.grants.publish);
        let events = &manifest.app.events;
        assert!(events.queues[1].fifo, "{:?}", events.queues);
        assert_eq!(events.queue_triggers[0].batch_size, 5);
        assert_eq!(events.schedules[0].name, "nightly");
        assert_eq!(events.schedules[0].missed, Missed::RunOnce);
        assert_eq!(
            events.schedules[0].payload.as_deref(),
            Some(r#"{"kind":"nightly"}"#)
        );
        assert_eq!(events.schedules[1].name, "audit-1");
        assert_eq!(
            events.schedules[1].expr,
            ScheduleExpr::Rate(std::time::Duration::from_secs(300))
        );
        assert_eq!(events.rules.len(), 2);
        assert_eq!(
            events.rules[1].target,
            Destination::Queue(Name::new("orders").unwrap())
        );
        // Defaults.
        let audit = &manifest.app.functions[&Name::new("audit").unwrap()];
        assert_eq!(audit.delivery, DeliveryPolicy::default());
        assert!(!audit.grants.publish);
    }

    const BUCKETS: &str = r#"
name = "thumbs"

[bucket.uploads]
[bucket.thumbnails]
public_read = true

[function.resize]
runtime = "python3"
handler = "app.handler"
code = "resize"
buckets = ["uploads:read", "thumbnails"]

[queue.removals]

[[trigger.storage]]
bucket = "uploads"
suffix = ".jpg"
function = "resize"

[[trigger.storage]]
bucket = "uploads"
events = ["removed", "created"]
prefix = "photos/"
queue = "removals"
"#;

    #[test]
    fn buckets_are_declared_and_granted() {
        let manifest = parse("nimbus.toml", BUCKETS).unwrap();
        let buckets: Vec<(&str, bool)> = manifest
            .app
            .buckets
            .iter()
            .map(|b| (b.name.as_str(), b.public_read))
            .collect();
        assert_eq!(buckets, [("thumbnails", true), ("uploads", false)]);
        let grants = &manifest.app.functions[&Name::new("resize").unwrap()].grants;
        assert!(grants.may_read_bucket("uploads") && !grants.may_write_bucket("uploads"));
        assert!(grants.may_read_bucket("thumbnails") && grants.may_write_bucket("thumbnails"));
        assert!(!grants.may_read_bucket("other"));
        let triggers = &manifest.app.events.storage_triggers;
        assert_eq!(
            triggers[0],
            StorageTriggerSpec {
                bucket: "uploads".into(),
                filter: ObjectFilter {
                    created: true,
                    removed: false,
                    prefix: String::new(),
                    suffix: ".jpg".into(),
                },
                target: Destination::Function(Name::new("resize").unwrap()),
            }
        );
        assert!(triggers[1].filter.created && triggers[1].filter.removed);
        assert_eq!(triggers[1].filter.prefix, "photos/");
        assert_eq!(
            triggers[1].target,
            Destination::Queue(Name::new("removals").unwrap())
        );
        for (from, to, key, says) in [
            (
                "bucket = \"uploads\"\nsuffix",
                "bucket = \"elsewhere\"\nsuffix",
                "trigger.storage[0].bucket",
                "its own buckets",
            ),
            (
                "[\"removed\", \"created\"]",
                "[\"updated\"]",
                "trigger.storage[1].events",
                "not an event",
            ),
            (
                "[\"removed\", \"created\"]",
                "[]",
                "trigger.storage[1].events",
                "at least one",
            ),
            (
                "queue = \"removals\"",
                "queue = \"removals\"\nfunction = \"resize\"",
                "trigger.storage[1]",
                "exactly one target",
            ),
            (
                "queue = \"removals\"",
                "queue = \"nope\"",
                "trigger.storage[1].queue",
                "",
            ),
            (
                "uploads:read",
                "uploads:all",
                "function.resize.buckets",
                "not an access",
            ),
            (
                "uploads:read",
                "nope",
                "function.resize.buckets",
                "declared: thumbnails, uploads",
            ),
            (
                "[bucket.uploads]",
                "[bucket.Up_loads]",
                "bucket.Up_loads",
                "lower-case",
            ),
            (
                "public_read = true",
                "public_read = 1",
                "bucket.thumbnails.public_read",
                "",
            ),
        ] {
            let text = BUCKETS.replacen(from, to, 1);
            let error = parse("nimbus.toml", &text).unwrap_err();
            assert_eq!(error.key, key, "{error}");
            assert!(error.message.contains(says), "{error}");
        }
    }

    const KV: &str = r#"
name = "shop"

[kv.sessions]
[kv.carts]
events = true

[function.web]
component = "web.wasm"
kv = ["sessions", "carts:read"]
"#;

    #[test]
    fn api_key_authorizers_read_a_header_and_take_no_scopes() {
        let base = "name = \"shop\"\n[function.f]\ncomponent = \"f.wasm\"\n";
        let manifest = parse(
            "nimbus.toml",
            &format!(
                "{base}[authorizer.keys]\nkind = \"api_key\"\n[authorizer.partner]\nkind = \"api_key\"\nheader = \"X-Partner-Key\"\n[[route]]\npath = \"/a\"\nfunction = \"f\"\nauth = \"keys\"\n"
            ),
        )
        .unwrap();
        let header = |name: &str| match &manifest.app.authorizers[&Name::new(name).unwrap()] {
            AuthorizerSpec::ApiKey { header } => header.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(header("keys"), "x-api-key");
        assert_eq!(header("partner"), "x-partner-key");
        for (bad, key, says) in [
            (
                "[authorizer.k]\nkind = \"api_key\"\nheader = \"Authorization\"",
                "authorizer.k.header",
                "not a header",
            ),
            (
                "[authorizer.k]\nkind = \"api_key\"\nheader = \"x-nimbus-claims\"",
                "authorizer.k.header",
                "not a header",
            ),
            (
                "[authorizer.k]\nkind = \"api_key\"\nissuer = \"https://a.example\"",
                "authorizer.k.issuer",
                "remove `issuer`",
            ),
            (
                "[authorizer.k]\nkind = \"jwt\"\nissuer = \"https://a.example\"\naudience = \"x\"\nheader = \"x-key\"",
                "authorizer.k.header",
                "`header`",
            ),
            (
                "[authorizer.k]\nkind = \"api_key\"\n[[route]]\npath = \"/a\"\nfunction = \"f\"\nauth = \"k\"\nscopes = [\"read\"]",
                "route[0].scopes",
                "carry no scopes",
            ),
        ] {
            let error = parse("nimbus.toml", &format!("{base}{bad}\n")).unwrap_err();
            assert_eq!(error.key, key, "{bad}: {error}");
            assert!(error.to_string().contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn function_authorizers_name_a_function_and_where_identity_is_read() {
        let base = "name = \"shop\"\n[function.f]\ncomponent = \"f.wasm\"\n[function.authz]\ncomponent = \"a.wasm\"\n";
        let manifest = parse(
            "nimbus.toml",
            &format!(
                "{base}[authorizer.plain]\nkind = \"function\"\nfunction = \"authz\"\n[authorizer.tenant]\nkind = \"function\"\nfunction = \"authz\"\nidentity_source = [\"$request.header.X-Token\", \"$request.querystring.tenant\"]\nttl = \"0s\"\n[[route]]\npath = \"/a\"\nfunction = \"f\"\nauth = \"plain\"\n"
            ),
        )
        .unwrap();
        let spec = |name: &str| match &manifest.app.authorizers[&Name::new(name).unwrap()] {
            AuthorizerSpec::Function(spec) => spec.clone(),
            other => panic!("{other:?}"),
        };
        let plain = spec("plain");
        assert_eq!(plain.function.as_str(), "authz");
        assert_eq!(
            plain.identity_source,
            [IdentitySource::Header("authorization".into())]
        );
        assert_eq!(plain.ttl, FunctionAuthorizerSpec::DEFAULT_TTL);
        let tenant = spec("tenant");
        assert_eq!(
            tenant.identity_source,
            [
                IdentitySource::Header("x-token".into()),
                IdentitySource::Query("tenant".into())
            ]
        );
        assert!(tenant.ttl.is_zero());
        let function = "[authorizer.k]\nkind = \"function\"\nfunction = \"authz\"";
        for (bad, key, says) in [
            (
                "[authorizer.k]\nkind = \"function\"".to_owned(),
                "authorizer.k",
                "needs `function`",
            ),
            (
                "[authorizer.k]\nkind = \"function\"\nfunction = \"nope\"".to_owned(),
                "authorizer.k.function",
                "no function \"nope\"",
            ),
            (
                format!("{function}\nidentity_source = \"$context.identity.sourceIp\""),
                "authorizer.k.identity_source",
                "not an identity source",
            ),
            (
                format!("{function}\nidentity_source = \"$request.header.x-nimbus-claims\""),
                "authorizer.k.identity_source",
                "not an identity source",
            ),
            (
                format!("{function}\nidentity_source = []"),
                "authorizer.k.identity_source",
                "ttl = \"0s\"",
            ),
            (
                format!("{function}\nttl = \"2h\""),
                "authorizer.k.ttl",
                "at most 1h",
            ),
            (
                format!("{function}\nissuer = \"https://a.example\""),
                "authorizer.k.issuer",
                "remove `issuer`",
            ),
            (
                "[authorizer.k]\nkind = \"api_key\"\nfunction = \"authz\"".to_owned(),
                "authorizer.k.function",
                "belongs to a \"function\" authorizer",
            ),
            (
                format!(
                    "{function}\n[[route]]\npath = \"/a\"\nfunction = \"f\"\nauth = \"k\"\nscopes = [\"read\"]"
                ),
                "route[0].scopes",
                "carry no scopes",
            ),
        ] {
            let error = parse("nimbus.toml", &format!("{base}{bad}\n")).unwrap_err();
            assert_eq!(error.key, key, "{bad}: {error}");
            assert!(error.to_string().contains(says), "{bad}: {error}");
        }
        // No identity, asked every time.
        parse(
            "nimbus.toml",
            &format!("{base}{function}\nidentity_source = []\nttl = \"0s\"\n"),
        )
        .unwrap();
    }

    #[test]
    fn secrets_are_granted_by_list_and_by_env() {
        let manifest = parse(
            "nimbus.toml",
            r#"
name = "shop"

[function.web]
component = "web.wasm"
secrets = ["prod/db-password", "stripe_key"]
env = { MODE = "live", STRIPE = { secret = "stripe_key" }, SIGNING = { secret = "jwt.signing@v2" } }
"#,
        )
        .unwrap();
        let web = &manifest.app.functions["web"];
        assert_eq!(web.env.get("MODE").map(String::as_str), Some("live"));
        assert_eq!(
            web.secret_env.iter().collect::<Vec<_>>(),
            [
                (&"SIGNING".to_owned(), &"jwt.signing@v2".to_owned()),
                (&"STRIPE".to_owned(), &"stripe_key".to_owned())
            ]
        );
        assert_eq!(
            web.grants.secrets,
            ["prod/db-password", "stripe_key", "jwt.signing@v2"],
            "naming a secret in env grants it, once"
        );
        assert!(
            !web.env.contains_key("STRIPE"),
            "a secret's value is never in the spec"
        );
        for (bad, key, says) in [
            (
                r#"secrets = ["has space"]"#,
                "function.f.secrets",
                "not a secret name",
            ),
            (
                r#"env = { X = { secret = "" } }"#,
                "function.f.env.X",
                "not a secret name",
            ),
            (
                r#"env = { X = 5 }"#,
                "function.f.env.X",
                "expected a string or",
            ),
            (
                r#"env = { X = { secret = "a", other = 1 } }"#,
                "function.f.env.X",
                "expected a string or",
            ),
            (
                r#"env = { X = { name = "a" } }"#,
                "function.f.env.X",
                "expected a string or",
            ),
        ] {
            let text = format!("name = \"shop\"\n[function.f]\ncomponent = \"f.wasm\"\n{bad}\n");
            let error = parse("nimbus.toml", &text).unwrap_err();
            assert_eq!(error.key, key, "{bad}: {error}");
            assert!(error.to_string().contains(says), "{bad}: {error}");
            assert!(
                error.to_string().contains("nimbus.toml:4:"),
                "{bad}: placed at the line: {error}"
            );
        }
    }

    #[test]
    fn tables_are_declared_and_granted() {
        let manifest = parse(
            "nimbus.toml",
            r#"
name = "shop"

[table.orders]
partition_key = "customer"
sort_key = { name = "created", type = "N" }
stream = "NEW_AND_OLD_IMAGES"
ttl = "expires"

[table."read-model.v1"]
partition_key = { name = "id", type = "B" }

[function.web]
component = "web.wasm"
tables = ["orders", "read-model.v1:read"]
"#,
        )
        .unwrap();
        let tables = &manifest.app.tables;
        assert_eq!(tables.len(), 2);
        let orders = tables.iter().find(|t| t.name == "orders").unwrap();
        assert_eq!(orders.partition_key.kind, "S");
        assert_eq!(orders.sort_key.as_ref().unwrap().kind, "N");
        assert_eq!(orders.stream.as_deref(), Some("NEW_AND_OLD_IMAGES"));
        let grants = &manifest.app.functions["web"].grants;
        assert!(grants.table("orders").is_some_and(|g| g.write));
        assert!(grants.table("read-model.v1").is_some_and(|g| !g.write));
        for (bad, key) in [
            ("[table.ab]\npartition_key = \"x\"", "table.ab"),
            (
                "[table.abc]\npartition_key = { name = \"x\", type = \"BOOL\" }",
                "table.abc.partition_key",
            ),
            (
                "[table.abc]\npartition_key = \"x\"\nsort_key = \"x\"",
                "table.abc.sort_key",
            ),
            (
                "[table.abc]\npartition_key = \"x\"\nstream = \"ALL\"",
                "table.abc.stream",
            ),
            (
                "[table.abc]\npartition_key = \"x\"\n[function.f]\ncomponent = \"f.wasm\"\ntables = [\"nope\"]",
                "function.f.tables",
            ),
        ] {
            let text = format!("name = \"shop\"\n{bad}\n");
            let error = parse("nimbus.toml", &text).unwrap_err();
            assert_eq!(error.key, key, "{bad}: {error}");
        }
    }

    #[test]
    fn table_triggers_follow_streams() {
        let base = r#"
name = "shop"

[table.orders]
partition_key = "id"
stream = "NEW_AND_OLD_IMAGES"

[table.plain]
partition_key = "id"

[function.project]
component = "p.wasm"

[[trigger.table]]
table = "orders"
function = "project"
batch_size = 50
batching_window = "2s"
starting_position = "TRIM_HORIZON"
filter = { eventName = ["INSERT", "MODIFY"] }
concurrency = 2
"#;
        let manifest = parse("nimbus.toml", base).unwrap();
        let triggers = &manifest.app.events.table_triggers;
        assert_eq!(triggers.len(), 1);
        let trigger = &triggers[0];
        assert_eq!(trigger.table, "orders");
        assert_eq!(trigger.batch_size, 50);
        assert_eq!(trigger.batching_window, std::time::Duration::from_secs(2));
        assert_eq!(trigger.starting_position, StartingPosition::TrimHorizon);
        assert_eq!(
            trigger.filter.as_deref(),
            Some(r#"{"eventName":["INSERT","MODIFY"]}"#)
        );
        assert_eq!(trigger.concurrency, 2);
        assert_eq!(trigger.queue(), "@project:orders");

        let minimal = parse(
            "nimbus.toml",
            &base.replace(
                "batch_size = 50\nbatching_window = \"2s\"\nstarting_position = \"TRIM_HORIZON\"\nfilter = { eventName = [\"INSERT\", \"MODIFY\"] }\nconcurrency = 2\n",
                "",
            ),
        )
        .unwrap();
        let defaults = &minimal.app.events.table_triggers[0];
        assert_eq!(defaults.batch_size, TableTriggerSpec::DEFAULT_BATCH_SIZE);
        assert_eq!(defaults.starting_position, StartingPosition::Latest);
        assert_eq!(defaults.filter, None);

        for (from, to, key, says) in [
            (
                "table = \"orders\"",
                "table = \"plain\"",
                "trigger.table[0].table",
                "no stream",
            ),
            (
                "table = \"orders\"",
                "table = \"nope\"",
                "trigger.table[0].table",
                "no table",
            ),
            (
                "function = \"project\"",
                "function = \"nope\"",
                "trigger.table[0].function",
                "no function",
            ),
            (
                "batch_size = 50",
                "batch_size = 10001",
                "trigger.table[0].batch_size",
                "1 to 10000",
            ),
            (
                "\"2s\"",
                "\"10m\"",
                "trigger.table[0].batching_window",
                "5 minutes",
            ),
            (
                "\"TRIM_HORIZON\"",
                "\"AT_TIMESTAMP\"",
                "trigger.table[0].starting_position",
                "LATEST",
            ),
            (
                "[\"INSERT\", \"MODIFY\"]",
                "\"INSERT\"",
                "trigger.table[0].filter",
                "array",
            ),
            (
                "concurrency = 2",
                "concurrency = 11",
                "trigger.table[0].concurrency",
                "1 to 10",
            ),
        ] {
            assert!(base.contains(from), "{from}");
            let error = parse("nimbus.toml", &base.replace(from, to)).unwrap_err();
            assert_eq!(error.key, key, "{to}: {error}");
            assert!(error.message.contains(says), "{to}: {error}");
        }
        let twice =
            format!("{base}\n[[trigger.table]]\ntable = \"orders\"\nfunction = \"project\"\n");
        let error = parse("nimbus.toml", &twice).unwrap_err();
        assert_eq!(error.key, "trigger.table[1]", "{error}");
    }

    #[test]
    fn kv_stores_are_declared_and_granted() {
        let manifest = parse("nimbus.toml", KV).unwrap();
        let stores: Vec<&str> = manifest.app.kv.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(stores, ["carts", "sessions"]);
        let events: Vec<bool> = manifest.app.kv.iter().map(|k| k.events).collect();
        assert_eq!(events, [true, false], "events are off unless asked for");
        let grants = &manifest.app.functions[&Name::new("web").unwrap()].grants;
        assert!(grants.kv_store("sessions").is_some_and(|g| g.write));
        assert!(grants.kv_store("carts").is_some_and(|g| !g.write));
        assert!(grants.kv_store("other").is_none());
        for (from, to, key, says) in [
            (
                "carts:read",
                "carts:write",
                "function.web.kv",
                "not an access",
            ),
            (
                "carts:read",
                "nope",
                "function.web.kv",
                "declared: carts, sessions",
            ),
            ("[kv.carts]", "[kv.\"Bad Name\"]", "kv.Bad Name", ""),
            (
                "[kv.carts]",
                "[kv.carts]\nttl = 1",
                "kv.carts.ttl",
                "unknown field",
            ),
            ("events = true", "events = \"yes\"", "kv.carts.events", ""),
        ] {
            let text = KV.replacen(from, to, 1);
            let error = parse("nimbus.toml", &text).unwrap_err();
            assert_eq!(error.key, key, "{error}");
            assert!(error.message.contains(says), "{error}");
        }
    }

    #[test]
    fn event_errors_name_the_key() {
        let cases = [
            (
                "queues = [\"orders\"]",
                "queues = [\"nope\"]",
                "function.worker.queues",
                "declared: failed, orders",
            ),
            (
                "retries = 4",
                "retries = -1",
                "function.worker.delivery.retries",
                "0 to 100",
            ),
            (
                "max_age = \"1h\"",
                "max_age = \"long\"",
                "function.worker.delivery.max_age",
                "duration",
            ),
            (
                "on_success = \"function:audit\"",
                "on_success = \"audit\"",
                "function.worker.delivery.on_success",
                "function:NAME",
            ),
            (
                "on_success = \"function:audit\"",
                "on_success = \"function:nope\"",
                "function.worker.delivery.on_success",
                "no function",
            ),
            (
                "batch_size = 5",
                "batch_size = 0",
                "trigger.queue[0].batch_size",
                "1 to 1000",
            ),
            (
                "cron = \"0 0 3 * * *\"",
                "cron = \"0 3 * * *\"",
                "trigger.schedule[0].cron",
                "six or seven",
            ),
            (
                "Europe/Paris",
                "Europe/Nowhere",
                "trigger.schedule[0].timezone",
                "time zone",
            ),
            (
                "rate = \"5 minutes\"",
                "rate = \"often\"",
                "trigger.schedule[1].rate",
                "rate",
            ),
            (
                "missed = \"run_once\"",
                "missed = \"all\"",
                "trigger.schedule[0].missed",
                "run_once",
            ),
            (
                "prefix = \"order.\"",
                "prefix = 1",
                "trigger.event[0].pattern",
                "string",
            ),
            (
                "'{\"source\": [\"/billing\"]}'\nqueue",
                "'{\"source\": [\"/billing\"]}'\nfunction = \"audit\"\nqueue",
                "trigger.event[1]",
                "exactly one target",
            ),
        ];
        for (from, to, key, needle) in cases {
            let text = EVENTS.replace(from, to);
            assert_ne!(text, EVENTS, "{from}");
            let e = error(&text);
            assert_eq!(e.key, key, "{from} -> {to}: {e}");
            assert!(e.message.contains(needle), "{from} -> {to}: {e}");
        }
        let e = error(&EVENTS.replace("fifo = true", "fifo = \"yes\""));
        assert_eq!(e.line, 14, "{e}");
        assert!(e.message.contains("boolean"), "{e}");
    }

    #[test]
    fn cors_and_rate_limits() {
        let base = "name = \"web\"\n[function.f]\ncomponent = \"f.wasm\"\n";
        let with = |cors: &str, limit: &str| {
            format!("{base}{cors}\n[[route]]\npath = \"/\"\nfunction = \"f\"\n{limit}\n")
        };
        let manifest = parse(
            "nimbus.toml",
            &with(
                "[cors]\norigins = [\"https://*.example.com\"]\nheaders = [\"Authorization\"]\nmax_age = \"1h\"",
                "rate_limit = { rate = \"600/min\", burst = 20 }\ncors = { origins = [\"https://admin.example.com\"], credentials = true }",
            ),
        )
        .unwrap();
        let route_cors = manifest.app.routes[0].cors.clone().unwrap();
        assert_eq!(route_cors.origins, ["https://admin.example.com"]);
        assert!(route_cors.credentials);
        let cors = manifest.app.cors.unwrap();
        assert_eq!(cors.headers, ["authorization"]);
        assert_eq!(cors.methods.len(), 6);
        assert_eq!(cors.max_age, Some(std::time::Duration::from_secs(3600)));
        let limit = manifest.app.routes[0].rate_limit.clone().unwrap();
        assert_eq!(
            (limit.rate, limit.per.as_secs(), limit.burst, limit.by),
            (600, 60, 20, RateLimitKey::Ip)
        );
        let default_burst = parse(
            "nimbus.toml",
            &with("", "rate_limit = { rate = \"5/s\", by = \"route\" }"),
        )
        .unwrap();
        let limit = default_burst.app.routes[0].rate_limit.clone().unwrap();
        assert_eq!((limit.burst, limit.by), (5, RateLimitKey::Route));

        for (cors, limit, key, says) in [
            (
                "[cors]\norigins = [\"app.example.com\"]",
                "",
                "cors.origins",
                "scheme and host",
            ),
            (
                "[cors]\norigins = [\"https://a.test/path\"]",
                "",
                "cors.origins",
                "no path",
            ),
            ("[cors]\norigins = []", "", "cors.origins", "at least one"),
            (
                "",
                "cors = { origins = [\"*\"], credentials = true }",
                "route[0].cors.origins",
                "credentials",
            ),
            (
                "[cors]\norigins = [\"*\"]\ncredentials = true",
                "",
                "cors.origins",
                "credentials",
            ),
            (
                "[cors]\norigins = [\"*\"]\nmethods = [\"FETCH\"]",
                "",
                "cors.methods",
                "FETCH",
            ),
            (
                "[cors]\norigins = [\"*\"]\nheaders = [\"bad header\"]",
                "",
                "cors.headers",
                "header name",
            ),
            (
                "",
                "rate_limit = { rate = \"100\" }",
                "route[0].rate_limit.rate",
                "100/s",
            ),
            (
                "",
                "rate_limit = { rate = \"0/s\" }",
                "route[0].rate_limit.rate",
                "100/s",
            ),
            (
                "",
                "rate_limit = { rate = \"5/week\" }",
                "route[0].rate_limit.rate",
                "100/s",
            ),
            (
                "",
                "rate_limit = { rate = \"5/s\", burst = 0 }",
                "route[0].rate_limit.burst",
                "1 to",
            ),
            (
                "",
                "rate_limit = { rate = \"5/s\", by = \"user\" }",
                "route[0].rate_limit.by",
                "\"ip\"",
            ),
        ] {
            let error = error(&with(cors, limit));
            assert_eq!(error.key, key, "{error}");
            assert!(error.message.contains(says), "{error}");
        }
    }

    #[test]
    fn auth_sections_and_their_authorizer() {
        let base = "name = \"web\"\n[function.f]\ncomponent = \"f.wasm\"\n[[route]]\npath = \"/\"\nfunction = \"f\"\n";
        let defaults = parse("nimbus.toml", &format!("{base}[auth]\n")).unwrap();
        assert_eq!(defaults.app.auth, Some(AuthSpec::with_defaults()));
        assert_eq!(parse("nimbus.toml", base).unwrap().app.auth, None);

        let full = parse(
            "nimbus.toml",
            &format!(
                "{base}[auth]\npath = \"/identity\"\nhost = \"Login.Example.com\"\nissuer = \"https://login.example.com/identity/\"\nsite_url = \"http://localhost:3000\"\nsignup = false\nconfirm_email = true\naccess_token_ttl = \"15m\"\nrefresh_reuse_interval = \"2s\"\nsession_ttl = \"30d\"\npassword_min_length = 12\npassword_requires = [\"digits\", \"uppercase\"]\nattempts_per_ip = {{ rate = \"10/min\", burst = 3 }}\nfailures_per_account = {{ rate = \"2/min\" }}\n[authorizer.users]\nkind = \"auth\"\nleeway = \"5s\"\n"
            ),
        )
        .unwrap();
        let auth = full.app.auth.unwrap();
        assert_eq!(auth.path, "/identity");
        assert_eq!(auth.host.as_deref(), Some("login.example.com"));
        assert_eq!(
            auth.issuer.as_deref(),
            Some("https://login.example.com/identity")
        );
        assert!(!auth.signup && auth.confirm_email);
        assert_eq!(auth.access_token_ttl, std::time::Duration::from_secs(900));
        assert_eq!(
            auth.refresh_reuse_interval,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(
            auth.session_ttl,
            Some(std::time::Duration::from_secs(30 * 86_400))
        );
        assert_eq!(auth.password_min_length, 12);
        assert_eq!(auth.password_requires, ["digits", "uppercase"]);
        assert_eq!(
            (
                auth.attempts_per_ip.rate,
                auth.attempts_per_ip.burst,
                auth.attempts_per_ip.by
            ),
            (10, 3, RateLimitKey::Ip)
        );
        assert_eq!(
            (auth.failures_per_account.rate, auth.failures_per_account.by),
            (2, RateLimitKey::Subject)
        );
        assert_eq!(
            full.app.authorizers[&Name::new("users").unwrap()],
            AuthorizerSpec::Auth {
                leeway: std::time::Duration::from_secs(5)
            }
        );

        for (extra, key, says) in [
            ("[auth]\npath = \"/auth/{x}\"", "auth.path", "literal path"),
            (
                "[auth]\npath = \"/auth/\"",
                "auth.path",
                "no trailing slash",
            ),
            (
                "[auth]\nissuer = \"login.example.com\"",
                "auth.issuer",
                "http:// or https://",
            ),
            (
                "[auth]\naccess_token_ttl = \"30d\"",
                "auth.access_token_ttl",
                "expected from",
            ),
            (
                "[auth]\npassword_min_length = 4",
                "auth.password_min_length",
                "6 to 72",
            ),
            (
                "[auth]\npassword_requires = [\"emoji\"]",
                "auth.password_requires",
                "lowercase",
            ),
            (
                "[auth]\nattempts_per_ip = { rate = \"1/s\", by = \"route\" }",
                "auth.attempts_per_ip.by",
                "remove `by`",
            ),
            (
                "[authorizer.a]\nkind = \"auth\"",
                "authorizer.a.kind",
                "add an `[auth]` section",
            ),
            (
                "[auth]\n[authorizer.a]\nkind = \"auth\"\nissuer = \"https://x.test\"",
                "authorizer.a.issuer",
                "remove `issuer`",
            ),
            (
                "[authorizer.a]\nkind = \"saml\"",
                "authorizer.a.kind",
                "\"auth\"",
            ),
        ] {
            let error = parse("nimbus.toml", &format!("{base}{extra}\n")).unwrap_err();
            assert_eq!(error.key, key, "{error}");
            assert!(error.message.contains(says), "{error}");
        }
    }

    #[test]
    fn jwt_authorizers() {
        let base = "name = \"web\"\n[function.f]\ncomponent = \"f.wasm\"\n";
        let with = |authorizer: &str, route: &str| {
            format!("{base}{authorizer}\n[[route]]\npath = \"/\"\nfunction = \"f\"\n{route}\n")
        };
        let manifest = parse(
            "nimbus.toml",
            &with(
                "[authorizer.users]\nkind = \"jwt\"\nissuer = \"https://id.example.com/\"\naudience = \"api\"",
                "auth = \"users\"\nscopes = [\"todo:read\", \"todo:write\"]",
            ),
        )
        .unwrap();
        let route = &manifest.app.routes[0];
        assert_eq!(route.auth.as_ref().map(|n| n.as_str()), Some("users"));
        assert_eq!(route.scopes, ["todo:read", "todo:write"]);
        let AuthorizerSpec::Jwt(jwt) = &manifest.app.authorizers[&Name::new("users").unwrap()]
        else {
            panic!("a jwt authorizer")
        };
        assert_eq!(jwt.issuer, "https://id.example.com/");
        assert_eq!(jwt.audience, ["api"]);
        assert_eq!(jwt.algorithms, ["RS256", "ES256"]);
        assert_eq!(jwt.leeway, JwtAuthorizerSpec::DEFAULT_LEEWAY);
        assert_eq!(jwt.jwks_url, None);

        let explicit = parse(
            "nimbus.toml",
            &with(
                "[authorizer.a]\nkind = \"jwt\"\nissuer = \"http://127.0.0.1:9/\"\naudience = [\"x\", \"y\"]\njwks_url = \"http://127.0.0.1:9/keys\"\nalgorithms = [\"es384\"]\nleeway = \"5s\"",
                "auth = \"a\"",
            ),
        )
        .unwrap();
        let AuthorizerSpec::Jwt(jwt) = &explicit.app.authorizers[&Name::new("a").unwrap()] else {
            panic!("a jwt authorizer")
        };
        assert_eq!(
            (
                jwt.audience.len(),
                jwt.algorithms.clone(),
                jwt.leeway.as_secs()
            ),
            (2, vec!["ES384".to_owned()], 5)
        );
        assert!(explicit.app.routes[0].scopes.is_empty());

        let good = "[authorizer.a]\nkind = \"jwt\"\nissuer = \"https://i.test\"\naudience = \"x\"";
        for (authorizer, route, key, says) in [
            (
                "",
                "auth = \"users\"",
                "route[0].auth",
                "no authorizer \"users\"",
            ),
            (good, "scopes = [\"read\"]", "route[0].scopes", "auth = "),
            (
                good,
                "auth = \"a\"\nscopes = [\"two words\"]",
                "route[0].scopes",
                "no spaces",
            ),
            (
                good,
                "rate_limit = { rate = \"5/s\", by = \"subject\" }",
                "route[0].rate_limit.by",
                "auth = ",
            ),
            (
                "[authorizer.a]\nkind = \"saml\"",
                "",
                "authorizer.a.kind",
                "\"jwt\"",
            ),
            (
                "[authorizer.a]\nkind = \"jwt\"\naudience = \"x\"",
                "",
                "authorizer.a",
                "issuer",
            ),
            (
                "[authorizer.a]\nkind = \"jwt\"\nissuer = \"id.example.com\"\naudience = \"x\"",
                "",
                "authorizer.a.issuer",
                "https://",
            ),
            (
                "[authorizer.a]\nkind = \"jwt\"\nissuer = \"https://i.test\"\naudience = []",
                "",
                "authorizer.a.audience",
                "aud",
            ),
            (
                "[authorizer.a]\nkind = \"jwt\"\nissuer = \"https://i.test\"\naudience = \"x\"\nalgorithms = [\"HS256\"]",
                "",
                "authorizer.a.algorithms",
                "symmetric",
            ),
            (
                "[authorizer.a]\nkind = \"jwt\"\nissuer = \"https://i.test\"\naudience = \"x\"\nalgorithms = [\"none\"]",
                "",
                "authorizer.a.algorithms",
                "unsigned",
            ),
            (
                "[authorizer.a]\nkind = \"jwt\"\nissuer = \"https://i.test\"\naudience = \"x\"\nleeway = \"1h\"",
                "",
                "authorizer.a.leeway",
                "at most",
            ),
        ] {
            let error = error(&with(authorizer, route));
            assert_eq!(error.key, key, "{error}");
            assert!(error.message.contains(says), "{error}");
        }
    }

    #[test]
    fn firewalls_and_body_limits() {
        let base = "name = \"web\"\n[function.f]\ncomponent = \"f.wasm\"\n";
        let with = |firewall: &str, route: &str| {
            format!("{base}{firewall}\n[[route]]\npath = \"/\"\nfunction = \"f\"\n{route}\n")
        };
        let manifest = parse(
            "nimbus.toml",
            &with(
                "[firewall]\nallow = [\"10.0.0.0/8\", \"192.0.2.7\"]\ndeny = [\"10.9.0.0/16\"]\ntrusted_proxies = [\"127.0.0.1\"]\nmax_headers = 50\nmax_header_bytes = \"8KiB\"\nblocked_methods = [\"trace\"]",
                "max_body = \"1MiB\"",
            ),
        )
        .unwrap();
        let firewall = manifest.app.firewall.unwrap();
        assert_eq!(firewall.allow, ["10.0.0.0/8", "192.0.2.7"]);
        assert_eq!(firewall.max_headers, Some(50));
        assert_eq!(firewall.max_header_bytes, Some(8192));
        assert_eq!(firewall.blocked_methods, ["TRACE"]);
        assert_eq!(manifest.app.routes[0].max_body_bytes, Some(1 << 20));

        for (firewall, route, key, says) in [
            (
                "[firewall]\nallow = [\"10.0.0.0/33\"]",
                "",
                "firewall.allow",
                "10.0.0.0/8",
            ),
            (
                "[firewall]\ndeny = [\"example.com\"]",
                "",
                "firewall.deny",
                "network",
            ),
            (
                "[firewall]\nmax_headers = 0",
                "",
                "firewall.max_headers",
                "1 to 10000",
            ),
            (
                "[firewall]\nmax_header_bytes = \"12\"",
                "",
                "firewall.max_header_bytes",
                "256",
            ),
            (
                "[firewall]\nblocked_methods = [\"BREW\"]",
                "",
                "firewall.blocked_methods",
                "BREW",
            ),
            (
                "[firewall]\nallowed = []",
                "",
                "firewall.allowed",
                "unknown field",
            ),
            ("", "max_body = \"lots\"", "route[0].max_body", "size like"),
        ] {
            let error = error(&with(firewall, route));
            assert_eq!(error.key, key, "{error}");
            assert!(error.message.contains(says), "{error}");
        }
    }
}
