//! The Otoroshi identities (a snapshot extension): client ids and e-mails
//! placed among the snapshot's principals, and team ids for apikeys placed by
//! their location.

use super::Compiler;
use crate::records::{GatewayIds, Idx};
use rustc_hash::FxHashMap;

impl<'d> Compiler<'d> {
    pub(super) fn check_otoroshi_identities(&mut self) -> GatewayIds {
        use std::collections::hash_map::Entry;
        let doc = self.doc;
        let mut placed = GatewayIds::default();
        let mut client_ids: FxHashMap<&str, &str> = FxHashMap::default();
        for (app_idx, app) in doc.apps.iter().enumerate() {
            for client_id in &app.otoroshi_client_ids {
                if client_id.trim().is_empty() {
                    let what = "an Otoroshi client id must be non-empty, got";
                    self.problem("app", &app.id, "otoroshi_client_ids", client_id, what);
                    continue;
                }
                match client_ids.entry(client_id) {
                    Entry::Vacant(slot) => {
                        slot.insert(&app.id);
                        placed
                            .apps
                            .insert(client_id.as_str().into(), app_idx as Idx);
                    }
                    Entry::Occupied(owner) => {
                        let what = format!("client id already used by app `{}`:", owner.get());
                        self.problem("app", &app.id, "otoroshi_client_ids", client_id, &what);
                    }
                }
            }
        }
        let mut emails: FxHashMap<String, &str> = FxHashMap::default();
        for (user_idx, user) in doc.users.iter().enumerate() {
            for email in &user.otoroshi_emails {
                if email.trim().is_empty() {
                    let what = "an Otoroshi e-mail must be non-empty, got";
                    self.problem("user", &user.id, "otoroshi_emails", email, what);
                    continue;
                }
                match emails.entry(email.to_ascii_lowercase()) {
                    Entry::Vacant(slot) => {
                        placed
                            .users
                            .insert(slot.key().as_str().into(), user_idx as Idx);
                        slot.insert(&user.id);
                    }
                    Entry::Occupied(owner) => {
                        let what = format!("e-mail already used by user `{}`:", owner.get());
                        self.problem("user", &user.id, "otoroshi_emails", email, &what);
                    }
                }
            }
        }
        placed
    }

    /// The gateway identities, with every team placed in its organization.
    pub(super) fn gateway_ids(&mut self, team_org: &[Option<Idx>]) -> GatewayIds {
        let mut gateway = self.check_otoroshi_identities();
        for (position, (team, org)) in self.doc.teams.iter().zip(team_org).enumerate() {
            if let Some(org) = *org {
                gateway
                    .teams
                    .entry(team.id.as_str().into())
                    .or_insert((position as Idx, org));
            }
        }
        gateway
    }
}
