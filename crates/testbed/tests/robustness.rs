//! Property-style robustness tests with a small deterministic PRNG: hostile and
//! malformed requests against the demo world, and mutated or random snapshots.
//! A failing case prints its iteration and input, and re-runs identically.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Map, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tenantgate_policy::{
    self as policy, Decision, LoadError, Mode, Request, Snapshot, Sources, Timestamp, Verdict,
    STRIPPED_HEADERS,
};

const DEMO: &str = include_str!("../../../policies/demo.json");

use tenantgate_policy::generate::Rng;

fn demo() -> Snapshot {
    policy::load_snapshot(DEMO).unwrap()
}

/// Runs `f`, turning a panic into a test failure that names the input.
fn no_panic<T>(what: &str, input: &dyn std::fmt::Debug, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(_) => panic!("{what} panicked on input {input:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// (a) random requests against the demo world
// ---------------------------------------------------------------------------------------------

const RAW_KEYS: &[&str] = &[
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
const USERS: &[&str] = &[
    "alice",
    "pat",
    "bob",
    "frank",
    "carol",
    "dave",
    "erin",
    "mallory",
    "ALICE",
    "user:alice",
];
const ORGS: &[&str] = &[
    "acme",
    "research",
    "retail",
    "initech",
    "hooli",
    "umbrella",
    "acme-corp",
    "research-dept",
    "acme-retail",
    "initech-eval",
    "hooli-eval",
    "umbrella-corp",
    "globex",
    "ACME",
    "*",
];
const JUNK: &[&str] = &[
    "",
    " ",
    "*",
    "null",
    "%00",
    "\u{0}",
    "é",
    "\u{1F600}",
    "a,b",
    "deny; reason=none",
    "x-tenant-id",
    "\t",
    "../..",
];
const METHODS: &[&str] = &[
    "GET", "get", "Get", "POST", "post", "PUT", "DELETE", "delete", "PATCH", "HEAD", "head",
    "OPTIONS", "options", "TRACE", "CONNECT", "BREW", "", " ", "G E T", "GET\r\n", "ÄGET", "*",
    "M-SEARCH",
];
const SEGMENTS: &[&str] = &[
    "orders",
    "admin",
    "catalog",
    "research",
    "profile",
    "workspace",
    "health",
    "status",
    "statusfoo",
    "billing",
    "reports",
    "umbrella",
    "hooli",
    "sandbox",
    "x",
    "1",
    "",
    ".",
    "..",
    "...",
    ".hidden",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2F",
    "%2f",
    "%5c",
    "%5C",
    "%25",
    "%",
    "%2",
    "%zz",
    "\\",
    "é",
    "\u{1F600}",
    "a b",
    "?",
    "#frag",
    ";param",
    "ORDERS",
];
const QUERIES: &[&str] = &[
    "apikey=demo-storefront-key",
    "apikey=demo-ops-key",
    "apikey=",
    "apikey",
    "apikey=junk",
    "APIKEY=demo-ops-key",
    "api%6bey=demo-storefront-key",
    "%61pikey=demo-ops-key",
    "apikey=demo%2Dops%2Dkey",
    "apikey=%ff",
    "apikey=%",
    "api+key=x",
    "apikeys=1",
    "x=1",
    "",
    "&",
    "==",
    "apikey=a=b",
    "q=apikey=demo-ops-key",
];
const HOSTS: &[&str] = &[
    "localhost",
    "localhost:8080",
    "shop.acme.example",
    "SHOP.ACME.EXAMPLE",
    "shop.acme.example:443",
    "shop.acme.example.",
    "[::1]",
    "[::1]:8443",
    "[::1",
    "::1",
    "[shop.acme.example]",
    "",
    ":",
    ":80",
    "a:b:c",
    "exämple.com",
    "shop.acme.example:port",
];
const HEADER_NAMES: &[&str] = &[
    "x-api-key",
    "X-API-KEY",
    "X-Api-Key",
    "x-user-id",
    "X-USER-ID",
    "x-tenant-id",
    "X-Tenant-Id",
    "x-tenant-handle",
    "x-principal",
    "x-policy-decision",
    "x-policy-revision",
    "x-tenant-roles",
    "host",
    "apikey",
    "x-api-key ",
    "",
];
const ENVIRONMENTS: &[Option<&str>] = &[
    None,
    Some("prod"),
    Some("staging"),
    Some("dev"),
    Some(""),
    Some("PROD"),
];

struct RandomRequest {
    method: String,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    environment: Option<&'static str>,
    now: Timestamp,
}

impl std::fmt::Debug for RandomRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path: String = self.path.chars().take(300).collect();
        f.debug_struct("RandomRequest")
            .field("method", &self.method)
            .field("host", &self.host)
            .field("path (first 300 chars)", &path)
            .field("headers", &self.headers)
            .field("environment", &self.environment)
            .field("now", &self.now)
            .finish()
    }
}

fn random_path(rng: &mut Rng) -> String {
    let mut path = String::new();
    if !rng.chance(5) {
        path.push('/');
    }
    let segments = rng.below(6);
    for i in 0..segments {
        if i > 0 {
            path.push('/');
            if rng.chance(5) {
                path.push('/');
            }
        }
        path.push_str(rng.pick(SEGMENTS));
    }
    if rng.chance(10) {
        path.push('/');
    }
    if rng.chance(2) {
        // Long paths: one huge segment, or many segments (route matching walks
        // back segment by segment, so keep those to a few thousand bytes).
        let (unit, count) = match rng.below(4) {
            0 => ("a", 20_000 + rng.below(40_000)),
            1 => ("%2e", 1000 + rng.below(5000)),
            2 => ("orders/", 100 + rng.below(400)),
            _ => ("é/", 100 + rng.below(400)),
        };
        path.push_str(&unit.repeat(count));
    }
    if rng.chance(40) {
        path.push('?');
        let params = 1 + rng.below(4);
        for i in 0..params {
            if i > 0 {
                path.push('&');
            }
            path.push_str(rng.pick(QUERIES));
        }
        if rng.chance(5) {
            path.push_str("?apikey=demo-ops-key");
        }
    }
    path
}

fn random_header_value(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => rng.pick(RAW_KEYS).to_string(),
        1 => rng.pick(USERS).to_string(),
        2 => rng.pick(ORGS).to_string(),
        3 => rng.pick(JUNK).to_string(),
        4 => format!(" {} ", rng.pick(RAW_KEYS)),
        _ => "k".repeat(rng.below(5000)),
    }
}

