//! The decision procedure of spec §3: the first failing step decides.

use super::document::{KeyStatus, Right};
use super::path::PathCase;
use super::reason::Reason;
use super::request::Request;
use super::snapshot::{
    route_walk, Grants, Idx, KeyEntry, OrgEntry, PrincipalRef, RouteTeams, Snapshot,
};
use super::time::Timestamp;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Inbound headers removed from every request, whatever the decision: the
/// annotations and the audit verdict, so that a client can never forge them.
/// Every spelling an upstream may fold into one of them is removed too
/// ([`is_annotation_header`]).
pub const STRIPPED_HEADERS: [&str; 7] = [
    "x-tenant-id",
    "x-tenant-handle",
    "x-tenant-teams",
    "x-tenant-roles",
    "x-principal",
    "x-policy-revision",
    "x-policy-decision",
];

/// Enforce denies; audit lets everything through and marks what it would deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

/// What the policy decided, with everything resolved up to the deciding step.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// `None` when the request is allowed.
    pub reason: Option<Reason>,
    pub route: Option<&'a str>,
    pub public: bool,
    tenant: Option<&'a OrgEntry>,
    pub principal: Option<Cow<'a, str>>,
    grants: Option<&'a Grants>,
    pub revision: Option<&'a str>,
    /// The path without the API key query parameter, when it had one: the
    /// host sets it whatever the decision, so that neither the upstream nor
    /// an access log of a denied request ever sees the key.
    pub forward_path: Option<&'a [u8]>,
}

/// What the host must do with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'d> {
    /// Replace the path if given (access logs read it), then answer locally;
    /// the request does not reach the upstream.
    Respond {
        status: u16,
        body: &'static str,
        path: Option<&'d [u8]>,
    },
    /// Strip [`STRIPPED_HEADERS`], set `headers`, replace the path if given, forward.
    Forward {
        headers: Vec<(&'static str, &'d str)>,
        path: Option<&'d [u8]>,
    },
}

impl<'a> Decision<'a> {
    fn new(revision: Option<&'a str>, forward_path: Option<&'a [u8]>) -> Self {
        Decision {
            reason: None,
            route: None,
            public: false,
            tenant: None,
            principal: None,
            grants: None,
            revision,
            forward_path,
        }
    }

    /// Step 0: no snapshot is loaded.
    pub fn no_policy(forward_path: Option<&'a [u8]>) -> Self {
        Decision {
            reason: Some(Reason::NoPolicy),
            ..Decision::new(None, forward_path)
        }
    }

    /// The same resolution, denied for `reason` instead (a shell's own verdict,
    /// such as a failed key lookup).
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    fn deny(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn allowed(&self) -> bool {
        self.reason.is_none()
    }

    pub fn status(&self) -> u16 {
        self.reason.map_or(200, Reason::status)
    }

    pub fn tenant_id(&self) -> Option<&'a str> {
        self.tenant.map(|t| &*t.id)
    }

