//! The steps of spec §3, one function each (or one per group of steps), in
//! the table's order. Each returns the step's deny reason on failure; a
//! reader holding `docs/policy-format.md` finds step N under "Step N".

use super::caller::{AppGrants, Caller, GatewayCaller, GatewayKind, TokenCaller, TokenKind};
use super::verdict::{is_safe_method, Decision};
use super::Context;
use crate::document::{KeyStatus, Right};
use crate::reason::Reason;
use crate::records::{
    AppEntry, Grants, Idx, KeyEntry, OrgEntry, PrincipalRef, RouteEntry, RouteTeams, TierApp,
};
use crate::request::Request;
use crate::snapshot::Snapshot;
use crate::time::Timestamp;
use std::borrow::Cow;

/// The request's own API key: its digest and, if the snapshot ships it, the key.
type RequestKey<'a> = ([u8; 32], Option<&'a KeyEntry>);

/// Steps 1 to 15; the first that fails decides. `d` collects what each step
/// resolves, for the annotations and `explain`.
pub(super) fn run<'a>(
    snap: &'a Snapshot,
    request: &'a Request<'_>,
    cx: &Context<'a>,
    d: &mut Decision<'a>,
) -> Result<(), Reason> {
    // Looked up before the route is matched (it is used at step 5): at scale
    // both lookups miss the cache, and issuing the key's loads first lets the
    // processor wait for both chains at once.
    let key = request_key(snap, request, cx);
    let path = canonical_path(request)?;
    let (route_idx, route) = matching_route(snap, request, path)?;
    d.route = Some(&route.id);
    if route.public {
        // Step 3: a public route is allowed; no later step runs.
        d.public = true;
        d.tenant = route.tenant.and_then(|t| snap.org(t));
        return Ok(());
    }
    let caller = credentials(snap, request, cx, key, d)?;
    let selector = selector(snap, request)?;
    let (tenant_idx, tenant) = tenant(snap, route, selector, &caller)?;
    d.tenant = Some(tenant);
    selector_agrees(selector, tenant_idx)?;
    trusted_issuer(&caller, tenant)?;
    let grants = membership(snap, &caller, tenant_idx)?;
    d.grants = Some(grants);
    organization_standing(snap, tenant, cx.now)?;
    let environment = environment(snap, tenant, &caller, cx.environment)?;
    subscription(snap, &caller, route_idx, environment)?;
    let safe = is_safe_method(request.method);
    read_only(&caller, safe)?;
    team_rights(route, grants, tenant_idx, safe)?;
    permissions(route, grants, safe)
}

fn request_key<'a>(
    snap: &'a Snapshot,
    request: &Request<'_>,
    cx: &Context<'a>,
) -> Option<RequestKey<'a>> {
    if cx.gateway.is_some_and(GatewayCaller::is_key) {
        return None;
    }
    let digest = crate::key_digest(request.api_key.as_deref()?);
    Some((digest, snap.key_index.find(&snap.keys, &digest)))
}

/// Step 1: the canonical path (contract v1.1), or `invalid_path`.
fn canonical_path<'r>(request: &'r Request<'_>) -> Result<&'r [u8], Reason> {
    request
        .route_path
        .as_deref()
        .map_err(|_| Reason::InvalidPath)
}

/// Step 2: the longest matching route prefix, or `no_route`.
fn matching_route<'a>(
    snap: &'a Snapshot,
    request: &Request<'_>,
    path: &[u8],
) -> Result<(Idx, &'a RouteEntry), Reason> {
    snap.match_route(request.method, request.host, path, request.path_case)
        .and_then(|i| snap.routes.get(i as usize).map(|route| (i, route)))
        .ok_or(Reason::NoRoute)
}

