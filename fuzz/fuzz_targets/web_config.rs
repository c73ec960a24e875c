#![no_main]

use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let files = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/web_config_files"));
    testkit::fuzz::web_config(data, files)
});
