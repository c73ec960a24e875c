//! The comparison, pure: which source studies are judged (window, grace, time zone,
//! duplicates), and which of them the destination lacks or holds short. No I/O and no
//! clock: the caller hands in `now`, so every rule here has a table test beside it.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Timelike, Utc,
};

use super::attributes::{Compared, Seen};
use super::options::StudyLabel;
use super::plan::Found;
use crate::dicom::study::StudyMatch;
use crate::settings::TimeZone as ZoneName;

/// A study without StudyTime is placed at the end of its day, so that it is judged only once
/// the whole day has passed the grace period (no false alarm for one stored late that day).
const END_OF_DAY: NaiveTime = match NaiveTime::from_hms_opt(23, 59, 59) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

/// Studies timed this far past now are a sign of a wrong time zone (or a modality's clock),
/// not of a study still in flight: they are counted and logged.
pub(super) const FUTURE_TOLERANCE: Duration = Duration::from_secs(15 * 60);

/// The zone StudyDate/StudyTime are read in when a match carries no TimezoneOffsetFromUTC.
#[derive(Clone, Copy, Debug)]
pub(super) enum Zone {
    Named(chrono_tz::Tz),
    /// The exporter's process zone (TZ).
    Process,
}

impl Zone {
    pub fn of(configured: Option<ZoneName>) -> Zone {
        configured.map_or(Zone::Process, |z| Zone::Named(z.0))
    }

    /// The wall-clock time in this zone at `instant`.
    fn local(self, instant: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Named(tz) => instant.with_timezone(&tz).naive_local(),
            Zone::Process => instant.with_timezone(&chrono::Local).naive_local(),
        }
    }

    /// The instant a wall-clock time of this zone names; in a DST gap, the instant an hour
    /// later; in a fold, the earlier one.
    fn instant(self, local: NaiveDateTime) -> DateTime<Utc> {
        fn pick<Z: TimeZone>(zone: &Z, local: NaiveDateTime) -> Option<DateTime<Utc>> {
            let found = zone.from_local_datetime(&local);
            found
                .earliest()
                .or_else(|| {
                    zone.from_local_datetime(&(local + chrono::Duration::hours(1)))
                        .earliest()
                })
                .map(|t| t.with_timezone(&Utc))
        }
        let found = match self {
            Zone::Named(tz) => pick(&tz, local),
            Zone::Process => pick(&chrono::Local, local),
        };
        found.unwrap_or_else(|| local.and_utc())
    }
}

/// UTC-12:00, the westernmost offset from UTC in use.
const WESTERNMOST_OFFSET: i64 = -12 * 3600;

/// The TimezoneOffsetFromUTC values a source's studies may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Offsets {
    /// None: its studies are read in the module's (or the exporter's) zone.
    None,
    /// Some, the westernmost this many seconds east of UTC (learnt from earlier probes).
    Westernmost(i32),
    /// Not known yet: any offset in use.
    Unknown,
}

/// When and how long: the window a probe judges, fixed at its start.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub now: DateTime<Utc>,
    pub lookback: Duration,
    pub grace: Duration,
    pub zone: Zone,
}

impl Window {
    fn start(&self) -> DateTime<Utc> {
        self.now - chrono::Duration::from_std(self.lookback).unwrap_or(chrono::Duration::MAX)
    }

    /// The first StudyDate to ask for: the earliest local date the window's start has for
    /// the offsets in play. Nothing bounds the last one: a study dated after today (a source
    /// east of the exporter, a wrong clock) is still asked for, and counted as future.
    pub fn first_date(&self, offsets: Offsets) -> NaiveDate {
        let start = self.start();
        let in_zone = self.zone.local(start).date();
        let west = match offsets {
            Offsets::None => return in_zone,
            Offsets::Westernmost(seconds) => i64::from(seconds),
            Offsets::Unknown => WESTERNMOST_OFFSET,
        };
        let local = start + chrono::Duration::seconds(west);
        in_zone.min(local.date_naive())
    }

    /// Today in the PACS' zone (for `today` in a module's query keys).
    pub fn today(&self) -> NaiveDate {
        self.zone.local(self.now).date()
    }
}

