//! The fuzz targets on stable Rust: every file of the committed corpus (`fuzz/corpus/<target>/`)
//! and every input a fuzzer once crashed on, through the same functions the targets call
//! (`testkit::fuzz`), so that `cargo test` keeps what fuzzing found fixed.

use std::path::{Path, PathBuf};

use testkit::fuzz as harness;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Runs every corpus file of `target` through `run`; the corpus must not be empty.
/// A failure names the file; the panic hook has printed what failed.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{} fails", path.display());
        }
        files += 1;
    }
    assert!(files > 0, "no corpus in {}", dir.display());
}

fn web_config(data: &[u8]) {
    harness::web_config(data, &fuzz_dir().join("web_config_files"))
}

#[test]
fn target_parse_corpus() {
    replay("target_parse", harness::target_parse);
}

#[test]
fn modules_yml_corpus() {
    replay("modules_yml", harness::modules_yml);
}

#[test]
fn web_config_corpus() {
    replay("web_config", web_config);
}

#[test]
fn pdu_pdv_corpus() {
    replay("pdu_pdv", harness::pdu_pdv);
}

#[test]
fn data_set_guard_corpus() {
    replay("data_set_guard", harness::data_set_guard);
}

#[test]
fn find_match_corpus() {
    replay("find_match", harness::find_match);
}

/// Decodes the hex of a regression input.
fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// pdu_pdv, out of memory: a command set whose (0052,0002) FD value is 28 bytes. dicom-parser
/// read three values, skipped 28 bytes in its count but not in the stream, took the last four
/// bytes of the value for the next tag and the bytes after them for a 4 GiB length, and
/// allocated it. The guard now refuses binary values that are not a whole number of values.
#[test]
fn a_binary_value_with_a_remainder_is_refused_before_the_parser_sees_it() {
    let command = hex("00000000 04000000 4c000000 52000200 1c000000
         312e322e 3834302e 31303030 382e352e 312e342e 312e3200 ffffffff
         fffffffd 00000000 00000000 00000000 00000000 00000000 00000000 00000000");
    let error = pacs_exporter::dicom::message::Command::parse(&command)
        .unwrap_err()
        .to_string();
    assert!(error.contains("whole number of 8-byte values"), "{error}");

    let mut input = vec![0x01, 0x04, 0x00];
    input.extend_from_slice(&(command.len() as u32 + 6).to_be_bytes());
    input.extend_from_slice(&(command.len() as u32 + 2).to_be_bytes());
    input.extend_from_slice(&[0x01, 0x03]);
    input.extend_from_slice(&command);
    harness::pdu_pdv(&input);
    harness::data_set_guard(&[&[0][..], &command].concat());
}

/// data_set_guard, out of memory: an item directly inside an item (explicit VR). The guard
/// walked it as a container; dicom-parser read on out of step and tried to allocate 1.7 GB.
/// The guard now allows items only in sequences and each delimiter only for its own kind.
#[test]
fn an_item_outside_a_sequence_is_refused_before_the_parser_sees_it() {
    let input = hex(
        "014000000153510000fffffffffeff00e0ffffffff4000000153510067000000
         00feff00e02e0000004000000153510000fffffffffeff00e0ffffffff080060
         00435302004d52feff0de053510000fffffffffeff00e0ffffffff4000000153
         51006700000000",
    );
    let error = pacs_exporter::dicom::guard::check_data_set(&input[1..], true)
        .unwrap_err()
        .to_string();
    assert!(error.contains("outside a sequence"), "{error}");
    harness::data_set_guard(&input);
    harness::find_match(&input);
}
