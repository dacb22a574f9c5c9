//! The root context: validates the configuration (`on_configure`; Envoy
//! refuses a configuration it answers false to), keeps the snapshot current
//! (inline, or polled from a remote source by one VM per process and shared
//! with the others), and owns the key lookups' callouts, resuming every
//! request that waits for an answer.

use super::abi::{self, Level};
use super::dispatch;
use super::key_lookup::{self, Answer};
use super::live::{self, Lease, Meta, SharedKeys, TierRef};
use super::plugin::{log_refused, timed_load, Loaded, Plugin};
use super::ranged::{self, Round, Step};
use super::source::{Source, SourceKind};
use super::wire;
use std::cell::RefCell;
use std::rc::Rc;
use tenantgate_policy::binary::tier::{Apps, Tier};
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
struct Live {
    remote: RemoteSource,
    keys: SharedKeys,
    /// Whether the apps go into the key tier with the keys: not with a key
    /// lookup, whose answers name apps the snapshot must hold.
    apps: Apps,
    /// This VM's lease identity.
    me: u64,
    in_flight: Option<u32>,
    /// The fetch round under way (parts asked for one at a time), and when
    /// its request in flight was sent.
    round: Option<(Round, i64)>,
    next_fetch_ms: i64,
    /// When the fetch round under way started, for the log of its timing.
    round_started_ms: i64,
    /// The last fetched body, emptied: the next round assembles into it.
    spare_body: Vec<u8>,
    /// The slot of the tier this VM replaced last, and when to empty it: a
    /// grace of a few ticks lets every worker adopt the new snapshot on its
    /// own tick first (a worker that still reads it meets empty buckets and
    /// adopts the new one then). Only then does the shared data hold one tier.
    retiring: Option<(u8, i64)>,
    first_tick: bool,
}

pub struct Root {
    id: u32,
    plugin: RefCell<Option<Rc<Plugin>>>,
    live: RefCell<Option<Live>>,
    /// The shadow source's poller (issue 14), if configured.
    shadow: RefCell<Option<Live>>,
}

fn now_ms() -> Option<i64> {
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

/// Empties the tier in `slot`, unless it is the published one (another
/// fetcher may have published into it since): only the lease holder calls
/// this, so no other VM writes a tier meanwhile.
fn retire_slot(live: &Live, slot: u8) {
    if published(live)
        .and_then(|(_, tier)| tier)
        .is_some_and(|t| t.slot == slot)
    {
        return;
    }
    let keys = &live.keys;
    let none = |_| None;
    let emptied = publish_buckets(&keys.slot_count(slot), 0, |i| keys.bucket(slot, i), none)
        .and_then(|_| {
            let names = |i| keys.app_bucket(slot, i);
            publish_buckets(&keys.app_slot_count(slot), 0, names, none)
        });
    if emptied.is_some() {
        abi::log(
            Level::Info,
            &format!("tenantgate: key tier in slot {slot} emptied (replaced)"),
        );
    }
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
        SnapshotSource::Inline(snapshot) => Some(*snapshot),
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
fn hold_lease(live: &Live, now_ms: i64) -> bool {
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
    let round =
        Round::new(live.remote.chunk_bytes, etag).with_buffer(std::mem::take(&mut live.spare_body));
    ask_next(src, live, round, now_ms);
    live.next_fetch_ms = now_ms + live::jittered_ms(live.remote.poll_ms, abi::random_u64());
}

/// Sends the request `round` asks for next; one at a time per VM.
fn ask_next(src: &Source, live: &mut Live, round: Round, now_ms: i64) {
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
            // A long round keeps the lease, or leaves the next part to the
            // VM that took it over.
            if hold_lease(live, now) {
                ask_next(src, live, round, now);
            }
        }
        Step::NotModified(buffer) => {
            live.spare_body = buffer;
            src.counters.bump(src.counters.fetch_not_modified);
            if let Some(current) = src.current() {
                publish_meta(src, live, &current.etag, current.sequence, now);
            }
        }
        Step::Whole { body, etag } => accept_fetched(src, live, body, etag.as_deref(), now),
        Step::Abandoned(why) if why.invalid() => {
            src.counters.bump(src.counters.fetch_invalid);
            fetch_log(live, &format!("refused: {why}"));
        }
        Step::Abandoned(why) => fetch_failed(src, live, &why.to_string()),
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

/// Verifies, loads and publishes a fetched body; anything wrong keeps the
/// last good snapshot. The body is kept, emptied, for the next round.
fn accept_fetched(src: &Source, live: &mut Live, body: Vec<u8>, etag: Option<&str>, now: i64) {
    match load_fetched(src, live, &body) {
        Ok(fetched) => {
            // The slot of the tier replaced, once every worker had time to move on.
            let grace = 3 * i64::from(live::tick_ms(live.remote.poll_ms));
            let replaced = publish_fetched(src, live, fetched, etag, now);
            live.retiring = replaced.map(|slot| (slot, now + grace));
        }
        Err(problem) => {
            src.counters.bump(src.counters.fetch_invalid);
            log_refused(
                "fetched snapshot refused, keeping the last good one",
                &problem,
            );
        }
    }
    live.spare_body = body;
}

/// A fetched snapshot, verified and loaded, with its key tier cut from it.
struct Fetched<'b> {
    snapshot: policy::Snapshot,
    tier: Tier<'b>,
    sequence: Option<u64>,
    load_ms: i64,
}

/// Verifies and loads `body` (refusing a replayed signed sequence).
fn load_fetched<'b>(src: &Source, live: &Live, body: &'b [u8]) -> Result<Fetched<'b>, String> {
    let verifier = live.remote.verifier.as_ref();
    let generation = abi::random_u64();
    let split = || policy::load_verified_split(body, verifier, generation, live.apps);
    let (((snapshot, tier), sequence), load_ms) = timed_load(split)?;
    match sequence {
        Some(sequence) if !newer(src, live, sequence, snapshot.revision()) => Err(format!(
            "signed sequence {sequence} of revision `{}` is not newer than the one accepted (replayed or rolled back)",
            snapshot.revision()
        )),
        _ => Ok(Fetched {
            snapshot,
            tier,
            sequence,
            load_ms,
        }),
    }
}

