//! HTTP behaviour through the real router: status codes and one-line reasons for every bad
//! request, the exporter's own endpoints, and the formats a probe answers in.

mod support;

use axum::http::StatusCode;
use support::exporter::Exporter;
use support::scripted::{Conn, ScriptedPeer};

const CONFIG: &str = "
modules:
  echo:
    prober: echo
    timeout: 5s
";

#[tokio::test]
async fn bad_probe_requests_get_400_with_a_one_line_reason() {
    let exporter = Exporter::new(CONFIG);
    let long = "A".repeat(1100);
    let cases = [
        ("/probe?module=echo", "parameter \"target\" is missing"),
        ("/probe?target=A%40127.0.0.1", "parameter \"module\" is missing"),
        ("/probe?target=A%40127.0.0.1&target=B%40127.0.0.1&module=echo", "parameter \"target\" is given more than once"),
        ("/probe?target=A%40127.0.0.1&module=nope", "unknown module \"nope\""),
        ("/probe?target=&module=echo", "invalid target \"\": target is empty"),
        ("/probe?target=SEVENTEEN_CHARS_A%40127.0.0.1&module=echo", "invalid target \"SEVENTEEN_CHARS_A@127.0.0.1\": called AE title is 17 characters long; at most 16 are allowed"),
        ("/probe?target=A%5CB%40127.0.0.1&module=echo", "invalid target \"A\\\\B@127.0.0.1\": called AE title contains a backslash"),
        ("/probe?target=%40127.0.0.1&module=echo", "invalid target \"@127.0.0.1\": called AE title is empty"),
        ("/probe?target=%20%20%40127.0.0.1&module=echo", "invalid target \"  @127.0.0.1\": called AE title is all spaces"),
        ("/probe?target=A%40127.0.0.1%3A0&module=echo", "invalid target \"A@127.0.0.1:0\": invalid port \"0\": expected a number from 1 to 65535"),
        ("/probe?target=A%40127.0.0.1%3A70000&module=echo", "invalid target \"A@127.0.0.1:70000\": invalid port \"70000\": expected a number from 1 to 65535"),
        ("/probe?target=A%40127.0.0.1%3Axyz&module=echo", "invalid target \"A@127.0.0.1:xyz\": invalid port \"xyz\": expected a number from 1 to 65535"),
        ("/probe?target=A%40%3A%3A1&module=echo", "invalid target \"A@::1\": IPv6 addresses must be written in brackets, e.g. AET@[::1]:104"),
        (&format!("/probe?target={long}&module=echo")[..], "parameter \"target\" is longer than 1024 bytes"),
        ("/probe?target=A%40127.0.0.1&module=echo&debug=maybe", "parameter \"debug\" must be true or false, not \"maybe\""),
    ];
    for (uri, reason) in cases {
        let answer = exporter.get(uri, &[]).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{uri}: {}",
            answer.body
        );
        assert_eq!(answer.body, format!("{reason}\n"), "{uri}");
        assert!(answer.content_type.starts_with("text/plain"), "{uri}");
    }
    let bad_header = exporter
        .get(
            "/probe?target=A%40127.0.0.1&module=echo",
            &[("X-Prometheus-Scrape-Timeout-Seconds", "soon")],
        )
        .await;
    assert_eq!(bad_header.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_header.body.lines().count(), 1, "{}", bad_header.body);
}

#[tokio::test]
async fn unknown_modules_are_counted() {
    let exporter = Exporter::new(CONFIG);
    exporter
        .get("/probe?target=A%40127.0.0.1&module=nope", &[])
        .await;
    exporter
        .get("/probe?target=A%40127.0.0.1&module=nope", &[])
        .await;
    let metrics = exporter.get("/metrics", &[]).await;
    assert_eq!(metrics.metric("pacs_exporter_module_unknown_total"), 2.0);
}

#[tokio::test]
async fn health_and_readiness() {
    let exporter = Exporter::new(CONFIG);
    for path in ["/-/healthy", "/-/ready"] {
        assert_eq!(
            exporter.get(path, &[]).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exporter_metrics_count_probes_and_never_carry_probe_results() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        conn.echo_response(0).await;
        conn.release().await;
    })
    .await;
    let exporter = Exporter::new(CONFIG);
    let probe = exporter.probe("echo", &peer.target("X"), None).await;
    assert_eq!(probe.metric("probe_success"), 1.0, "{}", probe.body);
    let failed = exporter.probe("echo", "X@127.0.0.1:1", None).await;
    assert_eq!(failed.metric("probe_success"), 0.0, "{}", failed.body);

    let metrics = exporter.get("/metrics", &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert_eq!(
        metrics.metric("pacs_exporter_probe_requests_total{module=\"echo\",result=\"success\"}"),
        1.0
    );
    assert_eq!(
        metrics.metric("pacs_exporter_probe_requests_total{module=\"echo\",result=\"failure\"}"),
        1.0
    );
    assert_eq!(metrics.metric("pacs_exporter_probes_in_flight"), 0.0);
    assert_eq!(
        metrics.metric("pacs_exporter_config_last_reload_successful"),
        1.0
    );
    assert!(metrics.metric("pacs_exporter_config_last_reload_success_timestamp_seconds") > 1.7e9);
    assert!(
        metrics.body.contains("pacs_exporter_build_info{revision="),
        "{}",
        metrics.body
    );
    assert!(
        metrics.value("process_resident_memory_bytes").is_some(),
        "{}",
        metrics.body
    );
    assert!(!metrics.body.contains("probe_success"));
}

#[tokio::test(flavor = "multi_thread")]
async fn probe_answers_in_text_or_openmetrics_as_asked() {
    let exporter = Exporter::new(CONFIG);
    let text = exporter.probe("echo", "X@127.0.0.1:1", None).await;
    assert_eq!(
        text.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(!text.body.contains("# EOF"));

    let om = exporter
        .get(
            "/probe?target=X%40127.0.0.1%3A1&module=echo",
            &[(
                "Accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )],
        )
        .await;
    assert!(
        om.content_type.starts_with("application/openmetrics-text"),
        "{}",
        om.content_type
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert_eq!(om.metric("probe_success"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_shows_log_metrics_and_module() {
    let exporter = Exporter::new(CONFIG);
    let answer = exporter
        .get(
            "/probe?target=X%40127.0.0.1%3A1&module=echo&debug=true",
            &[],
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.content_type.starts_with("text/plain"));
    let log = answer
        .body
        .split("Metrics that would have been returned:")
        .next()
        .unwrap_or("");
    assert!(
        log.contains("stage=connect reason=refused"),
        "{}",
        answer.body
    );
    assert!(answer.body.contains("probe_success 0"), "{}", answer.body);
    assert!(
        answer
            .body
            .contains("Module configuration:\nprober: echo\ntimeout: 5s"),
        "{}",
        answer.body
    );
}
