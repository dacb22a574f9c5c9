//! A snapshot taken in as it arrives, part after part (issue 12): a compiled
//! one, signed or not, has its key table cut into key buckets on the way
//! ([`StreamCut`]), so that the fetching VM holds the rest of it and never
//! the whole; anything else (JSON) is kept whole and loaded as before
//! ([`load_verified_split`](crate::load_verified_split)).
//!
//! A signed snapshot's payload is hashed as it arrives, and the signature is
//! checked over that digest before anything kept is decoded, as
//! `load_verified_split` checks it before loading.

use crate::binary::tier::{Apps, KeyCut, StreamCut, Streamed, TierSink};
use crate::binary::{is_binary, DecodeError};
use crate::error::{LoadError, SyntaxError};
use crate::signed::{self, Envelope, SignedError, Verifier};
use crate::snapshot::Snapshot;
use sha2::{Digest, Sha256};

/// The most bytes read before telling what a snapshot is: a signed
/// envelope (its revision at most 65,535 bytes) and a payload's magic.
const OPENING_LIMIT: usize = 80 * 1024;

/// A snapshot of a known size being taken in.
pub struct Intake {
    total: usize,
    generation: u64,
    apps: Apps,
    /// The buffer for what is kept (the last round's, for its capacity).
    spare: Vec<u8>,
    state: State,
}

enum State {
    /// Too few bytes yet to tell a compiled snapshot from anything else.
    Opening(Vec<u8>),
    /// Not a compiled snapshot: kept whole.
    Whole(Vec<u8>),
    /// A compiled snapshot, with the envelope and running digest if signed.
    Cut {
        envelope: Option<Box<(Envelope, Sha256)>>,
        cut: Box<StreamCut>,
    },
}

/// What the opening bytes tell.
enum Told {
    NotYet,
    Whole,
    /// A compiled payload, starting at byte `at`, signed or not.
    Compiled {
        envelope: Option<Envelope>,
        at: usize,
    },
}

/// A snapshot taken in whole.
pub enum Arrived {
    /// Not streamed: load it with [`crate::load_verified_split`].
    Whole(Vec<u8>),
    /// Streamed, its signature (if any) checked: [`Taken::decode`] it.
    Cut(Taken),
}

/// What a stream kept of a compiled snapshot, and its signed envelope.
pub struct Taken {
    streamed: Streamed,
    envelope: Option<Envelope>,
}

fn syntax(message: String) -> LoadError {
    LoadError::Syntax(SyntaxError { message })
}

fn corrupt(e: DecodeError) -> LoadError {
    syntax(e.to_string())
}

fn refused(e: SignedError) -> LoadError {
    syntax(e.to_string())
}

impl Intake {
    /// A snapshot of `total` bytes, its buckets of `generation` (drawn at
    /// random for each round), its apps moving into the tier or not;
    /// `buffer` (emptied, its capacity kept) holds what is kept.
    pub fn new(total: usize, generation: u64, apps: Apps, mut buffer: Vec<u8>) -> Intake {
        buffer.clear();
        Intake {
            total,
            generation,
            apps,
            spare: buffer,
            state: State::Opening(Vec::new()),
        }
    }

    /// Takes the next bytes; key buckets finished go to `sink`.
    pub fn push(&mut self, bytes: &[u8], sink: &mut dyn TierSink) -> Result<(), LoadError> {
        match &mut self.state {
            // Told from the part itself when it can be (no copy of it).
            State::Opening(opening) if opening.is_empty() => self.open(bytes, sink),
            State::Opening(opening) => {
                opening.extend_from_slice(bytes);
                let opening = std::mem::take(opening);
                self.open(&opening, sink)
            }
            State::Whole(body) => {
                body.extend_from_slice(bytes);
                Ok(())
            }
            State::Cut { envelope, cut } => {
                if let Some(signed) = envelope {
                    signed.1.update(bytes);
                }
                cut.push(bytes, sink).map_err(corrupt)
            }
        }
    }

