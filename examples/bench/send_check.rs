//! `send_check`: the transfer check between two stock Orthanc instances, per destination
//! strategy, next to DCMTK's `findscu` pair; then a fast in-process SCP for source sizes no
//! Orthanc here loads in reasonable time, for the memory per study and the `max_matches` path.

use std::process::Command;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use dicom_ul::pdu::Pdu;
use tokio::io::AsyncWriteExt;

use crate::process::Exporter;
use crate::report::{mb, ms, thousands, Context, Samples, Section, Table};
use testkit::metrics::series_value;
use testkit::peers::{require_binary, Orthanc};
use testkit::scripted::{
    encode_command, response_command, Conn, Request, ScriptedPeer, STUDY_ROOT_FIND,
};

use crate::Options;

/// Destination strategies, as `destination_query` names them.
const STRATEGIES: [&str; 4] = ["auto", "date_range", "uid_list", "per_study"];

/// Every hundredth study is missing in the "1%" case.
const ONE_IN: usize = 100;

/// Studies the "all missing" destination holds of its own (other sources' studies of the
/// same day, as an archive holds): none of them is the source's.
const OTHER_STUDIES: usize = 10;

pub async fn run(options: &Options, context: &Context) -> Section {
    let mut section = Section::new("send_check", "send_check: the transfer check", context);
    section.say(format!(
        "A source and a destination stock Orthanc 1.10 (Nagle on, as users run them), loaded \
         over Orthanc's REST API with generated studies (1–5 instances each) dated over the \
         last 20 hours in UTC; the module says `timezone: UTC`. Three destinations per size: \
         one holding every source study (none missing), the same after deleting every \
         {ONE_IN}th study (1% missing), and one holding only {OTHER_STUDIES} studies of its \
         own from the same day (all missing). Each strategy runs in a fresh exporter process \
         {} times; \"probe\" is \
         `probe_duration_seconds`, with min–max. The `findscu` pair is DCMTK's `findscu` \
         sending the probe's two STUDY-level date-range queries, source then destination, one \
         after the other (`findscu -S -aet PACS_EXPORTER -aec AET -k QueryRetrieveLevel=STUDY \
         -k StudyDate=RANGE -k StudyInstanceUID -k NumberOfStudyRelatedInstances -k StudyTime \
         -k PatientName -k PatientID -k StudyID -k AccessionNumber -k ModalitiesInStudy \
         127.0.0.1 PORT`); the ratio is probe ÷ pair. Peak RSS is the exporter process's \
         VmHWM after its runs.",
        options.runs
    ));
    let mut table = Table::new(&[
        "studies",
        "missing",
        "strategy",
        "probe",
        "`findscu` pair",
        "ratio",
        "queries to the destination",
        "reported missing",
        "peak RSS",
    ]);
    let mut at_2000 = None;
    let mut default_at_2000 = None;
    let mut at_20000 = None;
    let mut skipped_per_study = Vec::new();
    let mut per_query = None;
    for &n in &options.studies {
        let loaded = Loaded::new(n);
        section.say(format!(
            "{} studies: {} instances loaded into the source in {:.0} s ({:.0} instances/s, \
             the three Orthancs loaded at once).",
            thousands(n as u64),
            thousands(loaded.instances as u64),
            loaded.load_time.as_secs_f64(),
            loaded.instances as f64 / loaded.load_time.as_secs_f64()
        ));
        for missing in [Missing::None, Missing::OnePercent, Missing::All] {
            if missing == Missing::OnePercent {
                for study in loaded.studies.iter().step_by(ONE_IN) {
                    loaded.full.delete_study(&study.study_instance_uid);
                }
            }
            let destination = match missing {
                Missing::All => &loaded.other,
                _ => &loaded.full,
            };
            let mut pair = Samples::default();
            for _ in 0..options.runs {
                pair.push_duration(
                    findscu("SOURCE", loaded.source.dicom_port, &loaded.range)
                        + findscu("ARCHIVE", destination.dicom_port, &loaded.range),
                );
            }
            // The default module (no `timezone`) beside the strategies with a zone.
            let mut strategies: Vec<(&str, bool)> = STRATEGIES.iter().map(|s| (*s, true)).collect();
            strategies.push(("auto", false));
            for (strategy, zone) in strategies {
                if strategy == "per_study" && n > options.per_study_max {
                    skipped_per_study.push(n);
                    continue;
                }
                let runs = options.runs;
                let outcome =
                    probe(context, &loaded.source, destination, strategy, zone, runs).await;
                let ratio = outcome.time.median() / pair.median();
                let name = if zone {
                    format!("`{strategy}`")
                } else {
                    format!("`{strategy}`, no `timezone`")
                };
                if strategy == "per_study" {
                    // The slowest query time per study at the largest size run.
                    let seconds = outcome.time.median() / n as f64;
                    per_query = match per_query {
                        Some((at, worst)) if at == n => Some((n, f64::max(worst, seconds))),
                        _ => Some((n, seconds)),
                    };
                }
                table.row(vec![
                    thousands(n as u64),
                    missing.to_string(),
                    name,
                    outcome.time.ms_spread(),
                    ms(pair.median()),
                    format!("{ratio:.2}"),
                    outcome.queries.clone(),
                    outcome.verdict.clone(),
                    mb(outcome.peak_kb),
                ]);
                eprintln!("send_check: {}", table.last_row());
                if strategy == "auto" && !zone && missing == Missing::OnePercent && n == 2000 {
                    default_at_2000 = Some(ratio);
                }
                if strategy == "auto" && zone && missing == Missing::OnePercent {
                    match n {
                        2000 => at_2000 = Some(ratio),
                        20_000 => at_20000 = Some(outcome.peak_kb),
                        _ => {}
                    }
                }
            }
        }
    }
    section.table(&table);
    skipped_per_study.dedup();
    if let (Some(&n), Some((at, seconds))) = (skipped_per_study.first(), per_query) {
        section.say(format!(
            "`per_study` runs up to `--per-study-max` ({}) studies: it sends one query per \
             source study, up to {} each at {} studies here (the slowest of its rows), and \
             each query costs more as the archive grows, so one probe of {} studies would take \
             at least {:.0} s.",
            thousands(options.per_study_max as u64),
            ms(seconds),
            thousands(at as u64),
            thousands(n as u64),
            seconds * n as f64
        ));
    }
    section.say(
        "The source gets one date-range query in every case; the two sides' date-range queries \
         run at the same time. With no `timezone` in the module the source is asked for \
         TimezoneOffsetFromUTC, which Orthanc answers by reading every study's files, until it \
         shows that it sends none: the probes after the first of such a row do not ask. `per_study` sends one query per source study; `auto` confirms by UID \
         lists whose answers prove themselves (see the README's \"How each strategy decides \
         missing\").",
    );

    let scripted = scripted(options, context).await;
    section.heading("Large sources: a fast in-process SCP");
    section.say(scripted.text);
    section.table(&scripted.table);

    section.target(
        "send_check at 2,000 studies ≤ 0.6× the `findscu` pair",
        at_2000.is_some_and(|r| r <= 0.6),
        match at_2000 {
            Some(r) => format!("`auto`, 1% missing: {r:.2}× the pair."),
            None => "Not measured (2,000 not among `--studies`).".to_string(),
        },
    );
    section.target(
        "The default module (no `timezone`) at 2,000 studies ≤ 0.6× the `findscu` pair",
        default_at_2000.is_some_and(|r| r <= 0.6),
        match default_at_2000 {
            Some(r) => format!("`auto`, no `timezone`, 1% missing: {r:.2}× the pair."),
            None => "Not measured (2,000 not among `--studies`).".to_string(),
        },
    );
    section.target(
        "20,000 studies with peak RSS under 64 MB",
        at_20000.is_some_and(|kb| kb < 64_000),
        match at_20000 {
            Some(kb) => format!("`auto`, 1% missing: peak RSS {}.", mb(kb)),
            None => "Not measured (20,000 not among `--studies`).".to_string(),
        },
    );
    section.target(
        "Memory per source study ≤ 250 bytes",
        scripted.per_study.is_some_and(|b| b <= 250.0),
        scripted.per_study.map_or(
            "Not measured (two scripted sizes needed).".to_string(),
            |b| format!("{b:.0} bytes of peak RSS per source study (both sides hold it)."),
        ),
    );
    section
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missing {
    None,
    OnePercent,
    All,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Missing::None => "none",
            Missing::OnePercent => "1%",
            Missing::All => "all",
        })
    }
}

