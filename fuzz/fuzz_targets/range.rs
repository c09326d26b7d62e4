#![no_main]
// The checks live in granary::fuzzing::range.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::range(data));
