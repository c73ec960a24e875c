//! The transfer check against archives that behave as real ones do but the suite's servers
//! will not on demand: studies stored under another StudyDate, date-range answers capped with
//! 0xFE00, UID lists answered empty, by their first UID only, or with a failure status, and no
//! instance counts. Scripted archives play both sides; each test asserts the exact set of
//! missing and incomplete studies, study by study, and the queries the probe sent.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use chrono::Local;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use testkit::exporter::{Answer, Exporter};
use testkit::modules::SendCheck;
use testkit::scripted::{study_match, Conn, Request, ScriptedPeer};

const SCRAPE_TIMEOUT: f64 = 5.0;

/// How an archive answers a StudyInstanceUID list (several values).
#[derive(Clone, Copy, Debug)]
enum Lists {
    Work,
    /// Success with no matches.
    AnswerEmpty,
    /// Matches only the first UID of the list.
    UseFirstOnly,
    /// Matches only the last UID of the list.
    UseLastOnly,
    /// Ends with this failure status and no matches (pynetdicom's qrscp sends 0xC320).
    Fail(u16),
    /// Fails the first list it is asked with this status, then works.
    FailFirst(u16),
}

/// One study an archive holds.
#[derive(Clone, Debug)]
struct Held {
    uid: String,
    /// The StudyDate it is stored under.
    date: String,
    time: String,
    instances: u32,
    /// TimezoneOffsetFromUTC, e.g. "+1400", when the archive records one.
    offset: Option<String>,
    /// NumberOfStudyRelatedInstances as sent, in place of `instances` (a value no archive
    /// could hold).
    count_text: Option<&'static str>,
}

