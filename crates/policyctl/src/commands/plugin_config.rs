//! `policyctl plugin-config`: a plugin configuration with the snapshot inline,
//! alone or in the manifest that installs the filter on Istio or Envoy Gateway.

use crate::{files, Error};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tenantgate_policy::config::{encode_base64, PluginConfig};
use tenantgate_policy::{binary, Snapshot};

/// Prints a plugin configuration that embeds a snapshot.
///
/// Validates FILE and prints a plugin configuration embedding it inline, as
/// one line of JSON: what goes into Envoy's `configuration` StringValue (or
/// Otoroshi's plug-in `config`). With `--compiled` the snapshot is embedded
/// compiled, base64 (`snapshot.compiled`): about a third of the size, and
/// each VM (or, in Otoroshi, each call) loads it without parsing JSON.
///
/// `--format istio` prints an Istio WasmPlugin, `--format envoy-gateway` an
/// Envoy Gateway EnvoyExtensionPolicy, each with this configuration and the
/// image `--image` names by digest (`oci://REGISTRY/REPO@sha256:...`, the
/// digest `make oci` prints), failing closed. The manifest is JSON after a
/// comment header: valid YAML, for `kubectl apply -f`.
#[derive(Debug, clap::Args)]
#[command(
    override_usage = "policyctl plugin-config --policy FILE [--mode enforce|audit] [--environment ENV]\n                             \
                            [--compiled] [--annotate-plan]\n                             \
                            [--format json|istio|envoy-gateway --image oci://REPO@sha256:DIGEST\n                             \
                             [--namespace NS] [--gateway NAME] [--pull-secret SECRET]]"
)]
pub struct Args {
    /// the snapshot (JSON; compiled or signed only with --compiled)
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
    /// enforce denies; audit lets every request through, marked
    #[arg(long, value_name = "MODE", default_value = "enforce", value_parser = ["enforce", "audit"])]
    mode: String,
    /// the gateway's environment (default: none)
    #[arg(long, value_name = "ENV")]
    environment: Option<String>,
    /// embed the snapshot compiled (`snapshot.compiled`) instead of as JSON
    #[arg(long)]
    compiled: bool,
    /// annotate allowed requests with the tenant's plan (`x-tenant-plan:
    /// paid|evaluation`, `annotations.plan`), for a rate limit that reads it
    #[arg(long)]
    annotate_plan: bool,
    /// json: the configuration alone; istio, envoy-gateway: the manifest
    #[arg(long, value_name = "FORMAT", default_value = "json", value_parser = ["json", "istio", "envoy-gateway"])]
    format: String,
    /// the filter's image, pinned: oci://REGISTRY/REPO@sha256:DIGEST
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// the manifest's namespace (default: istio-system for Istio, default for Envoy Gateway)
    #[arg(long, value_name = "NS")]
    namespace: Option<String>,
    /// the gateway: Istio selects its pods by the label `istio: NAME` (default
    /// ingressgateway); Envoy Gateway targets the Gateway NAME (default eg)
    #[arg(long, value_name = "NAME")]
    gateway: Option<String>,
    /// the Secret (in the manifest's namespace) with the registry's
    /// credentials, for a private registry
    #[arg(long, value_name = "SECRET")]
    pull_secret: Option<String>,
}

pub fn run(args: &Args) -> Result<(), Error> {
    let config = render(args)?;
    match args.format.as_str() {
        "istio" | "envoy-gateway" => {
            let image = image(args)?;
            let config: Value = serde_json::from_str(&config)?;
            let manifest = if args.format == "istio" {
                istio(args, &image, config)
            } else {
                envoy_gateway(args, &image, config)
            };
            print!("{}", with_header(args, &image, &manifest)?);
        }
        _ if args.image.is_some() => {
            return Err(Error::Manifest(
                "--image goes with --format istio|envoy-gateway".into(),
            ))
        }
        _ => println!("{config}"),
    }
    Ok(())
}

/// An image reference pinned by its manifest digest.
struct Image {
    /// `REGISTRY/REPO[:TAG]@sha256:HEX`, without `oci://`.
    reference: String,
    /// The digest's 64 hex digits.
    sha256: String,
}

fn image(args: &Args) -> Result<Image, Error> {
    let given = args.image.as_deref().unwrap_or_default();
    let problem = |why: &str| {
        Error::Manifest(format!(
            "--image `{given}`: {why} (oci://REGISTRY/REPO@sha256:DIGEST, the digest `make oci` prints)"
        ))
    };
    if args.image.is_none() {
        return Err(problem("needed with --format istio|envoy-gateway"));
    }
    let reference = given
        .strip_prefix("oci://")
        .ok_or_else(|| problem("not an oci:// reference"))?;
    let (repository, sha256) = reference
        .split_once("@sha256:")
        .ok_or_else(|| problem("not pinned by a digest"))?;
    let hex = sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex || repository.is_empty() || !repository.contains('/') {
        return Err(problem(
            "not REGISTRY/REPO@sha256: and 64 lower-case hex digits",
        ));
    }
    Ok(Image {
        reference: reference.to_string(),
        sha256: sha256.to_string(),
    })
}

