//! Decoding a whole snapshot, checking every record and index.

use super::read::{id_key, read_parts_with, Checksum, Parts, Result, Table};
use super::DecodeError;
use crate::records::{GatewayIds, Idx, PrincipalRef};
use crate::snapshot::{Snapshot, SnapshotParts};
use rustc_hash::{FxHashMap, FxHashSet};

/// Decodes an encoded snapshot, checking every index (and that the searched
/// tables are sorted and the id indexes agree with their records, as
/// [`super::decode_for`] relies on it).
pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
    decode_with(bytes, Leave::Nothing).map(|(snapshot, _)| snapshot)
}

/// What [`decode_with`] checks but leaves in the bytes instead of decoding
/// into the snapshot: for the key tier ([`super::tier::decode_split`]), the
/// keys, or the keys and the apps with their grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leave {
    Nothing,
    Keys,
    KeysAndApps,
}

/// [`decode`], also handing back the located parts of `bytes`.
pub(super) fn decode_with(bytes: &[u8], leave: Leave) -> Result<(Snapshot, Parts<'_>)> {
    decode_parts(bytes, leave, Checksum::Check)
}

/// [`decode_with`], the checksum compared or not ([`Checksum`]).
pub(super) fn decode_parts(
    bytes: &[u8],
    leave: Leave,
    sum: Checksum,
) -> Result<(Snapshot, Parts<'_>)> {
    let parts = read_parts_with(bytes, sum)?;
    check_searched(&parts)?;
    let records = whole_records(&parts, leave)?;
    let snapshot = Snapshot::assemble(records).map_err(|_| DecodeError {
        offset: bytes.len(),
        what: "duplicate key digest",
    })?;
    // The id indexes must say what `assemble` derived from the records: checked
    // against its maps rather than against a second copy of them (at 1M keys
    // the app ids alone are 250,000 strings).
    check_index(&parts.org_names, &snapshot.org_by_name)?;
    if leave == Leave::KeysAndApps {
        check_app_ids_in_bytes(&parts)?;
    } else {
        let apps = &snapshot.app_by_id;
        // Compiled snapshots never hold two apps with one id.
        let with_id = snapshot
            .apps
            .iter()
            .filter(|a| a.principal.starts_with("app:"));
        if with_id.count() != apps.len() {
            return Err(index_mismatch(&parts.app_ids));
        }
        check_ids(&parts.app_ids, apps.len(), |id| {
            apps.get(&snapshot.apps, id)
        })?;
    }
    check_index(&parts.user_ids, &snapshot.user_by_id)?;
    Ok((snapshot, parts))
}

/// What `decode_for` searches must be sorted (checked here, so a snapshot
/// that loads whole also loads per request).
fn check_searched(parts: &Parts<'_>) -> Result<()> {
    parts.by_principal.check_sorted()?;
    parts.pending.check_sorted()?;
    parts.keys.check_key_order()?;
    for index in [
        &parts.org_names,
        &parts.app_ids,
        &parts.user_ids,
        &parts.client_ids,
        &parts.emails,
        &parts.teams,
    ] {
        index.check_sorted(id_key)?;
    }
    Ok(())
}

/// The app id index lists every app's id once, each at its app, for apps
/// that stay in the bytes: checked in one pass over borrowed ids. The index
/// is strictly sorted ([`check_searched`]), so its entries name distinct
/// apps; as many as the apps with an id, it names them all, and no two apps
/// share an id ([`decode_with`] refuses that too).
fn check_app_ids_in_bytes(parts: &Parts<'_>) -> Result<()> {
    let mut with_id = 0;
    for i in 0..parts.apps.count {
        with_id += usize::from(parts.apps.record(i)?.str_ref()?.starts_with("app:"));
    }
    if with_id != parts.app_ids.count {
        return Err(index_mismatch(&parts.app_ids));
    }
    for i in 0..parts.app_ids.count {
        let mut r = parts.app_ids.record(i)?;
        let (id, app) = (r.str_ref()?, r.u32()? as usize);
        // Exactly an id and an index: a streamed cut finds where a record
        // ends by reading it (`tier/stream/apps.rs`).
        r.done()?;
        if app >= parts.apps.count {
            return Err(index_mismatch(&parts.app_ids));
        }
        let principal = parts.apps.record(app)?.str_ref()?;
        if principal.strip_prefix("app:") != Some(id) {
            return Err(index_mismatch(&parts.app_ids));
        }
    }
    Ok(())
}

