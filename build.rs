//! Build facts for `--version` and `pacs_exporter_build_info`, as Prometheus' exporters report
//! them: revision and branch from git, falling back to `PACS_EXPORTER_REVISION` and
//! `PACS_EXPORTER_BRANCH` where there is no git checkout of these sources (the Docker build,
//! or sources unpacked inside some other repository, whose HEAD says nothing about them), then
//! "unknown";
//! the build date from `SOURCE_DATE_EPOCH` when set (reproducible builds), else the clock; the
//! build user, the compiler's version and the target platform.
//!
//! Each fact reaches the crate as a compile-time environment variable (`env!`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

// The decisions, shared with their test target (`build_facts`, Cargo.toml).
#[path = "build/facts.rs"]
mod facts;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    for var in [
        "PACS_EXPORTER_REVISION",
        "PACS_EXPORTER_BRANCH",
        "SOURCE_DATE_EPOCH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    // The date and the revision follow the sources and the checked-out commit.
    for path in ["build.rs", "build", "src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let checkout = facts::is_checkout(&manifest_dir);
    let from_git = |args: &[&str]| checkout.then(|| facts::git(&manifest_dir, args)).flatten();
    if let Some(git_dir) = from_git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = Path::new(&git_dir);
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        println!(
            "cargo:rerun-if-changed={}",
            git_dir.join("packed-refs").display()
        );
        if let Some(reference) = from_git(&["symbolic-ref", "-q", "HEAD"]) {
            println!(
                "cargo:rerun-if-changed={}",
                git_dir.join(reference).display()
            );
        }
    }

    let (revision, branch) = facts::revision_and_branch(&manifest_dir, &non_empty_var);
    let build_date = build_date();
    let build_user = build_user();
    let rust_version = rust_version();
    let platform = format!(
        "{}/{}",
        env::var("CARGO_CFG_TARGET_OS").unwrap_or_else(|_| "unknown".into()),
        facts::go_arch(&env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "unknown".into())),
    );

    for (name, value) in [
        ("PACS_EXPORTER_REVISION", revision),
        ("PACS_EXPORTER_BRANCH", branch),
        ("PACS_EXPORTER_BUILD_DATE", build_date),
        ("PACS_EXPORTER_BUILD_USER", build_user),
        ("PACS_EXPORTER_RUST_VERSION", rust_version),
        ("PACS_EXPORTER_PLATFORM", platform),
    ] {
        // One line each: a value with a line break would end the directive.
        let value = value.lines().next().unwrap_or("unknown").trim().to_string();
        println!("cargo:rustc-env={name}={value}");
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `YYYYMMDD-HH:MM:SS` in UTC, the format Prometheus' own builds use.
fn build_date() -> String {
    let seconds = match non_empty_var("SOURCE_DATE_EPOCH") {
        Some(epoch) => match epoch.trim().parse::<i64>() {
            Ok(seconds) => seconds,
            Err(_) => panic!("SOURCE_DATE_EPOCH={epoch:?} is not a number of seconds"),
        },
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    };
    let (days, time) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = facts::civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

/// `user@host`, as promu records it.
fn build_user() -> String {
    let user = non_empty_var("USER")
        .or_else(|| non_empty_var("LOGNAME"))
        .or_else(|| {
            let output = Command::new("id").arg("-un").output().ok()?;
            let name = String::from_utf8(output.stdout).ok()?.trim().to_string();
            (output.status.success() && !name.is_empty()).then_some(name)
        })
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{host}")
}

/// `rustc 1.88.0`: the compiler building this crate, without its commit hash and date.
fn rust_version() -> String {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| {
            text.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|text| text.starts_with("rustc "))
        .unwrap_or_else(|| "unknown".into())
}
