//! The root context: validates the configuration (`on_configure`; Envoy
//! refuses a configuration it answers false to), keeps the snapshot current
//! (inline, or polled from a remote source by one VM per process and shared
//! with the others), and owns the key lookups' callouts, resuming every
//! request that waits for an answer.

use super::abi::{self, Level};
use super::dispatch;
use super::incoming::Incoming;
use super::key_lookup::{self, Answer};
use super::live::{self, Lease, SharedKeys, TierRef};
use super::plugin::{Loaded, Plugin};
use super::publish::{accept_fetched, accept_streamed, publish_meta, published, retire_slot};
use super::ranged::{self, Round, Step};
use super::source::{Source, SourceKind};
use super::wire;
use std::cell::RefCell;
use std::rc::Rc;
use tenantgate_policy::binary::tier::Apps;
use tenantgate_policy::config::{PluginConfig, RemoteSource, SnapshotSource};
use tenantgate_policy::{self as policy, ExternalKey};

/// Where a remote snapshot's apps live: in the key tier (issue 12: once per
/// process, not once per worker), unless a key lookup is configured (its
/// answers name apps, compiled against the snapshot's own).
fn tier_apps(plugin: &Plugin) -> Apps {
    match plugin.key_lookup {
        Some(_) => Apps::Keep,
        None => Apps::Move,
    }
}

/// The remote-source state of one VM.
pub(super) struct Live {
    pub(super) remote: RemoteSource,
    pub(super) keys: SharedKeys,
    /// Whether the apps go into the key tier with the keys: not with a key
    /// lookup, whose answers name apps the snapshot must hold.
    pub(super) apps: Apps,
    /// This VM's lease identity.
    pub(super) me: u64,
    pub(super) in_flight: Option<u32>,
    /// The fetch round under way (parts asked for one at a time), and when
    /// its request in flight was sent.
    pub(super) round: Option<(Round<Incoming>, i64)>,
    pub(super) next_fetch_ms: i64,
    /// When the fetch round under way started, for the log of its timing.
    pub(super) round_started_ms: i64,
    /// The last fetched body, emptied: the next round assembles into it.
    pub(super) spare_body: Vec<u8>,
    /// The slot of the tier this VM replaced last, and when to empty it: a
    /// grace of a few ticks lets every worker adopt the new snapshot on its
    /// own tick first (a worker that still reads it meets empty buckets and
    /// adopts the new one then). Only then does the shared data hold one tier.
    pub(super) retiring: Option<(u8, i64)>,
    pub(super) first_tick: bool,
}

pub struct Root {
    id: u32,
    plugin: RefCell<Option<Rc<Plugin>>>,
    live: RefCell<Option<Live>>,
    /// The shadow source's poller (issue 14), if configured.
    shadow: RefCell<Option<Live>>,
}

pub(super) fn now_ms() -> Option<i64> {
    abi::now_nanos().ok().map(|n| n / 1_000_000)
}

impl Root {
    pub fn new(id: u32) -> Root {
        Root {
            id,
            plugin: RefCell::new(None),
            live: RefCell::new(None),
            shadow: RefCell::new(None),
        }
    }

    pub fn plugin(&self) -> Option<Rc<Plugin>> {
        self.plugin.try_borrow().ok().and_then(|p| p.clone())
    }

