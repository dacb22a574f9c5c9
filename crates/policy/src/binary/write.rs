//! Encoding: a snapshot to the bytes of its compiled form.

use super::read::{KeyFlags, RUN_STRIDE};
use super::{
    principal_kind, principal_prefix, seal, status_code, GRANT_REF_SIZE, MAGIC, PENDING_SIZE,
};
use crate::document::Right;
use crate::records::{AppEntry, Idx, KeyEntry, PrincipalRef, RouteTeams, DISTINCT_DIGEST_BYTES};
use crate::snapshot::Snapshot;
use crate::time::Timestamp;
use rustc_hash::FxHashMap;

pub(super) struct Writer(pub(super) Vec<u8>);

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(super) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(clamp_u32(n));
    }
    pub(super) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn strs(&mut self, list: &[Box<str>]) {
        self.len(list.len());
        for s in list {
            self.str(s);
        }
    }
    /// A list of strings, as [`Writer::strs`] writes it.
    fn list<'s>(&mut self, items: impl Iterator<Item = &'s str> + Clone) {
        self.len(items.clone().count());
        for s in items {
            self.str(s);
        }
    }
    fn idxs(&mut self, list: &[Idx]) {
        self.len(list.len());
        for &i in list {
            self.u32(i);
        }
    }
    /// `None` is `u32::MAX`: no collection here reaches that size.
    fn opt_idx(&mut self, v: Option<Idx>) {
        self.u32(v.unwrap_or(u32::MAX));
    }
    fn opt_time(&mut self, v: Option<Timestamp>) {
        match v {
            Some(t) => {
                self.u8(1);
                self.u64(t.unix_nanos() as u64);
            }
            None => self.u8(0),
        }
    }
    fn opt_right(&mut self, v: Option<Right>) {
        self.u8(match v {
            None => 0,
            Some(Right::Read) => 1,
            Some(Right::Write) => 2,
        });
    }
    /// A table: the record count, `count + 1` offsets into the records' bytes,
    /// then those bytes; `write` writes record `i`. (Not generic: the filter
    /// module pays for every instantiation.)
    fn table(&mut self, count: usize, write: &mut dyn FnMut(&mut Writer, usize)) {
        let mut records = Writer(Vec::new());
        let mut offsets = vec![0u32];
        for i in 0..count {
            write(&mut records, i);
            offsets.push(clamp_u32(records.0.len()));
        }
        self.len(count);
        for offset in offsets {
            self.u32(offset);
        }
        self.0.extend_from_slice(&records.0);
    }
    /// Fixed-size records (`records` holds them back to back), sorted by
    /// their bytes.
    fn fixed(&mut self, records: &[u8], size: usize) {
        let list: Vec<&[u8]> = records.chunks_exact(size).collect();
        let order = sorted_unique(&list);
        self.len(order.len());
        for record in order.iter().filter_map(|&p| list.get(p)) {
            self.0.extend_from_slice(record);
        }
    }
    /// A table of (id, index) records sorted by id, for lookups by id.
    fn id_index(&mut self, entries: &[(&str, Idx)]) {
        let keys: Vec<&[u8]> = entries.iter().map(|(id, _)| id.as_bytes()).collect();
        let order = sorted_unique(&keys);
        self.table(order.len(), &mut |w, i| {
            if let Some((id, idx)) = order.get(i).and_then(|&p| entries.get(p)) {
                w.str(id);
                w.u32(*idx);
            }
        });
    }
}

fn id_entries(map: &FxHashMap<Box<str>, Idx>) -> Vec<(&str, Idx)> {
    map.iter().map(|(id, &i)| (&**id, i)).collect()
}

/// The positions of `keys` in ascending key order, equal keys dropped.
fn sorted_unique(keys: &[&[u8]]) -> Vec<usize> {
    let mut positions: Vec<usize> = (0..keys.len()).collect();
    positions.sort_unstable_by(|&a, &b| keys.get(a).cmp(&keys.get(b)));
    positions.dedup_by(|a, b| keys.get(*a) == keys.get(*b));
    positions
}

