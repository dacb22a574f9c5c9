//! The Otoroshi build (`dist/tenantgate-otoroshi.wasm`, `make dist`) run as
//! Otoroshi runs it: through Extism, a fresh instance per call, no WASI, no
//! host function, one JSON string in and one out. The inputs are shaped like
//! Otoroshi's plugin contexts (`testdata/otoroshi/`), the route and our
//! settings embedded as Otoroshi embeds them.
//!
//! The shared decision table (`testdata/cases/demo_decisions.json`) runs here too,
//! so the Envoy build (tests/envoy_e2e.rs) and the Otoroshi build are held to
//! one table.
#![cfg(not(target_arch = "wasm32"))]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, Wasm};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::OnceLock;

const DEMO: &str = include_str!("../../../policies/demo.json");
const TABLE: &str = include_str!("../../../testdata/cases/demo_decisions.json");
const TOKEN_TABLE: &str = include_str!("../../../testdata/cases/token_decisions.json");
const ACCESS_CONTEXT: &str = include_str!("../../../testdata/otoroshi/access-context.json");
const ROUTE: &str = include_str!("../../../testdata/otoroshi/route.json");
const APIKEY_LIGHT: &str = include_str!("../../../testdata/otoroshi/apikey-light.json");
const APIKEY_FULL: &str = include_str!("../../../testdata/otoroshi/apikey-full.json");
const USER: &str = include_str!("../../../testdata/otoroshi/user.json");
const IDENTITIES: &str = include_str!("../../../testdata/otoroshi/identities.json");
/// What the example route (`otoroshi/route-example.json`) gives the plug-in.
const MEMORY_PAGES: u32 = 256;

/// The only imports the module may have: Extism's kernel, which every Extism
/// host (Otoroshi's included) links; never an Otoroshi host function or WASI.
const ALLOWED_IMPORTS: &[&str] = &[
    "input_length",
    "input_load_u8",
    "input_load_u64",
    "alloc",
    "free",
    "length",
    "load_u8",
    "load_u64",
    "store_u8",
    "store_u64",
    "output_set",
];

fn wasm_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("dist/tenantgate-otoroshi.wasm")
}

fn wasm_bytes() -> Vec<u8> {
    let path = wasm_path();
    assert!(
        path.exists(),
        "{} is missing: run `make dist` first",
        path.display()
    );
    std::fs::read(&path).unwrap()
}

/// Compiled once, instantiated per call (as Otoroshi does).
fn compiled() -> &'static CompiledPlugin {
    static COMPILED: OnceLock<CompiledPlugin> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let manifest = Manifest::new([Wasm::data(wasm_bytes())]).with_memory_max(MEMORY_PAGES);
        PluginBuilder::new(manifest)
            .with_wasi(false)
            .compile()
            .expect("the module compiles and links with no host function and no WASI")
    })
}

/// The dist module with `policy` (a snapshot document) baked in by `policyctl bake`.
fn baked(policy: &Value) -> CompiledPlugin {
    let snapshot = tenantgate_policy::load_snapshot(&policy.to_string()).unwrap();
    let bytes = tenantgate_policy::binary::encode(&snapshot);
    let baked = policyctl::bake::bake(&wasm_bytes(), &bytes).unwrap();
    let manifest = Manifest::new([Wasm::data(baked.module)]).with_memory_max(MEMORY_PAGES);
    PluginBuilder::new(manifest)
        .with_wasi(false)
        .compile()
        .unwrap()
}

/// The base64 of the compiled form of `policy` (`snapshot.compiled`).
fn compiled_base64(policy: &Value) -> String {
    let snapshot = tenantgate_policy::load_snapshot(&policy.to_string()).unwrap();
    tenantgate_policy::config::encode_base64(&tenantgate_policy::binary::encode(&snapshot))
}

fn call_on(plugin: &CompiledPlugin, function: &str, input: &Value) -> Value {
    let mut instance = Plugin::new_from_compiled(plugin).unwrap();
    let out = instance
        .call::<&[u8], &[u8]>(function, &serde_json::to_vec(input).unwrap())
        .unwrap_or_else(|e| panic!("{function} failed: {e}"))
        .to_vec();
    serde_json::from_slice(&out).unwrap()
}

fn call_raw(function: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut plugin = Plugin::new_from_compiled(compiled()).map_err(|e| e.to_string())?;
    plugin
        .call::<&[u8], &[u8]>(function, input)
        .map(<[u8]>::to_vec)
        .map_err(|e| e.to_string())
}

fn call(function: &str, input: &Value) -> Value {
    let out = call_raw(function, &serde_json::to_vec(input).unwrap())
        .unwrap_or_else(|e| panic!("{function} failed: {e}"));
    serde_json::from_slice(&out).unwrap()
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn demo() -> Value {
    fixture(DEMO)
}

/// The demo snapshot with the Otoroshi identities of `identities.json`.
fn demo_with_identities() -> Value {
    let mut snapshot = demo();
    let identities = fixture(IDENTITIES);
    for (kind, field) in [
        ("apps", "otoroshi_client_ids"),
        ("users", "otoroshi_emails"),
    ] {
        for item in snapshot[kind].as_array_mut().unwrap() {
            let id = item["id"].as_str().unwrap().to_string();
            if let Some(list) = identities[kind].get(&id) {
                item[field] = list.clone();
            }
        }
    }
    snapshot
}

fn settings(snapshot: Value) -> Value {
    json!({"environment": "prod", "snapshot": {"inline": snapshot}})
}

/// Replaces every `"__NAME__"` string in `value`.
/// Settings with `snapshot` inline and compiled: Otoroshi identities map
/// the same from both.
fn both_forms(snapshot: Value) -> [Value; 2] {
    let compiled =
        json!({"environment": "prod", "snapshot": {"compiled": compiled_base64(&snapshot)}});
    [settings(snapshot), compiled]
}

fn fill(value: &mut Value, name: &str, with: &Value) {
    match value {
        Value::String(s) if s == name => *value = with.clone(),
        Value::Array(items) => items.iter_mut().for_each(|v| fill(v, name, with)),
        Value::Object(map) => map.values_mut().for_each(|v| fill(v, name, with)),
        _ => {}
    }
}

/// A request of a test: method, path with query, headers in order.
struct Req<'a> {
    method: &'a str,
    uri: &'a str,
    headers: &'a [(&'a str, &'a str)],
}

fn get(uri: &str) -> Req<'_> {
    Req {
        method: "GET",
        uri,
        headers: &[],
    }
}

