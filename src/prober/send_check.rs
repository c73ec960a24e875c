//! The `send_check` prober: did the recent studies of the source (the probe's target) reach
//! the destination (named by the module), and did they arrive whole?
//!
//! Source: one STUDY-level C-FIND over the lookback window. Destination: by
//! `destination_query` (date range, UID lists, one query per study, or `auto`: the date range,
//! then UID queries for whatever it did not find). One association per side, reused for every
//! query on that side. Studies are matched by StudyInstanceUID only.
//!
//! An incomplete answer (status 0xFE00, or a failure status) is never taken as the whole truth:
//! the probe fails instead of reporting a partial list, except in `auto`, where a cut-off date
//! range answer is completed by UID queries.
//!
//! `probe_success` means the comparison ran; what it found is in the `pacs_*` gauges, which are
//! always present (0 until computed). Release errors after the queries are logged, not failed:
//! the comparison has run by then. A side whose answer was a failure status or cut off is
//! still released (the peer answered; an abort would show as an error in its logs); one whose
//! exchange broke off is aborted.
//!
//! Time: StudyDate/StudyTime are read in the module's time zone. A study without StudyTime is
//! placed at the end of its day, so it is judged only once the whole day has passed the grace
//! period (no false alarm for a study stored late in the day). A study timed later today (a
//! modality whose clock is ahead) is pending; later dates are outside the query.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use prometheus::{Gauge, GaugeVec};
use tokio::time::Instant;

use super::peer::{called_aet, establish, incomplete_failure};
use super::{gauge, gauge_vec, local_now, Failure, ProbeContext, Reason, Stage};
use crate::config::{DestinationQuery, DicomOptions, SendCheckOptions, StudyLabel};
use crate::dicom::find::{find, integer, text, text_element, FindAnswer, InformationModel};
use crate::dicom::{query, Association, Timings};
use crate::target::Target;

/// UIDs per list query: far below the 64 KiB an explicit VR value can hold.
const UID_BATCH: usize = 200;

/// One study as the source reported it.
#[derive(Clone, Debug)]
struct Study {
    uid: String,
    patient_name: Option<String>,
    patient_id: Option<String>,
    study_id: Option<String>,
    accession_number: Option<String>,
    modalities: Option<String>,
    study_date: Option<String>,
    instances: Option<u64>,
    /// When the study was made, for the window, the grace period and its age.
    when: Option<NaiveDateTime>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Missing,
    Incomplete,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Missing => "missing",
            State::Incomplete => "incomplete",
        }
    }
}

struct Metrics {
    peer_up: GaugeVec,
    find_duration: GaugeVec,
    find_matches: GaugeVec,
    checked: Gauge,
    pending: Gauge,
    missing: Gauge,
    incomplete: Gauge,
    instances_missing: Gauge,
    oldest_unsent_age: Gauge,
    list_truncated: Gauge,
    unsent: GaugeVec,
}

impl Metrics {
    fn register(ctx: &ProbeContext<'_>, labels: &[StudyLabel]) -> Metrics {
        let r = ctx.registry;
        let per_peer = |name: &str, help: &str| {
            let g = gauge_vec(r, name, help, &["peer"]);
            for peer in ["source", "destination"] {
                g.with_label_values(&[peer]).set(0.0);
            }
            g
        };
        let mut unsent_labels = vec!["study_instance_uid", "state"];
        unsent_labels.extend(labels.iter().map(|l| l.name()));
        Metrics {
            peer_up: per_peer("pacs_peer_up", "1 when that side's association and queries succeeded."),
            find_duration: per_peer(
                "pacs_find_duration_seconds",
                "Time spent in C-FIND on that side, in seconds.",
            ),
            find_matches: per_peer("pacs_find_matches", "Matches that side's C-FINDs returned."),
            checked: gauge(r, "pacs_studies_checked", "Source studies old enough to judge."),
            pending: gauge(r, "pacs_studies_pending", "Source studies younger than the grace period."),
            missing: gauge(r, "pacs_studies_missing", "Checked studies the destination does not have."),
            incomplete: gauge(
                r,
                "pacs_studies_incomplete",
                "Checked studies the destination has with fewer instances than the source.",
            ),
            instances_missing: gauge(
                r,
                "pacs_instances_missing",
                "Instances of missing and incomplete studies not on the destination (where counts are known).",
            ),
            oldest_unsent_age: gauge(
                r,
                "pacs_oldest_unsent_study_age_seconds",
                "Age of the oldest missing or incomplete study, in seconds; 0 when none.",
            ),
            list_truncated: gauge(
                r,
                "pacs_study_list_truncated",
                "1 when more studies are unsent than max_listed_studies allows to list.",
            ),
            unsent: gauge_vec(
                r,
                "pacs_study_unsent",
                "A missing or incomplete study, oldest first, at most max_listed_studies.",
                &unsent_labels,
            ),
        }
    }
}

