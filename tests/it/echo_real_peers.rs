//! The echo probe against real PACS software: Orthanc and DCMTK's dcmqrscp, started on free
//! loopback ports by the test harness. A missing peer fails the test; nothing is skipped.

use testkit::exporter::Exporter;
use testkit::peers::{Dcmqrscp, Orthanc};

const CONFIG: &str = "
modules:
  echo:
    prober: echo
    timeout: 5s
";

#[tokio::test(flavor = "multi_thread")]
async fn echo_succeeds_against_orthanc() {
    let orthanc = Orthanc::start("ORTHANC");
    let target = format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port);
    let answer = Exporter::new(CONFIG)
        .probe("echo", &target, Some(10.0))
        .await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(answer.metric("probe_dicom_status"), 0.0);
    // Orthanc's DICOM server is DCMTK's: its implementation class UID is OFFIS'.
    let peer_info = answer
        .body
        .lines()
        .find(|l| l.starts_with("probe_dicom_peer_info{"))
        .expect("peer info");
    assert!(
        peer_info.contains("implementation_class_uid=\"1.2.276.0.7230010.3"),
        "{peer_info}"
    );
    assert!(answer.metric("probe_dicom_association_duration_seconds") > 0.0);
    assert!(answer.metric("probe_dicom_echo_duration_seconds") > 0.0);
}

/// The first trap of a deployment: Orthanc accepts an association from a calling AE title it
/// does not know and aborts its first request. The failure says what to do; registering the
/// exporter's AE title (as the README's first steps say) makes the same probe succeed.
#[tokio::test(flavor = "multi_thread")]
async fn orthanc_aborts_an_unknown_calling_aet_and_the_failure_says_to_register_it() {
    let strict = serde_json::json!({ "DicomAlwaysAllowEcho": false });
    let orthanc = Orthanc::start_with("ORTHANC", strict.clone());
    let target = format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port);
    let exporter = Exporter::new(CONFIG);
    let answer = exporter.probe("echo", &target, Some(10.0)).await;
    answer.assert_failed("echo", "aborted");
    let debug = exporter
        .get(
            &format!(
                "/probe?module=echo&target={}&debug=true",
                target.replace('@', "%40")
            ),
            &[],
        )
        .await;
    assert!(
        debug.body.contains("does not know the calling AE title")
            && debug.body.contains("dicom.calling_aet"),
        "{}",
        debug.body
    );

    let mut registered = strict;
    registered["DicomModalities"] =
        serde_json::json!({ "exporter": ["PACS_EXPORTER", "127.0.0.1", 104] });
    let orthanc = Orthanc::start_with("ORTHANC", registered);
    let target = format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port);
    let answer = exporter.probe("echo", &target, Some(10.0)).await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_succeeds_against_dcmqrscp() {
    let scp = Dcmqrscp::start("DCMQR");
    let answer = Exporter::new(CONFIG)
        .probe("echo", &format!("DCMQR@127.0.0.1:{}", scp.port), Some(10.0))
        .await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(answer.metric("probe_dicom_status"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn dcmqrscp_rejects_an_unknown_called_aet() {
    let scp = Dcmqrscp::start("DCMQR");
    let answer = Exporter::new(CONFIG)
        .probe(
            "echo",
            &format!("NOT_DCMQR@127.0.0.1:{}", scp.port),
            Some(10.0),
        )
        .await;
    answer.assert_failed("associate", "rejected_called_aet");
}

/// A target without `AET@` uses the module's `called_aet`.
#[tokio::test(flavor = "multi_thread")]
async fn module_called_aet_applies_to_bare_targets() {
    let scp = Dcmqrscp::start("DCMQR");
    let exporter = Exporter::new(
        "
modules:
  echo_default:
    prober: echo
  echo_dcmqr:
    prober: echo
    dicom:
      called_aet: DCMQR
",
    );
    let target = format!("127.0.0.1:{}", scp.port);
    let default = exporter.probe("echo_default", &target, Some(10.0)).await;
    default.assert_failed("associate", "rejected_called_aet");
    let named = exporter.probe("echo_dcmqr", &target, Some(10.0)).await;
    assert_eq!(named.metric("probe_success"), 1.0, "{}", named.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn orthanc_checking_called_aet_rejects_a_wrong_one() {
    let orthanc = Orthanc::start_with(
        "ORTHANC",
        serde_json::json!({ "DicomCheckCalledAet": true }),
    );
    let answer = Exporter::new(CONFIG)
        .probe(
            "echo",
            &format!("WRONG@127.0.0.1:{}", orthanc.dicom_port),
            Some(10.0),
        )
        .await;
    answer.assert_failed("associate", "rejected_called_aet");
}

#[tokio::test(flavor = "multi_thread")]
async fn orthanc_refusing_unknown_modalities_rejects_our_calling_aet() {
    let orthanc = Orthanc::start_with(
        "ORTHANC",
        serde_json::json!({
            "DicomAlwaysAllowEcho": false,
            "DicomAlwaysAllowFind": false,
            "DicomAlwaysAllowStore": false,
        }),
    );
    let answer = Exporter::new(CONFIG)
        .probe(
            "echo",
            &format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port),
            Some(10.0),
        )
        .await;
    answer.assert_failed("associate", "rejected_calling_aet");
}