    /// Validates and applies a configuration; false makes Envoy refuse it
    /// (the previous one, if any, keeps serving).
    pub fn configure(&self, size: usize) -> bool {
        let config = match abi::plugin_configuration(size)
            .map_err(|e| format!("cannot read the plugin configuration: {e}"))
            .and_then(|bytes| {
                PluginConfig::parse(&bytes).map_err(|e| format!("configuration refused: {e}"))
            }) {
            Ok(config) => config,
            Err(why) => {
                abi::log(Level::Error, &format!("tenantgate: {why}"));
                return false;
            }
        };
        let source = match &config.snapshot {
            SnapshotSource::Remote(remote) => Some(remote.clone()),
            _ => None,
        };
        let shadow = config.shadow.as_ref().map(|s| s.remote.clone());
        let (plugin, inline_snapshot) = split_inline(self.id, config);
        let plugin = Rc::new(plugin);
        let inline = inline_snapshot.is_some();
        if let Some(snapshot) = inline_snapshot {
            let etag = live::etag_or_revision(None, snapshot.revision());
            plugin.live.install(
                Loaded {
                    snapshot,
                    etag,
                    sequence: None,
                    tier: None,
                },
                0,
            );
        }
        let started = self.start_ticking(source, &plugin, inline)
            && shadow.is_none_or(|remote| {
                self.start_polling(remote, SourceKind::Shadow, tier_apps(&plugin))
            });
        if let Ok(mut slot) = self.plugin.try_borrow_mut() {
            if let Some(replaced) = slot.replace(plugin.clone()) {
                replaced.metrics.flush();
            }
        }
        plugin.pick_up();
        started
    }

    /// Polls the remote source, if any (false: it cannot be polled, refuse
    /// the configuration), and batches the decision counters on the tick.
    fn start_ticking(&self, source: Option<RemoteSource>, plugin: &Plugin, inline: bool) -> bool {
        let (started, ticking) = match source {
            Some(remote) => {
                let polling = self.start_polling(remote, SourceKind::Live, tier_apps(plugin));
                (polling, polling)
            }
            None => {
                if !inline {
                    log_absent(plugin);
                }
                (true, start_flushing())
            }
        };
        if ticking {
            plugin.metrics.defer_to_tick();
        }
        started
    }

    /// The root context goes away (the VM stops or the configuration is
    /// removed): the decision counts not yet flushed go to the host now.
    pub fn retire(&self) {
        if let Some(plugin) = self.plugin() {
            plugin.metrics.flush();
            if let Some(shadow) = &plugin.shadow {
                shadow.flush();
            }
        }
    }

    fn start_polling(&self, remote: RemoteSource, kind: SourceKind, apps: Apps) -> bool {
        let keys = match kind {
            SourceKind::Live => SharedKeys::new(&remote.cluster, &remote.path),
            SourceKind::Shadow => SharedKeys::shadow(&remote.cluster, &remote.path),
        };
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
                "tenantgate: polling {}snapshots from cluster `{}` path `{}` every {} ms{}",
                if kind == SourceKind::Shadow {
                    "shadow "
                } else {
                    ""
                },
                remote.cluster,
                remote.path,
                remote.poll_ms,
                if remote.verifier.is_some() {
                    " (signed snapshots only)"
                } else {
                    ""
                }
            ),
        );
        let slot = match kind {
            SourceKind::Live => &self.live,
            SourceKind::Shadow => &self.shadow,
        };
        if let Ok(mut live) = slot.try_borrow_mut() {
            *live = Some(Live {
                remote,
                keys,
                apps,
                me: abi::random_u64(),
                in_flight: None,
                round: None,
                next_fetch_ms: 0,
                round_started_ms: 0,
                spare_body: Vec::new(),
                retiring: None,
                first_tick: true,
            });
        }
        true
    }

    /// Flushes the decision counters; with a remote source, also polls.
    pub fn tick(&self) {
        let Some(plugin) = self.plugin() else {
            return;
        };
        plugin.metrics.flush();
        if let Some(shadow) = &plugin.shadow {
            shadow.flush();
        }
        if poll(&self.live, &plugin.live) {
            if let Some(confirmed) = plugin.live.confirmed_ms.get() {
                let age = now_ms().map_or(0, |now| now.saturating_sub(confirmed));
                let age = u64::try_from(age).unwrap_or(0);
                plugin.metrics.record(plugin.metrics.snapshot_age_ms, age);
            }
        }
        if let Some(shadow) = &plugin.shadow {
            poll(&self.shadow, &shadow.source);
        }
    }

    /// A callout answered: the snapshot fetch, or a key lookup.
    pub fn on_http_call_response(&self, token: u32, num_headers: usize, body_size: usize) {
        let Some(plugin) = self.plugin() else {
            return;
        };
        let shadow = plugin.shadow.as_ref().map(|s| (&self.shadow, &s.source));
        let fetched = [Some((&self.live, &plugin.live)), shadow]
            .into_iter()
            .flatten()
            .any(|(poller, src)| answered(poller, src, token, num_headers, body_size));
        if !fetched {
            on_lookup_answer(&plugin, token, num_headers, body_size);
        }
    }
}

