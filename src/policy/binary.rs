//! The compiled snapshot as bytes: what `policyctl compile` writes, what the
//! filter's fetcher publishes to the other VMs, and what a policy source may
//! serve instead of JSON.
//!
//! Loading it skips JSON parsing and the owned document entirely: the decoder
//! reads the compiled vectors and rebuilds the hash indexes, so a large snapshot
//! loads in a fraction of the time and memory. The format is versioned by its
//! magic; everything is little-endian, lengths are `u32`, and every read is
//! bounds-checked so that a truncated or hostile buffer is an error, never a
//! panic. Indexes are checked against the collections they point into.

use super::document::{KeyStatus, Right};
use super::snapshot::{
    ids_by_principal, link_home_grants, org_names, route_table, AppEntry, Grants, Idx, KeyEntry,
    OrgEntry, PrincipalRef, ProductEntry, RouteEntry, RouteTeams, Snapshot, SnapshotStats,
    UserEntry,
};
use super::time::Timestamp;
use rustc_hash::{FxHashMap, FxHashSet};
use std::fmt;

/// Magic and format version: `TGSNAP`, a NUL, and the version byte.
pub const MAGIC: &[u8; 8] = b"TGSNAP\x00\x01";

/// Whether `bytes` look like an encoded snapshot (rather than JSON).
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC[..6])
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub offset: usize,
    pub what: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "compiled snapshot is corrupt at byte {}: {}",
            self.offset, self.what
        )
    }
}

impl std::error::Error for DecodeError {}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn strs(&mut self, list: &[Box<str>]) {
        self.len(list.len());
        for s in list {
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
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

type Result<T> = std::result::Result<T, DecodeError>;

impl<'b> Reader<'b> {
    fn fail<T>(&self, what: &'static str) -> Result<T> {
        Err(DecodeError {
            offset: self.at,
            what,
        })
    }
    fn take(&mut self, n: usize) -> Result<&'b [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.at..e)) {
            Some(slice) => {
                self.at += n;
                Ok(slice)
            }
            None => self.fail("truncated"),
        }
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }
    fn u32(&mut self) -> Result<u32> {
        let raw: [u8; 4] = self.take(4)?.try_into().map_err(|_| DecodeError {
            offset: self.at,
            what: "truncated",
        })?;
        Ok(u32::from_le_bytes(raw))
    }
    fn u64(&mut self) -> Result<u64> {
        let raw: [u8; 8] = self.take(8)?.try_into().map_err(|_| DecodeError {
            offset: self.at,
            what: "truncated",
        })?;
        Ok(u64::from_le_bytes(raw))
    }
    /// A collection length, sanity-checked against the bytes left (each element
    /// takes at least `min_size` bytes) so a corrupt length cannot allocate wildly.
    fn len(&mut self, min_size: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.bytes.len().saturating_sub(self.at) {
            return self.fail("length larger than the data");
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<Box<str>> {
        let n = self.len(1)?;
        let raw = self.take(n)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.into()),
            Err(_) => self.fail("string is not UTF-8"),
        }
    }
    fn strs(&mut self) -> Result<Box<[Box<str>]>> {
        let n = self.len(4)?;
        (0..n).map(|_| self.str()).collect()
    }
    fn idx(&mut self, bound: usize) -> Result<Idx> {
        let i = self.u32()?;
        if (i as usize) < bound {
            Ok(i)
        } else {
            self.fail("index out of range")
        }
    }
    fn idxs(&mut self, bound: usize) -> Result<Box<[Idx]>> {
        let n = self.len(4)?;
        (0..n).map(|_| self.idx(bound)).collect()
    }
    fn opt_idx(&mut self, bound: usize) -> Result<Option<Idx>> {
        match self.u32()? {
            u32::MAX => Ok(None),
            i if (i as usize) < bound => Ok(Some(i)),
            _ => self.fail("index out of range"),
        }
    }
    fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => self.fail("not a boolean"),
        }
    }
    fn opt_time(&mut self) -> Result<Option<Timestamp>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Timestamp::from_unix_nanos(self.u64()? as i64))),
            _ => self.fail("not an optional time"),
        }
    }
    fn opt_right(&mut self) -> Result<Option<Right>> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Right::Read)),
            2 => Ok(Some(Right::Write)),
            _ => self.fail("not a team right"),
        }
    }
}

fn status_code(status: KeyStatus) -> u8 {
    match status {
        KeyStatus::Active => 0,
        KeyStatus::Revoked => 1,
        KeyStatus::Pending => 2,
    }
}

