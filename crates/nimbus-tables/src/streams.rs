//! Change streams: a table's change records in DynamoDB Streams' shape, and the DynamoDB
//! Streams read API (`DynamoDBStreams_20120810`: ListStreams, DescribeStream,
//! GetShardIterator, GetRecords) over them.
//!
//! A table's stream has one shard; its records are numbered in commit order, so order per item
//! key holds. A shard iterator is the table and the position after which to read, opaque to
//! the client and checked against the caller's reach on every read.

use crate::ops::Caller;
use crate::request::{Answer, Params, internal, missing, not_found, one_of, validation};
use crate::table::{TableSchema, decode_item};
use crate::value::{Item, item_size, item_to_json};
use base64::Engine as _;
use bytes::Bytes;
use nimbus_aws::JsonError;
use nimbus_core::clock::{Clock, SystemClock};
use nimbus_store::tables::{ChangeRecord, TableId, TableStore};
use serde_json::{Value as Json, json};
use std::sync::Arc;

/// How long records are kept, as DynamoDB Streams keeps them.
pub const RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
/// The most records one GetRecords answers.
const MAX_RECORDS: usize = 1000;
/// How long a shard iterator may be used after GetShardIterator (or GetRecords) returns it.
pub const ITERATOR_LIFETIME_MS: u64 = 15 * 60 * 1000;

/// DynamoDB Streams' sequence number for a record: decimal, fixed width, so text order is
/// numeric order.
pub fn sequence_number(sequence: u64) -> String {
    format!("{sequence:021}")
}

fn parse_sequence(text: &str) -> Option<u64> {
    text.parse().ok()
}

/// One change as a DynamoDB Streams record (GetRecords' shape), with the images its view
/// type keeps.
pub fn record(schema: &TableSchema, change: &ChangeRecord) -> Answer<Json> {
    shaped(schema, change, false)
}

/// One change as Lambda's DynamoDB event source delivers it: the same record, with its
/// stream's ARN and, for a TTL deletion, `userIdentity` in lower camel case.
pub fn lambda_record(schema: &TableSchema, change: &ChangeRecord) -> Answer<Json> {
    shaped(schema, change, true)
}

fn shaped(schema: &TableSchema, change: &ChangeRecord, lambda: bool) -> Answer<Json> {
    let view = schema.stream.as_deref().unwrap_or("KEYS_ONLY");
    let old = change.old.as_deref().map(decode_item).transpose()?;
    let new = change.new.as_deref().map(decode_item).transpose()?;
    let event = match (&old, &new) {
        (None, Some(_)) => "INSERT",
        (Some(_), Some(_)) => "MODIFY",
        _ => "REMOVE",
    };
    let keys: Item = new
        .as_ref()
        .or(old.as_ref())
        .map(|item| schema.key_of(item))
        .unwrap_or_default();
    let mut size = item_size(&keys);
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": change.at_ms / 1000,
        "Keys": item_to_json(&keys),
        "SequenceNumber": sequence_number(change.sequence),
        "StreamViewType": view,
    });
    if matches!(view, "NEW_IMAGE" | "NEW_AND_OLD_IMAGES")
        && let Some(new) = &new
    {
        size += item_size(new);
        crate::request::set(&mut dynamodb, "NewImage", item_to_json(new));
    }
    if matches!(view, "OLD_IMAGE" | "NEW_AND_OLD_IMAGES")
        && let Some(old) = &old
    {
        size += item_size(old);
        crate::request::set(&mut dynamodb, "OldImage", item_to_json(old));
    }
    crate::request::set(&mut dynamodb, "SizeBytes", json!(size));
    let mut record = json!({
        "eventID": format!("{:032x}", u128::from(change.sequence) << 64 | u128::from(change.at_ms)),
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": nimbus_aws::REGION,
        "dynamodb": dynamodb,
    });
    if lambda {
        crate::request::set(
            &mut record,
            "eventSourceARN",
            json!(schema.stream_arn().unwrap_or_default()),
        );
    }
    if change.expired {
        // How DynamoDB Streams marks TTL deletions.
        let identity = if lambda {
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        } else {
            json!({"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"})
        };
        crate::request::set(&mut record, "userIdentity", identity);
    }
    Ok(record)
}