/// A source study as the check keeps it: what the verdict needs, and the text of the opt-in
/// labels only when the module asks for them (a probe may hold `max_matches` of these).
#[derive(Clone, Debug)]
pub(super) struct Study {
    uid: Box<str>,
    pub instances: Option<u64>,
    /// The values of the module's `labels`, in their order; `None` without labels.
    labels: Option<Box<[Option<String>]>>,
    /// The values of the module's `compare_attributes`, in their order (empty without).
    compared: Box<[Option<Box<str>>]>,
    /// When it was made: StudyDate and StudyTime read with its TimezoneOffsetFromUTC, else in
    /// `zone`; `None` without a readable StudyDate.
    pub when: Option<DateTime<Utc>>,
    /// Whether `when` is the end of its day, for lack of a StudyTime.
    pub untimed: bool,
}

impl Study {
    /// Keeps of `found` what the check needs, placed in time, and the values of `labels`.
    pub fn keep(found: StudyMatch, labels: &[StudyLabel], zone: Zone) -> Study {
        let labels = (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|label| match label {
                    StudyLabel::PatientName => found.patient_name.clone(),
                    StudyLabel::PatientId => found.patient_id.clone(),
                    StudyLabel::StudyId => found.study_id.clone(),
                    StudyLabel::AccessionNumber => found.accession_number.clone(),
                    StudyLabel::Modality => found.modalities.as_ref().map(|m| m.replace('\\', ",")),
                    StudyLabel::StudyDate => found.study_date.clone(),
                })
                .collect()
        });
        let when = found.date.map(|date| {
            let local = date.and_time(found.time.unwrap_or(END_OF_DAY));
            match found.timezone_offset {
                Some(offset) => instant_at(offset, local),
                None => zone.instant(local),
            }
        });
        let compared = found
            .compared
            .into_iter()
            .map(|v| v.map(String::into_boxed_str))
            .collect();
        Study {
            untimed: found.time.is_none(),
            compared,
            uid: found.uid.into_boxed_str(),
            instances: found.instances,
            labels,
            when,
        }
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The source's value of the module's `index`th compared attribute, if it gave one.
    pub fn compared(&self, index: usize) -> Option<&str> {
        self.compared.get(index)?.as_deref()
    }

    /// The value of the module's `index`th label, if the source gave one.
    pub fn label(&self, index: usize) -> Option<&str> {
        self.labels.as_ref()?.get(index)?.as_deref()
    }

    /// Seconds since it was made, at `now`; 0 for a study timed after now.
    pub fn age(&self, now: DateTime<Utc>) -> f64 {
        self.when.map_or(0.0, |when| {
            (now - when).num_milliseconds().max(0) as f64 / 1000.0
        })
    }
}

fn instant_at(offset: FixedOffset, local: NaiveDateTime) -> DateTime<Utc> {
    (local - chrono::Duration::seconds(i64::from(offset.fix().local_minus_utc()))).and_utc()
}

/// The source's answer sorted out: what is judged now and what is not.
#[derive(Debug, Default)]
pub(super) struct Sorted {
    /// Old enough to judge, oldest first.
    pub checked: Vec<Study>,
    /// Younger than the grace period (or timed later today).
    pub pending: Vec<Study>,
    /// Timed more than [`FUTURE_TOLERANCE`] past now: also pending, and a sign of a wrong zone.
    pub future: usize,
    /// Outside the window, or with no readable StudyDate.
    pub outside: usize,
    /// Matches that repeated a UID (e.g. a study filed under two patient IDs): counted as
    /// one study whose instances are the sum over its matches.
    pub duplicates: usize,
    /// Matches without a StudyInstanceUID: nothing to compare them by.
    pub without_uid: usize,
}

