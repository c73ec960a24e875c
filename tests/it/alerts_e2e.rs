//! Alerts seen arriving: the real exporter, the real Prometheus loading the shipped alert rules
//! (every `for:` shortened to 0s) and the real Alertmanager routing them with the shipped
//! alertmanager.yml and notification template, to a receiver inside this test. Each shipped
//! e-mail receiver becomes a Slack-style receiver rendering the same subject and text templates
//! (Alertmanager posts the rendered text as JSON, which the test can read); each receiver also
//! gets a webhook carrying the alerts' labels, status and annotations.
//!
//! - A PACS nobody listens on fires PacsDown; a DICOM SCP started on its port resolves it.
//! - Two Orthancs, the destination lacking two of the source's studies, fire PacsStudiesMissing
//!   whose rendered notification names both studies by StudyInstanceUID; uploading them to the
//!   destination resolves it.
//!
//! Everything listens on and talks to 127.0.0.1 only; the generated configs are checked to
//! name no other host.

use crate::repo;
use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::binary::Binary;
use testkit::modules::SendCheck;
use testkit::peers::{free_port, require_binary, Orthanc};
use testkit::process::Process;
use testkit::prometheus::{self, wait_ready, Prometheus};
use testkit::studies::{generate, Study};

/// How long each stage may take (a process ready, an alert arriving, an alert resolving).
const WAIT: Duration = Duration::from_secs(60);

/// Polls `check` until it returns `Some`, at most [`WAIT`]; see [`prometheus::wait_for`].
fn wait_for<T>(what: &str, check: impl FnMut(&mut String) -> Option<T>) -> T {
    prometheus::wait_for(what, WAIT, check)
}

/// One POST the receiver got: its path and its JSON body.
#[derive(Clone, Debug)]
struct Notification {
    path: String,
    body: Value,
}

/// An HTTP server on 127.0.0.1 collecting every POST (Alertmanager's webhook and Slack
/// notifications), answering 200.
struct Receiver {
    port: u16,
    received: Arc<Mutex<Vec<Notification>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                thread::spawn(move || serve_connection(stream, &sink));
            }
        });
        Receiver { port, received }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn all(&self) -> Vec<Notification> {
        self.received.lock().expect("receiver lock").clone()
    }
}

