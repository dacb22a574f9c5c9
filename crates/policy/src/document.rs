//! The snapshot document as written by policy authors (spec §1).
//!
//! Every struct rejects unknown fields: a typo must never silently weaken a policy.
//! Only `metadata` is free-form.

use serde::Deserialize;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    Read,
    Write,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Area {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgType {
    Paid,
    Evaluation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgStatus {
    Active,
    Suspended,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organization {
    pub id: String,
    pub handle: String,
    pub name: String,
    #[serde(default)]
    pub area: Option<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(rename = "type")]
    pub org_type: OrgType,
    #[serde(default)]
    pub expires_at: Option<String>,
    pub status: OrgStatus,
    pub environments: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free-form; any JSON is accepted and the engine never reads it.
    #[serde(default)]
    pub metadata: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub id: String,
    pub organization: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub id: String,
    pub organization: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MembershipStatus {
    Active,
    Invited,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub scope: String,
    pub status: MembershipStatus,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, deserialize_with = "team_rights")]
    pub teams: TeamRights,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub id: String,
    pub memberships: Vec<Membership>,
    /// Extension (Otoroshi shell): the e-mail addresses of Otoroshi's
    /// authenticated user that are this user. Each non-empty and unique
    /// (case-insensitively) across the snapshot.
    #[serde(default)]
    pub otoroshi_emails: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    Approved,
    Revoked,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub id: String,
    pub organization: String,
    #[serde(default)]
    pub developer: Option<String>,
    pub status: AppStatus,
    pub products: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default, deserialize_with = "team_rights")]
    pub teams: TeamRights,
    /// Extension (Otoroshi shell): the `clientId`s of Otoroshi apikeys, validated
    /// by Otoroshi itself, that are this app. Each non-empty and unique across the
    /// snapshot.
    #[serde(default)]
    pub otoroshi_client_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Active,
    Revoked,
    Pending,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub id: String,
    pub app: String,
    pub sha256: String,
    pub status: KeyStatus,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub environments: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: String,
    pub organization: String,
    pub routes: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePermissions {
    #[serde(default)]
    pub read: Option<String>,
    #[serde(default)]
    pub write: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub id: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub path_prefix: String,
    #[serde(default)]
    pub methods: Vec<String>,
    pub tenant: String,
    #[serde(default)]
    pub teams: Option<Vec<String>>,
    #[serde(default)]
    pub permissions: Option<RoutePermissions>,
    #[serde(default)]
    pub public: bool,
}

/// The whole snapshot document. Collections are deserialized one object at a
/// time by the loader (so that every bad object is reported with its id), which
/// is why this struct is assembled rather than derived.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub revision: String,
    pub areas: Vec<Area>,
    pub organizations: Vec<Organization>,
    pub teams: Vec<Team>,
    pub roles: Vec<Role>,
    pub groups: Vec<Group>,
    pub users: Vec<User>,
    pub apps: Vec<App>,
    pub api_keys: Vec<ApiKey>,
    pub products: Vec<Product>,
    pub routes: Vec<Route>,
}
