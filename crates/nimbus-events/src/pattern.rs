//! EventBridge-style event patterns, compiled once into a [`Pattern`] and matched against events
//! without re-reading the pattern's JSON.
//!
//! A pattern is a JSON object whose keys name fields of the event (nested objects name nested
//! fields) and whose leaves are arrays of alternatives. A field matches if any alternative
//! matches any of its values (an array in the event offers each element); an event matches if
//! every field of the pattern matches. Alternatives:
//!
//! | form | matches |
//! |---|---|
//! | `"text"`, `12`, `true`, `null` | exactly that value |
//! | `{"prefix": "p"}` / `{"suffix": "s"}` | strings starting / ending with it |
//! | `{"equals-ignore-case": "t"}` | strings equal ignoring ASCII case |
//! | `{"wildcard": "a*b"}` | strings matching, `*` standing for any run of characters |
//! | `{"anything-but": v}` | any value except `v` (a value, an array of values, or `{"prefix"}`/`{"suffix"}`) |
//! | `{"numeric": [">", 0, "<=", 5]}` | numbers inside every bound given |
//! | `{"exists": true}` / `{"exists": false}` | the field is present / absent |
//!
//! Errors say where in the pattern the problem is (a dotted path). Parsing never panics on any
//! input (a fuzz target holds it to that) and bounds nesting depth and size.

use serde_json::Value;
use std::collections::HashSet;

/// Deepest nesting of field objects a pattern may have.
pub const MAX_DEPTH: usize = 16;
/// Most alternatives a pattern may hold in total.
pub const MAX_ALTERNATIVES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern{}{path}: {message}", if path.is_empty() { "" } else { " at " })]
pub struct PatternError {
    /// Dotted path of the pattern field in error; empty for the whole pattern.
    pub path: String,
    pub message: String,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    fields: Vec<Field>,
}

#[derive(Debug, Clone)]
struct Field {
    path: Vec<String>,
    alternatives: Vec<Alt>,
}

#[derive(Debug, Clone)]
enum Alt {
    Exact(Value),
    Number(f64),
    Prefix(String),
    Suffix(String),
    IgnoreCase(String),
    Wildcard(Vec<String>),
    AnythingBut(AnythingBut),
    Numeric(Bounds),
    Exists(bool),
}

#[derive(Debug, Clone)]
enum AnythingBut {
    Strings(HashSet<String>),
    Numbers(Vec<f64>),
    Prefix(String),
    Suffix(String),
}

#[derive(Debug, Clone, Copy, Default)]
struct Bounds {
    lower: Option<(f64, bool)>,
    upper: Option<(f64, bool)>,
    equal: Option<f64>,
}

impl Bounds {
    fn contains(&self, n: f64) -> bool {
        self.lower
            .is_none_or(|(b, inclusive)| if inclusive { n >= b } else { n > b })
            && self
                .upper
                .is_none_or(|(b, inclusive)| if inclusive { n <= b } else { n < b })
            && self.equal.is_none_or(|e| n == e)
    }
}

fn error(path: &[String], message: impl Into<String>) -> PatternError {
    PatternError {
        path: path.join("."),
        message: message.into(),
    }
}

impl Pattern {
    /// Parse and compile a pattern from JSON text.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| error(&[], format!("not valid JSON: {e}")))?;
        Pattern::compile(&value)
    }

    /// Compile a pattern from its JSON value.
    pub fn compile(value: &Value) -> Result<Pattern, PatternError> {
        let Value::Object(object) = value else {
            return Err(error(&[], "expected a JSON object of fields"));
        };
        if object.is_empty() {
            return Err(error(
                &[],
                "an empty pattern would match every event; name at least one field",
            ));
        }
        let mut fields = Vec::new();
        let mut count = 0;
        collect(value, &mut Vec::new(), &mut fields, &mut count)?;
        Ok(Pattern { fields })
    }

    /// Does `event` (a JSON document) match?
    pub fn matches(&self, event: &Value) -> bool {
        self.fields.iter().all(|field| field.matches(event))
    }
}

