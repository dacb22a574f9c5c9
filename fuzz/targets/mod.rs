//! One target per hostile input. Each `run` is a plain function: the
//! libFuzzer binaries (`fuzz_targets/`) call it, and so does the stable
//! replay test (`crates/testbed/tests/fuzz_corpus.rs`), which includes
//! this module by path.

pub mod common;

pub mod compiled;
pub mod envoy_headers;
pub mod intake;
pub mod jwt_payload;
pub mod key_bucket;
pub mod lookup_answer;
pub mod otoroshi_input;
pub mod plugin_config;
pub mod request;
pub mod signed;
pub mod snapshot_json;