/// Steps 4 and 5: a credential, unambiguous (v1.1), and valid. Ranking: the
/// gateway's apikey, the request's API key (header, then query), the
/// gateway's user, the request's user id.
fn credentials<'a>(
    snap: &'a Snapshot,
    request: &Request<'_>,
    cx: &Context<'a>,
    key: Option<RequestKey<'a>>,
    d: &mut Decision<'a>,
) -> Result<Caller<'a>, Reason> {
    if request.ambiguous.credentials {
        return Err(Reason::AmbiguousCredentials);
    }
    if let Some(gateway) = cx.gateway.filter(|g| g.is_key()) {
        return gateway_caller(snap, gateway, cx.now, d);
    }
    if let Some((digest, shipped)) = key {
        let looked_up = cx.external_key.filter(|e| e.digest == digest);
        let (key, tier_app) = match (shipped, looked_up) {
            (Some(key), _) => (key, None),
            (None, Some(e)) => (&e.entry, e.app.as_ref()),
            (None, None) => return Err(Reason::InvalidApiKey),
        };
        return key_caller(snap, key, tier_app, cx.now, d);
    }
    if let Some(token) = cx.token {
        return token_caller(token, d);
    }
    if let Some(gateway) = cx.gateway {
        return gateway_caller(snap, gateway, cx.now, d);
    }
    match request.user_id {
        Some(user_id) => Ok(user_caller(snap, user_id, d)),
        None => Err(Reason::MissingCredentials),
    }
}

/// Step 5 for a key of the snapshot (or looked up, or read from the key tier
/// with its app, or vouched for by the gateway).
fn key_caller<'a>(
    snap: &'a Snapshot,
    key: &'a KeyEntry,
    tier_app: Option<&'a TierApp>,
    now: Timestamp,
    d: &mut Decision<'a>,
) -> Result<Caller<'a>, Reason> {
    let (app, grants) = match tier_app {
        Some(tier) => (&tier.entry, AppGrants::Tier(&tier.grants)),
        None => {
            let app = snap.apps.get(key.app as usize);
            (
                app.ok_or(Reason::InvalidApiKey)?,
                AppGrants::Snapshot(key.app),
            )
        }
    };
    d.principal = Some(Cow::Borrowed(&app.principal));
    match key.status {
        KeyStatus::Pending => return Err(Reason::ApiKeyPending),
        KeyStatus::Revoked => return Err(Reason::ApiKeyRevoked),
        KeyStatus::Active => {}
    }
    if is_expired(key.expires_at, now) {
        return Err(Reason::ApiKeyExpired);
    }
    if !app.approved {
        return Err(Reason::AppRevoked);
    }
    Ok(Caller::App { app, grants, key })
}

/// Steps 4 and 5 for a caller the gateway authenticated.
fn gateway_caller<'a>(
    snap: &'a Snapshot,
    gateway: &'a GatewayCaller,
    now: Timestamp,
    d: &mut Decision<'a>,
) -> Result<Caller<'a>, Reason> {
    match &gateway.kind {
        GatewayKind::App(key) => key_caller(snap, key, None, now, d),
        GatewayKind::User { user, principal } => {
            let known = user.and_then(|u| snap.users.get(u as usize));
            d.principal = Some(Cow::Borrowed(known.map_or(principal, |u| &u.principal)));
            Ok(Caller::User {
                user: *user,
                issuer: None,
            })
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
                issuer: None,
            })
        }
        GatewayKind::UnknownKey => Err(Reason::InvalidApiKey),
    }
}

/// Step 5 for a user id: an unknown one is a user with no memberships.
fn user_caller<'a>(snap: &'a Snapshot, user_id: &[u8], d: &mut Decision<'a>) -> Caller<'a> {
    let user = std::str::from_utf8(user_id)
        .ok()
        .and_then(|id| snap.user_by_id.get(id))
        .copied();
    d.principal = Some(match user.and_then(|u| snap.users.get(u as usize)) {
        Some(entry) => Cow::Borrowed(&entry.principal),
        None => Cow::Owned(crate::text::principal_text("user:", user_id)),
    });
    Caller::User { user, issuer: None }
}

/// Step 5 for a verified token (x3): the user it names, or
/// `invalid_token_claims`.
fn token_caller<'a>(token: &'a TokenCaller, d: &mut Decision<'a>) -> Result<Caller<'a>, Reason> {
    match &token.kind {
        TokenKind::Unusable => Err(Reason::InvalidTokenClaims),
        TokenKind::User {
            user,
            principal,
            issuer,
        } => {
            d.principal = Some(Cow::Borrowed(principal));
            Ok(Caller::User {
                user: *user,
                issuer: Some(issuer),
            })
        }
        TokenKind::Asserted {
            tenant,
            grants,
            principal,
            issuer,
        } => {
            d.principal = Some(Cow::Borrowed(principal));
            Ok(Caller::Located {
                tenant: *tenant,
                grants,
                read_only: false,
                issuer: Some(issuer),
            })
        }
        TokenKind::Refused { reason, principal } => {
            d.principal = Some(Cow::Borrowed(principal));
            Err(*reason)
        }
    }
}

