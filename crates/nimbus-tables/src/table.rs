//! A table's definition (key schema, billing, stream, TTL), its keys as the store orders them,
//! and its description as DynamoDB answers `DescribeTable`.

use crate::request::{Answer, Params, one_of, validation};
use crate::value::{Item, Value, item_from_json, item_to_json};
use nimbus_store::tables::{ItemKey, TableInfo, TableMeta};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

/// A key attribute: its name and type (S, N or B).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAttribute {
    pub name: String,
    /// "S", "N" or "B".
    pub kind: String,
}

/// What the store keeps as a table's spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: String,
    pub hash: KeyAttribute,
    pub range: Option<KeyAttribute>,
    /// "PAY_PER_REQUEST" or "PROVISIONED".
    pub billing: String,
    /// Read and write capacity units, when provisioned (accepted, not enforced).
    pub throughput: Option<(i64, i64)>,
    /// The stream's view type, when a stream is on.
    pub stream: Option<String>,
    /// When the stream was last turned on (ms), for its label and ARN.
    pub stream_since_ms: Option<u64>,
    /// The attribute holding items' expiry (epoch seconds), when TTL is on.
    pub ttl: Option<String>,
}

pub const STREAM_VIEW_TYPES: &[&str] =
    &["NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY"];

impl TableSchema {
    pub fn meta(&self) -> TableMeta {
        TableMeta {
            spec: serde_json::to_vec(self).unwrap_or_default().into(),
            stream: self.stream.is_some(),
        }
    }

    pub fn from_meta(meta: &TableMeta) -> Answer<TableSchema> {
        serde_json::from_slice(&meta.spec).map_err(|e| crate::request::internal(&e))
    }

