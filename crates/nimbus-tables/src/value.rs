//! DynamoDB's attribute values and items, read from and written as DynamoDB JSON
//! (`{"S": "text"}`, `{"N": "1.5"}`, `{"M": {…}}`, …), validated as DynamoDB validates them.

use crate::number::{Number, NumberError};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, HashSet};

/// How deep documents may nest (a map in a list in a map…), as DynamoDB allows.
pub const MAX_DEPTH: usize = 32;
/// The largest item, in DynamoDB's measure of item size.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// One attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    S(String),
    N(Number),
    B(Bytes),
    Bool(bool),
    Null,
    M(BTreeMap<String, Value>),
    L(Vec<Value>),
    Ss(Vec<String>),
    Ns(Vec<Number>),
    Bs(Vec<Bytes>),
}

/// An item: attribute names to values.
pub type Item = BTreeMap<String, Value>;

/// Why a value was refused; the text is DynamoDB's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<NumberError> for Invalid {
    fn from(error: NumberError) -> Invalid {
        Invalid(error.to_string())
    }
}

fn invalid(message: impl Into<String>) -> Invalid {
    Invalid(format!(
        "One or more parameter values were invalid: {}",
        message.into()
    ))
}

/// The type's name in DynamoDB's JSON and in `attribute_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    S,
    N,
    B,
    Bool,
    Null,
    M,
    L,
    Ss,
    Ns,
    Bs,
}

impl Type {
    pub fn parse(name: &str) -> Option<Type> {
        Some(match name {
            "S" => Type::S,
            "N" => Type::N,
            "B" => Type::B,
            "BOOL" => Type::Bool,
            "NULL" => Type::Null,
            "M" => Type::M,
            "L" => Type::L,
            "SS" => Type::Ss,
            "NS" => Type::Ns,
            "BS" => Type::Bs,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Type::S => "S",
            Type::N => "N",
            Type::B => "B",
            Type::Bool => "BOOL",
            Type::Null => "NULL",
            Type::M => "M",
            Type::L => "L",
            Type::Ss => "SS",
            Type::Ns => "NS",
            Type::Bs => "BS",
        }
    }
}

impl Value {
    pub fn kind(&self) -> Type {
        match self {
            Value::S(_) => Type::S,
            Value::N(_) => Type::N,
            Value::B(_) => Type::B,
            Value::Bool(_) => Type::Bool,
            Value::Null => Type::Null,
            Value::M(_) => Type::M,
            Value::L(_) => Type::L,
            Value::Ss(_) => Type::Ss,
            Value::Ns(_) => Type::Ns,
            Value::Bs(_) => Type::Bs,
        }
    }

    /// Read one attribute value from DynamoDB JSON.
    pub fn from_json(json: &Json) -> Result<Value, Invalid> {
        Value::read(json, 0)
    }

