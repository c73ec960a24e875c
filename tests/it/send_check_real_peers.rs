//! The transfer check against real PACS: two Orthanc instances as source and destination,
//! loaded with generated studies (some missing on the destination, some partial), and DCMTK's
//! dcmqrscp as a destination that reports no instance counts. The expected answer is computed
//! from what was loaded, and the probe must match it study by study, with every destination
//! query strategy.

use std::collections::BTreeSet;

use chrono::{Duration, NaiveDateTime};
use testkit::exporter::{Answer, Exporter};
use testkit::modules::SendCheck;
use testkit::peers::{Dcmqrscp, Orthanc};
use testkit::scenario::Scenario;
use testkit::studies::{generate, Study};

fn config(destination: &str, strategy: &str, extra: &str) -> String {
    SendCheck::to(destination)
        .strategy(strategy)
        .extra(extra)
        .config()
}

/// The send_check module (`strategy`, `extra` settings) from `source` to `destination`.
async fn check(source: &Orthanc, destination: &str, strategy: &str, extra: &str) -> Answer {
    let target = format!("SOURCE@127.0.0.1:{}", source.dicom_port);
    Exporter::new(&config(destination, strategy, extra))
        .probe("check", &target, Some(30.0))
        .await
}

/// `ARCHIVE@127.0.0.1:port` of a destination Orthanc.
fn archive(destination: &Orthanc) -> String {
    format!("ARCHIVE@127.0.0.1:{}", destination.dicom_port)
}

