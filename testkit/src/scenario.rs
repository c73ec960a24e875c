//! A transfer to check: generated studies of known ages, all on the source, and what the
//! destination holds of them (every fifth study missing, every fifth-plus-one with several
//! instances one instance short). Load either side into a peer, then compute the expected
//! verdicts from the same values.
//!
//! The ages are chosen against a check with a 10-minute grace period and a 24-hour lookback:
//! [`Scenario::checked`] and [`Scenario::pending`] say which studies such a check covers.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{Duration, NaiveDateTime, TimeZone};

use crate::exporter::Answer;
use crate::peers::Orthanc;
use crate::studies::{generate, Study};

/// Minutes before now of each generated study, cycling: two are younger than the 10-minute
/// grace period, two are older than the 24-hour lookback, the rest are to be checked.
pub const AGES_MINUTES: [i64; 12] = [60, 2, 95, 130, 200, 1500, 330, 620, 7, 1000, 1380, 1900];

/// Generated studies and what the destination holds of them.
pub struct Scenario {
    /// Each study with its age in minutes.
    pub studies: Vec<(Study, i64)>,
    /// Instances of each study on the destination, in the order of `studies` (0: missing).
    pub on_destination: Vec<usize>,
    /// The time the ages count back from.
    pub now: NaiveDateTime,
}

impl Scenario {
    /// `n` studies (from `seed`) aged per [`AGES_MINUTES`] before `now`; on the destination
    /// every fifth is missing and every fifth-plus-one with several instances holds one
    /// instance fewer.
    pub fn new(n: usize, seed: u64, now: NaiveDateTime) -> Scenario {
        let when: Vec<(String, String)> = AGES_MINUTES
            .iter()
            .map(|m| {
                let t = now - Duration::minutes(*m);
                (
                    t.format("%Y%m%d").to_string(),
                    t.format("%H%M%S").to_string(),
                )
            })
            .collect();
        let studies: Vec<(Study, i64)> = generate(n, seed, &when)
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s, AGES_MINUTES[i % AGES_MINUTES.len()]))
            .collect();
        let on_destination = studies
            .iter()
            .enumerate()
            .map(|(i, (study, _))| match i % 5 {
                0 => 0,
                1 if study.instance_count > 1 => study.instance_count - 1,
                _ => study.instance_count,
            })
            .collect();
        Scenario {
            studies,
            on_destination,
            now,
        }
    }

    /// Every study with the instances the source holds (all) or the destination holds.
    pub fn held(&self, destination: bool) -> impl Iterator<Item = (&Study, usize)> {
        self.studies
            .iter()
            .zip(&self.on_destination)
            .map(move |((study, _), held)| {
                (
                    study,
                    if destination {
                        *held
                    } else {
                        study.instance_count
                    },
                )
            })
            .filter(|(_, count)| *count > 0)
    }

    /// Uploads one side's instances to an Orthanc.
    pub fn upload(&self, orthanc: &Orthanc, destination: bool) {
        for (study, count) in self.held(destination) {
            for instance in study.first_instances(count) {
                orthanc.upload(&instance);
            }
        }
    }

    /// Writes one side's instances into `dir`, for `storescu`.
    pub fn write_files(&self, dir: &Path, destination: bool) {
        for (study, count) in self.held(destination) {
            study.write_files(dir, count);
        }
    }

    /// The studies the check covers (past the grace period, within the lookback), each with
    /// the instances the destination holds.
    pub fn checked(&self) -> impl Iterator<Item = (&Study, usize)> {
        self.studies
            .iter()
            .zip(&self.on_destination)
            .filter(|((_, age), _)| (10..1440).contains(age))
            .map(|((study, _), held)| (study, *held))
    }

    /// How many studies are still within the grace period.
    pub fn pending(&self) -> usize {
        self.studies.iter().filter(|(_, age)| *age < 10).count()
    }

    /// Checked studies the destination lacks.
    pub fn missing(&self) -> Vec<&Study> {
        self.checked()
            .filter(|(_, held)| *held == 0)
            .map(|(s, _)| s)
            .collect()
    }

    /// Checked studies the destination holds short.
    pub fn partial(&self) -> Vec<&Study> {
        self.checked()
            .filter(|(s, held)| (1..s.instance_count).contains(held))
            .map(|(s, _)| s)
            .collect()
    }
}

/// What the checks against Orthanc and dcmqrscp destinations (tests/it/send_check_real_peers.rs) ask of a scenario.
impl Scenario {
    /// (UID, state) of every study that should be reported, and the instances missing.
    pub fn expected(&self, counts_known: bool) -> (BTreeSet<(String, String)>, usize) {
        let mut unsent = BTreeSet::new();
        let mut instances = 0;
        for (study, held) in self.checked() {
            let uid = study.study_instance_uid.clone();
            if held == 0 {
                unsent.insert((uid, "missing".to_string()));
                // The source reports its count, whatever the destination does.
                instances += study.instance_count;
            } else if held < study.instance_count && counts_known {
                unsent.insert((uid, "incomplete".to_string()));
                instances += study.instance_count - held;
            }
        }
        (unsent, instances)
    }

