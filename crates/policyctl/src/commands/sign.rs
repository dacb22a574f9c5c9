//! `policyctl sign`: a snapshot signed (`policy::signed`) for a filter
//! configured with `snapshot.remote.public_keys`.

use crate::{files, Error};
use std::path::{Path, PathBuf};
use tenantgate_policy::config::decode_base64;
use tenantgate_policy::signed::{self, SignedError};
use tenantgate_policy::{self as policy, LoadError};

/// Signs a snapshot with a key from `policyctl keygen`.
///
/// Validates the snapshot (JSON or compiled) and writes it signed with the key
/// in --key: the signature, the key's id, the revision and the sequence
/// travel inside the file, so any static server, S3 or CDN can host it. A
/// filter with `snapshot.remote.public_keys` accepts only snapshots signed by
/// one of those keys, and once it has accepted sequence N it refuses any lower
/// one (an old signed snapshot replayed by the host).
///
/// Key rotation: add the new public key to every filter's `public_keys`, sign
/// with the new key, then remove the old public key.
#[derive(Debug, clap::Args)]
#[command(override_usage = "policyctl sign --key FILE --policy FILE --out FILE [--sequence N]")]
pub struct Args {
    /// the signing key, written by `policyctl keygen`
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// the snapshot to sign (JSON or compiled)
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// the signed snapshot to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// grows with every snapshot you sign (default: now, in milliseconds since
    /// 1970, which grows by itself)
    #[arg(long, value_name = "N")]
    sequence: Option<u64>,
}

/// Why a snapshot cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("`{}` is not a key written by `policyctl keygen`", path.display())]
    NotAKey { path: PathBuf },
    #[error("`{}` is already signed", path.display())]
    AlreadySigned { path: PathBuf },
    /// What was signed does not load as a filter would load it.
    #[error(transparent)]
    Check(#[from] LoadError),
    #[error(transparent)]
    Verifier(#[from] SignedError),
}

pub fn run(args: &Args) -> Result<(), Error> {
    let seed = read_key(&args.key)?;
    let payload = files::read(&args.policy)?;
    if signed::is_signed(&payload) {
        return Err(SignError::AlreadySigned {
            path: args.policy.clone(),
        }
        .into());
    }
    let snapshot =
        policy::load_snapshot_bytes(&payload).map_err(|source| files::PolicyError::Invalid {
            path: args.policy.clone(),
            source,
        })?;
    let sequence = args.sequence.unwrap_or_else(now_millis);
    let bytes = signed::sign(&payload, snapshot.revision(), sequence, &seed);
    check_as_a_filter_would(&bytes, &seed)?;
    files::write(&args.out, &bytes)?;
    eprintln!(
        "policyctl: {}: revision {} signed with key {} as sequence {sequence}, {} bytes",
        args.out.display(),
        snapshot.revision(),
        key_id_hex(&seed),
        bytes.len()
    );
    Ok(())
}

/// The 32-byte seed in a key file (base64, as `keygen` writes it).
fn read_key(path: &Path) -> Result<[u8; 32], SignError> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| decode_base64(text.trim()))
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| SignError::NotAKey {
            path: path.to_path_buf(),
        })
}

/// Loads the signed bytes with the key's public half, as a filter will.
fn check_as_a_filter_would(bytes: &[u8], seed: &[u8; 32]) -> Result<(), SignError> {
    let verifier = signed::Verifier::new(&[signed::public_key(seed)])?;
    policy::load_verified(bytes, Some(&verifier))?;
    Ok(())
}

fn key_id_hex(seed: &[u8; 32]) -> String {
    signed::key_id(&signed::public_key(seed))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Milliseconds since 1970: a sequence that grows by itself.
fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
