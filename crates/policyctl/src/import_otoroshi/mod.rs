//! An Otoroshi export (the back office's "Full export", or `GET /api/otoroshi.json`)
//! converted into a snapshot, validated before it is returned (`policyctl import otoroshi`).
//!
//! # Who may do what: Otoroshi's rules
//!
//! An admin becomes a user whose GET, HEAD or OPTIONS on an imported route is
//! allowed exactly when Otoroshi lets the admin read the route, and whose other
//! methods are allowed exactly when Otoroshi lets it write the route; where that
//! cannot be expressed the user gets less, with a warning, never more. Otoroshi
//! decides from the admin's `rights` (a list of rights `{"tenant": "T:perm",
//! "teams": ["X:perm", …]}`) and the entity's `_loc` `{tenant, teams}`. Paths are
//! in Otoroshi's `otoroshi/app/`: `models/teams.scala` (`TenantAccess`,
//! `TeamAccess`, `UserRights`, `EntityLocation`), `actions/api.scala`
//! (`ApiActionContextCapable`), `utils/regex.scala` (`RegexPool`).
//!
//! | # | rule | where |
//! |---|---|---|
//! | 1 | `x:r` is read; `x:rw`, `x:wr` and `x` (no `:`) are read and write; `x:w`, `x:not` and any other suffix are nothing. The suffix is the last non-empty `:` part (Java's `split` drops trailing empty ones); nothing but `:` fails the whole right | `TenantAccess.apply`, `TeamAccess.apply` |
//! | 2 | ids and patterns are lower-cased and trimmed: tenants `Acme` and `acme` are one tenant, `T1:RW` matches `t1` | `TenantId`, `TeamId`, `TenantAccess`, `TeamAccess` |
//! | 3 | a pattern `*` matches every id; a `*` inside a pattern any run of characters (not line breaks); other characters compare literally (a regular expression with only `.` escaped) | `TenantAccess.matches`, `TeamAccess.matches`, `RegexPool.apply` |
//! | 4 | an entity at tenant `*`, or in team `*`, is matched by every pattern | `matches`: `tenant == TenantId.all`, `team == TeamId.all` |
//! | 5 | super admin, one right `*` (rw) with team `*` (rw): reads and writes everything | `UserRights.superAdmin`, `rootOrTenantAdmin` (api.scala) |
//! | 6 | tenant admin of `T`, ONE right matching `T` with rw whose teams hold exactly `*` with rw: reads and writes every entity of `T`, whatever its teams, none too | `UserRights.tenantAdmin`, `rootOrTenantAdmin` (teams.scala) |
//! | 7 | read: a right matching `T` with read, and a team right with read matching one of `_loc.teams` | `canUserRead`; `canReadTenant`, `canReadTeams` |
//! | 8 | write: a right matching `T` with rw, and a team right with rw matching one of `_loc.teams`: the lesser of the two, so `t1:r` with `a:rw` is read only | `canUserWrite`; `canWriteTenant`, `canWriteTeams` |
//! | 9 | `_loc.teams` empty: 7 and 8 never hold, so only super and tenant admins read or write the entity | `canReadTeams`, `canWriteTeams`: `teams.exists` |
//! | 10 | `_loc.tenant` `*`: the admin works in a tenant `C` (header `Otoroshi-Tenant`); it reads as it would an entity at `C`; it writes with rw on any tenant, read on `C` and a team right with rw | `canUserRead`, `canUserWrite`: `item.location.tenant == TenantId.all`, `canReadTeams(currentTenant, …)` |
//! | 11 | no `_loc`: tenant `default`, teams `[default]`; no `tenant`: `default`; no `teams`: `[default]`; `teams: []`: no team | `EntityLocation.format`, `EntityLocation.readFromKey` |
//! | 12 | `rights` that is not a list is a super admin; a right whose `tenant` is not a string or whose `teams` is not a list of strings is ignored | `UserRights.readFromObject`, `UserRight.format` |
//! | 13 | the team right of rules 7 and 8 may come from any of the admin's rights, not only from one matching `T` | `canReadTeams`: `rights.exists(ur => ur.teams.exists(…))` |
//!
//! Some outcomes (`tests/otoroshi_import.rs` has the full table, every row
//! decided by the engine on an imported export, with Otoroshi's `TeamsSpec`):
//!
//! | admin `rights` | entity `_loc` | read | write |
//! |---|---|---|---|
//! | `*`, teams `*` | anything | yes | yes |
//! | `t1:rw`, teams `*:rw` | `t1`, any teams, `[]` too | yes | yes |
//! | `t1:rw`, teams `*:r` | `t1`, `[]` | no | no |
//! | `t1:rw`, teams `a:rw` | `t1`, `[a]` / `[a, b]` / `[*]` / `[b]` / `[]` | yes / yes / yes / no / no | yes / yes / yes / no / no |
//! | `t1:r`, teams `a:rw` | `t1`, `[a]` | yes | no |
//! | `t1:rw`, teams `a:r` | `t1`, `[a]` | yes | no |
//! | `T1:RW`, teams `A` | `t1`, `[a]` | yes | yes |
//! | `t1:rw`, teams `a:rw` | `*`, `[a]`, working in `t1` / `t2` | yes / no | yes / no |
//! | `t1:w`, teams `a:rw` | `t1`, `[a]` | no | no |
//!
//! # How the snapshot carries them
//!
//! - Ids are compared as Otoroshi compares them (rule 2), and the snapshot's ids
//!   are the lower-cased ones (as Otoroshi writes `_loc`). Tenants, or teams,
//!   that are one id to Otoroshi are one here (kept once, with a warning); teams
//!   of one id in different tenants are left out, so nobody gets a right through
//!   them.
//! - An admin has a membership in each exported tenant `O` that one of its
//!   rights matches with read: role `otoroshi:tenant-admin` where it is tenant
//!   admin (rule 6; team right `{"*": "write"}`), else `otoroshi:tenant-write` or
//!   `otoroshi:tenant-read`. Every right matching `O` gives, on the exported
//!   teams of `O` that a team right matches (on `"*"` for a pattern of only
//!   `*`), the lesser of its tenant right and that team right (rule 8); the
//!   greatest over the rights counts.
//! - A route at `_loc {T, teams}`: tenant `T`, or `"*"` (rule 10: the engine's
//!   tenant is then the `x-tenant-id` selector or the user's only organization,
//!   which is Otoroshi's `C`); teams `["*"]` when `_loc.teams` holds `*`, else
//!   its exported teams of `T` (of any tenant for `*`). No team left (rule 9):
//!   no `teams`, and `permissions` `otoroshi:tenant-admin` for read and write,
//!   which only the `otoroshi:tenant-admin` role holds.
//!
//! # Where the snapshot grants less than Otoroshi (each with a warning)
//!
//! - rule 13: here a team right counts only with its own right's tenant right;
//! - rule 10: writing an entity at `*` needs write on `C` itself here;
//! - rules 3, 4, 7: a team right matching no exported team of the tenant, and
//!   `_loc.teams` entries that are no exported team of the entity's tenant:
//!   Otoroshi matches them by name (and every team right matches team `*`);
//!   nobody gets a right through them here;
//! - rule 12: an admin whose `rights` is not a list (a super admin to Otoroshi)
//!   is left out, as is a right whose pattern holds anything but letters,
//!   digits, `-`, `_`, `.`, `@` and `*` (Otoroshi reads the others as
//!   regular-expression syntax).

