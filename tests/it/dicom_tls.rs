//! DICOM over TLS against a real TLS peer (DCMTK's storescp `+tls`), with certificates made in
//! the test: good, expired, from another CA, and client certificates.

use testkit::certs::{write, Ca};
use testkit::exporter::Exporter;
use testkit::peers::{Orthanc, StorescpTls};

/// 2031-01-01T00:00:00Z
const EXPIRY_2031: f64 = 1_924_992_000.0;

fn module(dir: &std::path::Path, tls: &str) -> Exporter {
    exporter(
        dir,
        &format!("modules:\n  tls_echo:\n    prober: echo\n    timeout: 5s\n    dicom:\n      tls:\n{tls}"),
    )
}

/// An exporter serving `config`, whose relative file paths are read from `dir`.
fn exporter(dir: &std::path::Path, config: &str) -> Exporter {
    let config =
        pacs_exporter::config::Config::parse_in(config, dir).unwrap_or_else(|e| panic!("{e}"));
    Exporter {
        state: std::sync::Arc::new(pacs_exporter::web::AppState::new(
            config,
            pacs_exporter::web::ServerOptions::default(),
        )),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_over_tls_reports_the_certificate_expiry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Hospital CA");
    write(dir.path(), "ca.crt", &ca.pem());
    let server = ca.server_until(&["localhost", "127.0.0.1"], 2031);
    let scp = StorescpTls::start("TLS_SCP", &server.key, &server.cert, None);
    let exporter = module(dir.path(), "        ca_file: ca.crt\n");
    let answer = exporter
        .probe(
            "tls_echo",
            &format!("TLS_SCP@127.0.0.1:{}", scp.port),
            Some(10.0),
        )
        .await;
    assert_eq!(
        answer.metric("probe_success"),
        1.0,
        "{}\n{}",
        answer.body,
        scp.log()
    );
    assert_eq!(answer.metric("probe_ssl_earliest_cert_expiry"), EXPIRY_2031);
    assert_eq!(answer.metric("probe_dicom_status"), 0.0);

    // By name, verified against the certificate's DNS name.
    let answer = exporter
        .probe(
            "tls_echo",
            &format!("TLS_SCP@localhost:{}", scp.port),
            Some(10.0),
        )
        .await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_certificates_fail_in_the_tls_stage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Hospital CA");
    write(dir.path(), "ca.crt", &ca.pem());
    write(dir.path(), "other.crt", &Ca::new("Other CA").pem());

    let expired = ca.expired_server(&["localhost", "127.0.0.1"]);
    let scp = StorescpTls::start("TLS_SCP", &expired.key, &expired.cert, None);
    let target = format!("TLS_SCP@127.0.0.1:{}", scp.port);
    let answer = module(dir.path(), "        ca_file: ca.crt\n")
        .probe("tls_echo", &target, Some(10.0))
        .await;
    answer.assert_failed("tls", "tls_handshake");
    assert_eq!(answer.metric("probe_ssl_earliest_cert_expiry"), 0.0);

    let good = ca.server(&["localhost", "127.0.0.1"]);
    let scp = StorescpTls::start("TLS_SCP", &good.key, &good.cert, None);
    let target = format!("TLS_SCP@127.0.0.1:{}", scp.port);
    // Signed by a CA we do not trust.
    module(dir.path(), "        ca_file: other.crt\n")
        .probe("tls_echo", &target, Some(10.0))
        .await
        .assert_failed("tls", "tls_handshake");
    // A certificate for another name.
    module(
        dir.path(),
        "        ca_file: ca.crt\n        server_name: pacs9.hospital.example\n",
    )
    .probe("tls_echo", &target, Some(10.0))
    .await
    .assert_failed("tls", "tls_handshake");
    // Unless verification is switched off (for testing).
    let answer = module(dir.path(), "        insecure_skip_verify: true\n")
        .probe("tls_echo", &target, Some(10.0))
        .await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificates_for_peers_that_require_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Hospital CA");
    write(dir.path(), "ca.crt", &ca.pem());
    let client = ca.client("PACS_EXPORTER");
    write(dir.path(), "client.crt", &client.cert);
    write(dir.path(), "client.key", &client.key);
    let server = ca.server(&["127.0.0.1"]);
    let scp = StorescpTls::start("TLS_SCP", &server.key, &server.cert, Some(&ca.pem()));
    let target = format!("TLS_SCP@127.0.0.1:{}", scp.port);

    let without = module(dir.path(), "        ca_file: ca.crt\n")
        .probe("tls_echo", &target, Some(10.0))
        .await;
    without.assert_failed("tls", "tls_handshake");
    let with = module(
        dir.path(),
        "        ca_file: ca.crt\n        cert_file: client.crt\n        key_file: client.key\n",
    )
    .probe("tls_echo", &target, Some(10.0))
    .await;
    assert_eq!(
        with.metric("probe_success"),
        1.0,
        "{}\n{}",
        with.body,
        scp.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_plain_peers_mismatched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Hospital CA");
    write(dir.path(), "ca.crt", &ca.pem());
    let server = ca.server(&["127.0.0.1"]);
    let scp = StorescpTls::start("TLS_SCP", &server.key, &server.cert, None);

    // Plain DICOM to a TLS peer: DCMTK closes the connection without a word.
    let plain = Exporter::new("modules:\n  echo:\n    prober: echo\n    timeout: 5s\n");
    plain
        .probe(
            "echo",
            &format!("TLS_SCP@127.0.0.1:{}", scp.port),
            Some(3.0),
        )
        .await
        .assert_failed("associate", "aborted");

    // TLS to a plain DICOM peer.
    let orthanc = Orthanc::start("ORTHANC");
    module(dir.path(), "        ca_file: ca.crt\n")
        .probe(
            "tls_echo",
            &format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port),
            Some(3.0),
        )
        .await
        .assert_failed("tls", "tls_handshake");
}

#[test]
fn unreadable_tls_files_are_config_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let parse = |tls: &str| {
        let text = format!("modules:\n  m:\n    prober: echo\n    dicom:\n      tls:\n{tls}");
        pacs_exporter::config::Config::parse_in(&text, dir.path())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(parse("        ca_file: missing.crt\n").contains("modules.m.dicom.tls.ca_file"));
    assert!(
        parse("        cert_file: a.crt\n        insecure_skip_verify: true\n")
            .contains("give both or neither")
    );
    assert!(parse("        {}\n").contains("ca_file: required unless insecure_skip_verify"));
    assert!(
        parse("        insecure_skip_verify: true\n        verify: false\n")
            .contains("unknown field `verify`")
    );
}

/// The certificate's expiry is reported even when the PACS then refuses the association, so
/// an expiry alert does not misfire on a PACS that rejects our query.
#[tokio::test(flavor = "multi_thread")]
async fn expiry_is_kept_when_the_association_fails_after_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Ca::new("Hospital CA");
    write(dir.path(), "ca.crt", &ca.pem());
    let server = ca.server_until(&["127.0.0.1"], 2031);
    let scp = StorescpTls::start("TLS_SCP", &server.key, &server.cert, None);
    let text = "modules:\n  tls_find:\n    prober: find\n    timeout: 5s\n    dicom:\n      tls:\n        ca_file: ca.crt\n";
    let exporter = exporter(dir.path(), text);
    // storescp offers storage and verification, not query.
    let answer = exporter
        .probe(
            "tls_find",
            &format!("TLS_SCP@127.0.0.1:{}", scp.port),
            Some(10.0),
        )
        .await;
    assert_eq!(answer.metric("probe_success"), 0.0, "{}", answer.body);
    assert!(
        answer.body.contains("stage=\"associate\""),
        "{}",
        answer.body
    );
    assert_eq!(answer.metric("probe_ssl_earliest_cert_expiry"), EXPIRY_2031);
}
