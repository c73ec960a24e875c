//! The transfer check against a third implementation, pynetdicom's bundled `qrscp`, which
//! differs from Orthanc and dcmqrscp exactly where `destination_query: auto` must not be
//! fooled: it fails a multi-valued StudyInstanceUID with status 0xC320, answers a STUDY-level
//! query with one match per *instance* and without NumberOfStudyRelatedInstances, and ignores
//! ModalitiesInStudy. The expected answer is computed from what was loaded, study by study.

use testkit::exporter::{Answer, Exporter};
use testkit::modules::SendCheck;
use testkit::peers::{Orthanc, Qrscp};
use testkit::scenario::Scenario;

/// Queries of `kind` the probe sent to `peer`.
fn queries(answer: &Answer, peer: &str, kind: &str) -> f64 {
    answer.metric(&format!(
        "pacs_find_queries{{kind=\"{kind}\",peer=\"{peer}\"}}"
    ))
}

/// Matches the probe read from `peer`.
fn matches(answer: &Answer, peer: &str) -> f64 {
    answer.metric(&format!("pacs_find_matches{{peer=\"{peer}\"}}"))
}

/// An exporter whose module `check` sends from its target to `destination` (`AET@host:port`).
fn exporter(destination: &str) -> Exporter {
    Exporter::new(&SendCheck::to(destination).strategy("auto").config())
}

async fn probe(exporter: &Exporter, source: &str) -> Answer {
    exporter.probe("check", source, Some(30.0)).await
}

/// An Orthanc source and a qrscp destination loaded from `scenario`.
fn orthanc_to_qrscp(scenario: &Scenario) -> (Orthanc, Qrscp) {
    let source = Orthanc::start("SOURCE");
    scenario.upload(&source, false);
    let files = tempfile::tempdir().expect("temp dir");
    scenario.write_files(files.path(), true);
    let destination = Qrscp::start_loaded("QRSCP", files.path());
    (source, destination)
}

/// The list query fails with 0xC320, so `auto` goes one by one for the studies its date range
/// did not show (the missing ones: qrscp lists every study it holds in the window, once per
/// instance), and calls no partial study incomplete, since qrscp reports no counts.
#[tokio::test(flavor = "multi_thread")]
async fn qrscp_destination_auto_finds_exactly_the_missing_studies() {
    let scenario = Scenario::new(30, 31, chrono::Local::now().naive_local());
    let (source, destination) = orthanc_to_qrscp(&scenario);
    let answer = probe(
        &exporter(&format!("QRSCP@127.0.0.1:{}", destination.port)),
        &format!("SOURCE@127.0.0.1:{}", source.dicom_port),
    )
    .await;
    scenario.assert_verdict(&answer, true, "qrscp destination");

    let missing = scenario.missing().len() as f64;
    assert_eq!(queries(&answer, "destination", "date_range"), 1.0);
    assert_eq!(queries(&answer, "destination", "uid_list"), 1.0);
    assert_eq!(queries(&answer, "destination", "uid"), missing);
    // One match per instance held in the date range; the list and single-UID queries of
    // missing studies return none.
    assert_eq!(
        matches(&answer, "destination"),
        scenario.instances_in_date_range(true) as f64
    );
    assert!(
        destination
            .log()
            .contains("Error binding parameter 1: type 'MultiValue' is not supported"),
        "qrscp failed the UID list for another reason:\n{}",
        destination.log()
    );
}

/// The exporter remembers, per destination, that its list matching is broken: the next probe
/// goes one by one at once, and comes to the same verdict.
#[tokio::test(flavor = "multi_thread")]
async fn qrscp_broken_list_matching_is_remembered() {
    let scenario = Scenario::new(20, 37, chrono::Local::now().naive_local());
    let (source, destination) = orthanc_to_qrscp(&scenario);
    let exporter = exporter(&format!("QRSCP@127.0.0.1:{}", destination.port));
    let source = format!("SOURCE@127.0.0.1:{}", source.dicom_port);
    let missing = scenario.missing().len() as f64;

    let first = probe(&exporter, &source).await;
    scenario.assert_verdict(&first, true, "first probe");
    assert_eq!(queries(&first, "destination", "uid_list"), 1.0);
    assert_eq!(queries(&first, "destination", "uid"), missing);

    let second = probe(&exporter, &source).await;
    scenario.assert_verdict(&second, true, "second probe");
    assert_eq!(queries(&second, "destination", "date_range"), 1.0);
    assert_eq!(queries(&second, "destination", "uid_list"), 0.0);
    assert_eq!(queries(&second, "destination", "uid"), missing);
}

/// qrscp as the source lists each study once per instance: every study is judged once, and
/// with no source counts a partial study is not called incomplete nor are instances counted.
#[tokio::test(flavor = "multi_thread")]
async fn qrscp_source_counts_each_study_once() {
    let scenario = Scenario::new(30, 41, chrono::Local::now().naive_local());
    let files = tempfile::tempdir().expect("temp dir");
    scenario.write_files(files.path(), false);
    let source = Qrscp::start_loaded("QRSCP", files.path());
    let destination = Orthanc::start("ARCHIVE");
    scenario.upload(&destination, true);

    let answer = probe(
        &exporter(&format!("ARCHIVE@127.0.0.1:{}", destination.dicom_port)),
        &format!("QRSCP@127.0.0.1:{}", source.port),
    )
    .await;
    scenario.assert_verdict(&answer, false, "qrscp source");
    let in_range = scenario.instances_in_date_range(false);
    assert_eq!(queries(&answer, "source", "date_range"), 1.0);
    assert_eq!(matches(&answer, "source"), in_range as f64);
    assert!(
        in_range > scenario.checked().count() + scenario.pending(),
        "some studies must have several instances"
    );
    // Orthanc's list matching works: the studies its date range did not show are asked for
    // in one list query.
    assert_eq!(queries(&answer, "destination", "uid_list"), 1.0);
    assert_eq!(queries(&answer, "destination", "uid"), 0.0);
}
