//! Probers: one function per protocol check, and the failure vocabulary they report in.
//!
//! A prober is handed a [`ProbeContext`] (target, module, deadline, a fresh registry, a log).
//! It registers its metrics (named in the [`crate::metrics`] catalogue), logs why it failed and
//! returns what it found (send_check: its counts of studies) or a [`Failure`]. It never knows
//! about HTTP. [`run`] wraps every prober with the metrics every probe has (`probe_success`,
//! `probe_duration_seconds`, `probe_timeout_seconds`, `probe_failure_info`) and hands back
//! what it found as a typed [`Summary`], which the landing page shows.

pub mod checks;
pub mod echo;
pub mod find;
mod log;
pub mod module;
mod peer;
pub mod send_check;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use chrono::NaiveDateTime;

use crate::allow::AllowList;
use crate::dicom;
use crate::exposition::Sheet;
use crate::metrics;
use crate::settings::TimeZone;
use crate::target::Target;
use checks::ProberKind;
use module::{Module, Prober};

pub use log::ProbeLog;

/// Where a probe failed. The values are the `stage` label of `probe_failure_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    Resolve,
    Connect,
    Tls,
    Associate,
    Echo,
    Find,
    FindSource,
    FindDestination,
    Release,
}

impl Stage {
    const ALL: [Stage; 9] = [
        Stage::Resolve,
        Stage::Connect,
        Stage::Tls,
        Stage::Associate,
        Stage::Echo,
        Stage::Find,
        Stage::FindSource,
        Stage::FindDestination,
        Stage::Release,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Resolve => "resolve",
            Stage::Connect => "connect",
            Stage::Tls => "tls",
            Stage::Associate => "associate",
            Stage::Echo => "echo",
            Stage::Find => "find",
            Stage::FindSource => "find_source",
            Stage::FindDestination => "find_destination",
            Stage::Release => "release",
        }
    }
}

/// Why a probe failed: a fixed vocabulary, the `reason` label of `probe_failure_info`.
/// Free text goes to the probe's log, never to a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Timeout,
    Refused,
    Dns,
    Unreachable,
    TlsHandshake,
    RejectedCallingAet,
    RejectedCalledAet,
    RejectedBusy,
    RejectedOther,
    NoPresentationContext,
    Aborted,
    ProtocolError,
    StatusFailure,
    TooManyMatches,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Refused => "refused",
            Reason::Dns => "dns",
            Reason::Unreachable => "unreachable",
            Reason::TlsHandshake => "tls_handshake",
            Reason::RejectedCallingAet => "rejected_calling_aet",
            Reason::RejectedCalledAet => "rejected_called_aet",
            Reason::RejectedBusy => "rejected_busy",
            Reason::RejectedOther => "rejected_other",
            Reason::NoPresentationContext => "no_presentation_context",
            Reason::Aborted => "aborted",
            Reason::ProtocolError => "protocol_error",
            Reason::StatusFailure => "status_failure",
            Reason::TooManyMatches => "too_many_matches",
        }
    }
}

/// Which side of a transfer check: the `peer` label of send_check's series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Peer {
    Source,
    Destination,
}

impl Peer {
    pub fn as_str(self) -> &'static str {
        match self {
            Peer::Source => "source",
            Peer::Destination => "destination",
        }
    }
}

/// A failed probe: stage, reason (and, in send_check, the side) for the labels, detail for
/// the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    pub reason: Reason,
    pub peer: Option<Peer>,
    pub detail: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}: ", self.stage.as_str(), self.reason.as_str())?;
        if let Some(peer) = self.peer {
            write!(f, "{}: ", peer.as_str())?;
        }
        f.write_str(&self.detail)
    }
}

/// Said of an association the PACS accepted and then aborted during a request: the first
/// trap of a deployment. Orthanc, for one, accepts any calling AE title and aborts the first
/// request of one missing from its `DicomModalities` ("not listed in DicomModalities" in its
/// log).
const UNKNOWN_CALLING_AET_HINT: &str = "; a PACS that aborts at the first request usually \
     does not know the calling AE title: register the module's dicom.calling_aet \
     (PACS_EXPORTER by default) with this exporter's address on the PACS \
     (Orthanc: DicomModalities)";

