//! The filter as a Wasm OCI image, round trip: `policyctl oci` builds it (twice:
//! the same bytes), skopeo pushes it to a real registry (Debian's
//! `docker-registry`, the CNCF distribution registry) on a loopback port and
//! pulls it back by digest, the pulled image is checked the way Istio's and
//! Envoy Gateway's image fetchers read one, and the module it holds runs in
//! the real Envoy. Needs `make dist`, `make envoy` and `make oci-tools` (all
//! done by `make test`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::{json, Value};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{http_request, EnvoyBuilder, Upstream};

const DEMO: &str = include_str!("../../../policies/demo.json");
const REGISTRY: &str = "/usr/bin/docker-registry";
const TAG: &str = "roundtrip";

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(support::unique_name("tenantgate-oci"));
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `docker-registry serve` on 127.0.0.1 and a port the kernel picks (it logs
/// the address it listens on), storage in `dir`; killed by pid on drop.
struct Registry {
    child: Child,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        assert!(
            Path::new(REGISTRY).is_file(),
            "{REGISTRY} is missing: run `make oci-tools` (apt-get install docker-registry skopeo)"
        );
        let storage = dir.join("storage");
        fs::create_dir_all(&storage).unwrap();
        let config = dir.join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:0\n  secret: tenantgate-test\n",
                storage.display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("registry.out")).unwrap())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut registry = Registry { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(20);
        while registry.port == 0 {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = text
                .split("listening on 127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|port| port.parse().ok())
            {
                registry.port = port;
            } else if Instant::now() > deadline || registry.child.try_wait().unwrap().is_some() {
                panic!("the registry did not start:\n{text}");
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        registry
    }

    fn reference(&self, name: &str) -> String {
        format!("docker://127.0.0.1:{}/tenantgate{name}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (`make oci-tools` installs skopeo)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// skopeo with the policy that accepts any image (the default policy file
/// may be missing) and plain HTTP to the loopback registry.
fn skopeo(args: &[&str]) -> Output {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run("skopeo", &all)
}

fn policyctl_oci(out: &Path, tar: &Path) -> String {
    let out = run(
        support::policyctl_binary().to_str().unwrap(),
        &[
            "oci",
            "--module",
            support::default_wasm_path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--tar",
            tar.to_str().unwrap(),
            "--tag",
            TAG,
        ],
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

fn json_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&blob(layout, digest)).unwrap()
}

/// What Istio's `ImageFetcher.PrepareFetch` (and Envoy Gateway's copy of it)
/// does with an OCI manifest: not Docker's schema 2, so the *compat* variant
/// is tried first: the last layer must be `application/vnd.oci.image.layer.v1.tar+gzip`,
/// and the module is the tar entry whose base name is `plugin.wasm`. Extracted
/// here with GNU tar, not with the code that wrote it.
fn extract_as_istio_would(layout: &Path, manifest: &Value, into: &Path) -> PathBuf {
    assert_ne!(
        manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
        "{manifest}"
    );
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer = layers.last().unwrap();
    assert_eq!(
        layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
        "{manifest}"
    );
    let digest = layer["digest"].as_str().unwrap();
    let bytes = blob(layout, digest);
    assert_eq!(layer["size"], bytes.len());
    assert_eq!(tenantgate_sha256(&bytes), digest, "the layer's digest");
    let hex = digest.strip_prefix("sha256:").unwrap();
    let archive = layout.join("blobs/sha256").join(hex);
    fs::create_dir_all(into).unwrap();
    let listing = run("tar", &["-tzf", archive.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&listing.stdout), "plugin.wasm\n");
    run(
        "tar",
        &[
            "-xzf",
            archive.to_str().unwrap(),
            "-C",
            into.to_str().unwrap(),
        ],
    );
    into.join("plugin.wasm")
}

fn tenantgate_sha256(bytes: &[u8]) -> String {
    policyctl::oci::sha256_digest(bytes)
}

#[test]
fn the_image_round_trips_through_a_registry_and_runs_in_envoy() {
    let module_path = support::default_wasm_path();
    assert!(
        module_path.is_file(),
        "{} is missing: run `make dist`",
        module_path.display()
    );
    let module = fs::read(&module_path).unwrap();
    let scratch = Scratch::new();
    let dir = &scratch.0;

    // Reproducible: two builds, the same digest and the same tarball.
    let (built, built_tar) = (dir.join("built"), dir.join("built.tar"));
    let digest = policyctl_oci(&built, &built_tar);
    let again = policyctl_oci(&dir.join("again"), &dir.join("again.tar"));
    assert_eq!(digest, again);
    assert_eq!(
        fs::read(&built_tar).unwrap(),
        fs::read(dir.join("again.tar")).unwrap()
    );
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    let index: Value =
        serde_json::from_slice(&fs::read(built.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        TAG
    );

    // Push the layout and the tarball; the registry names both by the same digest.
    let registry = Registry::start(dir);
    let layout_ref = format!("oci:{}:{TAG}", built.display());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &layout_ref,
        &registry.reference(":layout"),
    ]);
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}:{TAG}", built_tar.display()),
        &registry.reference(":tarball"),
    ]);
    for tag in [":layout", ":tarball"] {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &registry.reference(tag),
        ]);
        assert_eq!(tenantgate_sha256(&raw.stdout), digest, "{tag}");
    }
    // The registry's own API, as an image fetcher asks it.
    let manifest_url = format!(
        "http://127.0.0.1:{}/v2/tenantgate/manifests/{digest}",
        registry.port
    );
    let served = ureq::get(&manifest_url)
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .call()
        .unwrap();
    assert_eq!(
        served.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    assert_eq!(
        served.headers()["content-type"].to_str().unwrap(),
        "application/vnd.oci.image.manifest.v1+json"
    );
    let mut served_bytes = Vec::new();
    served
        .into_body()
        .into_reader()
        .read_to_end(&mut served_bytes)
        .unwrap();
    assert_eq!(served_bytes, blob(&built, &digest));

    // Pull it back by digest into a new layout.
    let pulled = dir.join("pulled");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &registry.reference(&format!("@{digest}")),
        &format!("oci:{}:pulled", pulled.display()),
    ]);
    drop(registry);
    let pulled_index: Value =
        serde_json::from_slice(&fs::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(pulled_index["manifests"][0]["digest"], digest.as_str());
    let manifest = json_blob(&pulled, &digest);
    let config = json_blob(&pulled, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(config["rootfs"]["type"], "layers");
    let plugin = extract_as_istio_would(&pulled, &manifest, &dir.join("extracted"));
    let pulled_module = fs::read(&plugin).unwrap();
    assert!(
        pulled_module == module,
        "the pulled plugin.wasm ({} bytes) differs from {} ({} bytes)",
        pulled_module.len(),
        module_path.display(),
        module.len()
    );

    // The pulled module decides in the real Envoy.
    let snapshot: Value = serde_json::from_str(DEMO).unwrap();
    let config =
        json!({"mode": "enforce", "environment": "prod", "snapshot": {"inline": snapshot}});
    let upstream = Upstream::start();
    let envoy = EnvoyBuilder::new(upstream.port())
        .wasm(&plugin)
        .plugin_config(config.to_string())
        .start();
    let port = envoy.listen_port();
    let allowed = http_request(
        port,
        "GET",
        "/orders/1",
        "localhost",
        &[("x-api-key", "demo-storefront-key")],
    );
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.json()["headers"]["x-tenant-id"], "acme");
    let denied = http_request(
        port,
        "GET",
        "/orders/1",
        "localhost",
        &[("x-api-key", "demo-revoked-key")],
    );
    assert_eq!(denied.status, 401, "{denied:?}");
    assert_eq!(denied.json()["reason"], "api_key_revoked");
    let unknown = http_request(
        port,
        "GET",
        "/orders/1",
        "localhost",
        &[
            ("x-api-key", "demo-storefront-key"),
            ("x-tenant-id", "nope"),
        ],
    );
    assert_eq!(unknown.status, 403, "{unknown:?}");
    assert_eq!(unknown.json()["reason"], "unknown_organization");
    eprintln!(
        "oci round trip: {digest}, layer {} bytes, module {} bytes, allow 200 / deny {} / {}",
        blob(&pulled, manifest["layers"][0]["digest"].as_str().unwrap()).len(),
        module.len(),
        denied.status,
        unknown.status,
    );
}
