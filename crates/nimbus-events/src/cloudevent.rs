//! CloudEvents 1.0: the event model, its JSON format (structured mode) and its HTTP binary
//! mode (`ce-*` headers + the data as the body).
//!
//! Written here rather than taken from the `cloudevents-sdk` crate: nimbus needs only the JSON
//! format and the HTTP binding's header mapping, both small, while the SDK brings its own HTTP
//! framework integrations.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const SPEC_VERSION: &str = "1.0";
/// `content-type` of a structured-mode event.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// A CloudEvent. `data` is kept as bytes plus its content type; JSON data is also reachable
/// parsed, for pattern matching.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    pub time: Option<String>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// Extension attributes, by name.
    pub extensions: BTreeMap<String, String>,
    pub data: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

fn invalid(message: impl Into<String>) -> EventError {
    EventError(message.into())
}

fn is_text_type(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.starts_with("text/") || essence.ends_with("+xml") || essence == "application/xml"
    })
}

/// Attribute names are 1–20 lower-case ASCII letters or digits.
pub fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 20
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn is_json_type(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let essence = ct.split(';').next().unwrap_or("").trim();
            essence == "application/json" || essence.ends_with("+json") || essence == "text/json"
        }
    }
}

impl CloudEvent {
    /// A new event with a fresh id and the current time.
    pub fn new(source: impl Into<String>, ty: impl Into<String>) -> CloudEvent {
        CloudEvent {
            id: uuid::Uuid::now_v7().to_string(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            datacontenttype: None,
            dataschema: None,
            extensions: BTreeMap::new(),
            data: None,
        }
    }

    pub fn with_json(mut self, data: &Value) -> CloudEvent {
        self.datacontenttype = Some("application/json".into());
        self.data = Some(Bytes::from(data.to_string()));
        self
    }

    fn check(&self) -> Result<(), EventError> {
        for (name, value) in [
            ("id", &self.id),
            ("source", &self.source),
            ("type", &self.ty),
        ] {
            if value.is_empty() {
                return Err(invalid(format!("the `{name}` attribute must not be empty")));
            }
        }
        if let Some(name) = self.extensions.keys().find(|n| !is_attribute_name(n)) {
            return Err(invalid(format!(
                "attribute name {name:?} is invalid: use 1-20 lower-case letters or digits"
            )));
        }
        Ok(())
    }

    /// Parse structured mode: one JSON object.
    pub fn from_json(bytes: &[u8]) -> Result<CloudEvent, EventError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("the event is not valid JSON: {e}")))?;
        let Value::Object(object) = value else {
            return Err(invalid("a structured-mode event is a JSON object"));
        };
        Self::from_object(object)
    }

    fn from_object(mut object: Map<String, Value>) -> Result<CloudEvent, EventError> {
        let mut take = |name: &str| -> Result<Option<String>, EventError> {
            match object.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(invalid(format!("the `{name}` attribute must be a string"))),
            }
        };
        let specversion = take("specversion")?;
        if specversion.as_deref() != Some(SPEC_VERSION) {
            return Err(invalid(format!(
                "`specversion` must be \"{SPEC_VERSION}\", got {specversion:?}"
            )));
        }
        let missing = |name: &str| invalid(format!("the required attribute `{name}` is missing"));
        let id = take("id")?.ok_or_else(|| missing("id"))?;
        let source = take("source")?.ok_or_else(|| missing("source"))?;
        let ty = take("type")?.ok_or_else(|| missing("type"))?;
        let subject = take("subject")?;
        let time = take("time")?;
        let datacontenttype = take("datacontenttype")?;
        let dataschema = take("dataschema")?;
        let data = match (object.remove("data"), object.remove("data_base64")) {
            (Some(_), Some(_)) => {
                return Err(invalid("an event has `data` or `data_base64`, not both"));
            }
            (Some(Value::String(text)), None) if !is_json_type(datacontenttype.as_deref()) => {
                Some(Bytes::from(text))
            }
            (Some(value), None) => Some(Bytes::from(value.to_string())),
            (None, Some(Value::String(encoded))) => Some(Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|e| invalid(format!("`data_base64` is not base64: {e}")))?,
            )),
            (None, Some(_)) => return Err(invalid("`data_base64` must be a string")),
            (None, None) => None,
        };
        let mut extensions = BTreeMap::new();
        for (name, value) in object {
            let text = match value {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(invalid(format!(
                        "extension attribute `{name}` must be a string, number or boolean"
                    )));
                }
            };
            extensions.insert(name, text);
        }
        let event = CloudEvent {
            id,
            source,
            ty,
            subject,
            time,
            datacontenttype,
            dataschema,
            extensions,
            data,
        };
        event.check()?;
        Ok(event)
    }

    /// Parse binary mode: `ce-*` headers (already lower-cased names) and the body as data.
    pub fn from_binary<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: Bytes,
    ) -> Result<CloudEvent, EventError> {
        let mut object = Map::new();
        let mut content_type = None;
        for (name, value) in headers {
            if let Some(attribute) = name.strip_prefix("ce-") {
                if attribute == "data" || attribute == "data_base64" {
                    continue;
                }
                object.insert(attribute.to_owned(), Value::String(percent_decode(value)));
            } else if name == "content-type" {
                content_type = Some(value.to_owned());
            }
        }
        if !object.contains_key("specversion") {
            return Err(invalid(
                "not a CloudEvent: binary mode needs ce-specversion, ce-id, ce-source and ce-type headers (or send application/cloudevents+json)",
            ));
        }
        if let Some(ct) = content_type {
            object.insert("datacontenttype".into(), Value::String(ct));
        }
        let mut event = Self::from_object(object)?;
        event.data = (!body.is_empty()).then_some(body);
        Ok(event)
    }

    /// The structured-mode JSON document (also what patterns match against).
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("specversion".into(), SPEC_VERSION.into());
        object.insert("id".into(), self.id.clone().into());
        object.insert("source".into(), self.source.clone().into());
        object.insert("type".into(), self.ty.clone().into());
        for (name, value) in [
            ("subject", &self.subject),
            ("time", &self.time),
            ("datacontenttype", &self.datacontenttype),
            ("dataschema", &self.dataschema),
        ] {
            if let Some(value) = value {
                object.insert(name.into(), value.clone().into());
            }
        }
        for (name, value) in &self.extensions {
            object.insert(name.clone(), value.clone().into());
        }
        if let Some(data) = &self.data {
            match self.data_json() {
                Some(value) => {
                    object.insert("data".into(), value);
                }
                None => match std::str::from_utf8(data) {
                    Ok(text) if is_text_type(self.datacontenttype.as_deref()) => {
                        object.insert("data".into(), text.into());
                    }
                    _ => {
                        object.insert(
                            "data_base64".into(),
                            base64::engine::general_purpose::STANDARD
                                .encode(data)
                                .into(),
                        );
                    }
                },
            }
        }
        Value::Object(object)
    }

    /// The data parsed as JSON, when its content type says JSON and it parses.
    pub fn data_json(&self) -> Option<Value> {
        let data = self.data.as_ref()?;
        if !is_json_type(self.datacontenttype.as_deref()) {
            return None;
        }
        serde_json::from_slice(data).ok()
    }

    /// Binary-mode headers: `ce-*` for every attribute, `content-type` for the data's type.
    pub fn binary_headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![
            ("ce-specversion".to_owned(), SPEC_VERSION.to_owned()),
            ("ce-id".to_owned(), self.id.clone()),
            ("ce-source".to_owned(), self.source.clone()),
            ("ce-type".to_owned(), self.ty.clone()),
        ];
        for (name, value) in [
            ("subject", &self.subject),
            ("time", &self.time),
            ("dataschema", &self.dataschema),
        ] {
            if let Some(value) = value {
                headers.push((format!("ce-{name}"), percent_encode(value)));
            }
        }
        for (name, value) in &self.extensions {
            headers.push((format!("ce-{name}"), percent_encode(value)));
        }
        if let Some(ct) = &self.datacontenttype {
            headers.push(("content-type".to_owned(), ct.clone()));
        }
        headers
    }
}

