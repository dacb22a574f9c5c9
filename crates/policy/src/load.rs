//! Parsing a snapshot document. The fast path deserializes straight into the
//! typed [`Document`]; only when that fails is the text re-read object by
//! object, so that every broken object is reported with its id (and every
//! reference problem of the objects that could be read), not just the first.

use crate::document::*;
use crate::error::{InvalidSnapshot, LoadError, Problem, SyntaxError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Top-level collections and the kind of object each holds.
const COLLECTIONS: &[(&str, &str)] = &[
    ("areas", "area"),
    ("organizations", "organization"),
    ("teams", "team"),
    ("roles", "role"),
    ("groups", "group"),
    ("users", "user"),
    ("apps", "app"),
    ("api_keys", "api_key"),
    ("products", "product"),
    ("routes", "route"),
];

/// Parses the JSON text of a snapshot into a [`Document`] (no cross-reference checks yet).
pub fn parse_document(text: &str) -> Result<Document, LoadError> {
    serde_json::from_str::<Document>(text).map_err(|fast_error| explain(text, fast_error))
}

/// What the second, object-by-object reading found.
#[derive(Default)]
struct Reading<'t> {
    problems: Vec<Problem>,
    /// What could be read, compiled afterwards so that reference problems are
    /// reported in the same run as shape problems.
    partial: Document,
    unreadable_ids: Vec<String>,
    unreadable_kinds: Vec<&'t str>,
}

fn syntax(message: impl Into<String>) -> LoadError {
    LoadError::Syntax(SyntaxError {
        message: message.into(),
    })
}

fn top(field: &str, what: String, value: String) -> Problem {
    Problem {
        kind: "snapshot",
        id: "(top level)".into(),
        field: field.into(),
        value,
        what,
    }
}

/// Every problem of a document the fast reader refused.
fn explain(text: &str, fast_error: serde_json::Error) -> LoadError {
    // Re-read with the same (string) deserializer as the fast path, so the
    // wasm modules carry one copy of each type's deserialization code.
    let root: BTreeMap<&str, &RawValue> = match serde_json::from_str(text) {
        Ok(root) => root,
        Err(e) if e.is_syntax() || e.is_eof() => return syntax(e.to_string()),
        Err(_) => return syntax("the top level must be a JSON object"),
    };
    let mut reading = Reading::default();
    read_revision(&root, &mut reading);
    for (&field, raw) in &root {
        match field {
            "revision" => {}
            "$schema" => read_schema_reference(raw, &mut reading),
            _ => read_collection(field, raw, &mut reading),
        }
    }
    if reading.problems.is_empty() {
        // Both readers must agree; if they do not, report the typed reader's words.
        return syntax(fast_error.to_string());
    }
    compile_what_was_read(&mut reading);
    LoadError::Invalid(InvalidSnapshot {
        problems: reading.problems,
    })
}

fn read_revision(root: &BTreeMap<&str, &RawValue>, reading: &mut Reading<'_>) {
    match root
        .get("revision")
        .map(|raw| (raw, serde_json::from_str::<String>(raw.get())))
    {
        Some((_, Ok(revision))) => reading.partial.revision = revision,
        Some((raw, Err(_))) => {
            let value = short(raw.get());
            let what = format!("must be a string, got `{value}`");
            reading.problems.push(top("revision", what, value));
        }
        None => reading
            .problems
            .push(top("revision", "is required".into(), String::new())),
    }
}

/// `$schema` (x3): ignored, but a string (or `null`, as for every optional
/// field) like the typed reader's `Option<String>`.
fn read_schema_reference(raw: &RawValue, reading: &mut Reading<'_>) {
    if serde_json::from_str::<Option<String>>(raw.get()).is_err() {
        let value = short(raw.get());
        let what = format!("must be a string, got `{value}`");
        reading.problems.push(top("$schema", what, value));
    }
}

/// One top-level field: a known collection, read object by object.
fn read_collection<'t>(field: &'t str, raw: &RawValue, reading: &mut Reading<'t>) {
    let Some(&(_, kind)) = COLLECTIONS.iter().find(|(name, _)| *name == field) else {
        let what = format!("unknown top-level field `{field}`");
        reading.problems.push(top(field, what, field.into()));
        return;
    };
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        reading.unreadable_kinds.push(kind);
        let value = short(raw.get());
        let what = format!("must be an array, got `{value}`");
        reading.problems.push(top(field, what, value));
        return;
    };
    for (index, item) in items.iter().enumerate() {
        if let Some((path, error)) = read_item(kind, item.get(), &mut reading.partial) {
            let id = serde_json::from_str::<IdOnly>(item.get())
                .ok()
                .and_then(|o| o.id)
                .unwrap_or_else(|| format!("{field}[{index}]"));
            let (field_name, value) = field_and_value(&path, &error);
            reading.unreadable_ids.push(id.clone());
            reading.problems.push(Problem {
                kind,
                id,
                field: field_name,
                value,
                what: error,
            });
        }
    }
}

/// Reads one object of `kind` into the partial document.
fn read_item(kind: &str, text: &str, partial: &mut Document) -> Option<(String, String)> {
    match kind {
        "area" => read(text, &mut partial.areas),
        "organization" => read(text, &mut partial.organizations),
        "team" => read(text, &mut partial.teams),
        "role" => read(text, &mut partial.roles),
        "group" => read(text, &mut partial.groups),
        "user" => read(text, &mut partial.users),
        "app" => read(text, &mut partial.apps),
        "api_key" => read(text, &mut partial.api_keys),
        "product" => read(text, &mut partial.products),
        _ => read(text, &mut partial.routes),
    }
}

