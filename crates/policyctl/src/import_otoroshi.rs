//! `policyctl import otoroshi EXPORT.json`: an Otoroshi export (the back
//! office's "Full export", or `GET /api/otoroshi.json`) converted into a
//! snapshot, validated before it is printed.
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

use super::{fail, Flags};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use tenantgate_policy::{self as policy, hash_key, Timestamp};

pub const HELP: &str =
    "usage: policyctl import otoroshi EXPORT.json [--environment ENV] [--revision R]

Converts an Otoroshi export into a snapshot, validates it and prints it on
stdout (warnings about what could not be carried over go to stderr). Tenant and
team ids are compared as Otoroshi compares them, case-insensitively, and kept
lower-cased; ids keep Otoroshi's otherwise, with characters outside
`A-Za-z0-9._:-` replaced by `-`. An entity without `_loc` is in tenant
`default`, team `default`, as in Otoroshi.

  tenants               organizations (paid, active, environments [ENV]); two
                        tenants whose ids differ only by case are one
  teams                 teams of their tenant; one id in two tenants: left out
  routes                one route per frontend domain (`host/path`: the host, or
                        any host for a wildcard one; the path up to its first
                        wildcard or parameter as path_prefix); tenant from
                        `_loc.tenant` (`*` stays `*`: callers name their tenant
                        with x-tenant-id, or have only one); teams from
                        `_loc.teams` (callers need a right on one of them; `*`:
                        on any team). A route in no team, or only in teams that
                        are not its tenant's, is for tenant admins only (role
                        `otoroshi:tenant-admin`), as Otoroshi shows it to them
                        only. Disabled routes are skipped
  products              one per route (`route_<id>`) and per service group
                        (`group_<id>`, its routes), named as Otoroshi names
                        authorized entities
  apiKeys               one app each (organization and team rights from `_loc`:
                        write, read for a readOnly key; products from
                        `authorizedEntities`/`authorizations`/`authorizedGroup`;
                        `otoroshi_client_ids: [clientId]`) and one api key:
                        sha256 of the clientSecret, active or (enabled: false)
                        revoked, expires_at from validUntil, read_only from
                        readOnly
  simpleAdmins, admins  users (`otoroshi_emails: [username]`) whose `rights`
                        ([{\"tenant\": \"org-1:rw\", \"teams\": [\"team-1:rw\",
                        \"team-2:r\"]}, …]) grant what Otoroshi grants: GET,
                        HEAD, OPTIONS where the admin may read the route, other
                        methods where it may write it. `r` read, `rw` (or no
                        suffix) read and write, `w` alone nothing; `*` and
                        wildcards expanded to the matching tenants and teams.
                        One active membership per tenant: a team's right is the
                        lesser of the tenant right and the team right; role
                        `otoroshi:tenant-admin` (a right `T:rw` with team `*:rw`:
                        every route of T, teams or none), `otoroshi:tenant-write`
                        or `otoroshi:tenant-read`. `rights` that is not a list
                        (a super admin to Otoroshi) is not imported

Where a right cannot be carried exactly, less is granted and a warning says so.
The api key hashes the clientSecret, never the clientId: the snapshot's keys
are bearer secrets (`x-api-key`, `?apikey=`), and a clientId is an identifier
that Otoroshi shows in headers, logs and tokens. Calls that Otoroshi itself
authenticated are matched by clientId through `otoroshi_client_ids`.

  --environment ENV   the organizations' environment (default: prod)
  --revision R        the snapshot revision (default: otoroshi-<the export's
                      dateRaw as RFC 3339>, else otoroshi-import)";

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

pub(super) fn run(args: &[String]) -> ExitCode {
    let result = (|| -> Result<Imported, String> {
        let (kind, rest) = args
            .split_first()
            .ok_or("import needs a KIND and a FILE (see `policyctl import --help`)")?;
        if kind != "otoroshi" {
            return Err(format!(
                "import: unknown kind `{kind}` (only `otoroshi`; see `policyctl import --help`)"
            ));
        }
        let (file, flags) = match rest.split_first() {
            Some((file, flags)) if !file.starts_with("--") => (file, flags),
            _ => return Err("import otoroshi needs an EXPORT.json file".into()),
        };
        let flags = Flags::parse(flags, &["--environment", "--revision"])?;
        let text = super::read_file(file)?;
        let export: Value =
            serde_json::from_str(&text).map_err(|e| format!("`{file}`: not JSON: {e}"))?;
        let options = Options {
            environment: flags.get("--environment").unwrap_or("prod").to_string(),
            revision: flags.get("--revision").map(str::to_string),
        };
        convert(&export, &options)
    })();
    match result {
        Ok(imported) => {
            for warning in &imported.warnings {
                eprintln!("policyctl: import: {warning}");
            }
            match serde_json::to_string_pretty(&imported.snapshot) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Err(message) => fail(message),
    }
}

/// The permission that routes in no team require, and the role that holds it:
/// tenant admins (rule 6).
const TENANT_ADMIN: &str = "otoroshi:tenant-admin";

/// Ids in our alphabet, unique in one collection, remembered by source id.
#[derive(Default)]
struct Ids {
    taken: BTreeSet<String>,
    by_source: BTreeMap<String, String>,
}

impl Ids {
    fn assign(&mut self, source: &str) -> String {
        if let Some(id) = self.by_source.get(source) {
            return id.clone();
        }
        let base = sanitize(source);
        let mut id = base.clone();
        let mut n = 2;
        while self.taken.contains(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.taken.insert(id.clone());
        self.by_source.insert(source.to_string(), id.clone());
        id
    }

    fn get(&self, source: &str) -> Option<&str> {
        self.by_source.get(source).map(String::as_str)
    }
}

fn sanitize(text: &str) -> String {
    let id: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if id.is_empty() {
        "x".into()
    } else {
        id
    }
}

/// A tenant or team id as Otoroshi keeps it (`TenantId`, `TeamId`): lower-cased,
/// and trimmed as Java trims (every character up to the space).
fn otoroshi_id(raw: &str) -> String {
    raw.to_lowercase()
        .trim_matches(|c: char| c <= ' ')
        .to_string()
}

/// A string or a number as text.
fn text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn array<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    array(value, key)
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .collect()
}

/// Otoroshi's access levels (`x:r`, `x:rw`, `x`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
    #[default]
    None,
    Read,
    Write,
}

impl Access {
    fn right(self) -> Option<&'static str> {
        match self {
            Access::None => None,
            Access::Read => Some("read"),
            Access::Write => Some("write"),
        }
    }
}

/// `id:perm` as `TenantAccess` and `TeamAccess` read it (rules 1 and 2): no
/// `:` is read-write; else the last non-empty part (Java's `split` drops
/// trailing empty ones) holding `r` reads, and `w` as well writes, unless it is
/// `not`. `None` where Otoroshi fails the whole right: nothing but `:`.
fn parse_access(raw: &str) -> Option<(String, Access)> {
    let raw = otoroshi_id(raw);
    if !raw.contains(':') {
        return Some((raw, Access::Write));
    }
    let parts: Vec<&str> = raw.split(':').collect();
    let last = parts.get(parts.iter().rposition(|p| !p.is_empty())?)?;
    let head = parts.first()?;
    let access = if *last == "not" || !last.contains('r') {
        Access::None
    } else if last.contains('w') {
        Access::Write
    } else {
        Access::Read
    };
    Some((otoroshi_id(head), access))
}

/// A pattern that Otoroshi's regular expression (`RegexPool`: `.` escaped, `*`
/// as `.*`) reads as `matches` does: letters, digits, `-`, `_`, `.`, `@`, `*`.
fn plain_pattern(pattern: &str) -> bool {
    pattern
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '*'))
}

