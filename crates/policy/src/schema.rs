//! The snapshot document as a JSON Schema (draft 2020-12), derived from the
//! serde types of [`crate::document`] (feature `schema`, for `policyctl
//! schema`; the wasm modules are built without it).
//!
//! The derive says what serde accepts (field names, required fields, enums,
//! `additionalProperties: false` from `deny_unknown_fields`). The string
//! formats below add the load-time rules that hold for one value on its own
//! (the id alphabet, `sha256`, `revision`, …); each is a rule the loader
//! enforces, so the schema never refuses a snapshot the loader accepts.
//! Rules between objects (references resolve, ids are unique, environments
//! of keys are their organization's) stay the loader's: run `policyctl validate`.

use crate::document::{Document, Right};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

/// The id alphabet of spec §1.
const ID_PATTERN: &str = "^[A-Za-z0-9._:-]+$";

/// The JSON Schema of a snapshot document, as `policyctl schema` prints it.
pub fn document_schema() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let mut schema = generator.into_root_schema_for::<Document>().to_value();
    add_defaults(&mut schema);
    plain_enums(&mut schema);
    // Keys in one order whatever serde_json's features (`preserve_order` may
    // be turned on by another crate of a build): the committed file must not
    // depend on the build that printed it.
    schema.sort_all_objects();
    schema
}

/// Writes the default of every optional array, boolean and team-rights field.
/// The derive leaves them out (the document types are not `Serialize`), but
/// every such field is `#[serde(default)]`, whose value is the type's
/// `Default`: `[]`, `false`, `{}`. Optional fields that may be `null` have no
/// default written: absent and `null` mean the same.
fn add_defaults(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            let required: Vec<String> = object
                .get("required")
                .and_then(serde_json::Value::as_array)
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|name| name.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(serde_json::Value::Object(properties)) = object.get_mut("properties") {
                for (name, property) in properties.iter_mut() {
                    if required.contains(name) {
                        continue;
                    }
                    let Some(property) = property.as_object_mut() else {
                        continue;
                    };
                    let default = match property.get("type").and_then(serde_json::Value::as_str) {
                        Some("array") => serde_json::json!([]),
                        Some("boolean") => serde_json::json!(false),
                        Some("object") => serde_json::json!({}),
                        _ => continue,
                    };
                    property.entry("default").or_insert(default);
                }
            }
            object.values_mut().for_each(add_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(add_defaults),
        _ => {}
    }
}

/// Writes each enumeration (`Right`, `OrgStatus`, …) as `enum`, not as the
/// derive's `oneOf` of documented constants: validators then say "not one of
/// …", and editors offer the values. Each value's doc comment moves to
/// `enumDescriptions`, which VS Code shows beside it (other tools ignore it).
fn plain_enums(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            let constants: Option<Vec<(serde_json::Value, serde_json::Value)>> = object
                .get("oneOf")
                .and_then(serde_json::Value::as_array)
                .and_then(|branches| {
                    branches
                        .iter()
                        .map(|branch| {
                            let constant = branch.get("const").filter(|c| c.is_string())?;
                            let description = branch.get("description").cloned();
                            Some((constant.clone(), description.unwrap_or_default()))
                        })
                        .collect()
                });
            match constants {
                Some(constants) if !constants.is_empty() => {
                    let (values, descriptions): (Vec<_>, Vec<_>) = constants.into_iter().unzip();
                    object.remove("oneOf");
                    object.insert("type".into(), "string".into());
                    object.insert("enum".into(), values.into());
                    object.insert("enumDescriptions".into(), descriptions.into());
                }
                _ => object.values_mut().for_each(plain_enums),
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(plain_enums),
        _ => {}
    }
}

