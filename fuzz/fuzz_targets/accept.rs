#![no_main]
// The checks live in granary::fuzzing::accept.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::accept(data));
