//! The DICOM layer: the only code of the probes that touches dicom-ul, PDUs and DIMSE
//! messages. The one other user of dicom-ul is the demo PACS (`demo.rs`), which serves its
//! associations with dicom-ul's server side and reads requests with this layer's
//! [`pdu::MessageAssembly`].
//!
//! Everything above it speaks in "associate with this peer", "echo it", "release". Every
//! operation here runs under the caller's deadline and returns an [`Error`] that says which
//! [`Step`] failed and how; it never knows about HTTP or Prometheus.

pub mod association;
pub mod charset;
pub mod echo;
pub mod find;
pub mod guard;
pub mod message;
pub mod pdu;
pub mod query;
pub mod study;
pub mod tls;

use std::fmt;

use dicom_ul::pdu::{AbortRQSource, AssociationRJ};

pub use association::{Association, AssociationOptions, Timings, TlsOptions};
pub use pdu::PeerInfo;

/// Abstract syntax of the Verification SOP class (C-ECHO).
pub const VERIFICATION: &str = dicom_dictionary_std::uids::VERIFICATION;
/// Implicit VR Little Endian: every SCP must accept it.
pub const IMPLICIT_VR_LE: &str = dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN;
/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN;

/// The step of a DICOM exchange an error happened in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Host name to addresses.
    Resolve,
    /// TCP connect.
    Connect,
    /// The TLS handshake.
    Tls,
    /// A-ASSOCIATE-RQ until A-ASSOCIATE-AC.
    Associate,
    /// A DIMSE request and its responses.
    Exchange,
    /// A-RELEASE-RQ until A-RELEASE-RP.
    Release,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Resolve => "resolving the host name",
            Step::Connect => "connecting",
            Step::Tls => "in the TLS handshake",
            Step::Associate => "associating",
            Step::Exchange => "waiting for the DIMSE exchange",
            Step::Release => "releasing the association",
        })
    }
}

/// A failed DICOM operation: where it failed and why.
#[derive(Debug, thiserror::Error)]
#[error("{kind} ({step})")]
pub struct Error {
    pub step: Step,
    pub kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("the deadline passed")]
    Timeout,
    #[error("cannot resolve host: {0}")]
    Resolve(std::io::Error),
    #[error("host name resolves to no address")]
    NoAddress,
    #[error("host name resolves only to addresses the exporter may not reach")]
    NotAllowed,
    #[error("{0}")]
    Io(std::io::Error),
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(std::io::Error),
    #[error("association rejected: {detail}")]
    Rejected {
        rejection: Rejection,
        detail: String,
    },
    #[error("the peer accepted none of the proposed presentation contexts")]
    NoPresentationContext,
    #[error("the peer aborted the association ({})", abort_source(.0))]
    Aborted(AbortRQSource),
    #[error("the peer closed the connection")]
    Closed,
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("the peer returned more than {0} matches")]
    TooManyMatches(usize),
}

impl Error {
    pub(crate) fn new(step: Step, kind: ErrorKind) -> Error {
        Error { step, kind }
    }

    pub(crate) fn protocol(step: Step, detail: impl std::fmt::Display) -> Error {
        Error::new(step, ErrorKind::Protocol(detail.to_string()))
    }
}

/// Why a peer rejected an association, in the terms probes report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    CallingAeTitle,
    CalledAeTitle,
    /// Temporary congestion or a local limit: try again later.
    Busy,
    Other,
}

impl Rejection {
    pub(crate) fn of(rj: &AssociationRJ) -> (Rejection, String) {
        use dicom_ul::pdu::{
            AssociationRJResult as Result_, AssociationRJServiceProviderPresentationReason as P,
            AssociationRJServiceUserReason as U, AssociationRJSource as S,
        };
        let rejection = match &rj.source {
            S::ServiceUser(U::CallingAETitleNotRecognized) => Rejection::CallingAeTitle,
            S::ServiceUser(U::CalledAETitleNotRecognized) => Rejection::CalledAeTitle,
            S::ServiceProviderPresentation(P::TemporaryCongestion | P::LocalLimitExceeded) => {
                Rejection::Busy
            }
            _ => Rejection::Other,
        };
        let result = match rj.result {
            Result_::Permanent => "permanent",
            Result_::Transient => "transient",
        };
        (rejection, format!("{result}, {}", rj.source))
    }
}

fn abort_source(source: &AbortRQSource) -> String {
    match source {
        AbortRQSource::ServiceUser => "service user".to_string(),
        AbortRQSource::ServiceProvider(reason) => format!("service provider: {reason}"),
        AbortRQSource::Reserved => "reserved source".to_string(),
    }
}
