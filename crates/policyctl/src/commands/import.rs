//! `policyctl import otoroshi EXPORT.json`: an export converted by
//! [`crate::import_otoroshi`].

use crate::import_otoroshi::{convert, Options};
use crate::{files, Error};
use serde_json::Value;
use std::path::PathBuf;

/// Converts another gateway's export into a snapshot
///
/// Converts an Otoroshi export into a snapshot, validates it and prints it on
/// stdout (warnings about what could not be carried over go to stderr). Tenant and
/// team ids are compared as Otoroshi compares them, case-insensitively, and kept
/// lower-cased; ids keep Otoroshi's otherwise, with characters outside
/// `A-Za-z0-9._:-` replaced by `-`. An entity without `_loc` is in tenant
/// `default`, team `default`, as in Otoroshi.
///
///   tenants               organizations (paid, active, environments [ENV]); two
///                         tenants whose ids differ only by case are one
///   teams                 teams of their tenant; one id in two tenants: left out
///   routes                one route per frontend domain (`host/path`: the host, or
///                         any host for a wildcard one; the path up to its first
///                         wildcard or parameter as path_prefix); tenant from
///                         `_loc.tenant` (`*` stays `*`: callers name their tenant
///                         with x-tenant-id, or have only one); teams from
///                         `_loc.teams` (callers need a right on one of them; `*`:
///                         on any team). A route in no team, or only in teams that
///                         are not its tenant's, is for tenant admins only (role
///                         `otoroshi:tenant-admin`), as Otoroshi shows it to them
///                         only. Disabled routes are skipped
///   products              one per route (`route_<id>`) and per service group
///                         (`group_<id>`, its routes), named as Otoroshi names
///                         authorized entities
///   apiKeys               one app each (organization and team rights from `_loc`:
///                         write, read for a readOnly key; products from
///                         `authorizedEntities`/`authorizations`/`authorizedGroup`;
///                         `otoroshi_client_ids: [clientId]`) and one api key:
///                         sha256 of the clientSecret, active or (enabled: false)
///                         revoked, expires_at from validUntil, read_only from
///                         readOnly
///   simpleAdmins, admins  users (`otoroshi_emails: [username]`) whose `rights`
///                         ([{"tenant": "org-1:rw", "teams": ["team-1:rw",
///                         "team-2:r"]}, …]) grant what Otoroshi grants: GET,
///                         HEAD, OPTIONS where the admin may read the route, other
///                         methods where it may write it. `r` read, `rw` (or no
///                         suffix) read and write, `w` alone nothing; `*` and
///                         wildcards expanded to the matching tenants and teams.
///                         One active membership per tenant: a team's right is the
///                         lesser of the tenant right and the team right; role
///                         `otoroshi:tenant-admin` (a right `T:rw` with team `*:rw`:
///                         every route of T, teams or none), `otoroshi:tenant-write`
///                         or `otoroshi:tenant-read`. `rights` that is not a list
///                         (a super admin to Otoroshi) is not imported
///
/// Where a right cannot be carried exactly, less is granted and a warning says so.
/// The api key hashes the clientSecret, never the clientId: the snapshot's keys
/// are bearer secrets (`x-api-key`, `?apikey=`), and a clientId is an identifier
/// that Otoroshi shows in headers, logs and tokens. Calls that Otoroshi itself
/// authenticated are matched by clientId through `otoroshi_client_ids`.
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "policyctl import otoroshi EXPORT.json [--environment ENV] [--revision R]",
    verbatim_doc_comment
)]
pub struct Args {
    /// the gateway that wrote the export
    #[arg(value_enum, value_name = "KIND")]
    kind: Kind,
    /// the export: Otoroshi's "Full export", or `GET /api/otoroshi.json`
    #[arg(value_name = "EXPORT.json")]
    export: PathBuf,
    /// the organizations' environment
    #[arg(long, value_name = "ENV", default_value = "prod")]
    environment: String,
    /// the snapshot revision (default: otoroshi-<the export's dateRaw as RFC
    /// 3339>, else otoroshi-import)
    #[arg(long, value_name = "R")]
    revision: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Kind {
    Otoroshi,
}

pub fn run(args: &Args) -> Result<(), Error> {
    let Kind::Otoroshi = args.kind;
    let bytes = files::read(&args.export)?;
    let export: Value = serde_json::from_slice(&bytes).map_err(|source| Error::NotJson {
        path: args.export.clone(),
        source,
    })?;
    let options = Options {
        environment: args.environment.clone(),
        revision: args.revision.clone(),
    };
    let imported = convert(&export, &options)?;
    for warning in &imported.warnings {
        eprintln!("policyctl: import: {warning}");
    }
    println!("{}", serde_json::to_string_pretty(&imported.snapshot)?);
    Ok(())
}
