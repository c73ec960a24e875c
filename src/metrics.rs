//! Every metric the exporter exposes, by name and help text: the probers' series (a fresh
//! `Sheet` per probe, see `exposition`) and the exporter's own (`/metrics`). Probers and the
//! web layer register through these descriptors, so a name or a help text is written once,
//! here.
//!
//! Label names stay with the code that sets them; they are part of how a series is filled.

use prometheus::Opts;

/// A metric's name and help text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
}

const fn metric(name: &'static str, help: &'static str) -> Metric {
    Metric { name, help }
}

impl Metric {
    /// The name and help as Prometheus options.
    pub fn opts(&self) -> Opts {
        Opts::new(self.name, self.help)
    }
}

// Every probe.

pub const PROBE_SUCCESS: Metric = metric(
    "probe_success",
    "Whether the probe succeeded (1) or failed (0).",
);
pub const PROBE_DURATION_SECONDS: Metric = metric(
    "probe_duration_seconds",
    "How long the probe took to complete in seconds.",
);
pub const PROBE_TIMEOUT_SECONDS: Metric = metric(
    "probe_timeout_seconds",
    "The deadline the probe ran under, in seconds.",
);
pub const PROBE_FAILURE_INFO: Metric = metric(
    "probe_failure_info",
    "Why the probe failed: the stage and a reason from a fixed vocabulary.",
);

// echo and find: one peer's association.

pub const PROBE_DNS_LOOKUP_TIME_SECONDS: Metric = metric(
    "probe_dns_lookup_time_seconds",
    "How long DNS resolution took, in seconds.",
);
pub const PROBE_DICOM_CONNECT_DURATION_SECONDS: Metric = metric(
    "probe_dicom_connect_duration_seconds",
    "How long the TCP connect took, in seconds.",
);
pub const PROBE_DICOM_ASSOCIATION_DURATION_SECONDS: Metric = metric(
    "probe_dicom_association_duration_seconds",
    "From TCP connect until A-ASSOCIATE-AC, in seconds.",
);
pub const PROBE_DICOM_PEER_INFO: Metric = metric(
    "probe_dicom_peer_info",
    "Implementation class UID and version name from the peer's A-ASSOCIATE-AC.",
);
/// Only for modules with `dicom.tls`; the name is blackbox_exporter's, so its alerts apply.
pub const PROBE_SSL_EARLIEST_CERT_EXPIRY: Metric = metric(
    "probe_ssl_earliest_cert_expiry",
    "Earliest expiry of the PACS' TLS certificates, in Unix seconds; 0 until known.",
);
pub const PROBE_DICOM_STATUS: Metric = metric(
    "probe_dicom_status",
    "The last DIMSE status received (e.g. 0 for success); -1 if none arrived.",
);

// echo.

pub const PROBE_DICOM_ECHO_DURATION_SECONDS: Metric = metric(
    "probe_dicom_echo_duration_seconds",
    "How long the C-ECHO exchange took, in seconds.",
);

// find.

pub const PROBE_DICOM_FIND_DURATION_SECONDS: Metric = metric(
    "probe_dicom_find_duration_seconds",
    "How long the C-FIND took, from request to final response, in seconds.",
);
pub const PROBE_DICOM_FIND_MATCHES: Metric =
    metric("probe_dicom_find_matches", "Matches the C-FIND returned.");

// send_check.