/// The shard of a table's stream (one per stream), named as DynamoDB names shards.
fn shard_id(schema: &TableSchema) -> String {
    format!(
        "shardId-{:020}-{:08x}",
        schema.stream_since_ms.unwrap_or(0),
        schema
            .name
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
    )
}

/// The table a stream ARN names (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`).
fn table_of_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.split_once(":table/")?.1;
    rest.split_once("/stream/")
}

/// A shard iterator's contents: the stream, the sequence after which to read, and when the
/// iterator was handed out (it expires, as DynamoDB's do).
struct Iterator {
    table: String,
    label: String,
    after: u64,
    issued_ms: u64,
}

impl Iterator {
    fn encode(&self) -> String {
        let text = format!(
            "{}\n{}\n{}\n{}",
            self.table, self.label, self.after, self.issued_ms
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(text: &str) -> Option<Iterator> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.split('\n');
        let (table, label, after, issued) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        Some(Iterator {
            table: table.to_owned(),
            label: label.to_owned(),
            after: after.parse().ok()?,
            issued_ms: issued.parse().ok()?,
        })
    }
}

fn trimmed() -> JsonError {
    JsonError::new(
        crate::request::NAMESPACE,
        "TrimmedDataAccessException",
        "The data you are trying to access has been trimmed.",
    )
}

/// The DynamoDB Streams service on the AWS-compatible endpoint.
pub struct Streams {
    store: Arc<dyn TableStore>,
    /// When iterators are handed out and used (a test moves it).
    clock: Arc<dyn Clock>,
}

impl Streams {
    pub fn new(store: Arc<dyn TableStore>) -> Streams {
        Streams {
            store,
            clock: Arc::new(SystemClock),
        }
    }

    async fn trimmed_through(&self, id: &TableId) -> Answer<u64> {
        self.store
            .trimmed_through(id)
            .await
            .map_err(|e| internal(&e))
    }

    async fn schema(&self, caller: &Caller, table: &str) -> Answer<Option<TableSchema>> {
        match self
            .store
            .table(&TableId::new(caller.app.as_str(), table))
            .await
        {
            Ok(Some(info)) => Ok(Some(TableSchema::from_meta(&info.meta)?)),
            Ok(None) => Ok(None),
            Err(error) => Err(internal(&error)),
        }
    }

    /// The table and schema of a stream ARN the caller may read.
    async fn stream(&self, caller: &Caller, arn: &str) -> Answer<TableSchema> {
        let gone = || {
            not_found(format!(
                "Requested resource not found: Stream: {arn} not found"
            ))
        };
        let (table, label) = table_of_arn(arn).ok_or_else(gone)?;
        caller.check(table, false, "DescribeStream")?;
        let schema = self.schema(caller, table).await?.ok_or_else(gone)?;
        if schema.stream_label().as_deref() != Some(label) {
            return Err(gone());
        }
        Ok(schema)
    }

    pub async fn call(&self, caller: &Caller, operation: &str, body: &[u8]) -> Answer<Json> {
        let params = Params::parse(body)?;
        match operation {
            "ListStreams" => self.list_streams(caller, &params).await,
            "DescribeStream" => self.describe_stream(caller, &params).await,
            "GetShardIterator" => self.get_shard_iterator(caller, &params).await,
            "GetRecords" => self.get_records(caller, &params).await,
            other => Err(JsonError::new(
                "com.amazon.coral.service",
                "UnknownOperationException",
                format!("DynamoDB Streams has no operation {other}"),
            )),
        }
    }

    async fn list_streams(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let names = match params.string("TableName")? {
            Some(table) => vec![table.to_owned()],
            None => self
                .store
                .tables(&caller.app)
                .await
                .map_err(|e| internal(&e))?,
        };
        let mut streams = Vec::new();
        for name in names {
            if caller.check(&name, false, "ListStreams").is_err() {
                continue;
            }
            if let Some(schema) = self.schema(caller, &name).await?
                && let (Some(arn), Some(label)) = (schema.stream_arn(), schema.stream_label())
            {
                streams.push(json!({"StreamArn": arn, "TableName": name, "StreamLabel": label}));
            }
        }
        Ok(json!({"Streams": streams}))
    }