/// An Otoroshi `ValidateAccess` context for `req`, our `settings` in
/// `config.config` and in the route (twice, as Otoroshi passes it).
fn access_context(settings: &Value, req: &Req<'_>) -> Value {
    let mut route = fixture(ROUTE);
    fill(&mut route, "__SETTINGS__", settings);
    let mut ctx = fixture(ACCESS_CONTEXT);
    fill(&mut ctx, "__SETTINGS__", settings);
    fill(&mut ctx, "__ROUTE__", &route);
    let request = &mut ctx["request"];
    request["method"] = req.method.into();
    request["uri"] = req.uri.into();
    let (path, query) = req.uri.split_once('?').unwrap_or((req.uri, ""));
    request["path"] = path.into();
    let mut query_map = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let values = query_map.entry(k.to_string()).or_insert_with(|| json!([]));
        values.as_array_mut().unwrap().push(v.into());
    }
    request["query"] = Value::Object(query_map);
    // Otoroshi passes one value per header name: the first.
    let headers = request["headers"].as_object_mut().unwrap();
    for (name, value) in req.headers {
        if name.eq_ignore_ascii_case("host") {
            headers.remove("Host");
        }
        if !headers.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            headers.insert(name.to_string(), (*value).into());
        }
    }
    ctx
}

