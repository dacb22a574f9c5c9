//! The live-snapshot protocol between the VMs of one Envoy process, as pure
//! functions (the host calls live in `root.rs` and `plugin.rs`).
//!
//! Every worker VM of the plugin shares Envoy's shared data (per `vm_id`):
//!
//! - `<prefix>:lease` = `<owner>:<expires_ms>`: the VM holding an unexpired lease
//!   is the only one that fetches. A VM takes or renews it with compare-and-swap,
//!   so exactly one VM wins a round; a lease left by a VM that went away expires
//!   and another takes over.
//! - `<prefix>:snapshot` = `<etag>\n<tier>\n<body>`: the last good snapshot,
//!   published by the fetcher only after it validated and compiled it, without
//!   its API keys: `<tier>` names the generation, bucket count and slot of its
//!   key tier (`-` if none), whose buckets are `<prefix>:keys:<slot>:<i>`. A
//!   worker reads the bucket of a key on its first sight (issue 12: the keys
//!   live once per process, not once per worker).
//! - With the apps in the tier too (no key lookup configured), app buckets
//!   `<prefix>:apps:<slot>:<i>` and their grant buckets
//!   `<prefix>:grants:<slot>:<i>` beside the key buckets, read after a key's
//!   bucket on its first sight; `<tier>` says how many (as many of each).
//! - Two slots, written in turn: a new tier goes into the slot the current one
//!   does not use, so workers that have not swapped yet keep reading theirs,
//!   and overwrites the tier before (whose readers then meet another
//!   generation and pick up the new snapshot). `<prefix>:keys:<slot>:count` is
//!   how many buckets the slot holds; a smaller tier empties the rest. Shared
//!   data cannot be deleted, so names are reused: the store stays bounded by
//!   two tiers however many revisions pass. Three ticks after publishing, the
//!   fetcher (still holding the lease) empties the slot it replaced, unless it
//!   is the published one again: between revisions the store holds one tier,
//!   and a worker that still reads the replaced one meets empty buckets and
//!   picks up the new snapshot.
//! - `<prefix>:meta` = `<etag>\n<confirmed_ms>`: small, read on every tick by every
//!   VM; a new etag means "read the snapshot key and swap". `confirmed_ms` is when
//!   the source last confirmed it (200 or 304), for staleness and the age gauge.
//!
//! `<prefix>` is `tenantgate:v<SHARED_LAYOUT>:<cluster><path>`: see [`SHARED_LAYOUT`].

/// The version of this layout. Envoy keys shared data by `vm_id` alone, not
/// by the module's code, so while a new build of the filter rolls out its VMs
/// run beside the old build's and see the same data: a build must never read
/// a lease, head or bucket written in a layout it does not know (a worker of
/// the new build would refuse every old bucket as corrupt, 503 for each key,
/// for as long as the old fetcher held the lease). A new version is a new
/// namespace: the new build fetches and publishes its own. Bump it with any
/// change to what is stored (2: key buckets keep 20 digest bytes; 3: key
/// buckets have no offset table, and an app bucket's grants are in a grant
/// bucket of their own).
pub const SHARED_LAYOUT: u32 = 3;

/// The shared-data keys of one remote source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedKeys {
    pub lease: String,
    pub snapshot: String,
    /// The published snapshot's etag and key tier without its body: what the
    /// fetcher reads before publishing the next one (at 1M keys the body is
    /// ~25 MB it would otherwise copy into its VM for two short lines).
    pub head: String,
    pub meta: String,
    prefix: String,
}

impl SharedKeys {
    pub fn new(cluster: &str, path: &str) -> SharedKeys {
        let prefix = format!("tenantgate:v{SHARED_LAYOUT}:{cluster}{path}");
        SharedKeys {
            lease: format!("{prefix}:lease"),
            snapshot: format!("{prefix}:snapshot"),
            head: format!("{prefix}:head"),
            meta: format!("{prefix}:meta"),
            prefix,
        }
    }

    /// The keys of a shadow source (issue 14): apart from a live source's
    /// even when both name the same cluster and path.
    pub fn shadow(cluster: &str, path: &str) -> SharedKeys {
        SharedKeys::new(&format!("shadow:{cluster}"), path)
    }

    /// Bucket `i` of the key tier in `slot`.
    pub fn bucket(&self, slot: u8, i: u32) -> String {
        format!("{}:keys:{slot}:{i}", self.prefix)
    }

    /// How many buckets `slot` holds.
    pub fn slot_count(&self, slot: u8) -> String {
        format!("{}:keys:{slot}:count", self.prefix)
    }