fn random_request(rng: &mut Rng) -> RandomRequest {
    let mut headers = Vec::new();
    for _ in 0..rng.below(7) {
        let name = rng.pick(HEADER_NAMES).to_string();
        let value = random_header_value(rng);
        headers.push((name, value));
        if rng.chance(10) {
            // A repeated header, maybe with another case.
            let (name, _) = headers.last().unwrap().clone();
            headers.push((name.to_ascii_uppercase(), random_header_value(rng)));
        }
    }
    let now = match rng.below(10) {
        0 => Timestamp::from_unix_nanos(i64::MIN),
        1 => Timestamp::from_unix_nanos(i64::MAX),
        2 => Timestamp::from_unix_nanos(0),
        // 2020..2040, around the demo's expiry dates.
        _ => Timestamp::from_unix_seconds(1_577_836_800 + rng.below(631_152_000) as i64),
    };
    RandomRequest {
        method: rng.pick(METHODS).to_string(),
        host: rng.pick(HOSTS).to_string(),
        path: random_path(rng),
        headers,
        environment: rng.pick(ENVIRONMENTS),
        now,
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            (b'+', _, _) => out.push(b' '),
            (b, _, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// Whether the query of `path` has a parameter named `apikey` (raw or percent-encoded).
fn has_apikey_param(path: &str) -> bool {
    let Some((_, query)) = path.split_once('?') else {
        return false;
    };
    query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        key == "apikey" || percent_decode(key) == "apikey"
    })
}

#[test]
fn the_apikey_parameter_checker_itself() {
    assert!(has_apikey_param("/a?apikey=k"));
    assert!(has_apikey_param("/a?x=1&apikey"));
    assert!(has_apikey_param("/a?%61pikey=k"));
    assert!(has_apikey_param("/a?api%6Bey="));
    assert!(!has_apikey_param("/a?apikeys=1&APIKEY=2&q=apikey=3"));
    assert!(!has_apikey_param("/apikey=1"));
}

/// Checks every property of one decision; returns what broke.
fn check_decision(request: &RandomRequest, decision: &Decision<'_>) -> Result<(), String> {
    for mode in [Mode::Enforce, Mode::Audit] {
        let annotations = decision.annotations(mode);
        if let Some((name, _)) = annotations
            .iter()
            .find(|(name, _)| !STRIPPED_HEADERS.contains(name))
        {
            return Err(format!(
                "{mode:?}: annotation `{name}` is not a stripped header"
            ));
        }
        let mut names: Vec<&str> = annotations.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != annotations.len() {
            return Err(format!("{mode:?}: repeated annotation in {annotations:?}"));
        }
        let forwarded = match decision.verdict(mode) {
            Verdict::Respond { status, body, path } => {
                if let Some(path) = path {
                    if has_apikey_param(&String::from_utf8_lossy(path)) {
                        return Err(format!("{mode:?}: the denied path keeps an apikey"));
                    }
                }
                if mode == Mode::Audit {
                    return Err("audit mode answered locally".into());
                }
                if Some(status) != decision.reason.map(|r| r.status()) {
                    return Err(format!("respond status {status} for {:?}", decision.reason));
                }
                let body: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
                if body["reason"] != decision.reason.map(|r| r.code()).unwrap_or_default() {
                    return Err(format!("deny body {body} for {:?}", decision.reason));
                }
                None
            }
            Verdict::Forward { headers, path } => {
                if headers != annotations {
                    return Err("forwarded headers differ from annotations".into());
                }
                Some(String::from_utf8_lossy(path.unwrap_or(request.path.as_bytes())).into_owned())
            }
        };
        if let Some(path) = forwarded {
            if has_apikey_param(&path) {
                return Err(format!("{mode:?}: forwarded path keeps an apikey: {path}"));
            }
        }
        let explain = serde_json::to_value(decision.explain(mode)).map_err(|e| e.to_string())?;
        if explain["status"] != decision.status() {
            return Err(format!("explain status differs: {explain}"));
        }
    }
    if let Some(path) = decision.forward_path {
        let path = String::from_utf8_lossy(path);
        if has_apikey_param(&path) {
            return Err(format!("forward path keeps an apikey parameter: {path}"));
        }
    }
    match decision.reason {
        None => {
            if decision.status() != 200 {
                return Err(format!("allowed with status {}", decision.status()));
            }
            if decision.route.is_none() {
                return Err("allowed without a route".into());
            }
            let annotations = decision.annotations(Mode::Enforce);
            if !annotations.iter().any(|(n, _)| *n == "x-policy-revision") {
                return Err(format!(
                    "allowed without x-policy-revision: {annotations:?}"
                ));
            }
            if !decision.public && !annotations.iter().any(|(n, _)| *n == "x-principal") {
                return Err(format!("allowed without x-principal: {annotations:?}"));
            }
        }
        Some(reason) => {
            if !matches!(reason.status(), 400 | 401 | 403 | 404 | 503) {
                return Err(format!("deny {reason:?} with status {}", reason.status()));
            }
            if decision.status() != reason.status() {
                return Err(format!("status {} for {reason:?}", decision.status()));
            }
            if !decision.annotations(Mode::Enforce).is_empty() {
                return Err(format!(
                    "enforce-mode deny sets annotations: {:?}",
                    decision.annotations(Mode::Enforce)
                ));
            }
            let audit = decision.annotations(Mode::Audit);
            let expected = format!("deny; reason={}", reason.code());
            if !audit
                .iter()
                .any(|(n, v)| *n == "x-policy-decision" && *v == expected)
            {
                return Err(format!("audit deny without `{expected}`: {audit:?}"));
            }
        }
    }
    Ok(())
}

#[test]
fn random_requests_against_the_demo_never_break_the_decision_contract() {
    let snapshot = demo();
    let sources = Sources::default();
    let mut rng = Rng(0x7e4a_4a7e_2026);
    let mut allowed = 0;
    let mut denied = 0;
    let mut keys_removed = 0;
    for iteration in 0..15_000 {
        let request = random_request(&mut rng);
        let outcome = no_panic("decide", &request, || {
            let parsed = Request::from_parts(
                &sources,
                &request.method,
                &request.host,
                &request.path,
                &request.headers,
            );
            let decision = policy::decide(
                &snapshot,
                &parsed,
                &tenantgate_policy::Context::new(request.now, request.environment),
            );
            let again = policy::decide(
                &snapshot,
                &parsed,
                &tenantgate_policy::Context::new(request.now, request.environment),
            );
            if decision.reason != again.reason || decision.route != again.route {
                return Err("deciding twice gave two answers".to_string());
            }
            check_decision(&request, &decision)
                .map(|()| (decision.allowed(), decision.forward_path.is_some()))
        });
        match outcome {
            Ok((true, stripped)) => {
                allowed += 1;
                keys_removed += usize::from(stripped);
            }
            Ok((false, _)) => denied += 1,
            Err(broken) => panic!("iteration {iteration}: {broken}\n{request:#?}"),
        }
    }
    // The generator reaches both outcomes, so the properties are not vacuous.
    assert!(allowed > 50, "only {allowed} allowed");
    assert!(denied > 1000, "only {denied} denied");
    assert!(
        keys_removed > 5,
        "only {keys_removed} allowed with a query key removed"
    );
}

#[test]
fn known_credentials_on_random_paths_reach_every_kind_of_decision() {
    // Fewer junk inputs, more real principals: exercises the later steps.
    let snapshot = demo();
    let sources = Sources::default();
    let mut rng = Rng(42);
    let mut reasons = std::collections::BTreeSet::new();
    let prefixes = [
        "/orders",
        "/orders/admin",
        "/catalog",
        "/sandbox",
        "/billing",
        "/research",
        "/profile",
        "/workspace",
        "/reports",
        "/umbrella",
        "/hooli",
        "/health",
        "/status",
    ];
    for iteration in 0..3000 {
        let mut headers = Vec::new();
        if rng.chance(60) {
            headers.push(("x-api-key".to_string(), rng.pick(RAW_KEYS).to_string()));
        }
        if rng.chance(60) {
            headers.push(("x-user-id".to_string(), rng.pick(USERS).to_string()));
        }
        if rng.chance(40) {
            headers.push(("x-tenant-id".to_string(), rng.pick(ORGS).to_string()));
        }
        let mut path = rng.pick(&prefixes).to_string();
        if rng.chance(50) {
            path.push_str("/1");
        }
        let request = RandomRequest {
            method: rng
                .pick(&["GET", "POST", "DELETE", "head", "PUT"])
                .to_string(),
            host: rng.pick(&["localhost", "shop.acme.example"]).to_string(),
            path,
            headers,
            environment: rng.pick(&[None, Some("prod"), Some("staging")]),
            now: Timestamp::from_unix_seconds(1_750_000_000 + rng.below(100_000_000) as i64),
        };
        let parsed = Request::from_parts(
            &sources,
            &request.method,
            &request.host,
            &request.path,
            &request.headers,
        );
        let decision = no_panic("decide", &request, || {
            policy::decide(
                &snapshot,
                &parsed,
                &tenantgate_policy::Context::new(request.now, request.environment),
            )
        });
        if let Err(broken) = check_decision(&request, &decision) {
            panic!("iteration {iteration}: {broken}\n{request:#?}");
        }
        reasons.insert(decision.reason.map_or("allow", |r| r.code()));
    }
    for expected in [
        "allow",
        "missing_credentials",
        "api_key_revoked",
        "tenant_mismatch",
        "not_a_member",
        "organization_suspended",
        "product_not_subscribed",
        "team_access_denied",
        "permission_denied",
    ] {
        assert!(
            reasons.contains(expected),
            "never saw {expected}: {reasons:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (b) mutated demo snapshots
// ---------------------------------------------------------------------------------------------

const GARBAGE: &[&str] = &[
    "",
    " ",
    "*",
    "acme",
    "research",
    "globex",
    "admin",
    "orders",
    "acme-storefront",
    "acme-orders",
    "acme-platform",
    "paused",
    "read",
    "write",
    "active",
    "/",
    "orders",
    "é",
    "\u{1F600}",
    "2026-13-01T00:00:00Z",
    "2026-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "apis:*",
    "*:read",
    "x\u{0}y",
    "a/b",
];

/// A random node of `value`, reached by a random walk from the root.
fn random_node<'v>(rng: &mut Rng, value: &'v mut Value) -> &'v mut Value {
    let mut node = value;
    loop {
        let stop = rng.chance(25);
        let len = match &*node {
            Value::Object(map) => map.len(),
            Value::Array(items) => items.len(),
            _ => 0,
        };
        if stop || len == 0 {
            return node;
        }
        let index = rng.below(len);
        node = match node {
            Value::Object(map) => map.values_mut().nth(index).unwrap(),
            Value::Array(items) => &mut items[index],
            _ => unreachable!(),
        };
    }
}

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(9) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next_u64() as i64),
        3 => json!(-1.5e300),
        4 => json!(rng.pick(GARBAGE)),
        5 => json!([]),
        6 => json!({}),
        7 => json!([rng.pick(GARBAGE)]),
        _ => json!({ rng.pick(GARBAGE): rng.pick(GARBAGE) }),
    }
}

