//! `engines`: ns per decision for the same authorization questions in tenantgate,
//! cedar-policy and regorus, at 1k, 100k and 1M generated keys, in one run.
//! Writes `target/bench/engines.json` (repo root). See README.md.
//!
//! ```sh
//! cd bench/engines && env -u RUST_BACKTRACE cargo run --release -- [--sizes 1k,100k,1m] [--rounds 15] [--out PATH]
//! ```

mod cedar;
mod mix;
mod rego;
mod world;

use mix::Question;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};
use tenantgate_policy::generate::generate;
use tenantgate_policy::{self as policy, Request, Snapshot, Sources, Timestamp};

const SEED: u64 = 42;
const SAMPLE: usize = 256;
const ENVIRONMENT: &str = "prod";
const NOW: &str = "2026-12-01T00:00:00Z";
/// The demo world is also checked before its expiries (2026-01-01, 2026-06-30).
const DEMO_NOWS: [&str; 2] = ["2025-06-01T00:00:00Z", NOW];
const DEMO_ENVS: [&str; 2] = ["prod", "staging"];
const WARMUP: Duration = Duration::from_millis(300);
const BATCH: Duration = Duration::from_millis(40);
const DEMO_JSON: &str = include_str!("../../../policies/demo.json");

/// (label, organizations, keys): 1k and 100k as in crates/policy/benches/decide.rs.
const SIZES: [(&str, usize, usize); 3] = [
    ("1k", 100, 1_000),
    ("100k", 2_000, 100_000),
    ("1m", 20_000, 1_000_000),
];

/// A question asked at a gateway environment and a time.
#[derive(Debug, Clone)]
struct Case {
    q: Question,
    env: &'static str,
    now_ts: Timestamp,
    now_s: i64,
}

fn case(q: Question, env: &'static str, now: &str) -> Case {
    Case {
        q,
        env,
        now_ts: Timestamp::parse_rfc3339(now).unwrap_or(Timestamp(0)),
        now_s: world::unix_seconds(now).unwrap_or(0),
    }
}

/// tenantgate's decision: (allowed, reason code). The timed call.
fn tg_decide(snapshot: &Snapshot, sources: &Sources, c: &Case) -> (bool, &'static str) {
    let headers = [("x-api-key", c.q.raw_key.as_str())];
    let request = Request::from_parts(sources, c.q.method, &c.q.host, &c.q.path, &headers);
    let d = policy::decide(snapshot, &request, &tenantgate_policy::Context::new(c.now_ts, Some(c.env)));
    (d.allowed(), d.reason.map_or("allow", |r| r.code()))
}

/// The route tenantgate matches for a case.
fn tg_route(snapshot: &Snapshot, sources: &Sources, c: &Case) -> Option<String> {
    let headers = [("x-api-key", c.q.raw_key.as_str())];
    let request = Request::from_parts(sources, c.q.method, &c.q.host, &c.q.path, &headers);
    let d = policy::decide(snapshot, &request, &tenantgate_policy::Context::new(c.now_ts, Some(c.env)));
    d.route.map(str::to_string)
}

/// The demo world's questions: every demo key on every route, GET and POST, in
/// prod and staging, before and after its expiries; the route id is the one
/// tenantgate matches, and only compared routes are kept.
fn demo_cases(doc: &Value, snapshot: &Snapshot) -> Vec<Case> {
    let compared: HashSet<&str> = world::arr(doc, "routes")
        .iter()
        .filter(|r| world::compared_route(r))
        .map(|r| world::s(r, "id"))
        .collect();
    let sources = Sources::default();
    let mut out = Vec::new();
    for env in DEMO_ENVS {
        for now in DEMO_NOWS {
            for q in mix::demo_questions(doc) {
                let mut c = case(q, env, now);
                let Some(route) = tg_route(snapshot, &sources, &c) else {
                    continue;
                };
                if compared.contains(route.as_str()) {
                    c.q.route = route;
                    out.push(c);
                }
            }
        }
    }
    out
}

/// The outcome of asking every engine every case.
#[derive(Default, Debug)]
struct Agreement {
    questions: usize,
    allowed: usize,
    reasons: BTreeMap<&'static str, usize>,
    kinds: BTreeMap<&'static str, (usize, usize)>,
    /// Per engine other than tenantgate, the cases it decided differently.
    disagreements: BTreeMap<&'static str, Vec<Value>>,
}

impl Agreement {
    fn count(&self, engine: &str) -> usize {
        self.disagreements.get(engine).map_or(0, Vec::len)
    }

