//! `--web.config.file`: real TLS (certificates made in the test) and real bcrypt hashes in
//! front of every endpoint, served by the same code path as the binary.

use std::net::SocketAddr;
use std::sync::Arc;

use pacs_exporter::config::Config;
use pacs_exporter::web::HttpOptions;
use pacs_exporter::web::{router, serve, AppState, ServerOptions, WebConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use testkit::certs::{write, Ca, Issued};
use testkit::http::{exchange, Request};
use tokio::net::TcpStream;

const MODULES: &str = "modules:\n  echo:\n    prober: echo\n";

/// Serves the exporter with `web_config` (YAML) on a free loopback port.
async fn start(dir: &std::path::Path, web_config: &str) -> SocketAddr {
    let path = write(dir, "web.yml", web_config);
    let web = WebConfig::load(&path).unwrap_or_else(|e| panic!("web config: {e}"));
    let state = Arc::new(AppState::new(
        Config::parse(MODULES).expect("modules"),
        ServerOptions::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        serve(
            listener,
            router(state),
            &web,
            HttpOptions::default(),
            std::future::pending(),
        )
        .await
    });
    address
}

/// One GET; returns the status code and body (status 0 when no HTTP answer came).
async fn request<S>(stream: S, path: &str, auth: Option<(&str, &str)>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut request = Request::get(path);
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, password);
    }
    match exchange(stream, "localhost", request).await {
        Ok(answer) => (answer.status, answer.text()),
        Err(_) => (0, String::new()),
    }
}

fn client_config(ca: &Ca, client: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("CA PEM"))
        .expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    Arc::new(match client {
        None => builder.with_no_client_auth(),
        Some(issued) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(issued.cert.as_bytes()).expect("cert")],
                PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).expect("key"),
            )
            .expect("client auth"),
    })
}

async fn https(
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    auth: Option<(&str, &str)>,
) -> (u16, String) {
    let tcp = TcpStream::connect(address).await.expect("connect");
    let connector = tokio_rustls::TlsConnector::from(config);
    match connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
    {
        Ok(tls) => request(tls, path, auth).await,
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_basic_auth_guard_every_endpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Test CA");
    let server = ca.server(&["localhost", "127.0.0.1"]);
    write(dir.path(), "server.crt", &server.cert);
    write(dir.path(), "server.key", &server.key);
    // Real bcrypt hashes (cost 4 keeps the test quick; the format is the same at any cost).
    let alice = bcrypt::hash("correct horse", 4).expect("bcrypt");
    let bob = bcrypt::hash("battery staple", 4).expect("bcrypt");
    let address = start(
        dir.path(),
        &format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  alice: {alice}\n  bob: '{bob}'\n"
        ),
    )
    .await;
    let config = client_config(&ca, None);

    for path in [
        "/metrics",
        "/",
        "/config",
        "/-/healthy",
        "/probe?module=echo&target=A%40127.0.0.1%3A1",
    ] {
        assert_eq!(
            https(address, config.clone(), path, None).await.0,
            401,
            "{path} without credentials"
        );
        assert_eq!(
            https(address, config.clone(), path, Some(("alice", "wrong")))
                .await
                .0,
            401,
            "{path} with a wrong password"
        );
        assert_eq!(
            https(
                address,
                config.clone(),
                path,
                Some(("mallory", "correct horse"))
            )
            .await
            .0,
            401,
            "{path} with an unknown user"
        );
        let (status, _) = https(
            address,
            config.clone(),
            path,
            Some(("alice", "correct horse")),
        )
        .await;
        assert_eq!(status, 200, "{path} with the right credentials");
    }
    let (status, body) = https(
        address,
        config.clone(),
        "/metrics",
        Some(("bob", "battery staple")),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("pacs_exporter_build_info"));

    // Plain HTTP to the TLS listener gets no HTTP answer.
    let plain = TcpStream::connect(address).await.expect("connect");
    assert_eq!(
        request(plain, "/metrics", Some(("alice", "correct horse")))
            .await
            .0,
        0
    );
    // A client that does not trust the server's CA does not get through either.
    let stranger = client_config(&Ca::new("Other CA"), None);
    assert_eq!(
        https(
            address,
            stranger,
            "/metrics",
            Some(("alice", "correct horse"))
        )
        .await
        .0,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_when_required() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Test CA");
    let server = ca.server(&["localhost"]);
    write(dir.path(), "server.crt", &server.cert);
    write(dir.path(), "server.key", &server.key);
    write(dir.path(), "clients.crt", &ca.pem());
    let address = start(
        dir.path(),
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n",
    )
    .await;
    assert_eq!(
        https(address, client_config(&ca, None), "/metrics", None)
            .await
            .0,
        0
    );
    let client = ca.client("prometheus");
    assert_eq!(
        https(address, client_config(&ca, Some(&client)), "/metrics", None)
            .await
            .0,
        200
    );
    let foreign = Ca::new("Other CA").client("mallory");
    assert_eq!(
        https(
            address,
            client_config(&ca, Some(&foreign)),
            "/metrics",
            None
        )
        .await
        .0,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_without_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    let address = start(
        dir.path(),
        &format!("basic_auth_users:\n  prometheus: {hash}\n"),
    )
    .await;
    let get = |auth| async move {
        request(
            TcpStream::connect(address).await.expect("connect"),
            "/metrics",
            auth,
        )
        .await
        .0
    };
    assert_eq!(get(None).await, 401);
    assert_eq!(get(Some(("prometheus", "nope"))).await, 401);
    assert_eq!(get(Some(("prometheus", "pw"))).await, 200);
}

#[test]
fn broken_web_configs_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "unknown.yml",
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: []\n",
            "unknown field `cipher_suites`",
        ),
        (
            "missing.yml",
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
            "cert_file",
        ),
        (
            "hash.yml",
            "basic_auth_users:\n  alice: plaintext\n",
            "basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            "auth_type.yml",
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n",
            "unknown variant `Sometimes`",
        ),
    ];
    for (name, text, want) in cases {
        let path = write(dir.path(), name, text);
        let err = WebConfig::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{name} should be refused"))
            .to_string();
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            err.contains(name),
            "{name}: the error names the file: {err}"
        );
    }
}

