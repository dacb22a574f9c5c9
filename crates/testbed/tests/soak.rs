//! Soak: mixed traffic through a real Envoy with 4 workers while the snapshot
//! source flaps (a new revision every second, 304s, 500s, timeouts, invalid
//! bodies) and the key-lookup service answers slowly. Checks: no wasm trap or
//! panic, no 5xx but what the fail policy allows (503 `key_lookup_unavailable`
//! for looked-up keys only), and every decision is one that one of the two
//! policies being swapped in and out would make.
//!
//! `make test` runs it for 12 s; the full 60 s run is
//! `cargo test --release --test soak -- --ignored --nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use support::{try_http_request, EnvoyBuilder, Upstream};
use tenantgate_policy::{self as policy, Mode, Request, Snapshot, Sources, Timestamp};

const DEMO: &str = include_str!("../../../policies/demo.json");
const TABLE: &str = include_str!("../../../testdata/cases/demo_decisions.json");
const LOOKUP_TIMEOUT_MS: u64 = 1000;

/// The two policies the source alternates between: the demo, and the demo
/// with the storefront key revoked and bob's membership in acme removed.
fn policy(variant: usize, revision: &str) -> Value {
    let mut doc: Value = serde_json::from_str(DEMO).unwrap();
    doc["revision"] = json!(revision);
    if variant == 1 {
        doc["api_keys"][0]["status"] = json!("revoked");
        doc["users"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .filter(|u| u["id"] == "bob")
            .for_each(|u| {
                u["memberships"].as_array_mut().unwrap().remove(0);
            });
    }
    doc
}

/// What the source does during one second.
#[derive(Debug, Clone, Copy)]
enum Phase {
    NewRevision,
    NotModified,
    Error,
    Timeout,
    Invalid,
}

const PHASES: [Phase; 7] = [
    Phase::NewRevision,
    Phase::NotModified,
    Phase::NewRevision,
    Phase::Error,
    Phase::NewRevision,
    Phase::Timeout,
    Phase::Invalid,
];

struct SourceState {
    phase: Phase,
    etag: String,
    body: String,
    revisions: BTreeSet<String>,
}

/// Keys only the lookup service knows (found), and one it does not.
const LOOKED_UP: [&str; 2] = ["soak-lookup-found", "soak-lookup-missing"];

fn lookup_entry() -> Value {
    json!({"id": "soak", "app": "acme-storefront", "sha256": policy::hash_key(LOOKED_UP[0]),
           "status": "active", "environments": ["prod"]})
}

fn serve(stream: TcpStream, state: &Mutex<SourceState>, fetches: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut if_none_match = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("if-none-match") {
                    if_none_match = Some(value.trim().to_string());
                }
            }
        }
        let (status, etag, body) = if let Some(hash) = path.strip_prefix("/keys/") {
            // Slow, within the lookup timeout.
            thread::sleep(Duration::from_millis(150));
            if hash == policy::hash_key(LOOKED_UP[0]) {
                (200, String::new(), lookup_entry().to_string())
            } else {
                (404, String::new(), "{}".to_string())
            }
        } else {
            fetches.fetch_add(1, Ordering::SeqCst);
            let s = state.lock().unwrap();
            match s.phase {
                Phase::NewRevision if if_none_match.as_deref() == Some(s.etag.as_str()) => {
                    (304, s.etag.clone(), String::new())
                }
                Phase::NewRevision => (200, s.etag.clone(), s.body.clone()),
                Phase::NotModified => (304, s.etag.clone(), String::new()),
                Phase::Error => (500, String::new(), "boom".into()),
                Phase::Invalid => (200, "\"broken\"".into(), "{\"revision\": 7}".into()),
                Phase::Timeout => {
                    drop(s);
                    thread::sleep(Duration::from_millis(1500));
                    (503, String::new(), String::new())
                }
            }
        };
        let etag = if etag.is_empty() {
            String::new()
        } else {
            format!("etag: {etag}\r\n")
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\n{etag}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A request of the mix: from the shared table (those Envoy can run), plus
/// the looked-up keys.
#[derive(Clone)]
struct Probe {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

fn probes() -> Vec<Probe> {
    let table: Value = serde_json::from_str(TABLE).unwrap();
    let mut probes: Vec<Probe> = table["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["envoy"] != false && c["mode"].as_str().unwrap_or("enforce") == "enforce")
        .map(|c| Probe {
            method: c["method"].as_str().unwrap().into(),
            path: c["path"].as_str().unwrap().into(),
            headers: c["headers"]
                .as_array()
                .map(|h| {
                    h.iter()
                        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    for key in LOOKED_UP {
        probes.push(Probe {
            method: "GET".into(),
            path: "/orders/1".into(),
            headers: vec![("x-api-key".into(), key.into())],
        });
    }
    probes
}

/// (status, reason, annotations without the revision) as `snapshot` decides
/// `probe` now, the looked-up key known like the lookup service knows it.
fn expected(snapshot: &Snapshot, probe: &Probe) -> (u16, Option<String>, BTreeMap<String, String>) {
    let headers: Vec<(&str, &str)> = probe
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let sources = Sources::default();
    let request = Request::from_parts(
        &sources,
        &probe.method,
        "localhost",
        probe.path.as_str(),
        &headers,
    );
    let now = Timestamp::from_unix_nanos(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64,
    );
    let external =
        tenantgate_policy::compile_external_key(snapshot, &lookup_entry().to_string()).unwrap();
    let decision = policy::decide(
        snapshot,
        &request,
        &tenantgate_policy::Context::new(now, Some("prod")).with_external_key(Some(&external)),
    );
    let annotations = decision
        .annotations(Mode::Enforce)
        .into_iter()
        .filter(|(n, _)| *n != "x-policy-revision")
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    (
        decision.status(),
        decision.reason.map(|r| r.code().to_string()),
        annotations,
    )
}

fn soak(seconds: u64) {
    let state = Arc::new(Mutex::new(SourceState {
        phase: Phase::NewRevision,
        etag: "\"r0\"".into(),
        body: policy(0, "r0").to_string(),
        revisions: BTreeSet::from(["r0".to_string()]),
    }));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let source_port = listener.local_addr().unwrap().port();
    let fetches = Arc::new(AtomicUsize::new(0));
    {
        let (state, fetches) = (state.clone(), fetches.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, fetches) = (state.clone(), fetches.clone());
                thread::spawn(move || serve(stream, &state, &fetches));
            }
        });
    }
    let upstream = Upstream::start();
    let config = json!({"environment": "prod",
        "snapshot": {"remote": {"cluster": "policy", "path": "/snapshot", "poll_ms": 200, "timeout_ms": 500}},
        "key_lookup": {"cluster": "policy", "path_prefix": "/keys/", "timeout_ms": LOOKUP_TIMEOUT_MS,
                       "ttl_ms": 500, "negative_ttl_ms": 500}});
    let envoy = EnvoyBuilder::new(upstream.port())
        .policy_port(source_port)
        .plugin_config(config.to_string())
        .concurrency(4)
        .log_level("info")
        .start();
    let port = envoy.listen_port();
    let deadline = Instant::now() + Duration::from_secs(10);
    while try_http_request(port, "GET", "/health", "localhost", &[], None)
        .map(|r| r.status)
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "no first snapshot");
        thread::sleep(Duration::from_millis(50));
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The source: one phase a second; every new revision alternates the policy.
    let flapper = {
        let (state, stop) = (state.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let phase = PHASES[n % PHASES.len()];
                {
                    let mut s = state.lock().unwrap();
                    s.phase = phase;
                    if matches!(phase, Phase::NewRevision) {
                        let revision = format!("r{}", n + 1);
                        s.body = policy((n / 2) % 2, &revision).to_string();
                        s.etag = format!("\"{revision}\"");
                        s.revisions.insert(revision);
                    }
                }
                n += 1;
                thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let probes = Arc::new(probes());
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let counts = Arc::new(Mutex::new(BTreeMap::<u16, usize>::new()));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (probes, failures, counts, state) = (
                probes.clone(),
                failures.clone(),
                counts.clone(),
                state.clone(),
            );
            let expectations: Vec<Vec<_>> = (0..2)
                .map(|v| {
                    let snapshot = policy::load_snapshot(&policy(v, "x").to_string()).unwrap();
                    probes.iter().map(|p| expected(&snapshot, p)).collect()
                })
                .collect();
            let stop = stop.clone();
            thread::spawn(move || {
                let mut i = c;
                while !stop.load(Ordering::SeqCst) {
                    let which = i % probes.len();
                    let probe = &probes[which];
                    i += 7;
                    let headers: Vec<(&str, &str)> = probe
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let Ok(r) = try_http_request(
                        port,
                        &probe.method,
                        &probe.path,
                        "localhost",
                        &headers,
                        None,
                    ) else {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{} {}: no response", probe.method, probe.path));
                        continue;
                    };
                    *counts.lock().unwrap().entry(r.status).or_default() += 1;
                    if let Some(problem) = check(
                        &r,
                        probe,
                        &expectations[0][which],
                        &expectations[1][which],
                        &state,
                    ) {
                        failures.lock().unwrap().push(problem);
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    flapper.join().unwrap();
    let log = envoy.log_text();
    let failures = failures.lock().unwrap();
    let counts = counts.lock().unwrap();
    let total: usize = counts.values().sum();
    let revisions = state.lock().unwrap().revisions.len();
    println!(
        "soak {seconds} s: {total} requests {counts:?}; {revisions} revisions served, {} fetches, swaps {}, fetch failed {}, invalid {}, not modified {}",
        fetches.load(Ordering::SeqCst),
        envoy.counter("tenantgate.snapshot.swaps"),
        envoy.counter("tenantgate.fetch.failed"),
        envoy.counter("tenantgate.fetch.invalid"),
        envoy.counter("tenantgate.fetch.not_modified"),
    );
    assert!(
        failures.is_empty(),
        "{} of {total} requests wrong:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for sign in ["panic", "wasm trap", "Function: proxy_on", "failed to"] {
        assert!(
            !log.contains(sign),
            "`{sign}` in Envoy's log:\n{}",
            support::tail_lines(&log, 40)
        );
    }
    assert!(total > seconds as usize * 20, "only {total} requests");
    assert!(
        envoy.counter("tenantgate.snapshot.swaps") >= seconds / 4,
        "the revisions did not arrive"
    );
    assert!(
        envoy.counter("tenantgate.fetch.failed") >= 1
            && envoy.counter("tenantgate.fetch.invalid") >= 1
    );
}

/// Why the response `r` to `probe` is no decision either policy makes (with
/// a revision the source served), if it is not.
fn check(
    r: &support::Response,
    probe: &Probe,
    a: &(u16, Option<String>, BTreeMap<String, String>),
    b: &(u16, Option<String>, BTreeMap<String, String>),
    state: &Mutex<SourceState>,
) -> Option<String> {
    let what = format!("{} {} {:?}", probe.method, probe.path, probe.headers);
    let looked_up = probe
        .headers
        .iter()
        .any(|(_, v)| LOOKED_UP.contains(&v.as_str()));
    if r.status >= 500 {
        let reason = r.json()["reason"].as_str().unwrap_or("").to_string();
        if looked_up && reason == "key_lookup_unavailable" {
            return None;
        }
        return Some(format!("{what}: {} {}", r.status, r.body));
    }
    if r.status != 200 {
        let reason = r.json()["reason"].as_str().map(str::to_string);
        let fits =
            |e: &(u16, Option<String>, BTreeMap<String, String>)| e.0 == r.status && e.1 == reason;
        return (!fits(a) && !fits(b)).then(|| {
            format!(
                "{what}: {} {reason:?}, want {:?} or {:?}",
                r.status,
                (a.0, &a.1),
                (b.0, &b.1)
            )
        });
    }
    let headers = r.json()["headers"].clone();
    let revision = headers["x-policy-revision"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if !state.lock().unwrap().revisions.contains(&revision) {
        return Some(format!("{what}: revision {revision:?} was never served"));
    }
    let got: BTreeMap<String, String> = [
        "x-tenant-id",
        "x-tenant-handle",
        "x-tenant-teams",
        "x-tenant-roles",
        "x-principal",
    ]
    .iter()
    .filter_map(|n| headers[n].as_str().map(|v| (n.to_string(), v.to_string())))
    .collect();
    let fits = |e: &(u16, Option<String>, BTreeMap<String, String>)| e.0 == 200 && e.2 == got;
    (!fits(a) && !fits(b)).then(|| format!("{what}: 200 with {got:?}, want {:?} or {:?}", a, b))
}

#[test]
fn soak_short() {
    soak(12);
}

#[test]
#[ignore]
fn soak_full() {
    soak(60);
}