/// A source and two destinations, loaded.
struct Loaded {
    studies: Vec<testkit::studies::Study>,
    source: Orthanc,
    /// Every source study (until the 1% are deleted).
    full: Orthanc,
    /// Only studies of its own.
    other: Orthanc,
    instances: usize,
    load_time: Duration,
    /// The date range the `findscu` pair asks for.
    range: String,
}

impl Loaded {
    fn new(n: usize) -> Loaded {
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
        let studies = testkit::studies::generate(n, 42, &when);
        let others = testkit::studies::generate(OTHER_STUDIES, 7, &when);
        let (source, full, other) = (
            Orthanc::start("SOURCE"),
            Orthanc::start("ARCHIVE"),
            Orthanc::start("ARCHIVE"),
        );
        let started = Instant::now();
        let instances = std::thread::scope(|scope| {
            let source = scope.spawn(|| upload(&source, &studies));
            let full = scope.spawn(|| upload(&full, &studies));
            let other = scope.spawn(|| upload(&other, &others));
            let _ = (full.join(), other.join());
            source.join().expect("loading the source")
        });
        let load_time = started.elapsed();
        let range = format!(
            "{}-{}",
            (now - chrono::Duration::hours(24)).format("%Y%m%d"),
            now.format("%Y%m%d")
        );
        Loaded {
            studies,
            source,
            full,
            other,
            instances,
            load_time,
            range,
        }
    }
}

