//! The expression grammar, by recursive descent over a token list.
//!
//! ```text
//! condition  := or
//! or         := and ("OR" and)*
//! and        := not ("AND" not)*
//! not        := "NOT" not | primary
//! primary    := "(" condition ")" | function | operand compare
//! compare    := comparator operand | "BETWEEN" operand "AND" operand
//!             | "IN" "(" operand ("," operand)* ")"
//! function   := attribute_exists(path) | attribute_not_exists(path)
//!             | attribute_type(path, :v) | begins_with(operand, operand)
//!             | contains(operand, operand)
//! operand    := path | :value | size(path)
//! path       := name ("." name | "[" digits "]")*
//! update     := (SET action ("," action)* | REMOVE path ("," path)*
//!             | ADD path :value ("," …)* | DELETE path :value ("," …)*)+
//! action     := path "=" value
//! value      := term (("+" | "-") term)?
//! term       := path | :value | if_not_exists(path, value) | list_append(value, value)
//! projection := path ("," path)*
//! ```
//!
//! Keywords are case-insensitive, function names are not, as in DynamoDB. Errors carry
//! DynamoDB's text (`Invalid ConditionExpression: Syntax error; token: "=", near: "a = ="`).

use super::ast::{Comparator, Condition, Name, Operand, Path, SetOperand, SetValue, Step, Update};
use super::reserved::is_reserved;

/// The longest expression, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// The most operands an `IN` takes.
pub const MAX_IN_OPERANDS: usize = 100;
/// How deep parentheses and nested functions may go before the parser refuses.
const MAX_NESTING: usize = 64;

/// Which request parameter an expression came in, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Condition,
    Filter,
    KeyCondition,
    Update,
    Projection,
}

impl Kind {
    pub fn parameter(self) -> &'static str {
        match self {
            Kind::Condition => "ConditionExpression",
            Kind::Filter => "FilterExpression",
            Kind::KeyCondition => "KeyConditionExpression",
            Kind::Update => "UpdateExpression",
            Kind::Projection => "ProjectionExpression",
        }
    }
}

/// An expression DynamoDB would refuse; the text is DynamoDB's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid {}: {message}", kind.parameter())]
pub struct ParseError {
    pub kind: Kind,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    NamePlaceholder(String),
    ValuePlaceholder(String),
    Digits(String),
    Punct(&'static str),
}

#[derive(Debug, Clone)]
struct Spanned {
    token: Token,
    start: usize,
    end: usize,
}

fn tokenize(kind: Kind, text: &str) -> Result<Vec<Spanned>, ParseError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut at = 0;
    let word_end = |from: usize| {
        from + bytes
            .get(from..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
            .count()
    };
    while let Some(&byte) = bytes.get(at) {
        let start = at;
        let token = match byte {
            b' ' | b'\t' | b'\n' | b'\r' => {
                at += 1;
                continue;
            }
            b'#' | b':' => {
                let end = word_end(at + 1);
                if end == at + 1 {
                    return Err(syntax(kind, text, &tokens, start, at + 1));
                }
                let word = text.get(at + 1..end).unwrap_or_default().to_owned();
                at = end;
                if byte == b'#' {
                    Token::NamePlaceholder(word)
                } else {
                    Token::ValuePlaceholder(word)
                }
            }
            b'0'..=b'9' => {
                let end = start
                    + bytes
                        .get(start..)
                        .unwrap_or_default()
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                at = end;
                Token::Digits(text.get(start..end).unwrap_or_default().to_owned())
            }
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let end = word_end(at);
                at = end;
                Token::Ident(text.get(start..end).unwrap_or_default().to_owned())
            }
            _ => {
                let two = text.get(at..at + 2).unwrap_or_default();
                let punct = match two {
                    "<>" | "<=" | ">=" => {
                        at += 2;
                        match two {
                            "<>" => "<>",
                            "<=" => "<=",
                            _ => ">=",
                        }
                    }
                    _ => {
                        at += 1;
                        match byte {
                            b'(' => "(",
                            b')' => ")",
                            b'[' => "[",
                            b']' => "]",
                            b'.' => ".",
                            b',' => ",",
                            b'=' => "=",
                            b'<' => "<",
                            b'>' => ">",
                            b'+' => "+",
                            b'-' => "-",
                            _ => {
                                let end = start
                                    + text
                                        .get(start..)
                                        .and_then(|rest| rest.chars().next())
                                        .map_or(1, char::len_utf8);
                                return Err(syntax(kind, text, &tokens, start, end));
                            }
                        }
                    }
                };
                Token::Punct(punct)
            }
        };
        tokens.push(Spanned {
            token,
            start,
            end: at,
        });
    }
    Ok(tokens)
}