mod apps;
mod json;
mod otoroshi;
mod routes;
mod users;

use json::{array, text, Ids};
use otoroshi::{otoroshi_id, Location};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use tenantgate_policy::{self as policy, Timestamp};

/// What to produce besides the export's content.
pub struct Options {
    pub environment: String,
    pub revision: Option<String>,
}

/// A converted export: the snapshot document and what was left out.
pub struct Imported {
    pub snapshot: Value,
    pub warnings: Vec<String>,
}

/// Why an export cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("the export is not a JSON object")]
    NotAnObject,
    /// A bug of the converter: what it produced breaks rules of the format.
    #[error("the converted snapshot is not valid (please report it):\n{}", .problems.join("\n"))]
    Invalid { problems: Vec<String> },
}

/// The permission that routes in no team require, and the role that holds it:
/// tenant admins (rule 6).
const TENANT_ADMIN: &str = "otoroshi:tenant-admin";

struct Converter<'e> {
    export: &'e Value,
    warnings: Vec<String>,
    /// Organizations by tenant id (Otoroshi's, as `otoroshi_id` gives it).
    orgs: Ids,
    /// Teams by team id (likewise).
    teams: Ids,
    /// Team id → its organization id (ours).
    team_org: BTreeMap<String, String>,
    products: Ids,
    /// Whether a route at `_loc.tenant: "*"` was imported.
    any_tenant_route: bool,
}