/// Istio's WasmPlugin (extensions.istio.io/v1alpha1).
fn istio(args: &Args, image: &Image, config: Value) -> Value {
    let namespace = args.namespace.as_deref().unwrap_or("istio-system");
    let gateway = args.gateway.as_deref().unwrap_or("ingressgateway");
    let mut manifest = json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "tenantgate", "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"istio": gateway}},
            "url": format!("oci://{}", image.reference),
            "sha256": image.sha256,
            "phase": "AUTHZ",
            "failStrategy": "FAIL_CLOSE",
            "pluginConfig": config,
        },
    });
    let spec = manifest.get_mut("spec").and_then(Value::as_object_mut);
    if let (Some(secret), Some(spec)) = (&args.pull_secret, spec) {
        spec.insert("imagePullSecret".into(), secret.as_str().into());
    }
    manifest
}

/// Envoy Gateway's EnvoyExtensionPolicy (gateway.envoyproxy.io/v1alpha1).
fn envoy_gateway(args: &Args, image: &Image, config: Value) -> Value {
    let namespace = args.namespace.as_deref().unwrap_or("default");
    let gateway = args.gateway.as_deref().unwrap_or("eg");
    let mut image_source = json!({"url": image.reference, "sha256": image.sha256});
    if let (Some(secret), Some(object)) = (&args.pull_secret, image_source.as_object_mut()) {
        object.insert("pullSecretRef".into(), json!({"name": secret}));
    }
    json!({
        "apiVersion": "gateway.envoyproxy.io/v1alpha1",
        "kind": "EnvoyExtensionPolicy",
        "metadata": {"name": "tenantgate", "namespace": namespace},
        "spec": {
            "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway}],
            "wasm": [{
                "name": "tenantgate",
                "rootID": "tenantgate",
                "code": {
                    "type": "Image",
                    "image": image_source,
                },
                "failOpen": false,
                "config": config,
            }],
        },
    })
}

/// The manifest as indented JSON with sorted keys (the same bytes whatever
/// serde_json's map is), after a comment saying how it was made.
fn with_header(args: &Args, image: &Image, manifest: &Value) -> Result<String, Error> {
    let mut command = format!("policyctl plugin-config --policy {}", args.policy.display());
    if args.mode != "enforce" {
        command.push_str(&format!(" --mode {}", args.mode));
    }
    if let Some(environment) = &args.environment {
        command.push_str(&format!(" --environment {environment}"));
    }
    if args.compiled {
        command.push_str(" --compiled");
    }
    if args.annotate_plan {
        command.push_str(" --annotate-plan");
    }
    command.push_str(&format!(
        " --format {} --image oci://{}",
        args.format, image.reference
    ));
    if let Some(namespace) = &args.namespace {
        command.push_str(&format!(" --namespace {namespace}"));
    }
    if let Some(gateway) = &args.gateway {
        command.push_str(&format!(" --gateway {gateway}"));
    }
    if let Some(secret) = &args.pull_secret {
        command.push_str(&format!(" --pull-secret {secret}"));
    }
    let what = if args.format == "istio" {
        ISTIO_NOTES
    } else {
        ENVOY_GATEWAY_NOTES
    };
    let body = serde_json::to_string_pretty(&sorted(manifest))?;
    Ok(format!(
        "# Generated by: {command}\n\
         # Do not edit: regenerate it (README: Install on Istio / Install on Envoy Gateway).\n\
         # JSON is YAML: `kubectl apply -f` reads this file as it is.\n{what}{body}\n"
    ))
}

const ISTIO_NOTES: &str = "\
# phase AUTHZ: after Istio's authentication filters (jwt_authn from a RequestAuthentication,
#   so x-user-id can come from a verified token) and before its RBAC (AuthorizationPolicy
#   sees the x-tenant-* headers tenantgate sets).
# failStrategy FAIL_CLOSE: a module that cannot be fetched or loaded, or a VM that fails,
#   answers 5xx instead of letting requests bypass the access policy.
# sha256: the image manifest's digest; Istio refuses an image whose digest differs.
";

const ENVOY_GATEWAY_NOTES: &str = "\
# Envoy Gateway runs Wasm filters after its authentication filters (JWT from a SecurityPolicy,
#   so x-user-id can come from a verified token) and before its authorization (RBAC).
# failOpen false: a module that cannot be fetched or loaded, or a VM that fails, answers 5xx
#   instead of letting requests bypass the access policy.
# image.sha256: the image manifest's digest; Envoy Gateway refuses an image whose digest differs.
";

/// `value` with every object's keys in sorted order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The configuration, as one line of JSON that the filter accepts.
fn render(args: &Args) -> Result<String, Error> {
    let snapshot = files::load_policy(&args.policy)?;
    let source = if args.compiled {
        compiled_source(&snapshot)
    } else {
        inline_source(&args.policy)?
    };
    let mut config = json!({"mode": args.mode, "snapshot": source});
    if let (Some(environment), Some(object)) = (&args.environment, config.as_object_mut()) {
        object.insert("environment".into(), environment.as_str().into());
    }
    if let (true, Some(object)) = (args.annotate_plan, config.as_object_mut()) {
        object.insert("annotations".into(), json!({"plan": true}));
    }
    let rendered = config.to_string();
    // What the filter will do with it: a configuration it refuses is no use.
    PluginConfig::parse(rendered.as_bytes()).map_err(Error::RenderedConfig)?;
    Ok(rendered)
}

fn compiled_source(snapshot: &Snapshot) -> Value {
    json!({"compiled": encode_base64(&binary::encode(snapshot))})
}

/// The policy file's own JSON, so the configuration carries it as written.
fn inline_source(path: &Path) -> Result<Value, Error> {
    let bytes = files::read(path)?;
    let inline: Value = serde_json::from_slice(&bytes).map_err(|_| Error::CompiledPolicy {
        path: path.to_path_buf(),
    })?;
    Ok(json!({"inline": inline}))
}
