//! One side of the check: its association, its study queries and its share of the metrics.
//!
//! A side counts what it costs the PACS (queries by kind, matches read, time in C-FIND) as it
//! goes, so the gauges are right however the probe ends. It is released when its exchange is
//! intact (also after a failure status: the peer answered, and an abort would show as an error
//! in its logs) and aborted when the exchange broke off. A peer that does not answer
//! A-RELEASE-RQ promptly is aborted after [`RELEASE_WAIT`]: the comparison does not wait on it,
//! and the other side is never held up by it.

use std::time::Duration;

use tokio::time::Instant;

use dicom_core::{Tag, VR};

use super::attributes::Seen;
use super::memory::ArchiveKey;
use super::metrics::{Metrics, QueryKind};
use crate::dicom::find::FindAnswer;
use crate::dicom::study::{find_series, find_studies, SeriesMatch, StudyMatch, StudyQuery};
use crate::dicom::{Association, Timings};
use crate::prober::peer::{called_aet, establish, Remote};
use crate::prober::{Failure, Peer, ProbeContext, Reason, Stage};
use crate::settings::DicomOptions;
use crate::target::Target;

/// How long a side waits for A-RELEASE-RP before it aborts instead.
pub(super) const RELEASE_WAIT: Duration = Duration::from_secs(1);

/// Who a side talks to.
pub(super) struct Endpoint<'p> {
    pub peer: Peer,
    pub target: &'p Target,
    pub dicom: DicomOptions,
    /// Whether its addresses are held to allowed_targets: the source and a destination named
    /// by the request are; a destination named in the module is the operator's config.
    pub restricted: bool,
    /// Attributes every study query asks for, to be compared (`compare_attributes`).
    pub compare: &'p [(Tag, VR)],
}

impl Endpoint<'_> {
    fn stage(&self) -> Stage {
        match self.peer {
            Peer::Source => Stage::FindSource,
            Peer::Destination => Stage::FindDestination,
        }
    }
}

pub(super) struct Side<'a, 'p> {
    endpoint: Endpoint<'p>,
    association: Association,
    metrics: &'a Metrics,
    message_id: u16,
    find_time: Duration,
    matches: usize,
    /// Matches one query may return (a memory bound).
    max_matches: usize,
    /// Whether the association can no longer be released (the exchange broke off).
    broken: bool,
    /// What the destination's answers showed of the compared attributes.
    seen: Seen,
}

impl<'a, 'p> Side<'a, 'p> {
    pub async fn open(
        ctx: &ProbeContext<'_>,
        endpoint: Endpoint<'p>,
        metrics: &'a Metrics,
        max_matches: usize,
    ) -> Result<Side<'a, 'p>, Failure> {
        let association = associate(ctx, &endpoint).await?;
        Ok(Side {
            endpoint,
            association,
            metrics,
            message_id: 0,
            find_time: Duration::ZERO,
            matches: 0,
            max_matches,
            broken: false,
            seen: Seen::default(),
        })
    }

    /// What this side's answers showed of the compared attributes, study by study (recorded
    /// on the destination's side only: the source's are kept with its studies).
    pub fn seen(&self) -> &Seen {
        &self.seen
    }

    /// A failure of this side, at its query stage.
    pub fn failure(&self, failure: Failure) -> Failure {
        failure.on(self.endpoint.peer)
    }

    pub fn stage(&self) -> Stage {
        self.endpoint.stage()
    }

    /// Who this side's archive is, for what probes remember of it.
    pub fn archive(&self) -> ArchiveKey {
        ArchiveKey::new(self.endpoint.target, &self.endpoint.dicom)
    }

    /// A new association in place of one that broke off (the old one is aborted).
    pub async fn reconnect(&mut self, ctx: &ProbeContext<'_>) -> Result<(), Failure> {
        self.association = associate(ctx, &self.endpoint).await?;
        self.broken = false;
        Ok(())
    }

    /// One study query, each match handed to `on_match`. The answer may still be incomplete:
    /// the caller judges it by [`FindAnswer::completeness`].
    pub async fn find(
        &mut self,
        ctx: &ProbeContext<'_>,
        query: &StudyQuery<'_>,
        on_match: &mut (dyn FnMut(StudyMatch) + Send),
    ) -> Result<FindAnswer, Failure> {
        let start = self.begin(ctx, QueryKind::of(&query.selection));
        let mut read = 0;
        let query = StudyQuery {
            compare: self.endpoint.compare,
            ..*query
        };
        let record = self.endpoint.peer == Peer::Destination && !self.endpoint.compare.is_empty();
        let seen = &mut self.seen;
        let answer = find_studies(
            &mut self.association,
            &query,
            self.message_id,
            self.max_matches,
            &mut |mut m| {
                read += 1;
                if record {
                    seen.record(&m.uid, std::mem::take(&mut m.compared));
                }
                on_match(m);
            },
        )
        .await;
        self.account(read, start);
        answer.map_err(|e| {
            self.broken = true;
            self.failure(Failure::from_dicom(&e, self.stage()))
        })
    }