/// Sorts the source's studies into checked, pending or left out, in place: the checked
/// studies stay in the vector they came in.
pub(super) fn sort_out(mut studies: Vec<Study>, window: &Window) -> Sorted {
    let mut sorted = Sorted {
        duplicates: merge_duplicates(&mut studies),
        ..Sorted::default()
    };
    let start = window.start();
    let judged_until =
        window.now - chrono::Duration::from_std(window.grace).unwrap_or(chrono::Duration::MAX);
    let future_from = window.now
        + chrono::Duration::from_std(FUTURE_TOLERANCE).unwrap_or(chrono::Duration::zero());
    studies.retain(|study| {
        if study.uid.is_empty() {
            sorted.without_uid += 1;
            return false;
        }
        let inside = study.when.is_some_and(|when| when >= start);
        sorted.outside += usize::from(!inside);
        inside
    });
    sorted.pending = studies
        .extract_if(.., |study| {
            study.when.is_some_and(|when| when > judged_until)
        })
        .collect();
    for study in &sorted.pending {
        // An untimed study is placed at the end of its day: it belongs to the window when
        // its day overlaps it, and is in the future when its whole day is.
        let Some(when) = study.when else { continue };
        let begins = if study.untimed {
            when - chrono::Duration::seconds(i64::from(END_OF_DAY.num_seconds_from_midnight()))
        } else {
            when
        };
        if begins > future_from {
            sorted.future += 1;
        }
    }
    studies.sort_by_key(|s| s.when);
    sorted.checked = studies;
    sorted
}

/// Keeps one study per UID, the first: a repeated UID adds its instance count to it (unknown
/// if either is), as the source holds both; its compared values are unknown unless every
/// copy has the same. Returns how many were merged away.
fn merge_duplicates(studies: &mut Vec<Study>) -> usize {
    // Which earlier study each repeat belongs to, found without copying a UID.
    let repeats: Vec<(usize, usize)> = {
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(studies.len());
        studies
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.uid.is_empty())
            .filter_map(|(i, s)| match first.entry(&s.uid) {
                std::collections::hash_map::Entry::Occupied(at) => Some((i, *at.get())),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(i);
                    None
                }
            })
            .collect()
    };
    for &(repeat, first) in &repeats {
        let count = studies.get(repeat).and_then(|s| s.instances);
        let compared = studies
            .get_mut(repeat)
            .map(|s| std::mem::take(&mut s.compared))
            .unwrap_or_default();
        if let Some(kept) = studies.get_mut(first) {
            kept.instances = kept.instances.zip(count).map(|(a, b)| a.saturating_add(b));
            // A study the source itself holds under two sets of values has no one value to
            // compare: unknown, never a mismatch.
            if kept.compared != compared {
                kept.compared = Box::default();
            }
        }
    }
    if !repeats.is_empty() {
        let mut index = 0;
        let mut next_repeat = repeats.iter().map(|(i, _)| *i).peekable();
        studies.retain(|_| {
            let keep = next_repeat.peek() != Some(&index);
            if !keep {
                next_repeat.next();
            }
            index += 1;
            keep
        });
    }
    repeats.len()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Missing,
    /// Held with other values of a compared attribute (`compare_attributes`).
    Mismatched,
    Incomplete,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Missing => "missing",
            State::Mismatched => "mismatched",
            State::Incomplete => "incomplete",
        }
    }
}

/// A compared attribute that differs: its index in `compare_attributes`, and the
/// destination's value.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Difference {
    pub index: usize,
    pub there: Option<String>,
}

/// The verdict on the checked studies.
#[derive(Debug, Default)]
pub(super) struct Verdict<'a> {
    /// Missing, mismatched and incomplete studies, oldest first.
    pub unsent: Vec<(&'a Study, State)>,
    pub missing: usize,
    pub mismatched: usize,
    pub incomplete: usize,
    /// Source instances not on the destination, where counts are known (mismatched studies
    /// held short included).
    pub instances_missing: u64,
    /// What differs of each mismatched study, in the order of `unsent`.
    pub differences: Vec<(&'a Study, Vec<Difference>)>,
    /// Held studies whose completeness the instance counts cannot tell (one side reports
    /// none), oldest first: series detail may still find them incomplete.
    pub unproven: Vec<&'a Study>,
    /// Mismatched studies also held short, oldest first: not whole either.
    pub mismatched_short: Vec<&'a Study>,
}

impl<'a> Verdict<'a> {
    /// Records that `study` lacks series: if it is of [`Verdict::unproven`], it is now
    /// incomplete (one already judged stays as it is).
    pub fn incomplete_by_series(&mut self, study: &'a Study) {
        let before = self.unproven.len();
        self.unproven.retain(|s| s.uid() != study.uid());
        if self.unproven.len() == before {
            return;
        }
        self.incomplete += 1;
        self.unsent.push((study, State::Incomplete));
        // Oldest first, as the checked studies are.
        self.unsent.sort_by_key(|(s, _)| s.when);
    }
}

/// What the destination showed of the compared attributes, and how to compare them.
#[derive(Clone, Copy)]
pub(super) struct Attributes<'s> {
    pub compared: &'s Compared,
    pub seen: &'s Seen,
}