/// The query kinds an archive was asked, as the exporter counts them.
#[derive(Clone, Debug, Default)]
struct Asked(Arc<Mutex<BTreeMap<&'static str, usize>>>);

impl Asked {
    fn count(&self, kind: &'static str) {
        *self.0.lock().unwrap().entry(kind).or_default() += 1;
    }

    fn get(&self, kind: &str) -> usize {
        self.0.lock().unwrap().get(kind).copied().unwrap_or(0)
    }
}

/// A scripted archive: answers date ranges and UID queries from `studies`, as its knobs say.
#[derive(Clone, Debug)]
struct Archive {
    studies: Vec<Held>,
    lists: Lists,
    /// Date-range answers end with 0xFE00 after this many matches.
    date_cap: Option<usize>,
    /// Every answer ends with success after this many matches, in storage order.
    silent_cap: Option<usize>,
    /// Whether matches carry NumberOfStudyRelatedInstances.
    counts: bool,
    /// Whether it answers A-RELEASE-RQ (a peer that does not just goes silent).
    releases: bool,
    asked: Asked,
}

impl Archive {
    fn new(studies: Vec<Held>) -> Archive {
        Archive {
            studies,
            lists: Lists::Work,
            date_cap: None,
            silent_cap: None,
            counts: true,
            releases: true,
            asked: Asked::default(),
        }
    }

    fn answer(&self, identifier: &InMemDicomObject) -> (Vec<InMemDicomObject>, u16) {
        let text = |tag| {
            identifier
                .get(tag)
                .and_then(|e| e.to_str().ok())
                .map(|v| v.trim_matches(['\0', ' ']).to_string())
                .unwrap_or_default()
        };
        let uids: Vec<String> = text(tags::STUDY_INSTANCE_UID)
            .split('\\')
            .filter(|u| !u.is_empty())
            .map(|u| u.trim_matches(['\0', ' ']).to_string())
            .collect();
        let (chosen, status): (Vec<&Held>, u16) = match uids.len() {
            0 => {
                self.asked.count("date_range");
                let range = text(tags::STUDY_DATE);
                let (from, to) = range.split_once('-').expect("a date range");
                let mut found: Vec<&Held> = self
                    .studies
                    .iter()
                    .filter(|s| s.date.as_str() >= from && (to.is_empty() || s.date.as_str() <= to))
                    .collect();
                match self.date_cap {
                    Some(cap) if found.len() > cap => {
                        found.truncate(cap);
                        (found, 0xFE00)
                    }
                    _ => (found, 0),
                }
            }
            1 => {
                self.asked.count("uid");
                (self.held(&uids), 0)
            }
            _ => {
                self.asked.count("uid_list");
                match self.lists {
                    Lists::Work => (self.held(&uids), 0),
                    Lists::AnswerEmpty => (vec![], 0),
                    Lists::UseFirstOnly => (self.held(&uids[..1]), 0),
                    Lists::UseLastOnly => (self.held(&uids[uids.len() - 1..]), 0),
                    Lists::Fail(status) => (vec![], status),
                    Lists::FailFirst(status) => {
                        if self.asked.get("uid_list") == 1 {
                            (vec![], status)
                        } else {
                            (self.held(&uids), 0)
                        }
                    }
                }
            }
        };
        let mut chosen = chosen;
        if let Some(cap) = self.silent_cap {
            chosen.truncate(cap);
        }
        let matches = chosen
            .into_iter()
            .map(|s| {
                let mut m =
                    study_match(&s.uid, &s.date, &s.time, self.counts.then_some(s.instances));
                if let Some(count) = s.count_text.filter(|_| self.counts) {
                    m.put(DataElement::new(
                        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
                        VR::IS,
                        PrimitiveValue::from(count),
                    ));
                }
                if let Some(offset) = &s.offset {
                    m.put(DataElement::new(
                        tags::TIMEZONE_OFFSET_FROM_UTC,
                        VR::SH,
                        PrimitiveValue::from(offset.clone()),
                    ));
                }
                m
            })
            .collect();
        (matches, status)
    }

    fn held(&self, uids: &[String]) -> Vec<&Held> {
        self.studies
            .iter()
            .filter(|s| uids.contains(&s.uid))
            .collect()
    }

    async fn start(self) -> ScriptedPeer {
        ScriptedPeer::start(move |mut conn: Conn| {
            let archive = self.clone();
            async move {
                conn.accept().await;
                loop {
                    match conn.next_request().await {
                        Request::Find {
                            pc,
                            message_id,
                            identifier,
                        } => {
                            let (matches, status) = archive.answer(&identifier);
                            conn.answer_find(pc, message_id, &matches, status).await;
                        }
                        Request::Release if archive.releases => {
                            conn.write_pdu(&dicom_ul::pdu::Pdu::ReleaseRP).await;
                            return;
                        }
                        Request::Release => conn.hold().await,
                        Request::Closed => return,
                    }
                }
            }
        })
        .await
    }
}

/// `minutes` ago in the exporter's zone, as (StudyDate, StudyTime).
fn ago(minutes: i64) -> (String, String) {
    let t = Local::now().naive_local() - chrono::Duration::minutes(minutes);
    (
        t.format("%Y%m%d").to_string(),
        t.format("%H%M%S").to_string(),
    )
}

fn held(uid: &str, minutes_ago: i64, instances: u32) -> Held {
    let (date, time) = ago(minutes_ago);
    Held {
        uid: uid.to_string(),
        date,
        time,
        instances,
        offset: None,
        count_text: None,
    }
}

/// `minutes` ago on a source `hours` east of UTC, with that offset recorded.
fn held_at_offset(uid: &str, minutes_ago: i64, hours: i64) -> Held {
    let t = chrono::Utc::now().naive_utc() + chrono::Duration::hours(hours)
        - chrono::Duration::minutes(minutes_ago);
    Held {
        uid: uid.to_string(),
        date: t.format("%Y%m%d").to_string(),
        time: t.format("%H%M%S").to_string(),
        instances: 2,
        count_text: None,
        offset: Some(format!(
            "{}{:02}00",
            if hours < 0 { '-' } else { '+' },
            hours.abs()
        )),
    }
}

/// Under another StudyDate (a coerced or corrected date on the archive).
fn moved(study: &Held) -> Held {
    Held {
        date: "19990101".to_string(),
        ..study.clone()
    }
}

fn short(study: &Held) -> Held {
    Held {
        instances: study.instances - 1,
        ..study.clone()
    }
}

/// The module, with `strategy` and extra settings.
async fn probe(
    source: &ScriptedPeer,
    destination: &ScriptedPeer,
    strategy: &str,
    extra: &str,
) -> Answer {
    probe_with(&exporter(destination, strategy, extra), source).await
}

/// An exporter whose module `check` checks transfers to `destination`.
fn exporter(destination: &ScriptedPeer, strategy: &str, extra: &str) -> Exporter {
    let config = SendCheck::to(destination.target("DEST"))
        .timeout("30s")
        .strategy(strategy)
        .extra(extra);
    Exporter::new(&config.config())
}

/// Probes `source` with `exporter`'s module `check`, which keeps what earlier probes learnt.
async fn probe_with(exporter: &Exporter, source: &ScriptedPeer) -> Answer {
    let answer = exporter
        .probe("check", &source.target("SRC"), Some(SCRAPE_TIMEOUT))
        .await;
    answer.within(SCRAPE_TIMEOUT)
}

fn expect(missing: &[&str], incomplete: &[&str]) -> BTreeSet<(String, String)> {
    missing
        .iter()
        .map(|u| (u.to_string(), "missing".to_string()))
        .chain(
            incomplete
                .iter()
                .map(|u| (u.to_string(), "incomplete".to_string())),
        )
        .collect()
}

/// Asserts that the probe ran, checked `checked` studies and found exactly these missing and
/// incomplete; `context` names the case in a failure.
fn assert_verdict(
    answer: &Answer,
    context: &str,
    checked: usize,
    missing: &[&str],
    incomplete: &[&str],
) {
    assert_eq!(
        answer.metric("probe_success"),
        1.0,
        "{context}: {}",
        answer.body
    );
    assert_eq!(
        answer.unsent(),
        expect(missing, incomplete),
        "{context}: {}",
        answer.body
    );
    assert_eq!(
        answer.metric("pacs_studies_checked"),
        checked as f64,
        "{context}: {}",
        answer.body
    );
}

fn queries(answer: &Answer, peer: &str, kind: &str) -> usize {
    answer.metric(&format!(
        "pacs_find_queries{{kind=\"{kind}\",peer=\"{peer}\"}}"
    )) as usize
}

/// Ten source studies: s0 and s1 are on the destination under another StudyDate, s2 and s3
/// are missing, s4 is one instance short, the rest are there as sent.
fn scenario() -> (Vec<Held>, Vec<Held>) {
    let source: Vec<Held> = (0..10)
        .map(|i| held(&format!("1.2.826.0.1.{i}"), 30 + 10 * i as i64, 3))
        .collect();
    let mut destination = vec![moved(&source[0]), moved(&source[1]), short(&source[4])];
    destination.extend(source[5..].iter().cloned());
    (source, destination)
}

const MISSING: [&str; 2] = ["1.2.826.0.1.2", "1.2.826.0.1.3"];
const INCOMPLETE: [&str; 1] = ["1.2.826.0.1.4"];

/// Runs `auto` against the scenario's destination with `lists` and `date_cap`, and checks
/// the verdict study by study; returns the answer and what the destination was asked.
async fn auto_against(lists: Lists, date_cap: Option<usize>) -> (Answer, Asked) {
    let (source, held) = scenario();
    let source = Archive::new(source).start().await;
    let archive = Archive {
        lists,
        date_cap,
        ..Archive::new(held)
    };
    let asked = archive.asked.clone();
    let destination = archive.start().await;
    let answer = probe(&source, &destination, "auto", "").await;
    assert_eq!(
        answer.metric("probe_success"),
        1.0,
        "{lists:?}: {}",
        answer.body
    );
    assert_eq!(
        answer.unsent(),
        expect(&MISSING, &INCOMPLETE),
        "{lists:?}: {}",
        answer.body
    );
    assert_eq!(answer.metric("pacs_studies_checked"), 10.0);
    assert_eq!(answer.metric("pacs_studies_missing"), 2.0);
    assert_eq!(answer.metric("pacs_studies_incomplete"), 1.0);
    assert_eq!(answer.metric("pacs_instances_missing"), 3.0 + 3.0 + 1.0);
    for kind in ["date_range", "uid_list", "uid"] {
        assert_eq!(
            queries(&answer, "destination", kind),
            asked.get(kind),
            "{lists:?}: {kind} queries as counted by the archive"
        );
    }
    assert_eq!(queries(&answer, "source", "date_range"), 1);
    (answer, asked)
}

/// Studies stored under another StudyDate are found by a UID list that proves itself.
#[tokio::test(flavor = "multi_thread")]
async fn auto_finds_studies_stored_under_another_date() {
    let (_, asked) = auto_against(Lists::Work, None).await;
    assert_eq!(
        asked.get("uid_list"),
        1,
        "one list query for the four unseen studies"
    );
    assert_eq!(asked.get("uid"), 0);
}

/// An archive that answers a UID list with an empty success must not produce false misses.
#[tokio::test(flavor = "multi_thread")]
async fn auto_does_not_trust_an_empty_list_answer() {
    let (_, asked) = auto_against(Lists::AnswerEmpty, None).await;
    assert_eq!(
        asked.get("uid"),
        5,
        "the four unseen studies and the one shown short confirmed one by one"
    );
}

/// An archive that matches only the first UID of a list fails the witness proof.
#[tokio::test(flavor = "multi_thread")]
async fn auto_does_not_trust_first_uid_only_matching() {
    let (_, asked) = auto_against(Lists::UseFirstOnly, None).await;
    assert_eq!(asked.get("uid"), 5);
}

/// An archive that refuses UID lists with a failure status is asked study by study; one out
/// of resources (0xC000, 0xA700) is asked the list once more first.
#[tokio::test(flavor = "multi_thread")]
async fn auto_confirms_one_by_one_after_a_failed_list() {
    for (status, lists) in [(0xC320, 1), (0xC000, 2), (0xA700, 2)] {
        let (_, asked) = auto_against(Lists::Fail(status), None).await;
        assert_eq!(asked.get("uid"), 5, "{status:#06x}");
        assert_eq!(asked.get("uid_list"), lists, "{status:#06x}");
    }
}

/// One list failing with "out of resources" is asked again, and teaches the next probe
/// nothing: it still sends lists.
#[tokio::test(flavor = "multi_thread")]
async fn a_transient_list_failure_is_not_remembered() {
    let (source, held) = scenario();
    let source = Archive::new(source).start().await;
    let destination = Archive {
        lists: Lists::FailFirst(0xA700),
        ..Archive::new(held)
    }
    .start()
    .await;
    let exporter = exporter(&destination, "auto", "");
    let first = probe_with(&exporter, &source).await;
    assert_eq!(
        first.unsent(),
        expect(&MISSING, &INCOMPLETE),
        "{}",
        first.body
    );
    assert_eq!(
        queries(&first, "destination", "uid_list"),
        2,
        "{}",
        first.body
    );
    assert_eq!(queries(&first, "destination", "uid"), 0, "{}", first.body);
    let second = probe_with(&exporter, &source).await;
    assert_eq!(second.unsent(), expect(&MISSING, &INCOMPLETE));
    assert_eq!(
        queries(&second, "destination", "uid_list"),
        1,
        "{}",
        second.body
    );
    assert_eq!(queries(&second, "destination", "uid"), 0, "{}", second.body);
}

/// A date-range answer capped with 0xFE00 is completed by UID queries, with and without
/// list matching.
#[tokio::test(flavor = "multi_thread")]
async fn auto_completes_a_capped_date_range() {
    // The capped answer shows one settled study: one more, confirmed singly, makes the
    // second witness a list needs.
    let (answer, asked) = auto_against(Lists::Work, Some(2)).await;
    assert_eq!(asked.get("uid"), 1, "{}", answer.body);
    assert_eq!(asked.get("uid_list"), 1);
    let (_, asked) = auto_against(Lists::AnswerEmpty, Some(2)).await;
    // Two studies came back in the capped answer, one of them short; the nine others are
    // confirmed singly.
    assert_eq!(asked.get("uid"), 9);
}

/// Without instance counts nothing can be called incomplete; missing is still exact.
#[tokio::test(flavor = "multi_thread")]
async fn no_instance_counts_means_no_incomplete_verdicts() {
    let (source, held) = scenario();
    let source = Archive::new(source).start().await;
    for lists in [Lists::Work, Lists::AnswerEmpty] {
        let destination = Archive {
            counts: false,
            lists,
            ..Archive::new(held.clone())
        }
        .start()
        .await;
        let answer = probe(&source, &destination, "auto", "").await;
        assert_eq!(
            answer.unsent(),
            expect(&MISSING, &[]),
            "{lists:?}: {}",
            answer.body
        );
        assert_eq!(answer.metric("pacs_studies_incomplete"), 0.0);
    }
}

/// A destination that holds none of the window's studies offers no witness: every study is
/// confirmed singly (all missing, truly), and past max_confirmations the probe fails with a
/// reason instead of guessing.
#[tokio::test(flavor = "multi_thread")]
async fn nothing_on_the_destination_is_confirmed_within_a_bound() {
    let (source, _) = scenario();
    let source = Archive::new(source).start().await;
    let archive = Archive {
        lists: Lists::AnswerEmpty,
        ..Archive::new(vec![])
    };
    let destination = archive.start().await;
    let answer = probe(&source, &destination, "auto", "").await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(answer.metric("pacs_studies_missing"), 10.0);
    assert_eq!(queries(&answer, "destination", "uid"), 10);

    let answer = probe(
        &source,
        &destination,
        "auto",
        "      max_confirmations: 5\n",
    )
    .await;
    answer.assert_failed_on("destination", "find_destination", "too_many_matches");
    assert_eq!(answer.metric("pacs_peer_up{peer=\"source\"}"), 1.0);
    assert_eq!(
        answer.value("pacs_studies_missing"),
        None,
        "no verdict on a guess, not even 0:\n{}",
        answer.body
    );
    assert!(
        answer.body.contains("pacs_studies_checked 10"),
        "{}",
        answer.body
    );
}

/// What a probe learnt (list matching does not work here) saves the next probe its list
/// queries.
#[tokio::test(flavor = "multi_thread")]
async fn broken_list_matching_is_remembered() {
    let (source, held) = scenario();
    let source = Archive::new(source).start().await;
    let archive = Archive {
        lists: Lists::Fail(0xC320),
        ..Archive::new(held)
    };
    let destination = archive.start().await;
    let exporter = exporter(&destination, "auto", "");
    let first = probe_with(&exporter, &source).await;
    assert_eq!(
        queries(&first, "destination", "uid_list"),
        1,
        "{}",
        first.body
    );
    let second = probe_with(&exporter, &source).await;
    assert_eq!(second.unsent(), expect(&MISSING, &INCOMPLETE));
    assert_eq!(
        queries(&second, "destination", "uid_list"),
        0,
        "{}",
        second.body
    );
    assert_eq!(queries(&second, "destination", "uid"), 5);
}

/// The literal strategies do what they say, on archives that behave as they assume — and
/// `date_range` reports a study stored under another date as missing, which is why `auto`
/// is the default.
#[tokio::test(flavor = "multi_thread")]
async fn literal_strategies_are_literal() {
    let (source, held) = scenario();
    let source = Archive::new(source).start().await;
    let destination = Archive::new(held).start().await;
    for strategy in ["uid_list", "per_study"] {
        let answer = probe(&source, &destination, strategy, "").await;
        assert_eq!(answer.unsent(), expect(&MISSING, &INCOMPLETE), "{strategy}");
    }
    let answer = probe(&source, &destination, "uid_list", "").await;
    assert_eq!(
        (
            queries(&answer, "destination", "uid_list"),
            queries(&answer, "destination", "date_range")
        ),
        (1, 0)
    );
    let answer = probe(&source, &destination, "per_study", "").await;
    assert_eq!(queries(&answer, "destination", "uid"), 10);
    let answer = probe(&source, &destination, "date_range", "").await;
    let moved = ["1.2.826.0.1.0", "1.2.826.0.1.1", MISSING[0], MISSING[1]];
    assert_eq!(answer.unsent(), expect(&moved, &INCOMPLETE));
}

/// A source that never answers A-RELEASE-RQ costs at most the release wait: the destination
/// was asked at the same time and the comparison stands.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_that_ignores_release_does_not_hide_the_destination() {
    let (source, held) = scenario();
    let source = Archive {
        releases: false,
        ..Archive::new(source)
    }
    .start()
    .await;
    let destination = Archive::new(held).start().await;
    let answer = probe(&source, &destination, "auto", "").await;
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(answer.metric("pacs_peer_up{peer=\"source\"}"), 1.0);
    assert_eq!(answer.metric("pacs_peer_up{peer=\"destination\"}"), 1.0);
    assert_eq!(answer.unsent(), expect(&MISSING, &INCOMPLETE));
}

