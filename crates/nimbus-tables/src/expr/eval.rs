//! Evaluating expressions against items: conditions to true or false, updates to the new
//! item, projections to the item's selected parts — with DynamoDB's semantics where they
//! surprise (a missing attribute is unequal to everything; values of different types are
//! unordered; every `SET` reads the item as it was before the update).

use super::Placeholders;
use super::ast::{Comparator, Condition, Operand, Path, SetOperand, SetValue, Step, Update};
use super::parse::Kind;
use crate::number::Number;
use crate::value::{Item, Type, Value};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// An expression DynamoDB refuses while evaluating it; the text is DynamoDB's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

type Evaluated<T> = Result<T, EvalError>;

fn type_error(kind: Kind, function: &str, value: &Value) -> EvalError {
    EvalError(format!(
        "Invalid {}: Incorrect operand type for operator or function; operator or function: \
         {function}, operand type: {}",
        kind.parameter(),
        value.kind().name()
    ))
}

/// What a path names in `item`, if anything.
pub fn resolve<'a>(item: &'a Item, path: &Path, names: &Placeholders) -> Option<&'a Value> {
    let mut steps = path.0.iter();
    let first = match steps.next()? {
        Step::Attribute(name) => item.get(names.name(name)?)?,
        Step::Index(_) => return None,
    };
    steps.try_fold(first, |value, step| match (step, value) {
        (Step::Attribute(name), Value::M(map)) => map.get(names.name(name)?),
        (Step::Index(i), Value::L(list)) => list.get(*i as usize),
        _ => None,
    })
}

fn operand<'a>(
    item: &'a Item,
    operand: &Operand,
    placeholders: &'a Placeholders,
) -> Option<std::borrow::Cow<'a, Value>> {
    use std::borrow::Cow;
    match operand {
        Operand::Path(path) => resolve(item, path, placeholders).map(Cow::Borrowed),
        Operand::Value(key) => placeholders.value(key).map(Cow::Borrowed),
        Operand::Size(path) => {
            let size = match resolve(item, path, placeholders)? {
                Value::S(s) => s.len(),
                Value::B(b) => b.len(),
                Value::Ss(s) => s.len(),
                Value::Ns(s) => s.len(),
                Value::Bs(s) => s.len(),
                Value::M(m) => m.len(),
                Value::L(l) => l.len(),
                Value::N(_) | Value::Bool(_) | Value::Null => return None,
            };
            Number::parse(&size.to_string())
                .ok()
                .map(|n| Cow::Owned(Value::N(n)))
        }
    }
}

/// DynamoDB's equality: same type and same value (sets in any order).
pub fn equal(a: &Value, b: &Value) -> bool {
    fn same_set<T: PartialEq>(a: &[T], b: &[T]) -> bool {
        a.len() == b.len() && a.iter().all(|x| b.contains(x))
    }
    match (a, b) {
        (Value::Ss(a), Value::Ss(b)) => same_set(a, b),
        (Value::Ns(a), Value::Ns(b)) => same_set(a, b),
        (Value::Bs(a), Value::Bs(b)) => same_set(a, b),
        (Value::M(a), Value::M(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| equal(v, w)))
        }
        (Value::L(a), Value::L(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(v, w)| equal(v, w))
        }
        _ => a == b,
    }
}

/// The order of two scalars of one orderable type (N, S or B), else none.
pub fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::N(a), Value::N(b)) => Some(a.cmp(b)),
        (Value::S(a), Value::S(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Value::B(a), Value::B(b)) => Some(a.as_ref().cmp(b.as_ref())),
        _ => None,
    }
}