    /// The series of one study (`series_detail`), each match handed to `on_match`, by
    /// `deadline`: a side that runs out of time is aborted at close (its exchange broke off).
    pub async fn find_series(
        &mut self,
        ctx: &ProbeContext<'_>,
        study_uid: &str,
        deadline: Instant,
        on_match: &mut (dyn FnMut(SeriesMatch) + Send),
    ) -> Result<FindAnswer, Failure> {
        let start = self.begin(ctx, QueryKind::Series);
        let mut read = 0;
        let answer = tokio::time::timeout_at(
            deadline,
            find_series(
                &mut self.association,
                study_uid,
                self.message_id,
                self.max_matches,
                &mut |m| {
                    read += 1;
                    on_match(m);
                },
            ),
        )
        .await;
        self.account(read, start);
        let stage = self.stage();
        match answer {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.broken = true;
                Err(self.failure(Failure::from_dicom(&e, stage)))
            }
            Err(_) => {
                self.broken = true;
                Err(self.failure(Failure::new(
                    stage,
                    Reason::Timeout,
                    "no answer before the time left for series detail ran out",
                )))
            }
        }
    }

    /// Whether the association still carries queries (none broke off).
    pub fn usable(&self) -> bool {
        !self.broken
    }

    /// Starts a query of `kind`: the stage, a new message ID, the query counted; returns when.
    fn begin(&mut self, ctx: &ProbeContext<'_>, kind: QueryKind) -> Instant {
        ctx.enter_on(self.endpoint.peer, self.stage());
        self.message_id = self.message_id.wrapping_add(1);
        self.metrics
            .queries
            .with_label_values(&[self.endpoint.peer.as_str(), kind.as_str()])
            .inc();
        Instant::now()
    }

    /// Counts one query's matches and time into the side's gauges.
    fn account(&mut self, read: usize, start: Instant) {
        let peer = self.endpoint.peer.as_str();
        self.find_time += start.elapsed();
        self.matches += read;
        self.metrics
            .find_duration
            .with_label_values(&[peer])
            .set(self.find_time.as_secs_f64());
        self.metrics
            .find_matches
            .with_label_values(&[peer])
            .set(self.matches as f64);
    }

    /// Ends the association (see the module doc). `up` says whether this side did its part.
    pub async fn close(self, ctx: &ProbeContext<'_>, up: bool) {
        let peer = self.endpoint.peer.as_str();
        if up {
            self.metrics.peer_up.with_label_values(&[peer]).set(1.0);
        }
        if self.broken {
            self.association.abort();
            return;
        }
        match tokio::time::timeout(RELEASE_WAIT, self.association.release()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => ctx.log.info(format!("{peer}: release failed: {e}")),
            Err(_) => ctx.log.info(format!(
                "{peer}: no A-RELEASE-RP within {}s; the association was aborted",
                RELEASE_WAIT.as_secs_f64()
            )),
        }
    }

    /// Closes the side as `result` says and passes the result on.
    pub async fn close_with<T>(
        self,
        ctx: &ProbeContext<'_>,
        result: Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.close(ctx, result.is_ok()).await;
        result
    }
}

async fn associate(
    ctx: &ProbeContext<'_>,
    endpoint: &Endpoint<'_>,
) -> Result<Association, Failure> {
    let peer = endpoint.peer;
    ctx.log.debug(format!(
        "{}: associating with {}@{}:{}",
        peer.as_str(),
        called_aet(endpoint.target, &endpoint.dicom),
        endpoint.target.host,
        endpoint.target.port
    ));
    let mut timings = Timings::default();
    let remote = Remote {
        target: endpoint.target,
        dicom: &endpoint.dicom,
        restricted: endpoint.restricted,
    };
    let association = establish(
        ctx,
        &remote,
        &[crate::dicom::find::InformationModel::StudyRoot.sop_class()],
        endpoint.stage(),
        &|stage| ctx.enter_on(peer, stage),
        &mut timings,
    )
    .await
    .map_err(|failure| failure.on(peer))?;
    ctx.log.debug(format!(
        "{}: associated in {:.3}s, peer implementation {:?} {:?}",
        peer.as_str(),
        timings.associate.as_secs_f64(),
        association.peer().implementation_class_uid,
        association.peer().implementation_version_name
    ));
    Ok(association)
}