/// Otoroshi's tenant and team patterns against an id, both as `otoroshi_id`
/// gives them (rules 3 and 4): `*`, an id `*`, or `*` wildcards in the pattern
/// (never across a line break, as `.*` does not).
fn matches(pattern: &str, id: &str) -> bool {
    if pattern == "*" || id == "*" {
        return true;
    }
    if !pattern.contains('*') {
        return pattern == id;
    }
    if id.contains(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}']) {
        return false;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    if !id.starts_with(first) || id.len() < first.len() + last.len() || !id.ends_with(last) {
        return false;
    }
    let mut rest = id.get(first.len()..id.len() - last.len()).unwrap_or("");
    for middle in parts.iter().skip(1).take(parts.len().saturating_sub(2)) {
        match rest.find(middle) {
            Some(at) => rest = rest.get(at + middle.len()..).unwrap_or(""),
            None => return false,
        }
    }
    true
}

/// A team pattern of only `*`: every team (Otoroshi's `*`, or a wildcard that
/// matches every id).
fn every_team(pattern: &str) -> bool {
    !pattern.is_empty() && pattern.chars().all(|c| c == '*')
}

/// An entity's `_loc` as `EntityLocation.readFromKey` reads it (rule 11), ids
/// as `otoroshi_id` gives them.
struct Location {
    tenant: String,
    teams: Vec<String>,
}

