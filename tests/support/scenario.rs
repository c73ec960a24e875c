//! A transfer to check: generated studies of known ages, all on the source, and what the
//! destination holds of them (every fifth study missing, every fifth-plus-one with several
//! instances one instance short). Load either side into a peer, then compute the expected
//! verdicts from the same values.
//!
//! The ages are chosen against a check with a 10-minute grace period and a 24-hour lookback:
//! [`Scenario::checked`] and [`Scenario::pending`] say which studies such a check covers.

#![allow(dead_code)]

use std::path::Path;

use chrono::{Duration, NaiveDateTime};

use super::peers::Orthanc;
use super::studies::{generate, Study};

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
