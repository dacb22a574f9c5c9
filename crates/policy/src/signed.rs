//! Signed snapshots (an extension of the contract): a snapshot, JSON or
//! compiled, wrapped with an Ed25519 signature, so that a compromised policy
//! host or CDN cannot open the gateway. The signature travels inside the file
//! (`policyctl sign` writes it), so any static server, nginx, S3 or a CDN can
//! host it; no response header is involved.
//!
//! Layout (little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `TGSIGNED` |
//! | 1 | version (1) |
//! | 8 | key id: the first 8 bytes of SHA-256 of the public key |
//! | 8 | sequence: grows with every signed snapshot (`policyctl sign` uses the signing time in ms) |
//! | 2 + n | the payload's revision |
//! | 64 | Ed25519 signature of `CONTEXT`, every byte above, and SHA-256 of the payload |
//! | rest | the payload: a snapshot in JSON or compiled form |
//!
//! The signature covers the revision and the sequence: a filter that has
//! accepted sequence `s` refuses anything older, so a host replaying an old
//! signed snapshot (one that still lists a revoked key) is refused too. The
//! payload's own revision must equal the signed one.

use sha2::{Digest, Sha256};

/// The first bytes of a signed snapshot.
pub const MAGIC: &[u8; 8] = b"TGSIGNED";
const VERSION: u8 = 1;
/// Domain separation: a signature made for anything else never verifies here.
const CONTEXT: &[u8] = b"tenantgate signed snapshot v1\0";
const SIGNATURE_LEN: usize = 64;

/// Why a signed snapshot is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedError {
    /// The bytes are not a signed snapshot of this version, or are cut short.
    #[error("signed snapshot is malformed: {0}")]
    Malformed(&'static str),
    /// Signed with a key that is not configured (its id, hex).
    #[error("signed with key `{0}`, which is not among the configured public keys")]
    UnknownKey(String),
    /// The signature does not verify: the bytes were changed after signing.
    #[error("the signature does not verify")]
    BadSignature,
    /// The payload's revision is not the signed one.
    #[error("the snapshot's revision is not the signed revision")]
    RevisionMismatch,
    /// Public keys are configured and the snapshot is not signed.
    #[error("the snapshot is not signed and public keys are configured")]
    Unsigned,
    /// A public key in the configuration is not a valid Ed25519 key.
    #[error("not an Ed25519 public key")]
    InvalidKey,
}

/// A parsed signed snapshot, borrowed from its bytes.
#[derive(Debug, Clone)]
pub struct Signed<'b> {
    /// The signing key's id ([`key_id`]): picks the public key.
    pub key_id: [u8; 8],
    /// Strictly increasing per signer: a replayed older snapshot is refused.
    pub sequence: u64,
    /// The payload's revision, readable before the payload is decoded.
    pub revision: &'b str,
    signature: [u8; SIGNATURE_LEN],
    /// Magic through revision: what the signature covers besides the payload.
    header: &'b [u8],
    /// The compiled snapshot the signature covers.
    pub payload: &'b [u8],
}

/// Whether `bytes` are a signed snapshot.
pub fn is_signed(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The id of a public key as it appears in signed snapshots.
pub fn key_id(public_key: &[u8; 32]) -> [u8; 8] {
    let digest: [u8; 32] = Sha256::digest(public_key).into();
    let mut id = [0u8; 8];
    id.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    id
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn split(bytes: &[u8], at: usize) -> Result<(&[u8], &[u8]), SignedError> {
    if bytes.len() < at {
        return Err(SignedError::Malformed("truncated"));
    }
    Ok(bytes.split_at(at))
}

/// Reads the envelope (without verifying it).
pub fn parse(bytes: &[u8]) -> Result<Signed<'_>, SignedError> {
    let (magic, rest) = split(bytes, MAGIC.len())?;
    if magic != MAGIC {
        return Err(SignedError::Malformed("not a signed snapshot"));
    }
    let (version, rest) = split(rest, 1)?;
    if version != [VERSION] {
        return Err(SignedError::Malformed("unknown version"));
    }
    let (key, rest) = split(rest, 8)?;
    let (sequence, rest) = split(rest, 8)?;
    let (length, rest) = split(rest, 2)?;
    let length = u16::from_le_bytes(length.try_into().unwrap_or([0; 2]));
    let (revision, rest) = split(rest, usize::from(length))?;
    let revision = std::str::from_utf8(revision).map_err(|_| SignedError::Malformed("revision"))?;
    let (signature, payload) = split(rest, SIGNATURE_LEN)?;
    let header_len = bytes.len() - rest.len();
    Ok(Signed {
        key_id: key.try_into().unwrap_or([0; 8]),
        sequence: u64::from_le_bytes(sequence.try_into().unwrap_or([0; 8])),
        revision,
        signature: signature.try_into().unwrap_or([0; SIGNATURE_LEN]),
        header: bytes.get(..header_len).unwrap_or_default(),
        payload,
    })
}

/// What the signature is computed over.
fn message(header: &[u8], payload: &[u8]) -> Vec<u8> {
    message_of_digest(header, &Sha256::digest(payload).into())
}

/// [`message`], the payload's SHA-256 computed as it arrived.
fn message_of_digest(header: &[u8], payload_digest: &[u8; 32]) -> Vec<u8> {
    let mut message = Vec::with_capacity(CONTEXT.len() + header.len() + 32);
    message.extend_from_slice(CONTEXT);
    message.extend_from_slice(header);
    message.extend_from_slice(payload_digest);
    message
}

/// The envelope of a signed snapshot whose payload is still arriving: what
/// [`Verifier::verify_digest`] checks once the payload's SHA-256 is known.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The signing key's id ([`key_id`]).
    pub key_id: [u8; 8],
    /// The signed sequence.
    pub sequence: u64,
    /// The payload's signed revision.
    pub revision: String,
    signature: [u8; SIGNATURE_LEN],
    header: Vec<u8>,
}

