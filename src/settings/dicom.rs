//! The `dicom` block: how the exporter presents itself to a PACS (AE titles, PDU size, TLS),
//! and the per-peer overrides a prober that talks to a second peer applies to it.
//!
//! Every module has this block whatever its prober, so it lives with the config, not with a
//! prober; it is checked with the module (`max_pdu_length`) and its TLS files are read then.

use serde::{Deserialize, Serialize};

use super::tls::TlsSettings;
use crate::target::AeTitle;

/// The calling AE title of a module that names none.
pub const DEFAULT_CALLING_AET: &str = "PACS_EXPORTER";
/// The called AE title for targets without `AET@`, unless the module names one.
pub const DEFAULT_CALLED_AET: &str = "ANY-SCP";
/// The largest PDU we tell peers we accept, unless the module says otherwise.
pub const DEFAULT_MAX_PDU_LENGTH: u32 = 16_384;

/// How the exporter presents itself to a PACS.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DicomOptions {
    /// Our AE title; many PACS only accept calling AE titles they know.
    #[serde(default = "default_calling_aet")]
    pub calling_aet: AeTitle,
    /// The called AE title for targets written without `AET@`.
    #[serde(default = "default_called_aet")]
    pub called_aet: AeTitle,
    /// The largest PDU we accept from the peer (bytes, 4096–1048576).
    #[serde(default = "default_max_pdu_length")]
    pub max_pdu_length: u32,
    /// DICOM over TLS, when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

impl Default for DicomOptions {
    fn default() -> Self {
        DicomOptions {
            calling_aet: default_calling_aet(),
            called_aet: default_called_aet(),
            max_pdu_length: DEFAULT_MAX_PDU_LENGTH,
            tls: None,
        }
    }
}

fn default_calling_aet() -> AeTitle {
    AeTitle::new(DEFAULT_CALLING_AET).unwrap_or_else(|_| unreachable!("constant is a valid title"))
}

fn default_called_aet() -> AeTitle {
    AeTitle::new(DEFAULT_CALLED_AET).unwrap_or_else(|_| unreachable!("constant is a valid title"))
}

fn default_max_pdu_length() -> u32 {
    DEFAULT_MAX_PDU_LENGTH
}

/// Per-peer overrides of [`DicomOptions`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DicomOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calling_aet: Option<AeTitle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pdu_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
}

impl DicomOverrides {
    pub(crate) fn is_empty(&self) -> bool {
        self.calling_aet.is_none() && self.max_pdu_length.is_none() && self.tls.is_none()
    }

    /// The module's options with these overrides applied.
    pub fn apply(&self, base: &DicomOptions) -> DicomOptions {
        DicomOptions {
            calling_aet: self
                .calling_aet
                .clone()
                .unwrap_or_else(|| base.calling_aet.clone()),
            called_aet: base.called_aet.clone(),
            max_pdu_length: self.max_pdu_length.unwrap_or(base.max_pdu_length),
            // The module's TLS settings name the source's certificate, not the destination's.
            tls: self.tls.clone().or_else(|| {
                base.tls.clone().map(|tls| TlsSettings {
                    server_name: None,
                    ..tls
                })
            }),
        }
    }
}
