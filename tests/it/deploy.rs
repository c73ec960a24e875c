//! Checks of the files under `deploy/` and of `prometheus-example.yml` with the tools that will
//! read them in production: `promtool` (Prometheus rules, their unit tests, the scrape config),
//! `amtool` (Alertmanager config and template) and `systemd-analyze` (the unit). The Grafana
//! dashboard and the rules must only query metrics the exporter really exposes (the README's
//! metric tables), and every file may only name hosts under `.example` or on loopback.
//!
//! A missing tool fails the test with the Debian package to install; nothing is skipped.

use crate::repo;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use testkit::metrics::EXPORTER_METRICS;
use testkit::peers::require_binary;

/// Series Prometheus itself adds to every scrape.
const PROMETHEUS_METRICS: &[&str] = &[
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The alert names alerts.yml must define, each with firing and not-firing unit tests.
const ALERTS: &[&str] = &[
    "PacsDown",
    "PacsCertificateExpiringSoon",
    "PacsTransferCheckFailed",
    "PacsStudiesMissing",
    "PacsStudiesIncomplete",
    "PacsStudiesMismatched",
    "PacsUnsentStudyTooOld",
    "PacsExporterDown",
    "PacsProbeScrapeFailing",
    "PacsExporterConfigReloadFailed",
];

fn deploy(path: &str) -> PathBuf {
    repo().join("deploy").join(path)
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Reads a YAML file into a JSON value (YAML's data model as far as these files use it).
fn read_yaml(path: &Path) -> Value {
    yaml_serde::from_str(&read(path))
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// Runs `tool args…` in the repository root and panics with its output unless it succeeds.
fn run_ok(tool: &Path, args: &[&str]) -> Output {
    let output = Command::new(tool)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    assert!(
        output.status.success(),
        "`{} {}` failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        tool.display(),
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}

fn promtool() -> PathBuf {
    require_binary("promtool", "prometheus")
}

fn amtool() -> PathBuf {
    require_binary("amtool", "prometheus-alertmanager")
}

/// `text` (Go template text) rendered by `amtool` with `pacs.tmpl` over the alerts in `data`
/// (a path, as the README's command writes it).
fn render_template(data: &Path, text: &str) -> String {
    let output = run_ok(
        &amtool(),
        &[
            "template",
            "render",
            "--template.glob=deploy/alertmanager/pacs.tmpl",
            &format!("--template.data={}", data.display()),
            &format!("--template.text={text}"),
        ],
    );
    String::from_utf8(output.stdout).expect("UTF-8 rendering")
}

fn array<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what} is not a list: {value}"))
}

fn string<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

/// Every rule of a Prometheus rule file.
fn rules(path: &Path) -> Vec<Value> {
    let file = read_yaml(path);
    array(&file["groups"], "groups")
        .iter()
        .flat_map(|group| array(&group["rules"], "rules").clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PromQL: which metric names does an expression select?
// ---------------------------------------------------------------------------------------------

/// PromQL words that are never metric names: operators, modifiers, aggregations, functions.
const PROMQL_WORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "atan2",
];

/// The metric names an expression selects. A tokenizer rather than a parser: string literals,
/// label matchers (`{…}`), range and subquery brackets (`[…]`), numbers, durations and Grafana
/// variables (`$x`, `${x}`) are skipped; a word followed by `(` is a function, and the label
/// lists of `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` are skipped.
/// `promtool check rules` (see the tests) makes sure the expressions are valid PromQL.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let is_word_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    // Index just past the string literal opening at `start`.
    let skip_string = |start: usize| {
        let quote = chars[start];
        let mut j = start + 1;
        while j < chars.len() && chars[j] != quote {
            j += if chars[j] == '\\' { 2 } else { 1 };
        }
        j + 1
    };
    // Index just past the bracket closing the one opening at `start`.
    let skip_group = |start: usize, close: char| {
        let mut j = start + 1;
        while j < chars.len() && chars[j] != close {
            j = match chars[j] {
                '"' | '\'' | '`' => skip_string(j),
                _ => j + 1,
            };
        }
        j + 1
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(i),
            '{' => i = skip_group(i, '}'),
            '[' => i = skip_group(i, ']'),
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_group(i, '}');
                }
                while i < chars.len() && is_word(chars[i]) {
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < chars.len() && (is_word(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if is_word_start(c) => {
                let start = i;
                while i < chars.len() && is_word(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let call = chars.get(next) == Some(&'(');
                let grouping = matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
                if grouping && call {
                    i = skip_group(next, ')');
                } else if !call && !PROMQL_WORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_finds_selectors_only() {
    let names = metric_names(
        r#"(probe_success{job="x",instance=~"$pacs"} == 0) and on(job, instance) group_left(stage)
           max by (job) (rate(pacs_find_matches[$__rate_interval] offset 5m)) * 1e3
           - time() < 14 * 86400 or sum without(peer) (pacs_peer_up{a="}"}) # up"#,
    );
    let expected = ["pacs_find_matches", "pacs_peer_up", "probe_success"];
    assert_eq!(names, expected.iter().map(|s| s.to_string()).collect());
}

/// Panics naming every metric in `exprs` (what, expression) that is not in `known`.
fn assert_known_metrics<'a>(
    exprs: impl IntoIterator<Item = (String, &'a str)>,
    known: &BTreeSet<&str>,
) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (what, expr) in exprs {
        for name in metric_names(expr) {
            // A histogram is known by its _count (EXPORTER_METRICS); _bucket and _sum with it.
            let count = ["_bucket", "_sum"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .map(|base| format!("{base}_count"));
            let family = count.as_deref().unwrap_or(&name);
            if !known.contains(family) && !name.starts_with("process_") {
                unknown.push(format!("{what}: {name} in `{expr}`"));
            }
            used.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics the exporter does not expose:\n{}",
        unknown.join("\n")
    );
    used
}

#[test]
fn metric_list_matches_the_readme() {
    let readme = read(&repo().join("README.md"));
    let absent: Vec<&&str> = EXPORTER_METRICS
        .iter()
        .filter(|name| !readme.contains(&format!("`{name}")))
        .collect();
    assert!(
        absent.is_empty(),
        "metrics in this test's list but not in README.md's tables: {absent:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Prometheus rules
// ---------------------------------------------------------------------------------------------

#[test]
fn rule_files_pass_promtool_check() {
    let output = run_ok(
        &promtool(),
        &[
            "check",
            "rules",
            "deploy/prometheus/alerts.yml",
            "deploy/prometheus/migration-rules.yml",
            "deploy/prometheus/legacy-alerts.yml",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{stdout}"
    );
}

#[test]
fn rule_unit_tests_pass() {
    run_ok(
        &promtool(),
        &[
            "test",
            "rules",
            "deploy/prometheus/alerts_test.yml",
            "deploy/prometheus/migration-rules_test.yml",
            "deploy/prometheus/legacy-alerts_test.yml",
        ],
    );
}

#[test]
fn every_alert_is_defined_labelled_and_annotated() {
    let rules = rules(&deploy("prometheus/alerts.yml"));
    let names: Vec<&str> = rules
        .iter()
        .map(|rule| string(&rule["alert"], "alert"))
        .collect();
    assert_eq!(
        names, ALERTS,
        "alerts.yml defines other alerts than expected"
    );
    for rule in &rules {
        let name = &rule["alert"];
        let severity = string(&rule["labels"]["severity"], "labels.severity");
        assert!(
            ["critical", "warning"].contains(&severity),
            "{name}: severity {severity:?} is neither critical nor warning"
        );
        for key in ["summary", "description"] {
            let text = string(&rule["annotations"][key], key);
            assert!(
                text.contains("$labels.instance"),
                "{name}: the {key} does not say which PACS or exporter"
            );
        }
    }
}

#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let tests = read_yaml(&deploy("prometheus/alerts_test.yml"));
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for test in array(&tests["tests"], "tests") {
        for case in array(&test["alert_rule_test"], "alert_rule_test") {
            let name = string(&case["alertname"], "alertname").to_string();
            let expected = &case["exp_alerts"];
            if expected.as_array().is_some_and(|alerts| !alerts.is_empty()) {
                firing.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    for alert in ALERTS {
        assert!(firing.contains(*alert), "no test where {alert} fires");
        assert!(
            silent.contains(*alert),
            "no test where {alert} does not fire"
        );
    }
}

#[test]
fn rules_use_only_exposed_metrics() {
    let known: BTreeSet<&str> = EXPORTER_METRICS
        .iter()
        .chain(PROMETHEUS_METRICS)
        .copied()
        .collect();
    let exprs: Vec<(String, String)> = ["prometheus/alerts.yml", "prometheus/migration-rules.yml"]
        .iter()
        .flat_map(|file| {
            rules(&deploy(file)).into_iter().map(move |rule| {
                let name = rule["alert"].as_str().or(rule["record"].as_str());
                (
                    format!("{file}: {}", name.unwrap_or("?")),
                    string(&rule["expr"], "expr").to_string(),
                )
            })
        })
        .collect();
    assert_known_metrics(exprs.iter().map(|(w, e)| (w.clone(), e.as_str())), &known);
}

#[test]
fn migration_rules_recreate_the_old_names() {
    let records: Vec<String> = rules(&deploy("prometheus/migration-rules.yml"))
        .iter()
        .map(|rule| string(&rule["record"], "record").to_string())
        .collect();
    assert_eq!(
        records,
        [
            "count_not_sended_study",
            "stydy_send_error",
            "pacs_server_up"
        ]
    );
    let tests = read(&deploy("prometheus/migration-rules_test.yml"));
    for record in &records {
        assert!(
            tests.contains(&format!("expr: {record}")),
            "migration-rules_test.yml does not test {record}"
        );
    }
}

#[test]
fn prometheus_example_config_passes_promtool_check() {
    // In place: its rule_files entry (deploy/prometheus/alerts.yml) is relative to the file.
    let output = run_ok(&promtool(), &["check", "config", "prometheus-example.yml"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("deploy/prometheus/alerts.yml") && stdout.contains("SUCCESS"),
        "promtool did not check the rule file the example loads:\n{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// Alertmanager
// ---------------------------------------------------------------------------------------------

#[test]
fn alertmanager_config_passes_amtool_check() {
    let output = run_ok(
        &amtool(),
        &["check-config", "deploy/alertmanager/alertmanager.yml"],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 templates"),
        "amtool did not load pacs.tmpl:\n{stdout}"
    );
}

#[test]
fn alertmanager_routes_every_severity_and_inhibits_only_real_alerts() {
    let config = read_yaml(&deploy("alertmanager/alertmanager.yml"));
    let route = &config["route"];
    let group_by: Vec<&str> = array(&route["group_by"], "group_by")
        .iter()
        .map(|label| string(label, "group_by"))
        .collect();
    assert_eq!(group_by, ["alertname", "instance", "destination"]);
    let matchers: Vec<&str> = array(&route["routes"], "routes")
        .iter()
        .flat_map(|r| array(&r["matchers"], "matchers").iter())
        .map(|m| string(m, "matcher"))
        .collect();
    for rule in rules(&deploy("prometheus/alerts.yml")) {
        let severity = string(&rule["labels"]["severity"], "severity");
        assert!(
            matchers.contains(&format!("severity=\"{severity}\"").as_str()),
            "no route for severity {severity} (alert {})",
            rule["alert"]
        );
    }
    for inhibit in array(&config["inhibit_rules"], "inhibit_rules") {
        for side in ["source_matchers", "target_matchers"] {
            for matcher in array(&inhibit[side], side) {
                let matcher = string(matcher, side);
                let names = matcher
                    .trim_start_matches("alertname")
                    .trim_start_matches(['=', '~'])
                    .trim_matches('"');
                for name in names.split('|') {
                    assert!(
                        ALERTS.contains(&name),
                        "inhibit rule names an alert alerts.yml does not define: {matcher}"
                    );
                }
            }
        }
    }
}

#[test]
fn alertmanager_template_renders_a_notification() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let alert = |status: &str, summary: &str, ends: &str| {
        json!({
            "status": status,
            "labels": {
                "alertname": "PacsDown", "severity": "critical", "job": "pacs_echo",
                "instance": "ARCHIVE@pacs2.hospital.example:104"
            },
            "annotations": {
                "summary": summary,
                "description": "ARCHIVE@pacs2.hospital.example:104 has failed its pacs_echo probe \
                                for more than 3 minutes (stage \"connect\", reason \"refused\")."
            },
            "startsAt": "2024-03-01T02:13:00Z",
            "endsAt": ends,
            "generatorURL": "http://prometheus.hospital.example:9090/graph",
            "fingerprint": "0123456789abcdef"
        })
    };
    let data = json!({
        "receiver": "pacs-oncall",
        "status": "firing",
        "alerts": [
            alert("firing", "PACS ARCHIVE@pacs2.hospital.example:104 does not answer DICOM", "0001-01-01T00:00:00Z"),
            alert("resolved", "an earlier outage", "2024-03-01T01:53:00Z"),
        ],
        "groupLabels": {"alertname": "PacsDown", "instance": "ARCHIVE@pacs2.hospital.example:104"},
        "commonLabels": {
            "alertname": "PacsDown", "severity": "critical", "job": "pacs_echo",
            "instance": "ARCHIVE@pacs2.hospital.example:104"
        },
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.hospital.example:9093"
    });
    let data_path = dir.path().join("data.json");
    fs::write(&data_path, data.to_string()).expect("write template data");
    let render = |template: &str| {
        render_template(&data_path, &format!("{{{{ template \"{template}\" . }}}}"))
    };

    let subject = render("pacs.subject");
    assert_eq!(
        subject.trim(),
        "[FIRING 1] PacsDown ARCHIVE@pacs2.hospital.example:104"
    );
    let text = render("pacs.text");
    for expected in [
        "FIRING (1):",
        "PACS ARCHIVE@pacs2.hospital.example:104 does not answer DICOM",
        "(stage \"connect\", reason \"refused\")",
        "severity: critical",
        "since: 2024-03-01 02:13:00 UTC",
        "RESOLVED (1):",
        "resolved: 2024-03-01 01:53:00 UTC",
        "http://alertmanager.hospital.example:9093/#/silences/new",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    assert!(
        text.find("FIRING (1):") < text.find("RESOLVED (1):"),
        "firing alerts come first:\n{text}"
    );
}

/// The command `pacs.tmpl` and the README give renders the shipped example page, and it names
/// the studies to resend and why the check cannot run.
#[test]
fn alertmanager_template_renders_the_shipped_example_page() {
    let render = |data: &str| {
        render_template(
            &Path::new("deploy/alertmanager").join(data),
            "{{ template \"pacs.subject\" . }}\n{{ template \"pacs.text\" . }}",
        )
    };
    let text = render("example-alerts.json");
    for expected in [
        "[FIRING 1] PacsUnsentStudyTooOld CT1@ct1.hospital.example:104",
        "severity: critical",
        "1.2.826.0.1.3680043.2.1125.3 (missing), 1.2.826.0.1.3680043.2.1125.9 (incomplete)",
        "The check cannot run now (on the destination side)",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    // A route's alert names its destination, in the subject and in the body.
    let text = render("example-alerts-route.json");
    for expected in [
        "[FIRING 1] PacsStudiesMismatched CT1@ct1.hospital.example:104 → ARCHIVE@pacs2.hospital.example:104",
        "PACS (target): CT1@ct1.hospital.example:104   destination: ARCHIVE@pacs2.hospital.example:104",
        "Mismatched (StudyInstanceUID): 1.2.826.0.1.3680043.2.1125.5.",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    let readme = read(&repo().join("README.md"));
    let template = read(&deploy("alertmanager/pacs.tmpl"));
    for (name, text) in [("README.md", readme), ("pacs.tmpl", template)] {
        assert!(
            text.contains("--template.data=deploy/alertmanager/example-alerts.json"),
            "{name} shows how to render the example alerts"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Grafana
// ---------------------------------------------------------------------------------------------

fn dashboard() -> Value {
    let path = deploy("grafana/pacs_exporter.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()))
}

/// Every PromQL expression of the dashboard: panel targets and `label_values(expr, label)`
/// variable queries (their first argument), with where they come from.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for panel in array(&dashboard["panels"], "panels") {
        if panel["type"] == "row" {
            continue;
        }
        let title = string(&panel["title"], "panel title");
        let targets = array(&panel["targets"], "targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            exprs.push((
                format!("panel {title:?}"),
                string(&target["expr"], "expr").to_string(),
            ));
        }
    }
    for variable in array(&dashboard["templating"]["list"], "templating.list") {
        if variable["type"] != "query" {
            continue;
        }
        let query = string(&variable["query"]["query"], "variable query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|args| args.rsplit_once(','))
            .map(|(expr, _label)| expr.trim())
            .unwrap_or_else(|| panic!("variable query {query:?} is not label_values(expr, label)"));
        exprs.push((format!("variable {}", variable["name"]), inner.to_string()));
    }
    exprs
}

/// Replaces Grafana's variables by what Prometheus would receive: intervals by a duration,
/// the others (used in regex matchers) by `.+`.
fn expand_grafana_variables(expr: &str) -> String {
    let mut out = expr
        .replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h");
    while let Some(start) = out.find('$') {
        let rest = &out[start + 1..];
        let len = if let Some(braced) = rest.strip_prefix('{') {
            2 + braced.find('}').expect("unclosed ${")
        } else {
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len())
        };
        out.replace_range(start..start + 1 + len, ".+");
    }
    out
}

/// The dashboard fits Grafana's published dashboard schema (npm @grafana/schema's `Dashboard`,
/// checked by TypeScript's compiler), and the check itself refuses a dashboard that does not.
#[cfg(feature = "release-checks")]
#[test]
fn grafana_dashboard_fits_grafanas_schema() {
    let script = repo().join("scripts/grafana-check.sh");
    run_ok(Path::new("bash"), &[script.to_str().expect("a UTF-8 path")]);

    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("broken.json");
    let text = read(&deploy("grafana/pacs_exporter.json")).replacen(
        "\"graphTooltip\": 1",
        "\"graphTooltip\": \"shared\"",
        1,
    );
    assert!(
        text.contains("\"shared\""),
        "the dashboard sets graphTooltip"
    );
    fs::write(&broken, text).expect("write");
    let output = Command::new("bash")
        .arg(&script)
        .arg(&broken)
        .current_dir(repo())
        .output()
        .expect("run the check");
    assert!(
        !output.status.success(),
        "a wrong graphTooltip must fail the check"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("DashboardCursorSync"),
        "{output:?}"
    );
}

#[test]
fn grafana_dashboard_is_well_formed() {
    let dashboard = dashboard();
    assert!(dashboard["uid"].is_string() && dashboard["title"].is_string());
    let panels = array(&dashboard["panels"], "panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        let id = panel["id"].as_u64().expect("every panel has a numeric id");
        assert!(ids.insert(id), "panel id {id} is used twice");
        for key in ["x", "y", "w", "h"] {
            assert!(
                panel["gridPos"][key].is_u64(),
                "panel {id} lacks gridPos.{key}"
            );
        }
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "panel {id} does not use the dashboard's Prometheus variable"
            );
        }
    }
    let variables: Vec<&str> = array(&dashboard["templating"]["list"], "templating.list")
        .iter()
        .map(|v| string(&v["name"], "variable name"))
        .collect();
    for (what, expr) in dashboard_exprs(&dashboard) {
        let mut rest = expr.as_str();
        while let Some(start) = rest.find('$') {
            rest = &rest[start + 1..];
            let name: String = rest
                .trim_start_matches('{')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `$1` is label_replace's capture group, which Grafana leaves as it is (no
            // variable is named by digits).
            let capture = !name.is_empty() && name.chars().all(|c| c.is_ascii_digit());
            assert!(
                capture || name.starts_with("__") || variables.contains(&name.as_str()),
                "{what} uses the undefined variable ${name}"
            );
        }
    }
}

#[test]
fn grafana_dashboard_queries_only_exposed_metrics() {
    let dashboard = dashboard();
    let exprs = dashboard_exprs(&dashboard);
    let known: BTreeSet<&str> = EXPORTER_METRICS
        .iter()
        .chain(PROMETHEUS_METRICS)
        .copied()
        .collect();
    let used = assert_known_metrics(exprs.iter().map(|(w, e)| (w.clone(), e.as_str())), &known);
    // The panels the dashboard is for.
    for needed in [
        "probe_success",
        "probe_duration_seconds",
        "pacs_studies_missing",
        "pacs_studies_incomplete",
        "pacs_oldest_unsent_study_age_seconds",
        "pacs_study_unsent",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

#[test]
fn grafana_queries_are_valid_promql() {
    let dashboard = dashboard();
    let rules: Vec<Value> = dashboard_exprs(&dashboard)
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            json!({"record": format!("grafana:query_{i}"), "expr": expand_grafana_variables(expr)})
        })
        .collect();
    let count = rules.len();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("grafana-queries.yml");
    // JSON is YAML: promtool reads it as a rule file.
    let file = json!({"groups": [{"name": "grafana", "rules": rules}]});
    fs::write(&path, file.to_string()).expect("write the rule file");
    let output = run_ok(&promtool(), &["check", "rules", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("SUCCESS: {count} rules found")),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// systemd and Ansible
// ---------------------------------------------------------------------------------------------

const UNIT: &str = "systemd/pacs_exporter.service";
const BINARY: &str = "/usr/local/bin/pacs_exporter";
const CONFIG: &str = "/etc/pacs_exporter/modules.yml";

#[test]
fn systemd_unit_runs_hardened_as_its_own_user_and_reloads_with_hup() {
    let unit = read(&deploy(UNIT));
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';', '[']))
        .map(|l| {
            l.split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {l}"))
        })
        .collect();
    let all = |key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    assert_eq!(all("User"), ["pacs_exporter"]);
    assert!(all("DynamicUser").is_empty());
    let start = all("ExecStart");
    assert_eq!(start.len(), 1);
    assert!(
        start[0].starts_with(BINARY) && start[0].contains(&format!("--config.file={CONFIG}")),
        "ExecStart={}",
        start[0]
    );
    let reload = all("ExecReload");
    assert_eq!(
        reload.last(),
        Some(&"/bin/kill -HUP $MAINPID"),
        "reload must end by sending SIGHUP"
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ] {
        assert_eq!(all(key), [value], "{key}");
    }
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let analyze = require_binary("systemd-analyze", "systemd");
    // verify also checks that the commands exist: point them at the binary under test.
    let unit = read(&deploy(UNIT)).replace(BINARY, env!("CARGO_BIN_EXE_pacs_exporter"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("pacs_exporter.service");
    fs::write(&path, unit).expect("write the unit");
    let output = run_ok(&analyze, &["verify", "--man=no", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("pacs_exporter.service"))
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn ansible_playbook_installs_what_the_unit_runs() {
    let playbook = read_yaml(&deploy("ansible/playbook.yml"));
    let play = &array(&playbook, "playbook")[0];
    let tasks = array(&play["tasks"], "tasks");
    let task_with = |module: &str, key: &str, value: Value| {
        tasks
            .iter()
            .find(|task| task[module][key] == value)
            .unwrap_or_else(|| panic!("no {module} task with {key}: {value}"))
    };
    task_with("ansible.builtin.copy", "dest", json!(BINARY));
    let config = task_with("ansible.builtin.copy", "dest", json!(CONFIG));
    assert!(
        string(&config["ansible.builtin.copy"]["validate"], "validate").contains("--config.check"),
        "modules.yml is installed without validation"
    );
    let unit = task_with(
        "ansible.builtin.copy",
        "dest",
        json!("/etc/systemd/system/pacs_exporter.service"),
    );
    let unit_src = string(&unit["ansible.builtin.copy"]["src"], "src")
        .replace("{{ playbook_dir }}", deploy("ansible").to_str().unwrap());
    assert!(
        Path::new(&unit_src).is_file(),
        "the playbook installs a unit that does not exist: {unit_src}"
    );
    let user = task_with("ansible.builtin.user", "system", json!(true));
    assert_eq!(
        user["ansible.builtin.user"]["name"],
        "{{ pacs_exporter_user }}"
    );
    assert_eq!(play["vars"]["pacs_exporter_user"], "pacs_exporter");
    let template = "ansible/templates/pacs_exporter.default.j2";
    assert!(deploy(template).is_file(), "{template} is missing");
    // The files modules.yml names are in place before it is validated against them.
    let position = |dest: &str| {
        tasks
            .iter()
            .position(|task| {
                task["ansible.builtin.copy"]["dest"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(dest))
            })
            .unwrap_or_else(|| panic!("no copy task to {dest}"))
    };
    let files = position("/etc/pacs_exporter/{{ item");
    assert_eq!(
        tasks[files]["loop"], "{{ pacs_exporter_files }}",
        "the TLS files come from pacs_exporter_files"
    );
    assert!(
        files < position(CONFIG),
        "TLS files are copied after modules.yml"
    );
}

// ---------------------------------------------------------------------------------------------
// Host names
// ---------------------------------------------------------------------------------------------

/// Host names in `text`: after `://` or `@`, or before `:<port>`, with a dot in them.
fn host_names(text: &str) -> Vec<String> {
    let is_host = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_';
    let mut hosts = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        if !is_host(bytes[i] as char) {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && is_host(bytes[i] as char) {
            i += 1;
        }
        let token = text[start..i].trim_matches('.');
        let before = &text[..start];
        let after = &text[i..];
        let addressed = before.ends_with("://")
            || before.ends_with('@')
            || (after.starts_with(':') && after[1..].starts_with(|c: char| c.is_ascii_digit()));
        if addressed && token.contains('.') {
            hosts.push(token.to_string());
        }
    }
    hosts
}

#[test]
fn deploy_files_name_only_example_or_loopback_hosts() {
    let mut files = vec![repo().join("prometheus-example.yml")];
    let mut dirs = vec![repo().join("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read deploy/") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 10, "deploy/ looks empty: {files:?}");
    let mut bad = Vec::new();
    for file in &files {
        for host in host_names(&read(file)) {
            let loopback = host == "localhost" || host.starts_with("127.");
            if !(loopback || host.ends_with(".example")) {
                bad.push(format!("{}: {host}", file.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "hosts outside .example and loopback:\n{}",
        bad.join("\n")
    );
}

#[test]
fn host_names_finds_addresses() {
    let hosts = host_names(
        "url: http://127.0.0.1:9095/x to: a@hospital.example ORTHANC@pacs1.hospital.example:4242 \
         file modules.yml, ansible.builtin.copy: x, smtp: mail.example.org:25",
    );
    assert_eq!(
        hosts,
        [
            "127.0.0.1",
            "hospital.example",
            "pacs1.hospital.example",
            "mail.example.org"
        ]
    );
}