    fn read(json: &Json, depth: usize) -> Result<Value, Invalid> {
        if depth > MAX_DEPTH {
            return Err(Invalid(
                "Nesting Levels have exceeded supported limits".to_owned(),
            ));
        }
        let Json::Object(fields) = json else {
            return Err(Invalid(format!(
                "Supplied AttributeValue is not an object: {json}"
            )));
        };
        let mut fields = fields.iter();
        let (Some((kind, body)), None) = (fields.next(), fields.next()) else {
            return Err(Invalid(if json.as_object().is_some_and(Map::is_empty) {
                "Supplied AttributeValue is empty, must contain exactly one of the supported \
                 datatypes"
                    .to_owned()
            } else {
                "Supplied AttributeValue has more than one datatypes set, must contain exactly \
                 one of the supported datatypes"
                    .to_owned()
            }));
        };
        let text = |body: &Json| -> Result<String, Invalid> {
            body.as_str()
                .map(str::to_owned)
                .ok_or_else(|| Invalid(format!("Expected a string for {kind}, got {body}")))
        };
        let binary = |body: &Json| -> Result<Bytes, Invalid> {
            let text = body
                .as_str()
                .ok_or_else(|| Invalid(format!("Expected a string for {kind}, got {body}")))?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map(Bytes::from)
                .map_err(|_| Invalid("Invalid Base64 encoding for a binary value".to_owned()))
        };
        fn list<'j>(kind: &str, body: &'j Json) -> Result<&'j Vec<Json>, Invalid> {
            body.as_array()
                .ok_or_else(|| Invalid(format!("Expected a list for {kind}, got {body}")))
        }
        Ok(match kind.as_str() {
            "S" => Value::S(text(body)?),
            "N" => Value::N(Number::parse(&text(body)?)?),
            "B" => Value::B(binary(body)?),
            "BOOL" => Value::Bool(
                body.as_bool()
                    .ok_or_else(|| Invalid(format!("Expected a boolean for BOOL, got {body}")))?,
            ),
            "NULL" => match body.as_bool() {
                Some(true) => Value::Null,
                _ => {
                    return Err(invalid(
                        "Null attribute value types must have the value of true",
                    ));
                }
            },
            "M" => {
                let fields = body
                    .as_object()
                    .ok_or_else(|| Invalid(format!("Expected a map for M, got {body}")))?;
                let mut map = BTreeMap::new();
                for (name, value) in fields {
                    map.insert(name.clone(), Value::read(value, depth + 1)?);
                }
                Value::M(map)
            }
            "L" => Value::L(
                list(kind, body)?
                    .iter()
                    .map(|v| Value::read(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            "SS" => {
                let set = list(kind, body)?
                    .iter()
                    .map(text)
                    .collect::<Result<Vec<_>, _>>()?;
                check_set(&set, "An string set ", |s| s.clone())?;
                Value::Ss(set)
            }
            "NS" => {
                let set = list(kind, body)?
                    .iter()
                    .map(|v| Number::parse(&text(v)?).map_err(Invalid::from))
                    .collect::<Result<Vec<_>, _>>()?;
                check_set(&set, "An number set ", Number::to_string)?;
                Value::Ns(set)
            }
            "BS" => {
                let set = list(kind, body)?
                    .iter()
                    .map(binary)
                    .collect::<Result<Vec<_>, _>>()?;
                check_set(&set, "Binary sets", |b| {
                    base64::engine::general_purpose::STANDARD.encode(b)
                })?;
                Value::Bs(set)
            }
            other => {
                return Err(Invalid(format!(
                    "Supplied AttributeValue has an unknown datatype: {other}"
                )));
            }
        })
    }

    /// The value as DynamoDB JSON.
    pub fn to_json(&self) -> Json {
        let b64 = |b: &Bytes| Json::String(base64::engine::general_purpose::STANDARD.encode(b));
        let (kind, body) = match self {
            Value::S(s) => ("S", Json::String(s.clone())),
            Value::N(n) => ("N", Json::String(n.to_string())),
            Value::B(b) => ("B", b64(b)),
            Value::Bool(b) => ("BOOL", Json::Bool(*b)),
            Value::Null => ("NULL", Json::Bool(true)),
            Value::M(m) => ("M", item_to_json(m)),
            Value::L(l) => ("L", Json::Array(l.iter().map(Value::to_json).collect())),
            Value::Ss(s) => (
                "SS",
                Json::Array(s.iter().cloned().map(Json::String).collect()),
            ),
            Value::Ns(s) => (
                "NS",
                Json::Array(s.iter().map(|n| Json::String(n.to_string())).collect()),
            ),
            Value::Bs(s) => ("BS", Json::Array(s.iter().map(b64).collect())),
        };
        let mut map = Map::with_capacity(1);
        map.insert(kind.to_owned(), body);
        Json::Object(map)
    }

    /// DynamoDB's measure of the value's size, in bytes.
    pub fn size(&self) -> usize {
        match self {
            Value::S(s) => s.len(),
            Value::N(n) => n.to_string().len().div_ceil(2) + 1,
            Value::B(b) => b.len(),
            Value::Bool(_) | Value::Null => 1,
            Value::M(m) => 3 + m.iter().map(|(k, v)| k.len() + v.size() + 1).sum::<usize>(),
            Value::L(l) => 3 + l.iter().map(|v| v.size() + 1).sum::<usize>(),
            Value::Ss(s) => s.iter().map(String::len).sum(),
            Value::Ns(s) => s.iter().map(|n| n.to_string().len().div_ceil(2) + 1).sum(),
            Value::Bs(s) => s.iter().map(Bytes::len).sum(),
        }
    }
}

fn check_set<T>(set: &[T], what: &str, show: impl Fn(&T) -> String) -> Result<(), Invalid> {
    if set.is_empty() {
        return Err(invalid(if what == "Binary sets" {
            "Binary sets should not be empty".to_owned()
        } else {
            format!("{what} may not be empty")
        }));
    }
    let mut seen = HashSet::with_capacity(set.len());
    if set.iter().any(|v| !seen.insert(show(v))) {
        let shown: Vec<String> = set.iter().map(show).collect();
        return Err(invalid(format!(
            "Input collection [{}] contains duplicates.",
            shown.join(", ")
        )));
    }
    Ok(())
}

/// Read an item (a map of names to attribute values) from DynamoDB JSON.
pub fn item_from_json(json: &Json) -> Result<Item, Invalid> {
    let fields = json
        .as_object()
        .ok_or_else(|| Invalid(format!("Expected a map of attribute values, got {json}")))?;
    let mut item = BTreeMap::new();
    for (name, value) in fields {
        item.insert(name.clone(), Value::read(value, 1)?);
    }
    Ok(item)
}

pub fn item_to_json(item: &Item) -> Json {
    Json::Object(
        item.iter()
            .map(|(name, value)| (name.clone(), value.to_json()))
            .collect(),
    )
}

/// DynamoDB's measure of an item's size: names and values.
pub fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value.size())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_round_trip_through_dynamodb_json() {
        let item = json!({
            "s": {"S": "text"}, "n": {"N": "1.50"}, "b": {"B": "AAEC"}, "t": {"BOOL": true},
            "z": {"NULL": true}, "m": {"M": {"x": {"L": [{"N": "1"}, {"S": "y"}]}}},
            "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": ["AA=="]}
        });
        let parsed = item_from_json(&item).unwrap();
        assert_eq!(parsed["n"], Value::N(Number::parse("1.5").unwrap()));
        assert_eq!(parsed["b"], Value::B(Bytes::from_static(&[0, 1, 2])));
        let mut expected = item.clone();
        expected["n"] = json!({"N": "1.5"});
        assert_eq!(item_to_json(&parsed), expected);
    }

    #[test]
    fn invalid_values_get_dynamodbs_messages() {
        let message = |v: Json| Value::from_json(&v).unwrap_err().0;
        assert_eq!(
            message(json!({})),
            "Supplied AttributeValue is empty, must contain exactly one of the supported datatypes"
        );
        assert!(message(json!({"S": "a", "N": "1"})).contains("more than one datatypes"));
        assert_eq!(
            message(json!({"NS": []})),
            "One or more parameter values were invalid: An number set  may not be empty"
        );
        assert_eq!(
            message(json!({"SS": []})),
            "One or more parameter values were invalid: An string set  may not be empty"
        );
        assert_eq!(
            message(json!({"SS": ["a", "a"]})),
            "One or more parameter values were invalid: Input collection [a, a] contains duplicates."
        );
        assert!(message(json!({"NS": ["1", "1.0"]})).contains("contains duplicates"));
        assert!(message(json!({"NULL": false})).contains("Null attribute value"));
        assert!(message(json!({"N": "x1"})).contains("cannot be converted to a numeric value"));
        let mut deep = json!({"S": "leaf"});
        for _ in 0..40 {
            deep = json!({"L": [deep]});
        }
        assert_eq!(
            message(deep),
            "Nesting Levels have exceeded supported limits"
        );
    }
}