    /// Read a `CreateTable` request's definition.
    pub fn from_create(params: &Params, now_ms: u64) -> Answer<TableSchema> {
        let name = params.table_name()?;
        for unsupported in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] {
            if params.get(unsupported).is_some() {
                return Err(validation(format!(
                    "{unsupported}: nimbus tables do not offer secondary indexes yet; query the \
                     table's own key, or keep a second table as the index (docs/data.md)"
                )));
            }
        }
        let schema = params
            .list("KeySchema")?
            .ok_or_else(|| crate::request::missing("KeySchema"))?;
        let definitions = params
            .list("AttributeDefinitions")?
            .ok_or_else(|| crate::request::missing("AttributeDefinitions"))?;
        let mut defined = Vec::new();
        for definition in definitions {
            let name = definition.get("AttributeName").and_then(Json::as_str);
            let kind = definition.get("AttributeType").and_then(Json::as_str);
            match (name, kind) {
                (Some(name), Some(kind @ ("S" | "N" | "B"))) => {
                    defined.push((name.to_owned(), kind.to_owned()))
                }
                (Some(_), Some(kind)) => {
                    return Err(validation(format!(
                        "1 validation error detected: Value '{kind}' at \
                         'attributeDefinitions.1.member.attributeType' failed to satisfy \
                         constraint: Member must satisfy enum value set: [B, N, S]"
                    )));
                }
                _ => return Err(validation("Invalid AttributeDefinitions")),
            }
        }
        let mut hash = None;
        let mut range = None;
        if schema.is_empty() || schema.len() > 2 {
            return Err(validation(format!(
                "1 validation error detected: Value '{}' at 'keySchema' failed to satisfy \
                 constraint: Member must have length less than or equal to 2",
                schema.len()
            )));
        }
        for (i, element) in schema.iter().enumerate() {
            let name = element
                .get("AttributeName")
                .and_then(Json::as_str)
                .ok_or_else(|| validation("Invalid KeySchema: AttributeName is required"))?;
            let key_type = element.get("KeyType").and_then(Json::as_str);
            let kind = defined
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| k.clone())
                .ok_or_else(|| {
                    validation(
                        "One or more parameter values were invalid: Some index key attributes \
                         are not defined in AttributeDefinitions. Keys: ["
                            .to_owned()
                            + name
                            + "], AttributeDefinitions: ["
                            + &defined
                                .iter()
                                .map(|(n, _)| n.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                            + "]",
                    )
                })?;
            let attribute = KeyAttribute {
                name: name.to_owned(),
                kind,
            };
            match (i, key_type) {
                (0, Some("HASH")) => hash = Some(attribute),
                (1, Some("RANGE")) => range = Some(attribute),
                (0, _) => {
                    return Err(validation(
                        "Invalid KeySchema: The first KeySchemaElement is not a HASH key type",
                    ));
                }
                _ => {
                    return Err(validation(
                        "Invalid KeySchema: The second KeySchemaElement is not a RANGE key type",
                    ));
                }
            }
        }
        let hash = hash.ok_or_else(|| validation("Invalid KeySchema"))?;
        if range.as_ref().is_some_and(|r| r.name == hash.name) {
            return Err(validation(
                "Invalid KeySchema: Both the Hash Key and the Range Key element in the KeySchema \
                 have the same name",
            ));
        }
        let used: Vec<&str> = std::iter::once(hash.name.as_str())
            .chain(range.as_ref().map(|r| r.name.as_str()))
            .collect();
        if defined.len() != used.len() {
            let all: Vec<&str> = defined.iter().map(|(n, _)| n.as_str()).collect();
            return Err(validation(format!(
                "One or more parameter values were invalid: Number of attributes in KeySchema \
                 does not exactly match number of attributes defined in AttributeDefinitions; \
                 AttributeDefinitions: [{}], keys used: [{}]",
                all.join(", "),
                used.join(", ")
            )));
        }
        let billing = one_of(params, "BillingMode", &["PROVISIONED", "PAY_PER_REQUEST"])?
            .unwrap_or("PROVISIONED")
            .to_owned();
        let throughput = match params.object("ProvisionedThroughput")? {
            Some(t) => Some((
                t.integer("ReadCapacityUnits")?.unwrap_or(0),
                t.integer("WriteCapacityUnits")?.unwrap_or(0),
            )),
            None => None,
        };
        match (billing.as_str(), throughput) {
            ("PROVISIONED", None) => {
                return Err(validation(
                    "One or more parameter values were invalid: ReadCapacityUnits and \
                     WriteCapacityUnits must both be specified when BillingMode is PROVISIONED",
                ));
            }
            ("PROVISIONED", Some((r, w))) if r < 1 || w < 1 => {
                return Err(validation(
                    "One or more parameter values were invalid: Provisioned throughput must be \
                     at least 1 read and 1 write capacity unit",
                ));
            }
            ("PAY_PER_REQUEST", Some(_)) => {
                return Err(validation(
                    "One or more parameter values were invalid: Neither ReadCapacityUnits nor \
                     WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
                ));
            }
            _ => {}
        }
        let stream = stream_of(params)?;
        Ok(TableSchema {
            name,
            hash,
            range,
            billing,
            throughput,
            stream_since_ms: stream.as_ref().map(|_| now_ms),
            stream,
            ttl: None,
        })
    }

    /// The key attribute names.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.hash.name.as_str()).chain(self.range.as_ref().map(|r| r.name.as_str()))
    }

    pub fn is_key(&self, name: &str) -> bool {
        self.key_names().any(|k| k == name)
    }

    /// The store key of an item (from `PutItem`): its key attributes must be there, typed right.
    pub fn item_key(&self, item: &Item) -> Answer<ItemKey> {
        let part = |attribute: &KeyAttribute, is_range: bool| -> Answer<Vec<u8>> {
            let value = item.get(&attribute.name).ok_or_else(|| {
                validation(format!(
                    "One or more parameter values were invalid: Missing the key {} in the item",
                    attribute.name
                ))
            })?;
            key_part(attribute, value, is_range, |actual| {
                validation(format!(
                    "One or more parameter values were invalid: Type mismatch for key {} \
                     expected: {} actual: {actual}",
                    attribute.name, attribute.kind
                ))
            })
        };
        Ok(ItemKey {
            partition: part(&self.hash, false)?,
            sort: match &self.range {
                Some(range) => part(range, true)?,
                None => Vec::new(),
            },
        })
    }

    /// The store key a `Key` parameter names: exactly the key attributes, typed right.
    pub fn key(&self, key: &Item) -> Answer<ItemKey> {
        let mismatch = || validation("The provided key element does not match the schema");
        let expected = 1 + usize::from(self.range.is_some());
        if key.len() != expected {
            return Err(mismatch());
        }
        let part = |attribute: &KeyAttribute, is_range: bool| -> Answer<Vec<u8>> {
            let value = key.get(&attribute.name).ok_or_else(mismatch)?;
            key_part(attribute, value, is_range, |_| mismatch())
        };
        Ok(ItemKey {
            partition: part(&self.hash, false)?,
            sort: match &self.range {
                Some(range) => part(range, true)?,
                None => Vec::new(),
            },
        })
    }

    /// The key attributes of `item`.
    pub fn key_of(&self, item: &Item) -> Item {
        item.iter()
            .filter(|(name, _)| self.is_key(name))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:dynamodb:{}:000000000000:table/{}",
            nimbus_aws::REGION,
            self.name
        )
    }

    pub fn stream_label(&self) -> Option<String> {
        let since = self.stream_since_ms?;
        let seconds = (since / 1000) as i64;
        let at = chrono::DateTime::from_timestamp(seconds, ((since % 1000) * 1_000_000) as u32)?;
        Some(at.format("%Y-%m-%dT%H:%M:%S%.3f").to_string())
    }

    pub fn stream_arn(&self) -> Option<String> {
        Some(format!("{}/stream/{}", self.arn(), self.stream_label()?))
    }

    /// `TableDescription`, as `DescribeTable` answers.
    pub fn describe(&self, info: &TableInfo, status: &str) -> Json {
        let mut key_schema = vec![json!({"AttributeName": self.hash.name, "KeyType": "HASH"})];
        let mut definitions =
            vec![json!({"AttributeName": self.hash.name, "AttributeType": self.hash.kind})];
        if let Some(range) = &self.range {
            key_schema.push(json!({"AttributeName": range.name, "KeyType": "RANGE"}));
            definitions.push(json!({"AttributeName": range.name, "AttributeType": range.kind}));
        }
        let created = info.created_ms as f64 / 1000.0;
        let (read, write) = self.throughput.unwrap_or((0, 0));
        let mut description = json!({
            "TableName": self.name,
            "TableArn": self.arn(),
            "TableId": uuid_of(&self.name, info.created_ms),
            "TableStatus": status,
            "KeySchema": key_schema,
            "AttributeDefinitions": definitions,
            "CreationDateTime": created,
            "ItemCount": info.item_count,
            "TableSizeBytes": info.size_bytes,
            "ProvisionedThroughput": {
                "NumberOfDecreasesToday": 0,
                "ReadCapacityUnits": read,
                "WriteCapacityUnits": write,
            },
            "BillingModeSummary": {
                "BillingMode": self.billing,
                "LastUpdateToPayPerRequestDateTime": created,
            },
            "DeletionProtectionEnabled": false,
        });
        if let Some(view) = &self.stream {
            crate::request::set(
                &mut description,
                "StreamSpecification",
                json!({"StreamEnabled": true, "StreamViewType": view}),
            );
            crate::request::set(
                &mut description,
                "LatestStreamLabel",
                json!(self.stream_label()),
            );
            crate::request::set(
                &mut description,
                "LatestStreamArn",
                json!(self.stream_arn()),
            );
        }
        description
    }
}

