//! One round of a snapshot fetch in parts (`Range: bytes=a-b`), as a pure
//! state machine; `root.rs` sends what it asks for and hands it each answer.
//!
//! Why parts: Envoy's async client (every `proxy_http_call`) buffers a
//! response body up to 32 MiB (`kBufferLimitForResponse` in
//! `source/common/http/async_client_impl.h`, runtime key
//! `http.async_response_buffer_limit`). Above it, `AsyncRequestSharedImpl::onData`
//! (`source/common/http/async_client_impl.cc`) logs "the buffer size limit for
//! async client response body has been exceeded, draining data" and resets
//! the request (Envoy 1.40 logs it from `async_client_impl.cc:430`), and the
//! wasm context (`Context::onHttpCallFailure`,
//! `source/extensions/common/wasm/context.cc`) reports it like any failure:
//! `proxy_on_http_call_response` with no headers and no body, whether the
//! reason was `ExceedResponseBufferLimit` or a reset. The filter cannot tell
//! them apart, so [`no_response`] guesses from the time taken. Measured
//! (`bench/envoy/async_limit.sh`): 33,554,432 bytes arrive, one more does
//! not. A larger snapshot can only arrive in parts.
//!
//! A round: the first request asks for `bytes=0-{chunk-1}` (with
//! `If-None-Match` as a whole fetch would). `304`: unchanged. `200`: the
//! source ignored `Range`, the body is the whole snapshot. `206` with
//! `Content-Range: bytes a-b/total`: the next parts are asked for with
//! `If-Match: <the first part's ETag>`, so that every part is of the same
//! revision, until `total` bytes are assembled. Anything that could mix
//! revisions or misplace a byte abandons the round: the last good snapshot
//! keeps serving and the next poll starts afresh.

use std::fmt;

/// The largest snapshot a round assembles. The compiled format's lengths are
/// `u32`, but a wasm32 VM must hold the assembled body, the decoded
/// snapshot and its indexes in 4 GiB of linear memory: above 1 GiB it could
/// not load it anyway, so a larger announced total is refused before any
/// byte is kept.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

/// What the next request of a round carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The `Range` header value: `bytes=a-b`.
    pub range: String,
    /// `If-None-Match` (first part only): the ETag of the snapshot serving now.
    pub if_none_match: Option<String>,
    /// `If-Match` (later parts): the ETag of the first part.
    pub if_match: Option<String>,
}

/// The headers of an answer that matter to a round.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer<'a> {
    pub status: Option<&'a [u8]>,
    pub etag: Option<&'a [u8]>,
    pub content_range: Option<&'a [u8]>,
}

/// Why a round was abandoned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Abandon {
    /// A status a round does not expect (with the part it answered).
    Status { status: String, part: u32 },
    /// `412` to `If-Match`: the snapshot changed between two parts.
    Changed { part: u32 },
    /// A later part carries another ETag than the first (If-Match ignored).
    EtagChanged { part: u32 },
    /// A later part announces another total than the first.
    TotalChanged { was: u64, now: u64 },
    /// A part that does not start where the previous one ended.
    Gap { expected: u64, got: u64 },
    /// A `206` whose `Content-Range` is missing or not `bytes a-b/total`
    /// with `a <= b < total`, or whose body is not `b - a + 1` bytes.
    BadPart { part: u32 },
    /// A `206` of a snapshot larger than one part without a strong ETag:
    /// later parts could not be tied to it.
    NoStrongEtag,
    /// A total above [`MAX_SNAPSHOT_BYTES`].
    TooLarge { total: u64 },
    /// The VM cannot reserve the announced total.
    NoMemory { total: u64 },
    /// Parts so much shorter than asked that the round would take more
    /// than twice the requests it should (a source trickling bytes).
    TooManyParts { parts: u32 },
    /// The host did not hand over the body.
    NoBody,
    /// The assembly refused a part: what it found wrong with the snapshot.
    Refused(String),
}

impl Abandon {
    /// Whether the source answered something a round cannot use (counted as
    /// an invalid fetch) rather than failed or changed meanwhile.
    pub fn invalid(&self) -> bool {
        matches!(
            self,
            Abandon::Gap { .. }
                | Abandon::BadPart { .. }
                | Abandon::NoStrongEtag
                | Abandon::TooLarge { .. }
                | Abandon::TooManyParts { .. }
                | Abandon::Refused(_)
        )
    }
}