/// A study is missing when `found` has no study with its UID; mismatched when it is held
/// and a compared attribute differs (see [`super::attributes`]); incomplete when both sides
/// report a count and the destination's is lower (only with `compare_instances`). A study is
/// in one state, the first that applies in that order.
pub(super) fn compare<'a>(
    checked: &'a [Study],
    found: &Found,
    compare_instances: bool,
    attributes: Option<Attributes<'_>>,
) -> Verdict<'a> {
    let mut verdict = Verdict::default();
    for study in checked {
        let here = study.instances;
        let Some(there) = found.get(study.uid()) else {
            verdict.instances_missing = verdict.instances_missing.saturating_add(here.unwrap_or(0));
            verdict.missing += 1;
            verdict.unsent.push((study, State::Missing));
            continue;
        };
        let short = match (there, here) {
            (Some(there), Some(here)) if compare_instances && there < here => Some(here - there),
            _ => None,
        };
        if let Some(short) = short {
            verdict.instances_missing = verdict.instances_missing.saturating_add(short);
        }
        let differences = attributes.map_or_else(Vec::new, |a| differences(study, a));
        if !differences.is_empty() {
            verdict.mismatched += 1;
            verdict.unsent.push((study, State::Mismatched));
            verdict.differences.push((study, differences));
            if short.is_some() {
                verdict.mismatched_short.push(study);
            }
        } else if short.is_some() {
            verdict.incomplete += 1;
            verdict.unsent.push((study, State::Incomplete));
        } else if compare_instances && (there.is_none() || here.is_none()) {
            verdict.unproven.push(study);
        }
    }
    verdict
}

