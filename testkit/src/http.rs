//! The one HTTP client of the tests and benchmarks, on hyper's HTTP/1.1 client: the exporter,
//! Prometheus, Orthanc's REST API, over TCP or any other stream (TLS). Tests that must write
//! bytes no client would (half-sent requests, slow headers) use a bare `TcpStream` instead.
//!
//! [`Connection`] keeps one connection alive across requests, as Prometheus does; the
//! benchmarks time requests on it.
//!
//! [`send`] works from blocking code and from inside a Tokio runtime alike: it runs the
//! exchange on a runtime of its own, on a thread of its own.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a whole exchange may take before it is an error.
/// (Orthanc takes its time to store a large upload.)
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One request to send.
#[derive(Clone, Debug)]
pub struct Request {
    method: Method,
    path: String,
    headers: Vec<(HeaderName, String)>,
    body: Vec<u8>,
}

impl Request {
    pub fn get(path: &str) -> Request {
        Request::new(Method::GET, path)
    }

    pub fn post(path: &str) -> Request {
        Request::new(Method::POST, path)
    }

    /// A request with `method` given as text (`"GET"`, `"POST"`, `"DELETE"`, ...).
    pub fn method(method: &str, path: &str) -> Request {
        let method = Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        Request::new(method, path)
    }

    fn new(method: Method, path: &str) -> Request {
        Request {
            method,
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Request {
        self.headers.push((name, value.into()));
        self
    }

    /// `Authorization: Basic` for `user` and `password`.
    pub fn basic_auth(self, user: &str, password: &str) -> Request {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.header(hyper::header::AUTHORIZATION, format!("Basic {token}"))
    }

    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self.header(CONTENT_TYPE, content_type)
    }

    fn into_hyper(self, host: &str, close: bool) -> io::Result<hyper::Request<Full<Bytes>>> {
        let mut builder = hyper::Request::builder()
            .method(self.method)
            .uri(self.path)
            .header(HOST, host);
        if close {
            builder = builder.header(CONNECTION, "close");
        }
        for (name, value) in self.headers {
            builder = builder.header(name, HeaderValue::from_str(&value).map_err(invalid)?);
        }
        builder
            .body(Full::new(Bytes::from(self.body)))
            .map_err(invalid)
    }
}

/// An answer: status, headers and the whole body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    async fn read(answer: hyper::Response<hyper::body::Incoming>) -> io::Result<Response> {
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let body = answer
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` to 127.0.0.1:`port` on a connection of its own.
pub fn send(port: u16, request: Request) -> io::Result<Response> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(send_async(port, request))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// `GET path` on 127.0.0.1:`port`.
pub fn get(port: u16, path: &str) -> io::Result<Response> {
    send(port, Request::get(path))
}

/// As [`send`], in the caller's runtime.
pub async fn send_async(port: u16, request: Request) -> io::Result<Response> {
    send_from(Ipv4Addr::LOCALHOST, port, request).await
}

/// As [`send_async`], from the loopback address `source` (any of 127.0.0.0/8): one test can
/// then be several clients, as the server tells clients apart by address.
pub async fn send_from(source: Ipv4Addr, port: u16, request: Request) -> io::Result<Response> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = connect_from(source, port).await?;
    exchange(stream, &address.to_string(), request).await
}

/// A TCP connection to 127.0.0.1:`port` from `source`, with Nagle off.
pub async fn connect_from(source: Ipv4Addr, port: u16) -> io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let connect = socket.connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends `request` on `stream` (TCP, TLS, ...) with `Connection: close` and reads the whole
/// answer; `host` is the `Host` header.
pub async fn exchange<S>(stream: S, host: &str, request: Request) -> io::Result<Response>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let exchange = async {
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        let driver = tokio::spawn(connection);
        let outgoing = request.into_hyper(host, true)?;
        let answer = sender
            .send_request(outgoing)
            .await
            .map_err(io::Error::other)?;
        let answer = Response::read(answer).await;
        driver.abort();
        answer
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no whole answer in time"))?
}

/// A kept-alive connection to 127.0.0.1, as Prometheus keeps one to an exporter, that notes
/// when a request's last bytes were written to it: a benchmark can then tell the time the
/// server took from the time the request took to get there.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    written: Arc<Mutex<Instant>>,
}

impl Connection {
    pub async fn open(port: u16) -> io::Result<Connection> {
        Connection::open_from(Ipv4Addr::LOCALHOST, port).await
    }

    /// As [`Connection::open`], from the loopback address `source`.
    pub async fn open_from(source: Ipv4Addr, port: u16) -> io::Result<Connection> {
        let stream = connect_from(source, port).await?;
        let written = Arc::new(Mutex::new(Instant::now()));
        let timed = Timed {
            stream,
            written: written.clone(),
        };
        let (sender, connection) = http1::handshake(TokioIo::new(timed))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(connection);
        Ok(Connection { sender, written })
    }

    /// Sends `request` once the last answer is done; the answer, and how long ago the
    /// request's last byte was written.
    pub async fn send(&mut self, request: Request) -> io::Result<(Response, Duration)> {
        self.sender.ready().await.map_err(io::Error::other)?;
        let outgoing = request.into_hyper("127.0.0.1", false)?;
        let answer = self
            .sender
            .send_request(outgoing)
            .await
            .map_err(io::Error::other)?;
        let answer = Response::read(answer).await?;
        let written = *self.written.lock().unwrap_or_else(PoisonError::into_inner);
        Ok((answer, written.elapsed()))
    }
}

/// A stream that notes when bytes were last written to it.
struct Timed {
    stream: TcpStream,
    written: Arc<Mutex<Instant>>,
}

impl AsyncRead for Timed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = result {
            *this.written.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

fn invalid(error: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, error)
}
