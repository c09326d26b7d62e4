#![no_main]
// The checks live in granary::fuzzing::simple_html.
libfuzzer_sys::fuzz_target!(|data: &[u8]| granary::fuzzing::simple_html(data));
