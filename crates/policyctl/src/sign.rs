//! `policyctl keygen` and `policyctl sign`: Ed25519 keys and signed
//! snapshots (`policy::signed`), for a filter configured with
//! `snapshot.remote.public_keys`.

use super::{fail, Flags};
use std::io::Write;
use std::process::ExitCode;
use tenantgate_policy::config::{decode_base64, encode_base64};
use tenantgate_policy::{self as policy, signed};

pub const KEYGEN_HELP: &str = "usage: policyctl keygen --out FILE

Creates an Ed25519 signing key: writes its 32-byte seed, base64, to FILE
(created with mode 0600; an existing FILE is never overwritten) and prints the
public key, base64, on stdout: put it in the filter's
`snapshot.remote.public_keys`. Keep FILE off the policy host: whoever holds it
can sign policies every gateway accepts.";

pub const SIGN_HELP: &str =
    "usage: policyctl sign --key FILE --policy FILE --out FILE [--sequence N]

Validates the snapshot (JSON or compiled) and writes it signed with the key in
--key (from `policyctl keygen`): the signature, the key's id, the revision and
the sequence travel inside the file, so any static server, S3 or CDN can host
it. A filter with `snapshot.remote.public_keys` accepts only snapshots signed
by one of those keys, and once it has accepted sequence N it refuses any lower
one (an old signed snapshot replayed by the host).

  --sequence N   grows with every snapshot you sign (default: now, in
                 milliseconds since 1970, which grows by itself)

Key rotation: add the new public key to every filter's `public_keys`, sign
with the new key, then remove the old public key.";

pub fn keygen(args: &[String]) -> ExitCode {
    match new_key(args) {
        Ok(public) => {
            println!("{public}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

fn new_key(args: &[String]) -> Result<String, String> {
    let flags = Flags::parse(args, &["--out"])?;
    let out = flags.required("--out")?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .map_err(|e| format!("cannot create `{out}`: {e}"))?;
    writeln!(file, "{}", encode_base64(&seed)).map_err(|e| format!("cannot write `{out}`: {e}"))?;
    Ok(encode_base64(&signed::public_key(&seed)))
}

pub fn sign(args: &[String]) -> ExitCode {
    match sign_file(args) {
        Ok(summary) => {
            eprintln!("policyctl: {summary}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

fn sign_file(args: &[String]) -> Result<String, String> {
    let flags = Flags::parse(args, &["--key", "--policy", "--out", "--sequence"])?;
    let key_path = flags.required("--key")?;
    let seed: [u8; 32] = std::fs::read_to_string(key_path)
        .ok()
        .and_then(|text| decode_base64(text.trim()))
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| format!("`{key_path}` is not a key written by `policyctl keygen`"))?;
    let policy_path = flags.required("--policy")?;
    let payload =
        std::fs::read(policy_path).map_err(|e| format!("cannot read `{policy_path}`: {e}"))?;
    if signed::is_signed(&payload) {
        return Err(format!("`{policy_path}` is already signed"));
    }
    let snapshot =
        policy::load_snapshot_bytes(&payload).map_err(|e| format!("`{policy_path}`: {e}"))?;
    let sequence = match flags.get("--sequence") {
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| format!("`--sequence` must be a whole number, got `{text}`"))?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let bytes = signed::sign(&payload, snapshot.revision(), sequence, &seed);
    // Check what was written the way a filter will.
    let verifier =
        signed::Verifier::new(&[signed::public_key(&seed)]).map_err(|e| e.to_string())?;
    policy::load_verified(&bytes, Some(&verifier)).map_err(|e| e.to_string())?;
    let out = flags.required("--out")?;
    std::fs::write(out, &bytes).map_err(|e| format!("cannot write `{out}`: {e}"))?;
    let key_id: String = signed::key_id(&signed::public_key(&seed))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!(
        "{out}: revision {} signed with key {key_id} as sequence {sequence}, {} bytes",
        snapshot.revision(),
        bytes.len()
    ))
}