/// Polls one source, if it has a poller (false: none): adopts what another
/// VM published, and fetches when due and this VM holds the lease.
fn poll(poller: &RefCell<Option<Live>>, src: &Source) -> bool {
    let Some(now) = now_ms() else {
        return false;
    };
    let Ok(mut guard) = poller.try_borrow_mut() else {
        return false;
    };
    let Some(live) = guard.as_mut() else {
        return false;
    };
    if live.first_tick {
        live.first_tick = false;
        let _ = abi::set_tick_period_ms(live::tick_ms(live.remote.poll_ms));
    }
    src.pick_up();
    let due = live.in_flight.is_none() && now >= live.next_fetch_ms;
    let retire = live.retiring.filter(|&(_, at)| now >= at);
    if (due || retire.is_some()) && hold_lease(live, now) {
        if let Some((slot, _)) = retire {
            live.retiring = None;
            retire_slot(live, slot);
        }
        if due {
            fetch(src, live, now);
        }
    }
    true
}

/// Whether callout `token` was `poller`'s fetch (then handled).
fn answered(
    poller: &RefCell<Option<Live>>,
    src: &Source,
    token: u32,
    num_headers: usize,
    body_size: usize,
) -> bool {
    let Ok(mut guard) = poller.try_borrow_mut() else {
        return false;
    };
    let Some(live) = guard.as_mut().filter(|l| l.in_flight == Some(token)) else {
        return false;
    };
    live.in_flight = None;
    on_fetch_response(src, live, num_headers, body_size);
    true
}

/// Without a remote source nothing else ticks: a tick every second hands the
/// decision counters to the host. False if the host refuses the tick: the
/// counters then go to the host on every request instead.
fn start_flushing() -> bool {
    match abi::set_tick_period_ms(FLUSH_MS) {
        Ok(()) => true,
        Err(e) => {
            abi::log(
                Level::Warn,
                &format!("tenantgate: no tick, counters are not batched: {e}"),
            );
            false
        }
    }
}

/// How often the decision counters reach Envoy's stats without a remote
/// source (with one, the poller's tick, also at most a second).
const FLUSH_MS: u32 = 1000;

/// The plugin state, and the inline snapshot to install.
fn split_inline(root_id: u32, mut config: PluginConfig) -> (Plugin, Option<policy::Snapshot>) {
    let inline = match std::mem::replace(&mut config.snapshot, SnapshotSource::Absent) {
        SnapshotSource::Inline(mut snapshot) => {
            // No Envoy request carries a gateway (Otoroshi) identity.
            snapshot.forget_gateway_ids();
            Some(*snapshot)
        }
        other => {
            config.snapshot = other;
            None
        }
    };
    (Plugin::new(root_id, config), inline)
}

fn log_absent(plugin: &Plugin) {
    let answer = if plugin.fail_policy.fail_open {
        "let through unchecked (fail_open)"
    } else {
        "answered 503 no_policy"
    };
    abi::log(
        Level::Warn,
        &format!("tenantgate: no snapshot configured; every request is {answer}"),
    );
}