pub const PACS_PEER_UP: Metric = metric(
    "pacs_peer_up",
    "1 when that side's association and queries succeeded.",
);
pub const PACS_FIND_DURATION_SECONDS: Metric = metric(
    "pacs_find_duration_seconds",
    "Time spent in C-FIND on that side, in seconds.",
);
pub const PACS_FIND_MATCHES: Metric = metric(
    "pacs_find_matches",
    "Matches read from that side's C-FINDs (also when max_matches stopped an answer).",
);
pub const PACS_FIND_QUERIES: Metric = metric(
    "pacs_find_queries",
    "C-FIND queries this probe sent to that side, by kind: date_range, uid_list (several UIDs), uid (one), series (series_detail).",
);
pub const PACS_STUDIES_CHECKED: Metric = metric(
    "pacs_studies_checked",
    "Source studies old enough to judge.",
);
pub const PACS_STUDIES_PENDING: Metric = metric(
    "pacs_studies_pending",
    "Source studies younger than the grace period.",
);
pub const PACS_STUDIES_FUTURE: Metric = metric(
    "pacs_studies_future",
    "Source studies timed more than 15 minutes after now (pending; a sign of a wrong time zone).",
);
pub const PACS_STUDIES_MISSING: Metric = metric(
    "pacs_studies_missing",
    "Checked studies the destination does not have.",
);
pub const PACS_STUDIES_INCOMPLETE: Metric = metric(
    "pacs_studies_incomplete",
    "Checked studies the destination has with fewer instances than the source.",
);
pub const PACS_STUDIES_MISMATCHED: Metric = metric(
    "pacs_studies_mismatched",
    "Checked studies the destination holds with other values of send_check.compare_attributes (e.g. another PatientID).",
);
pub const PACS_SERIES_MISSING: Metric = metric(
    "pacs_series_missing",
    "Series of incomplete studies that the destination lacks (send_check.series_detail, over the studies whose series were compared).",
);
pub const PACS_SERIES_INCOMPLETE: Metric = metric(
    "pacs_series_incomplete",
    "Series of incomplete studies that the destination holds with fewer instances (send_check.series_detail).",
);
pub const PACS_INSTANCES_MISSING: Metric = metric(
    "pacs_instances_missing",
    "Instances of missing and incomplete studies not on the destination (where counts are known).",
);
pub const PACS_OLDEST_UNSENT_STUDY_AGE_SECONDS: Metric = metric(
    "pacs_oldest_unsent_study_age_seconds",
    "Age of the oldest missing or incomplete study, in seconds; 0 when none.",
);
pub const PACS_STUDY_LIST_TRUNCATED: Metric = metric(
    "pacs_study_list_truncated",
    "1 when more studies are unsent than max_listed_studies allows to list.",
);
pub const PACS_STUDY_UNSENT: Metric = metric(
    "pacs_study_unsent",
    "A missing, mismatched or incomplete study, oldest first, at most max_listed_studies.",
);

// The exporter's own, on `/metrics` (besides the process collector's `process_*`).

pub const PACS_EXPORTER_BUILD_INFO: Metric = metric(
    "pacs_exporter_build_info",
    "A metric with a constant '1' value labeled by version, revision, branch, \
     rustversion and platform from which pacs_exporter was built.",
);
pub const PACS_EXPORTER_CONFIG_LAST_RELOAD_SUCCESSFUL: Metric = metric(
    "pacs_exporter_config_last_reload_successful",
    "Whether the last config reload succeeded.",
);
pub const PACS_EXPORTER_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS: Metric = metric(
    "pacs_exporter_config_last_reload_success_timestamp_seconds",
    "When the config was last loaded successfully, in Unix seconds.",
);
pub const PACS_EXPORTER_PROBES_IN_FLIGHT: Metric =
    metric("pacs_exporter_probes_in_flight", "Probes running now.");
