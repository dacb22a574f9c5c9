//! The network sources of a plugin: a live snapshot (`snapshot.remote`) and
//! the on-demand key lookup (`key_lookup`).

use super::{decode_base64, ConfigError};
use crate::signed::Verifier;
use serde::Deserialize;

/// `snapshot.remote` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    cluster: String,
    #[serde(default = "defaults::snapshot_path")]
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default = "defaults::poll_ms")]
    poll_ms: u32,
    #[serde(default = "defaults::fetch_timeout_ms")]
    timeout_ms: u32,
    /// Base64 Ed25519 public keys: when given, only snapshots signed by one
    /// of them are accepted (several during a key rotation).
    #[serde(default)]
    public_keys: Vec<String>,
    #[serde(default = "defaults::chunk_bytes")]
    chunk_bytes: u32,
}

/// `key_lookup` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyLookup {
    cluster: String,
    #[serde(default = "defaults::keys_path")]
    path_prefix: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default = "defaults::lookup_timeout_ms")]
    timeout_ms: u32,
    #[serde(default = "defaults::ttl_ms")]
    ttl_ms: u32,
    #[serde(default = "defaults::negative_ttl_ms")]
    negative_ttl_ms: u32,
    #[serde(default = "defaults::cache_size")]
    cache_size: u32,
    #[serde(default = "defaults::max_in_flight")]
    max_in_flight: u32,
    #[serde(default = "defaults::max_per_second")]
    max_per_second: u32,
}

/// The defaults of the fields above (serde names a function for each).
mod defaults {
    pub fn snapshot_path() -> String {
        "/snapshot".into()
    }
    pub fn poll_ms() -> u32 {
        5000
    }
    pub fn fetch_timeout_ms() -> u32 {
        2000
    }
    pub fn chunk_bytes() -> u32 {
        super::DEFAULT_CHUNK_BYTES
    }
    pub fn keys_path() -> String {
        "/keys/".into()
    }
    pub fn lookup_timeout_ms() -> u32 {
        500
    }
    pub fn ttl_ms() -> u32 {
        60_000
    }
    pub fn negative_ttl_ms() -> u32 {
        10_000
    }
    pub fn cache_size() -> u32 {
        10_000
    }
    pub fn max_in_flight() -> u32 {
        16
    }
    pub fn max_per_second() -> u32 {
        100
    }
}

/// Where a remote snapshot is fetched from: an Envoy cluster and a path.
#[derive(Debug, Clone)]
pub struct RemoteSource {
    /// The Envoy cluster to fetch from.
    pub cluster: String,
    /// The request path.
    pub path: String,
    /// `:authority` of the fetch (default: the cluster name).
    pub authority: String,
    /// Interval between fetches (jittered ±10%).
    pub poll_ms: u32,
    /// Timeout of one fetch.
    pub timeout_ms: u32,
    /// Only snapshots signed by one of these keys are accepted (`None`:
    /// signatures are not required).
    pub verifier: Option<Verifier>,
    /// Bytes asked for per ranged request (`Range: bytes=a-b`): each part
    /// must fit Envoy's async-client response buffer (32 MiB by default).
    pub chunk_bytes: u32,
}

/// The default part size of a ranged snapshot fetch: well under Envoy's
/// async-client response buffer (32 MiB, `kBufferLimitForResponse` in
/// `source/common/http/async_client_impl.h`), so a part always arrives, and
/// small because a part is held twice while it is taken in (Envoy's buffer,
/// the fetching VM's copy), and a VM's memory never shrinks: at 1M keys and
/// 4 workers, 1 MiB parts left Envoy's RSS 9.8 MiB under 8 MiB parts, and
/// 256 KiB parts about 3.6 MiB under 1 MiB parts (tcmalloc keeps fewer
/// free pages), for about 110 ms more of fetching on loopback (issue 12).
/// Each part is a round trip: a distant source is fetched faster with
/// larger parts.
pub const DEFAULT_CHUNK_BYTES: u32 = 256 << 10;
/// The smallest part: below it a large snapshot takes too many round trips.
pub const MIN_CHUNK_BYTES: u32 = 64 << 10;
/// The largest part: Envoy drops a callout body above 32 MiB (by default).
pub const MAX_CHUNK_BYTES: u32 = 32 << 20;