fn now() -> NaiveDateTime {
    chrono::Local::now().naive_local()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_orthancs_every_strategy_finds_exactly_the_unsent_studies() {
    let source = Orthanc::start_with("SOURCE", serde_json::json!({ "DefaultEncoding": "Utf8" }));
    let destination = Orthanc::start("ARCHIVE");
    let scenario = Scenario::new(40, 7, now());
    scenario.upload(&source, false);
    scenario.upload(&destination, true);

    let dest = archive(&destination);
    for strategy in ["auto", "date_range", "uid_list", "per_study"] {
        let answer = check(
            &source,
            &dest,
            strategy,
            "      labels: [patient_name, study_id]\n",
        )
        .await;
        scenario.assert_matches(&answer, true, strategy);

        // Opted-in labels carry the names as generated, whatever their character set.
        for labels in answer.series("pacs_study_unsent") {
            let (study, _) = scenario
                .studies
                .iter()
                .find(|(s, _)| s.study_instance_uid == labels["study_instance_uid"])
                .expect("a generated study");
            assert_eq!(
                labels["patient_name"].trim(),
                study.patient_name,
                "{strategy}"
            );
            assert_eq!(labels["study_id"], study.study_id, "{strategy}");
        }
    }
}

/// The module's time zone decides what "today" and "an hour ago" mean: studies stamped in
/// Tokyo time are judged in Tokyo time, wherever the exporter runs.
#[tokio::test(flavor = "multi_thread")]
async fn time_zone_of_the_module_is_used() {
    let source = Orthanc::start("SOURCE");
    let destination = Orthanc::start("ARCHIVE");
    let tokyo_now = chrono::Utc::now()
        .with_timezone(&chrono_tz::Asia::Tokyo)
        .naive_local();
    let scenario = Scenario::new(12, 11, tokyo_now);
    scenario.upload(&source, false);
    scenario.upload(&destination, true);
    let answer = check(
        &source,
        &archive(&destination),
        "auto",
        "      timezone: Asia/Tokyo\n",
    )
    .await;
    scenario.assert_matches(&answer, true, "Asia/Tokyo");
}

/// dcmqrscp returns no NumberOfStudyRelatedInstances and ignores ModalitiesInStudy: missing
/// studies are still found, partial ones are not called incomplete (completeness unknown).
#[tokio::test(flavor = "multi_thread")]
async fn dcmqrscp_destination_without_instance_counts() {
    let source = Orthanc::start("SOURCE");
    let scenario = Scenario::new(30, 3, now());
    scenario.upload(&source, false);
    let files = tempfile::tempdir().expect("temp dir");
    scenario.write_files(files.path(), true);
    let destination = Dcmqrscp::start_loaded("DCMQR", files.path());
    let dest = format!("DCMQR@127.0.0.1:{}", destination.port);
    for strategy in ["auto", "date_range", "uid_list", "per_study"] {
        let answer = check(&source, &dest, strategy, "").await;
        scenario.assert_matches(&answer, false, strategy);
    }
}

/// Extra source keys narrow the check: only CT studies (Orthanc filters on ModalitiesInStudy);
/// the destination is asked by date and UID, so its own filtering does not matter.
#[tokio::test(flavor = "multi_thread")]
async fn source_query_keys_narrow_the_check() {
    let source = Orthanc::start("SOURCE");
    let destination = Orthanc::start("ARCHIVE");
    let scenario = Scenario::new(40, 5, now());
    scenario.upload(&source, false);
    scenario.upload(&destination, true);
    let answer = check(
        &source,
        &archive(&destination),
        "auto",
        "      query: { ModalitiesInStudy: CT }\n",
    )
    .await;
    let ct_checked = scenario
        .checked()
        .filter(|(s, _)| s.modality == "CT")
        .count();
    assert!(ct_checked > 0 && ct_checked < scenario.checked().count());
    assert_eq!(
        answer.metric("pacs_studies_checked"),
        ct_checked as f64,
        "{}",
        answer.body
    );
    for labels in answer.series("pacs_study_unsent") {
        let study = scenario
            .checked()
            .find(|(s, _)| s.study_instance_uid == labels["study_instance_uid"]);
        assert_eq!(study.map(|(s, _)| s.modality.as_str()), Some("CT"));
    }
}

/// A source answer cut off by Orthanc's LimitFindResults fails the probe; it is never taken
/// for the list of studies.
#[tokio::test(flavor = "multi_thread")]
async fn cut_off_source_fails_the_probe() {
    let source = Orthanc::start_with("SOURCE", serde_json::json!({ "LimitFindResults": 5 }));
    let destination = Orthanc::start("ARCHIVE");
    let scenario = Scenario::new(12, 9, now());
    scenario.upload(&source, false);
    let answer = check(&source, &archive(&destination), "auto", "").await;
    answer.assert_failed("find_source", "too_many_matches");
    assert_eq!(answer.value("pacs_studies_missing"), None, "no verdict");
    assert!(answer.series("pacs_study_unsent").is_empty());
}

/// A destination that cuts its answers off: `date_range` fails rather than calling studies
/// missing; `auto` confirms by UID (falling back to one query per study when the list query is
/// cut off too) and is right.
#[tokio::test(flavor = "multi_thread")]
async fn cut_off_destination_date_range_is_confirmed_by_uid_in_auto() {
    let source = Orthanc::start("SOURCE");
    let destination = Orthanc::start_with("ARCHIVE", serde_json::json!({ "LimitFindResults": 4 }));
    let scenario = Scenario::new(24, 13, now());
    scenario.upload(&source, false);
    scenario.upload(&destination, true);
    let dest = archive(&destination);

    let answer = check(&source, &dest, "date_range", "").await;
    answer.assert_failed("find_destination", "too_many_matches");
    assert_eq!(answer.metric("pacs_peer_up{peer=\"source\"}"), 1.0);

    let answer = check(&source, &dest, "auto", "").await;
    scenario.assert_matches(&answer, true, "auto with LimitFindResults");
}

/// More unsent studies than max_listed_studies: the oldest are listed, and the list says it
/// was truncated.
#[tokio::test(flavor = "multi_thread")]
async fn per_study_series_are_capped_oldest_first() {
    let source = Orthanc::start("SOURCE");
    let destination = Orthanc::start("ARCHIVE");
    let scenario = Scenario::new(24, 17, now());
    scenario.upload(&source, false); // nothing on the destination: every checked study is missing
    let answer = check(
        &source,
        &archive(&destination),
        "auto",
        "      max_listed_studies: 4\n",
    )
    .await;
    let checked: Vec<(&Study, i64)> = scenario
        .studies
        .iter()
        .filter(|(_, age)| (10..1440).contains(age))
        .map(|(s, a)| (s, *a))
        .collect();
    assert_eq!(
        answer.metric("pacs_studies_missing"),
        checked.len() as f64,
        "{}",
        answer.body
    );
    assert_eq!(answer.metric("pacs_study_list_truncated"), 1.0);
    let listed: BTreeSet<String> = answer
        .series("pacs_study_unsent")
        .into_iter()
        .map(|l| l["study_instance_uid"].clone())
        .collect();
    let oldest_age = checked.iter().map(|(_, a)| *a).max().expect("studies");
    let mut by_age = checked.clone();
    by_age.sort_by_key(|(_, a)| -a);
    // Ages repeat every 12 studies: the 4 oldest are the two 23-hour and two 1000-minute ones.
    let oldest: BTreeSet<String> = by_age
        .iter()
        .take(4)
        .map(|(s, _)| s.study_instance_uid.clone())
        .collect();
    assert_eq!(listed, oldest);
    let age = answer.metric("pacs_oldest_unsent_study_age_seconds");
    assert!(
        (age - (oldest_age * 60) as f64).abs() < 120.0,
        "age {age} vs {oldest_age} min"
    );
}

/// A destination that holds more studies in the window than one query may return
/// (`max_matches`): `auto` asks for the source's studies by UID instead, on a new association.
#[tokio::test(flavor = "multi_thread")]
async fn auto_falls_back_to_uids_on_a_busy_destination() {
    let source = Orthanc::start("SOURCE");
    let destination = Orthanc::start("ARCHIVE");
    let scenario = Scenario::new(7, 23, now());
    scenario.upload(&source, false);
    scenario.upload(&destination, true);
    let hour_ago = now() - Duration::hours(1);
    let when = [(
        hour_ago.format("%Y%m%d").to_string(),
        hour_ago.format("%H%M%S").to_string(),
    )];
    for other in generate(10, 99, &when) {
        destination.upload(&other.instance(0));
    }
    let dest = archive(&destination);

    let capped = "      max_matches: 7\n";
    let answer = check(&source, &dest, "date_range", capped).await;
    answer.assert_failed("find_destination", "too_many_matches");

    let answer = check(&source, &dest, "auto", capped).await;
    scenario.assert_matches(&answer, true, "auto past max_matches");
}
