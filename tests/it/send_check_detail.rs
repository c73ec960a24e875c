//! Beyond "is it there", against real PACS: studies a destination Orthanc holds under another
//! PatientID or AccessionNumber (rewritten through its REST API) are mismatched; the series an
//! incomplete study lacks, on an Orthanc and on dcmqrscp (which reports no instance counts),
//! are named; and one modality's routes to two archives come from the request. The expected
//! answers are computed from what was loaded.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use serde_json::json;
use testkit::exporter::{Answer, Exporter};
use testkit::modules::SendCheck;
use testkit::peers::{Dcmqrscp, Orthanc};
use testkit::scenario::Scenario;
use testkit::studies::Study;

fn now() -> NaiveDateTime {
    chrono::Local::now().naive_local()
}

fn source_target(source: &Orthanc) -> String {
    format!("SOURCE@127.0.0.1:{}", source.dicom_port)
}

/// `GET /probe` of module `check` (written from `module`) with `debug=true`: the log, then the
/// metrics.
async fn debug_probe(module: &SendCheck, target: &str) -> Answer {
    Exporter::new(&module.config())
        .get(
            &format!(
                "/probe?module=check&debug=true&target={}",
                target.replace('@', "%40")
            ),
            &[],
        )
        .await
}

fn pair(study: &Study, state: &str) -> (String, String) {
    (study.study_instance_uid.clone(), state.to_string())
}

const COMPARED: &str =
    "      compare_attributes: [PatientID, AccessionNumber, PatientBirthDate, IssuerOfPatientID]\n";

/// Studies the destination holds under another PatientID or AccessionNumber are mismatched,
/// whole or partial; studies it lacks stay missing, partial ones incomplete, and attributes it
/// keeps as sent (the birth date, an issuer neither side has) raise nothing. The log names
/// the attribute, and its values only where the module's labels opt in.
#[tokio::test(flavor = "multi_thread")]
async fn studies_refiled_on_the_destination_are_mismatched() {
    let source = Orthanc::start("SOURCE");
    let destination = Orthanc::start("ARCHIVE");
    let scenario = Scenario::new(30, 41, now());
    scenario.upload(&source, false);
    scenario.upload(&destination, true);

    let whole: Vec<&Study> = scenario
        .checked()
        .filter(|(s, held)| *held == s.instance_count)
        .map(|(s, _)| s)
        .collect();
    let partial = scenario.partial();
    assert!(
        whole.len() >= 4 && !partial.is_empty(),
        "the scenario has both"
    );
    destination.modify_study(
        &whole[0].study_instance_uid,
        json!({"PatientID": "REFILED-1"}),
    );
    destination.modify_study(
        &whole[1].study_instance_uid,
        json!({"AccessionNumber": "WRONG-ACC"}),
    );
    destination.modify_study(
        &whole[2].study_instance_uid,
        json!({"PatientID": "REFILED-2", "AccessionNumber": "WRONG-ACC-2"}),
    );
    destination.modify_study(
        &partial[0].study_instance_uid,
        json!({"PatientID": "REFILED-3"}),
    );
    // Outside the window: not checked, so never reported.
    let (old, _) = scenario
        .studies
        .iter()
        .zip(&scenario.on_destination)
        .find(|((_, age), held)| *age >= 1440 && **held > 0)
        .map(|((s, a), _)| (s, a))
        .expect("an old study on the destination");
    destination.modify_study(&old.study_instance_uid, json!({"PatientID": "REFILED-OLD"}));

    let mut expected: BTreeSet<(String, String)> = scenario
        .missing()
        .into_iter()
        .map(|s| pair(s, "missing"))
        .collect();
    for study in [whole[0], whole[1], whole[2], partial[0]] {
        expected.insert(pair(study, "mismatched"));
    }
    for study in &partial[1..] {
        expected.insert(pair(study, "incomplete"));
    }

    let module =
        SendCheck::to(format!("ARCHIVE@127.0.0.1:{}", destination.dicom_port)).extra(COMPARED);
    for strategy in ["auto", "uid_list", "per_study"] {
        let answer = Exporter::new(&module.clone().strategy(strategy).config())
            .probe("check", &source_target(&source), Some(30.0))
            .await;
        assert_eq!(
            answer.metric("probe_success"),
            1.0,
            "{strategy}: {}",
            answer.body
        );
        assert_eq!(answer.unsent(), expected, "{strategy}");
        assert_eq!(answer.metric("pacs_studies_mismatched"), 4.0, "{strategy}");
        assert_eq!(
            answer.metric("pacs_studies_incomplete"),
            (partial.len() - 1) as f64,
            "{strategy}"
        );
        assert_eq!(
            answer.metric("pacs_studies_missing"),
            scenario.missing().len() as f64,
            "{strategy}"
        );
    }

    // The log says which attribute; values only with the label that opts in to them.
    let answer = debug_probe(&module, &source_target(&source)).await;
    let line = |uid: &str| {
        answer
            .body
            .lines()
            .find(|l| l.contains(&format!("mismatched study {uid:?}")))
            .unwrap_or_else(|| panic!("no line for {uid} in:\n{}", answer.body))
            .to_string()
    };
    assert!(
        line(&whole[2].study_instance_uid).contains("PatientID differs; AccessionNumber differs")
    );
    assert!(!answer.body.contains("REFILED"), "{}", answer.body);
    let answer = debug_probe(
        &module.clone().labels("patient_id"),
        &source_target(&source),
    )
    .await;
    let refiled = answer
        .body
        .lines()
        .find(|l| {
            l.contains(&format!(
                "mismatched study {:?}",
                whole[0].study_instance_uid
            ))
        })
        .expect("a line for the refiled study");
    assert!(
        refiled.contains(&format!(
            "PatientID differs: {:?} at the source, \"REFILED-1\" at the destination",
            whole[0].patient_id
        )),
        "{refiled}"
    );
    assert!(!answer.body.contains("WRONG-ACC"), "{}", answer.body);
}

