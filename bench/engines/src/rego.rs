//! Rego (regorus): the data document converted from the snapshot document, the
//! policy of `policy.rego`, and one decision.
//!
//! The data keeps the snapshot's shape, re-keyed by id for lookups (`api_keys` by
//! sha256) and with times as Unix seconds; all the logic (coverage, lineage,
//! environments, products, team rights, role permissions with `*`/`prefix*`) is in
//! the policy.

use crate::world::{arr, compared_route, s, unix_seconds};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;
use regorus::{Engine, Value as RegoValue};
use serde_json::{json, Map, Value};
use tenantgate_policy::hash_key;

fn by_id<'a>(items: &'a [Value], id_field: &str, f: impl Fn(&'a Value) -> Value) -> Value {
    let mut map = Map::with_capacity(items.len());
    for item in items {
        map.insert(s(item, id_field).to_string(), f(item));
    }
    Value::Object(map)
}

/// Copies `fields` of `v` that are present; `expires_at` becomes Unix seconds.
fn pick(v: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for &f in fields {
        if let Some(x) = v.get(f) {
            let x = match (f, x.as_str()) {
                ("expires_at", Some(t)) => json!(unix_seconds(t)),
                _ => x.clone(),
            };
            out.insert(f.to_string(), x);
        }
    }
    Value::Object(out)
}

/// The Rego data document for `doc`.
pub fn data_json(doc: &Value) -> Value {
    let routes: Vec<Value> = arr(doc, "routes")
        .iter()
        .filter(|r| compared_route(r))
        .cloned()
        .collect();
    json!({
        "api_keys": by_id(arr(doc, "api_keys"), "sha256",
            |k| pick(k, &["app", "status", "expires_at", "read_only", "environments"])),
        "apps": by_id(arr(doc, "apps"), "id",
            |a| pick(a, &["organization", "status", "products", "roles", "teams"])),
        "orgs": by_id(arr(doc, "organizations"), "id",
            |o| pick(o, &["parent", "status", "expires_at", "environments"])),
        "products": by_id(arr(doc, "products"), "id",
            |p| pick(p, &["organization", "routes", "environments"])),
        "routes": by_id(&routes, "id", |r| pick(r, &["tenant", "teams", "permissions"])),
        "roles": by_id(arr(doc, "roles"), "id", |r| pick(r, &["permissions"])),
    })
}

pub struct RegoEngine {
    engine: Engine,
    data: RegoValue,
    env: RegoValue,
}

/// The same policy and data compiled to regorus' Rego VM (RVM) program.
pub struct RegoVm {
    vm: RegoVM,
    env: RegoValue,
}

fn input(raw_key: &str, route: &str, method: &str, env: &RegoValue, now: i64) -> RegoValue {
    let mut input = RegoValue::new_object();
    if let Ok(map) = input.as_object_mut() {
        map.insert("key".into(), RegoValue::from(hash_key(raw_key)));
        map.insert("route".into(), RegoValue::from(route));
        map.insert("method".into(), RegoValue::from(method));
        map.insert("env".into(), env.clone());
        map.insert("now".into(), RegoValue::from(now));
    }
    input
}

pub const RULE: &str = "data.tenantgate.allow";
pub const POLICY: &str = include_str!("policy.rego");

impl RegoEngine {
    /// Parses the data text, adds it and the policy, and prepares the engine (the
    /// first evaluation analyses the modules; it is part of loading).
    pub fn load(data_json: &str, environment: &str) -> Result<Self, String> {
        Self::load_with_policy(data_json, environment, POLICY)
    }

    /// [`RegoEngine::load`] with another policy text (the tests' mutations).
    pub fn load_with_policy(
        data_json: &str,
        environment: &str,
        policy: &str,
    ) -> Result<Self, String> {
        let mut engine = Engine::new();
        engine
            .add_policy("tenantgate.rego".into(), policy.into())
            .map_err(|e| format!("rego policy: {e}"))?;
        let data = RegoValue::from_json_str(data_json).map_err(|e| format!("rego data: {e}"))?;
        engine
            .add_data(data.clone())
            .map_err(|e| format!("rego data: {e}"))?;
        engine.set_input(RegoValue::new_object());
        engine
            .eval_rule(RULE.to_string())
            .map_err(|e| format!("rego prepare: {e}"))?;
        Ok(RegoEngine {
            engine,
            data,
            env: RegoValue::from(environment),
        })
    }

    /// The gateway environment sent in the input.
    pub fn set_env(&mut self, environment: &str) {
        self.env = RegoValue::from(environment);
    }

    /// One decision: hash the key, build the input, evaluate `allow`.
    pub fn allowed(&mut self, raw_key: &str, route: &str, method: &str, now: i64) -> bool {
        self.engine
            .set_input(input(raw_key, route, method, &self.env, now));
        matches!(self.engine.eval_rule(RULE.to_string()), Ok(v) if v == RegoValue::from(true))
    }

    /// Compiles the loaded policy to an RVM program over the same data.
    pub fn rvm(&mut self) -> Result<RegoVm, String> {
        let compiled = self
            .engine
            .compile_with_entrypoint(&RULE.into())
            .map_err(|e| format!("rego compile: {e}"))?;
        let program = Compiler::compile_from_policy(&compiled, &[RULE])
            .map_err(|e| format!("rvm compile: {e}"))?;
        let mut vm = RegoVM::new();
        vm.load_program(program);
        vm.set_data(self.data.clone())
            .map_err(|e| format!("rvm data: {e}"))?;
        Ok(RegoVm {
            vm,
            env: self.env.clone(),
        })
    }
}

impl RegoVm {
    pub fn set_env(&mut self, environment: &str) {
        self.env = RegoValue::from(environment);
    }

    /// One decision: hash the key, build the input, execute the program.
    pub fn allowed(&mut self, raw_key: &str, route: &str, method: &str, now: i64) -> bool {
        self.vm
            .set_input(input(raw_key, route, method, &self.env, now));
        matches!(self.vm.execute(), Ok(v) if v == RegoValue::from(true))
    }
}
