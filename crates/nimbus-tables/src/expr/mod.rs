//! DynamoDB's expression language: parsed once into an AST ([`ast`], [`parse`]), checked
//! against the request's `ExpressionAttributeNames` / `ExpressionAttributeValues`
//! ([`Placeholders`]), and evaluated against items ([`eval`]).

pub mod ast;
pub mod eval;
pub mod parse;
pub mod reserved;

use crate::value::Value;
use ast::{Condition, Name, Operand, Path, SetOperand, SetValue, Step, Update};
use parse::Kind;
use std::collections::{BTreeSet, HashMap};

/// A request's placeholders, and which of them its expressions used.
#[derive(Debug, Default)]
pub struct Placeholders {
    pub names: HashMap<String, String>,
    pub values: HashMap<String, Value>,
    used_names: BTreeSet<String>,
    used_values: BTreeSet<String>,
}

/// A placeholder problem; the text is DynamoDB's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlaceholderError(pub String);

impl Placeholders {
    /// `names` and `values` as the request gave them (keys with their `#` and `:`).
    pub fn new(names: HashMap<String, String>, values: HashMap<String, Value>) -> Placeholders {
        Placeholders {
            names,
            values,
            ..Placeholders::default()
        }
    }

    /// The attribute name a path step names.
    pub fn name<'a>(&'a self, name: &'a Name) -> Option<&'a str> {
        match name {
            Name::Plain(name) => Some(name),
            Name::Placeholder(key) => self.names.get(&format!("#{key}")).map(String::as_str),
        }
    }

    pub fn value(&self, key: &str) -> Option<&Value> {
        self.values.get(&format!(":{key}"))
    }

    fn check_path(&mut self, kind: Kind, path: &Path) -> Result<(), PlaceholderError> {
        for step in &path.0 {
            if let Step::Attribute(Name::Placeholder(key)) = step {
                let key = format!("#{key}");
                if !self.names.contains_key(&key) {
                    return Err(PlaceholderError(format!(
                        "Invalid {}: An expression attribute name used in the document path is \
                         not defined; attribute name: {key}",
                        kind.parameter()
                    )));
                }
                self.used_names.insert(key);
            }
        }
        Ok(())
    }

    fn check_value(&mut self, kind: Kind, key: &str) -> Result<(), PlaceholderError> {
        let key = format!(":{key}");
        if !self.values.contains_key(&key) {
            return Err(PlaceholderError(format!(
                "Invalid {}: An expression attribute value used in expression is not defined; \
                 attribute value: {key}",
                kind.parameter()
            )));
        }
        self.used_values.insert(key);
        Ok(())
    }

    fn check_operand(&mut self, kind: Kind, operand: &Operand) -> Result<(), PlaceholderError> {
        match operand {
            Operand::Path(path) | Operand::Size(path) => self.check_path(kind, path),
            Operand::Value(key) => self.check_value(kind, key),
        }
    }

    /// Every placeholder of `condition` is defined; record them as used.
    pub fn check_condition(
        &mut self,
        kind: Kind,
        condition: &Condition,
    ) -> Result<(), PlaceholderError> {
        match condition {
            Condition::Compare(a, _, b)
            | Condition::BeginsWith(a, b)
            | Condition::Contains(a, b) => {
                self.check_operand(kind, a)?;
                self.check_operand(kind, b)
            }
            Condition::Between(a, b, c) => {
                self.check_operand(kind, a)?;
                self.check_operand(kind, b)?;
                self.check_operand(kind, c)
            }
            Condition::In(a, list) => {
                self.check_operand(kind, a)?;
                list.iter().try_for_each(|o| self.check_operand(kind, o))
            }
            Condition::AttributeExists(path) | Condition::AttributeNotExists(path) => {
                self.check_path(kind, path)
            }
            Condition::AttributeType(path, operand) => {
                self.check_path(kind, path)?;
                self.check_operand(kind, operand)
            }
            Condition::And(a, b) | Condition::Or(a, b) => {
                self.check_condition(kind, a)?;
                self.check_condition(kind, b)
            }
            Condition::Not(a) => self.check_condition(kind, a),
        }
    }

    fn check_set_value(&mut self, value: &SetValue) -> Result<(), PlaceholderError> {
        match value {
            SetValue::Operand(a) => self.check_set_operand(a),
            SetValue::Plus(a, b) | SetValue::Minus(a, b) => {
                self.check_set_operand(a)?;
                self.check_set_operand(b)
            }
        }
    }

    fn check_set_operand(&mut self, operand: &SetOperand) -> Result<(), PlaceholderError> {
        match operand {
            SetOperand::Path(path) => self.check_path(Kind::Update, path),
            SetOperand::Value(key) => self.check_value(Kind::Update, key),
            SetOperand::IfNotExists(path, value) => {
                self.check_path(Kind::Update, path)?;
                self.check_set_value(value)
            }
            SetOperand::ListAppend(a, b) => {
                self.check_set_value(a)?;
                self.check_set_value(b)
            }
        }
    }

    pub fn check_update(&mut self, update: &Update) -> Result<(), PlaceholderError> {
        for (path, value) in &update.set {
            self.check_path(Kind::Update, path)?;
            self.check_set_value(value)?;
        }
        for path in &update.remove {
            self.check_path(Kind::Update, path)?;
        }
        for (path, key) in update.add.iter().chain(&update.delete) {
            self.check_path(Kind::Update, path)?;
            self.check_value(Kind::Update, key)?;
        }
        Ok(())
    }

    pub fn check_projection(&mut self, paths: &[Path]) -> Result<(), PlaceholderError> {
        paths
            .iter()
            .try_for_each(|p| self.check_path(Kind::Projection, p))
    }

    /// After every expression was checked: refuse placeholders none of them used, as DynamoDB
    /// does.
    pub fn check_all_used(&self) -> Result<(), PlaceholderError> {
        let unused = |all: Vec<&String>, used: &BTreeSet<String>| -> Vec<String> {
            let mut unused: Vec<String> = all
                .into_iter()
                .filter(|k| !used.contains(*k))
                .cloned()
                .collect();
            unused.sort();
            unused
        };
        let names = unused(self.names.keys().collect(), &self.used_names);
        if !names.is_empty() {
            return Err(PlaceholderError(format!(
                "Value provided in ExpressionAttributeNames unused in expressions: keys: {{{}}}",
                names.join(", ")
            )));
        }
        let values = unused(self.values.keys().collect(), &self.used_values);
        if !values.is_empty() {
            return Err(PlaceholderError(format!(
                "Value provided in ExpressionAttributeValues unused in expressions: keys: {{{}}}",
                values.join(", ")
            )));
        }
        Ok(())
    }
}