fn mutate(rng: &mut Rng, document: &mut Value) {
    let node = random_node(rng, document);
    match node {
        Value::Object(map) if !map.is_empty() && rng.chance(60) => {
            let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
            match rng.below(4) {
                // Delete a field.
                0 => {
                    map.remove(&key);
                }
                // Change a field's value (often its type).
                1 => {
                    map.insert(key, random_value(rng));
                }
                // Add an unknown (or known, if the name collides) field.
                2 => {
                    map.insert(rng.pick(GARBAGE).to_string(), random_value(rng));
                }
                // Rename a field.
                _ => {
                    if let Some(v) = map.remove(&key) {
                        map.insert(format!("{key}s"), v);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && rng.chance(70) => {
            let index = rng.below(items.len());
            match rng.below(3) {
                // Duplicate an element (an object: a duplicate id).
                0 => {
                    let copy = items[index].clone();
                    items.push(copy);
                }
                1 => {
                    items.remove(index);
                }
                _ => items.push(random_value(rng)),
            }
        }
        Value::String(s) if rng.chance(50) => {
            // Garble a string: a typo, a case change, or another id.
            *s = match rng.below(3) {
                0 => format!("{s}x"),
                1 => s.to_ascii_uppercase(),
                _ => rng.pick(GARBAGE).to_string(),
            };
        }
        other => *other = random_value(rng),
    }
}

/// Loads `text` and checks the outcome; `Ok(true)` when it loaded.
fn check_load(text: &str) -> Result<bool, String> {
    match policy::load_snapshot(text) {
        Ok(snapshot) => {
            // A mutation that keeps the snapshot valid must still decide safely.
            let sources = Sources::default();
            for (method, path, headers) in [
                ("GET", "/orders/1", [("x-api-key", "demo-storefront-key")]),
                ("POST", "/orders", [("x-user-id", "alice")]),
                (
                    "GET",
                    "/profile?apikey=demo-ops-key",
                    [("x-tenant-id", "acme")],
                ),
                ("GET", "/research/x", [("x-user-id", "pat")]),
                ("DELETE", "/workspace", [("x-api-key", "demo-ops-key")]),
            ] {
                let request = Request::from_parts(&sources, method, "localhost", path, &headers);
                let now = Timestamp::from_unix_seconds(1_796_083_200);
                let decision = policy::decide(
                    &snapshot,
                    &request,
                    &tenantgate_policy::Context::new(now, Some("prod")),
                );
                let _ = serde_json::to_string(&decision.explain(Mode::Audit));
                if !decision.allowed() && !decision.annotations(Mode::Enforce).is_empty() {
                    return Err("enforce deny with annotations".into());
                }
            }
            Ok(true)
        }
        Err(LoadError::Syntax(e)) => {
            if e.to_string().is_empty() {
                return Err("empty syntax error".into());
            }
            Ok(false)
        }
        Err(LoadError::Invalid(invalid)) => {
            if invalid.problems.is_empty() {
                return Err("invalid snapshot without problems".into());
            }
            for problem in &invalid.problems {
                let line = problem.to_string();
                // One line whatever the document holds (ids and values escaped).
                if line.chars().any(char::is_control) {
                    return Err(format!("a control character in `{line:?}`"));
                }
                let plain = !problem.id.chars().any(|c| c.is_control() || c == '`');
                let head = format!("{} `{}`: field `", problem.kind, problem.id);
                if (plain && !line.starts_with(&head)) || !line.contains("`: field `") {
                    return Err(format!("malformed message `{line}`"));
                }
            }
            Ok(false)
        }
    }
}

#[test]
fn mutated_demo_snapshots_load_or_fail_cleanly() {
    let original: Value = serde_json::from_str(DEMO).unwrap();
    let mut rng = Rng(0x5eed);
    let (mut ok, mut invalid) = (0, 0);
    for iteration in 0..1200 {
        let mut document = original.clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut document);
        }
        let text = document.to_string();
        match no_panic("load_snapshot", &iteration, || check_load(&text)) {
            Ok(true) => ok += 1,
            Ok(false) => invalid += 1,
            Err(broken) => panic!("iteration {iteration}: {broken}\n{text}"),
        }
        // Also through the bytes entry point the filter uses (JSON or compiled).
        if iteration % 10 == 0 {
            let _ = no_panic("load_snapshot_bytes", &iteration, || {
                policy::load_snapshot_bytes(text.as_bytes()).is_ok()
            });
        }
    }
    assert!(ok > 20 && invalid > 200, "ok {ok}, invalid {invalid}");
}

#[test]
fn textually_damaged_demo_snapshots_never_panic() {
    let mut rng = Rng(99);
    let bytes = DEMO.as_bytes();
    for iteration in 0..300 {
        let mut damaged = bytes.to_vec();
        match rng.below(4) {
            0 => damaged.truncate(rng.below(bytes.len())),
            1 => {
                let at = rng.below(damaged.len());
                damaged[at] = rng.next_u64() as u8;
            }
            2 => {
                let at = rng.below(damaged.len());
                let junk = rng.pick(&["\"", "{", "]", ",", "\\", "\u{0}", "é", "null"]);
                damaged.splice(at..at, junk.bytes());
            }
            _ => {
                let from = rng.below(damaged.len());
                let to = (from + rng.below(200)).min(damaged.len());
                damaged.drain(from..to);
            }
        }
        let text = String::from_utf8_lossy(&damaged).into_owned();
        if let Err(broken) = no_panic("load_snapshot", &iteration, || check_load(&text)) {
            panic!("iteration {iteration}: {broken}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (c) random byte strings and token soup
// ---------------------------------------------------------------------------------------------

#[test]
fn random_bytes_as_snapshots_never_panic() {
    let mut rng = Rng(7);
    for iteration in 0..2000 {
        let len = rng.below(400);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let result = no_panic("load_snapshot", &bytes, || policy::load_snapshot(&text));
        assert!(
            result.is_err(),
            "iteration {iteration}: random bytes loaded"
        );
    }
}

#[test]
fn random_json_token_soup_never_panics() {
    const TOKENS: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "null",
        "true",
        "1",
        "-0",
        "1e999",
        "\"\"",
        "\"revision\"",
        "\"r1\"",
        "\"areas\"",
        "\"organizations\"",
        "\"routes\"",
        "\"id\"",
        "\"acme\"",
        "\"metadata\"",
        "\"teams\"",
        "\"*\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        " ",
    ];
    let mut rng = Rng(11);
    for iteration in 0..3000 {
        let mut text = String::from("{\"revision\":\"r\",");
        for _ in 0..rng.below(60) {
            text.push_str(rng.pick(TOKENS));
        }
        if rng.chance(50) {
            text.push('}');
        }
        if let Err(broken) = no_panic("load_snapshot", &text, || check_load(&text)) {
            panic!("iteration {iteration}: {broken}\n{text}");
        }
    }
    // Deep nesting stops at serde_json's recursion limit instead of the stack.
    for depth in [200, 100_000] {
        let text = format!(
            "{{\"revision\":\"r\",\"areas\":{}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        let result = no_panic("load_snapshot", &depth, || policy::load_snapshot(&text));
        assert!(result.is_err());
        let text = format!(
            "{{\"revision\":\"r\",\"organizations\":[{{\"id\":\"o\",\"metadata\":{}1{}}}]}}",
            "{\"a\":".repeat(depth),
            "}".repeat(depth)
        );
        let result = no_panic("load_snapshot", &depth, || policy::load_snapshot(&text));
        assert!(result.is_err());
    }
}

#[test]
fn a_valid_object_nested_in_metadata_is_accepted() {
    // Sanity for the soup above: metadata is free-form, deep but within limits.
    let mut document: Value = serde_json::from_str(DEMO).unwrap();
    let mut meta = json!(1);
    for _ in 0..50 {
        let mut map = Map::new();
        map.insert("a".into(), meta);
        meta = Value::Object(map);
    }
    document["organizations"][0]["metadata"] = meta;
    assert!(policy::load_snapshot(&document.to_string()).is_ok());
}

/// Route matching starts at the deepest boundary a route prefix can reach, so a
/// 120 KB path is matched (or not) like a short one.
#[test]
fn very_long_paths_match_their_route() {
    let snapshot = policy::load_snapshot(include_str!("../../../policies/demo.json")).unwrap();
    let sources = Sources::default();
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let long_tail = "a/".repeat(60_000);
    for (path, route) in [
        (format!("/orders/{long_tail}"), Some("orders")),
        (format!("/orders/admin/{long_tail}"), Some("orders")),
        (format!("/ordersx/{long_tail}"), None),
        (format!("/{long_tail}"), None),
        ("/orders".to_string() + &"/".repeat(50_000), Some("orders")),
    ] {
        let headers = [("x-api-key", "demo-storefront-key")];
        let request = Request::from_parts(&sources, "GET", "localhost", &path, &headers);
        let decision = policy::decide(
            &snapshot,
            &request,
            &tenantgate_policy::Context::new(now, Some("prod")),
        );
        assert_eq!(decision.route, route, "{}...", &path[..20]);
    }
}

/// A generated world decides identically from JSON and from its compiled form.
#[test]
fn compiled_form_of_a_generated_world_decides_identically() {
    let doc = tenantgate_policy::generate::generate(60, 1_000, 9);
    let from_json = policy::load_snapshot(&doc.to_string()).unwrap();
    let bytes = policy::binary::encode(&from_json);
    let from_bytes = policy::load_snapshot_bytes(&bytes).unwrap();
    let sources = Sources::default();
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let mut rng = Rng(77);
    for i in 0..3_000 {
        let key = tenantgate_policy::generate::generated_raw_key(9, rng.below(1_100));
        let org = format!("org-{}", rng.below(70));
        let path = match rng.below(4) {
            0 => format!("/t/{org}/orders/{i}"),
            1 => format!("/t/{org}/catalog"),
            2 => "/profile".to_string(),
            _ => format!("/t/{org}-sub0/orders/admin/x"),
        };
        let method = if rng.chance(30) { "POST" } else { "GET" };
        let user = format!("{org}-user{}", rng.below(3));
        let headers: Vec<(&str, &str)> = if rng.chance(50) {
            vec![("x-api-key", key.as_str())]
        } else {
            vec![("x-user-id", user.as_str()), ("x-tenant-id", org.as_str())]
        };
        let request = Request::from_parts(&sources, method, "h", &path, &headers);
        let a = serde_json::to_value(
            policy::decide(
                &from_json,
                &request,
                &tenantgate_policy::Context::new(now, Some("prod")),
            )
            .explain(Mode::Audit),
        )
        .unwrap();
        let b = serde_json::to_value(
            policy::decide(
                &from_bytes,
                &request,
                &tenantgate_policy::Context::new(now, Some("prod")),
            )
            .explain(Mode::Audit),
        )
        .unwrap();
        assert_eq!(a, b, "{method} {path} {headers:?}");
    }
}

/// `binary::decode_for` (the Otoroshi plug-in's per-call load) decides every
/// request exactly like the whole snapshot: random requests against the demo
/// (with Otoroshi identities) and credentials of a generated world.
#[test]
fn partial_decoding_decides_like_the_whole_snapshot() {
    use tenantgate_policy::binary::{decode_for, encode, Wanted};
    use tenantgate_policy::{decide, Context, GatewayCaller, GatewayLocation};
    let mut demo_doc: Value = serde_json::from_str(DEMO).unwrap();
    for (collection, id, field, value) in [
        (
            "apps",
            "acme-ops-console",
            "otoroshi_client_ids",
            json!(["oto-ops"]),
        ),
        (
            "apps",
            "acme-storefront",
            "otoroshi_client_ids",
            json!(["oto-shop", "oto-shop-2"]),
        ),
        (
            "users",
            "pat",
            "otoroshi_emails",
            json!(["pat@research.example"]),
        ),
        (
            "users",
            "alice",
            "otoroshi_emails",
            json!(["Alice@Acme.example"]),
        ),
    ] {
        let item = demo_doc[collection]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|item| item["id"] == id)
            .unwrap();
        item[field] = value;
    }
    // The demo as it is, and with the parent of `research` and `retail`
    // suspended or expired (a partial snapshot must carry a tenant's ancestors).
    let mut worlds = vec![demo_doc.clone()];
    for (field, value) in [
        ("status", json!("suspended")),
        ("expires_at", json!("2026-01-01T00:00:00Z")),
    ] {
        let mut doc = demo_doc.clone();
        let acme = doc["organizations"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|o| o["id"] == "acme")
            .unwrap();
        acme[field] = value;
        if field == "expires_at" {
            acme["type"] = json!("evaluation");
        }
        worlds.push(doc);
    }
    let worlds: Vec<(Snapshot, Vec<u8>)> = worlds
        .iter()
        .map(|doc| {
            let full = policy::load_snapshot(&doc.to_string()).unwrap();
            let bytes = encode(&full);
            (full, bytes)
        })
        .collect();
    let mut rng = Rng(4242);
    let client_ids = ["oto-ops", "oto-shop-2", "oto-nobody", ""];
    let emails = [
        "PAT@research.example",
        "alice@acme.example",
        "who@where",
        "",
    ];
    let loc_teams = [
        "acme-platform".to_string(),
        "research-lab".to_string(),
        "*".to_string(),
        "ghost".to_string(),
    ];
    let loc_tenants = ["acme-corp", "acme", "globex-research", "nowhere"];
    for n in 0..9_000 {
        let (demo_full, demo_bytes) = &worlds[n % worlds.len()];
        let r = random_request(&mut rng);
        let request =
            Request::from_parts(&Sources::default(), &r.method, &r.host, &r.path, &r.headers);
        let mut wanted = Wanted::of(&request);
        let gateway = rng.below(3);
        let client_id = rng.pick(&client_ids);
        let email = rng.pick(&emails);
        let read_only = rng.chance(30);
        let teams_from = rng.below(4);
        let teams = &loc_teams[teams_from..];
        let location = rng.chance(50).then(|| GatewayLocation {
            tenant: rng.pick(&loc_tenants),
            teams,
            principal: "app:otoroshi/placed",
        });
        match gateway {
            0 => {
                wanted.client_id = Some(client_id);
                wanted.location_tenant = location.map(|l| l.tenant);
                wanted.location_teams = teams;
            }
            1 => wanted.email = Some(email),
            _ => {}
        }
        let part = no_panic("decode_for", &request, || decode_for(demo_bytes, &wanted)).unwrap();
        let decide = |snapshot: &Snapshot| {
            let caller = match gateway {
                0 => Some(GatewayCaller::apikey(
                    snapshot, client_id, read_only, location,
                )),
                1 => Some(GatewayCaller::user(
                    snapshot,
                    email,
                    "user:otoroshi/someone",
                )),
                _ => None,
            };
            let decision = decide(
                snapshot,
                &request,
                &Context::new(r.now, r.environment).with_gateway(caller.as_ref()),
            );
            serde_json::to_value(decision.explain(Mode::Audit)).unwrap()
        };
        assert_eq!(
            decide(demo_full),
            decide(&part),
            "{r:?} gateway {gateway} {client_id} {email}"
        );
    }
    // A generated world: the key and user tables are large and searched.
    let doc = tenantgate_policy::generate::generate(60, 1_000, 9);
    let full = policy::load_snapshot(&doc.to_string()).unwrap();
    let bytes = encode(&full);
    let now = Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let mut allowed = 0;
    for i in 0..3_000 {
        let key = tenantgate_policy::generate::generated_raw_key(9, rng.below(1_100));
        let org = format!("org-{}", rng.below(70));
        let path = match rng.below(3) {
            0 => format!("/t/{org}/orders/{i}"),
            1 => format!("/t/{org}/catalog"),
            _ => "/profile".to_string(),
        };
        let method = if rng.chance(30) { "POST" } else { "GET" };
        let user = format!("{org}-user{}", rng.below(3));
        let headers: Vec<(&str, &str)> = if rng.chance(50) {
            vec![("x-api-key", key.as_str())]
        } else {
            vec![("x-user-id", user.as_str()), ("x-tenant-id", org.as_str())]
        };
        let request = Request::from_parts(&Sources::default(), method, "h", &path, &headers);
        let part = decode_for(&bytes, &Wanted::of(&request)).unwrap();
        assert!(part.stats() == full.stats());
        let a = policy::decide(
            &full,
            &request,
            &tenantgate_policy::Context::new(now, Some("prod")),
        );
        allowed += usize::from(a.allowed());
        let a = serde_json::to_value(a.explain(Mode::Audit)).unwrap();
        let b = serde_json::to_value(
            policy::decide(
                &part,
                &request,
                &tenantgate_policy::Context::new(now, Some("prod")),
            )
            .explain(Mode::Audit),
        )
        .unwrap();
        assert_eq!(a, b, "{method} {path} {headers:?}");
    }
    // Both kinds of decision were compared.
    assert!((300..2_700).contains(&allowed), "{allowed} of 3000 allowed");
}

/// A truncated or corrupted compiled snapshot makes `decode_for` fail or
/// decide, never panic.
#[test]
fn partial_decoding_of_corrupt_bytes_never_panics() {
    use tenantgate_policy::binary::{decode_for, encode, Wanted};
    let bytes = encode(&demo());
    let digest = policy::key_digest("demo-storefront-key");
    let wanted = Wanted {
        key_digest: Some(digest),
        user_id: Some(b"alice"),
        tenant_selector: Some(b"acme"),
        client_id: Some("x"),
        email: Some("a@b"),
        location_tenant: Some("research-dept"),
        location_teams: &["acme-platform".to_string()],
        token_user: Some("pat"),
        token_tenant: Some("initech"),
        asserted: true,
    };
    assert!(decode_for(&bytes, &wanted).is_ok());
    for cut in 0..bytes.len() {
        let _ = no_panic("decode_for", &cut, || decode_for(&bytes[..cut], &wanted));
    }
    let mut rng = Rng(99);
    for _ in 0..3_000 {
        let mut mutated = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            let at = 8 + rng.below(mutated.len() - 8);
            mutated[at] ^= 1 << rng.below(8);
        }
        let _ = no_panic("decode_for", &"mutated", || decode_for(&mutated, &wanted));
        // With the checksum recomputed, the mutation reaches the decoder.
        policy::binary::seal(&mut mutated);
        let _ = no_panic("decode_for", &"mutated and sealed", || {
            decode_for(&mutated, &wanted)
        });
    }
}
