//! The real binary: --config.check, SIGHUP reloads, and what it logs about patients.

use std::process::Command;
use std::time::Duration;

use testkit::binary::{rewrite, Binary};
use testkit::peers::Orthanc;
use testkit::studies::generate;

const ECHO: &str = "modules:\n  echo:\n    prober: echo\n    timeout: 5s\n";

#[test]
fn config_check_exits_0_or_1_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.yml");
    std::fs::write(&good, ECHO).expect("write");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "modules:\n  echo:\n    prober: echo\n    timeout: 5 s\n",
    )
    .expect("write");
    let check = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_pacs_exporter"))
            .arg("--config.check")
            .arg("--config.file")
            .arg(path)
            .output()
            .expect("run")
    };
    let ok = check(&good);
    assert!(ok.status.success(), "{ok:?}");
    let failed = check(&bad);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("modules.echo.timeout"), "{stderr}");
    // The shipped config is valid.
    let shipped = check(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("modules.yml"));
    assert!(shipped.status.success(), "{shipped:?}");
}

/// The shipped modules.yml shows every key, set or commented out: every key the exporter
/// writes back for it (defaults included, as `/config` shows them), and the optional blocks
/// it leaves out when unset.
#[test]
fn shipped_modules_yml_shows_every_key() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("modules.yml");
    let text = std::fs::read_to_string(&path).expect("read modules.yml");
    let config = pacs_exporter::config::Config::load(&path).expect("the shipped config loads");
    let written = config.to_yaml();
    let mut keys: std::collections::BTreeSet<&str> = written
        .lines()
        .filter_map(|l| l.trim_start().trim_start_matches("- ").split_once(':'))
        .map(|(key, _)| key)
        .filter(|key| !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    // Optional keys, absent from what is written back while unset.
    keys.extend([
        "called_aet",
        "tls",
        "ca_file",
        "cert_file",
        "key_file",
        "server_name",
        "insecure_skip_verify",
        "timezone",
        "destination_dicom",
    ]);
    assert!(keys.len() > 20, "{written}");
    let missing: Vec<&&str> = keys
        .iter()
        .filter(|key| !text.contains(&format!("{key}:")))
        .collect();
    assert!(missing.is_empty(), "modules.yml does not show {missing:?}");
}

