//! The snapshot document as written by policy authors (spec §1).
//!
//! Every struct rejects unknown fields: a typo must never silently weaken a policy.
//! Only `metadata` is free-form. With the `schema` feature (policyctl only),
//! the types also derive the document's JSON Schema (`schema.rs`); a field's
//! `#[schemars(with = …)]` names the load-time format of its values.

use serde::Deserialize;

#[cfg(feature = "schema")]
use crate::schema as s;

/// Team rights: a team id, or `"*"` for every team of the tenant, to a right.
/// Written as a JSON object; held as pairs (a map type would add code to the
/// wasm module for no gain: rights are only iterated).
pub type TeamRights = Vec<(String, Right)>;

/// Reads a JSON object of team rights into pairs.
fn team_rights<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<TeamRights, D::Error> {
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = TeamRights;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map from team id or `*` to `read` or `write`")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<TeamRights, A::Error> {
            let mut pairs = Vec::new();
            while let Some(pair) = map.next_entry::<String, Right>()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    deserializer.deserialize_map(Pairs)
}

/// A right on a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// Safe methods (GET, HEAD, OPTIONS).
    Read,
    /// Every method (write includes read).
    Write,
}

/// The top container (a company): Boomi's area.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Area {
    /// Unique id.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Extension x3: token issuers (`iss`) trusted in every organization of the area.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Issuer>"))]
    pub token_issuers: Vec<String>,
}

/// What kind of tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum OrgType {
    /// A paying tenant.
    Paid,
    /// A trial tenant (usually with `expires_at`).
    Evaluation,
}

/// Whether a tenant may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum OrgStatus {
    /// In good standing.
    Active,
    /// Denied at step 10 (`organization_suspended`).
    Suspended,
}

/// A tenant.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Organization {
    /// Unique id (the tenant id in annotations).
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// Unique second name a selector may use (`x-tenant-handle`).
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub handle: String,
    /// Display name.
    pub name: String,
    /// The area it belongs to.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<s::Id>"))]
    pub area: Option<String>,
    /// Its parent, for a sub-organization (one level only).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<s::Id>"))]
    pub parent: Option<String>,
    /// `paid` or `evaluation`.
    #[serde(rename = "type")]
    pub org_type: OrgType,
    /// RFC 3339; at and after it, denied (`organization_expired`).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<s::DateTime>"))]
    pub expires_at: Option<String>,
    /// `active` or `suspended`.
    pub status: OrgStatus,
    /// Environments it runs in (steps 11 and 12).
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Id>"))]
    pub environments: Vec<String>,
    /// Free labels; never read.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Extension x3: token issuers (`iss`) trusted in this organization and
    /// its sub-organizations.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Issuer>"))]
    pub token_issuers: Vec<String>,
    /// Free-form; any JSON is accepted and the engine never reads it.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "serde_json::Value"))]
    pub metadata: Option<serde::de::IgnoredAny>,
}

/// A team of an organization (Otoroshi's teams).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Team {
    /// Unique id.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// The organization it belongs to.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub organization: String,
    /// Display name.
    pub name: String,
}

/// A named set of permissions.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Unique id (listed in `x-tenant-roles`).
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Permissions granted: exact, `prefix*`, or `*`.
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::GrantedPermission>"))]
    pub permissions: Vec<String>,
}

/// A group of an organization, granting roles to members (Choreo's groups).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Unique id.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// The organization it belongs to; its roles count only there.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub organization: String,
    /// Roles its members get.
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Id>"))]
    pub roles: Vec<String>,
}

/// Whether a membership was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum MembershipStatus {
    /// Counts for access.
    Active,
    /// Not accepted yet: counts only to answer `membership_pending`.
    Invited,
}

/// Where a user belongs, with what.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// An area or an organization id; it covers that and everything below.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub scope: String,
    /// `active` or `invited`.
    pub status: MembershipStatus,
    /// Roles granted directly.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Id>"))]
    pub roles: Vec<String>,
    /// Groups (of the scope) whose roles are granted.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Id>"))]
    pub groups: Vec<String>,
    /// Team rights.
    #[serde(default, deserialize_with = "team_rights")]
    #[cfg_attr(feature = "schema", schemars(with = "s::TeamRights"))]
    pub teams: TeamRights,
}

/// A user and its memberships.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Unique id (the `x-user-id` value).
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// Where the user belongs.
    pub memberships: Vec<Membership>,
    /// Extension (Otoroshi shell): the e-mail addresses of Otoroshi's
    /// authenticated user that are this user. Each non-empty and unique
    /// (case-insensitively) across the snapshot.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::NonBlank>"))]
    pub otoroshi_emails: Vec<String>,
}

/// Whether an app may use its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    /// Its keys may be used.
    Approved,
    /// Every key of it is refused (`app_revoked`).
    Revoked,
}

