//! The answer of the key-lookup service to the filter's `GET <prefix><sha256>`
//! (an `api_keys` entry): `envoy::key_lookup::classify` against the demo.
//!
//! Invariants: a 200 answer is found or invalid, never a lookup failure
//! (which `fail_open` could let through); a found key is the digest asked
//! for, named by the answer's own `sha256`; deciding a request carrying it
//! keeps every decision invariant; a 404 is "no such key" whatever its
//! body, and any other status a failure.

use super::common;
use tenantgate_envoy::key_lookup::{classify, Answer};
use tenantgate_policy::{self as policy, Request, Sources};

/// The raw key the filter looked up.
pub const RAW_KEY: &str = "fuzz-lookup-key";

pub fn run(data: &[u8]) {
    let snapshot = common::demo();
    let digest = policy::key_digest(RAW_KEY);
    match classify(Some(b"200"), Some(data), snapshot, &digest) {
        Answer::Found(key) => {
            assert_eq!(key.digest(), digest, "found another digest");
            let answer: serde_json::Value = match serde_json::from_slice(data) {
                Ok(answer) => answer,
                Err(e) => panic!("found in an answer that is not JSON: {e}"),
            };
            assert_eq!(
                answer["sha256"].as_str(),
                Some(policy::hash_key_hex(&digest).as_str()),
                "found for an answer naming another digest"
            );
            let sources = Sources::default();
            let mut pick = common::Picker::new(data);
            for _ in 0..3 {
                let path = pick.pick(common::DEMO_PATHS).unwrap_or("/");
                let method = if pick.below(2) == 0 { "GET" } else { "POST" };
                let headers = [("x-api-key", RAW_KEY)];
                let request = Request::from_parts(&sources, method, "localhost", path, &headers);
                let now = common::now(pick.below(10) as u8);
                let environment = common::environment(pick.below(4) as u8);
                let context = policy::Context::new(now, environment).with_external_key(Some(&key));
                let decision = policy::decide(snapshot, &request, &context);
                common::check_decision(&request, &sources.api_key_query, &decision, true);
                if decision.route.is_some() {
                    // Past the route match the key is the credential (step 4).
                    assert!(
                        decision.principal.is_some() || decision.public,
                        "a found key identifies no principal"
                    );
                }
            }
        }
        Answer::Invalid => {}
        Answer::NotFound => panic!("a 200 answer read as not found"),
        Answer::Failed => panic!("a 200 answer read as a lookup failure"),
    }
    assert!(matches!(
        classify(Some(b"404"), Some(data), snapshot, &digest),
        Answer::NotFound
    ));
    let as_status = classify(Some(data), None, snapshot, &digest);
    match data {
        b"404" => assert!(matches!(as_status, Answer::NotFound)),
        b"200" => assert!(matches!(as_status, Answer::Invalid)),
        _ => assert!(
            matches!(as_status, Answer::Failed),
            "status {:?}",
            common::lossy(data)
        ),
    }
}