/// The `transform_request` context: the access context plus the request
/// Otoroshi is about to send to the backend of `route.json`.
fn transform_context(settings: &Value, req: &Req<'_>) -> Value {
    let mut ctx = access_context(settings, req);
    let mut headers = Map::new();
    for (name, value) in ctx["request"]["headers"].as_object().unwrap() {
        // Otoroshi's own pseudo headers do not go upstream; Host is the backend's.
        if [
            "Remote-Address",
            "Timeout-Access",
            "Raw-Request-URI",
            "Tls-Session-Info",
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        if name.eq_ignore_ascii_case("host") {
            headers.insert(name.clone(), "backend.internal:8080".into());
        } else {
            headers.insert(name.clone(), value.clone());
        }
    }
    let otoroshi_request = json!({
        "url": format!("http://backend.internal:8080{}", req.uri),
        "method": req.method,
        "headers": headers,
        "version": "HTTP/1.1",
        "client_cert_chain": null,
        "backend": null,
        "cookies": []
    });
    ctx["raw_request"] = otoroshi_request.clone();
    ctx["otoroshi_request"] = otoroshi_request;
    ctx["request_body_bytes"] = Value::Null;
    ctx["config"]["functionName"] = "transform_request".into();
    ctx
}

/// `ctx` with the member at `pointer` set (its parent object must exist).
fn with(mut ctx: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = if parent.is_empty() {
        &mut ctx
    } else {
        ctx.pointer_mut(parent)
            .unwrap_or_else(|| panic!("no {parent} in the context"))
    };
    parent
        .as_object_mut()
        .unwrap()
        .insert(key.to_string(), value);
    ctx
}

/// The reason code of an access denial (`<reason>: <text>`).
fn denied(out: &Value) -> (u64, String) {
    assert_eq!(out["result"], false, "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    let code = message.split(':').next().unwrap().to_string();
    (out["error"]["status"].as_u64().unwrap(), code)
}

fn allowed(out: &Value) {
    assert_eq!(out, &json!({"result": true}));
}

#[test]
fn the_module_imports_only_extism_kernel_functions() {
    let imports = wasm_imports(&wasm_bytes());
    assert!(!imports.is_empty());
    for (module, name) in &imports {
        assert_eq!(module, "extism:host/env", "{module}::{name}");
        assert!(
            ALLOWED_IMPORTS.contains(&name.as_str()),
            "imports {module}::{name}"
        );
    }
    // And it links with nothing else: no WASI, no host function.
    Plugin::new_from_compiled(compiled()).unwrap();
}

#[test]
fn allow_and_the_shell_s_own_denials() {
    let demo_settings = settings(demo());
    let key = [("x-api-key", "demo-storefront-key")];
    let req = Req {
        method: "GET",
        uri: "/orders/1",
        headers: &key,
    };
    allowed(&call("access", &access_context(&demo_settings, &req)));
    // No snapshot: 503 no_policy, unless fail_open.
    let none = access_context(&json!({"environment": "prod"}), &req);
    assert_eq!(denied(&call("access", &none)), (503, "no_policy".into()));
    let open = access_context(&json!({"fail_open": true}), &req);
    allowed(&call("access", &open));
    // No clock in the attributes: 503 host_error (fail closed).
    let no_clock = with(access_context(&demo_settings, &req), "/attrs", json!({}));
    assert_eq!(
        denied(&call("access", &no_clock)),
        (503, "host_error".into())
    );
    // RequestStart (Unix ms) is read before RequestTimestamp: 2026-02-01 is
    // after demo-expired-key's expiry.
    let expired = [("x-api-key", "demo-expired-key")];
    let req_expired = Req {
        headers: &expired,
        ..get("/orders/1")
    };
    let ctx = with(
        access_context(&demo_settings, &req_expired),
        "/attrs/otoroshi.core.RequestStart",
        json!(1_769_904_000_000_i64),
    );
    assert_eq!(
        denied(&call("access", &ctx)),
        (401, "api_key_expired".into())
    );
    // Input that is not a JSON object: a result, host_error.
    let garbage: Value = serde_json::from_slice(&call_raw("access", b"not json").unwrap()).unwrap();
    assert_eq!(denied(&garbage), (503, "host_error".into()));
}

#[test]
fn an_invalid_configuration_denies_without_saying_why_and_check_config_says_why() {
    let req = get("/orders/1");
    for bad in [
        json!({"mode": "block"}),
        json!({"snapshot": {"inline": {"revision": ""}}}),
        json!({"snapshot": {"remote": {"cluster": "policy"}}}),
        json!({"otoroshi": {"fallback": true}}),
    ] {
        let out = call("access", &access_context(&bad, &req));
        assert_eq!(denied(&out), (503, "no_policy".into()), "{bad}");
        let message = out["error"]["message"].as_str().unwrap();
        assert!(message.contains("configuration is invalid"), "{message}");
        let check = call("check_config", &bad);
        assert_eq!(check["ok"], false, "{bad}");
        assert!(!check["error"].as_str().unwrap().is_empty());
    }
    let check = call("check_config", &settings(demo()));
    assert_eq!(check["ok"], true);
    assert_eq!(check["revision"], "r1");
    assert_eq!(check["api_keys"], 11);
    // The settings may also come as a JSON string.
    let as_string = Value::String(settings(demo()).to_string());
    let key = [("x-api-key", "demo-storefront-key")];
    let req = Req {
        headers: &key,
        ..get("/orders/1")
    };
    allowed(&call("access", &access_context(&as_string, &req)));
}

#[test]
fn transform_strips_forged_headers_and_annotates_allowed_requests() {
    let forged = [
        ("x-api-key", "demo-storefront-key"),
        // Also the tenant selector: read first, then replaced by ours.
        ("X-Tenant-Id", "acme-corp"),
        ("x-principal", "app:admin"),
        ("X-Policy-Decision", "allow"),
        ("x-tenant-roles", "admin"),
    ];
    let req = Req {
        headers: &forged,
        ..get("/orders/1")
    };
    let out = call(
        "transform_request",
        &transform_context(&settings(demo()), &req),
    );
    let headers = out["headers"].as_object().unwrap();
    let lower: Vec<String> = headers.keys().map(|k| k.to_ascii_lowercase()).collect();
    for name in [
        "x-tenant-id",
        "x-principal",
        "x-policy-decision",
        "x-tenant-roles",
    ] {
        assert_eq!(
            lower.iter().filter(|k| *k == name).count(),
            usize::from(name != "x-policy-decision"),
            "{name} in {out}"
        );
    }
    assert_eq!(headers["x-tenant-id"], "acme");
    assert_eq!(headers["x-tenant-handle"], "acme-corp");
    assert_eq!(headers["x-tenant-teams"], "acme-platform");
    assert_eq!(headers["x-tenant-roles"], "api-consumer");
    assert_eq!(headers["x-principal"], "app:acme-storefront");
    assert_eq!(headers["x-policy-revision"], "r1");
    // Everything else goes through as Otoroshi prepared it.
    assert_eq!(headers["Host"], "backend.internal:8080");
    assert_eq!(headers["Accept"], "*/*");
    assert_eq!(headers["x-api-key"], "demo-storefront-key");
    assert_eq!(out["url"], "http://backend.internal:8080/orders/1");

    // A denied request (access has refused it already) gets nothing added,
    // and the forged copies are still removed.
    let revoked = [
        ("x-api-key", "demo-revoked-key"),
        ("X-Tenant-Id", "acme"),
        ("x-principal", "app:acme-storefront"),
    ];
    let req = Req {
        headers: &revoked,
        ..get("/orders/1")
    };
    let out = call(
        "transform_request",
        &transform_context(&settings(demo()), &req),
    );
    let headers = out["headers"].as_object().unwrap();
    assert!(
        !headers
            .keys()
            .any(|k| k.to_ascii_lowercase().starts_with("x-tenant-")
                || k.eq_ignore_ascii_case("x-principal")
                || k.eq_ignore_ascii_case("x-policy-revision")),
        "{out}"
    );
    // Fail-open without a snapshot: stripped, nothing added.
    let out = call(
        "transform_request",
        &transform_context(&json!({"fail_open": true}), &req),
    );
    assert!(!out["headers"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.eq_ignore_ascii_case("x-tenant-id")));
    // Input that is not a JSON object fails the call: Otoroshi answers 400
    // rather than forwarding headers nobody stripped.
    assert!(call_raw("transform_request", b"[]").is_err());
}

#[test]
fn the_query_api_key_authenticates_and_never_reaches_the_backend() {
    let req = get("/orders/1?page=2&apikey=demo-storefront-key&sort=asc");
    let demo_settings = settings(demo());
    allowed(&call("access", &access_context(&demo_settings, &req)));
    // Two keys in the query are ambiguous (v1.1); both are still removed.
    let twice = get("/orders/1?page=2&apikey=demo-storefront-key&apikey=again&sort=asc");
    assert_eq!(
        denied(&call("access", &access_context(&demo_settings, &twice))),
        (401, "ambiguous_credentials".into())
    );
    let out = call(
        "transform_request",
        &transform_context(&demo_settings, &twice),
    );
    assert_eq!(
        out["url"],
        "http://backend.internal:8080/orders/1?page=2&sort=asc"
    );
    let out = call(
        "transform_request",
        &transform_context(&demo_settings, &req),
    );
    assert_eq!(
        out["url"],
        "http://backend.internal:8080/orders/1?page=2&sort=asc"
    );
    assert_eq!(out["headers"]["x-principal"], "app:acme-storefront");
    // Removed whatever the decision, and with a renamed parameter.
    let revoked = get("/orders/1?apikey=demo-revoked-key");
    let out = call(
        "transform_request",
        &transform_context(&demo_settings, &revoked),
    );
    assert_eq!(out["url"], "http://backend.internal:8080/orders/1");
    let mut renamed = demo_settings.clone();
    renamed["sources"] = json!({"api_key_query": "key"});
    let req = get("/orders/1?key=demo-storefront-key&apikey=kept");
    allowed(&call("access", &access_context(&renamed, &req)));
    let out = call("transform_request", &transform_context(&renamed, &req));
    assert_eq!(
        out["url"],
        "http://backend.internal:8080/orders/1?apikey=kept"
    );
}

/// An access context carrying Otoroshi's validated apikey (light form and the
/// full one in the attributes).
fn with_apikey(ctx: Value, client_id: &str, read_only: bool, loc: Value) -> Value {
    let mut light = fixture(APIKEY_LIGHT);
    light["clientId"] = client_id.into();
    let mut full = fixture(APIKEY_FULL);
    full["clientId"] = client_id.into();
    full["readOnly"] = read_only.into();
    full["_loc"] = loc;
    let ctx = with(ctx, "/apikey", light);
    let mut ctx = ctx;
    ctx["attrs"]["otoroshi.core.ApiKey"] = full;
    ctx
}

#[test]
fn otoroshi_apikeys_are_placed_by_the_snapshot_extension() {
    for snapshot_settings in both_forms(demo_with_identities()) {
        let acme = json!({"tenant": "acme", "teams": ["acme-platform"]});
        let ctx = |req: &Req<'_>, client: &str, read_only: bool| {
            with_apikey(
                access_context(&snapshot_settings, req),
                client,
                read_only,
                acme.clone(),
            )
        };
        allowed(&call(
            "access",
            &ctx(&get("/orders/1"), "oto-storefront", false),
        ));
        // The storefront's right on acme-platform is read.
        let post = Req {
            method: "POST",
            ..get("/orders/1")
        };
        assert_eq!(
            denied(&call("access", &ctx(&post, "oto-storefront", false))),
            (403, "team_access_denied".into())
        );
        // The ops console writes, unless Otoroshi's key is read-only.
        allowed(&call("access", &ctx(&post, "oto-ops", false)));
        assert_eq!(
            denied(&call("access", &ctx(&post, "oto-ops", true))),
            (403, "read_only_key".into())
        );
        // Ranked before the request's own API key.
        let revoked = [("x-api-key", "demo-revoked-key")];
        let req = Req {
            headers: &revoked,
            ..get("/orders/1")
        };
        allowed(&call("access", &ctx(&req, "oto-storefront", false)));
        // Unknown to the snapshot, without the fallback: invalid_api_key.
        assert_eq!(
            denied(&call(
                "access",
                &ctx(&get("/orders/1"), "oto-nobody", false)
            )),
            (401, "invalid_api_key".into())
        );
        // The annotations name the app.
        let tctx = with_apikey(
            transform_context(&snapshot_settings, &get("/catalog/7")),
            "oto-storefront",
            false,
            acme.clone(),
        );
        let out = call("transform_request", &tctx);
        assert_eq!(out["headers"]["x-principal"], "app:acme-storefront");
        assert_eq!(out["headers"]["x-tenant-id"], "acme");
    }
}

#[test]
fn an_unnamed_otoroshi_apikey_falls_back_to_its_loc_when_configured() {
    for mut fallback in both_forms(demo_with_identities()) {
        fallback["otoroshi"] = json!({"loc_fallback": true});
        let acme = json!({"tenant": "acme", "teams": ["acme-platform", "research-lab", "ghost"]});
        let ctx = |req: &Req<'_>, read_only: bool, loc: &Value| {
            with_apikey(
                access_context(&fallback, req),
                "oto-unlisted",
                read_only,
                loc.clone(),
            )
        };
        // A member of acme with a right on acme-platform (teams of other
        // organizations and unknown teams are ignored), no role and no product.
        allowed(&call("access", &ctx(&get("/sandbox/x"), false, &acme)));
        let post = Req {
            method: "POST",
            ..get("/sandbox/x")
        };
        assert_eq!(
            denied(&call("access", &ctx(&post, true, &acme))),
            (403, "read_only_key".into())
        );
        assert_eq!(
            denied(&call("access", &ctx(&get("/orders/1"), false, &acme))),
            (403, "permission_denied".into())
        );
        assert_eq!(
            denied(&call("access", &ctx(&get("/billing/1"), false, &acme))),
            (403, "team_access_denied".into())
        );
        assert_eq!(
            denied(&call("access", &ctx(&get("/research/x"), false, &acme))),
            (403, "not_a_member".into())
        );
        let elsewhere = json!({"tenant": "no-such-org", "teams": ["*"]});
        assert_eq!(
            denied(&call("access", &ctx(&get("/sandbox/x"), false, &elsewhere))),
            (401, "invalid_api_key".into())
        );
        let tctx = with_apikey(
            transform_context(&fallback, &get("/sandbox/x")),
            "oto-unlisted",
            false,
            acme.clone(),
        );
        let headers = call("transform_request", &tctx)["headers"].clone();
        assert_eq!(headers["x-principal"], "app:otoroshi/oto-unlisted");
        assert_eq!(headers["x-tenant-id"], "acme");
        assert_eq!(headers["x-tenant-teams"], "acme-platform");
        assert_eq!(headers["x-tenant-roles"], "");
        // A named apikey never uses the fallback.
        let named = with_apikey(
            access_context(
                &fallback,
                &Req {
                    method: "POST",
                    ..get("/orders/1")
                },
            ),
            "oto-storefront",
            false,
            json!({"tenant": "acme", "teams": ["*"]}),
        );
        assert_eq!(
            denied(&call("access", &named)),
            (403, "team_access_denied".into())
        );
    }
}

