//! The decisions behind the build facts (see build.rs), apart from the build script so that a
//! test target (`build_facts` in Cargo.toml, this file) runs them in process: which revision and
//! branch sources report, whether they are a checkout, and the spellings of dates and
//! platforms. Only std, so that build.rs needs no build-dependency.

use std::path::Path;
use std::process::Command;

/// Whether `dir` is a git checkout of this crate: inside a repository that tracks its
/// Cargo.toml. Sources copied or unpacked into some other repository's tree (a release archive
/// under a home directory kept in git, a copy under an ignored `target/`) are not.
pub fn is_checkout(dir: &Path) -> bool {
    git(dir, &["ls-files", "--error-unmatch", "--", "Cargo.toml"]).is_some()
}

/// Runs `git args…` in `dir`; its trimmed output if it succeeded and printed something.
pub fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}

/// The revision and branch of the sources in `dir`: from git in a checkout of them, else from
/// `PACS_EXPORTER_REVISION` and `PACS_EXPORTER_BRANCH` as `var` reads them (the Docker build,
/// sources unpacked inside some other repository), else `unknown`.
pub fn revision_and_branch(dir: &Path, var: &dyn Fn(&str) -> Option<String>) -> (String, String) {
    let checkout = is_checkout(dir);
    let from_git = |args: &[&str]| checkout.then(|| git(dir, args)).flatten();
    let revision = from_git(&["rev-parse", "HEAD"])
        .or_else(|| var("PACS_EXPORTER_REVISION"))
        .unwrap_or_else(|| "unknown".into());
    let branch = from_git(&["symbolic-ref", "-q", "--short", "HEAD"])
        .or_else(|| var("PACS_EXPORTER_BRANCH"))
        .unwrap_or_else(|| "unknown".into());
    (revision, branch)
}

/// The proleptic Gregorian date of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Rust's architecture names in the spelling of Go's GOARCH, which Prometheus' `platform`
/// uses (`linux/amd64`).
pub fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "loongarch64" => "loong64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn run_git(dir: &Path, args: &[&str]) {
        let status = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .current_dir(dir)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    }

    fn variables(name: &str) -> Option<String> {
        match name {
            "PACS_EXPORTER_REVISION" => Some("0123abcd".into()),
            "PACS_EXPORTER_BRANCH" => Some("release".into()),
            _ => None,
        }
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    /// A checkout reports its own HEAD; the same sources with no git around them, or inside
    /// another repository that does not track them, report the variables, else unknown.
    #[test]
    fn revision_and_branch_come_from_a_checkout_of_these_sources_only() {
        let outer = tempfile::tempdir().expect("temp dir");
        let crate_dir = outer.path().join("pacs_exporter");
        fs::create_dir(&crate_dir).expect("crate dir");
        fs::write(crate_dir.join("Cargo.toml"), "[package]\n").expect("Cargo.toml");

        // No repository anywhere above (a temporary directory): the variables, else unknown.
        assert!(!is_checkout(&crate_dir));
        assert_eq!(
            revision_and_branch(&crate_dir, &variables),
            ("0123abcd".into(), "release".into())
        );
        assert_eq!(
            revision_and_branch(&crate_dir, &none),
            ("unknown".into(), "unknown".into())
        );

        // Inside another repository that does not track these sources: still not a checkout.
        run_git(outer.path(), &["init", "-q"]);
        fs::write(outer.path().join("notes.txt"), "x").expect("notes");
        run_git(outer.path(), &["add", "notes.txt"]);
        run_git(outer.path(), &["commit", "-q", "-m", "other"]);
        assert!(!is_checkout(&crate_dir));
        assert_eq!(
            revision_and_branch(&crate_dir, &none),
            ("unknown".into(), "unknown".into())
        );

        // Tracked: a checkout, whose HEAD and branch win over the variables.
        run_git(outer.path(), &["add", "pacs_exporter/Cargo.toml"]);
        run_git(outer.path(), &["commit", "-q", "-m", "sources"]);
        assert!(is_checkout(&crate_dir));
        let head = git(outer.path(), &["rev-parse", "HEAD"]).expect("a HEAD");
        assert_eq!(head.len(), 40);
        assert_eq!(
            revision_and_branch(&crate_dir, &variables),
            (head, "main".into())
        );
    }

    #[test]
    fn dates_and_platforms_are_spelled_as_prometheus_builds_spell_them() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_423), (2025, 12, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("riscv64"), "riscv64");
    }
}
