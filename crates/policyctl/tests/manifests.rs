//! The Istio and Envoy Gateway manifests: what `policyctl plugin-config
//! --format istio|envoy-gateway` prints validates against each project's own
//! CRD schema (vendored in testdata/crds/, see its README), carries the same
//! plugin configuration the Envoy tests run, is pinned by an image digest, and
//! the copies in envoy/ are exactly its output.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Value};
use tenantgate_policy::config::PluginConfig;
mod support;
use support::{policyctl, repo};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Kind {
    format: &'static str,
    committed: &'static str,
    schema: &'static str,
}

const ISTIO: Kind = Kind {
    format: "istio",
    committed: "envoy/istio-wasmplugin.yaml",
    schema: "testdata/crds/istio-wasmplugin.v1alpha1.schema.json",
};
const ENVOY_GATEWAY: Kind = Kind {
    format: "envoy-gateway",
    committed: "envoy/envoy-gateway-extension-policy.yaml",
    schema: "testdata/crds/envoy-gateway-envoyextensionpolicy.v1alpha1.schema.json",
};

/// The manifest for the demo configuration the Envoy tests use.
fn generate(kind: &Kind, image: &str) -> String {
    let out = policyctl(&[
        "plugin-config",
        "--policy",
        "policies/demo.json",
        "--environment",
        "prod",
        "--format",
        kind.format,
        "--image",
        image,
    ]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The JSON document after the comment header (JSON is YAML 1.2).
fn document(text: &str) -> Value {
    let body: String = text
        .lines()
        .skip_while(|line| line.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON after the header: {e}"))
}

/// As a strict `kubectl apply`: an object schema that lists its properties
/// and does not keep unknown fields refuses any other field.
fn strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let closed = map.contains_key("properties")
                && !map.contains_key("additionalProperties")
                && map.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true));
            if closed {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(strict);
        }
        Value::Array(items) => items.iter_mut().for_each(strict),
        _ => {}
    }
}

fn validator(kind: &Kind) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo().join(kind.schema)).unwrap();
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    // Every object has these, whatever its CRD's schema says of them.
    let implicit = [
        ("apiVersion", json!({"type": "string"})),
        ("kind", json!({"type": "string"})),
        ("metadata", json!({"type": "object"})),
    ];
    let properties = schema["properties"].as_object_mut().unwrap();
    for (name, field) in implicit {
        properties.entry(name).or_insert(field);
    }
    strict(&mut schema);
    // OpenAPI 3.0 schemas are draft 4 JSON Schema; Kubernetes checks formats
    // its own way (Go durations, ...), so formats are left out.
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(&schema)
        .unwrap()
}

fn errors(kind: &Kind, manifest: &Value) -> Vec<String> {
    validator(kind)
        .iter_errors(manifest)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// The configuration in the manifest, wherever the CRD keeps it.
fn plugin_config(kind: &Kind, manifest: &Value) -> Value {
    match kind.format {
        "istio" => manifest["spec"]["pluginConfig"].clone(),
        _ => manifest["spec"]["wasm"][0]["config"].clone(),
    }
}

fn image_of(kind: &Kind, manifest: &Value) -> (String, String) {
    match kind.format {
        "istio" => (
            manifest["spec"]["url"].as_str().unwrap().to_string(),
            manifest["spec"]["sha256"].as_str().unwrap().to_string(),
        ),
        _ => {
            let image = &manifest["spec"]["wasm"][0]["code"]["image"];
            (
                format!("oci://{}", image["url"].as_str().unwrap()),
                image["sha256"].as_str().unwrap().to_string(),
            )
        }
    }
}

#[test]
fn generated_manifests_validate_against_the_crd_schemas() {
    for kind in [&ISTIO, &ENVOY_GATEWAY] {
        let image = format!("oci://registry.example.com/tenantgate@{DIGEST}");
        let manifest = document(&generate(kind, &image));
        let problems = errors(kind, &manifest);
        assert!(problems.is_empty(), "{}: {problems:#?}", kind.format);
        // The group, version and kind the vendored schema belongs to.
        let (api_version, kind_name) = match kind.format {
            "istio" => ("extensions.istio.io/v1alpha1", "WasmPlugin"),
            _ => ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"),
        };
        assert_eq!(manifest["apiVersion"], api_version);
        assert_eq!(manifest["kind"], kind_name);
        // The configuration is the one the Envoy tests (envoy_e2e.rs) run,
        // and the filter's own parser takes it.
        let demo: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("policies/demo.json")).unwrap(),
        )
        .unwrap();
        let config = plugin_config(kind, &manifest);
        assert_eq!(
            config,
            json!({"mode": "enforce", "environment": "prod", "snapshot": {"inline": demo}})
        );
        PluginConfig::parse(config.to_string().as_bytes()).unwrap();
        // Pinned: the reference and the checksum name the same digest.
        let (url, sha256) = image_of(kind, &manifest);
        assert_eq!(url, image);
        assert_eq!(format!("sha256:{sha256}"), DIGEST);
    }
}