/// Every record of every collection (each checked, those left in the bytes
/// not kept).
fn whole_records(parts: &Parts<'_>, leave: Leave) -> Result<SnapshotParts> {
    let keep_apps = leave != Leave::KeysAndApps;
    let grants_by_principal = grant_refs(parts, keep_apps)?;
    let gateway = gateway_ids(parts, keep_apps)?;
    let apps = if keep_apps {
        all(parts.apps.count, |i| parts.app(i))?
    } else {
        for i in 0..parts.apps.count {
            parts.app(i)?;
        }
        Vec::new()
    };
    let mut pending = FxHashSet::default();
    for i in 0..parts.pending.count {
        pending.insert(parts.pending_pair(&mut parts.pending.record(i))?);
    }
    Ok(SnapshotParts {
        revision: parts.revision.clone(),
        orgs: all(parts.orgs.count, |i| parts.org(i))?,
        envs: parts.envs.clone(),
        routes: all(parts.routes.count, |i| parts.route(i))?,
        apps,
        products: all(parts.products.count, |i| parts.product(i))?,
        keys: match leave {
            Leave::Nothing => all(parts.keys.count, |i| parts.key(i))?,
            Leave::Keys | Leave::KeysAndApps => Vec::new(),
        },
        users: all(parts.users.count, |i| parts.user(i))?,
        grants: all(parts.grants.count, |i| parts.grants(i))?,
        grants_by_principal,
        pending,
        gateway,
        asserted: parts.asserted()?,
        stats: parts.stats,
    })
}

/// Records `0..count` through `read`, in order.
fn all<T>(count: usize, read: impl Fn(usize) -> Result<T>) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        out.push(read(i)?);
    }
    Ok(out)
}

/// The grant references, every one checked; those of apps only when the apps
/// stay. Sized by what is kept: reserving for every reference and keeping a
/// sixth of them left a 1M-key snapshot's fetching VM holding ~10 MiB of
/// empty map (issue 12).
fn grant_refs(parts: &Parts<'_>, keep_apps: bool) -> Result<FxHashMap<(PrincipalRef, Idx), Idx>> {
    let mut refs = FxHashMap::default();
    if keep_apps {
        refs.reserve(parts.by_principal.count);
    }
    for i in 0..parts.by_principal.count {
        let (principal, tenant, grant) = parts.grant_ref(&mut parts.by_principal.record(i))?;
        if keep_apps || !matches!(principal, PrincipalRef::App(_)) {
            refs.insert((principal, tenant), grant);
        }
    }
    Ok(refs)
}

/// The Otoroshi identities (data, not derived: stored as their indexes) of
/// apps, users and teams; the apps' only when the apps stay (when they move,
/// their index is checked where it lies instead of being built into a map
/// and dropped).
fn gateway_ids(parts: &Parts<'_>, keep_apps: bool) -> Result<GatewayIds> {
    let apps = if keep_apps {
        Parts::id_map(&parts.client_ids, parts.apps.count)?
    } else {
        Parts::check_id_table(&parts.client_ids, parts.apps.count)?;
        FxHashMap::default()
    };
    let mut gateway = GatewayIds {
        apps,
        users: Parts::id_map(&parts.emails, parts.users.count)?,
        teams: FxHashMap::default(),
    };
    for i in 0..parts.teams.count {
        let (id, team) = parts.team(&mut parts.teams.record(i)?)?;
        gateway.teams.insert(id, team);
    }
    Ok(gateway)
}

/// Checks that an (id, index) table holds exactly the entries of `expected`.
fn check_index(table: &Table<'_>, expected: &FxHashMap<Box<str>, Idx>) -> Result<()> {
    check_ids(table, expected.len(), |id| expected.get(id).copied())
}

/// The id index `table` holds exactly `count` ids, each at the index `get`
/// gives it.
fn check_ids(table: &Table<'_>, count: usize, get: impl Fn(&str) -> Option<Idx>) -> Result<()> {
    if table.count != count {
        return Err(index_mismatch(table));
    }
    for i in 0..table.count {
        let mut r = table.record(i)?;
        let id = r.str_ref()?;
        if get(id) != Some(r.u32()?) {
            return Err(index_mismatch(table));
        }
        r.done()?;
    }
    Ok(())
}

pub(super) fn index_mismatch(table: &Table<'_>) -> DecodeError {
    index_mismatch_at(table.offsets_at)
}

pub(super) fn index_mismatch_at(offset: usize) -> DecodeError {
    DecodeError {
        offset,
        what: "an id index disagrees with its records",
    }
}
