//! A request as a gateway hands it over: arbitrary method, host, path bytes
//! and headers, extracted by `Request::from_parts` and decided by `decide`
//! against the demo snapshot.
//!
//! Input: one byte of options (bits 0-1 the gateway's environment, bit 2
//! case-insensitive paths, bit 3 a second API key header and no user
//! header, bits 4-7 the clock), then NUL-separated fields: method, host,
//! path, and header names and values alternately.
//!
//! Invariants (tests/robustness.rs): no annotation outside
//! `STRIPPED_HEADERS`, none twice, none with a control byte; neither the
//! forwarded nor the denied path keeps an `apikey` parameter; the canonical
//! path has no `//`, no `.`/`..` segment and nothing step 1 refuses; an
//! enforce-mode deny sets no annotation; deciding twice gives one answer;
//! the compiled demo read per request (`decode_for`) decides alike.

use super::common;
use tenantgate_policy::binary::{self, Wanted};
use tenantgate_policy::{self as policy, PathCase, Request, Sources};

/// The sources of an options byte.
pub fn sources(options: u8) -> Sources {
    let mut sources = Sources::default();
    if options & 0b0100 != 0 {
        sources.path_case = PathCase::Insensitive;
    }
    if options & 0b1000 != 0 {
        sources.api_key_headers.push("x-key".into());
        sources.user_header = None;
    }
    sources
}

pub fn run(data: &[u8]) {
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let fields = common::fields(rest);
    let field = |i: usize| fields.get(i).copied().unwrap_or_default();
    let method = common::lossy(field(0));
    let host = common::lossy(field(1));
    let path = field(2);
    let headers: Vec<(&[u8], &[u8])> = fields
        .get(3..)
        .unwrap_or_default()
        .chunks(2)
        .map(|pair| {
            (
                pair.first().copied().unwrap_or_default(),
                pair.get(1).copied().unwrap_or_default(),
            )
        })
        .collect();
    let sources = sources(options);
    let request = Request::from_parts(&sources, &method, &host, path, &headers);
    check_request(&sources, &request, options);
}

/// Decides `request` against the demo and checks every invariant.
pub fn check_request(sources: &Sources, request: &Request<'_>, options: u8) {
    common::check_canonical(request);
    let snapshot = common::demo();
    let now = common::now(options >> 4);
    let environment = common::environment(options);
    let decision = policy::decide(snapshot, request, &policy::Context::new(now, environment));
    common::check_decision(request, &sources.api_key_query, &decision, true);
    let again = policy::decide(snapshot, request, &policy::Context::new(now, environment));
    let expected = common::explain(&decision);
    assert_eq!(
        expected,
        common::explain(&again),
        "deciding twice gave two answers"
    );
    let partial = match binary::decode_for(common::demo_compiled(), &Wanted::of(request)) {
        Ok(partial) => partial,
        Err(e) => panic!("decode_for refuses the demo: {e}"),
    };
    let part = policy::decide(&partial, request, &policy::Context::new(now, environment));
    assert_eq!(
        expected,
        common::explain(&part),
        "decode_for decides otherwise"
    );
}
