//! C-FIND answers a real server will not produce on demand: every PDU layout the standard
//! allows, cut-off and failed answers, aborts and silence mid-answer, and text in the
//! character sets our users' archives use. Scripted peers play the PACS.

use chrono::Local;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_ul::pdu::{AbortRQSource, Pdu};
use testkit::exporter::{Answer, Exporter};
use testkit::modules::SendCheck;
use testkit::scripted::{encode_dataset, study_match, Conn, Layout, ScriptedPeer};

const SCRAPE_TIMEOUT: f64 = 2.0;

fn find_config() -> &'static str {
    "
modules:
  find:
    prober: find
    timeout: 10s
    find:
      query: { StudyDate: today, ModalitiesInStudy: CT }
"
}

fn send_check_config(destination: &str, labels: &str) -> String {
    SendCheck::to(destination)
        .timeout("10s")
        .strategy("uid_list")
        .labels(labels)
        .config()
}

async fn checked(answer: Answer) -> Answer {
    answer.within(SCRAPE_TIMEOUT)
}

/// A peer that accepts, answers one C-FIND with `matches` and `status`, and releases.
async fn answering(
    matches: Vec<dicom_object::InMemDicomObject>,
    status: u16,
    layout: Layout,
) -> ScriptedPeer {
    ScriptedPeer::start(move |mut conn: Conn| {
        let matches = matches.clone();
        async move {
            conn.accept().await;
            conn.find_response(&matches, status, layout).await;
            conn.release().await;
        }
    })
    .await
}

/// The send_check module from `source` to `destination`, with `labels`, checked to answer
/// before the scrape timeout.
async fn probe_check(source: &ScriptedPeer, destination: &ScriptedPeer, labels: &str) -> Answer {
    let config = send_check_config(&destination.target("DEST"), labels);
    checked(
        Exporter::new(&config)
            .probe("check", &source.target("SRC"), Some(SCRAPE_TIMEOUT))
            .await,
    )
    .await
}

/// An hour ago, as (StudyDate, StudyTime); early in the day, shortly after midnight.
fn an_hour_ago() -> (String, String) {
    let t = Local::now().naive_local() - chrono::Duration::hours(1);
    let t = if t.date() == Local::now().date_naive() {
        t
    } else {
        Local::now().naive_local() - chrono::Duration::minutes(20)
    };
    (
        t.format("%Y%m%d").to_string(),
        t.format("%H%M%S").to_string(),
    )
}

/// Accepts, reads a C-FIND-RQ and answers one pending match; the script goes on from there.
async fn one_pending_match(conn: &mut Conn) {
    conn.accept().await;
    let Some((pc, id, _)) = conn.read_find().await else {
        return;
    };
    let rsp = testkit::scripted::response_command(
        0x8020,
        id,
        testkit::scripted::STUDY_ROOT_FIND,
        0xFF00,
        true,
    );
    let data = Some(encode_dataset(&matches(1)[0]));
    conn.send_laid_out(pc, &rsp, data, Layout::Separate).await;
}

/// The find module against `peer`, checked to answer before the scrape timeout.
async fn probe_find(peer: &ScriptedPeer) -> Answer {
    checked(
        Exporter::new(find_config())
            .probe("find", &peer.target("X"), Some(SCRAPE_TIMEOUT))
            .await,
    )
    .await
}

