//! The values modules are written in, below the probers and the config file that use them:
//! `duration` (durations as Prometheus writes them), `values` (a target, a time zone),
//! `dicom` (the `dicom` block every module has) and `tls` (its `tls` block, and the loading of
//! that block's files into a client config).

mod dicom;
mod duration;
mod tls;
mod values;

pub use self::dicom::{
    DicomOptions, DicomOverrides, DEFAULT_CALLED_AET, DEFAULT_CALLING_AET, DEFAULT_MAX_PDU_LENGTH,
};
pub use self::duration::{InvalidDuration, PromDuration};
pub use self::tls::{TlsError, TlsSettings};
pub use self::values::{TargetSpec, TimeZone};
