#![no_main]
// The checks live in granary::fuzzing::simple_json.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::simple_json(data));
