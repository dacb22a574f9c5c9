//! Who is calling: the request's own credentials resolved against the
//! snapshot, or a caller the host gateway authenticated itself
//! ([`GatewayCaller`]: in Otoroshi, the apikey its `ApikeyCalls` plugin
//! validated or the user an auth module logged in).

use crate::document::{KeyStatus, Right};
use crate::reason::Reason;
use crate::records::AssertedTables;
use crate::records::{AppEntry, Grants, Idx, KeyEntry};
use crate::snapshot::Snapshot;
use crate::text::principal_text;
use crate::token::{TokenClaims, TokenMode, TokenSource, VerifiedToken};
use std::collections::BTreeMap;

/// The principal a decision goes on with after step 5.
pub(super) enum Caller<'a> {
    /// An app, through one of its keys.
    App {
        app: &'a AppEntry,
        grants: AppGrants<'a>,
        key: &'a KeyEntry,
    },
    /// A user of the snapshot, or an unknown one (a member of nothing);
    /// with the issuer of the token that named it, if one did.
    User {
        user: Option<Idx>,
        issuer: Option<&'a str>,
    },
    /// Placed in one tenant with grants there: a gateway apikey by the
    /// gateway's own location, or an `asserted` token by its claims (then
    /// with the token's issuer).
    Located {
        tenant: Idx,
        grants: &'a Grants,
        read_only: bool,
        issuer: Option<&'a str>,
    },
}

/// Where an app's grants are: in the snapshot (by its index), or with the
/// app read from the key tier.
#[derive(Clone, Copy)]
pub(super) enum AppGrants<'a> {
    Snapshot(Idx),
    Tier(&'a [(Idx, Idx)]),
}

impl Caller<'_> {
    /// The app's key, for its environments, products and read-only flag.
    pub(super) fn key(&self) -> Option<&KeyEntry> {
        match self {
            Caller::App { key, .. } => Some(key),
            Caller::User { .. } | Caller::Located { .. } => None,
        }
    }

    /// The issuer of the token the caller came from (x3).
    pub(super) fn issuer(&self) -> Option<&str> {
        match self {
            Caller::User { issuer, .. } | Caller::Located { issuer, .. } => *issuer,
            Caller::App { .. } => None,
        }
    }

    pub(super) fn read_only(&self) -> bool {
        match self {
            Caller::App { key, .. } => key.read_only,
            Caller::Located { read_only, .. } => *read_only,
            Caller::User { .. } => false,
        }
    }
}

/// A caller the host gateway authenticated itself, resolved against a
/// snapshot by the host shell. It ranks before the request's own credentials
/// of its kind: a gateway apikey before the request's API key, a gateway
/// user before the user header.
#[derive(Debug)]
pub struct GatewayCaller {
    pub(super) kind: GatewayKind,
}

#[derive(Debug)]
pub(super) enum GatewayKind {
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

/// The gateway's own placement of an apikey (Otoroshi's `_loc`): an
/// organization id or handle, team ids (`"*"`: every team), and the
/// principal the shell gives such an apikey (one no snapshot id can equal).
#[derive(Debug, Clone, Copy)]
pub struct GatewayLocation<'l> {
    /// The organization (id or handle).
    pub tenant: &'l str,
    /// Team ids; `"*"` stands for every team of the organization.
    pub teams: &'l [String],
    /// The annotation and log name of the placed apikey.
    pub principal: &'l str,
}

impl GatewayCaller {
    /// The gateway's apikey `client_id`: the app naming it
    /// (`apps[].otoroshi_client_ids`); else, with a `location` whose
    /// organization is in the snapshot, that organization and the location's
    /// teams of it; else unknown (`invalid_api_key`).
    pub fn apikey(
        snapshot: &Snapshot,
        client_id: &str,
        read_only: bool,
        location: Option<GatewayLocation<'_>>,
    ) -> GatewayCaller {
        if let Some(&app) = snapshot.gateway.apps.get(client_id) {
            return GatewayCaller::app(app, read_only);
        }
        let placed = location.and_then(|location| {
            let tenant = *snapshot.org_by_name.get(location.tenant)?;
            Some(GatewayCaller::located(
                snapshot, location, tenant, read_only,
            ))
        });
        placed.unwrap_or(GatewayCaller {
            kind: GatewayKind::UnknownKey,
        })
    }

    /// The gateway's user `email`: the user naming it
    /// (`users[].otoroshi_emails`, case-insensitively), or an unknown user
    /// known as `unknown_principal` (a member of nothing).
    pub fn user(snapshot: &Snapshot, email: &str, unknown_principal: &str) -> GatewayCaller {
        let user = snapshot
            .gateway
            .users
            .get(email.to_ascii_lowercase().as_str())
            .copied();
        GatewayCaller {
            kind: GatewayKind::User {
                user,
                principal: unknown_principal.into(),
            },
        }
    }

    /// An apikey (ranked before the request's API key), not a user.
    pub fn is_key(&self) -> bool {
        !matches!(self.kind, GatewayKind::User { .. })
    }

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