fn compare(a: Option<&Value>, comparator: Comparator, b: Option<&Value>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return comparator == Comparator::Ne;
    };
    match comparator {
        Comparator::Eq => equal(a, b),
        Comparator::Ne => !equal(a, b),
        Comparator::Lt => order(a, b) == Some(Ordering::Less),
        Comparator::Le => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
        Comparator::Gt => order(a, b) == Some(Ordering::Greater),
        Comparator::Ge => matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// Whether `condition` holds for `item` (an absent item is an empty one).
pub fn condition(
    kind: Kind,
    condition: &Condition,
    item: &Item,
    placeholders: &Placeholders,
) -> Evaluated<bool> {
    let get = |o: &Operand| operand(item, o, placeholders);
    Ok(match condition {
        Condition::Compare(a, comparator, b) => {
            compare(get(a).as_deref(), *comparator, get(b).as_deref())
        }
        Condition::Between(a, low_operand, high_operand) => {
            let (a, low, high) = (get(a), get(low_operand), get(high_operand));
            if matches!(
                (low_operand, high_operand),
                (Operand::Value(_), Operand::Value(_))
            ) && let (Some(low), Some(high)) = (&low, &high)
                && order(low, high) == Some(Ordering::Greater)
            {
                return Err(EvalError(format!(
                    "Invalid {}: The BETWEEN operator requires upper bound to be greater than or \
                     equal to lower bound; lower bound operand: AttributeValue: {}, upper bound \
                     operand: AttributeValue: {}",
                    kind.parameter(),
                    shown(low),
                    shown(high)
                )));
            }
            compare(a.as_deref(), Comparator::Ge, low.as_deref())
                && compare(a.as_deref(), Comparator::Le, high.as_deref())
        }
        Condition::In(a, list) => {
            let a = get(a);
            list.iter()
                .any(|o| compare(a.as_deref(), Comparator::Eq, get(o).as_deref()))
        }
        Condition::AttributeExists(path) => resolve(item, path, placeholders).is_some(),
        Condition::AttributeNotExists(path) => resolve(item, path, placeholders).is_none(),
        Condition::AttributeType(path, wanted) => {
            let wanted = get(wanted);
            let wanted = match wanted.as_deref() {
                Some(Value::S(name)) => Type::parse(name).ok_or_else(|| {
                    EvalError(format!(
                        "Invalid {}: Invalid attribute type name found; type: {name}, valid \
                         types: {{B,NULL,SS,BOOL,L,BS,N,NS,S,M}}",
                        kind.parameter()
                    ))
                })?,
                Some(other) => return Err(type_error(kind, "attribute_type", other)),
                None => return Ok(false),
            };
            resolve(item, path, placeholders).is_some_and(|v| v.kind() == wanted)
        }
        Condition::BeginsWith(a, prefix) => {
            let prefix = get(prefix);
            match prefix.as_deref() {
                Some(Value::S(_) | Value::B(_)) | None => {}
                Some(other) => return Err(type_error(kind, "begins_with", other)),
            }
            match (get(a).as_deref(), prefix.as_deref()) {
                (Some(Value::S(s)), Some(Value::S(p))) => s.starts_with(p.as_str()),
                (Some(Value::B(s)), Some(Value::B(p))) => s.starts_with(p),
                _ => false,
            }
        }
        Condition::Contains(a, needle) => match (get(a).as_deref(), get(needle).as_deref()) {
            (Some(Value::S(s)), Some(Value::S(n))) => s.contains(n.as_str()),
            (Some(Value::B(s)), Some(Value::B(n))) => {
                n.is_empty() || s.windows(n.len()).any(|w| w == n.as_ref())
            }
            (Some(Value::Ss(set)), Some(Value::S(n))) => set.contains(n),
            (Some(Value::Ns(set)), Some(Value::N(n))) => set.contains(n),
            (Some(Value::Bs(set)), Some(Value::B(n))) => set.contains(n),
            (Some(Value::L(list)), Some(n)) => list.iter().any(|v| equal(v, n)),
            _ => false,
        },
        Condition::And(a, b) => {
            self::condition(kind, a, item, placeholders)?
                && self::condition(kind, b, item, placeholders)?
        }
        Condition::Or(a, b) => {
            self::condition(kind, a, item, placeholders)?
                || self::condition(kind, b, item, placeholders)?
        }
        Condition::Not(a) => !self::condition(kind, a, item, placeholders)?,
    })
}

/// A value as DynamoDB shows one in messages: `{N:5}`, `{S:abc}`.
fn shown(value: &Value) -> String {
    match value {
        Value::S(s) => format!("{{S:{s}}}"),
        Value::N(n) => format!("{{N:{n}}}"),
        other => format!("{{{}:…}}", other.kind().name()),
    }
}

fn missing_attribute() -> EvalError {
    EvalError(
        "The provided expression refers to an attribute that does not exist in the item".to_owned(),
    )
}

fn invalid_path() -> EvalError {
    EvalError(
        "The document path provided in the update expression is invalid for update".to_owned(),
    )
}

fn set_operand(operand: &SetOperand, item: &Item, placeholders: &Placeholders) -> Evaluated<Value> {
    match operand {
        SetOperand::Path(path) => resolve(item, path, placeholders)
            .cloned()
            .ok_or_else(missing_attribute),
        SetOperand::Value(key) => placeholders
            .value(key)
            .cloned()
            .ok_or_else(missing_attribute),
        SetOperand::IfNotExists(path, fallback) => match resolve(item, path, placeholders) {
            Some(value) => Ok(value.clone()),
            None => set_value(fallback, item, placeholders),
        },
        SetOperand::ListAppend(a, b) => {
            let (a, b) = (
                set_value(a, item, placeholders)?,
                set_value(b, item, placeholders)?,
            );
            match (a, b) {
                (Value::L(mut a), Value::L(b)) => {
                    a.extend(b);
                    Ok(Value::L(a))
                }
                (Value::L(_), other) | (other, _) => {
                    Err(type_error(Kind::Update, "list_append", &other))
                }
            }
        }
    }
}

fn set_value(value: &SetValue, item: &Item, placeholders: &Placeholders) -> Evaluated<Value> {
    let arithmetic =
        |a: &SetOperand, b: &SetOperand, symbol: &str| -> Evaluated<(Number, Number)> {
            match (
                set_operand(a, item, placeholders)?,
                set_operand(b, item, placeholders)?,
            ) {
                (Value::N(a), Value::N(b)) => Ok((a, b)),
                (Value::N(_), other) | (other, _) => Err(type_error(Kind::Update, symbol, &other)),
            }
        };
    match value {
        SetValue::Operand(operand) => set_operand(operand, item, placeholders),
        SetValue::Plus(a, b) => {
            let (a, b) = arithmetic(a, b, "+")?;
            Ok(Value::N(a.add(&b).map_err(|e| EvalError(e.to_string()))?))
        }
        SetValue::Minus(a, b) => {
            let (a, b) = arithmetic(a, b, "-")?;
            Ok(Value::N(a.sub(&b).map_err(|e| EvalError(e.to_string()))?))
        }
    }
}

/// The path with its names resolved, for comparing paths and walking items.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resolved {
    Attribute(String),
    Index(usize),
}