/// Writes the tier, then the keyless snapshot that reads it, then the meta
/// key the other VMs watch, and makes the snapshot this VM's own. Returns
/// the slot of the tier it replaced, if any.
fn publish_fetched(
    src: &Source,
    live: &Live,
    fetched: Fetched<'_>,
    etag: Option<&str>,
    now: i64,
) -> Option<u8> {
    let Fetched {
        snapshot,
        tier,
        sequence,
        load_ms,
    } = fetched;
    src.counters.bump(src.counters.fetch_ok);
    let etag = live::etag_or_revision(etag, snapshot.revision());
    let (published_etag, previous) = published(live).unzip();
    let mine = src.current().is_some_and(|l| l.etag == etag);
    if mine && published_etag.as_deref() == Some(etag.as_str()) {
        // The same snapshot served again, already published: nothing new.
        publish_meta(src, live, &etag, sequence, now);
        return None;
    }
    let writing_ms = now_ms().unwrap_or(now);
    let previous = previous.flatten();
    let Some(tier) = publish_tier(live, &tier, TierRef::next_slot(previous)) else {
        src.counters.bump(src.counters.fetch_invalid);
        return None;
    };
    let written_ms = now_ms().unwrap_or(writing_ms);
    // The keyless snapshot, compiled: the other VMs decode it instead of
    // parsing JSON, and read the keys from the tier.
    let compiled = policy::binary::encode(&snapshot);
    let packed = live::pack_snapshot(&etag, Some(tier), &compiled);
    let _ = abi::set_shared_data(&live.keys.snapshot, &packed, 0);
    let head = live::pack_snapshot(&etag, Some(tier), &[]);
    let _ = abi::set_shared_data(&live.keys.head, &head, 0);
    publish_meta(src, live, &etag, sequence, now);
    abi::log(
        Level::Info,
        &format!(
            "tenantgate: snapshot `{}` published: fetched in {} ms, loaded in {load_ms} ms, key tier written in {} ms, published {} ms after the fetch began",
            snapshot.revision(),
            now - live.round_started_ms,
            written_ms - writing_ms,
            now_ms().unwrap_or(written_ms) - live.round_started_ms,
        ),
    );
    let loaded = Loaded {
        snapshot,
        etag,
        sequence,
        tier: Some(tier),
    };
    src.install(loaded, load_ms);
    previous.map(|t| t.slot)
}

