//! The integration tests, one binary with a module per area: real peers (Orthanc, DCMTK,
//! pynetdicom), scripted peers for the faults a real server will not produce, the real
//! Prometheus, Alertmanager and Chromium, the binary itself. Test support lives in `testkit/`.
//!
//! The modules behind `release-checks` (the package, the image and a build outside git, the
//! Kubernetes schemas) are run by `scripts/release-checks.sh`, not by the README's test command.

mod alerts_e2e;
mod binary;
#[cfg(feature = "release-checks")]
mod build_info;
mod charsets_real_peers;
mod connections;
mod deadline_hostile_peers;
mod demo;
mod deploy;
mod dicom_tls;
mod echo_hostile_peers;
mod echo_real_peers;
mod find_hostile_peers;
mod find_real_peers;
mod find_scripted;
mod fuzz_regressions;
mod http;
#[cfg(feature = "release-checks")]
mod kubernetes;
mod landing_page_browser;
mod operations;
#[cfg(feature = "release-checks")]
mod packaging;
mod prometheus_e2e;
mod send_check_detail;
mod send_check_real_peers;
mod send_check_scripted;
mod send_check_third_peer;
mod web;

use std::path::Path;

/// The repository: what the tests read of it (deploy/, the README, the Dockerfile).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What `git args` prints in the repository, trimmed; `None` when git fails (no checkout).
pub fn git(args: &[&str]) -> Option<String> {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run git");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}
