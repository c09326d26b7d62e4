#![no_main]
// The checks live in granary::fuzzing::cargo_index.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::cargo_index(data));
