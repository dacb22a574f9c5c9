//! Publishing a fetched snapshot to the other VMs of the process: verify and
//! load it, write its key tier (key and app buckets) into a slot of the
//! shared data, then the keyless snapshot and the meta key the other VMs
//! watch; later, empty the slot it replaced. The protocol is `live.rs`.

use super::abi::{self, Level};
use super::incoming::{Incoming, Written};
use super::live::{self, Meta, TierRef};
use super::plugin::{log_refused, timed_load, Loaded};
use super::root::{now_ms, Live};
use super::source::Source;
use std::borrow::Cow;
use tenantgate_policy::binary::tier::Tier;
use tenantgate_policy::intake::{Arrived, Taken};
use tenantgate_policy::{self as policy};

/// Verifies, loads and publishes a fetched body; anything wrong keeps the
/// last good snapshot. The body is kept, emptied, for the next round.
pub(super) fn accept_fetched(
    src: &Source,
    live: &mut Live,
    body: Vec<u8>,
    etag: Option<&str>,
    now: i64,
) {
    match load_fetched(src, live, &body) {
        Ok(fetched) => {
            // The slot of the tier replaced, once every worker had time to
            // move on. Nothing replaced (the same snapshot, or a tier the host
            // refused part of): a slot already waiting stays due.
            let grace = 3 * i64::from(live::tick_ms(live.remote.poll_ms));
            if let Some(slot) = publish_fetched(src, live, fetched, etag, now) {
                live.retiring = Some((slot, now + grace));
            }
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

/// Loads a snapshot whose parts were taken in as they arrived
/// (`incoming.rs`): a compiled one's key buckets are in the shared data
/// already, the rest is loaded here; anything else goes the way of a whole
/// body. What the stream kept is let go once decoded (it is small: the next
/// round grows its own), before the snapshot is encoded for the other VMs.
pub(super) fn accept_streamed(
    src: &Source,
    live: &mut Live,
    mut incoming: Incoming,
    etag: Option<&str>,
    now: i64,
) {
    let taken = match incoming.finish(live.remote.verifier.as_ref()) {
        Ok(Arrived::Whole(body)) => return accept_fetched(src, live, body, etag, now),
        Ok(Arrived::Cut(taken)) => taken,
        Err(problem) => return refuse(src, &problem.to_string()),
    };
    let (slot, written) = incoming.tier();
    match load_streamed(src, live, taken, (slot, written)) {
        Ok(fetched) => {
            let grace = 3 * i64::from(live::tick_ms(live.remote.poll_ms));
            match publish_fetched(src, live, fetched, etag, now) {
                Some(replaced) => live.retiring = Some((replaced, now + grace)),
                // Not published (the same snapshot again): its buckets are
                // emptied once due, unless a snapshot reads them by then.
                None if written.keys + written.apps > 0 => {
                    live.retiring = Some((slot, now + grace))
                }
                None => {}
            }
        }
        Err(problem) => refuse(src, &problem),
    }
}

fn refuse(src: &Source, problem: &str) {
    src.counters.bump(src.counters.fetch_invalid);
    log_refused(
        "fetched snapshot refused, keeping the last good one",
        problem,
    );
}

/// A fetched snapshot, verified and loaded, with its key tier cut from it.
struct Fetched<'b> {
    snapshot: policy::Snapshot,
    tier: Tier<'b>,
    sequence: Option<u64>,
    load_ms: i64,
    /// Streamed: the slot its buckets were written into, and their bytes.
    streamed: Option<(u8, Written)>,
    /// About the bytes of the snapshot it publishes (0: unknown).
    size_hint: usize,
}

/// Verifies and loads `body` (refusing a replayed signed sequence).
fn load_fetched<'b>(src: &Source, live: &Live, body: &'b [u8]) -> Result<Fetched<'b>, String> {
    let verifier = live.remote.verifier.as_ref();
    let generation = abi::random_u64();
    let split = || policy::load_verified_split(body, verifier, generation, live.apps);
    let (((snapshot, tier), sequence), load_ms) = timed_load(split)?;
    not_replayed(src, live, sequence, &snapshot)?;
    Ok(Fetched {
        snapshot,
        tier,
        sequence,
        load_ms,
        streamed: None,
        size_hint: 0,
    })
}