pub const PACS_EXPORTER_PROBE_REQUESTS_TOTAL: Metric = metric(
    "pacs_exporter_probe_requests_total",
    "Probe requests answered, by module and result (success, failure).",
);
pub const PACS_EXPORTER_MODULE_UNKNOWN_TOTAL: Metric = metric(
    "pacs_exporter_module_unknown_total",
    "Probe requests that named a module the config does not have.",
);
pub const PACS_EXPORTER_PROBE_QUEUE_WAIT_SECONDS: Metric = metric(
    "pacs_exporter_probe_queue_wait_seconds",
    "How long probes waited for a slot (--probe.max-concurrent) before they started or were refused.",
);
pub const PACS_EXPORTER_PROBE_REJECTIONS_TOTAL: Metric = metric(
    "pacs_exporter_probe_rejections_total",
    "Probe requests answered 503 because the exporter could not run them in time, by cause.",
);
pub const PACS_EXPORTER_HTTP_CONNECTIONS_REFUSED_TOTAL: Metric = metric(
    "pacs_exporter_http_connections_refused_total",
    "HTTP connections answered 503 at once because none could be made free for them, by reason.",
);
pub const PACS_EXPORTER_HTTP_CONNECTIONS_EVICTED_TOTAL: Metric = metric(
    "pacs_exporter_http_connections_evicted_total",
    "HTTP connections not handling a request that were closed to make room for another client's.",
);
pub const PACS_EXPORTER_PROBE_DEADLINE_OVERRUNS_TOTAL: Metric = metric(
    "pacs_exporter_probe_deadline_overruns_total",
    "Probes that had not ended when their deadline had passed; each was answered as a timeout.",
);

/// The series every probe has, whatever its prober.
pub const COMMON: [Metric; 4] = [
    PROBE_SUCCESS,
    PROBE_DURATION_SECONDS,
    PROBE_TIMEOUT_SECONDS,
    PROBE_FAILURE_INFO,
];

/// Every metric in this catalogue, the probers' first.
pub const ALL: [Metric; 40] = [
    PROBE_SUCCESS,
    PROBE_DURATION_SECONDS,
    PROBE_TIMEOUT_SECONDS,
    PROBE_FAILURE_INFO,
    PROBE_DNS_LOOKUP_TIME_SECONDS,
    PROBE_DICOM_CONNECT_DURATION_SECONDS,
    PROBE_DICOM_ASSOCIATION_DURATION_SECONDS,
    PROBE_DICOM_PEER_INFO,
    PROBE_SSL_EARLIEST_CERT_EXPIRY,
    PROBE_DICOM_STATUS,
    PROBE_DICOM_ECHO_DURATION_SECONDS,
    PROBE_DICOM_FIND_DURATION_SECONDS,
    PROBE_DICOM_FIND_MATCHES,
    PACS_PEER_UP,
    PACS_FIND_DURATION_SECONDS,
    PACS_FIND_MATCHES,
    PACS_FIND_QUERIES,
    PACS_STUDIES_CHECKED,
    PACS_STUDIES_PENDING,
    PACS_STUDIES_FUTURE,
    PACS_STUDIES_MISSING,
    PACS_STUDIES_INCOMPLETE,
    PACS_STUDIES_MISMATCHED,
    PACS_SERIES_MISSING,
    PACS_SERIES_INCOMPLETE,
    PACS_INSTANCES_MISSING,
    PACS_OLDEST_UNSENT_STUDY_AGE_SECONDS,
    PACS_STUDY_LIST_TRUNCATED,
    PACS_STUDY_UNSENT,
    PACS_EXPORTER_BUILD_INFO,
    PACS_EXPORTER_CONFIG_LAST_RELOAD_SUCCESSFUL,
    PACS_EXPORTER_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
    PACS_EXPORTER_PROBES_IN_FLIGHT,
    PACS_EXPORTER_PROBE_REQUESTS_TOTAL,
    PACS_EXPORTER_MODULE_UNKNOWN_TOTAL,
    PACS_EXPORTER_PROBE_QUEUE_WAIT_SECONDS,
    PACS_EXPORTER_PROBE_REJECTIONS_TOTAL,
    PACS_EXPORTER_PROBE_DEADLINE_OVERRUNS_TOTAL,
    PACS_EXPORTER_HTTP_CONNECTIONS_REFUSED_TOTAL,
    PACS_EXPORTER_HTTP_CONNECTIONS_EVICTED_TOTAL,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_valid() {
        let mut names = std::collections::HashSet::new();
        for metric in ALL {
            assert!(names.insert(metric.name), "{} twice", metric.name);
            assert!(
                prometheus::Gauge::with_opts(metric.opts()).is_ok(),
                "{} is not a valid metric name",
                metric.name
            );
            assert!(!metric.help.is_empty(), "{} has no help", metric.name);
        }
    }
}
