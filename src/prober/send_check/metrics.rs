//! send_check's metrics. What each side did (`pacs_peer_up`, `pacs_find_*`) is present however
//! far the probe got, 0 until done. What the probe found is present only once found, since
//! unknown is not 0: the source's counts (`pacs_studies_checked`, `_pending`, `_future`) once
//! the source answered in full and the destination was reached, the verdict (`pacs_studies_missing`, `_incomplete`,
//! `pacs_instances_missing`, `pacs_oldest_unsent_study_age_seconds`,
//! `pacs_study_list_truncated`, `pacs_study_unsent`) once the two sides were compared. A
//! check that cannot run thus never reads as "nothing missing" (the alert rules keep the last
//! verdict while it fails).

use crate::exposition::{Gauge, GaugeVec};

use super::options::SendCheckOptions;
use crate::dicom::study::StudySelection;
use crate::metrics::{self, Metric};
use crate::prober::{Peer, ProbeContext};

const PEERS: [Peer; 2] = [Peer::Source, Peer::Destination];

pub(super) struct Metrics {
    pub peer_up: GaugeVec,
    pub find_duration: GaugeVec,
    pub find_matches: GaugeVec,
    pub queries: GaugeVec,
    pub checked: Gauge,
    pub pending: Gauge,
    pub future: Gauge,
    pub missing: Gauge,
    pub incomplete: Gauge,
    pub instances_missing: Gauge,
    pub oldest_unsent_age: Gauge,
    pub list_truncated: Gauge,
    pub unsent: GaugeVec,
    /// With `compare_attributes` only.
    pub mismatched: Option<Gauge>,
    /// With `series_detail` only.
    pub series_missing: Option<Gauge>,
    pub series_incomplete: Option<Gauge>,
}

impl Metrics {
    pub fn register(ctx: &ProbeContext<'_>, options: &SendCheckOptions) -> Metrics {
        let labels = &options.labels;
        let r = ctx.registry;
        let per_peer = |metric: Metric| {
            let g = metric.gauge_vec(r, &["peer"]);
            for peer in PEERS {
                g.with_label_values(&[peer.as_str()]).set(0.0);
            }
            g
        };
        let queries = metrics::PACS_FIND_QUERIES.gauge_vec(r, &["peer", "kind"]);
        for peer in PEERS {
            for kind in QueryKind::ALL {
                queries
                    .with_label_values(&[peer.as_str(), kind.as_str()])
                    .set(0.0);
            }
        }
        let mut unsent_labels = vec!["study_instance_uid", "state"];
        unsent_labels.extend(labels.iter().map(|l| l.name()));
        Metrics {
            peer_up: per_peer(metrics::PACS_PEER_UP),
            find_duration: per_peer(metrics::PACS_FIND_DURATION_SECONDS),
            find_matches: per_peer(metrics::PACS_FIND_MATCHES),
            queries,
            checked: metrics::PACS_STUDIES_CHECKED.unknown_gauge(r),
            pending: metrics::PACS_STUDIES_PENDING.unknown_gauge(r),
            future: metrics::PACS_STUDIES_FUTURE.unknown_gauge(r),
            missing: metrics::PACS_STUDIES_MISSING.unknown_gauge(r),
            incomplete: metrics::PACS_STUDIES_INCOMPLETE.unknown_gauge(r),
            instances_missing: metrics::PACS_INSTANCES_MISSING.unknown_gauge(r),
            oldest_unsent_age: metrics::PACS_OLDEST_UNSENT_STUDY_AGE_SECONDS.unknown_gauge(r),
            list_truncated: metrics::PACS_STUDY_LIST_TRUNCATED.unknown_gauge(r),
            unsent: metrics::PACS_STUDY_UNSENT.gauge_vec(r, &unsent_labels),
            mismatched: (!options.compare_attributes.is_empty())
                .then(|| metrics::PACS_STUDIES_MISMATCHED.unknown_gauge(r)),
            series_missing: options
                .series_detail
                .then(|| metrics::PACS_SERIES_MISSING.unknown_gauge(r)),
            series_incomplete: options
                .series_detail
                .then(|| metrics::PACS_SERIES_INCOMPLETE.unknown_gauge(r)),
        }
    }
}

/// The kinds of query a side sends: the `kind` label of `pacs_find_queries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QueryKind {
    DateRange,
    UidList,
    Uid,
    /// SERIES level, for `series_detail`.
    Series,
}

impl QueryKind {
    pub const ALL: [QueryKind; 4] = [
        QueryKind::DateRange,
        QueryKind::UidList,
        QueryKind::Uid,
        QueryKind::Series,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::DateRange => "date_range",
            QueryKind::UidList => "uid_list",
            QueryKind::Uid => "uid",
            QueryKind::Series => "series",
        }
    }

    pub fn of(selection: &StudySelection<'_>) -> QueryKind {
        match selection {
            StudySelection::Dates { .. } => QueryKind::DateRange,
            StudySelection::Uids([_]) => QueryKind::Uid,
            StudySelection::Uids(_) => QueryKind::UidList,
        }
    }
}
