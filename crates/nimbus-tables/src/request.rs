//! Reading a DynamoDB request's parameters, and DynamoDB's errors.

use crate::expr::Placeholders;
use crate::expr::parse::ParseError;
use crate::value::{Invalid, Item, Value, item_from_json};
use nimbus_aws::JsonError;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;

/// DynamoDB's error namespace.
pub const NAMESPACE: &str = "com.amazonaws.dynamodb.v20120810";

pub fn validation(message: impl Into<String>) -> JsonError {
    JsonError::new(NAMESPACE, "ValidationException", message)
}

pub fn not_found(message: impl Into<String>) -> JsonError {
    JsonError::new(NAMESPACE, "ResourceNotFoundException", message)
}

pub fn in_use(message: impl Into<String>) -> JsonError {
    JsonError::new(NAMESPACE, "ResourceInUseException", message)
}

pub fn internal(error: &(dyn std::error::Error + 'static)) -> JsonError {
    tracing::error!(error = %nimbus_wire::report(error), "table storage");
    JsonError {
        status: 500,
        ..JsonError::new(NAMESPACE, "InternalServerError", "Internal server error")
    }
}

impl From<Invalid> for JsonError {
    fn from(error: Invalid) -> JsonError {
        validation(error.0)
    }
}

impl From<ParseError> for JsonError {
    fn from(error: ParseError) -> JsonError {
        validation(error.to_string())
    }
}

impl From<crate::expr::PlaceholderError> for JsonError {
    fn from(error: crate::expr::PlaceholderError) -> JsonError {
        validation(error.0)
    }
}

impl From<crate::expr::eval::EvalError> for JsonError {
    fn from(error: crate::expr::eval::EvalError) -> JsonError {
        validation(error.0)
    }
}

pub type Answer<T> = Result<T, JsonError>;

/// Set a member of a JSON object (a no-op on anything else).
pub fn set(object: &mut Json, key: &str, value: Json) {
    if let Some(map) = object.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
}

/// A request's parameters.
pub struct Params(pub Map<String, Json>);

/// The parameter name as DynamoDB's validation messages write it (`tableName`).
fn member(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl Params {
    pub fn parse(body: &[u8]) -> Answer<Params> {
        match serde_json::from_slice::<Json>(body) {
            Ok(Json::Object(map)) => Ok(Params(map)),
            Ok(_) => Err(JsonError::new(
                "com.amazon.coral.service",
                "SerializationException",
                "Start of structure or map found where not expected",
            )),
            Err(error) => Err(JsonError::new(
                "com.amazon.coral.service",
                "SerializationException",
                format!("The request body is not valid JSON: {error}"),
            )),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Json> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn string(&self, name: &str) -> Answer<Option<&str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(serialization(name)),
        }
    }

    pub fn required_string(&self, name: &str) -> Answer<&str> {
        self.string(name)?.ok_or_else(|| missing(name))
    }

    pub fn bool(&self, name: &str) -> Answer<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(serialization(name)),
        }
    }

    pub fn integer(&self, name: &str) -> Answer<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Number(n)) => n.as_i64().map(Some).ok_or_else(|| serialization(name)),
            Some(_) => Err(serialization(name)),
        }
    }

    pub fn object(&self, name: &str) -> Answer<Option<Params>> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Object(map)) => Ok(Some(Params(map.clone()))),
            Some(_) => Err(serialization(name)),
        }
    }

    pub fn list(&self, name: &str) -> Answer<Option<&Vec<Json>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Json::Array(list)) => Ok(Some(list)),
            Some(_) => Err(serialization(name)),
        }
    }

    pub fn item(&self, name: &str) -> Answer<Option<Item>> {
        match self.get(name) {
            None => Ok(None),
            Some(json @ Json::Object(_)) => Ok(Some(item_from_json(json)?)),
            Some(_) => Err(serialization(name)),
        }
    }

    pub fn required_item(&self, name: &str) -> Answer<Item> {
        self.item(name)?.ok_or_else(|| missing(name))
    }

    /// `TableName`, checked as DynamoDB checks it.
    pub fn table_name(&self) -> Answer<String> {
        let name = self.required_string("TableName")?;
        check_table_name(name, "tableName")?;
        Ok(name.to_owned())
    }

    /// `ExpressionAttributeNames` and `ExpressionAttributeValues`.
    pub fn placeholders(&self) -> Answer<Placeholders> {
        let mut names = HashMap::new();
        if let Some(map) = self.object("ExpressionAttributeNames")? {
            if map.0.is_empty() {
                return Err(validation(
                    "ExpressionAttributeNames can only be specified when using expressions",
                ));
            }
            for (key, value) in map.0 {
                let Json::String(value) = value else {
                    return Err(serialization("ExpressionAttributeNames"));
                };
                if !key.starts_with('#') {
                    return Err(validation(format!(
                        "ExpressionAttributeNames contains invalid key: Syntax error; key: \"{key}\""
                    )));
                }
                names.insert(key, value);
            }
        }
        let mut values = HashMap::new();
        if let Some(map) = self.object("ExpressionAttributeValues")? {
            if map.0.is_empty() {
                return Err(validation("ExpressionAttributeValues must not be empty"));
            }
            for (key, value) in &map.0 {
                if !key.starts_with(':') {
                    return Err(validation(format!(
                        "ExpressionAttributeValues contains invalid key: Syntax error; key: \"{key}\""
                    )));
                }
                let value = Value::from_json(value).map_err(|e| {
                    validation(format!(
                        "ExpressionAttributeValues contains invalid value: {} for key {key}",
                        e.0
                    ))
                })?;
                values.insert(key.clone(), value);
            }
        }
        Ok(Placeholders::new(names, values))
    }

    /// Refuse the legacy parameters DynamoDB replaced with expressions.
    pub fn refuse_legacy(&self, names: &[&str]) -> Answer<()> {
        for name in names {
            if self.get(name).is_some() {
                return Err(validation(format!(
                    "{name} is a legacy parameter nimbus does not offer; use the expression \
                     parameters (ConditionExpression, ProjectionExpression, \
                     KeyConditionExpression, FilterExpression, UpdateExpression) instead"
                )));
            }
        }
        Ok(())
    }
}

