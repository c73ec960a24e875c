//! The HTTP server under the routes: accepting every connection at once and keeping those
//! [`Admission`] lets in, TLS, HTTP/1.1 (hyper), the header-read and idle timeouts, a reason in
//! every answer hyper gives on its own, when each request arrived ([`Arrival`]), and graceful
//! shutdown. It knows nothing of probes.
//!
//! A connection is in one of four phases, each with its own limit:
//! - *fresh* (accepted, nothing received) and *reading* (part of a request head received):
//!   the whole head must arrive within `--web.header-read-timeout`, counted from the accept or
//!   from the first byte of the request;
//! - *idle* (kept alive between requests): closed after `--web.idle-timeout`;
//! - *busy* (a request is being handled, until its answer is written): no limit here; handlers
//!   keep their own deadlines.
//!
//! A connection that is not busy may also be closed to make room for another client's.
//! On shutdown the listener closes, connections that are not busy are closed at once, and busy
//! ones are closed as soon as their answer is written.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use super::admission::{Admission, Occupant, Phase, Refusal};

/// How the server treats connections; the defaults are the flags' defaults.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Time a client has to send a request's head.
    pub header_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Connections open at once (the private `Admission` says who gives way when they run
    /// short).
    pub max_connections: usize,
    /// Connections one client address may hold; 0 means three quarters of `max_connections`.
    pub max_connections_per_client: usize,
    /// Where refusals and evictions are counted.
    pub metrics: ConnectionMetrics,
}

/// The connection series on `/metrics`; unregistered counters unless the caller registers
/// them.
#[derive(Clone, Debug)]
pub struct ConnectionMetrics {
    /// Connections refused at once with a 503, by reason (`client_limit`, `full`).
    pub refused: prometheus::IntCounterVec,
    /// Connections closed to make room for another.
    pub evicted: prometheus::IntCounter,
}

impl Default for ConnectionMetrics {
    fn default() -> Self {
        let refused = prometheus::IntCounterVec::new(
            crate::metrics::PACS_EXPORTER_HTTP_CONNECTIONS_REFUSED_TOTAL.opts(),
            &["reason"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        for cause in Refusal::CAUSES {
            refused.with_label_values(&[cause]);
        }
        ConnectionMetrics {
            refused,
            evicted: prometheus::IntCounter::with_opts(
                crate::metrics::PACS_EXPORTER_HTTP_CONNECTIONS_EVICTED_TOTAL.opts(),
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
        }
    }
}

/// When a request reached the host, as its client sees it: its first byte, or for a
/// connection's first request that was already waiting when the connection was accepted,
/// when it arrived in the kernel (time in the accept queue included). Handlers count their
/// deadlines from it.
#[derive(Clone, Copy, Debug)]
pub struct Arrival(pub Instant);

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_connections_per_client: 0,
            metrics: ConnectionMetrics::default(),
        }
    }
}

/// The listening sockets for one `--web.listen-address`:
/// - `:PORT`: every interface, IPv4 and IPv6: one dual-stack socket (`[::]:PORT` with
///   `IPV6_V6ONLY` off), or an IPv6-only and an IPv4 socket where the system refuses dual-stack;
///   IPv4 only, with a log line, on a host without IPv6;
/// - `IP:PORT` (`127.0.0.1:9000`, `[::1]:9000`, `0.0.0.0:9000`): that address only;
/// - `name:PORT` (`localhost:9000`): every address the name resolves to.
///
/// Port 0 picks a free port (for `name:0`, each address its own). Call it within a tokio
/// runtime. Errors name the address; one taken by another process has kind `AddrInUse`.
pub fn listen(address: &str) -> io::Result<Vec<TcpListener>> {
    let at = |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {address}: {e}"));
    let std_listeners = if let Some(port) = address.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid listen address {address:?}: expected :PORT or HOST:PORT"),
            )
        })?;
        every_interface(port).map_err(at)?
    } else if let Ok(socket) = address.parse::<SocketAddr>() {
        vec![bind_socket(socket, socket.is_ipv6().then_some(true)).map_err(at)?]
    } else {
        use std::net::ToSocketAddrs;
        let mut resolved: Vec<SocketAddr> = address
            .to_socket_addrs()
            .map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "invalid listen address {address:?}: expected :PORT or HOST:PORT ({e})"
                    ),
                )
            })?
            .collect();
        resolved.sort();
        resolved.dedup();
        resolved
            .into_iter()
            .map(|socket| bind_socket(socket, socket.is_ipv6().then_some(true)))
            .collect::<io::Result<Vec<_>>>()
            .map_err(at)?
    };
    std_listeners
        .into_iter()
        .map(TcpListener::from_std)
        .collect::<io::Result<Vec<_>>>()
        .map_err(at)
}