/// Encodes a compiled snapshot.
pub fn encode(snapshot: &Snapshot) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + snapshot.keys.len() * 56));
    w.0.extend_from_slice(MAGIC);
    w.str(&snapshot.revision);
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
    let mut envs: Vec<(&str, Idx)> = snapshot.envs.iter().map(|(n, &i)| (&**n, i)).collect();
    envs.sort_by_key(|&(_, i)| i);
    w.len(envs.len());
    for (name, _) in envs {
        w.str(name);
    }
    w.len(snapshot.orgs.len());
    for org in &snapshot.orgs {
        w.str(&org.id);
        w.str(&org.handle);
        w.opt_idx(org.parent);
        w.u8(u8::from(org.suspended));
        w.opt_time(org.expires_at);
        w.idxs(&org.envs);
    }
    w.len(snapshot.routes.len());
    for route in &snapshot.routes {
        w.str(&route.id);
        w.str(&route.prefix);
        w.strs(&route.hosts);
        w.strs(&route.methods);
        w.opt_idx(route.tenant);
        match &route.teams {
            RouteTeams::Unrestricted => w.u8(0),
            RouteTeams::AnyTeam => w.u8(1),
            RouteTeams::Listed(teams) => {
                w.u8(2);
                w.idxs(teams);
            }
        }
        w.opt_idx(route.read_permission);
        w.opt_idx(route.write_permission);
        w.u8(u8::from(route.public));
    }
    w.len(snapshot.products.len());
    for product in &snapshot.products {
        w.idxs(&product.routes);
        w.idxs(&product.envs);
    }
    w.len(snapshot.apps.len());
    for app in &snapshot.apps {
        w.str(&app.principal);
        w.u32(app.org);
        w.u8(u8::from(app.approved));
        w.idxs(&app.products);
    }
    // Keys with their digests, in key order.
    let mut digests = vec![[0u8; 32]; snapshot.keys.len()];
    for (digest, &k) in &snapshot.key_by_hash {
        if let Some(slot) = digests.get_mut(k as usize) {
            *slot = *digest;
        }
    }
    w.len(snapshot.keys.len());
    for (key, digest) in snapshot.keys.iter().zip(&digests) {
        w.0.extend_from_slice(digest);
        w.u32(key.app);
        w.u8(status_code(key.status));
        w.opt_time(key.expires_at);
        w.u8(u8::from(key.read_only));
        match &key.envs {
            None => w.u8(0),
            Some(envs) => {
                w.u8(1);
                w.idxs(envs);
            }
        }
    }
    w.len(snapshot.users.len());
    for user in &snapshot.users {
        w.str(&user.principal);
        w.opt_idx(user.default_tenant);
    }
    w.len(snapshot.grants.len());
    for grants in &snapshot.grants {
        w.strs(&grants.roles);
        w.strs(&grants.teams);
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
    let mut by_principal: Vec<(&(PrincipalRef, Idx), &Idx)> =
        snapshot.grants_by_principal.iter().collect();
    by_principal.sort_unstable_by_key(|((p, t), _)| {
        (matches!(p, PrincipalRef::User(_)), principal_idx(*p), *t)
    });
    w.len(by_principal.len());
    for (&(principal, tenant), &grant) in by_principal {
        w.u8(u8::from(matches!(principal, PrincipalRef::User(_))));
        w.u32(principal_idx(principal));
        w.u32(tenant);
        w.u32(grant);
    }
    let mut pending: Vec<&(Idx, Idx)> = snapshot.pending.iter().collect();
    pending.sort_unstable();
    w.len(pending.len());
    for &(user, org) in pending {
        w.u32(user);
        w.u32(org);
    }
    w.0
}

/// Joined like the compiler does (one `join` instantiation for the module).
fn comma_joined(items: &[Box<str>]) -> Box<str> {
    let refs: Vec<&str> = items.iter().map(|s| &**s).collect();
    refs.join(",").into()
}

fn principal_idx(p: PrincipalRef) -> Idx {
    match p {
        PrincipalRef::App(i) | PrincipalRef::User(i) => i,
    }
}

