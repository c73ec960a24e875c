//! `--web.config.file`: TLS and basic authentication for every endpoint, in the format of
//! Prometheus' exporter-toolkit, so the same file works for our exporters and theirs. This
//! module reads the file and checks passwords; [`super::tls`] builds the TLS server config.
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
//! a setting is never silently ignored. Password checks are remembered, successful and failed
//! ones apart (keyed by a SHA-256 of user, password and hash), so that bcrypt's deliberate
//! slowness is paid once per credential, not once per scrape; the checks that must run take
//! turns by client address (see `CheckPool`), so wrong passwords cannot starve right ones.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::connections::HttpOptions;
use super::tls::{TlsProblem, TlsServerConfig};

/// bcrypt checks running at once, at most.
const BCRYPT_CHECKS: usize = 2;
/// Remembered successful (and, apart, failed) credentials, at most.
const AUTH_CACHE_SIZE: usize = 1024;
/// Checks one client address may have waiting.
const CHECKS_WAITING_PER_CLIENT: usize = 8;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
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
    /// Credentials that passed a check, and ones that failed one.
    verified: Mutex<HashSet<[u8; 32]>>,
    refused: Mutex<HashSet<[u8; 32]>>,
    /// Password checks running at once, taken in turn by client address.
    checks: CheckPool,
}

/// The bcrypt checks running at once, at most [`BCRYPT_CHECKS`]. Waiting clients are served in
/// turn by address, one check each, so a flood of bad passwords from one address delays a
/// client elsewhere by a few checks at most; one address may have [`CHECKS_WAITING_PER_CLIENT`]
/// checks waiting, more are refused at once (429).
struct CheckPool {
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    running: usize,
    /// Waiting checks, by client address, in the order the addresses take turns.
    waiting: std::collections::VecDeque<(IpAddr, std::collections::VecDeque<oneshot::Sender<()>>)>,
}

/// A running check; the next waiting client's check starts when it is dropped.
struct CheckSlot<'a>(&'a CheckPool);

impl CheckPool {
    fn new() -> CheckPool {
        CheckPool {
            state: Mutex::new(PoolState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a check on behalf of `client`; `None` when that client has too many waiting.
    async fn acquire(&self, client: IpAddr) -> Option<CheckSlot<'_>> {
        let turn = {
            let mut state = self.state();
            if state.running < BCRYPT_CHECKS {
                state.running += 1;
                return Some(CheckSlot(self));
            }
            let (sender, turn) = oneshot::channel();
            match state.waiting.iter_mut().find(|(ip, _)| *ip == client) {
                Some((_, queue)) if queue.len() >= CHECKS_WAITING_PER_CLIENT => return None,
                Some((_, queue)) => queue.push_back(sender),
                None => state
                    .waiting
                    .push_back((client, std::collections::VecDeque::from([sender]))),
            }
            turn
        };
        // The slot comes with the turn; a waiter that goes away passes on one it was given.
        let mut waiting = Waiting {
            pool: self,
            turn: Some(turn),
        };
        let granted = match waiting.turn.as_mut() {
            Some(turn) => turn.await.is_ok(),
            None => false,
        };
        waiting.turn = None;
        granted.then_some(CheckSlot(self))
    }

    /// Hands a finished check's slot to the next client in turn.
    fn release(&self) {
        let mut state = self.state();
        while let Some((client, mut queue)) = state.waiting.pop_front() {
            let next = queue.pop_front();
            if !queue.is_empty() {
                state.waiting.push_back((client, queue));
            }
            if let Some(next) = next {
                if next.send(()).is_ok() {
                    return;
                }
            }
        }
        state.running = state.running.saturating_sub(1);
    }
}

struct Waiting<'a> {
    pool: &'a CheckPool,
    turn: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut turn) = self.turn.take() {
            turn.close();
            if turn.try_recv().is_ok() {
                self.pool.release();
            }
        }
    }
}

impl Drop for CheckSlot<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Why a web config file cannot be used; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: String,
        source: WebConfigProblem,
    },
}

