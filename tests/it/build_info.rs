//! The build facts where there is no git checkout, as in the Docker build: the Dockerfile copies
//! only the sources into its build stage (no `.git`) and hands the revision and branch to
//! build.rs in `PACS_EXPORTER_REVISION` and `PACS_EXPORTER_BRANCH`. These tests copy the files
//! the Dockerfile's build stage copies, build the copy with cargo, and read `--version` and
//! `pacs_exporter_build_info` from the binary that comes out.
//!
//! Run time: the copies are built in a target directory of their own,
//! `build-info/target` under `CARGO_TARGET_TMPDIR` (`target/tmp/`), kept between runs. The
//! first run therefore builds the crate and its dependencies once more (minutes, as a first
//! build takes); later runs recompile only the two copies of the crate, and only when its
//! sources changed.

// A release check: `bash scripts/release-checks.sh` runs it (Cargo.toml, `release-checks`).
use crate::repo;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use testkit::binary::Binary;
use testkit::output::describe;

/// A revision and a branch no checkout has: seen in the output, they came from the environment.
const REVISION: &str = "d0c4e7b1d0c4e7b1d0c4e7b1d0c4e7b1d0c4e7b1";
const BRANCH: &str = "from-the-build-argument";
/// Both builds are dated 2023-11-14 22:13:20 UTC, as reproducible builds date theirs. Set for
/// both alike: ring's build script reruns when it changes, and everything above ring with it.
const SOURCE_DATE_EPOCH: (&str, &str) = ("SOURCE_DATE_EPOCH", "1700000000");
const BUILD_DATE: &str = "\n  build date:       20231114-22:13:20\n";

/// Variables that would steer git or build.rs from the outside: every command here runs
/// without them, then with what the test sets.
const OUTSIDE: &[&str] = &[
    "SOURCE_DATE_EPOCH",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_CEILING_DIRECTORIES",
    "CARGO_BUILD_TARGET_DIR",
    // What `cargo test` sets for this test, which a shell would not.
    "OUT_DIR",
    "CARGO_TARGET_TMPDIR",
];

/// Prefixes of what `cargo test` sets for this test: among them build.rs's own facts about
/// this checkout (`PACS_EXPORTER_REVISION` = its HEAD), which must not reach the copies.
const OUTSIDE_PREFIXES: &[&str] = &[
    "PACS_EXPORTER_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_CRATE_",
    "CARGO_BIN_EXE_",
    "CARGO_PRIMARY_",
];

/// `command` without [`OUTSIDE`] and [`OUTSIDE_PREFIXES`], with `env`.
fn clean_env<'c>(command: &'c mut Command, env: &[(&str, &str)]) -> &'c mut Command {
    for var in OUTSIDE {
        command.env_remove(var);
    }
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if OUTSIDE_PREFIXES
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name.as_ref());
        }
    }
    command.envs(env.iter().copied())
}

/// Both copies are built into one target directory, and so into one `debug/pacs_exporter`:
/// one test at a time, each running its binary before the other builds (see [`Apart`]).
static TARGET_DIR: Mutex<()> = Mutex::new(());

fn one_build_at_a_time() -> MutexGuard<'static, ()> {
    TARGET_DIR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `target/tmp/build-info`, as a real path (git compares GIT_CEILING_DIRECTORIES with those).
fn work() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("build-info");
    fs::create_dir_all(&dir).expect("create the work directory");
    dir.canonicalize().expect("the work directory's real path")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    clean_env(Command::new("git").args(args).current_dir(dir), env)
        .output()
        .expect("run git")
}