/// Who one side of the check is.
struct Peer<'p> {
    name: &'static str,
    stage: Stage,
    target: &'p Target,
    dicom: DicomOptions,
    /// Whether its addresses are held to allowed_targets: only the source comes from the
    /// request; the destination is the operator's config.
    restricted: bool,
}

/// One side of the check: its association and its share of the metrics.
struct Side<'a, 'p> {
    peer: Peer<'p>,
    association: Association,
    metrics: &'a Metrics,
    message_id: u16,
    find_time: Duration,
    matches: usize,
    /// Matches one query may return (a memory bound).
    max_matches: usize,
    /// Whether the association can no longer be released (the exchange broke off).
    broken: bool,
}

impl<'a, 'p> Side<'a, 'p> {
    async fn connect(
        ctx: &ProbeContext<'_>,
        peer: Peer<'p>,
        metrics: &'a Metrics,
        max_matches: usize,
    ) -> Result<Side<'a, 'p>, Failure> {
        let association = associate(ctx, &peer).await?;
        Ok(Side {
            peer,
            association,
            metrics,
            message_id: 0,
            find_time: Duration::ZERO,
            matches: 0,
            max_matches,
            broken: false,
        })
    }

    /// A new association in place of one that broke off (the old one is aborted).
    async fn reconnect(&mut self, ctx: &ProbeContext<'_>) -> Result<(), Failure> {
        self.association = associate(ctx, &self.peer).await?;
        self.broken = false;
        Ok(())
    }

    /// One C-FIND, each match handed to `on_match`; the answer may still be incomplete (see
    /// [`FindAnswer::is_complete`]).
    async fn find(
        &mut self,
        identifier: &InMemDicomObject,
        on_match: &mut (dyn FnMut(&InMemDicomObject) + Send),
    ) -> Result<FindAnswer, Failure> {
        self.message_id = self.message_id.wrapping_add(1);
        let start = Instant::now();
        let answer = find(
            &mut self.association,
            InformationModel::StudyRoot,
            identifier,
            self.message_id,
            self.max_matches,
            on_match,
        )
        .await;
        self.find_time += start.elapsed();
        let name = self.peer.name;
        self.metrics
            .find_duration
            .with_label_values(&[name])
            .set(self.find_time.as_secs_f64());
        let answer = answer.map_err(|e| {
            self.broken = true;
            side_failure(name, Failure::from_dicom(&e, self.peer.stage))
        })?;
        self.matches += answer.matches;
        self.metrics
            .find_matches
            .with_label_values(&[name])
            .set(self.matches as f64);
        Ok(answer)
    }

    /// Like [`Side::find`], but an incomplete answer fails the probe.
    async fn find_complete(
        &mut self,
        identifier: &InMemDicomObject,
        on_match: &mut (dyn FnMut(&InMemDicomObject) + Send),
    ) -> Result<FindAnswer, Failure> {
        let answer = self.find(identifier, on_match).await?;
        match incomplete_failure(self.peer.stage, &answer) {
            Some(failure) => Err(side_failure(self.peer.name, failure)),
            None => Ok(answer),
        }
    }

    /// Ends the association: released when the exchange is intact (also after a failure
    /// status: the peer answered, and an abort would show up as an error in its logs),
    /// aborted when it broke off. `up` says whether this side did its part.
    async fn close(self, ctx: &ProbeContext<'_>, up: bool) {
        if up {
            self.metrics
                .peer_up
                .with_label_values(&[self.peer.name])
                .set(1.0);
        }
        if self.broken {
            self.association.abort();
        } else if let Err(e) = self.association.release().await {
            ctx.log
                .info(format!("{}: release failed: {e}", self.peer.name));
        }
    }

