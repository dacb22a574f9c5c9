//! `policyctl plugin-config`: a plugin configuration with the snapshot inline.

use crate::{files, Error};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tenantgate_policy::config::{encode_base64, PluginConfig};
use tenantgate_policy::{binary, Snapshot};

/// Prints a plugin configuration that embeds a snapshot.
///
/// Validates FILE and prints a plugin configuration embedding it inline, as
/// one line of JSON: what goes into Envoy's `configuration` StringValue (or
/// Otoroshi's plug-in `config`). With `--compiled` the snapshot is embedded
/// compiled, base64 (`snapshot.compiled`): about a third of the size, and
/// each VM (or, in Otoroshi, each call) loads it without parsing JSON.
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "policyctl plugin-config --policy FILE [--mode enforce|audit] [--environment ENV]\n                             \
                            [--compiled] [--annotate-plan]"
)]
pub struct Args {
    /// the snapshot (JSON; compiled or signed only with --compiled)
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// enforce denies; audit lets every request through, marked
    #[arg(long, value_name = "MODE", default_value = "enforce", value_parser = ["enforce", "audit"])]
    mode: String,
    /// the gateway's environment (default: none)
    #[arg(long, value_name = "ENV")]
    environment: Option<String>,
    /// embed the snapshot compiled (`snapshot.compiled`) instead of as JSON
    #[arg(long)]
    compiled: bool,
    /// annotate allowed requests with the tenant's plan (`x-tenant-plan:
    /// paid|evaluation`, `annotations.plan`), for a rate limit that reads it
    #[arg(long)]
    annotate_plan: bool,
}

pub fn run(args: &Args) -> Result<(), Error> {
    println!("{}", render(args)?);
    Ok(())
}

/// The configuration, as one line of JSON that the filter accepts.
fn render(args: &Args) -> Result<String, Error> {
    let snapshot = files::load_policy(&args.policy)?;
    let source = if args.compiled {
        compiled_source(&snapshot)
    } else {
        inline_source(&args.policy)?
    };
    let mut config = json!({"mode": args.mode, "snapshot": source});
    if let (Some(environment), Some(object)) = (&args.environment, config.as_object_mut()) {
        object.insert("environment".into(), environment.as_str().into());
    }
    if let (true, Some(object)) = (args.annotate_plan, config.as_object_mut()) {
        object.insert("annotations".into(), json!({"plan": true}));
    }
    let rendered = config.to_string();
    // What the filter will do with it: a configuration it refuses is no use.
    PluginConfig::parse(rendered.as_bytes()).map_err(Error::RenderedConfig)?;
    Ok(rendered)
}

fn compiled_source(snapshot: &Snapshot) -> Value {
    json!({"compiled": encode_base64(&binary::encode(snapshot))})
}

/// The policy file's own JSON, so the configuration carries it as written.
fn inline_source(path: &Path) -> Result<Value, Error> {
    let bytes = files::read(path)?;
    let inline: Value = serde_json::from_slice(&bytes).map_err(|_| Error::CompiledPolicy {
        path: path.to_path_buf(),
    })?;
    Ok(json!({"inline": inline}))
}