    async fn describe_stream(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let arn = params.required_string("StreamArn")?;
        let schema = self.stream(caller, arn).await?;
        let id = TableId::new(caller.app.as_str(), schema.name.as_str());
        let first = self
            .store
            .changes(&id, None, 1)
            .await
            .map_err(|e| internal(&e))?;
        let mut range = json!({});
        crate::request::set(
            &mut range,
            "StartingSequenceNumber",
            json!(sequence_number(first.first().map_or(1, |r| r.sequence))),
        );
        let mut key_schema = vec![json!({"AttributeName": schema.hash.name, "KeyType": "HASH"})];
        if let Some(range_key) = &schema.range {
            key_schema.push(json!({"AttributeName": range_key.name, "KeyType": "RANGE"}));
        }
        Ok(json!({"StreamDescription": {
            "StreamArn": arn,
            "StreamLabel": schema.stream_label(),
            "StreamStatus": "ENABLED",
            "StreamViewType": schema.stream,
            "CreationRequestDateTime": schema.stream_since_ms.unwrap_or(0) as f64 / 1000.0,
            "TableName": schema.name,
            "KeySchema": key_schema,
            "Shards": [{"ShardId": shard_id(&schema), "SequenceNumberRange": range}],
        }}))
    }

    async fn get_shard_iterator(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let arn = params.required_string("StreamArn")?;
        let shard = params.required_string("ShardId")?;
        let kind = one_of(
            params,
            "ShardIteratorType",
            &[
                "TRIM_HORIZON",
                "LATEST",
                "AT_SEQUENCE_NUMBER",
                "AFTER_SEQUENCE_NUMBER",
            ],
        )?
        .ok_or_else(|| missing("ShardIteratorType"))?;
        let schema = self.stream(caller, arn).await?;
        if shard != shard_id(&schema) {
            return Err(not_found(format!(
                "Requested resource not found: Shard does not exist: {shard}"
            )));
        }
        let id = TableId::new(caller.app.as_str(), schema.name.as_str());
        let sequence = || -> Answer<u64> {
            let text = params
                .string("SequenceNumber")?
                .ok_or_else(|| validation(format!("SequenceNumber is required for {kind}")))?;
            parse_sequence(text)
                .ok_or_else(|| validation(format!("Invalid SequenceNumber: {text}")))
        };
        let trimmed_through = self.trimmed_through(&id).await?;
        let after = match kind {
            "TRIM_HORIZON" => trimmed_through,
            "LATEST" => self
                .store
                .last_change(&id)
                .await
                .map_err(|e| internal(&e))?
                .unwrap_or(0),
            "AT_SEQUENCE_NUMBER" => sequence()?.saturating_sub(1),
            _ => sequence()?,
        };
        // A position among the trimmed records would silently skip what is gone.
        if after < trimmed_through {
            return Err(trimmed());
        }
        let iterator = Iterator {
            table: schema.name.clone(),
            label: schema.stream_label().unwrap_or_default(),
            after,
            issued_ms: self.clock.now_ms(),
        };
        Ok(json!({"ShardIterator": iterator.encode()}))
    }

