//! `policyctl explain`: the engine's decision on one request (the contract's
//! section 4, `docs/policy-format.md`).

use super::flags;
use crate::{files, Error};
use std::path::{Path, PathBuf};
use tenantgate_policy::config::PluginConfig;
use tenantgate_policy::{self as policy, Annotations, Mode, Request, Sources, Timestamp};

/// Runs the engine on one request and prints the decision as JSON.
///
/// Prints the decision as one JSON object on one line: decision, status,
/// reason, route, tenant, principal, teams, roles and the annotation headers
/// the filter would set. Exits 0 for any decision and 2 for an unusable
/// policy or argument.
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "policyctl explain --policy FILE [--config FILE] --method M --path P\n                         \
                            [--host H] [--header 'name: value']... [--environment ENV] [--now RFC3339]"
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
}

pub fn run(args: &Args) -> Result<(), Error> {
    println!("{}", decision_json(args)?);
    Ok(())
}

/// The JSON that `explain` prints for `args`.
fn decision_json(args: &Args) -> Result<String, Error> {
    let snapshot = files::load_policy(&args.policy)?;
    let gateway = match &args.config {
        Some(path) => Gateway::configured(path)?,
        None => Gateway::default(),
    };
    let environment = args.environment.clone().or(gateway.environment);
    let now = args.now.unwrap_or_else(system_now);
    let request = Request::from_parts(
        &gateway.sources,
        &args.method,
        &args.host,
        args.path.as_bytes(),
        &args.headers,
    );
    let context = policy::Context::new(now, environment.as_deref());
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
            annotations: config.annotations,
        })
    }
}

fn system_now() -> Timestamp {
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