    /// App bucket `i` of the key tier in `slot`.
    pub fn app_bucket(&self, slot: u8, i: u32) -> String {
        format!("{}:apps:{slot}:{i}", self.prefix)
    }

    /// How many app buckets `slot` holds.
    pub fn app_slot_count(&self, slot: u8) -> String {
        format!("{}:apps:{slot}:count", self.prefix)
    }

    /// Grant bucket `i` of the key tier in `slot` (the grants of app
    /// bucket `i`'s apps).
    pub fn grant_bucket(&self, slot: u8, i: u32) -> String {
        format!("{}:grants:{slot}:{i}", self.prefix)
    }

    /// How many grant buckets `slot` holds.
    pub fn grant_slot_count(&self, slot: u8) -> String {
        format!("{}:grants:{slot}:count", self.prefix)
    }
}

/// A key tier in the shared data: its generation, how many key buckets, the
/// slot (0 or 1) they are in, and how many app buckets (0: the snapshot
/// holds its apps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierRef {
    pub generation: u64,
    pub buckets: u32,
    pub slot: u8,
    pub apps: u32,
}

impl TierRef {
    pub fn encode(self) -> String {
        format!(
            "{:016x}:{}:{}:{}",
            self.generation, self.buckets, self.slot, self.apps
        )
    }

    pub fn decode(text: &str) -> Option<TierRef> {
        let mut fields = text.split(':');
        let tier = TierRef {
            generation: u64::from_str_radix(fields.next()?, 16).ok()?,
            buckets: fields.next()?.parse().ok().filter(|&n| n > 0)?,
            slot: fields.next()?.parse().ok().filter(|&s| s < 2)?,
            apps: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(tier)
    }

    /// The slot a tier published after this one goes into.
    pub fn next_slot(tier: Option<TierRef>) -> u8 {
        tier.map_or(0, |t| 1 - t.slot)
    }
}

/// A published snapshot, as [`unpack_snapshot`] reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Published<'p> {
    pub etag: &'p str,
    pub tier: Option<TierRef>,
    pub body: &'p [u8],
}

/// Who fetches, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub owner: u64,
    pub expires_ms: i64,
}

impl Lease {
    pub fn encode(self) -> String {
        format!("{:016x}:{}", self.owner, self.expires_ms)
    }

    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (owner, expires) = text.split_once(':')?;
        Some(Lease {
            owner: u64::from_str_radix(owner, 16).ok()?,
            expires_ms: expires.parse().ok()?,
        })
    }

    /// Whether `me` may take (or renew) the lease at `now_ms`: it is mine, it
    /// has expired, or it is unreadable.
    pub fn claimable(current: Option<Lease>, me: u64, now_ms: i64) -> bool {
        current.is_none_or(|lease| lease.owner == me || lease.expires_ms <= now_ms)
    }
}

/// `<etag>\n<tier>\n<body>`.
pub fn pack_snapshot(etag: &str, tier: Option<TierRef>, body: &[u8]) -> Vec<u8> {
    let tier = tier.map_or("-".to_string(), TierRef::encode);
    let mut packed = Vec::with_capacity(etag.len() + tier.len() + 2 + body.len());
    packed.extend_from_slice(etag.as_bytes());
    packed.push(b'\n');
    packed.extend_from_slice(tier.as_bytes());
    packed.push(b'\n');
    packed.extend_from_slice(body);
    packed
}

pub fn unpack_snapshot(packed: &[u8]) -> Option<Published<'_>> {
    let (etag, rest) = split_line(packed)?;
    let (tier, body) = split_line(rest)?;
    let tier = match tier {
        "-" => None,
        tier => Some(TierRef::decode(tier)?),
    };
    Some(Published { etag, tier, body })
}

fn split_line(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(bytes.get(..newline)?).ok()?;
    Some((line, bytes.get(newline + 1..)?))
}

/// What the fetcher last learned from the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub etag: String,
    pub confirmed_ms: i64,
    /// The sequence of the newest signed snapshot accepted in this process
    /// (`None`: no signed snapshot yet).
    pub sequence: Option<u64>,
}

impl Meta {
    pub fn encode(&self) -> String {
        match self.sequence {
            Some(sequence) => format!("{}\n{}\n{sequence}", self.etag, self.confirmed_ms),
            None => format!("{}\n{}", self.etag, self.confirmed_ms),
        }
    }

