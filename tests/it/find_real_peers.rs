//! The find prober against real SCPs: Modality Worklist on DCMTK's wlmscpfs (scanners depend
//! on it), Study and Patient Root on Orthanc.

use chrono::Local;
use testkit::exporter::Exporter;
use testkit::peers::{Orthanc, Wlmscpfs};

fn worklist_item(name: &str, modality: &str, date: &str, accession: &str) -> String {
    format!(
        "(0008,0005) CS [ISO_IR 100]
(0008,0050) SH [{accession}]
(0010,0010) PN [{name}]
(0010,0020) LO [ID{accession}]
(0010,0030) DA [19700101]
(0010,0040) CS [O]
(0020,000d) UI [1.2.826.0.1.3680043.2.1143.{accession}]
(0032,1060) LO [Procedure]
(0040,0100) SQ (Sequence with undefined length #=1)
(fffe,e000) na (Item with undefined length #=6)
(0008,0060) CS [{modality}]
(0040,0001) AE [SCANNER1]
(0040,0002) DA [{date}]
(0040,0003) TM [093000]
(0040,0007) LO [Step]
(0040,0009) SH [SPS{accession}]
(fffe,e00d) na (ItemDelimitationItem for re-encoding)
(fffe,e0dd) na (SequenceDelimitationItem for re-encod.)
(0040,1001) SH [RP{accession}]
"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn worklist_query_counts_todays_items_for_a_modality() {
    let today = Local::now().format("%Y%m%d").to_string();
    let items = vec![
        worklist_item("Doe^Jane", "MR", &today, "1001"),
        worklist_item("Roe^Richard", "MR", &today, "1002"),
        worklist_item("Poe^Edgar", "CT", &today, "1003"),
        worklist_item("Moe^Mary", "MR", "20200101", "1004"),
    ];
    let scp = Wlmscpfs::start("WORKLIST", &items);
    let exporter = Exporter::new(
        "
modules:
  worklist_mr:
    prober: find
    timeout: 5s
    find:
      model: worklist
      query:
        PatientName:
        ScheduledProcedureStepSequence:
          Modality: MR
          ScheduledProcedureStepStartDate: today
          ScheduledStationAETitle:
  worklist_all:
    prober: find
    find:
      model: worklist
      query:
        ScheduledProcedureStepSequence: { Modality: }
",
    );
    let target = format!("WORKLIST@127.0.0.1:{}", scp.port);
    let mr = exporter.probe("worklist_mr", &target, Some(10.0)).await;
    assert_eq!(mr.metric("probe_success"), 1.0, "{}", mr.body);
    assert_eq!(mr.metric("probe_dicom_find_matches"), 2.0, "{}", mr.body);
    assert_eq!(mr.metric("probe_dicom_status"), 0.0);

    let all = exporter.probe("worklist_all", &target, Some(10.0)).await;
    assert_eq!(all.metric("probe_dicom_find_matches"), 4.0, "{}", all.body);
}

/// An SCP that does not offer the information model: wlmscpfs rejects the association
/// outright, Orthanc (without its worklist plugin) accepts it without the context.
#[tokio::test(flavor = "multi_thread")]
async fn unsupported_information_model() {
    let exporter = Exporter::new(
        "
modules:
  find:
    prober: find
  worklist:
    prober: find
    find: { model: worklist }
",
    );
    let scp = Wlmscpfs::start("WORKLIST", &[]);
    let answer = exporter
        .probe(
            "find",
            &format!("WORKLIST@127.0.0.1:{}", scp.port),
            Some(10.0),
        )
        .await;
    answer.assert_failed("associate", "rejected_other");

    let orthanc = Orthanc::start("ORTHANC");
    let answer = exporter
        .probe(
            "worklist",
            &format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port),
            Some(10.0),
        )
        .await;
    answer.assert_failed("associate", "no_presentation_context");
}

/// Study Root and Patient Root against Orthanc loaded with generated studies: the match counts
/// are those of what was loaded.
#[tokio::test(flavor = "multi_thread")]
async fn study_and_patient_root_queries_count_what_orthanc_holds() {
    let orthanc = Orthanc::start("ORTHANC");
    // The find prober's "today" is the exporter's date now.
    let today_date = chrono::Local::now().date_naive();
    let yesterday = today_date.pred_opt().expect("a day before today");
    let when = [
        (
            today_date.format("%Y%m%d").to_string(),
            "000001".to_string(),
        ),
        (yesterday.format("%Y%m%d").to_string(), "120000".to_string()),
    ];
    let studies = testkit::studies::generate(20, 31, &when);
    for study in &studies {
        for instance in study.instances() {
            orthanc.upload(&instance);
        }
    }
    let today = today_date.format("%Y%m%d").to_string();
    let ct_today = studies
        .iter()
        .filter(|s| s.study_date == today && s.modality == "CT")
        .count();
    let patients: std::collections::BTreeSet<&str> =
        studies.iter().map(|s| s.patient_id.as_str()).collect();
    let series = studies.iter().filter(|s| s.study_date == today).count();
    assert!(ct_today > 0 && patients.len() > 1);

    let exporter = Exporter::new(
        "
modules:
  ct_today:
    prober: find
    find:
      query: { StudyDate: today, ModalitiesInStudy: CT }
  patients:
    prober: find
    find:
      model: patient_root
      query: { PatientID: }
  series_today:
    prober: find
    find:
      level: SERIES
      query: { StudyDate: today, Modality: }
",
    );
    let target = format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port);
    for (module, want) in [
        ("ct_today", ct_today),
        ("patients", patients.len()),
        ("series_today", series),
    ] {
        let answer = exporter.probe(module, &target, Some(10.0)).await;
        assert_eq!(
            answer.metric("probe_success"),
            1.0,
            "{module}: {}",
            answer.body
        );
        assert_eq!(
            answer.metric("probe_dicom_find_matches"),
            want as f64,
            "{module}"
        );
        assert_eq!(answer.metric("probe_dicom_status"), 0.0, "{module}");
    }
}