impl fmt::Display for Abandon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Abandon::Status { status, part } => write!(f, "status {status} (part {part})"),
            Abandon::Changed { part } => write!(f, "the snapshot changed while it was fetched in parts (412 to If-Match at part {part}); the next poll fetches the new one"),
            Abandon::EtagChanged { part } => write!(f, "part {part} carries another ETag than the first (the source ignores If-Match); a mixed snapshot was refused"),
            Abandon::TotalChanged { was, now } => write!(f, "the announced size changed from {was} to {now} bytes between parts; a mixed snapshot was refused"),
            Abandon::Gap { expected, got } => write!(f, "a part starts at byte {got}, not where the previous one ended ({expected})"),
            Abandon::BadPart { part } => write!(f, "part {part}: a 206 whose Content-Range is missing, malformed or does not match its body"),
            Abandon::NoStrongEtag => f.write_str("a 206 without a strong ETag: its parts could not be tied to one revision"),
            Abandon::TooLarge { total } => write!(f, "the snapshot announces {total} bytes, above the {MAX_SNAPSHOT_BYTES} a VM can load"),
            Abandon::NoMemory { total } => write!(f, "cannot reserve {total} bytes for the snapshot"),
            Abandon::TooManyParts { parts } => write!(f, "{parts} parts, more than twice what the size needs (the source sends short parts)"),
            Abandon::NoBody => f.write_str("cannot read the response body"),
            Abandon::Refused(why) => write!(f, "the snapshot is refused while it arrives: {why}"),
        }
    }
}

/// Where a round puts the parts of a snapshot too large for one answer.
pub trait Assembly {
    /// Bytes taken so far.
    fn taken(&self) -> u64;
    /// Before the first part: the snapshot's announced size. `false` if the
    /// VM cannot take that many bytes.
    fn start(&mut self, total: u64) -> bool;
    /// The next part; an error (what is wrong with the snapshot) ends the round.
    fn take(&mut self, part: &[u8]) -> Result<(), String>;
    /// Emptied, its capacity kept, for the next round.
    fn reset(&mut self);
}

/// The parts assembled into one buffer, reserved once for the whole.
impl Assembly for Vec<u8> {
    fn taken(&self) -> u64 {
        Vec::len(self) as u64
    }
    fn start(&mut self, total: u64) -> bool {
        // Fail, not abort, when the VM cannot grow that far.
        usize::try_from(total).is_ok_and(|wanted| self.try_reserve_exact(wanted).is_ok())
    }
    fn take(&mut self, part: &[u8]) -> Result<(), String> {
        self.extend_from_slice(part);
        Ok(())
    }
    fn reset(&mut self) {
        self.clear();
    }
}

/// What comes after an answer.
#[derive(Debug)]
pub enum Step<A> {
    /// Ask for the next part ([`Round::ask`]).
    Continue(Round<A>),
    /// `304`: the snapshot serving now is current. The round's assembly,
    /// unused, for the next round.
    NotModified(A),
    /// The whole snapshot in one answer, and its ETag.
    Whole {
        body: Vec<u8>,
        etag: Option<String>,
    },
    /// The snapshot in parts, all taken by the assembly, and its ETag.
    Assembled {
        parts: A,
        etag: Option<String>,
    },
    Abandoned(Abandon),
}

/// One fetch of the snapshot, in as many parts as it takes.
#[derive(Debug)]
pub struct Round<A> {
    chunk: u64,
    if_none_match: Option<String>,
    /// From the first `206` on: its ETag and total.
    etag: Option<String>,
    total: Option<u64>,
    body: A,
    /// Answers received so far.
    parts: u32,
}

impl<A: Assembly> Round<A> {
    /// A round asking for `chunk_bytes` per part, `etag` being the snapshot
    /// serving now (sent as `If-None-Match`), its parts going to `body`
    /// (reset first). The fetcher hands back the last round's buffer, so that
    /// a snapshot of the same size is assembled where the last one was
    /// instead of in a new region (a VM's memory never shrinks, and a freed
    /// body that later allocations split would make the next one grow it
    /// again).
    pub fn new(chunk_bytes: u32, etag: Option<String>, mut body: A) -> Round<A> {
        body.reset();
        Round {
            chunk: u64::from(chunk_bytes.max(1)),
            if_none_match: etag,
            etag: None,
            total: None,
            body,
            parts: 0,
        }
    }

