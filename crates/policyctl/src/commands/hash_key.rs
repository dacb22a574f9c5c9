//! `policyctl hash-key KEY`

use crate::Error;

/// Prints the SHA-256 of an api key, as snapshots hold it.
///
/// Prints the lower-case hex SHA-256 of KEY: the value of `sha256` in a
/// snapshot's api_keys. Snapshots never hold raw keys.
#[derive(Debug, clap::Args)]
#[command(override_usage = "policyctl hash-key KEY")]
pub struct Args {
    /// the raw api key
    #[arg(value_name = "KEY", allow_hyphen_values = true)]
    key: String,
}

pub fn run(args: &Args) -> Result<(), Error> {
    println!("{}", tenantgate_policy::hash_key(args.key.as_bytes()));
    Ok(())
}