/// Declares a string format: a type that only lends its schema to fields
/// (`#[schemars(with = "…")]`), listed once under `$defs`.
macro_rules! string_format {
    ($(#[$doc:meta])* $name:ident, $schema:tt) => {
        $(#[$doc])*
        pub(crate) struct $name;
        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

string_format!(
    /// An id, or a reference to one (a reference to anything else never resolves).
    Id,
    {
        "description": "An id: non-empty, of `A-Za-z0-9._:-` (spec §1). References use the same alphabet.",
        "type": "string",
        "pattern": ID_PATTERN
    }
);

string_format!(
    /// An id, or `*`.
    IdOrStar,
    {
        "description": "An id, or `*`.",
        "type": "string",
        "pattern": "^(\\*|[A-Za-z0-9._:-]+)$"
    }
);

string_format!(
    /// The snapshot's revision.
    Revision,
    {
        "description": "1 to 128 characters of `A-Za-z0-9._:-`: it becomes a header value, an ETag and a metric name (§5).",
        "type": "string",
        "pattern": "^[A-Za-z0-9._:-]{1,128}$"
    }
);

string_format!(
    /// A key's digest.
    Sha256,
    {
        "description": "SHA-256 of the raw key, 64 lower-case hex digits (`policyctl hash-key`); never the raw key.",
        "type": "string",
        "pattern": "^[0-9a-f]{64}$"
    }
);

string_format!(
    /// An RFC 3339 date-time as the loader reads it (the calendar is checked when it loads).
    DateTime,
    {
        "description": "RFC 3339 date-time, e.g. `2027-01-22T00:00:00Z`.",
        "type": "string",
        "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
    }
);

string_format!(
    /// A trusted token issuer (x3).
    Issuer,
    {
        "description": "A token issuer (`iss`): 1 to 512 visible ASCII characters.",
        "type": "string",
        "pattern": "^[!-~]{1,512}$"
    }
);

string_format!(
    /// A role's permission.
    GrantedPermission,
    {
        "description": "A permission: exact, `prefix*` or `*` (`*` only at the end).",
        "type": "string",
        "minLength": 1,
        "pattern": "^[^*]*\\*?$"
    }
);

string_format!(
    /// A permission a route requires.
    RequiredPermission,
    {
        "description": "A permission the route requires: non-empty.",
        "type": "string",
        "minLength": 1
    }
);

string_format!(
    /// An HTTP method.
    Method,
    {
        "description": "An HTTP method (an RFC 9110 token); compared case-insensitively.",
        "type": "string",
        "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
    }
);

string_format!(
    /// A host a route answers.
    Host,
    {
        "description": "A host name (port ignored when matching): non-empty, no `/` or space.",
        "type": "string",
        "pattern": "^[^/ ]+$"
    }
);

string_format!(
    /// A route's path prefix (the rest of the canonical rules is checked when it loads).
    PathPrefix,
    {
        "description": "A canonical path: `/` first, no `?`, `#`, `;`, backslash or control character (dot segments and encoded `.`, `/`, `\\`, `;`, NUL are refused when it loads).",
        "type": "string",
        "pattern": "^/[^?#;\\\\\\u0000-\\u001F\\u007F]*$"
    }
);

string_format!(
    /// Text that must not be empty.
    NonEmpty,
    {
        "description": "Non-empty.",
        "type": "string",
        "minLength": 1
    }
);

string_format!(
    /// An Otoroshi client id or e-mail.
    NonBlank,
    {
        "description": "Not empty nor only white space; unique across the snapshot.",
        "type": "string",
        // One character outside Rust's `char::is_whitespace` (what `trim` removes),
        // not `\S`, whose white space (ECMA-262) differs.
        "pattern": "[^\\t-\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]"
    }
);

/// A route's `teams`: `["*"]`, or team ids.
pub(crate) struct RouteTeams;

impl JsonSchema for RouteTeams {
    fn schema_name() -> Cow<'static, str> {
        "RouteTeams".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let id = generator.subschema_for::<Id>();
        json_schema!({
            "description": "Teams whose right is required: `[\"*\"]` (a right on any team of the tenant), or team ids of the route's tenant; not empty (omit the field for no team check).",
            "anyOf": [
                {"const": ["*"]},
                {"type": "array", "items": id, "minItems": 1}
            ]
        })
    }
}

/// Team rights: a JSON object from a team id, or `*`, to a right.
pub(crate) struct TeamRights;

impl JsonSchema for TeamRights {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> Cow<'static, str> {
        "TeamRights".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let id_or_star = generator.subschema_for::<IdOrStar>();
        let right = generator.subschema_for::<Right>();
        json_schema!({
            "description": "Team rights: from a team id, or `*` (every team of the tenant), to `read` or `write` (write includes read).",
            "type": "object",
            "propertyNames": id_or_star,
            "additionalProperties": right
        })
    }
}
