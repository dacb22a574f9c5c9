//! Decoding only what one request needs (the Otoroshi plug-in, per call):
//! every route, and the organizations, products, apps, keys, users and
//! grants the request's identities reach, each found by binary search and
//! decoded alone. Deciding that request against the result gives the same
//! decision as against the whole snapshot, for a cost that does not grow with
//! the number of keys. Only the records read are checked; [`super::decode`]
//! checks everything.

use super::decode::index_mismatch;
use super::principal_prefix;
use super::read::{digest_key, id_key, read_parts, Parts, Result};
use super::DecodeError;
use crate::records::{
    AppEntry, AssertedTables, GatewayIds, Grants, Idx, KeyEntry, OrgEntry, PrincipalRef,
    ProductEntry, RouteEntry, UserEntry,
};
use crate::request::Request;
use crate::snapshot::{Snapshot, SnapshotParts};
use rustc_hash::{FxHashMap, FxHashSet};

/// What one request can be decided as and by: what [`decode_for`] loads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wanted<'w> {
    /// SHA-256 of the request's API key.
    pub key_digest: Option<[u8; 32]>,
    /// The user id header's value.
    pub user_id: Option<&'w [u8]>,
    /// The tenant selector header's value.
    pub tenant_selector: Option<&'w [u8]>,
    /// The gateway's apikey client id (Otoroshi).
    pub client_id: Option<&'w str>,
    /// The gateway's user e-mail or name (Otoroshi), as given.
    pub email: Option<&'w str>,
    /// The organization of the gateway apikey's location (Otoroshi `_loc`).
    pub location_tenant: Option<&'w str>,
    /// The team ids of that location.
    pub location_teams: &'w [String],
    /// The user a verified token names (x3).
    pub token_user: Option<&'w str>,
    /// The tenant an `asserted` token names (x3).
    pub token_tenant: Option<&'w str>,
    /// An `asserted` token: its roles and groups are looked up (the role
    /// and group tables are read whole).
    pub asserted: bool,
}

impl<'w> Wanted<'w> {
    /// What the request itself names: its API key, user id and tenant selector.
    pub fn of(request: &'w Request<'_>) -> Wanted<'w> {
        Wanted {
            key_digest: request.api_key.as_deref().map(crate::key_digest),
            user_id: request.user_id,
            tenant_selector: request.tenant_selector,
            ..Wanted::default()
        }
    }
}

/// Decodes the part of an encoded snapshot that decides one request.
pub fn decode_for(bytes: &[u8], wanted: &Wanted<'_>) -> Result<Snapshot> {
    let parts = read_parts(bytes)?;
    let mut subset = Subset::new(&parts);
    let routes = subset.routes()?;
    let keys = subset.key(wanted.key_digest)?;
    subset.user_by_id(wanted.user_id)?;
    subset.user_by_id(wanted.token_user.map(str::as_bytes))?;
    let selector = wanted
        .tenant_selector
        .and_then(|s| std::str::from_utf8(s).ok());
    for name in [selector, wanted.location_tenant, wanted.token_tenant]
        .into_iter()
        .flatten()
    {
        subset.org_by_name(name)?;
    }
    let gateway = subset.gateway(wanted)?;
    let asserted = match wanted.asserted {
        true => parts.asserted()?,
        false => AssertedTables::default(),
    };
    Snapshot::assemble(subset.finish(routes, keys, gateway, asserted)).map_err(|_| DecodeError {
        offset: bytes.len(),
        what: "duplicate key digest",
    })
}

fn placeholder_org() -> OrgEntry {
    OrgEntry {
        id: Box::default(),
        handle: Box::default(),
        parent: None,
        suspended: false,
        expires_at: None,
        envs: Vec::new().into(),
        evaluation: false,
        issuers: Box::default(),
    }
}

fn placeholder_product() -> ProductEntry {
    ProductEntry {
        routes: Vec::new().into(),
        envs: Vec::new().into(),
    }
}