/// Encodes a compiled snapshot. Deterministic: the same snapshot always gives
/// the same bytes (a source can use them for its ETag).
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    encode_after(&[], 64 + snapshot.keys.len() * 64, snapshot)
}

/// [`encode`], after `prefix`, in a buffer of `capacity` bytes to start
/// with: the filter's fetcher frames the snapshot it publishes this way,
/// sized from what it just read, instead of copying it into a frame and
/// letting the buffer double as it grows (a VM's memory never shrinks).
pub fn encode_after(prefix: &[u8], capacity: usize, snapshot: &Snapshot) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(capacity.max(prefix.len() + 64)));
    w.0.extend_from_slice(prefix);
    w.0.extend_from_slice(MAGIC);
    w.u64(0); // the checksum, filled in last
    w.str(&snapshot.revision);
    write_counts_and_environments(&mut w, snapshot);
    write_orgs(&mut w, snapshot);
    // Ids and handles as the snapshot resolves them (an id wins over a handle).
    w.id_index(&id_entries(&snapshot.org_by_name));
    write_routes(&mut w, snapshot);
    write_products_and_apps(&mut w, snapshot);
    write_keys(&mut w, snapshot);
    write_users_and_grants(&mut w, snapshot);
    write_references(&mut w, snapshot);
    write_id_indexes(&mut w, snapshot);
    write_asserted(&mut w, snapshot);
    if let Some(compiled) = w.0.get_mut(prefix.len()..) {
        seal(compiled);
    }
    w.0
}

fn write_counts_and_environments(w: &mut Writer, snapshot: &Snapshot) {
    let stats = snapshot.stats;
    for n in [
        stats.organizations,
        stats.teams,
        stats.users,
        stats.apps,
        stats.api_keys,
        stats.routes,
        stats.grants,
    ] {
        w.len(n);
    }
    // Environment names by index.
    let mut envs: Vec<&str> = vec![""; snapshot.envs.len()];
    for (name, &i) in &snapshot.envs {
        if let Some(slot) = envs.get_mut(i as usize) {
            *slot = name;
        }
    }
    w.len(envs.len());
    for name in envs {
        w.str(name);
    }
}

fn write_orgs(w: &mut Writer, snapshot: &Snapshot) {
    w.table(snapshot.orgs.len(), &mut |w, i| {
        if let Some(org) = snapshot.orgs.get(i) {
            w.str(&org.id);
            w.str(&org.handle);
            w.opt_idx(org.parent);
            w.u8(u8::from(org.suspended));
            w.opt_time(org.expires_at);
            w.idxs(&org.envs);
            w.u8(u8::from(org.evaluation));
            w.strs(&org.issuers);
        }
    });
}

fn write_routes(w: &mut Writer, snapshot: &Snapshot) {
    w.table(snapshot.routes.len(), &mut |w, i| {
        if let Some(route) = snapshot.routes.get(i) {
            w.str(&route.id);
            w.bytes(&route.prefix);
            w.strs(&route.hosts);
            w.strs(&route.methods);
            w.opt_idx(route.tenant);
            match &route.teams {
                RouteTeams::Unrestricted => w.u8(0),
                RouteTeams::AnyTeam => w.u8(1),
                RouteTeams::Listed(teams) => {
                    w.u8(2);
                    w.len(teams.len());
                    for listed in teams.iter() {
                        w.u32(listed.team);
                        w.u32(listed.org);
                    }
                }
            }
            w.opt_idx(route.read_permission);
            w.opt_idx(route.write_permission);
            w.u8(u8::from(route.public));
        }
    });
}