    /// Goes on from the opening bytes (all received so far), once they tell.
    fn open(&mut self, opening: &[u8], sink: &mut dyn TierSink) -> Result<(), LoadError> {
        match self.tell(opening) {
            Told::NotYet => {
                self.state = State::Opening(opening.to_vec());
                Ok(())
            }
            Told::Whole => {
                let mut body = std::mem::take(&mut self.spare);
                // Reserved once for the whole; refused, not aborted, when the
                // memory cannot grow that far.
                body.try_reserve_exact(self.total).map_err(|_| {
                    syntax(format!(
                        "cannot reserve {} bytes for the snapshot",
                        self.total
                    ))
                })?;
                body.extend_from_slice(opening);
                self.state = State::Whole(body);
                Ok(())
            }
            Told::Compiled { envelope, at } => {
                let spare = std::mem::take(&mut self.spare);
                let cut = Box::new(StreamCut::new(
                    self.total.saturating_sub(at),
                    self.generation,
                    self.apps,
                    spare,
                ));
                let envelope = envelope.map(|e| Box::new((e, Sha256::new())));
                self.state = State::Cut { envelope, cut };
                self.push(opening.get(at..).unwrap_or_default(), sink)
            }
        }
    }

    fn tell(&self, opening: &[u8]) -> Told {
        // Everything has arrived, or more would not tell: decide now.
        let last = opening.len() >= self.total.min(OPENING_LIMIT);
        let (envelope, at) = if signed::is_signed(opening) {
            match signed::parse_envelope(opening) {
                Ok(Some((envelope, at))) => (Some(envelope), at),
                Ok(None) if !last => return Told::NotYet,
                // The loader reports what is wrong with it.
                _ => return Told::Whole,
            }
        } else {
            (None, 0)
        };
        let payload = opening.get(at..).unwrap_or_default();
        if payload.len() < 8 && !last {
            Told::NotYet
        } else if is_binary(payload) {
            Told::Compiled { envelope, at }
        } else {
            Told::Whole
        }
    }

    /// After the last byte: a whole body to load, or a stream's kept bytes
    /// whose checksum matched and whose signature `verifier` accepted
    /// (required if given).
    pub fn finish(self, verifier: Option<&Verifier>) -> Result<Arrived, LoadError> {
        let (envelope, cut) = match self.state {
            State::Opening(body) | State::Whole(body) => return Ok(Arrived::Whole(body)),
            State::Cut { envelope, cut } => (envelope, cut),
        };
        let envelope = match (envelope, verifier) {
            (None, Some(_)) => return Err(refused(SignedError::Unsigned)),
            (None, None) => None,
            (Some(signed), verifier) => {
                let (envelope, digest) = *signed;
                if let Some(verifier) = verifier {
                    let digest: [u8; 32] = digest.finalize().into();
                    verifier
                        .verify_digest(&envelope, &digest)
                        .map_err(refused)?;
                }
                Some(envelope)
            }
        };
        let streamed = cut.finish().map_err(corrupt)?;
        Ok(Arrived::Cut(Taken { streamed, envelope }))
    }
}

impl Taken {
    /// The snapshot without its keys (and apps, with [`Apps::Move`]), the
    /// cut that writes the rest of its tier, and its signed sequence.
    pub fn decode(&self) -> Result<(Snapshot, KeyCut<'_>, Option<u64>), LoadError> {
        let (snapshot, cut) = self.streamed.decode().map_err(corrupt)?;
        let sequence = match &self.envelope {
            Some(envelope) if envelope.revision != snapshot.revision() => {
                return Err(refused(SignedError::RevisionMismatch))
            }
            Some(envelope) => Some(envelope.sequence),
            None => None,
        };
        Ok((snapshot, cut, sequence))
    }

