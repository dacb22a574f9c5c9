//! The module's exports, called by Otoroshi through Extism with a JSON string
//! and answering one. Only Extism's own kernel functions are imported
//! (`extism:host/env`: `input_length`, `input_load_u8`, `input_load_u64`,
//! `alloc`, `store_u8`, `store_u64`, `output_set`), which every Extism host
//! registers; no Otoroshi host function, no WASI.

use super::{baked, shell};
use extism_pdk::{input_bytes, Memory};

/// Hands `out` to the host as the call's output; 0, or 1 if it cannot.
fn output(out: &[u8]) -> i32 {
    match Memory::from_bytes(out) {
        Ok(memory) => {
            memory.set_output();
            0
        }
        Err(_) => 1,
    }
}

/// `cp:otoroshi.next.plugins.WasmAccessValidator` (`functionName: "access"`).
#[no_mangle]
pub extern "C" fn access() -> i32 {
    output(&shell::access(&input_bytes(), baked::snapshot()))
}

/// `cp:otoroshi.next.plugins.WasmRequestTransformer`
/// (`functionName: "transform_request"`). Input that is not a JSON object fails
/// the call (Otoroshi then answers 400) rather than forwarding unstripped
/// headers.
#[no_mangle]
pub extern "C" fn transform_request() -> i32 {
    match shell::transform_request(&input_bytes(), baked::snapshot()) {
        Ok(out) => output(&out),
        Err(_) => 1,
    }
}

/// For operators: checks a settings object (what goes into `config.config`),
/// e.g. `extism call tenantgate-otoroshi.wasm check_config --input "$(cat settings.json)"`.
#[no_mangle]
pub extern "C" fn check_config() -> i32 {
    output(&shell::check_config(&input_bytes(), baked::snapshot()))
}