    pub fn tenant_handle(&self) -> Option<&'a str> {
        self.tenant.map(|t| &*t.handle)
    }

    /// The tenant's teams the principal holds a right on (`["*"]` for a `"*"` right).
    pub fn teams(&self) -> &'a [Box<str>] {
        self.grants.map_or(&[], |g| &g.teams)
    }

    /// The effective roles in the tenant, sorted.
    pub fn roles(&self) -> &'a [Box<str>] {
        self.grants.map_or(&[], |g| &g.roles)
    }

    /// The annotation headers to set toward the upstream in `mode`.
    ///
    /// An allowed request gets the full set of spec §3 (a public route only the
    /// revision and a concrete tenant). A denied request gets none in enforce mode;
    /// in audit mode it gets what was resolved before the failing step, plus
    /// `x-policy-decision: deny; reason=<code>`.
    pub fn annotations(&self, mode: Mode) -> Vec<(&'static str, &str)> {
        if self.reason.is_some() && mode == Mode::Enforce {
            return Vec::new();
        }
        let mut headers = Vec::with_capacity(7);
        if let Some(tenant) = self.tenant {
            headers.push(("x-tenant-id", &*tenant.id));
            headers.push(("x-tenant-handle", &*tenant.handle));
        }
        if !self.public {
            if let Some(grants) = self.grants {
                headers.push(("x-tenant-teams", &*grants.teams_header));
                headers.push(("x-tenant-roles", &*grants.roles_header));
            }
            if let Some(principal) = &self.principal {
                headers.push(("x-principal", principal.as_ref()));
            }
        }
        if let Some(revision) = self.revision {
            headers.push(("x-policy-revision", revision));
        }
        if let Some(reason) = self.reason {
            headers.push(("x-policy-decision", reason.audit_header()));
        }
        headers
    }

    /// What the host does: answer with the deny body, or forward annotated.
    pub fn action(&self, mode: Mode) -> Action<'_> {
        match self.reason {
            Some(reason) if mode == Mode::Enforce => Action::Respond {
                status: reason.status(),
                body: reason.body(),
                path: self.forward_path,
            },
            _ => Action::Forward {
                headers: self.annotations(mode),
                path: self.forward_path,
            },
        }
    }

    /// The `policyctl explain` object of spec §4, fields in the spec's order.
    pub fn explain(&self, mode: Mode) -> Explain<'_> {
        Explain {
            decision: if self.allowed() { "allow" } else { "deny" },
            status: self.status(),
            reason: self.reason.map(Reason::code),
            route: self.route,
            tenant: self.tenant_id(),
            principal: self.principal.as_deref(),
            teams: self.teams().iter().map(|t| &**t).collect(),
            roles: self.roles().iter().map(|r| &**r).collect(),
            headers: HeaderMap(self.annotations(mode)),
        }
    }
}

/// The `policyctl explain` output; serialize it with `serde_json`.
#[derive(Debug, serde::Serialize)]
pub struct Explain<'d> {
    pub decision: &'static str,
    pub status: u16,
    pub reason: Option<&'static str>,
    pub route: Option<&'d str>,
    pub tenant: Option<&'d str>,
    pub principal: Option<&'d str>,
    pub teams: Vec<&'d str>,
    pub roles: Vec<&'d str>,
    pub headers: HeaderMap<'d>,
}

/// Header pairs serialized as a JSON object, in order.
#[derive(Debug)]
pub struct HeaderMap<'d>(pub Vec<(&'static str, &'d str)>);

impl serde::Serialize for HeaderMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// GET, HEAD and OPTIONS, compared upper-case; every other method is a write.
pub fn is_safe_method(method: &str) -> bool {
    ["GET", "HEAD", "OPTIONS"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// Whether a header `name` is, or reads upstream as, one of
/// [`STRIPPED_HEADERS`]: compared without case and with `_` and `.` read as
/// `-`, as CGI, WSGI, PHP and Rack servers fold header names (`x_tenant_id`
/// becomes `HTTP_X_TENANT_ID`, exactly what `x-tenant-id` becomes).
pub fn is_annotation_header(name: &[u8]) -> bool {
    let fold = |b: u8| match b {
        b'_' | b'.' => b'-',
        other => other.to_ascii_lowercase(),
    };
    // Every annotation starts with `x`: most headers stop at the first byte.
    name.first().is_some_and(|&b| fold(b) == b'x')
        && STRIPPED_HEADERS.iter().any(|wanted| {
            wanted.len() == name.len() && wanted.bytes().zip(name).all(|(w, &n)| w == fold(n))
        })
}

/// The host without its port, IPv6 brackets kept.
fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .find(']')
            .and_then(|end| host.get(..=end))
            .unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

impl Snapshot {
    /// Step 2: the longest segment-boundary prefix among routes whose host and
    /// method filters accept the request.
    pub(crate) fn match_route(
        &self,
        method: &str,
        host: &str,
        path: &[u8],
        case: PathCase,
    ) -> Option<Idx> {
        if !path.starts_with(b"/") {
            return None;
        }
        let host = host_without_port(host);
        let index = match (case, &self.folded_route_index) {
            (PathCase::Insensitive, Some(folded)) => folded,
            _ => &self.route_index,
        };
        // Start at the deepest boundary a route prefix can reach, so a huge path
        // costs no more than a short one (no hashing of prefixes no route has).
        for prefix in route_walk(path, index.longest_prefix()) {
            let found = index.candidates(prefix).find(|&i| {
                self.routes.get(i as usize).is_some_and(|r| {
                    (r.hosts.is_empty() || r.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
                        && (r.methods.is_empty()
                            || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method)))
                })
            });
            if found.is_some() {
                return found;
            }
        }
        None
    }

    fn is_expired(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
        expires_at.is_some_and(|at| now >= at)
    }
}

enum Caller<'a> {
    App {
        app: Idx,
        key: &'a KeyEntry,
    },
    User(Option<Idx>),
    /// A gateway apikey placed by the gateway's own location (see [`GatewayCaller`]).
    Located {
        tenant: Idx,
        grants: &'a Grants,
        read_only: bool,
    },
}