/// The binary refuses to start on a broken web config and says why once, on one line.
#[test]
fn the_binary_says_once_why_a_web_config_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let web = write(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: []\n",
    );
    let modules = write(
        dir.path(),
        "modules.yml",
        "modules:\n  echo:\n    prober: echo\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_pacs_exporter"))
        .arg("--config.file")
        .arg(&modules)
        .arg("--web.config.file")
        .arg(&web)
        .args(["--web.listen-address", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("level=error"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert_eq!(
        errors[0].matches("unknown field `cipher_suites`").count(),
        1,
        "{stderr}"
    );
}

/// Wrong passwords cannot starve a right one: with a flood of wrong ones in flight from one
/// address, a first correct login from another address is answered within 2 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_correct_login_is_answered_during_a_wrong_password_flood() {
    let dir = tempfile::tempdir().expect("temp dir");
    let hash = bcrypt::hash("right", 8).expect("bcrypt");
    let address = start(
        dir.path(),
        &format!("basic_auth_users:\n  prometheus: {hash}\n"),
    )
    .await;
    let flood: Vec<_> = (0..300)
        .map(|i| {
            tokio::spawn(async move {
                let stream = TcpStream::connect(address).await.expect("connect");
                request(
                    stream,
                    "/metrics",
                    Some(("prometheus", &format!("wrong{i}"))),
                )
                .await
                .0
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // The correct login comes from another loopback address.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind 127.0.0.2");
    let stream = socket.connect(address).await.expect("connect");
    let login = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        request(stream, "/metrics", Some(("prometheus", "right"))),
    )
    .await;
    let (status, body) = login.expect("the correct login was answered within 2 s");
    assert_eq!(status, 200, "{body}");

    for answer in flood {
        let status = answer.await.expect("flood task");
        assert!(status == 401 || status == 429, "{status}");
    }
}