/// Studies of three series, six instances each, and what the destination holds of each
/// checked one, cycling: all; series 3 missing; series 2 one short; nothing; series 1 missing
/// and series 3 one short. Returns the scenario and the instances' indexes held per study.
fn three_series_scenario(seed: u64) -> (Scenario, Vec<Vec<usize>>) {
    let mut scenario = Scenario::new(24, seed, now());
    for (study, _) in &mut scenario.studies {
        study.series = 3;
        study.instance_count = 6;
    }
    let held: Vec<Vec<usize>> = scenario
        .studies
        .iter()
        .enumerate()
        .map(|(i, (study, _))| {
            (0..6)
                .filter(|&index| {
                    let series = study.series_of(index);
                    match i % 5 {
                        0 => true,
                        1 => series != 3,
                        2 => index != 3,
                        3 => false,
                        _ => series != 1 && index != 5,
                    }
                })
                .collect()
        })
        .collect();
    for ((study, _), held) in scenario.studies.iter().zip(&held) {
        assert_eq!(study.series_instance_count(2), 2);
        let _ = held;
    }
    scenario.on_destination = held.iter().map(Vec::len).collect();
    (scenario, held)
}

/// The checked studies of a three-series scenario by pattern (`i % 5`).
fn by_pattern(scenario: &Scenario, pattern: usize) -> Vec<&Study> {
    scenario
        .studies
        .iter()
        .enumerate()
        .filter(|(i, (_, age))| i % 5 == pattern && (10..1440).contains(age))
        .map(|(_, (s, _))| s)
        .collect()
}

