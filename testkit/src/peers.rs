//! Real DICOM peers for integration tests.
//!
//! This module starts genuine third-party DICOM servers as child processes on loopback ports,
//! so the exporter is tested against the software it will meet in the field rather than
//! against a mock:
//!
//! - [`Orthanc`]: the Debian `orthanc` package (`/usr/sbin/Orthanc`, 1.10), a full PACS with a
//!   REST API. Load it quickly with [`Orthanc::upload`] (HTTP `POST /instances`).
//! - [`Dcmqrscp`]: DCMTK's `dcmqrscp` (Debian `dcmtk`, 3.6.7), an independent Query/Retrieve SCP.
//!   Load it with [`Dcmqrscp::store_dir`] (runs `storescu`) or [`Dcmqrscp::start_loaded`].
//! - [`Qrscp`]: pynetdicom's bundled `qrscp` application (PyPI `pynetdicom` 3.0.4), a third
//!   implementation with habits of its own, from the virtual environment that
//!   `scripts/python-peers.sh` makes. Load it with [`Qrscp::store_dir`] (runs `storescu`).
//!
//! Every peer gets its own temporary directory (configuration, database, log) and runs under the
//! child-process guard ([`crate::process::Process`]): killed with SIGKILL when its handle is
//! dropped, and the tail of its log printed to stderr if the test is panicking. None of these
//! servers can bind port 0 and say which port it got, so each gets a port outside the kernel's
//! ephemeral range ([`free_port`]) and is started again on fresh ports if another process took
//! it first.
//! Missing binaries make the test fail loudly (see [`require_binary`], and
//! [`require_python_peers`] for qrscp's Python environment); nothing is ever skipped.
//!
//! Peers run with the environment of the test process minus `TCP_NODELAY`, i.e. with Nagle's
//! algorithm on, as users run them. Ask for `TCP_NODELAY=1` explicitly
//! ([`OrthancBuilder::tcp_nodelay`], [`Dcmqrscp::start_tcp_nodelay`]) to measure the protocol's own
//! cost.
//!
//! Everything here is blocking, so it can be used from sync tests and from async tests alike
//! (start peers before entering the runtime or accept the short blocking startup).
//! Only ever connect to `127.0.0.1`: Orthanc has no bind-address option and listens on all
//! interfaces (its HTTP API refuses non-local clients because `RemoteAccessAllowed` is false).


use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::http;
use crate::process::Process;
use tempfile::TempDir;

