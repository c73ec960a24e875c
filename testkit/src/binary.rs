//! The real `pacs_exporter` binary, started on a free loopback port with a config file, and a
//! small blocking HTTP client to talk to it.


use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::free_port;

pub struct Binary {
    pub port: u16,
    pub config: PathBuf,
    log: PathBuf,
    child: Child,
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

    /// As [`Binary::start`], with the exporter built at `exe` (another build of this crate).
    pub fn start_exe(exe: &Path, config: &str, args: &[&str]) -> Binary {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_path = dir.path().join("modules.yml");
        std::fs::write(&config_path, config).expect("write config");
        let log = dir.path().join("exporter.log");
        let port = free_port();
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(exe)
            .arg("--config.file")
            .arg(&config_path)
            .arg("--web.listen-address")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start pacs_exporter");
        let mut binary = Binary {
            port,
            config: config_path,
            log,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while binary.try_get("/-/healthy").map(|(s, _)| s) != Some(200) {
            if let Ok(Some(status)) = binary.child.try_wait() {
                panic!("pacs_exporter exited ({status}):\n{}", binary.log());
            }
            assert!(
                Instant::now() < deadline,
                "pacs_exporter did not start:\n{}",
                binary.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        binary
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the exporter has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit; its exit code, `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
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

impl Drop for Binary {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- pacs_exporter log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
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