/// Reads requests on one (kept-alive) connection until it closes.
fn serve_connection(stream: TcpStream, sink: &Mutex<Vec<Notification>>) {
    let mut writer = match stream.try_clone() {
        Ok(writer) => writer,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        sink.lock()
            .expect("receiver lock")
            .push(Notification { path, body });
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// A webhook notification's alerts named `alertname` with `instance`, and their statuses.
fn webhook_statuses(received: &[Notification], alertname: &str, instance: &str) -> Vec<String> {
    received
        .iter()
        .filter(|n| n.path.starts_with("/webhook/"))
        .flat_map(|n| n.body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == alertname && a["labels"]["instance"] == instance)
        .map(|a| a["status"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The rendered Slack notifications (title, text) whose title starts with `prefix`.
fn rendered(received: &[Notification], prefix: &str) -> Vec<(String, String)> {
    received
        .iter()
        .filter(|n| n.path.starts_with("/slack/"))
        .flat_map(|n| {
            n.body["attachments"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|a| {
            let title = a["title"].as_str()?.to_string();
            let text = a["text"].as_str().unwrap_or("").to_string();
            title.starts_with(prefix).then_some((title, text))
        })
        .collect()
}

fn summary(received: &[Notification]) -> String {
    received
        .iter()
        .map(|n| format!("{} {}", n.path, n.body))
        .collect::<Vec<_>>()
        .join("\n")
}

/// alerts.yml with every `for:` set to 0s, so alerts fire at the first evaluation that sees
/// their condition.
fn rules_without_for() -> String {
    let text = fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).expect("alerts.yml");
    let mut rules: Value = yaml_serde::from_str(&text).expect("alerts.yml is YAML");
    let mut shortened = 0;
    for group in rules["groups"].as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            if rule.get("for").is_some() {
                rule["for"] = json!("0s");
                shortened += 1;
            }
        }
    }
    assert!(shortened > 0, "alerts.yml has no rule with `for`");
    rules.to_string()
}

/// The shipped alertmanager.yml for this test: its routes and inhibitions as shipped with 1 s
/// timings; each e-mail becomes a Slack-style POST to the receiver with the same subject (as
/// the title) and text templates; webhooks go to the receiver; templates by absolute path.
fn alertmanager_config(receiver: &Receiver) -> String {
    let dir = repo().join("deploy/alertmanager");
    let text = fs::read_to_string(dir.join("alertmanager.yml")).expect("alertmanager.yml");
    let mut config: Value = yaml_serde::from_str(&text).expect("alertmanager.yml is YAML");
    config["global"] = json!({"resolve_timeout": "5m"});
    let templates: Vec<Value> = config["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .map(|t| json!(dir.join(t.as_str().expect("a template path"))))
        .collect();
    config["templates"] = json!(templates);

    fn fast(route: &mut Value) {
        for (key, value) in [
            ("group_wait", "1s"),
            ("group_interval", "1s"),
            ("repeat_interval", "1h"),
        ] {
            if route.get(key).is_some() {
                route[key] = json!(value);
            }
        }
        if let Some(routes) = route.get_mut("routes").and_then(Value::as_array_mut) {
            routes.iter_mut().for_each(fast);
        }
    }
    fast(&mut config["route"]);

    for entry in config["receivers"].as_array_mut().expect("receivers") {
        let name = entry["name"].as_str().expect("receiver name").to_string();
        let emails = entry
            .as_object_mut()
            .expect("a receiver")
            .remove("email_configs");
        let slack: Vec<Value> = emails
            .and_then(|e| e.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|email| {
                json!({
                    "api_url": receiver.url(&format!("/slack/{name}")),
                    "send_resolved": true,
                    "title": email["headers"]["Subject"],
                    "text": email["text"],
                })
            })
            .collect();
        assert!(
            !slack.is_empty(),
            "receiver {name} sends no e-mail; the test reads the rendered template from it"
        );
        entry["slack_configs"] = json!(slack);
        entry["webhook_configs"] = json!([{
            "url": receiver.url(&format!("/webhook/{name}")),
            "send_resolved": true,
        }]);
    }
    let text = config.to_string();
    assert!(
        !text.contains(".example"),
        "the rewritten Alertmanager config names a host outside loopback: {text}"
    );
    text
}

/// The Prometheus config: echo probes of `echo_target`, send_check probes of `source`, rules
/// from `rules`, alerts to Alertmanager on `alertmanager_port`.
fn prometheus_config(
    exporter: &str,
    echo_target: &str,
    source: &str,
    rules: &Path,
    alertmanager_port: u16,
) -> String {
    let job = |name: &str, module: &str, target: &str, interval: &str| {
        json!({
            "job_name": name,
            "metrics_path": "/probe",
            "params": {"module": [module]},
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "static_configs": [{"targets": [target]}],
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"source_labels": ["__param_target"], "target_label": "instance"},
                {"target_label": "__address__", "replacement": exporter},
            ],
        })
    };
    json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [rules],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [format!("127.0.0.1:{alertmanager_port}")]}
        ]}]},
        "scrape_configs": [
            job("pacs_echo", "echo", echo_target, "1s"),
            job("pacs_send_check", "send_check", source, "3s"),
        ],
    })
    .to_string()
}

/// The exporter's modules: echo, and send_check of a source against `destination`.
fn modules(destination: &str) -> String {
    let send_check = SendCheck::to(destination)
        .named("send_check")
        .timeout("30s")
        .strategy("auto");
    format!(
        "modules:\n  echo:\n    prober: echo\n    timeout: 5s\n{}",
        send_check.module()
    )
}

/// Today's studies, 40 to 140 minutes old: past the grace period, younger than the 4 hours
/// after which PacsUnsentStudyTooOld would page.
fn studies() -> Vec<Study> {
    let now = chrono::Local::now().naive_local();
    let when: Vec<(String, String)> = [40, 60, 80, 100, 120, 140]
        .iter()
        .map(|m| {
            let t = now - chrono::Duration::minutes(*m);
            (
                t.format("%Y%m%d").to_string(),
                t.format("%H%M%S").to_string(),
            )
        })
        .collect();
    generate(6, 9, &when)
}

fn upload(pacs: &Orthanc, study: &Study) {
    for instance in study.instances() {
        pacs.upload(&instance);
    }
}