pub fn check_table_name(name: &str, member_name: &str) -> Answer<()> {
    if name.len() < 3 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at '{member_name}' failed to satisfy \
             constraint: Member must have length greater than or equal to 3"
        )));
    }
    if name.len() > 255 {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at '{member_name}' failed to satisfy \
             constraint: Member must have length less than or equal to 255"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{name}' at '{member_name}' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"
        )));
    }
    Ok(())
}

pub fn missing(name: &str) -> JsonError {
    validation(format!(
        "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member \
         must not be null",
        member(name)
    ))
}

pub fn serialization(name: &str) -> JsonError {
    JsonError::new(
        "com.amazon.coral.service",
        "SerializationException",
        format!("Unexpected value type in payload for {name}"),
    )
}

/// A one-of parameter's value, refused with DynamoDB's enum message when it is none of them.
pub fn one_of<'a>(params: &'a Params, name: &str, allowed: &[&'a str]) -> Answer<Option<&'a str>> {
    let Some(value) = params.string(name)? else {
        return Ok(None);
    };
    match allowed.iter().find(|a| **a == value) {
        Some(found) => Ok(Some(found)),
        None => Err(validation(format!(
            "1 validation error detected: Value '{value}' at '{}' failed to satisfy constraint: \
             Member must satisfy enum value set: [{}]",
            member(name),
            allowed.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_named_as_dynamodb_names_them() {
        assert_eq!(member("TableName"), "tableName");
        assert!(
            missing("Key")
                .message
                .contains("Value null at 'key' failed to satisfy constraint")
        );
        assert!(check_table_name("ab", "tableName").is_err());
        assert!(check_table_name("a b c", "tableName").is_err());
        assert!(check_table_name("orders-v1.2_x", "tableName").is_ok());
    }
}