/// A failing side is named, and the healthy side is still reported up.
#[tokio::test(flavor = "multi_thread")]
async fn failures_name_the_side() {
    let (source, held) = scenario();
    let healthy_source = Archive::new(source.clone()).start().await;
    let healthy_destination = Archive::new(held).start().await;
    let silent = ScriptedPeer::start(|mut conn: Conn| async move { conn.hold().await }).await;

    let answer = probe(&healthy_source, &silent, "auto", "").await;
    answer.assert_failed_on("destination", "associate", "timeout");
    assert_eq!(answer.metric("pacs_peer_up{peer=\"source\"}"), 1.0);

    let capped = Archive {
        date_cap: Some(3),
        ..Archive::new(source)
    }
    .start()
    .await;
    let answer = probe(&capped, &healthy_destination, "auto", "").await;
    answer.assert_failed_on("source", "find_source", "too_many_matches");
    assert_eq!(answer.metric("pacs_peer_up{peer=\"destination\"}"), 1.0);
    // What was read before the cap is counted.
    assert_eq!(answer.metric("pacs_find_matches{peer=\"source\"}"), 3.0);
}

/// `max_matches` stops an answer, and the matches read up to there are still counted.
#[tokio::test(flavor = "multi_thread")]
async fn matches_read_are_counted_when_max_matches_stops_the_answer() {
    let (source, held) = scenario();
    let source = Archive::new(source).start().await;
    let destination = Archive::new(held).start().await;
    let answer = probe(&source, &destination, "auto", "      max_matches: 4\n").await;
    answer.assert_failed_on("source", "find_source", "too_many_matches");
    assert_eq!(answer.metric("pacs_find_matches{peer=\"source\"}"), 5.0);
}