/// The HTTP binding percent-encodes header values outside printable ASCII, `"` and `%`.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' || byte == b' ' {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn percent_decode(value: &str) -> String {
    if !value.contains('%') {
        return value.to_owned();
    }
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%'
            && let Some(hex) = value.get(i + 1..i + 3)
            && let Ok(decoded) = u8::from_str_radix(hex, 16)
        {
            out.push(decoded);
            i += 3;
            continue;
        }
        out.push(byte);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn structured_round_trip() {
        let text = json!({
            "specversion": "1.0", "id": "1", "source": "/s", "type": "t",
            "subject": "sub", "traceparent": "00-abc", "data": {"a": [1, 2]}
        });
        let event = CloudEvent::from_json(text.to_string().as_bytes()).unwrap();
        assert_eq!(event.extensions["traceparent"], "00-abc");
        assert_eq!(event.data_json(), Some(json!({"a": [1, 2]})));
        assert_eq!(event.to_json(), text);
        let binary = CloudEvent::from_json(
            json!({"specversion": "1.0", "id": "2", "source": "/s", "type": "t",
                   "datacontenttype": "application/octet-stream", "data_base64": "AAEC"})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(binary.data.as_deref(), Some(&[0u8, 1, 2][..]));
        assert_eq!(binary.to_json()["data_base64"], "AAEC");
    }

    #[test]
    fn binary_mode_round_trip() {
        let mut event = CloudEvent::new("/orders", "order.created").with_json(&json!({"n": 1}));
        event.subject = Some("caf\u{e9} \"x\"".into());
        let headers = event.binary_headers();
        let parsed = CloudEvent::from_binary(
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            event.data.clone().unwrap(),
        )
        .unwrap();
        assert_eq!(parsed, event);
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        let cases = [
            (
                json!({"id": "1", "source": "/s", "type": "t"}),
                "specversion",
            ),
            (
                json!({"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}),
                "specversion",
            ),
            (
                json!({"specversion": "1.0", "source": "/s", "type": "t"}),
                "`id`",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "/s", "type": 5}),
                "`type`",
            ),
            (
                json!({"specversion": "1.0", "id": "", "source": "/s", "type": "t"}),
                "empty",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "Bad_Name": "x"}),
                "Bad_Name",
            ),
            (
                json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "ext": {"a": 1}}),
                "ext",
            ),
        ];
        for (value, needle) in cases {
            let error = CloudEvent::from_json(value.to_string().as_bytes()).unwrap_err();
            assert!(error.0.contains(needle), "{value}: {error}");
        }
        let error = CloudEvent::from_binary([("content-type", "text/plain")], Bytes::new());
        assert!(error.unwrap_err().0.contains("ce-specversion"));
    }
}
