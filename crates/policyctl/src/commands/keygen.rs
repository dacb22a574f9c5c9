//! `policyctl keygen --out FILE`: an Ed25519 signing key for `policyctl sign`.

use crate::files::FileError;
use crate::Error;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use tenantgate_policy::config::encode_base64;
use tenantgate_policy::signed;

/// Creates an Ed25519 signing key for `policyctl sign`.
///
/// Writes the key's 32-byte seed, base64, to FILE (created with mode 0600; an
/// existing FILE is never overwritten) and prints the public key, base64, on
/// stdout: put it in the filter's `snapshot.remote.public_keys`. Keep FILE
/// off the policy host: whoever holds it can sign policies every gateway
/// accepts.
#[derive(Debug, clap::Args)]
#[command(override_usage = "policyctl keygen --out FILE")]
pub struct Args {
    /// where to write the signing key (must not exist)
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// No randomness for the key.
#[derive(Debug, thiserror::Error)]
#[error("no randomness: {0}")]
pub struct NoRandomness(getrandom::Error);

pub fn run(args: &Args) -> Result<(), Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(NoRandomness)?;
    let mut file = create_private(&args.out)?;
    writeln!(file, "{}", encode_base64(&seed)).map_err(|source| FileError::Write {
        path: args.out.clone(),
        source,
    })?;
    println!("{}", encode_base64(&signed::public_key(&seed)));
    Ok(())
}

/// Creates `path`, readable by its owner only; never replaces a file.
fn create_private(path: &Path) -> Result<File, FileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|source| FileError::Create {
        path: path.to_path_buf(),
        source,
    })
}