/// A source's StudyInstanceUID becomes a label: control characters and excess length from a
/// peer never reach the exposition.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_uid_becomes_a_clean_bounded_label() {
    let hostile = format!("1.2.3\u{1}\u{7f}.{}", "9".repeat(300));
    let source = Archive::new(vec![held(&hostile, 60, 1)]).start().await;
    let destination = Archive::new(vec![]).start().await;
    let answer = probe(&source, &destination, "auto", "").await;
    assert_eq!(
        answer.metric("pacs_studies_missing"),
        1.0,
        "{}",
        answer.body
    );
    let labels = answer.series("pacs_study_unsent");
    assert_eq!(labels.len(), 1, "{}", answer.body);
    let uid = &labels[0]["study_instance_uid"];
    assert!(uid.starts_with("1.2.3"), "{uid:?}");
    assert!(!uid.chars().any(char::is_control), "{uid:?}");
    assert!(
        uid.chars().count() <= 128,
        "{} characters",
        uid.chars().count()
    );
}

/// A source whose studies carry TimezoneOffsetFromUTC far east or west of the exporter, and a
/// module without `timezone`: every study of the window is asked for and judged (east of the
/// exporter the newest are dated tomorrow; west of it the oldest yesterday), and studies dated
/// days ahead are counted as future.
#[tokio::test(flavor = "multi_thread")]
async fn sources_east_and_west_of_the_exporter_are_judged_whole() {
    for hours in [14, 9, -5, -12] {
        // Twelve studies over the last 23 hours, one a day ahead, one three days ahead.
        let mut source: Vec<Held> = (0..12)
            .map(|i| held_at_offset(&format!("1.2.826.9.{i}"), 20 + 115 * i, hours))
            .collect();
        source.push(held_at_offset("1.2.826.9.100", -24 * 60, hours));
        source.push(held_at_offset("1.2.826.9.101", -3 * 24 * 60, hours));
        let destination: Vec<Held> = source
            .iter()
            .filter(|s| s.uid != "1.2.826.9.3" && s.uid != "1.2.826.9.11")
            .cloned()
            .collect();
        let source = Archive::new(source).start().await;
        let destination = Archive::new(destination).start().await;
        let answer = probe(&source, &destination, "auto", "").await;
        assert_verdict(
            &answer,
            &format!("{hours}"),
            12,
            &["1.2.826.9.3", "1.2.826.9.11"],
            &[],
        );
        assert_eq!(answer.metric("pacs_studies_future"), 2.0, "{hours}");
        assert_eq!(answer.metric("pacs_studies_pending"), 2.0, "{hours}");
    }
}