/// A stable, table-specific id in UUID form.
fn uuid_of(name: &str, created_ms: u64) -> String {
    let mut bytes = [0u8; 16];
    let digest = table_id_bytes(name.as_bytes(), created_ms);
    bytes.copy_from_slice(&digest);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8).unwrap_or_default(),
        hex.get(8..12).unwrap_or_default(),
        hex.get(12..16).unwrap_or_default(),
        hex.get(16..20).unwrap_or_default(),
        hex.get(20..32).unwrap_or_default()
    )
}

/// Sixteen bytes derived from a name and a creation time (an identifier, not a secret).
fn table_id_bytes(name: &[u8], created_ms: u64) -> [u8; 16] {
    use std::hash::{Hash, Hasher};
    let mut out = [0u8; 16];
    for (half, chunk) in out.chunks_mut(8).enumerate() {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (name, created_ms, half).hash(&mut hasher);
        chunk.copy_from_slice(&hasher.finish().to_be_bytes());
    }
    out
}

/// `StreamSpecification`, if it turns a stream on.
pub fn stream_of(params: &Params) -> Answer<Option<String>> {
    let Some(spec) = params.object("StreamSpecification")? else {
        return Ok(None);
    };
    let enabled = spec
        .bool("StreamEnabled")?
        .ok_or_else(|| validation("StreamSpecification: StreamEnabled is required"))?;
    let view = one_of(&spec, "StreamViewType", STREAM_VIEW_TYPES)?;
    match (enabled, view) {
        (true, Some(view)) => Ok(Some(view.to_owned())),
        (true, None) => Err(validation(
            "One or more parameter values were invalid: You must specify a StreamViewType when \
             you enable a stream",
        )),
        (false, Some(_)) => Err(validation(
            "One or more parameter values were invalid: You cannot modify the StreamViewType \
             when you disable a stream",
        )),
        (false, None) => Ok(None),
    }
}