/// A caller the host gateway authenticated itself (in Otoroshi: the apikey its
/// `ApikeyCalls` plugin validated, or the user an auth module logged in),
/// resolved against a snapshot by the host shell. [`decide_as`] ranks it among
/// the request's own credentials.
#[derive(Debug)]
pub struct GatewayCaller {
    kind: GatewayKind,
}

#[derive(Debug)]
enum GatewayKind {
    /// An apikey an app of the snapshot names (`apps[].otoroshi_client_ids`):
    /// decided as a key of that app, active and unexpired (the gateway refuses
    /// disabled and expired keys itself), with the gateway's read-only flag.
    App(KeyEntry),
    /// A user of the snapshot (`users[].otoroshi_emails`), or an unknown one.
    User {
        user: Option<Idx>,
        principal: Box<str>,
    },
    /// An apikey no app names, placed by the gateway's location (`_loc`): a
    /// member of `tenant` only, with `grants` there, subscribed to whatever the
    /// gateway let it call (no product check).
    Located {
        principal: Box<str>,
        tenant: Idx,
        grants: Grants,
        read_only: bool,
    },
    /// An apikey the snapshot cannot place: `invalid_api_key`.
    UnknownKey,
}

impl GatewayCaller {
    /// The gateway's apikey is app `app` of the snapshot.
    fn app(app: Idx, read_only: bool) -> GatewayCaller {
        GatewayCaller {
            kind: GatewayKind::App(KeyEntry {
                digest: [0; 32],
                app,
                status: KeyStatus::Active,
                expires_at: None,
                read_only,
                envs: None,
            }),
        }
    }

    /// The gateway's user: user `user` of the snapshot, or, unknown, principal
    /// `user:otoroshi/<name>` (which is a member of nothing, and which no
    /// snapshot user's principal can equal: ids hold no `/`).
    fn user(user: Option<Idx>, name: &str) -> GatewayCaller {
        GatewayCaller {
            kind: GatewayKind::User {
                user,
                principal: principal_text("user:otoroshi/", name.as_bytes()).into(),
            },
        }
    }

    /// The gateway's apikey, known to no app, placed in organization `tenant`
    /// with a right on `teams` (team index and id, all of `tenant`) or on every
    /// team (`star`): write, or read for a read-only key. It holds no role, so a
    /// route requiring a permission denies it.
    fn located(
        principal: String,
        tenant: Idx,
        teams: &[(Idx, &str)],
        star: bool,
        read_only: bool,
    ) -> GatewayCaller {
        let right = if read_only { Right::Read } else { Right::Write };
        let by_index: BTreeMap<Idx, &str> = teams.iter().copied().collect();
        let rights: Box<[(Idx, Right)]> = by_index.keys().map(|&t| (t, right)).collect();
        let mut names: Vec<&str> = if star {
            vec!["*"]
        } else {
            by_index.values().copied().collect()
        };
        names.sort_unstable();
        names.dedup();
        let grants = Grants {
            roles: Box::new([]),
            roles_header: "".into(),
            teams_header: names.join(",").into(),
            teams: names.iter().map(|&t| t.into()).collect(),
            best_team_right: rights.iter().map(|(_, r)| *r).max(),
            rights,
            star: star.then_some(right),
            permissions: Vec::new().into(),
        };
        GatewayCaller {
            kind: GatewayKind::Located {
                principal: principal.into(),
                tenant,
                grants,
                read_only,
            },
        }
    }