/// `[::]:port` dual-stack where it can be, else its IPv6 and IPv4 halves, else IPv4 alone.
fn every_interface(port: u16) -> io::Result<Vec<std::net::TcpListener>> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match bind_socket(v6, Some(false)) {
        Ok(dual) => Ok(vec![dual]),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(e),
        Err(dual_error) => match bind_socket(v6, Some(true)) {
            Ok(v6_only) => {
                // Same port for IPv4, also when port 0 picked one.
                let port = v6_only.local_addr()?.port();
                let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
                tracing::debug!(error = %dual_error, "no dual-stack socket; one socket per IP version");
                Ok(vec![v6_only, bind_socket(v4, None)?])
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(e),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "IPv6 is not available on this host; listening on IPv4 only"
                );
                Ok(vec![bind_socket(v4, None)?])
            }
        },
    }
}

/// A listening, non-blocking TCP socket on `address`; `only_v6` sets `IPV6_V6ONLY`.
fn bind_socket(address: SocketAddr, only_v6: Option<bool>) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if let Some(only_v6) = only_v6 {
        socket.set_only_v6(only_v6)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves `router` on `listener` until `shutdown` resolves; see [`serve_all`].
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    options: HttpOptions,
    shutdown: impl Future<Output = Duration> + Send + 'static,
) -> io::Result<()> {
    serve_all(vec![listener], router, tls, options, shutdown).await
}

/// Serves `router` on every one of `listeners` (one bound on connections for all of them)
/// until `shutdown` resolves; then stops accepting, closes the connections that are not
/// handling a request, and waits for the rest at most as long as `shutdown` said (the longest
/// deadline a request in flight may have).
///
/// Every connection is accepted at once; the private `Admission` decides whether it is served,
/// another is closed to make room for it, or it is refused with a 503 and the reason.
pub async fn serve_all(
    listeners: Vec<TcpListener>,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    options: HttpOptions,
    shutdown: impl Future<Output = Duration> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let admission = Admission::new(options.max_connections, options.max_connections_per_client);
    let metrics = options.metrics.clone();
    let refusing = Arc::new(Semaphore::new(
        options.max_connections.max(1) * REFUSALS_PER_CONNECTION,
    ));
    let (stop, stopped) = watch::channel(false);
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    let drain = loop {
        let (stream, peer) = tokio::select! {
            drain = &mut shutdown => break drain,
            accepted = accept_any(&listeners) => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to be released.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let waiting = queued_for(&stream).map(|queued| Instant::now() - queued);
        let activity = Arc::new(Activity::new(waiting));
        let seat = match admission.admit(peer.ip(), activity.clone()) {
            Ok(admitted) => {
                if admitted.evicted {
                    metrics.evicted.inc();
                }
                admitted.seat
            }
            Err(refusal) => {
                metrics.refused.with_label_values(&[refusal.cause()]).inc();
                tracing::debug!(%peer, reason = %refusal, "connection refused");
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    let plain = acceptor.is_none();
                    tokio::spawn(async move {
                        if plain {
                            refuse(stream, &refusal).await;
                        }
                        drop(permit);
                    });
                }
                continue;
            }
        };
        let connection = Connection {
            router: router.clone(),
            options: options.clone(),
            stopped: stopped.clone(),
            peer,
            activity,
        };
        let (acceptor, open) = (acceptor.clone(), open.clone());
        tokio::spawn(async move {
            match acceptor {
                None => connection.serve(stream).await,
                Some(acceptor) => connection.serve_tls(acceptor, stream).await,
            }
            drop((seat, open));
        });
    };
    drop(listeners);
    let _ = stop.send(true);
    drop(open);
    if tokio::time::timeout(drain, all_closed.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            after = drain.as_secs_f64(),
            "requests still in flight at shutdown were cut off"
        );
    }
    Ok(())
}