/// An organization's client application.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct App {
    /// Unique id (`app:<id>`).
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// The organization it belongs to.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub organization: String,
    /// Who built it; never read.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<s::NonEmpty>"))]
    pub developer: Option<String>,
    /// `approved` or `revoked`.
    pub status: AppStatus,
    /// Products it is subscribed to.
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Id>"))]
    pub products: Vec<String>,
    /// Its roles.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Id>"))]
    pub roles: Vec<String>,
    /// Its team rights.
    #[serde(default, deserialize_with = "team_rights")]
    #[cfg_attr(feature = "schema", schemars(with = "s::TeamRights"))]
    pub teams: TeamRights,
    /// Extension (Otoroshi shell): the `clientId`s of Otoroshi apikeys, validated
    /// by Otoroshi itself, that are this app. Each non-empty and unique across the
    /// snapshot.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::NonBlank>"))]
    pub otoroshi_client_ids: Vec<String>,
}

/// The life of an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Refused (`api_key_revoked`).
    Revoked,
    /// Awaiting approval (`api_key_pending`).
    Pending,
}

/// An app's API key, stored as its SHA-256 only.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Unique id.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// The app it belongs to.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub app: String,
    /// SHA-256 of the raw key, 64 lower-case hex digits.
    #[cfg_attr(feature = "schema", schemars(with = "s::Sha256"))]
    pub sha256: String,
    /// `active`, `revoked` or `pending`.
    pub status: KeyStatus,
    /// RFC 3339; at and after it, `api_key_expired`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<s::DateTime>"))]
    pub expires_at: Option<String>,
    /// Safe methods only (`read_only_key`).
    #[serde(default)]
    pub read_only: bool,
    /// Environments it may be used in (none listed: all of its organization's).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Id>"))]
    pub environments: Vec<String>,
}

/// A bundle of routes offered to apps.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Product {
    /// Unique id.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// The organization offering it.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub organization: String,
    /// The routes it bundles.
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Id>"))]
    pub routes: Vec<String>,
    /// Where it is offered (none listed: everywhere its organization runs).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Id>"))]
    pub environments: Vec<String>,
}

/// What a route requires, per kind of method.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RoutePermissions {
    /// Required for safe methods.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<s::RequiredPermission>"))]
    pub read: Option<String>,
    /// Required for every other method.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<s::RequiredPermission>"))]
    pub write: Option<String>,
}

/// What is protected: host, method and path prefix, and what it requires.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique id.
    #[cfg_attr(feature = "schema", schemars(with = "s::Id"))]
    pub id: String,
    /// Hosts it answers (none: every host).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Host>"))]
    pub hosts: Vec<String>,
    /// The path prefix, matched at segment boundaries on the canonical path.
    #[cfg_attr(feature = "schema", schemars(with = "s::PathPrefix"))]
    pub path_prefix: String,
    /// Methods it answers (none: every method).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Vec<s::Method>"))]
    pub methods: Vec<String>,
    /// Its tenant, or `*` (chosen by the caller).
    #[cfg_attr(feature = "schema", schemars(with = "s::IdOrStar"))]
    pub tenant: String,
    /// Teams whose right is required, or `["*"]`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(with = "Option<s::RouteTeams>"))]
    pub teams: Option<Vec<String>>,
    /// Permissions required.
    #[serde(default)]
    pub permissions: Option<RoutePermissions>,
    /// Allowed without credentials.
    #[serde(default)]
    pub public: bool,
}

/// The whole snapshot document. When the fast, whole-document read fails,
/// the loader reads it again object by object (`load.rs`), so that every bad
/// object is reported with its id; that second reader builds this struct from
/// the objects it could read.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schema",
    schemars(
        title = "tenantgate policy snapshot",
        description = "One snapshot: who may call what (docs/policy-format.md §1, extensions §6). This schema checks each value on its own; `policyctl validate` also checks references, uniqueness and the rules between objects."
    )
)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Extension x3: the JSON Schema the document follows (`policyctl schema`),
    /// for editors; accepted and never read.
    #[serde(default, rename = "$schema")]
    pub schema: Option<String>,
    /// The snapshot's version (header-safe: the id alphabet, at most 128).
    #[cfg_attr(feature = "schema", schemars(with = "s::Revision"))]
    pub revision: String,
    /// Top containers (Boomi areas).
    #[serde(default)]
    pub areas: Vec<Area>,
    /// Tenants.
    #[serde(default)]
    pub organizations: Vec<Organization>,
    /// Teams of organizations.
    #[serde(default)]
    pub teams: Vec<Team>,
    /// Named sets of permissions.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Organizations' groups granting roles.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Users and their memberships.
    #[serde(default)]
    pub users: Vec<User>,
    /// Client applications of organizations.
    #[serde(default)]
    pub apps: Vec<App>,
    /// Keys of apps (SHA-256 only).
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// Bundles of routes offered to apps.
    #[serde(default)]
    pub products: Vec<Product>,
    /// What is protected, and how.
    #[serde(default)]
    pub routes: Vec<Route>,
}