fn resolved(path: &Path, placeholders: &Placeholders) -> Vec<Resolved> {
    path.0
        .iter()
        .map(|step| match step {
            Step::Attribute(name) => {
                Resolved::Attribute(placeholders.name(name).unwrap_or_default().to_owned())
            }
            Step::Index(i) => Resolved::Index(*i as usize),
        })
        .collect()
}

fn show_path(path: &[Resolved]) -> String {
    let parts: Vec<String> = path
        .iter()
        .map(|step| match step {
            Resolved::Attribute(name) => name.clone(),
            Resolved::Index(i) => format!("[{i}]"),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The container a path's last step lives in, and that step.
fn parent_mut<'a>(item: &'a mut Item, path: &'a [Resolved]) -> Evaluated<Option<Container<'a>>> {
    let Some((last, parents)) = path.split_last() else {
        return Ok(None);
    };
    let Some((Resolved::Attribute(first), rest)) = parents.split_first() else {
        return match last {
            Resolved::Attribute(name) => Ok(Some(Container::Item(item, name))),
            Resolved::Index(_) => Err(invalid_path()),
        };
    };
    let mut value = item.get_mut(first).ok_or_else(invalid_path)?;
    for step in rest {
        value = match (step, value) {
            (Resolved::Attribute(name), Value::M(map)) => {
                map.get_mut(name).ok_or_else(invalid_path)?
            }
            (Resolved::Index(i), Value::L(list)) => list.get_mut(*i).ok_or_else(invalid_path)?,
            _ => return Err(invalid_path()),
        };
    }
    Ok(Some(match (last, value) {
        (Resolved::Attribute(name), Value::M(map)) => Container::Map(map, name),
        (Resolved::Index(i), Value::L(list)) => Container::List(list, *i),
        _ => return Err(invalid_path()),
    }))
}

enum Container<'a> {
    Item(&'a mut Item, &'a str),
    Map(&'a mut BTreeMap<String, Value>, &'a str),
    List(&'a mut Vec<Value>, usize),
}

impl Container<'_> {
    fn get(&self) -> Option<&Value> {
        match self {
            Container::Item(map, name) | Container::Map(map, name) => map.get(*name),
            Container::List(list, i) => list.get(*i),
        }
    }

    fn set(self, value: Value) {
        match self {
            Container::Item(map, name) | Container::Map(map, name) => {
                map.insert(name.to_owned(), value);
            }
            Container::List(list, i) => match list.get_mut(i) {
                Some(slot) => *slot = value,
                // Past the end appends, as DynamoDB does.
                None => list.push(value),
            },
        }
    }

    fn remove(self) {
        match self {
            Container::Item(map, name) | Container::Map(map, name) => {
                map.remove(name);
            }
            Container::List(list, i) => {
                if i < list.len() {
                    list.remove(i);
                }
            }
        }
    }
}

/// Apply `update` to `item` (empty if the item is new); the item after it.
pub fn update(update: &Update, item: &Item, placeholders: &Placeholders) -> Evaluated<Item> {
    check_paths(Kind::Update, update.targets(), placeholders)?;
    // Every right-hand side reads the item as it was.
    let mut assignments = Vec::with_capacity(update.set.len());
    for (path, value) in &update.set {
        assignments.push((
            resolved(path, placeholders),
            set_value(value, item, placeholders)?,
        ));
    }
    let mut next = item.clone();
    for (path, value) in assignments {
        if let Some(slot) = parent_mut(&mut next, &path)? {
            slot.set(value);
        }
    }
    // Removing list elements shifts the later ones: remove from the back.
    let mut removals: Vec<Vec<Resolved>> = update
        .remove
        .iter()
        .map(|p| resolved(p, placeholders))
        .collect();
    removals.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| index_order(b, a)));
    for path in removals {
        match parent_mut(&mut next, &path) {
            Ok(Some(slot)) => slot.remove(),
            Ok(None) => {}
            Err(_) if path.len() > 1 => {}
            Err(error) => return Err(error),
        }
    }
    for (path, key) in &update.add {
        let operand = placeholders.value(key).ok_or_else(missing_attribute)?;
        let path = resolved(path, placeholders);
        let Some(slot) = parent_mut(&mut next, &path)? else {
            continue;
        };
        let added = match (slot.get(), operand) {
            (None, Value::N(_) | Value::Ss(_) | Value::Ns(_) | Value::Bs(_)) => operand.clone(),
            (Some(Value::N(a)), Value::N(b)) => {
                Value::N(a.add(b).map_err(|e| EvalError(e.to_string()))?)
            }
            (Some(Value::Ss(a)), Value::Ss(b)) => Value::Ss(union(a, b)),
            (Some(Value::Ns(a)), Value::Ns(b)) => Value::Ns(union(a, b)),
            (Some(Value::Bs(a)), Value::Bs(b)) => Value::Bs(union(a, b)),
            (Some(_), Value::N(_) | Value::Ss(_) | Value::Ns(_) | Value::Bs(_)) => {
                return Err(EvalError(
                    "An operand in the update expression has an incorrect data type".to_owned(),
                ));
            }
            (_, other) => return Err(type_error(Kind::Update, "ADD", other)),
        };
        slot.set(added);
    }
    for (path, key) in &update.delete {
        let operand = placeholders.value(key).ok_or_else(missing_attribute)?;
        if !matches!(operand, Value::Ss(_) | Value::Ns(_) | Value::Bs(_)) {
            return Err(type_error(Kind::Update, "DELETE", operand));
        }
        let path = resolved(path, placeholders);
        let Some(slot) = parent_mut(&mut next, &path)? else {
            continue;
        };
        let remaining = match (slot.get(), operand) {
            (None, _) => continue,
            (Some(Value::Ss(a)), Value::Ss(b)) => Value::Ss(difference(a, b)),
            (Some(Value::Ns(a)), Value::Ns(b)) => Value::Ns(difference(a, b)),
            (Some(Value::Bs(a)), Value::Bs(b)) => Value::Bs(difference(a, b)),
            _ => {
                return Err(EvalError(
                    "An operand in the update expression has an incorrect data type".to_owned(),
                ));
            }
        };
        let empty = match &remaining {
            Value::Ss(s) => s.is_empty(),
            Value::Ns(s) => s.is_empty(),
            Value::Bs(s) => s.is_empty(),
            _ => false,
        };
        if empty {
            slot.remove();
        } else {
            slot.set(remaining);
        }
    }
    Ok(next)
}