    fn to_json(&self) -> Value {
        json!({
            "questions": self.questions,
            "agreed_by": self.disagreements.iter()
                .map(|(e, d)| (e.to_string(), json!(self.questions - d.len())))
                .collect::<Map<_, _>>(),
            "allowed": self.allowed,
            "denied": self.questions - self.allowed,
            "tenantgate_reasons": self.reasons,
            "by_kind_questions_allowed": self.kinds.iter()
                .map(|(k, (n, a))| (k.to_string(), json!([n, a])))
                .collect::<Map<_, _>>(),
            "disagreements": self.disagreements,
        })
    }
}

type Other<'e> = (&'static str, Box<dyn FnMut(&Case) -> bool + 'e>);

fn check(snapshot: &Snapshot, cases: &[Case], others: &mut [Other<'_>]) -> Agreement {
    let sources = Sources::default();
    let mut a = Agreement {
        questions: cases.len(),
        ..Agreement::default()
    };
    for (name, _) in others.iter() {
        a.disagreements.insert(name, Vec::new());
    }
    for c in cases {
        let (tg, reason) = tg_decide(snapshot, &sources, c);
        *a.reasons.entry(reason).or_default() += 1;
        let k = a.kinds.entry(c.q.kind).or_default();
        k.0 += 1;
        if tg {
            a.allowed += 1;
            k.1 += 1;
        }
        for (name, decide) in others.iter_mut() {
            let other = decide(c);
            if other != tg {
                a.disagreements.entry(name).or_default().push(json!({
                    "method": c.q.method, "host": c.q.host, "path": c.q.path, "route": c.q.route,
                    "key": c.q.raw_key, "env": c.env, "now": c.now_s,
                    "tenantgate": tg, "reason": reason, *name: other,
                }));
            }
        }
    }
    a
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e3 * 10.0).round() / 10.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn rss_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One engine under the clock: a pass decides every question once.
struct Timed<'a> {
    name: &'static str,
    pass: Box<dyn FnMut() -> usize + 'a>,
    reps: usize,
    samples: Vec<f64>,
}

/// Warm-up, then `rounds` rounds in which every engine runs one batch in turn
/// (interleaved, so machine noise falls on all engines alike). Median ns/decision.
fn measure(engines: &mut [Timed<'_>], questions: usize, rounds: usize) {
    for e in engines.iter_mut() {
        let start = Instant::now();
        let mut passes = 0usize;
        while passes == 0 || start.elapsed() < WARMUP {
            black_box((e.pass)());
            passes += 1;
        }
        let per_pass = start.elapsed().as_secs_f64() / passes as f64;
        e.reps = ((BATCH.as_secs_f64() / per_pass).ceil() as usize).max(1);
    }
    for _ in 0..rounds {
        for e in engines.iter_mut() {
            let start = Instant::now();
            for _ in 0..e.reps {
                black_box((e.pass)());
            }
            let ns = start.elapsed().as_nanos() as f64 / (e.reps * questions) as f64;
            e.samples.push(ns);
        }
    }
}

struct Args {
    sizes: Vec<String>,
    rounds: usize,
    out: std::path::PathBuf,
}

fn args() -> Result<Args, String> {
    let repo_root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut a = Args {
        sizes: SIZES.iter().map(|s| s.0.to_string()).collect(),
        rounds: 15,
        out: repo_root.join("target/bench/engines.json"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--sizes" => a.sizes = value()?.split(',').map(str::to_string).collect(),
            "--rounds" => a.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--out" => a.out = value()?.into(),
            _ => {
                return Err(format!(
                    "unknown argument `{flag}` (--sizes, --rounds, --out)"
                ))
            }
        }
    }
    for s in &a.sizes {
        if !SIZES.iter().any(|(l, _, _)| l == s) {
            return Err(format!("unknown size `{s}` (1k, 100k, 1m)"));
        }
    }
    Ok(a)
}

#[derive(Default)]
struct Report {
    ns: BTreeMap<&'static str, Map<String, Value>>,
    load_ms: BTreeMap<&'static str, Map<String, Value>>,
    convert_ms: BTreeMap<&'static str, Map<String, Value>>,
    agreement: Map<String, Value>,
    samples: BTreeMap<&'static str, Map<String, Value>>,
    rss_mb: Map<String, Value>,
    notes: Vec<String>,
}

/// The demo world and the corners world (demo plus the corners it lacks).
fn small_worlds() -> Result<[(&'static str, Value); 2], String> {
    let demo: Value = serde_json::from_str(DEMO_JSON).map_err(|e| e.to_string())?;
    let corners = mix::corners_world(&demo);
    Ok([("demo", demo), ("corners", corners)])
}

/// All three engines (and the RVM) agree on a small world's grid of questions.
fn run_small(name: &'static str, doc: &Value, r: &mut Report) -> Result<(), String> {
    let snapshot = policy::load_snapshot(&doc.to_string()).map_err(|e| format!("{name}: {e:?}"))?;
    let doc = doc.clone();
    let cases = demo_cases(&doc, &snapshot);
    let cedar_text = cedar::entities_json(&doc).to_string();
    let rego_text = rego::data_json(&doc).to_string();
    let cedar_prod = cedar::CedarEngine::load(&cedar_text, &cedar::policy_text("prod"))?;
    let cedar_staging = cedar::CedarEngine::load(&cedar_text, &cedar::policy_text("staging"))?;
    let mut rego_engine = rego::RegoEngine::load(&rego_text, "prod")?;
    let mut rvm = rego_engine.rvm()?;
    let mut others: Vec<Other<'_>> = vec![
        (
            "cedar",
            Box::new(|c: &Case| {
                let e = if c.env == "prod" {
                    &cedar_prod
                } else {
                    &cedar_staging
                };
                e.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s)
            }),
        ),
        (
            "regorus",
            Box::new(|c: &Case| {
                rego_engine.set_env(c.env);
                rego_engine.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s)
            }),
        ),
        (
            "regorus_rvm",
            Box::new(|c: &Case| {
                rvm.set_env(c.env);
                rvm.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s)
            }),
        ),
    ];
    let a = check(&snapshot, &cases, &mut others);
    drop(others);
    r.agreement.insert(name.into(), a.to_json());
    let bad: usize = a.disagreements.values().map(Vec::len).sum();
    eprintln!(
        "[{name}] {} questions ({} allowed), disagreements: cedar {}, regorus {}, rvm {}; reasons {:?}",
        a.questions, a.allowed, a.count("cedar"), a.count("regorus"), a.count("regorus_rvm"), a.reasons
    );
    if bad > 0 {
        return Err(format!("{name} world: {bad} disagreement(s)"));
    }
    Ok(())
}

