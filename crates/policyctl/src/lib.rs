//! The `policyctl` command line. Kept in the library so tests can drive it.

pub mod bake;
pub mod generate;
pub mod http1;
pub mod import_otoroshi;
pub mod serve;
pub mod sign;

use std::process::ExitCode;
use tenantgate_policy::config::PluginConfig;
use tenantgate_policy::{self as policy, Decision, Mode, Request, Sources, Timestamp};

const USAGE: &str = "policyctl: validate, explain, generate and serve tenantgate policy snapshots

usage:
  policyctl validate FILE...
  policyctl explain --policy FILE [--config FILE] --method M --path P [--host H]
                    [--header 'name: value']... [--environment ENV] [--now RFC3339]
  policyctl hash-key KEY
  policyctl generate --orgs N --keys M [--seed S]
  policyctl plugin-config --policy FILE [--mode enforce|audit] [--environment ENV]
  policyctl compile --policy FILE [--out FILE]
  policyctl bake --module WASM --policy FILE --out WASM
  policyctl import otoroshi EXPORT.json [--environment ENV] [--revision R]
  policyctl serve --policy FILE [--keys FILE] --listen ADDR
  policyctl keygen --out FILE
  policyctl sign --key FILE --policy FILE --out FILE [--sequence N]

Run `policyctl COMMAND --help` for one command. Exit status: 0 success (any
decision, for explain), 2 unusable input.";

const VALIDATE_HELP: &str = "usage: policyctl validate FILE...

Loads each snapshot, checks every rule of the format and compiles it.
Prints `FILE: ok (revision R, N organizations, M api keys)` per valid file,
then its warnings on stderr (`FILE: warning: ...`: rules that hold but likely
do not say what was meant, such as a method-restricted route whose other
methods fall through to a broader route). Exits 2 listing every problem of
every invalid file, one per line, each naming the object id, the field and
the offending value (escaped, so each stays on its line).";

const EXPLAIN_HELP: &str =
    "usage: policyctl explain --policy FILE [--config FILE] --method M --path P
                         [--host H] [--header 'name: value']... [--environment ENV] [--now RFC3339]

Runs the engine on one request and prints the decision as one JSON object:
decision, status, reason, route, tenant, principal, teams, roles and the
annotation headers the filter would set. Exits 0 for any decision and 2 for an
unusable policy or argument.

  --policy FILE       the snapshot document
  --config FILE       a plugin configuration (mode, environment, sources); its
                      inline snapshot, if any, is ignored in favour of --policy
  --method M          request method, e.g. GET
  --path P            path with query string, e.g. '/orders/1?apikey=...'
  --host H            :authority / Host (default: localhost)
  --header 'n: v'     a request header; repeat for more
  --environment ENV   the gateway's configured environment (default: none, or
                      the --config one)
  --now RFC3339       the current time (default: the system clock)";

const HASH_HELP: &str = "usage: policyctl hash-key KEY

Prints the lower-case hex SHA-256 of KEY: the value of `sha256` in a snapshot's
api_keys. Snapshots never hold raw keys.";

const GENERATE_HELP: &str = "usage: policyctl generate --orgs N --keys M [--seed S]

Writes a large, valid, realistic snapshot on stdout: areas, organizations and
sub-organizations, teams, roles, groups, users with memberships, apps,
products, routes and M api keys. The raw key of api key number i (0-based) is
`gen-S-i` (S is the seed, default 1), so benchmarks can send real keys.";

const COMPILE_HELP: &str = "usage: policyctl compile --policy FILE [--out FILE]

Validates FILE and writes its compiled form (binary, versioned, checked on load)
to --out or stdout. The filter, `policyctl serve` and every command that reads a
policy accept it in place of JSON: it loads without parsing JSON, in a fraction
of the time and memory, which matters for large snapshots.";

