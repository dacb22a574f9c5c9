//! `policyctl schema [--out FILE]`: the snapshot document as a JSON Schema.

use crate::{files, Error};
use std::path::PathBuf;

/// Prints the JSON Schema (draft 2020-12) of a snapshot document.
///
/// The schema is derived from the same serde types the loader reads (so it
/// cannot drift from them) and committed as docs/policy.schema.json. It
/// checks what each value must be on its own: fields, types, enumerations,
/// unknown fields, ids, `sha256`, `revision`. References and uniqueness are
/// left to `policyctl validate`. A snapshot names it with a top-level
/// "$schema" for editors to complete and check it as it is written. The output
/// is pretty-printed and the same on every run.
#[derive(Debug, clap::Args)]
#[command(override_usage = "policyctl schema [--out FILE]")]
pub struct Args {
    /// where to write the schema (default: stdout)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// The schema as `policyctl schema` prints it: pretty JSON, one final newline.
pub fn text() -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&tenantgate_policy::schema::document_schema())?;
    text.push('\n');
    Ok(text)
}

pub fn run(args: &Args) -> Result<(), Error> {
    let text = text()?;
    match &args.out {
        Some(out) => files::write(out, text.as_bytes())?,
        None => files::write_stdout(text.as_bytes())?,
    }
    Ok(())
}