    /// The gateway's apikey, which the snapshot cannot place.
    fn unknown_key() -> GatewayCaller {
        GatewayCaller {
            kind: GatewayKind::UnknownKey,
        }
    }

    /// An apikey (ranked before the request's API key), not a user.
    pub fn is_key(&self) -> bool {
        !matches!(self.kind, GatewayKind::User { .. })
    }
}

/// The gateway's own placement of an apikey (Otoroshi's `_loc`): an
/// organization id and team ids (`"*"`: every team).
#[derive(Debug, Clone, Copy)]
pub struct GatewayLocation<'l> {
    pub tenant: &'l str,
    pub teams: &'l [String],
}

impl Snapshot {
    /// The gateway's apikey `client_id`: the app naming it
    /// (`apps[].otoroshi_client_ids`); else, with a `location` whose
    /// organization is in the snapshot, that organization and the location's
    /// teams of it; else unknown (`invalid_api_key`).
    pub fn gateway_apikey(
        &self,
        client_id: &str,
        read_only: bool,
        location: Option<GatewayLocation<'_>>,
    ) -> GatewayCaller {
        if let Some(&app) = self.gateway.apps.get(client_id) {
            return GatewayCaller::app(app, read_only);
        }
        let Some(location) = location else {
            return GatewayCaller::unknown_key();
        };
        let Some(&tenant) = self.org_by_name.get(location.tenant) else {
            return GatewayCaller::unknown_key();
        };
        let star = location.teams.iter().any(|t| t == "*");
        let teams: Vec<(Idx, &str)> = location
            .teams
            .iter()
            .filter_map(|team| match self.gateway.teams.get(team.as_str()) {
                Some(&(idx, owner)) if owner == tenant => Some((idx, team.as_str())),
                _ => None,
            })
            .collect();
        // `app:otoroshi/<client id>`: no app id holds a `/`, so a placed
        // apikey can never pass for an app of the snapshot.
        GatewayCaller::located(
            principal_text("app:otoroshi/", client_id.as_bytes()),
            tenant,
            &teams,
            star,
            read_only,
        )
    }

    /// The gateway's user `email`: the user naming it (`users[].otoroshi_emails`,
    /// case-insensitively), or the unknown principal `user:otoroshi/<email>`.
    pub fn gateway_user(&self, email: &str) -> GatewayCaller {
        let user = self
            .gateway
            .users
            .get(email.to_ascii_lowercase().as_str())
            .copied();
        GatewayCaller::user(user, email)
    }
}

/// An API key that is not in the snapshot but was resolved elsewhere (the
/// filter's on-demand key lookup), compiled against the snapshot so that it is
/// decided exactly like a key shipped in it.
#[derive(Debug)]
pub struct ExternalKey {
    pub(crate) digest: [u8; 32],
    pub(crate) entry: KeyEntry,
}