/// Loads what a stream kept (its signature checked already), and lets it go.
fn load_streamed(
    src: &Source,
    live: &Live,
    taken: Taken,
    streamed: (u8, Written),
) -> Result<Fetched<'static>, String> {
    let size_hint = taken.kept_len();
    let decode = || {
        let (snapshot, cut, sequence) = taken.decode()?;
        // Buckets written as the snapshot arrived leave only counts to
        // publish; a stream that found nothing to cut (never, for bytes a
        // whole decode accepts) has its tier encoded here.
        let tier = match cut.written() {
            Some(written) => Tier::Written(written),
            None => Tier::Built(cut.into_tier()),
        };
        Ok::<_, tenantgate_policy::LoadError>((snapshot, tier, sequence))
    };
    let ((snapshot, tier, sequence), load_ms) = timed_load(decode)?;
    drop(taken);
    not_replayed(src, live, sequence, &snapshot)?;
    Ok(Fetched {
        snapshot,
        tier,
        sequence,
        load_ms,
        streamed: Some(streamed),
        size_hint,
    })
}

/// Refuses a signed sequence not newer than the one accepted.
fn not_replayed(
    src: &Source,
    live: &Live,
    sequence: Option<u64>,
    snapshot: &policy::Snapshot,
) -> Result<(), String> {
    match sequence {
        Some(sequence) if !newer(src, live, sequence, snapshot.revision()) => Err(format!(
            "signed sequence {sequence} of revision `{}` is not newer than the one accepted (replayed or rolled back)",
            snapshot.revision()
        )),
        _ => Ok(()),
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
        mut snapshot,
        tier,
        sequence,
        load_ms,
        streamed,
        size_hint,
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
    let slot = TierRef::next_slot(previous);
    if streamed.is_some_and(|(written_to, _)| written_to != slot) {
        // Only the lease holder publishes; should another have meanwhile,
        // the buckets written are not where this snapshot would read them.
        src.counters.bump(src.counters.fetch_invalid);
        return None;
    }
    let Some(tier) = publish_tier(live, &tier, slot, streamed.map(|(_, bytes)| bytes)) else {
        src.counters.bump(src.counters.fetch_invalid);
        return None;
    };
    let written_ms = now_ms().unwrap_or(writing_ms);
    // The keyless snapshot, compiled: the other VMs decode it instead of
    // parsing JSON, and read the keys from the tier. Encoded right after its
    // head, in a buffer of about its size. Without the Otoroshi tables,
    // which no Envoy request reads: every VM holds what this one publishes.
    snapshot.forget_gateway_ids();
    let head = live::pack_snapshot(&etag, Some(tier), &[]);
    let packed = policy::binary::encode_after(&head, head.len() + size_hint, &snapshot);
    let _ = abi::set_shared_data(&live.keys.snapshot, &packed, 0);
    drop(packed);
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

/// Writes the snapshot's key tier (its key buckets, then its app and grant
/// buckets) into `slot` of the shared data, once for the whole process (issue 12),
/// before the snapshot that reads it is published. `None` if the host
/// refused a bucket: nothing is published then, the last good snapshot keeps
/// serving.
fn publish_tier(
    live: &Live,
    tier: &Tier<'_>,
    slot: u8,
    streamed: Option<Written>,
) -> Option<TierRef> {
    let generation = tier.generation();
    let (buckets, apps) = (tier.count(), tier.app_count());
    let keys = &live.keys;
    let count_key = keys.slot_count(slot);
    let name = |i| keys.bucket(slot, i);
    let written = streamed.unwrap_or_default();
    // Written as the snapshot arrived: what a larger tier left past them is
    // emptied, and their number recorded.
    let key_bytes = if streamed.is_some() && tier.keys_written() {
        finish_buckets(&count_key, buckets, name).map(|_| written.keys)
    } else {
        publish_buckets(&count_key, buckets, name, |i| tier.bucket(i))
    }?;
    let (app_count_key, app_names) = (keys.app_slot_count(slot), |i| keys.app_bucket(slot, i));
    let (grant_count_key, grant_names) =
        (keys.grant_slot_count(slot), |i| keys.grant_bucket(slot, i));
    let app_bytes = if streamed.is_some() && tier.apps_written() {
        finish_buckets(&app_count_key, apps, app_names)
            .and_then(|_| finish_buckets(&grant_count_key, apps, grant_names))
            .map(|_| written.apps)
    } else {
        let app_bytes = publish_buckets(&app_count_key, apps, app_names, |i| tier.app_bucket(i));
        let grant_bytes = |a| {
            publish_buckets(&grant_count_key, apps, grant_names, |i| {
                tier.grant_bucket(i)
            })
            .map(|g| a + g)
        };
        app_bytes.and_then(grant_bytes)
    }?;
    let arrived = match (tier.keys_written(), tier.apps_written()) {
        (true, true) => "; key and app buckets written as the snapshot arrived",
        (true, false) => "; key buckets written as the snapshot arrived",
        _ => "",
    };
    abi::log(
        Level::Info,
        &format!(
            "tenantgate: key tier {generation:016x}: {} keys in {buckets} buckets ({key_bytes} bytes), apps in {apps} app buckets ({app_bytes} bytes) in the shared data (slot {slot}){arrived}",
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
    bucket: impl Fn(u32) -> Option<Cow<'t, [u8]>>,
) -> Option<usize> {
    let mut written = 0;
    for i in 0..count {
        let bytes = bucket(i).unwrap_or_default();
        written += bytes.len();
        write_bucket(&name(i), &bytes)?;
    }
    finish_buckets(count_key, count, name)?;
    Some(written)
}

/// With buckets `0..count` written: empties those a larger tier left past
/// them and records `count` under `count_key`.
fn finish_buckets(count_key: &str, count: u32, name: impl Fn(u32) -> String) -> Option<()> {
    let held = abi::get_shared_data(count_key)
        .ok()
        .flatten()
        .and_then(|(bytes, _)| std::str::from_utf8(&bytes).ok()?.parse::<u32>().ok())
        .unwrap_or(0);
    for i in count..held {
        write_bucket(&name(i), &[])?;
    }
    let _ = abi::set_shared_data(count_key, count.to_string().as_bytes(), 0);
    Some(())
}

fn write_bucket(name: &str, bytes: &[u8]) -> Option<()> {
    if let Err(e) = abi::set_shared_data(name, bytes, 0) {
        let why = format!("cannot write the key tier to the shared data: {e}");
        abi::log(
            Level::Error,
            &format!("tenantgate: {why}; keeping the last good snapshot"),
        );
        return None;
    }
    Some(())
}

/// The etag and key tier of the snapshot published now (before it is
/// replaced): from its head, not its body.
pub(super) fn published(live: &Live) -> Option<(String, Option<TierRef>)> {
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

pub(super) fn publish_meta(src: &Source, live: &Live, etag: &str, sequence: Option<u64>, now: i64) {
    let meta = Meta {
        etag: etag.to_string(),
        confirmed_ms: now,
        sequence,
    };
    let _ = abi::set_shared_data(&live.keys.meta, meta.encode().as_bytes(), 0);
    src.confirmed_ms.set(Some(now));
}

/// Empties the tier in `slot`, unless it is the published one (another
/// fetcher may have published into it since): only the lease holder calls
/// this, so no other VM writes a tier meanwhile.
pub(super) fn retire_slot(live: &Live, slot: u8) {
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
        })
        .and_then(|_| {
            let names = |i| keys.grant_bucket(slot, i);
            publish_buckets(&keys.grant_slot_count(slot), 0, names, none)
        });
    if emptied.is_some() {
        abi::log(
            Level::Info,
            &format!("tenantgate: key tier in slot {slot} emptied (replaced)"),
        );
    }
}
