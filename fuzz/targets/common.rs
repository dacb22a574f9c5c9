//! What the targets share: the demo world, the invariants of a decision
//! (those of `tests/robustness.rs`), and requests derived from an input.
//!
//! Every check panics with a message naming what broke: libFuzzer reports a
//! panic as a crash, the replay test as a failure.

use std::borrow::Cow;
use std::sync::OnceLock;
use tenantgate_policy::binary::{self, Wanted};
use tenantgate_policy::text::principal_text;
use tenantgate_policy::{
    self as policy, Decision, LoadError, Mode, PathCase, Request, Snapshot, Sources, Timestamp,
    Verdict, STRIPPED_HEADERS,
};
use tenantgate_policy::{GatewayCaller, GatewayLocation};

pub const DEMO: &str = include_str!("../../policies/demo.json");

/// The demo snapshot, loaded once.
pub fn demo() -> &'static Snapshot {
    static DEMO_SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    DEMO_SNAPSHOT.get_or_init(|| match policy::load_snapshot(DEMO) {
        Ok(snapshot) => snapshot,
        Err(e) => panic!("policies/demo.json does not load: {e}"),
    })
}

/// The demo snapshot compiled (`policyctl compile`).
pub fn demo_compiled() -> &'static [u8] {
    static DEMO_BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    DEMO_BYTES.get_or_init(|| binary::encode(demo()))
}

/// The raw API keys of the demo, so that derived requests reach its keys.
pub const DEMO_KEYS: &[&str] = &[
    "demo-storefront-key",
    "demo-storefront-staging-key",
    "demo-revoked-key",
    "demo-expired-key",
    "demo-pending-key",
    "demo-ops-key",
    "demo-readonly-key",
    "demo-legacy-app-key",
    "demo-initech-key",
    "demo-umbrella-key",
];

pub const DEMO_USERS: &[&str] = &["alice", "pat", "bob", "frank", "carol", "dave", "erin"];

pub const DEMO_ORGS: &[&str] = &[
    "acme",
    "research",
    "retail",
    "initech",
    "hooli",
    "umbrella",
    "acme-corp",
    "research-dept",
];

pub const DEMO_PATHS: &[&str] = &[
    "/orders/1",
    "/orders/admin/x",
    "/catalog",
    "/health",
    "/status",
    "/research/x",
    "/workspace/a",
    "/profile",
    "/billing/1",
    "/",
];

const METHODS: &[&str] = &["GET", "POST", "DELETE", "HEAD", "PUT", "OPTIONS"];

/// A clock for a selector: around the demo's expiry dates, and the extremes.
pub fn now(selector: u8) -> Timestamp {
    const SECONDS: [i64; 8] = [
        1_795_996_800, // 2026-12-01, the decision table's clock
        1_577_836_800, // 2020-01-01
        1_893_456_000, // 2030-01-01
        1_767_225_600, // 2026-01-01
        1_798_675_200, // 2027-01-01
        0,
        -1,
        4_102_444_800, // 2100-01-01
    ];
    match selector % 10 {
        8 => Timestamp::from_unix_nanos(i64::MIN),
        9 => Timestamp::from_unix_nanos(i64::MAX),
        n => Timestamp::from_unix_seconds(SECONDS.get(usize::from(n)).copied().unwrap_or(0)),
    }
}

/// The gateway's configured environment for a selector.
pub fn environment(selector: u8) -> Option<&'static str> {
    [None, Some("prod"), Some("staging"), Some("dev")]
        .get(usize::from(selector % 4))
        .copied()
        .flatten()
}

/// Panics when `message` has a control character (a line break among them):
/// a problem message is one line, whatever the input held.
pub fn assert_one_line(what: &str, message: &str) {
    if let Some(c) = message.chars().find(|c| c.is_control()) {
        panic!("{what}: message has control character {c:?}: {message:?}");
    }
}

/// Every problem of a load error is one line.
pub fn check_load_error(error: &LoadError) {
    for problem in error.problems() {
        assert_one_line("load error", &problem);
    }
}