/// How long Orthanc may take to answer `GET /system` and listen on its DICOM port.
const ORTHANC_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long dcmqrscp may take to listen on its port.
const DCMQRSCP_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long qrscp may take to listen on its port (Python's imports alone take 1–4 s here).
const QRSCP_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Ports already returned by [`free_port`] in this test process, so that two peers started by
/// concurrently running tests never get the same port.
static HANDED_OUT_PORTS: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// How many times a peer is started on fresh ports when the one it was given was taken.
const PORT_ATTEMPTS: usize = 8;

/// Returns a TCP port that is free on every interface now and that the kernel will not hand to
/// anyone else: it lies outside the kernel's ephemeral range (`ip_local_port_range`), from which
/// every outgoing connection and every bind to port 0 on this machine takes its port. A port
/// picked from that range (by binding port 0) can be taken by any connection between the pick
/// and the peer's bind; below it, only a process asking for that very port can take it, and
/// the peers' `start` functions then retry on fresh ports ([`PORT_ATTEMPTS`]).
///
/// Never returns the same port twice within one test process.
pub fn free_port() -> u16 {
    let (first, last) = ports_outside_the_ephemeral_range();
    let span = u32::from(last - first) + 1;
    let mut handed_out = HANDED_OUT_PORTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    // A random start, so that test processes running side by side rarely try the same ports.
    let start = std::hash::BuildHasher::hash_one(
        &std::collections::hash_map::RandomState::new(),
        std::process::id(),
    );
    for i in 0..span {
        let offset = u16::try_from((start + u64::from(i)) % u64::from(span))
            .expect("an offset within a u16 span");
        let port = first + offset;
        if !handed_out.contains(&port) && port_is_bindable(port) {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no free TCP port in {first}..={last}");
}

/// Ports for test peers: below the kernel's ephemeral range (from 10000), or above it where
/// the range starts too low to leave room.
fn ports_outside_the_ephemeral_range() -> (u16, u16) {
    let range = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range.split_whitespace().map(str::parse::<u16>);
    let (low, high) = match (bounds.next(), bounds.next()) {
        (Some(Ok(low)), Some(Ok(high))) => (low, high),
        // Linux's default range.
        _ => (32768, 60999),
    };
    if low > 11_000 {
        (10_000, low - 1)
    } else if high < 64_000 {
        (high + 1, u16::MAX)
    } else {
        panic!(
            "the ephemeral port range {low}-{high} leaves no room for test peers' ports; \
             narrow net.ipv4.ip_local_port_range"
        )
    }
}

/// Finds the executable `name` on `PATH`, then in `/usr/sbin` and `/usr/bin` (`/usr/sbin`, where
/// Debian puts `Orthanc`, is often missing from non-root users' `PATH`).
///
/// Panics with installation instructions naming the Debian `package` if it is not found: tests
/// that need a real peer must fail, never silently skip.
pub fn require_binary(name: &str, package: &str) -> PathBuf {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path_var)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    for dir in dirs {
        let candidate = dir.join(name);
        let executable = fs::metadata(&candidate)
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
        if executable {
            return candidate;
        }
    }
    panic!(
        "{name} not found (looked on PATH, in /usr/sbin and in /usr/bin): install the Debian \
         package `{package}` (apt-get install -y {package}), or run the README's test command as \
         root, which installs it"
    );
}

/// Runs `echoscu -aec <called_aet> 127.0.0.1 <port>` (calling AE title `ECHOSCU`, 10 s connect
/// timeout) and returns its output; check `output.status.success()`.
pub fn run_echoscu(called_aet: &str, port: u16) -> Output {
    let echoscu = require_binary("echoscu", "dcmtk");
    Command::new(&echoscu)
        .args(["-to", "10", "-aec", called_aet, "127.0.0.1"])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", echoscu.display()))
}

// ---------------------------------------------------------------------------------------------
// Orthanc
// ---------------------------------------------------------------------------------------------

/// A running Orthanc server with its own configuration, database and log in a temporary
/// directory. Killed (SIGKILL) and deleted on drop.
pub struct Orthanc {
    /// The DICOM AE title (`DicomAet`; also used as `Name`).
    pub aet: String,
    /// DICOM port, listening on all interfaces; connect to 127.0.0.1.
    pub dicom_port: u16,
    /// HTTP REST API port, answering only local clients.
    pub http_port: u16,
    /// Time from spawning the process to being ready (~40–70 ms here): `GET /system` reports our
    /// ports, and the process itself listens on `dicom_port` and accepts a connection there.
    pub startup: Duration,
    process: Process,
    dir: TempDir,
}

/// Options for starting an [`Orthanc`]; obtained with [`Orthanc::builder`].
#[must_use = "call .start() to start Orthanc"]
pub struct OrthancBuilder {
    aet: String,
    extra_config: Map<String, Value>,
    env: Vec<(String, String)>,
}

impl OrthancBuilder {
    /// Merges the keys of `extra` (a JSON object) into the configuration file, overriding the
    /// defaults, e.g. `json!({"LimitFindResults": 5})` or `json!({"DicomCheckCalledAet": true})`.
    /// `DicomAet`, `DicomPort` and `HttpPort` cannot be overridden (they are the handle's fields).
    pub fn config(mut self, extra: Value) -> Self {
        match extra {
            Value::Object(map) => self.extra_config.extend(map),
            other => panic!("Orthanc extra configuration must be a JSON object, got {other}"),
        }
        self
    }

    /// Sets an environment variable for the Orthanc process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs Orthanc with `TCP_NODELAY=1` (Nagle off on its DICOM connections). Off by default,
    /// since stock installations run with Nagle on.
    pub fn tcp_nodelay(self) -> Self {
        self.env("TCP_NODELAY", "1")
    }

    /// Starts Orthanc and waits until it is ready; panics with its log if it is not. Retries on
    /// fresh ports when one of its ports was taken before it bound them.
    pub fn start(self) -> Orthanc {
        let binary = require_binary("Orthanc", "orthanc");
        retry_on_taken_ports(|_| self.try_start(&binary))
    }

    fn try_start(&self, binary: &Path) -> Result<Orthanc, StartFailure> {
        let dir = tempfile::Builder::new()
            .prefix("orthanc-")
            .tempdir()
            .expect("cannot create a temporary directory for Orthanc");
        let db = dir.path().join("db");
        fs::create_dir(&db).unwrap_or_else(|e| panic!("cannot create {}: {e}", db.display()));
        let dicom_port = free_port();
        let http_port = free_port();

        let mut config = json!({
            "Name": self.aet,
            "StorageDirectory": db,
            "IndexDirectory": db,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomCheckCalledAet": false,
            "DicomAlwaysAllowEcho": true,
            "DicomAlwaysAllowFind": true,
            "DicomAlwaysAllowStore": true,
            "DicomModalities": {},
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "StableAge": 60,
            "SaveJobs": false,
            "Plugins": [],
        });
        let map = config
            .as_object_mut()
            .expect("the default Orthanc configuration is a JSON object");
        map.extend(self.extra_config.clone());
        map.insert("DicomAet".into(), json!(self.aet));
        map.insert("DicomPort".into(), json!(dicom_port));
        map.insert("HttpPort".into(), json!(http_port));

        let config_path = dir.path().join("orthanc.json");
        let config_text = serde_json::to_string_pretty(&config)
            .expect("cannot serialize the Orthanc configuration");
        fs::write(&config_path, config_text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));

        let log_path = dir.path().join("orthanc.log");
        let mut command = Command::new(binary);
        command
            .arg(&config_path)
            .current_dir(dir.path())
            .env_remove("TCP_NODELAY")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let started = Instant::now();
        let name = format!("Orthanc {} (DICOM port {dicom_port})", self.aet);
        let process = Process::spawn(name, &mut command, log_path.clone());
        let mut orthanc = Orthanc {
            aet: self.aet.clone(),
            dicom_port,
            http_port,
            startup: Duration::ZERO,
            process,
            dir,
        };
        let ready = orthanc.process.wait_for(ORTHANC_READY_TIMEOUT, |process| {
            let up = answers_system(http_port, dicom_port)
                && listens_on(process.id(), dicom_port)
                && tcp_connects(dicom_port);
            up.then_some(())
        });
        match ready {
            Ok(()) => {
                orthanc.startup = started.elapsed();
                Ok(orthanc)
            }
            Err(why) => Err(StartFailure::new(
                &format!(
                    "Orthanc (AET {}, DICOM port {dicom_port}, HTTP port {http_port}) did not become \
                     ready: {why}",
                    self.aet
                ),
                &orthanc.process,
            )),
            // `orthanc` is dropped here, which kills the process if it is still running.
        }
    }
}

impl Orthanc {
    /// Starts Orthanc with the default test configuration (see the module documentation), AE
    /// title `aet`, on fresh ports.
    pub fn start(aet: &str) -> Orthanc {
        Orthanc::builder(aet).start()
    }

    /// Like [`Orthanc::start`], with the keys of `extra` merged into the configuration.
    pub fn start_with(aet: &str, extra: Value) -> Orthanc {
        Orthanc::builder(aet).config(extra).start()
    }

    /// Options beyond [`Orthanc::start_with`], e.g. `Orthanc::builder("PACS").tcp_nodelay().start()`.
    pub fn builder(aet: &str) -> OrthancBuilder {
        OrthancBuilder {
            aet: aet.to_owned(),
            extra_config: Map::new(),
            env: Vec::new(),
        }
    }

    /// Stores one DICOM file (Part 10 bytes, with meta header) via `POST /instances`; panics with
    /// Orthanc's answer unless it is 200 (an already stored instance also gives 200).
    pub fn upload(&self, dicom_file_bytes: &[u8]) {
        self.rest(
            "POST",
            "/instances",
            Some("application/dicom"),
            dicom_file_bytes,
        );
    }

    /// One call of the REST API that must answer 200: the answer's body; panics naming the
    /// call, with Orthanc's answer, otherwise.
    fn rest(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
        let (status, answer) = http_request(self.http_port, method, path, content_type, body)
            .unwrap_or_else(|e| panic!("{method} {path} on Orthanc {} failed: {e}", self.aet));
        assert_eq!(
            status,
            200,
            "{method} {path} on Orthanc {} answered {status}: {}",
            self.aet,
            String::from_utf8_lossy(&answer)
        );
        answer
    }

    /// `GET path` on the REST API, parsed as JSON; panics unless the answer is 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let body = self.rest("GET", path, None, &[]);
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "GET {path} on Orthanc {} did not return JSON ({e}): {}",
                self.aet,
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// Orthanc's ID of the study with this Study Instance UID (`POST /tools/lookup`); panics
    /// unless Orthanc holds it.
    fn study_id(&self, study_instance_uid: &str) -> String {
        let (status, body) = http_request(
            self.http_port,
            "POST",
            "/tools/lookup",
            Some("text/plain"),
            study_instance_uid.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("POST /tools/lookup on Orthanc {} failed: {e}", self.aet));
        let found: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        found
            .as_array()
            .and_then(|hits| hits.iter().find(|hit| hit["Type"] == "Study"))
            .and_then(|hit| hit["ID"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                panic!(
                    "Orthanc {} does not hold study {study_instance_uid} (lookup answered {status}: {})",
                    self.aet,
                    String::from_utf8_lossy(&body)
                )
            })
    }

    /// Deletes the study with this Study Instance UID; panics unless Orthanc holds it and
    /// deletes it.
    pub fn delete_study(&self, study_instance_uid: &str) {
        self.delete_study_id(&self.study_id(study_instance_uid));
    }

    fn delete_study_id(&self, id: &str) {
        self.rest("DELETE", &format!("/studies/{id}"), None, &[]);
    }

    /// Rewrites attributes of a stored study as a misfiled copy would carry them: each
    /// instance rewritten with `replace` (e.g. `{"PatientID": "OTHER"}`) through
    /// `POST /instances/{id}/modify`, every UID kept, then the study deleted and the rewritten
    /// files stored in its place (Orthanc refuses a new PatientID at study level); panics unless
    /// Orthanc does each step.
    pub fn modify_study(&self, study_instance_uid: &str, replace: Value) {
        let id = self.study_id(study_instance_uid);
        let instances = self.get_json(&format!("/studies/{id}/instances"));
        let request = serde_json::json!({
            "Replace": replace,
            "Keep": ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"],
            "Force": true,
        })
        .to_string();
        let files: Vec<Vec<u8>> = instances
            .as_array()
            .expect("a list of instances")
            .iter()
            .map(|instance| {
                let instance = instance["ID"].as_str().expect("an instance ID");
                self.rest(
                    "POST",
                    &format!("/instances/{instance}/modify"),
                    Some("application/json"),
                    request.as_bytes(),
                )
            })
            .collect();
        self.delete_study_id(&id);
        for file in files {
            self.upload(&file);
        }
    }

    /// Number of instances stored (length of the array returned by `GET /instances`).
    pub fn count_instances(&self) -> usize {
        match self.get_json("/instances") {
            Value::Array(ids) => ids.len(),
            other => panic!(
                "GET /instances on Orthanc {} returned a non-array: {other}",
                self.aet
            ),
        }
    }

    /// The temporary directory holding the configuration (`orthanc.json`), database (`db/`) and
    /// log (`orthanc.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything Orthanc has logged so far (stdout and stderr), e.g. to look for
    /// "Too many results".
    pub fn log(&self) -> String {
        self.process.log()
    }
}

// ---------------------------------------------------------------------------------------------
// dcmqrscp
// ---------------------------------------------------------------------------------------------

/// A running DCMTK `dcmqrscp` with one storage area (AE title `aet`, read/write, any peer,
/// at most 500 studies / 1024 MB) in a temporary directory. Killed (SIGKILL) and deleted on drop.
///
/// Unlike Orthanc it rejects associations whose *called* AE title is not `aet`. It forks a child
/// per association (the default `--fork` mode); a child serving an association still open when
/// the handle is dropped ends when its peer closes the association.
pub struct Dcmqrscp {
    /// The AE title of the storage area, the only called AE title accepted.
    pub aet: String,
    /// DICOM port, listening on all interfaces; connect to 127.0.0.1.
    pub port: u16,
    /// Time from spawning the (last) process to its listening on `port` (~20–35 ms here).
    pub startup: Duration,
    tcp_nodelay: bool,
    process: Process,
    dir: TempDir,
}

impl Dcmqrscp {
    /// Starts dcmqrscp as users run it (Nagle on) on a fresh port.
    pub fn start(aet: &str) -> Dcmqrscp {
        Dcmqrscp::start_inner(aet, false)
    }

    /// Starts dcmqrscp with `TCP_NODELAY=1` in its environment (Nagle off).
    pub fn start_tcp_nodelay(aet: &str) -> Dcmqrscp {
        Dcmqrscp::start_inner(aet, true)
    }

    /// Starts dcmqrscp with Nagle off, stores every DICOM file under `dicom_dir` (recursively),
    /// then restarts it as users run it (Nagle on) on the same database. This is ~50x faster than
    /// [`Dcmqrscp::start`] + [`Dcmqrscp::store_dir`], where a stock dcmqrscp stalls ~40 ms per file
    /// on delayed ACKs. The port normally stays the same but may change if it was taken meanwhile.
    pub fn start_loaded(aet: &str, dicom_dir: &Path) -> Dcmqrscp {
        let mut scp = Dcmqrscp::start_tcp_nodelay(aet);
        scp.store_dir(dicom_dir);
        scp.restart(false);
        scp
    }

    fn start_inner(aet: &str, tcp_nodelay: bool) -> Dcmqrscp {
        let binary = require_binary("dcmqrscp", "dcmtk");
        let dir = tempfile::Builder::new()
            .prefix("dcmqrscp-")
            .tempdir()
            .expect("cannot create a temporary directory for dcmqrscp");
        let db = dir.path().join("db");
        fs::create_dir(&db).unwrap_or_else(|e| panic!("cannot create {}: {e}", db.display()));
        let port = free_port();
        let (process, startup, port) = spawn_dcmqrscp(&binary, aet, dir.path(), port, tcp_nodelay);
        Dcmqrscp {
            aet: aet.to_owned(),
            port,
            startup,
            tcp_nodelay,
            process,
            dir,
        }
    }

    /// Kills the server and starts it again on the same database (and port, unless it was taken
    /// meanwhile), with or without `TCP_NODELAY=1`.
    pub fn restart(&mut self, tcp_nodelay: bool) {
        self.process.stop();
        // Children forked for associations still open may hold the inherited listening socket
        // for a moment; give them a chance to finish so that the port can stay the same.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !port_is_bindable(self.port) && Instant::now() < deadline {
            std::thread::sleep(POLL_INTERVAL);
        }
        let binary = require_binary("dcmqrscp", "dcmtk");
        let (process, startup, port) =
            spawn_dcmqrscp(&binary, &self.aet, self.dir.path(), self.port, tcp_nodelay);
        self.process = process;
        self.startup = startup;
        self.port = port;
        self.tcp_nodelay = tcp_nodelay;
    }

    /// Sends every file under `dicom_dir` (recursively) with
    /// `storescu -aec <aet> +sd +r 127.0.0.1 <port> <dicom_dir>`, panicking with storescu's output
    /// if it fails or reports an error. storescu itself runs with `TCP_NODELAY=1` (it is only the
    /// loader, not a peer under test). Against a stock server expect ~45 ms per file.
    /// Note that dcmqrscp keeps at most 500 studies and replaces an instance stored twice.
    pub fn store_dir(&self, dicom_dir: &Path) {
        store_with_storescu(
            "dcmqrscp",
            &self.aet,
            self.port,
            dicom_dir,
            &self.process,
        );
    }

    /// Directory of the storage area (the files and `index.dat`).
    pub fn db_dir(&self) -> PathBuf {
        self.dir.path().join("db")
    }

    /// Whether the server currently runs with `TCP_NODELAY=1`.
    pub fn is_tcp_nodelay(&self) -> bool {
        self.tcp_nodelay
    }

    /// Everything dcmqrscp has logged so far (by default only warnings and errors).
    pub fn log(&self) -> String {
        self.process.log()
    }
}