fn matches(n: usize) -> Vec<dicom_object::InMemDicomObject> {
    let (date, time) = an_hour_ago();
    (0..n)
        .map(|i| study_match(&format!("1.2.3.{i}"), &date, &time, Some(2)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_pdu_layout_is_assembled() {
    for layout in [
        Layout::Separate,
        Layout::OnePdu,
        Layout::Fragmented,
        Layout::Packed,
    ] {
        let peer = answering(matches(3), 0x0000, layout).await;
        let answer = checked(
            Exporter::new(find_config())
                .probe("find", &peer.target("X"), Some(SCRAPE_TIMEOUT))
                .await,
        )
        .await;
        assert_eq!(
            answer.metric("probe_success"),
            1.0,
            "{layout:?}: {}",
            answer.body
        );
        assert_eq!(answer.metric("probe_dicom_find_matches"), 3.0, "{layout:?}");
        assert_eq!(answer.metric("probe_dicom_status"), 0.0, "{layout:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn find_sends_the_module_keys() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let peer = ScriptedPeer::start(move |mut conn: Conn| {
        let tx = tx.clone();
        async move {
            conn.accept().await;
            if let Some(identifier) = conn.find_response(&[], 0x0000, Layout::Separate).await {
                let _ = tx.send(identifier);
            }
            conn.release().await;
        }
    })
    .await;
    let answer = Exporter::new(find_config())
        .probe("find", &peer.target("X"), None)
        .await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    let identifier = rx.recv().await.expect("the query");
    let text = |tag| {
        identifier
            .get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_string())
    };
    assert_eq!(text(tags::QUERY_RETRIEVE_LEVEL).as_deref(), Some("STUDY"));
    assert_eq!(
        text(tags::STUDY_DATE),
        Some(Local::now().format("%Y%m%d").to_string())
    );
    assert_eq!(text(tags::MODALITIES_IN_STUDY).as_deref(), Some("CT"));
    // Declared, so that an archive whose default is not ASCII still reads `\` as a delimiter.
    assert_eq!(
        text(tags::SPECIFIC_CHARACTER_SET).as_deref(),
        Some("ISO_IR 100")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cut_off_answer_is_too_many_matches() {
    let peer = answering(matches(2), 0xFE00, Layout::Separate).await;
    let answer = probe_find(&peer).await;
    answer.assert_failed("find", "too_many_matches");
    assert_eq!(answer.metric("probe_dicom_status"), f64::from(0xFE00));
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_statuses_fail_the_probe() {
    for status in [0xA700u16, 0xA900, 0xC001] {
        let peer = answering(matches(1), status, Layout::Separate).await;
        let answer = checked(
            Exporter::new(find_config())
                .probe("find", &peer.target("X"), Some(SCRAPE_TIMEOUT))
                .await,
        )
        .await;
        answer.assert_failed("find", "status_failure");
        assert_eq!(answer.metric("probe_dicom_status"), f64::from(status));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_without_identifier_is_a_protocol_error() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        let Some((pc, id, _)) = conn.read_find().await else {
            return;
        };
        let rsp = testkit::scripted::response_command(
            0x8020,
            id,
            testkit::scripted::STUDY_ROOT_FIND,
            0xFF00,
            false,
        );
        conn.send_laid_out(pc, &rsp, None, Layout::Separate).await;
        conn.hold().await;
    })
    .await;
    let answer = probe_find(&peer).await;
    answer.assert_failed("find", "protocol_error");
}

#[tokio::test(flavor = "multi_thread")]
async fn abort_mid_answer() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        one_pending_match(&mut conn).await;
        conn.write_pdu(&Pdu::AbortRQ {
            source: AbortRQSource::ServiceUser,
        })
        .await;
        conn.hold().await;
    })
    .await;
    let answer = probe_find(&peer).await;
    answer.assert_failed("find", "aborted");
}

#[tokio::test(flavor = "multi_thread")]
async fn silence_mid_answer_times_out_before_the_deadline() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        one_pending_match(&mut conn).await;
        conn.hold().await;
    })
    .await;
    let answer = probe_find(&peer).await;
    answer.assert_failed("find", "timeout");
}

