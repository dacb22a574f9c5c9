//! `policyctl generate`: the generated snapshot (`tenantgate_policy::generate`)
//! on stdout.

use super::flags;
use crate::files::FileError;
use crate::Error;
use std::io::{BufWriter, Write};
use tenantgate_policy::generate::generate;

/// Writes a large, valid, realistic snapshot on stdout.
///
/// Areas, organizations and sub-organizations, teams, roles, groups, users
/// with memberships, apps, products, routes and M api keys. The raw key of api
/// key number i (0-based) is `gen-S-i` (S is the seed), so benchmarks can
/// send real keys. The same arguments always give the same document.
#[derive(Debug, clap::Args)]
#[command(override_usage = "policyctl generate --orgs N --keys M [--seed S]")]
pub struct Args {
    /// organizations, sub-organizations included (at least 1)
    #[arg(long, value_name = "N", value_parser = flags::count)]
    orgs: usize,
    /// api keys
    #[arg(long, value_name = "M")]
    keys: usize,
    /// the seed of the pseudo-random choices
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
}

pub fn run(args: &Args) -> Result<(), Error> {
    let document = generate(args.orgs, args.keys, args.seed);
    let mut out = BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer(&mut out, &document)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush())
        .map_err(FileError::Stdout)?;
    Ok(())
}