fn location(entity: &Value) -> Location {
    let default_teams = || vec!["default".to_string()];
    let Some(loc) = entity.get("_loc") else {
        return Location {
            tenant: "default".into(),
            teams: default_teams(),
        };
    };
    let tenant = match loc.get("tenant") {
        Some(Value::String(s)) => otoroshi_id(s),
        _ => "default".into(),
    };
    let teams = match loc.get("teams") {
        Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
            let mut teams: Vec<String> = Vec::new();
            for team in list.iter().filter_map(Value::as_str).map(otoroshi_id) {
                if !teams.contains(&team) {
                    teams.push(team);
                }
            }
            teams
        }
        // A list of team objects: the ids of those that read as teams.
        Some(Value::Array(list)) => {
            let teams: Vec<String> = list
                .iter()
                .filter(|t| t.get("tenant").is_some_and(Value::is_string))
                .filter_map(|t| t.get("id").and_then(Value::as_str))
                .map(otoroshi_id)
                .collect();
            if teams.is_empty() {
                default_teams()
            } else {
                teams
            }
        }
        _ => default_teams(),
    };
    Location { tenant, teams }
}

/// `validUntil`: Unix milliseconds or an ISO 8601 date-time.
fn expiry(value: &Value) -> Option<Option<String>> {
    match value.get("validUntil") {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(ms)) => {
            let nanos = ms.as_i64()?.checked_mul(1_000_000)?;
            Some(Some(Timestamp::from_unix_nanos(nanos).to_string()))
        }
        Some(Value::String(s)) => Timestamp::parse_rfc3339(s).map(|t| Some(t.to_string())),
        Some(_) => None,
    }
}

/// A route's frontend domain as host filter and path prefix.
fn split_domain(domain: &str, warnings: &mut Vec<String>, route: &str) -> (Vec<String>, String) {
    let (host, path) = match domain.find('/') {
        Some(at) => (
            domain.get(..at).unwrap_or(""),
            domain.get(at..).unwrap_or("/"),
        ),
        None => (domain, "/"),
    };
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let hosts = if host.is_empty() || host.contains('*') {
        if host.contains('*') {
            warnings.push(format!(
                "route `{route}`: domain `{domain}`: wildcard host, so the route matches any host"
            ));
        }
        Vec::new()
    } else {
        vec![host.to_ascii_lowercase()]
    };
    let mut prefix = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment.contains(['*', ':', '{', '$', '?', '#']) {
            warnings.push(format!(
                "route `{route}`: domain `{domain}`: path cut at `{segment}` (prefix match only)"
            ));
            break;
        }
        prefix.push('/');
        prefix.push_str(segment);
    }
    if prefix.is_empty() {
        prefix.push('/');
    }
    (hosts, prefix)
}

/// One of an admin's rights, as `UserRight` reads it: a tenant pattern and
/// access, and team patterns and accesses.
struct AdminRight {
    tenant: String,
    access: Access,
    teams: Vec<(String, Access)>,
}

/// Team rights in one tenant: on every team (`"*"`), and per team (ours).
#[derive(Default)]
struct TeamRights {
    every: Access,
    teams: BTreeMap<String, Access>,
}

impl TeamRights {
    /// Grants `access` through team pattern `pattern` over `teams` (Otoroshi's
    /// id and ours); false when the pattern reaches none of them.
    fn grant(&mut self, pattern: &str, access: Access, teams: &[(&str, &str)]) -> bool {
        if every_team(pattern) {
            self.every = self.every.max(access);
            return true;
        }
        let mut reached = false;
        for (source, id) in teams {
            if matches(pattern, source) {
                let right = self.teams.entry((*id).to_string()).or_insert(Access::None);
                *right = (*right).max(access);
                reached = true;
            }
        }
        reached
    }

