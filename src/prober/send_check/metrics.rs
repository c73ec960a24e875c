//! send_check's metrics: a fixed set, every series present (0 until computed) however far
//! the probe got, except the per-study `pacs_study_unsent` series.

use prometheus::{Gauge, GaugeVec};

use super::options::StudyLabel;
use crate::dicom::study::StudySelection;
use crate::prober::{gauge, gauge_vec, Peer, ProbeContext};

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
}

impl Metrics {
    pub fn register(ctx: &ProbeContext<'_>, labels: &[StudyLabel]) -> Metrics {
        let r = ctx.registry;
        let per_peer = |name: &str, help: &str| {
            let g = gauge_vec(r, name, help, &["peer"]);
            for peer in PEERS {
                g.with_label_values(&[peer.as_str()]).set(0.0);
            }
            g
        };
        let queries = gauge_vec(
            r,
            "pacs_find_queries",
            "C-FIND queries this probe sent to that side, by kind: date_range, uid_list (several UIDs), uid (one).",
            &["peer", "kind"],
        );
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
            peer_up: per_peer("pacs_peer_up", "1 when that side's association and queries succeeded."),
            find_duration: per_peer(
                "pacs_find_duration_seconds",
                "Time spent in C-FIND on that side, in seconds.",
            ),
            find_matches: per_peer(
                "pacs_find_matches",
                "Matches read from that side's C-FINDs (also when max_matches stopped an answer).",
            ),
            queries,
            checked: gauge(r, "pacs_studies_checked", "Source studies old enough to judge."),
            pending: gauge(r, "pacs_studies_pending", "Source studies younger than the grace period."),
            future: gauge(
                r,
                "pacs_studies_future",
                "Source studies timed more than 15 minutes after now (pending; a sign of a wrong time zone).",
            ),
            missing: gauge(r, "pacs_studies_missing", "Checked studies the destination does not have."),
            incomplete: gauge(
                r,
                "pacs_studies_incomplete",
                "Checked studies the destination has with fewer instances than the source.",
            ),
            instances_missing: gauge(
                r,
                "pacs_instances_missing",
                "Instances of missing and incomplete studies not on the destination (where counts are known).",
            ),
            oldest_unsent_age: gauge(
                r,
                "pacs_oldest_unsent_study_age_seconds",
                "Age of the oldest missing or incomplete study, in seconds; 0 when none.",
            ),
            list_truncated: gauge(
                r,
                "pacs_study_list_truncated",
                "1 when more studies are unsent than max_listed_studies allows to list.",
            ),
            unsent: gauge_vec(
                r,
                "pacs_study_unsent",
                "A missing or incomplete study, oldest first, at most max_listed_studies.",
                &unsent_labels,
            ),
        }
    }
}

/// The kinds of query a side sends: the `kind` label of `pacs_find_queries`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum QueryKind {
    DateRange,
    UidList,
    Uid,
}

impl QueryKind {
    pub const ALL: [QueryKind; 3] = [QueryKind::DateRange, QueryKind::UidList, QueryKind::Uid];

    pub fn as_str(self) -> &'static str {
        match self {
            QueryKind::DateRange => "date_range",
            QueryKind::UidList => "uid_list",
            QueryKind::Uid => "uid",
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