/// Step 6: the tenant selector, sent at most once (v1.1), names an
/// organization (by id or handle).
fn selector(snap: &Snapshot, request: &Request<'_>) -> Result<Option<Idx>, Reason> {
    if request.ambiguous.tenant {
        return Err(Reason::AmbiguousTenant);
    }
    let Some(name) = request.tenant_selector else {
        return Ok(None);
    };
    std::str::from_utf8(name)
        .ok()
        .and_then(|name| snap.org_by_name.get(name))
        .map(|&org| Some(org))
        .ok_or(Reason::UnknownOrganization)
}

/// Step 7: the route's tenant if concrete; else the selector; else the
/// caller's own organization (an app's, or a user's single one).
fn tenant<'a>(
    snap: &'a Snapshot,
    route: &RouteEntry,
    selector: Option<Idx>,
    caller: &Caller<'_>,
) -> Result<(Idx, &'a OrgEntry), Reason> {
    let default = match caller {
        Caller::App { app, .. } => Some(app.org),
        Caller::User { user, .. } => user
            .and_then(|u| snap.users.get(u as usize))
            .and_then(|u| u.default_tenant),
        Caller::Located { tenant, .. } => Some(*tenant),
    };
    route
        .tenant
        .or(selector)
        .or(default)
        .and_then(|t| snap.org(t).map(|org| (t, org)))
        .ok_or(Reason::TenantRequired)
}

/// Step 8: a selector, when sent, names the resolved tenant.
fn selector_agrees(selector: Option<Idx>, tenant: Idx) -> Result<(), Reason> {
    match selector {
        Some(selected) if selected != tenant => Err(Reason::TenantMismatch),
        _ => Ok(()),
    }
}

/// Step 8a (x3): a caller named by a token acts only in a tenant that trusts
/// the token's issuer (its own, its parent's or its area's `token_issuers`).
fn trusted_issuer(caller: &Caller<'_>, tenant: &OrgEntry) -> Result<(), Reason> {
    match caller.issuer() {
        Some(issuer)
            if tenant
                .issuers
                .binary_search_by(|i| (**i).cmp(issuer))
                .is_err() =>
        {
            Err(Reason::IssuerNotTrusted)
        }
        _ => Ok(()),
    }
}

/// Step 9: the caller covers the tenant: its grants there; `not_a_member`,
/// or `membership_pending` when only an invitation covers it.
fn membership<'a>(
    snap: &'a Snapshot,
    caller: &Caller<'a>,
    tenant: Idx,
) -> Result<&'a Grants, Reason> {
    let grants = match caller {
        Caller::Located {
            tenant: home,
            grants,
            ..
        } => (*home == tenant).then_some(*grants),
        Caller::App { app, grants, .. } => app_grants(snap, app, *grants, tenant),
        Caller::User { user, .. } => {
            user.and_then(|u| principal_grants(snap, PrincipalRef::User(u), tenant))
        }
    };
    grants.ok_or_else(|| match caller {
        Caller::User { user: Some(u), .. } if snap.pending.contains(&(*u, tenant)) => {
            Reason::MembershipPending
        }
        _ => Reason::NotAMember,
    })
}

/// An app's grants: with an app from the key tier, from its own list; in its
/// own organization from the app itself (one probe less per key decision at
/// scale); elsewhere from the grant table.
fn app_grants<'a>(
    snap: &'a Snapshot,
    entry: &AppEntry,
    grants: AppGrants<'_>,
    tenant: Idx,
) -> Option<&'a Grants> {
    let app = match grants {
        AppGrants::Tier(list) => {
            let at = list.binary_search_by_key(&tenant, |&(t, _)| t).ok()?;
            return list.get(at).and_then(|&(_, g)| snap.grants.get(g as usize));
        }
        AppGrants::Snapshot(app) => app,
    };
    if entry.org == tenant {
        return entry.home_grants.and_then(|g| snap.grants.get(g as usize));
    }
    principal_grants(snap, PrincipalRef::App(app), tenant)
}

