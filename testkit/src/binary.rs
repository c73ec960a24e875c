//! The real `pacs_exporter` binary, started on 127.0.0.1 port 0 with a config file: it binds a
//! port the kernel picks and logs it (`listening address=…`), so no other process takes it
//! first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::Process;

/// How long the exporter may take to listen and answer `/-/healthy`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Binary {
    pub port: u16,
    pub config: PathBuf,
    pub process: Process,
    _dir: tempfile::TempDir,
}

/// The exporter cargo built beside the running test binary: cargo puts test binaries in
/// `target/<profile>/deps/` and the crate's binaries one folder up, and builds them before it
/// runs an integration test.
pub fn exporter_exe() -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let profile = test
        .parent()
        .and_then(Path::parent)
        .expect("the test binary sits in target/<profile>/deps");
    let exe = profile.join(format!("pacs_exporter{}", std::env::consts::EXE_SUFFIX));
    assert!(exe.is_file(), "{} is not built", exe.display());
    exe
}

impl Binary {
    /// Starts the exporter with `config` as its modules.yml and `args` besides; waits until
    /// `/-/healthy` answers.
    pub fn start(config: &str, args: &[&str]) -> Binary {
        Binary::start_exe(&exporter_exe(), config, args)
    }

    /// As [`Binary::start`], with these environment variables set (`TZ`, …).
    pub fn start_with_env(config: &str, args: &[&str], env: &[(&str, &str)]) -> Binary {
        Binary::launch(&exporter_exe(), config, args, env)
    }

    /// As [`Binary::start`], with the exporter built at `exe` (another build of this crate).
    pub fn start_exe(exe: &Path, config: &str, args: &[&str]) -> Binary {
        Binary::launch(exe, config, args, &[])
    }

    fn launch(exe: &Path, config: &str, args: &[&str], env: &[(&str, &str)]) -> Binary {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("modules.yml");
        std::fs::write(&config_path, config).expect("write config");
        let mut process = Process::spawn(
            "pacs_exporter",
            Command::new(exe)
                .arg("--config.file")
                .arg(&config_path)
                .args(["--web.listen-address", "127.0.0.1:0"])
                .args(args)
                .envs(env.iter().copied()),
            dir.path().join("exporter.log"),
        );
        let port = process.reported_address(START_TIMEOUT).port();
        let healthy = process.wait_for(START_TIMEOUT, |_| {
            (http(port, "GET", "/-/healthy").map(|(status, _)| status) == Some(200)).then_some(())
        });
        if let Err(why) = healthy {
            panic!("pacs_exporter did not start: {why}\n{}", process.log());
        }
        Binary {
            port,
            config: config_path,
            process,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the exporter has logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Waits up to `limit` for the process to exit; its exit code, `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        self.process.wait_exit(limit).and_then(|status| status.code())
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("GET {path} failed:\n{}", self.log()))
    }

    pub fn post(&self, path: &str) -> (u16, String) {
        http(self.port, "POST", path)
            .unwrap_or_else(|| panic!("POST {path} failed:\n{}", self.log()))
    }

    fn try_get(&self, path: &str) -> Option<(u16, String)> {
        http(self.port, "GET", path)
    }
}

/// One request to 127.0.0.1:`port`: (status, body); `None` when nothing answered.
pub fn http(port: u16, method: &str, path: &str) -> Option<(u16, String)> {
    let answer = crate::http::send(port, crate::http::Request::method(method, path)).ok()?;
    Some((answer.status, answer.text()))
}

/// Writes a file next to nothing in particular; for configs the binary reads again.
pub fn rewrite(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
