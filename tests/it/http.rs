//! HTTP behaviour through the real router: status codes and one-line reasons for every bad
//! request, the exporter's own endpoints, and the formats a probe answers in.

use axum::http::StatusCode;
use testkit::exporter::Exporter;
use testkit::process::Process;
use testkit::scripted::{Conn, ScriptedPeer};

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
    assert_build_info(&metrics.body);
    assert!(
        metrics.value("process_resident_memory_bytes").is_some(),
        "{}",
        metrics.body
    );
    assert!(!metrics.body.contains("probe_success"));
}

/// `process_cpu_seconds_total` counts hundredths of a second, as the kernel does and every
/// Prometheus client reports it, so that a CPU graph of a light exporter does not read 0. The
/// exporter runs in this process: its value lies between this process' CPU time read just
/// before and just after the scrape (whole seconds would fall below it).
#[tokio::test(flavor = "multi_thread")]
async fn process_cpu_seconds_are_the_kernels_to_the_tick() {
    let exporter = Exporter::new(CONFIG);
    let ticks: f64 = String::from_utf8(
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf")
            .stdout,
    )
    .expect("UTF-8")
    .trim()
    .parse()
    .expect("CLK_TCK is a number");
    let cpu = || {
        let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<f64> = after_name
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        (fields[11] + fields[12]) / ticks
    };
    let before = cpu();
    let seconds = exporter
        .get("/metrics", &[])
        .await
        .metric("process_cpu_seconds_total");
    let after = cpu();
    assert!(
        before <= seconds && seconds <= after,
        "process_cpu_seconds_total {seconds} is not within {before}..={after}"
    );
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

/// The real binary with `args` (its listening addresses among them).
struct Listening {
    process: Process,
    _dir: tempfile::TempDir,
}

impl Listening {
    fn start(args: &[&str]) -> Listening {
        Listening::with_config(CONFIG, args)
    }

    fn with_config(modules: &str, args: &[&str]) -> Listening {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("modules.yml");
        std::fs::write(&config, modules).expect("write config");
        let process = Process::spawn(
            "pacs_exporter",
            std::process::Command::new(env!("CARGO_BIN_EXE_pacs_exporter"))
                .arg("--config.file")
                .arg(&config)
                .args(args),
            dir.path().join("log"),
        );
        Listening { process, _dir: dir }
    }

    fn log(&self) -> String {
        self.process.log()
    }

    /// The addresses of the `count` "listening" log lines, once they are all written.
    fn addresses(&mut self, count: usize) -> Vec<std::net::SocketAddr> {
        let listening = self
            .process
            .wait_for(std::time::Duration::from_secs(10), |process| {
                let addresses = process.reported_addresses();
                (addresses.len() >= count).then_some(addresses)
            });
        listening.unwrap_or_else(|why| panic!("no {count} listening lines: {why}\n{}", self.log()))
    }
}

/// `GET /-/healthy` at `address`: the status line.
fn healthy(address: std::net::SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(5))
            .map_err(|e| format!("connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET /-/healthy HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("read from {address}: {e}"))?;
    Ok(answer.lines().next().unwrap_or_default().to_string())
}

/// Loopback IPv6 is there on the machines the tests run on; say so clearly if not.
fn require_ipv6_loopback() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        panic!(
            "cannot bind [::1]: {e}. These tests need IPv6 on loopback: check `ip -6 addr show lo` \
             and sysctl net.ipv6.conf.lo.disable_ipv6=0"
        );
    }
}

#[test]
fn port_only_listen_address_answers_on_ipv4_and_ipv6() {
    require_ipv6_loopback();
    let mut exporter = Listening::start(&["--web.listen-address", ":0"]);
    let addresses = exporter.addresses(1);
    let port = addresses[0].port();
    assert!(
        addresses.iter().all(|a| a.ip().is_unspecified()),
        "{addresses:?}\n{}",
        exporter.log()
    );
    for ip in ["127.0.0.1", "::1"] {
        let address = std::net::SocketAddr::new(ip.parse().expect("an IP"), port);
        let status = healthy(address).unwrap_or_else(|e| panic!("{e}\n{}", exporter.log()));
        assert!(status.contains(" 200 "), "{address}: {status}");
    }
}