/// `bytes` as text, invalid UTF-8 replaced (methods and hosts are `&str`).
pub fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// `%XX` decoded and `+` read as a space, as the filter reads query names.
fn percent_decode(text: &[u8]) -> Vec<u8> {
    let hex = |b: Option<&u8>| b.and_then(|c| char::from(*c).to_digit(16));
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while let Some(&b) = text.get(i) {
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (hex(text.get(i + 1)), hex(text.get(i + 2))) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// Whether the query of `path` has a parameter named `name`, raw or
/// percent-encoded.
pub fn has_param(path: &[u8], name: &[u8]) -> bool {
    if name.is_empty() {
        return false;
    }
    let Some(at) = path.iter().position(|&b| b == b'?') else {
        return false;
    };
    path.get(at + 1..)
        .unwrap_or_default()
        .split(|&b| b == b'&')
        .any(|pair| {
            let key = pair.split(|&b| b == b'=').next().unwrap_or(pair);
            key == name || percent_decode(key) == name
        })
}

/// The canonical path of a request (spec §3 step 1, contract v1.1): a path
/// with an encoded dot, slash, backslash or NUL, a raw backslash or control
/// byte is refused; a canonical path has no empty, `.` or `..` segment, no
/// backslash, control byte or `;` parameter, and letters folded when asked.
///
/// (A canonical path may hold `%2e` spelled `%2%65` in the request: only an
/// upstream that decodes twice reads a dot there, as it does in `%252e`.)
pub fn check_canonical(request: &Request<'_>) {
    let raw = request.path_only();
    let refused = raw.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'\\')
        || [&b"%2e"[..], b"%2f", b"%5c", b"%00"]
            .iter()
            .any(|encoded| raw.windows(3).any(|w| w.eq_ignore_ascii_case(encoded)));
    if refused {
        assert!(
            request.route_path.is_err(),
            "step 1 accepts {:?}",
            lossy(raw)
        );
    }
    let Ok(path) = &request.route_path else {
        return;
    };
    let path: &[u8] = path;
    let shown = lossy(path);
    assert!(
        !path.windows(2).any(|w| w == b"//"),
        "canonical path keeps `//`: {shown:?}"
    );
    assert!(
        !path
            .split(|&b| b == b'/')
            .any(|segment| segment == b"." || segment == b".."),
        "canonical path keeps a dot segment: {shown:?}"
    );
    assert!(
        !path
            .iter()
            .any(|&b| b < 0x20 || b == 0x7f || b == b'\\' || b == b';'),
        "canonical path keeps a control byte, `\\` or `;`: {shown:?}"
    );
    if request.path_case == PathCase::Insensitive {
        // Upper-case letters only as the hex digits of an escape.
        let is_hex = |i: usize| path.get(i).is_some_and(u8::is_ascii_hexdigit);
        let mut i = 0;
        while let Some(&b) = path.get(i) {
            if b == b'%' && is_hex(i + 1) && is_hex(i + 2) {
                i += 3;
                continue;
            }
            assert!(
                !b.is_ascii_uppercase(),
                "case-folded path keeps an upper-case letter: {shown:?}"
            );
            i += 1;
        }
    }
}

/// The properties of one decision (tests/robustness.rs `check_decision`):
/// annotations are stripped headers, each once; neither a forwarded nor a
/// denied path keeps the API key parameter; enforce answers deny locally
/// with the reason's status and body and sets no annotation; audit never
/// answers and marks a deny; an allow carries the revision (and the
/// principal, but on a public route). With `clean_values`, annotation
/// values hold no control byte (the snapshot was validated).
pub fn check_decision(
    request: &Request<'_>,
    query_name: &str,
    decision: &Decision<'_>,
    clean_values: bool,
) {
    let query_name = query_name.as_bytes();
    for mode in [Mode::Enforce, Mode::Audit] {
        let annotations = decision.annotations(mode);
        for (name, value) in &annotations {
            assert!(
                STRIPPED_HEADERS.contains(name),
                "{mode:?}: annotation `{name}` is not a stripped header"
            );
            if clean_values {
                assert!(
                    !value.bytes().any(|b| b < 0x20 || b == 0x7f),
                    "{mode:?}: annotation `{name}` has a control byte: {value:?}"
                );
            }
        }
        let mut names: Vec<&str> = annotations.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            annotations.len(),
            "{mode:?}: repeated annotation in {annotations:?}"
        );
        match decision.verdict(mode) {
            Verdict::Respond { status, body, path } => {
                assert_eq!(mode, Mode::Enforce, "audit mode answered locally");
                if let Some(path) = path {
                    assert!(
                        !has_param(path, query_name),
                        "the denied path keeps the API key: {:?}",
                        lossy(path)
                    );
                }
                assert_eq!(
                    Some(status),
                    decision.reason.map(|r| r.status()),
                    "respond status"
                );
                let body: serde_json::Value = match serde_json::from_str(body) {
                    Ok(body) => body,
                    Err(e) => panic!("deny body is not JSON ({e}): {body}"),
                };
                assert_eq!(
                    body["reason"].as_str(),
                    decision.reason.map(|r| r.code()),
                    "deny body {body}"
                );
            }
            Verdict::Forward { headers, path } => {
                assert_eq!(
                    headers, annotations,
                    "forwarded headers differ from annotations"
                );
                let forwarded = path.unwrap_or(request.path);
                assert!(
                    !has_param(forwarded, query_name),
                    "{mode:?}: the forwarded path keeps the API key: {:?}",
                    lossy(forwarded)
                );
            }
        }
        let explain = match serde_json::to_value(decision.explain(mode)) {
            Ok(explain) => explain,
            Err(e) => panic!("explain does not serialize: {e}"),
        };
        assert_eq!(
            explain["status"],
            decision.status(),
            "explain status: {explain}"
        );
    }
    match decision.reason {
        None => {
            assert_eq!(decision.status(), 200, "allowed with another status");
            assert!(decision.route.is_some(), "allowed without a route");
            let annotations = decision.annotations(Mode::Enforce);
            assert!(
                annotations.iter().any(|(n, _)| *n == "x-policy-revision"),
                "allowed without x-policy-revision: {annotations:?}"
            );
            assert!(
                decision.public || annotations.iter().any(|(n, _)| *n == "x-principal"),
                "allowed without x-principal: {annotations:?}"
            );
        }
        Some(reason) => {
            assert!(
                matches!(reason.status(), 400 | 401 | 403 | 404 | 503),
                "deny {reason:?} with status {}",
                reason.status()
            );
            assert_eq!(decision.status(), reason.status());
            assert!(
                decision.annotations(Mode::Enforce).is_empty(),
                "enforce-mode deny sets annotations: {:?}",
                decision.annotations(Mode::Enforce)
            );
            let expected = format!("deny; reason={}", reason.code());
            let audit = decision.annotations(Mode::Audit);
            assert!(
                audit
                    .iter()
                    .any(|(n, v)| *n == "x-policy-decision" && *v == expected),
                "audit deny without `{expected}`: {audit:?}"
            );
        }
    }
}

