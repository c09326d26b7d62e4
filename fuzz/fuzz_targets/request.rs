#![no_main]
// The checks live in granary::fuzzing::request.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::request(data));
