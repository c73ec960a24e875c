//! The bodies of the fuzz targets: one function per parser of input from the network or from
//! files, each asserting what must hold of any input beyond "no panic".
//!
//! The fuzz targets (`fuzz/fuzz_targets/`) call these, and `tests/it/fuzz_regressions.rs`
//! replays the committed corpus and every input a fuzzer once crashed through them on stable
//! Rust, so this module must use nothing of libFuzzer or of nightly Rust.

use std::collections::VecDeque;
use std::path::Path;

use dicom_core::VR;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};
use pacs_exporter::config::Config;
use pacs_exporter::dicom::pdu::{
    decode_pdu, pdata_values, pdu_length, MessageAssembly, MAX_CONTROL_PDU, MAX_IDENTIFIER_BYTES,
};
use pacs_exporter::dicom::charset::{label_value, CharacterSets};
use pacs_exporter::dicom::guard::{check_data_set, top_level_elements, RawElement};
use pacs_exporter::dicom::study::{series_match, study_match};
use pacs_exporter::dicom::Step;
use pacs_exporter::target::Target;
use pacs_exporter::web::WebConfig;

/// The longest label value the checks ask `label_value` for.
const LABEL_CHARS: usize = 64;

/// `AET@host:port`: a target that parses prints as one that parses back to itself.
pub fn target_parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(target) = Target::parse(text) else {
        return;
    };
    let printed = target.to_string();
    match Target::parse(&printed) {
        Ok(again) => assert_eq!(again, target, "{text:?} printed as {printed:?}"),
        Err(e) => panic!("{text:?} printed as {printed:?}, which does not parse: {e}"),
    }
}

/// modules.yml: a config that loads renders (for `/config`) as YAML that loads again to the
/// same rendering.
pub fn modules_yml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    let _ = config.warnings();
    let yaml = config.to_yaml();
    match Config::parse(&yaml) {
        Ok(again) => assert_eq!(again.to_yaml(), yaml, "{text:?}"),
        Err(e) => panic!("{text:?} renders as {yaml:?}, which does not load: {e}"),
    }
}

/// `--web.config.file`, with relative paths read from `files` (the targets and the tests pass
/// `fuzz/web_config_files/`: a throwaway CA, and a server certificate and key it signed, so
/// that the corpus reaches the TLS set-up).
pub fn web_config(data: &[u8], files: &Path) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = WebConfig::parse(text, files);
}

/// Bytes from a peer, read as the association reads them while it waits for DIMSE messages:
/// PDU headers checked against our limits, PDUs decoded, PDVs assembled into messages on one
/// presentation context; each C-FIND match then read as the find prober reads it.
///
/// The first byte chooses the conditions: bit 0 an explicit VR transfer syntax, bit 1 a C-ECHO
/// (no data set accepted) rather than a C-FIND, bits 2–3 the maximum PDU length we announced,
/// bits 4–5 the presentation context asked for (1, 3, 5 or 7).
pub fn pdu_pdv(data: &[u8]) {
    let Some((&conditions, mut stream)) = data.split_first() else {
        return;
    };
    let explicit = conditions & 1 != 0;
    let max_data_set = if conditions & 2 != 0 {
        0
    } else {
        MAX_IDENTIFIER_BYTES
    };
    let local_max_pdu = [16_384, 4_096, 1 << 20, 64][usize::from((conditions >> 2) & 3)];
    let context = 1 + 2 * ((conditions >> 4) & 3);

    let mut pending = VecDeque::new();
    let mut assembly = MessageAssembly::new(context, max_data_set);
    loop {
        let Some(value) = pending.pop_front() else {
            let Some(header) = stream.first_chunk::<6>() else {
                return;
            };
            let Ok(length) = pdu_length(Step::Exchange, header, local_max_pdu) else {
                return;
            };
            let limit = if header[0] == 0x04 {
                local_max_pdu as usize + 6
            } else {
                MAX_CONTROL_PDU as usize
            };
            assert!(length <= limit, "{length} > {limit}");
            let Some(bytes) = stream.get(..6 + length) else {
                return;
            };
            stream = &stream[6 + length..];
            let Ok(pdu) = decode_pdu(Step::Exchange, bytes) else {
                return;
            };
            let Ok(values) = pdata_values(pdu) else {
                return;
            };
            pending.extend(values);
            continue;
        };
        let message = match assembly.push(value) {
            Ok(Some(message)) => message,
            Ok(None) => continue,
            Err(_) => return,
        };
        assert_eq!(message.presentation_context_id, context);
        if let Some(data) = &message.data {
            assert!(
                data.len() <= max_data_set,
                "{} > {max_data_set}",
                data.len()
            );
            if let Ok(elements) = top_level_elements(data, explicit) {
                check_study(&elements, data);
            }
        }
        assembly = MessageAssembly::new(context, max_data_set);
    }
}