    /// Whether these rights reach further than `other` somewhere.
    fn exceeds(&self, other: &TeamRights) -> bool {
        let on = |rights: &TeamRights, team: &str| {
            rights
                .every
                .max(rights.teams.get(team).copied().unwrap_or(Access::None))
        };
        self.every > other.every
            || self
                .teams
                .keys()
                .any(|team| on(self, team) > on(other, team))
    }

    /// As a membership's `teams`: rights on single teams that the `"*"` right
    /// does not already hold.
    fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(right) = self.every.right() {
            out.insert("*".into(), right.into());
        }
        for (team, access) in &self.teams {
            if *access > self.every {
                if let Some(right) = access.right() {
                    out.insert(team.clone(), right.into());
                }
            }
        }
        out
    }
}

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
pub fn convert(export: &Value, options: &Options) -> Result<Imported, String> {
    if !export.is_object() {
        return Err("the export is not a JSON object".into());
    }
    let mut c = Converter {
        export,
        warnings: Vec::new(),
        orgs: Ids::default(),
        teams: Ids::default(),
        team_org: BTreeMap::new(),
        products: Ids::default(),
        any_tenant_route: false,
    };
    let organizations = c.organizations(&options.environment);
    let teams = c.teams();
    let (routes, products) = c.routes_and_products();
    let (apps, api_keys) = c.apps_and_keys();
    let users = c.users();
    let legacy = array(export, "serviceDescriptors").len();
    if legacy > 0 {
        c.warnings.push(format!(
            "{legacy} legacy service descriptors not imported (only routes are)"
        ));
    }
    let exported_at = export
        .get("dateRaw")
        .and_then(Value::as_i64)
        .and_then(|ms| ms.checked_mul(1_000_000))
        .map(Timestamp::from_unix_nanos);
    let revision = match (&options.revision, exported_at) {
        (Some(revision), _) => revision.clone(),
        (None, Some(at)) => format!("otoroshi-{at}"),
        (None, None) => "otoroshi-import".into(),
    };
    let snapshot = json!({
        "revision": revision,
        "organizations": organizations,
        "teams": teams,
        "roles": [
            {"id": "otoroshi:tenant-read", "name": "Otoroshi tenant access: read",
             "permissions": ["otoroshi:read"]},
            {"id": "otoroshi:tenant-write", "name": "Otoroshi tenant access: read and write",
             "permissions": ["otoroshi:read", "otoroshi:write"]},
            {"id": TENANT_ADMIN,
             "name": "Otoroshi tenant admin: read and write, a team right `*:rw` in the same right",
             "permissions": ["otoroshi:read", "otoroshi:write", TENANT_ADMIN]}
        ],
        "users": users,
        "apps": apps,
        "api_keys": api_keys,
        "products": products,
        "routes": routes,
    });
    let text = snapshot.to_string();
    if let Err(e) = policy::load_snapshot(&text) {
        return Err(format!(
            "the converted snapshot is not valid (please report it):\n{}",
            e.problems().join("\n")
        ));
    }
    Ok(Imported {
        snapshot,
        warnings: c.warnings,
    })
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

    fn routes_and_products(&mut self) -> (Vec<Value>, Vec<Value>) {
        let export = self.export;
        let mut route_ids = Ids::default();
        let mut routes = Vec::new();
        let mut products = Vec::new();
        // The organization of products of routes at `*`: it only bounds their
        // environments, which are the same for every imported organization.
        let any_org = self
            .orgs
            .get("default")
            .or_else(|| self.orgs.by_source.values().next().map(String::as_str))
            .map(str::to_string);
        // Group → (organization, our route ids).
        let mut groups: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
        for group in array(export, "serviceGroups") {
            if let Some(id) = text(group, "id") {
                groups.insert(id, (self.org_at(&location(group)), Vec::new()));
            }
        }
        for route in array(export, "routes") {
            let Some(source) = text(route, "id") else {
                self.warnings.push("a route without id skipped".into());
                continue;
            };
            if route.get("enabled") == Some(&Value::Bool(false)) {
                self.warnings
                    .push(format!("route `{source}`: disabled, skipped"));
                continue;
            }
            let loc = location(route);
            let (tenant, org) = if loc.tenant == "*" {
                match &any_org {
                    Some(org) => ("*".to_string(), org.clone()),
                    None => {
                        self.warnings.push(format!(
                            "route `{source}`: at `_loc.tenant: *` in an export without tenants, skipped"
                        ));
                        continue;
                    }
                }
            } else {
                match self.org_at(&loc) {
                    Some(org) => (org.clone(), org),
                    None => {
                        self.warnings.push(format!(
                            "route `{source}`: its `_loc.tenant` is not an exported tenant, skipped"
                        ));
                        continue;
                    }
                }
            };
            let frontend = route.get("frontend").unwrap_or(&Value::Null);
            let domains = strings(frontend, "domains");
            if domains.is_empty() {
                self.warnings
                    .push(format!("route `{source}`: no frontend domain, skipped"));
                continue;
            }
            if frontend.get("exact") == Some(&Value::Bool(true)) {
                self.warnings.push(format!(
                    "route `{source}`: exact path matching becomes prefix matching"
                ));
            }
            let methods: Vec<String> = strings(frontend, "methods")
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect();
            // `Some(teams)`, or `None`: for tenant admins only (rule 9).
            let teams = match self.loc_teams((tenant != "*").then_some(tenant.as_str()), &loc) {
                None => Some(vec!["*".to_string()]),
                Some((ours, others)) => {
                    if !others.is_empty() {
                        self.warnings.push(format!(
                            "route `{source}`: `_loc.teams` `{}` are no exported team of its tenant: nobody gets a right on it through them{}",
                            others.join(", "),
                            if ours.is_empty() { ", so it is for tenant admins only" } else { "" }
                        ));
                    }
                    (!ours.is_empty()).then_some(ours)
                }
            };
            if tenant == "*" {
                self.any_tenant_route = true;
            }
            let mut ours = Vec::new();
            for (i, domain) in domains.iter().enumerate() {
                let id = if i == 0 {
                    route_ids.assign(&source)
                } else {
                    route_ids.assign(&format!("{source}-{}", i + 1))
                };
                let (hosts, prefix) = split_domain(domain, &mut self.warnings, &source);
                let mut value = json!({"id": id, "path_prefix": prefix, "tenant": tenant});
                if let Some(object) = value.as_object_mut() {
                    if !hosts.is_empty() {
                        object.insert("hosts".into(), json!(hosts));
                    }
                    if !methods.is_empty() {
                        object.insert("methods".into(), json!(methods));
                    }
                    match &teams {
                        Some(teams) => {
                            object.insert("teams".into(), json!(teams));
                        }
                        None => {
                            object.insert(
                                "permissions".into(),
                                json!({"read": TENANT_ADMIN, "write": TENANT_ADMIN}),
                            );
                        }
                    }
                }
                routes.push(value);
                ours.push(id);
            }
            let product = self.products.assign(&format!("route_{source}"));
            products.push(json!({"id": product, "organization": org, "routes": ours}));
            for group in strings(route, "groups") {
                let entry = groups.entry(group).or_insert((None, Vec::new()));
                entry.0.get_or_insert_with(|| org.clone());
                entry.1.extend(ours.iter().cloned());
            }
        }
        for (group, (org, ours)) in groups {
            let Some(org) = org else {
                self.warnings.push(format!(
                    "service group `{group}`: no tenant and no route, not a product"
                ));
                continue;
            };
            let product = self.products.assign(&format!("group_{group}"));
            products.push(json!({"id": product, "organization": org, "routes": ours}));
        }
        (routes, products)
    }

    fn apps_and_keys(&mut self) -> (Vec<Value>, Vec<Value>) {
        let mut app_ids = Ids::default();
        let mut apps = Vec::new();
        let mut keys = Vec::new();
        for apikey in array(self.export, "apiKeys") {
            let Some(client_id) = text(apikey, "clientId") else {
                self.warnings
                    .push("an apikey without clientId skipped".into());
                continue;
            };
            let loc = location(apikey);
            let Some(org) = self.org_at(&loc) else {
                self.warnings.push(format!(
                    "apikey `{client_id}`: its `_loc.tenant` is not an exported tenant, skipped{}",
                    if loc.tenant == "*" {
                        " (an app belongs to one organization)"
                    } else {
                        ""
                    }
                ));
                continue;
            };
            let id = app_ids.assign(&client_id);
            let read_only = apikey.get("readOnly") == Some(&Value::Bool(true));
            let right = if read_only { "read" } else { "write" };
            let mut teams = Map::new();
            match self.loc_teams(Some(&org), &loc) {
                None => {
                    teams.insert("*".into(), right.into());
                }
                Some((list, others)) => {
                    if !others.is_empty() {
                        self.warnings.push(format!(
                            "apikey `{client_id}`: `_loc.teams` `{}` are no exported team of its tenant, no right there",
                            others.join(", ")
                        ));
                    }
                    for team in list {
                        teams.insert(team, right.into());
                    }
                }
            }
            let mut entities = strings(apikey, "authorizedEntities");
            for authorization in array(apikey, "authorizations") {
                if let (Some(kind), Some(target)) =
                    (text(authorization, "kind"), text(authorization, "id"))
                {
                    entities.push(format!("{kind}_{target}"));
                }
            }
            if let Some(group) = text(apikey, "authorizedGroup") {
                entities.push(format!("group_{group}"));
            }
            let mut products: Vec<String> = Vec::new();
            for entity in &entities {
                match self.products.get(entity) {
                    Some(product) if !products.iter().any(|p| p == product) => {
                        products.push(product.to_string())
                    }
                    Some(_) => {}
                    None => self.warnings.push(format!(
                        "apikey `{client_id}`: authorized entity `{entity}` is no imported route or group"
                    )),
                }
            }
            apps.push(json!({
                "id": id, "organization": org, "status": "approved", "products": products,
                "teams": teams, "otoroshi_client_ids": [client_id],
            }));
            let Some(secret) = text(apikey, "clientSecret") else {
                self.warnings.push(format!(
                    "apikey `{client_id}`: no clientSecret, so only Otoroshi-validated calls (by clientId) are known"
                ));
                continue;
            };
            let Some(expires_at) = expiry(apikey) else {
                self.warnings.push(format!(
                    "apikey `{client_id}`: unreadable validUntil, key left out"
                ));
                continue;
            };
            let enabled = apikey.get("enabled") != Some(&Value::Bool(false));
            let mut key = json!({
                "id": id, "app": id, "sha256": hash_key(&secret),
                "status": if enabled { "active" } else { "revoked" },
                "read_only": read_only,
            });
            if let (Some(at), Some(object)) = (expires_at, key.as_object_mut()) {
                object.insert("expires_at".into(), at.into());
            }
            keys.push(key);
        }
        (apps, keys)
    }

    /// An admin's rights as Otoroshi reads them (rules 1, 2 and 12), less the
    /// patterns it would read as regular expressions; `None` when `rights` is
    /// not a list (a super admin to Otoroshi, not imported).
    fn admin_rights(&mut self, username: &str, admin: &Value) -> Option<Vec<AdminRight>> {
        let Some(list) = admin.get("rights").and_then(Value::as_array) else {
            self.warnings.push(format!(
                "admin `{username}`: `rights` is not a list, which Otoroshi reads as a super admin: not imported (grant it as `[{{\"tenant\": \"*:rw\", \"teams\": [\"*:rw\"]}}]` if meant)"
            ));
            return None;
        };
        let mut out = Vec::new();
        for (n, right) in list.iter().enumerate() {
            let tenant = right.get("tenant").and_then(Value::as_str);
            let teams: Option<Vec<&str>> = right
                .get("teams")
                .and_then(Value::as_array)
                .and_then(|teams| teams.iter().map(Value::as_str).collect());
            let parsed = tenant.zip(teams).and_then(|(tenant, teams)| {
                let tenant = parse_access(tenant)?;
                let teams: Option<Vec<(String, Access)>> =
                    teams.iter().map(|t| parse_access(t)).collect();
                Some((tenant, teams?))
            });
            let Some(((pattern, access), teams)) = parsed else {
                self.warnings.push(format!(
                    "admin `{username}`: right {} ignored, as Otoroshi ignores it (a `tenant` string and a `teams` list of strings, none only `:`)",
                    n + 1
                ));
                continue;
            };
            if !plain_pattern(&pattern) {
                self.warnings.push(format!(
                    "admin `{username}`: tenant right `{pattern}` left out: Otoroshi reads it as a regular expression"
                ));
                continue;
            }
            let mut kept: Vec<(String, Access)> = Vec::new();
            for (team, access) in teams {
                if !plain_pattern(&team) {
                    self.warnings.push(format!(
                        "admin `{username}`: team right `{team}` left out: Otoroshi reads it as a regular expression"
                    ));
                } else if !kept.contains(&(team.clone(), access)) {
                    kept.push((team, access));
                }
            }
            out.push(AdminRight {
                tenant: pattern,
                access,
                teams: kept,
            });
        }
        Some(out)
    }

    fn users(&mut self) -> Vec<Value> {
        let export = self.export;
        let mut user_ids = Ids::default();
        let mut emails = BTreeSet::new();
        let mut out = Vec::new();
        let admins = ["simpleAdmins", "admins", "webauthnAdmins"]
            .iter()
            .flat_map(|kind| array(export, kind));
        let orgs: Vec<(String, String)> = self
            .orgs
            .by_source
            .iter()
            .map(|(s, id)| (s.clone(), id.clone()))
            .collect();
        for admin in admins {
            let Some(username) = text(admin, "username") else {
                continue;
            };
            let Some(rights) = self.admin_rights(&username, admin) else {
                continue;
            };
            for right in &rights {
                if !orgs
                    .iter()
                    .any(|(source, _)| matches(&right.tenant, source))
                {
                    self.warnings.push(format!(
                        "admin `{username}`: tenant right `{}` matches no exported tenant",
                        right.tenant
                    ));
                }
            }
            let mut memberships = Vec::new();
            // Team patterns (with a right) and whether they reached a team.
            let mut reached: BTreeMap<&str, bool> = BTreeMap::new();
            let mut read_only_in = Vec::new();
            for (source, org) in &orgs {
                let here: Vec<&AdminRight> = rights
                    .iter()
                    .filter(|r| matches(&r.tenant, source))
                    .collect();
                let tenant_access = here.iter().map(|r| r.access).max().unwrap_or(Access::None);
                if tenant_access == Access::None {
                    continue;
                }
                let tenant_admin = here.iter().any(|r| {
                    r.access == Access::Write
                        && r.teams.iter().any(|(t, a)| t == "*" && *a == Access::Write)
                });
                let teams: Vec<(&str, &str)> = self
                    .teams
                    .by_source
                    .iter()
                    .filter(|(_, id)| self.team_org.get(*id) == Some(org))
                    .map(|(s, id)| (s.as_str(), id.as_str()))
                    .collect();
                // Each right: the lesser of its tenant right and each team right.
                let mut granted = TeamRights::default();
                for right in &here {
                    for (pattern, access) in &right.teams {
                        let access = (*access).min(right.access);
                        if access == Access::None {
                            continue;
                        }
                        let hit = granted.grant(pattern, access, &teams);
                        *reached.entry(pattern.as_str()).or_default() |= hit;
                    }
                }
                if tenant_admin {
                    granted.every = Access::Write;
                }
                // Otoroshi's (rule 13): any right's team rights, with this tenant.
                let mut pooled = TeamRights::default();
                for (pattern, access) in rights.iter().flat_map(|r| &r.teams) {
                    pooled.grant(pattern, (*access).min(tenant_access), &teams);
                }
                if pooled.exceeds(&granted) {
                    self.warnings.push(format!(
                        "admin `{username}`: in tenant `{org}`, Otoroshi also counts the team rights of its other rights; here each counts with its own tenant right, so less is granted"
                    ));
                }
                if tenant_access == Access::Read {
                    read_only_in.push(org.clone());
                }
                let role = if tenant_admin {
                    TENANT_ADMIN
                } else if tenant_access == Access::Write {
                    "otoroshi:tenant-write"
                } else {
                    "otoroshi:tenant-read"
                };
                memberships.push(json!({
                    "scope": org, "status": "active", "roles": [role], "teams": granted.to_json(),
                }));
            }
            let unreached: Vec<&str> = reached
                .iter()
                .filter(|(_, hit)| !**hit)
                .map(|(pattern, _)| *pattern)
                .collect();
            if !unreached.is_empty() {
                self.warnings.push(format!(
                    "admin `{username}`: team rights `{}` match no exported team of their tenants: nobody gets a right through them",
                    unreached.join(", ")
                ));
            }
            let writes_somewhere = rights.iter().any(|r| r.access == Access::Write);
            if self.any_tenant_route && writes_somewhere && !read_only_in.is_empty() {
                self.warnings.push(format!(
                    "admin `{username}`: Otoroshi lets it write routes at `_loc.tenant: *` also when working in `{}`, where it may only read; here it may not",
                    read_only_in.join("`, `")
                ));
            }
            if memberships.is_empty() {
                self.warnings.push(format!(
                    "admin `{username}`: no right on an exported tenant, skipped"
                ));
                continue;
            }
            let id = user_ids.assign(&username);
            let mut user = json!({"id": id, "memberships": memberships});
            if emails.insert(username.to_ascii_lowercase()) {
                if let Some(object) = user.as_object_mut() {
                    object.insert("otoroshi_emails".into(), json!([username]));
                }
            }
            out.push(user);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn access_and_patterns_read_as_otoroshi_reads_them() {
        let write = Some(("org-1".to_string(), Access::Write));
        assert_eq!(parse_access("Org-1:RW"), write);
        assert_eq!(parse_access(" org-1:wr "), write);
        assert_eq!(parse_access("org-1"), write);
        assert_eq!(
            parse_access("org-1:r"),
            Some(("org-1".into(), Access::Read))
        );
        assert_eq!(
            parse_access("org-1:w"),
            Some(("org-1".into(), Access::None))
        );
        assert_eq!(
            parse_access("org-1:not"),
            Some(("org-1".into(), Access::None))
        );
        // Java's split drops trailing empty parts: the id is then the suffix.
        assert_eq!(parse_access("rw:"), Some(("rw".into(), Access::Write)));
        assert_eq!(parse_access("a:b:r"), Some(("a".into(), Access::Read)));
        assert_eq!(parse_access("::"), None);
        assert!(matches("team-*", "team-1"));
        assert!(matches("*-prod-*", "eu-prod-1"));
        assert!(!matches("team-*", "org-1"));
        assert!(matches("a*b*a", "aba"));
        assert!(!matches("a*x*c", "abc"));
        assert!(matches("team-1", "*"));
        assert!(!matches("team-*", "team-\n1"));
        assert!(matches("*", "team-\n1"));
        assert!(plain_pattern("team-*.eu_1@x"));
        assert!(!plain_pattern("team+"));
        assert!(!plain_pattern("t[1]"));
        assert_eq!(otoroshi_id(" Acme\t"), "acme");
        assert_eq!(sanitize("alice@acme.example"), "alice-acme.example");
    }

    #[test]
    fn locations_read_as_otoroshi_reads_them() {
        let read = |v: Value| {
            let l = location(&v);
            (l.tenant, l.teams)
        };
        let default = ("default".to_string(), vec!["default".to_string()]);
        assert_eq!(read(json!({})), default);
        assert_eq!(read(json!({"_loc": {}})), default);
        assert_eq!(read(json!({"_loc": {"teams": null}})), default);
        assert_eq!(
            read(json!({"_loc": {"tenant": "Acme", "teams": []}})),
            ("acme".into(), vec![])
        );
        assert_eq!(
            read(json!({"_loc": {"tenant": "t", "teams": ["A", "a", "*"]}})),
            ("t".into(), vec!["a".into(), "*".into()])
        );
        assert_eq!(
            read(json!({"_loc": {"tenant": "t", "teams": [{"id": "B", "tenant": "t"}, 3]}})),
            ("t".into(), vec!["b".into()])
        );
    }

    #[test]
    fn domains_become_hosts_and_prefixes() {
        let mut warnings = Vec::new();
        assert_eq!(
            split_domain("api.oto.tools:8080/orders/:id/items", &mut warnings, "r"),
            (vec!["api.oto.tools".to_string()], "/orders".to_string())
        );
        assert_eq!(
            split_domain("*.oto.tools", &mut warnings, "r"),
            (Vec::new(), "/".to_string())
        );
        assert_eq!(warnings.len(), 2);
    }
}