/// An Orthanc destination missing whole series and holding others short: each incomplete
/// study's missing and short series are named and counted, and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn series_detail_names_the_missing_and_short_series() {
    let source = Orthanc::start("SOURCE");
    let destination = Orthanc::start("ARCHIVE");
    let (scenario, held) = three_series_scenario(43);
    scenario.upload(&source, false);
    for ((study, _), held) in scenario.studies.iter().zip(&held) {
        for bytes in study.instances_where(|i| held.contains(&i)) {
            destination.upload(&bytes);
        }
    }
    let (no_third, short_second, nothing, mixed) = (
        by_pattern(&scenario, 1),
        by_pattern(&scenario, 2),
        by_pattern(&scenario, 3),
        by_pattern(&scenario, 4),
    );
    assert!(!no_third.is_empty() && !short_second.is_empty() && !mixed.is_empty());

    let module = SendCheck::to(format!("ARCHIVE@127.0.0.1:{}", destination.dicom_port))
        .extra("      series_detail: true\n      max_series_detail_studies: 50\n");
    let answer = debug_probe(&module, &source_target(&source)).await;
    assert_eq!(answer.value("probe_success"), Some(1.0), "{}", answer.body);
    let incomplete = no_third.len() + short_second.len() + mixed.len();
    assert_eq!(answer.metric("pacs_studies_incomplete"), incomplete as f64);
    assert_eq!(answer.metric("pacs_studies_missing"), nothing.len() as f64);
    assert_eq!(
        answer.metric("pacs_series_missing"),
        (no_third.len() + mixed.len()) as f64,
        "{}",
        answer.body
    );
    assert_eq!(
        answer.metric("pacs_series_incomplete"),
        (short_second.len() + mixed.len()) as f64
    );
    assert_eq!(
        answer.metric("pacs_find_queries{kind=\"series\",peer=\"destination\"}"),
        incomplete as f64
    );

    // The log lists each such series, with its number, modality and counts per side.
    let series_lines: Vec<&str> = answer
        .body
        .lines()
        .filter(|l| l.contains(" series \"") && l.contains("at the destination"))
        .collect();
    let mut expected = Vec::new();
    for study in &no_third {
        expected.push(format!(
            "missing series {:?} (number 3, {}): 2 instances at the source, none at the destination",
            study.series_instance_uid(3),
            study.modality
        ));
    }
    for study in &short_second {
        expected.push(format!(
            "incomplete series {:?} (number 2, {}): 2 instances at the source, 1 at the destination",
            study.series_instance_uid(2),
            study.modality
        ));
    }
    for study in &mixed {
        expected.push(format!(
            "missing series {:?} (number 1, {}): 2 instances at the source, none at the destination",
            study.series_instance_uid(1),
            study.modality
        ));
        expected.push(format!(
            "incomplete series {:?} (number 3, {}): 2 instances at the source, 1 at the destination",
            study.series_instance_uid(3),
            study.modality
        ));
    }
    for want in &expected {
        assert!(
            series_lines.iter().any(|l| l.ends_with(want.as_str())),
            "no line {want:?} in:\n{}",
            answer.body
        );
    }
    assert_eq!(series_lines.len(), expected.len(), "{series_lines:#?}");

    // Without series_detail the totals are absent, not 0.
    let plain = Exporter::new(
        &SendCheck::to(format!("ARCHIVE@127.0.0.1:{}", destination.dicom_port)).config(),
    )
    .probe("check", &source_target(&source), Some(30.0))
    .await;
    assert_eq!(plain.value("pacs_series_missing"), None);
    assert_eq!(plain.metric("pacs_studies_incomplete"), incomplete as f64);
}

/// dcmqrscp reports no instance counts, so no study is incomplete by its counts; series detail
/// looks into the studies it holds, finds the ones missing a series and calls them
/// incomplete. A series held short cannot be seen without counts and is not guessed.
#[tokio::test(flavor = "multi_thread")]
async fn series_detail_on_dcmqrscp_finds_studies_missing_a_series() {
    let source = Orthanc::start("SOURCE");
    let (scenario, held) = three_series_scenario(47);
    scenario.upload(&source, false);
    let files = tempfile::tempdir().expect("temp dir");
    for ((study, _), held) in scenario.studies.iter().zip(&held) {
        for (i, bytes) in study
            .instances_where(|i| held.contains(&i))
            .into_iter()
            .enumerate()
        {
            std::fs::write(
                files
                    .path()
                    .join(format!("{}-{i}.dcm", study.study_instance_uid)),
                bytes,
            )
            .expect("write");
        }
    }
    let destination = Dcmqrscp::start_loaded("DCMQR", files.path());
    let (no_third, nothing, mixed) = (
        by_pattern(&scenario, 1),
        by_pattern(&scenario, 3),
        by_pattern(&scenario, 4),
    );
    let module = SendCheck::to(format!("DCMQR@127.0.0.1:{}", destination.port))
        .extra("      series_detail: true\n      max_series_detail_studies: 50\n");
    let answer = Exporter::new(&module.config())
        .probe("check", &source_target(&source), Some(30.0))
        .await;
    assert_eq!(answer.value("probe_success"), Some(1.0), "{}", answer.body);
    let mut expected: BTreeSet<(String, String)> =
        nothing.iter().map(|s| pair(s, "missing")).collect();
    for study in no_third.iter().chain(&mixed) {
        expected.insert(pair(study, "incomplete"));
    }
    assert_eq!(answer.unsent(), expected);
    assert_eq!(
        answer.metric("pacs_series_missing"),
        (no_third.len() + mixed.len()) as f64
    );
    assert_eq!(answer.metric("pacs_series_incomplete"), 0.0);
}

