//! Patient names in the character sets of Japanese, Korean and Chinese archives, as the
//! opted-in `patient_name` label of `pacs_study_unsent` shows them.
//!
//! The names are the examples of PS3.5 Annexes H to K, written into Part-10 files with the
//! standard's own bytes (never encoded by the code under test). Orthanc re-encodes them into
//! its `DefaultEncoding`, with its deviations (Shift_JIS under `ISO_IR 13`, raw EUC-KR and
//! GB 2312 without escape sequences); dcmqrscp returns them byte for byte as stored; a scripted
//! source sends hostile bytes no archive should, and the label must still be clean text.
//! The real-peer tests first check the bytes on the wire (with DCMTK's findscu), so that each
//! tests the case it names; every test then asserts the exact label values.
//!
//! Such an archive reads the queries it is sent in a character set too: one whose default
//! takes 0x5C for the yen sign (Orthanc's `Japanese`) must still split a StudyInstanceUID list
//! on the backslash. The list tests give destinations with each East Asian default every study
//! of the source and assert the verdict and the queries each strategy sent.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use chrono::{Duration, Local, NaiveDate};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use testkit::exporter::{Answer, Exporter};
use testkit::modules::SendCheck;
use testkit::peers::{require_binary, Dcmqrscp, Orthanc};
use testkit::scripted::{response_command, Conn, Request, ScriptedPeer, STUDY_ROOT_FIND};
use testkit::studies::{generate, Study};

/// What the exporter cuts a label value to (`MAX_LABEL_CHARS` of send_check).
const MAX_LABEL_CHARS: usize = 128;

/// A patient name from the standard: its Specific Character Set, its bytes as PS3.5 gives
/// them, and the text they mean.
struct Example {
    /// Study Instance UID of the study that carries it (its Patient ID is derived from it).
    uid: &'static str,
    charset: &'static str,
    bytes: &'static [u8],
    name: &'static str,
}

/// H.3.1: kanji and hiragana through ESC $ B, back to ASCII with ESC ( B.
const YAMADA_KANJI: Example = Example {
    uid: "2.25.318001",
    charset: "\\ISO 2022 IR 87",
    bytes: b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\
             \x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
    name: "Yamada^Tarou=山田^太郎=やまだ^たろう",
};

/// H.3.2: half-width katakana in G1 from the start (IR 13), kanji through ESC $ B, back to
/// JIS X 0201 romaji with ESC ( J.
const YAMADA_KATAKANA: Example = Example {
    uid: "2.25.318002",
    charset: "ISO 2022 IR 13\\ISO 2022 IR 87",
    bytes: b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\
             \x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J",
    name: "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう",
};

/// The phonetic group of H.3.2 alone, in plain ISO_IR 13 (JIS X 0201): half-width katakana.
const YAMADA_HANKAKU: Example = Example {
    uid: "2.25.318006",
    charset: "ISO_IR 13",
    bytes: b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3",
    name: "ﾔﾏﾀﾞ^ﾀﾛｳ",
};

/// I.2: KS X 1001 designated to G1 with ESC $ ) C after every delimiter.
const HONG: Example = Example {
    uid: "2.25.318003",
    charset: "\\ISO 2022 IR 149",
    bytes: b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\
             \x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
    name: "Hong^Gildong=洪^吉洞=홍^길동",
};

/// Annex J: GB18030, no code extensions.
const WANG: Example = Example {
    uid: "2.25.318004",
    charset: "GB18030",
    bytes: b"Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=",
    name: "Wang^XiaoDong=王^小东=",
};

/// Annex K: GB 2312 designated to G1 with ESC $ ) A.
const ZHANG: Example = Example {
    uid: "2.25.318005",
    charset: "\\ISO 2022 IR 58",
    bytes: b"Zhang^XiaoDong=\x1b$)A\xd5\xc5^\x1b$)A\xd0\xa1\xb6\xab=",
    name: "Zhang^XiaoDong=张^小东=",
};

const EXAMPLES: [&Example; 6] = [
    &YAMADA_KANJI,
    &YAMADA_KATAKANA,
    &YAMADA_HANKAKU,
    &HONG,
    &WANG,
    &ZHANG,
];

