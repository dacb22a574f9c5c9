//! `policyctl test`: a policy repository's own decision table, checked
//! against a snapshot — what `opa test` is to Rego.

use crate::{files, Error};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use tenantgate_policy::config::PluginConfig;
use tenantgate_policy::token::{TokenClaims, TokenMode};
use tenantgate_policy::{self as policy, Mode, Request, Snapshot, Timestamp, TokenCaller};

/// Checks a decision table against a snapshot.
///
/// A table is a JSON file of requests and the decisions expected for them,
/// the shape of `testdata/cases/*.json`: `{"defaults": {...}, "config":
/// {...plugin configuration...}, "cases": [{"name", "method", "path", "host",
/// "headers": [[name, value]], "token": {claims}, "expect": {...}}]}`.
/// `expect` names any fields of `policyctl explain`'s output (`decision`,
/// `status`, `reason`, `route`, `tenant`, `principal`, `teams`, `roles`,
/// `headers`); a case passes when each equals the decision's. Prints one
/// line per failing case and what differs, then a summary per file. Exits
/// 0 when every case passes, 1 when one fails, 2 for an unusable policy or
/// table (unknown fields are errors: a misspelled `expect` must not pass).
#[derive(Debug, clap::Args)]
#[command(override_usage = "policyctl test --policy FILE TABLE...")]
pub struct Args {
    /// the snapshot to test: JSON, compiled or signed
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// decision tables (JSON)
    #[arg(required = true, value_name = "TABLE")]
    tables: Vec<PathBuf>,
}

/// A decision table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    /// Prose for the reader.
    #[serde(default, rename = "about", alias = "_comment")]
    _about: Option<IgnoredAny>,
    /// The policy the table was written for, for the reader (`--policy` decides).
    #[serde(default, rename = "policy")]
    _policy: Option<IgnoredAny>,
    #[serde(default)]
    defaults: Defaults,
    /// A plugin configuration: sources, token source, annotations, mode.
    #[serde(default)]
    config: Option<Value>,
    cases: Vec<Case>,
}

/// What a case does not say itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    environment: Option<String>,
    now: Option<String>,
    host: Option<String>,
    mode: Option<Mode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    method: String,
    path: String,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// Verified token claims (`sources.token` of the configuration).
    #[serde(default)]
    token: Option<Value>,
    #[serde(default)]
    token_mode: Option<TokenMode>,
    /// `null` here means "none" (the default's value otherwise).
    #[serde(default, deserialize_with = "present")]
    environment: Option<Option<String>>,
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    mode: Option<Mode>,
    /// Which host suites run it (Envoy, Otoroshi); ignored here.
    #[serde(default, rename = "envoy")]
    _envoy: Option<IgnoredAny>,
    #[serde(default, rename = "otoroshi")]
    _otoroshi: Option<IgnoredAny>,
    expect: Map<String, Value>,
}

/// Tells an explicit `null` from an absent field.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// The fields of `explain`'s output a case may expect.
const FIELDS: [&str; 9] = [
    "decision",
    "status",
    "reason",
    "route",
    "tenant",
    "principal",
    "teams",
    "roles",
    "headers",
];

pub fn run(args: &Args) -> Result<(), Error> {
    let snapshot = files::load_policy(&args.policy)?;
    let mut failed = 0;
    let mut total = 0;
    for path in &args.tables {
        let table = read_table(path)?;
        let failures = check_table(&snapshot, &table, path)?;
        for failure in &failures {
            println!("{failure}");
        }
        let count = table.cases.len();
        println!(
            "{}: {count} cases, {} passed, {} failed",
            path.display(),
            count - failures.len(),
            failures.len()
        );
        failed += failures.len();
        total += count;
    }
    match failed {
        0 => Ok(()),
        failed => Err(Error::TestsFailed { failed, total }),
    }
}

fn read_table(path: &Path) -> Result<Table, Error> {
    let bytes = files::read(path)?;
    let table: Table = serde_json::from_slice(&bytes).map_err(|source| Error::Table {
        path: path.to_path_buf(),
        message: source.to_string(),
    })?;
    for case in &table.cases {
        if let Some(field) = case.expect.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(Error::Table {
                path: path.to_path_buf(),
                message: format!("case `{}`: `expect` has no field `{field}`", case.name),
            });
        }
    }
    Ok(table)
}

/// Every failing case of `table`, described.
fn check_table(snapshot: &Snapshot, table: &Table, path: &Path) -> Result<Vec<String>, Error> {
    let config = table_config(table, path)?;
    let mut failures = Vec::new();
    for case in &table.cases {
        let got =
            decide(snapshot, &config, &table.defaults, case).map_err(|message| Error::Table {
                path: path.to_path_buf(),
                message: format!("case `{}`: {message}", case.name),
            })?;
        let differences: Vec<String> = case
            .expect
            .iter()
            .filter(|(field, want)| got.get(field.as_str()) != Some(*want))
            .map(|(field, want)| {
                let got = got.get(field.as_str()).unwrap_or(&Value::Null);
                format!("  {field}: got {got}, want {want}")
            })
            .collect();
        if !differences.is_empty() {
            failures.push(format!("FAIL {}\n{}", case.name, differences.join("\n")));
        }
    }
    Ok(failures)
}

fn table_config(table: &Table, path: &Path) -> Result<PluginConfig, Error> {
    let text = match &table.config {
        Some(config) => config.to_string(),
        None => "{}".into(),
    };
    PluginConfig::parse(text.as_bytes()).map_err(|source| Error::Config {
        path: path.to_path_buf(),
        source,
    })
}

/// `explain`'s output for one case, as JSON.
fn decide(
    snapshot: &Snapshot,
    config: &PluginConfig,
    defaults: &Defaults,
    case: &Case,
) -> Result<Map<String, Value>, String> {
    let now = match case.now.as_deref().or(defaults.now.as_deref()) {
        Some(text) => {
            Timestamp::parse_rfc3339(text).ok_or(format!("now: not RFC 3339: `{text}`"))?
        }
        None => super::explain::system_now(),
    };
    let environment = match &case.environment {
        Some(explicit) => explicit.as_deref(),
        None => defaults.environment.as_deref(),
    };
    let mode = case.mode.or(defaults.mode).unwrap_or(config.mode);
    let host = case
        .host
        .as_deref()
        .or(defaults.host.as_deref())
        .unwrap_or("localhost");
    let request = Request::from_parts(
        &config.sources,
        &case.method,
        host,
        case.path.as_bytes(),
        &case.headers,
    );
    let token = token_caller(snapshot, config, case)?;
    let context = policy::Context::new(now, environment).with_token(token.as_ref());
    let decision = policy::decide(snapshot, &request, &context);
    let explain = decision.explain_with(mode, config.annotations);
    match serde_json::to_value(explain) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err("the decision does not render as JSON".into()),
    }
}

fn token_caller(
    snapshot: &Snapshot,
    config: &PluginConfig,
    case: &Case,
) -> Result<Option<TokenCaller>, String> {
    let Some(payload) = &case.token else {
        return Ok(None);
    };
    let mut source = config
        .token
        .clone()
        .ok_or("a `token` needs `config.sources.token`")?;
    if let Some(mode) = case.token_mode {
        source.mode = mode;
    }
    let claims = TokenClaims::from_json(payload, &source);
    Ok(Some(TokenCaller::resolve(snapshot, &claims, &source)))
}