/// Later list indexes first, so removing one does not move another.
fn index_order(a: &[Resolved], b: &[Resolved]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let step = match (x, y) {
            (Resolved::Index(x), Resolved::Index(y)) => x.cmp(y),
            (Resolved::Attribute(x), Resolved::Attribute(y)) => x.cmp(y),
            (Resolved::Attribute(_), Resolved::Index(_)) => Ordering::Less,
            (Resolved::Index(_), Resolved::Attribute(_)) => Ordering::Greater,
        };
        if step != Ordering::Equal {
            return step;
        }
    }
    Ordering::Equal
}

fn union<T: Clone + PartialEq>(a: &[T], b: &[T]) -> Vec<T> {
    let mut out = a.to_vec();
    for v in b {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

fn difference<T: Clone + PartialEq>(a: &[T], b: &[T]) -> Vec<T> {
    a.iter().filter(|v| !b.contains(v)).cloned().collect()
}

/// Refuse paths that overlap (`a` and `a.b`) or repeat, as DynamoDB does for updates and
/// projections.
pub fn check_paths<'a>(
    kind: Kind,
    paths: impl Iterator<Item = &'a Path>,
    placeholders: &Placeholders,
) -> Evaluated<()> {
    let paths: Vec<Vec<Resolved>> = paths.map(|p| resolved(p, placeholders)).collect();
    for (i, a) in paths.iter().enumerate() {
        for b in paths.iter().skip(i + 1) {
            let shorter = a.len().min(b.len());
            if a.get(..shorter) == b.get(..shorter) {
                return Err(EvalError(format!(
                    "Invalid {}: Two document paths overlap with each other; must remove or \
                     rewrite one of these paths; path one: {}, path two: {}",
                    kind.parameter(),
                    show_path(a),
                    show_path(b)
                )));
            }
        }
    }
    Ok(())
}

/// The parts of `item` that `paths` name, nested as in the item; list elements keep their
/// order, without gaps. The paths must not overlap ([`check_paths`]).
pub fn project(item: &Item, paths: &[Path], placeholders: &Placeholders) -> Item {
    let mut root: BTreeMap<String, Node> = BTreeMap::new();
    for path in paths {
        let steps = resolved(path, placeholders);
        let Some((Resolved::Attribute(first), rest)) = steps.split_first() else {
            continue;
        };
        let Some(value) = item.get(first) else {
            continue;
        };
        if !reaches(value, rest) {
            continue;
        }
        root.entry(first.clone())
            .or_insert_with(|| Node::for_steps(rest))
            .add(value, rest);
    }
    root.into_iter().map(|(k, n)| (k, n.into_value())).collect()
}

fn reaches(value: &Value, steps: &[Resolved]) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return true;
    };
    match (step, value) {
        (Resolved::Attribute(name), Value::M(map)) => {
            map.get(name).is_some_and(|v| reaches(v, rest))
        }
        (Resolved::Index(i), Value::L(list)) => list.get(*i).is_some_and(|v| reaches(v, rest)),
        _ => false,
    }
}

