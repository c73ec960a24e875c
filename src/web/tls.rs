//! The web config's `tls_server_config`: the server's certificate and key, the oldest TLS
//! version accepted, and whether (and against which CAs) clients' certificates are checked.
//! Paths are read relative to the web config file; every problem names the key at fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WantsServerCert;
use rustls::{ConfigBuilder, ServerConfig, WantsVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// A `tls_server_config` key whose file or value cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("tls_server_config{}: {why}", key.map(|k| format!(".{k}")).unwrap_or_default())]
pub struct TlsProblem {
    key: Option<&'static str>,
    why: String,
}

impl TlsProblem {
    fn at(key: &'static str, why: impl std::fmt::Display) -> TlsProblem {
        TlsProblem {
            key: Some(key),
            why: why.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_auth_type: Option<ClientAuth>,
    #[serde(default)]
    min_version: Option<TlsVersion>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
enum ClientAuth {
    NoClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
enum TlsVersion {
    TLS12,
    TLS13,
}

type Provider = Arc<rustls::crypto::CryptoProvider>;

impl TlsServerConfig {
    /// The server's TLS config, from the files this section names (relative to `base`).
    pub(super) fn load(&self, base: &Path) -> Result<ServerConfig, TlsProblem> {
        let path = |p: &Path| base.join(p);
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(path(&self.cert_file))
                .and_then(|certs| certs.collect())
                .map_err(|e| TlsProblem::at("cert_file", e))?;
        if certs.is_empty() {
            return Err(TlsProblem::at("cert_file", "no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(path(&self.key_file))
            .map_err(|e| TlsProblem::at("key_file", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            Some(TlsVersion::TLS13) => &[&rustls::version::TLS13],
            _ => &[&rustls::version::TLS12, &rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| TlsProblem {
                key: None,
                why: e.to_string(),
            })?;
        let builder = self.client_verification(builder, provider, base)?;
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| TlsProblem {
                key: None,
                why: format!("certificate and key do not go together: {e}"),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Whether clients must (or may) show a certificate, and the CAs it is checked against.
    fn client_verification(
        &self,
        builder: ConfigBuilder<ServerConfig, WantsVerifier>,
        provider: Provider,
        base: &Path,
    ) -> Result<ConfigBuilder<ServerConfig, WantsServerCert>, TlsProblem> {
        let auth = self.client_auth_type.unwrap_or(ClientAuth::NoClientCert);
        let ca_problem = |e: &dyn std::fmt::Display| TlsProblem::at("client_ca_file", e);
        match (auth, &self.client_ca_file) {
            (ClientAuth::NoClientCert, None) => Ok(builder.with_no_client_auth()),
            (ClientAuth::NoClientCert, Some(_)) => Err(TlsProblem::at(
                "client_ca_file",
                "set client_auth_type to use it",
            )),
            (_, None) => Err(TlsProblem::at("client_auth_type", "needs client_ca_file")),
            (auth, Some(ca)) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in
                    CertificateDer::pem_file_iter(base.join(ca)).map_err(|e| ca_problem(&e))?
                {
                    let cert = cert.map_err(|e| ca_problem(&e))?;
                    roots.add(cert).map_err(|e| ca_problem(&e))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                let verifier = if auth == ClientAuth::VerifyClientCertIfGiven {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().map_err(|e| ca_problem(&e))?;
                Ok(builder.with_client_cert_verifier(verifier))
            }
        }
    }
}