/// `/probe?module=…&target=…&destination=…` for `exporter`.
async fn probe_to(exporter: &Exporter, module: &str, target: &str, destination: &str) -> Answer {
    exporter
        .get(
            &format!(
                "/probe?module={module}&target={}&destination={}",
                target.replace('@', "%40"),
                destination.replace('@', "%40")
            ),
            &[("X-Prometheus-Scrape-Timeout-Seconds", "30")],
        )
        .await
}

/// `/probe?module=route&target=…&destination=…` for `exporter`.
async fn route(exporter: &Exporter, target: &str, destination: &str) -> Answer {
    probe_to(exporter, "route", target, destination).await
}

/// One modality, two archives: a module with `destination: from_request` checks each route
/// against the destination the request names, at the same time, each with its own verdict;
/// the landing page and `/logs` name the route. A request without the destination, with one
/// outside allowed_targets, or with one for a module that does not take it is refused with
/// the reason, before any packet is sent.
#[tokio::test(flavor = "multi_thread")]
async fn routes_take_their_destination_from_the_request() {
    let source = Orthanc::start("SOURCE");
    let archive = Orthanc::start("ARCHIVE");
    let recovery = Orthanc::start("DR");
    let scenario = Scenario::new(24, 53, now());
    scenario.upload(&source, false);
    scenario.upload(&archive, false);
    scenario.upload(&recovery, true);
    let config = format!(
        "allowed_targets: [127.0.0.1/32]\nmodules:\n  route:\n    prober: send_check\n    timeout: 20s\n    \
         send_check:\n      destination: from_request\n      lookback: 24h\n      grace: 10m\n  \
         echo:\n    prober: echo\n{}",
        SendCheck::to(format!("ARCHIVE@127.0.0.1:{}", archive.dicom_port)).module()
    );
    let exporter = Exporter::new(&config);
    let target = source_target(&source);
    let to_archive = format!("ARCHIVE@127.0.0.1:{}", archive.dicom_port);
    let to_recovery = format!("DR@127.0.0.1:{}", recovery.dicom_port);

    let (whole, partial) = tokio::join!(
        route(&exporter, &target, &to_archive),
        route(&exporter, &target, &to_recovery)
    );
    assert_eq!(whole.metric("probe_success"), 1.0, "{}", whole.body);
    assert_eq!(whole.metric("pacs_studies_missing"), 0.0, "{}", whole.body);
    assert_eq!(whole.metric("pacs_studies_incomplete"), 0.0);
    scenario.assert_matches(&partial, true, "the recovery route");

    // Refused with the reason, and nothing sent.
    let refused = |answer: &Answer, status: u16, reason: &str| {
        assert_eq!(answer.status.as_u16(), status, "{}", answer.body);
        assert!(answer.body.contains(reason), "{}", answer.body);
        assert!(
            !answer.body.trim_end().contains('\n'),
            "one line: {}",
            answer.body
        );
    };
    let answer = exporter.probe("route", &target, None).await;
    refused(&answer, 400, "takes its destination from the request");
    refused(
        &route(&exporter, &target, "FAR@192.0.2.7:104").await,
        403,
        "destination FAR@192.0.2.7:104 is not in allowed_targets",
    );
    refused(
        &route(&exporter, &target, "ARCHIVE@127.0.0.1:99999").await,
        400,
        "invalid destination",
    );
    refused(
        &probe_to(&exporter, "echo", &target, &to_archive).await,
        400,
        "module \"echo\" does not take a destination",
    );
    refused(
        &probe_to(&exporter, "check", &target, &to_recovery).await,
        400,
        "module \"check\" does not take a destination",
    );

    // The landing page shows each route's destination; /logs finds a route's latest probe.
    let page = exporter.get("/", &[]).await.body;
    assert!(
        page.contains(&to_archive) && page.contains(&to_recovery),
        "{page}"
    );
    let log = exporter
        .get(
            &format!(
                "/logs?module=route&target={}&destination={}",
                target.replace('@', "%40"),
                to_recovery.replace('@', "%40")
            ),
            &[],
        )
        .await;
    assert_eq!(log.status.as_u16(), 200, "{}", log.body);
    assert!(
        log.body
            .lines()
            .next()
            .is_some_and(|first| first.contains(&format!("to destination {to_recovery:?}"))),
        "{}",
        log.body
    );
    assert!(
        log.body
            .contains(&format!("destination: associating with {to_recovery}")),
        "{}",
        log.body
    );
}

