//! DICOM over TLS (PS3.15 B.1): the client side, with rustls.
//!
//! [`client_config`] turns a module's `dicom.tls` settings into a rustls client config once,
//! when the config is loaded, so a missing or unreadable file is a config error, not a probe
//! failure. [`Stream`] is what an association talks over: plain TCP or TLS over TCP.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Files and choices for a TLS client; paths as the config gives them.
pub struct ClientFiles<'a> {
    /// CA certificates (PEM) that sign the PACS' certificate; the system has no other roots
    /// here, as hospital PACS certificates come from the hospital's own CA.
    pub ca_file: Option<&'a Path>,
    /// Our certificate and key (PEM), for PACS that require client certificates.
    pub cert_file: Option<&'a Path>,
    pub key_file: Option<&'a Path>,
    /// Accept any server certificate: for testing only; the connection is still encrypted.
    pub insecure_skip_verify: bool,
}

/// Why a module's TLS settings make no client; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Versions(rustls::Error),
    #[error("ca_file: required unless insecure_skip_verify is true")]
    CaFileRequired,
    #[error("ca_file: {0}")]
    CaFile(rustls_pki_types::pem::Error),
    #[error("ca_file: {0}")]
    CaCertificate(rustls::Error),
    #[error("ca_file: no certificate in the file")]
    NoCaCertificate,
    #[error("cert_file: {0}")]
    CertFile(rustls_pki_types::pem::Error),
    #[error("key_file: {0}")]
    KeyFile(rustls_pki_types::pem::Error),
    #[error("cert_file and key_file do not go together: {0}")]
    Mismatch(rustls::Error),
    #[error("cert_file and key_file: give both or neither")]
    HalfPair,
}

/// A name TLS cannot verify a certificate against.
#[derive(Debug, thiserror::Error)]
#[error("invalid TLS server name {name:?}: {source}")]
pub struct InvalidServerName {
    name: String,
    source: rustls_pki_types::InvalidDnsNameError,
}

/// Builds the rustls client config; the error says which file is the problem.
pub fn client_config(files: &ClientFiles<'_>) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Versions)?;
    let builder = if files.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let ca_file = files.ca_file.ok_or(ClientError::CaFileRequired)?;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca_file).map_err(ClientError::CaFile)?;
        for cert in certs {
            let cert = cert.map_err(ClientError::CaFile)?;
            roots.add(cert).map_err(ClientError::CaCertificate)?;
        }
        if roots.is_empty() {
            return Err(ClientError::NoCaCertificate);
        }
        builder.with_root_certificates(roots)
    };
    let config = match (files.cert_file, files.key_file) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(ClientError::CertFile)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(ClientError::KeyFile)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(ClientError::Mismatch)?
        }
        _ => return Err(ClientError::HalfPair),
    };
    Ok(Arc::new(config))
}

/// The server name to verify the PACS' certificate against.
pub fn server_name(name: &str) -> Result<ServerName<'static>, InvalidServerName> {
    ServerName::try_from(name.to_string()).map_err(|source| InvalidServerName {
        name: name.to_string(),
        source,
    })
}

/// The earliest `notAfter` of the certificates the peer presented, in Unix seconds.
pub fn earliest_expiry(certificates: &[CertificateDer<'_>]) -> Option<i64> {
    certificates
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der.as_ref()).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The connection an association runs over.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// After the connection was handed off to be aborted.
    Closed,
}

impl Stream {
    pub fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(tcp) => Some(tcp),
            Stream::Tls(tls) => Some(tls.get_ref().0),
            Stream::Closed => None,
        }
    }
}

fn closed<T>() -> Poll<io::Result<T>> {
    Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => closed(),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => closed(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => closed(),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => closed(),
        }
    }
}