    /// The next request.
    pub fn ask(&self) -> Ask {
        let from = self.body.taken();
        let mut to = from + self.chunk - 1;
        if let Some(total) = self.total {
            to = to.min(total.saturating_sub(1));
        }
        Ask {
            range: format!("bytes={from}-{to}"),
            if_none_match: self
                .etag
                .is_none()
                .then(|| self.if_none_match.clone())
                .flatten(),
            if_match: self.etag.clone(),
        }
    }

    /// Where the parts go.
    pub fn assembly(&self) -> &A {
        &self.body
    }

    /// Bytes assembled so far.
    pub fn received(&self) -> u64 {
        self.body.taken()
    }

    /// Takes an answer; `body` reads its body (only for `200` and `206`).
    pub fn on_answer(mut self, answer: Answer, body: impl FnOnce() -> Option<Vec<u8>>) -> Step<A> {
        self.parts += 1;
        let part = self.parts;
        let first = self.etag.is_none();
        match answer.status {
            Some(b"304") if first => Step::NotModified(self.body),
            // A whole representation is one revision whenever it comes.
            Some(b"200") => match body() {
                Some(body) => Step::Whole {
                    body,
                    etag: answer.etag.and_then(text),
                },
                None => Step::Abandoned(Abandon::NoBody),
            },
            Some(b"206") => match body() {
                Some(body) => self.on_part(answer, body),
                None => Step::Abandoned(Abandon::NoBody),
            },
            Some(b"412") if !first => Step::Abandoned(Abandon::Changed { part }),
            status => Step::Abandoned(Abandon::Status {
                status: status.map_or("none".into(), |s| String::from_utf8_lossy(s).into()),
                part,
            }),
        }
    }

    fn on_part(mut self, answer: Answer, body: Vec<u8>) -> Step<A> {
        let part = self.parts;
        let Some((from, to, total)) = answer.content_range.and_then(content_range) else {
            return Step::Abandoned(Abandon::BadPart { part });
        };
        if to - from + 1 != body.len() as u64 {
            return Step::Abandoned(Abandon::BadPart { part });
        }
        // The whole snapshot in the first part: one response, one revision,
        // whatever its ETag (as a 200 would be).
        if self.etag.is_none() && from == 0 && to + 1 == total {
            return Step::Whole {
                body,
                etag: answer.etag.and_then(text),
            };
        }
        if let Err(why) = self.check_part(answer.etag, from, total) {
            return Step::Abandoned(why);
        }
        if let Err(why) = self.body.take(&body) {
            return Step::Abandoned(Abandon::Refused(why));
        }
        if self.received() < total {
            // Bounded work whatever the source sends: each part moves on by
            // at least a byte, and the parts are capped.
            if u64::from(part) >= 2 * total.div_ceil(self.chunk) + 2 {
                return Step::Abandoned(Abandon::TooManyParts { parts: part });
            }
            return Step::Continue(self);
        }
        Step::Assembled {
            parts: self.body,
            etag: self.etag,
        }
    }

    /// The first part fixes the ETag and the total (and reserves the whole
    /// body once); a later one must continue it exactly.
    fn check_part(&mut self, etag: Option<&[u8]>, from: u64, total: u64) -> Result<(), Abandon> {
        let part = self.parts;
        let expected = self.received();
        if from != expected {
            return Err(Abandon::Gap {
                expected,
                got: from,
            });
        }
        let etag = etag.and_then(text);
        match (&self.etag, self.total) {
            (Some(first), Some(was)) => {
                if etag.as_ref() != Some(first) {
                    return Err(Abandon::EtagChanged { part });
                }
                if total != was {
                    return Err(Abandon::TotalChanged { was, now: total });
                }
            }
            _ => {
                let etag = etag
                    .filter(|e| e.starts_with('"'))
                    .ok_or(Abandon::NoStrongEtag)?;
                if total > MAX_SNAPSHOT_BYTES {
                    return Err(Abandon::TooLarge { total });
                }
                if !self.body.start(total) {
                    return Err(Abandon::NoMemory { total });
                }
                self.etag = Some(etag);
                self.total = Some(total);
            }
        }
        Ok(())
    }
}

/// A header value kept as text: visible ASCII only (it is sent back).
fn text(value: &[u8]) -> Option<String> {
    (!value.is_empty() && value.iter().all(u8::is_ascii_graphic))
        .then(|| String::from_utf8_lossy(value).into_owned())
}

