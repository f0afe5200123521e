//! What an expression says, parsed once. Names and values are still placeholders here
//! (`#n`, `:v`) where the request used them; [`super::resolve`] substitutes them.

/// A name in a document path: as written, or a `#placeholder`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Name {
    Plain(String),
    Placeholder(String),
}

/// One step of a document path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Step {
    Attribute(Name),
    Index(u32),
}

/// A document path: a top-level attribute, then map keys and list indexes (`a.b[2].c`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Step>);

/// What a comparison or function reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Path(Path),
    /// A `:placeholder` from `ExpressionAttributeValues`.
    Value(String),
    Size(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparator {
    pub fn symbol(self) -> &'static str {
        match self {
            Comparator::Eq => "=",
            Comparator::Ne => "<>",
            Comparator::Lt => "<",
            Comparator::Le => "<=",
            Comparator::Gt => ">",
            Comparator::Ge => ">=",
        }
    }
}

/// A condition (`ConditionExpression`, `FilterExpression`, `KeyConditionExpression`).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare(Operand, Comparator, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    AttributeExists(Path),
    AttributeNotExists(Path),
    AttributeType(Path, Operand),
    BeginsWith(Operand, Operand),
    Contains(Operand, Operand),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Not(Box<Condition>),
}

/// The right-hand side of a `SET` action.
#[derive(Debug, Clone, PartialEq)]
pub enum SetValue {
    Operand(SetOperand),
    Plus(SetOperand, SetOperand),
    Minus(SetOperand, SetOperand),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetOperand {
    Path(Path),
    Value(String),
    IfNotExists(Path, Box<SetValue>),
    ListAppend(Box<SetValue>, Box<SetValue>),
}

/// An `UpdateExpression`: its four clauses, each at most once, in any order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    pub set: Vec<(Path, SetValue)>,
    pub remove: Vec<Path>,
    /// `ADD path :value`.
    pub add: Vec<(Path, String)>,
    /// `DELETE path :value`.
    pub delete: Vec<(Path, String)>,
}

impl Update {
    /// Every path the update writes, with the clause that writes it.
    pub fn targets(&self) -> impl Iterator<Item = &Path> {
        self.set
            .iter()
            .map(|(p, _)| p)
            .chain(self.remove.iter())
            .chain(self.add.iter().map(|(p, _)| p))
            .chain(self.delete.iter().map(|(p, _)| p))
    }
}
