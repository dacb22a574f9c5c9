#![no_main]
use tenantgate_fuzz as targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::intake::run(data));