/// A key attribute's bytes, ordered as DynamoDB orders the type.
fn key_part(
    attribute: &KeyAttribute,
    value: &Value,
    is_range: bool,
    mismatch: impl Fn(&str) -> nimbus_aws::JsonError,
) -> Answer<Vec<u8>> {
    let bytes = match (attribute.kind.as_str(), value) {
        ("S", Value::S(s)) => s.as_bytes().to_vec(),
        ("N", Value::N(n)) => n.key_bytes(),
        ("B", Value::B(b)) => b.to_vec(),
        (_, other) => return Err(mismatch(other.kind().name())),
    };
    if matches!(value, Value::S(_) | Value::B(_)) && bytes.is_empty() {
        return Err(validation(format!(
            "One or more parameter values are not valid. The AttributeValue for a key attribute \
             cannot contain an empty {} value. Key: {}",
            if attribute.kind == "S" {
                "string"
            } else {
                "binary"
            },
            attribute.name
        )));
    }
    let size = value.size();
    if is_range && size > MAX_SORT_KEY_BYTES {
        return Err(validation(format!(
            "One or more parameter values were invalid: Aggregated size of all range keys has \
             exceeded the size limit of {MAX_SORT_KEY_BYTES} bytes"
        )));
    }
    if !is_range && size > MAX_PARTITION_KEY_BYTES {
        return Err(validation(format!(
            "One or more parameter values were invalid: Size of hashkey has exceeded the \
             maximum size limit of{MAX_PARTITION_KEY_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// DynamoDB's key size limits.
const MAX_PARTITION_KEY_BYTES: usize = 2048;
const MAX_SORT_KEY_BYTES: usize = 1024;

/// An item as the store keeps it.
pub fn encode_item(item: &Item) -> bytes::Bytes {
    bytes::Bytes::from(item_to_json(item).to_string())
}

pub fn decode_item(bytes: &[u8]) -> Answer<Item> {
    let json: Json = serde_json::from_slice(bytes).map_err(|e| crate::request::internal(&e))?;
    item_from_json(&json).map_err(|e| crate::request::internal(&e))
}
