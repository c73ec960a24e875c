#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pacs_exporter_fuzz::pdu_pdv(data));
