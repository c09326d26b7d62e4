#![no_main]
// The checks live in granary::fuzzing::project_list.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::project_list(data));
