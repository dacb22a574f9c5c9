//! Api keys: one app each, and one api key holding the hash of its clientSecret.

use super::json::{array, strings, text, Ids};
use super::otoroshi::{expiry, location, Location};
use super::Converter;
use serde_json::{json, Map, Value};
use tenantgate_policy::hash_key;

/// The app made of one Otoroshi api key.
struct App {
    id: String,
    client_id: String,
    read_only: bool,
    document: Value,
}

impl Converter<'_> {
    pub(super) fn apps_and_keys(&mut self) -> (Vec<Value>, Vec<Value>) {
        let mut app_ids = Ids::default();
        let mut apps = Vec::new();
        let mut keys = Vec::new();
        for apikey in array(self.export, "apiKeys") {
            let Some(app) = self.app(apikey, &mut app_ids) else {
                continue;
            };
            let key = self.api_key(apikey, &app);
            apps.push(app.document);
            keys.extend(key);
        }
        (apps, keys)
    }

    /// The app of an api key; `None` (with a warning) if it is skipped.
    fn app(&mut self, apikey: &Value, app_ids: &mut Ids) -> Option<App> {
        let Some(client_id) = text(apikey, "clientId") else {
            self.warnings
                .push("an apikey without clientId skipped".into());
            return None;
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
            return None;
        };
        let id = app_ids.assign(&client_id);
        let read_only = apikey.get("readOnly") == Some(&Value::Bool(true));
        let teams = self.app_teams(&client_id, &org, &loc, read_only);
        let products = self.app_products(&client_id, apikey);
        let document = json!({
            "id": id, "organization": org, "status": "approved", "products": products,
            "teams": teams, "otoroshi_client_ids": [client_id],
        });
        Some(App {
            id,
            client_id,
            read_only,
            document,
        })
    }

    /// Write (read for a read-only key) on the teams of `_loc` that are `org`'s.
    fn app_teams(
        &mut self,
        client_id: &str,
        org: &str,
        loc: &Location,
        read_only: bool,
    ) -> Map<String, Value> {
        let right = if read_only { "read" } else { "write" };
        let mut teams = Map::new();
        let Some((ours, others)) = self.loc_teams(Some(org), loc) else {
            teams.insert("*".into(), right.into());
            return teams;
        };
        if !others.is_empty() {
            self.warnings.push(format!(
                "apikey `{client_id}`: `_loc.teams` `{}` are no exported team of its tenant, no right there",
                others.join(", ")
            ));
        }
        for team in ours {
            teams.insert(team, right.into());
        }
        teams
    }

    /// The products of the routes and groups the key is authorized on.
    fn app_products(&mut self, client_id: &str, apikey: &Value) -> Vec<String> {
        let mut products: Vec<String> = Vec::new();
        for entity in authorized_entities(apikey) {
            match self.products.get(&entity) {
                Some(product) if !products.iter().any(|p| p == product) => {
                    products.push(product.to_string())
                }
                Some(_) => {}
                None => self.warnings.push(format!(
                    "apikey `{client_id}`: authorized entity `{entity}` is no imported route or group"
                )),
            }
        }
        products
    }

    /// The api key: the hash of the clientSecret; `None` (with a warning) without one.
    fn api_key(&mut self, apikey: &Value, app: &App) -> Option<Value> {
        let client_id = &app.client_id;
        let Some(secret) = text(apikey, "clientSecret") else {
            self.warnings.push(format!(
                "apikey `{client_id}`: no clientSecret, so only Otoroshi-validated calls (by clientId) are known"
            ));
            return None;
        };
        let Some(expires_at) = expiry(apikey) else {
            self.warnings.push(format!(
                "apikey `{client_id}`: unreadable validUntil, key left out"
            ));
            return None;
        };
        let enabled = apikey.get("enabled") != Some(&Value::Bool(false));
        let mut key = json!({
            "id": app.id, "app": app.id, "sha256": hash_key(&secret),
            "status": if enabled { "active" } else { "revoked" },
            "read_only": app.read_only,
        });
        if let (Some(at), Some(object)) = (expires_at, key.as_object_mut()) {
            object.insert("expires_at".into(), at.into());
        }
        Some(key)
    }
}

/// Otoroshi's names of what a key may call: `route_<id>`, `group_<id>`, ...
fn authorized_entities(apikey: &Value) -> Vec<String> {
    let mut entities = strings(apikey, "authorizedEntities");
    for authorization in array(apikey, "authorizations") {
        if let (Some(kind), Some(target)) = (text(authorization, "kind"), text(authorization, "id"))
        {
            entities.push(format!("{kind}_{target}"));
        }
    }
    if let Some(group) = text(apikey, "authorizedGroup") {
        entities.push(format!("group_{group}"));
    }
    entities
}
