//! The DynamoDB operations, over a [`TableStore`]. Each reads its parameters as DynamoDB
//! validates them, decides writes inside the store's transaction (so conditions and updates
//! are atomic against concurrent writers), and answers in DynamoDB's shape.

use crate::expr::eval::{self, EvalError};
use crate::expr::parse::{self, Kind};
use crate::expr::{Placeholders, ast};
use crate::request::{
    Answer, NAMESPACE, Params, in_use, internal, missing, not_found, one_of, validation,
};
use crate::table::{TableSchema, decode_item, encode_item};
use crate::value::{Item, MAX_ITEM_BYTES, Value, item_size, item_to_json};
use bytes::Bytes;
use nimbus_aws::JsonError;
use nimbus_store::BoxError;
use nimbus_store::tables::{
    Change, ItemKey, PageLimit, SortRange, TableError, TableId, TableStore,
};
use serde_json::{Value as Json, json};
use std::ops::Bound;
use std::sync::Arc;

/// The most a Query or Scan reads for one page, as DynamoDB.
const PAGE_BYTES: usize = 1 << 20;
/// The most items one BatchGetItem names.
const MAX_BATCH_GET: usize = 100;
/// The most requests one BatchWriteItem holds.
const MAX_BATCH_WRITE: usize = 25;
/// The most actions one transaction holds.
const MAX_TRANSACTION: usize = 100;

/// Who is asking: the namespace (app) whose tables they see, and what they may do there.
#[derive(Debug, Clone)]
pub struct Caller {
    pub app: String,
    /// `None`: every table of the app; else only these (name, may write).
    pub grants: Option<Arc<nimbus_core::Grants>>,
}

impl Caller {
    pub(crate) fn check(&self, table: &str, write: bool, action: &str) -> Answer<()> {
        let Some(grants) = &self.grants else {
            return Ok(());
        };
        match grants.table(table) {
            Some(grant) if grant.write || !write => Ok(()),
            _ => Err(JsonError::new(
                "com.amazon.coral.service",
                "AccessDeniedException",
                format!(
                    "User: nimbus function of app {} is not authorized to perform: \
                     dynamodb:{action} on resource: {} because no grant allows it (add \
                     \"{table}{}\" to the function's `tables` in the manifest)",
                    self.app,
                    format_args!(
                        "arn:aws:dynamodb:{}:000000000000:table/{table}",
                        nimbus_aws::REGION
                    ),
                    if write { "" } else { ":read" }
                ),
            )),
        }
    }
}

/// A refused decision, carried out of the store's transaction.
#[derive(Debug)]
struct Refusal(JsonError);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Refusal {}

fn refuse(error: JsonError) -> BoxError {
    Box::new(Refusal(error))
}

fn conditional_failed(old: Option<&Item>, return_old: bool) -> JsonError {
    let mut error = JsonError::new(
        NAMESPACE,
        "ConditionalCheckFailedException",
        "The conditional request failed",
    );
    if return_old && let Some(old) = old {
        error.fields.insert("Item".to_owned(), item_to_json(old));
    }
    error
}