/// The `explain` JSON of a decision (audit mode: every resolved field and
/// annotation, allowed or not).
pub fn explain(decision: &Decision<'_>) -> String {
    match serde_json::to_string(&decision.explain(Mode::Audit)) {
        Ok(text) => text,
        Err(e) => panic!("explain does not serialize: {e}"),
    }
}

/// Runs of id-like bytes in `data` (ids, handles, principals, route
/// prefixes, e-mails), each once, in order: the names a derived request
/// may use.
pub fn tokens(data: &[u8]) -> Vec<&str> {
    let is_token = |b: &u8| b.is_ascii_alphanumeric() || b"._:@/*-".contains(b);
    let mut out: Vec<&str> = Vec::new();
    for run in data.split(|b| !is_token(b)) {
        if run.is_empty() || run.len() > 64 {
            continue;
        }
        if let Ok(text) = std::str::from_utf8(run) {
            if !out.contains(&text) {
                out.push(text);
                if out.len() == 48 {
                    break;
                }
            }
        }
    }
    out
}

/// A small deterministic generator seeded by the input.
pub struct Picker(u64);

impl Picker {
    pub fn new(data: &[u8]) -> Picker {
        // FNV-1a.
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for &b in data {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Picker(hash | 1)
    }

    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    pub fn pick<'a>(&mut self, list: &[&'a str]) -> Option<&'a str> {
        list.get(self.below(list.len())).copied()
    }
}