/// What Orthanc 1.10 reads right. It misreads H.3.2 (`ISO 2022 IR 13\ISO 2022 IR 87`): it
/// stores the name as `ﾔﾏﾀﾞ^ﾀﾛｳ=;3ED^B@O:=$d$^$@^$?$m$&`, the JIS X 0208 bytes without their
/// escapes, and answers that; dcmqrscp, which keeps the bytes, carries that example.
const ORTHANC_READS: [&Example; 5] = [&YAMADA_KANJI, &YAMADA_HANKAKU, &HONG, &WANG, &ZHANG];

/// An Orthanc `DefaultEncoding`, the examples loaded into it (names it can hold), and what
/// Orthanc 1.10 answers for one of them: Specific Character Set and PatientName bytes.
struct OrthancCase {
    default_encoding: &'static str,
    loaded: &'static [&'static Example],
    answered: &'static Example,
    charset: &'static str,
    bytes: &'static [u8],
}

const ORTHANC_CASES: [OrthancCase; 5] = [
    // Declares ISO_IR 13 and writes Shift_JIS: kanji and kana as byte pairs (katakana stay
    // single bytes, as in JIS X 0201).
    OrthancCase {
        default_encoding: "Japanese",
        loaded: &[&YAMADA_KANJI, &YAMADA_HANKAKU],
        answered: &YAMADA_KANJI,
        charset: "ISO_IR 13",
        bytes: b"Yamada^Tarou=\x8eR\x93c^\x91\xbe\x98Y=\
                 \x82\xe2\x82\xdc\x82\xbe^\x82\xbd\x82\xeb\x82\xa4",
    },
    // One value, no leading backslash; escapes as in H.3.1.
    OrthancCase {
        default_encoding: "JapaneseKanji",
        loaded: &[&YAMADA_KANJI],
        answered: &YAMADA_KANJI,
        charset: "ISO 2022 IR 87",
        bytes: YAMADA_KANJI.bytes,
    },
    // One value and raw EUC-KR: no escape sequence at all.
    OrthancCase {
        default_encoding: "Korean",
        loaded: &[&HONG],
        answered: &HONG,
        charset: "ISO 2022 IR 149",
        bytes: b"Hong^Gildong=\xfb\xf3^\xd1\xce\xd4\xd7=\xc8\xab^\xb1\xe6\xb5\xbf",
    },
    // GB18030 holds all of Unicode: every example comes back, katakana and hangul as
    // four-byte sequences.
    OrthancCase {
        default_encoding: "Chinese",
        loaded: &ORTHANC_READS,
        answered: &WANG,
        charset: "GB18030",
        bytes: WANG.bytes,
    },
    // One value and raw GB 2312: no escape sequence at all.
    OrthancCase {
        default_encoding: "SimplifiedChinese",
        loaded: &[&ZHANG, &WANG],
        answered: &ZHANG,
        charset: "ISO 2022 IR 58",
        bytes: b"Zhang^XiaoDong=\xd5\xc5^\xd0\xa1\xb6\xab=",
    },
];

/// An hour ago, as (StudyDate, StudyTime): inside the 24-hour lookback, past the grace period.
fn an_hour_ago() -> (String, String) {
    let t = Local::now().naive_local() - Duration::hours(1);
    (
        t.format("%Y%m%d").to_string(),
        t.format("%H%M%S").to_string(),
    )
}

/// `bytes` padded to an even length with `pad`, as a DICOM value.
fn padded(bytes: &[u8], pad: u8) -> Vec<u8> {
    let mut value = bytes.to_vec();
    if value.len() % 2 == 1 {
        value.push(pad);
    }
    value
}