    /// Closes the side as `result` says and passes the result on.
    async fn close_with<T>(
        self,
        ctx: &ProbeContext<'_>,
        result: Result<T, Failure>,
    ) -> Result<T, Failure> {
        self.close(ctx, result.is_ok()).await;
        result
    }
}

async fn associate(ctx: &ProbeContext<'_>, peer: &Peer<'_>) -> Result<Association, Failure> {
    let Peer {
        name,
        stage,
        target,
        dicom,
        restricted,
    } = peer;
    ctx.log.debug(format!(
        "{name}: associating with {}@{}:{}",
        called_aet(target, dicom),
        target.host,
        target.port
    ));
    let mut timings = Timings::default();
    let association = establish(
        ctx,
        target,
        dicom,
        &[InformationModel::StudyRoot.sop_class()],
        *restricted,
        *stage,
        &mut timings,
    )
    .await
    .map_err(|failure| side_failure(name, failure))?;
    ctx.log.debug(format!(
        "{name}: associated in {:.3}s, peer implementation {:?} {:?}",
        timings.associate.as_secs_f64(),
        association.peer().implementation_class_uid,
        association.peer().implementation_version_name
    ));
    Ok(association)
}

fn side_failure(side: &str, mut failure: Failure) -> Failure {
    failure.detail = format!("{side}: {}", failure.detail);
    failure
}

pub async fn probe(ctx: &ProbeContext<'_>) -> Result<(), Failure> {
    let Some(options) = ctx.module.send_check.as_ref() else {
        return Err(Failure::new(
            Stage::FindSource,
            Reason::ProtocolError,
            "module has no send_check block",
        ));
    };
    let metrics = Metrics::register(ctx, &options.labels);
    let now = local_now(options.timezone);
    let window_start = chrono::Duration::from_std(options.lookback.0)
        .ok()
        .and_then(|lookback| now.checked_sub_signed(lookback))
        .ok_or_else(|| {
            Failure::new(
                Stage::FindSource,
                Reason::ProtocolError,
                "lookback out of range",
            )
        })?;
    let date_range = format!("{}-{}", window_start.format("%Y%m%d"), now.format("%Y%m%d"));

    // Source: every study of the window.
    ctx.enter(Stage::Connect);
    let source = Peer {
        name: "source",
        stage: Stage::FindSource,
        target: ctx.target,
        dicom: ctx.module.dicom.clone(),
        restricted: true,
    };
    let mut source = Side::connect(ctx, source, &metrics, options.max_matches).await?;
    ctx.enter(Stage::FindSource);
    let mut identifier = study_identifier(&date_range);
    for (tag, vr) in SOURCE_KEYS {
        identifier.put(text_element(tag, vr, ""));
    }
    query::apply(&mut identifier, &options.query, now.date());
    let mut studies: Vec<Study> = Vec::new();
    let answer = source
        .find_complete(&identifier, &mut |m| studies.extend(read_study(m)))
        .await;
    source.close_with(ctx, answer).await?;

    let received = studies.len();
    // A source may list a study twice (e.g. once per patient ID it was merged from).
    let mut seen = HashSet::new();
    studies.retain(|s| seen.insert(s.uid.clone()) && in_window(s, window_start, now));
    let judged_until = chrono::Duration::from_std(options.grace.0)
        .ok()
        .and_then(|grace| now.checked_sub_signed(grace))
        .unwrap_or(window_start);
    let (checked, pending): (Vec<Study>, Vec<Study>) = studies
        .into_iter()
        .partition(|s| s.when.is_some_and(|w| w <= judged_until));
    metrics.checked.set(checked.len() as f64);
    metrics.pending.set(pending.len() as f64);
    ctx.log.info(format!(
        "source: {received} studies matched, {} in the window: {} to check, {} pending",
        checked.len() + pending.len(),
        checked.len(),
        pending.len()
    ));

    // Destination: which of the checked studies it has, with how many instances.
    ctx.enter(Stage::Connect);
    let destination = Peer {
        name: "destination",
        stage: Stage::FindDestination,
        target: &options.destination.0,
        dicom: options.destination_dicom.apply(&ctx.module.dicom),
        restricted: false,
    };
    let mut destination = Side::connect(ctx, destination, &metrics, options.max_matches).await?;
    ctx.enter(Stage::FindDestination);
    let found = if checked.is_empty() {
        Ok(HashMap::new())
    } else {
        query_destination(
            ctx,
            &mut destination,
            options.destination_query,
            &date_range,
            &checked,
        )
        .await
    };
    let found = destination.close_with(ctx, found).await?;

    report(ctx, options, &metrics, &checked, &found, now);
    Ok(())
}