impl Failure {
    pub fn new(stage: Stage, reason: Reason, detail: impl Into<String>) -> Failure {
        Failure {
            stage,
            reason,
            peer: None,
            detail: detail.into(),
        }
    }

    /// The same failure, on one side of a transfer check.
    pub fn on(self, peer: Peer) -> Failure {
        Failure {
            peer: Some(peer),
            ..self
        }
    }

    /// The one place where DICOM errors become the probe's failure vocabulary.
    /// `exchange` is the stage a failed DIMSE exchange counts as (echo, find, …).
    pub fn from_dicom(error: &dicom::Error, exchange: Stage) -> Failure {
        use dicom::{ErrorKind as K, Rejection};
        let stage = match error.step {
            dicom::Step::Resolve => Stage::Resolve,
            dicom::Step::Connect => Stage::Connect,
            dicom::Step::Tls => Stage::Tls,
            dicom::Step::Associate => Stage::Associate,
            dicom::Step::Exchange => exchange,
            dicom::Step::Release => Stage::Release,
        };
        let reason = match &error.kind {
            K::Timeout => Reason::Timeout,
            K::Resolve(_) | K::NoAddress | K::NotAllowed => Reason::Dns,
            K::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Reason::Refused,
            K::Io(_) if error.step == dicom::Step::Connect => Reason::Unreachable,
            K::Io(_) | K::Closed | K::Aborted(_) => Reason::Aborted,
            K::Rejected { rejection, .. } => match rejection {
                Rejection::CallingAeTitle => Reason::RejectedCallingAet,
                Rejection::CalledAeTitle => Reason::RejectedCalledAet,
                Rejection::Busy => Reason::RejectedBusy,
                Rejection::Other => Reason::RejectedOther,
            },
            K::NoPresentationContext => Reason::NoPresentationContext,
            K::TlsHandshake(_) => Reason::TlsHandshake,
            K::Protocol(_) => Reason::ProtocolError,
            K::TooManyMatches(_) => Reason::TooManyMatches,
        };
        let mut detail = error.to_string();
        if error.step == dicom::Step::Exchange && matches!(error.kind, K::Aborted(_)) {
            detail.push_str(UNKNOWN_CALLING_AET_HINT);
        }
        Failure::new(stage, reason, detail)
    }
}

/// Everything a prober is handed.
pub struct ProbeContext<'a> {
    pub target: &'a Target,
    /// The destination the request named, for a transfer check whose module takes it from
    /// the request (`destination: from_request`).
    pub destination: Option<&'a Target>,
    pub module: &'a Module,
    /// `allowed_targets`: the target's resolved addresses are filtered through it.
    pub allow: &'a AllowList,
    pub deadline: Instant,
    pub registry: &'a Sheet,
    pub log: &'a ProbeLog,
    /// What earlier transfer checks learnt of the archives they queried.
    pub archives: &'a send_check::Archives,
    progress: &'a Progress,
}

impl ProbeContext<'_> {
    /// Records the stage the prober is in, so that a probe cut off by the deadline from
    /// outside still reports where it was.
    pub fn enter(&self, stage: Stage) {
        self.progress.stage.store(stage as u8, Ordering::Relaxed);
    }

    /// Records the stage one side of a transfer check is in.
    pub fn enter_on(&self, peer: Peer, stage: Stage) {
        self.progress.peer.store(peer as u8 + 1, Ordering::Relaxed);
        self.enter(stage);
    }
}