#[test]
fn the_manifests_are_the_deployments_the_filter_expects() {
    let image = format!("oci://registry.example.com/tenantgate@{DIGEST}");
    let istio = document(&generate(&ISTIO, &image));
    assert_eq!(istio["spec"]["failStrategy"], "FAIL_CLOSE");
    assert_eq!(istio["spec"]["phase"], "AUTHZ");
    // WasmPlugin's CEL rule: at most one of selector, targetRef, targetRefs.
    let spec = istio["spec"].as_object().unwrap();
    let selectors = ["selector", "targetRef", "targetRefs"]
        .iter()
        .filter(|k| spec.contains_key(**k))
        .count();
    assert_eq!(selectors, 1);
    let eg = document(&generate(&ENVOY_GATEWAY, &image));
    let wasm = &eg["spec"]["wasm"][0];
    assert_eq!(wasm["failOpen"], false);
    // EnvoyExtensionPolicy's CEL rules: type Image has image and no http;
    // targetRefs (not targetRef) naming a Gateway API kind.
    assert_eq!(wasm["code"]["type"], "Image");
    assert!(wasm["code"].get("http").is_none());
    assert!(eg["spec"].get("targetRef").is_none());
    assert_eq!(
        eg["spec"]["targetRefs"][0]["group"],
        "gateway.networking.k8s.io"
    );
    assert_eq!(eg["spec"]["targetRefs"][0]["kind"], "Gateway");
}

#[test]
fn a_pull_secret_goes_where_each_crd_wants_it() {
    let image = format!("oci://registry.example.com/tenantgate@{DIGEST}");
    for kind in [&ISTIO, &ENVOY_GATEWAY] {
        let out = policyctl(&[
            "plugin-config",
            "--policy",
            "policies/demo.json",
            "--format",
            kind.format,
            "--image",
            &image,
            "--pull-secret",
            "registry-credentials",
        ]);
        assert!(out.status.success(), "{out:?}");
        let manifest = document(&String::from_utf8(out.stdout).unwrap());
        let problems = errors(kind, &manifest);
        assert!(problems.is_empty(), "{}: {problems:#?}", kind.format);
        let secret = match kind.format {
            "istio" => manifest["spec"]["imagePullSecret"].clone(),
            _ => manifest["spec"]["wasm"][0]["code"]["image"]["pullSecretRef"]["name"].clone(),
        };
        assert_eq!(secret, "registry-credentials", "{}", kind.format);
    }
}

#[test]
fn the_schemas_refuse_what_a_cluster_would_refuse() {
    let image = format!("oci://registry.example.com/tenantgate@{DIGEST}");
    let istio = document(&generate(&ISTIO, &image));
    let eg = document(&generate(&ENVOY_GATEWAY, &image));
    type Breaks = Box<dyn Fn(&mut Value)>;
    let broken: [(&Kind, &str, Breaks); 6] = [
        (
            &ISTIO,
            "failStrategy",
            Box::new(|m| m["spec"]["failStrategy"] = json!("FAIL_SOMETIMES")),
        ),
        (
            &ISTIO,
            "sha256",
            Box::new(|m| m["spec"]["sha256"] = json!(DIGEST)),
        ),
        (
            &ISTIO,
            "failstrategy",
            Box::new(|m| m["spec"]["failstrategy"] = json!("FAIL_OPEN")),
        ),
        (
            &ISTIO,
            "url",
            Box::new(|m| {
                m["spec"].as_object_mut().unwrap().remove("url");
            }),
        ),
        (
            &ENVOY_GATEWAY,
            "failOpen",
            Box::new(|m| m["spec"]["wasm"][0]["failOpen"] = json!("no")),
        ),
        (
            &ENVOY_GATEWAY,
            "imag",
            Box::new(|m| {
                let code = m["spec"]["wasm"][0]["code"].as_object_mut().unwrap();
                let image = code.remove("image").unwrap();
                code.insert("imag".into(), image);
            }),
        ),
    ];
    for (kind, field, breaks) in broken {
        let mut manifest = if kind.format == "istio" {
            istio.clone()
        } else {
            eg.clone()
        };
        breaks(&mut manifest);
        let problems = errors(kind, &manifest);
        assert!(
            problems.iter().any(|p| p.contains(field)),
            "{}: breaking `{field}` went unnoticed: {problems:?}",
            kind.format
        );
    }
}

#[test]
fn the_committed_manifests_are_the_commands_output() {
    for kind in [&ISTIO, &ENVOY_GATEWAY] {
        let committed = std::fs::read_to_string(repo().join(kind.committed)).unwrap();
        let manifest = document(&committed);
        let (image, sha256) = image_of(kind, &manifest);
        assert!(
            image.ends_with(&format!("@sha256:{sha256}")) && sha256.len() == 64,
            "{}: not pinned by a digest: {image}",
            kind.committed
        );
        assert!(
            committed == generate(kind, &image),
            "{} is not what `policyctl plugin-config --format {}` prints: run `make manifests`",
            kind.committed,
            kind.format
        );
        let problems = errors(kind, &manifest);
        assert!(problems.is_empty(), "{}: {problems:#?}", kind.committed);
    }
}

#[test]
fn manifests_need_an_image_pinned_by_digest() {
    for image in [
        None,
        Some("registry.example.com/tenantgate@sha256:00"),
        Some("oci://registry.example.com/tenantgate:0.2.0"),
        Some("oci://registry.example.com/tenantgate@sha256:0123"),
    ] {
        let mut args = vec![
            "plugin-config",
            "--policy",
            "policies/demo.json",
            "--format",
            "istio",
        ];
        if let Some(image) = image {
            args.extend(["--image", image]);
        }
        let out = policyctl(&args);
        assert_eq!(out.status.code(), Some(2), "{image:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--image"));
    }
    // And an image is no use without a manifest.
    let image = format!("oci://registry.example.com/tenantgate@{DIGEST}");
    let out = policyctl(&[
        "plugin-config",
        "--policy",
        "policies/demo.json",
        "--image",
        &image,
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