const BAKE_HELP: &str = "usage: policyctl bake --module WASM --policy FILE --out WASM
Validates FILE (JSON or compiled) and writes a copy of WASM, the Otoroshi build
(dist/tenantgate-otoroshi.wasm), with the compiled snapshot in a data segment.
The plug-in uses it when its settings name no snapshot: each call gets it with
the fresh instance instead of inside its JSON input, and reads only the records
of the request's identities. Prints the revision, the size and the module's
initial memory in pages: Otoroshi's `memoryPages` must exceed it (a call needs
a few more pages). Bake the module `make dist` builds; a new policy is a new
module (give it a new `source` path so Otoroshi loads it).";

const PLUGIN_CONFIG_HELP: &str =
    "usage: policyctl plugin-config --policy FILE [--mode enforce|audit] [--environment ENV]
                             [--compiled true]

Validates FILE and prints a plugin configuration embedding it inline, as one
line of JSON: what goes into Envoy's `configuration` StringValue (or
Otoroshi's plug-in `config`). With `--compiled true` the snapshot is embedded
compiled, base64 (`snapshot.compiled`): about a third of the size, and each VM
(or, in Otoroshi, each call) loads it without parsing JSON.";

const SERVE_HELP: &str = "usage: policyctl serve --policy FILE [--keys FILE] --listen ADDR

Serves FILE over HTTP/1.1 (hyper; one thread for every connection, keep-alive):

  GET|HEAD /snapshot   FILE's exact bytes, content-type: application/json (or
                       application/octet-stream for a compiled snapshot),
                       etag: \"sha256:<first 32 hex digits of their SHA-256>\",
                       cache-control: no-cache; 304 and no body if if-none-match
                       lists that etag (W/ or not, lists) or is *
  GET /keys/<sha256>   the --keys entry with that hash as JSON; 404
                       {\"error\":\"not_found\"} if unknown or without --keys; 400
                       unless 64 lower-case hex digits
  GET /stats           counters: snapshot_requests, snapshot_200, snapshot_304,
                       key_requests, key_hits, key_misses, reloads,
                       reloads_refused, and the current revision
  anything else        404

  --policy FILE   the snapshot; exits 2 listing its problems if invalid at start
  --keys FILE     a JSON array of api key objects shaped like the snapshot's
                  api_keys entries, each with a 64 lower-case hex `sha256`
  --listen ADDR   address to bind, e.g. 127.0.0.1:8081 (port 0: any free port)

Reload: before answering each request both files are checked with one stat
(mtime, ctime, size, inode; a file changed less than 2 s before it was read is
re-read and compared by content). A changed file that is valid is served from
then on; an invalid one is refused and the last good one kept, with one line
`reload refused: <first problem> (+N more)` on stderr. A file that disappears
leaves the last good one in place. Replace files by rename for atomic updates.

Requests: a head must arrive within 10 s (of connecting, or of its first byte)
and fit in 32 KiB and 100 fields; content-length together with
transfer-encoding, other ambiguous framing and malformed requests are refused
(400, 413 or 431 with a JSON error) and the connection closed. Bodies are not
read. A connection idle for 300 s is closed.

stdout: one line `listening on IP:PORT` once bound, then one line per request,
e.g. `GET /snapshot 200 etag=sha256:...`, `GET /snapshot 304 etag=sha256:...`,
`GET /keys/64084db3… 404`, `GET /stats 200`, `- - 400 <reason>` for a refused
request (key hashes are cut to 8 characters; header values are never printed).
Keep reading stdout (or close it). SIGTERM or SIGINT: stop accepting, close idle
connections, let responses in flight finish (10 s at most), print `shut down on
SIGTERM: ...` and exit 0.";

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("policyctl: {message}");
    ExitCode::from(2)
}

