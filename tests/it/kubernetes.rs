//! Checks of `deploy/kubernetes/`: the rendered kustomization against the Kubernetes API
//! schemas and the Prometheus Operator's CRDs (`scripts/k8s-validate.sh`, tools pinned from
//! PyPI), and what the schemas cannot say: every Probe keeps `instance` = the PACS and names a
//! module of the shipped modules.yml, the pods are hardened, and the files name only hosts
//! under `.example` or on loopback.
//!
//! A missing tool fails the test with what to install; nothing is skipped.

// A release check: `bash scripts/release-checks.sh` runs it (Cargo.toml, `release-checks`).

use crate::repo;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testkit::output::describe;

use serde::Deserialize;
use serde_json::Value;

fn kubernetes_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every document of a YAML file, as JSON values.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| {
            Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

/// Every object of the kustomization's resources, with the file it came from.
fn objects() -> Vec<(PathBuf, Value)> {
    let kustomization = &documents(&kubernetes_dir().join("kustomization.yaml"))[0];
    kustomization["resources"]
        .as_array()
        .expect("kustomization.yaml lists resources")
        .iter()
        .flat_map(|file| {
            let path = kubernetes_dir().join(file.as_str().expect("resource is a file name"));
            documents(&path)
                .into_iter()
                .map(move |doc| (path.clone(), doc))
        })
        .collect()
}

fn objects_of_kind(kind: &str) -> Vec<(PathBuf, Value)> {
    objects()
        .into_iter()
        .filter(|(_, object)| object["kind"] == kind)
        .collect()
}

/// Runs scripts/k8s-validate.sh on `dir`; panics with what to install when it cannot start.
fn k8s_validate(dir: &Path) -> Output {
    let python = Command::new("python3").arg("--version").output();
    assert!(
        python.is_ok_and(|o| o.status.success()),
        "python3 not found: scripts/k8s-validate.sh installs its pinned tools into a Python \
         virtual environment; install Debian's python3 and python3-venv"
    );
    Command::new("bash")
        .arg(repo().join("scripts/k8s-validate.sh"))
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/k8s-validate.sh: {e}"))
}

#[test]
fn manifests_pass_kubernetes_and_crd_schemas() {
    let output = k8s_validate(&kubernetes_dir());
    let report = describe(&output);
    assert!(output.status.success(), "k8s-validate.sh failed {report}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for object in [
        "apps/v1 Deployment/pacs-exporter",
        "v1 Service/pacs-exporter",
        "v1 ConfigMap/pacs-exporter-modules-",
        "monitoring.coreos.com/v1 ServiceMonitor/pacs-exporter",
        "monitoring.coreos.com/v1 Probe/pacs-echo\n",
        "monitoring.coreos.com/v1 Probe/pacs-find",
        "monitoring.coreos.com/v1 Probe/pacs-send-check",
        "monitoring.coreos.com/v1 Probe/pacs-routes-archive",
        "monitoring.coreos.com/v1 Probe/pacs-routes-dr",
        "monitoring.coreos.com/v1 Probe/pacs-echo-ingress",
        "monitoring.coreos.com/v1 PrometheusRule/pacs-exporter",
    ] {
        assert!(
            stdout.contains(&format!("valid: {object}")),
            "{object} not validated {report}"
        );
    }
}

/// The PrometheusRule carries the alert rules of deploy/prometheus/alerts.yml unchanged (the
/// ones promtool tests), with the label kube-prometheus-stack's rule selector looks for.
#[test]
fn prometheus_rule_is_the_alert_rules_file() {
    let rules = &objects_of_kind("PrometheusRule");
    let [(_, rule)] = &rules[..] else {
        panic!("one PrometheusRule expected, found {}", rules.len());
    };
    let alerts = &documents(&repo().join("deploy/prometheus/alerts.yml"))[0];
    assert!(alerts["groups"].as_array().is_some_and(|g| !g.is_empty()));
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/alerts.yml: \
         regenerate it with the command in its header"
    );
    assert_eq!(
        rule["metadata"]["labels"]["release"], "kube-prometheus-stack",
        "{rule}"
    );
}