/// A partial snapshot being collected. Organizations, routes and products keep
/// their indexes (entries not needed stay empty placeholders, which cost no
/// allocation); apps, users and grants are renumbered.
struct Subset<'p, 'b> {
    parts: &'p Parts<'b>,
    orgs: Vec<OrgEntry>,
    org_loaded: Vec<bool>,
    products: Vec<ProductEntry>,
    product_loaded: Vec<bool>,
    /// (index in the encoded snapshot, index here).
    apps: Vec<(Idx, Idx)>,
    users: Vec<(Idx, Idx)>,
    grants: Vec<(Idx, Idx)>,
    app_entries: Vec<AppEntry>,
    user_entries: Vec<UserEntry>,
    grant_entries: Vec<Grants>,
    grants_by_principal: FxHashMap<(PrincipalRef, Idx), Idx>,
    pending: FxHashSet<(Idx, Idx)>,
}

fn local(map: &[(Idx, Idx)], global: Idx) -> Option<Idx> {
    map.iter().find(|(g, _)| *g == global).map(|(_, l)| *l)
}

impl<'p, 'b> Subset<'p, 'b> {
    fn new(parts: &'p Parts<'b>) -> Subset<'p, 'b> {
        Subset {
            parts,
            orgs: (0..parts.orgs.count).map(|_| placeholder_org()).collect(),
            org_loaded: vec![false; parts.orgs.count],
            products: (0..parts.products.count)
                .map(|_| placeholder_product())
                .collect(),
            product_loaded: vec![false; parts.products.count],
            apps: Vec::new(),
            users: Vec::new(),
            grants: Vec::new(),
            app_entries: Vec::new(),
            user_entries: Vec::new(),
            grant_entries: Vec::new(),
            grants_by_principal: FxHashMap::default(),
            pending: FxHashSet::default(),
        }
    }

    /// Every route (the route index is built from them exactly as
    /// [`super::decode`] builds it, never read from the bytes), and each
    /// concrete tenant's organization.
    fn routes(&mut self) -> Result<Vec<RouteEntry>> {
        let mut routes = Vec::with_capacity(self.parts.routes.count);
        for i in 0..self.parts.routes.count {
            let route = self.parts.route(i)?;
            if let Some(tenant) = route.tenant {
                self.org(tenant)?;
            }
            routes.push(route);
        }
        Ok(routes)
    }

    /// The request's key, if the snapshot ships it, and its app.
    fn key(&mut self, digest: Option<[u8; 32]>) -> Result<Vec<KeyEntry>> {
        let Some(digest) = digest else {
            return Ok(Vec::new());
        };
        let Some(k) = self.parts.keys.search(digest_key, &digest)? else {
            return Ok(Vec::new());
        };
        let mut key = self.parts.key(k)?;
        key.app = self.app(key.app)?;
        Ok(vec![key])
    }

    /// The user a user id names, checked against the user's own record.
    fn user_by_id(&mut self, id: Option<&[u8]>) -> Result<()> {
        let Some(id) = id.and_then(|id| std::str::from_utf8(id).ok()) else {
            return Ok(());
        };
        let Some(user) = self.parts.user_ids.find_id(id)? else {
            return Ok(());
        };
        let local = self.user(user)?;
        let principal = self.user_entries.get(local as usize).map(|u| &*u.principal);
        if principal.and_then(|p| p.strip_prefix("user:")) != Some(id) {
            return Err(index_mismatch(&self.parts.user_ids));
        }
        Ok(())
    }

    /// The organization `name` (an id or handle) names, checked against its record.
    fn org_by_name(&mut self, name: &str) -> Result<()> {
        let Some(org) = self.parts.org_names.find_id(name)? else {
            return Ok(());
        };
        self.org(org)?;
        let entry = self.orgs.get(org as usize);
        if !entry.is_some_and(|o| &*o.id == name || &*o.handle == name) {
            return Err(index_mismatch(&self.parts.org_names));
        }
        Ok(())
    }

    /// The gateway's apikey and user (by client id and e-mail) and the teams
    /// of an apikey's location.
    fn gateway(&mut self, wanted: &Wanted<'_>) -> Result<GatewayIds> {
        let parts = self.parts;
        let mut gateway = GatewayIds::default();
        if let Some(client_id) = wanted.client_id {
            if let Some(app) = parts.client_ids.find_id(client_id)? {
                gateway.apps.insert(client_id.into(), self.app(app)?);
            }
        }
        if let Some(email) = wanted.email {
            let email = email.to_ascii_lowercase();
            if let Some(user) = parts.emails.find_id(&email)? {
                gateway.users.insert(email.into(), self.user(user)?);
            }
        }
        for team in wanted.location_teams {
            if let Some(i) = parts.teams.search(id_key, team.as_bytes())? {
                let (id, placed) = parts.team(&mut parts.teams.record(i)?)?;
                gateway.teams.insert(id, placed);
            }
        }
        Ok(gateway)
    }