/// Converts an export; the snapshot is validated before it is returned.
pub fn convert(export: &Value, options: &Options) -> Result<Imported, ConvertError> {
    if !export.is_object() {
        return Err(ConvertError::NotAnObject);
    }
    let mut c = Converter::new(export);
    let organizations = c.organizations(&options.environment);
    let teams = c.teams();
    let (routes, products) = c.routes_and_products();
    let (apps, api_keys) = c.apps_and_keys();
    let users = c.users();
    c.warn_about_service_descriptors();
    let snapshot = json!({
        "revision": revision(export, options),
        "organizations": organizations,
        "teams": teams,
        "roles": roles(),
        "users": users,
        "apps": apps,
        "api_keys": api_keys,
        "products": products,
        "routes": routes,
    });
    if let Err(e) = policy::load_snapshot(&snapshot.to_string()) {
        return Err(ConvertError::Invalid {
            problems: e.problems(),
        });
    }
    Ok(Imported {
        snapshot,
        warnings: c.warnings,
    })
}

/// `--revision`, else the export's date (`dateRaw`), else `otoroshi-import`.
fn revision(export: &Value, options: &Options) -> String {
    let exported_at = export
        .get("dateRaw")
        .and_then(Value::as_i64)
        .and_then(|ms| ms.checked_mul(1_000_000))
        .map(Timestamp::from_unix_nanos);
    match (&options.revision, exported_at) {
        (Some(revision), _) => revision.clone(),
        (None, Some(at)) => format!("otoroshi-{at}"),
        (None, None) => "otoroshi-import".into(),
    }
}

/// The roles of admins' memberships (see `users`).
fn roles() -> Value {
    json!([
        {"id": "otoroshi:tenant-read", "name": "Otoroshi tenant access: read",
         "permissions": ["otoroshi:read"]},
        {"id": "otoroshi:tenant-write", "name": "Otoroshi tenant access: read and write",
         "permissions": ["otoroshi:read", "otoroshi:write"]},
        {"id": TENANT_ADMIN,
         "name": "Otoroshi tenant admin: read and write, a team right `*:rw` in the same right",
         "permissions": ["otoroshi:read", "otoroshi:write", TENANT_ADMIN]}
    ])
}

