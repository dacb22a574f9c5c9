//! `policyctl diff`: the access impact of a policy change, computed from the
//! two compiled snapshots by `tenantgate_policy::diff` and reported here.

mod json;
mod report;

use super::flags;
use crate::files::{self, FileError, PolicyError};
use crate::Error;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tenantgate_policy::diff::{self, ChangeKind};
use tenantgate_policy::{self as policy, Snapshot, Timestamp};

/// Shows whose access a policy change changes, and how.
///
/// OLD and NEW are snapshots, JSON, compiled or signed (the signature is not
/// checked). Every principal (each user id and API key of either snapshot,
/// and an unknown user) sends, to each route of either snapshot, a read
/// request (GET) and a write request (POST; or the methods the route lists),
/// for a `"*"`-tenant route with no selector and with each organization as
/// selector, in no environment and in each environment. Each point allowed
/// by one snapshot and denied by the other is reported with both decisions,
/// grouped by tenant, then summarised (--reasons: also the points denied by
/// both for different reasons). Tokens (`sources.token`) and Otoroshi's own
/// callers are not part of it.
///
/// Exit status: 0 no change of the kind --fail-on names, 1 such changes, 2
/// unusable input.
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "policyctl diff OLD NEW [--now RFC3339] [--json] [--reasons] [--fail-on gain|loss|any]"
)]
pub struct Args {
    /// the snapshot before the change
    #[arg(value_name = "OLD")]
    old: PathBuf,
    /// the snapshot after the change
    #[arg(value_name = "NEW")]
    new: PathBuf,
    /// the time both are decided at (default: the system clock)
    #[arg(long, value_name = "RFC3339", value_parser = flags::time)]
    now: Option<Timestamp>,
    /// print one JSON object instead of the table
    #[arg(long)]
    json: bool,
    /// also list the points denied before and after, for different reasons
    #[arg(long)]
    reasons: bool,
    /// which changes exit 1: `gain` (denied -> allowed), `loss` (allowed ->
    /// denied) or `any` (either)
    #[arg(long, value_name = "KIND", value_enum, default_value_t = FailOn::Any)]
    fail_on: FailOn,
}

/// The changes that make `diff` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    Gain,
    Loss,
    Any,
}

pub fn run(args: &Args) -> Result<(), Error> {
    let (old, old_keys) = load(&args.old)?;
    let (new, new_keys) = load(&args.new)?;
    let now = args.now.unwrap_or_else(system_now);
    let found = diff::diff(&old, &new, now);
    let mut key_ids = old_keys;
    key_ids.extend(new_keys);
    let revisions = [old.revision(), new.revision()];
    let report = report::Report::new(&found, &key_ids, revisions, now, args.reasons);
    if args.json {
        let mut out = BufWriter::new(std::io::stdout().lock());
        json::write(&report, &mut out)
            .and_then(|()| out.flush())
            .map_err(FileError::Stdout)?;
    } else {
        files::write_stdout(report.table().as_bytes())?;
    }
    let refused = match args.fail_on {
        FailOn::Any => found.count(ChangeKind::Gain) + found.count(ChangeKind::Loss) > 0,
        FailOn::Gain => found.count(ChangeKind::Gain) > 0,
        FailOn::Loss => found.count(ChangeKind::Loss) > 0,
    };
    if refused {
        return Err(Error::DiffRefused(format!(
            "access changes: {}",
            report.counts_text()
        )));
    }
    Ok(())
}

/// A snapshot file, and the ids of its API keys by digest.
fn load(path: &Path) -> Result<(Snapshot, HashMap<[u8; 32], String>), Error> {
    let bytes = files::read(path)?;
    let snapshot = policy::load_snapshot_bytes(&bytes).map_err(|source| PolicyError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((snapshot, key_ids(&bytes)))
}

/// Key ids by digest, from a JSON document (a compiled snapshot keeps no
/// key ids: its keys are named by their digest).
fn key_ids(bytes: &[u8]) -> HashMap<[u8; 32], String> {
    let payload = match policy::signed::parse(bytes) {
        Ok(envelope) => envelope.payload,
        Err(_) => bytes,
    };
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return HashMap::new();
    };
    let keys = document.get("api_keys").and_then(|k| k.as_array());
    keys.into_iter()
        .flatten()
        .filter_map(|key| {
            let digest = policy::text::decode_sha256_hex(key.get("sha256")?.as_str()?)?;
            Some((digest, key.get("id")?.as_str()?.to_string()))
        })
        .collect()
}

fn system_now() -> Timestamp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Timestamp::from_unix_nanos(nanos)
}