/// The compared attributes of `study` whose values differ on the destination, in any record
/// it showed of the study (one filed twice is mismatched if either copy differs).
fn differences(study: &Study, attributes: Attributes<'_>) -> Vec<Difference> {
    let mut found: Vec<Difference> = Vec::new();
    for record in attributes.seen.get(study.uid()) {
        for index in attributes.compared.differences(&study.compared, record) {
            if found.iter().all(|d| d.index != index) {
                let there = record
                    .get(index)
                    .and_then(|v| v.as_deref())
                    .map(str::to_string);
                found.push(Difference { index, there });
            }
        }
    }
    found.sort_by_key(|d| d.index);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32, hour: u32, minute: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 11, day)
            .and_then(|d| d.and_hms_opt(hour, minute, 0))
            .expect("a valid time")
    }

    fn utc_window(now: NaiveDateTime) -> Window {
        Window {
            now: now.and_utc(),
            lookback: Duration::from_secs(24 * 3600),
            grace: Duration::from_secs(600),
            zone: Zone::Named(chrono_tz::UTC),
        }
    }

    fn study(uid: &str, when: Option<NaiveDateTime>, untimed: bool) -> StudyMatch {
        StudyMatch {
            uid: uid.to_string(),
            date: when.map(|w| w.date()),
            time: when.filter(|_| !untimed).map(|w| w.time()),
            instances: Some(3),
            ..StudyMatch::default()
        }
    }

    fn sort(matches: Vec<StudyMatch>, window: &Window) -> Sorted {
        sort_out(
            matches
                .into_iter()
                .map(|m| Study::keep(m, &[], window.zone))
                .collect(),
            window,
        )
    }

    fn uids(studies: &[Study]) -> Vec<&str> {
        studies.iter().map(Study::uid).collect()
    }

    fn uids_of<'a>(studies: &[&'a Study]) -> Vec<&'a str> {
        studies.iter().map(|s| s.uid()).collect()
    }

    #[test]
    fn window_grace_and_untimed_studies() {
        let window = utc_window(at(25, 12, 0));
        let sorted = sort(
            vec![
                study("old", Some(at(24, 11, 0)), false),
                study("yesterday", Some(at(24, 13, 0)), false),
                study("hour", Some(at(25, 11, 0)), false),
                study("young", Some(at(25, 11, 55)), false),
                // Later today, within the tolerance: pending, not a sign of a wrong zone.
                study("soon", Some(at(25, 12, 10)), false),
                study("ahead", Some(at(25, 15, 0)), false),
                // Untimed: the end of its day; yesterday's is judged, today's is pending.
                study("untimed-yesterday", Some(at(24, 0, 0)), true),
                study("untimed-today", Some(at(25, 0, 0)), true),
                study("untimed-before", Some(at(23, 0, 0)), true),
                study("undated", None, false),
                study("", Some(at(25, 9, 0)), false),
                study("hour", Some(at(25, 11, 0)), false),
            ],
            &window,
        );
        assert_eq!(
            uids(&sorted.checked),
            ["yesterday", "untimed-yesterday", "hour"]
        );
        assert_eq!(
            uids(&sorted.pending),
            ["young", "soon", "ahead", "untimed-today"]
        );
        assert_eq!(sorted.future, 1);
        assert_eq!(sorted.outside, 3);
        assert_eq!(sorted.without_uid, 1);
        assert_eq!(sorted.duplicates, 1);
    }

    #[test]
    fn study_times_are_read_in_their_zone() {
        // Now is 12:00 UTC. A source in UTC+3 says 14:30 (11:30 UTC, 30 minutes old).
        let now = at(25, 12, 0);
        let local = study("east", Some(at(25, 14, 30)), false);
        let moscow = chrono_tz::Europe::Moscow;

        // Read in UTC (the wrong zone), it looks 2.5 hours ahead: pending, flagged as future.
        let sorted = sort(vec![local.clone()], &utc_window(now));
        assert_eq!((sorted.checked.len(), sorted.future), (0, 1));

        // Read in the module's zone, it is 30 minutes old: judged.
        let window = Window {
            zone: Zone::Named(moscow),
            ..utc_window(now)
        };
        let sorted = sort(vec![local.clone()], &window);
        assert_eq!(uids(&sorted.checked), ["east"]);
        assert_eq!(sorted.checked[0].age(window.now), 1800.0);

        // The match's own TimezoneOffsetFromUTC wins over any configured zone.
        let with_offset = StudyMatch {
            timezone_offset: FixedOffset::east_opt(3 * 3600),
            ..local
        };
        let sorted = sort(vec![with_offset], &utc_window(now));
        assert_eq!(uids(&sorted.checked), ["east"]);

        // A site west of UTC read in UTC: its studies look hours older, never newer.
        let west = study("west", Some(at(25, 6, 58)), false);
        let window = Window {
            zone: Zone::Named(chrono_tz::America::New_York),
            ..utc_window(now)
        };
        // 06:58 in New York is 11:58 UTC: two minutes old, pending.
        let sorted = sort(vec![west], &window);
        assert_eq!((sorted.checked.len(), sorted.pending.len()), (0, 1));
        assert_eq!(window.first_date(Offsets::None), at(24, 0, 0).date());
    }

    #[test]
    fn missing_and_incomplete() {
        let window = utc_window(at(25, 12, 0));
        let mut studies = Vec::new();
        for (uid, instances) in [
            ("a", Some(3)),
            ("b", Some(3)),
            ("c", Some(3)),
            ("d", None),
            ("e", Some(2)),
        ] {
            studies.push(StudyMatch {
                instances,
                ..study(uid, Some(at(25, 10, 0)), false)
            });
        }
        let sorted = sort(studies, &window);
        let found: Found = [("b", Some(2)), ("c", None), ("d", Some(5)), ("e", Some(2))]
            .into_iter()
            .map(|(uid, count)| (uid.to_string(), count))
            .collect();

        let verdict = compare(&sorted.checked, &found, true, None);
        let states: Vec<(&str, State)> = verdict
            .unsent
            .iter()
            .map(|(s, st)| (s.uid(), *st))
            .collect();
        assert_eq!(states, [("a", State::Missing), ("b", State::Incomplete)]);
        assert_eq!((verdict.missing, verdict.incomplete), (1, 1));
        assert_eq!(verdict.instances_missing, 3 + 1);

        let verdict = compare(&sorted.checked, &found, false, None);
        assert_eq!((verdict.missing, verdict.incomplete), (1, 0));
        assert_eq!(verdict.instances_missing, 3);
    }

    /// A held study whose compared attributes differ is mismatched, also when it is short
    /// (its instances still count); one the destination shows no value for is not.
    #[test]
    fn mismatched_before_incomplete() {
        let window = utc_window(at(25, 12, 0));
        let compared = Compared::new(&["PatientID".to_string()], false);
        let studies = [
            ("a", "P1"),
            ("b", "P2"),
            ("c", "P3"),
            ("d", "P4"),
            ("e", "P5"),
        ]
        .into_iter()
        .map(|(uid, id)| StudyMatch {
            compared: vec![Some(id.to_string())],
            ..study(uid, Some(at(25, 10, 0)), false)
        })
        .collect();
        let sorted = sort(studies, &window);
        let found: Found = [
            ("b", Some(3)),
            ("c", Some(2)),
            ("d", Some(2)),
            ("e", Some(3)),
        ]
        .into_iter()
        .map(|(uid, count)| (uid.to_string(), count))
        .collect();
        let mut seen = Seen::default();
        seen.record("b", vec![Some("P2".into())]);
        seen.record("c", vec![Some("OTHER".into())]);
        seen.record("d", vec![Some("P4 ".into())]);
        // "e" is filed twice, once under another patient.
        seen.record("e", vec![Some("P5".into())]);
        seen.record("e", vec![Some("P6".into())]);
        let attributes = Attributes {
            compared: &compared,
            seen: &seen,
        };
        let verdict = compare(&sorted.checked, &found, true, Some(attributes));
        let states: Vec<(&str, State)> = verdict
            .unsent
            .iter()
            .map(|(s, st)| (s.uid(), *st))
            .collect();
        assert_eq!(
            states,
            [
                ("a", State::Missing),
                ("c", State::Mismatched),
                ("d", State::Incomplete),
                ("e", State::Mismatched)
            ]
        );
        assert_eq!(
            (verdict.missing, verdict.mismatched, verdict.incomplete),
            (1, 2, 1)
        );
        assert_eq!(verdict.instances_missing, 3 + 1 + 1);
        assert_eq!(uids_of(&verdict.mismatched_short), ["c"]);
        assert_eq!(
            verdict.differences[0].1,
            [Difference {
                index: 0,
                there: Some("OTHER".into())
            }]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 2000,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5043_4f4d),
            ..proptest::test_runner::Config::default()
        })]

        /// Whatever the time, lookback and the source's offset from UTC (UTC-12:00 to
        /// UTC+14:00), a study made within the window carries a StudyDate the probe asks for,
        /// with the offset unknown or learnt; in the module's zone likewise.
        #[test]
        fn the_dates_asked_cover_every_offset(
            now in 0i64..4_000_000_000,
            lookback_hours in 1u64..=24 * 31,
            age in 0.0f64..=1.0,
            offset_minutes in -720i32..=840,
            west_by in 0i32..=600,
        ) {
            let Some(now) = DateTime::from_timestamp(now, 0) else {
                return Ok(());
            };
            let window = Window {
                now,
                lookback: Duration::from_secs(lookback_hours * 3600),
                grace: Duration::ZERO,
                zone: Zone::Named(chrono_tz::Asia::Tokyo),
            };
            let made = now - chrono::Duration::seconds((age * (lookback_hours * 3600) as f64) as i64);
            let offset = offset_minutes * 60;
            let local = (made + chrono::Duration::seconds(i64::from(offset))).date_naive();
            proptest::prop_assert!(local >= window.first_date(Offsets::Unknown));
            let westernmost = Offsets::Westernmost(offset - west_by * 60);
            proptest::prop_assert!(local >= window.first_date(westernmost));
            let in_zone = made.with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
            proptest::prop_assert!(in_zone >= window.first_date(Offsets::None));
        }
    }
}
