//! `echo`: one echo probe round trip, next to DCMTK's `echoscu` (a process per check, as cron
//! scripts run it) and pynetdicom (associate, C-ECHO, release in one Python process, as the
//! predecessor's scripts did), against stock Orthanc (Nagle on) and Orthanc with Nagle off.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{connect, fetch, probe_path, Exporter};
use crate::report::{ms, Context, Samples, Section, Table};
use crate::Options;
use testkit::peers::{require_binary, require_python_peers, Orthanc};

/// Echoes in one pynetdicom process: one line per echo, its seconds (or `failed`).
const PYNETDICOM_ECHO: &str = r#"
import sys, time
from pynetdicom import AE
from pynetdicom.sop_class import Verification

port, called, runs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ae = AE(ae_title="PACS_EXPORTER")
ae.add_requested_context(Verification)
for _ in range(runs):
    start = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    ok = assoc.is_established and assoc.send_c_echo().Status == 0
    if assoc.is_established:
        assoc.release()
    print(time.perf_counter() - start if ok else "failed", flush=True)
"#;

/// Echoes per tool and peer: the exporter's are cheap, so it gets more.
fn runs(options: &Options) -> (usize, usize) {
    (options.runs * 10, options.runs * 2)
}

pub async fn run(options: &Options, context: &Context) -> Section {
    let mut section = Section::new("echo", "Echo: one round trip", context);
    let (exporter_runs, tool_runs) = runs(options);
    section.say(format!(
        "One C-ECHO against the same Orthanc, timed from the caller: the exporter's \
         `/probe?module=echo` over a kept-alive HTTP connection, as Prometheus sends it \
         ({exporter_runs} runs; `probe_duration_seconds` is the exporter's own clock); DCMTK's \
         `echoscu -aec ORTHANC 127.0.0.1 PORT`, one process per check as a cron script runs it \
         ({tool_runs} runs); pynetdicom 3.0.4 associating, echoing and releasing {tool_runs} \
         times in one Python process (only the echoes are timed, not the interpreter's start). \
         Medians, with min–max in brackets."
    ));
    let python = python();
    let modules = "modules:\n  echo:\n    prober: echo\n    timeout: 5s\n";
    let (exporter, _) = Exporter::start(&context.binary, modules, &[]).await;
    let mut table = Table::new(&[
        "peer",
        "exporter `/probe`",
        "`probe_duration_seconds`",
        "`echoscu`",
        "pynetdicom",
        "`echoscu` ÷ exporter",
        "pynetdicom ÷ exporter",
    ]);
    let mut stock = None;
    for (name, nagle_off) in [
        ("stock Orthanc (Nagle on)", false),
        ("Orthanc, Nagle off", true),
    ] {
        let mut builder = Orthanc::builder("ORTHANC");
        if nagle_off {
            builder = builder.tcp_nodelay();
        }
        let orthanc = builder.start();
        let port = orthanc.dicom_port;
        let target = format!("ORTHANC@127.0.0.1:{port}");
        let (round_trip, probe) = exporter_echoes(&exporter, &target, exporter_runs).await;
        let echoscu = echoscu(port, tool_runs);
        let pynetdicom = pynetdicom(&python, port, tool_runs);
        table.row(vec![
            name.to_string(),
            round_trip.ms_spread(),
            ms(probe.median()),
            echoscu.ms_spread(),
            pynetdicom.ms_spread(),
            format!("{:.0}×", echoscu.median() / round_trip.median()),
            format!("{:.0}×", pynetdicom.median() / round_trip.median()),
        ]);
        if !nagle_off {
            stock = Some((round_trip.median(), echoscu.median()));
        }
    }
    section.table(&table);
    section.say(
        "With Nagle on, each DIMSE exchange of a DCMTK-based server can stall ~40 ms on a \
         delayed ACK; the exporter sets TCP_NODELAY and TCP_QUICKACK on its side, which is \
         what keeps its round trip short against a stock server.",
    );
    if let Some((exporter, echoscu)) = stock {
        section.target(
            "Echo faster than `echoscu` against the same stock server",
            exporter < echoscu,
            format!(
                "Exporter round trip {} against `echoscu` {}.",
                ms(exporter),
                ms(echoscu)
            ),
        );
    }
    section
}

/// The pynetdicom venv's Python, made by `scripts/python-peers.sh` when missing.
fn python() -> std::path::PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/python-peers.sh");
    let status = Command::new("bash")
        .arg(script)
        .status()
        .expect("bash runs");
    assert!(status.success(), "{script} failed");
    require_python_peers()
}

/// Round trips seen by the client on one kept-alive connection, and the exporter's clock.
async fn exporter_echoes(exporter: &Exporter, target: &str, runs: usize) -> (Samples, Samples) {
    let path = probe_path("echo", target);
    let mut connection = connect(exporter.port)
        .await
        .expect("connect to the exporter");
    let (mut round_trip, mut probe) = (Samples::default(), Samples::default());
    // One probe first, unmeasured: the exporter's first resolution and allocations.
    let _ = fetch(&mut connection, &path, None, Instant::now()).await;
    for _ in 0..runs {
        let (answer, body) = fetch(&mut connection, &path, None, Instant::now())
            .await
            .expect("the exporter answers");
        assert!(answer.success, "echo probe of {target} failed:\n{body}");
        round_trip.push_duration(answer.elapsed);
        probe.push(answer.probe_seconds.unwrap_or(f64::NAN));
    }
    (round_trip, probe)
}

fn echoscu(port: u16, runs: usize) -> Samples {
    let binary = require_binary("echoscu", "dcmtk");
    let mut samples = Samples::default();
    for _ in 0..runs {
        let start = Instant::now();
        let output = Command::new(&binary)
            .args(["-aet", "PACS_EXPORTER", "-aec", "ORTHANC", "127.0.0.1"])
            .arg(port.to_string())
            .output()
            .expect("echoscu runs");
        samples.push_duration(start.elapsed());
        assert!(
            output.status.success(),
            "echoscu failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    samples
}

fn pynetdicom(python: &std::path::Path, port: u16, runs: usize) -> Samples {
    let output = Command::new(python)
        .args(["-c", PYNETDICOM_ECHO, &port.to_string(), "ORTHANC"])
        .arg(runs.to_string())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && !stdout.contains("failed"),
        "pynetdicom echo failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut samples = Samples::default();
    for line in stdout.lines() {
        if let Ok(seconds) = line.trim().parse::<f64>() {
            samples.push_duration(Duration::from_secs_f64(seconds));
        }
    }
    samples
}