/// Return keys of the source query: everything the probe reads is asked for, because a PACS
/// such as Orthanc returns only what was asked.
const SOURCE_KEYS: [(Tag, VR); 7] = [
    (tags::PATIENT_NAME, VR::PN),
    (tags::PATIENT_ID, VR::LO),
    (tags::STUDY_ID, VR::SH),
    (tags::ACCESSION_NUMBER, VR::SH),
    (tags::STUDY_TIME, VR::TM),
    (tags::MODALITIES_IN_STUDY, VR::CS),
    (tags::SPECIFIC_CHARACTER_SET, VR::CS),
];

/// A STUDY-level identifier over a date range, asking for the UID and the instance count.
fn study_identifier(date_range: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        text_element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
        text_element(tags::STUDY_DATE, VR::DA, date_range),
        text_element(tags::STUDY_INSTANCE_UID, VR::UI, ""),
        text_element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
    ])
}

/// A STUDY-level identifier matching a list of UIDs.
fn uid_identifier(uids: &[&str]) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        text_element(tags::QUERY_RETRIEVE_LEVEL, VR::CS, "STUDY"),
        text_element(tags::STUDY_INSTANCE_UID, VR::UI, &uids.join("\\")),
        text_element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
    ])
}

/// The destination's studies among `checked`: UID → instance count (if it reports one).
async fn query_destination(
    ctx: &ProbeContext<'_>,
    side: &mut Side<'_, '_>,
    strategy: DestinationQuery,
    date_range: &str,
    checked: &[Study],
) -> Result<HashMap<String, Option<u64>>, Failure> {
    let mut found = HashMap::new();
    let uids: Vec<&str> = checked.iter().map(|s| s.uid.as_str()).collect();
    match strategy {
        DestinationQuery::DateRange => {
            let identifier = study_identifier(date_range);
            side.find_complete(&identifier, &mut collect(&mut found))
                .await?;
        }
        DestinationQuery::UidList => {
            for batch in uids.chunks(UID_BATCH) {
                side.find_complete(&uid_identifier(batch), &mut collect(&mut found))
                    .await?;
            }
        }
        DestinationQuery::PerStudy => {
            for uid in &uids {
                side.find_complete(&uid_identifier(&[uid]), &mut collect(&mut found))
                    .await?;
            }
        }
        DestinationQuery::Auto => {
            let answer = side
                .find(&study_identifier(date_range), &mut collect(&mut found))
                .await;
            match answer {
                Ok(answer) => {
                    if let Some(why) = incomplete_failure(side.peer.stage, &answer) {
                        ctx.log
                            .info(format!("{}; confirming every study by UID", why.detail));
                    }
                }
                // An archive with more studies in the window than a query may return: ask
                // for ours by UID instead, on a fresh association (the old one broke off).
                Err(failure) if failure.reason == Reason::TooManyMatches => {
                    ctx.log
                        .info(format!("{}; confirming every study by UID", failure.detail));
                    side.reconnect(ctx).await?;
                }
                Err(failure) => return Err(failure),
            }
            let unseen: Vec<&str> = uids
                .iter()
                .copied()
                .filter(|u| !found.contains_key(*u))
                .collect();
            if !unseen.is_empty() {
                ctx.log.debug(format!(
                    "destination: confirming {} studies by UID",
                    unseen.len()
                ));
            }
            for batch in unseen.chunks(UID_BATCH) {
                let answer = side
                    .find(&uid_identifier(batch), &mut collect(&mut found))
                    .await?;
                if answer.is_complete() {
                    continue;
                }
                // Not every SCP does list matching: ask for each study on its own.
                ctx.log.info(format!(
                    "destination: UID list query answered with status {:#06x}; querying study by study",
                    answer.status
                ));
                for uid in batch {
                    side.find_complete(&uid_identifier(&[uid]), &mut collect(&mut found))
                        .await?;
                }
            }
        }
    }
    Ok(found)
}