/// The validation is not a formality: an unknown field in a core object and in a Probe, and a
/// relabeling action the CRD does not allow, are each reported.
#[test]
fn schema_validation_rejects_unknown_fields_and_values() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for entry in fs::read_dir(kubernetes_dir()).expect("read deploy/kubernetes") {
        let path = entry.expect("directory entry").path();
        let mut text = read(&path);
        match path.file_name().and_then(|n| n.to_str()) {
            Some("deployment.yaml") => {
                text = text.replacen("  replicas: 2\n", "  replicas: 2\n  replica: 2\n", 1)
            }
            Some("probes-static.yaml") => {
                text = text.replacen("    path: /probe\n", "    path: /probe\n    paht: /\n", 1)
            }
            Some("probe-ingress.yaml") => {
                text = text.replacen("        - action: keep\n", "        - action: keeep\n", 1)
            }
            _ => {}
        }
        fs::write(dir.path().join(path.file_name().expect("file name")), text).expect("write copy");
    }
    let output = k8s_validate(dir.path());
    let report = describe(&output);
    assert!(!output.status.success(), "broken manifests passed {report}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for problem in [
        "Deployment/pacs-exporter: Additional properties are not allowed ('replica' was unexpected)",
        "Probe/pacs-echo: .spec.prober.paht is not a field of the Probe CRD",
        "Probe/pacs-echo-ingress: ",
    ] {
        assert!(stderr.contains(problem), "{problem:?} not reported {report}");
    }
    assert!(
        stderr.contains("keeep"),
        "bad relabeling action not reported {report}"
    );
}

/// Every manifest file sits in the kustomization, and what it generates exists.
#[test]
fn kustomization_names_every_manifest() {
    let kustomization = &documents(&kubernetes_dir().join("kustomization.yaml"))[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|f| f.as_str().expect("file name").to_string())
        .collect();
    let on_disk: BTreeSet<String> = fs::read_dir(kubernetes_dir())
        .expect("read deploy/kubernetes")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk);
    let generated = &kustomization["configMapGenerator"][0];
    assert_eq!(generated["name"], "pacs-exporter-modules");
    assert_eq!(generated["files"][0], "modules.yml");
}

/// The ConfigMap's modules.yml is one the exporter accepts.
#[test]
fn configmap_modules_pass_config_check() {
    let output = Command::new(env!("CARGO_BIN_EXE_pacs_exporter"))
        .arg("--config.check")
        .arg("--config.file")
        .arg(kubernetes_dir().join("modules.yml"))
        .output()
        .expect("run pacs_exporter --config.check");
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        output.stderr.is_empty(),
        "config check warned {}",
        describe(&output)
    );
}

fn modules() -> BTreeSet<String> {
    let modules = &documents(&kubernetes_dir().join("modules.yml"))[0]["modules"];
    modules
        .as_object()
        .expect("modules.yml has modules")
        .keys()
        .cloned()
        .collect()
}

/// The rule that sets `instance` from the target, as prometheus-example.yml has it.
fn is_instance_from_target(rule: &Value) -> bool {
    let action = rule["action"].as_str().unwrap_or("replace");
    rule["sourceLabels"] == serde_json::json!(["__param_target"])
        && rule["targetLabel"] == "instance"
        && action.eq_ignore_ascii_case("replace")
        && rule.get("regex").is_none_or(|r| r == "(.*)")
        && rule.get("replacement").is_none_or(|r| r == "$1")
}