#[test]
fn listen_address_may_be_repeated() {
    require_ipv6_loopback();
    let mut exporter = Listening::start(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.listen-address=[::1]:0",
    ]);
    let addresses = exporter.addresses(2);
    assert_eq!(addresses.len(), 2, "{}", exporter.log());
    assert!(addresses[0].ip().is_ipv4() && addresses[1].ip().is_ipv6());
    for address in addresses {
        let status = healthy(address).unwrap_or_else(|e| panic!("{e}\n{}", exporter.log()));
        assert!(status.contains(" 200 "), "{address}: {status}");
    }
}

/// `pacs_exporter_build_info` names the checked-out commit, its branch, the crate's version,
/// the compiler and the platform (build.rs takes them from git when built in a checkout).
fn assert_build_info(body: &str) {
    use crate::git;
    let line = body
        .lines()
        .find(|l| l.starts_with("pacs_exporter_build_info{"))
        .unwrap_or_else(|| panic!("no pacs_exporter_build_info in\n{body}"));
    let labels: std::collections::BTreeMap<&str, &str> = line
        .trim_start_matches("pacs_exporter_build_info{")
        .trim_end_matches("} 1")
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name, value.trim_matches('"')))
        .collect();
    assert!(line.ends_with("} 1"), "{line}");
    assert_eq!(
        labels.keys().copied().collect::<Vec<_>>(),
        ["branch", "platform", "revision", "rustversion", "version"],
        "{line}"
    );
    let head = git(&["rev-parse", "HEAD"]).expect("tests run in a git checkout");
    assert_eq!(labels["revision"], head, "{line}");
    let branch = git(&["symbolic-ref", "-q", "--short", "HEAD"]);
    assert_eq!(
        labels["branch"],
        branch.as_deref().unwrap_or("unknown"),
        "{line}"
    );
    assert_eq!(labels["version"], env!("CARGO_PKG_VERSION"), "{line}");
    assert!(
        labels["platform"].starts_with(&format!("{}/", std::env::consts::OS)),
        "{line}"
    );
    let rust = labels["rustversion"];
    assert!(
        rust.split('.').count() >= 3 && rust.starts_with(|c: char| c.is_ascii_digit()),
        "{line}"
    );
}

/// Serves a demo PACS called `aet` with `studies` sample studies on a free port; its address.
async fn demo_pacs(aet: &str, studies: usize) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let now = chrono::Local::now().naive_local();
    let pacs = pacs_exporter::demo::DemoPacs {
        aet: aet.into(),
        studies: pacs_exporter::demo::sample_studies(studies, now),
    };
    tokio::spawn(pacs_exporter::demo::serve(
        listener,
        std::sync::Arc::new(pacs),
    ));
    address
}