/// The guard in front of dicom-object: both of its functions agree, the elements it returns
/// are disjoint slices of the input in order, and what it passes dicom-object parses without
/// panicking, overflowing the stack or allocating more than the input warrants.
///
/// The first byte's bit 0 chooses explicit VR.
pub fn data_set_guard(data: &[u8]) {
    let Some((&conditions, bytes)) = data.split_first() else {
        return;
    };
    let explicit = conditions & 1 != 0;
    let checked = check_data_set(bytes, explicit);
    match top_level_elements(bytes, explicit) {
        Ok(elements) => {
            assert_eq!(checked, Ok(()));
            let start = bytes.as_ptr() as usize;
            let mut end = 0;
            for element in &elements {
                let offset = element.value.as_ptr() as usize - start;
                assert!(offset >= end && offset + element.value.len() <= bytes.len());
                end = offset + element.value.len();
            }
        }
        Err(e) => assert_eq!(checked, Err(e)),
    }
    if checked.is_ok() {
        let ts = if explicit {
            EXPLICIT_VR_LITTLE_ENDIAN.erased()
        } else {
            IMPLICIT_VR_LITTLE_ENDIAN.erased()
        };
        let _ = InMemDicomObject::read_dataset_with_ts(bytes, &ts);
    }
}

/// A C-FIND match as the find prober reads it: the guard's top-level elements, then the typed
/// study (and series), its text decoded per SpecificCharacterSet. The first byte's bit 0 chooses explicit VR.
pub fn find_match(data: &[u8]) {
    let Some((&conditions, bytes)) = data.split_first() else {
        return;
    };
    let explicit = conditions & 1 != 0;
    if let Ok(elements) = top_level_elements(bytes, explicit) {
        check_study(&elements, bytes);
    }
}

/// What must hold of any study match (and the same bytes read as a series match), and of
/// any text decoded from it.
fn check_study(elements: &[RawElement<'_>], bytes: &[u8]) {
    let series = series_match(elements);
    for ascii in [&series.uid]
        .into_iter()
        .chain(series.study_uid.as_ref())
        .chain(series.number.as_ref())
        .chain(series.modality.as_ref())
    {
        assert!(ascii.is_ascii(), "{ascii:?}");
    }
    let study = study_match(elements);
    for ascii in [&study.uid]
        .into_iter()
        .chain(study.modalities.as_ref())
        .chain(study.study_date.as_ref())
    {
        assert!(ascii.is_ascii(), "{ascii:?}");
    }
    let decoded = [
        &study.patient_name,
        &study.patient_id,
        &study.study_id,
        &study.accession_number,
    ];
    for text in decoded.into_iter().flatten() {
        check_label(text);
    }
    // Every element, and the whole input as one value, through the match's character sets.
    let charset = elements
        .iter()
        .find(|e| e.tag == dicom_core::Tag(0x0008, 0x0005))
        .map(|e| String::from_utf8_lossy(e.value).into_owned())
        .unwrap_or_default();
    let sets = CharacterSets::parse(&charset);
    for element in elements {
        check_label(&sets.decode(element.value, element.vr.unwrap_or(VR::UN)));
    }
    for vr in [VR::PN, VR::LO, VR::ST] {
        check_label(&sets.decode(bytes, vr));
    }
}

/// `label_value` gives text without control characters or outer spaces, within its bound;
/// text that is already such a value and short enough is kept as it is.
fn check_label(text: &str) {
    for max in [0, 1, 16, LABEL_CHARS] {
        let label = label_value(text, max);
        assert!(label.chars().count() <= max, "{text:?} {max}: {label:?}");
        assert!(!label.chars().any(char::is_control), "{text:?}: {label:?}");
        assert_eq!(label, label.trim_matches(' '), "{text:?}");
        let clean = !text.chars().any(char::is_control) && text == text.trim_matches(' ');
        if clean && text.chars().count() <= max {
            assert_eq!(label, text);
        }
    }
}
