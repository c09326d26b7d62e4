#![no_main]
// The checks live in granary::fuzzing::cargo_config.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::cargo_config(data));