/// What is wrong in a web config's text.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigProblem {
    #[error("{0}")]
    Yaml(#[from] yaml_serde::Error),
    #[error("basic_auth_users.{user}: not a bcrypt hash: {source}")]
    Hash {
        user: String,
        source: bcrypt::BcryptError,
    },
    /// A `tls_server_config` key whose file or value cannot be used, and why.
    #[error(transparent)]
    Tls(#[from] TlsProblem),
}

impl WebConfig {
    /// Reads and checks the file; the error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, base).map_err(|source| WebConfigError::Invalid {
            path: path.display().to_string(),
            source,
        })
    }

    /// Checks the text of a web config file; relative paths in it are read from `base`.
    pub fn parse(text: &str, base: &Path) -> Result<WebConfig, WebConfigProblem> {
        let file: WebConfigFile = yaml_serde::from_str(text)?;
        let tls = file
            .tls_server_config
            .map(|tls| tls.load(base).map(Arc::new))
            .transpose()?;
        for (user, hash) in &file.basic_auth_users {
            hash.parse::<bcrypt::HashParts>()
                .map_err(|source| WebConfigProblem::Hash {
                    user: user.clone(),
                    source,
                })?;
        }
        let auth = (!file.basic_auth_users.is_empty()).then(|| {
            Arc::new(BasicAuth {
                users: file.basic_auth_users,
                verified: Mutex::new(HashSet::new()),
                refused: Mutex::new(HashSet::new()),
                checks: CheckPool::new(),
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

/// What a password check found.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Refused,
    /// The client has too many checks waiting.
    TooMany,
}

impl BasicAuth {
    /// Whether the `Authorization` header value names a user with the right password.
    async fn check(&self, header: Option<&str>, client: IpAddr) -> Verdict {
        let Some((user, password)) = header.and_then(decode_basic) else {
            return Verdict::Refused;
        };
        // An unknown user costs a bcrypt check too, so that user names cannot be told by
        // how fast they are refused.
        let (known, hash) = match self.users.get(&user) {
            Some(hash) => (true, hash),
            None => match self.users.values().next() {
                Some(any) => (false, any),
                None => return Verdict::Refused,
            },
        };
        let key = cache_key(&user, &password, hash);
        if let Some(verdict) = self.remembered(known, &key) {
            return verdict;
        }
        // Checks are deliberately slow; the pool keeps a flood of bad passwords from taking
        // every core, or every turn.
        let Some(_slot) = self.checks.acquire(client).await else {
            return Verdict::TooMany;
        };
        // The same credentials may have been checked while this one waited.
        if let Some(verdict) = self.remembered(known, &key) {
            return verdict;
        }
        let hash = hash.clone();
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = known && verified;
        let cache = if ok { &self.verified } else { &self.refused };
        if let Ok(mut cache) = cache.lock() {
            if cache.len() >= AUTH_CACHE_SIZE {
                cache.clear();
            }
            cache.insert(key);
        }
        if ok {
            Verdict::Allowed
        } else {
            Verdict::Refused
        }
    }

    /// The verdict of an earlier check of the same credentials against the same hash.
    fn remembered(&self, known: bool, key: &[u8; 32]) -> Option<Verdict> {
        if known && self.verified.lock().is_ok_and(|v| v.contains(key)) {
            return Some(Verdict::Allowed);
        }
        if self.refused.lock().is_ok_and(|r| r.contains(key)) {
            return Some(Verdict::Refused);
        }
        None
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
async fn require_basic_auth(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Requests through the server carry the client's address; others count as one client.
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    match auth.check(header, client).await {
        Verdict::Allowed => return next.run(request).await,
        Verdict::Refused => {}
        Verdict::TooMany => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("too many password checks waiting from {client}; try again later\n"),
            )
                .into_response()
        }
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

/// Serves `router` on `listener`, over TLS and behind basic authentication if the web config
/// says so, until `shutdown` resolves; see [`super::serve_all`].
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    web: &WebConfig,
    options: HttpOptions,
    shutdown: impl std::future::Future<Output = Duration> + Send + 'static,
) -> std::io::Result<()> {
    let router = protect(router, web);
    super::connections::serve(listener, router, web.tls(), options, shutdown).await
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
