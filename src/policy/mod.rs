//! The policy core: document → validation → compiled [`Snapshot`] → [`decide`].
//!
//! No I/O, no clock, no host calls: the same code runs in `policyctl`, in tests,
//! in benchmarks and inside every host's wasm shell.

pub mod binary;
pub mod decide;
pub mod document;
pub mod error;
pub mod load;
mod lookup;
pub mod reason;
pub mod request;
pub mod snapshot;
pub mod time;

pub use decide::{
    decide, decide_with_key, is_safe_method, key_digest, path_is_clean, Action, Decision, Explain,
    ExternalKey, Mode, STRIPPED_HEADERS,
};
pub use document::Document;
pub use error::{InvalidSnapshot, LoadError, Problem, SyntaxError};
pub use reason::Reason;
pub use request::{Request, Sources};
pub use snapshot::{Snapshot, SnapshotStats};
pub use time::Timestamp;

/// Parses, validates and compiles a snapshot document from its JSON text.
pub fn load_snapshot(text: &str) -> Result<Snapshot, LoadError> {
    let document = load::parse_document(text)?;
    Snapshot::compile(&document).map_err(LoadError::Invalid)
}

/// Loads a snapshot from bytes: a compiled snapshot (`policyctl compile`,
/// recognised by its magic) or a JSON document.
pub fn load_snapshot_bytes(bytes: &[u8]) -> Result<Snapshot, LoadError> {
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

/// The lower-case hex SHA-256 of a raw API key: what a snapshot stores.
pub fn hash_key(raw_key: &str) -> String {
    hash_key_hex(&key_digest(raw_key))
}

/// A key digest as lower-case hex.
pub fn hash_key_hex(digest: &[u8; 32]) -> String {
    use std::fmt::Write;
    let mut hex = String::with_capacity(64);
    for byte in digest {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}