/// The DynamoDB service.
pub struct Dynamo {
    store: Arc<dyn TableStore>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn store_error(error: TableError) -> JsonError {
    match error {
        TableError::NoSuchTable(_) => not_found("Requested resource not found"),
        TableError::Refused(reason) => match reason.downcast::<Refusal>() {
            Ok(refusal) => refusal.0,
            Err(other) => internal(other.as_ref()),
        },
        TableError::DuplicateKey(_) => validation("Provided list of item keys contains duplicates"),
        other => internal(&other),
    }
}

/// A write's expressions, parsed and checked once.
struct Conditions {
    condition: Option<ast::Condition>,
    placeholders: Placeholders,
}

impl Conditions {
    fn holds(&self, item: Option<&Item>) -> Result<bool, EvalError> {
        let Some(condition) = &self.condition else {
            return Ok(true);
        };
        let empty = Item::new();
        eval::condition(
            Kind::Condition,
            condition,
            item.unwrap_or(&empty),
            &self.placeholders,
        )
    }
}

fn return_values_of(params: &Params, allowed: &[&'static str]) -> Answer<&'static str> {
    let all = ["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"];
    let Some(value) = one_of(params, "ReturnValues", &all)? else {
        return Ok("NONE");
    };
    match allowed.iter().find(|a| **a == value) {
        Some(found) => Ok(found),
        None => Err(validation(format!(
            "ReturnValues can only be {} on this operation",
            allowed.join(" or ")
        ))),
    }
}

fn return_old_on_failure(params: &Params) -> Answer<bool> {
    Ok(one_of(
        params,
        "ReturnValuesOnConditionCheckFailure",
        &["ALL_OLD", "NONE"],
    )? == Some("ALL_OLD"))
}

fn check_size(item: &Item, update: bool) -> Result<(), JsonError> {
    if item_size(item) > MAX_ITEM_BYTES {
        return Err(validation(if update {
            "Item size to update has exceeded the maximum allowed size"
        } else {
            "Item size has exceeded the maximum allowed size"
        }));
    }
    Ok(())
}

impl Dynamo {
    pub fn new(store: Arc<dyn TableStore>) -> Dynamo {
        Dynamo { store }
    }

    /// Answer one operation.
    pub async fn call(&self, caller: &Caller, operation: &str, body: &[u8]) -> Answer<Json> {
        let params = Params::parse(body)?;
        match operation {
            "CreateTable" => self.create_table(caller, &params).await,
            "DescribeTable" => self.describe_table(caller, &params).await,
            "ListTables" => self.list_tables(caller, &params).await,
            "DeleteTable" => self.delete_table(caller, &params).await,
            "UpdateTable" => self.update_table(caller, &params).await,
            "PutItem" => self.put_item(caller, &params).await,
            "GetItem" => self.get_item(caller, &params).await,
            "DeleteItem" => self.delete_item(caller, &params).await,
            "UpdateItem" => self.update_item(caller, &params).await,
            "Query" => self.query(caller, &params).await,
            "Scan" => self.scan(caller, &params).await,
            "BatchGetItem" => self.batch_get(caller, &params).await,
            "BatchWriteItem" => self.batch_write(caller, &params).await,
            "TransactWriteItems" => self.transact_write(caller, &params).await,
            "TransactGetItems" => self.transact_get(caller, &params).await,
            "UpdateTimeToLive" => self.update_ttl(caller, &params).await,
            "DescribeTimeToLive" => self.describe_ttl(caller, &params).await,
            "DescribeEndpoints" => Ok(json!({"Endpoints": [
                {"Address": "localhost", "CachePeriodInMinutes": 1440}
            ]})),
            "ListTagsOfResource" => Ok(json!({"Tags": []})),
            "DescribeContinuousBackups" => {
                let table = params.table_name()?;
                self.spec(caller, &table).await?;
                Ok(json!({"ContinuousBackupsDescription": {
                    "ContinuousBackupsStatus": "DISABLED",
                    "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "DISABLED"}
                }}))
            }
            other => Err(JsonError::new(
                "com.amazon.coral.service",
                "UnknownOperationException",
                format!("nimbus tables do not offer {other} (docs/data.md lists what they offer)"),
            )),
        }
    }

    fn id(&self, caller: &Caller, table: &str) -> TableId {
        TableId::new(caller.app.as_str(), table)
    }

    async fn spec(&self, caller: &Caller, table: &str) -> Answer<TableSchema> {
        match self.store.table(&self.id(caller, table)).await {
            Ok(Some(info)) => TableSchema::from_meta(&info.meta),
            Ok(None) => Err(not_found("Requested resource not found")),
            Err(error) => Err(internal(&error)),
        }
    }

    async fn create_table(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let spec = TableSchema::from_create(params, now_ms())?;
        caller.check(&spec.name, true, "CreateTable")?;
        let id = self.id(caller, &spec.name);
        let created = self
            .store
            .create_table(&id, spec.meta())
            .await
            .map_err(|e| internal(&e))?;
        if !created {
            return Err(in_use(format!("Table already exists: {}", spec.name)));
        }
        let info = self
            .store
            .table(&id)
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(|| not_found("Requested resource not found"))?;
        Ok(json!({"TableDescription": spec.describe(&info, "ACTIVE")}))
    }

    async fn describe_table(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let table = params.table_name()?;
        caller.check(&table, false, "DescribeTable")?;
        match self.store.table(&self.id(caller, &table)).await {
            Ok(Some(info)) => {
                let spec = TableSchema::from_meta(&info.meta)?;
                Ok(json!({"Table": spec.describe(&info, "ACTIVE")}))
            }
            Ok(None) => Err(not_found(format!(
                "Requested resource not found: Table: {table} not found"
            ))),
            Err(error) => Err(internal(&error)),
        }
    }

    async fn list_tables(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let limit = params.integer("Limit")?.unwrap_or(100);
        if !(1..=100).contains(&limit) {
            return Err(validation(format!(
                "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy \
                 constraint: Member must have value {} 100",
                if limit < 1 {
                    "greater than or equal to 1, and less than or equal to"
                } else {
                    "less than or equal to"
                }
            )));
        }
        let start = params.string("ExclusiveStartTableName")?;
        let mut names = self
            .store
            .tables(&caller.app)
            .await
            .map_err(|e| internal(&e))?;
        if let Some(grants) = &caller.grants {
            names.retain(|n| grants.table(n).is_some());
        }
        let mut page: Vec<String> = names
            .into_iter()
            .filter(|n| start.is_none_or(|s| n.as_str() > s))
            .take(limit as usize + 1)
            .collect();
        let more = page.len() > limit as usize;
        page.truncate(limit as usize);
        let mut answer = json!({"TableNames": page});
        if more && let Some(last) = page.last() {
            crate::request::set(&mut answer, "LastEvaluatedTableName", json!(last));
        }
        Ok(answer)
    }

    async fn delete_table(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let table = params.table_name()?;
        caller.check(&table, true, "DeleteTable")?;
        let id = self.id(caller, &table);
        let info = self
            .store
            .table(&id)
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(|| {
                not_found(format!(
                    "Requested resource not found: Table: {table} not found"
                ))
            })?;
        let spec = TableSchema::from_meta(&info.meta)?;
        self.store
            .delete_table(&id)
            .await
            .map_err(|e| internal(&e))?;
        Ok(json!({"TableDescription": spec.describe(&info, "DELETING")}))
    }

    async fn update_table(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let table = params.table_name()?;
        caller.check(&table, true, "UpdateTable")?;
        let id = self.id(caller, &table);
        let mut spec = self.spec(caller, &table).await?;
        if params.get("GlobalSecondaryIndexUpdates").is_some() {
            return Err(validation(
                "GlobalSecondaryIndexUpdates: nimbus tables do not offer secondary indexes yet",
            ));
        }
        if let Some(billing) = one_of(params, "BillingMode", &["PROVISIONED", "PAY_PER_REQUEST"])? {
            spec.billing = billing.to_owned();
            if billing == "PAY_PER_REQUEST" {
                spec.throughput = None;
            }
        }
        if let Some(t) = params.object("ProvisionedThroughput")? {
            spec.throughput = Some((
                t.integer("ReadCapacityUnits")?.unwrap_or(1),
                t.integer("WriteCapacityUnits")?.unwrap_or(1),
            ));
        }
        if params.get("StreamSpecification").is_some() {
            let stream = crate::table::stream_of(params)?;
            match (&spec.stream, &stream) {
                (Some(_), Some(_)) => {
                    return Err(validation(format!(
                        "Table already has an enabled stream: {}",
                        spec.stream_arn().unwrap_or_default()
                    )));
                }
                (None, None) => {
                    return Err(validation("Table already has no stream enabled"));
                }
                (None, Some(_)) => spec.stream_since_ms = Some(now_ms()),
                (Some(_), None) => {}
            }
            spec.stream = stream;
        }
        self.store
            .update_table(&id, spec.meta())
            .await
            .map_err(store_error)?;
        let info = self
            .store
            .table(&id)
            .await
            .map_err(|e| internal(&e))?
            .ok_or_else(|| not_found("Requested resource not found"))?;
        Ok(json!({"TableDescription": spec.describe(&info, "ACTIVE")}))
    }

    fn conditions(&self, params: &Params) -> Answer<Conditions> {
        let mut placeholders = params.placeholders()?;
        let condition = match params.string("ConditionExpression")? {
            Some(text) => {
                let condition = parse::condition(Kind::Condition, text)?;
                placeholders.check_condition(Kind::Condition, &condition)?;
                Some(condition)
            }
            None => None,
        };
        Ok(Conditions {
            condition,
            placeholders,
        })
    }

    /// Run a decision on one item inside the store's transaction; the item before and after.
    async fn write_one(
        &self,
        caller: &Caller,
        table: &str,
        key: ItemKey,
        decide: impl FnOnce(Option<Item>) -> Answer<Option<Option<Item>>> + Send + 'static,
    ) -> Answer<(Option<Item>, Option<Item>)> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let decision: nimbus_store::tables::Decide = Box::new(move |current| {
            let old = match current.into_iter().next().flatten() {
                Some(bytes) => Some(decode_item(&bytes).map_err(refuse)?),
                None => None,
            };
            let new = decide(old.clone()).map_err(refuse)?;
            let change = match &new {
                None => Change::Keep,
                Some(Some(item)) => Change::Put(encode_item(item)),
                Some(None) => Change::Delete,
            };
            let after = match new {
                None => old.clone(),
                Some(item) => item,
            };
            let _ = sender.send((old, after));
            Ok(vec![change])
        });
        self.store
            .write(vec![(self.id(caller, table), key)], decision)
            .await
            .map_err(store_error)?;
        receiver.try_recv().map_err(|e| internal(&e))
    }

    async fn put_item(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        params.refuse_legacy(&["Expected", "ConditionalOperator"])?;
        let table = params.table_name()?;
        let item = params.required_item("Item")?;
        let return_values = return_values_of(params, &["NONE", "ALL_OLD"])?;
        let return_old = return_old_on_failure(params)?;
        let conditions = self.conditions(params)?;
        conditions.placeholders.check_all_used()?;
        caller.check(&table, true, "PutItem")?;
        let spec = self.spec(caller, &table).await?;
        let key = spec.item_key(&item)?;
        check_size(&item, false)?;
        let (old, _) = self
            .write_one(caller, &table, key, move |old| {
                if !conditions.holds(old.as_ref())? {
                    return Err(conditional_failed(old.as_ref(), return_old));
                }
                Ok(Some(Some(item)))
            })
            .await?;
        Ok(attributes_answer(if return_values == "ALL_OLD" {
            old
        } else {
            None
        }))
    }

    async fn get_item(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        params.refuse_legacy(&["AttributesToGet"])?;
        let table = params.table_name()?;
        let key = params.required_item("Key")?;
        params.bool("ConsistentRead")?;
        let (projection, placeholders) = projection_of(params)?;
        placeholders.check_all_used()?;
        caller.check(&table, false, "GetItem")?;
        let spec = self.spec(caller, &table).await?;
        let key = spec.key(&key)?;
        let got = self
            .store
            .get(&[(self.id(caller, &table), key)])
            .await
            .map_err(store_error)?;
        let item = match got.into_iter().next().flatten() {
            Some(bytes) => Some(decode_item(&bytes)?),
            None => None,
        };
        Ok(match item {
            Some(item) => json!({"Item": item_to_json(&project(item, &projection, &placeholders))}),
            None => json!({}),
        })
    }

    async fn delete_item(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        params.refuse_legacy(&["Expected", "ConditionalOperator"])?;
        let table = params.table_name()?;
        let key = params.required_item("Key")?;
        let return_values = return_values_of(params, &["NONE", "ALL_OLD"])?;
        let return_old = return_old_on_failure(params)?;
        let conditions = self.conditions(params)?;
        conditions.placeholders.check_all_used()?;
        caller.check(&table, true, "DeleteItem")?;
        let spec = self.spec(caller, &table).await?;
        let key = spec.key(&key)?;
        let (old, _) = self
            .write_one(caller, &table, key, move |old| {
                if !conditions.holds(old.as_ref())? {
                    return Err(conditional_failed(old.as_ref(), return_old));
                }
                Ok(Some(None))
            })
            .await?;
        Ok(attributes_answer(if return_values == "ALL_OLD" {
            old
        } else {
            None
        }))
    }

    async fn update_item(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        params.refuse_legacy(&["Expected", "ConditionalOperator", "AttributeUpdates"])?;
        let table = params.table_name()?;
        let key_item = params.required_item("Key")?;
        let return_values = return_values_of(
            params,
            &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
        )?;
        let return_old = return_old_on_failure(params)?;
        let mut conditions = self.conditions(params)?;
        let update = match params.string("UpdateExpression")? {
            Some(text) => {
                let update = parse::update(text)?;
                conditions.placeholders.check_update(&update)?;
                Some(update)
            }
            None => None,
        };
        conditions.placeholders.check_all_used()?;
        caller.check(&table, true, "UpdateItem")?;
        let spec = self.spec(caller, &table).await?;
        let key = spec.key(&key_item)?;
        if let Some(update) = &update {
            eval::check_paths(Kind::Update, update.targets(), &conditions.placeholders)?;
            for path in update.targets() {
                if let Some(ast::Step::Attribute(name)) = path.0.first()
                    && let Some(name) = conditions.placeholders.name(name)
                    && spec.is_key(name)
                {
                    return Err(validation(format!(
                        "One or more parameter values were invalid: Cannot update attribute \
                         {name}. This attribute is part of the key"
                    )));
                }
            }
        }
        let (old, new) = self
            .write_one(caller, &table, key, move |old| {
                if !conditions.holds(old.as_ref())? {
                    return Err(conditional_failed(old.as_ref(), return_old));
                }
                let base = old.clone().unwrap_or_else(|| key_item.clone());
                let next = match &update {
                    Some(update) => eval::update(update, &base, &conditions.placeholders)?,
                    None => base,
                };
                check_size(&next, true)?;
                Ok(Some(Some(next)))
            })
            .await?;
        let attributes = match return_values {
            "ALL_OLD" => old,
            "ALL_NEW" => new,
            "UPDATED_OLD" => old.map(|o| changed(&o, new.as_ref())),
            "UPDATED_NEW" => new.map(|n| changed(&n, old.as_ref())),
            _ => None,
        };
        Ok(attributes_answer(attributes.filter(|a| !a.is_empty())))
    }

    async fn query(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        params.refuse_legacy(&[
            "KeyConditions",
            "QueryFilter",
            "AttributesToGet",
            "ConditionalOperator",
        ])?;
        let table = params.table_name()?;
        if params.get("IndexName").is_some() {
            return Err(validation(
                "IndexName: nimbus tables do not offer secondary indexes yet",
            ));
        }
        let mut placeholders = params.placeholders()?;
        let key_text = params
            .string("KeyConditionExpression")?
            .ok_or_else(|| validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request."))?;
        let key_condition = parse::condition(Kind::KeyCondition, key_text)?;
        placeholders.check_condition(Kind::KeyCondition, &key_condition)?;
        let filter = filter_of(params, &mut placeholders)?;
        let projection = projection_paths(params, &mut placeholders)?;
        let select = select_of(params, projection.is_some())?;
        placeholders.check_all_used()?;
        let limit = limit_of(params)?;
        let forward = params.bool("ScanIndexForward")?.unwrap_or(true);
        params.bool("ConsistentRead")?;
        caller.check(&table, false, "Query")?;
        let spec = self.spec(caller, &table).await?;
        let (partition, range) = key_range(&spec, &key_condition, &placeholders)?;
        let start = match params.item("ExclusiveStartKey")? {
            Some(start) => {
                let key = spec.key(&start).map_err(|_| {
                    validation("The provided starting key is invalid: The provided key element does not match the schema")
                })?;
                if key.partition != partition {
                    return Err(validation(
                        "The provided starting key is outside query boundaries based on provided conditions",
                    ));
                }
                Some(key.sort)
            }
            None => None,
        };
        let page = self
            .store
            .query(
                &self.id(caller, &table),
                &partition,
                range,
                forward,
                start.as_deref(),
                PageLimit {
                    items: limit,
                    bytes: PAGE_BYTES,
                },
            )
            .await
            .map_err(store_error)?;
        let last = last_key(&spec, &page.items)?;
        self.page_answer(
            page.items,
            page.more.then_some(last).flatten(),
            filter.as_ref(),
            projection.as_deref(),
            select,
            &placeholders,
        )
    }

    async fn scan(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        params.refuse_legacy(&["ScanFilter", "AttributesToGet", "ConditionalOperator"])?;
        let table = params.table_name()?;
        if params.get("IndexName").is_some() {
            return Err(validation(
                "IndexName: nimbus tables do not offer secondary indexes yet",
            ));
        }
        let mut placeholders = params.placeholders()?;
        let filter = filter_of(params, &mut placeholders)?;
        let projection = projection_paths(params, &mut placeholders)?;
        let select = select_of(params, projection.is_some())?;
        placeholders.check_all_used()?;
        let limit = limit_of(params)?;
        let segments = match (params.integer("Segment")?, params.integer("TotalSegments")?) {
            (None, None) => None,
            (Some(segment), Some(total)) => {
                if !(1..=1_000_000).contains(&total) {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{total}' at 'totalSegments' failed \
                         to satisfy constraint: Member must have value less than or equal to \
                         1000000"
                    )));
                }
                if segment < 0 || segment >= total {
                    return Err(validation(format!(
                        "The Segment parameter is zero-based and must be less than parameter \
                         TotalSegments: Segment: {segment} is not less than TotalSegments: {total}"
                    )));
                }
                Some((segment as u64, total as u64))
            }
            (Some(_), None) => {
                return Err(validation(
                    "The TotalSegments parameter is required but was not present in the request \
                     when parameter Segment is present",
                ));
            }
            (None, Some(_)) => {
                return Err(validation(
                    "The Segment parameter is required but was not present in the request when \
                     parameter TotalSegments is present",
                ));
            }
        };
        caller.check(&table, false, "Scan")?;
        let spec = self.spec(caller, &table).await?;
        let mut after = match params.item("ExclusiveStartKey")? {
            Some(start) => Some(spec.key(&start).map_err(|_| {
                validation("The provided starting key is invalid: The provided key element does not match the schema")
            })?),
            None => None,
        };
        let id = self.id(caller, &table);
        // A segment is the items whose partition hashes to it: read pages until one holds
        // some of the segment's items or the table ends.
        loop {
            let page = self
                .store
                .scan(
                    &id,
                    after.as_ref(),
                    PageLimit {
                        items: limit,
                        bytes: PAGE_BYTES,
                    },
                )
                .await
                .map_err(store_error)?;
            let last = last_key(&spec, &page.items)?;
            let mut items = page.items;
            if let Some((segment, total)) = segments {
                let scanned_to = items.last().map(|(k, _)| k.clone());
                items.retain(|(key, _)| segment_of(&key.partition, total) == segment);
                if items.is_empty() && page.more {
                    after = scanned_to;
                    continue;
                }
            }
            let more = page.more;
            return self.page_answer(
                items,
                more.then_some(last).flatten(),
                filter.as_ref(),
                projection.as_deref(),
                select,
                &placeholders,
            );
        }
    }

