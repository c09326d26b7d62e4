#![no_main]
// The checks live in granary::fuzzing::packument.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::packument(data));