/// What a running probe has gathered so far: its registry and the stage it is in. Whoever
/// waits for the probe can read it while the probe runs, and answer from it when the probe
/// does not report by that waiter's deadline.
pub struct Progress {
    registry: Sheet,
    stage: AtomicU8,
    /// The side a send_check probe last worked on, plus one (0: none).
    peer: AtomicU8,
    /// Whether the prober's failures name a side (send_check).
    names_peers: AtomicBool,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            registry: Sheet::new(),
            stage: AtomicU8::new(Stage::Resolve as u8),
            peer: AtomicU8::new(0),
            names_peers: AtomicBool::new(false),
        }
    }

    /// The stage the probe is in (or ended in).
    pub fn stage(&self) -> Stage {
        let index = self.stage.load(Ordering::Relaxed) as usize;
        Stage::ALL.get(index).copied().unwrap_or(Stage::Connect)
    }

    /// The side a send_check probe last worked on.
    fn peer(&self) -> Option<Peer> {
        match self.peer.load(Ordering::Relaxed) {
            1 => Some(Peer::Source),
            2 => Some(Peer::Destination),
            _ => None,
        }
    }

    /// The probe as it stands, as a probe that timed out at its current stage: the prober's
    /// series as far as they got, `probe_success` 0, `probe_failure_info{reason="timeout"}`,
    /// and the duration and budget of the one who asks. Nothing is recorded anywhere.
    pub fn timed_out(&self, timeout: Duration, duration: Duration) -> String {
        let common = Sheet::new();
        set_common(&common, timeout, duration, false);
        let failure = Failure {
            peer: self.peer(),
            ..Failure::new(self.stage(), Reason::Timeout, "")
        };
        failure_info(&common, self.names_peers.load(Ordering::Relaxed), &failure);
        // The series every probe has are added when it ends.
        self.registry.render_with(&metrics::COMMON, Some(&common))
    }
}

/// Registers and sets the series every probe has but `probe_failure_info`.
fn set_common(registry: &Sheet, timeout: Duration, duration: Duration, success: bool) {
    metrics::PROBE_SUCCESS
        .gauge(registry)
        .set(if success { 1.0 } else { 0.0 });
    metrics::PROBE_DURATION_SECONDS
        .gauge(registry)
        .set(duration.as_secs_f64());
    metrics::PROBE_TIMEOUT_SECONDS
        .gauge(registry)
        .set(timeout.as_secs_f64());
}

/// Registers and sets `probe_failure_info`; with `names_peers` (send_check, whose label set
/// is fixed for the prober) it carries the side that failed.
fn failure_info(registry: &Sheet, names_peers: bool, failure: &Failure) {
    let (stage, reason) = (failure.stage.as_str(), failure.reason.as_str());
    let peer = failure.peer.map_or("", Peer::as_str);
    let (labels, values): (&[&str], Vec<&str>) = if names_peers {
        (&["stage", "reason", "peer"], vec![stage, reason, peer])
    } else {
        (&["stage", "reason"], vec![stage, reason])
    };
    metrics::PROBE_FAILURE_INFO
        .gauge_vec(registry, labels)
        .with_label_values(&values)
        .set(1.0);
}

/// What a probe is handed beyond its request: the config's allowed_targets, and what earlier
/// probes learnt of the archives.
#[derive(Clone, Copy)]
pub struct Known<'a> {
    pub allow: &'a AllowList,
    pub archives: &'a send_check::Archives,
}

/// The result of one probe: its metrics, its verdict and, if it succeeded, what it found.
pub struct ProbeResult {
    pub registry: Sheet,
    pub success: bool,
    pub duration: Duration,
    pub failure: Option<Failure>,
    pub summary: Option<Summary>,
}

/// What a successful probe found beyond its verdict, as the landing page shows it: a find's
/// matches, a transfer check's counts. Echo's verdict says it all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    Matches(usize),
    Transfer(send_check::Counts),
}

impl Summary {
    /// Whether the probe, though it ran, found something wrong: studies that did not arrive,
    /// or arrived incomplete.
    pub fn is_finding(&self) -> bool {
        match self {
            Summary::Matches(_) => false,
            Summary::Transfer(counts) => counts.missing + counts.mismatched + counts.incomplete > 0,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Summary::Matches(1) => f.write_str("1 match"),
            Summary::Matches(n) => write!(f, "{n} matches"),
            Summary::Transfer(counts) => {
                write!(f, "checked {}, missing {}", counts.checked, counts.missing)?;
                if counts.mismatched > 0 {
                    write!(f, ", mismatched {}", counts.mismatched)?;
                }
                write!(f, ", incomplete {}", counts.incomplete)
            }
        }
    }
}

/// What a request names for a probe: its target and, for a transfer check whose module takes
/// it from the request, the destination.
#[derive(Clone, Copy, Debug)]
pub struct Targets<'a> {
    pub target: &'a Target,
    pub destination: Option<&'a Target>,
}

