//! The agreement is not vacuous: every condition of the Cedar and Rego policies
//! decides at least one question of the demo grid or the 1k mix (removing it
//! makes that engine disagree with tenantgate), and the unmodified policies agree.

use super::*;

struct World {
    doc: Value,
    snapshot: Snapshot,
    cases: Vec<Case>,
}

fn worlds() -> Vec<World> {
    let mut out: Vec<World> = small_worlds()
        .expect("small worlds")
        .into_iter()
        .map(|(_, doc)| {
            let snapshot = policy::load_snapshot(&doc.to_string()).expect("small world loads");
            let cases = demo_cases(&doc, &snapshot);
            World {
                doc,
                snapshot,
                cases,
            }
        })
        .collect();
    let gen_doc = generate(100, 1_000, SEED);
    let gen_snapshot = policy::load_snapshot(&gen_doc.to_string()).expect("generated loads");
    let gen = mix::questions(&gen_doc, SEED, SAMPLE)
        .into_iter()
        .map(|q| case(q, ENVIRONMENT, NOW))
        .collect();
    out.push(World {
        doc: gen_doc,
        snapshot: gen_snapshot,
        cases: gen,
    });
    out
}

/// Disagreements with tenantgate of (cedar, regorus, regorus_rvm) over all worlds.
fn disagreements(
    worlds: &[World],
    cedar_template: &str,
    rego_policy: &str,
) -> (usize, usize, usize) {
    let mut total = (0, 0, 0);
    for w in worlds {
        let cedar_text = cedar::entities_json(&w.doc).to_string();
        let rego_text = rego::data_json(&w.doc).to_string();
        let load = |env| {
            cedar::CedarEngine::load(&cedar_text, &cedar::policy_text_from(cedar_template, env))
                .expect("cedar loads")
        };
        let (cedar_prod, cedar_staging) = (load("prod"), load("staging"));
        let mut rego_engine = rego::RegoEngine::load_with_policy(&rego_text, "prod", rego_policy)
            .expect("rego loads");
        let mut rvm = rego_engine.rvm().expect("rvm compiles");
        let mut others: Vec<Other<'_>> = vec![
            (
                "cedar",
                Box::new(|c: &Case| {
                    let e = if c.env == "prod" {
                        &cedar_prod
                    } else {
                        &cedar_staging
                    };
                    e.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s)
                }),
            ),
            (
                "regorus",
                Box::new(|c: &Case| {
                    rego_engine.set_env(c.env);
                    rego_engine.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s)
                }),
            ),
            (
                "regorus_rvm",
                Box::new(|c: &Case| {
                    rvm.set_env(c.env);
                    rvm.allowed(&c.q.raw_key, &c.q.route, c.q.method, c.now_s)
                }),
            ),
        ];
        let a = check(&w.snapshot, &w.cases, &mut others);
        total.0 += a.count("cedar");
        total.1 += a.count("regorus");
        total.2 += a.count("regorus_rvm");
    }
    total
}

#[test]
fn policies_agree_and_every_condition_decides_something() {
    let worlds = worlds();
    assert_eq!(
        disagreements(&worlds, cedar::POLICY_TEMPLATE, rego::POLICY),
        (0, 0, 0)
    );
    let mut failures = Vec::new();

    // Cedar: a conjunct replaced by `true`, a disjunct by `false` (in both the read
    // and the write policy where it occurs in both).
    let cedar_conditions = [
        (r#"principal.status == "active""#, "true"),
        ("(!(principal has expires) || context.now < principal.expires)", "true"),
        (r#"principal.app.status == "approved""#, "true"),
        ("resource.tenant in principal.app.org", "true"),
        (r#"resource.tenant.status == "active""#, "true"),
        ("(!(resource.tenant has expires) || context.now < resource.tenant.expires)", "true"),
        (r#"resource.tenant.parent.status == "active""#, "true"),
        ("(!(resource.tenant.parent has expires) || context.now < resource.tenant.parent.expires)", "true"),
        (r#"resource.tenant.envs.contains("@ENV@")"#, "true"),
        (r#"(principal.envs.isEmpty() || principal.envs.contains("@ENV@"))"#, "true"),
        (r#"resource in principal.app.offers["@ENV@"]"#, "true"),
        ("!principal.read_only", "true"),
        (r#"principal.app.star != "none""#, "false"),
        (r#"principal.app.star == "write""#, "true"),
        ("principal.app.read_teams.containsAny(resource.teams) ||", "false ||"),
        ("principal.app.write_teams.containsAny(resource.teams))", "false)"),
        ("principal.app in resource.read_grants", "false"),
        ("principal.app in resource.write_grants", "true"),
    ];
    for (cond, replacement) in cedar_conditions {
        assert!(cedar::POLICY_TEMPLATE.contains(cond), "{cond}");
        let mutated = cedar::POLICY_TEMPLATE.replace(cond, replacement);
        let (c, _, _) = disagreements(&worlds, &mutated, rego::POLICY);
        eprintln!("cedar without {cond}: {c} disagreement(s)");
        if c == 0 {
            failures.push(format!("cedar: {cond}"));
        }
    }

    // Rego: each line of `allow` (and the prefix grant) replaced by `true`/`false`.
    let rego_conditions = [
        ("\tkey.status == \"active\"\n", "\ttrue\n"),
        ("\tnot expired(key)\n", "\ttrue\n"),
        ("\tapp.status == \"approved\"\n", "\ttrue\n"),
        (
            "\tcovers(app.organization, route.tenant, tenant)\n",
            "\ttrue\n",
        ),
        ("\tlineage_ok(tenant)\n", "\ttrue\n"),
        ("\tnot expired(org)\n", "\ttrue\n"),
        ("\torg_ok(data.orgs[tenant.parent])\n", "\ttrue\n"),
        ("\tinput.env in tenant.environments\n", "\ttrue\n"),
        ("\tkey_env_ok(key)\n", "\ttrue\n"),
        ("\tsubscribed(app, input.route)\n", "\ttrue\n"),
        ("\tread_only_ok(key)\n", "\ttrue\n"),
        ("\tteam_ok(app, route)\n", "\ttrue\n"),
        (
            "team_ok(app, _) if right_ok(app.teams[\"*\"])",
            "team_ok(app, _) if false",
        ),
        (
            "right_ok(right) if right == \"write\"",
            "right_ok(right) if false",
        ),
        ("\tpermission_ok(app, route)\n", "\ttrue\n"),
        (
            "\tstartswith(wanted, trim_suffix(grant, \"*\"))\n",
            "\tfalse\n",
        ),
    ];
    for (cond, replacement) in rego_conditions {
        assert!(rego::POLICY.contains(cond), "{cond}");
        let mutated = rego::POLICY.replace(cond, replacement);
        let (_, r, v) = disagreements(&worlds, cedar::POLICY_TEMPLATE, &mutated);
        eprintln!(
            "rego without {}: {r} / rvm {v} disagreement(s)",
            cond.trim()
        );
        if r == 0 || v == 0 {
            failures.push(format!("rego: {}", cond.trim()));
        }
    }
    assert!(
        failures.is_empty(),
        "conditions no question depends on: {failures:#?}"
    );
}
