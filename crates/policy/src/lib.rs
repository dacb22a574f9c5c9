//! The policy core: document → validation → compiled [`Snapshot`] → [`decide`].
//!
//! No I/O, no clock, no host calls: the same code runs in `policyctl`, in tests,
//! in benchmarks and inside every host's wasm shell.

#![warn(missing_docs)]

pub mod binary;
pub mod compile;
pub mod config;
pub mod decide;
pub mod diff;
pub mod document;
pub mod error;
pub mod generate;
mod index;
pub mod intake;
pub mod lint;
pub mod load;
pub mod path;
pub mod reason;
mod records;
pub mod request;
#[cfg(feature = "schema")]
pub mod schema;
pub mod signed;
pub mod snapshot;
pub mod text;
pub mod time;
pub mod token;

pub use compile::keys::{compile_external_key, ExternalKey, ExternalKeyError};
pub use decide::{
    decide, is_annotation_header, is_safe_method, Annotations, Context, Decision, Explain,
    GatewayCaller, GatewayLocation, HeaderMap, Mode, TokenCaller, Verdict, STRIPPED_HEADERS,
};
pub use document::Document;
pub use error::{InvalidSnapshot, LoadError, Problem, SyntaxError};
pub use path::PathCase;
pub use reason::Reason;
pub use records::SnapshotStats;
pub use request::{Ambiguity, Request, Sources};
pub use snapshot::Snapshot;
pub use time::Timestamp;

/// Parses, validates and compiles a snapshot document from its JSON text.
pub fn load_snapshot(text: &str) -> Result<Snapshot, LoadError> {
    let document = load::parse_document(text)?;
    compile::compile(&document).map_err(LoadError::Invalid)
}

/// Loads a snapshot from bytes: a compiled snapshot (`policyctl compile`,
/// recognised by its magic) or a JSON document, either possibly inside a
/// signed envelope (`policyctl sign`), whose signature is NOT checked here
/// (see [`load_verified`]).
pub fn load_snapshot_bytes(bytes: &[u8]) -> Result<Snapshot, LoadError> {
    if signed::is_signed(bytes) {
        return load_verified(bytes, None).map(|(snapshot, _)| snapshot);
    }
    if binary::is_binary(bytes) {
        return binary::decode(bytes).map_err(|e| {
            LoadError::Syntax(SyntaxError {
                message: e.to_string(),
            })
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        LoadError::Syntax(SyntaxError {
            message: format!("neither a compiled snapshot nor UTF-8 JSON: {e}"),
        })
    })?;
    load_snapshot(text)
}

/// Loads a snapshot fetched from a source. With a `verifier` (public keys
/// configured), only a signed snapshot whose signature verifies is loaded;
/// without, a signed one is unwrapped unchecked. Returns the signed sequence
/// (`None` for an unsigned snapshot), for the caller's replay check.
pub fn load_verified(
    bytes: &[u8],
    verifier: Option<&signed::Verifier>,
) -> Result<(Snapshot, Option<u64>), LoadError> {
    verified_with(bytes, verifier, load_snapshot_bytes, |s| s.revision())
}

/// [`load_verified`], with the snapshot's API keys (and with [`binary::tier::Apps::Move`]
/// its apps and their grants) moved into a key tier of
/// `generation` ([`binary::tier`]). A compiled snapshot's key table is cut
/// into the tier as it is read: its keys are never decoded into records.
pub fn load_verified_split<'b>(
    bytes: &'b [u8],
    verifier: Option<&signed::Verifier>,
    generation: u64,
    apps: binary::tier::Apps,
) -> Result<((Snapshot, binary::tier::Tier<'b>), Option<u64>), LoadError> {
    use binary::tier::{self, Tier};
    let split = |payload: &'b [u8]| {
        if binary::is_binary(payload) {
            return tier::decode_split(payload, generation, apps)
                .map(|(snapshot, cut)| (snapshot, Tier::Cut(cut)))
                .map_err(|e| {
                    LoadError::Syntax(SyntaxError {
                        message: e.to_string(),
                    })
                });
        }
        let mut snapshot = load_snapshot_bytes(payload)?;
        let built = tier::split_keys(&mut snapshot, generation, apps);
        Ok((snapshot, Tier::Built(built)))
    };
    verified_with(bytes, verifier, split, |(s, _)| s.revision())
}

/// Unwraps a signed envelope (verified against `verifier` if given; required
/// then) and loads its payload, or loads unsigned `bytes`, with `load`.
fn verified_with<'b, T>(
    bytes: &'b [u8],
    verifier: Option<&signed::Verifier>,
    load: impl Fn(&'b [u8]) -> Result<T, LoadError>,
    revision: impl Fn(&T) -> &str,
) -> Result<(T, Option<u64>), LoadError> {
    let refused = |e: signed::SignedError| {
        LoadError::Syntax(SyntaxError {
            message: e.to_string(),
        })
    };
    if !signed::is_signed(bytes) {
        if verifier.is_some() {
            return Err(refused(signed::SignedError::Unsigned));
        }
        return load(bytes).map(|loaded| (loaded, None));
    }
    let envelope = signed::parse(bytes).map_err(refused)?;
    if let Some(verifier) = verifier {
        verifier.verify(&envelope).map_err(refused)?;
    }
    if signed::is_signed(envelope.payload) {
        return Err(refused(signed::SignedError::Malformed(
            "a signed snapshot inside another",
        )));
    }
    let loaded = load(envelope.payload)?;
    if revision(&loaded) != envelope.revision {
        return Err(refused(signed::SignedError::RevisionMismatch));
    }
    Ok((loaded, Some(envelope.sequence)))
}

/// The lower-case hex SHA-256 of a raw API key: what a snapshot stores.
pub fn hash_key(raw_key: impl AsRef<[u8]>) -> String {
    hash_key_hex(&key_digest(raw_key))
}

/// A key digest as lower-case hex.
pub fn hash_key_hex(digest: &[u8; 32]) -> String {
    text::sha256_hex(digest)
}

/// The SHA-256 of a raw API key, as the snapshot indexes keys.
pub fn key_digest(raw_key: impl AsRef<[u8]>) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(raw_key.as_ref()).into()
}
