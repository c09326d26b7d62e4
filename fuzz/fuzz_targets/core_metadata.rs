#![no_main]
// The checks live in granary::fuzzing::core_metadata.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::core_metadata(data));