/// A send_check module without `timezone` in a UTC process reads every StudyDate/StudyTime as
/// UTC: `--config.check` and start-up warn about it; a module with a zone, or a process with a
/// zone of its own, does not.
#[test]
fn send_check_without_a_time_zone_warns_when_the_process_runs_in_utc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let module = |zone: &str| {
        format!(
            "modules:\n  check:\n    prober: send_check\n    send_check:\n      destination: ARCHIVE@127.0.0.1:11112\n{zone}"
        )
    };
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let unset = write("unset.yml", module(""));
    let set = write("set.yml", module("      timezone: Europe/Moscow\n"));
    let check = |path: &std::path::Path, tz: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_pacs_exporter"))
            .arg("--config.check")
            .arg("--config.file")
            .arg(path)
            .env("TZ", tz)
            .output()
            .expect("run");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let warned = check(&unset, "UTC");
    assert!(
        warned.contains("warning: modules.check.send_check.timezone is not set")
            && warned.contains("TZ"),
        "{warned}"
    );
    assert_eq!(check(&set, "UTC"), "");
    assert_eq!(check(&unset, "Asia/Tokyo"), "");

    // Start-up and each reload log it once, naming every module it concerns.
    let three = "modules:\n".to_string()
        + &["a", "b", "c"]
            .map(|name| {
                format!(
                    "  {name}:\n    prober: send_check\n    send_check:\n      destination: ARCHIVE@127.0.0.1:11112\n"
                )
            })
            .concat();
    let exporter = Binary::start_with_env(&three, &[], &[("TZ", "UTC")]);
    let warnings = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("send_check.timezone is not set"))
            .map(str::to_string)
            .collect()
    };
    let log = exporter.log();
    let started = warnings(&log);
    assert_eq!(started.len(), 1, "{log}");
    assert!(
        started[0].contains("send_check.timezone is not set in 3 modules (a, b, c)"),
        "{log}"
    );
    let status = Command::new("kill")
        .args(["-HUP", &exporter.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(status.success());
    let reloaded = wait_until(|| {
        let log = exporter.log();
        (log.matches("config reloaded").count() == 1).then_some(log)
    });
    assert_eq!(warnings(&reloaded).len(), 2, "{reloaded}");
}

/// `check`'s answer once it has one, polled for up to 10 s.
fn wait_until<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(answer) = check() {
            return answer;
        }
        assert!(std::time::Instant::now() < deadline, "waited 10 s in vain");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_and_a_broken_file_keeps_the_old_config() {
    let exporter = Binary::start(ECHO, &[]);
    let hup = || {
        let status = Command::new("kill")
            .args(["-HUP", &exporter.pid().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
        std::thread::sleep(Duration::from_millis(300));
    };
    rewrite(&exporter.config, "modules:\n  echo2:\n    prober: echo\n");
    hup();
    let (_, config) = exporter.get("/config");
    assert!(config.contains("echo2:"), "{config}");
    let (_, metrics) = exporter.get("/metrics");
    assert!(
        metrics.contains("pacs_exporter_config_last_reload_successful 1"),
        "{metrics}"
    );

    rewrite(&exporter.config, "modules: [broken\n");
    hup();
    let (_, config) = exporter.get("/config");
    assert!(
        config.contains("echo2:"),
        "the old config still serves: {config}"
    );
    let (_, metrics) = exporter.get("/metrics");
    assert!(
        metrics.contains("pacs_exporter_config_last_reload_successful 0"),
        "{metrics}"
    );
    assert!(
        exporter.log().contains("config reload failed"),
        "{}",
        exporter.log()
    );
    let (status, _) = exporter.get("/probe?module=echo2&target=A%40127.0.0.1%3A1");
    assert_eq!(status, 200);
}

/// A send_check run over studies of named patients: with the default module, neither the
/// answer nor the info-level log names a patient; debug output shows only what the module's
/// labels allow.
#[test]
fn patient_data_stays_out_of_labels_and_logs() {
    let source = Orthanc::start_with("SOURCE", serde_json::json!({ "DefaultEncoding": "Utf8" }));
    let destination = Orthanc::start("ARCHIVE");
    let now = chrono::Local::now().naive_local() - chrono::Duration::hours(1);
    let when = [(
        now.format("%Y%m%d").to_string(),
        now.format("%H%M%S").to_string(),
    )];
    let studies = generate(8, 21, &when);
    for study in &studies {
        for instance in study.instances() {
            source.upload(&instance);
        }
    }
    let config = format!(
        "modules:
  check:
    prober: send_check
    send_check:
      destination: ARCHIVE@127.0.0.1:{port}
  check_named:
    prober: send_check
    send_check:
      destination: ARCHIVE@127.0.0.1:{port}
      labels: [patient_name]
",
        port = destination.dicom_port
    );
    let exporter = Binary::start(&config, &["--log.level=debug"]);
    let target = format!("SOURCE%40127.0.0.1%3A{}", source.dicom_port);
    let (status, answer) = exporter.get(&format!("/probe?module=check&target={target}"));
    assert_eq!(status, 200);
    assert!(answer.contains("pacs_studies_missing 8"), "{answer}");
    let (_, debug) = exporter.get(&format!("/probe?module=check&target={target}&debug=true"));
    let (_, named) = exporter.get(&format!(
        "/probe?module=check_named&target={target}&debug=true"
    ));
    let (_, page) = exporter.get("/");
    let (_, logs) = exporter.get(&format!("/logs?module=check&target={target}"));
    // The process log of the module that did not opt in, at debug, its steps included (at
    // info a successful probe writes nothing at all).
    let log: String = exporter
        .log()
        .lines()
        .filter(|l| l.contains(" module=check "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        log.contains("checked 8 studies"),
        "the run is logged at debug: {log}"
    );
    for study in &studies {
        let family = study.patient_name.split('^').next().unwrap_or_default();
        for (what, text) in [
            ("answer", &answer),
            ("process log", &log),
            ("debug", &debug),
            ("page", &page),
            ("logs", &logs),
        ] {
            assert!(
                !text.contains(family),
                "{what} names patient {family}:\n{text}"
            );
            assert!(
                !text.contains(&study.patient_id),
                "{what} carries patient ID {}:\n{text}",
                study.patient_id
            );
            assert!(
                !text.contains(&study.accession_number),
                "{what} carries an accession number:\n{text}"
            );
        }
        // Opted in: the name, and still not the ID.
        assert!(
            named.contains(family),
            "opted-in debug output shows {family}:\n{named}"
        );
        assert!(!named.contains(&study.patient_id));
    }
}

#[test]
fn a_config_without_modules_is_refused_at_start() {
    for text in ["", "modules: {}\n"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("modules.yml");
        std::fs::write(&path, text).expect("write");
        let port = testkit::peers::free_port();
        let output = Command::new(env!("CARGO_BIN_EXE_pacs_exporter"))
            .arg("--config.file")
            .arg(&path)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(1), "{text:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("no module is defined"),
            "{text:?}: {stderr}"
        );
    }
}
