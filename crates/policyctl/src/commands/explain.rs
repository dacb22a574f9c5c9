//! `policyctl explain`: the engine's decision on one request (the contract's
//! section 4, `docs/policy-format.md`).

use super::flags;
use crate::{files, Error};
use std::path::{Path, PathBuf};
use tenantgate_policy::config::PluginConfig;
use tenantgate_policy::token::{TokenClaims, TokenSource};
use tenantgate_policy::{
    self as policy, Annotations, Mode, Request, Sources, Timestamp, TokenCaller,
};

/// Runs the engine on one request and prints the decision as JSON.
///
/// Prints the decision as one JSON object on one line: decision, status,
/// reason, route, tenant, principal, teams, roles and the annotation headers
/// the filter would set. Exits 0 for any decision and 2 for an unusable
/// policy or argument.
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "policyctl explain --policy FILE [--config FILE] --method M --path P\n                         \
                            [--host H] [--header 'name: value']... [--environment ENV] [--now RFC3339]\n                         \
                            [--jwt-payload FILE]"
)]
pub struct Args {
    /// the snapshot document
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// a plugin configuration (mode, environment, sources, annotations); its
    /// inline snapshot, if any, is ignored in favour of --policy
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// request method, e.g. GET
    #[arg(long, value_name = "M")]
    method: String,
    /// path with query string, e.g. '/orders/1?apikey=...'
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    path: String,
    /// :authority / Host
    #[arg(long, value_name = "H", default_value = "localhost")]
    host: String,
    /// a request header; repeat for more
    #[arg(long = "header", value_name = "'name: value'", value_parser = flags::header, allow_hyphen_values = true)]
    headers: Vec<(String, String)>,
    /// the gateway's configured environment (default: none, or the --config one)
    #[arg(long, value_name = "ENV")]
    environment: Option<String>,
    /// the current time (default: the system clock)
    #[arg(long, value_name = "RFC3339", value_parser = flags::time)]
    now: Option<Timestamp>,
    /// the claims of a token the gateway verified (a JWT payload as JSON),
    /// read as --config's sources.token says (default: identity mode, `sub`)
    #[arg(long, value_name = "FILE")]
    jwt_payload: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<(), Error> {
    println!("{}", decision_json(args)?);
    Ok(())
}

/// The JSON that `explain` prints for `args`.
fn decision_json(args: &Args) -> Result<String, Error> {
    let snapshot = files::load_policy(&args.policy)?;
    let mut gateway = match &args.config {
        Some(path) => Gateway::configured(path)?,
        None => Gateway::default(),
    };
    if args.jwt_payload.is_some() && gateway.token.is_none() {
        // As the filter with a token source: users come from the token only.
        gateway.token = Some(TokenSource::default());
        gateway.sources.user_header = None;
    }
    let environment = args.environment.clone().or(gateway.environment);
    let now = args.now.unwrap_or_else(system_now);
    let request = Request::from_parts(
        &gateway.sources,
        &args.method,
        &args.host,
        args.path.as_bytes(),
        &args.headers,
    );
    let token = match &args.jwt_payload {
        Some(path) => Some(token_caller(path, &snapshot, gateway.token.as_ref())?),
        None => None,
    };
    let context = policy::Context::new(now, environment.as_deref()).with_token(token.as_ref());
    let decision = policy::decide(&snapshot, &request, &context);
    Ok(serde_json::to_string(
        &decision.explain_with(gateway.mode, gateway.annotations),
    )?)
}

/// What a plugin configuration says about the gateway deciding.
#[derive(Default)]
struct Gateway {
    mode: Mode,
    environment: Option<String>,
    sources: Sources,
    token: Option<TokenSource>,
    annotations: Annotations,
}

impl Gateway {
    fn configured(path: &Path) -> Result<Gateway, Error> {
        let bytes = files::read(path)?;
        let config = PluginConfig::parse(&bytes).map_err(|source| Error::Config {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Gateway {
            mode: config.mode,
            environment: config.environment,
            sources: config.sources,
            token: config.token,
            annotations: config.annotations,
        })
    }
}

/// The caller the verified claims in `path` name.
fn token_caller(
    path: &Path,
    snapshot: &policy::Snapshot,
    source: Option<&TokenSource>,
) -> Result<TokenCaller, Error> {
    let payload: serde_json::Value =
        serde_json::from_slice(&files::read(path)?).map_err(|source| Error::NotJson {
            path: path.to_path_buf(),
            source,
        })?;
    let source = source.cloned().unwrap_or_default();
    let claims = TokenClaims::from_json(&payload, &source);
    Ok(TokenCaller::resolve(snapshot, &claims, &source))
}

pub(super) fn system_now() -> Timestamp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Timestamp::from_unix_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use crate::commands::{parse, Command};

    #[test]
    fn headers_add_up_and_other_flags_take_their_last_value() {
        let parsed = parse([
            "policyctl",
            "explain",
            "--policy",
            "p.json",
            "--method",
            "GET",
            "--method=POST",
            "--path",
            "/x",
            "--header",
            "a: 1",
            "--header",
            "b:2 ",
        ]);
        let Ok(Command::Explain(args)) = parsed else {
            panic!("{parsed:?}");
        };
        let headers = [("a".to_string(), "1".to_string()), ("b".into(), "2".into())];
        assert_eq!(args.headers, headers);
        assert_eq!(args.method, "POST");
        assert_eq!(args.host, "localhost");
        assert!(parse(["policyctl", "explain", "--policy", "p", "--method", "GET"]).is_err());
        let bad_header = [
            "policyctl",
            "explain",
            "--policy",
            "p",
            "--method",
            "GET",
            "--path",
            "/",
            "--header",
            "x",
        ];
        assert!(parse(bad_header).is_err());
    }
}