/// Fifty studies the destination all holds, 49 under another StudyDate: its date-range answer
/// shows one, so one witness is known; the archive uses only the last UID of a list. A list
/// with that witness last proves nothing: no study is reported missing.
#[tokio::test(flavor = "multi_thread")]
async fn one_witness_and_last_value_list_matching() {
    let source: Vec<Held> = (0..50)
        .map(|i| held(&format!("1.2.826.7.{i}"), 20 + 10 * i, 3))
        .collect();
    let mut destination: Vec<Held> = source[1..].iter().map(moved).collect();
    destination.push(source[0].clone());
    let source = Archive::new(source).start().await;
    let destination = Archive {
        lists: Lists::UseLastOnly,
        ..Archive::new(destination)
    }
    .start()
    .await;
    let answer = probe(&source, &destination, "auto", "").await;
    assert_verdict(&answer, "", 50, &[], &[]);
}

/// An archive that stops every answer after 20 matches with success, in storage order,
/// holding all fifty studies, half under another StudyDate: nothing is reported missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_cap_reports_nothing_missing() {
    let source: Vec<Held> = (0..50)
        .map(|i| held(&format!("1.2.826.8.{i}"), 20 + 10 * i, 3))
        .collect();
    let destination: Vec<Held> = source
        .iter()
        .enumerate()
        .map(|(i, s)| if i % 2 == 0 { s.clone() } else { moved(s) })
        .collect();
    let source = Archive::new(source).start().await;
    let destination = Archive {
        silent_cap: Some(20),
        ..Archive::new(destination)
    }
    .start()
    .await;
    let answer = probe(&source, &destination, "auto", "").await;
    assert_verdict(&answer, "", 50, &[], &[]);
}

