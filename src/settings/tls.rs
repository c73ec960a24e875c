//! `tls` blocks (`dicom.tls`, `send_check.destination_dicom.tls`): the settings as written, and
//! the rustls client config built from their files when the config is loaded, so a missing or
//! unreadable file is a config error, not a probe failure. The certificates themselves are
//! read by [`crate::dicom::tls`]; this module only resolves the paths and names the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dicom::tls::{self, ClientFiles};
use crate::dicom::TlsOptions;
use crate::target::Host;

/// `dicom.tls`: DICOM over TLS to the PACS.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// CA certificates (PEM) the PACS' certificate must chain to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Our client certificate and key (PEM), for PACS that require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the PACS' certificate must carry; default: the target's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Accept any certificate (still encrypted). For testing only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// The rustls config built from the above when the config is loaded.
    #[serde(skip)]
    pub client: Option<Arc<rustls::ClientConfig>>,
}

/// Why a `tls` block cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The files or choices make no TLS client; the text names the key (`ca_file: ...`).
    #[error(transparent)]
    Client(Box<tls::ClientError>),
    /// `server_name`, or the target's host when it is not set, is not a name TLS can verify.
    #[error(transparent)]
    ServerName(#[from] tls::InvalidServerName),
    #[error("TLS settings were not loaded")]
    NotLoaded,
}

impl TlsError {
    /// The key below `tls` that the message does not name itself.
    pub(crate) fn key(&self) -> &'static str {
        match self {
            TlsError::ServerName(_) => "server_name: ",
            TlsError::Client(_) | TlsError::NotLoaded => "",
        }
    }
}

impl TlsSettings {
    /// Reads the files (relative to `base`) into a rustls client config.
    pub(crate) fn build(&mut self, base: &Path) -> Result<(), TlsError> {
        let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        let (ca, cert, key) = (
            resolve(&self.ca_file),
            resolve(&self.cert_file),
            resolve(&self.key_file),
        );
        self.client = Some(
            tls::client_config(&ClientFiles {
                ca_file: ca.as_deref(),
                cert_file: cert.as_deref(),
                key_file: key.as_deref(),
                insecure_skip_verify: self.insecure_skip_verify,
            })
            .map_err(|e| TlsError::Client(Box::new(e)))?,
        );
        if let Some(name) = &self.server_name {
            tls::server_name(name).map_err(TlsError::ServerName)?;
        }
        Ok(())
    }

    /// What an association to `host` needs.
    pub fn options(&self, host: &Host) -> Result<TlsOptions, TlsError> {
        let config = self.client.clone().ok_or(TlsError::NotLoaded)?;
        let name = match (&self.server_name, host) {
            (Some(name), _) => name.clone(),
            (None, Host::Ip(ip)) => ip.to_string(),
            (None, Host::Name(name)) => name.clone(),
        };
        Ok(TlsOptions {
            config,
            server_name: tls::server_name(&name).map_err(TlsError::ServerName)?,
        })
    }
}