    async fn get_records(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let text = params.required_string("ShardIterator")?;
        let limit = match params.integer("Limit")? {
            None => MAX_RECORDS,
            Some(n) if (1..=MAX_RECORDS as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{n}' at 'limit' failed to satisfy \
                     constraint: Member must have value less than or equal to 1000"
                )));
            }
        };
        let iterator = Iterator::decode(text).ok_or_else(|| validation("Invalid ShardIterator"))?;
        caller.check(&iterator.table, false, "GetRecords")?;
        let schema = self
            .schema(caller, &iterator.table)
            .await?
            .filter(|s| s.stream_label().as_deref() == Some(iterator.label.as_str()))
            .ok_or_else(|| not_found("Requested resource not found: Stream not found"))?;
        let now = self.clock.now_ms();
        if now.saturating_sub(iterator.issued_ms) > ITERATOR_LIFETIME_MS {
            return Err(JsonError::new(
                crate::request::NAMESPACE,
                "ExpiredIteratorException",
                "Iterator expired: a shard iterator is valid for 15 minutes after it is \
                 returned; call GetShardIterator again",
            ));
        }
        let id = TableId::new(caller.app.as_str(), schema.name.as_str());
        let changes = self
            .store
            .changes(&id, Some(iterator.after), limit)
            .await
            .map_err(|e| internal(&e))?;
        // Read after the changes, so a trim in between cannot pass unnoticed.
        if iterator.after < self.trimmed_through(&id).await? {
            return Err(trimmed());
        }
        let mut records = Vec::with_capacity(changes.len());
        for change in &changes {
            records.push(record(&schema, change)?);
        }
        let next = Iterator {
            after: changes.last().map_or(iterator.after, |c| c.sequence),
            issued_ms: now,
            ..iterator
        };
        Ok(json!({"Records": records, "NextShardIterator": next.encode()}))
    }
}

/// DynamoDB Streams on the AWS-compatible endpoint.
pub struct StreamsService {
    streams: Streams,
}

impl StreamsService {
    pub fn new(store: Arc<dyn TableStore>) -> StreamsService {
        StreamsService {
            streams: Streams::new(store),
        }
    }
}