// ---------------------------------------------------------------------------------------------
// pynetdicom's qrscp
// ---------------------------------------------------------------------------------------------

/// A running `qrscp`, the Query/Retrieve SCP bundled with pynetdicom (`python -m pynetdicom
/// qrscp`, on SQLAlchemy + SQLite), from the virtual environment `scripts/python-peers.sh`
/// makes at `target/python-peers`. Its SQLite database, instance directory and log are in a
/// temporary directory; it listens on 127.0.0.1 only and is killed (SIGKILL) on drop.
///
/// What it does (pynetdicom 3.0.4), unlike Orthanc and dcmqrscp: it accepts any called AE
/// title; it answers a STUDY-level C-FIND with one match per *instance* of each matching
/// study, and without NumberOfStudyRelatedInstances; it drops ModalitiesInStudy (and every
/// other optional key) from the query; and it fails a multi-valued StudyInstanceUID (UID list
/// matching) with status 0xC320, its database rejecting the list as a parameter.
pub struct Qrscp {
    /// Its own AE title (any called AE title is accepted).
    pub aet: String,
    /// DICOM port on 127.0.0.1.
    pub port: u16,
    /// Time from spawning the process to its listening on `port` (seconds: Python imports
    /// pydicom, pynetdicom and SQLAlchemy first).
    pub startup: Duration,
    process: Process,
    /// Held until drop, after the server: its database, instances and log.
    _dir: TempDir,
}