/// Runs one probe under `deadline` and gathers its metrics into `progress`' registry, which
/// must be fresh. `timeout` is the budget it runs under, reported as `probe_timeout_seconds`.
pub async fn run(
    targets: Targets<'_>,
    module: &Module,
    known: Known<'_>,
    deadline: Instant,
    timeout: Duration,
    log: &ProbeLog,
    progress: &Progress,
) -> ProbeResult {
    let start = Instant::now();
    let registry = progress.registry.clone();
    progress.names_peers.store(
        module.prober.kind() == ProberKind::SendCheck,
        Ordering::Relaxed,
    );
    let ctx = ProbeContext {
        target: targets.target,
        destination: targets.destination,
        module,
        allow: known.allow,
        deadline,
        registry: &registry,
        log,
        archives: known.archives,
        progress,
    };
    log.info(format!(
        "beginning probe: prober={} timeout={:.3}s",
        module.prober.name(),
        timeout.as_secs_f64()
    ));
    let probe = async {
        match &module.prober {
            Prober::Echo => echo::probe(&ctx).await.map(|()| None),
            Prober::Find(options) => find::probe(&ctx, options)
                .await
                .map(|matches| Some(Summary::Matches(matches))),
            Prober::SendCheck(options) => send_check::probe(&ctx, options)
                .await
                .map(|counts| Some(Summary::Transfer(counts))),
        }
    };
    // The probers keep the deadline themselves (and abort cleanly); this is the backstop.
    // `biased` lets a prober that hit the deadline at the same instant report its own stage.
    let outcome = tokio::select! {
        biased;
        outcome = probe => outcome,
        // Unconstrained: a prober that spent the task's coop budget must not starve its timer.
        () = tokio::task::unconstrained(tokio::time::sleep_until(deadline)) => Err(Failure {
            peer: progress.peer(),
            ..Failure::new(progress.stage(), Reason::Timeout, "the probe's deadline passed")
        }),
    };
    let duration = start.elapsed();

    let (summary, failure) = match outcome {
        Ok(summary) => (summary, None),
        Err(failure) => (None, Some(failure)),
    };
    set_common(&registry, timeout, duration, failure.is_none());
    match &failure {
        // The process log: a success at debug, a failure at info, with its stage and reason.
        None => log.outcome(
            tracing::Level::DEBUG,
            format!("probe succeeded in {:.3}s", duration.as_secs_f64()),
        ),
        Some(failure) => {
            let peer = failure.peer.map_or("", Peer::as_str);
            log.outcome(
                tracing::Level::INFO,
                format!(
                    "probe failed: stage={} reason={}{}{} detail={:?}",
                    failure.stage.as_str(),
                    failure.reason.as_str(),
                    if peer.is_empty() { "" } else { " peer=" },
                    peer,
                    failure.detail
                ),
            );
            failure_info(
                &registry,
                progress.names_peers.load(Ordering::Relaxed),
                failure,
            );
        }
    }
    ProbeResult {
        registry,
        success: failure.is_none(),
        duration,
        failure,
        summary,
    }
}

/// The current wall-clock time in `zone` (the exporter's local zone when `None`), as the
/// naive date and time that StudyDate/StudyTime are compared with.
pub(crate) fn local_now(zone: Option<TimeZone>) -> NaiveDateTime {
    match zone {
        Some(TimeZone(tz)) => chrono::Utc::now().with_timezone(&tz).naive_local(),
        None => chrono::Local::now().naive_local(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transfer_checks_summary_names_its_counts() {
        let summary = Summary::Transfer(send_check::Counts {
            checked: 23,
            missing: 3,
            mismatched: 0,
            incomplete: 1,
        });
        assert_eq!(summary.to_string(), "checked 23, missing 3, incomplete 1");
        let summary = Summary::Transfer(send_check::Counts {
            checked: 23,
            missing: 3,
            mismatched: 2,
            incomplete: 1,
        });
        assert_eq!(
            summary.to_string(),
            "checked 23, missing 3, mismatched 2, incomplete 1"
        );
    }

    #[test]
    fn stage_round_trips_through_the_tracker() {
        for stage in Stage::ALL {
            assert_eq!(Stage::ALL[stage as usize], stage);
        }
    }
}