/// One StudyInstanceUID filed twice (under two patients) on either side: its instances add up
/// per side. s0 is on the source twice (2 + 3) and on the destination twice (2 + 2): one
/// instance short. s1 is once on the source (5) and twice on the destination (2 + 3): whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_uid_filed_twice_adds_up_on_each_side() {
    let with = |study: &Held, instances| Held {
        instances,
        ..study.clone()
    };
    let s0 = held("1.2.826.6.0", 30, 0);
    let s1 = held("1.2.826.6.1", 40, 0);
    let source = vec![with(&s0, 2), with(&s0, 3), with(&s1, 5)];
    let destination = vec![with(&s0, 2), with(&s1, 2), with(&s0, 2), with(&s1, 3)];
    let source = Archive::new(source).start().await;
    let destination = Archive::new(destination).start().await;
    for strategy in ["auto", "date_range", "uid_list", "per_study"] {
        let answer = probe(&source, &destination, strategy, "").await;
        assert_verdict(&answer, strategy, 2, &[], &["1.2.826.6.0"]);
        assert_eq!(answer.metric("pacs_instances_missing"), 1.0, "{strategy}");
    }
}

/// Studies dated days and weeks ahead (a modality's clock, a wrong zone) are asked for and
/// counted as future, however far ahead, and are not judged.
#[tokio::test(flavor = "multi_thread")]
async fn studies_dated_ahead_are_counted_as_future() {
    let source = vec![
        held("1.2.826.5.0", 30, 3),
        held("1.2.826.5.1", 60, 3),
        held("1.2.826.5.2", -2 * 24 * 60, 3),
        held("1.2.826.5.3", -40 * 24 * 60, 3),
    ];
    let destination = vec![source[0].clone()];
    let source = Archive::new(source).start().await;
    let destination = Archive::new(destination).start().await;
    let answer = probe(&source, &destination, "auto", "").await;
    assert_verdict(&answer, "", 2, &["1.2.826.5.1"], &[]);
    assert_eq!(answer.metric("pacs_studies_future"), 2.0, "{}", answer.body);
    assert_eq!(answer.metric("pacs_studies_pending"), 2.0);
}

/// Two missing studies claiming 2^64 - 1 instances each: their counts are unknown, so no
/// instances are reported missing, and the studies still are.
#[tokio::test(flavor = "multi_thread")]
async fn counts_no_archive_could_hold_are_unknown() {
    let absurd = |uid: &str| Held {
        count_text: Some("18446744073709551615"),
        ..held(uid, 30, 3)
    };
    let source = vec![
        absurd("1.2.826.4.0"),
        absurd("1.2.826.4.1"),
        held("1.2.826.4.2", 40, 3),
    ];
    let destination = vec![source[2].clone()];
    let source = Archive::new(source).start().await;
    let destination = Archive::new(destination).start().await;
    let answer = probe(&source, &destination, "auto", "").await;
    assert_verdict(&answer, "", 3, &["1.2.826.4.0", "1.2.826.4.1"], &[]);
    assert_eq!(
        answer.metric("pacs_instances_missing"),
        0.0,
        "{}",
        answer.body
    );
}
