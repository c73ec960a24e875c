//! The one HTTP client of the tests and benchmarks, on hyper's HTTP/1.1 client: the exporter,
//! Prometheus, Orthanc's REST API, over TCP or any other stream (TLS). Tests that must write
//! bytes no client would (half-sent requests, slow headers) use a bare `TcpStream` instead.
//!
//! [`send`] works from blocking code and from inside a Tokio runtime alike: it runs the
//! exchange on a runtime of its own, on a thread of its own.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
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
}

/// An answer: status, headers and the whole body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
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
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    exchange(stream, &address.to_string(), request).await
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
        let mut builder = hyper::Request::builder()
            .method(request.method)
            .uri(request.path)
            .header(HOST, host)
            .header(CONNECTION, "close");
        for (name, value) in request.headers {
            builder = builder.header(name, HeaderValue::from_str(&value).map_err(invalid)?);
        }
        let outgoing = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(invalid)?;
        let answer = sender
            .send_request(outgoing)
            .await
            .map_err(io::Error::other)?;
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let body = answer
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(Response {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no whole answer in time"))?
}

fn invalid(error: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, error)
}
