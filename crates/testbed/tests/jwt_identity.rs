//! Identity from verified tokens (extension x3) through a real Envoy 1.40:
//! `jwt_authn` verifies EdDSA tokens of two identity providers the test
//! creates (globex's and initech's, keys generated here), leaves the payload
//! in the dynamic metadata, and tenantgate decides from it
//! (`envoy/envoy-jwt.yaml.tmpl`). The rows are the shared token table
//! (`testdata/cases/token_decisions.json`) the core runs too, plus what only
//! Envoy can show: expired and mis-signed tokens never reach the filter.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use support::{http_request, Envoy, EnvoyBuilder, Response, Upstream};

const DEMO: &str = include_str!("../../../policies/demo.json");
const TABLE: &str = include_str!("../../../testdata/cases/token_decisions.json");
const GLOBEX: &str = "https://idp.globex.example";
const INITECH: &str = "https://login.initech.example";

/// One identity provider: an issuer and its signing key.
struct Provider {
    issuer: &'static str,
    kid: &'static str,
    key: SigningKey,
}

impl Provider {
    fn generate(issuer: &'static str, kid: &'static str) -> Provider {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        Provider {
            issuer,
            kid,
            key: SigningKey::from_bytes(&seed),
        }
    }

    fn jwks(&self) -> String {
        let x = B64.encode(self.key.verifying_key().as_bytes());
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": self.kid, "x": x}]})
            .to_string()
    }

    /// A compact JWS of `payload`, expiring `ttl_seconds` from now (negative: expired).
    fn sign(&self, payload: &Value, ttl_seconds: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut claims = payload.clone();
        claims["exp"] = json!(now + ttl_seconds);
        claims["iat"] = json!(now - 60);
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(signature.to_bytes()))
    }
}

struct Setup {
    globex: Provider,
    initech: Provider,
    envoy: Envoy,
    _upstream: Upstream,
}

fn start(mode: &str) -> Setup {
    assert!(
        support::default_wasm_path().exists(),
        "{} is missing: run `make dist`",
        support::default_wasm_path().display()
    );
    let globex = Provider::generate(GLOBEX, "globex-1");
    let initech = Provider::generate(INITECH, "initech-1");
    let template = std::fs::read_to_string(support::repo_path("envoy/envoy-jwt.yaml.tmpl"))
        .unwrap()
        .replace("{{JWKS_GLOBEX}}", &globex.jwks())
        .replace("{{JWKS_INITECH}}", &initech.jwks());
    let template_path =
        std::env::temp_dir().join(format!("{}.yaml.tmpl", support::unique_name("jwt")));
    std::fs::write(&template_path, template).unwrap();
    let table: Value = serde_json::from_str(TABLE).unwrap();
    let mut config = table["config"].clone();
    config["sources"]["token"]["mode"] = json!(mode);
    config["environment"] = json!("prod");
    config["snapshot"] = json!({"inline": serde_json::from_str::<Value>(DEMO).unwrap()});
    let upstream = Upstream::start();
    let envoy = EnvoyBuilder::new(upstream.port())
        .template(&template_path)
        .plugin_config(config.to_string())
        .start();
    let _ = std::fs::remove_file(&template_path);
    Setup {
        globex,
        initech,
        envoy,
        _upstream: upstream,
    }
}

impl Setup {
    fn provider(&self, issuer: &str) -> &Provider {
        match issuer {
            INITECH => &self.initech,
            _ => &self.globex,
        }
    }

    fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        self.send_to("localhost", method, path, headers)
    }

    fn send_to(&self, host: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        http_request(self.envoy.listen_port(), method, path, host, headers)
    }
}