/// The sources the Dockerfile's build stage copies, each to the same place under its work
/// directory; and the stage must hand the revision and branch to build.rs as these tests do.
fn docker_build_sources() -> Vec<String> {
    let dockerfile = fs::read_to_string(repo().join("Dockerfile")).expect("read the Dockerfile");
    let stage = dockerfile
        .split("\nFROM ")
        .nth(1)
        .expect("the Dockerfile has a build stage");
    assert!(
        stage.contains(" AS build\n"),
        "not the build stage:\n{stage}"
    );
    for var in ["PACS_EXPORTER_REVISION", "PACS_EXPORTER_BRANCH"] {
        assert!(
            stage.contains(&format!("{var}=\"$")),
            "the build stage does not pass {var} to cargo:\n{stage}"
        );
    }
    let mut sources = Vec::new();
    for line in stage.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (destination, copied) = words[1..].split_last().expect("COPY has a destination");
        for source in copied {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            let same_place = destination.trim_end_matches('/') == "."
                || destination.trim_start_matches("./").trim_end_matches('/') == source;
            assert!(
                same_place,
                "{line}: copies {source} elsewhere than ./{source}"
            );
            sources.push(source.to_string());
        }
    }
    assert!(
        sources.iter().any(|s| s == "build.rs"),
        "build.rs is not copied: {sources:?}"
    );
    sources
}

/// Makes `to` a copy of `from`, writing only the files whose content differs, so that cargo
/// sees unchanged sources as unchanged and rebuilds nothing.
fn mirror(from: &Path, to: &Path) {
    if !from.is_dir() {
        let bytes = fs::read(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display()));
        if fs::read(to).ok().as_deref() != Some(&bytes[..]) {
            if to.is_dir() {
                fs::remove_dir_all(to).expect("remove a directory where a file goes");
            }
            fs::write(to, bytes).unwrap_or_else(|e| panic!("write {}: {e}", to.display()));
        }
        return;
    }
    if to.is_file() {
        fs::remove_file(to).expect("remove a file where a directory goes");
    }
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    let mut names = BTreeSet::new();
    for entry in fs::read_dir(from).expect("read a source directory") {
        let name = entry.expect("directory entry").file_name();
        mirror(&from.join(&name), &to.join(&name));
        names.insert(name);
    }
    remove_others(to, &names);
}

/// Removes what `dir` holds besides `keep` (left over from older sources).
fn remove_others(dir: &Path, keep: &BTreeSet<OsString>) {
    for entry in fs::read_dir(dir).expect("read a copied directory") {
        let entry = entry.expect("directory entry");
        if keep.contains(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));
    }
}

/// `to` holds what the Docker build's work directory holds: the copied sources, nothing else.
fn copy_sources(to: &Path) {
    fs::create_dir_all(to).expect("create the copy's directory");
    let sources = docker_build_sources();
    for source in &sources {
        mirror(&repo().join(source), &to.join(source));
    }
    remove_others(to, &sources.iter().map(OsString::from).collect());
    assert!(!to.join(".git").exists());
}

/// How a build is told apart from the other one. The two copies are one package to cargo (it
/// tells path packages apart by their path within their workspace, and each copy is a
/// workspace of its own): built alike, they would share their artifacts and rebuild each other
/// on every run. A debug-info setting for the crate alone, which changes nothing these tests
/// read, gives each its own artifacts while the dependencies are built once for both.
enum Apart {
    FullDebugInfo,
    LineTablesOnly,
}

/// Builds the copy at `sources` with cargo, offline, with `env` added to the environment a
/// shell would give it; the binary it built.
fn build(sources: &Path, apart: Apart, env: &[(&str, &str)]) -> PathBuf {
    let target = work().join("target");
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["build", "--offline", "--locked", "--bin", "pacs_exporter"])
        .current_dir(sources);
    if let Apart::LineTablesOnly = apart {
        command.args([
            "--config",
            "profile.dev.package.pacs_exporter.debug=\"line-tables-only\"",
        ]);
    }
    let output = clean_env(&mut command, env)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo build of the copy at {} failed {}",
        sources.display(),
        describe(&output)
    );
    target.join("debug").join("pacs_exporter")
}