/// A projection being built: whole values, and maps and lists of picked parts.
enum Node {
    Whole(Value),
    Map(BTreeMap<String, Node>),
    List(BTreeMap<usize, Node>),
}

impl Node {
    fn for_steps(steps: &[Resolved]) -> Node {
        match steps.first() {
            Some(Resolved::Index(_)) => Node::List(BTreeMap::new()),
            _ => Node::Map(BTreeMap::new()),
        }
    }

    /// Add what `steps` reach in `value` (they must reach something).
    fn add(&mut self, value: &Value, steps: &[Resolved]) {
        let Some((step, rest)) = steps.split_first() else {
            *self = Node::Whole(value.clone());
            return;
        };
        match (step, value, self) {
            (Resolved::Attribute(name), Value::M(map), Node::Map(children)) => {
                if let Some(inner) = map.get(name) {
                    children
                        .entry(name.clone())
                        .or_insert_with(|| Node::for_steps(rest))
                        .add(inner, rest);
                }
            }
            (Resolved::Index(i), Value::L(list), Node::List(children)) => {
                if let Some(inner) = list.get(*i) {
                    children
                        .entry(*i)
                        .or_insert_with(|| Node::for_steps(rest))
                        .add(inner, rest);
                }
            }
            _ => {}
        }
    }