/// What a case expects of a response: its status, and the deny reason or
/// the tenant and principal the upstream was told.
fn check(name: &str, expect: &Value, response: &Response) -> Option<String> {
    let want = expect["status"].as_u64().unwrap() as u16;
    if response.status != want {
        return Some(format!(
            "{name}: status {} (body {}), want {want}",
            response.status, response.body
        ));
    }
    if want != 200 {
        let body = response.json();
        return (body["reason"] != expect["reason"])
            .then(|| format!("{name}: deny body {body}, want {}", expect["reason"]));
    }
    let upstream = &response.json()["headers"];
    for (field, header) in [
        ("tenant", "x-tenant-id"),
        ("principal", "x-principal"),
        ("roles", "x-tenant-roles"),
    ] {
        let Some(want) = expect.get(field) else {
            continue;
        };
        let mut got = upstream.get(header).cloned().unwrap_or(Value::Null);
        if let (Some(list), Value::Array(_)) = (got.as_str(), want) {
            let items = list.split(',').filter(|r| !r.is_empty());
            got = Value::Array(items.map(|r| json!(r)).collect());
        }
        if got != *want {
            return Some(format!("{name}: upstream {header} is {got}, want {want}"));
        }
    }
    None
}

#[test]
fn token_table_through_jwt_authn_and_envoy() {
    run_table("identity");
}

#[test]
fn asserted_token_table_through_jwt_authn_and_envoy() {
    run_table("asserted");
}

/// The table's cases of `mode` (`token_mode`, default identity), each
/// signed by its issuer's provider and sent through Envoy.
fn run_table(mode: &str) {
    let setup = start(mode);
    let table: Value = serde_json::from_str(TABLE).unwrap();
    let cases: Vec<&Value> = table["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c.get("token_mode")
                .and_then(Value::as_str)
                .unwrap_or("identity")
                == mode
        })
        .collect();
    assert!(cases.len() >= 10, "only {} {mode} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let bearer = case.get("token").map(|payload| {
            let issuer = payload["iss"].as_str().unwrap_or(GLOBEX);
            format!("Bearer {}", setup.provider(issuer).sign(payload, 600))
        });
        let mut headers: Vec<(String, String)> = case
            .get("headers")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(bearer) = bearer {
            headers.push(("authorization".into(), bearer));
        }
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let method = case["method"].as_str().unwrap();
        let host = case
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or("localhost");
        let response = setup.send_to(host, method, case["path"].as_str().unwrap(), &headers);
        failures.extend(check(name, &case["expect"], &response));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn tokens_envoy_refuses_never_reach_the_filter_or_the_upstream() {
    let setup = start("identity");
    let alice = json!({"iss": GLOBEX, "sub": "alice"});
    let expired = setup.globex.sign(&alice, -600);
    // Initech's key signing, under globex's key id, a token that claims globex's issuer.
    let impostor = Provider {
        issuer: GLOBEX,
        kid: setup.globex.kid,
        key: setup.initech.key.clone(),
    };
    assert_eq!(impostor.issuer, GLOBEX);
    let forged = impostor.sign(&alice, 600);
    // The payload header a client might hope the filter reads: it never does.
    let payload_header = B64.encode(alice.to_string());
    for (what, token) in [
        ("expired", &expired),
        ("signed by another issuer's key", &forged),
    ] {
        let bearer = format!("Bearer {token}");
        let response = setup.send("GET", "/orders/1", &[("authorization", &bearer)]);
        assert_eq!(response.status, 401, "{what}: {response:?}");
        assert!(
            response.body.starts_with("Jwt") && !response.body.contains("\"headers\""),
            "{what}: answered by jwt_authn, not the upstream: {}",
            response.body
        );
    }
    let response = setup.send(
        "GET",
        "/orders/1",
        &[("x-jwt-payload", &payload_header), ("x-user-id", "alice")],
    );
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(response.json()["reason"], "missing_credentials");
    let valid = format!("Bearer {}", setup.globex.sign(&alice, 600));
    let response = setup.send("GET", "/orders/1", &[("authorization", &valid)]);
    assert_eq!(response.status, 200, "{response:?}");
}