impl ExternalKey {
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

/// The SHA-256 of a raw API key, as the snapshot indexes keys.
pub fn key_digest(raw_key: impl AsRef<[u8]>) -> [u8; 32] {
    Sha256::digest(raw_key.as_ref()).into()
}

/// `prefix` and an identity the snapshot does not know (a request's user
/// id, a gateway's e-mail or client id), as an annotation and log value:
/// bytes outside `A-Za-z0-9._:@+-` percent-encoded, so the value is safe in
/// a header and a log line, and no two identities give the same text (a
/// snapshot id never needs escaping, so it reads as itself).
pub fn principal_text(prefix: &str, id: &[u8]) -> String {
    let mut out = String::with_capacity(prefix.len() + id.len());
    out.push_str(prefix);
    for &b in id {
        if b.is_ascii_alphanumeric() || b".:_@+-".contains(&b) {
            out.push(char::from(b));
        } else {
            use std::fmt::Write;
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Decides one request against a snapshot at time `now`, for a gateway configured
/// with `environment` (or none). Never panics; anything unresolvable denies.
pub fn decide<'a>(
    snapshot: &'a Snapshot,
    request: &'a Request<'_>,
    now: Timestamp,
    environment: Option<&str>,
) -> Decision<'a> {
    decide_with_key(snapshot, request, now, environment, None)
}

/// [`decide`], with one more key known besides the snapshot's own: `external`
/// answers for its digest when the snapshot does not know it.
pub fn decide_with_key<'a>(
    snapshot: &'a Snapshot,
    request: &'a Request<'_>,
    now: Timestamp,
    environment: Option<&str>,
    external: Option<&'a ExternalKey>,
) -> Decision<'a> {
    let d = Decision::new(Some(&snapshot.revision), request.forward_path.as_deref());
    decide_steps(snapshot, request, now, environment, external, None, d)
}

/// [`decide`] for a request whose caller the gateway may have authenticated
/// itself. Credentials rank: the gateway's apikey, the request's API key
/// (header, then query), the gateway's user, the request's user id.
pub fn decide_as<'a>(
    snapshot: &'a Snapshot,
    request: &'a Request<'_>,
    now: Timestamp,
    environment: Option<&str>,
    gateway: Option<&'a GatewayCaller>,
) -> Decision<'a> {
    let d = Decision::new(Some(&snapshot.revision), request.forward_path.as_deref());
    decide_steps(snapshot, request, now, environment, None, gateway, d)
}

/// Step 5 for a key of the snapshot (or looked up, or vouched for by the gateway).
fn key_caller<'a>(
    snap: &'a Snapshot,
    key: &'a KeyEntry,
    now: Timestamp,
    d: &mut Decision<'a>,
) -> Result<Caller<'a>, Reason> {
    let Some(app) = snap.apps.get(key.app as usize) else {
        return Err(Reason::InvalidApiKey);
    };
    d.principal = Some(Cow::Borrowed(&app.principal));
    match key.status {
        KeyStatus::Pending => return Err(Reason::ApiKeyPending),
        KeyStatus::Revoked => return Err(Reason::ApiKeyRevoked),
        KeyStatus::Active => {}
    }
    if Snapshot::is_expired(key.expires_at, now) {
        return Err(Reason::ApiKeyExpired);
    }
    if !app.approved {
        return Err(Reason::AppRevoked);
    }
    Ok(Caller::App { app: key.app, key })
}

/// Steps 4-5 for a caller the gateway authenticated.
fn gateway_caller<'a>(
    snap: &'a Snapshot,
    gateway: &'a GatewayCaller,
    now: Timestamp,
    d: &mut Decision<'a>,
) -> Result<Caller<'a>, Reason> {
    match &gateway.kind {
        GatewayKind::App(key) => key_caller(snap, key, now, d),
        GatewayKind::User { user, principal } => {
            d.principal = Some(Cow::Borrowed(
                match user.and_then(|u| snap.users.get(u as usize)) {
                    Some(entry) => &entry.principal,
                    None => principal,
                },
            ));
            Ok(Caller::User(*user))
        }
        GatewayKind::Located {
            principal,
            tenant,
            grants,
            read_only,
        } => {
            d.principal = Some(Cow::Borrowed(principal));
            Ok(Caller::Located {
                tenant: *tenant,
                grants,
                read_only: *read_only,
            })
        }
        GatewayKind::UnknownKey => Err(Reason::InvalidApiKey),
    }
}

