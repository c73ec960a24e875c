//! The exporter's metric names, for tests that check dashboards, rules and what reaches
//! Prometheus against them.


/// Every metric the exporter exposes, from the README's metric tables (`process_*` are matched
/// by prefix). `metric_list_matches_the_readme` (tests/it/deploy.rs) keeps this
/// list honest.
pub const EXPORTER_METRICS: &[&str] = &[
    // Every probe.
    "probe_success",
    "probe_duration_seconds",
    "probe_timeout_seconds",
    "probe_failure_info",
    // echo and find.
    "probe_dns_lookup_time_seconds",
    "probe_dicom_connect_duration_seconds",
    "probe_dicom_association_duration_seconds",
    "probe_dicom_echo_duration_seconds",
    "probe_dicom_find_duration_seconds",
    "probe_dicom_find_matches",
    "probe_dicom_status",
    "probe_dicom_peer_info",
    // echo and find over DICOM TLS (the same name as blackbox_exporter's, so its alerts apply).
    "probe_ssl_earliest_cert_expiry",
    // send_check.
    "pacs_peer_up",
    "pacs_find_duration_seconds",
    "pacs_find_matches",
    "pacs_find_queries",
    "pacs_studies_checked",
    "pacs_studies_pending",
    "pacs_studies_future",
    "pacs_studies_missing",
    "pacs_studies_incomplete",
    "pacs_instances_missing",
    "pacs_oldest_unsent_study_age_seconds",
    "pacs_study_unsent",
    "pacs_study_list_truncated",
    // The exporter's own /metrics.
    "pacs_exporter_build_info",
    "pacs_exporter_config_last_reload_successful",
    "pacs_exporter_config_last_reload_success_timestamp_seconds",
    "pacs_exporter_probes_in_flight",
    "pacs_exporter_probe_requests_total",
    "pacs_exporter_module_unknown_total",
    // A histogram reaches Prometheus as _bucket, _sum and _count.
    "pacs_exporter_probe_queue_wait_seconds_count",
    "pacs_exporter_probe_rejections_total",
    "pacs_exporter_probe_deadline_overruns_total",
];

/// Metrics a given setup does not produce: find-only, TLS-only, and the per-study list.
pub const FIND_TLS_AND_PER_STUDY: &[&str] = &[
    "probe_dicom_find_duration_seconds",
    "probe_dicom_find_matches",
    "probe_ssl_earliest_cert_expiry",
    "pacs_study_unsent",
];