/// The reference problems of what could be read; a reference to an object
/// that could not be read is not a new problem.
fn compile_what_was_read(reading: &mut Reading<'_>) {
    if reading.partial.revision.is_empty() {
        // Already reported: a valid stand-in keeps it from being reported twice.
        reading.partial.revision = "unreadable".into();
    }
    let Err(rest) = crate::compile::compile(&reading.partial) else {
        return;
    };
    let refers_to_unreadable = |p: &Problem| {
        p.what.starts_with("unknown ")
            && (reading.unreadable_ids.contains(&p.value)
                || reading
                    .unreadable_kinds
                    .iter()
                    .any(|k| p.what.starts_with(&format!("unknown {k} "))))
    };
    let new: Vec<Problem> = rest
        .problems
        .into_iter()
        .filter(|p| !refers_to_unreadable(p))
        .collect();
    reading.problems.extend(new);
}

/// Just the `id` of an object, whatever else it holds.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<String>,
}

/// Reads one object into `into`, or returns the path of the offending field
/// (when known) and serde's complaint.
fn read<T: DeserializeOwned>(text: &str, into: &mut Vec<T>) -> Option<(String, String)> {
    match read_one::<T>(text) {
        Ok(item) => {
            into.push(item);
            None
        }
        Err(error) => Some(error),
    }
}

/// Natively the path names nested fields such as `memberships[0].status`.
#[cfg(not(target_arch = "wasm32"))]
fn read_one<T: DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(&mut serde_json::Deserializer::from_str(text)).map_err(
        |e| {
            (
                e.path().to_string(),
                trim_position(e.into_inner().to_string()),
            )
        },
    )
}

/// In the wasm modules, without the path: tracking it instantiates every
/// type's deserializer a second time (84 KB of each module). Unknown and
/// missing fields are still named by serde's message; `policyctl validate`
/// names nested ones.
#[cfg(target_arch = "wasm32")]
fn read_one<T: DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    serde_json::from_str(text).map_err(|e| (String::new(), trim_position(e.to_string())))
}

/// Positions are relative to the object; the id already locates it.
fn trim_position(message: String) -> String {
    match message.find(" at line ") {
        Some(cut) => message.get(..cut).unwrap_or(&message).to_string(),
        None => message,
    }
}

/// The field (the serde path when known, else the name serde quotes for an
/// unknown or missing field) and the offending value (serde quotes it in
/// backticks, or in double quotes for a wrongly typed string).
fn field_and_value(path: &str, error: &str) -> (String, String) {
    let backticked = error.split('`').nth(1).map(str::to_string);
    let double_quoted = error.split('"').nth(1).map(str::to_string);
    let value = backticked.or(double_quoted).unwrap_or_default();
    let named = error.starts_with("unknown field") || error.starts_with("missing field");
    let field = match path {
        "" | "." if named => value.clone(),
        "" | "." => "(value)".to_string(),
        nested if error.starts_with("missing field") => format!("{nested}.{value}"),
        nested => nested.to_string(),
    };
    (field, value)
}

/// A value quoted in a message, cut to 60 characters.
fn short(raw: &str) -> String {
    let mut text = raw.to_string();
    if text.len() > 60 {
        let mut cut = 57;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn a_failure_names_the_collection_object_and_field() {
        let text = r#"{"revision": "r1",
 "organizations": [{"id": "acme", "handle": "acme", "name": "A", "type": "paid",
                    "status": "active", "environments": [], "colour": "red"}]}"#;
        let Err(LoadError::Invalid(invalid)) = parse_document(text) else {
            panic!("should not parse")
        };
        let problem = &invalid.problems[0];
        assert_eq!(
            (problem.kind, problem.id.as_str(), problem.field.as_str()),
            ("organization", "acme", "colour")
        );
        assert!(
            problem
                .to_string()
                .starts_with("organization `acme`: field `colour`: unknown field `colour`"),
            "{problem}"
        );
    }

    #[test]
    fn a_schema_reference_is_accepted_and_must_be_a_string() {
        let text = r#"{"$schema": "..\/docs/policy.schema.json", "revision": "r1"}"#;
        let document = parse_document(text).unwrap();
        let with_null = r#"{"$schema": null, "revision": "r1", "teems": []}"#;
        let Err(LoadError::Invalid(invalid)) = parse_document(with_null) else {
            panic!("should not parse")
        };
        assert_eq!(invalid.problems.len(), 1, "{invalid}");
        assert_eq!(invalid.problems[0].field, "teems");
        assert_eq!(
            document.schema.as_deref(),
            Some("../docs/policy.schema.json")
        );
        let text = r#"{"$schema": 7, "revision": "r1", "teems": []}"#;
        let Err(LoadError::Invalid(invalid)) = parse_document(text) else {
            panic!("should not parse")
        };
        let fields: Vec<&str> = invalid.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["$schema", "teems"]);
        assert_eq!(
            invalid.problems[0].to_string(),
            "snapshot `(top level)`: field `$schema`: must be a string, got `7`"
        );
    }
}