fn collect(
    value: &Value,
    path: &mut Vec<String>,
    out: &mut Vec<Field>,
    count: &mut usize,
) -> Result<(), PatternError> {
    match value {
        Value::Object(object) => {
            if path.len() >= MAX_DEPTH {
                return Err(error(
                    path,
                    format!("patterns nest at most {MAX_DEPTH} levels"),
                ));
            }
            for (key, inner) in object {
                path.push(key.clone());
                if matches!(inner, Value::Object(o) if o.is_empty()) {
                    return Err(error(path, "expected an object of fields or an array"));
                }
                collect(inner, path, out, count)?;
                path.pop();
            }
            Ok(())
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(error(
                    path,
                    "an empty array matches nothing; give at least one value",
                ));
            }
            let mut alternatives = Vec::with_capacity(items.len());
            for item in items {
                *count += 1;
                if *count > MAX_ALTERNATIVES {
                    return Err(error(
                        path,
                        format!("a pattern holds at most {MAX_ALTERNATIVES} values"),
                    ));
                }
                alternatives.push(alternative(item, path)?);
            }
            out.push(Field {
                path: path.clone(),
                alternatives,
            });
            Ok(())
        }
        _ => Err(error(
            path,
            "expected an array of values to match (e.g. [\"a\", \"b\"]), or an object of fields",
        )),
    }
}

fn text<'a>(value: &'a Value, path: &[String], what: &str) -> Result<&'a str, PatternError> {
    value
        .as_str()
        .ok_or_else(|| error(path, format!("`{what}` takes a string")))
}

fn alternative(item: &Value, path: &[String]) -> Result<Alt, PatternError> {
    match item {
        Value::Number(n) => Ok(Alt::Number(finite(n.as_f64(), path)?)),
        Value::String(_) | Value::Bool(_) | Value::Null => Ok(Alt::Exact(item.clone())),
        Value::Array(_) => Err(error(path, "values cannot be nested arrays")),
        Value::Object(object) => {
            let mut entries = object.iter();
            let (Some((op, operand)), None) = (entries.next(), entries.next()) else {
                return Err(error(
                    path,
                    "a matcher object has exactly one key, e.g. {\"prefix\": \"a\"}",
                ));
            };
            match op.as_str() {
                "prefix" => Ok(Alt::Prefix(text(operand, path, op)?.to_owned())),
                "suffix" => Ok(Alt::Suffix(text(operand, path, op)?.to_owned())),
                "equals-ignore-case" => Ok(Alt::IgnoreCase(
                    text(operand, path, op)?.to_ascii_lowercase(),
                )),
                "wildcard" => Ok(Alt::Wildcard(
                    text(operand, path, op)?
                        .split('*')
                        .map(str::to_owned)
                        .collect(),
                )),
                "exists" => match operand {
                    Value::Bool(b) => Ok(Alt::Exists(*b)),
                    _ => Err(error(path, "`exists` takes true or false")),
                },
                "numeric" => numeric(operand, path).map(Alt::Numeric),
                "anything-but" => anything_but(operand, path).map(Alt::AnythingBut),
                other => Err(error(
                    path,
                    format!(
                        "unknown matcher {other:?}; expected prefix, suffix, equals-ignore-case, wildcard, anything-but, numeric or exists"
                    ),
                )),
            }
        }
    }
}

fn finite(n: Option<f64>, path: &[String]) -> Result<f64, PatternError> {
    n.filter(|n| n.is_finite())
        .ok_or_else(|| error(path, "numbers must be finite"))
}

