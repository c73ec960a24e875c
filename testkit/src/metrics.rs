//! The exporter's series names, from its metric catalogue (`pacs_exporter::metrics`), for
//! tests that check dashboards, rules, the README and what reaches Prometheus against them;
//! and reading one series' value from an exposition.

use std::sync::LazyLock;

use pacs_exporter::metrics::{self, Metric};

/// Every series name the exporter exposes (`process_*` are matched by prefix). A histogram
/// reaches Prometheus as `_bucket`, `_sum` and `_count`; its `_count` stands for it here.
/// `metric_list_matches_the_readme` (tests/it/deploy.rs) holds the catalogue to the README's
/// metric tables.
pub static EXPORTER_METRICS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    metrics::ALL
        .iter()
        .map(|metric| match *metric {
            metrics::PACS_EXPORTER_PROBE_QUEUE_WAIT_SECONDS => count(metric),
            _ => metric.name,
        })
        .collect()
});

fn count(histogram: &Metric) -> &'static str {
    Box::leak(format!("{}_count", histogram.name).into_boxed_str())
}

/// Metrics a given setup does not produce: find-only, TLS-only, the per-study list, and
/// send_check's opt-in comparisons (`compare_attributes`, `series_detail`).
pub const FIND_TLS_AND_PER_STUDY: &[&str] = &[
    metrics::PROBE_DICOM_FIND_DURATION_SECONDS.name,
    metrics::PROBE_DICOM_FIND_MATCHES.name,
    metrics::PROBE_SSL_EARLIEST_CERT_EXPIRY.name,
    metrics::PACS_STUDY_UNSENT.name,
    metrics::PACS_STUDIES_MISMATCHED.name,
    metrics::PACS_SERIES_MISSING.name,
    metrics::PACS_SERIES_INCOMPLETE.name,
];

/// The value of one series in an exposition text, written as it appears there
/// (`probe_success`, `probe_failure_info{reason="refused",stage="connect"}`).
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}