    /// How many bytes the stream kept (about what the snapshot it decodes
    /// to encodes to).
    pub fn kept_len(&self) -> usize {
        self.streamed.kept_len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::binary::encode;
    use crate::signed::{public_key, sign};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SEED: [u8; 32] = [3; 32];

    fn snapshot_json(keys: usize) -> String {
        crate::generate::generate(5, keys, 2).to_string()
    }

    /// Takes `bytes` in parts of `part` bytes; the key buckets written.
    fn take_in(
        bytes: &[u8],
        part: usize,
        verifier: Option<&Verifier>,
    ) -> (Result<Arrived, LoadError>, usize) {
        let mut intake = Intake::new(bytes.len(), 4, Apps::Move, Vec::new());
        let mut sink = crate::binary::tier::MemoryTier::default();
        for chunk in bytes.chunks(part) {
            if let Err(e) = intake.push(chunk, &mut sink) {
                return (Err(e), sink.keys.len());
            }
        }
        (intake.finish(verifier), sink.keys.len())
    }

    /// The intake's outcome as `load_verified_split`'s would be: the
    /// snapshot's bytes and sequence, or refused.
    fn outcome(
        bytes: &[u8],
        part: usize,
        verifier: Option<&Verifier>,
    ) -> Result<(Vec<u8>, Option<u64>, bool), String> {
        match take_in(bytes, part, verifier)
            .0
            .map_err(|e| e.to_string())?
        {
            Arrived::Whole(body) => {
                let ((snapshot, _), sequence) =
                    crate::load_verified_split(&body, verifier, 4, Apps::Move)
                        .map_err(|e| e.to_string())?;
                Ok((encode(&snapshot), sequence, false))
            }
            Arrived::Cut(taken) => {
                let (snapshot, _, sequence) = taken.decode().map_err(|e| e.to_string())?;
                Ok((encode(&snapshot), sequence, true))
            }
        }
    }

    fn whole(bytes: &[u8], verifier: Option<&Verifier>) -> Result<(Vec<u8>, Option<u64>), String> {
        crate::load_verified_split(bytes, verifier, 4, Apps::Move)
            .map(|((snapshot, _), sequence)| (encode(&snapshot), sequence))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_signed_compiled_snapshot_is_streamed_and_its_signature_checked() {
        let snapshot = crate::load_snapshot(&snapshot_json(300)).unwrap();
        let compiled = encode(&snapshot);
        let signed = sign(&compiled, snapshot.revision(), 77, &SEED);
        let verifier = Verifier::new(&[public_key(&SEED)]).unwrap();
        for part in [1, 5, 100, 8_192, signed.len()] {
            let (bytes, sequence, streamed) = outcome(&signed, part, Some(&verifier)).unwrap();
            assert!(streamed, "part {part}");
            assert_eq!(Ok((bytes, sequence)), whole(&signed, Some(&verifier)));
            assert_eq!(sequence, Some(77));
        }
        // Without public keys, a signed snapshot is unwrapped unchecked.
        assert_eq!(outcome(&signed, 64, None).unwrap().1, Some(77));
        // Another key, a changed payload byte, a changed envelope byte: refused,
        // as the whole snapshot is.
        let other = Verifier::new(&[public_key(&[4; 32])]).unwrap();
        assert!(outcome(&signed, 64, Some(&other))
            .unwrap_err()
            .contains("not among"));
        for at in [9, 30, signed.len() - compiled.len() + 20, signed.len() - 1] {
            let mut changed = signed.clone();
            changed[at] ^= 0x10;
            let streamed = outcome(&changed, 1_000, Some(&verifier));
            assert!(streamed.is_err(), "byte {at}");
            assert!(whole(&changed, Some(&verifier)).is_err());
        }
        // Unsigned while public keys are configured.
        let refused = outcome(&compiled, 1_000, Some(&verifier)).unwrap_err();
        assert!(refused.contains("not signed"), "{refused}");
    }

    #[test]
    fn a_signed_revision_other_than_the_payloads_is_refused() {
        let snapshot = crate::load_snapshot(&snapshot_json(20)).unwrap();
        let signed = sign(&encode(&snapshot), "not-its-revision", 1, &SEED);
        let verifier = Verifier::new(&[public_key(&SEED)]).unwrap();
        let refused = outcome(&signed, 256, Some(&verifier)).unwrap_err();
        assert!(refused.contains("revision"), "{refused}");
    }

    #[test]
    fn json_and_short_or_unknown_bytes_are_kept_whole_for_the_loader() {
        let json = snapshot_json(30);
        let signed_json = sign(json.as_bytes(), "r", 5, &SEED);
        for bytes in [json.as_bytes(), &signed_json[..], b"TGSIGNED\x01", b"{}"] {
            let (arrived, written) = take_in(bytes, 7, None);
            assert!(matches!(arrived, Ok(Arrived::Whole(ref b)) if b == bytes));
            assert_eq!(written, 0);
        }
        // A compiled snapshot's magic alone is refused as the loader refuses it.
        assert!(outcome(b"TGSNAP\x00\x04", 3, None)
            .unwrap_err()
            .contains("truncated"));
        let (bytes, _, streamed) = outcome(json.as_bytes(), 100, None).unwrap();
        assert!(!streamed);
        assert_eq!(Ok((bytes, None)), whole(json.as_bytes(), None));
    }
}