    /// A Query's or Scan's answer: the page's items filtered and projected, and the key to
    /// go on from when there is more.
    fn page_answer(
        &self,
        page: Vec<(ItemKey, Bytes)>,
        last_evaluated: Option<Item>,
        filter: Option<&ast::Condition>,
        projection: Option<&[ast::Path]>,
        select: Select,
        placeholders: &Placeholders,
    ) -> Answer<Json> {
        let scanned = page.len();
        let mut items = Vec::new();
        for (_, bytes) in &page {
            let item = decode_item(bytes)?;
            if let Some(filter) = filter
                && !eval::condition(Kind::Filter, filter, &item, placeholders)?
            {
                continue;
            }
            items.push(item);
        }
        let mut answer = json!({"Count": items.len(), "ScannedCount": scanned});
        if select != Select::Count {
            let items: Vec<Json> = items
                .into_iter()
                .map(|item| match projection {
                    Some(paths) => item_to_json(&eval::project(&item, paths, placeholders)),
                    None => item_to_json(&item),
                })
                .collect();
            crate::request::set(&mut answer, "Items", Json::Array(items));
        }
        if let Some(last) = last_evaluated {
            crate::request::set(&mut answer, "LastEvaluatedKey", item_to_json(&last));
        }
        Ok(answer)
    }

