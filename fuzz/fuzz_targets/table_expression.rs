//! DynamoDB expressions come from anyone with a table grant: the parser and the evaluator must
//! never panic, loop or overflow the stack, whatever the text.
//!
//! Input: one byte choosing the expression kind (condition, update, projection, or a number),
//! then the text. Parsed expressions are checked against fixed placeholders and evaluated
//! against a fixed item.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nimbus_tables::expr::parse::{self, Kind};
use nimbus_tables::expr::{Placeholders, eval};
use nimbus_tables::value::{item_from_json, Item};
use nimbus_tables::Number;
use std::collections::HashMap;

fn item() -> Item {
    item_from_json(&serde_json::json!({
        "a": {"S": "text"}, "n": {"N": "-12.5"}, "b": {"B": "AAEC"}, "t": {"BOOL": true},
        "z": {"NULL": true}, "m": {"M": {"x": {"L": [{"N": "1"}, {"S": "y"}, {"M": {}}]}}},
        "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "l": {"L": [{"N": "9"}]}
    }))
    .unwrap_or_default()
}

fn placeholders() -> Placeholders {
    let values = item_from_json(&serde_json::json!({
        ":a": {"S": "te"}, ":n": {"N": "3"}, ":l": {"L": [{"N": "1"}]}, ":s": {"SS": ["a"]},
        ":t": {"S": "N"}, ":b": {"B": "AA=="}, ":big": {"N": "99999999999999999999999999999999999999"}
    }))
    .unwrap_or_default();
    let names = HashMap::from([
        ("#a".to_owned(), "a".to_owned()),
        ("#m".to_owned(), "m".to_owned()),
        ("#x".to_owned(), "x".to_owned()),
    ]);
    Placeholders::new(names, values.into_iter().collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let item = item();
    let mut placeholders = placeholders();
    match choice % 4 {
        0 => {
            if let Ok(condition) = parse::condition(Kind::Condition, text)
                && placeholders.check_condition(Kind::Condition, &condition).is_ok()
            {
                let _ = eval::condition(Kind::Condition, &condition, &item, &placeholders);
            }
        }
        1 => {
            if let Ok(update) = parse::update(text)
                && placeholders.check_update(&update).is_ok()
            {
                let _ = eval::update(&update, &item, &placeholders);
            }
        }
        2 => {
            if let Ok(paths) = parse::projection(text)
                && placeholders.check_projection(&paths).is_ok()
                && eval::check_paths(Kind::Projection, paths.iter(), &placeholders).is_ok()
            {
                let _ = eval::project(&item, &paths, &placeholders);
            }
        }
        _ => {
            if let Ok(number) = Number::parse(text) {
                let again = Number::parse(&number.to_string());
                assert_eq!(again.as_ref(), Ok(&number), "a number's text parses back to it");
                let _ = number.add(&number);
                let _ = number.key_bytes();
            }
        }
    }
});
