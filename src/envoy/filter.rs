//! Root and HTTP contexts. The root context owns the configuration and the
//! current snapshot (inline, or live from a remote source); each HTTP context
//! holds an `Rc` to that shared state and takes a cheap `Rc` of the snapshot
//! current when its request arrives, so a swap never disturbs a request.

use super::abi::{self, Level, MetricKind};
use super::cache::Lru;
use super::live::{self, Lease, Meta, SharedKeys};
use super::wire;
use crate::config::{
    FailPolicy, FilterState, KeyLookup, PluginConfig, RemoteSource, SnapshotSource,
};
use crate::policy::{
    self, Action as PolicyAction, Decision, ExternalKey, Mode, Reason, Request, Snapshot, Sources,
    Timestamp, STRIPPED_HEADERS,
};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    std::panic::set_hook(Box::new(|info| {
        abi::log(Level::Critical, &format!("tenantgate: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// The per-worker key-lookup cache.
struct KeyCache {
    etag: String,
    entries: Lru<CacheEntry>,
}

struct CacheEntry {
    key: Option<Rc<ExternalKey>>,
    expires_ms: i64,
}

/// A compiled snapshot and the ETag it was fetched with.
struct Loaded {
    snapshot: Snapshot,
    etag: String,
}

/// What every request of this plugin instance reads.
struct Shared {
    mode: Mode,
    environment: Option<String>,
    sources: Sources,
    fail_policy: FailPolicy,
    current: Cell<Option<Rc<Loaded>>>,
    /// When the source last confirmed the current snapshot (remote sources only).
    confirmed_ms: Cell<Option<i64>>,
    /// Shared-data keys of the remote source, if any.
    remote_keys: Option<SharedKeys>,
    /// A published etag this VM could not compile; not retried until it changes.
    rejected_etag: Cell<Option<String>>,
    filter_state: FilterState,
    key_lookup: Option<KeyLookup>,
    /// Looked-up keys (and "no such key") of this worker, valid for the snapshot
    /// etag they were compiled against.
    key_cache: RefCell<KeyCache>,
    metrics: Metrics,
}

impl Shared {
    fn current(&self) -> Option<Rc<Loaded>> {
        let current = self.current.take();
        let copy = current.clone();
        self.current.set(current);
        copy
    }

    /// The snapshot to decide with: absent, or older than `max_staleness_ms`, is none.
    fn usable(&self, now_ms: i64) -> Option<Rc<Loaded>> {
        let current = self.current()?;
        match (self.fail_policy.max_staleness_ms, self.confirmed_ms.get()) {
            (Some(max), Some(confirmed))
                if now_ms.saturating_sub(confirmed) > i64::try_from(max).unwrap_or(i64::MAX) =>
            {
                None
            }
            _ => Some(current),
        }
    }

    /// Adopts the snapshot another VM published, if it differs from ours. Runs on
    /// every tick, and on the request path while this VM has no snapshot yet (a
    /// new worker must not answer 503 while another VM holds a good snapshot).
    fn pick_up(&self) {
        let Some(keys) = &self.remote_keys else {
            return;
        };
        let Ok(Some((meta_bytes, _))) = abi::get_shared_data(&keys.meta) else {
            return;
        };
        let Some(meta) = Meta::decode(&meta_bytes) else {
            return;
        };
        self.confirmed_ms.set(Some(meta.confirmed_ms));
        let current_etag = self.current().map(|l| l.etag.clone());
        let rejected = self.rejected_etag.take();
        let skip = current_etag.as_deref() == Some(meta.etag.as_str())
            || rejected.as_deref() == Some(meta.etag.as_str());
        self.rejected_etag.set(rejected);
        if skip {
            return;
        }
        let Ok(Some((packed, _))) = abi::get_shared_data(&keys.snapshot) else {
            return;
        };
        let Some((etag, body)) = live::unpack_snapshot(&packed) else {
            return;
        };
        if current_etag.as_deref() == Some(etag) {
            return;
        }
        match compile(body) {
            Ok((snapshot, compile_ms)) => self.install(
                Loaded {
                    snapshot,
                    etag: etag.to_string(),
                },
                compile_ms,
            ),
            Err(problem) => {
                self.metrics.bump(self.metrics.fetch_invalid);
                abi::log(
                    Level::Error,
                    &format!(
                        "tenantgate: published snapshot {etag} refused here: {}",
                        first_line(&problem)
                    ),
                );
                self.rejected_etag.set(Some(etag.to_string()));
            }
        }
    }

    fn cached_key(&self, digest: &[u8; 32], etag: &str, now_ms: i64) -> Cached {
        let Ok(mut cache) = self.key_cache.try_borrow_mut() else {
            return Cached::Unknown;
        };
        if cache.etag != etag {
            // A new snapshot: keys compiled against the old one may be wrong now.
            cache.entries.clear();
            cache.etag = etag.to_string();
            return Cached::Unknown;
        }
        match cache.entries.get(digest) {
            Some(entry) if entry.expires_ms > now_ms => match &entry.key {
                Some(key) => Cached::Found(key.clone()),
                None => Cached::Absent,
            },
            _ => Cached::Unknown,
        }
    }

    fn remember_key(
        &self,
        digest: [u8; 32],
        key: Option<Rc<ExternalKey>>,
        etag: &str,
        now_ms: i64,
    ) {
        let (Some(lookup), Ok(mut cache)) = (&self.key_lookup, self.key_cache.try_borrow_mut())
        else {
            return;
        };
        if cache.etag != etag {
            cache.entries.clear();
            cache.etag = etag.to_string();
        }
        let ttl = if key.is_some() {
            lookup.ttl_ms
        } else {
            lookup.negative_ttl_ms
        };
        let entry = CacheEntry {
            key,
            expires_ms: now_ms + i64::from(ttl),
        };
        cache.entries.put(digest, entry);
    }

    /// Makes `loaded` current; `compile_ms` is how long parsing and compiling took.
    fn install(&self, loaded: Loaded, compile_ms: i64) {
        let previous = self.current.replace(Some(Rc::new(loaded)));
        if let Some(old) = previous {
            publish_revision_gauge(old.snapshot.revision(), 0);
        }
        if let Some(new) = self.current() {
            publish_snapshot_gauges(&new.snapshot);
            abi::log(
                Level::Info,
                &format!(
                    "tenantgate: snapshot `{}` loaded ({} organizations, {} api keys, {} routes) in {compile_ms} ms; linear memory {} bytes",
                    new.snapshot.revision(),
                    new.snapshot.stats().organizations,
                    new.snapshot.stats().api_keys,
                    new.snapshot.stats().routes,
                    linear_memory_bytes(),
                ),
            );
        }
        self.metrics.bump(self.metrics.swaps);
    }
}

/// Metric ids, defined once per VM. `None` where the host refused a definition:
/// metrics are best effort and never fail a request.
struct Metrics {
    allowed: Option<u32>,
    denied: Vec<Option<u32>>,
    audit_would_deny: Vec<Option<u32>>,
    fail_open: Option<u32>,
    swaps: Option<u32>,
    fetch_ok: Option<u32>,
    fetch_not_modified: Option<u32>,
    fetch_failed: Option<u32>,
    fetch_invalid: Option<u32>,
    snapshot_age_ms: Option<u32>,
    lookup_hit: Option<u32>,
    lookup_miss: Option<u32>,
    lookup_negative_hit: Option<u32>,
    lookup_failed: Option<u32>,
}

impl Metrics {
    fn define() -> Metrics {
        let counter = |name: &str| abi::define_metric(MetricKind::Counter, name).ok();
        let per_reason = |prefix: &str| -> Vec<Option<u32>> {
            Reason::ALL
                .iter()
                .map(|r| counter(&format!("{prefix}.{}", r.code())))
                .collect()
        };
        Metrics {
            allowed: counter("tenantgate.allowed"),
            denied: per_reason("tenantgate.denied"),
            audit_would_deny: per_reason("tenantgate.audit_would_deny"),
            fail_open: counter("tenantgate.fail_open"),
            swaps: counter("tenantgate.snapshot.swaps"),
            fetch_ok: counter("tenantgate.fetch.ok"),
            fetch_not_modified: counter("tenantgate.fetch.not_modified"),
            fetch_failed: counter("tenantgate.fetch.failed"),
            fetch_invalid: counter("tenantgate.fetch.invalid"),
            snapshot_age_ms: abi::define_metric(MetricKind::Gauge, "tenantgate.snapshot.age_ms")
                .ok(),
            lookup_hit: counter("tenantgate.key_lookup.cache_hit"),
            lookup_miss: counter("tenantgate.key_lookup.cache_miss"),
            lookup_negative_hit: counter("tenantgate.key_lookup.negative_hit"),
            lookup_failed: counter("tenantgate.key_lookup.failed"),
        }
    }

    fn bump(&self, id: Option<u32>) {
        if let Some(id) = id {
            let _ = abi::increment_metric(id, 1);
        }
    }

    fn count(&self, decision: Option<Reason>, mode: Mode) {
        let id = match (decision, mode) {
            (None, _) => self.allowed,
            (Some(r), Mode::Enforce) => self.denied.get(r as usize).copied().flatten(),
            (Some(r), Mode::Audit) => self.audit_would_deny.get(r as usize).copied().flatten(),
        };
        self.bump(id);
    }
}

fn publish_revision_gauge(revision: &str, value: u64) {
    let revision: String = revision
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(id) = abi::define_metric(
        MetricKind::Gauge,
        &format!("tenantgate.snapshot.revision.{revision}"),
    ) {
        let _ = abi::record_metric(id, value);
    }
}

/// Gauges describing the loaded snapshot.
fn publish_snapshot_gauges(snapshot: &Snapshot) {
    publish_revision_gauge(snapshot.revision(), 1);
    let counts = [
        ("tenantgate.snapshot.api_keys", snapshot.stats().api_keys),
        (
            "tenantgate.snapshot.organizations",
            snapshot.stats().organizations,
        ),
    ];
    for (name, value) in counts {
        if let Ok(id) = abi::define_metric(MetricKind::Gauge, name) {
            let _ = abi::record_metric(id, value as u64);
        }
    }
}

fn now_ms() -> Option<i64> {
    abi::now_nanos().ok().map(|n| n / 1_000_000)
}

/// The remote-source state of one VM.
struct Live {
    remote: RemoteSource,
    keys: SharedKeys,
    /// This VM's lease identity.
    me: u64,
    in_flight: Option<u32>,
    next_fetch_ms: i64,
    first_tick: bool,
}

#[derive(Default)]
struct Root {
    shared: Option<Rc<Shared>>,
    live: Option<Live>,
}

impl Root {
    fn pick_up(&self) {
        if let Some(shared) = &self.shared {
            shared.pick_up();
        }
    }

    /// Takes or renews the fetch lease; true when this VM holds it now.
    fn hold_lease(live: &Live, now_ms: i64) -> bool {
        let current = match abi::get_shared_data(&live.keys.lease) {
            Ok(found) => found,
            Err(_) => return false,
        };
        let (lease, cas) = match &current {
            Some((bytes, cas)) => (Lease::decode(bytes), *cas),
            None => (None, 0),
        };
        if !Lease::claimable(lease, live.me, now_ms) {
            return false;
        }
        let mine = Lease {
            owner: live.me,
            expires_ms: now_ms + live::lease_ms(live.remote.poll_ms, live.remote.timeout_ms),
        };
        // With cas 0 (no key yet) Envoy does not compare; on_configure creates the
        // key first, so competing VMs race on a real version and one wins.
        abi::set_shared_data(&live.keys.lease, mine.encode().as_bytes(), cas).is_ok()
    }

    fn fetch(&mut self, now_ms: i64) {
        let (Some(shared), Some(live)) = (&self.shared, &mut self.live) else {
            return;
        };
        let etag = shared.current().map(|l| l.etag.clone());
        let mut headers = vec![
            (":method", "GET"),
            (":path", live.remote.path.as_str()),
            (":authority", live.remote.authority.as_str()),
        ];
        if let Some(etag) = etag.as_deref() {
            headers.push(("if-none-match", etag));
        }
        let timeout = Duration::from_millis(u64::from(live.remote.timeout_ms));
        match abi::dispatch_http_call(&live.remote.cluster, headers, timeout) {
            Ok(token) => live.in_flight = Some(token),
            Err(e) => {
                shared.metrics.bump(shared.metrics.fetch_failed);
                abi::log(
                    Level::Warn,
                    &format!(
                        "tenantgate: cannot fetch from cluster `{}`: {e}",
                        live.remote.cluster
                    ),
                );
            }
        }
        live.next_fetch_ms = now_ms + live::jittered_ms(live.remote.poll_ms, abi::random_u64());
    }

    fn on_fetch_response(&mut self, num_headers: usize, body_size: usize) {
        let (Some(shared), Some(live)) = (&self.shared, &mut self.live) else {
            return;
        };
        let now = now_ms().unwrap_or(0);
        let failed = |why: String| {
            shared.metrics.bump(shared.metrics.fetch_failed);
            abi::log(Level::Warn, &format!("tenantgate: snapshot fetch from `{}` failed: {why}; keeping the last good snapshot", live.remote.cluster));
        };
        if num_headers == 0 {
            return failed("no response (timeout or connection failure)".into());
        }
        let Ok(buffer) = abi::call_response_header_buffer() else {
            return failed("cannot read the response headers".into());
        };
        let pairs = wire::parse_header_map(&buffer).unwrap_or_default();
        let header = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
                .and_then(|(_, v)| std::str::from_utf8(v).ok())
        };
        let publish_meta = |etag: &str| {
            let meta = Meta {
                etag: etag.to_string(),
                confirmed_ms: now,
            };
            let _ = abi::set_shared_data(&live.keys.meta, meta.encode().as_bytes(), 0);
            shared.confirmed_ms.set(Some(now));
        };
        match header(":status") {
            Some("304") => {
                shared.metrics.bump(shared.metrics.fetch_not_modified);
                if let Some(current) = shared.current() {
                    publish_meta(&current.etag);
                }
            }
            Some("200") => {
                let Ok(body) = abi::call_response_body(body_size) else {
                    return failed("cannot read the response body".into());
                };
                let loaded = compile(&body);
                match loaded {
                    Ok((snapshot, compile_ms)) => {
                        shared.metrics.bump(shared.metrics.fetch_ok);
                        let etag = live::etag_or_revision(header("etag"), snapshot.revision());
                        // Publish first, compiled: the other VMs decode it instead of parsing JSON.
                        let compiled = if policy::binary::is_binary(&body) {
                            body
                        } else {
                            // The JSON text is the largest thing alive here: free it first.
                            drop(body);
                            policy::binary::encode(&snapshot)
                        };
                        let _ = abi::set_shared_data(
                            &live.keys.snapshot,
                            &live::pack_snapshot(&etag, &compiled),
                            0,
                        );
                        publish_meta(&etag);
                        if shared.current().map(|l| l.etag.clone()).as_deref()
                            != Some(etag.as_str())
                        {
                            shared.install(Loaded { snapshot, etag }, compile_ms);
                        }
                    }
                    Err(problem) => {
                        // Never log the body: it may be large, and it is the policy.
                        shared.metrics.bump(shared.metrics.fetch_invalid);
                        abi::log(Level::Error, &format!("tenantgate: fetched snapshot refused, keeping the last good one: {}", first_line(&problem)));
                    }
                }
            }
            status => failed(format!("status {}", status.unwrap_or("none"))),
        }
    }
}

/// Parses and compiles a fetched or published body, timing it for the log.
fn compile(body: &[u8]) -> Result<(Snapshot, i64), String> {
    let started = abi::now_nanos().unwrap_or(0);
    // JSON, or compiled (`policyctl compile`, and what the fetcher publishes).
    let snapshot = policy::load_snapshot_bytes(body).map_err(|e| e.to_string())?;
    let elapsed_ms = abi::now_nanos().unwrap_or(started).saturating_sub(started) / 1_000_000;
    Ok((snapshot, elapsed_ms))
}

/// Bytes of this VM's linear memory.
fn linear_memory_bytes() -> usize {
    core::arch::wasm32::memory_size(0) * 65_536
}

fn first_line(text: &str) -> String {
    let mut lines = text.lines();
    let head = lines.next().unwrap_or("");
    let more = lines.count();
    if more == 0 {
        head.to_string()
    } else {
        format!("{head} (+{more} more lines)")
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let ours = self
            .live
            .as_ref()
            .is_some_and(|l| l.in_flight == Some(token_id));
        if ours {
            if let Some(live) = &mut self.live {
                live.in_flight = None;
            }
            self.on_fetch_response(num_headers, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        let bytes = match abi::plugin_configuration(plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(e) => {
                abi::log(
                    Level::Error,
                    &format!("tenantgate: cannot read the plugin configuration: {e}"),
                );
                return false;
            }
        };
        let config = match PluginConfig::parse(&bytes) {
            Ok(config) => config,
            Err(e) => {
                // Returning false makes Envoy reject the configuration; the previous
                // one, if any, keeps serving.
                abi::log(
                    Level::Error,
                    &format!("tenantgate: configuration refused: {e}"),
                );
                return false;
            }
        };
        let remote_keys = match &config.snapshot {
            SnapshotSource::Remote(remote) => Some(SharedKeys::new(&remote.cluster, &remote.path)),
            _ => None,
        };
        let shared = Rc::new(Shared {
            mode: config.mode,
            environment: config.environment,
            sources: config.sources,
            fail_policy: config.fail_policy,
            current: Cell::new(None),
            confirmed_ms: Cell::new(None),
            remote_keys: remote_keys.clone(),
            key_cache: RefCell::new(KeyCache {
                etag: String::new(),
                entries: Lru::new(
                    config
                        .key_lookup
                        .as_ref()
                        .map_or(1, |l| l.cache_size as usize),
                ),
            }),
            filter_state: config.filter_state,
            key_lookup: config.key_lookup,
            rejected_etag: Cell::new(None),
            metrics: Metrics::define(),
        });
        self.live = None;
        match config.snapshot {
            SnapshotSource::Inline(snapshot) => {
                let etag = live::etag_or_revision(None, snapshot.revision());
                shared.install(
                    Loaded {
                        snapshot: *snapshot,
                        etag,
                    },
                    0,
                );
            }
            SnapshotSource::Remote(remote) => {
                let keys =
                    remote_keys.unwrap_or_else(|| SharedKeys::new(&remote.cluster, &remote.path));
                // Create the lease key so that every claim is a compare-and-swap.
                if let Ok(None) = abi::get_shared_data(&keys.lease) {
                    let _ = abi::set_shared_data(&keys.lease, b"unowned", 0);
                }
                // A short first tick: adopt or fetch the first snapshot quickly.
                if let Err(e) = abi::set_tick_period_ms(50) {
                    abi::log(
                        Level::Error,
                        &format!("tenantgate: cannot start the snapshot poller: {e}"),
                    );
                    return false;
                }
                abi::log(
                    Level::Info,
                    &format!(
                        "tenantgate: polling snapshots from cluster `{}` path `{}` every {} ms",
                        remote.cluster, remote.path, remote.poll_ms
                    ),
                );
                self.live = Some(Live {
                    remote,
                    keys,
                    me: abi::random_u64(),
                    in_flight: None,
                    next_fetch_ms: 0,
                    first_tick: true,
                });
            }
            SnapshotSource::Absent => {
                let answer = if shared.fail_policy.fail_open {
                    "let through unchecked (fail_open)"
                } else {
                    "answered 503 no_policy"
                };
                abi::log(
                    Level::Warn,
                    &format!("tenantgate: no snapshot configured; every request is {answer}"),
                );
            }
        }
        self.shared = Some(shared);
        self.pick_up();
        true
    }

    fn on_tick(&mut self) {
        let Some(now) = now_ms() else { return };
        if let Some(live) = &mut self.live {
            if live.first_tick {
                live.first_tick = false;
                let _ = abi::set_tick_period_ms(live::tick_ms(live.remote.poll_ms));
            }
        }
        self.pick_up();
        if let (Some(shared), Some(id)) = (
            &self.shared,
            self.shared.as_ref().and_then(|s| s.metrics.snapshot_age_ms),
        ) {
            if let Some(confirmed) = shared.confirmed_ms.get() {
                let _ = abi::record_metric(
                    id,
                    u64::try_from(now.saturating_sub(confirmed)).unwrap_or(0),
                );
            }
        }
        let due = self
            .live
            .as_ref()
            .is_some_and(|l| l.in_flight.is_none() && now >= l.next_fetch_ms);
        let leader = self.live.as_ref().is_some_and(|l| Root::hold_lease(l, now));
        if leader && due {
            self.fetch(now);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Filter {
            shared: self.shared.clone(),
            pending_lookup: None,
            lookup_failed: false,
            answered: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Filter {
    shared: Option<Rc<Shared>>,
    /// The key lookup this request waits for: callout token and key digest.
    pending_lookup: Option<(u32, [u8; 32])>,
    /// The lookup for this request failed (timeout, error): do not retry it.
    lookup_failed: bool,
    /// The lookup service's answer for this request (the cache may already have
    /// dropped it, e.g. with a zero TTL).
    answered: Option<Option<Rc<ExternalKey>>>,
}

/// What the per-worker key cache knows about a digest.
enum Cached {
    Found(Rc<ExternalKey>),
    Absent,
    Unknown,
}

impl Filter {
    /// Reads the request, decides, and acts. Runs once per request, and again
    /// after a key lookup answered.
    fn evaluate(&mut self) -> Action {
        let Some(shared) = self.shared.clone() else {
            return respond(Reason::NoPolicy);
        };
        let buffer = match abi::request_header_buffer() {
            Ok(buffer) => buffer,
            Err(e) => {
                abi::log(
                    Level::Error,
                    &format!("tenantgate: cannot read request headers: {e}"),
                );
                return respond(Reason::HostError);
            }
        };
        let Some(raw_pairs) = wire::parse_header_map(&buffer) else {
            abi::log(Level::Error, "tenantgate: malformed request header map");
            return respond(Reason::HostError);
        };
        let inbound = Inbound::read(&raw_pairs, &shared.sources);
        let forged = inbound.forged;
        let request = Request::from_parts(
            &shared.sources,
            &inbound.method,
            &inbound.authority,
            &inbound.path,
            &inbound.relevant,
        );
        let Ok(now) = abi::now_nanos() else {
            abi::log(Level::Error, "tenantgate: cannot read the clock");
            return respond(Reason::HostError);
        };
        let now_ms = now / 1_000_000;
        let mut loaded = shared.usable(now_ms);
        if loaded.is_none() && shared.current().is_none() {
            shared.pick_up();
            loaded = shared.usable(now_ms);
        }
        let Some(loaded) = loaded else {
            if shared.fail_policy.fail_open {
                shared.metrics.bump(shared.metrics.fail_open);
                return forward(forged, Vec::new(), request.forward_path.as_deref());
            }
            return act(
                &shared,
                &Decision::no_policy(request.forward_path.as_deref()),
                forged,
            );
        };
        let at = Timestamp::from_unix_nanos(now);
        let env = shared.environment.as_deref();
        let decision = policy::decide(&loaded.snapshot, &request, at, env);
        // A key the snapshot does not know may be known to the lookup service.
        let unknown_key = decision.reason == Some(Reason::InvalidApiKey);
        let (Some(lookup), Some(raw_key), true) =
            (&shared.key_lookup, request.api_key.as_deref(), unknown_key)
        else {
            return act(&shared, &decision, forged);
        };
        let digest = policy::key_digest(raw_key);
        let cached = match &self.answered {
            Some(Some(key)) => Cached::Found(key.clone()),
            Some(None) => Cached::Absent,
            None => shared.cached_key(&digest, &loaded.etag, now_ms),
        };
        let external = match cached {
            Cached::Found(key) => {
                shared.metrics.bump(shared.metrics.lookup_hit);
                key
            }
            Cached::Absent => {
                shared.metrics.bump(shared.metrics.lookup_negative_hit);
                return act(&shared, &decision, forged);
            }
            Cached::Unknown if self.lookup_failed => {
                if shared.fail_policy.fail_open {
                    shared.metrics.bump(shared.metrics.fail_open);
                    return forward(forged, Vec::new(), request.forward_path.as_deref());
                }
                return act(
                    &shared,
                    &decision.with_reason(Reason::KeyLookupUnavailable),
                    forged,
                );
            }
            Cached::Unknown => {
                shared.metrics.bump(shared.metrics.lookup_miss);
                let hex = policy::hash_key_hex(&digest);
                let path = format!("{}{hex}", lookup.path_prefix);
                let headers = vec![
                    (":method", "GET"),
                    (":path", path.as_str()),
                    (":authority", lookup.authority.as_str()),
                ];
                let timeout = Duration::from_millis(u64::from(lookup.timeout_ms));
                match abi::dispatch_http_call(&lookup.cluster, headers, timeout) {
                    Ok(token) => {
                        self.pending_lookup = Some((token, digest));
                        return Action::Pause;
                    }
                    Err(e) => {
                        abi::log(
                            Level::Warn,
                            &format!(
                                "tenantgate: cannot look up a key on cluster `{}`: {e}",
                                lookup.cluster
                            ),
                        );
                        self.lookup_failed = true;
                        return self.evaluate();
                    }
                }
            }
        };
        let decision =
            policy::decide_with_key(&loaded.snapshot, &request, at, env, Some(&external));
        act(&shared, &decision, forged)
    }

    fn on_lookup_answer(&mut self, digest: [u8; 32], num_headers: usize, body_size: usize) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(loaded) = shared.current() else {
            return;
        };
        let now_ms = now_ms().unwrap_or(0);
        let status = abi::call_response_header_buffer().ok().and_then(|buffer| {
            let pairs = wire::parse_header_map(&buffer)?;
            pairs
                .iter()
                .find(|(n, _)| *n == b":status")
                .and_then(|(_, v)| std::str::from_utf8(v).ok().map(str::to_string))
        });
        let answer = match (num_headers, status.as_deref()) {
            (0, _) => Err("no response (timeout or connection failure)".to_string()),
            (_, Some("404")) => Ok(None),
            (_, Some("200")) => abi::call_response_body(body_size)
                .map_err(|e| format!("cannot read the answer: {e}"))
                .and_then(|body| String::from_utf8(body).map_err(|e| e.to_string()))
                .and_then(|body| loaded.snapshot.external_key(&body))
                .and_then(|key| {
                    if key.digest() == digest {
                        Ok(Some(key))
                    } else {
                        Err("the answer is for another key".into())
                    }
                }),
            (_, other) => Err(format!("status {}", other.unwrap_or("none"))),
        };
        match answer {
            Ok(found) => {
                let found = found.map(Rc::new);
                self.answered = Some(found.clone());
                shared.remember_key(digest, found, &loaded.etag, now_ms);
            }
            Err(why) => {
                shared.metrics.bump(shared.metrics.lookup_failed);
                abi::log(
                    Level::Warn,
                    &format!("tenantgate: key lookup failed: {why}"),
                );
                self.lookup_failed = true;
            }
        }
    }
}

impl Context for Filter {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some((token, digest)) = self.pending_lookup else {
            return;
        };
        if token != token_id {
            return;
        }
        self.pending_lookup = None;
        self.on_lookup_answer(digest, num_headers, body_size);
        if let Action::Continue = self.evaluate() {
            if let Err(e) = abi::resume_request() {
                abi::log(
                    Level::Error,
                    &format!("tenantgate: cannot resume the request: {e}"),
                );
            }
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.evaluate()
    }
}

/// What the filter needs of the request headers, taken in one pass over the
/// encoded map: the pseudo-headers, the few headers the policy reads (UTF-8
/// decoded, lossily: a non-UTF-8 value can never match a key hash, a user or an
/// organization, so it simply fails to authenticate), and which annotation
/// headers arrived forged. Every other header is left as bytes, untouched.
struct Inbound<'b> {
    method: Cow<'b, str>,
    path: Cow<'b, str>,
    authority: Cow<'b, str>,
    relevant: Vec<(Cow<'b, str>, Cow<'b, str>)>,
    /// Bit `i` set when `STRIPPED_HEADERS[i]` is present.
    forged: u8,
}

impl<'b> Inbound<'b> {
    fn read(pairs: &[(&'b [u8], &'b [u8])], sources: &Sources) -> Inbound<'b> {
        let text = |bytes: &'b [u8]| String::from_utf8_lossy(bytes);
        let mut inbound = Inbound {
            method: Cow::Borrowed(""),
            path: Cow::Borrowed(""),
            authority: Cow::Borrowed(""),
            relevant: Vec::new(),
            forged: 0,
        };
        for &(name, value) in pairs {
            match name {
                b":method" => inbound.method = text(value),
                b":path" => inbound.path = text(value),
                b":authority" => inbound.authority = text(value),
                _ => {
                    // Names compare case-insensitively (the length first); every
                    // annotation header starts with `x`, which skips most headers.
                    let is = |wanted: &str| name.eq_ignore_ascii_case(wanted.as_bytes());
                    if name.first().map(u8::to_ascii_lowercase) == Some(b'x') {
                        for (bit, stripped) in STRIPPED_HEADERS.iter().enumerate() {
                            if is(stripped) {
                                inbound.forged |= 1 << bit;
                            }
                        }
                    }
                    let read_by_policy = is(&sources.user_header)
                        || is(&sources.tenant_header)
                        || sources.api_key_headers.iter().any(|h| is(h));
                    if read_by_policy {
                        inbound.relevant.push((text(name), text(value)));
                    }
                }
            }
        }
        inbound
    }
}

/// Counts, records and carries out a decision.
fn act(shared: &Shared, decision: &Decision<'_>, forged: u8) -> Action {
    shared.metrics.count(decision.reason, shared.mode);
    let record = match shared.filter_state {
        FilterState::All => true,
        FilterState::Denials => !decision.allowed(),
        FilterState::None => false,
    };
    if record {
        record_filter_state(decision);
    }
    match decision.action(shared.mode) {
        // The access log (filter state) and the counters say why; no per-deny
        // log line, which would format a string on every denied request.
        PolicyAction::Respond { status, body } => send_deny(status, body),
        PolicyAction::Forward {
            headers: annotations,
            path,
        } => forward(forged, annotations, path),
    }
}

/// Removes forged copies of the annotations, sets ours, rewrites `:path` if asked.
fn forward(forged: u8, annotations: Vec<(&str, &str)>, path: Option<&str>) -> Action {
    for (bit, name) in STRIPPED_HEADERS.iter().enumerate() {
        let present = forged & (1 << bit) != 0;
        // The ones we set are replaced anyway.
        let set_by_us = annotations.iter().any(|(n, _)| *n == *name);
        if present && !set_by_us {
            if let Err(e) = abi::remove_request_header(name) {
                abi::log(
                    Level::Error,
                    &format!("tenantgate: cannot remove `{name}`: {e}"),
                );
                return respond(Reason::HostError);
            }
        }
    }
    let mut writes = annotations;
    if let Some(path) = path {
        writes.push((":path", path));
    }
    for (name, value) in writes {
        if let Err(e) = abi::set_request_header(name, value) {
            abi::log(
                Level::Error,
                &format!("tenantgate: cannot set `{name}`: {e}"),
            );
            return respond(Reason::HostError);
        }
    }
    Action::Continue
}

fn record_filter_state(decision: &Decision<'_>) {
    let fields = [
        (
            "tenantgate.decision",
            Some(if decision.allowed() { "allow" } else { "deny" }),
        ),
        ("tenantgate.reason", decision.reason.map(Reason::code)),
        ("tenantgate.route", decision.route),
        ("tenantgate.tenant", decision.tenant_id()),
        ("tenantgate.principal", decision.principal.as_deref()),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            let _ = abi::set_property(key, value);
        }
    }
}

fn respond(reason: Reason) -> Action {
    send_deny(reason.status(), reason.body())
}

fn send_deny(status: u16, body: &str) -> Action {
    let headers = [("content-type", "application/json")];
    if let Err(e) = abi::send_local_response(status, "tenantgate_denied", body, &headers) {
        abi::log(
            Level::Error,
            &format!("tenantgate: cannot send the deny response: {e}"),
        );
    }
    Action::Pause
}