/// How a derived request's caller is known to the gateway (Otoroshi).
pub enum Gateway {
    None,
    Apikey {
        client_id: String,
        read_only: bool,
        location: Option<(String, Vec<String>)>,
    },
    User(String),
}

/// A request derived from an input: names from the input, credentials of
/// the demo, and the request's clock and environment.
pub struct Derived {
    pub method: &'static str,
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub now: Timestamp,
    pub environment: Option<String>,
    pub gateway: Gateway,
}

/// `count` requests derived from `data`: its id-like names as user ids,
/// tenant selectors, paths, hosts and gateway identities, mixed with the
/// demo's keys, users, organizations and paths.
pub fn derived_requests(data: &[u8], count: usize) -> Vec<Derived> {
    let names = tokens(data);
    let mut pick = Picker::new(data);
    let paths: Vec<&str> = names
        .iter()
        .copied()
        .filter(|t| t.starts_with('/'))
        .collect();
    let emails: Vec<&str> = names.iter().copied().filter(|t| t.contains('@')).collect();
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let from_input = |pick: &mut Picker, list: &[&str], fallback: &[&str]| -> String {
            let chosen = if pick.below(2) == 0 {
                pick.pick(list)
            } else {
                None
            };
            chosen
                .or_else(|| pick.pick(fallback))
                .unwrap_or("")
                .to_string()
        };
        let mut path = from_input(&mut pick, &paths, DEMO_PATHS);
        if pick.below(3) == 0 {
            path.push_str("/x");
        }
        if pick.below(6) == 0 {
            path.push_str("?apikey=");
            path.push_str(pick.pick(DEMO_KEYS).unwrap_or(""));
        }
        let mut headers = Vec::new();
        match pick.below(5) {
            0 | 1 => headers.push((
                "x-api-key".to_string(),
                pick.pick(DEMO_KEYS).unwrap_or("").to_string(),
            )),
            2 | 3 => {
                let user = from_input(&mut pick, &names, DEMO_USERS);
                let user = user.strip_prefix("user:").unwrap_or(&user).to_string();
                headers.push(("x-user-id".to_string(), user));
            }
            _ => {}
        }
        if pick.below(2) == 0 {
            headers.push((
                "x-tenant-id".to_string(),
                from_input(&mut pick, &names, DEMO_ORGS),
            ));
        }
        let host = match pick.below(3) {
            0 => pick.pick(&names).unwrap_or("localhost").to_string(),
            _ => "localhost".to_string(),
        };
        let environment = match pick.below(6) {
            0 => pick.pick(&names).map(str::to_string),
            n => environment(n as u8).map(str::to_string),
        };
        let gateway = match pick.below(4) {
            0 => Gateway::Apikey {
                client_id: from_input(&mut pick, &names, &["oto-ops", "oto-shop"]),
                read_only: pick.below(3) == 0,
                location: (pick.below(2) == 0).then(|| {
                    let tenant = from_input(&mut pick, &names, DEMO_ORGS);
                    let teams = (0..pick.below(3))
                        .map(|_| {
                            from_input(&mut pick, &names, &["*", "acme-platform", "research-lab"])
                        })
                        .collect();
                    (tenant, teams)
                }),
            },
            1 => Gateway::User(from_input(
                &mut pick,
                &emails,
                &["pat@research.example", "who@where"],
            )),
            _ => Gateway::None,
        };
        out.push(Derived {
            method: pick.pick(METHODS).unwrap_or("GET"),
            host,
            path,
            headers,
            now: now(pick.below(10) as u8),
            environment,
            gateway,
        });
    }
    out
}

