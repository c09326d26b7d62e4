#![no_main]
// The checks live in granary::fuzzing::config_file.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::config_file(data));
