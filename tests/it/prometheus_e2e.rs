//! End to end with the real Prometheus server: a real Orthanc, the real exporter binary, and a
//! Prometheus configured from the shipped `prometheus-example.yml` (its relabeling untouched;
//! only the addresses, intervals and rule file paths rewritten) loading the shipped alert and
//! migration rules. Checks what Prometheus ends up storing: the `instance` label is the target,
//! a live and a dead PACS give the right verdicts, the scrape-timeout header sets the probe's
//! deadline, every rule evaluates, and the alerts that should be pending are, with their reason.
//!
//! Everything listens on and talks to 127.0.0.1 only; the rewritten config is checked to name
//! no other host before Prometheus starts.

use crate::repo;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use pacs_exporter::target::Target;
use serde_json::{json, Value};
use testkit::metrics::{EXPORTER_METRICS, FIND_TLS_AND_PER_STUDY};
use testkit::peers::{free_port, Orthanc};
use testkit::process::Process;
use testkit::prometheus::{self, http_get, wait_ready, Prometheus};

/// Where prometheus-example.yml expects the exporter.
const EXAMPLE_EXPORTER: &str = "pacs-exporter.hospital.example:9000";
/// The exporter's default `--timeout-offset`.
const TIMEOUT_OFFSET: f64 = 0.5;
/// How long to wait for each stage (exporter ready, Prometheus ready, data, rules, alerts).
const WAIT: Duration = Duration::from_secs(30);

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `check` until it returns `Some`, at most [`WAIT`]; see [`prometheus::wait_for`].
fn wait_for<T>(what: &str, check: impl FnMut(&mut String) -> Option<T>) -> T {
    prometheus::wait_for(what, WAIT, check)
}

/// Prometheus' HTTP API, and the processes it depends on (checked before every request, so
/// a process that died fails the test at once, with its log).
struct Api {
    port: u16,
    processes: RefCell<Vec<Process>>,
}