/// Where keys missing from the snapshot are looked up: `GET <path_prefix><sha256>`
/// on an Envoy cluster, answered with an `api_keys` entry (200) or 404.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLookup {
    /// The Envoy cluster of the lookup service.
    pub cluster: String,
    /// The path before the digest.
    pub path_prefix: String,
    /// `:authority` of the lookups (default: the cluster name).
    pub authority: String,
    /// Timeout of one lookup.
    pub timeout_ms: u32,
    /// How long a found key is trusted before it is looked up again.
    pub ttl_ms: u32,
    /// How long "no such key" is remembered.
    pub negative_ttl_ms: u32,
    /// Entries per worker (least recently used evicted first), for found
    /// keys and, separately, for unknown ones.
    pub cache_size: u32,
    /// Lookups one worker runs at once; more unknown keys are answered 503
    /// (never let through by `fail_open`).
    pub max_in_flight: u32,
    /// Lookups one worker starts per second, likewise.
    pub max_per_second: u32,
}

fn invalid<T>(
    field: &'static str,
    value: impl ToString,
    what: &'static str,
) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        field,
        value: value.to_string(),
        what,
    })
}

/// `cluster` names a cluster and `path` starts with `/`.
fn check_target(
    field: (&'static str, &'static str),
    cluster: &str,
    path: &str,
) -> Result<(), ConfigError> {
    if cluster.is_empty() {
        return invalid(field.0, cluster, "must name an Envoy cluster, got");
    }
    if !path.starts_with('/') {
        return invalid(field.1, path, "must start with `/`, got");
    }
    Ok(())
}

pub(super) fn remote_source(raw: RawRemote) -> Result<RemoteSource, ConfigError> {
    check_target(
        ("snapshot.remote.cluster", "snapshot.remote.path"),
        &raw.cluster,
        &raw.path,
    )?;
    if raw.poll_ms < 100 {
        return invalid(
            "snapshot.remote.poll_ms",
            raw.poll_ms,
            "must be at least 100, got",
        );
    }
    if raw.timeout_ms == 0 {
        return invalid("snapshot.remote.timeout_ms", 0, "must be positive, got");
    }
    if !(MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&raw.chunk_bytes) {
        return invalid(
            "snapshot.remote.chunk_bytes",
            raw.chunk_bytes,
            "must be between 65536 (64 KiB) and 33554432 (32 MiB, Envoy's async-client response buffer), got",
        );
    }
    let verifier = public_keys(&raw.public_keys)?;
    Ok(RemoteSource {
        chunk_bytes: raw.chunk_bytes,
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        path: raw.path,
        poll_ms: raw.poll_ms,
        timeout_ms: raw.timeout_ms,
        verifier,
    })
}

/// At most 16 keys, each the base64 of a 32-byte Ed25519 public key.
fn public_keys(encoded: &[String]) -> Result<Option<Verifier>, ConfigError> {
    const FIELD: &str = "snapshot.remote.public_keys";
    if encoded.is_empty() {
        return Ok(None);
    }
    if encoded.len() > 16 {
        return invalid(FIELD, encoded.len(), "at most 16 keys, got");
    }
    let mut keys = Vec::with_capacity(encoded.len());
    for text in encoded {
        match decode_base64(text).and_then(|bytes| <[u8; 32]>::try_from(bytes).ok()) {
            Some(key) => keys.push(key),
            None => {
                return invalid(
                    FIELD,
                    text,
                    "not the base64 of a 32-byte Ed25519 public key:",
                )
            }
        }
    }
    match Verifier::new(&keys) {
        Ok(verifier) => Ok(Some(verifier)),
        Err(_) => invalid(FIELD, encoded.join(","), "not an Ed25519 public key:"),
    }
}

pub(super) fn key_lookup(raw: RawKeyLookup) -> Result<KeyLookup, ConfigError> {
    check_target(
        ("key_lookup.cluster", "key_lookup.path_prefix"),
        &raw.cluster,
        &raw.path_prefix,
    )?;
    if raw.timeout_ms == 0 {
        return invalid("key_lookup.timeout_ms", 0, "must be positive, got");
    }
    let bounded = |field, value: u32, max: u32| {
        if value == 0 || value > max {
            invalid(field, value, "must be between 1 and its maximum (cache_size 100000, max_in_flight 1024, max_per_second 100000), got")
        } else {
            Ok(())
        }
    };
    bounded("key_lookup.cache_size", raw.cache_size, 100_000)?;
    bounded("key_lookup.max_in_flight", raw.max_in_flight, 1024)?;
    bounded("key_lookup.max_per_second", raw.max_per_second, 100_000)?;
    Ok(KeyLookup {
        authority: raw.authority.unwrap_or_else(|| raw.cluster.clone()),
        cluster: raw.cluster,
        path_prefix: raw.path_prefix,
        timeout_ms: raw.timeout_ms,
        ttl_ms: raw.ttl_ms,
        negative_ttl_ms: raw.negative_ttl_ms,
        cache_size: raw.cache_size,
        max_in_flight: raw.max_in_flight,
        max_per_second: raw.max_per_second,
    })
}
