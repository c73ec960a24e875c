//! Metrics and association set-up shared by the probers that talk to one peer (echo, find).

use crate::exposition::{Gauge, GaugeVec};

use super::{Failure, ProbeContext, Reason, Stage};
use crate::dicom::find::{Completeness, FindAnswer};
use crate::dicom::{Association, AssociationOptions, PeerInfo, Step, Timings};
use crate::metrics;
use crate::settings::DicomOptions;
use crate::target::{AeTitle, Target};

/// The metrics of a probe that associates with one peer (echo and find).
pub(crate) struct AssociationMetrics {
    dns: Gauge,
    connect: Gauge,
    association: Gauge,
    peer_info: GaugeVec,
    /// Only for modules with `dicom.tls`.
    ssl_expiry: Option<Gauge>,
    pub status: Gauge,
}

impl AssociationMetrics {
    pub fn register(ctx: &ProbeContext<'_>) -> AssociationMetrics {
        let r = ctx.registry;
        let metrics = AssociationMetrics {
            dns: metrics::PROBE_DNS_LOOKUP_TIME_SECONDS.gauge(r),
            connect: metrics::PROBE_DICOM_CONNECT_DURATION_SECONDS.gauge(r),
            association: metrics::PROBE_DICOM_ASSOCIATION_DURATION_SECONDS.gauge(r),
            peer_info: metrics::PROBE_DICOM_PEER_INFO.gauge_vec(
                r,
                &["implementation_class_uid", "implementation_version_name"],
            ),
            ssl_expiry: ctx
                .module
                .dicom
                .tls
                .as_ref()
                .map(|_| metrics::PROBE_SSL_EARLIEST_CERT_EXPIRY.gauge(r)),
            status: metrics::PROBE_DICOM_STATUS.gauge(r),
        };
        metrics.status.set(-1.0);
        metrics.set_peer(&PeerInfo::default());
        metrics
    }

    fn set_timings(&self, timings: &Timings) {
        self.dns.set(timings.resolve.as_secs_f64());
        self.connect.set(timings.connect.as_secs_f64());
        self.association.set(timings.associate.as_secs_f64());
    }

    fn set_peer(&self, peer: &PeerInfo) {
        self.peer_info.reset();
        self.peer_info
            .with_label_values(&[
                &peer.implementation_class_uid,
                &peer.implementation_version_name,
            ])
            .set(1.0);
    }

    /// Associates with the probe's target, proposing `abstract_syntaxes`, and records the
    /// timings and the peer's identity.
    pub async fn associate(
        &self,
        ctx: &ProbeContext<'_>,
        abstract_syntaxes: &[&str],
    ) -> Result<Association, Failure> {
        let dicom = &ctx.module.dicom;
        ctx.log.debug(format!(
            "associating with {}@{}:{} as {}",
            called_aet(ctx.target, dicom),
            ctx.target.host,
            ctx.target.port,
            dicom.calling_aet
        ));
        let mut timings = Timings::default();
        let remote = Remote {
            target: ctx.target,
            dicom,
            restricted: true,
        };
        let result = establish(
            ctx,
            &remote,
            abstract_syntaxes,
            Stage::Associate,
            &|stage| ctx.enter(stage),
            &mut timings,
        )
        .await;
        self.set_timings(&timings);
        if let (Some(gauge), Some(expiry)) = (&self.ssl_expiry, timings.tls_expiry) {
            gauge.set(expiry as f64);
        }
        let association = result?;
        let peer = association.peer();
        self.set_peer(peer);
        ctx.log.debug(format!(
            "associated in {:.3}s (connect {:.3}s); peer implementation {:?} version {:?}, max PDU {}",
            timings.associate.as_secs_f64(),
            timings.connect.as_secs_f64(),
            peer.implementation_class_uid,
            peer.implementation_version_name,
            peer.max_pdu_length
        ));
        Ok(association)
    }
}

/// The called AE title for `target`: its own, or the module's default.
pub(crate) fn called_aet<'a>(target: &'a Target, dicom: &'a DicomOptions) -> &'a AeTitle {
    target.called_aet.as_ref().unwrap_or(&dicom.called_aet)
}

/// A peer to associate with and how: its `dicom` block, and whether only addresses
/// allowed_targets allows may be connected to.
pub(crate) struct Remote<'a> {
    pub target: &'a Target,
    pub dicom: &'a DicomOptions,
    pub restricted: bool,
}

/// Resolves, connects (over TLS if the `dicom` block says so) and associates with `remote`,
/// recording how long each step took in `timings`. A failed DIMSE exchange counts as stage
/// `exchange`. `enter` is told each stage as it begins (resolve, connect, tls, associate): a
/// request that joins the probe, and a deadline that cuts it off, read the stage it is in.
pub(crate) async fn establish(
    ctx: &ProbeContext<'_>,
    remote: &Remote<'_>,
    abstract_syntaxes: &[&str],
    exchange: Stage,
    enter: &(dyn Fn(Stage) + Send + Sync),
    timings: &mut Timings,
) -> Result<Association, Failure> {
    let Remote {
        target,
        dicom,
        restricted,
    } = *remote;
    let may_connect = |addr: &std::net::SocketAddr| ctx.allow.allows_resolved(target, addr);
    let on_step = |step: Step| {
        enter(match step {
            Step::Resolve => Stage::Resolve,
            Step::Connect => Stage::Connect,
            Step::Tls => Stage::Tls,
            _ => Stage::Associate,
        })
    };
    let tls = dicom
        .tls
        .as_ref()
        .map(|t| t.options(&target.host))
        .transpose()
        .map_err(|e| Failure::new(Stage::Tls, Reason::TlsHandshake, e.to_string()))?;
    let options = AssociationOptions {
        calling_aet: dicom.calling_aet.as_str(),
        called_aet: called_aet(target, dicom).as_str(),
        abstract_syntaxes,
        max_pdu_length: dicom.max_pdu_length,
        address_filter: if restricted { Some(&may_connect) } else { None },
        on_step: Some(&on_step),
        tls,
    };
    Association::establish(&target.host, target.port, &options, ctx.deadline, timings)
        .await
        .map_err(|e| Failure::from_dicom(&e, exchange))
}

/// Why a C-FIND answer cannot be taken as complete, if it cannot: the peer cut it off
/// (0xFE00, as Orthanc's `LimitFindResults` does) or ended it with a failure status.
pub(crate) fn incomplete_failure(stage: Stage, answer: &FindAnswer) -> Option<Failure> {
    match answer.completeness() {
        Completeness::Complete => None,
        Completeness::CutOff => Some(Failure::new(
            stage,
            Reason::TooManyMatches,
            format!(
                "the answer was cut off after {} matches (status 0xfe00)",
                answer.matches
            ),
        )),
        Completeness::Failed => Some(Failure::new(
            stage,
            Reason::StatusFailure,
            format!(
                "C-FIND failed with status {:#06x}{}",
                answer.status,
                answer
                    .error_comment
                    .as_deref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            ),
        )),
    }
}