/// Runs `policyctl` with `args` (without the program name).
pub fn run(args: &[String]) -> ExitCode {
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let help = |text: &str| {
        if rest.iter().any(|a| a == "--help" || a == "-h") {
            println!("{text}");
            true
        } else {
            false
        }
    };
    match command.as_str() {
        "--help" | "-h" | "help" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        "validate" if help(VALIDATE_HELP) => ExitCode::SUCCESS,
        "validate" => validate(rest),
        "explain" if help(EXPLAIN_HELP) => ExitCode::SUCCESS,
        "explain" => explain(rest),
        "hash-key" if help(HASH_HELP) => ExitCode::SUCCESS,
        "hash-key" => match rest {
            [key] => {
                println!("{}", policy::hash_key(key.as_bytes()));
                ExitCode::SUCCESS
            }
            _ => fail("hash-key takes exactly one KEY (see `policyctl hash-key --help`)"),
        },
        "generate" if help(GENERATE_HELP) => ExitCode::SUCCESS,
        "generate" => generate::run(rest),
        "plugin-config" if help(PLUGIN_CONFIG_HELP) => ExitCode::SUCCESS,
        "plugin-config" => plugin_config(rest),
        "compile" if help(COMPILE_HELP) => ExitCode::SUCCESS,
        "compile" => compile(rest),
        "bake" if help(BAKE_HELP) => ExitCode::SUCCESS,
        "bake" => bake_module(rest),
        "import" if help(import_otoroshi::HELP) => ExitCode::SUCCESS,
        "import" => import_otoroshi::run(rest),
        "keygen" if help(sign::KEYGEN_HELP) => ExitCode::SUCCESS,
        "keygen" => sign::keygen(rest),
        "sign" if help(sign::SIGN_HELP) => ExitCode::SUCCESS,
        "sign" => sign::sign(rest),
        "serve" if help(SERVE_HELP) => ExitCode::SUCCESS,
        "serve" => serve::run(rest),
        other => fail(format_args!("unknown command `{other}`\n\n{USAGE}")),
    }
}

/// Parsed `--flag value` pairs; flags listed in `repeatable` may occur many times.
struct Flags {
    pairs: Vec<(String, String)>,
}

impl Flags {
    fn parse(args: &[String], known: &[&str]) -> Result<Flags, String> {
        let mut pairs = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            if !known.contains(&name) {
                return Err(format!("unknown argument `{arg}`"));
            }
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("`{name}` needs a value"))?,
            };
            pairs.push((name.to_string(), value));
        }
        Ok(Flags { pairs })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("`{name}` is required"))
    }
}

fn read_file(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read `{path}`: {e}"))
}