/// The Part-10 file of the single instance of `example`'s study, taken an hour ago. The
/// PatientName goes in as bytes, so dicom-object writes them untouched.
fn instance(example: &Example) -> Vec<u8> {
    let (date, time) = an_hour_ago();
    let text = |tag, vr, value: &str| DataElement::new(tag, vr, PrimitiveValue::from(value));
    let object = InMemDicomObject::from_element_iter([
        text(tags::SPECIFIC_CHARACTER_SET, VR::CS, example.charset),
        text(
            tags::SOP_CLASS_UID,
            VR::UI,
            uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
        ),
        text(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            &format!("{}.1.1", example.uid),
        ),
        text(tags::STUDY_DATE, VR::DA, &date),
        text(tags::STUDY_TIME, VR::TM, &time),
        text(tags::MODALITY, VR::CS, "OT"),
        DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from(padded(example.bytes, b' ')),
        ),
        text(tags::PATIENT_ID, VR::LO, &format!("PID{}", example.uid)),
        text(tags::STUDY_INSTANCE_UID, VR::UI, example.uid),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &format!("{}.1", example.uid),
        ),
        text(tags::STUDY_ID, VR::SH, "1"),
        text(tags::SERIES_NUMBER, VR::IS, "1"),
        text(tags::INSTANCE_NUMBER, VR::IS, "1"),
    ]);
    let file = object
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN))
        .expect("file meta group");
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).expect("encodable instance");
    assert!(
        contains(
            &bytes,
            &explicit_element(0x0010, 0x0010, "PN", example.bytes)
        ),
        "{}: the file must carry the standard's bytes",
        example.name
    );
    bytes
}

