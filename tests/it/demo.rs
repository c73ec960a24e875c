//! The built-in demo (`pacs_exporter --demo`): what a newcomer sees must be a real transfer
//! check with a known answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pacs_exporter::web::{AppState, ServerOptions};
use testkit::exporter::Exporter;
use testkit::process::Process;

async fn demo_exporter() -> (Exporter, String) {
    let demo = pacs_exporter::demo::start().await.expect("demo PACS start");
    let exporter = Exporter {
        state: Arc::new(AppState::new(demo.config, ServerOptions::default())),
    };
    (exporter, demo.source)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_send_check_finds_three_missing_and_one_incomplete() {
    let (exporter, source) = demo_exporter().await;
    let answer = exporter.probe("send_check", &source, None).await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(answer.metric("pacs_studies_missing"), 3.0);
    assert_eq!(answer.metric("pacs_studies_incomplete"), 1.0);
    assert_eq!(answer.metric("pacs_studies_pending"), 1.0);
    assert_eq!(answer.metric("pacs_studies_checked"), 23.0);
    assert_eq!(answer.series("pacs_study_unsent").len(), 4);
}

/// The demo PACS answer only their own AE titles, as real PACS do: a target with another is
/// refused at the association, and the probe says so.
#[tokio::test(flavor = "multi_thread")]
async fn demo_pacs_refuse_a_wrong_called_ae_title() {
    let (exporter, source) = demo_exporter().await;
    let address = source.split_once('@').map(|(_, a)| a).expect("AET@address");
    let answer = exporter
        .probe("echo", &format!("WRONGAET@{address}"), None)
        .await;
    answer.assert_failed("associate", "rejected_called_aet");
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_echo_and_find() {
    let (exporter, source) = demo_exporter().await;
    let echo = exporter.probe("echo", &source, None).await;
    assert_eq!(echo.metric("probe_success"), 1.0, "{}", echo.body);
    let find = exporter.probe("find", &source, None).await;
    assert_eq!(find.metric("probe_success"), 1.0, "{}", find.body);
    // Every fifth of the 24 demo studies is CT.
    assert_eq!(
        find.metric("probe_dicom_find_matches"),
        5.0,
        "{}",
        find.body
    );
}

/// `pacs_exporter --demo` with `args`, its stdout and stderr in files.
struct DemoBinary {
    process: Process,
    stdout: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl DemoBinary {
    fn start(args: &[&str]) -> DemoBinary {
        let dir = tempfile::tempdir().expect("temp dir");
        let stdout = dir.path().join("stdout");
        let process = Process::spawn_apart(
            "pacs_exporter --demo",
            std::process::Command::new(env!("CARGO_BIN_EXE_pacs_exporter"))
                .arg("--demo")
                .args(args),
            &stdout,
            dir.path().join("stderr"),
        );
        DemoBinary {
            process,
            stdout,
            _dir: dir,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        self.process.log()
    }

    /// Waits until the demo has printed its instructions (Ok) or exited (Err: its exit code).
    fn wait_started(&mut self) -> Result<String, Option<i32>> {
        let stdout = self.stdout.clone();
        let printed = self.process.wait_for(Duration::from_secs(20), |_| {
            let out = std::fs::read_to_string(&stdout).unwrap_or_default();
            out.contains("/metrics'").then_some(out)
        });
        match (printed, self.process.exit_status()) {
            (Ok(out), _) => Ok(out),
            (Err(_), Some(status)) => Err(status.code()),
            (Err(why), None) => panic!(
                "the demo printed no instructions: {why}\n{}\n{}",
                self.stdout(),
                self.stderr()
            ),
        }
    }
}

impl Drop for DemoBinary {
    /// Its stderr is printed by the process guard.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- stdout of pacs_exporter --demo:\n{}", self.stdout());
        }
    }
}

/// The word after `label` on the line that starts with it (after indentation).
fn printed<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{out}"))
}

#[test]
fn demo_refuses_a_taken_http_port_before_printing_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let address = taken.local_addr().expect("address").to_string();
    let mut demo = DemoBinary::start(&["--web.listen-address", &address]);
    assert_eq!(demo.wait_started(), Err(Some(1)));
    assert_eq!(demo.stdout(), "", "printed before knowing the port is free");
    let stderr = demo.stderr();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {address}"))
            && stderr.contains("in use")
            && stderr.contains("--web.listen-address"),
        "{stderr}"
    );
}

#[test]
fn demo_listens_on_loopback_by_default() {
    let mut demo = DemoBinary::start(&[]);
    match demo.wait_started() {
        Ok(out) => {
            assert!(out.contains("http://127.0.0.1:9000/"), "{out}");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !demo.stderr().contains("listening") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let stderr = demo.stderr();
            let listening: Vec<&str> = stderr.lines().filter(|l| l.contains("listening")).collect();
            assert_eq!(listening.len(), 1, "{stderr}");
            assert!(listening[0].contains("address=127.0.0.1:9000"), "{stderr}");
        }
        // Something else has port 9000 here: the demo said so, naming the loopback address.
        Err(code) => {
            assert_eq!(code, Some(1));
            let stderr = demo.stderr();
            assert!(
                stderr.contains("cannot listen on 127.0.0.1:9000"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn demo_uses_stable_pacs_ports_and_reloads_the_config_it_wrote() {
    let mut demo = DemoBinary::start(&["--web.listen-address", "127.0.0.1:0"]);
    let out = demo.wait_started().expect("the demo started");
    let base = printed(&out, "Open ");
    let port: u16 = base
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {base:?}"));
    // The stable ports, or a note saying which one was taken and what was used instead.
    for (label, stable) in [
        ("source:", pacs_exporter::demo::SOURCE_PORT),
        ("destination:", pacs_exporter::demo::DESTINATION_PORT),
    ] {
        let target = printed(&out, label);
        assert!(
            target.ends_with(&format!("@127.0.0.1:{stable}"))
                || out.contains(&format!("note:        port {stable} is not free")),
            "{out}"
        );
    }

    let source = printed(&out, "source:").replace('@', "%40");
    let (status, body) = testkit::binary::http(
        port,
        "GET",
        &format!("/probe?module=send_check&target={source}"),
    )
    .expect("probe");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("pacs_studies_missing 3"), "{body}");

    // The modules file it printed is what reloads read.
    let file = std::path::PathBuf::from(printed(&out, "modules:"));
    let yaml = std::fs::read_to_string(&file).expect("the demo's modules file");
    std::fs::write(
        &file,
        format!("{yaml}  echo_again:\n    prober: echo\n    timeout: 2s\n"),
    )
    .expect("edit the modules file");
    let (status, body) = testkit::binary::http(port, "POST", "/-/reload").expect("reload");
    assert_eq!(status, 200, "{body}");
    let (_, config) = testkit::binary::http(port, "GET", "/config").expect("config");
    assert!(config.contains("echo_again"), "{config}");

    // SIGHUP too.
    std::fs::write(&file, yaml.replace("echo:", "echo_hup:")).expect("edit again");
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &demo.process.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, config) = testkit::binary::http(port, "GET", "/config").expect("config");
        if config.contains("echo_hup") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload:\n{config}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Gone with the process.
    let _ = std::process::Command::new("kill")
        .arg(demo.process.id().to_string())
        .status();
    let _ = demo.process.wait_exit(Duration::from_secs(10));
    assert!(!file.exists(), "{} left behind", file.display());
}