#[test]
fn alerts_fire_reach_the_receiver_and_resolve() {
    let alertmanager_binary = require_binary("prometheus-alertmanager", "prometheus-alertmanager");
    let dir = tempfile::tempdir().expect("temporary directory");
    let receiver = Receiver::start();

    // The transfer: the destination lacks two of the source's studies.
    let source = Orthanc::start("SOURCE");
    let destination = Orthanc::start("DEST");
    let studies = studies();
    let (missing, present) = studies.split_at(2);
    for study in &studies {
        upload(&source, study);
    }
    for study in present {
        upload(&destination, study);
    }
    let source_target = format!("SOURCE@127.0.0.1:{}", source.dicom_port);
    let destination_target = format!("DEST@127.0.0.1:{}", destination.dicom_port);

    // A PACS nobody listens on (yet).
    let dead_port = free_port();
    let dead = format!("DEAD@127.0.0.1:{dead_port}");

    let exporter = Binary::start(&modules(&destination_target), &[]);
    let exporter_address = format!("127.0.0.1:{}", exporter.port);

    let alertmanager_yml = dir.path().join("alertmanager.yml");
    fs::write(&alertmanager_yml, alertmanager_config(&receiver)).expect("alertmanager.yml");
    let mut alertmanager = Process::spawn(
        "alertmanager",
        Command::new(alertmanager_binary)
            .arg(format!("--config.file={}", alertmanager_yml.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am-data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--cluster.listen-address="),
        dir.path().join("alertmanager.log"),
    );
    let alertmanager_port = alertmanager.reported_address(WAIT).port();
    wait_ready(&mut alertmanager, alertmanager_port, WAIT);

    let rules = dir.path().join("alerts.yml");
    fs::write(&rules, rules_without_for()).expect("alerts.yml");
    let config = prometheus_config(
        &exporter_address,
        &dead,
        &source_target,
        &rules,
        alertmanager_port,
    );
    let mut prometheus = Prometheus::start(&config, dir.path(), &["--rules.alert.resend-delay=1s"]);
    let mut alive = || {
        alertmanager.assert_running();
        prometheus.process.assert_running();
    };

    // Both alerts fire and arrive, rendered by the shipped template.
    let down_subject = format!("[FIRING 1] PacsDown {dead}");
    let missing_subject = format!("[FIRING 1] PacsStudiesMissing {source_target}");
    let (down, transfer) = wait_for("PacsDown and PacsStudiesMissing to arrive", |last| {
        alive();
        let received = receiver.all();
        *last = summary(&received);
        let down = rendered(&received, &down_subject).pop()?;
        let transfer = rendered(&received, &missing_subject)
            .into_iter()
            .find(|(_, text)| missing.iter().all(|s| text.contains(&s.study_instance_uid)))?;
        let firing = webhook_statuses(&received, "PacsDown", &dead);
        firing
            .iter()
            .any(|s| s == "firing")
            .then_some((down, transfer))
    });
    assert!(
        down.1.contains(r#"stage "connect", reason "refused""#),
        "the PacsDown notification does not say why:\n{}",
        down.1
    );
    for study in present {
        assert!(
            !transfer.1.contains(&study.study_instance_uid),
            "the notification lists {}, which reached the destination:\n{}",
            study.study_instance_uid,
            transfer.1
        );
    }

    // The causes fixed: a DICOM SCP answers on the dead port; the missing studies are sent.
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", dead_port)))
        .expect("bind the dead PACS' port");
    let pacs = pacs_exporter::demo::DemoPacs {
        aet: "DEAD".into(),
        studies: Vec::new(),
    };
    runtime.spawn(pacs_exporter::demo::serve(listener, Arc::new(pacs)));
    for study in missing {
        upload(&destination, study);
    }

    let resolved: BTreeMap<&str, String> = wait_for("both alerts to resolve", |last| {
        alive();
        let received = receiver.all();
        *last = summary(&received);
        let mut resolved = BTreeMap::new();
        for (alertname, instance) in [("PacsDown", &dead), ("PacsStudiesMissing", &source_target)] {
            let statuses = webhook_statuses(&received, alertname, instance);
            if statuses.last().map(String::as_str) != Some("resolved") {
                return None;
            }
            let (_, text) =
                rendered(&received, &format!("[RESOLVED] {alertname} {instance}")).pop()?;
            resolved.insert(alertname, text);
        }
        Some(resolved)
    });
    assert!(
        resolved["PacsDown"].contains("RESOLVED (1)"),
        "{resolved:#?}"
    );
    drop(exporter);
}