/// Refused connections being answered at once, per connection kept (each holds a descriptor
/// for at most [`REFUSAL_WAIT`]); beyond these, they are closed unanswered.
const REFUSALS_PER_CONNECTION: usize = 4;
/// How long a refused connection has to send its request head before it is closed
/// unanswered, and then to take the answer.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);
/// The most of a refused connection's request that is read.
const REFUSAL_READ: usize = 16 * 1024;

/// Answers a refused connection 503 with the reason once its request head is in (an answer
/// before the request confuses clients), then closes it. A TLS connection is closed
/// unanswered: a handshake would cost what the refusal saves.
async fn refuse(mut stream: TcpStream, refusal: &Refusal) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let reason = format!("{refusal}\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{reason}",
        reason.len()
    );
    let answered = async {
        let mut head = Vec::with_capacity(1024);
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REFUSAL_READ {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            head.extend_from_slice(&chunk[..n]);
        }
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        // Whatever else the client sent is read and dropped, so that closing does not reset
        // the connection before the answer is read.
        while stream.read(&mut chunk).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_WAIT, answered).await;
}

/// How long the request bytes a just-accepted connection already holds have waited in the
/// kernel (Linux: `TCP_INFO`'s time since the last data arrived), `None` when it holds none
/// yet (or elsewhere). A client that sent its request on connecting, as Prometheus does, sees
/// its time from about there; time in the kernel's accept queue counts.
#[cfg(target_os = "linux")]
fn queued_for(stream: &TcpStream) -> Option<Duration> {
    use std::os::fd::AsRawFd;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut length = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `length` bytes that outlives the call, the
    // descriptor is open for as long as `stream` is borrowed, and the kernel writes at most
    // `length` bytes and reports how many.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut length,
        )
    };
    // Older kernels fill less of the struct; the fields read must be among what was filled.
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + 8;
    if result != 0 || (length as usize) < needed {
        return None;
    }
    // SAFETY: the struct started zeroed and the kernel wrote plain integers into it: every
    // bit pattern of its fields is valid.
    let info = unsafe { info.assume_init() };
    (info.tcpi_bytes_received > 0)
        .then(|| Duration::from_millis(u64::from(info.tcpi_last_data_recv)))
}

#[cfg(not(target_os = "linux"))]
fn queued_for(_stream: &TcpStream) -> Option<Duration> {
    None
}

/// The next connection on any of `listeners`.
async fn accept_any(listeners: &[TcpListener]) -> io::Result<(TcpStream, SocketAddr)> {
    std::future::poll_fn(|cx| {
        for listener in listeners {
            if let Poll::Ready(accepted) = listener.poll_accept(cx) {
                return Poll::Ready(accepted);
            }
        }
        Poll::Pending
    })
    .await
}