/// Writes the snapshot's key tier (its key buckets, then its app buckets)
/// into `slot` of the shared data, once for the whole process (issue 12),
/// before the snapshot that reads it is published. `None` if the host
/// refused a bucket: nothing is published then, the last good snapshot keeps
/// serving.
fn publish_tier(live: &Live, tier: &Tier<'_>, slot: u8) -> Option<TierRef> {
    let generation = tier.generation();
    let (buckets, apps) = (tier.count(), tier.app_count());
    let keys = &live.keys;
    let key_bytes = publish_buckets(
        &keys.slot_count(slot),
        buckets,
        |i| keys.bucket(slot, i),
        |i| tier.bucket(i),
    )?;
    let app_names = |i| keys.app_bucket(slot, i);
    let app_bytes = publish_buckets(&keys.app_slot_count(slot), apps, app_names, |i| {
        tier.app_bucket(i)
    })?;
    abi::log(
        Level::Info,
        &format!(
            "tenantgate: key tier {generation:016x}: {} keys in {buckets} buckets ({key_bytes} bytes), apps in {apps} app buckets ({app_bytes} bytes) in the shared data (slot {slot})",
            tier.keys(),
        ),
    );
    Some(TierRef {
        generation,
        buckets,
        slot,
        apps,
    })
}

/// Writes `count` buckets (`bucket(i)` under `name(i)`), one encoded at a
/// time, and returns their bytes; empties those a larger tier left past them (their number is
/// under `count_key`): shared data cannot be deleted, so a slot's names are
/// reused and the store stays bounded by two tiers.
fn publish_buckets<'t>(
    count_key: &str,
    count: u32,
    name: impl Fn(u32) -> String,
    bucket: impl Fn(u32) -> Option<std::borrow::Cow<'t, [u8]>>,
) -> Option<usize> {
    let held = abi::get_shared_data(count_key)
        .ok()
        .flatten()
        .and_then(|(bytes, _)| std::str::from_utf8(&bytes).ok()?.parse::<u32>().ok())
        .unwrap_or(0);
    let mut written = 0;
    for i in 0..count.max(held) {
        let bytes = bucket(i).unwrap_or_default();
        written += bytes.len();
        if let Err(e) = abi::set_shared_data(&name(i), &bytes, 0) {
            let why = format!("cannot write the key tier to the shared data: {e}");
            abi::log(
                Level::Error,
                &format!("tenantgate: {why}; keeping the last good snapshot"),
            );
            return None;
        }
    }
    let _ = abi::set_shared_data(count_key, count.to_string().as_bytes(), 0);
    Some(written)
}

/// The etag and key tier of the snapshot published now (before it is
/// replaced): from its head, not its body.
fn published(live: &Live) -> Option<(String, Option<TierRef>)> {
    let (packed, _) = abi::get_shared_data(&live.keys.head).ok().flatten()?;
    let published = live::unpack_snapshot(&packed)?;
    Some((published.etag.to_string(), published.tier))
}

/// Whether a signed `sequence` may replace the newest this process accepted.
fn newer(src: &Source, live: &Live, sequence: u64, revision: &str) -> bool {
    let shared = abi::get_shared_data(&live.keys.meta)
        .ok()
        .flatten()
        .and_then(|(bytes, _)| Meta::decode(&bytes))
        .and_then(|meta| meta.sequence);
    let current = src.current();
    let mine = current
        .as_ref()
        .and_then(|l| l.sequence.map(|s| (s, l.snapshot.revision())));
    let newest = match (shared, mine) {
        (Some(s), Some((m, revision))) if m >= s => Some((m, revision)),
        // A sequence another VM accepted: its revision is unknown here, so
        // only a strictly newer one passes.
        (Some(s), _) => Some((s, "")),
        (None, mine) => mine,
    };
    live::newer_than(newest, sequence, revision)
}

fn publish_meta(src: &Source, live: &Live, etag: &str, sequence: Option<u64>, now: i64) {
    let meta = Meta {
        etag: etag.to_string(),
        confirmed_ms: now,
        sequence,
    };
    let _ = abi::set_shared_data(&live.keys.meta, meta.encode().as_bytes(), 0);
    src.confirmed_ms.set(Some(now));
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