impl<'e> Converter<'e> {
    fn new(export: &'e Value) -> Converter<'e> {
        Converter {
            export,
            warnings: Vec::new(),
            orgs: Ids::default(),
            teams: Ids::default(),
            team_org: BTreeMap::new(),
            products: Ids::default(),
            any_tenant_route: false,
        }
    }

    fn warn_about_service_descriptors(&mut self) {
        let legacy = array(self.export, "serviceDescriptors").len();
        if legacy > 0 {
            self.warnings.push(format!(
                "{legacy} legacy service descriptors not imported (only routes are)"
            ));
        }
    }
}

impl Converter<'_> {
    fn organizations(&mut self, environment: &str) -> Vec<Value> {
        let export = self.export;
        let mut out = Vec::new();
        let tenants = if export.get("tenants").is_some() {
            array(export, "tenants")
        } else {
            array(export, "organizations")
        };
        for tenant in tenants {
            let Some(raw) = text(tenant, "id") else {
                self.warnings.push("a tenant without id skipped".into());
                continue;
            };
            let source = otoroshi_id(&raw);
            if source.is_empty() || source == "*" {
                self.warnings.push(format!(
                    "tenant `{raw}`: not a tenant id to Otoroshi (`*` is every tenant), skipped"
                ));
                continue;
            }
            if self.orgs.get(&source).is_some() {
                self.warnings.push(format!(
                    "tenant `{raw}`: the same tenant as an earlier one to Otoroshi, which compares ids case-insensitively; kept once"
                ));
                continue;
            }
            let id = self.orgs.assign(&source);
            let name = text(tenant, "name").unwrap_or(raw);
            out.push(json!({
                "id": id, "handle": id, "name": name, "type": "paid", "status": "active",
                "environments": [environment],
            }));
        }
        out
    }

    /// The organization of an entity at `loc` (none for `*` or a tenant that is
    /// not exported).
    fn org_at(&self, loc: &Location) -> Option<String> {
        self.orgs.get(&loc.tenant).map(str::to_string)
    }

    fn teams(&mut self) -> Vec<Value> {
        let export = self.export;
        // Team id → the tenants that export it (Otoroshi's ids).
        let mut tenants_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut listed = Vec::new();
        for team in array(export, "teams") {
            let (Some(raw), Some(tenant)) = (text(team, "id"), text(team, "tenant")) else {
                self.warnings
                    .push("a team without id or tenant skipped".into());
                continue;
            };
            let source = otoroshi_id(&raw);
            tenants_of
                .entry(source.clone())
                .or_default()
                .insert(otoroshi_id(&tenant));
            listed.push((team, raw, source, tenant));
        }
        let mut out = Vec::new();
        let mut reported = BTreeSet::new();
        for (team, raw, source, tenant) in listed {
            if source.is_empty() || source == "*" {
                self.warnings.push(format!(
                    "team `{raw}`: not a team id to Otoroshi (`*` is every team), skipped"
                ));
                continue;
            }
            if tenants_of.get(&source).is_some_and(|t| t.len() > 1) {
                if reported.insert(source.clone()) {
                    self.warnings.push(format!(
                        "team `{raw}`: one team id to Otoroshi (which compares ids case-insensitively) in several tenants, left out: nobody gets a right through it"
                    ));
                }
                continue;
            }
            if self.teams.get(&source).is_some() {
                self.warnings.push(format!(
                    "team `{raw}`: the same team as an earlier one to Otoroshi, which compares ids case-insensitively; kept once"
                ));
                continue;
            }
            let Some(org) = self.orgs.get(&otoroshi_id(&tenant)).map(str::to_string) else {
                self.warnings
                    .push(format!("team `{raw}`: unknown tenant `{tenant}`, skipped"));
                continue;
            };
            let id = self.teams.assign(&source);
            self.team_org.insert(id.clone(), org.clone());
            let name = text(team, "name").unwrap_or(raw);
            out.push(json!({"id": id, "organization": org, "name": name}));
        }
        out
    }

    /// Our ids of the teams among `loc`'s that are exported teams of `org`
    /// (of any organization without one), and those that are not; `None` for
    /// `*` (every team).
    fn loc_teams(&self, org: Option<&str>, loc: &Location) -> Option<(Vec<String>, Vec<String>)> {
        if loc.teams.iter().any(|t| t == "*") {
            return None;
        }
        let mut ours = Vec::new();
        let mut others = Vec::new();
        for team in &loc.teams {
            match self.teams.get(team) {
                Some(id)
                    if org.is_none_or(|org| {
                        self.team_org.get(id).map(String::as_str) == Some(org)
                    }) =>
                {
                    ours.push(id.to_string())
                }
                _ => others.push(team.clone()),
            }
        }
        Some((ours, others))
    }
}