/// Takes or renews the fetch lease; true when this VM holds it now.
pub(super) fn hold_lease(live: &Live, now_ms: i64) -> bool {
    let Ok(current) = abi::get_shared_data(&live.keys.lease) else {
        return false;
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
    // With cas 0 (no key yet) Envoy does not compare; configure creates the
    // key first, so competing VMs race on a real version and one wins.
    abi::set_shared_data(&live.keys.lease, mine.encode().as_bytes(), cas).is_ok()
}

/// Starts a fetch round: its first part (or the whole snapshot, from a
/// source that ignores `Range`).
fn fetch(src: &Source, live: &mut Live, now_ms: i64) {
    let etag = src.current().map(|l| l.etag.clone());
    live.round_started_ms = now_ms;
    // Key buckets streamed from the parts go into the slot the published
    // snapshot does not read, with a generation of their own.
    let slot = TierRef::next_slot(published(live).and_then(|(_, tier)| tier));
    let spare = std::mem::take(&mut live.spare_body);
    let incoming = Incoming::new(live.keys.clone(), slot, abi::random_u64(), live.apps, spare);
    let round = Round::new(live.remote.chunk_bytes, etag, incoming);
    ask_next(src, live, round, now_ms);
    live.next_fetch_ms = now_ms + live::jittered_ms(live.remote.poll_ms, abi::random_u64());
}

/// Sends the request `round` asks for next; one at a time per VM.
fn ask_next(src: &Source, live: &mut Live, round: Round<Incoming>, now_ms: i64) {
    let ask = round.ask();
    let mut headers = vec![
        (":method", "GET"),
        (":path", live.remote.path.as_str()),
        (":authority", live.remote.authority.as_str()),
        ("range", ask.range.as_str()),
    ];
    if let Some(etag) = ask.if_none_match.as_deref() {
        headers.push(("if-none-match", etag));
    }
    if let Some(etag) = ask.if_match.as_deref() {
        headers.push(("if-match", etag));
    }
    match abi::http_call(&live.remote.cluster, &headers, live.remote.timeout_ms) {
        Ok(token) => {
            live.in_flight = Some(token);
            live.round = Some((round, now_ms));
        }
        Err(e) => {
            src.counters.bump(src.counters.fetch_failed);
            abi::log(
                Level::Warn,
                &format!(
                    "tenantgate: cannot fetch from cluster `{}`: {e}",
                    live.remote.cluster
                ),
            );
        }
    }
}

/// The `:status` and a header of the callout response being delivered.
struct CallResponse {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl CallResponse {
    fn read() -> Option<CallResponse> {
        let buffer = abi::call_response_header_buffer().ok()?;
        let pairs = wire::parse_header_map(&buffer)?
            .into_iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        Some(CallResponse { pairs })
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v.as_slice())
    }
}

/// One answer of a fetch round: the next part is asked for at once; a
/// whole snapshot goes to `accept_fetched`; anything else ends the round
/// (the next poll starts a new one).
fn on_fetch_response(src: &Source, live: &mut Live, num_headers: usize, body_size: usize) {
    let now = now_ms().unwrap_or(0);
    let Some((round, sent_ms)) = live.round.take() else {
        return;
    };
    if num_headers == 0 {
        let (timeout, chunk) = (live.remote.timeout_ms, live.remote.chunk_bytes);
        return fetch_failed(
            src,
            live,
            &ranged::no_response(now - sent_ms, timeout, chunk),
        );
    }
    let Some(response) = CallResponse::read() else {
        return fetch_failed(src, live, "cannot read the response headers");
    };
    let answer = ranged::Answer {
        status: response.header(":status"),
        etag: response.header("etag"),
        content_range: response.header("content-range"),
    };
    match round.on_answer(answer, || abi::call_response_body(body_size).ok()) {
        Step::Continue(round) => {
            claim_slot(live, round.assembly().writing());
            // A long round keeps the lease, or leaves the next part to the
            // VM that took it over.
            if hold_lease(live, now) {
                ask_next(src, live, round, now);
            }
        }
        Step::NotModified(incoming) => {
            live.spare_body = incoming.into_spare();
            src.counters.bump(src.counters.fetch_not_modified);
            if let Some(current) = src.current() {
                publish_meta(src, live, &current.etag, current.sequence, now);
            }
        }
        // The body becomes the next round's buffer.
        Step::Whole { body, etag } => accept_fetched(src, live, body, etag.as_deref(), now),
        Step::Assembled { parts, etag } => {
            claim_slot(live, parts.writing());
            accept_streamed(src, live, parts, etag.as_deref(), now)
        }
        Step::Abandoned(why) if why.invalid() => {
            src.counters.bump(src.counters.fetch_invalid);
            fetch_log(live, &format!("refused: {why}"));
        }
        Step::Abandoned(why) => fetch_failed(src, live, &why.to_string()),
    }
}

/// A round writing key buckets into `slot` owns it: a retirement of the
/// tier it held, still due, would empty what the round wrote. (Called in
/// the callback that wrote, before any tick can retire it.) A round
/// abandoned later leaves buckets no snapshot reads, replaced by the next.
fn claim_slot(live: &mut Live, slot: Option<u8>) {
    if slot.is_some() && live.retiring.map(|(s, _)| s) == slot {
        live.retiring = None;
    }
}

fn fetch_failed(src: &Source, live: &Live, why: &str) {
    src.counters.bump(src.counters.fetch_failed);
    fetch_log(live, &format!("failed: {why}"));
}

fn fetch_log(live: &Live, what: &str) {
    abi::log(
        Level::Warn,
        &format!(
            "tenantgate: snapshot fetch from `{}` {what}; keeping the last good snapshot",
            live.remote.cluster
        ),
    );
}

/// A key lookup answered (or failed): cache the answer and resume every
/// request waiting for it.
fn on_lookup_answer(plugin: &Plugin, token: u32, num_headers: usize, body_size: usize) {
    let digest = plugin
        .lookups
        .try_borrow()
        .ok()
        .and_then(|l| l.digest_of(token));
    let (Some(digest), Some(loaded)) = (digest, plugin.current()) else {
        return;
    };
    let now = now_ms().unwrap_or(0);
    let answer = read_lookup_answer(plugin, &loaded.snapshot, &digest, num_headers, body_size);
    let finished = plugin
        .lookups
        .try_borrow_mut()
        .ok()
        .and_then(|mut l| l.finished(token, &answer, &loaded.etag, now));
    let Some((_, waiters)) = finished else {
        return;
    };
    for waiter in waiters {
        // Host calls now act on the waiting request (its headers, its reply).
        if abi::set_effective_context(waiter).is_err() {
            continue;
        }
        if let Some(stream) = dispatch::stream(waiter) {
            stream.resume(&answer);
        }
    }
}

fn read_lookup_answer(
    plugin: &Plugin,
    snapshot: &policy::Snapshot,
    digest: &[u8; 32],
    num_headers: usize,
    body_size: usize,
) -> Answer<Rc<ExternalKey>> {
    let Some(response) = (num_headers > 0).then(CallResponse::read).flatten() else {
        plugin.metrics.bump(plugin.metrics.lookup_failed);
        abi::log(
            Level::Warn,
            "tenantgate: key lookup failed: no response (timeout or connection failure)",
        );
        return Answer::Failed;
    };
    let body = (body_size <= key_lookup::MAX_ANSWER_BYTES)
        .then(|| abi::call_response_body(body_size).ok())
        .flatten();
    let status = response.header(":status");
    match key_lookup::classify(status, body.as_deref(), snapshot, digest) {
        Answer::Found(key) => Answer::Found(Rc::new(key)),
        Answer::NotFound => Answer::NotFound,
        Answer::Invalid => {
            plugin.metrics.bump(plugin.metrics.lookup_invalid);
            abi::log(
                Level::Warn,
                "tenantgate: key lookup answer refused (malformed, too large, for another key, an unknown app or an unknown status): the key is invalid",
            );
            Answer::Invalid
        }
        Answer::Failed => {
            plugin.metrics.bump(plugin.metrics.lookup_failed);
            let status = status.map_or("none".into(), String::from_utf8_lossy);
            abi::log(
                Level::Warn,
                &format!("tenantgate: key lookup failed: status {status}"),
            );
            Answer::Failed
        }
    }
}
