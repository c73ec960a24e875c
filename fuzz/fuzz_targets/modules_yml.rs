#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| testkit::fuzz::modules_yml(data));