    pub fn assert_matches(&self, answer: &Answer, counts_known: bool, what: &str) {
        assert_eq!(
            answer.metric("probe_success"),
            1.0,
            "{what}: {}",
            answer.body
        );
        let (unsent, instances) = self.expected(counts_known);
        let reported: BTreeSet<(String, String)> = answer
            .series("pacs_study_unsent")
            .into_iter()
            .map(|l| (l["study_instance_uid"].clone(), l["state"].clone()))
            .collect();
        assert_eq!(reported, unsent, "{what}: unsent studies");
        let missing = unsent.iter().filter(|(_, s)| s == "missing").count();
        assert!(
            missing > 0 && (!counts_known || missing < unsent.len()),
            "{what}: the scenario must have both kinds"
        );
        assert_eq!(
            answer.metric("pacs_studies_checked"),
            self.checked().count() as f64,
            "{what}"
        );
        assert_eq!(
            answer.metric("pacs_studies_pending"),
            self.pending() as f64,
            "{what}"
        );
        assert_eq!(
            answer.metric("pacs_studies_missing"),
            missing as f64,
            "{what}"
        );
        assert_eq!(
            answer.metric("pacs_studies_incomplete"),
            (unsent.len() - missing) as f64,
            "{what}"
        );
        assert_eq!(
            answer.metric("pacs_instances_missing"),
            instances as f64,
            "{what}"
        );
        assert_eq!(
            answer.metric("pacs_peer_up{peer=\"source\"}"),
            1.0,
            "{what}"
        );
        assert_eq!(
            answer.metric("pacs_peer_up{peer=\"destination\"}"),
            1.0,
            "{what}"
        );
        assert_eq!(answer.metric("pacs_study_list_truncated"), 0.0, "{what}");
        // The oldest unsent study is at most a day old and at least the grace period.
        let age = answer.metric("pacs_oldest_unsent_study_age_seconds");
        assert!(
            (600.0..86_400.0).contains(&age),
            "{what}: oldest unsent age {age}"
        );
    }
}

/// What the checks against the pynetdicom peer (tests/it/send_check_third_peer.rs) ask of a scenario.
impl Scenario {
    /// Instances one side holds of the studies whose StudyDate the date range of a source's
    /// first probe covers: what qrscp answers that query with, one match each. Such a probe
    /// does not know yet which offsets from UTC the source sends, so its range starts at the
    /// earliest date the window's start has, in the exporter's zone or 12 hours west of UTC
    /// (the westernmost offset); it has no end. Near midnight that is a day more than the
    /// window's own first day.
    pub fn instances_in_date_range(&self, destination: bool) -> usize {
        let start = self.now - Duration::hours(24);
        let west = chrono::Local
            .from_local_datetime(&start)
            .earliest()
            .map(|local| (local.naive_utc() - Duration::hours(12)).date());
        let first = west.map_or(start.date(), |west| west.min(start.date()));
        let first = first.format("%Y%m%d").to_string();
        self.held(destination)
            .filter(|(s, _)| s.study_date >= first)
            .map(|(_, count)| count)
            .sum()
    }

    /// The verdict when one side reports no instance counts: exactly the missing studies, none
    /// incomplete (a partial study cannot be told from a whole one), and the missing instances
    /// counted from the source's counts where it reports them.
    pub fn assert_verdict(&self, answer: &Answer, source_counts: bool, what: &str) {
        assert_eq!(
            answer.metric("probe_success"),
            1.0,
            "{what}: {}",
            answer.body
        );
        let missing = self.missing();
        assert!(
            !missing.is_empty() && !self.partial().is_empty(),
            "{what}: the scenario must have missing and partial studies"
        );
        let expected: BTreeSet<(String, String)> = missing
            .iter()
            .map(|s| (s.study_instance_uid.clone(), "missing".to_string()))
            .collect();
        let reported: BTreeSet<(String, String)> = answer
            .series("pacs_study_unsent")
            .into_iter()
            .map(|l| (l["study_instance_uid"].clone(), l["state"].clone()))
            .collect();
        assert_eq!(reported, expected, "{what}: unsent studies");
        let instances: usize = if source_counts {
            missing.iter().map(|s| s.instance_count).sum()
        } else {
            0
        };
        for (series, value) in [
            ("pacs_studies_checked", self.checked().count()),
            ("pacs_studies_pending", self.pending()),
            ("pacs_studies_missing", missing.len()),
            ("pacs_studies_incomplete", 0),
            ("pacs_instances_missing", instances),
            ("pacs_peer_up{peer=\"source\"}", 1),
            ("pacs_peer_up{peer=\"destination\"}", 1),
            ("pacs_study_list_truncated", 0),
        ] {
            assert_eq!(answer.metric(series), value as f64, "{what}: {series}");
        }
    }
}