impl Api {
    /// Panics unless every process is still running.
    fn alive(&self) {
        for process in self.processes.borrow_mut().iter_mut() {
            process.assert_running();
        }
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer, or why not.
    fn get(&self, path: &str) -> Result<Value, String> {
        self.alive();
        let (status, body) = http_get(self.port, &format!("/api/v1/{path}"))
            .map_err(|e| format!("GET /api/v1/{path}: {e}"))?;
        let answer: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET /api/v1/{path}: {status}, not JSON ({e}): {body}"))?;
        if status != 200 || answer["status"] != "success" {
            return Err(format!("GET /api/v1/{path}: {status} {body}"));
        }
        Ok(answer["data"].clone())
    }

    /// An instant query: its samples as (labels, value).
    fn query(&self, promql: &str) -> Result<Vec<(Value, f64)>, String> {
        let data = self.get(&format!("query?query={}", percent_encode(promql)))?;
        let samples = data["result"].as_array().cloned().unwrap_or_default();
        Ok(samples
            .into_iter()
            .map(|sample| {
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                (sample["metric"].clone(), value)
            })
            .collect())
    }

    /// Waits until `promql` returns exactly `count` samples; returns them.
    fn wait_samples(&self, promql: &str, count: usize) -> Vec<(Value, f64)> {
        wait_for(
            &format!("{count} samples of `{promql}`"),
            |last| match self.query(promql) {
                Ok(samples) if samples.len() == count => Some(samples),
                Ok(samples) => {
                    *last = format!("{samples:?}");
                    None
                }
                Err(e) => {
                    *last = e;
                    None
                }
            },
        )
    }
}

/// The value of the sample whose `instance` is `instance`.
fn value_of(samples: &[(Value, f64)], instance: &str) -> f64 {
    samples
        .iter()
        .find(|(labels, _)| labels["instance"] == instance)
        .map(|(_, value)| *value)
        .unwrap_or_else(|| panic!("no sample with instance={instance:?} in {samples:?}"))
}

fn seconds(duration: &Value) -> f64 {
    let text = duration.as_str().expect("a duration string");
    let number = |suffix: &str| {
        text.strip_suffix(suffix)
            .and_then(|n| n.parse::<f64>().ok())
    };
    number("ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("s"))
        .or_else(|| number("m").map(|m| m * 60.0))
        .unwrap_or_else(|| panic!("unexpected duration {text:?}"))
}

/// The shipped modules.yml, with the send_check destination pointed at `destination`.
fn modules_config(destination: &str) -> String {
    let path = repo().join("modules.yml");
    let text = fs::read_to_string(&path).expect("read modules.yml");
    let mut config: Value = yaml_serde::from_str(&text).expect("modules.yml is YAML");
    let check = &mut config["modules"]["send_check"]["send_check"];
    assert!(
        check["destination"].is_string(),
        "modules.yml has no send_check module with a destination"
    );
    check["destination"] = json!(destination);
    // JSON is YAML.
    config.to_string()
}

/// What the test needs to know about the Prometheus config it built.
struct PromConfig {
    text: String,
    /// (job, scrape timeout in seconds) of every /probe job with static targets.
    probe_jobs: Vec<(String, f64)>,
    /// The /probe jobs whose targets come from files (routes): `live` to `live` and `live` to
    /// `dead`.
    route_jobs: Vec<String>,
    /// The job scraping the exporter's own /metrics.
    exporter_job: String,
}

/// prometheus-example.yml, rewritten for this machine: the exporter's address, the targets
/// (`live` and `dead` in every probe job with static targets; a file of two routes from `live`,
/// to `live` and to `dead`, written in `dir`, for a job whose targets come from files), 1 s
/// intervals (2 s where the example gives a job its own), and absolute rule file paths plus
/// the migration rules. Relabeling is left as shipped.
fn prometheus_config(exporter: &str, live: &str, dead: &str, dir: &Path) -> PromConfig {
    let path = repo().join("prometheus-example.yml");
    let text = fs::read_to_string(&path).expect("read prometheus-example.yml");
    let mut config: Value = yaml_serde::from_str(&text).expect("prometheus-example.yml is YAML");

    config["global"]["scrape_interval"] = json!("1s");
    config["global"]["scrape_timeout"] = json!("1s");
    config["global"]["evaluation_interval"] = json!("1s");

    let mut rule_files: Vec<Value> = config["rule_files"]
        .as_array()
        .expect("prometheus-example.yml loads rule files")
        .iter()
        .map(|file| {
            let file = repo().join(file.as_str().expect("a rule file path"));
            assert!(
                file.is_file(),
                "the example loads a missing {}",
                file.display()
            );
            json!(file)
        })
        .collect();
    rule_files.push(json!(repo().join("deploy/prometheus/migration-rules.yml")));
    config["rule_files"] = json!(rule_files);

    let replaced = replace_strings(&mut config, EXAMPLE_EXPORTER, exporter);
    assert!(
        replaced >= 3,
        "prometheus-example.yml names the exporter {EXAMPLE_EXPORTER} {replaced} times; \
         expected the relabeling of each probe job and the exporter's own job"
    );

    let global_timeout = seconds(&config["global"]["scrape_timeout"]);
    let mut probe_jobs = Vec::new();
    let mut route_jobs = Vec::new();
    let mut exporter_job = None;
    for job in config["scrape_configs"]
        .as_array_mut()
        .expect("scrape_configs")
    {
        let name = job["job_name"].as_str().expect("job_name").to_string();
        if job.get("scrape_interval").is_some() || job.get("scrape_timeout").is_some() {
            job["scrape_interval"] = json!("2s");
            job["scrape_timeout"] = json!("2s");
        }
        if job["metrics_path"] == "/probe" && job.get("file_sd_configs").is_some() {
            for file_sd in job["file_sd_configs"].as_array().expect("file_sd_configs") {
                for file in file_sd["files"].as_array().expect("files") {
                    check_routes_file(&repo().join(file.as_str().expect("a file path")));
                }
            }
            let routes = dir.join(format!("{name}.yml"));
            let targets = json!([
                { "targets": [live], "labels": { "destination": live } },
                { "targets": [live], "labels": { "destination": dead } },
            ]);
            fs::write(&routes, targets.to_string()).expect("write the routes file");
            job["file_sd_configs"] = json!([{ "files": [routes] }]);
            route_jobs.push(name);
        } else if job["metrics_path"] == "/probe" {
            for static_config in job["static_configs"]
                .as_array_mut()
                .expect("static_configs")
            {
                static_config["targets"] = json!([live, dead]);
            }
            let timeout = job.get("scrape_timeout").map_or(global_timeout, seconds);
            probe_jobs.push((name, timeout));
        } else {
            exporter_job = Some(name);
        }
    }
    let text = config.to_string();
    assert!(
        !text.contains(".example"),
        "the rewritten config still names a host outside loopback: {text}"
    );
    PromConfig {
        text,
        probe_jobs,
        route_jobs,
        exporter_job: exporter_job.expect("a job scraping the exporter's /metrics"),
    }
}

/// The example's targets file: entries of sources, each with the `destination` of its route,
/// all written as the exporter reads them.
fn check_routes_file(path: &Path) {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let entries: Value = yaml_serde::from_str(&text).expect("the routes file is YAML");
    let entries = entries.as_array().expect("a list of target groups");
    assert!(!entries.is_empty(), "{}: no routes", path.display());
    for entry in entries {
        let destination = entry["labels"]["destination"]
            .as_str()
            .expect("a destination");
        assert!(Target::parse(destination).is_ok(), "{destination}");
        for target in entry["targets"].as_array().expect("targets") {
            let target = target.as_str().expect("a target");
            assert!(Target::parse(target).is_ok(), "{target}");
        }
    }
}

/// Replaces every string equal to `from` in `value` by `to`; returns how many.
fn replace_strings(value: &mut Value, from: &str, to: &str) -> usize {
    match value {
        Value::String(s) if s == from => {
            *s = to.to_string();
            1
        }
        Value::Array(items) => items.iter_mut().map(|v| replace_strings(v, from, to)).sum(),
        Value::Object(map) => map.values_mut().map(|v| replace_strings(v, from, to)).sum(),
        _ => 0,
    }
}

#[test]
fn prometheus_scrapes_the_exporter_through_the_shipped_config() {
    let orthanc = Orthanc::start("ORTHANC");
    let live = format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port);
    // Handed out by free_port and never bound: connections are refused.
    let dead = format!("DEAD@127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("temporary directory");

    // The exporter, on the shipped modules.yml; send_check compares Orthanc with itself.
    let modules = dir.path().join("modules.yml");
    fs::write(&modules, modules_config(&live)).expect("write modules.yml");
    let mut exporter = Process::spawn(
        "pacs_exporter",
        Command::new(env!("CARGO_BIN_EXE_pacs_exporter"))
            .arg("--config.file")
            .arg(&modules)
            .args(["--web.listen-address", "127.0.0.1:0"]),
        dir.path().join("exporter.log"),
    );
    let exporter_port = exporter.reported_address(WAIT).port();
    let exporter_address = format!("127.0.0.1:{exporter_port}");
    wait_ready(&mut exporter, exporter_port, WAIT);

    // Prometheus, on the example config.
    let config = prometheus_config(&exporter_address, &live, &dead, dir.path());
    let prometheus = Prometheus::start(&config.text, dir.path(), &[]);
    let api = Api {
        port: prometheus.port,
        processes: RefCell::new(vec![exporter, prometheus.process]),
    };
    assert_eq!(
        config.probe_jobs.len(),
        2,
        "expected pacs_echo and pacs_send_check"
    );
    assert_eq!(config.route_jobs, ["pacs_routes"], "expected pacs_routes");

    // Routes: one source to two destinations, told apart by their `destination` label, each
    // with its own verdict.
    let routes = &config.route_jobs[0];
    let by_destination = |samples: &[(Value, f64)], destination: &str| {
        samples
            .iter()
            .find(|(labels, _)| labels["destination"] == destination)
            .map(|(labels, value)| {
                assert_eq!(labels["instance"], live.as_str(), "{samples:?}");
                *value
            })
            .unwrap_or_else(|| panic!("no sample for destination {destination}: {samples:?}"))
    };
    let success = api.wait_samples(&format!("probe_success{{job=\"{routes}\"}}"), 2);
    assert_eq!(by_destination(&success, &live), 1.0, "{success:?}");
    assert_eq!(by_destination(&success, &dead), 0.0, "{success:?}");
    let failures = api.wait_samples(&format!("probe_failure_info{{job=\"{routes}\"}}"), 1);
    let (labels, _) = &failures[0];
    assert_eq!(labels["destination"], dead.as_str(), "{failures:?}");
    assert_eq!(
        (&labels["peer"], &labels["stage"], &labels["reason"]),
        (&json!("destination"), &json!("connect"), &json!("refused")),
        "{failures:?}"
    );
    let missing = api.wait_samples(&format!("pacs_studies_missing{{job=\"{routes}\"}}"), 1);
    assert_eq!(by_destination(&missing, &live), 0.0, "{missing:?}");

    for (job, scrape_timeout) in &config.probe_jobs {
        // Relabeling: one series per target, `instance` = the target, scraped from the exporter.
        let success = api.wait_samples(&format!("probe_success{{job=\"{job}\"}}"), 2);
        assert_eq!(value_of(&success, &live), 1.0, "{job}: {success:?}");
        assert_eq!(value_of(&success, &dead), 0.0, "{job}: {success:?}");
        let up = api.wait_samples(&format!("up{{job=\"{job}\"}}"), 2);
        assert!(up.iter().all(|(_, v)| *v == 1.0), "{job}: {up:?}");

        let failures = api.wait_samples(&format!("probe_failure_info{{job=\"{job}\"}}"), 1);
        let (labels, value) = &failures[0];
        assert_eq!(labels["instance"], dead.as_str(), "{job}: {failures:?}");
        assert_eq!(
            (&labels["stage"], &labels["reason"], *value),
            (&json!("connect"), &json!("refused"), 1.0),
            "{job}: {failures:?}"
        );

        // Prometheus sent X-Prometheus-Scrape-Timeout-Seconds; the exporter took the offset.
        let timeouts = api.wait_samples(&format!("probe_timeout_seconds{{job=\"{job}\"}}"), 2);
        let expected = scrape_timeout - TIMEOUT_OFFSET;
        for (labels, value) in &timeouts {
            assert!(
                (value - expected).abs() < 1e-9,
                "{job}: probe_timeout_seconds {value} for {}, expected {expected} \
                 (scrape_timeout {scrape_timeout} s minus the offset)",
                labels["instance"]
            );
        }
    }

    let exporter_job = &config.exporter_job;
    let up = api.wait_samples(&format!("up{{job=\"{exporter_job}\"}}"), 1);
    assert_eq!(up[0].1, 1.0, "{up:?}");
    let reload = api.wait_samples("pacs_exporter_config_last_reload_successful", 1);
    assert_eq!(reload[0].1, 1.0, "{reload:?}");

    // The transfer check ran against Orthanc (empty, compared with itself): nothing unsent.
    // The check of the dead PACS could not run: it has no verdict, not a 0.
    let missing = api.wait_samples("pacs_studies_missing{job=\"pacs_send_check\"}", 1);
    assert_eq!(value_of(&missing, &live), 0.0, "{missing:?}");
    assert_eq!(
        missing.len(),
        1,
        "a check that could not run has no verdict: {missing:?}"
    );

    // Every metric the README promises for a successful echo, a send_check and the exporter
    // itself reached Prometheus (through OpenMetrics when Prometheus asks for it).
    let names = wait_for("the exporter's metric names in Prometheus", |last| {
        let names: BTreeSet<String> = api
            .query(r#"count by(__name__) ({__name__=~"probe_.+|pacs_.+"})"#)
            .ok()?
            .into_iter()
            .filter_map(|(labels, _)| labels["__name__"].as_str().map(str::to_string))
            .collect();
        let absent: Vec<&str> = expected_metrics()
            .filter(|name| !names.contains(*name))
            .collect();
        *last = format!("absent: {absent:?}; present: {names:?}");
        absent.is_empty().then_some(names)
    });
    assert!(!names.is_empty());

    // The shipped rules: every one evaluates without error on real series.
    wait_for("every rule to be evaluated", |last| {
        let data = api.get("rules").ok()?;
        let rules: Vec<Value> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        *last = serde_json::to_string_pretty(&rules).unwrap_or_default();
        let evaluated = !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown");
        if evaluated {
            let broken: Vec<&Value> = rules.iter().filter(|r| r["health"] != "ok").collect();
            assert!(
                broken.is_empty(),
                "rules failing on real series: {broken:#?}"
            );
        }
        evaluated.then_some(())
    });

    // The dead PACS: PacsDown and PacsTransferCheckFailed pending (their `for` has not passed),
    // nothing about the live one; the annotation names the failure's stage and reason.
    let expected: BTreeSet<(String, String, String)> = [
        ("PacsDown".to_string(), dead.clone(), String::new()),
        (
            "PacsTransferCheckFailed".to_string(),
            dead.clone(),
            String::new(),
        ),
        (
            "PacsTransferCheckFailed".to_string(),
            live.clone(),
            dead.clone(),
        ),
    ]
    .into();
    let alerts = wait_for("the dead PACS' alerts", |last| {
        let alerts = api.get("alerts").ok()?["alerts"].as_array()?.clone();
        let seen: BTreeSet<(String, String, String)> = alerts
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                    a["labels"]["instance"].as_str().unwrap_or("").to_string(),
                    a["labels"]["destination"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect();
        *last = serde_json::to_string_pretty(&alerts).unwrap_or_default();
        (seen == expected).then_some(alerts)
    });
    for alert in &alerts {
        assert_eq!(alert["state"], "pending", "{alert:#}");
        let description = alert["annotations"]["description"].as_str().unwrap_or("");
        assert!(
            description.contains(r#"stage "connect""#)
                && description.contains(r#"reason "refused""#),
            "the alert does not say why: {alert:#}"
        );
    }

    // The migration rules: the old name for the live check, none for the failed one.
    let old = api.wait_samples("count_not_sended_study{job=\"pacs_send_check\"}", 1);
    assert_eq!(value_of(&old, &live), 0.0, "{old:?}");

    api.alive();
}

/// Metrics that must reach Prometheus in this setup: every probe's, a successful echo's (no
/// find, no TLS), send_check's except the per-study list (nothing is unsent), and the
/// exporter's own.
fn expected_metrics() -> impl Iterator<Item = &'static str> {
    EXPORTER_METRICS
        .iter()
        .copied()
        .filter(|m| !FIND_TLS_AND_PER_STUDY.contains(m))
}
