//! Names of apps and functions: short, lowercase, safe in URLs, file names and log lines.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A validated app or function name: 1–63 characters of `a-z`, `0-9` and `-`, starting with a
/// letter. Cheap to clone (shared string) because it is copied into every invocation record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid name {0:?}: use 1-63 characters of lowercase letters, digits and '-', starting with a letter"
)]
pub struct NameError(pub String);

impl Name {
    pub fn new(value: &str) -> Result<Name, NameError> {
        let valid = !value.is_empty()
            && value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Name(Arc::from(value)))
        } else {
            Err(NameError(value.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Name::new(&value)
    }
}

impl From<Name> for String {
    fn from(value: Name) -> Self {
        value.0.to_string()
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        for ok in ["a", "hello", "my-func-2", &"a".repeat(63)] {
            assert!(Name::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Hello",
            "1abc",
            "-a",
            "a_b",
            "a b",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(Name::new(bad).is_err(), "{bad}");
        }
    }
}