/// Decides `derived` against `snapshot`, as the Otoroshi shell does when
/// the gateway knows the caller, and returns the explain JSON.
pub fn decide_derived(snapshot: &Snapshot, derived: &Derived, request: &Request<'_>) -> String {
    let caller = match &derived.gateway {
        Gateway::None => None,
        Gateway::Apikey {
            client_id,
            read_only,
            location,
        } => {
            // Placed as the Otoroshi shell places an apikey no app names.
            let principal = principal_text("app:otoroshi/", client_id.as_bytes());
            let location = location.as_ref().map(|(tenant, teams)| GatewayLocation {
                tenant,
                teams,
                principal: &principal,
            });
            Some(GatewayCaller::apikey(
                snapshot, client_id, *read_only, location,
            ))
        }
        Gateway::User(email) => {
            let principal = principal_text("user:otoroshi/", email.as_bytes());
            Some(GatewayCaller::user(snapshot, email, &principal))
        }
    };
    let context = policy::Context::new(derived.now, derived.environment.as_deref())
        .with_gateway(caller.as_ref());
    let decision = policy::decide(snapshot, request, &context);
    explain(&decision)
}

/// What a partial decode needs for `derived`.
pub fn wanted<'w>(derived: &'w Derived, request: &'w Request<'_>) -> Wanted<'w> {
    let mut wanted = Wanted::of(request);
    match &derived.gateway {
        Gateway::None => {}
        Gateway::Apikey {
            client_id,
            location,
            ..
        } => {
            wanted.client_id = Some(client_id);
            if let Some((tenant, teams)) = location {
                wanted.location_tenant = Some(tenant);
                wanted.location_teams = teams;
            }
        }
        Gateway::User(email) => wanted.email = Some(email),
    }
    wanted
}

/// `bytes` (which [`binary::decode`] accepts) decide the requests derived
/// from `data` exactly as `reference` does, whole ([`binary::decode`]) and
/// per request ([`binary::decode_for`], the Otoroshi plug-in's load).
pub fn check_compiled_decides_alike(
    reference: &Snapshot,
    bytes: &[u8],
    data: &[u8],
    count: usize,
    clean_values: bool,
) {
    let whole = match binary::decode(bytes) {
        Ok(whole) => whole,
        Err(e) => panic!("compiled bytes refused: {e}"),
    };
    assert!(whole.stats() == reference.stats(), "decoded stats differ");
    let sources = Sources::default();
    for derived in derived_requests(data, count) {
        let request = Request::from_parts(
            &sources,
            derived.method,
            &derived.host,
            &derived.path,
            &derived.headers,
        );
        let expected = decide_derived(reference, &derived, &request);
        let decoded = decide_derived(&whole, &derived, &request);
        assert_eq!(
            expected, decoded,
            "decode decides otherwise: {} {} {:?}",
            derived.method, derived.path, derived.headers
        );
        let wanted = wanted(&derived, &request);
        let partial = match binary::decode_for(bytes, &wanted) {
            Ok(partial) => partial,
            Err(e) => panic!("decode_for refuses what decode accepts: {e}"),
        };
        assert!(partial.stats() == reference.stats(), "partial stats differ");
        let part = decide_derived(&partial, &derived, &request);
        assert_eq!(
            expected, part,
            "decode_for decides otherwise: {} {} {:?}",
            derived.method, derived.path, derived.headers
        );
        // Deciding without the gateway's identity: every invariant holds.
        let decision = policy::decide(
            reference,
            &request,
            &policy::Context::new(derived.now, derived.environment.as_deref()),
        );
        check_decision(&request, &sources.api_key_query, &decision, clean_values);
    }
}

/// `encode` of a decoded snapshot decodes, and encodes to the same bytes.
pub fn check_round_trip(snapshot: &Snapshot) -> Vec<u8> {
    let bytes = binary::encode(snapshot);
    let again = match binary::decode(&bytes) {
        Ok(again) => again,
        Err(e) => panic!("an encoded snapshot does not decode: {e}"),
    };
    assert!(
        binary::encode(&again) == bytes,
        "encoding is not stable across a round trip"
    );
    bytes
}

/// Splits `bytes` at NUL bytes (the request and header targets' fields).
pub fn fields(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split(|&b| b == 0).collect()
}
