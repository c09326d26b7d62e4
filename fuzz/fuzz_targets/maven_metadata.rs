#![no_main]
// The checks live in granary::fuzzing::maven_metadata.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::maven_metadata(data));