/// Reads the envelope at the start of `bytes`, and where its payload
/// starts; `Ok(None)` while `bytes` end before the envelope does.
pub fn parse_envelope(bytes: &[u8]) -> Result<Option<(Envelope, usize)>, SignedError> {
    match parse(bytes) {
        Ok(signed) => Ok(Some((
            Envelope {
                key_id: signed.key_id,
                sequence: signed.sequence,
                revision: signed.revision.to_string(),
                signature: signed.signature,
                header: signed.header.to_vec(),
            },
            signed.header.len() + SIGNATURE_LEN,
        ))),
        Err(SignedError::Malformed("truncated")) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The configured public keys (several during a key rotation).
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<([u8; 8], ed25519_dalek::VerifyingKey)>,
}

impl Verifier {
    /// From raw 32-byte Ed25519 public keys.
    pub fn new(public_keys: &[[u8; 32]]) -> Result<Verifier, SignedError> {
        let mut keys = Vec::with_capacity(public_keys.len());
        for key in public_keys {
            let verifying = ed25519_dalek::VerifyingKey::from_bytes(key)
                .map_err(|_| SignedError::InvalidKey)?;
            keys.push((key_id(key), verifying));
        }
        Ok(Verifier { keys })
    }

    /// Checks the signature of `signed` with the configured key it names.
    pub fn verify(&self, signed: &Signed<'_>) -> Result<(), SignedError> {
        let message = message(signed.header, signed.payload);
        self.verify_message(&signed.key_id, &signed.signature, &message)
    }

    /// Checks the signature of `envelope` over a payload whose SHA-256 is
    /// `payload_digest` (computed as the payload arrived).
    pub fn verify_digest(
        &self,
        envelope: &Envelope,
        payload_digest: &[u8; 32],
    ) -> Result<(), SignedError> {
        let message = message_of_digest(&envelope.header, payload_digest);
        self.verify_message(&envelope.key_id, &envelope.signature, &message)
    }

    fn verify_message(
        &self,
        key_id: &[u8; 8],
        signature: &[u8; SIGNATURE_LEN],
        message: &[u8],
    ) -> Result<(), SignedError> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or_else(|| SignedError::UnknownKey(hex(key_id)))?;
        let signature = ed25519_dalek::Signature::from_bytes(signature);
        key.verify_strict(message, &signature)
            .map_err(|_| SignedError::BadSignature)
    }
}

/// Signs `payload` (a snapshot whose revision is `revision`) as sequence
/// `sequence` with the Ed25519 key whose 32-byte seed is `seed`.
pub fn sign(payload: &[u8], revision: &str, sequence: u64, seed: &[u8; 32]) -> Vec<u8> {
    use ed25519_dalek::Signer;
    let key = ed25519_dalek::SigningKey::from_bytes(seed);
    let revision = revision.as_bytes();
    let length = u16::try_from(revision.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(payload.len() + 128);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&key_id(&key.verifying_key().to_bytes()));
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(revision.get(..usize::from(length)).unwrap_or(revision));
    let signature = key.sign(&message(&out, payload));
    out.extend_from_slice(&signature.to_bytes());
    out.extend_from_slice(payload);
    out
}

/// The public key of a signing key seed.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SEED: [u8; 32] = [7; 32];
    const OTHER: [u8; 32] = [9; 32];

    #[test]
    fn a_signed_snapshot_verifies_with_its_key_only() {
        let signed = sign(b"{\"revision\":\"r2\"}", "r2", 42, &SEED);
        let parsed = parse(&signed).unwrap();
        assert_eq!((parsed.sequence, parsed.revision), (42, "r2"));
        assert_eq!(parsed.payload, b"{\"revision\":\"r2\"}");
        let both = Verifier::new(&[public_key(&OTHER), public_key(&SEED)]).unwrap();
        assert_eq!(both.verify(&parsed), Ok(()));
        let other = Verifier::new(&[public_key(&OTHER)]).unwrap();
        assert!(matches!(
            other.verify(&parsed),
            Err(SignedError::UnknownKey(_))
        ));
    }

    #[test]
    fn every_changed_byte_breaks_the_signature_or_the_envelope() {
        let signed = sign(b"payload bytes", "r1", 7, &SEED);
        let verifier = Verifier::new(&[public_key(&SEED)]).unwrap();
        for i in 0..signed.len() {
            let mut changed = signed.clone();
            changed[i] ^= 0x01;
            let outcome = parse(&changed).and_then(|p| verifier.verify(&p));
            assert!(outcome.is_err(), "byte {i} changed and still verified");
        }
        for cut in 0..signed.len() - b"payload bytes".len() {
            assert!(parse(&signed[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_signature_of_another_payload_does_not_transfer() {
        let a = sign(b"A", "r1", 1, &SEED);
        let b = sign(b"B", "r1", 1, &SEED);
        let mut spliced = a[..a.len() - 1].to_vec();
        spliced.push(b'B');
        let verifier = Verifier::new(&[public_key(&SEED)]).unwrap();
        assert_eq!(
            verifier.verify(&parse(&spliced).unwrap()),
            Err(SignedError::BadSignature)
        );
        assert_eq!(verifier.verify(&parse(&b).unwrap()), Ok(()));
    }
}