/// Decodes an encoded snapshot, checking every index.
pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
    let mut r = Reader { bytes, at: 0 };
    if r.take(MAGIC.len())? != MAGIC {
        return r.fail("not a tenantgate compiled snapshot of this version");
    }
    let revision = r.str()?;
    let mut counts = [0usize; 7];
    for count in &mut counts {
        *count = r.u32()? as usize;
    }
    let [organizations, teams, users_count, apps_count, api_keys, routes_count, grants_count] =
        counts;
    let stats = SnapshotStats {
        organizations,
        teams,
        users: users_count,
        apps: apps_count,
        api_keys,
        routes: routes_count,
        grants: grants_count,
    };
    let env_count = r.len(4)?;
    let mut envs: FxHashMap<Box<str>, Idx> = FxHashMap::default();
    for i in 0..env_count {
        envs.insert(r.str()?, i as Idx);
    }
    let org_count = r.len(8)?;
    let mut orgs = Vec::with_capacity(org_count);
    for _ in 0..org_count {
        orgs.push(OrgEntry {
            id: r.str()?,
            handle: r.str()?,
            parent: r.opt_idx(org_count)?,
            suspended: r.bool()?,
            expires_at: r.opt_time()?,
            envs: r.idxs(env_count)?,
        });
    }
    let route_count = r.len(8)?;
    let mut routes = Vec::with_capacity(route_count);
    for _ in 0..route_count {
        let id = r.str()?;
        let prefix = r.str()?;
        let hosts = r.strs()?;
        let methods = r.strs()?;
        let tenant = r.opt_idx(org_count)?;
        let teams = match r.u8()? {
            0 => RouteTeams::Unrestricted,
            1 => RouteTeams::AnyTeam,
            2 => RouteTeams::Listed(r.idxs(usize::MAX)?),
            _ => return r.fail("not a route team rule"),
        };
        routes.push(RouteEntry {
            id,
            prefix,
            hosts,
            methods,
            tenant,
            teams,
            read_permission: r.opt_idx(usize::MAX)?,
            write_permission: r.opt_idx(usize::MAX)?,
            public: r.bool()?,
        });
    }
    let product_count = r.len(8)?;
    let mut products = Vec::with_capacity(product_count);
    for _ in 0..product_count {
        products.push(ProductEntry {
            routes: r.idxs(route_count)?,
            envs: r.idxs(env_count)?,
        });
    }
    let app_count = r.len(8)?;
    let mut apps = Vec::with_capacity(app_count);
    for _ in 0..app_count {
        apps.push(AppEntry {
            principal: r.str()?,
            org: r.idx(org_count)?,
            approved: r.bool()?,
            products: r.idxs(product_count)?,
            home_grants: None,
        });
    }
    let key_count = r.len(32 + 4 + 1 + 1 + 1 + 1)?;
    let mut keys = Vec::with_capacity(key_count);
    let mut key_by_hash: FxHashMap<[u8; 32], Idx> = FxHashMap::default();
    key_by_hash.reserve(key_count);
    for k in 0..key_count {
        let digest: [u8; 32] = r.take(32)?.try_into().map_err(|_| DecodeError {
            offset: r.at,
            what: "truncated",
        })?;
        let app = r.idx(app_count)?;
        let status = match r.u8()? {
            0 => KeyStatus::Active,
            1 => KeyStatus::Revoked,
            2 => KeyStatus::Pending,
            _ => return r.fail("not a key status"),
        };
        let expires_at = r.opt_time()?;
        let read_only = r.bool()?;
        let key_envs = match r.u8()? {
            0 => None,
            1 => Some(r.idxs(env_count)?),
            _ => return r.fail("not an optional environment list"),
        };
        if key_by_hash.insert(digest, k as Idx).is_some() {
            return r.fail("duplicate key digest");
        }
        keys.push(KeyEntry {
            app,
            status,
            expires_at,
            read_only,
            envs: key_envs,
        });
    }
    let user_count = r.len(8)?;
    let mut users = Vec::with_capacity(user_count);
    for _ in 0..user_count {
        users.push(UserEntry {
            principal: r.str()?,
            default_tenant: r.opt_idx(org_count)?,
        });
    }
    let grant_count = r.len(8)?;
    let mut grants = Vec::with_capacity(grant_count);
    for _ in 0..grant_count {
        let roles = r.strs()?;
        let teams = r.strs()?;
        let right_count = r.len(5)?;
        let mut rights = Vec::with_capacity(right_count);
        for _ in 0..right_count {
            let team = r.u32()?;
            match r.opt_right()? {
                Some(right) => rights.push((team, right)),
                None => return r.fail("a team right is missing"),
            }
        }
        let star = r.opt_right()?;
        let word_count = r.len(8)?;
        let permissions = (0..word_count)
            .map(|_| r.u64())
            .collect::<Result<Box<[u64]>>>()?;
        grants.push(Grants {
            roles_header: comma_joined(&roles),
            teams_header: comma_joined(&teams),
            best_team_right: rights.iter().map(|(_, right)| *right).max(),
            roles,
            teams,
            rights: rights.into(),
            star,
            permissions,
        });
    }
    let entry_count = r.len(13)?;
    let mut grants_by_principal = FxHashMap::default();
    grants_by_principal.reserve(entry_count);
    for _ in 0..entry_count {
        let principal = match r.u8()? {
            0 => PrincipalRef::App(r.idx(app_count)?),
            1 => PrincipalRef::User(r.idx(user_count)?),
            _ => return r.fail("not a principal kind"),
        };
        let tenant = r.idx(org_count)?;
        grants_by_principal.insert((principal, tenant), r.idx(grant_count)?);
    }
    let pending_count = r.len(8)?;
    let mut pending = FxHashSet::default();
    for _ in 0..pending_count {
        pending.insert((r.idx(user_count)?, r.idx(org_count)?));
    }
    if r.at != bytes.len() {
        return r.fail("trailing bytes");
    }
    let (routes_by_prefix, longest_prefix) = route_table(&routes);
    link_home_grants(&mut apps, &grants_by_principal);
    Ok(Snapshot {
        revision,
        org_by_name: org_names(&orgs),
        orgs,
        envs,
        routes_by_prefix,
        longest_prefix,
        routes,
        app_by_id: ids_by_principal(apps.iter().map(|a| &*a.principal), "app:"),
        apps,
        products,
        keys,
        key_by_hash,
        user_by_id: ids_by_principal(users.iter().map(|u| &*u.principal), "user:"),
        users,
        grants,
        grants_by_principal,
        pending,
        stats,
    })
}