    fn finish(
        self,
        routes: Vec<RouteEntry>,
        keys: Vec<KeyEntry>,
        gateway: GatewayIds,
        asserted: AssertedTables,
    ) -> SnapshotParts {
        SnapshotParts {
            revision: self.parts.revision.clone(),
            orgs: self.orgs,
            envs: self.parts.envs.clone(),
            routes,
            apps: self.app_entries,
            products: self.products,
            keys,
            users: self.user_entries,
            grants: self.grant_entries,
            grants_by_principal: self.grants_by_principal,
            pending: self.pending,
            gateway,
            asserted,
            stats: self.parts.stats,
        }
    }

    /// Organization `i` and its ancestors.
    fn org(&mut self, i: Idx) -> Result<()> {
        let mut next = Some(i);
        while let Some(i) = next {
            match self.org_loaded.get_mut(i as usize) {
                Some(loaded) if !*loaded => *loaded = true,
                _ => return Ok(()),
            }
            let org = self.parts.org(i as usize)?;
            next = org.parent;
            if let Some(slot) = self.orgs.get_mut(i as usize) {
                *slot = org;
            }
        }
        Ok(())
    }

    fn product(&mut self, i: Idx) -> Result<()> {
        match self.product_loaded.get_mut(i as usize) {
            Some(loaded) if !*loaded => *loaded = true,
            _ => return Ok(()),
        }
        let product = self.parts.product(i as usize)?;
        if let Some(slot) = self.products.get_mut(i as usize) {
            *slot = product;
        }
        Ok(())
    }

    fn grant(&mut self, global: Idx) -> Result<Idx> {
        if let Some(l) = local(&self.grants, global) {
            return Ok(l);
        }
        let l = self.grant_entries.len() as Idx;
        self.grant_entries.push(self.parts.grants(global as usize)?);
        self.grants.push((global, l));
        Ok(l)
    }

    /// Every grant of principal `global` (kind 0 app, 1 user), under `here`.
    fn grants_of(&mut self, kind: u8, global: Idx, here: PrincipalRef) -> Result<()> {
        let refs: Vec<(Idx, Idx)> = self
            .parts
            .by_principal
            .range(&principal_prefix(kind, global))
            .map(|i| {
                let mut r = self.parts.by_principal.record(i);
                self.parts.grant_ref(&mut r).map(|(_, t, g)| (t, g))
            })
            .collect::<Result<_>>()?;
        for (tenant, grant) in refs {
            let l = self.grant(grant)?;
            self.grants_by_principal.insert((here, tenant), l);
        }
        Ok(())
    }

    fn app(&mut self, global: Idx) -> Result<Idx> {
        if let Some(l) = local(&self.apps, global) {
            return Ok(l);
        }
        let l = self.app_entries.len() as Idx;
        let app = self.parts.app(global as usize)?;
        self.org(app.org)?;
        for &p in app.products.iter() {
            self.product(p)?;
        }
        self.app_entries.push(app);
        self.apps.push((global, l));
        self.grants_of(0, global, PrincipalRef::App(l))?;
        Ok(l)
    }

    fn user(&mut self, global: Idx) -> Result<Idx> {
        if let Some(l) = local(&self.users, global) {
            return Ok(l);
        }
        let l = self.user_entries.len() as Idx;
        let user = self.parts.user(global as usize)?;
        if let Some(tenant) = user.default_tenant {
            self.org(tenant)?;
        }
        self.user_entries.push(user);
        self.users.push((global, l));
        self.grants_of(1, global, PrincipalRef::User(l))?;
        let orgs: Vec<Idx> = self
            .parts
            .pending
            .range(&global.to_be_bytes())
            .map(|i| {
                let mut r = self.parts.pending.record(i);
                self.parts.pending_pair(&mut r).map(|(_, org)| org)
            })
            .collect::<Result<_>>()?;
        for org in orgs {
            self.pending.insert((l, org));
        }
        Ok(l)
    }
}