fn version(exe: &Path) -> String {
    let output = Command::new(exe)
        .arg("--version")
        .output()
        .expect("run pacs_exporter --version");
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn first_line(branch: &str, revision: &str) -> String {
    format!(
        "pacs_exporter, version {} (branch: {branch}, revision: {revision})",
        env!("CARGO_PKG_VERSION")
    )
}

/// The Docker build: no repository anywhere above the sources, the revision and branch from
/// the variables the Dockerfile sets. `--version` and `pacs_exporter_build_info` report them.
#[test]
fn without_git_the_revision_and_branch_come_from_the_environment() {
    let _one_build = one_build_at_a_time();
    let sources = work().join("no-git").join("pacs_exporter");
    copy_sources(&sources);
    let parent = sources.parent().expect("a parent directory");
    let ceiling = parent.to_str().expect("a UTF-8 path");
    let no_git = [("GIT_CEILING_DIRECTORIES", ceiling)];
    let found = git(&sources, &["rev-parse", "--git-dir"], &no_git);
    assert!(
        !found.status.success(),
        "git finds a repository from the copy {}",
        describe(&found)
    );
    let head = git(repo(), &["rev-parse", "HEAD"], &[]);
    assert_ne!(stdout(&head), REVISION);

    let exe = build(
        &sources,
        Apart::FullDebugInfo,
        &[
            no_git[0],
            ("PACS_EXPORTER_REVISION", REVISION),
            ("PACS_EXPORTER_BRANCH", BRANCH),
            SOURCE_DATE_EPOCH,
        ],
    );
    let text = version(&exe);
    assert_eq!(
        text.lines().next(),
        Some(first_line(BRANCH, REVISION).as_str()),
        "{text}"
    );
    assert!(text.contains(BUILD_DATE), "{text}");

    let exporter = Binary::start_exe(&exe, "modules:\n  echo:\n    prober: echo\n", &[]);
    let (status, body) = exporter.get("/metrics");
    assert_eq!(status, 200, "{body}");
    let info = body
        .lines()
        .find(|l| l.starts_with("pacs_exporter_build_info{"))
        .unwrap_or_else(|| panic!("no pacs_exporter_build_info in\n{body}"));
    for label in [
        format!("revision=\"{REVISION}\""),
        format!("branch=\"{BRANCH}\""),
    ] {
        assert!(info.contains(&label), "{label} not in {info}");
    }
}

/// Sources inside a repository that does not track them (an archive unpacked under a home
/// directory kept in git): that repository's HEAD says nothing about them. Without the
/// variables the build still succeeds, and says `unknown`.
#[test]
fn in_another_repository_without_the_variables_the_revision_is_unknown() {
    let _one_build = one_build_at_a_time();
    let other = work().join("other-repository");
    let other_head = other_repository(&other);
    let sources = other.join("pacs_exporter");
    copy_sources(&sources);
    let seen = git(&sources, &["rev-parse", "HEAD"], &[]);
    assert_eq!(
        stdout(&seen),
        other_head,
        "git does not see the other repository from the copy {}",
        describe(&seen)
    );

    let text = version(&build(
        &sources,
        Apart::LineTablesOnly,
        &[SOURCE_DATE_EPOCH],
    ));
    assert_eq!(
        text.lines().next(),
        Some(first_line("unknown", "unknown").as_str()),
        "{text}"
    );
    assert!(!text.contains(&other_head), "{text}");
    assert!(text.contains(BUILD_DATE), "{text}");
}

/// A repository of its own at `dir` with one commit (made once, kept between runs); its HEAD.
fn other_repository(dir: &Path) -> String {
    if !dir.join(".git").is_dir() {
        if dir.exists() {
            fs::remove_dir_all(dir).expect("remove a half-made repository");
        }
        fs::create_dir_all(dir).expect("create the repository's directory");
        fs::write(dir.join("README"), "Not pacs_exporter.\n").expect("write a file to commit");
        for args in [
            &["init", "-q"][..],
            &["add", "README"],
            &[
                "-c",
                "user.name=build-info test",
                "-c",
                "user.email=build-info@hospital.example",
                "-c",
                "commit.gpgsign=false",
                "commit",
                "-q",
                "-m",
                "Another project",
            ],
        ] {
            let output = git(dir, args, &[]);
            assert!(
                output.status.success(),
                "git {args:?} {}",
                describe(&output)
            );
        }
    }
    let head = git(dir, &["rev-parse", "HEAD"], &[]);
    assert!(head.status.success(), "{}", describe(&head));
    stdout(&head)
}