impl Qrscp {
    /// Starts qrscp with an empty database on a fresh port and waits until it listens; panics
    /// with its log if it does not, or with the install command if the environment is missing.
    pub fn start(aet: &str) -> Qrscp {
        let python = require_python_peers();
        let dir = tempfile::Builder::new()
            .prefix("qrscp-")
            .tempdir()
            .expect("cannot create a temporary directory for qrscp");
        let (process, startup, port) = spawn_qrscp(&python, aet, dir.path());
        Qrscp {
            aet: aet.to_owned(),
            port,
            startup,
            process,
            _dir: dir,
        }
    }

    /// [`Qrscp::start`], then [`Qrscp::store_dir`] of `dicom_dir`.
    pub fn start_loaded(aet: &str, dicom_dir: &Path) -> Qrscp {
        let qrscp = Qrscp::start(aet);
        qrscp.store_dir(dicom_dir);
        qrscp
    }

    /// Sends every file under `dicom_dir` (recursively) with
    /// `storescu -aec <aet> +sd +r 127.0.0.1 <port> <dicom_dir>`, as [`Dcmqrscp::store_dir`]
    /// does, panicking with storescu's output and qrscp's log if it fails or reports an error.
    pub fn store_dir(&self, dicom_dir: &Path) {
        store_with_storescu(
            "qrscp",
            &self.aet,
            self.port,
            dicom_dir,
            &self.process,
        );
    }