    pub fn decode(bytes: &[u8]) -> Option<Meta> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let etag = lines.next()?.to_string();
        let confirmed_ms = lines.next()?.parse().ok()?;
        let sequence = match lines.next() {
            Some(line) => Some(line.parse().ok()?),
            None => None,
        };
        Some(Meta {
            etag,
            confirmed_ms,
            sequence,
        })
    }
}

/// Whether a signed snapshot (`sequence`, `revision`) may replace the newest
/// one this process accepted (`newest`: its sequence and revision). Older
/// sequences are replays or rollbacks; the same sequence must be the same
/// snapshot.
pub fn newer_than(newest: Option<(u64, &str)>, sequence: u64, revision: &str) -> bool {
    match newest {
        None => true,
        Some((seen, seen_revision)) => {
            sequence > seen || (sequence == seen && revision == seen_revision)
        }
    }
}

/// The poll interval spread by ±10% so a fleet of proxies does not poll in lockstep.
pub fn jittered_ms(poll_ms: u32, random: u64) -> i64 {
    let poll = i64::from(poll_ms);
    let spread = poll / 5; // the whole ±10% band
    if spread == 0 {
        return poll;
    }
    poll - spread / 2 + (random % spread as u64) as i64
}

/// How often every VM looks for a new revision (and the fetcher for its turn):
/// a tenth of the poll interval, between 50 ms and 1 s. A tick reads one
/// small shared-data key; a shorter one takes a new revision to every worker
/// sooner (issue 12: within 2 s of the source at a 1 s poll) for next to no
/// work.
pub fn tick_ms(poll_ms: u32) -> u32 {
    (poll_ms / 10).clamp(50, 1000)
}

/// A lease outlives a few missed ticks and one slow fetch.
pub fn lease_ms(poll_ms: u32, timeout_ms: u32) -> i64 {
    3 * i64::from(tick_ms(poll_ms)) + i64::from(timeout_ms)
}