fn write_products_and_apps(w: &mut Writer, snapshot: &Snapshot) {
    w.table(snapshot.products.len(), &mut |w, i| {
        if let Some(product) = snapshot.products.get(i) {
            w.idxs(&product.routes);
            w.idxs(&product.envs);
        }
    });
    w.table(snapshot.apps.len(), &mut |w, i| {
        if let Some(app) = snapshot.apps.get(i) {
            w.app(app);
        }
    });
}

/// Keys sorted by digest: a key's index is its rank.
fn write_keys(w: &mut Writer, snapshot: &Snapshot) {
    let keys: Vec<&KeyEntry> = snapshot.keys.iter().collect();
    w.key_table(&keys);
}

impl Writer {
    /// A table of key records sorted by digest (the snapshot's key table, and
    /// a bucket of the key tier).
    pub(super) fn key_table(&mut self, keys: &[&KeyEntry]) {
        let digests: Vec<&[u8]> = keys.iter().map(|key| &key.digest[..]).collect();
        let order = sorted_unique(&digests);
        self.table(order.len(), &mut |w, i| {
            if let Some(key) = order.get(i).and_then(|&p| keys.get(p)) {
                w.key(key);
            }
        });
    }

    /// `count` records laid back to back, record `i` of `len(i)` bytes
    /// written by `write`: their count, their bytes' length and a mark (an
    /// offset) every [`RUN_STRIDE`] records first (the key tier's buckets,
    /// which a reader walks from the nearest mark: an offset every record
    /// would cost 4 bytes each).
    pub(super) fn run_of(
        &mut self,
        count: usize,
        len: impl Fn(usize) -> usize,
        mut write: impl FnMut(&mut Writer, usize),
    ) {
        self.len(count);
        self.len((0..count).map(&len).sum());
        let mut at = 0usize;
        for i in 0..count {
            if i % RUN_STRIDE == 0 {
                self.len(at);
            }
            at += len(i);
        }
        for i in 0..count {
            write(self, i);
        }
    }

    /// An app record (the snapshot's app table, and the key tier's app buckets).
    pub(super) fn app(&mut self, app: &AppEntry) {
        self.str(&app.principal);
        self.u32(app.org);
        self.u8(u8::from(app.approved));
        self.idxs(&app.products);
    }

    /// An app's grants in a bucket of the key tier: (tenant, grant) pairs,
    /// sorted by tenant.
    /// An app's `count` grants (tenant, grant), as `pairs` gives them
    /// (written as they come: a snapshot can give one app millions).
    pub(super) fn app_grants(&mut self, count: usize, pairs: impl Iterator<Item = (Idx, Idx)>) {
        self.len(count);
        for (tenant, grant) in pairs.take(count) {
            self.u32(tenant);
            self.u32(grant);
        }
    }

    /// A key bucket's record of `key` (`read.rs` `TIER_KEY_FIELDS`).
    pub(super) fn tier_key(&mut self, key: &KeyEntry) {
        self.0
            .extend_from_slice(key.digest.get(..DISTINCT_DIGEST_BYTES).unwrap_or_default());
        self.u32(key.app);
        let mut flags = status_code(key.status) & KeyFlags::STATUS;
        if key.read_only {
            flags |= KeyFlags::READ_ONLY;
        }
        if key.expires_at.is_some() {
            flags |= KeyFlags::EXPIRES;
        }
        if key.envs.is_some() {
            flags |= KeyFlags::ENVS;
        }
        self.u8(flags);
        if let Some(t) = key.expires_at {
            self.u64(t.unix_nanos() as u64);
        }
        if let Some(envs) = &key.envs {
            self.idxs(envs);
        }
    }

    pub(super) fn key(&mut self, key: &KeyEntry) {
        self.0.extend_from_slice(&key.digest);
        self.u32(key.app);
        self.u8(status_code(key.status));
        self.opt_time(key.expires_at);
        self.u8(u8::from(key.read_only));
        match &key.envs {
            None => self.u8(0),
            Some(envs) => {
                self.u8(1);
                self.idxs(envs);
            }
        }
    }
}