#[test]
fn otoroshi_users_are_placed_by_their_email() {
    for snapshot_settings in both_forms(demo_with_identities()) {
        let user_ctx = |req: &Req<'_>, user: Value| {
            with(access_context(&snapshot_settings, req), "/user", user)
        };
        allowed(&call(
            "access",
            &user_ctx(&get("/research/x"), fixture(USER)),
        ));
        let tctx = with(
            transform_context(&snapshot_settings, &get("/research/x")),
            "/user",
            fixture(USER),
        );
        assert_eq!(
            call("transform_request", &tctx)["headers"]["x-principal"],
            "user:pat"
        );
        let mut stranger = fixture(USER);
        stranger["email"] = "nobody@elsewhere.example".into();
        assert_eq!(
            denied(&call("access", &user_ctx(&get("/orders/1"), stranger))),
            (403, "not_a_member".into())
        );
        // The request's own API key ranks before Otoroshi's user.
        let revoked = [("x-api-key", "demo-revoked-key")];
        let req = Req {
            headers: &revoked,
            ..get("/research/x")
        };
        assert_eq!(
            denied(&call("access", &user_ctx(&req, fixture(USER)))),
            (401, "api_key_revoked".into())
        );
        // Otoroshi's user ranks before the user header.
        let header = [("x-user-id", "bob")];
        let req = Req {
            headers: &header,
            ..get("/research/x")
        };
        allowed(&call("access", &user_ctx(&req, fixture(USER))));
    }
}

/// Findings of the second attacker's read, through the Otoroshi build.
#[test]
fn a_client_cannot_name_itself_a_user_and_a_display_name_names_nobody() {
    let demo_settings = settings(demo());
    // An anonymous DELETE with `x-user-id: alice` (the area admin): no user
    // header is read unless the operator names one.
    let forged = [("x-user-id", "alice")];
    let req = Req {
        method: "DELETE",
        headers: &forged,
        ..get("/orders/1")
    };
    assert_eq!(
        denied(&call("access", &access_context(&demo_settings, &req))),
        (401, "missing_credentials".into())
    );
    let tctx = transform_context(&demo_settings, &req);
    let headers = call("transform_request", &tctx)["headers"].clone();
    assert_eq!(headers.get("x-principal"), None);
    // Named by the operator (a module in front sets it), it is read.
    let mut opted = demo_settings.clone();
    opted["sources"] = json!({"user_header": "x-user-id"});
    allowed(&call("access", &access_context(&opted, &req)));
    // And turned off explicitly, in both shells' configuration.
    opted["sources"] = json!({"user_header": ""});
    assert_eq!(
        denied(&call("access", &access_context(&opted, &req))),
        (401, "missing_credentials".into())
    );
    // Only the e-mail identifies Otoroshi's user, never its display name.
    for snapshot_settings in both_forms(demo_with_identities()) {
        let mut named = fixture(USER);
        named["email"] = "".into();
        named["name"] = "pat@research.example".into();
        let ctx = with(
            access_context(&snapshot_settings, &get("/research/x")),
            "/user",
            named,
        );
        assert_eq!(
            denied(&call("access", &ctx)),
            (401, "missing_credentials".into())
        );
    }
}