#[test]
fn probes_keep_instance_as_the_pacs_and_ask_for_a_module() {
    let probes = objects_of_kind("Probe");
    let modules = modules();
    let service = &objects_of_kind("Service")[0].1;
    let prober_url = format!(
        "{}:{}",
        service["metadata"]["name"].as_str().expect("service name"),
        service["spec"]["ports"][0]["port"]
    );
    let mut probed_modules = BTreeSet::new();
    let mut kinds_of_targets = BTreeSet::new();
    for (file, probe) in &probes {
        let name = format!("{}: {}", file.display(), probe["metadata"]["name"]);
        let spec = &probe["spec"];
        let module = spec["module"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no module"));
        assert!(
            modules.contains(module),
            "{name}: module {module} not in modules.yml"
        );
        probed_modules.insert(module.to_string());
        assert_eq!(spec["prober"]["url"], prober_url.as_str(), "{name}");
        assert_eq!(spec["prober"]["path"], "/probe", "{name}");
        assert!(
            spec["jobName"]
                .as_str()
                .is_some_and(|j| j.starts_with("pacs_")),
            "{name}: the alert rules expect job names pacs_*"
        );

        let targets = spec["targets"].as_object().expect("targets");
        assert_eq!(targets.len(), 1, "{name}: one kind of targets");
        let (kind, targets) = targets.iter().next().expect("targets");
        kinds_of_targets.insert(kind.clone());
        if let Some(statics) = targets["static"].as_array() {
            for target in statics {
                let target = target.as_str().expect("target");
                let (aet, address) = target.split_once('@').expect("AET@host:port");
                let (_, port) = address.rsplit_once(':').expect("host:port");
                assert!(!aet.is_empty() && port.parse::<u16>().is_ok(), "{target}");
            }
        }
        // The last rule that touches `instance` copies the target, and no rule after it
        // changes the target.
        let rules = targets["relabelingConfigs"]
            .as_array()
            .expect("relabelingConfigs");
        let last = rules
            .iter()
            .rposition(|r| r["targetLabel"] == "instance")
            .unwrap_or_else(|| panic!("{name}: no rule sets instance"));
        assert!(
            is_instance_from_target(&rules[last]),
            "{name}: {}",
            rules[last]
        );
        assert!(
            rules[last..]
                .iter()
                .all(|r| r["targetLabel"] != "__param_target"),
            "{name}: the target changes after instance is set"
        );
        assert!(
            rules.iter().all(|r| r["action"] != "labeldrop"
                && r["action"] != "labelkeep"
                && r["action"] != "labelmap"),
            "{name}: label-name rules could touch instance"
        );
    }
    assert_eq!(
        probed_modules,
        ["echo", "find", "route", "send_check"]
            .map(String::from)
            .into(),
        "echo, find, send_check and its routes are probed"
    );
    assert_eq!(
        kinds_of_targets,
        ["ingress", "staticConfig"].map(String::from).into()
    );
}

/// The ingress variant turns the Ingress URL the Operator starts from into AET@host:port.
#[test]
fn ingress_probe_rewrites_the_url_into_a_dicom_target() {
    let probe = objects_of_kind("Probe")
        .into_iter()
        .find(|(_, p)| p["spec"]["targets"].get("ingress").is_some())
        .expect("a Probe with ingress targets")
        .1;
    let ingress = &probe["spec"]["targets"]["ingress"];
    assert!(ingress["selector"]["matchLabels"].is_object());
    let rules = ingress["relabelingConfigs"].as_array().expect("rules");
    let rewrite = rules
        .iter()
        .find(|r| r["targetLabel"] == "__param_target")
        .expect("a rule that sets the target");
    assert_eq!(rewrite["replacement"], "${1}@${2}:${3}");
    let sources = rewrite["sourceLabels"].as_array().expect("sourceLabels");
    assert_eq!(
        sources[1], "__param_target",
        "the host comes from the Ingress URL"
    );
    assert_eq!(
        rewrite["regex"], "(.+);https?://([^/:;]+)[^;]*;([0-9]+)",
        "regex changed: check it against http://host/path and https://host"
    );
}

#[test]
fn deployment_is_stateless_probed_and_hardened() {
    let deployment = &objects_of_kind("Deployment")[0].1;
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &spec["template"]["spec"];
    assert!(pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .all(|v| v.get("configMap").is_some()));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(container["ports"][0]["containerPort"], 9000);
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource}"
            );
        }
    }
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--config.file=/config/modules.yml"),
        "{args:?}"
    );
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/config");

    let monitor = &objects_of_kind("ServiceMonitor")[0].1;
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
}

