#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pacs_exporter_fuzz::data_set_guard(data));