/// With `sources.token`, only the payload Otoroshi's verifier left in the
/// attributes is read: never a token or payload the client sends (the
/// `Authorization` header, a header or query parameter named like the
/// attribute), and never the raw token attribute decoded by us.
#[test]
fn a_client_sent_token_or_payload_is_never_the_identity() {
    let alice = json!({"iss": "https://idp.globex.example", "sub": "alice"});
    let bob = json!({"iss": "https://login.initech.example", "sub": "bob"});
    let bearer = format!("Bearer {}", unsigned_token(&alice));
    let alice_text = alice.to_string();
    let forged = [
        ("Authorization", bearer.as_str()),
        ("otoroshi.core.MatchedInputToken", alice_text.as_str()),
        ("x-jwt-payload", alice_text.as_str()),
        ("x-user-id", "alice"),
    ];
    let query = format!(
        "/orders/1?access_token={}&otoroshi.core.MatchedInputToken=x",
        unsigned_token(&alice)
    );
    for snapshot in both_forms(demo()) {
        let mut config = snapshot.clone();
        config["sources"] = json!({"token": {}});
        for uri in ["/orders/1", query.as_str()] {
            let req = Req {
                headers: &forged,
                ..get(uri)
            };
            // No verifier ran: no token, whatever the request carries.
            assert_eq!(
                denied(&call("access", &access_context(&config, &req))),
                (401, "missing_credentials".into()),
                "{uri}"
            );
            let out = call("transform_request", &transform_context(&config, &req));
            assert_eq!(out["headers"].get("x-principal"), None, "{out}");
            // Otoroshi's raw token attribute alone is not decoded.
            let raw_only = with(
                access_context(&config, &req),
                "/attrs/otoroshi.core.MatchedRawInputToken",
                unsigned_token(&alice).into(),
            );
            assert_eq!(
                denied(&call("access", &raw_only)),
                (401, "missing_credentials".into())
            );
            // The verified payload names bob (initech's issuer): the
            // client's alice does not count, in access or transform.
            let verified = with_verified_token(access_context(&config, &req), &bob);
            let mut verified = verified;
            verified["request"]["headers"]["Authorization"] = bearer.clone().into();
            assert_eq!(
                denied(&call("access", &verified)),
                (403, "issuer_not_trusted".into())
            );
            let reports = Req {
                headers: &forged,
                ..get("/reports/q3")
            };
            let mut tctx = with_verified_token(transform_context(&config, &reports), &bob);
            tctx["request"]["headers"]["Authorization"] = bearer.clone().into();
            let headers = call("transform_request", &tctx)["headers"].clone();
            assert_eq!(headers["x-principal"], "user:bob");
            assert_eq!(headers["x-tenant-id"], "initech");
        }
        // Otoroshi's attribute of an unexpected shape, or too large: 401
        // invalid_token_claims, not a pass and not an absent token.
        let req = get("/orders/1");
        for payload in [
            json!(unsigned_token(&alice)),
            json!([alice.clone()]),
            json!({"iss": "https://idp.globex.example", "sub": "alice", "pad": "x".repeat(40_000)}),
        ] {
            let ctx = with(
                access_context(&config, &req),
                "/attrs/otoroshi.core.MatchedInputToken",
                payload,
            );
            assert_eq!(
                denied(&call("access", &ctx)),
                (401, "invalid_token_claims".into())
            );
        }
    }
}

#[test]
fn a_path_spelled_differently_reaches_the_nested_route_in_otoroshi_too() {
    let demo_settings = settings(demo());
    let ops = [("x-api-key", "demo-ops-key")];
    for uri in [
        "/orders/admin/purge",
        "/orders/%61dmin/purge",
        "/orders/admin;/purge",
        "/orders/admin%3B/purge",
        "/orders//admin/purge",
    ] {
        let req = Req {
            method: "POST",
            headers: &ops,
            ..get(uri)
        };
        assert_eq!(
            denied(&call("access", &access_context(&demo_settings, &req))),
            (403, "permission_denied".into()),
            "{uri}"
        );
    }
    for uri in ["/health/..;/orders/1", "/status/..;/billing/1"] {
        assert_eq!(
            denied(&call("access", &access_context(&demo_settings, &get(uri)))),
            (400, "invalid_path".into()),
            "{uri}"
        );
    }
}

#[test]
fn audit_mode_lets_everything_through_and_marks_would_be_denials() {
    let mut audit = settings(demo());
    audit["mode"] = "audit".into();
    let revoked = [("x-api-key", "demo-revoked-key")];
    let req = Req {
        headers: &revoked,
        ..get("/orders/1")
    };
    allowed(&call("access", &access_context(&audit, &req)));
    let out = call("transform_request", &transform_context(&audit, &req));
    assert_eq!(
        out["headers"]["x-policy-decision"],
        "deny; reason=api_key_revoked"
    );
    assert_eq!(out["headers"]["x-principal"], "app:acme-storefront");
}