/// DynamoDB's syntax error: the offending token and the text around it.
fn syntax(kind: Kind, text: &str, before: &[Spanned], start: usize, end: usize) -> ParseError {
    let token = if start >= text.len() {
        "<EOF>"
    } else {
        text.get(start..end).unwrap_or("<EOF>")
    };
    let near_start = before.last().map_or(start, |t| t.start).min(start);
    let near = text
        .get(near_start..end.min(text.len()))
        .unwrap_or_default()
        .trim();
    ParseError {
        kind,
        message: format!("Syntax error; token: \"{token}\", near: \"{near}\""),
    }
}

struct Parser<'a> {
    kind: Kind,
    text: &'a str,
    tokens: Vec<Spanned>,
    at: usize,
    depth: usize,
}

type Parsed<T> = Result<T, ParseError>;

impl<'a> Parser<'a> {
    fn new(kind: Kind, text: &'a str) -> Parsed<Parser<'a>> {
        if text.len() > MAX_EXPRESSION_BYTES {
            return Err(ParseError {
                kind,
                message: format!(
                    "Expression size has exceeded the maximum allowed size; expression size: {}",
                    text.len()
                ),
            });
        }
        if text.trim().is_empty() {
            return Err(ParseError {
                kind,
                message: "The expression can not be empty;".to_owned(),
            });
        }
        Ok(Parser {
            kind,
            text,
            tokens: tokenize(kind, text)?,
            at: 0,
            depth: 0,
        })
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            kind: self.kind,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|t| &t.token)
    }

    fn peek_at(&self, offset: usize) -> Option<&Token> {
        self.tokens.get(self.at + offset).map(|t| &t.token)
    }