/// modules.yml with one send_check module, `check`, against the destination on `port`, with
/// `extra` lines in its `send_check` block.
fn check_module(port: u16, extra: &str) -> String {
    format!(
        "modules:
  check:
    prober: send_check
    timeout: 600s
    send_check:
      destination: ARCHIVE@127.0.0.1:{port}
{extra}"
    )
}

/// Stores every instance of `studies` in `orthanc`; the number of instances.
fn upload(orthanc: &Orthanc, studies: &[testkit::studies::Study]) -> usize {
    let mut count = 0;
    for study in studies {
        for bytes in study.instances() {
            orthanc.upload(&bytes);
            count += 1;
        }
    }
    count
}

/// What one strategy did over its runs.
struct Outcome {
    time: Samples,
    queries: String,
    verdict: String,
    peak_kb: u64,
}

async fn probe(
    context: &Context,
    source: &Orthanc,
    destination: &Orthanc,
    strategy: &str,
    zone: bool,
    runs: usize,
) -> Outcome {
    let zone = if zone { "      timezone: UTC\n" } else { "" };
    let modules = check_module(
        destination.dicom_port,
        &format!("      destination_query: {strategy}\n      max_listed_studies: 10\n{zone}"),
    );
    let (exporter, _) = Exporter::start(&context.binary, &modules, &[]).await;
    let target = format!("SOURCE@127.0.0.1:{}", source.dicom_port);
    let mut time = Samples::default();
    let mut last = String::new();
    for _ in 0..runs {
        let (answer, body) = exporter.probe("check", &target).await;
        time.push(answer.probe_seconds.unwrap_or(f64::NAN));
        last = body;
    }
    Outcome {
        time,
        queries: queries(&last),
        verdict: verdict(&last),
        peak_kb: exporter.sample().hwm_kb,
    }
}