/// One element in Explicit VR Little Endian (a VR with a 16-bit length), padded with spaces.
fn explicit_element(group: u16, element: u16, vr: &str, value: &[u8]) -> Vec<u8> {
    let value = padded(value, b' ');
    let length = u16::try_from(value.len()).expect("a short value");
    [
        &group.to_le_bytes()[..],
        &element.to_le_bytes(),
        vr.as_bytes(),
        &length.to_le_bytes(),
        &value,
    ]
    .concat()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The C-FIND answers of `aet` on `port` to a STUDY-level query with `keys` (findscu's `-k`
/// arguments), in order, as DCMTK's findscu saved them (Explicit VR Little Endian): the bytes
/// the peer put on the wire.
fn findscu_answers(aet: &str, port: u16, keys: &[&str]) -> Vec<Vec<u8>> {
    let findscu = require_binary("findscu", "dcmtk");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(&findscu);
    command
        .args(["-S", "-aec", aet, "-X", "-od"])
        .arg(dir.path())
        .args(["-k", "QueryRetrieveLevel=STUDY"]);
    for key in keys {
        command.args(["-k", key]);
    }
    let output = command
        .args(["127.0.0.1", &port.to_string()])
        .env("TCP_NODELAY", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", findscu.display()));
    assert!(
        output.status.success(),
        "findscu against {aet}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut paths: Vec<_> = fs::read_dir(dir.path())
        .expect("findscu's output directory")
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    // rsp0001.dcm, rsp0002.dcm, ...: the order of the answer.
    paths.sort();
    paths
        .iter()
        .map(|path| fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// The C-FIND answer of `aet` on `port` for study `uid`, with its Specific Character Set and
/// PatientName.
fn findscu_answer(aet: &str, port: u16, uid: &str) -> Vec<u8> {
    let uid_key = format!("StudyInstanceUID={uid}");
    findscu_answers(
        aet,
        port,
        &[&uid_key, "SpecificCharacterSet", "PatientName"],
    )
    .into_iter()
    .next()
    .unwrap_or_else(|| panic!("{aet} answered nothing for {uid}"))
}

/// Asserts that a C-FIND answer carries exactly this Specific Character Set and PatientName.
fn assert_on_the_wire(answer: &[u8], charset: &str, name: &[u8], what: &str) {
    assert!(
        contains(
            answer,
            &explicit_element(0x0008, 0x0005, "CS", charset.as_bytes())
        ),
        "{what}: Specific Character Set {charset:?} expected in {:02x?}",
        answer
    );
    assert!(
        contains(answer, &explicit_element(0x0010, 0x0010, "PN", name)),
        "{what}: PatientName {name:02x?} expected in {:02x?}",
        answer
    );
}

/// The send_check module with the `patient_name` label, from `source` (`AET@host:port`) to
/// `destination`.
async fn check(source: &str, destination: &str) -> Answer {
    let config = SendCheck::to(destination).labels("patient_name").config();
    Exporter::new(&config)
        .probe("check", source, Some(30.0))
        .await
}

/// Study Instance UID → patient_name of every study reported, each of them missing.
fn names(answer: &Answer, what: &str) -> BTreeMap<String, String> {
    assert_eq!(
        answer.metric("probe_success"),
        1.0,
        "{what}: {}",
        answer.body
    );
    answer
        .series("pacs_study_unsent")
        .into_iter()
        .map(|labels| {
            assert_eq!(labels["state"], "missing", "{what}: {labels:?}");
            (
                labels["study_instance_uid"].clone(),
                labels["patient_name"].clone(),
            )
        })
        .collect()
}

fn expected_names(examples: &[&Example]) -> BTreeMap<String, String> {
    examples
        .iter()
        .map(|e| (e.uid.to_string(), e.name.to_string()))
        .collect()
}

/// Orthanc, started once per `DefaultEncoding`, answers in it whatever the file said; the label
/// is the name as the standard wrote it, character for character.
#[tokio::test(flavor = "multi_thread")]
async fn orthanc_every_east_asian_default_encoding() {
    let destination = Orthanc::start("ARCHIVE");
    let archive = format!("ARCHIVE@127.0.0.1:{}", destination.dicom_port);
    for case in &ORTHANC_CASES {
        let what = case.default_encoding;
        let source = Orthanc::start_with(
            "SOURCE",
            serde_json::json!({ "DefaultEncoding": case.default_encoding }),
        );
        for example in case.loaded {
            source.upload(&instance(example));
        }
        let wire = findscu_answer("SOURCE", source.dicom_port, case.answered.uid);
        assert_on_the_wire(&wire, case.charset, case.bytes, what);

        let answer = check(&format!("SOURCE@127.0.0.1:{}", source.dicom_port), &archive).await;
        assert_eq!(
            names(&answer, what),
            expected_names(case.loaded),
            "{what}: {}",
            answer.body
        );
        assert_eq!(
            answer.metric("pacs_studies_missing"),
            case.loaded.len() as f64,
            "{what}"
        );
    }
}

/// dcmqrscp stores the files as they are and answers with their own Specific Character Set and
/// bytes: the standard's escape sequences reach the decoder untouched.
#[tokio::test(flavor = "multi_thread")]
async fn dcmqrscp_returns_the_standard_bytes() {
    let files = tempfile::tempdir().expect("temp dir");
    for example in EXAMPLES {
        write_instance(files.path(), example);
    }
    let source = Dcmqrscp::start_loaded("DCMQR", files.path());
    for example in EXAMPLES {
        let wire = findscu_answer("DCMQR", source.port, example.uid);
        assert_on_the_wire(&wire, example.charset, example.bytes, example.charset);
    }
    let destination = Orthanc::start("ARCHIVE");
    let answer = check(
        &format!("DCMQR@127.0.0.1:{}", source.port),
        &format!("ARCHIVE@127.0.0.1:{}", destination.dicom_port),
    )
    .await;
    assert_eq!(
        names(&answer, "dcmqrscp"),
        expected_names(&EXAMPLES),
        "{}",
        answer.body
    );
}

fn write_instance(dir: &Path, example: &Example) {
    let path = dir.join(format!("{}.dcm", example.uid));
    fs::write(&path, instance(example))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// A match no archive should send: Specific Character Set and PatientName bytes, and the
/// label value the exporter must make of them.
struct Hostile {
    uid: &'static str,
    charset: &'static [u8],
    name: Vec<u8>,
    label: String,
}

fn hostile(uid: &'static str, charset: &'static [u8], name: &[u8], label: &str) -> Hostile {
    Hostile {
        uid,
        charset,
        name: name.to_vec(),
        label: label.to_string(),
    }
}

/// Hostile names. Invalid bytes become U+FFFD (WHATWG's rules for UTF-8, EUC-KR and GB18030:
/// one per maximal invalid subsequence), an unknown or truncated escape sequence one U+FFFD;
/// control characters (C0, ESC, DEL, C1) become spaces, NUL disappears; 128 characters at
/// most, the last one '…' when cut.
fn hostile_names() -> Vec<Hostile> {
    let long_utf8 = "山".repeat(3414); // 10,242 bytes
    let long_jis = b"\x1b$B;3\x1b(B".repeat(1280); // 10,240 bytes, one 山 each
    let cut = format!("{}…", "山".repeat(MAX_LABEL_CHARS - 1));
    vec![
        hostile(
            "2.25.319001",
            b"ISO_IR 100",
            b"Ctl\x01A\x1bB\x7fC\x85D\x00E",
            "Ctl A B C DE",
        ),
        // A terminal escape in UTF-8, and the C1 CSI.
        hostile(
            "2.25.319002",
            b"ISO_IR 192",
            b"Esc\x1b[31mRed\xc2\x9b0m^Done",
            "Esc [31mRed 0m^Done",
        ),
        // ESC $ Z designates nothing; ESC ( cut short by 0x01; ESC at the very end.
        hostile(
            "2.25.319003",
            b"\\ISO 2022 IR 87",
            b"Bad\x1b$Zesc^\x1b(\x01X\x1b",
            "Bad\u{FFFD}esc^\u{FFFD} X\u{FFFD}",
        ),
        // Half a kanji before the escape back to ASCII, then a whole one (3B33 is 山).
        hostile(
            "2.25.319004",
            b"\\ISO 2022 IR 87",
            b"Cut\x1b$B;\x1b(B^\x1b$B;3",
            "Cut\u{FFFD}^山",
        ),
        // Raw KS X 1001 as Orthanc sends it, its last character cut in half.
        hostile(
            "2.25.319005",
            b"ISO 2022 IR 149",
            b"\xc8\xab\xb1",
            "홍\u{FFFD}",
        ),
        // A lone lead byte, a lead before '(', bytes never in UTF-8, an encoded surrogate.
        hostile(
            "2.25.319006",
            b"ISO_IR 192",
            b"Caf\xc3(\xff\xfe\xed\xa0\x80",
            "Caf\u{FFFD}(\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}",
        ),
        // 0xFF leads nothing in GB18030; 0x81 is cut off by the padding space.
        hostile(
            "2.25.319007",
            b"GB18030",
            b"\xcd\xf5\xff\x81",
            "王\u{FFFD}\u{FFFD}",
        ),
        // A control byte in the character set: an unknown term, so the default repertoire,
        // where 0xFC is no character.
        hostile(
            "2.25.319008",
            b"ISO_IR\x01 100",
            b"M\xfcller",
            "M\u{FFFD}ller",
        ),
        // Quote and backslash survive the exposition's escaping; CR LF become spaces.
        hostile(
            "2.25.319009",
            b"ISO_IR 100",
            b"O\"Brien\\Line\r\nTwo",
            "O\"Brien\\Line  Two",
        ),
        hostile("2.25.319010", b"ISO_IR 192", long_utf8.as_bytes(), &cut),
        hostile("2.25.319011", b"\\ISO 2022 IR 87", &long_jis, &cut),
    ]
}

/// One element in Implicit VR Little Endian.
fn implicit_element(group: u16, element: u16, value: &[u8], pad: u8) -> Vec<u8> {
    let value = padded(value, pad);
    let length = u32::try_from(value.len()).expect("a value under 4 GiB");
    [
        &group.to_le_bytes()[..],
        &element.to_le_bytes(),
        &length.to_le_bytes(),
        &value,
    ]
    .concat()
}

/// The STUDY-level match for `h`, byte by byte, in Implicit VR Little Endian.
fn raw_match(h: &Hostile, date: &str, time: &str) -> Vec<u8> {
    [
        implicit_element(0x0008, 0x0005, h.charset, b' '),
        implicit_element(0x0008, 0x0020, date.as_bytes(), b' '),
        implicit_element(0x0008, 0x0030, time.as_bytes(), b' '),
        implicit_element(0x0008, 0x0052, b"STUDY", b' '),
        implicit_element(0x0010, 0x0010, &h.name, b' '),
        implicit_element(0x0020, 0x000D, h.uid.as_bytes(), 0),
        implicit_element(0x0020, 0x1208, b"1", b' '),
    ]
    .concat()
}

/// A scripted archive that answers every C-FIND with `matches` (raw data sets) and releases.
async fn answering_raw(matches: Vec<Vec<u8>>) -> ScriptedPeer {
    ScriptedPeer::start(move |mut conn: Conn| {
        let matches = matches.clone();
        async move {
            conn.accept().await;
            loop {
                match conn.next_request().await {
                    Request::Find { pc, message_id, .. } => {
                        for data in &matches {
                            let pending =
                                response_command(0x8020, message_id, STUDY_ROOT_FIND, 0xFF00, true);
                            conn.send_message(pc, &pending, Some(data.clone())).await;
                        }
                        let done = response_command(0x8020, message_id, STUDY_ROOT_FIND, 0, false);
                        conn.send_message(pc, &done, None).await;
                    }
                    Request::Release => {
                        conn.write_pdu(&dicom_ul::pdu::Pdu::ReleaseRP).await;
                        return;
                    }
                    Request::Closed => return,
                }
            }
        }
    })
    .await
}

/// Control bytes, broken escapes, invalid multi-byte sequences and 10 KB names from a source:
/// every label is valid text without control characters, at most 128 characters, and exactly
/// what the rules above make of the bytes.
#[tokio::test(flavor = "multi_thread")]
async fn hostile_names_become_clean_bounded_labels() {
    let (date, time) = an_hour_ago();
    let cases = hostile_names();
    let source = answering_raw(cases.iter().map(|h| raw_match(h, &date, &time)).collect()).await;
    let destination = answering_raw(Vec::new()).await;
    let answer = check(&source.target("SRC"), &destination.target("DEST")).await;
    assert!(
        !answer.body.chars().any(|c| c.is_control() && c != '\n'),
        "control characters in the exposition:\n{}",
        answer.body
    );
    let labels = names(&answer, "hostile");
    assert_eq!(labels.len(), cases.len(), "{}", answer.body);
    for case in &cases {
        let label = &labels[case.uid];
        assert!(
            label.chars().count() <= MAX_LABEL_CHARS,
            "{}: {} characters",
            case.uid,
            label.chars().count()
        );
        assert!(
            !label.chars().any(char::is_control),
            "{}: {label:?}",
            case.uid
        );
        assert_eq!(
            *label, case.label,
            "{} from {:02x?} in {:?}",
            case.uid, case.name, case.charset
        );
    }
}

/// Orthanc's East Asian `DefaultEncoding`s other than `Japanese`.
const OTHER_EAST_ASIAN_DEFAULTS: [&str; 4] =
    ["JapaneseKanji", "Korean", "Chinese", "SimplifiedChinese"];

/// Minutes before now of the studies of the list tests: past the 10-minute grace period and
/// within the 24-hour lookback, so that every one is checked.
const LIST_AGES_MINUTES: [i64; 6] = [60, 130, 330, 620, 1000, 1380];

/// The studies of the list tests, [`LIST_AGES_MINUTES`] before now.
fn list_studies() -> Vec<Study> {
    let now = Local::now().naive_local();
    let when: Vec<(String, String)> = LIST_AGES_MINUTES
        .iter()
        .map(|minutes| {
            let t = now - Duration::minutes(*minutes);
            (
                t.format("%Y%m%d").to_string(),
                t.format("%H%M%S").to_string(),
            )
        })
        .collect();
    generate(12, 41, &when)
}

/// A source Orthanc (Latin-1, the default) holding every study of [`list_studies`].
fn list_source(studies: &[Study]) -> Orthanc {
    let source = Orthanc::start("SOURCE");
    for study in studies {
        for instance in study.instances() {
            source.upload(&instance);
        }
    }
    source
}

/// A destination Orthanc with `default_encoding` holding every study, every second one under
/// a StudyDate three days earlier (as an archive that corrected the date holds it): the
/// date-range query of `auto` shows only the others, so the moved ones are asked for by UID
/// list, with shown ones as the list's witnesses.
fn list_destination(default_encoding: &str, studies: &[Study]) -> Orthanc {
    let destination = Orthanc::builder("ARCHIVE")
        .config(serde_json::json!({ "DefaultEncoding": default_encoding }))
        .start();
    for (i, study) in studies.iter().enumerate() {
        let mut held = study.clone();
        if i % 2 == 1 {
            let date = NaiveDate::parse_from_str(&study.study_date, "%Y%m%d")
                .expect("a generated StudyDate")
                - Duration::days(3);
            held.study_date = date.format("%Y%m%d").to_string();
        }
        for instance in held.instances() {
            destination.upload(&instance);
        }
    }
    destination
}

/// The send_check module with `destination_query: strategy` from `source` to `destination`.
async fn list_check(source: &Orthanc, destination: &Orthanc, strategy: &str) -> Answer {
    let config = SendCheck::to(format!("ARCHIVE@127.0.0.1:{}", destination.dicom_port))
        .strategy(strategy)
        .config();
    Exporter::new(&config)
        .probe(
            "check",
            &format!("SOURCE@127.0.0.1:{}", source.dicom_port),
            Some(30.0),
        )
        .await
}

/// Queries of `kind` the probe sent to the destination.
fn destination_queries(answer: &Answer, kind: &str) -> f64 {
    answer.metric(&format!(
        "pacs_find_queries{{kind=\"{kind}\",peer=\"destination\"}}"
    ))
}

/// `uid_list` and `auto` against a [`list_destination`] with `default_encoding`: the exact
/// verdict (every study checked, none missing or incomplete), one list query each, and no
/// single-UID query from `auto`.
async fn assert_lists_match(
    source: &Orthanc,
    destination: &Orthanc,
    studies: &[Study],
    default_encoding: &str,
) {
    for strategy in ["uid_list", "auto"] {
        let what = format!("{default_encoding}, {strategy}");
        let answer = list_check(source, destination, strategy).await;
        assert_eq!(
            answer.metric("probe_success"),
            1.0,
            "{what}: {}",
            answer.body
        );
        for (series, value) in [
            ("pacs_studies_checked", studies.len()),
            ("pacs_studies_pending", 0),
            ("pacs_studies_missing", 0),
            ("pacs_studies_incomplete", 0),
            ("pacs_instances_missing", 0),
        ] {
            assert_eq!(
                answer.metric(series),
                value as f64,
                "{what}: {series}\n{}",
                answer.body
            );
        }
        assert!(
            answer.series("pacs_study_unsent").is_empty(),
            "{what}: {}",
            answer.body
        );
        let date_ranges = if strategy == "auto" { 1.0 } else { 0.0 };
        assert_eq!(
            destination_queries(&answer, "date_range"),
            date_ranges,
            "{what}"
        );
        assert_eq!(destination_queries(&answer, "uid_list"), 1.0, "{what}");
        assert_eq!(destination_queries(&answer, "uid"), 0.0, "{what}");
    }
}

/// Orthanc with `DefaultEncoding: Japanese` reads a query without Specific Character Set in
/// ISO_IR 13, where 0x5C is the yen sign: a StudyInstanceUID list sent that way is one odd
/// value and matches nothing (checked with findscu first). The exporter's queries declare
/// their set, so its lists match every study held.
#[tokio::test(flavor = "multi_thread")]
async fn uid_lists_match_on_a_japanese_default_destination() {
    let studies = list_studies();
    let source = list_source(&studies);
    let destination = list_destination("Japanese", &studies);
    let uids: Vec<&str> = studies
        .iter()
        .map(|s| s.study_instance_uid.as_str())
        .collect();
    let list = format!("StudyInstanceUID={}", uids.join("\\"));
    let plain = findscu_answers("ARCHIVE", destination.dicom_port, &[&list]);
    assert_eq!(plain.len(), 0, "a list without Specific Character Set");
    let declared = findscu_answers(
        "ARCHIVE",
        destination.dicom_port,
        &[&list, "SpecificCharacterSet=ISO_IR 100"],
    );
    assert_eq!(declared.len(), studies.len(), "a list in ISO_IR 100");

    assert_lists_match(&source, &destination, &studies, "Japanese").await;
}

/// The other East Asian defaults of Orthanc answer the exporter's lists as well.
#[tokio::test(flavor = "multi_thread")]
async fn uid_lists_match_on_every_other_east_asian_default_destination() {
    let studies = list_studies();
    let source = list_source(&studies);
    for default_encoding in OTHER_EAST_ASIAN_DEFAULTS {
        let destination = list_destination(default_encoding, &studies);
        assert_lists_match(&source, &destination, &studies, default_encoding).await;
    }
}