fn write_users_and_grants(w: &mut Writer, snapshot: &Snapshot) {
    w.table(snapshot.users.len(), &mut |w, i| {
        if let Some(user) = snapshot.users.get(i) {
            w.str(&user.principal);
            w.opt_idx(user.default_tenant);
        }
    });
    w.table(snapshot.grants.len(), &mut |w, i| {
        if let Some(grants) = snapshot.grants.get(i) {
            w.list(grants.roles());
            w.list(grants.teams());
            w.len(grants.rights.len());
            for &(team, right) in grants.rights.iter() {
                w.u32(team);
                w.opt_right(Some(right));
            }
            w.opt_right(grants.star);
            w.len(grants.permissions.len());
            for &word in grants.permissions.iter() {
                w.u64(word);
            }
        }
    });
}

/// Fixed records whose bytes sort as their fields (big-endian): grant
/// references and invitations.
fn write_references(w: &mut Writer, snapshot: &Snapshot) {
    let mut by_principal: Vec<u8> =
        Vec::with_capacity(snapshot.grants_by_principal.len() * GRANT_REF_SIZE);
    for (&(principal, tenant), &grant) in &snapshot.grants_by_principal {
        let idx = match principal {
            PrincipalRef::App(i) | PrincipalRef::User(i) => i,
        };
        by_principal.extend_from_slice(&principal_prefix(principal_kind(principal), idx));
        by_principal.extend_from_slice(&tenant.to_be_bytes());
        by_principal.extend_from_slice(&grant.to_be_bytes());
    }
    w.fixed(&by_principal, GRANT_REF_SIZE);
    let mut pending: Vec<u8> = Vec::with_capacity(snapshot.pending.len() * PENDING_SIZE);
    for &(user, org) in &snapshot.pending {
        pending.extend_from_slice(&user.to_be_bytes());
        pending.extend_from_slice(&org.to_be_bytes());
    }
    w.fixed(&pending, PENDING_SIZE);
}

/// The id indexes of apps, users, Otoroshi client ids and e-mails, and the
/// team ids of located apikeys.
fn write_id_indexes(w: &mut Writer, snapshot: &Snapshot) {
    let gateway = &snapshot.gateway;
    w.id_index(&snapshot.app_by_id.entries(&snapshot.apps));
    for map in [&snapshot.user_by_id, &gateway.apps, &gateway.users] {
        w.id_index(&id_entries(map));
    }
    let teams: Vec<(&str, (Idx, Idx))> = gateway.teams.iter().map(|(id, &t)| (&**id, t)).collect();
    let team_ids: Vec<&[u8]> = teams.iter().map(|(id, _)| id.as_bytes()).collect();
    let order = sorted_unique(&team_ids);
    w.table(order.len(), &mut |w, i| {
        if let Some((id, (team, org))) = order.get(i).and_then(|&p| teams.get(p)) {
            w.str(id);
            w.u32(*team);
            w.u32(*org);
        }
    });
}

/// Roles (id, permission words) and groups (id, organization, role ids),
/// each sorted by id: what `asserted` tokens are checked against (x3).
fn write_asserted(w: &mut Writer, snapshot: &Snapshot) {
    let mut roles: Vec<_> = snapshot.asserted.roles.iter().collect();
    roles.sort_unstable_by(|a, b| a.0.cmp(b.0));
    w.table(roles.len(), &mut |w, i| {
        if let Some((id, bits)) = roles.get(i) {
            w.str(id);
            w.len(bits.len());
            for &word in bits.iter() {
                w.u64(word);
            }
        }
    });
    let mut groups: Vec<_> = snapshot.asserted.groups.iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(b.0));
    w.table(groups.len(), &mut |w, i| {
        if let Some((id, (org, roles))) = groups.get(i) {
            w.str(id);
            w.u32(*org);
            w.strs(roles);
        }
    });
}