/// A match handler that records each match's UID and instance count in `found`.
fn collect(found: &mut HashMap<String, Option<u64>>) -> impl FnMut(&InMemDicomObject) + Send + '_ {
    |m| {
        if let Some(uid) = text(m, tags::STUDY_INSTANCE_UID) {
            found.insert(uid, integer(m, tags::NUMBER_OF_STUDY_RELATED_INSTANCES));
        }
    }
}

fn report(
    ctx: &ProbeContext<'_>,
    options: &SendCheckOptions,
    metrics: &Metrics,
    checked: &[Study],
    found: &HashMap<String, Option<u64>>,
    now: NaiveDateTime,
) {
    let mut unsent: Vec<(&Study, State)> = Vec::new();
    let mut instances_missing = 0u64;
    for study in checked {
        match found.get(&study.uid) {
            None => {
                instances_missing += study.instances.unwrap_or(0);
                unsent.push((study, State::Missing));
            }
            Some(Some(there)) if options.compare_instances => {
                if let Some(here) = study.instances.filter(|here| there < here) {
                    instances_missing += here - there;
                    unsent.push((study, State::Incomplete));
                }
            }
            Some(_) => {}
        }
    }
    unsent.sort_by_key(|(s, _)| s.when);
    let missing = unsent.iter().filter(|(_, s)| *s == State::Missing).count();
    metrics.missing.set(missing as f64);
    metrics.incomplete.set((unsent.len() - missing) as f64);
    metrics.instances_missing.set(instances_missing as f64);
    let oldest = unsent
        .first()
        .and_then(|(s, _)| s.when)
        .map(|when| (now - when).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    metrics.oldest_unsent_age.set(oldest);
    metrics
        .list_truncated
        .set(if unsent.len() > options.max_listed_studies {
            1.0
        } else {
            0.0
        });
    for (study, state) in unsent.iter().take(options.max_listed_studies) {
        let mut values = vec![study.uid.clone(), state.as_str().to_string()];
        values.extend(options.labels.iter().map(|l| label_value(study, *l)));
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        metrics.unsent.with_label_values(&values).set(1.0);
    }
    ctx.log.info(format!(
        "checked {} studies: {} missing, {} incomplete",
        checked.len(),
        missing,
        unsent.len() - missing
    ));
    for (study, state) in &unsent {
        // UIDs only: patient data stays out of the logs unless the module's labels allow it.
        let allowed: Vec<String> = options
            .labels
            .iter()
            .map(|l| format!("{}={:?}", l.name(), label_value(study, *l)))
            .collect();
        ctx.log.debug(format!(
            "{} study {} ({} source instances) {}",
            state.as_str(),
            study.uid,
            study
                .instances
                .map_or("unknown".to_string(), |n| n.to_string()),
            allowed.join(" ")
        ));
    }
}

fn label_value(study: &Study, label: StudyLabel) -> String {
    let value = match label {
        StudyLabel::PatientName => study.patient_name.clone(),
        StudyLabel::PatientId => study.patient_id.clone(),
        StudyLabel::StudyId => study.study_id.clone(),
        StudyLabel::AccessionNumber => study.accession_number.clone(),
        StudyLabel::Modality => study.modalities.as_ref().map(|m| m.replace('\\', ",")),
        StudyLabel::StudyDate => study.study_date.clone(),
    };
    value.unwrap_or_default()
}

fn read_study(m: &InMemDicomObject) -> Option<Study> {
    let study_date = text(m, tags::STUDY_DATE);
    let date = study_date.as_deref().and_then(parse_date);
    let time = text(m, tags::STUDY_TIME).as_deref().and_then(parse_time);
    Some(Study {
        uid: text(m, tags::STUDY_INSTANCE_UID)?,
        patient_name: text(m, tags::PATIENT_NAME),
        patient_id: text(m, tags::PATIENT_ID),
        study_id: text(m, tags::STUDY_ID),
        accession_number: text(m, tags::ACCESSION_NUMBER),
        modalities: text(m, tags::MODALITIES_IN_STUDY),
        study_date,
        instances: integer(m, tags::NUMBER_OF_STUDY_RELATED_INSTANCES),
        when: date.map(|d| d.and_time(time.unwrap_or(END_OF_DAY))),
    })
}

const END_OF_DAY: NaiveTime = match NaiveTime::from_hms_opt(23, 59, 59) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

/// A study belongs to the window when its time does; one without a date cannot be placed and
/// is left out (it is logged at debug level by the caller's count difference).
fn in_window(study: &Study, start: NaiveDateTime, now: NaiveDateTime) -> bool {
    match study.when {
        // Untimed studies sit at the end of their day: keep them if the day overlaps.
        Some(when) if when.time() == END_OF_DAY => {
            when.date() >= start.date() && when.date() <= now.date()
        }
        Some(when) => when >= start && when.date() <= now.date(),
        None => false,
    }
}

/// DA: `YYYYMMDD`, or the `YYYY.MM.DD` of old ACR-NEMA archives.
fn parse_date(text: &str) -> Option<NaiveDate> {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 8 {
        return None;
    }
    NaiveDate::parse_from_str(&digits, "%Y%m%d").ok()
}

/// TM: `HH`, `HHMM`, `HHMMSS`, `HHMMSS.FFFFFF`, or `HH:MM:SS` of old archives.
fn parse_time(text: &str) -> Option<NaiveTime> {
    let whole = text.split('.').next()?;
    let digits: String = whole.chars().filter(char::is_ascii_digit).collect();
    let field = |i: usize| {
        digits
            .get(i..i + 2)
            .map_or(Some(0), |s| s.parse::<u32>().ok())
    };
    if digits.is_empty() || digits.len() % 2 == 1 || digits.len() > 6 {
        return None;
    }
    NaiveTime::from_hms_opt(field(0)?, field(2)?, field(4)?.min(59))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times() {
        assert_eq!(
            parse_date("20261125"),
            NaiveDate::from_ymd_opt(2026, 11, 25)
        );
        assert_eq!(
            parse_date("2026.11.25"),
            NaiveDate::from_ymd_opt(2026, 11, 25)
        );
        assert_eq!(parse_date("2026112"), None);
        assert_eq!(parse_date("20261345"), None);
        assert_eq!(parse_time("1430"), NaiveTime::from_hms_opt(14, 30, 0));
        assert_eq!(
            parse_time("143005.123456"),
            NaiveTime::from_hms_opt(14, 30, 5)
        );
        assert_eq!(parse_time("14:30:05"), NaiveTime::from_hms_opt(14, 30, 5));
        assert_eq!(parse_time("14"), NaiveTime::from_hms_opt(14, 0, 0));
        assert_eq!(parse_time("2560"), None);
        assert_eq!(parse_time("143"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn window() {
        let at = |d: u32, h: u32| {
            NaiveDate::from_ymd_opt(2026, 11, d)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap()
        };
        let study = |when| Study {
            uid: "1".into(),
            patient_name: None,
            patient_id: None,
            study_id: None,
            accession_number: None,
            modalities: None,
            study_date: None,
            instances: None,
            when,
        };
        let (start, now) = (at(24, 12), at(25, 12));
        assert!(in_window(&study(Some(at(25, 11))), start, now));
        assert!(in_window(&study(Some(at(24, 13))), start, now));
        assert!(!in_window(&study(Some(at(24, 11))), start, now));
        // Later today is still in the window (pending), as is an untimed study of yesterday.
        assert!(in_window(&study(Some(at(25, 18))), start, now));
        assert!(in_window(
            &study(Some(at(24, 0).date().and_time(END_OF_DAY))),
            start,
            now
        ));
        assert!(!in_window(
            &study(Some(at(23, 0).date().and_time(END_OF_DAY))),
            start,
            now
        ));
        assert!(!in_window(&study(None), start, now));
    }
}