    async fn batch_get(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let requests = params
            .object("RequestItems")?
            .ok_or_else(|| missing("RequestItems"))?;
        let mut reads = Vec::new();
        let mut shapes = Vec::new();
        for (table, request) in &requests.0 {
            crate::request::check_table_name(table, "requestItems.key")?;
            let request = Params(
                request
                    .as_object()
                    .cloned()
                    .ok_or_else(|| crate::request::serialization("RequestItems"))?,
            );
            request.refuse_legacy(&["AttributesToGet"])?;
            let (projection, placeholders) = projection_of(&request)?;
            placeholders.check_all_used()?;
            caller.check(table, false, "BatchGetItem")?;
            let spec = self.spec(caller, table).await?;
            let keys = request.list("Keys")?.ok_or_else(|| missing("Keys"))?;
            let mut seen = std::collections::HashSet::new();
            for key in keys {
                let key = crate::value::item_from_json(key)?;
                let store_key = spec.key(&key)?;
                if !seen.insert(store_key.clone()) {
                    return Err(validation("Provided list of item keys contains duplicates"));
                }
                reads.push((self.id(caller, table), store_key));
            }
            shapes.push((table.clone(), keys.len(), projection, placeholders));
        }
        if reads.len() > MAX_BATCH_GET {
            return Err(validation(format!(
                "Too many items requested for the BatchGetItem call (at most {MAX_BATCH_GET})"
            )));
        }
        if reads.is_empty() {
            return Err(validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ));
        }
        let got = self.store.get(&reads).await.map_err(store_error)?;
        let mut got = got.into_iter();
        let mut responses = serde_json::Map::new();
        for (table, count, projection, placeholders) in shapes {
            let mut items = Vec::new();
            for bytes in got.by_ref().take(count).flatten() {
                let item = decode_item(&bytes)?;
                items.push(item_to_json(&project(item, &projection, &placeholders)));
            }
            responses.insert(table, Json::Array(items));
        }
        Ok(json!({"Responses": responses, "UnprocessedKeys": {}}))
    }

    async fn batch_write(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let requests = params
            .object("RequestItems")?
            .ok_or_else(|| missing("RequestItems"))?;
        let mut keys = Vec::new();
        let mut changes = Vec::new();
        for (table, list) in &requests.0 {
            crate::request::check_table_name(table, "requestItems.key")?;
            caller.check(table, true, "BatchWriteItem")?;
            let spec = self.spec(caller, table).await?;
            let list = list
                .as_array()
                .ok_or_else(|| crate::request::serialization("RequestItems"))?;
            for request in list {
                let request = Params(
                    request
                        .as_object()
                        .cloned()
                        .ok_or_else(|| crate::request::serialization("RequestItems"))?,
                );
                match (
                    request.object("PutRequest")?,
                    request.object("DeleteRequest")?,
                ) {
                    (Some(put), None) => {
                        let item = put.required_item("Item")?;
                        check_size(&item, false)?;
                        keys.push((self.id(caller, table), spec.item_key(&item)?));
                        changes.push(Change::Put(encode_item(&item)));
                    }
                    (None, Some(delete)) => {
                        let key = delete.required_item("Key")?;
                        keys.push((self.id(caller, table), spec.key(&key)?));
                        changes.push(Change::Delete);
                    }
                    _ => {
                        return Err(validation(
                            "Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes",
                        ));
                    }
                }
            }
        }
        if keys.len() > MAX_BATCH_WRITE {
            return Err(validation(format!(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must satisfy constraint: [Member must have length less than or equal to {MAX_BATCH_WRITE}, Member must have length greater than or equal to 1]"
            )));
        }
        if keys.is_empty() {
            return Err(validation(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length greater than or equal to 1",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if keys.iter().any(|k| !seen.insert(k.clone())) {
            return Err(validation("Provided list of item keys contains duplicates"));
        }
        self.store
            .write(keys, Box::new(move |_| Ok(changes)))
            .await
            .map_err(store_error)?;
        Ok(json!({"UnprocessedItems": {}}))
    }

    async fn transact_write(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let actions = transact_items(params)?;
        let mut keys = Vec::new();
        let mut plans = Vec::new();
        for action in actions {
            let action = Params(
                action
                    .as_object()
                    .cloned()
                    .ok_or_else(|| crate::request::serialization("TransactItems"))?,
            );
            let kinds: Vec<&str> = ["ConditionCheck", "Put", "Delete", "Update"]
                .into_iter()
                .filter(|k| action.get(k).is_some())
                .collect();
            let [kind] = kinds.as_slice() else {
                return Err(validation(
                    "TransactItems can only contain one of Check, Put, Update or Delete",
                ));
            };
            let body = action.object(kind)?.ok_or_else(|| missing(kind))?;
            let table = body.table_name()?;
            caller.check(&table, *kind != "ConditionCheck", "TransactWriteItems")?;
            let spec = self.spec(caller, &table).await?;
            let mut conditions = self.conditions(&body)?;
            let return_old = return_old_on_failure(&body)?;
            let plan = match *kind {
                "Put" => {
                    let item = body.required_item("Item")?;
                    check_size(&item, false)?;
                    keys.push((self.id(caller, &table), spec.item_key(&item)?));
                    Plan::Put(item)
                }
                "Delete" => {
                    let key = body.required_item("Key")?;
                    keys.push((self.id(caller, &table), spec.key(&key)?));
                    Plan::Delete
                }
                "ConditionCheck" => {
                    if conditions.condition.is_none() {
                        return Err(missing("ConditionExpression"));
                    }
                    let key = body.required_item("Key")?;
                    keys.push((self.id(caller, &table), spec.key(&key)?));
                    Plan::Check
                }
                _ => {
                    let key = body.required_item("Key")?;
                    keys.push((self.id(caller, &table), spec.key(&key)?));
                    let text = body
                        .string("UpdateExpression")?
                        .ok_or_else(|| missing("UpdateExpression"))?;
                    let update = parse::update(text)?;
                    conditions.placeholders.check_update(&update)?;
                    eval::check_paths(Kind::Update, update.targets(), &conditions.placeholders)?;
                    Plan::Update(key, update)
                }
            };
            conditions.placeholders.check_all_used()?;
            plans.push((plan, conditions, return_old));
        }
        let mut seen = std::collections::HashSet::new();
        if keys.iter().any(|k| !seen.insert(k.clone())) {
            return Err(validation(
                "Transaction request cannot include multiple operations on one item",
            ));
        }
        let decision: nimbus_store::tables::Decide = Box::new(move |current| {
            let mut changes = Vec::with_capacity(plans.len());
            let mut reasons = Vec::with_capacity(plans.len());
            let mut failed = false;
            for ((plan, conditions, return_old), bytes) in plans.into_iter().zip(current) {
                let old = match bytes {
                    Some(bytes) => Some(decode_item(&bytes).map_err(refuse)?),
                    None => None,
                };
                let holds = conditions
                    .holds(old.as_ref())
                    .map_err(|e| refuse(e.into()))?;
                if !holds {
                    failed = true;
                    let mut reason = json!({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"});
                    if return_old && let Some(old) = &old {
                        crate::request::set(&mut reason, "Item", item_to_json(old));
                    }
                    reasons.push(reason);
                    changes.push(Change::Keep);
                    continue;
                }
                reasons.push(json!({"Code": "None"}));
                changes.push(match plan {
                    Plan::Put(item) => Change::Put(encode_item(&item)),
                    Plan::Delete => Change::Delete,
                    Plan::Check => Change::Keep,
                    Plan::Update(key, update) => {
                        let base = old.unwrap_or(key);
                        let next = eval::update(&update, &base, &conditions.placeholders)
                            .map_err(|e| refuse(e.into()))?;
                        check_size(&next, true).map_err(refuse)?;
                        Change::Put(encode_item(&next))
                    }
                });
            }
            if failed {
                let codes: Vec<&str> = reasons
                    .iter()
                    .map(|r| r["Code"].as_str().unwrap_or("None"))
                    .collect();
                let mut error = JsonError::new(
                    NAMESPACE,
                    "TransactionCanceledException",
                    format!(
                        "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                        codes.join(", ")
                    ),
                );
                error
                    .fields
                    .insert("CancellationReasons".to_owned(), Json::Array(reasons));
                return Err(refuse(error));
            }
            Ok(changes)
        });
        self.store
            .write(keys, decision)
            .await
            .map_err(store_error)?;
        Ok(json!({}))
    }

    async fn transact_get(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let actions = transact_items(params)?;
        let mut reads = Vec::new();
        let mut shapes = Vec::new();
        for action in actions {
            let get = action
                .get("Get")
                .and_then(Json::as_object)
                .cloned()
                .map(Params)
                .ok_or_else(|| missing("Get"))?;
            let table = get.table_name()?;
            caller.check(&table, false, "TransactGetItems")?;
            let spec = self.spec(caller, &table).await?;
            let key = get.required_item("Key")?;
            let (projection, placeholders) = projection_of(&get)?;
            placeholders.check_all_used()?;
            reads.push((self.id(caller, &table), spec.key(&key)?));
            shapes.push((projection, placeholders));
        }
        let got = self.store.get(&reads).await.map_err(store_error)?;
        let mut responses = Vec::with_capacity(got.len());
        for (bytes, (projection, placeholders)) in got.into_iter().zip(shapes) {
            responses.push(match bytes {
                Some(bytes) => {
                    let item = decode_item(&bytes)?;
                    json!({"Item": item_to_json(&project(item, &projection, &placeholders))})
                }
                None => json!({}),
            });
        }
        Ok(json!({"Responses": responses}))
    }

    async fn update_ttl(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let table = params.table_name()?;
        caller.check(&table, true, "UpdateTimeToLive")?;
        let spec_params = params
            .object("TimeToLiveSpecification")?
            .ok_or_else(|| missing("TimeToLiveSpecification"))?;
        let enabled = spec_params
            .bool("Enabled")?
            .ok_or_else(|| missing("TimeToLiveSpecification.Enabled"))?;
        let attribute = spec_params.required_string("AttributeName")?.to_owned();
        let mut spec = self.spec(caller, &table).await?;
        match (&spec.ttl, enabled) {
            (Some(_), true) => {
                return Err(validation("TimeToLive is already enabled"));
            }
            (None, false) => {
                return Err(validation("TimeToLive is already disabled"));
            }
            (Some(current), false) if *current != attribute => {
                return Err(validation(format!(
                    "TimeToLive is enabled on attribute {current}, not {attribute}"
                )));
            }
            _ => {}
        }
        spec.ttl = enabled.then(|| attribute.clone());
        self.store
            .update_table(&self.id(caller, &table), spec.meta())
            .await
            .map_err(store_error)?;
        Ok(json!({"TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": attribute}}))
    }

    async fn describe_ttl(&self, caller: &Caller, params: &Params) -> Answer<Json> {
        let table = params.table_name()?;
        caller.check(&table, false, "DescribeTimeToLive")?;
        let spec = self.spec(caller, &table).await?;
        Ok(match spec.ttl {
            Some(attribute) => json!({"TimeToLiveDescription": {
                "TimeToLiveStatus": "ENABLED", "AttributeName": attribute
            }}),
            None => json!({"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}),
        })
    }
}

enum Plan {
    Put(Item),
    Delete,
    Check,
    /// The key attributes (the item an update of nothing creates), and the update.
    Update(Item, ast::Update),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Select {
    All,
    Count,
    Specific,
}

fn select_of(params: &Params, projected: bool) -> Answer<Select> {
    let select = one_of(
        params,
        "Select",
        &[
            "ALL_ATTRIBUTES",
            "ALL_PROJECTED_ATTRIBUTES",
            "SPECIFIC_ATTRIBUTES",
            "COUNT",
        ],
    )?;
    match (select, projected) {
        (Some("COUNT"), true) | (Some("ALL_ATTRIBUTES"), true) => Err(validation(
            "Cannot specify the AttributesToGet or ProjectionExpression when choosing to get \
             ALL_ATTRIBUTES or COUNT",
        )),
        (Some("ALL_PROJECTED_ATTRIBUTES"), _) => Err(validation(
            "ALL_PROJECTED_ATTRIBUTES can be used only when Querying using an IndexName",
        )),
        (Some("COUNT"), false) => Ok(Select::Count),
        (Some("SPECIFIC_ATTRIBUTES"), false) => Err(validation(
            "SPECIFIC_ATTRIBUTES requires a ProjectionExpression",
        )),
        (_, true) => Ok(Select::Specific),
        _ => Ok(Select::All),
    }
}

/// `TransactItems`: 1 to [`MAX_TRANSACTION`] actions.
fn transact_items(params: &Params) -> Answer<&Vec<Json>> {
    let actions = params
        .list("TransactItems")?
        .ok_or_else(|| missing("TransactItems"))?;
    if actions.is_empty() || actions.len() > MAX_TRANSACTION {
        return Err(validation(format!(
            "1 validation error detected: Value at 'transactItems' failed to satisfy \
             constraint: Member must have length less than or equal to {MAX_TRANSACTION}, \
             Member must have length greater than or equal to 1"
        )));
    }
    Ok(actions)
}

fn limit_of(params: &Params) -> Answer<usize> {
    match params.integer("Limit")? {
        None => Ok(usize::MAX),
        Some(limit) if limit >= 1 => Ok(limit as usize),
        Some(limit) => Err(validation(format!(
            "1 validation error detected: Value '{limit}' at 'limit' failed to satisfy \
             constraint: Member must have value greater than or equal to 1"
        ))),
    }
}

fn filter_of(params: &Params, placeholders: &mut Placeholders) -> Answer<Option<ast::Condition>> {
    match params.string("FilterExpression")? {
        Some(text) => {
            let filter = parse::condition(Kind::Filter, text)?;
            placeholders.check_condition(Kind::Filter, &filter)?;
            Ok(Some(filter))
        }
        None => Ok(None),
    }
}

fn projection_paths(
    params: &Params,
    placeholders: &mut Placeholders,
) -> Answer<Option<Vec<ast::Path>>> {
    match params.string("ProjectionExpression")? {
        Some(text) => {
            let paths = parse::projection(text)?;
            placeholders.check_projection(&paths)?;
            eval::check_paths(Kind::Projection, paths.iter(), placeholders)?;
            Ok(Some(paths))
        }
        None => Ok(None),
    }
}

fn projection_of(params: &Params) -> Answer<(Option<Vec<ast::Path>>, Placeholders)> {
    let mut placeholders = params.placeholders()?;
    let projection = projection_paths(params, &mut placeholders)?;
    Ok((projection, placeholders))
}

fn project(item: Item, projection: &Option<Vec<ast::Path>>, placeholders: &Placeholders) -> Item {
    match projection {
        Some(paths) => eval::project(&item, paths, placeholders),
        None => item,
    }
}

fn attributes_answer(attributes: Option<Item>) -> Json {
    match attributes {
        Some(item) => json!({"Attributes": item_to_json(&item)}),
        None => json!({}),
    }
}

/// The top-level attributes of `item` that differ in (or are missing from) `other`.
fn changed(item: &Item, other: Option<&Item>) -> Item {
    item.iter()
        .filter(|(name, value)| {
            other
                .and_then(|o| o.get(*name))
                .is_none_or(|o| !eval::equal(o, value))
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// Which scan segment a partition belongs to: a stable hash of its key, as DynamoDB spreads
/// partitions over segments.
fn segment_of(partition: &[u8], total: u64) -> u64 {
    // FNV-1a: stable across processes and versions, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in partition {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash % total
}

/// The key attributes of a page's last item, for its `LastEvaluatedKey`.
fn last_key(spec: &TableSchema, items: &[(ItemKey, Bytes)]) -> Answer<Option<Item>> {
    match items.last() {
        Some((_, bytes)) => Ok(Some(spec.key_of(&decode_item(bytes)?))),
        None => Ok(None),
    }
}

/// A Query's partition and sort-key range, from its `KeyConditionExpression`.
fn key_range(
    spec: &TableSchema,
    condition: &ast::Condition,
    placeholders: &Placeholders,
) -> Answer<(Vec<u8>, SortRange)> {
    let invalid = |message: &str| validation(format!("Invalid KeyConditionExpression: {message}"));
    let mut parts = Vec::new();
    flatten_and(condition, &mut parts);
    let name_of = |operand: &ast::Operand| -> Option<String> {
        match operand {
            ast::Operand::Path(path) if path.0.len() == 1 => match path.0.first() {
                Some(ast::Step::Attribute(name)) => placeholders.name(name).map(str::to_owned),
                _ => None,
            },
            _ => None,
        }
    };
    let value_of = |operand: &ast::Operand| -> Option<Value> {
        match operand {
            ast::Operand::Value(key) => placeholders.value(key).cloned(),
            _ => None,
        }
    };
    let mut partition = None;
    let mut range = SortRange::all();
    let mut ranged = false;
    if parts.len() > 2 {
        return Err(invalid(
            "The expression can only contain two conditions: one on the partition key, one on the sort key",
        ));
    }
    for part in parts {
        let (name, comparator, values) = match part {
            ast::Condition::Compare(a, comparator, b) => match (name_of(a), value_of(b)) {
                (Some(name), Some(value)) => (name, Some(*comparator), vec![value]),
                _ => match (value_of(a), name_of(b)) {
                    (Some(value), Some(name)) => (name, Some(flip(*comparator)), vec![value]),
                    _ => {
                        return Err(invalid(
                            "Key conditions compare a key attribute with a value",
                        ));
                    }
                },
            },
            ast::Condition::Between(a, low, high) => {
                let (Some(name), Some(low), Some(high)) =
                    (name_of(a), value_of(low), value_of(high))
                else {
                    return Err(invalid("BETWEEN compares a key attribute with two values"));
                };
                (name, None, vec![low, high])
            }
            ast::Condition::BeginsWith(a, prefix) => {
                let (Some(name), Some(prefix)) = (name_of(a), value_of(prefix)) else {
                    return Err(invalid("begins_with takes a key attribute and a value"));
                };
                (name, None, vec![prefix])
            }
            ast::Condition::Or(..) | ast::Condition::Not(..) => {
                return Err(invalid(&format!(
                    "Invalid operator used in KeyConditionExpression: {}",
                    if matches!(part, ast::Condition::Or(..)) {
                        "OR"
                    } else {
                        "NOT"
                    }
                )));
            }
            _ => return Err(invalid("Unsupported operator in the key condition")),
        };
        let encoded = |value: &Value, attribute: &crate::table::KeyAttribute| -> Answer<Vec<u8>> {
            match (attribute.kind.as_str(), value) {
                ("S", Value::S(s)) => Ok(s.as_bytes().to_vec()),
                ("N", Value::N(n)) => Ok(n.key_bytes()),
                ("B", Value::B(b)) => Ok(b.to_vec()),
                _ => Err(validation(
                    "One or more parameter values were invalid: Condition parameter type does not match schema type",
                )),
            }
        };
        if name == spec.hash.name {
            if comparator != Some(ast::Comparator::Eq) || partition.is_some() {
                return Err(invalid(&format!(
                    "Query key condition not supported; the partition key {name} must be compared with ="
                )));
            }
            partition = Some(encoded(
                values.first().ok_or_else(|| invalid("missing value"))?,
                &spec.hash,
            )?);
            continue;
        }
        let Some(sort) = spec.range.as_ref().filter(|r| r.name == name) else {
            return Err(invalid(&format!(
                "Query condition missed key schema element: {}",
                spec.hash.name
            )));
        };
        if ranged {
            return Err(invalid(
                "The expression can only contain one condition on the sort key",
            ));
        }
        ranged = true;
        let bytes: Vec<Vec<u8>> = values
            .iter()
            .map(|v| encoded(v, sort))
            .collect::<Answer<_>>()?;
        let first = bytes.first().cloned().unwrap_or_default();
        range = match (part, comparator) {
            (_, Some(ast::Comparator::Eq)) => SortRange {
                start: Bound::Included(first.clone()),
                end: Bound::Included(first),
            },
            (_, Some(ast::Comparator::Lt)) => SortRange {
                start: Bound::Unbounded,
                end: Bound::Excluded(first),
            },
            (_, Some(ast::Comparator::Le)) => SortRange {
                start: Bound::Unbounded,
                end: Bound::Included(first),
            },
            (_, Some(ast::Comparator::Gt)) => SortRange {
                start: Bound::Excluded(first),
                end: Bound::Unbounded,
            },
            (_, Some(ast::Comparator::Ge)) => SortRange {
                start: Bound::Included(first),
                end: Bound::Unbounded,
            },
            (_, Some(ast::Comparator::Ne)) => {
                return Err(invalid("Unsupported operator on KeyCondition: <>"));
            }
            (ast::Condition::Between(..), None) => {
                let high = bytes.get(1).cloned().unwrap_or_default();
                if first > high {
                    return Err(invalid(
                        "The BETWEEN operator requires upper bound to be greater than or equal to lower bound",
                    ));
                }
                SortRange {
                    start: Bound::Included(first),
                    end: Bound::Included(high),
                }
            }
            (_, None) => {
                if sort.kind == "N" {
                    return Err(invalid(
                        "Incorrect operand type for operator or function; operator or function: \
                         begins_with, operand type: N",
                    ));
                }
                match prefix_end(&first) {
                    Some(end) => SortRange {
                        start: Bound::Included(first),
                        end: Bound::Excluded(end),
                    },
                    None => SortRange {
                        start: Bound::Included(first),
                        end: Bound::Unbounded,
                    },
                }
            }
        };
    }
    let partition = partition.ok_or_else(|| {
        invalid(&format!(
            "Query condition missed key schema element: {}",
            spec.hash.name
        ))
    })?;
    Ok((partition, range))
}

/// The least byte string after every string that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn flip(comparator: ast::Comparator) -> ast::Comparator {
    use ast::Comparator::*;
    match comparator {
        Lt => Gt,
        Le => Ge,
        Gt => Lt,
        Ge => Le,
        other => other,
    }
}

fn flatten_and<'a>(condition: &'a ast::Condition, out: &mut Vec<&'a ast::Condition>) {
    match condition {
        ast::Condition::And(a, b) => {
            flatten_and(a, out);
            flatten_and(b, out);
        }
        other => out.push(other),
    }
}

/// The DynamoDB service on the AWS-compatible endpoint.
pub struct DynamoService {
    dynamo: Dynamo,
}

impl DynamoService {
    pub fn new(store: Arc<dyn TableStore>) -> DynamoService {
        DynamoService {
            dynamo: Dynamo::new(store),
        }
    }
}

/// The namespace an operator's key works in: tables that belong to no app.
pub const OPERATOR_NAMESPACE: &str = "";

/// Whose tables a signed request reaches, and under which grants.
pub fn caller_of(principal: &nimbus_aws::Principal) -> Answer<Caller> {
    Ok(match principal {
        nimbus_aws::Principal::Operator => Caller {
            app: OPERATOR_NAMESPACE.to_owned(),
            grants: None,
        },
        nimbus_aws::Principal::App(app) => Caller {
            app: app.clone(),
            grants: None,
        },
        nimbus_aws::Principal::Function { app, grants, .. } => Caller {
            app: app.clone(),
            grants: Some(grants.clone()),
        },
        nimbus_aws::Principal::Anonymous => {
            return Err(JsonError::new(
                "com.amazon.coral.service",
                "MissingAuthenticationTokenException",
                "Request is missing Authentication Token",
            ));
        }
    })
}

#[async_trait::async_trait]
impl nimbus_aws::JsonService for DynamoService {
    fn target(&self) -> &'static str {
        "DynamoDB_20120810"
    }

    fn signing_names(&self) -> &'static [&'static str] {
        &["dynamodb"]
    }

    async fn call(
        &self,
        principal: &nimbus_aws::Principal,
        operation: &str,
        body: Bytes,
    ) -> nimbus_aws::JsonAnswer {
        let caller = match caller_of(principal) {
            Ok(caller) => caller,
            Err(error) => return nimbus_aws::JsonAnswer::Error(error),
        };
        match self.dynamo.call(&caller, operation, &body).await {
            Ok(answer) => nimbus_aws::JsonAnswer::Ok(answer),
            Err(error) => nimbus_aws::JsonAnswer::Error(error),
        }
    }
}
