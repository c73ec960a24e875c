//! `--web.config.file`: TLS and basic authentication for every endpoint, in the format of
//! Prometheus' exporter-toolkit, so the same file works for our exporters and theirs.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
//!   client_ca_file: clients.crt
//!   min_version: TLS12                             # TLS12 (default) or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                         # bcrypt hashes, e.g. from htpasswd -nBC 10
//! ```
//!
//! Relative paths are read relative to the web config file. The file is read at start-up; a
//! key it does not know (or a toolkit option this exporter does not implement) is an error, so
//! a setting is never silently ignored. Successful password checks are remembered (keyed by a
//! SHA-256 of user, password and hash) so that bcrypt's deliberate slowness is paid once per
//! credential, not once per scrape.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// bcrypt checks running at once, at most.
const BCRYPT_CHECKS: usize = 2;
/// Remembered successful credentials, at most.
const AUTH_CACHE_SIZE: usize = 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
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

/// The loaded web config; the default is plain HTTP without authentication.
#[derive(Default)]
pub struct WebConfig {
    tls: Option<Arc<rustls::ServerConfig>>,
    auth: Option<Arc<BasicAuth>>,
}

/// Users and their bcrypt hashes.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Password checks running at once.
    checks: tokio::sync::Semaphore,
}

impl WebConfig {
    /// Reads and checks the file; the error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let at = |e: String| format!("{}: {e}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
        let file: WebConfigFile = yaml_serde::from_str(&text).map_err(|e| at(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .map(|tls| tls_config(&tls, base).map(Arc::new))
            .transpose()
            .map_err(at)?;
        for (user, hash) in &file.basic_auth_users {
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| at(format!("basic_auth_users.{user}: not a bcrypt hash: {e}")))?;
        }
        let auth = (!file.basic_auth_users.is_empty()).then(|| {
            Arc::new(BasicAuth {
                users: file.basic_auth_users,
                verified: Mutex::new(HashSet::new()),
                checks: tokio::sync::Semaphore::new(BCRYPT_CHECKS),
            })
        });
        Ok(WebConfig { tls, auth })
    }

    pub fn basic_auth(&self) -> Option<Arc<BasicAuth>> {
        self.auth.clone()
    }

    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.clone()
    }
}

fn tls_config(tls: &TlsServerConfig, base: &Path) -> Result<rustls::ServerConfig, String> {
    let path = |p: &Path| base.join(p);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path(&tls.cert_file))
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("tls_server_config.cert_file: {e}"))?;
    if certs.is_empty() {
        return Err("tls_server_config.cert_file: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_file(path(&tls.key_file))
        .map_err(|e| format!("tls_server_config.key_file: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        Some(TlsVersion::TLS13) => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS12, &rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let auth = tls.client_auth_type.unwrap_or(ClientAuth::NoClientCert);
    let builder = match (auth, &tls.client_ca_file) {
        (ClientAuth::NoClientCert, None) => builder.with_no_client_auth(),
        (ClientAuth::NoClientCert, Some(_)) => {
            return Err("tls_server_config.client_ca_file: set client_auth_type to use it".into())
        }
        (_, None) => return Err("tls_server_config.client_auth_type: needs client_ca_file".into()),
        (auth, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path(ca))
                .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?
            {
                let cert = cert.map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
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
            let verifier = verifier
                .build()
                .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl BasicAuth {
    /// Whether the `Authorization` header value names a user with the right password.
    async fn check(&self, header: Option<&str>) -> bool {
        let Some((user, password)) = header.and_then(decode_basic) else {
            return false;
        };
        // An unknown user costs a bcrypt check too, so that user names cannot be told by
        // how fast they are refused.
        let (known, hash) = match self.users.get(&user) {
            Some(hash) => (true, hash),
            None => match self.users.values().next() {
                Some(any) => (false, any),
                None => return false,
            },
        };
        let key = cache_key(&user, &password, hash);
        if known && self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return true;
        }
        // Checks are deliberately slow; a bound keeps a flood of bad passwords from taking
        // every core.
        let Ok(_permit) = self.checks.acquire().await else {
            return false;
        };
        let hash = hash.clone();
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = known && verified;
        if ok {
            if let Ok(mut cache) = self.verified.lock() {
                if cache.len() >= AUTH_CACHE_SIZE {
                    cache.clear();
                }
                cache.insert(key);
            }
        }
        ok
    }
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, password, hash] {
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part.as_bytes());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

/// Middleware: 401 unless the request carries a valid user and password.
pub async fn require_basic_auth(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth.check(header).await {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Basic realm=\"pacs_exporter\""),
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        ],
        "unauthorized\n",
    )
        .into_response()
}

/// The router with basic authentication in front of every route, if the config asks for it.
pub fn protect(router: axum::Router, web: &WebConfig) -> axum::Router {
    match web.basic_auth() {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(
            auth,
            require_basic_auth,
        )),
        None => router,
    }
}

/// Serves `router` on `listener`, over TLS if the web config says so, until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    web: &WebConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = protect(router, web);
    match web.tls() {
        Some(tls) => {
            axum::serve(TlsListener::new(listener, tls)?, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// A listener that hands axum connections whose TLS handshake has completed. Handshakes run
/// in tasks of their own, so a slow or silent client delays nobody else.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_decoding() {
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:se:cret")
        );
        assert_eq!(
            decode_basic(&header),
            Some(("alice".into(), "se:cret".into()))
        );
        assert_eq!(decode_basic("Bearer x"), None);
        let lower = header.replacen("Basic", "basic", 1);
        assert_eq!(
            decode_basic(&lower),
            Some(("alice".into(), "se:cret".into()))
        );
        assert_eq!(decode_basic("Basic !!!"), None);
    }
}