/// Host names: words followed by `:port` or preceded by `@` or `://`, and image references.
fn host_names(text: &str) -> Vec<String> {
    let is_host = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_';
    let mut hosts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(is_host) {
        let before = &rest[..start];
        let len = rest[start..]
            .find(|c| !is_host(c))
            .unwrap_or(rest.len() - start);
        let token = rest[start..start + len].trim_matches('.');
        let after = &rest[start + len..];
        let addressed = before.ends_with("://")
            || before.ends_with('@')
            || (after.starts_with(':') && after[1..].starts_with(|c: char| c.is_ascii_digit()));
        if addressed && token.contains('.') {
            hosts.push(token.to_string());
        }
        rest = after;
    }
    for line in text.lines() {
        let line = line.trim().trim_start_matches("- ");
        if let Some(image) = line.strip_prefix("image:").or(line.strip_prefix("name:")) {
            if let Some((registry, _)) = image.trim().split_once('/') {
                if registry.contains('.') {
                    hosts.push(registry.to_string());
                }
            }
        }
    }
    hosts
}

#[test]
fn manifests_name_only_example_or_loopback_hosts() {
    let mut bad = Vec::new();
    let mut seen = 0;
    for entry in fs::read_dir(kubernetes_dir()).expect("read deploy/kubernetes") {
        let path = entry.expect("entry").path();
        for host in host_names(&read(&path)) {
            seen += 1;
            let loopback = host == "localhost" || host.starts_with("127.");
            if !(loopback || host.ends_with(".example")) {
                bad.push(format!("{}: {host}", path.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "hosts outside .example and loopback:\n{}",
        bad.join("\n")
    );
    assert!(seen >= 5, "the scan found only {seen} host names");
    assert_eq!(
        host_names("image: quay.example/x:1\n- ORTHANC@pacs.hospital.org:104 http://a.b.c/"),
        ["pacs.hospital.org", "a.b.c", "quay.example"]
    );
}

/// A Probe of module `route` gives its targets a `destination` label and sends it as the
/// `destination` parameter, as prometheus-example.yml's pacs_routes job does.
#[test]
fn route_probes_send_their_destination() {
    let routes: Vec<(PathBuf, Value)> = objects_of_kind("Probe")
        .into_iter()
        .filter(|(_, probe)| probe["spec"]["module"] == "route")
        .collect();
    assert!(routes.len() >= 2, "one Probe per destination: {routes:?}");
    let mut destinations = BTreeSet::new();
    for (file, probe) in &routes {
        let name = format!("{}: {}", file.display(), probe["metadata"]["name"]);
        let statics = &probe["spec"]["targets"]["staticConfig"];
        let destination = statics["labels"]["destination"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no destination label"));
        assert!(
            pacs_exporter::target::Target::parse(destination).is_ok(),
            "{name}: {destination}"
        );
        destinations.insert(destination.to_string());
        let sends = statics["relabelingConfigs"]
            .as_array()
            .expect("relabelingConfigs")
            .iter()
            .any(|r| {
                r["sourceLabels"] == serde_json::json!(["destination"])
                    && r["targetLabel"] == "__param_destination"
            });
        assert!(sends, "{name}: the destination label is not sent");
        assert_eq!(probe["spec"]["jobName"], "pacs_routes", "{name}");
    }
    assert_eq!(
        destinations.len(),
        routes.len(),
        "one Probe per destination"
    );
}
