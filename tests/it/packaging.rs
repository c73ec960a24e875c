//! Checks of how the exporter is shipped: `--version` as Prometheus' exporters print it, the
//! Dockerfile (hadolint, OCI labels, the revision passed in, the build context), and the Debian
//! package (`scripts/deb-check.sh` builds, installs, runs and removes it).
//!
//! A missing tool fails the test with what to install; nothing is skipped.

// A release check: `bash scripts/release-checks.sh` runs it (Cargo.toml, `release-checks`).

use crate::{git, repo};
use std::fs;
use std::process::{Command, Output};
use testkit::output::describe;

fn read(path: &str) -> String {
    fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn run_script(script: &str) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts").join(script))
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/{script}: {e}"))
}

/// `pacs_exporter, version 0.1.0 (branch: main, revision: <HEAD>)` and the build facts, in
/// prometheus/common/version's layout.
#[test]
fn version_prints_like_prometheus_exporters() {
    let output = Command::new(env!("CARGO_BIN_EXE_pacs_exporter"))
        .arg("--version")
        .output()
        .expect("run pacs_exporter --version");
    assert!(output.status.success(), "{}", describe(&output));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");

    let head = git(&["rev-parse", "HEAD"]).expect("tests run in a git checkout");
    let branch = git(&["symbolic-ref", "-q", "--short", "HEAD"]);
    assert_eq!(
        lines[0],
        format!(
            "pacs_exporter, version {} (branch: {}, revision: {head})",
            env!("CARGO_PKG_VERSION"),
            branch.as_deref().unwrap_or("unknown"),
        )
    );
    let field = |line: &str, name: &str| -> String {
        let prefix = format!("  {name}:");
        let value = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line:?} is not `{prefix} …`"));
        assert_eq!(
            prefix.len() + value.len() - value.trim_start().len(),
            20,
            "{line:?}"
        );
        value.trim().to_string()
    };
    let user = field(lines[1], "build user");
    assert!(user.contains('@'), "{user}");
    let date = field(lines[2], "build date");
    let shape: String = date
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "99999999-99:99:99", "{date}");
    let rust = field(lines[3], "rust version");
    assert!(rust.starts_with("rustc 1."), "{rust}");
    let platform = field(lines[4], "platform");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(platform, format!("{}/{arch}", std::env::consts::OS));
}

#[test]
fn dockerfile_passes_hadolint() {
    let python = Command::new("python3").arg("--version").output();
    assert!(
        python.is_ok_and(|o| o.status.success()),
        "python3 not found: scripts/hadolint.sh installs hadolint into a Python virtual \
         environment; install Debian's python3 and python3-venv"
    );
    let output = run_script("hadolint.sh");
    assert!(
        output.status.success(),
        "hadolint failed {}",
        describe(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("hadolint: no findings"),
        "{}",
        describe(&output)
    );
}

/// The image carries the OCI labels, the revision goes from a build argument to build.rs, and
/// the build context holds every file the Dockerfile copies.
#[test]
fn dockerfile_labels_the_image_and_passes_the_revision() {
    let dockerfile = read("Dockerfile");
    for label in [
        "source", "revision", "version", "created", "licenses", "title",
    ] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "no org.opencontainers.image.{label} label"
        );
    }
    assert!(dockerfile.contains("org.opencontainers.image.licenses=\"Apache-2.0\""));
    assert!(dockerfile.contains("ARG REVISION"));
    assert!(dockerfile.contains("PACS_EXPORTER_REVISION=\"$REVISION\""));
    assert!(dockerfile.contains("org.opencontainers.image.revision=\"$REVISION\""));
    let version = format!("ARG VERSION=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(dockerfile.contains(&version), "{version} missing");

    let ignore = read(".dockerignore");
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "not an allow-list");
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        if line.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            assert!(
                allowed.contains(&source),
                "{source} is copied but left out by .dockerignore"
            );
            assert!(repo().join(source).exists(), "{source} does not exist");
        }
    }
}

/// The package's unit is deploy/systemd's with the binary in /usr/bin.
#[test]
fn debian_unit_is_the_systemd_unit_from_usr_bin() {
    let directives = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(String::from)
            .collect()
    };
    let systemd = directives(&read("deploy/systemd/pacs_exporter.service"));
    let debian = directives(&read("deploy/debian/pacs_exporter.service"));
    let expected: Vec<String> = systemd
        .iter()
        .map(|l| l.replace("/usr/local/bin/pacs_exporter", "/usr/bin/pacs_exporter"))
        .collect();
    assert_eq!(debian, expected);
    assert!(debian.iter().any(|l| l == "User=pacs_exporter"));
    assert!(read("deploy/debian/postinst").contains("--system"));
    assert!(read("deploy/debian/pacs_exporter.default").contains("\nARGS=\""));
}

/// Slow: a release build. Needs root, as the suite has on CI.
#[test]
fn debian_package_installs_runs_and_is_removed() {
    let output = run_script("deb-check.sh");
    let report = describe(&output);
    assert!(output.status.success(), "deb-check.sh failed {report}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let head = git(&["rev-parse", "HEAD"]).expect("git checkout");
    assert!(stdout.contains(&format!("revision: {head})")), "{report}");
    assert!(
        stdout.contains("installs, runs and is removed cleanly"),
        "{report}"
    );
}
