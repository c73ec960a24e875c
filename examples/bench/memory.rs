//! `memory`: how much memory PACS that send what they like can make the exporter hold.
//!
//! `--peers` (100) scripted peers on loopback. Each answers a C-ECHO-RQ with a C-ECHO-RSP that
//! announces a data set and then sends 40 MiB of one, and a C-FIND-RQ with a pending
//! C-FIND-RSP whose identifier is 40 MiB. One echo probe per peer runs, all at once, then one
//! find probe per peer, all at once; the exporter's peak resident set (VmHWM) is read after.

use std::collections::BTreeMap;
use std::time::Instant;

use dicom_dictionary_std::tags;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use tokio::io::AsyncWriteExt;

use crate::process::{probe_at, Exporter};
use crate::report::{mb, ms, Context, Section, Table};
use crate::Options;
use testkit::scripted::{encode_pdu, response_command, Conn, ScriptedPeer, STUDY_ROOT_FIND};

/// What each peer sends as a data set.
const HOSTILE_BYTES: usize = 40 << 20;
/// The data set is sent in PDVs that fit the exporter's default maximum PDU (16 KiB).
const FRAGMENT: usize = 16_000;

/// Answers one DIMSE request (C-ECHO or C-FIND) with a response carrying 40 MiB.
async fn hostile(mut conn: Conn) {
    if conn.accept().await.is_none() {
        return;
    }
    let Some((pc, rq, _)) = conn.read_message().await else {
        return;
    };
    let field = rq
        .get(tags::COMMAND_FIELD)
        .and_then(|e| e.to_int::<u16>().ok());
    let Some(id) = rq
        .get(tags::MESSAGE_ID)
        .and_then(|e| e.to_int::<u16>().ok())
    else {
        return;
    };
    let rsp = match field {
        Some(0x0030) => response_command(0x8030, id, "1.2.840.10008.1.1", 0x0000, true),
        _ => response_command(0x8020, id, STUDY_ROOT_FIND, 0xFF00, true),
    };
    conn.send_message(pc, &rsp, None).await;
    let fragment = |is_last| {
        encode_pdu(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Data,
                is_last,
                data: vec![0; FRAGMENT],
            }],
        })
    };
    let (more, last) = (fragment(false), fragment(true));
    let count = HOSTILE_BYTES / FRAGMENT;
    for i in 0..count {
        let bytes = if i + 1 == count { &last } else { &more };
        if conn.stream.write_all(bytes).await.is_err() {
            return;
        }
    }
    conn.hold().await;
}

/// How the probes ended: `probe_failure_info` series (or success) and their counts.
fn outcomes(bodies: &[String]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for body in bodies {
        let outcome = body
            .lines()
            .find(|l| l.starts_with("probe_failure_info{"))
            .map(|l| format!("`{}`", l.trim_end_matches(" 1")))
            .unwrap_or_else(|| {
                if body.lines().any(|l| l == "probe_success 1") {
                    "success".to_string()
                } else {
                    "no answer".to_string()
                }
            });
        *counts.entry(outcome).or_default() += 1;
    }
    counts
        .iter()
        .map(|(outcome, n)| format!("{n} × {outcome}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run(options: &Options, context: &Context) -> Section {
    let mut section = Section::new("memory", "Hostile memory", context);
    let peers = options.peers;
    section.say(format!(
        "{peers} scripted peers on loopback. Each answers a C-ECHO-RQ with a C-ECHO-RSP that \
         announces a data set and then sends {} MiB of one, and a C-FIND-RQ with a pending \
         C-FIND-RSP whose identifier is {} MiB. {peers} echo probes run at once, one per peer, \
         then {peers} find probes at once. The bound per association is described in \
         `src/dicom/association.rs`: one PDU of at most the announced `max_pdu_length` (16 KiB \
         by default), one command set of at most 16 KiB, and one data set of at most what the \
         message may carry (none on a C-ECHO-RSP, 64 KiB for a C-FIND match).",
        HOSTILE_BYTES >> 20,
        HOSTILE_BYTES >> 20
    ));
    let mut scripted = Vec::new();
    for _ in 0..peers {
        scripted.push(ScriptedPeer::start(hostile).await);
    }
    let targets: Vec<String> = scripted.iter().map(|p| p.target("HOSTILE")).collect();
    let modules = "modules:\n  echo:\n    prober: echo\n    timeout: 10s\n  find:\n    prober: find\n    timeout: 10s\n";
    let (exporter, _) = Exporter::start(&context.binary, modules, &[]).await;
    let start_kb = exporter.rss_kb();
    let mut table = Table::new(&["probes", "all answered after", "how they ended"]);
    for module in ["echo", "find"] {
        let started = Instant::now();
        let probes: Vec<_> = targets
            .iter()
            .map(|target| {
                let (port, target) = (exporter.port, target.clone());
                tokio::spawn(async move { probe_at(port, module, &target).await.1 })
            })
            .collect();
        let mut bodies = Vec::new();
        for probe in probes {
            bodies.push(probe.await.expect("probe task"));
        }
        table.row(vec![
            format!("{peers} × {module} at once"),
            ms(started.elapsed().as_secs_f64()),
            outcomes(&bodies),
        ]);
    }
    let peak = exporter.sample().hwm_kb;
    section.table(&table);
    section.say(format!(
        "Exporter: `{}`. Resident at start: {}; peak resident set (VmHWM) after both rounds: \
         **{}**, i.e. {:.0} kB per hostile association above the start.",
        exporter.command(),
        mb(start_kb),
        mb(peak),
        peak.saturating_sub(start_kb) as f64 / peers.max(1) as f64
    ));
    section.target(
        "A hostile peer cannot move memory: 100 peers each sending 40 MiB leave the exporter under 64 MB",
        peak < 64_000,
        format!("Peak RSS {} with {peers} peers.", mb(peak)),
    );
    section
}
