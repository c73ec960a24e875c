//! Benchmark: a send_check probe between two stock Orthanc instances, next to DCMTK `findscu`
//! running the same queries.
//!
//!     cargo run --release --example bench_send_check -- [STUDIES...]
//!
//! For each study count (default 100 and 2000) it starts a source and a destination Orthanc on
//! loopback (Nagle on, as users run them), loads generated studies (~3 instances each; the
//! destination lacks every tenth study), runs the probe five times per destination strategy and
//! the `findscu` pair (the same two STUDY-level queries, source then destination, one after the
//! other) five times, and prints the medians, the ratio probe / pair, and the queries the probe
//! sent to each side. Needs Debian's `orthanc` and `dcmtk`.

#[path = "../tests/support/exporter.rs"]
mod exporter;
#[path = "../tests/support/peers.rs"]
mod peers;
#[path = "../tests/support/studies.rs"]
mod studies;

use std::process::Command;
use std::time::{Duration, Instant};

use exporter::Exporter;
use peers::{require_binary, Orthanc};

const RUNS: usize = 5;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn findscu(aet: &str, port: u16, date_range: &str) -> Duration {
    let binary = require_binary("findscu", "dcmtk");
    let start = Instant::now();
    let output = Command::new(binary)
        .args(["-S", "-aet", "PACS_EXPORTER", "-aec", aet])
        .args(["-k", "QueryRetrieveLevel=STUDY"])
        .args(["-k", &format!("StudyDate={date_range}")])
        .args([
            "-k",
            "StudyInstanceUID",
            "-k",
            "NumberOfStudyRelatedInstances",
        ])
        .args([
            "-k",
            "StudyTime",
            "-k",
            "PatientName",
            "-k",
            "PatientID",
            "-k",
            "StudyID",
        ])
        .args(["-k", "AccessionNumber", "-k", "ModalitiesInStudy"])
        .arg("127.0.0.1")
        .arg(port.to_string())
        .output()
        .expect("findscu runs");
    let elapsed = start.elapsed();
    assert!(
        output.status.success(),
        "findscu failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![100, 2000]
    } else {
        counts
    };
    println!(
        "studies  instances  strategy     probe_median  probe_min  findscu_pair  ratio  queries(source; destination)  missing"
    );
    for n in counts {
        let source = Orthanc::start("SOURCE");
        let destination = Orthanc::start("ARCHIVE");
        // Studies are stamped in UTC and the module says so (`timezone: UTC`), as a site that
        // sets its zone does; one more run leaves it unset (the probe then asks the source for
        // TimezoneOffsetFromUTC, which Orthanc answers by reading every study's files).
        let now = chrono::Utc::now().naive_utc();
        let when: Vec<(String, String)> = (0..48)
            .map(|i| {
                let t = now - chrono::Duration::minutes(15 + 25 * i);
                (
                    t.format("%Y%m%d").to_string(),
                    t.format("%H%M%S").to_string(),
                )
            })
            .collect();
        let generated = studies::generate(n, 42, &when);
        let mut instances = 0;
        for (i, study) in generated.iter().enumerate() {
            for bytes in study.instances() {
                source.upload(&bytes);
                if i % 10 != 0 {
                    destination.upload(&bytes);
                }
                instances += 1;
            }
        }
        let range = format!(
            "{}-{}",
            (now - chrono::Duration::hours(24)).format("%Y%m%d"),
            now.format("%Y%m%d")
        );
        let pair: Vec<Duration> = (0..RUNS)
            .map(|_| {
                findscu("SOURCE", source.dicom_port, &range)
                    + findscu("ARCHIVE", destination.dicom_port, &range)
            })
            .collect();
        let pair = median(pair);
        for (strategy, zone) in [
            ("auto", "UTC"),
            ("date_range", "UTC"),
            ("uid_list", "UTC"),
            ("per_study", "UTC"),
            ("auto", ""),
        ] {
            let zone_key = if zone.is_empty() {
                String::new()
            } else {
                format!("      timezone: {zone}\n")
            };
            let config = format!(
                "modules:\n  check:\n    prober: send_check\n    timeout: 120s\n    send_check:\n      destination: ARCHIVE@127.0.0.1:{}\n      destination_query: {strategy}\n      max_listed_studies: 10\n{zone_key}",
                destination.dicom_port
            );
            let strategy = if zone.is_empty() {
                "auto, no tz"
            } else {
                strategy
            };
            let exporter = Exporter::new(&config);
            let target = format!("SOURCE@127.0.0.1:{}", source.dicom_port);
            let mut probes = Vec::new();
            let mut last = None;
            for _ in 0..RUNS {
                let answer = exporter.probe("check", &target, None).await;
                assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
                probes.push(Duration::from_secs_f64(
                    answer.metric("probe_duration_seconds"),
                ));
                last = Some(answer);
            }
            let Some(answer) = last else { continue };
            let queries = |peer: &str| {
                ["date_range", "uid_list", "uid"]
                    .iter()
                    .map(|kind| {
                        let series =
                            format!("pacs_find_queries{{kind=\"{kind}\",peer=\"{peer}\"}}");
                        format!("{kind}={}", answer.metric(&series))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let min = probes.iter().min().copied().unwrap_or_default();
            let probe = median(probes);
            println!(
                "{n:>7}  {instances:>9}  {strategy:<11}  {:>10.1}ms  {:>7.1}ms  {:>10.1}ms  {:>5.2}  {}; {}  {:>7}",
                probe.as_secs_f64() * 1e3,
                min.as_secs_f64() * 1e3,
                pair.as_secs_f64() * 1e3,
                probe.as_secs_f64() / pair.as_secs_f64(),
                queries("source"),
                queries("destination"),
                answer.metric("pacs_studies_missing"),
            );
        }
    }
}