fn numeric(operand: &Value, path: &[String]) -> Result<Bounds, PatternError> {
    let Value::Array(items) = operand else {
        return Err(error(
            path,
            "`numeric` takes an array like [\">\", 0, \"<=\", 5]",
        ));
    };
    if items.is_empty() || items.len() % 2 != 0 || items.len() > 4 {
        return Err(error(
            path,
            "`numeric` takes one or two (operator, number) pairs",
        ));
    }
    let mut bounds = Bounds::default();
    for pair in items.chunks_exact(2) {
        let [op, n] = pair else {
            continue;
        };
        let (Some(op), Some(n)) = (op.as_str(), n.as_f64()) else {
            return Err(error(
                path,
                "`numeric` pairs are an operator string then a number",
            ));
        };
        let n = finite(Some(n), path)?;
        let slot = match op {
            ">" | ">=" => &mut bounds.lower,
            "<" | "<=" => &mut bounds.upper,
            "=" => {
                bounds.equal = Some(n);
                continue;
            }
            other => {
                return Err(error(
                    path,
                    format!("unknown numeric operator {other:?}; expected <, <=, =, >= or >"),
                ));
            }
        };
        if slot.is_some() {
            return Err(error(path, "`numeric` bounds each side at most once"));
        }
        *slot = Some((n, op.ends_with('=')));
    }
    if let (Some((low, _)), Some((high, _))) = (bounds.lower, bounds.upper)
        && low > high
    {
        return Err(error(path, "the lower bound is above the upper bound"));
    }
    Ok(bounds)
}

fn anything_but(operand: &Value, path: &[String]) -> Result<AnythingBut, PatternError> {
    let values: Vec<&Value> = match operand {
        Value::Object(object) => {
            let mut entries = object.iter();
            return match (entries.next(), entries.next()) {
                (Some((op, v)), None) if op == "prefix" => {
                    Ok(AnythingBut::Prefix(text(v, path, op)?.to_owned()))
                }
                (Some((op, v)), None) if op == "suffix" => {
                    Ok(AnythingBut::Suffix(text(v, path, op)?.to_owned()))
                }
                _ => Err(error(
                    path,
                    "`anything-but` takes a value, an array of values, or {\"prefix\"|\"suffix\": \"…\"}",
                )),
            };
        }
        Value::Array(items) if !items.is_empty() => items.iter().collect(),
        Value::String(_) | Value::Number(_) => vec![operand],
        _ => {
            return Err(error(
                path,
                "`anything-but` takes strings or numbers (not both)",
            ));
        }
    };
    if values.iter().all(|v| v.is_string()) {
        Ok(AnythingBut::Strings(
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ))
    } else if values.iter().all(|v| v.is_number()) {
        values
            .iter()
            .map(|v| finite(v.as_f64(), path))
            .collect::<Result<_, _>>()
            .map(AnythingBut::Numbers)
    } else {
        Err(error(
            path,
            "`anything-but` takes strings or numbers (not both)",
        ))
    }
}

impl Field {
    fn matches(&self, event: &Value) -> bool {
        let mut values = Vec::new();
        lookup(event, &self.path, &mut values);
        self.alternatives.iter().any(|alt| match alt {
            Alt::Exists(want) => values.is_empty() != *want,
            _ => values.iter().any(|value| alt.matches(value)),
        })
    }
}

/// Every leaf value at `path`, descending into arrays on the way and at the end.
fn lookup<'a>(value: &'a Value, path: &[String], out: &mut Vec<&'a Value>) {
    match (value, path.split_first()) {
        (Value::Array(items), _) => {
            for item in items {
                lookup(item, path, out);
            }
        }
        (_, None) => out.push(value),
        (Value::Object(object), Some((head, rest))) => {
            if let Some(inner) = object.get(head) {
                lookup(inner, rest, out);
            }
        }
        _ => {}
    }
}

impl Alt {
    fn matches(&self, value: &Value) -> bool {
        match self {
            Alt::Exact(expected) => value == expected,
            Alt::Number(n) => value.as_f64() == Some(*n),
            Alt::Prefix(p) => value.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Alt::Suffix(p) => value.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            Alt::IgnoreCase(p) => value.as_str().is_some_and(|s| s.eq_ignore_ascii_case(p)),
            Alt::Wildcard(parts) => value.as_str().is_some_and(|s| wildcard(parts, s)),
            Alt::Numeric(bounds) => value.as_f64().is_some_and(|n| bounds.contains(n)),
            Alt::AnythingBut(but) => match but {
                AnythingBut::Strings(set) => value.as_str().is_some_and(|s| !set.contains(s)),
                AnythingBut::Numbers(list) => value.as_f64().is_some_and(|n| !list.contains(&n)),
                AnythingBut::Prefix(p) => {
                    value.as_str().is_some_and(|s| !s.starts_with(p.as_str()))
                }
                AnythingBut::Suffix(p) => value.as_str().is_some_and(|s| !s.ends_with(p.as_str())),
            },
            Alt::Exists(_) => false,
        }
    }
}