/// `otoroshi/route-example.json` as written: ApikeyCalls, then the access
/// validator, then the transformer, each wasm plug-in with its `source`,
/// `functionName`, `wasi: false`, `memoryPages` and our settings, which work.
#[test]
fn the_example_route_runs_as_written() {
    let route: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
                .join("otoroshi/route-example.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let plugins = route["plugins"].as_array().unwrap();
    let kinds: Vec<&str> = plugins
        .iter()
        .map(|p| p["plugin"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "cp:otoroshi.next.plugins.ApikeyCalls",
            "cp:otoroshi.next.plugins.WasmAccessValidator",
            "cp:otoroshi.next.plugins.WasmRequestTransformer"
        ]
    );
    for (plugin, function) in [(&plugins[1], "access"), (&plugins[2], "transform_request")] {
        let config = &plugin["config"];
        assert_eq!(config["functionName"], function);
        assert_eq!(config["wasi"], false);
        assert_eq!(config["memoryPages"], MEMORY_PAGES);
        assert!(config["source"]["path"]
            .as_str()
            .unwrap()
            .ends_with("tenantgate-otoroshi.wasm"));
        assert_eq!(call("check_config", &config["config"])["ok"], true);
    }
    // Otoroshi passes the whole plug-in configuration as `config`, and the
    // route (with both plug-ins) as `route` and as an attribute.
    let key = [
        ("x-api-key", "demo-storefront-key"),
        ("X-Principal", "forged"),
    ];
    let req = Req {
        headers: &key,
        ..get("/orders/1?apikey=demo-storefront-key")
    };
    let mut ctx = access_context(&json!({}), &req);
    ctx["config"] = plugins[1]["config"].clone();
    ctx["route"] = route.clone();
    ctx["attrs"]["otoroshi.next.core.Route"] = route.clone();
    allowed(&call("access", &ctx));
    let mut tctx = transform_context(&json!({}), &req);
    tctx["config"] = plugins[2]["config"].clone();
    tctx["route"] = route.clone();
    let out = call("transform_request", &tctx);
    assert_eq!(out["headers"]["x-principal"], "app:acme-storefront");
    assert!(!out["headers"]
        .as_object()
        .unwrap()
        .contains_key("X-Principal"));
    assert_eq!(out["url"], "http://backend.internal:8080/orders/1");
}

fn field<'a>(case: &'a Value, defaults: &'a Value, name: &str) -> Option<&'a str> {
    match case.get(name) {
        Some(Value::Null) => None,
        Some(v) => v.as_str(),
        None => defaults.get(name).and_then(Value::as_str),
    }
}

/// The shared decision table through the Otoroshi build: each case's request
/// as Otoroshi's context, its clock as Otoroshi's request timestamp, its
/// environment and mode as our settings. `access` must allow exactly what the
/// table allows (or, audited, everything) and deny with the table's status and
/// reason; `transform_request` must add exactly the table's headers.
/// The table through the Otoroshi build, with the demo snapshot inline (JSON,
/// compiled whole per call), compiled in the settings and baked into the
/// module (both searched per request by `decode_for`).
#[test]
fn the_shared_decision_table_through_the_otoroshi_build() {
    let demo = demo();
    let baked = baked(&demo);
    let forms = [
        ("inline", json!({"snapshot": {"inline": demo}}), compiled()),
        (
            "compiled",
            json!({"snapshot": {"compiled": compiled_base64(&demo)}}),
            compiled(),
        ),
        ("baked", json!({}), &baked),
    ];
    for (form, settings, plugin) in forms {
        let (count, failures) = table_failures(TABLE, &settings, plugin);
        assert!(count >= 80, "the table lost cases: {count}");
        assert!(
            failures.is_empty(),
            "{} cases differ through the Otoroshi build, snapshot {form}:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// The verified-token table (`testdata/cases/token_decisions.json`, both
/// modes) through the Otoroshi build: each case's payload where Otoroshi's
/// JWT verifier leaves it ([`with_verified_token`]), the snapshot inline,
/// compiled (the partial decode finds the token's user, tenant, groups and
/// roles) and baked.
#[test]
fn the_token_table_through_the_otoroshi_build() {
    let demo = demo();
    let baked = baked(&demo);
    let forms = [
        ("inline", json!({"snapshot": {"inline": demo}}), compiled()),
        (
            "compiled",
            json!({"snapshot": {"compiled": compiled_base64(&demo)}}),
            compiled(),
        ),
        ("baked", json!({}), &baked),
    ];
    for (form, settings, plugin) in forms {
        let (count, failures) = table_failures(TOKEN_TABLE, &settings, plugin);
        assert!(count >= 25, "the token table lost cases: {count}");
        assert!(
            failures.is_empty(),
            "{} of {count} token cases differ through the Otoroshi build, snapshot {form}:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// A raw token for `payload`, shaped like one (header, payload, signature in
/// base64) but signed by nobody: what a client can send.
fn unsigned_token(payload: &Value) -> String {
    let part = |v: &Value| {
        tenantgate_policy::config::encode_base64(v.to_string().as_bytes())
            .trim_end_matches('=')
            .replace('+', "-")
            .replace('/', "_")
    };
    format!("{}.{}.c2ln", part(&json!({"alg": "RS256"})), part(payload))
}

/// `ctx` as Otoroshi leaves it once a JWT verifier (`JwtVerification`,
/// `JwtVerificationOnly`) placed before tenantgate accepted a token whose
/// payload is `payload`: `JwtVerifier.internalVerifySync`
/// (otoroshi/app/models/JWTVerifier.scala) puts the payload object under
/// `otoroshi.core.MatchedInputToken` and the raw token under
/// `otoroshi.core.MatchedRawInputToken` (and the same as output tokens), the
/// plug-in the `JwtInjection` (written as its `toString`:
/// otoroshi/app/utils/typedmap.scala), and the request still carries the
/// token in its `Authorization` header.
fn with_verified_token(mut ctx: Value, payload: &Value) -> Value {
    let raw = unsigned_token(payload);
    let attrs = ctx["attrs"].as_object_mut().unwrap();
    for (key, value) in [
        ("otoroshi.core.MatchedInputToken", payload.clone()),
        ("otoroshi.core.MatchedOutputToken", payload.clone()),
        ("otoroshi.core.MatchedRawInputToken", raw.clone().into()),
        ("otoroshi.core.MatchedRawOutputToken", raw.clone().into()),
        (
            "otoroshi.next.core.JwtInjection",
            "JwtInjection(Some(com.auth0.jwt.JWTDecoder@5c3b6c6e),List(),List(),List(),List())"
                .into(),
        ),
    ] {
        attrs.insert(key.into(), value);
    }
    let headers = ctx["request"]["headers"].as_object_mut().unwrap();
    headers.insert("Authorization".into(), format!("Bearer {raw}").into());
    if let Some(out) = ctx
        .get_mut("otoroshi_request")
        .and_then(|r| r["headers"].as_object_mut())
    {
        out.insert("Authorization".into(), format!("Bearer {raw}").into());
    }
    ctx
}

/// Runs a decision table (`text`) through `plugin` with `settings`; the count
/// of cases and the failures. A table with `config.sources` (the token
/// table) runs with those sources, each case in its `token_mode`, its
/// `token` placed where Otoroshi's JWT verifier leaves it; otherwise the
/// users come from `x-user-id`.
fn table_failures(text: &str, settings: &Value, plugin: &CompiledPlugin) -> (usize, Vec<String>) {
    let table: Value = serde_json::from_str(text).unwrap();
    let defaults = &table["defaults"];
    let cases = table["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        if case["otoroshi"] == false {
            continue;
        }
        let mut config = settings.clone();
        match table["config"].get("sources") {
            Some(sources) => {
                config["sources"] = sources.clone();
                if let Some(mode) = case.get("token_mode") {
                    config["sources"]["token"]["mode"] = mode.clone();
                }
            }
            // The table's users come from `x-user-id`: in Otoroshi the
            // operator opts into that header (a module in front sets it).
            None => config["sources"] = json!({"user_header": "x-user-id"}),
        }
        if let Some(env) = field(case, defaults, "environment") {
            config["environment"] = env.into();
        }
        let mode = field(case, defaults, "mode").unwrap_or("enforce");
        config["mode"] = mode.into();
        let host = field(case, defaults, "host").unwrap();
        let mut headers: Vec<(&str, &str)> = vec![("Host", host)];
        for pair in case
            .get("headers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            headers.push((pair[0].as_str().unwrap(), pair[1].as_str().unwrap()));
        }
        let req = Req {
            method: case["method"].as_str().unwrap(),
            uri: case["path"].as_str().unwrap(),
            headers: &headers,
        };
        let now = field(case, defaults, "now").unwrap();
        let prepare = |ctx: Value| {
            let ctx = with(ctx, "/attrs/otoroshi.core.RequestTimestamp", now.into());
            match case.get("token") {
                Some(payload) => with_verified_token(ctx, payload),
                None => ctx,
            }
        };
        let access = call_on(plugin, "access", &prepare(access_context(&config, &req)));
        let transform = call_on(
            plugin,
            "transform_request",
            &prepare(transform_context(&config, &req)),
        );
        let expect = &case["expect"];
        let status = expect["status"].as_u64().unwrap();
        let reason = expect["reason"].as_str();
        let mut fail = |what: String| failures.push(format!("{name}: {what}"));
        match (status, mode) {
            (200, _) | (_, "audit") => {
                if access != json!({"result": true}) {
                    fail(format!("access answered {access}, the table allows"));
                }
            }
            _ => {
                let want = json!({"result": false, "error": {"status": status}});
                if access["result"] != want["result"]
                    || access["error"]["status"] != want["error"]["status"]
                    || !access["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(&format!("{}: ", reason.unwrap_or(""))))
                {
                    fail(format!(
                        "access answered {access}, the table says {status} {reason:?}"
                    ));
                }
            }
        }
        // What transform_request added: the headers that are ours.
        let added: Map<String, Value> = transform["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| {
                k.starts_with("x-tenant-") || k.starts_with("x-policy-") || *k == "x-principal"
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(want) = expect.get("headers") {
            if Value::Object(added.clone()) != *want {
                fail(format!("transform added {added:?}, the table says {want}"));
            }
        }
        let forwarded = status == 200 || mode == "audit";
        for (key, header) in [("principal", "x-principal"), ("tenant", "x-tenant-id")] {
            if let (true, Some(Value::String(want))) = (forwarded, expect.get(key)) {
                if added.get(header) != Some(&Value::String(want.clone())) {
                    fail(format!(
                        "{header} is {:?}, the table says {want}",
                        added.get(header)
                    ));
                }
            }
        }
        if let (true, Some(Value::Array(want))) = (status == 200, expect.get("roles")) {
            let got: Vec<Value> = added
                .get("x-tenant-roles")
                .and_then(Value::as_str)
                .unwrap_or("")
                .split(',')
                .filter(|r| !r.is_empty())
                .map(|r| json!(r))
                .collect();
            if got != *want {
                fail(format!(
                    "x-tenant-roles is {got:?}, the table says {want:?}"
                ));
            }
        }
        if !forwarded && !added.is_empty() {
            fail(format!("a denied request was annotated: {added:?}"));
        }
    }
    (cases.len(), failures)
}

/// The names in a module's import section.
fn wasm_imports(bytes: &[u8]) -> Vec<(String, String)> {
    fn leb(bytes: &[u8], at: &mut usize) -> u64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }
    fn name(bytes: &[u8], at: &mut usize) -> String {
        let len = leb(bytes, at) as usize;
        let text = String::from_utf8(bytes[*at..*at + len].to_vec()).unwrap();
        *at += len;
        text
    }
    fn limits(bytes: &[u8], at: &mut usize) {
        let flags = bytes[*at];
        *at += 1;
        leb(bytes, at);
        if flags & 1 != 0 {
            leb(bytes, at);
        }
    }
    assert_eq!(&bytes[..4], b"\0asm", "not a wasm module");
    let mut at = 8;
    let mut imports = Vec::new();
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let size = leb(bytes, &mut at) as usize;
        let end = at + size;
        if id == 2 {
            let count = leb(bytes, &mut at);
            for _ in 0..count {
                let module = name(bytes, &mut at);
                let field = name(bytes, &mut at);
                let kind = bytes[at];
                at += 1;
                match kind {
                    0 => {
                        leb(bytes, &mut at);
                    }
                    1 => {
                        at += 1;
                        limits(bytes, &mut at);
                    }
                    2 => limits(bytes, &mut at),
                    3 => at += 2,
                    _ => {
                        at += 1;
                        leb(bytes, &mut at);
                    }
                }
                imports.push((module, field));
            }
        }
        at = end;
    }
    imports
}

/// Item 5 of the Otoroshi issue, measured: Otoroshi instantiates the module for
/// every call, so each call parses the settings and compiles the inline
/// snapshot. `cargo test --release --test otoroshi measure -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_per_call_cost() {
    use std::time::Duration;
    let (generated, gen_uri, gen_key) = generated_world(200, 10_000);
    let (large, large_uri, large_key) = generated_world(200, 100_000);
    let (wide, wide_uri, wide_key) = generated_world(2_000, 100_000);
    let worlds = [
        (
            "policies/demo.json",
            demo(),
            "/orders/1".to_string(),
            "demo-storefront-key".to_string(),
            &["JSON", "compiled", "baked"][..],
        ),
        (
            "generated 10k keys",
            generated,
            gen_uri,
            gen_key,
            &["JSON", "compiled", "baked"][..],
        ),
        // Baked only: the per-call cost of a baked snapshot does not grow with keys.
        (
            "generated 100k keys",
            large,
            large_uri,
            large_key,
            &["baked"][..],
        ),
        // Ten times the organizations and routes: what a baked call still decodes whole.
        (
            "generated 100k keys, 2,000 organizations",
            wide,
            wide_uri,
            wide_key,
            &["baked"][..],
        ),
    ];
    // Roomy memory for timing; the smallest that suffices is searched below.
    let median = |mut samples: Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let worlds: Vec<(String, Value, String, String, &str)> = worlds
        .into_iter()
        .flat_map(|(name, snapshot, uri, key, forms)| {
            forms.iter().map(move |&form| {
                (
                    name.to_string(),
                    snapshot.clone(),
                    uri.clone(),
                    key.clone(),
                    form,
                )
            })
        })
        .collect();
    measure_worlds(worlds, median);
}

/// A generated world of `orgs` organizations and `keys` keys, with a key that is
/// allowed on a catalog route of its organization (found with the core).
fn generated_world(orgs: usize, keys: usize) -> (Value, String, String) {
    let generated = tenantgate_policy::generate::generate(orgs, keys, 42);
    let compiled_world = tenantgate_policy::load_snapshot(&generated.to_string()).unwrap();
    let now = tenantgate_policy::Timestamp::parse_rfc3339("2026-12-01T00:00:00Z").unwrap();
    let (gen_key, gen_uri) = (0..generated["api_keys"].as_array().unwrap().len())
        .find_map(|i| {
            let app = generated["api_keys"][i]["app"].as_str()?;
            let org = generated["apps"]
                .as_array()?
                .iter()
                .find(|a| a["id"] == app)?["organization"]
                .as_str()?
                .to_string();
            let key = tenantgate_policy::generate::generated_raw_key(42, i);
            let uri = format!("/t/{org}/catalog/1");
            let headers = [("x-api-key", key.as_str())];
            let request = tenantgate_policy::Request::from_parts(
                &tenantgate_policy::Sources::default(),
                "GET",
                "localhost",
                &uri,
                &headers,
            );
            tenantgate_policy::decide(
                &compiled_world,
                &request,
                &tenantgate_policy::Context::new(now, Some("prod")),
            )
            .allowed()
            .then_some((key, uri))
        })
        .unwrap();
    (generated, gen_uri, gen_key)
}

fn measure_worlds(
    worlds: Vec<(String, Value, String, String, &str)>,
    median: impl Fn(Vec<std::time::Duration>) -> std::time::Duration,
) {
    use std::time::Instant;
    for (name, snapshot, uri, key, form) in worlds {
        let (settings, module) = match form {
            "JSON" => (settings(snapshot.clone()), wasm_bytes()),
            "compiled" => (
                json!({"environment": "prod", "snapshot": {"compiled": compiled_base64(&snapshot)}}),
                wasm_bytes(),
            ),
            _ => {
                let bytes = tenantgate_policy::binary::encode(
                    &tenantgate_policy::load_snapshot(&snapshot.to_string()).unwrap(),
                );
                let baked = policyctl::bake::bake(&wasm_bytes(), &bytes).unwrap();
                (json!({"environment": "prod"}), baked.module)
            }
        };
        let roomy =
            PluginBuilder::new(Manifest::new([Wasm::data(module.clone())]).with_memory_max(4096))
                .compile()
                .unwrap();
        let name = format!("{name} ({form})");
        let headers = [("x-api-key", key.as_str())];
        let req = Req {
            method: "GET",
            uri: &uri,
            headers: &headers,
        };
        // As Otoroshi passes it: our settings in config.config, and again in
        // both plug-ins of the route, which comes twice (the context's route
        // and the route attribute).
        let realistic = serde_json::to_vec(&access_context(&settings, &req)).unwrap();
        let mut lean_ctx = access_context(&settings, &req);
        lean_ctx["route"] = json!({"id": "route_tenantgate-demo"});
        lean_ctx["attrs"]["otoroshi.next.core.Route"] = Value::Null;
        let lean = serde_json::to_vec(&lean_ctx).unwrap();
        let snapshot_bytes = settings.to_string().len();
        for (shape, input) in [("settings once", &lean), ("as Otoroshi passes it (5 copies: config.config, and both plug-ins of the route, twice)", &realistic)] {
            let rounds = if snapshot_bytes > 1_000_000 { 7 } else { 31 };
            let (mut inst, mut calls, mut totals) = (Vec::new(), Vec::new(), Vec::new());
            let mut answer = Vec::new();
            for _ in 0..rounds {
                let start = Instant::now();
                let mut plugin = Plugin::new_from_compiled(&roomy).unwrap();
                let instantiated = start.elapsed();
                let out = plugin.call::<&[u8], &[u8]>("access", input).unwrap().to_vec();
                let total = start.elapsed();
                inst.push(instantiated);
                calls.push(total - instantiated);
                totals.push(total);
                answer = out;
            }
            println!(
                "{name} (snapshot {} KB), input {} KB, {shape}: per call {:?} (instantiate {:?} + access {:?}); answer {}",
                snapshot_bytes / 1000,
                input.len() / 1000,
                median(totals),
                median(inst),
                median(calls),
                String::from_utf8_lossy(&answer)
            );
        }
        // The smallest memoryPages (64 KiB each) that runs the realistic input.
        for pages in [
            32u32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048,
        ] {
            let manifest = Manifest::new([Wasm::data(module.clone())]).with_memory_max(pages);
            let compiled = PluginBuilder::new(manifest).compile().unwrap();
            let ok = Plugin::new_from_compiled(&compiled)
                .and_then(|mut p| {
                    p.call::<&[u8], &[u8]>("access", &realistic)
                        .map(|o| o.to_vec())
                })
                .is_ok();
            if ok {
                println!("{name}: memoryPages {pages} suffices ({} MiB)", pages / 16);
                break;
            }
        }
    }
}

/// `policyctl bake` end to end: the baked module decides with its snapshot
/// when the settings name none, says so in `check_config`, and cannot be
/// baked twice; an invalid policy is refused naming the problem.
#[test]
fn policyctl_bake_writes_a_module_that_decides_with_its_snapshot() {
    use std::process::Command;
    let policyctl = support::policyctl_binary();
    let dir = std::env::temp_dir().join(format!("tenantgate-bake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("baked.wasm");
    let bake = |module: &PathBuf, policy: &str| {
        Command::new(&policyctl)
            .args(["bake", "--module"])
            .arg(module)
            .args(["--policy", policy, "--out"])
            .arg(&out)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .output()
            .unwrap()
    };
    let done = bake(&wasm_path(), "policies/demo.json");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let summary = String::from_utf8_lossy(&done.stdout);
    assert!(summary.contains("revision r1 baked"), "{summary}");
    let module = std::fs::read(&out).unwrap();
    let manifest = Manifest::new([Wasm::data(module)]).with_memory_max(MEMORY_PAGES);
    let plugin = PluginBuilder::new(manifest)
        .with_wasi(false)
        .compile()
        .unwrap();
    let no_snapshot = json!({"environment": "prod"});
    let key = |k: &'static str| Req {
        headers: Box::leak(Box::new([("x-api-key", k)])),
        ..get("/orders/1")
    };
    let ok = call_on(
        &plugin,
        "access",
        &access_context(&no_snapshot, &key("demo-storefront-key")),
    );
    allowed(&ok);
    let revoked = call_on(
        &plugin,
        "access",
        &access_context(&no_snapshot, &key("demo-revoked-key")),
    );
    assert_eq!(denied(&revoked), (401, "api_key_revoked".into()));
    // The plain module, same settings: no snapshot at all.
    let plain = call(
        "access",
        &access_context(&no_snapshot, &key("demo-storefront-key")),
    );
    assert_eq!(denied(&plain).0, 503);
    let checked = call_on(&plugin, "check_config", &no_snapshot);
    assert_eq!(checked["snapshot"], "baked", "{checked}");
    assert_eq!(checked["revision"], "r1");
    assert_eq!(checked["api_keys"], 11);
    // Twice: refused.
    let again = bake(&out, "policies/demo.json");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a baked snapshot"));
    // An invalid policy: refused, naming the problem; nothing written.
    std::fs::remove_file(&out).unwrap();
    let invalid = bake(&wasm_path(), "policies/invalid/app-developer-empty.json");
    assert_eq!(invalid.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&invalid.stderr).contains("developer"));
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