/// A source that closes its association once it has answered the study query (an idle
/// timer, while the destination is being confirmed) is associated with again, once, for series
/// detail: the missing series is still found.
#[tokio::test(flavor = "multi_thread")]
async fn series_detail_associates_again_with_a_source_that_closed_its_association() {
    use testkit::scripted::{study_match, Conn, Request, ScriptedPeer};

    let hour_ago = now() - chrono::Duration::hours(1);
    let (date, time) = (
        hour_ago.format("%Y%m%d").to_string(),
        hour_ago.format("%H%M%S").to_string(),
    );
    let mut study = testkit::studies::generate(1, 59, &[(date.clone(), time.clone())]).remove(0);
    study.series = 3;
    study.instance_count = 6;
    let destination = Orthanc::start("ARCHIVE");
    for bytes in study.instances_where(|i| study.series_of(i) != 3) {
        destination.upload(&bytes);
    }
    let uid = study.study_instance_uid.clone();
    let source = ScriptedPeer::start(move |mut conn: Conn| {
        let (uid, date, time) = (uid.clone(), date.clone(), time.clone());
        async move {
            if conn.accept().await.is_none() {
                return;
            }
            loop {
                match conn.next_request().await {
                    Request::Find {
                        pc,
                        message_id,
                        identifier,
                    } => {
                        let level = identifier
                            .get(dicom_dictionary_std::tags::QUERY_RETRIEVE_LEVEL)
                            .and_then(|e| e.to_str().ok())
                            .map(|l| l.trim().to_string());
                        if level.as_deref() == Some("SERIES") {
                            let series: Vec<_> =
                                (1..=3).map(|n| series_match(&uid, n, 2)).collect();
                            conn.answer_find(pc, message_id, &series, 0).await;
                        } else {
                            let m = study_match(&uid, &date, &time, Some(6));
                            conn.answer_find(pc, message_id, &[m], 0).await;
                            // Gone before the series are asked for.
                            return;
                        }
                    }
                    Request::Release => return conn.release().await,
                    Request::Closed => return,
                }
            }
        }
    })
    .await;
    let module = SendCheck::to(format!("ARCHIVE@127.0.0.1:{}", destination.dicom_port))
        .extra("      series_detail: true\n");
    let answer = debug_probe(&module, &source.target("SOURCE")).await;
    assert_eq!(answer.value("probe_success"), Some(1.0), "{}", answer.body);
    assert_eq!(
        answer.metric("pacs_studies_incomplete"),
        1.0,
        "{}",
        answer.body
    );
    assert_eq!(answer.metric("pacs_series_missing"), 1.0, "{}", answer.body);
    assert_eq!(answer.metric("pacs_series_incomplete"), 0.0);
    assert!(
        answer.body.contains("associating again for series detail"),
        "{}",
        answer.body
    );
}

/// A SERIES-level match: series `number` of study `study` with `instances` instances.
fn series_match(study: &str, number: usize, instances: u32) -> dicom_object::InMemDicomObject {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let text = |tag, vr, value: String| DataElement::new(tag, vr, PrimitiveValue::from(value));
    dicom_object::InMemDicomObject::from_element_iter([
        text(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "SERIES".into()),
        text(tags::STUDY_INSTANCE_UID, VR::UI, study.to_string()),
        text(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            format!("{study}.{number}"),
        ),
        text(tags::SERIES_NUMBER, VR::IS, number.to_string()),
        text(tags::MODALITY, VR::CS, "MR".into()),
        text(
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
            VR::IS,
            instances.to_string(),
        ),
    ])
}