fn principal_grants(snap: &Snapshot, principal: PrincipalRef, tenant: Idx) -> Option<&Grants> {
    let &grant = snap.grants_by_principal.get(&(principal, tenant))?;
    snap.grants.get(grant as usize)
}

/// Step 10: the tenant and its parent are active (`organization_suspended`)
/// and not expired (`organization_expired`); suspension is checked first.
fn organization_standing(snap: &Snapshot, tenant: &OrgEntry, now: Timestamp) -> Result<(), Reason> {
    let parent = tenant.parent.and_then(|p| snap.org(p));
    let lineage = [Some(tenant), parent];
    if lineage.iter().flatten().any(|o| o.suspended) {
        return Err(Reason::OrganizationSuspended);
    }
    if lineage
        .iter()
        .flatten()
        .any(|o| is_expired(o.expires_at, now))
    {
        return Err(Reason::OrganizationExpired);
    }
    Ok(())
}

/// Step 11: the gateway's environment, when set, is one of the tenant's and
/// of the key's (when it lists any). Returns it, for step 12.
fn environment(
    snap: &Snapshot,
    tenant: &OrgEntry,
    caller: &Caller<'_>,
    environment: Option<&str>,
) -> Result<Option<Idx>, Reason> {
    let Some(name) = environment else {
        return Ok(None);
    };
    let &env = snap.envs.get(name).ok_or(Reason::EnvironmentNotAllowed)?;
    let key_allows = caller
        .key()
        .and_then(|k| k.envs.as_deref())
        .is_none_or(|envs| envs.contains(&env));
    if tenant.envs.contains(&env) && key_allows {
        Ok(Some(env))
    } else {
        Err(Reason::EnvironmentNotAllowed)
    }
}

/// Step 12: an app's key reaches the route through one of its products
/// (`product_not_subscribed`), offered in the environment
/// (`environment_not_allowed`).
fn subscription(
    snap: &Snapshot,
    caller: &Caller<'_>,
    route: Idx,
    environment: Option<Idx>,
) -> Result<(), Reason> {
    let Caller::App { app, .. } = caller else {
        return Ok(());
    };
    let products = &*app.products;
    let mut offering = products
        .iter()
        .filter_map(|&p| snap.products.get(p as usize))
        .filter(|product| product.routes.binary_search(&route).is_ok())
        .peekable();
    if offering.peek().is_none() {
        return Err(Reason::ProductNotSubscribed);
    }
    if offering.any(|product| environment.is_none_or(|e| product.envs.contains(&e))) {
        Ok(())
    } else {
        Err(Reason::EnvironmentNotAllowed)
    }
}

/// Step 13: a read-only key only reads (GET, HEAD, OPTIONS).
fn read_only(caller: &Caller<'_>, safe: bool) -> Result<(), Reason> {
    if caller.read_only() && !safe {
        Err(Reason::ReadOnlyKey)
    } else {
        Ok(())
    }
}

/// Step 14: the right a route's teams require (read for safe methods, write
/// otherwise) on a listed team, or a `"*"` right; a `"*"` right covers the
/// resolved tenant's teams only (v1.1).
fn team_rights(route: &RouteEntry, grants: &Grants, tenant: Idx, safe: bool) -> Result<(), Reason> {
    let needed = if safe { Right::Read } else { Right::Write };
    let held = match &route.teams {
        RouteTeams::Unrestricted => true,
        RouteTeams::AnyTeam => {
            grants.star >= Some(needed) || grants.best_team_right >= Some(needed)
        }
        RouteTeams::Listed(teams) => teams.iter().any(|listed| {
            (listed.org == tenant && grants.star >= Some(needed))
                || grants.right_on(listed.team) >= Some(needed)
        }),
    };
    if held {
        Ok(())
    } else {
        Err(Reason::TeamAccessDenied)
    }
}

/// Step 15: the effective roles grant the route's `read` (safe methods) or
/// `write` permission; an absent one requires nothing.
fn permissions(route: &RouteEntry, grants: &Grants, safe: bool) -> Result<(), Reason> {
    let needed = if safe {
        route.read_permission
    } else {
        route.write_permission
    };
    match needed {
        Some(bit) if !grants.has_permission(bit) => Err(Reason::PermissionDenied),
        _ => Ok(()),
    }
}

fn is_expired(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_some_and(|at| now >= at)
}
