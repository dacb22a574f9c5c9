//! `policyctl validate FILE...`

use crate::{files, Error};
use std::path::{Path, PathBuf};
use tenantgate_policy::{self as policy, Snapshot};

/// Checks snapshot files against every rule of the format.
///
/// Loads each snapshot, checks every rule of the format and compiles it.
/// Prints `FILE: ok (revision R, N organizations, M api keys, K routes)` per
/// valid file, then its warnings on stderr (`FILE: warning: ...`: rules that
/// hold but likely do not say what was meant, such as a method-restricted
/// route whose other methods fall through to a broader route). Exits 2
/// listing every problem of every invalid file, one per line, each naming the
/// object id, the field and the offending value (escaped, so each stays on
/// its line).
#[derive(Debug, clap::Args)]
#[command(override_usage = "policyctl validate FILE...")]
pub struct Args {
    /// snapshot files: JSON, compiled or signed
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(args: &Args) -> Result<(), Error> {
    let mut invalid = 0;
    for file in &args.files {
        match load(file) {
            Ok(snapshot) => print_verdict(file, &snapshot),
            Err(problems) => {
                invalid += 1;
                for problem in problems {
                    eprintln!("{}: {problem}", file.display());
                }
            }
        }
    }
    match invalid {
        0 => Ok(()),
        count => Err(Error::InvalidFiles { count }),
    }
}

/// The snapshot in `file`, or every problem that keeps it from loading.
fn load(file: &Path) -> Result<Snapshot, Vec<String>> {
    let bytes = files::read(file).map_err(|e| vec![e.to_string()])?;
    policy::load_snapshot_bytes(&bytes).map_err(|e| e.problems())
}

fn print_verdict(file: &Path, snapshot: &Snapshot) {
    let stats = snapshot.stats();
    println!(
        "{}: ok (revision {}, {} organizations, {} api keys, {} routes)",
        file.display(),
        snapshot.revision(),
        stats.organizations,
        stats.api_keys,
        stats.routes
    );
    for warning in policy::lint::warnings(snapshot) {
        eprintln!("{}: warning: {warning}", file.display());
    }
}