/// `bytes a-b/total` (RFC 9110 14.4) with `a <= b < total`; `None` for
/// anything else, `*` included.
pub fn content_range(value: &[u8]) -> Option<(u64, u64, u64)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (unit, rest) = value.split_once(' ')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let (range, total) = rest.trim_start().split_once('/')?;
    let (from, to) = range.split_once('-')?;
    let (from, to, total) = (number(from)?, number(to)?, number(total)?);
    (from <= to && to < total).then_some((from, to, total))
}

/// Decimal digits only (no sign, no spaces), at most 19 of them.
fn number(digits: &str) -> Option<u64> {
    let plain =
        !digits.is_empty() && digits.len() <= 19 && digits.bytes().all(|b| b.is_ascii_digit());
    plain.then(|| digits.parse().ok()).flatten()
}

/// What a callout answered with nothing (no headers: Envoy reports a reset,
/// a connection failure and a body over its buffer limit alike) most likely
/// was, from how long it took.
pub fn no_response(elapsed_ms: i64, timeout_ms: u32, chunk_bytes: u32) -> String {
    // The timeout fires at `timeout_ms`; anything well before it was not it.
    if elapsed_ms >= i64::from(timeout_ms) * 9 / 10 {
        return format!(
            "no response within the {timeout_ms} ms timeout (snapshot.remote.timeout_ms): the source is slow or unreachable"
        );
    }
    format!(
        "no response after {elapsed_ms} ms, before the {timeout_ms} ms timeout: a connection failure, or a response body over Envoy's async-client buffer limit (32 MiB by default; this round asked for {chunk_bytes}-byte parts): serve the snapshot with Range support or lower snapshot.remote.chunk_bytes"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    const CHUNK: u32 = 10;

    /// A source serving `bytes`, answering ranges: Content-Range and part.
    fn part(bytes: &[u8], ask: &Ask) -> (String, Vec<u8>) {
        let range = ask.range.strip_prefix("bytes=").unwrap();
        let (from, to) = range.split_once('-').unwrap();
        let from: usize = from.parse().unwrap();
        let to = to.parse::<usize>().unwrap().min(bytes.len() - 1);
        (
            format!("bytes {from}-{to}/{}", bytes.len()),
            bytes[from..=to].to_vec(),
        )
    }

    fn answer<'a>(status: &'a str, etag: &'a str, range: &'a str) -> Answer<'a> {
        Answer {
            status: Some(status.as_bytes()),
            etag: (!etag.is_empty()).then_some(etag.as_bytes()),
            content_range: (!range.is_empty()).then_some(range.as_bytes()),
        }
    }

    /// Runs a round against `bytes`, `tamper` editing each answer before it
    /// is handed over (part number, status, etag, content-range, body).
    fn run(
        bytes: &[u8],
        mut tamper: impl FnMut(u32, &mut String, &mut String, &mut String, &mut Vec<u8>),
    ) -> (Step<Vec<u8>>, Vec<Ask>) {
        let mut round = Round::new(CHUNK, Some("\"old\"".into()), Vec::new());
        let mut asks = Vec::new();
        for n in 1..100 {
            let ask = round.ask();
            asks.push(ask.clone());
            let (mut range, mut body) = part(bytes, &ask);
            let (mut status, mut etag) = ("206".to_string(), "\"e1\"".to_string());
            tamper(n, &mut status, &mut etag, &mut range, &mut body);
            match round.on_answer(answer(&status, &etag, &range), || Some(body)) {
                Step::Continue(next) => round = next,
                done => return (done, asks),
            }
        }
        panic!("no end")
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn parts_are_assembled_in_order_under_the_first_etag() {
        let snapshot = bytes(35);
        let (step, asks) = run(&snapshot, |_, _, _, _, _| {});
        let Step::Assembled { parts: body, etag } = step else {
            panic!("{step:?}")
        };
        assert_eq!(body, snapshot);
        assert_eq!(etag.as_deref(), Some("\"e1\""));
        let ranges: Vec<&str> = asks.iter().map(|a| a.range.as_str()).collect();
        assert_eq!(
            ranges,
            ["bytes=0-9", "bytes=10-19", "bytes=20-29", "bytes=30-34"]
        );
        assert_eq!(asks[0].if_none_match.as_deref(), Some("\"old\""));
        assert_eq!(asks[0].if_match, None);
        for later in &asks[1..] {
            assert_eq!(later.if_match.as_deref(), Some("\"e1\""));
            assert_eq!(later.if_none_match, None);
        }
    }

    #[test]
    fn a_snapshot_smaller_than_a_part_takes_one_request() {
        let (step, asks) = run(&bytes(7), |_, _, _, _, _| {});
        assert!(matches!(step, Step::Whole { ref body, .. } if body.len() == 7));
        assert_eq!(asks.len(), 1);
        let (step, asks) = run(&bytes(20), |_, _, _, _, _| {});
        assert!(matches!(step, Step::Assembled { ref parts, .. } if parts.len() == 20));
        assert_eq!(asks.len(), 2);
    }

    #[test]
    fn not_modified_and_a_source_ignoring_range() {
        let round = Round::new(CHUNK, Some("\"e1\"".into()), Vec::new());
        let step = round.on_answer(answer("304", "\"e1\"", ""), || panic!("no body read"));
        assert!(matches!(step, Step::NotModified(_)));
        let whole = bytes(50);
        let round = Round::new(CHUNK, None, Vec::<u8>::new());
        let step = round.on_answer(answer("200", "\"e2\"", ""), || Some(whole.clone()));
        let Step::Whole { body, etag } = step else {
            panic!("{step:?}")
        };
        assert_eq!((body, etag.as_deref()), (whole, Some("\"e2\"")));
    }

    #[test]
    fn a_change_between_parts_abandons_the_round() {
        // 412 to If-Match.
        let (step, _) = run(&bytes(35), |n, status, _, _, _| {
            if n == 3 {
                *status = "412".into();
            }
        });
        assert!(matches!(
            step,
            Step::Abandoned(Abandon::Changed { part: 3 })
        ));
        // If-Match ignored: another ETag.
        let (step, _) = run(&bytes(35), |n, _, etag, _, _| {
            if n == 2 {
                *etag = "\"e2\"".into();
            }
        });
        assert!(matches!(
            step,
            Step::Abandoned(Abandon::EtagChanged { part: 2 })
        ));
        // Same ETag, another total.
        let (step, _) = run(&bytes(35), |n, _, _, range, _| {
            if n == 2 {
                *range = "bytes 10-19/36".into();
            }
        });
        assert!(matches!(
            step,
            Step::Abandoned(Abandon::TotalChanged { was: 35, now: 36 })
        ));
        // A 304 after the first part is not an answer to If-Match.
        let (step, _) = run(&bytes(35), |n, status, _, _, _| {
            if n == 2 {
                *status = "304".into();
            }
        });
        assert!(matches!(
            step,
            Step::Abandoned(Abandon::Status { part: 2, .. })
        ));
    }

    #[test]
    fn a_part_out_of_place_or_malformed_abandons_the_round() {
        let (step, _) = run(&bytes(35), |n, _, _, range, body| {
            if n == 2 {
                *range = "bytes 11-20/35".into();
                body.truncate(10);
            }
        });
        assert!(matches!(
            step,
            Step::Abandoned(Abandon::Gap {
                expected: 10,
                got: 11
            })
        ));
        for bad in [
            "",
            "bytes */35",
            "bytes 0-9",
            "bytes 9-0/35",
            "bytes 0-35/35",
            "items 0-9/35",
            "bytes 0-9/+35",
            "bytes 0-9/3x",
        ] {
            let (step, _) = run(&bytes(35), |_, _, _, range, _| *range = bad.into());
            assert!(
                matches!(step, Step::Abandoned(Abandon::BadPart { part: 1 })),
                "{bad}: {step:?}"
            );
        }
        // A body longer or shorter than its Content-Range.
        let (step, _) = run(&bytes(35), |n, _, _, _, body| {
            if n == 2 {
                body.push(0);
            }
        });
        assert!(matches!(
            step,
            Step::Abandoned(Abandon::BadPart { part: 2 })
        ));
    }

    #[test]
    fn a_206_needs_a_strong_etag_and_a_loadable_total() {
        for etag in ["", "W/\"e1\"", "e1"] {
            let (step, _) = run(&bytes(35), |_, _, e, _, _| *e = etag.into());
            assert!(
                matches!(step, Step::Abandoned(Abandon::NoStrongEtag)),
                "{etag}"
            );
        }
        // One part holding the whole snapshot needs no ETag to be one revision.
        let round = Round::new(CHUNK, None, Vec::<u8>::new());
        let step = round.on_answer(answer("206", "", "bytes 0-4/5"), || Some(bytes(5)));
        assert!(matches!(step, Step::Whole { ref body, etag: None } if body.len() == 5));
        let too_large = MAX_SNAPSHOT_BYTES + 1;
        let (step, _) = run(&bytes(35), |_, _, _, range, _| {
            *range = format!("bytes 0-9/{too_large}")
        });
        assert!(matches!(step, Step::Abandoned(Abandon::TooLarge { total }) if total == too_large));
        assert!(Abandon::TooLarge { total: 1 }.invalid());
        assert!(!Abandon::Changed { part: 2 }.invalid());
    }

    #[test]
    fn a_source_trickling_short_parts_is_cut_off() {
        // 35 bytes in parts of 10 need 4 requests; 1-byte parts would need 35.
        let (step, asks) = run(&bytes(35), |_, _, _, range, body| {
            let from: usize = range["bytes ".len()..]
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            *range = format!("bytes {from}-{from}/35");
            body.truncate(1);
        });
        assert!(
            matches!(step, Step::Abandoned(Abandon::TooManyParts { parts: 10 })),
            "{step:?}"
        );
        assert_eq!(asks.len(), 10);
        // Somewhat short parts still complete.
        let (step, _) = run(&bytes(35), |_, _, _, range, body| {
            let from: usize = range["bytes ".len()..]
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let to = (from + 5).min(34);
            *range = format!("bytes {from}-{to}/35");
            body.truncate(to - from + 1);
        });
        assert!(
            matches!(step, Step::Assembled { ref parts, .. } if *parts == bytes(35)),
            "{step:?}"
        );
    }

    /// Takes parts until one holds a zero byte (as a stream refuses a
    /// snapshot it finds wrong while it arrives).
    #[derive(Debug, Default)]
    struct NoZeros(Vec<u8>);

    impl Assembly for NoZeros {
        fn taken(&self) -> u64 {
            self.0.len() as u64
        }
        fn start(&mut self, _total: u64) -> bool {
            true
        }
        fn take(&mut self, part: &[u8]) -> Result<(), String> {
            if part.contains(&0) {
                return Err("a zero".into());
            }
            self.0.extend_from_slice(part);
            Ok(())
        }
        fn reset(&mut self) {
            self.0.clear();
        }
    }

    #[test]
    fn a_part_the_assembly_refuses_ends_the_round_as_invalid() {
        let mut round = Round::new(CHUNK, None, NoZeros::default());
        let snapshot: Vec<u8> = (1..=35).collect();
        let mut zero = snapshot.clone();
        zero[12] = 0;
        for n in 0.. {
            let ask = round.ask();
            let (range, body) = part(&zero, &ask);
            match round.on_answer(answer("206", "\"z\"", &range), || Some(body)) {
                Step::Continue(next) => round = next,
                Step::Abandoned(why) => {
                    assert_eq!(why, Abandon::Refused("a zero".into()));
                    assert!(why.invalid());
                    assert_eq!(n, 1, "the second part holds the zero");
                    return;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn other_statuses_and_a_missing_body_abandon_the_round() {
        for status in ["404", "416", "500", "412"] {
            let round = Round::new(CHUNK, None, Vec::<u8>::new());
            let step = round.on_answer(answer(status, "", ""), || panic!("no body read"));
            assert!(
                matches!(step, Step::Abandoned(Abandon::Status { part: 1, .. })),
                "{status}"
            );
        }
        let round = Round::new(CHUNK, None, Vec::<u8>::new());
        let step = round.on_answer(answer("206", "\"e\"", "bytes 0-9/20"), || None);
        assert!(matches!(step, Step::Abandoned(Abandon::NoBody)));
    }

    #[test]
    fn content_range_forms() {
        assert_eq!(content_range(b"bytes 0-9/10"), Some((0, 9, 10)));
        assert_eq!(content_range(b"Bytes  5-5/6"), Some((5, 5, 6)));
        assert_eq!(content_range(b"bytes 0-0/99999999999999999999"), None);
        assert_eq!(content_range(b"bytes -1-9/10"), None);
        assert_eq!(content_range(b"bytes 0 - 9/10"), None);
    }

    #[test]
    fn no_response_names_the_likely_cause() {
        let early = no_response(120, 2000, 8 << 20);
        assert!(
            early.contains("buffer limit") && early.contains("chunk_bytes"),
            "{early}"
        );
        let late = no_response(2000, 2000, 8 << 20);
        assert!(
            late.contains("timeout") && !late.contains("buffer"),
            "{late}"
        );
    }
}
