//! Reading the export's JSON, and ids for the snapshot.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Ids in our alphabet, unique in one collection, remembered by source id.
#[derive(Default)]
pub(super) struct Ids {
    taken: BTreeSet<String>,
    pub(super) by_source: BTreeMap<String, String>,
}

impl Ids {
    pub(super) fn assign(&mut self, source: &str) -> String {
        if let Some(id) = self.by_source.get(source) {
            return id.clone();
        }
        let base = sanitize(source);
        let mut id = base.clone();
        let mut n = 2;
        while self.taken.contains(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.taken.insert(id.clone());
        self.by_source.insert(source.to_string(), id.clone());
        id
    }

    pub(super) fn get(&self, source: &str) -> Option<&str> {
        self.by_source.get(source).map(String::as_str)
    }
}

pub(super) fn sanitize(text: &str) -> String {
    let id: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "x".into()
    } else {
        id
    }
}

/// A string or a number as text.
pub(super) fn text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn array<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(super) fn strings(value: &Value, key: &str) -> Vec<String> {
    array(value, key)
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}