/// `parts` is the wildcard split at `*`: the first must be a prefix, the last a suffix, the
/// middle ones must appear in order between them.
fn wildcard(parts: &[String], s: &str) -> bool {
    let [first, middle @ .., last] = parts else {
        return parts.first().is_some_and(|only| only == s);
    };
    if !s.starts_with(first.as_str())
        || !s.ends_with(last.as_str())
        || s.len() < first.len() + last.len()
    {
        return false;
    }
    // Both ends are char boundaries: `first` is a prefix and `last` a suffix of `s`.
    let Some(mut rest) = s.get(first.len()..s.len() - last.len()) else {
        return false;
    };
    for part in middle {
        match rest.find(part.as_str()) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "specversion": "1.0",
            "id": "e-1",
            "source": "/shop/orders",
            "type": "order.created",
            "subject": "order-42",
            "data": {
                "amount": 120.5,
                "count": 3,
                "currency": "EUR",
                "tags": ["new", "vip"],
                "customer": {"country": "fr", "email": "ada@example.com"},
                "coupon": null
            }
        })
    }

    #[test]
    fn table() {
        let cases: &[(Value, bool)] = &[
            (json!({"type": ["order.created"]}), true),
            (json!({"type": ["order.deleted"]}), false),
            (json!({"type": ["a", "order.created"]}), true),
            (json!({"type": [{"prefix": "order."}]}), true),
            (json!({"type": [{"prefix": "user."}]}), false),
            (json!({"source": [{"suffix": "/orders"}]}), true),
            (json!({"source": [{"suffix": "/users"}]}), false),
            (
                json!({"data": {"currency": [{"equals-ignore-case": "eur"}]}}),
                true,
            ),
            (json!({"subject": [{"wildcard": "order-*"}]}), true),
            (json!({"subject": [{"wildcard": "*-4*2"}]}), true),
            (json!({"subject": [{"wildcard": "user-*"}]}), false),
            (json!({"type": [{"anything-but": "order.deleted"}]}), true),
            (
                json!({"type": [{"anything-but": ["order.created", "x"]}]}),
                false,
            ),
            (
                json!({"type": [{"anything-but": {"prefix": "order."}}]}),
                false,
            ),
            (
                json!({"type": [{"anything-but": {"suffix": ".deleted"}}]}),
                true,
            ),
            (json!({"data": {"count": [{"anything-but": [1, 2]}]}}), true),
            (json!({"data": {"count": [{"anything-but": [3]}]}}), false),
            (json!({"data": {"amount": [{"numeric": [">", 100]}]}}), true),
            (
                json!({"data": {"amount": [{"numeric": [">", 100, "<=", 120]}]}}),
                false,
            ),
            (
                json!({"data": {"amount": [{"numeric": [">=", 120.5, "<", 121]}]}}),
                true,
            ),
            (json!({"data": {"count": [{"numeric": ["=", 3]}]}}), true),
            (json!({"data": {"count": [3]}}), true),
            (json!({"data": {"count": [3.0]}}), true),
            (json!({"data": {"count": ["3"]}}), false),
            (
                json!({"data": {"currency": [{"numeric": [">", 0]}]}}),
                false,
            ),
            (json!({"data": {"tags": ["vip"]}}), true),
            (json!({"data": {"tags": ["old"]}}), false),
            (
                json!({"data": {"customer": {"country": ["fr", "de"]}}}),
                true,
            ),
            (json!({"data": {"customer": {"country": ["de"]}}}), false),
            (
                json!({"data": {"customer": {"phone": [{"exists": false}]}}}),
                true,
            ),
            (
                json!({"data": {"customer": {"email": [{"exists": true}]}}}),
                true,
            ),
            (
                json!({"data": {"customer": {"email": [{"exists": false}]}}}),
                false,
            ),
            (json!({"data": {"coupon": [null]}}), true),
            (json!({"data": {"coupon": [{"exists": true}]}}), true),
            // Every field must match.
            (
                json!({"type": ["order.created"], "data": {"currency": ["USD"]}}),
                false,
            ),
            (
                json!({"type": ["order.created"], "data": {"currency": ["EUR"]}}),
                true,
            ),
            // A field that is absent matches nothing but exists:false.
            (json!({"missing": ["x"]}), false),
            (json!({"missing": [{"anything-but": "x"}]}), false),
        ];
        let event = event();
        for (pattern, expected) in cases {
            let compiled = Pattern::compile(pattern).unwrap();
            assert_eq!(compiled.matches(&event), *expected, "{pattern}");
        }
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("[1]", "", "object"),
            ("{}", "", "every event"),
            (r#"{"type": "a"}"#, "type", "array"),
            (r#"{"type": []}"#, "type", "empty"),
            (r#"{"data": {"a": [{"prefix": 1}]}}"#, "data.a", "string"),
            (r#"{"a": [{"numeric": [">", "x"]}]}"#, "a", "operator"),
            (r#"{"a": [{"numeric": ["~", 1]}]}"#, "a", "unknown numeric"),
            (r#"{"a": [{"numeric": [">", 5, "<", 1]}]}"#, "a", "above"),
            (r#"{"a": [{"numeric": [">", 5, ">", 1]}]}"#, "a", "once"),
            (r#"{"a": [{"regex": "x"}]}"#, "a", "unknown matcher"),
            (
                r#"{"a": [{"prefix": "x", "suffix": "y"}]}"#,
                "a",
                "exactly one",
            ),
            (r#"{"a": [{"anything-but": ["x", 1]}]}"#, "a", "not both"),
            (r#"{"a": [{"exists": "yes"}]}"#, "a", "true or false"),
            (r#"{"a": [[1]]}"#, "a", "nested"),
            ("not json", "", "JSON"),
        ];
        for (text, path, needle) in cases {
            let e = Pattern::parse(text).unwrap_err();
            assert_eq!(e.path, path, "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
        let deep = format!("{}[1]{}", "{\"a\":".repeat(40), "}".repeat(40));
        assert!(Pattern::parse(&deep).is_err());
    }
}

/// An app's bus rules with their patterns compiled once (when the manifest is parsed): what a
/// published event is matched against.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<(String, Pattern, nimbus_core::Destination)>,
}

impl Rules {
    /// Rules already compiled: (name, pattern, target), in declaration order.
    pub fn new(rules: Vec<(String, Pattern, nimbus_core::Destination)>) -> Rules {
        Rules { rules }
    }

    /// The rules `event` (structured CloudEvent JSON) matches: each rule's name and target, in
    /// declaration order.
    pub fn matching<'a>(
        &'a self,
        event: &'a Value,
    ) -> impl Iterator<Item = (&'a str, &'a nimbus_core::Destination)> + 'a {
        self.rules
            .iter()
            .filter(|(_, pattern, _)| pattern.matches(event))
            .map(|(name, _, target)| (name.as_str(), target))
    }
}

#[cfg(test)]
mod rules_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use nimbus_core::{Destination, Name};

    fn rule(name: &str, pattern: &str, function: &str) -> (String, Pattern, Destination) {
        (
            name.into(),
            Pattern::parse(pattern).unwrap(),
            Destination::Function(Name::new(function).unwrap()),
        )
    }

    #[test]
    fn rules_match_in_declaration_order() {
        let rules = Rules::new(vec![
            rule("orders", r#"{"type":["order.placed"]}"#, "ship"),
            rule("all", r#"{"source":[{"prefix":""}]}"#, "audit"),
        ]);
        let event = serde_json::json!({"type": "order.placed", "source": "/shop"});
        let names: Vec<&str> = rules.matching(&event).map(|(name, _)| name).collect();
        assert_eq!(names, ["orders", "all"]);
        let other = serde_json::json!({"type": "user.created", "source": "/auth"});
        let names: Vec<&str> = rules.matching(&other).map(|(name, _)| name).collect();
        assert_eq!(names, ["all"]);
    }
}
