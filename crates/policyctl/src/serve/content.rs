//! What the server loads from its files: the policy as served, and the api keys by hash.

use super::etag::etag_of_digest;
use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tenantgate_policy as policy;
use tenantgate_policy::text::is_sha256_hex;

/// Characters of a key hash printed in the request log and in messages.
pub const HASH_PREFIX: usize = 8;

/// The policy as served: the file's bytes, its revision and its entity tag.
pub struct Served {
    pub body: Bytes,
    pub revision: String,
    pub content_type: &'static str,
    /// The entity tag without quotes (see [`etag_of_digest`]).
    pub etag: String,
}

/// Loads a policy file's bytes: JSON or compiled (`policyctl compile`), both validated.
pub fn load_policy(bytes: Vec<u8>, digest: &[u8; 32]) -> Result<Arc<Served>, Vec<String>> {
    let compiled = policy::binary::is_binary(&bytes);
    let snapshot = if compiled {
        // Every record checked as the filter's fetcher checks it, without
        // building the indexes of keys and apps nobody here decides with.
        let apps = policy::binary::tier::Apps::Move;
        let ((snapshot, _), _) =
            policy::load_verified_split(&bytes, None, 0, apps).map_err(|e| e.problems())?;
        snapshot
    } else {
        policy::load_snapshot_bytes(&bytes).map_err(|e| e.problems())?
    };
    let content_type = if compiled {
        "application/octet-stream"
    } else {
        "application/json"
    };
    Ok(Arc::new(Served {
        content_type,
        etag: etag_of_digest(digest),
        body: Bytes::from(bytes),
        revision: snapshot.revision().to_string(),
    }))
}

/// Api keys by `sha256`, each rendered as its JSON object.
pub type KeySet = HashMap<String, String>;

/// Loads a keys file, checking the shape the server relies on (an array of objects with a
/// well-formed, unique `sha256`); the filter validates the rest.
pub fn load_keys(bytes: Vec<u8>, _digest: &[u8; 32]) -> Result<KeySet, Vec<String>> {
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| vec![format!("keys file is not JSON: {e}")])?;
    let Value::Array(items) = value else {
        return Err(vec![
            "keys file must be a JSON array of api key objects".into()
        ]);
    };
    let mut keys = KeySet::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let checked =
            key_hash(item).and_then(
                |hash| match keys.insert(hash.to_string(), item.to_string()) {
                    Some(_) => Err(KeyProblem::Duplicate(hash_prefix(hash))),
                    None => Ok(()),
                },
            );
        if let Err(problem) = checked {
            problems.push(format!("{}: {problem}", entry_name(index, item)));
        }
    }
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(problems)
    }
}

/// What is wrong with an entry of the keys file.
#[derive(Debug, thiserror::Error)]
enum KeyProblem {
    #[error("must be an object")]
    NotAnObject,
    /// The value is not echoed: a malformed "hash" may well be a raw key.
    #[error("`sha256` must be 64 lower-case hex digits")]
    MalformedHash,
    #[error("`sha256` (a string) is required")]
    MissingHash,
    #[error("duplicate sha256 {0}…")]
    Duplicate(String),
}

/// The entry's well-formed `sha256`.
fn key_hash(item: &Value) -> Result<&str, KeyProblem> {
    let object = item.as_object().ok_or(KeyProblem::NotAnObject)?;
    match object.get("sha256").and_then(Value::as_str) {
        Some(hash) if is_sha256_hex(hash) => Ok(hash),
        Some(_) => Err(KeyProblem::MalformedHash),
        None => Err(KeyProblem::MissingHash),
    }
}

/// The entry as messages name it: its position, and its id if it has one.
fn entry_name(index: usize, item: &Value) -> String {
    match item.get("id").and_then(Value::as_str) {
        Some(id) => format!("keys[{index}] (id `{id}`)"),
        None => format!("keys[{index}]"),
    }
}

fn hash_prefix(hash: &str) -> String {
    hash.get(..HASH_PREFIX).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_file_shape() {
        let hash = "64084db3581b61a39984249dbe669dfb1233118846168bab3408cbe203ffa8de";
        let ok = format!(r#"[{{"id":"a","app":"x","sha256":"{hash}","status":"active"}}]"#);
        let keys = load_keys(ok.as_bytes().to_vec(), &[0; 32]).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.get(hash).unwrap().contains("\"id\":\"a\""));
        assert!(load_keys(b"{}".to_vec(), &[0; 32]).is_err());
        assert!(load_keys(b"[1]".to_vec(), &[0; 32]).is_err());
        assert!(load_keys(br#"[{"sha256":"ABC"}]"#.to_vec(), &[0; 32]).is_err());
        let dup = format!(r#"[{{"sha256":"{hash}"}},{{"sha256":"{hash}"}}]"#);
        assert!(load_keys(dup.as_bytes().to_vec(), &[0; 32]).is_err());
        assert!(load_keys(b"[]".to_vec(), &[0; 32]).unwrap().is_empty());
    }
}