    fn into_value(self) -> Value {
        match self {
            Node::Whole(value) => value,
            Node::Map(children) => Value::M(
                children
                    .into_iter()
                    .map(|(k, n)| (k, n.into_value()))
                    .collect(),
            ),
            Node::List(children) => {
                Value::L(children.into_values().map(Node::into_value).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::parse;
    use crate::value::item_from_json;
    use serde_json::json;
    use std::collections::HashMap;

    fn placeholders(values: serde_json::Value) -> Placeholders {
        let values = item_from_json(&values).unwrap();
        Placeholders::new(
            HashMap::from([("#s".to_owned(), "status".to_owned())]),
            values.into_iter().collect(),
        )
    }

    fn item() -> Item {
        item_from_json(&json!({
            "pk": {"S": "order#1"}, "n": {"N": "5"}, "status": {"S": "open"},
            "tags": {"SS": ["a", "b"]}, "l": {"L": [{"N": "1"}, {"M": {"x": {"S": "y"}}}, {"N": "3"}]},
            "m": {"M": {"nest": {"M": {"deep": {"BOOL": true}}}}}
        }))
        .unwrap()
    }

    fn holds(text: &str) -> bool {
        let ph = placeholders(json!({
            ":five": {"N": "5.0"}, ":one": {"N": "1"}, ":ten": {"N": "10"}, ":open": {"S": "open"},
            ":o": {"S": "ord"}, ":a": {"S": "a"}, ":str": {"S": "S"}, ":ss": {"S": "SS"}
        }));
        let condition = parse::condition(Kind::Condition, text).unwrap();
        super::condition(Kind::Condition, &condition, &item(), &ph).unwrap()
    }

    #[test]
    fn conditions_follow_dynamodb() {
        assert!(holds("n = :five"), "5 = 5.0 numerically");
        assert!(holds("n BETWEEN :one AND :ten"));
        assert!(holds("#s = :open AND begins_with(pk, :o)"));
        assert!(holds("contains(tags, :a)"));
        assert!(holds(
            "attribute_type(pk, :str) AND attribute_type(tags, :ss)"
        ));
        assert!(holds(
            "attribute_exists(m.nest.deep) AND attribute_not_exists(m.nope)"
        ));
        assert!(!holds("l[1].x = :a"));
        assert!(
            holds("absent <> :one"),
            "a missing attribute is unequal to everything"
        );
        assert!(!holds("absent = :one") && !holds("absent < :one"));
        assert!(
            !holds("pk < :one"),
            "values of different types are unordered"
        );
        assert!(holds("n IN (:one, :five)") && !holds("NOT n IN (:one, :five)"));
        assert!(holds("size(l) > :one"));
    }

    #[test]
    fn between_with_bounds_reversed_is_refused() {
        let ph = placeholders(json!({":lo": {"N": "10"}, ":hi": {"N": "1"}}));
        let condition = parse::condition(Kind::Condition, "n BETWEEN :lo AND :hi").unwrap();
        let error = super::condition(Kind::Condition, &condition, &item(), &ph).unwrap_err();
        assert!(
            error.0.contains("BETWEEN operator requires upper bound"),
            "{error}"
        );
    }

    fn updated(text: &str, values: serde_json::Value) -> Result<Item, EvalError> {
        let ph = placeholders(values);
        update(&parse::update(text).unwrap(), &item(), &ph)
    }

    #[test]
    fn updates_read_the_item_as_it_was() {
        let next = updated(
            "SET n = n + :one, was = n, l[9] = :one, m.nest.added = :one \
             REMOVE l[0], #s ADD tags :more, hits :one DELETE tags :gone",
            json!({":one": {"N": "1"}, ":more": {"SS": ["c"]}, ":gone": {"SS": ["a"]}}),
        );
        // `tags` is both added to and deleted from: overlapping paths are refused.
        assert!(next.unwrap_err().0.contains("Two document paths overlap"));
        let next = updated(
            "SET n = n + :one, was = n, l[9] = :one, m.nest.added = :one \
             REMOVE l[0], #s ADD tags :more, hits :one",
            json!({":one": {"N": "1"}, ":more": {"SS": ["c"]}}),
        )
        .unwrap();
        assert_eq!(next["n"], Value::N(Number::parse("6").unwrap()));
        assert_eq!(next["was"], Value::N(Number::parse("5").unwrap()));
        assert_eq!(next["hits"], Value::N(Number::parse("1").unwrap()));
        assert!(!next.contains_key("status"));
        let Value::L(list) = &next["l"] else { panic!() };
        assert_eq!(list.len(), 3, "l[9] appended, l[0] removed");
        assert_eq!(
            next["tags"],
            Value::Ss(vec!["a".into(), "b".into(), "c".into()])
        );
        let emptied = updated("DELETE tags :all", json!({":all": {"SS": ["a", "b"]}})).unwrap();
        assert!(
            !emptied.contains_key("tags"),
            "a set emptied by DELETE goes"
        );
    }

    #[test]
    fn bad_updates_get_dynamodbs_errors() {
        let error = |text: &str, values| updated(text, values).unwrap_err().0;
        assert!(
            error("SET n = pk + :one", json!({":one": {"N": "1"}}))
                .contains("Incorrect operand type for operator or function; operator or function: +, operand type: S")
        );
        assert_eq!(
            error("SET x = nope", json!({})),
            "The provided expression refers to an attribute that does not exist in the item"
        );
        assert_eq!(
            error("SET nope.x = :one", json!({":one": {"N": "1"}})),
            "The document path provided in the update expression is invalid for update"
        );
        assert!(
            error("SET l = list_append(l, :one)", json!({":one": {"N": "1"}}))
                .contains("list_append")
        );
        assert!(error("ADD pk :one", json!({":one": {"N": "1"}})).contains("incorrect data type"));
    }

    #[test]
    fn projections_keep_the_document_shape() {
        let ph = placeholders(json!({}));
        let paths = parse::projection("pk, l[2], l[1].x, m.nest.deep, nope, l[7]").unwrap();
        check_paths(Kind::Projection, paths.iter(), &ph).unwrap();
        let got = crate::value::item_to_json(&project(&item(), &paths, &ph));
        assert_eq!(
            got,
            json!({
                "pk": {"S": "order#1"},
                "l": {"L": [{"M": {"x": {"S": "y"}}}, {"N": "3"}]},
                "m": {"M": {"nest": {"M": {"deep": {"BOOL": true}}}}}
            })
        );
        let overlapping = parse::projection("m, m.nest").unwrap();
        assert!(check_paths(Kind::Projection, overlapping.iter(), &ph).is_err());
    }
}
