//! Parsing a snapshot document. The fast path deserializes straight into the
//! typed [`Document`]; only when that fails is the text re-read object by object,
//! so that every broken object is reported with its id, not just the first.

use super::document::*;
use super::error::{LoadError, Problem, SyntaxError};
#[cfg(not(target_arch = "wasm32"))]
use serde::de::DeserializeOwned;
use serde::Deserialize;
#[cfg(not(target_arch = "wasm32"))]
use serde_json::value::RawValue;
#[cfg(not(target_arch = "wasm32"))]
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WholeDocument {
    revision: String,
    #[serde(default)]
    areas: Vec<Area>,
    #[serde(default)]
    organizations: Vec<Organization>,
    #[serde(default)]
    teams: Vec<Team>,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    users: Vec<User>,
    #[serde(default)]
    apps: Vec<App>,
    #[serde(default)]
    api_keys: Vec<ApiKey>,
    #[serde(default)]
    products: Vec<Product>,
    #[serde(default)]
    routes: Vec<Route>,
}

impl From<WholeDocument> for Document {
    fn from(w: WholeDocument) -> Self {
        Document {
            revision: w.revision,
            areas: w.areas,
            organizations: w.organizations,
            teams: w.teams,
            roles: w.roles,
            groups: w.groups,
            users: w.users,
            apps: w.apps,
            api_keys: w.api_keys,
            products: w.products,
            routes: w.routes,
        }
    }
}

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
    match serde_json::from_str::<WholeDocument>(text) {
        Ok(whole) => Ok(whole.into()),
        #[cfg(not(target_arch = "wasm32"))]
        Err(fast_error) => Err(explain_parse_failure(text, fast_error)),
        // In the filter module the per-object re-read would add a second set of
        // parsing code (17 KB of a 400 KB budget); locate the first problem
        // instead. `policyctl validate` reports every problem.
        #[cfg(target_arch = "wasm32")]
        Err(fast_error) => Err(locate_parse_failure(text, &fast_error)),
    }
}

/// The first shape problem, attributed to the object around it: the collection
/// is the last top-level name before the error, the id the last `"id"` value.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn locate_parse_failure(text: &str, error: &serde_json::Error) -> LoadError {
    if error.is_syntax() || error.is_eof() || error.line() == 0 {
        return LoadError::Syntax(SyntaxError {
            message: error.to_string(),
        });
    }
    let offset = text
        .split_inclusive('\n')
        .take(error.line().saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + error.column();
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let kind = last_top_level_key(before)
        .and_then(|key| COLLECTIONS.iter().find(|(name, _)| *name == key))
        .map_or("snapshot", |(_, kind)| kind);
    let id = before
        .as_bytes()
        .windows(4)
        .rposition(|w| w == b"\"id\"")
        .and_then(|at| before.get(at + 4..))
        .and_then(|rest| rest.trim_start().strip_prefix(':'))
        .and_then(|rest| rest.trim_start().strip_prefix('"'))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("(unknown)")
        .to_string();
    let what = trim_position(error.to_string());
    let (field, value) = field_and_value("", &what);
    LoadError::Invalid(super::error::InvalidSnapshot {
        problems: vec![Problem {
            kind,
            id,
            field,
            value,
            what,
        }],
    })
}

/// The last key of the top-level object in `text` (a JSON prefix).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn last_top_level_key(text: &str) -> Option<&str> {
    let (mut depth, mut in_string, mut escaped, mut start, mut last) =
        (0usize, false, false, 0usize, None);
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    in_string = false;
                    // A string at depth 1 followed by `:` is a top-level key.
                    let rest = text.get(i + 1..).unwrap_or("").trim_start();
                    if depth == 1 && rest.starts_with(':') {
                        last = text.get(start..i);
                    }
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                start = i + 1;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    last
}