/// A source whose answer was cut off must not be compared: a partial list would hide studies.
#[tokio::test(flavor = "multi_thread")]
async fn send_check_refuses_a_cut_off_source_answer() {
    let source = answering(matches(5), 0xFE00, Layout::Separate).await;
    let destination = answering(vec![], 0x0000, Layout::Separate).await;
    let answer = probe_check(&source, &destination, "").await;
    answer.assert_failed("find_source", "too_many_matches");
    assert_eq!(answer.metric("pacs_peer_up{peer=\"source\"}"), 0.0);
    assert_eq!(answer.value("pacs_studies_missing"), None, "no verdict");
    assert!(
        !answer.body.contains("pacs_study_unsent{"),
        "{}",
        answer.body
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn send_check_names_the_failing_side() {
    let source = answering(matches(2), 0x0000, Layout::OnePdu).await;
    let destination = answering(vec![], 0xA700, Layout::Separate).await;
    let answer = probe_check(&source, &destination, "").await;
    answer.assert_failed("find_destination", "status_failure");
    assert_eq!(answer.metric("pacs_peer_up{peer=\"source\"}"), 1.0);
    assert_eq!(answer.metric("pacs_peer_up{peer=\"destination\"}"), 0.0);

    // A silent destination: the answer still comes before the deadline, naming the side.
    let silent = ScriptedPeer::start(|mut conn: Conn| async move { conn.hold().await }).await;
    let answer = probe_check(&source, &silent, "").await;
    answer.assert_failed("associate", "timeout");
    assert_eq!(answer.metric("pacs_peer_up{peer=\"source\"}"), 1.0);
    assert_eq!(answer.metric("pacs_peer_up{peer=\"destination\"}"), 0.0);
}

/// Patient names in Latin-1, Cyrillic (ISO_IR 144) and UTF-8 come out as the same UTF-8
/// label values, and only when the module opts in.
#[tokio::test(flavor = "multi_thread")]
async fn names_are_decoded_per_character_set() {
    let (date, time) = an_hour_ago();
    let named = |uid: &str, charset: &str, name: &str| {
        let mut m = study_match(uid, &date, &time, Some(1));
        m.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from(charset.to_string()),
        ));
        m.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from(name.to_string()),
        ));
        m
    };
    let studies = vec![
        named("1.2.3.1", "ISO_IR 100", "Müller^Jürgen"),
        named("1.2.3.2", "ISO_IR 144", "Иванов^Иван"),
        named("1.2.3.3", "ISO_IR 192", "山田^太郎"),
    ];
    // The Cyrillic name really travels as ISO 8859-5, not as UTF-8.
    let cyrillic = encode_dataset(&studies[1]);
    assert!(
        cyrillic.windows(2).any(|w| w == [0xB8, 0xD2]),
        "ISO 8859-5 bytes of 'Ив' expected"
    );
    assert!(
        !cyrillic.windows(2).any(|w| w == "И".as_bytes()),
        "no UTF-8 in an ISO_IR 144 data set"
    );

    let source = answering(studies, 0x0000, Layout::Fragmented).await;
    let destination = answering(vec![], 0x0000, Layout::Separate).await;

    let answer = probe_check(&source, &destination, "patient_name").await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(answer.metric("pacs_studies_missing"), 3.0);
    for (uid, name) in [
        ("1.2.3.1", "Müller^Jürgen"),
        ("1.2.3.2", "Иванов^Иван"),
        ("1.2.3.3", "山田^太郎"),
    ] {
        let series = format!("pacs_study_unsent{{patient_name=\"{name}\",state=\"missing\",study_instance_uid=\"{uid}\"}}");
        assert_eq!(
            answer.value(&series),
            Some(1.0),
            "{series} in\n{}",
            answer.body
        );
    }

    let answer = probe_check(&source, &destination, "").await;
    assert_eq!(answer.metric("pacs_studies_missing"), 3.0);
    for name in ["Müller", "Иванов", "山田"] {
        assert!(
            !answer.body.contains(name),
            "{name} must not appear without opt-in:\n{}",
            answer.body
        );
    }
}

/// A match of sequences nested thousands deep: refused, not parsed (the parser recurses).
#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_match_is_a_protocol_error() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        let Some((pc, id, _)) = conn.read_find().await else {
            return;
        };
        let mut data = Vec::new();
        for _ in 0..3000 {
            // (0040,0100) SQ of undefined length, then an item of undefined length.
            data.extend_from_slice(&[0x40, 0x00, 0x00, 0x01, 0xFF, 0xFF, 0xFF, 0xFF]);
            data.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        let rsp = testkit::scripted::response_command(
            0x8020,
            id,
            testkit::scripted::STUDY_ROOT_FIND,
            0xFF00,
            true,
        );
        conn.send_laid_out(pc, &rsp, Some(data), Layout::Separate)
            .await;
        conn.hold().await;
    })
    .await;
    let answer = probe_find(&peer).await;
    answer.assert_failed("find", "protocol_error");
}