/// At info, the process log has nothing of a probe that succeeded (send_check's steps
/// included) and exactly one line for each probe that failed.
#[tokio::test(flavor = "multi_thread")]
async fn at_info_a_probe_logs_one_line_if_it_failed_and_none_if_it_succeeded() {
    let (source, destination) = (demo_pacs("SRC", 6).await, demo_pacs("DST", 3).await);
    let modules = format!(
        "
modules:
  echo:
    prober: echo
    timeout: 5s
  transfer:
    prober: send_check
    timeout: 10s
    send_check: {{ destination: DST@{destination}, lookback: 24h, grace: 10m, timezone: UTC }}
  transfer_nowhere:
    prober: send_check
    timeout: 10s
    send_check: {{ destination: DST@127.0.0.1:1, lookback: 24h, grace: 10m, timezone: UTC }}
"
    );
    let mut exporter = Listening::with_config(
        &modules,
        &["--web.listen-address", "127.0.0.1:0", "--log.level=info"],
    );
    let port = exporter.addresses(1)[0].port();
    let source = format!("SRC%40{source}");
    tokio::task::spawn_blocking(move || {
        for (module, target, success) in [
            ("echo", source.as_str(), "probe_success 1"),
            ("transfer", &source, "probe_success 1"),
            ("echo", "DEAD%40127.0.0.1%3A1", "probe_success 0"),
            ("transfer_nowhere", &source, "probe_success 0"),
        ] {
            let path = format!("/probe?module={module}&target={target}");
            let answer = testkit::http::get(port, &path).expect("an answer");
            let text = answer.text();
            assert!(text.contains(success), "{path}: {text}");
        }
    })
    .await
    .expect("probes");
    let log = exporter.log();
    let probe_lines: Vec<&str> = log.lines().filter(|l| l.contains(" module=")).collect();
    let of = |module: &str, target: &str| -> Vec<&str> {
        probe_lines
            .iter()
            .filter(|l| l.contains(&format!(" module={module} ")) && l.contains(target))
            .copied()
            .collect()
    };
    assert_eq!(of("echo", "SRC@"), Vec::<&str>::new(), "{log}");
    assert_eq!(of("transfer", "SRC@"), Vec::<&str>::new(), "{log}");
    let dead = of("echo", "DEAD@");
    assert_eq!(dead.len(), 1, "{log}");
    assert!(dead[0].contains("stage=connect reason=refused"), "{log}");
    let nowhere = of("transfer_nowhere", "SRC@");
    assert_eq!(nowhere.len(), 1, "{log}");
    assert!(
        nowhere[0].contains("reason=refused peer=destination"),
        "{log}"
    );
    assert_eq!(probe_lines.len(), 2, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn process_log_keys_and_probe_levels_are_prometheus_like() {
    let live = format!("LIVE%40{}", demo_pacs("LIVE", 0).await);

    for format in ["logfmt", "json"] {
        let mut exporter = Listening::start(&[
            "--web.listen-address",
            "127.0.0.1:0",
            "--log.level=info",
            &format!("--log.format={format}"),
        ]);
        let port = exporter.addresses(1)[0].port();
        let live = live.clone();
        tokio::task::spawn_blocking(move || {
            for target in [live.as_str(), "DEAD%40127.0.0.1%3A1"] {
                let path = format!("/probe?module=echo&target={target}");
                let answer = testkit::http::get(port, &path).expect("an answer");
                assert_eq!(answer.status, 200, "{path}");
            }
        })
        .await
        .expect("probes");
        let log = exporter.log();
        let lines: Vec<&str> = log.lines().collect();
        // A success is logged at debug (not shown at info), a failure at info with its reason.
        assert!(!log.contains("probe succeeded"), "{log}");
        let failed: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains("probe failed"))
            .collect();
        assert_eq!(failed.len(), 1, "{log}");
        match format {
            "json" => {
                for line in &lines {
                    let entry: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    for key in ["time", "level", "msg"] {
                        assert!(entry[key].is_string(), "no {key}: {line}");
                    }
                }
                let entry: serde_json::Value = serde_json::from_str(failed[0]).expect("JSON");
                assert_eq!(entry["level"], "info", "{log}");
                assert_eq!(entry["target"], "DEAD@127.0.0.1:1", "{log}");
                let msg = entry["msg"].as_str().unwrap_or_default();
                assert!(msg.contains("stage=connect reason=refused"), "{log}");
            }
            _ => {
                for line in &lines {
                    assert!(line.starts_with("time=20"), "{line}");
                    assert!(line.contains(" level=") && line.contains(" msg="), "{line}");
                }
                assert!(failed[0].contains(" level=info "), "{log}");
                assert!(failed[0].contains("stage=connect reason=refused"), "{log}");
                assert!(failed[0].contains(" target=DEAD@127.0.0.1:1"), "{log}");
            }
        }
    }
}