    /// A syntax error at the current token (or the end).
    fn unexpected(&self) -> ParseError {
        let before = self.tokens.get(..self.at).unwrap_or_default();
        match self.tokens.get(self.at) {
            Some(t) => syntax(self.kind, self.text, before, t.start, t.end),
            None => syntax(
                self.kind,
                self.text,
                before,
                self.text.len(),
                self.text.len(),
            ),
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Ident(w)) if w.eq_ignore_ascii_case(word))
    }

    fn eat_keyword(&mut self, word: &str) -> bool {
        let found = self.keyword(word);
        if found {
            self.at += 1;
        }
        found
    }

    fn eat(&mut self, punct: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Punct(p)) if *p == punct);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, punct: &str) -> Parsed<()> {
        if self.eat(punct) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn finish(&self) -> Parsed<()> {
        if self.at == self.tokens.len() {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn nest(&mut self) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error(format!(
                "The expression is nested too deeply; nesting depth: {}",
                self.depth
            )));
        }
        Ok(())
    }

    /// A function name at the current token, if one is called here (`name(`).
    fn function(&self) -> Option<String> {
        match (self.peek(), self.peek_at(1)) {
            (Some(Token::Ident(name)), Some(Token::Punct("("))) => Some(name.clone()),
            _ => None,
        }
    }

    fn name(&mut self) -> Parsed<Name> {
        match self.peek().cloned() {
            Some(Token::Ident(word)) => {
                if is_reserved(&word) {
                    return Err(self.error(format!(
                        "Attribute name is a reserved keyword; reserved keyword: {word}"
                    )));
                }
                self.at += 1;
                Ok(Name::Plain(word))
            }
            Some(Token::NamePlaceholder(word)) => {
                self.at += 1;
                Ok(Name::Placeholder(word))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn path(&mut self) -> Parsed<Path> {
        let mut steps = vec![Step::Attribute(self.name()?)];
        loop {
            if self.eat(".") {
                steps.push(Step::Attribute(self.name()?));
            } else if self.eat("[") {
                let index = match self.peek() {
                    Some(Token::Digits(digits)) => digits.parse::<u32>().ok(),
                    _ => return Err(self.unexpected()),
                };
                let Some(index) = index else {
                    return Err(self.error("List index is too large"));
                };
                self.at += 1;
                self.expect("]")?;
                steps.push(Step::Index(index));
            } else {
                return Ok(Path(steps));
            }
        }
    }

    fn operand(&mut self) -> Parsed<Operand> {
        if let Some(function) = self.function() {
            if function != "size" {
                return Err(self.misused_function(&function));
            }
            self.at += 2;
            let path = self.path()?;
            self.expect(")")?;
            return Ok(Operand::Size(path));
        }
        match self.peek().cloned() {
            Some(Token::ValuePlaceholder(name)) => {
                self.at += 1;
                Ok(Operand::Value(name))
            }
            _ => Ok(Operand::Path(self.path()?)),
        }
    }

    fn misused_function(&self, function: &str) -> ParseError {
        if KNOWN_FUNCTIONS.contains(&function) {
            self.error(format!(
                "The function is not allowed to be used this way in an expression; function: \
                 {function}"
            ))
        } else {
            self.error(format!("Invalid function name; function: {function}"))
        }
    }

    fn condition(&mut self) -> Parsed<Condition> {
        self.nest()?;
        let mut left = self.and()?;
        while self.eat_keyword("OR") {
            let right = self.and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Parsed<Condition> {
        let mut left = self.not()?;
        while self.eat_keyword("AND") {
            let right = self.not()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Parsed<Condition> {
        if self.eat_keyword("NOT") {
            self.nest()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Condition::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Parsed<Condition> {
        if self.eat("(") {
            let inner = self.condition()?;
            self.expect(")")?;
            return Ok(inner);
        }
        if let Some(function) = self.function()
            && function != "size"
        {
            return self.condition_function(&function);
        }
        let left = self.operand()?;
        if self.eat_keyword("BETWEEN") {
            let low = self.operand()?;
            if !self.eat_keyword("AND") {
                return Err(self.unexpected());
            }
            let high = self.operand()?;
            return Ok(Condition::Between(left, low, high));
        }
        if self.eat_keyword("IN") {
            self.expect("(")?;
            let mut list = vec![self.operand()?];
            while self.eat(",") {
                list.push(self.operand()?);
            }
            self.expect(")")?;
            if list.len() > MAX_IN_OPERANDS {
                return Err(self.error(format!(
                    "The IN operator is provided with too many operands; number of operands: {}",
                    list.len()
                )));
            }
            return Ok(Condition::In(left, list));
        }
        let comparator = match self.peek() {
            Some(Token::Punct("=")) => Comparator::Eq,
            Some(Token::Punct("<>")) => Comparator::Ne,
            Some(Token::Punct("<")) => Comparator::Lt,
            Some(Token::Punct("<=")) => Comparator::Le,
            Some(Token::Punct(">")) => Comparator::Gt,
            Some(Token::Punct(">=")) => Comparator::Ge,
            _ => return Err(self.unexpected()),
        };
        self.at += 1;
        let right = self.operand()?;
        Ok(Condition::Compare(left, comparator, right))
    }

    fn condition_function(&mut self, function: &str) -> Parsed<Condition> {
        self.at += 2;
        self.nest()?;
        let condition = match function {
            "attribute_exists" => Condition::AttributeExists(self.path()?),
            "attribute_not_exists" => Condition::AttributeNotExists(self.path()?),
            "attribute_type" => {
                let path = self.path()?;
                self.expect(",")?;
                Condition::AttributeType(path, self.operand()?)
            }
            "begins_with" | "contains" => {
                let left = self.operand()?;
                self.expect(",")?;
                let right = self.operand()?;
                if function == "contains" {
                    Condition::Contains(left, right)
                } else {
                    Condition::BeginsWith(left, right)
                }
            }
            other => return Err(self.misused_function(other)),
        };
        self.expect(")")?;
        self.depth -= 1;
        Ok(condition)
    }

    fn set_value(&mut self) -> Parsed<SetValue> {
        let left = self.set_operand()?;
        if self.eat("+") {
            return Ok(SetValue::Plus(left, self.set_operand()?));
        }
        if self.eat("-") {
            return Ok(SetValue::Minus(left, self.set_operand()?));
        }
        Ok(SetValue::Operand(left))
    }

    fn set_operand(&mut self) -> Parsed<SetOperand> {
        if let Some(function) = self.function() {
            self.at += 2;
            self.nest()?;
            let operand = match function.as_str() {
                "if_not_exists" => {
                    let path = self.path()?;
                    self.expect(",")?;
                    SetOperand::IfNotExists(path, Box::new(self.set_value()?))
                }
                "list_append" => {
                    let first = self.set_value()?;
                    self.expect(",")?;
                    SetOperand::ListAppend(Box::new(first), Box::new(self.set_value()?))
                }
                other => return Err(self.misused_function(other)),
            };
            self.expect(")")?;
            self.depth -= 1;
            return Ok(operand);
        }
        match self.peek().cloned() {
            Some(Token::ValuePlaceholder(name)) => {
                self.at += 1;
                Ok(SetOperand::Value(name))
            }
            _ => Ok(SetOperand::Path(self.path()?)),
        }
    }

    fn value_placeholder(&mut self) -> Parsed<String> {
        match self.peek().cloned() {
            Some(Token::ValuePlaceholder(name)) => {
                self.at += 1;
                Ok(name)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn update(&mut self) -> Parsed<Update> {
        let mut update = Update::default();
        let mut seen: Vec<&'static str> = Vec::new();
        while self.at < self.tokens.len() {
            let clause = ["SET", "REMOVE", "ADD", "DELETE"]
                .into_iter()
                .find(|clause| self.keyword(clause))
                .ok_or_else(|| self.unexpected())?;
            if seen.contains(&clause) {
                return Err(self.error(format!(
                    "The \"{clause}\" section can only be used once in an update expression;"
                )));
            }
            seen.push(clause);
            self.at += 1;
            loop {
                match clause {
                    "SET" => {
                        let path = self.path()?;
                        self.expect("=")?;
                        update.set.push((path, self.set_value()?));
                    }
                    "REMOVE" => update.remove.push(self.path()?),
                    "ADD" => {
                        let path = self.path()?;
                        update.add.push((path, self.value_placeholder()?));
                    }
                    _ => {
                        let path = self.path()?;
                        update.delete.push((path, self.value_placeholder()?));
                    }
                }
                if !self.eat(",") {
                    break;
                }
            }
        }
        Ok(update)
    }
}

const KNOWN_FUNCTIONS: &[&str] = &[
    "attribute_exists",
    "attribute_not_exists",
    "attribute_type",
    "begins_with",
    "contains",
    "size",
    "if_not_exists",
    "list_append",
];

/// Parse a `ConditionExpression`, `FilterExpression` or `KeyConditionExpression`.
pub fn condition(kind: Kind, text: &str) -> Result<Condition, ParseError> {
    let mut parser = Parser::new(kind, text)?;
    let condition = parser.condition()?;
    parser.finish()?;
    Ok(condition)
}

/// Parse an `UpdateExpression`.
pub fn update(text: &str) -> Result<Update, ParseError> {
    let mut parser = Parser::new(Kind::Update, text)?;
    parser.update()
}

/// Parse a `ProjectionExpression`.
pub fn projection(text: &str) -> Result<Vec<Path>, ParseError> {
    let mut parser = Parser::new(Kind::Projection, text)?;
    let mut paths = vec![parser.path()?];
    while parser.eat(",") {
        paths.push(parser.path()?);
    }
    parser.finish()?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(name: &str) -> Step {
        Step::Attribute(Name::Plain(name.to_owned()))
    }

    fn message(result: Result<impl std::fmt::Debug, ParseError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn conditions_parse_with_dynamodbs_precedence() {
        // NOT binds tighter than AND, AND tighter than OR.
        let parsed = condition(
            Kind::Condition,
            "a = :x OR NOT b < :y AND attribute_exists(#c.d[3])",
        )
        .unwrap();
        let Condition::Or(left, right) = parsed else {
            panic!("{parsed:?}")
        };
        assert!(matches!(*left, Condition::Compare(_, Comparator::Eq, _)));
        let Condition::And(not, exists) = *right else {
            panic!()
        };
        assert!(matches!(*not, Condition::Not(_)));
        assert_eq!(
            *exists,
            Condition::AttributeExists(Path(vec![
                Step::Attribute(Name::Placeholder("c".to_owned())),
                plain("d"),
                Step::Index(3),
            ]))
        );
        for text in [
            "size(a) BETWEEN :lo AND :hi",
            "a IN (:x, :y, b)",
            "(a <> :x) and (b >= :y or c <= :z)",
            "begins_with(a, :p) AND contains(b, :q) AND attribute_type(c, :t)",
            "attribute_not_exists(pk)",
        ] {
            condition(Kind::Condition, text).unwrap();
        }
    }

    #[test]
    fn updates_parse_every_clause_once() {
        let parsed = update(
            "SET a = :x + b, c = if_not_exists(c, :zero) - :one, l = list_append(l, :more) \
             REMOVE d[1], e.f ADD n :inc DELETE s :gone",
        )
        .unwrap();
        assert_eq!(parsed.set.len(), 3);
        assert_eq!(parsed.remove.len(), 2);
        assert_eq!(parsed.add.len(), 1);
        assert_eq!(parsed.delete.len(), 1);
        assert_eq!(
            message(update("SET a = :x SET b = :y")),
            "Invalid UpdateExpression: The \"SET\" section can only be used once in an update \
             expression;"
        );
    }

    #[test]
    fn projections_are_paths() {
        let paths = projection("a, b.c, #d[0].e").unwrap();
        assert_eq!(paths.len(), 3);
        assert_eq!(paths[1], Path(vec![plain("b"), plain("c")]));
    }

    #[test]
    fn bad_expressions_get_dynamodbs_errors() {
        assert_eq!(
            message(condition(Kind::Condition, "status = :s")),
            "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved \
             keyword: status"
        );
        assert_eq!(
            message(condition(Kind::Condition, "a = ")),
            "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \"=\""
        );
        assert_eq!(
            message(condition(Kind::Filter, "a == :b")),
            "Invalid FilterExpression: Syntax error; token: \"=\", near: \"==\""
        );
        assert_eq!(
            message(condition(Kind::Condition, "a % :b")),
            "Invalid ConditionExpression: Syntax error; token: \"%\", near: \"a %\""
        );
        assert_eq!(
            message(condition(Kind::Condition, "frobnicate(a)")),
            "Invalid ConditionExpression: Invalid function name; function: frobnicate"
        );
        assert_eq!(
            message(condition(Kind::Condition, "size(a)")),
            "Invalid ConditionExpression: Syntax error; token: \"<EOF>\", near: \")\""
        );
        assert_eq!(
            message(update("SET a = size(b)")),
            "Invalid UpdateExpression: The function is not allowed to be used this way in an \
             expression; function: size"
        );
        assert_eq!(
            message(condition(Kind::Condition, "")),
            "Invalid ConditionExpression: The expression can not be empty;"
        );
        let many: Vec<String> = (0..101).map(|i| format!(":v{i}")).collect();
        assert!(
            message(condition(
                Kind::Condition,
                &format!("a IN ({})", many.join(","))
            ))
            .contains("too many operands; number of operands: 101")
        );
        let deep = format!("{}a = :b{}", "(".repeat(200), ")".repeat(200));
        assert!(message(condition(Kind::Condition, &deep)).contains("nested too deeply"));
        assert!(
            message(condition(Kind::Condition, &"a = :b AND ".repeat(500)))
                .contains("Expression size has exceeded the maximum allowed size")
        );
    }
}
