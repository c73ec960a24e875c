//! The built-in demo (`pacs_exporter --demo`): what a newcomer sees must be a real transfer
//! check with a known answer.

mod support;

use std::sync::Arc;

use pacs_exporter::server::{AppState, ServerOptions};
use support::exporter::Exporter;

async fn demo_exporter() -> (Exporter, String) {
    let demo = pacs_exporter::demo::start().await.expect("demo PACS start");
    let exporter = Exporter {
        state: Arc::new(AppState::new(demo.config, ServerOptions::default())),
    };
    (exporter, demo.source)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_send_check_finds_three_missing_and_one_incomplete() {
    let (exporter, source) = demo_exporter().await;
    let answer = exporter.probe("send_check", &source, None).await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(answer.metric("pacs_studies_missing"), 3.0);
    assert_eq!(answer.metric("pacs_studies_incomplete"), 1.0);
    assert_eq!(answer.metric("pacs_studies_pending"), 1.0);
    assert_eq!(answer.metric("pacs_studies_checked"), 23.0);
    assert_eq!(answer.series("pacs_study_unsent").len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_echo_and_find() {
    let (exporter, source) = demo_exporter().await;
    let echo = exporter.probe("echo", &source, None).await;
    assert_eq!(echo.metric("probe_success"), 1.0, "{}", echo.body);
    let find = exporter.probe("find", &source, None).await;
    assert_eq!(find.metric("probe_success"), 1.0, "{}", find.body);
    // Every fifth of the 24 demo studies is CT.
    assert_eq!(
        find.metric("probe_dicom_find_matches"),
        5.0,
        "{}",
        find.body
    );
}