/// The ETag to send back in `If-None-Match`: the response's `etag` header, or
/// the snapshot's revision quoted when the source sends none.
pub fn etag_or_revision(etag_header: Option<&str>, revision: &str) -> String {
    match etag_header {
        // Visible ASCII only: it is stored and sent back as a header value.
        Some(etag) if !etag.is_empty() && etag.bytes().all(|b| b.is_ascii_graphic()) => {
            etag.to_string()
        }
        _ => format!("\"{revision}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_name_is_in_the_namespace_of_this_layout_and_the_layout_follows_the_bucket_formats() {
        use tenantgate_policy::binary::tier::{APP_BUCKET_MAGIC, BUCKET_MAGIC, GRANT_BUCKET_MAGIC};
        let keys = SharedKeys::new("policy", "/snapshot");
        let ours = format!("tenantgate:v{SHARED_LAYOUT}:");
        for name in [&keys.lease, &keys.snapshot, &keys.head, &keys.meta] {
            assert!(name.starts_with(&ours), "{name}");
        }
        assert!(keys.bucket(0, 0).starts_with(&ours));
        assert!(keys.app_bucket(1, 0).starts_with(&ours));
        assert!(keys.grant_bucket(1, 0).starts_with(&ours));
        // A new bucket format is a new layout: update both together, so that
        // builds of two formats never read each other's tiers.
        assert_eq!(
            (
                BUCKET_MAGIC,
                APP_BUCKET_MAGIC,
                GRANT_BUCKET_MAGIC,
                SHARED_LAYOUT
            ),
            (b"TGKEYS\x00\x03", b"TGAPPS\x00\x02", b"TGGRNT\x00\x01", 3)
        );
    }

    #[test]
    fn lease_round_trip_and_claims() {
        let lease = Lease {
            owner: 0xdead_beef,
            expires_ms: 1_700_000_000_123,
        };
        assert_eq!(Lease::decode(lease.encode().as_bytes()), Some(lease));
        assert_eq!(Lease::decode(b"free"), None);
        assert!(Lease::claimable(None, 1, 0));
        assert!(
            Lease::claimable(Some(lease), 0xdead_beef, 0),
            "the owner renews"
        );
        assert!(
            !Lease::claimable(Some(lease), 7, 1_700_000_000_122),
            "another VM waits"
        );
        assert!(
            Lease::claimable(Some(lease), 7, 1_700_000_000_123),
            "an expired lease is free"
        );
    }

    #[test]
    fn snapshot_and_meta_framing() {
        let packed = pack_snapshot("\"r2\"", None, b"{\"revision\":\"r2\"}\n");
        let published = Published {
            etag: "\"r2\"",
            tier: None,
            body: &b"{\"revision\":\"r2\"}\n"[..],
        };
        assert_eq!(unpack_snapshot(&packed), Some(published));
        let tier = TierRef {
            generation: 0xfeed_0000_0000_0001,
            buckets: 8192,
            slot: 1,
            apps: 3907,
        };
        assert_eq!(TierRef::next_slot(Some(tier)), 0);
        assert_eq!(TierRef::next_slot(None), 0);
        assert_eq!(TierRef::decode("01:1:2:0"), None, "two slots only");
        assert_eq!(TierRef::decode("01:1:0"), None);
        assert_eq!(TierRef::decode("01:1:0:0:0"), None);
        assert_eq!(TierRef::decode("01:1:0:x"), None);
        assert_eq!(TierRef::decode("01:1:0:0").map(|t| t.apps), Some(0));
        let packed = pack_snapshot("\"r3\"", Some(tier), b"TGSNAP\n\x00");
        let unpacked = unpack_snapshot(&packed).unwrap();
        assert_eq!(unpacked.tier, Some(tier));
        assert_eq!(unpacked.body, b"TGSNAP\n\x00");
        assert_eq!(unpack_snapshot(b"no newline"), None);
        assert_eq!(unpack_snapshot(b"\"r\"\nzz:1\nbody"), None, "a bad tier");
        assert_eq!(
            unpack_snapshot(b"\"r\"\n01:0:0:0\nbody"),
            None,
            "no buckets"
        );
        let keys = SharedKeys::new("policy", "/snapshot");
        assert_eq!(keys.bucket(1, 7), "tenantgate:v3:policy/snapshot:keys:1:7");
        assert_eq!(keys.head, "tenantgate:v3:policy/snapshot:head");
        let shadow = SharedKeys::shadow("policy", "/snapshot");
        assert_ne!(
            shadow.snapshot, keys.snapshot,
            "a shadow never shares the live keys"
        );
        assert_ne!(shadow.lease, keys.lease);
        // A head is a packed snapshot without a body.
        let head = pack_snapshot("\"r3\"", Some(tier), &[]);
        assert_eq!(unpack_snapshot(&head).unwrap().tier, Some(tier));
        assert_eq!(
            keys.slot_count(0),
            "tenantgate:v3:policy/snapshot:keys:0:count"
        );
        assert_eq!(
            keys.app_bucket(0, 9),
            "tenantgate:v3:policy/snapshot:apps:0:9"
        );
        assert_eq!(
            keys.app_slot_count(1),
            "tenantgate:v3:policy/snapshot:apps:1:count"
        );
        assert_eq!(
            keys.grant_bucket(0, 9),
            "tenantgate:v3:policy/snapshot:grants:0:9"
        );
        assert_eq!(
            keys.grant_slot_count(1),
            "tenantgate:v3:policy/snapshot:grants:1:count"
        );
        let mut meta = Meta {
            etag: "\"r2\"".into(),
            confirmed_ms: 42,
            sequence: None,
        };
        assert_eq!(Meta::decode(meta.encode().as_bytes()), Some(meta.clone()));
        meta.sequence = Some(1_764_000_000_000);
        assert_eq!(Meta::decode(meta.encode().as_bytes()), Some(meta));
        assert_eq!(Meta::decode(b"\"r2\"\nsoon"), None);
        assert_eq!(Meta::decode(b"\"r2\"\n1\nlater"), None);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for random in [0, 1, 499, 999, 1000, u64::MAX] {
            let ms = jittered_ms(5000, random);
            assert!((4500..5500).contains(&ms), "{ms}");
        }
        assert_eq!(jittered_ms(3, 12345), 3);
        assert_eq!(tick_ms(5000), 500);
        assert_eq!(tick_ms(60_000), 1000);
        assert_eq!(tick_ms(1000), 100);
        assert_eq!(tick_ms(100), 50);
        assert_eq!(lease_ms(1000, 500), 800);
        assert_eq!(etag_or_revision(None, "r1"), "\"r1\"");
        assert_eq!(etag_or_revision(Some("W/\"x\""), "r1"), "W/\"x\"");
        assert_eq!(etag_or_revision(Some("\"a b\""), "r1"), "\"r1\"");
    }

    #[test]
    fn only_newer_signed_snapshots_replace_older_ones() {
        assert!(newer_than(None, 1, "r1"));
        assert!(newer_than(Some((5, "r5")), 6, "r6"));
        assert!(newer_than(Some((5, "r5")), 5, "r5"), "the same one again");
        assert!(!newer_than(Some((5, "r5")), 4, "r4"), "a replay");
        assert!(!newer_than(Some((5, "r5")), 5, "r4"), "a reused sequence");
    }
}