#[allow(clippy::too_many_arguments)]
fn decide_steps<'a>(
    snap: &'a Snapshot,
    request: &'a Request<'_>,
    now: Timestamp,
    environment: Option<&str>,
    external: Option<&'a ExternalKey>,
    gateway: Option<&'a GatewayCaller>,
    mut d: Decision<'a>,
) -> Decision<'a> {
    let gateway_key = gateway.filter(|g| g.is_key());
    // The request's API key is looked up before the route is matched (it is
    // used at step 5): at scale both lookups miss the cache, and issuing the
    // key's loads first lets the processor wait for both chains at once.
    let request_key = match (gateway_key, request.api_key.as_deref()) {
        (None, Some(raw_key)) => {
            let digest = key_digest(raw_key);
            Some((digest, snap.key_index.find(&snap.keys, &digest)))
        }
        _ => None,
    };
    // 1. path hygiene: the canonical path (contract v1.1)
    let Ok(path) = &request.route_path else {
        return d.deny(Reason::InvalidPath);
    };
    // 2. route
    let Some((route_idx, route)) = snap
        .match_route(request.method, request.host, path, request.path_case)
        .and_then(|i| snap.routes.get(i as usize).map(|r| (i, r)))
    else {
        return d.deny(Reason::NoRoute);
    };
    d.route = Some(&route.id);
    // 3. public route
    if route.public {
        d.public = true;
        d.tenant = route.tenant.and_then(|t| snap.org(t));
        return d;
    }
    // 4-5. credentials: the gateway's apikey, the request's API key, the
    // gateway's user, the request's user id; never one of two (v1.1)
    if request.ambiguous.credentials {
        return d.deny(Reason::AmbiguousCredentials);
    }
    let gateway_user = gateway.filter(|g| !g.is_key());
    let caller = if let Some(gateway) = gateway_key {
        match gateway_caller(snap, gateway, now, &mut d) {
            Ok(caller) => caller,
            Err(reason) => return d.deny(reason),
        }
    } else if let Some((digest, known)) = request_key {
        let looked_up = external.filter(|e| e.digest == digest).map(|e| &e.entry);
        let Some(key) = known.or(looked_up) else {
            return d.deny(Reason::InvalidApiKey);
        };
        match key_caller(snap, key, now, &mut d) {
            Ok(caller) => caller,
            Err(reason) => return d.deny(reason),
        }
    } else if let Some(gateway) = gateway_user {
        match gateway_caller(snap, gateway, now, &mut d) {
            Ok(caller) => caller,
            Err(reason) => return d.deny(reason),
        }
    } else if let Some(user_id) = request.user_id {
        let user = std::str::from_utf8(user_id)
            .ok()
            .and_then(|id| snap.user_by_id.get(id))
            .copied();
        d.principal = Some(match user.and_then(|u| snap.users.get(u as usize)) {
            Some(entry) => Cow::Borrowed(&entry.principal),
            None => Cow::Owned(principal_text("user:", user_id)),
        });
        Caller::User(user)
    } else {
        return d.deny(Reason::MissingCredentials);
    };
    // 6. selector names an organization
    if request.ambiguous.tenant {
        return d.deny(Reason::AmbiguousTenant);
    }
    let selector = match request.tenant_selector {
        Some(name) => match std::str::from_utf8(name)
            .ok()
            .and_then(|name| snap.org_by_name.get(name))
        {
            Some(&org) => Some(org),
            None => return d.deny(Reason::UnknownOrganization),
        },
        None => None,
    };
    // 7. tenant
    let default_tenant = match caller {
        Caller::App { app, .. } => snap.apps.get(app as usize).map(|a| a.org),
        Caller::User(user) => user
            .and_then(|u| snap.users.get(u as usize))
            .and_then(|u| u.default_tenant),
        Caller::Located { tenant, .. } => Some(tenant),
    };
    let Some((tenant_idx, tenant)) = route
        .tenant
        .or(selector)
        .or(default_tenant)
        .and_then(|t| snap.org(t).map(|org| (t, org)))
    else {
        return d.deny(Reason::TenantRequired);
    };
    d.tenant = Some(tenant);
    // 8. selector agrees
    if selector.is_some_and(|s| s != tenant_idx) {
        return d.deny(Reason::TenantMismatch);
    }
    // 9. membership
    let principal_ref = match caller {
        Caller::App { app, .. } => Some(PrincipalRef::App(app)),
        Caller::User(user) => user.map(PrincipalRef::User),
        Caller::Located { .. } => None,
    };
    let home = match caller {
        Caller::App { app, .. } => snap.apps.get(app as usize).filter(|a| a.org == tenant_idx),
        _ => None,
    };
    let grants = match caller {
        Caller::Located { tenant, grants, .. } => (tenant == tenant_idx).then_some(grants),
        _ if home.is_some() => home
            .and_then(|a| a.home_grants)
            .and_then(|g| snap.grants.get(g as usize)),
        _ => principal_ref
            .and_then(|p| snap.grants_by_principal.get(&(p, tenant_idx)))
            .and_then(|&g| snap.grants.get(g as usize)),
    };
    let Some(grants) = grants else {
        let pending =
            matches!(caller, Caller::User(Some(u)) if snap.pending.contains(&(u, tenant_idx)));
        return d.deny(if pending {
            Reason::MembershipPending
        } else {
            Reason::NotAMember
        });
    };
    d.grants = Some(grants);
    // 10. tenant and parent are active and not expired
    let parent = tenant.parent.and_then(|p| snap.org(p));
    let lineage = [Some(tenant), parent];
    if lineage.iter().flatten().any(|o| o.suspended) {
        return d.deny(Reason::OrganizationSuspended);
    }
    if lineage
        .iter()
        .flatten()
        .any(|o| Snapshot::is_expired(o.expires_at, now))
    {
        return d.deny(Reason::OrganizationExpired);
    }
    // 11. gateway environment
    let env = match environment {
        None => None,
        Some(name) => match snap.envs.get(name) {
            Some(&e) => Some(e),
            None => return d.deny(Reason::EnvironmentNotAllowed),
        },
    };
    let key = match caller {
        Caller::App { key, .. } => Some(key),
        Caller::User(_) | Caller::Located { .. } => None,
    };
    if let Some(env) = env {
        let key_allows = key
            .and_then(|k| k.envs.as_deref())
            .is_none_or(|envs| envs.contains(&env));
        if !tenant.envs.contains(&env) || !key_allows {
            return d.deny(Reason::EnvironmentNotAllowed);
        }
    }
    // 12. product subscription
    if let Caller::App { app, .. } = caller {
        let mut subscribed = false;
        let mut env_allowed = false;
        let products = snap
            .apps
            .get(app as usize)
            .map_or(&[][..], |a| &*a.products);
        for product in products
            .iter()
            .filter_map(|&p| snap.products.get(p as usize))
        {
            if product.routes.binary_search(&route_idx).is_ok() {
                subscribed = true;
                if env.is_none_or(|e| product.envs.contains(&e)) {
                    env_allowed = true;
                    break;
                }
            }
        }
        if !subscribed {
            return d.deny(Reason::ProductNotSubscribed);
        }
        if !env_allowed {
            return d.deny(Reason::EnvironmentNotAllowed);
        }
    }
    // 13. read-only keys
    let safe = is_safe_method(request.method);
    let read_only = match caller {
        Caller::App { key, .. } => key.read_only,
        Caller::Located { read_only, .. } => read_only,
        Caller::User(_) => false,
    };
    if read_only && !safe {
        return d.deny(Reason::ReadOnlyKey);
    }
    let needed = if safe { Right::Read } else { Right::Write };
    // 14. team rights
    let team_ok = match &route.teams {
        RouteTeams::Unrestricted => true,
        RouteTeams::AnyTeam => {
            grants.star >= Some(needed) || grants.best_team_right >= Some(needed)
        }
        // A `"*"` right covers the resolved tenant's teams only (v1.1).
        RouteTeams::Listed(teams) => teams.iter().any(|listed| {
            (listed.org == tenant_idx && grants.star >= Some(needed))
                || grants.right_on(listed.team) >= Some(needed)
        }),
    };
    if !team_ok {
        return d.deny(Reason::TeamAccessDenied);
    }
    // 15. role permissions
    let permission = if safe {
        route.read_permission
    } else {
        route.write_permission
    };
    if permission.is_some_and(|bit| !grants.has_permission(bit)) {
        return d.deny(Reason::PermissionDenied);
    }
    d
}