fn run_size(
    label: &'static str,
    orgs: usize,
    keys: usize,
    rounds: usize,
    r: &mut Report,
) -> Result<(), String> {
    eprintln!("[{label}] generating {orgs} organizations, {keys} keys");
    let t = Instant::now();
    let doc = generate(orgs, keys, SEED);
    eprintln!("[{label}] generated in {:.1} s", t.elapsed().as_secs_f64());
    let cases: Vec<Case> = mix::questions(&doc, SEED, SAMPLE)
        .into_iter()
        .map(|q| case(q, ENVIRONMENT, NOW))
        .collect();

    // Each engine's input, from the same document.
    let t = Instant::now();
    let snapshot_text = doc.to_string();
    let tg_convert = t.elapsed();
    let t = Instant::now();
    let cedar_text = cedar::entities_json(&doc).to_string();
    let cedar_convert = t.elapsed();
    let t = Instant::now();
    let rego_text = rego::data_json(&doc).to_string();
    let rego_convert = t.elapsed();
    drop(doc);
    eprintln!(
        "[{label}] inputs: snapshot {} MB, cedar entities {} MB, rego data {} MB",
        snapshot_text.len() >> 20,
        cedar_text.len() >> 20,
        rego_text.len() >> 20
    );

    // Loading: each engine from its JSON text.
    let t = Instant::now();
    let snapshot =
        policy::load_snapshot(&snapshot_text).map_err(|e| format!("tenantgate: {e:?}"))?;
    let tg_load = t.elapsed();
    drop(snapshot_text);
    let t = Instant::now();
    let cedar_engine = cedar::CedarEngine::load(&cedar_text, &cedar::policy_text(ENVIRONMENT))?;
    let cedar_load = t.elapsed();
    drop(cedar_text);
    let t = Instant::now();
    let mut rego_engine = rego::RegoEngine::load(&rego_text, ENVIRONMENT)?;
    let rego_load = t.elapsed();
    drop(rego_text);
    let t = Instant::now();
    let mut rvm = match rego_engine.rvm() {
        Ok(vm) => Some(vm),
        Err(e) => {
            r.notes
                .push(format!("{label}: regorus RVM not measured: {e}"));
            None
        }
    };
    let rvm_load = rego_load + t.elapsed();
    eprintln!(
        "[{label}] loaded: tenantgate {:.0} ms, cedar {:.0} ms ({} entities), regorus {:.0} ms (+RVM {:.0} ms); rss {:?} MB",
        ms(tg_load),
        ms(cedar_load),
        cedar_engine.entity_count(),
        ms(rego_load),
        ms(rvm_load) - ms(rego_load),
        rss_mb()
    );
    for (name, load, convert) in [
        ("tenantgate", tg_load, tg_convert),
        ("cedar", cedar_load, cedar_convert),
        ("regorus", rego_load, rego_convert),
        ("regorus_rvm", rvm_load, rego_convert),
    ] {
        r.load_ms
            .entry(name)
            .or_default()
            .insert(label.into(), json!(ms(load)));
        r.convert_ms
            .entry(name)
            .or_default()
            .insert(label.into(), json!(ms(convert)));
    }

    // Agreement on every question before any timing.
    let a = {
        let mut others: Vec<Other<'_>> = vec![
            (
                "cedar",
                Box::new(|c: &Case| {
                    cedar_engine.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s)
                }),
            ),
            (
                "regorus",
                Box::new(|c: &Case| {
                    rego_engine.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s)
                }),
            ),
        ];
        if let Some(vm) = rvm.as_mut() {
            others.push((
                "regorus_rvm",
                Box::new(|c: &Case| vm.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s)),
            ));
        }
        check(&snapshot, &cases, &mut others)
    };
    r.agreement.insert(label.into(), a.to_json());
    for d in a.disagreements.values().flatten() {
        eprintln!("[{label}] DISAGREE {d}");
    }
    if a.count("cedar") + a.count("regorus") > 0 {
        return Err(format!(
            "{label}: disagreements (cedar {}, regorus {}); not timed",
            a.count("cedar"),
            a.count("regorus")
        ));
    }
    if a.count("regorus_rvm") > 0 {
        r.notes.push(format!(
            "{label}: regorus RVM disagrees on {} question(s); not timed",
            a.count("regorus_rvm")
        ));
        rvm = None;
    }
    eprintln!(
        "[{label}] all {} questions agree ({} allowed); reasons {:?}",
        a.questions, a.allowed, a.reasons
    );

    // Timing.
    let sources = Sources::default();
    let (snap, src, qs) = (&snapshot, &sources, &cases);
    let cedar_ref = &cedar_engine;
    let rego_mut = &mut rego_engine;
    let mut engines = vec![
        Timed {
            name: "tenantgate",
            pass: Box::new(move || qs.iter().filter(|c| tg_decide(snap, src, c).0).count()),
            reps: 1,
            samples: Vec::new(),
        },
        Timed {
            name: "cedar",
            pass: Box::new(move || {
                qs.iter()
                    .filter(|c| cedar_ref.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s))
                    .count()
            }),
            reps: 1,
            samples: Vec::new(),
        },
        Timed {
            name: "regorus",
            pass: Box::new(move || {
                qs.iter()
                    .filter(|c| rego_mut.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s))
                    .count()
            }),
            reps: 1,
            samples: Vec::new(),
        },
    ];
    if let Some(vm) = rvm.as_mut() {
        engines.push(Timed {
            name: "regorus_rvm",
            pass: Box::new(move || {
                qs.iter()
                    .filter(|c| vm.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s))
                    .count()
            }),
            reps: 1,
            samples: Vec::new(),
        });
    }
    measure(&mut engines, qs.len(), rounds);
    for e in &engines {
        let m = round1(median(e.samples.clone()));
        eprintln!(
            "[{label}] {:<11} {:>9.1} ns/decision (median of {} batches of {} passes; min {:.1}, max {:.1})",
            e.name,
            m,
            e.samples.len(),
            e.reps,
            e.samples.iter().copied().fold(f64::INFINITY, f64::min),
            e.samples.iter().copied().fold(0.0, f64::max)
        );
        r.ns.entry(e.name)
            .or_default()
            .insert(label.into(), json!(m));
        r.samples.entry(e.name).or_default().insert(
            label.into(),
            json!(e.samples.iter().map(|x| round1(*x)).collect::<Vec<_>>()),
        );
    }
    r.rss_mb.insert(label.into(), json!(rss_mb()));
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("engines: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut report = Report::default();
    let mut failed = false;
    let started = Instant::now();
    match small_worlds() {
        Ok(worlds) => {
            for (name, doc) in &worlds {
                if let Err(e) = run_small(name, doc, &mut report) {
                    eprintln!("engines: {e}");
                    report.notes.push(e);
                    failed = true;
                }
            }
        }
        Err(e) => {
            report.notes.push(e);
            failed = true;
        }
    }
    for (label, orgs, keys) in SIZES {
        if failed || !args.sizes.iter().any(|s| s == label) {
            continue;
        }
        if let Err(e) = run_size(label, orgs, keys, args.rounds, &mut report) {
            eprintln!("engines: {e}");
            report.notes.push(e);
            failed = true;
        }
    }
    let engines = ["tenantgate", "cedar", "regorus", "regorus_rvm"];
    for name in engines {
        let m = report.ns.entry(name).or_default();
        for (label, _, _) in SIZES {
            m.entry(label.to_string()).or_insert(Value::Null);
        }
    }
    let tg = report.ns.get("tenantgate").cloned().unwrap_or_default();
    let ratio = |other: &str| -> Map<String, Value> {
        let other = report.ns.get(other).cloned().unwrap_or_default();
        tg.iter()
            .map(|(k, v)| {
                let r = match (other.get(k).and_then(Value::as_f64), v.as_f64()) {
                    (Some(o), Some(t)) if t > 0.0 => json!(round1(o / t)),
                    _ => Value::Null,
                };
                (k.clone(), r)
            })
            .collect()
    };
    let mut notes = vec![
        "Same 256 questions per size for every engine (bench/engines/src/mix.rs): the keys crates/policy/benches/decide.rs samples, each on its own organization's /t/<org>/catalog or /orders route (GET, POST, POST orders/admin), 1/16 on another tenant's route, 1/16 on a sub-organization's, 1/16 with an unknown key; gateway environment prod, now 2026-12-01T00:00:00Z. The sizes' *_ns are for these; agreement.demo and agreement.corners are extra untimed checks over the demo world and the demo world plus the corners it lacks (mix.rs corners_world): every key x compared route x GET/POST x prod/staging x two dates.".to_string(),
        "Every engine's timed call includes hashing the raw key (SHA-256 hex) and building its request/input; tenantgate additionally does path hygiene and route matching from the path and host, Cedar and Rego are handed the route id and an action (Cedar) or the method (Rego).".to_string(),
        "Decisions are checked equal for every question before timing (agreement); bench/engines/README.md explains how the three policies are made equivalent and which corners are excluded from all three (public and tenant-\"*\" routes, [\"*\"] team lists, user principals, the tenant selector header).".to_string(),
        "ns = median over interleaved rounds (one ~40 ms batch per engine per round, after a 300 ms warm-up each) of wall time / decisions, std::time::Instant, one thread; other builds were running on the 2-core machine, so compare ratios within one run.".to_string(),
        "load_ms: each engine from its JSON text (tenantgate load_snapshot; Cedar PolicySet::from_str + Entities::from_json_str; regorus Value::from_json_str + add_data + add_policy + first eval; regorus_rvm adds compile_with_entrypoint + RVM compile); convert_ms: producing that text from the generated document.".to_string(),
        "cedar-policy 4.14.1 (no default features), regorus 0.14.1 (features std, arc, rvm): regorus_ns is the interpreter (Engine::eval_rule), regorus_rvm_ns the same policy and data compiled to its Rego VM (RegoVM::execute). Release profile lto=true, codegen-units=1 as in the root package.".to_string(),
    ];
    notes.append(&mut report.notes);
    notes.push(format!(
        "total run {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    let out = json!({
        "tenantgate_ns": report.ns.get("tenantgate"),
        "cedar_ns": report.ns.get("cedar"),
        "regorus_ns": report.ns.get("regorus"),
        "regorus_rvm_ns": report.ns.get("regorus_rvm"),
        "ratio_vs_tenantgate": {
            "cedar": ratio("cedar"), "regorus": ratio("regorus"), "regorus_rvm": ratio("regorus_rvm"),
        },
        "load_ms": report.load_ms,
        "convert_ms": report.convert_ms,
        "agreement": report.agreement,
        "batch_ns": report.samples,
        "rss_mb_after_size": report.rss_mb,
        "sizes": SIZES.iter().map(|(l, o, k)| (l.to_string(), json!({"organizations": o, "keys": k}))).collect::<Map<_, _>>(),
        "notes": notes,
    });
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(&out).unwrap_or_default();
    if let Err(e) = std::fs::write(&args.out, text + "\n") {
        eprintln!("engines: cannot write {}: {e}", args.out.display());
        return std::process::ExitCode::FAILURE;
    }
    eprintln!("wrote {}", args.out.display());
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests;