#[cfg(not(target_arch = "wasm32"))]
fn explain_parse_failure(text: &str, fast_error: serde_json::Error) -> LoadError {
    // Re-read with the same (string) deserializer as the fast path, so the wasm
    // module carries one copy of each type's deserialization code.
    let root: BTreeMap<&str, &RawValue> = match serde_json::from_str(text) {
        Ok(root) => root,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return LoadError::Syntax(SyntaxError {
                message: e.to_string(),
            })
        }
        Err(_) => {
            return LoadError::Syntax(SyntaxError {
                message: "the top level must be a JSON object".into(),
            })
        }
    };
    let mut problems = Vec::new();
    // What could be read, compiled below so that reference problems are
    // reported in the same run as shape problems.
    let mut partial = Document::default();
    let mut unreadable_ids: Vec<String> = Vec::new();
    let mut unreadable_kinds: Vec<&str> = Vec::new();
    let top = |field: &str, what: String, value: String| Problem {
        kind: "snapshot",
        id: "(top level)".into(),
        field: field.into(),
        value,
        what,
    };
    match root.get("revision") {
        Some(raw) if serde_json::from_str::<String>(raw.get()).is_ok() => {
            partial.revision = serde_json::from_str(raw.get()).unwrap_or_default();
        }
        Some(raw) => {
            let value = short(raw.get());
            problems.push(top(
                "revision",
                format!("must be a string, got `{value}`"),
                value,
            ));
        }
        None => problems.push(top("revision", "is required".into(), String::new())),
    }
    for (&field, raw) in &root {
        if field == "revision" {
            continue;
        }
        let Some((_, kind)) = COLLECTIONS.iter().find(|(name, _)| *name == field) else {
            let what = format!("unknown top-level field `{field}`");
            problems.push(top(field, what, field.into()));
            continue;
        };
        let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
            unreadable_kinds.push(kind);
            let value = short(raw.get());
            problems.push(top(
                field,
                format!("must be an array, got `{value}`"),
                value,
            ));
            continue;
        };
        for (index, item) in items.iter().enumerate() {
            let text = item.get();
            let error = match *kind {
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
            };
            if let Some((path, error)) = error {
                let id = serde_json::from_str::<IdOnly>(text)
                    .ok()
                    .and_then(|o| o.id)
                    .unwrap_or_else(|| format!("{field}[{index}]"));
                let (field_name, value) = field_and_value(&path, &error);
                unreadable_ids.push(id.clone());
                problems.push(Problem {
                    kind,
                    id,
                    field: field_name,
                    value,
                    what: error,
                });
            }
        }
    }
    if problems.is_empty() {
        // Both readers must agree; if they do not, report the typed reader's words.
        return LoadError::Syntax(SyntaxError {
            message: fast_error.to_string(),
        });
    }
    if partial.revision.is_empty() {
        // Already reported: a valid stand-in keeps it from being reported twice.
        partial.revision = "unreadable".into();
    }
    if let Err(rest) = crate::compile::compile(&partial) {
        // A reference to an object that could not be read is not a new problem.
        let refers_to_unreadable = |p: &Problem| {
            p.what.starts_with("unknown ")
                && (unreadable_ids.contains(&p.value)
                    || unreadable_kinds
                        .iter()
                        .any(|k| p.what.starts_with(&format!("unknown {k} "))))
        };
        problems.extend(
            rest.problems
                .into_iter()
                .filter(|p| !refers_to_unreadable(p)),
        );
    }
    LoadError::Invalid(super::error::InvalidSnapshot { problems })
}

#[cfg(not(target_arch = "wasm32"))]
/// Just the `id` of an object, whatever else it holds.
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<String>,
}

#[cfg(not(target_arch = "wasm32"))]
/// Reads one object into `into`, or returns the path of the offending field
/// (when known) and serde's complaint.
fn read<T: DeserializeOwned>(text: &str, into: &mut Vec<T>) -> Option<(String, String)> {
    // The path names nested fields such as `memberships[0].status`.
    let result =
        serde_path_to_error::deserialize::<_, T>(&mut serde_json::Deserializer::from_str(text))
            .map_err(|e| {
                (
                    e.path().to_string(),
                    trim_position(e.into_inner().to_string()),
                )
            });
    match result {
        Ok(item) => {
            into.push(item);
            None
        }
        Err(error) => Some(error),
    }
}

/// Positions are relative to the object; the id already locates it.
fn trim_position(message: String) -> String {
    // A byte search: `str::find` with a string pattern brings the two-way
    // searcher into the filter module for this one message.
    let cut = message
        .as_bytes()
        .windows(" at line ".len())
        .position(|w| w == b" at line ");
    match cut {
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

#[cfg(not(target_arch = "wasm32"))]
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
    use super::*;

    #[test]
    fn a_located_failure_names_the_collection_object_and_field() {
        let text = r#"{"revision": "r1",
 "organizations": [{"id": "acme", "handle": "acme", "name": "A", "type": "paid",
                    "status": "active", "environments": [], "colour": "red"}]}"#;
        let Err(error) = serde_json::from_str::<WholeDocument>(text) else {
            panic!("should not parse")
        };
        let LoadError::Invalid(invalid) = locate_parse_failure(text, &error) else {
            panic!("not located")
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
    fn the_top_level_key_ignores_nested_keys_and_strings() {
        let prefix = r#"{"revision": "r\"1", "users": [{"id": "u", "memberships": [{"roles": ["x"], "scope": "#;
        assert_eq!(last_top_level_key(prefix), Some("users"));
        assert_eq!(
            last_top_level_key(r#"{"teams": [], "roles": [{"id": "a"#),
            Some("roles")
        );
    }
}
