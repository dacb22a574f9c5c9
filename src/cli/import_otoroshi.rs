//! `policyctl import otoroshi EXPORT.json`: an Otoroshi export (the back
//! office's "Full export", or `GET /api/otoroshi.json`) converted into a
//! snapshot, validated before it is printed.

use super::{fail, Flags};
use crate::policy::{self, hash_key, Timestamp};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

pub const HELP: &str =
    "usage: policyctl import otoroshi EXPORT.json [--environment ENV] [--revision R]

Converts an Otoroshi export into a snapshot, validates it and prints it on
stdout (warnings about what could not be carried over go to stderr). Ids keep
Otoroshi's, with characters outside `A-Za-z0-9._:-` replaced by `-`.

  tenants               organizations (paid, active, environments [ENV])
  teams                 teams of their tenant
  routes                one route per frontend domain (`host/path`: the host, or
                        any host for a wildcard one; the path up to its first
                        wildcard or parameter as path_prefix), tenant and teams
                        from `_loc` (callers need a right on one of those teams);
                        disabled routes are skipped
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
                        ({\"tenant\": \"org-1:rw\", \"teams\": [\"team-1:rw\",
                        \"team-2:r\", \"*\"]}) become active memberships: `r` read,
                        `rw` (or no suffix) write, `*` and wildcards expanded to
                        the matching tenants and teams; role
                        `otoroshi:tenant-write` or `otoroshi:tenant-read`

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Access {
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

/// `id:perm` as Otoroshi reads it: lower-cased, no suffix meaning read-write,
/// `w` counting only with `r`.
fn parse_access(raw: &str) -> (String, Access) {
    let raw = raw.trim().to_ascii_lowercase();
    let mut parts = raw.split(':');
    let id = parts.next().unwrap_or("").to_string();
    let access = match parts.next_back() {
        None => Access::Write,
        Some(perm) if perm.contains('r') && perm.contains('w') => Access::Write,
        Some(perm) if perm.contains('r') => Access::Read,
        Some(_) => Access::None,
    };
    (id, access)
}

/// Otoroshi's tenant and team patterns: `*`, or `*` wildcards in an id,
/// compared case-insensitively.
fn matches(pattern: &str, id: &str) -> bool {
    let id = id.to_ascii_lowercase();
    if !pattern.contains('*') {
        return pattern == id;
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

struct Converter<'e> {
    export: &'e Value,
    warnings: Vec<String>,
    orgs: Ids,
    teams: Ids,
    /// Team id → its organization id (ours).
    team_org: BTreeMap<String, String>,
    products: Ids,
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
             "permissions": ["otoroshi:read", "otoroshi:write"]}
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
            let Some(source) = text(tenant, "id") else {
                self.warnings.push("a tenant without id skipped".into());
                continue;
            };
            let id = self.orgs.assign(&source);
            let name = text(tenant, "name").unwrap_or_else(|| source.clone());
            out.push(json!({
                "id": id, "handle": id, "name": name, "type": "paid", "status": "active",
                "environments": [environment],
            }));
        }
        out
    }

    fn org_of(&self, value: &Value) -> Option<String> {
        let tenant = value.get("_loc").and_then(|l| text(l, "tenant"))?;
        self.orgs.get(&tenant).map(str::to_string)
    }

    fn teams(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        for team in array(self.export, "teams") {
            let (Some(source), Some(tenant)) = (text(team, "id"), text(team, "tenant")) else {
                self.warnings
                    .push("a team without id or tenant skipped".into());
                continue;
            };
            let Some(org) = self.orgs.get(&tenant).map(str::to_string) else {
                self.warnings.push(format!(
                    "team `{source}`: unknown tenant `{tenant}`, skipped"
                ));
                continue;
            };
            let id = self.teams.assign(&source);
            self.team_org.insert(id.clone(), org.clone());
            let name = text(team, "name").unwrap_or_else(|| source.clone());
            out.push(json!({"id": id, "organization": org, "name": name}));
        }
        out
    }

    /// Team ids of `org` among `_loc.teams`-like ids; `None` for `*`.
    fn loc_teams(&self, org: &str, listed: &[String]) -> Option<Vec<String>> {
        if listed.iter().any(|t| t == "*") {
            return None;
        }
        Some(
            listed
                .iter()
                .filter_map(|t| self.teams.get(t))
                .filter(|t| self.team_org.get(*t).map(String::as_str) == Some(org))
                .map(str::to_string)
                .collect(),
        )
    }

    fn routes_and_products(&mut self) -> (Vec<Value>, Vec<Value>) {
        let export = self.export;
        let mut route_ids = Ids::default();
        let mut routes = Vec::new();
        let mut products = Vec::new();
        // Group → (organization, our route ids).
        let mut groups: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
        for group in array(export, "serviceGroups") {
            if let Some(id) = text(group, "id") {
                groups.insert(id, (self.org_of(group), Vec::new()));
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
            let Some(org) = self.org_of(route) else {
                self.warnings.push(format!(
                    "route `{source}`: its `_loc.tenant` is not an exported tenant, skipped"
                ));
                continue;
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
            let listed = route
                .get("_loc")
                .map(|l| strings(l, "teams"))
                .unwrap_or_default();
            let teams = match self.loc_teams(&org, &listed) {
                None => Some(vec!["*".to_string()]),
                Some(teams) if teams.is_empty() => None,
                Some(teams) => Some(teams),
            };
            let mut ours = Vec::new();
            for (i, domain) in domains.iter().enumerate() {
                let id = if i == 0 {
                    route_ids.assign(&source)
                } else {
                    route_ids.assign(&format!("{source}-{}", i + 1))
                };
                let (hosts, prefix) = split_domain(domain, &mut self.warnings, &source);
                let mut value = json!({"id": id, "path_prefix": prefix, "tenant": org});
                if let Some(object) = value.as_object_mut() {
                    if !hosts.is_empty() {
                        object.insert("hosts".into(), json!(hosts));
                    }
                    if !methods.is_empty() {
                        object.insert("methods".into(), json!(methods));
                    }
                    if let Some(teams) = &teams {
                        object.insert("teams".into(), json!(teams));
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
            let Some(org) = self.org_of(apikey) else {
                self.warnings.push(format!(
                    "apikey `{client_id}`: its `_loc.tenant` is not an exported tenant, skipped"
                ));
                continue;
            };
            let id = app_ids.assign(&client_id);
            let read_only = apikey.get("readOnly") == Some(&Value::Bool(true));
            let right = if read_only { "read" } else { "write" };
            let listed = apikey
                .get("_loc")
                .map(|l| strings(l, "teams"))
                .unwrap_or_default();
            let mut teams = Map::new();
            match self.loc_teams(&org, &listed) {
                None => {
                    teams.insert("*".into(), right.into());
                }
                Some(list) => {
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

    fn users(&mut self) -> Vec<Value> {
        let export = self.export;
        let mut user_ids = Ids::default();
        let mut emails = BTreeSet::new();
        let mut out = Vec::new();
        let admins = ["simpleAdmins", "admins", "webauthnAdmins"]
            .iter()
            .flat_map(|kind| array(export, kind));
        for admin in admins {
            let Some(username) = text(admin, "username") else {
                continue;
            };
            // Organization → (tenant access, team → access).
            let mut access: BTreeMap<String, (Access, BTreeMap<String, Access>)> = BTreeMap::new();
            let rights: Vec<&Value> = match admin.get("rights") {
                Some(Value::Array(list)) => list.iter().collect(),
                Some(object @ Value::Object(_)) => vec![object],
                _ => Vec::new(),
            };
            for right in rights {
                let Some(tenant) = text(right, "tenant") else {
                    continue;
                };
                let (pattern, tenant_access) = parse_access(&tenant);
                if tenant_access == Access::None {
                    continue;
                }
                let orgs: Vec<String> = self
                    .orgs
                    .by_source
                    .iter()
                    .filter(|(source, _)| pattern == "*" || matches(&pattern, source))
                    .map(|(_, id)| id.clone())
                    .collect();
                if orgs.is_empty() {
                    self.warnings.push(format!(
                        "admin `{username}`: tenant right `{tenant}` matches no exported tenant"
                    ));
                }
                let team_rights: Vec<(String, Access)> = strings(right, "teams")
                    .iter()
                    .map(|t| parse_access(t))
                    .collect();
                for org in orgs {
                    let slot = access
                        .entry(org.clone())
                        .or_insert((Access::None, BTreeMap::new()));
                    slot.0 = slot.0.max(tenant_access);
                    for (team_pattern, team_access) in &team_rights {
                        if *team_access == Access::None {
                            continue;
                        }
                        let targets: Vec<String> = if team_pattern == "*" {
                            vec!["*".into()]
                        } else {
                            self.teams
                                .by_source
                                .iter()
                                .filter(|(source, id)| {
                                    matches(team_pattern, source)
                                        && self.team_org.get(*id) == Some(&org)
                                })
                                .map(|(_, id)| id.clone())
                                .collect()
                        };
                        for target in targets {
                            let team = slot.1.entry(target).or_insert(Access::None);
                            *team = (*team).max(*team_access);
                        }
                    }
                }
            }
            if access.is_empty() {
                self.warnings.push(format!(
                    "admin `{username}`: no right on an exported tenant, skipped"
                ));
                continue;
            }
            let memberships: Vec<Value> = access
                .into_iter()
                .map(|(org, (tenant_access, teams))| {
                    let role = if tenant_access == Access::Write {
                        "otoroshi:tenant-write"
                    } else {
                        "otoroshi:tenant-read"
                    };
                    let teams: Map<String, Value> = teams
                        .into_iter()
                        .filter_map(|(team, a)| a.right().map(|r| (team, Value::from(r))))
                        .collect();
                    json!({"scope": org, "status": "active", "roles": [role], "teams": teams})
                })
                .collect();
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
        assert_eq!(parse_access("Org-1:RW"), ("org-1".into(), Access::Write));
        assert_eq!(parse_access("org-1:r"), ("org-1".into(), Access::Read));
        assert_eq!(parse_access("org-1"), ("org-1".into(), Access::Write));
        assert_eq!(parse_access("org-1:w"), ("org-1".into(), Access::None));
        assert!(matches("team-*", "Team-1"));
        assert!(matches("*-prod-*", "eu-prod-1"));
        assert!(!matches("team-*", "org-1"));
        assert!(matches("a*b*a", "aba"));
        assert!(!matches("a*x*c", "abc"));
        assert_eq!(sanitize("alice@acme.example"), "alice-acme.example");
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