/// A snapshot file: JSON, or compiled by `policyctl compile`.
fn load_policy(path: &str) -> Result<policy::Snapshot, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{path}`: {e}"))?;
    policy::load_snapshot_bytes(&bytes).map_err(|e| format!("`{path}`: {e}"))
}

fn compile(args: &[String]) -> ExitCode {
    let result = (|| -> Result<Vec<u8>, String> {
        let flags = Flags::parse(args, &["--policy", "--out"])?;
        let path = flags.required("--policy")?;
        let snapshot = load_policy(path)?;
        let bytes = policy::binary::encode(&snapshot);
        match flags.get("--out") {
            Some(out) => {
                std::fs::write(out, &bytes).map_err(|e| format!("cannot write `{out}`: {e}"))?
            }
            None => std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes)
                .map_err(|e| e.to_string())?,
        }
        Ok(bytes)
    })();
    match result {
        Ok(bytes) => {
            eprintln!("policyctl: compiled snapshot, {} bytes", bytes.len());
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

fn bake_module(args: &[String]) -> ExitCode {
    let result = (|| -> Result<String, String> {
        let flags = Flags::parse(args, &["--module", "--policy", "--out"])?;
        let module_path = flags.required("--module")?;
        let out = flags.required("--out")?;
        let snapshot = load_policy(flags.required("--policy")?)?;
        let bytes = policy::binary::encode(&snapshot);
        let module =
            std::fs::read(module_path).map_err(|e| format!("cannot read `{module_path}`: {e}"))?;
        let baked = bake::bake(&module, &bytes).map_err(|e| format!("`{module_path}`: {e}"))?;
        std::fs::write(out, &baked.module).map_err(|e| format!("cannot write `{out}`: {e}"))?;
        Ok(format!(
            "{out}: revision {} baked, {} bytes of snapshot at {:#x}; module {} bytes, initial memory {} pages",
            snapshot.revision(),
            bytes.len(),
            baked.address,
            baked.module.len(),
            baked.initial_pages
        ))
    })();
    match result {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

fn validate(files: &[String]) -> ExitCode {
    if files.is_empty() {
        return fail("validate needs at least one FILE (see `policyctl validate --help`)");
    }
    let mut failed = false;
    for file in files {
        let loaded = std::fs::read(file)
            .map_err(|e| format!("cannot read `{file}`: {e}"))
            .and_then(|bytes| {
                policy::load_snapshot_bytes(&bytes).map_err(|e| e.problems().join("\n"))
            });
        match loaded {
            Ok(snapshot) => {
                let stats = snapshot.stats();
                println!(
                    "{file}: ok (revision {}, {} organizations, {} api keys, {} routes)",
                    snapshot.revision(),
                    stats.organizations,
                    stats.api_keys,
                    stats.routes
                );
                for warning in policy::lint::warnings(&snapshot) {
                    eprintln!("{file}: warning: {warning}");
                }
            }
            Err(problems) => {
                failed = true;
                for problem in problems.lines() {
                    eprintln!("{file}: {problem}");
                }
            }
        }
    }
    if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn explain(args: &[String]) -> ExitCode {
    match explain_json(args) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}

/// The JSON printed by `explain`, or the message for an unusable input.
pub fn explain_json(args: &[String]) -> Result<String, String> {
    let known = [
        "--policy",
        "--config",
        "--method",
        "--path",
        "--host",
        "--header",
        "--environment",
        "--now",
    ];
    let flags = Flags::parse(args, &known)?;
    let snapshot = load_policy(flags.required("--policy")?)?;
    let (mode, mut environment, sources) = match flags.get("--config") {
        Some(path) => {
            let config = PluginConfig::parse(read_file(path)?.as_bytes())
                .map_err(|e| format!("`{path}`: {e}"))?;
            (config.mode, config.environment, config.sources)
        }
        None => (Mode::Enforce, None, Sources::default()),
    };
    if let Some(env) = flags.get("--environment") {
        environment = Some(env.to_string());
    }
    let now = match flags.get("--now") {
        Some(text) => Timestamp::parse_rfc3339(text)
            .ok_or_else(|| format!("`--now`: not an RFC 3339 date-time `{text}`"))?,
        None => system_now(),
    };
    let method = flags.required("--method")?;
    let path = flags.required("--path")?;
    let host = flags.get("--host").unwrap_or("localhost");
    let headers = flags
        .all("--header")
        .map(|h| {
            h.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("`--header`: expected 'name: value', got `{h}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let request = Request::from_parts(&sources, method, host, path.as_bytes(), &headers);
    let decision: Decision<'_> = policy::decide(
        &snapshot,
        &request,
        &tenantgate_policy::Context::new(now, environment.as_deref()),
    );
    serde_json::to_string(&decision.explain(mode)).map_err(|e| e.to_string())
}

fn system_now() -> Timestamp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    Timestamp::from_unix_nanos(nanos)
}

fn plugin_config(args: &[String]) -> ExitCode {
    let result = (|| -> Result<String, String> {
        let flags = Flags::parse(args, &["--policy", "--mode", "--environment", "--compiled"])?;
        let path = flags.required("--policy")?;
        let snapshot = load_policy(path)?;
        let source = match flags.get("--compiled") {
            Some("true" | "yes" | "1") => {
                serde_json::json!({"compiled": tenantgate_policy::config::encode_base64(&policy::binary::encode(&snapshot))})
            }
            Some("false" | "no" | "0") | None => {
                let text = read_file(path)?;
                let inline: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|_| format!("`{path}` is compiled: use `--compiled true`"))?;
                serde_json::json!({"inline": inline})
            }
            Some(other) => {
                return Err(format!(
                    "`--compiled`: expected true or false, got `{other}`"
                ))
            }
        };
        let mut config = serde_json::json!({
            "mode": flags.get("--mode").unwrap_or("enforce"),
            "snapshot": source,
        });
        if let (Some(env), Some(object)) = (flags.get("--environment"), config.as_object_mut()) {
            object.insert("environment".into(), env.into());
        }
        let rendered = config.to_string();
        PluginConfig::parse(rendered.as_bytes()).map_err(|e| e.to_string())?;
        Ok(rendered)
    })();
    match result {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(message),
    }
}