    /// Placed in organization `tenant` with a right on the location's teams
    /// of it (or on every team): write, or read for a read-only key. It holds
    /// no role, so a route requiring a permission denies it.
    fn located(
        snapshot: &Snapshot,
        location: GatewayLocation<'_>,
        tenant: Idx,
        read_only: bool,
    ) -> GatewayCaller {
        let right = if read_only { Right::Read } else { Right::Write };
        let star = location.teams.iter().any(|t| t == "*");
        let by_index: BTreeMap<Idx, &str> = location
            .teams
            .iter()
            .filter_map(|team| match snapshot.gateway.teams.get(team.as_str()) {
                Some(&(idx, owner)) if owner == tenant => Some((idx, team.as_str())),
                _ => None,
            })
            .collect();
        let rights: Box<[(Idx, Right)]> = by_index.keys().map(|&t| (t, right)).collect();
        let mut names: Vec<&str> = if star {
            vec!["*"]
        } else {
            by_index.values().copied().collect()
        };
        names.sort_unstable();
        names.dedup();
        let grants = Grants {
            roles_header: "".into(),
            teams_header: names.join(",").into(),
            best_team_right: rights.iter().map(|(_, r)| *r).max(),
            rights,
            star: star.then_some(right),
            permissions: Vec::new().into(),
        };
        GatewayCaller {
            kind: GatewayKind::Located {
                principal: location.principal.into(),
                tenant,
                grants,
                read_only,
            },
        }
    }
}

/// The caller a verified token names (extension x3), resolved against a
/// snapshot by the host shell from [`VerifiedToken`] claims. It ranks after
/// the request's API key and before any user header.
#[derive(Debug)]
pub struct TokenCaller {
    pub(super) kind: TokenKind,
}

#[derive(Debug)]
pub(super) enum TokenKind {
    /// The payload lacks a usable issuer or user: `invalid_token_claims`.
    Unusable,
    /// `identity` mode: a user of the snapshot (or an unknown one) whose
    /// memberships decide, acting only where `issuer` is trusted.
    User {
        user: Option<Idx>,
        principal: Box<str>,
        issuer: Box<str>,
    },
    /// `asserted` mode: a member of the claimed tenant only, with the
    /// claimed groups' and roles' grants (no team rights).
    Asserted {
        tenant: Idx,
        grants: Grants,
        principal: Box<str>,
        issuer: Box<str>,
    },
    /// `asserted` mode, claims the snapshot does not know: an unknown
    /// organization, group (or one of another organization) or role.
    Refused { reason: Reason, principal: Box<str> },
}

impl TokenCaller {
    /// Resolves verified claims against `snapshot` as `source` says.
    pub fn resolve(
        snapshot: &Snapshot,
        token: &VerifiedToken,
        source: &TokenSource,
    ) -> TokenCaller {
        let kind = match (token, source.mode) {
            (Err(_), _) => TokenKind::Unusable,
            (Ok(claims), TokenMode::Identity) => TokenCaller::identity(snapshot, claims),
            (Ok(claims), TokenMode::Asserted) => asserted(snapshot, claims),
        };
        TokenCaller { kind }
    }

    fn identity(snapshot: &Snapshot, claims: &TokenClaims) -> TokenKind {
        let user = snapshot.user_by_id.get(claims.user.as_str()).copied();
        let principal = match user.and_then(|u| snapshot.users.get(u as usize)) {
            Some(entry) => entry.principal.clone(),
            None => principal_text("user:", claims.user.as_bytes()).into(),
        };
        TokenKind::User {
            user,
            principal,
            issuer: claims.issuer.as_str().into(),
        }
    }
}

/// An `asserted` token: its tenant (id or handle), and grants from its
/// groups (of that tenant or its parent, whose groups cover it) and roles.
fn asserted(snapshot: &Snapshot, claims: &TokenClaims) -> TokenKind {
    let principal: Box<str> = principal_text("user:", claims.user.as_bytes()).into();
    let refused = |reason| TokenKind::Refused {
        reason,
        principal: principal.clone(),
    };
    let Some(name) = &claims.tenant else {
        return refused(Reason::InvalidTokenClaims);
    };
    let Some((tenant, org)) = snapshot
        .org_by_name
        .get(name.as_str())
        .and_then(|&t| snapshot.org(t).map(|org| (t, org)))
    else {
        return refused(Reason::UnknownOrganization);
    };
    let tables = &snapshot.asserted;
    let mut roles: Vec<&str> = Vec::new();
    for group in &claims.groups {
        match tables.groups.get(group.as_str()) {
            Some((owner, granted)) if *owner == tenant || Some(*owner) == org.parent => {
                roles.extend(granted.iter().map(|r| &**r));
            }
            _ => return refused(Reason::UnknownGroup),
        }
    }
    for role in &claims.roles {
        match tables.roles.get_key_value(role.as_str()) {
            Some((id, _)) => roles.push(id),
            None => return refused(Reason::UnknownRole),
        }
    }
    roles.sort_unstable();
    roles.dedup();
    TokenKind::Asserted {
        tenant,
        grants: role_grants(tables, &roles),
        principal,
        issuer: claims.issuer.as_str().into(),
    }
}

/// Grants of `roles` (sorted, distinct): their permissions, no team right.
fn role_grants(tables: &AssertedTables, roles: &[&str]) -> Grants {
    let mut permissions: Vec<u64> = Vec::new();
    for bits in roles.iter().filter_map(|r| tables.roles.get(*r)) {
        if permissions.len() < bits.len() {
            permissions.resize(bits.len(), 0);
        }
        for (word, bit) in permissions.iter_mut().zip(bits.iter()) {
            *word |= bit;
        }
    }
    Grants {
        roles_header: roles.join(",").into(),
        teams_header: "".into(),
        rights: Box::new([]),
        star: None,
        best_team_right: None,
        permissions: permissions.into(),
    }
}