    /// Everything qrscp has logged so far (level info: associations, each C-FIND identifier,
    /// each stored instance, errors with their tracebacks).
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Starts qrscp with its database, instance directory and log in `dir`, on a free port, retrying
/// once on a fresh port if that one was taken. Returns the process, its startup time and the port.
fn spawn_qrscp(python: &Path, aet: &str, dir: &Path) -> (Process, Duration, u16) {
    let attempt = |port: u16| -> Result<(Process, Duration), StartFailure> {
        let log_path = dir.join("qrscp.log");
        let mut command = Command::new(python);
        command
            .args(["-m", "pynetdicom", "qrscp", "-ll", "info", "-aet", aet])
            .args(["--bind-address", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--database-location")
            .arg(dir.join("instances.sqlite"))
            .arg("--instance-location")
            .arg(dir.join("instances"))
            .current_dir(dir)
            .env_remove("TCP_NODELAY")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let what = format!("qrscp (AET {aet}, port {port})");
        spawn_listening_on(&mut command, &log_path, port, QRSCP_READY_TIMEOUT, &what)
    };
    start_retrying_on_fresh_port(free_port(), attempt)
}

/// The Python of the test peers' virtual environment, `target/python-peers` in the repository.
///
/// Panics with the command that makes it if it is missing or was not completed: tests that
/// need these peers must fail, never silently skip.
pub fn require_python_peers() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-peers");
    let python = venv.join("bin/python");
    // The install script writes its list of pins last, once everything is in place.
    if !venv.join("pinned.txt").is_file() || !python.is_file() {
        panic!(
            "the Python test peers (pynetdicom's qrscp) are not installed in {}: run \
             `bash scripts/python-peers.sh` in the repository (scripts/test.sh runs it)",
            venv.display()
        );
    }
    python
}

/// DCMTK's `wlmscpfs`: a Modality Worklist SCP serving `.wl` files, which are written from
/// DCMTK dump text with `dump2dcm` (as worklist files are usually made).
pub struct Wlmscpfs {
    pub aet: String,
    pub port: u16,
    /// Held until drop: the server, then its files.
    _process: Process,
    _dir: TempDir,
}

impl Wlmscpfs {
    /// Starts wlmscpfs on a free port serving one worklist file per dump text in `items`.
    pub fn start(aet: &str, items: &[String]) -> Wlmscpfs {
        let binary = require_binary("wlmscpfs", "dcmtk");
        let dump2dcm = require_binary("dump2dcm", "dcmtk");
        let dir = tempfile::Builder::new()
            .prefix("wlmscpfs-")
            .tempdir()
            .expect("cannot create a temporary directory for wlmscpfs");
        let worklist = dir.path().join("data").join(aet);
        fs::create_dir_all(&worklist)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", worklist.display()));
        fs::write(worklist.join("lockfile"), "").expect("cannot write the worklist lockfile");
        for (i, item) in items.iter().enumerate() {
            let dump = dir.path().join(format!("item{i}.dump"));
            fs::write(&dump, item).expect("cannot write a worklist dump");
            let out = worklist.join(format!("item{i}.wl"));
            let output = Command::new(&dump2dcm)
                .arg(&dump)
                .arg(&out)
                .output()
                .unwrap_or_else(|e| panic!("cannot run dump2dcm: {e}"));
            assert!(
                output.status.success(),
                "dump2dcm failed for item {i}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let data = dir.path().join("data");
        let command = |port: u16| {
            let mut command = Command::new(&binary);
            command.arg("-dfp").arg(&data).arg(port.to_string());
            command
        };
        let (process, port) = spawn_listening(command, &dir.path().join("wlmscpfs.log"), "wlmscpfs");
        Wlmscpfs {
            aet: aet.to_owned(),
            port,
            _process: process,
            _dir: dir,
        }
    }
}

/// DCMTK's `storescp` speaking DICOM over TLS (`+tls KEY CERT`): a real TLS peer for C-ECHO.
pub struct StorescpTls {
    pub aet: String,
    pub port: u16,
    process: Process,
    /// Held until drop, after the server.
    _dir: TempDir,
}

impl StorescpTls {
    /// Starts storescp with the PEM `key` and `cert`. With `client_ca`, it requires client
    /// certificates signed by that CA; without, it ignores them.
    pub fn start(aet: &str, key: &str, cert: &str, client_ca: Option<&str>) -> StorescpTls {
        let binary = require_binary("storescp", "dcmtk");
        let dir = tempfile::Builder::new()
            .prefix("storescp-tls-")
            .tempdir()
            .expect("cannot create a temporary directory for storescp");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        };
        let (key, cert) = (write("server.key", key), write("server.crt", cert));
        let out = dir.path().join("received");
        fs::create_dir(&out).expect("cannot create the storescp output directory");
        let clients = client_ca.map(|ca| write("clients.crt", ca));
        let command = |port: u16| {
            let mut command = Command::new(&binary);
            command.arg("+tls").arg(&key).arg(&cert).arg("-pw");
            match &clients {
                Some(clients) => {
                    command.arg("-rc").arg("+cf").arg(clients);
                }
                None => {
                    command.arg("-ic");
                }
            }
            command
                .args(["-aet", aet, "-od"])
                .arg(&out)
                .arg(port.to_string());
            command
        };
        let (process, port) =
            spawn_listening(command, &dir.path().join("storescp.log"), "storescp +tls");
        StorescpTls {
            aet: aet.to_owned(),
            port,
            process,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Sends every file under `dicom_dir` (recursively) with
/// `storescu -aec <aet> +sd +r 127.0.0.1 <port> <dicom_dir>`, panicking with storescu's output
/// and the log of the receiving `peer` (a program name; it logs to `peer_log`) if it fails or
/// reports an error. storescu itself runs with `TCP_NODELAY=1` (it is only the loader, not a peer under
/// test).
fn store_with_storescu(peer: &str, aet: &str, port: u16, dicom_dir: &Path, process: &Process) {
    let storescu = require_binary("storescu", "dcmtk");
    let output = Command::new(&storescu)
        .args(["-aec", aet, "+sd", "+r", "127.0.0.1"])
        .arg(port.to_string())
        .arg(dicom_dir)
        .env("TCP_NODELAY", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", storescu.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reported_error = stdout
        .lines()
        .chain(stderr.lines())
        .any(|line| line.starts_with("E:") || line.starts_with("F:"));
    assert!(
        output.status.success() && !reported_error,
        "storescu of {} to {peer} {aet} on port {port} failed ({}):\n--- stdout ---\n{stdout}\
             \n--- stderr ---\n{stderr}\n--- {peer} log ---\n{}",
        dicom_dir.display(),
        output.status,
        process.log()
    );
}

/// Starts a DCMTK server (Nagle on, as users run it), made by `command` for a port, with its
/// output in `log_path`, and waits until it listens; retries on fresh ports while the port it
/// was given is taken, and panics with its log if it does not start. Returns it and its port.
fn spawn_listening(command: impl Fn(u16) -> Command, log_path: &Path, what: &str) -> (Process, u16) {
    let attempt = |port: u16| -> Result<(Process, Duration), StartFailure> {
        let mut command = command(port);
        command.env_remove("TCP_NODELAY");
        let what = format!("{what} (port {port})");
        spawn_listening_on(&mut command, log_path, port, DCMQRSCP_READY_TIMEOUT, &what)
    };
    let (process, _, port) = start_retrying_on_fresh_port(free_port(), attempt);
    (process, port)
}

/// Spawns `command` with its output in `log_path` and waits until it listens on `port`;
/// returns it and how long that took, or, killed, why it did not start (`what`: the peer).
fn spawn_listening_on(
    command: &mut Command,
    log_path: &Path,
    port: u16,
    timeout: Duration,
    what: &str,
) -> Result<(Process, Duration), StartFailure> {
    let started = Instant::now();
    let mut process = Process::spawn(what, command, log_path.to_path_buf());
    match process.wait_for(timeout, |process| listens_on(process.id(), port).then_some(())) {
        Ok(()) => Ok((process, started.elapsed())),
        Err(why) => {
            process.stop();
            Err(StartFailure::new(
                &format!("{what} did not become ready: {why}"),
                &process,
            ))
        }
    }
}

/// Writes dcmqrscp's configuration for `port` into `dir` and starts it there, retrying once on a
/// fresh port if `port` is in use. Returns the process, its startup time and the port used.
fn spawn_dcmqrscp(
    binary: &Path,
    aet: &str,
    dir: &Path,
    port: u16,
    tcp_nodelay: bool,
) -> (Process, Duration, u16) {
    let attempt = |port: u16| -> Result<(Process, Duration), StartFailure> {
        let config_path = dir.join("dcmqrscp.cfg");
        let config = format!(
            "NetworkTCPPort  = {port}\n\
             MaxPDUSize      = 16384\n\
             MaxAssociations = 16\n\
             HostTable BEGIN\n\
             HostTable END\n\
             VendorTable BEGIN\n\
             VendorTable END\n\
             AETable BEGIN\n\
             {aet}   {db}   RW  (500, 1024mb)  ANY\n\
             AETable END\n",
            db = dir.join("db").display()
        );
        fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        let log_path = dir.join("dcmqrscp.log");
        let mut command = Command::new(binary);
        command.arg("-c").arg(&config_path).current_dir(dir);
        if tcp_nodelay {
            command.env("TCP_NODELAY", "1");
        } else {
            command.env_remove("TCP_NODELAY");
        }
        let what = format!("dcmqrscp (AET {aet}, port {port})");
        spawn_listening_on(&mut command, &log_path, port, DCMQRSCP_READY_TIMEOUT, &what)
    };
    start_retrying_on_fresh_port(port, attempt)
}

/// Runs `attempt` on `port` and, while the peer finds its port taken, again on fresh ports
/// ([`retry_on_taken_ports`]). Returns the process, its startup time and the port it listens on.
fn start_retrying_on_fresh_port(
    port: u16,
    attempt: impl Fn(u16) -> Result<(Process, Duration), StartFailure>,
) -> (Process, Duration, u16) {
    retry_on_taken_ports(|tries| {
        let port = if tries == 0 { port } else { free_port() };
        attempt(port).map(|(process, startup)| (process, startup, port))
    })
}

/// Starts a peer with `attempt` (given how many attempts came before, so that each can pick
/// fresh ports) and, while the peer finds a port taken (another process bound it between
/// free_port() and the peer's bind), once more, [`PORT_ATTEMPTS`] times in all; panics with
/// the peer's log if it did not start.
fn retry_on_taken_ports<T>(attempt: impl Fn(usize) -> Result<T, StartFailure>) -> T {
    let mut taken = Vec::new();
    loop {
        match attempt(taken.len()) {
            Ok(started) => return started,
            Err(failure) if failure.port_in_use && taken.len() + 1 < PORT_ATTEMPTS => {
                taken.push(failure.message);
            }
            Err(failure) => panic!("{}{}", failure.message, earlier_attempts(&taken)),
        }
    }
}

/// The failures of earlier attempts on taken ports, for a panic message.
fn earlier_attempts(taken: &[String]) -> String {
    taken
        .iter()
        .map(|message| format!("\n(an earlier attempt found its port taken: {message})"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Process plumbing
// ---------------------------------------------------------------------------------------------

/// Why a peer did not start; `port_in_use` asks for a retry on fresh ports.
struct StartFailure {
    message: String,
    port_in_use: bool,
}

impl StartFailure {
    fn new(headline: &str, process: &Process) -> StartFailure {
        let log = process.log();
        StartFailure {
            port_in_use: log.contains("already in use"),
            message: format!("{headline}\n--- its log ---\n{log}--- end of log ---"),
        }
    }
}

/// Whether `GET /system` on 127.0.0.1:`http_port` answers 200 with *our* ports: proves that the
/// answer comes from the Orthanc we started, not from whoever else might hold the port.
fn answers_system(http_port: u16, dicom_port: u16) -> bool {
    let Ok((200, body)) = http_request(http_port, "GET", "/system", None, &[]) else {
        return false;
    };
    let Ok(system) = serde_json::from_slice::<Value>(&body) else {
        return false;
    };
    system["HttpPort"] == json!(http_port) && system["DicomPort"] == json!(dicom_port)
}

/// Whether process `pid` itself holds a TCP socket listening on `port` (Linux `/proc`).
///
/// A plain connect cannot tell who accepted it: after a restart, children that dcmqrscp forked
/// for associations keep the old listening socket for a while, and a port taken by another
/// process also accepts. A bare connect also makes dcmqrscp log a spurious
/// "E: Association Reject Failed ... state 1 event 7", which this check avoids.
fn listens_on(pid: u32, port: u16) -> bool {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) && *state == "0A" {
                if let Ok(inode) = inode.parse::<u64>() {
                    inodes.push(inode);
                }
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .ok()
            .and_then(|target| {
                target
                    .to_str()?
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            })
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

/// Whether `port` can be bound on all interfaces right now (the peers listen on all of them).
fn port_is_bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// Whether a TCP connection to 127.0.0.1:`port` succeeds.
fn tcp_connects(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// One request to Orthanc's REST API at 127.0.0.1:`port`: the status code and body.
fn http_request(
    port: u16,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> io::Result<(u16, Vec<u8>)> {
    let mut request = http::Request::method(method, path);
    if let Some(content_type) = content_type {
        request = request.body(content_type, body);
    }
    let answer = http::send(port, request)?;
    Ok((answer.status, answer.body))
}