/// The queries a probe sent to the destination, from its `pacs_find_queries`.
fn queries(body: &str) -> String {
    let kinds = [
        ("date_range", "date range", "date ranges"),
        ("uid_list", "UID list", "UID lists"),
        ("uid", "single UID", "single UIDs"),
    ];
    let said: Vec<String> = kinds
        .iter()
        .filter_map(|(kind, one, many)| {
            let series = format!("pacs_find_queries{{kind=\"{kind}\",peer=\"destination\"}}");
            let n = series_value(body, &series)? as u64;
            (n > 0).then(|| format!("{} {}", thousands(n), if n == 1 { one } else { many }))
        })
        .collect();
    said.join(", ")
}

/// The number of studies reported missing, or why the probe failed.
fn verdict(body: &str) -> String {
    if body.lines().any(|l| l == "probe_success 1") {
        return series_value(body, "pacs_studies_missing")
            .map_or("?".to_string(), |n| thousands(n as u64));
    }
    body.lines()
        .find(|l| l.starts_with("probe_failure_info{"))
        .map_or("failed, no answer".to_string(), |l| {
            format!("failed: `{}`", l.trim_end_matches(" 1"))
        })
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
        .args(["-k", "StudyTime", "-k", "PatientName", "-k", "PatientID"])
        .args([
            "-k",
            "StudyID",
            "-k",
            "AccessionNumber",
            "-k",
            "ModalitiesInStudy",
        ])
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

/// The large-source figures.
struct Scripted {
    text: String,
    table: Table,
    /// Bytes of peak RSS per source study, between the two largest successful sizes.
    per_study: Option<f64>,
}

/// A C-FIND SCP that answers every query with the same `count` STUDY-level matches, made
/// from a template as fast as the socket takes them: UIDs `2.25.1000000000000 + i`, one
/// instance each, spread over the 20 hours before `now` (UTC). It ignores the identifier, so
/// it serves as source and destination alike; run on every connection until dropped.
async fn fast_scp(count: usize, now: NaiveDateTime) -> ScriptedPeer {
    ScriptedPeer::start(move |mut conn: Conn| async move {
        if conn.accept().await.is_none() {
            return;
        }
        loop {
            match conn.next_request().await {
                Request::Find { pc, message_id, .. } => {
                    if answer(&mut conn, pc, message_id, count, now).await.is_err() {
                        return;
                    }
                }
                Request::Release => {
                    conn.write_pdu(&Pdu::ReleaseRP).await;
                    return;
                }
                Request::Closed => return,
            }
        }
    })
    .await
}

/// One P-DATA-TF PDU holding one whole PDV.
fn pdata(out: &mut Vec<u8>, pc: u8, command: bool, value: &[u8]) {
    let pdv = value.len() as u32 + 2;
    out.extend_from_slice(&[0x04, 0x00]);
    out.extend_from_slice(&(pdv + 4).to_be_bytes());
    out.extend_from_slice(&pdv.to_be_bytes());
    out.push(pc);
    out.push(if command { 0x03 } else { 0x02 });
    out.extend_from_slice(value);
}

/// One Implicit VR Little Endian element; `value` must have even length.
fn element(out: &mut Vec<u8>, group: u16, element: u16, value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&element.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

async fn answer(
    conn: &mut Conn,
    pc: u8,
    message_id: u16,
    count: usize,
    now: NaiveDateTime,
) -> std::io::Result<()> {
    let pending = encode_command(&response_command(
        0x8020,
        message_id,
        STUDY_ROOT_FIND,
        0xFF00,
        true,
    ));
    let done = encode_command(&response_command(
        0x8020,
        message_id,
        STUDY_ROOT_FIND,
        0x0000,
        false,
    ));
    let span = 20 * 3600 * 1000 / count.max(1) as i64;
    let mut out = Vec::with_capacity(1 << 18);
    let mut data = Vec::with_capacity(128);
    for i in 0..count {
        let when =
            now - chrono::Duration::minutes(15) - chrono::Duration::milliseconds(span * i as i64);
        data.clear();
        element(
            &mut data,
            0x0008,
            0x0020,
            when.format("%Y%m%d").to_string().as_bytes(),
        );
        element(
            &mut data,
            0x0008,
            0x0030,
            when.format("%H%M%S").to_string().as_bytes(),
        );
        element(&mut data, 0x0008, 0x0052, b"STUDY ");
        element(
            &mut data,
            0x0020,
            0x000D,
            format!("2.25.{}", 1_000_000_000_000u64 + i as u64).as_bytes(),
        );
        element(&mut data, 0x0020, 0x1208, b"1 ");
        pdata(&mut out, pc, true, &pending);
        pdata(&mut out, pc, false, &data);
        if out.len() > (1 << 18) - 512 {
            conn.stream.write_all(&out).await?;
            out.clear();
        }
    }
    pdata(&mut out, pc, true, &done);
    conn.stream.write_all(&out).await
}

/// The exporter against [`fast_scp`] serving the same `n` studies as source and destination.
async fn scripted(options: &Options, context: &Context) -> Scripted {
    let mut table = Table::new(&[
        "source studies",
        "`max_matches`",
        "runs",
        "probe",
        "outcome",
        "exporter peak RSS",
    ]);
    let mut peaks: Vec<(usize, u64)> = Vec::new();
    let now = chrono::Utc::now().naive_utc();
    let largest = options.scripted_studies.iter().copied().max().unwrap_or(0);
    let mut cases: Vec<(usize, Option<usize>)> = options
        .scripted_studies
        .iter()
        .map(|&n| (n, Some(n)))
        .collect();
    // The largest size once more with the default bound: the probe must stop at it.
    cases.push((largest, None));
    for (n, max_matches) in cases {
        let peer = fast_scp(n, now).await;
        let bound = max_matches.map_or(String::new(), |m| format!("      max_matches: {m}\n"));
        let modules = check_module(peer.port, &format!("      timezone: UTC\n{bound}"));
        let (exporter, _) = Exporter::start(&context.binary, &modules, &[]).await;
        let runs = if n >= 1_000_000 {
            1
        } else {
            options.runs.min(3)
        };
        let mut time = Samples::default();
        let mut last = String::new();
        for _ in 0..runs {
            let (answer, body) = exporter.probe("check", &peer.target("SOURCE")).await;
            time.push(answer.probe_seconds.unwrap_or(f64::NAN));
            last = body;
        }
        let peak = exporter.sample().hwm_kb;
        let succeeded = last.lines().any(|l| l == "probe_success 1");
        if succeeded {
            peaks.push((n, peak));
        }
        table.row(vec![
            thousands(n as u64),
            max_matches.map_or("100,000 (default)".to_string(), |m| thousands(m as u64)),
            runs.to_string(),
            time.ms_spread(),
            if succeeded {
                format!(
                    "{} checked, {} missing",
                    thousands(series_value(&last, "pacs_studies_checked").unwrap_or(0.0) as u64),
                    verdict(&last)
                )
            } else {
                verdict(&last)
            },
            mb(peak),
        ]);
    }
    peaks.sort();
    let per_study = match (peaks.first(), peaks.last()) {
        (Some(&(n0, kb0)), Some(&(n1, kb1))) if n1 > n0 => {
            Some((kb1 as f64 - kb0 as f64) * 1000.0 / (n1 - n0) as f64)
        }
        _ => None,
    };
    let text = format!(
        "Orthanc loads at most about a thousand instances a second here, so sources of {} \
         studies are served by a scripted C-FIND SCP in this benchmark's process that writes \
         pre-encoded matches as fast as the socket takes them (`fast_scp` in \
         `examples/bench/send_check.rs`): source and destination hold the same studies, all \
         within the window, one instance each, and the module uses `auto`. Memory per source study is the difference in peak RSS between the two \
         sizes divided by the difference in studies{}. The last row runs the largest size with \
         the default `max_matches`: the probe must stop there with a clear reason instead of \
         holding every match.",
        options
            .scripted_studies
            .iter()
            .map(|&n| thousands(n as u64))
            .collect::<Vec<_>>()
            .join(" and "),
        per_study.map_or(String::new(), |b| format!(": **{b:.0} bytes**"))
    );
    Scripted {
        text,
        table,
        per_study,
    }
}