struct Connection {
    router: Router,
    options: HttpOptions,
    stopped: watch::Receiver<bool>,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl Connection {
    async fn serve_tls(self, acceptor: tokio_rustls::TlsAcceptor, stream: TcpStream) {
        let mut stopped = self.stopped.clone();
        // The handshake is held to the header-read timeout, and may be closed to make room.
        let tls = tokio::select! {
            tls = acceptor.accept(stream) => tls,
            why = self.activity.expired(&self.options) => {
                tracing::debug!(peer = %self.peer, "TLS handshake not finished: {why}");
                return;
            }
            _ = stopped.wait_for(|s| *s) => return,
        };
        match tls {
            Ok(tls) => self.serve(tls).await,
            Err(e) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
        }
    }

    async fn serve<IO>(mut self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = self.activity.clone();
        let io = Watched {
            inner: io,
            activity: activity.clone(),
            pending: Vec::new(),
        };
        let (router, peer) = (self.router.clone(), self.peer);
        let service_activity = activity.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let router = router.clone();
            let (busy, arrived) = service_activity.begin_request();
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(Arrival(arrived));
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                response.map(|response| {
                    response.map(|body| axum::body::Body::new(Answering { body, _busy: busy }))
                })
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The timeouts are kept here, per phase; hyper's own would also cut idle connections.
        builder.header_read_timeout(None).writev(false);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                why = activity.expired(&self.options) => {
                    tracing::debug!(peer = %self.peer, "closing the connection: {why}");
                    return;
                }
                _ = self.stopped.wait_for(|s| *s), if !stopping => {
                    if !activity.is_busy() {
                        return;
                    }
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

struct ActivityState {
    phase: Phase,
    since: Instant,
    /// Requests being handled.
    busy: usize,
    /// Answers the router owes: response heads written while none is owed are hyper's own.
    answers_owed: usize,
    /// When the request being read reached the host: its first byte, or for a connection's
    /// first request, when its bytes arrived in the kernel if they were there at the accept.
    /// `None` until then.
    arrived: Option<Instant>,
    /// Closed to make room for another connection.
    evicted: bool,
}

/// What a connection is doing, watched by its task and updated by its reads and requests.
struct Activity {
    state: Mutex<ActivityState>,
    /// Wakes the watcher when the connection is evicted.
    evicting: Notify,
}

impl Activity {
    /// A connection accepted now, whose first request reached the host at `waiting` if it
    /// was already there.
    fn new(waiting: Option<Instant>) -> Activity {
        Activity {
            state: Mutex::new(ActivityState {
                phase: Phase::Fresh,
                since: Instant::now(),
                busy: 0,
                answers_owed: 0,
                arrived: waiting,
                evicted: false,
            }),
            evicting: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ActivityState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, phase: Phase) {
        let mut state = self.state();
        state.phase = phase;
        state.since = Instant::now();
    }

    fn is_busy(&self) -> bool {
        self.state().phase == Phase::Busy
    }

    /// Bytes arrived: a request head has begun, unless one is being handled.
    fn received(&self) {
        let phase = {
            let mut state = self.state();
            if state.phase == Phase::Idle || state.arrived.is_none() {
                state.arrived = Some(Instant::now());
            }
            state.phase
        };
        if matches!(phase, Phase::Fresh | Phase::Idle) {
            self.set(Phase::Reading);
        }
    }

    /// A request is being handled until the returned guard is dropped; with when it arrived.
    fn begin_request(self: &Arc<Self>) -> (Busy, Instant) {
        let arrived = {
            let mut state = self.state();
            state.busy += 1;
            state.answers_owed += 1;
            state.arrived.take().unwrap_or_else(Instant::now)
        };
        self.set(Phase::Busy);
        (Busy(self.clone()), arrived)
    }

    /// Whether a response head now written is the router's (else hyper answered on its own).
    fn take_owed_answer(&self) -> bool {
        let mut state = self.state();
        if state.answers_owed > 0 {
            state.answers_owed -= 1;
            true
        } else {
            false
        }
    }

    /// Resolves when the current phase has lasted longer than its limit, or the connection
    /// was evicted, with the reason. Phase changes (several per request) do not wake it: its
    /// timer does, and it then looks at the phase as it is then, so a limit is never applied
    /// early or late; only an eviction wakes it before its time.
    async fn expired(&self, options: &HttpOptions) -> &'static str {
        let recheck_busy = options.header_read_timeout.min(options.idle_timeout);
        loop {
            let evicted = self.evicting.notified();
            tokio::pin!(evicted);
            evicted.as_mut().enable();
            let (phase, since) = {
                let state = self.state();
                if state.evicted {
                    return "closed to make room for another client's connection";
                }
                (state.phase, state.since)
            };
            let (deadline, why) = match phase {
                Phase::Fresh | Phase::Reading => (
                    since + options.header_read_timeout,
                    "no complete request head within --web.header-read-timeout",
                ),
                Phase::Idle => (
                    since + options.idle_timeout,
                    "idle longer than --web.idle-timeout",
                ),
                // No limit while busy; the phase is looked at again after the shorter limit.
                Phase::Busy => (Instant::now() + recheck_busy, ""),
            };
            if phase != Phase::Busy && Instant::now() >= deadline {
                return why;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = evicted => {}
            }
        }
    }
}

impl Occupant for Activity {
    fn phase(&self) -> (Phase, Instant) {
        let state = self.state();
        (state.phase, state.since)
    }

    fn evict(&self) -> bool {
        let mut state = self.state();
        if state.phase == Phase::Busy {
            return false;
        }
        state.evicted = true;
        drop(state);
        self.evicting.notify_waiters();
        true
    }
}

/// A request being handled, until its answer is written; the connection is idle again when
/// the last one is.
struct Busy(Arc<Activity>);

/// A response body that keeps its request [`Busy`] until it has been written.
struct Answering {
    body: axum::body::Body,
    _busy: Busy,
}

impl http_body::Body for Answering {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let idle = {
            let mut state = self.0.state();
            state.busy = state.busy.saturating_sub(1);
            state.busy == 0
        };
        if idle {
            self.0.set(Phase::Idle);
        }
    }
}

/// The connection's stream: reads mark activity, and the answers hyper writes on its own
/// (400, 414, 431 for requests it cannot parse) are given a one-line reason as their body.
struct Watched<IO> {
    inner: IO,
    activity: Arc<Activity>,
    /// A rewritten answer not yet written.
    pending: Vec<u8>,
}

impl<IO: AsyncWrite + Unpin> Watched<IO> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        if result.is_ok() && buf.filled().len() > before {
            self.activity.received();
        }
        Poll::Ready(result)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(status) = response_status(buf) {
            // 1xx heads precede the answer they belong to.
            let hypers_own = status >= 200 && !self.activity.take_owed_answer();
            if hypers_own && status >= 400 {
                // Taken whole; written out by the next write or flush.
                self.pending = with_reason(buf, status);
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The status code of a response head at the start of `bytes`.
fn response_status(bytes: &[u8]) -> Option<u16> {
    let rest = bytes.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// hyper's own answer `head` (no body), rewritten with a plain-text reason.
fn with_reason(head: &[u8], status: u16) -> Vec<u8> {
    let reason = match status {
        400 => "bad request: not a valid HTTP/1.1 request",
        414 => "URI too long: at most 65534 bytes",
        431 => "request header fields too large: at most 100 fields and about 400 KiB",
        _ => "the request was refused by the HTTP layer",
    };
    let status_line = head
        .split(|b| *b == b'\r')
        .next()
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .unwrap_or_default();
    format!(
        "{status_line}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reason}\n",
        reason.len() + 1
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_answers_get_a_reason() {
        let head =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(response_status(head), Some(431));
        let answer = String::from_utf8(with_reason(head, 431)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(body.starts_with("request header fields too large"));
        assert_eq!(body.lines().count(), 1);
        assert_eq!(response_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(response_status(b"hello"), None);
    }
}