#[async_trait::async_trait]
impl nimbus_aws::JsonService for StreamsService {
    fn target(&self) -> &'static str {
        "DynamoDBStreams_20120810"
    }

    fn signing_names(&self) -> &'static [&'static str] {
        // boto3 signs for `dynamodb` (the model's signing name); some clients use the
        // endpoint prefix.
        &["dynamodb", "streams.dynamodb"]
    }

    async fn call(
        &self,
        principal: &nimbus_aws::Principal,
        operation: &str,
        body: Bytes,
    ) -> nimbus_aws::JsonAnswer {
        let caller = match crate::ops::caller_of(principal) {
            Ok(caller) => caller,
            Err(error) => return nimbus_aws::JsonAnswer::Error(error),
        };
        match self.streams.call(&caller, operation, &body).await {
            Ok(answer) => nimbus_aws::JsonAnswer::Ok(answer),
            Err(error) => nimbus_aws::JsonAnswer::Error(error),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ops::{Caller, Dynamo};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The system's time plus an offset the test moves.
    #[derive(Default)]
    struct Moved(AtomicU64);

    impl Clock for Moved {
        fn now_ms(&self) -> u64 {
            SystemClock.now_ms() + self.0.load(Ordering::Relaxed)
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<dyn TableStore>,
        dynamo: Dynamo,
        streams: Streams,
        clock: Arc<Moved>,
        caller: Caller,
        arn: String,
    }

    impl Fixture {
        async fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn TableStore> =
                Arc::new(nimbus_store_redb::RedbStore::open(dir.path()).unwrap());
            let dynamo = Dynamo::new(store.clone());
            let clock = Arc::new(Moved::default());
            let mut streams = Streams::new(store.clone());
            streams.clock = clock.clone();
            let caller = Caller {
                app: "shop".into(),
                grants: None,
            };
            let created = dynamo
                .call(
                    &caller,
                    "CreateTable",
                    json!({
                        "TableName": "events",
                        "AttributeDefinitions": [{"AttributeName": "k", "AttributeType": "S"}],
                        "KeySchema": [{"AttributeName": "k", "KeyType": "HASH"}],
                        "BillingMode": "PAY_PER_REQUEST",
                        "StreamSpecification": {"StreamEnabled": true, "StreamViewType": "KEYS_ONLY"},
                    })
                    .to_string()
                    .as_bytes(),
                )
                .await
                .unwrap();
            let arn = created["TableDescription"]["LatestStreamArn"]
                .as_str()
                .unwrap()
                .to_owned();
            Fixture {
                _dir: dir,
                store,
                dynamo,
                streams,
                clock,
                caller,
                arn,
            }
        }

        async fn put(&self, key: &str) {
            let item = json!({"TableName": "events", "Item": {"k": {"S": key}}});
            self.dynamo
                .call(&self.caller, "PutItem", item.to_string().as_bytes())
                .await
                .unwrap();
        }

        async fn streams(&self, operation: &str, params: Json) -> Answer<Json> {
            self.streams
                .call(&self.caller, operation, params.to_string().as_bytes())
                .await
        }

        async fn iterator(&self, kind: &str, sequence: Option<&str>) -> Answer<String> {
            let described = self
                .streams("DescribeStream", json!({"StreamArn": self.arn}))
                .await?;
            let shard = &described["StreamDescription"]["Shards"][0]["ShardId"];
            let mut params =
                json!({"StreamArn": self.arn, "ShardId": shard, "ShardIteratorType": kind});
            if let Some(sequence) = sequence {
                params["SequenceNumber"] = json!(sequence);
            }
            let answer = self.streams("GetShardIterator", params).await?;
            Ok(answer["ShardIterator"].as_str().unwrap().to_owned())
        }

        async fn records(&self, iterator: &str) -> Answer<(Vec<String>, String)> {
            let answer = self
                .streams("GetRecords", json!({"ShardIterator": iterator}))
                .await?;
            let keys = answer["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["dynamodb"]["Keys"]["k"]["S"].as_str().unwrap().to_owned())
                .collect();
            let next = answer["NextShardIterator"].as_str().unwrap().to_owned();
            Ok((keys, next))
        }
    }

    fn code(answer: Answer<impl std::fmt::Debug>) -> String {
        let kind = answer.unwrap_err().kind;
        kind.rsplit('#').next().unwrap().to_owned()
    }

    /// Records past the retention are trimmed; an iterator or sequence number among them is
    /// refused with TrimmedDataAccessException, and TRIM_HORIZON starts after them. Iterators
    /// expire 15 minutes after they are returned.
    #[tokio::test]
    async fn trimmed_records_and_old_iterators_are_refused() {
        let f = Fixture::new().await;
        f.put("a").await;
        f.put("b").await;
        let horizon = f.iterator("TRIM_HORIZON", None).await.unwrap();
        let (keys, _) = f.records(&horizon).await.unwrap();
        assert_eq!(keys, ["a", "b"]);
        let first = f
            .store
            .changes(&TableId::new("shop", "events"), None, 1)
            .await
            .unwrap()[0]
            .sequence;

        let id = TableId::new("shop", "events");
        assert_eq!(f.store.trim_changes(&id, u64::MAX).await.unwrap(), 2);
        assert_eq!(
            code(f.records(&horizon).await),
            "TrimmedDataAccessException"
        );
        let at_first = sequence_number(first);
        assert_eq!(
            code(f.iterator("AT_SEQUENCE_NUMBER", Some(&at_first)).await),
            "TrimmedDataAccessException"
        );
        f.put("c").await;
        let fresh = f.iterator("TRIM_HORIZON", None).await.unwrap();
        let (keys, next) = f.records(&fresh).await.unwrap();
        assert_eq!(keys, ["c"]);

        // The iterator GetRecords returned lives 15 minutes from then, and no longer.
        f.clock
            .0
            .store(ITERATOR_LIFETIME_MS - 1_000, Ordering::Relaxed);
        let (keys, next) = f.records(&next).await.unwrap();
        assert!(keys.is_empty());
        f.clock.0.store(2 * ITERATOR_LIFETIME_MS, Ordering::Relaxed);
        let expired = f.records(&next).await;
        assert_eq!(code(expired), "ExpiredIteratorException");
        let answer = f.records(&fresh).await.unwrap_err();
        assert!(
            answer.kind.ends_with("#ExpiredIteratorException"),
            "{}",
            answer.kind
        );
        assert!(answer.message.contains("15 minutes"), "{}", answer.message);
    }
}
